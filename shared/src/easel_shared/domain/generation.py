"""Generate-button state, toolbar and the prompt sent to the model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from easel_shared.domain.catalog import ModelSpec, availability, validate_params

NodeStatus = Literal["empty", "generating", "ready", "failed"]

REASONS: dict[str, str] = {
    "already_generating": "An image is already being generated on this node.",
    "upstream_in_progress": "Upstream task in progress.",
    # Not in the product table: a node and a node directly upstream of it are never active at
    # the same time, so a node waits while one it feeds is generating.
    "downstream_in_progress": "A downstream node is generating; wait for it to finish.",
    "prompt_required": "Write a prompt or connect an upstream Text Node.",
}

TOOLBAR_EMPTY = ("upload",)
TOOLBAR_IMAGE = ("crop", "fullscreen", "download")

ACTIVE_GENERATION_STATUSES = ("queued", "running")
FINAL_GENERATION_STATUSES = ("succeeded", "failed", "canceled")


@dataclass(frozen=True)
class GenerateState:
    enabled: bool
    reason_code: str | None = None

    @property
    def reason(self) -> str | None:
        return REASONS[self.reason_code] if self.reason_code else None


def generate_state(
    *,
    generating: bool,
    upstream_generating: bool,
    prompt: str,
    downstream_generating: bool = False,
    upstream_texts: Sequence[str],
) -> GenerateState:
    """The first reason that applies wins, in the contract's order."""
    if generating:
        return GenerateState(False, "already_generating")
    if upstream_generating:
        return GenerateState(False, "upstream_in_progress")
    if downstream_generating:
        return GenerateState(False, "downstream_in_progress")
    # The product: disabled when "the prompt field is empty and no upstream Text Node is
    # connected". A connected Text Node counts even while its text is still empty.
    if not prompt.strip() and not upstream_texts:
        return GenerateState(False, "prompt_required")
    return GenerateState(True)


def toolbar(status: str, has_image: bool) -> tuple[str, ...]:
    if status == "ready" and has_image:
        return TOOLBAR_IMAGE
    return TOOLBAR_EMPTY


def upload_available(status: str, has_image: bool) -> bool:
    """Upload is on the toolbar only while the node is empty, generating or failed."""
    return "upload" in toolbar(status, has_image)


def resolved_prompt(upstream_texts: Sequence[str], prompt: str) -> str:
    """Upstream text in connection order first, then the node's own prompt."""
    parts = [t.strip() for t in upstream_texts if t.strip()]
    if prompt.strip():
        parts.append(prompt.strip())
    return "\n".join(parts)


def run_blocker(spec: ModelSpec | None, params: Mapping[str, object],
                reference_count: int) -> tuple[str, str] | None:
    """The worker's second look at an accepted snapshot before doing the work (the catalog may
    have changed since the api accepted it): the same rules, as (error code, message)."""
    if spec is None:
        return "unknown_model", "This model is no longer offered."
    problem = validate_params(spec, params)
    if problem:
        return "unsupported_params", problem
    fits, why_not = availability(spec, reference_count)
    if not fits:
        return "too_many_references", why_not or "Too many reference images for this model."
    return None
