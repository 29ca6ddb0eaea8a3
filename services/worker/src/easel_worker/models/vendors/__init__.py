"""Adapters for image vendors, each speaking that vendor's own documented API.

``openai`` (Images API), ``fal`` (queue API), ``replicate`` (predictions), ``bfl`` (Black Forest
Labs FLUX API) and ``gemini`` (generateContent with image output). What they share (one HTTP
client per vendor and process, retries, error mapping, downloads, fitting the output to the
contract's size) lives in :mod:`.common`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["VendorOptions"]


@dataclass(frozen=True)
class VendorOptions:
    """Process-wide knobs of the vendor adapters."""

    poll_seconds: float = 1.0  # between two status checks of a queued vendor job
    deadline_seconds: float = 600.0  # a vendor job still unfinished then is canceled and failed
