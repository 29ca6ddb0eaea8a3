"""Domain errors: a stable `code`, one human sentence, optional extra fields.

The HTTP layer owns the map from codes to statuses; nothing here knows about HTTP.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code: str = "domain_error"
    message: str = "The request could not be completed."

    def __init__(self, message: str | None = None, *, code: str | None = None, **extra: Any) -> None:
        self.code = code or self.code
        self.message = message or self.message
        self.extra = extra
        super().__init__(self.message)


class NotFound(DomainError):
    code = "not_found"
    message = "The resource does not exist."


class Unauthenticated(DomainError):
    code = "unauthenticated"
    message = "A valid API key is required."


class ConnectionNotAllowed(DomainError):
    code = "connection_not_allowed"


class CycleNotAllowed(DomainError):
    code = "cycle_not_allowed"
    message = "This connection would create a cycle."


class DuplicateConnection(DomainError):
    code = "duplicate_connection"
    message = "These nodes are already connected."


class CrossBoardConnection(DomainError):
    code = "cross_board_connection"
    message = "Both nodes must be on the same board."


class InvalidField(DomainError):
    code = "validation_error"


class InvalidMultipart(DomainError):
    code = "invalid_multipart"
    message = "The multipart body is malformed."


class EventsUnavailable(DomainError):
    code = "events_unavailable"
    message = "Live events are unavailable right now; try again shortly."


class UploadNotAvailable(DomainError):
    code = "upload_not_available"
    message = "This node already holds an image; uploading is available when it is empty, generating or failed."


class FileTooLarge(DomainError):
    code = "file_too_large"
    message = "The file is larger than 10 MB."


class ImageInvalid(DomainError):
    code = "invalid_image"


class UnsupportedFormat(DomainError):
    code = "unsupported_format"
    message = "Only PNG, JPEG and WebP images are supported."


class InvalidCrop(DomainError):
    code = "invalid_crop"


class NoImage(DomainError):
    code = "no_image"
    message = "This node holds no image."


class AlreadyGenerating(DomainError):
    code = "already_generating"
    message = "An image is already being generated on this node."


class UpstreamInProgress(DomainError):
    code = "upstream_in_progress"
    message = "Upstream task in progress."


class DownstreamInProgress(DomainError):
    code = "downstream_in_progress"
    message = "A downstream node is generating; wait for it to finish."


class PromptRequired(DomainError):
    code = "prompt_required"
    message = "Write a prompt or connect an upstream Text Node."


class TooManyReferences(DomainError):
    code = "too_many_references"


class ModelRequired(DomainError):
    code = "model_required"
    message = "Choose a model for this node, or one for the whole run."


class UnknownModel(DomainError):
    code = "unknown_model"
    message = "There is no model with this id."


class UnsupportedParams(DomainError):
    code = "unsupported_params"


class InsufficientCredits(DomainError):
    code = "insufficient_credits"
    message = "The account does not have enough credits for this generation."


class PriceChanged(DomainError):
    code = "price_changed"
    message = "The price differs from the expected credits."


class IdempotencyKeyReused(DomainError):
    code = "idempotency_key_reused"
    message = "This Idempotency-Key was already used with a different request."


class NotAnImageNode(DomainError):
    code = "not_an_image_node"
    message = "This operation is only available on image nodes."


class RateLimited(DomainError):
    code = "rate_limited"
    message = "Too many requests; retry later."
