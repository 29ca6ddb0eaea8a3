"""Real image vendors through their own APIs (local stand-ins that follow each vendor's documented
shapes; see tests/fixtures/vendors): what Easel sends, how every vendor outcome ends the
generation, paid once, and the contract's exact output size."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.fixtures.generation import (
    accepted,
    connect,
    get_gen,
    image_node,
    ledger_kinds,
    node,
    stored_image,
    wait_final,
    wait_status,
)
from tests.fixtures.stack import Account, Stack, one_database, png_bytes, wait_for
from tests.fixtures.vendor_catalog import VENDOR_MODELS, VENDORS, Vendors
from tests.fixtures.vendors import Recorded

pytestmark = [pytest.mark.integration, one_database()]

ASYNC_VENDORS = ("fal", "replicate", "bfl")
PARAMS = {"resolution": "1K", "aspect_ratio": "16:9", "seed": 1234}
SIZE = (1024, 576)
ATTEMPTS = 4  # easel_worker.models.vendors.common.ATTEMPTS


@dataclass(frozen=True)
class Outcome:
    status: str
    code: str | None
    submits: int | Callable[[str], int]


#: What each stand-in scenario must end as, with the number of submits the vendor saw.
OUTCOMES: dict[str, Outcome] = {
    "ok": Outcome("succeeded", None, 1),
    "wrong_size": Outcome("succeeded", None, 1),
    "moderated": Outcome("failed", "content_rejected", 1),
    "auth": Outcome("failed", "provider_auth_failed", 1),
    "credits": Outcome("failed", "provider_out_of_credits", 1),
    "ratelimit": Outcome("failed", "provider_rate_limited", ATTEMPTS),
    "ratelimit_once": Outcome("succeeded", None, 2),
    "error5xx": Outcome("failed", "provider_unavailable", ATTEMPTS),
    "error5xx_once": Outcome("succeeded", None, 2),
    # A submit whose answer never came is not sent again (the vendor may be running it already,
    # and billing it); a synchronous call is.
    "timeout": Outcome("failed", "provider_unavailable", lambda v: 1 if v in ASYNC_VENDORS else ATTEMPTS),
    "fail": Outcome("failed", "provider_error", 1),
}
CASES = [(v, s) for v in VENDORS for s in OUTCOMES if s != "fail" or v in ASYNC_VENDORS]

AUTH_HEADER = {
    "openai": ("authorization", "Bearer {key}"),
    "fal": ("authorization", "Key {key}"),
    "replicate": ("authorization", "Bearer {key}"),
    "bfl": ("x-key", "{key}"),
    "gemini": ("x-goog-api-key", "{key}"),
}
SUBMIT_PATH = {
    "openai": "/openai/v1/images/generations",
    "fal": f"/fal/{VENDOR_MODELS['fal']}",
    "replicate": f"/replicate/v1/models/{VENDOR_MODELS['replicate']}/predictions",
    "bfl": f"/bfl/v1/{VENDOR_MODELS['bfl']}",
    "gemini": f"/gemini/v1beta/models/{VENDOR_MODELS['gemini']}:generateContent",
}


def prompt_of(vendor: str, r: Recorded) -> str:
    if r.prompt is not None:
        return r.prompt
    body = r.json or {}
    if vendor == "replicate":
        return str(body.get("input", {}).get("prompt", ""))
    if vendor == "gemini":
        return str(body["contents"][0]["parts"][0]["text"])
    return str(body.get("prompt", ""))


def submits_for(vendors: Vendors, vendor: str, marker: str) -> list[Recorded]:
    return [r for r in vendors.standin.submits(vendor) if marker in prompt_of(vendor, r)]


def check_fields(vendor: str, r: Recorded) -> None:
    """The documented request fields, with the contract's size and seed mapped per vendor."""
    body = r.json or {}
    if vendor == "openai":
        assert body["model"] == VENDOR_MODELS["openai"] and body["n"] == 1
        assert body["size"] == "1536x1024" and body["output_format"] == "png"
        assert "seed" not in body  # the Images API takes none
    elif vendor == "fal":
        assert body["image_size"] == {"width": 1024, "height": 576}
        assert body["seed"] == 1234 and body["num_images"] == 1
    elif vendor == "replicate":
        assert body["input"]["aspect_ratio"] == "16:9" and body["input"]["seed"] == 1234
    elif vendor == "bfl":
        assert (body["width"], body["height"], body["seed"]) == (1024, 576, 1234)
        assert body["width"] % 32 == 0 and body["height"] % 32 == 0
    else:
        config = body["generationConfig"]
        assert config["responseModalities"] == ["IMAGE"]
        assert config["imageConfig"]["aspectRatio"] == "16:9" and config["seed"] == 1234


def references_sent(vendor: str, r: Recorded) -> list[bytes]:
    """The reference images as the vendor received them, in order, decoded to bytes."""
    body = r.json or {}
    if vendor == "openai":
        return [data for name, _filename, _ctype, data in r.form if name == "image[]"]
    if vendor == "fal":
        values = body["image_urls"]
    elif vendor == "replicate":
        values = body["input"]["image_input"]
    elif vendor == "bfl":
        values = [body["input_image"]] + [body[f"input_image_{i}"] for i in range(2, 5) if f"input_image_{i}" in body]
    else:
        return [base64.b64decode(p["inline_data"]["data"]) for p in body["contents"][0]["parts"][1:]]
    return [base64.b64decode(v.split(",", 1)[1] if v.startswith("data:") else v) for v in values]


@dataclass
class Started:
    vendor: str
    scenario: str
    marker: str
    node_id: str
    gen_id: str


def start(account: Account, board_id: str, vendor: str, scenario: str, params: dict[str, Any] | None = None,
          refs: list[bytes] | None = None) -> Started:
    c = account.client
    marker = f"case-{uuid.uuid4().hex[:10]}"
    target = image_node(c, board_id, prompt=f"a lighthouse {marker} [[scenario:{scenario}]]")
    for data in refs or []:
        ref = image_node(c, board_id)
        r = c.post(f"/v1/nodes/{ref['id']}/image", files={"file": ("ref.png", data, "image/png")})
        assert r.status_code == 200, r.text
        connect(c, board_id, ref, target)
    gen = accepted(c, target["id"], Vendors.model(vendor), dict(params or PARAMS))
    return Started(vendor, scenario, marker, target["id"], gen["id"])


@pytest.fixture(scope="module")
def matrix(stack: Stack, vendors: Vendors) -> dict[tuple[str, str], tuple[Started, dict[str, Any], Account]]:
    """Every vendor × scenario, started at once (they wait on retries and timeouts in parallel)."""
    account = stack.new_account(credits=10_000)
    board_id = account.client.post("/v1/boards", json={"name": "vendors"}).json()["id"]
    # The slowest (timeouts, then retried errors) first: they wait while the rest are started.
    slow_first = sorted(CASES, key=lambda case: (case[1] != "timeout", OUTCOMES[case[1]].submits == 1))
    started = [start(account, board_id, vendor, scenario) for vendor, scenario in slow_first]
    return {(s.vendor, s.scenario): (s, wait_final(account.client, s.gen_id, timeout=120), account)
            for s in started}


@pytest.mark.parametrize(("vendor", "scenario"), CASES)
def test_each_vendor_outcome_ends_the_generation_and_settles_it_once(
        matrix: dict[tuple[str, str], tuple[Started, dict[str, Any], Account]], vendors: Vendors,
        vendor: str, scenario: str) -> None:
    started, gen, account = matrix[(vendor, scenario)]
    expected = OUTCOMES[scenario]
    assert gen["status"] == expected.status, gen
    assert (gen["error"] or {}).get("code") == expected.code, gen
    seen = submits_for(vendors, vendor, started.marker)
    want = expected.submits(vendor) if callable(expected.submits) else expected.submits
    assert len(seen) == want, [(r.path, r.status) for r in seen]
    header, template = AUTH_HEADER[vendor]
    for r in seen:
        assert r.path == SUBMIT_PATH[vendor]
        assert r.headers.get(header) == template.format(key=vendors.keys[vendor])
    check_fields(vendor, seen[0])
    c = account.client
    if expected.status == "succeeded":
        assert ledger_kinds(c, started.gen_id) == ["reserve", "capture"]
        img = stored_image(c, started.node_id)
        assert img.size == SIZE  # the contract's size, whatever size the vendor drew
    else:
        assert ledger_kinds(c, started.gen_id) == ["reserve", "release"]
        assert node(c, started.node_id)["status"] == "failed"
        assert gen["error"]["message"] and len(gen["error"]["message"]) <= 500
    if scenario == "auth":
        # Operators see a revoked key in the worker's metrics.
        from prometheus_client import REGISTRY

        counted = REGISTRY.get_sample_value("easel_provider_errors_total",
                                            {"provider": vendor, "code": "provider_auth_failed"})
        assert counted is not None and counted >= 1
    if scenario in ("ratelimit", "ratelimit_once"):
        # The stand-in asks for `Retry-After: 1`: no retry comes sooner.
        gaps = [b.at - a.at for a, b in zip(seen, seen[1:], strict=False)]
        assert all(gap >= 0.95 for gap in gaps), gaps


@pytest.mark.parametrize("vendor", VENDORS)
def test_references_reach_the_vendor_in_connection_order(stack: Stack, account: Account, board: dict[str, Any],
                                                         vendors: Vendors, vendor: str) -> None:
    refs = [png_bytes(40, 30, (250, 10, 10)), png_bytes(30, 40, (10, 250, 10)), png_bytes(50, 50, (10, 10, 250))]
    s = start(account, board["id"], vendor, "ok", refs=refs)
    done = wait_final(account.client, s.gen_id)
    assert done["status"] == "succeeded", done
    (sent,) = submits_for(vendors, vendor, s.marker)
    if vendor == "openai":
        assert sent.path == "/openai/v1/images/edits"
        assert sent.headers["content-type"].startswith("multipart/form-data")
    assert references_sent(vendor, sent) == refs
    assert stored_image(account.client, s.node_id).size == SIZE


def test_a_model_whose_key_is_unset_is_not_offered(stack: Stack, account: Account, board: dict[str, Any],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    from easel_shared.catalog_loader import load_offered_catalog
    from tests.fixtures.vendor_catalog import NO_KEY_MODEL, UNSET_KEY_ENV

    c = account.client
    listed = {m["id"] for m in c.get("/v1/models").json()["items"]}
    assert NO_KEY_MODEL not in listed and {Vendors.model(v) for v in VENDORS} <= listed
    n = image_node(c, board["id"], prompt="a kite")
    r = c.post(f"/v1/nodes/{n['id']}/generations", json={"model_id": NO_KEY_MODEL,
                                                         "params": {"resolution": "1K", "aspect_ratio": "1:1"}})
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_model", r.text
    with caplog.at_level("WARNING", logger="easel_shared.catalog_loader"):
        catalog = load_offered_catalog(stack.settings.model_catalog_path)
    assert NO_KEY_MODEL not in catalog.ids()
    lines = [rec.getMessage() for rec in caplog.records if UNSET_KEY_ENV in rec.getMessage()]
    assert len(lines) == 1 and NO_KEY_MODEL in lines[0]


def _job_of(vendors: Vendors, vendor: str, marker: str) -> Any:
    jobs = [j for j in vendors.standin.jobs(vendor) if marker in j.prompt]
    return jobs[0] if jobs else None


@pytest.mark.parametrize("vendor", ["fal", "bfl"])
def test_progress_of_a_vendor_job_is_on_the_generation_and_the_board_stream(
        stack: Stack, account: Account, board: dict[str, Any], vendors: Vendors, vendor: str) -> None:
    from tests.fixtures.sse import SSEClient

    with SSEClient(stack.api_url, board["id"], account.api_key) as sse:
        s = start(account, board["id"], vendor, "slow")
        job = wait_for(lambda: _job_of(vendors, vendor, s.marker), what="the vendor to hold the job")
        field = "queue_position" if vendor == "fal" else "percentage"
        try:
            # fal reports a queue position while the request waits, BFL a percentage while it runs.
            event = sse.wait_for_event(lambda e: e.event == "generation.progress" and e.data["id"] == s.gen_id
                                       and e.data["progress"][field] is not None)
            assert 0 <= event.data["progress"][field] <= (1_000 if vendor == "fal" else 1.0)
            gen = wait_for(lambda: (g := get_gen(account.client, s.gen_id))["progress"] and g,
                           what="progress on the generation")
            assert gen["status"] == "running" and set(gen["progress"]) == {"queue_position", "percentage"}
        finally:
            vendors.standin.release(job.id)
        done = wait_final(account.client, s.gen_id)
    assert done["status"] == "succeeded" and done["progress"] is None


@pytest.mark.parametrize("vendor", ["fal", "replicate"])
def test_canceling_a_queued_vendor_job_reaches_the_vendors_cancel_endpoint(
        stack: Stack, account: Account, board: dict[str, Any], vendors: Vendors, vendor: str) -> None:
    c = account.client
    s = start(account, board["id"], vendor, "slow")
    job = wait_for(lambda: _job_of(vendors, vendor, s.marker), what="the vendor to hold the job")
    wait_status(c, s.gen_id, "running")
    r = c.post(f"/v1/generations/{s.gen_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "canceled", r.text
    wait_for(lambda: [x for x in vendors.standin.cancels(vendor) if x.job_id == job.id or job.id in x.path],
             what="the vendor's cancel endpoint to be called")
    assert ledger_kinds(c, s.gen_id) == ["reserve", "release"]
    assert len(submits_for(vendors, vendor, s.marker)) == 1
