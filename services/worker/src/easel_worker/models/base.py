"""The image model provider interface used by the generation job."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

from easel_shared.domain.catalog import ModelSpec

__all__ = [
    "NO_JOB",
    "CancelCheck",
    "GenerationInput",
    "ImageProvider",
    "JobHooks",
    "ModelError",
    "ModelErrorCode",
    "cancellable_sleep",
]

CancelCheck = Callable[[], bool]

ModelErrorCode = Literal[
    "content_rejected",  # permanent: the model refused the prompt/references
    "model_timeout",  # transient: the model did not answer in time
    "model_unavailable",  # transient: the model is down or overloaded (5xx)
    "model_error",  # permanent: anything else (bad request, unreadable output, ...)
    "canceled",  # the job was canceled while the model was working
    # Vendor adapters (see models/vendors): what a client or an operator can act on.
    "provider_auth_failed",  # 401/403: the operator's key is wrong or revoked (never retried)
    "provider_out_of_credits",  # 402 (or the vendor's quota error): the operator's vendor account is empty
    "provider_rate_limited",  # 429 after the retries
    "provider_unavailable",  # timeouts, 5xx, connection errors after the retries
    "provider_error",  # anything else, with the vendor's message cut to a safe length
]

_DEFAULT_TRANSIENT: Final[dict[str, bool]] = {
    "content_rejected": False,
    "model_timeout": True,
    "model_unavailable": True,
    "model_error": False,
    "canceled": False,
    "provider_auth_failed": False,
    "provider_out_of_credits": False,
    "provider_rate_limited": True,
    "provider_unavailable": True,
    "provider_error": False,
}

#: Longest single sleep between two ``should_cancel()`` checks.
CANCEL_POLL_SECONDS: Final = 0.05


class ModelError(Exception):
    """A generation failed. ``message`` is a human sentence safe to show to users;
    ``transient`` says whether retrying the same request later may succeed."""

    code: ModelErrorCode
    message: str
    transient: bool

    def __init__(self, code: ModelErrorCode, message: str, transient: bool | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.transient = _DEFAULT_TRANSIENT[code] if transient is None else transient

    def __repr__(self) -> str:
        return f"ModelError(code={self.code!r}, message={self.message!r}, transient={self.transient!r})"


def canceled_error() -> ModelError:
    return ModelError("canceled", "The generation was canceled.", transient=False)


class JobHooks:
    """How a vendor adapter talks back to the run it serves. This base does nothing (no row to
    write to); the generation job passes one that persists to the generation row.

    ``resumed``: the vendor job a previous run of this generation saved (resume it, don't submit).
    ``save(job)``: record the vendor's job the moment the vendor accepted it, before polling.
    ``progress(queue_position, percentage)``: where the vendor job stands (throttled by the job).
    """

    resumed: Mapping[str, Any] | None = None

    def save(self, job: Mapping[str, Any]) -> None:
        return None

    def progress(self, queue_position: int | None, percentage: float | None) -> None:
        return None


NO_JOB: Final = JobHooks()


@dataclass(frozen=True)
class GenerationInput:
    """Everything a provider needs for one image.

    ``references`` are encoded images (PNG/JPEG/WebP) in connection order.
    """

    prompt: str
    width: int
    height: int
    seed: int
    references: Sequence[bytes]
    model: ModelSpec
    job: JobHooks = field(default=NO_JOB, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "references", tuple(self.references))
        if self.width < 1 or self.height < 1:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")
        if self.seed < 0:
            raise ValueError(f"seed must not be negative, got {self.seed}")


class ImageProvider(Protocol):
    def generate(self, inp: GenerationInput, *, should_cancel: CancelCheck) -> bytes:
        """Return PNG bytes of exactly ``inp.width`` x ``inp.height`` pixels.

        Raises :class:`ModelError` on failure (``code="canceled"`` once
        ``should_cancel()`` returned True).
        """
        ...


def cancellable_sleep(seconds: float, should_cancel: CancelCheck) -> None:
    """Sleep ``seconds`` in slices of at most 50 ms, checking ``should_cancel()`` before
    the first slice, between slices and at the end; raise ``canceled`` when it says so."""
    deadline = time.monotonic() + max(0.0, seconds)
    while True:
        if should_cancel():
            raise canceled_error()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        time.sleep(min(CANCEL_POLL_SECONDS, remaining))
