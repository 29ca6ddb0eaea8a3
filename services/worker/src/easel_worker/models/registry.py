"""Pick the provider implementation for a catalog entry."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from easel_shared.domain.catalog import ModelSpec
from easel_worker.models.base import ImageProvider
from easel_worker.models.builtin import BuiltinProvider
from easel_worker.models.http import HttpProvider
from easel_worker.models.vendors import VendorOptions
from easel_worker.models.vendors.bfl import BflProvider
from easel_worker.models.vendors.common import VendorHttp, vendor_http
from easel_worker.models.vendors.fal import FalProvider
from easel_worker.models.vendors.gemini import GeminiProvider
from easel_worker.models.vendors.openai import OpenAIProvider
from easel_worker.models.vendors.replicate import ReplicateProvider

__all__ = ["provider_for"]

_VENDORS: dict[str, Callable[[VendorHttp, VendorOptions], ImageProvider]] = {
    "openai": OpenAIProvider,
    "fal": FalProvider,
    "replicate": ReplicateProvider,
    "bfl": BflProvider,
    "gemini": GeminiProvider,
}


def provider_for(spec: ModelSpec, *, latency_ms: int, blocked_words: Sequence[str],
                 vendor_options: VendorOptions | None = None) -> ImageProvider:
    """The provider that runs ``spec``.

    ``latency_ms`` and ``blocked_words`` configure the built-in models (simulated
    latency and a content filter); remote vendors apply their own.
    """
    if spec.provider == "builtin":
        return BuiltinProvider(latency_ms=latency_ms, blocked_words=blocked_words)
    if spec.provider == "http":
        return HttpProvider()
    make = _VENDORS.get(spec.provider)
    if make is None:
        raise ValueError(f"model {spec.id!r} has unknown provider {spec.provider!r}")
    return make(vendor_http(spec.provider), vendor_options or VendorOptions())
