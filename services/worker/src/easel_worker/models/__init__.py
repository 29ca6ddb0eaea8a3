"""Image model providers: the built-in offline renderer and remote HTTP vendors."""

from easel_worker.models.base import GenerationInput, ImageProvider, ModelError
from easel_worker.models.builtin import BuiltinProvider
from easel_worker.models.http import HttpProvider
from easel_worker.models.registry import provider_for

__all__ = [
    "BuiltinProvider",
    "GenerationInput",
    "HttpProvider",
    "ImageProvider",
    "ModelError",
    "provider_for",
]
