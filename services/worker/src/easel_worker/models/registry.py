"""Pick the provider implementation for a catalog entry."""

from __future__ import annotations

from collections.abc import Sequence

from easel_shared.domain.catalog import ModelSpec
from easel_worker.models.base import ImageProvider
from easel_worker.models.builtin import BuiltinProvider
from easel_worker.models.http import HttpProvider

__all__ = ["provider_for"]


def provider_for(spec: ModelSpec, *, latency_ms: int, blocked_words: Sequence[str]) -> ImageProvider:
    """The provider that runs ``spec``.

    ``latency_ms`` and ``blocked_words`` configure the built-in models (simulated
    latency and a content filter); remote vendors apply their own.
    """
    if spec.provider == "builtin":
        return BuiltinProvider(latency_ms=latency_ms, blocked_words=blocked_words)
    if spec.provider == "http":
        return HttpProvider()
    raise ValueError(f"model {spec.id!r} has unknown provider {spec.provider!r}")
