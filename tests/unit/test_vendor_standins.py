"""The vendor stand-in (tests/fixtures/vendors) driven with plain httpx exactly as each vendor's docs show,
so the adapters' tests can rely on it behaving like the real APIs."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.fixtures.vendors import VendorStandIn, palette_color

KEYS = {
    "openai": "sk-test-openai",
    "fal": "fal-key-id:fal-key-secret",
    "replicate": "r8_test_replicate",
    "bfl": "bfl-test-key",
    "gemini": "AIza-test-gemini",
}


@pytest.fixture(scope="module")
def server() -> Iterator[VendorStandIn]:
    with VendorStandIn(KEYS) as stand_in:
        yield stand_in


@pytest.fixture
def vendors(server: VendorStandIn) -> VendorStandIn:
    server.reset()
    return server


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def png_bytes(size: tuple[int, int], color: tuple[int, int, int] = (9, 9, 9)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def picture(data: bytes) -> tuple[tuple[int, int], tuple[int, int, int]]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size, image.convert("RGB").getpixel((image.width // 2, image.height // 2))


def poll(fetch: Any, done: Any, limit: int = 20) -> list[dict[str, Any]]:
    seen = []
    for _ in range(limit):
        body = fetch()
        seen.append(body)
        if done(body):
            return seen
    raise AssertionError(f"never finished: {seen[-1]}")


# --- OpenAI -----------------------------------------------------------------


def openai_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS['openai']}"}


def test_openai_generation_and_edit(vendors: VendorStandIn, http: httpx.Client) -> None:
    base = vendors.base_url("openai")
    answer = http.post(
        f"{base}/images/generations",
        headers=openai_headers(),
        json={"model": "gpt-image-1", "prompt": "a neon fox", "size": "1536x1024", "n": 1},
    )
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) >= {"created", "data", "size", "usage", "output_format", "quality"}
    assert body["size"] == "1536x1024"
    assert picture(base64.b64decode(body["data"][0]["b64_json"])) == ((1536, 1024), palette_color(0))

    refs = [png_bytes((32, 32), (1, 2, 3)), png_bytes((16, 48), (4, 5, 6))]
    files = [("image[]", (f"ref{i}.png", data, "image/png")) for i, data in enumerate(refs)]
    answer = http.post(
        f"{base}/images/edits",
        headers=openai_headers(),
        data={"model": "gpt-image-1", "prompt": "blend them", "size": "1024x1536"},
        files=files,
    )
    assert answer.status_code == 200, answer.text
    assert picture(base64.b64decode(answer.json()["data"][0]["b64_json"])) == ((1024, 1536), palette_color(2))

    submits = vendors.submits("openai")
    assert [s.prompt for s in submits] == ["a neon fox", "blend them"]
    assert submits[0].json["size"] == "1536x1024"
    assert submits[1].references == refs  # in order, byte for byte
    assert [(name, ctype) for name, filename, ctype, _ in submits[1].form if filename] == [
        ("image[]", "image/png"),
        ("image[]", "image/png"),
    ]


def test_openai_moderation_credits_and_rate_limits(vendors: VendorStandIn, http: httpx.Client) -> None:
    url = f"{vendors.base_url('openai')}/images/generations"

    def generate(prompt: str) -> httpx.Response:
        return http.post(url, headers=openai_headers(), json={"model": "gpt-image-1", "prompt": prompt})

    refused = generate("a thing [[scenario:moderated]]")
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "moderation_blocked"
    assert set(refused.json()["error"]) == {"message", "type", "param", "code"}

    broke = generate("x [[scenario:credits]]")
    assert (broke.status_code, broke.json()["error"]["code"]) == (429, "insufficient_quota")
    assert "retry-after" not in broke.headers

    first, second = generate("once [[scenario:ratelimit_once]]"), generate("once [[scenario:ratelimit_once]]")
    assert first.status_code == 429 and first.headers["retry-after"] == "1"
    assert first.headers["x-ratelimit-reset-requests"] == "1s"
    assert first.json()["error"]["code"] == "rate_limit_exceeded"
    assert second.status_code == 200

    assert [generate("y [[scenario:ratelimit]]").status_code for _ in range(2)] == [429, 429]
    assert [generate("z [[scenario:error5xx_once]]").status_code for _ in range(2)] == [500, 200]

    wrong = generate("a [[scenario:wrong_size]]")
    assert picture(base64.b64decode(wrong.json()["data"][0]["b64_json"]))[0] == (1344, 768)  # asked 1:1


# --- fal -----------------------------------------------------------------


def fal_headers() -> dict[str, str]:
    return {"Authorization": f"Key {KEYS['fal']}"}


def fal_submit(vendors: VendorStandIn, http: httpx.Client, prompt: str, **extra: Any) -> dict[str, Any]:
    answer = http.post(
        f"{vendors.base_url('fal')}/fal-ai/flux/dev", headers=fal_headers(), json={"prompt": prompt, **extra}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_fal_queue_happy_path(vendors: VendorStandIn, http: httpx.Client) -> None:
    ref = png_bytes((20, 20))
    data_uri = "data:image/png;base64," + base64.b64encode(ref).decode()
    handle = fal_submit(vendors, http, "a fox", image_size="landscape_16_9", image_url=data_uri)
    request_id = handle["request_id"]
    base = f"{vendors.base_url('fal')}/fal-ai/flux/requests/{request_id}"  # the model id without the subpath
    assert handle["status_url"] == f"{base}/status"
    assert handle["response_url"] == base
    assert handle["cancel_url"] == f"{base}/cancel"

    statuses = poll(
        lambda: http.get(handle["status_url"], headers=fal_headers(), params={"logs": 1}).json(),
        lambda body: body["status"] == "COMPLETED",
    )
    assert [s["status"] for s in statuses] == ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
    assert statuses[0]["queue_position"] == 0
    assert isinstance(statuses[1]["logs"], list)

    result = http.get(handle["response_url"], headers=fal_headers()).json()
    assert result["has_nsfw_concepts"] == [False]
    image = result["images"][0]
    assert (image["width"], image["height"]) == (1024, 576)
    assert picture(http.get(image["url"]).content) == ((1024, 576), palette_color(1))

    assert vendors.submits("fal")[0].references == [ref]
    assert vendors.jobs("fal")[0].polls == 3
    assert len(vendors.downloads()) == 1


def test_fal_moderation_and_cancel(vendors: VendorStandIn, http: httpx.Client) -> None:
    handle = fal_submit(vendors, http, "bad [[scenario:moderated]]")
    poll(lambda: http.get(handle["status_url"], headers=fal_headers()).json(), lambda b: b["status"] == "COMPLETED")
    refused = http.get(handle["response_url"], headers=fal_headers())
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["type"] == "content_policy_violation"

    queued = fal_submit(vendors, http, "to cancel [[scenario:slow]]")
    cancel = http.put(queued["cancel_url"], headers=fal_headers())
    assert (cancel.status_code, cancel.json()) == (202, {"status": "CANCELLATION_REQUESTED"})
    status = http.get(queued["status_url"], headers=fal_headers()).json()
    assert status["status"] == "COMPLETED" and status["error_type"] == "client_cancelled"
    again = http.put(queued["cancel_url"], headers=fal_headers())
    assert (again.status_code, again.json()) == (400, {"status": "ALREADY_COMPLETED"})
    assert len(vendors.cancels("fal")) == 2


def test_slow_jobs_wait_for_release(vendors: VendorStandIn, http: httpx.Client) -> None:
    handle = fal_submit(vendors, http, "take your time [[scenario:slow]]")
    for _ in range(5):
        status = http.get(handle["status_url"], headers=fal_headers()).json()["status"]
        assert status in ("IN_QUEUE", "IN_PROGRESS")
    vendors.release(handle["request_id"])
    assert http.get(handle["status_url"], headers=fal_headers()).json()["status"] == "COMPLETED"

    # a synchronous vendor holds the request open until released
    answers: list[httpx.Response] = []
    url = f"{vendors.base_url('openai')}/images/generations"
    thread = threading.Thread(
        target=lambda: answers.append(
            httpx.post(url, headers=openai_headers(), json={"prompt": "slow [[scenario:slow]]"}, timeout=10)
        )
    )
    thread.start()
    job = vendors.wait_for(lambda: vendors.jobs("openai"), timeout=5)[0]
    assert not answers
    vendors.release(job.id)
    thread.join(5)
    assert answers[0].status_code == 200


# --- Replicate -----------------------------------------------------------------


def replicate_headers(**extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS['replicate']}", **extra}


def test_replicate_predictions(vendors: VendorStandIn, http: httpx.Client) -> None:
    models = f"{vendors.base_url('replicate')}/models"
    synced = http.post(
        f"{models}/black-forest-labs/flux-1.1-pro/predictions",
        headers=replicate_headers(Prefer="wait"),
        json={"input": {"prompt": "a fox", "aspect_ratio": "1:1"}},
    )
    assert synced.status_code == 201
    assert synced.json()["status"] == "succeeded"
    assert isinstance(synced.json()["output"], str)  # flux-1.1-pro: one URL

    ref = png_bytes((10, 10))
    created = http.post(
        f"{models}/black-forest-labs/flux-schnell/predictions",
        headers=replicate_headers(),
        json={
            "input": {
                "prompt": "a wolf",
                "aspect_ratio": "16:9",
                "image": "data:image/png;base64," + base64.b64encode(ref).decode(),
            }
        },
    ).json()
    assert created["status"] == "starting"
    assert set(created["urls"]) >= {"get", "cancel"}
    states = poll(
        lambda: http.get(created["urls"]["get"], headers=replicate_headers()).json(),
        lambda p: p["status"] in ("succeeded", "failed", "canceled"),
    )
    assert [p["status"] for p in states] == ["processing", "succeeded"]
    output = states[-1]["output"]
    assert isinstance(output, list)  # flux-schnell: a list of URLs
    size, color = picture(http.get(output[0]).content)
    assert abs(size[0] / size[1] - 16 / 9) < 0.02 and color == palette_color(1)
    assert vendors.submits("replicate")[1].references == [ref]

    nsfw = http.post(
        f"{models}/black-forest-labs/flux-schnell/predictions",
        headers=replicate_headers(),
        json={"input": {"prompt": "bad [[scenario:moderated]]"}},
    ).json()
    final = poll(
        lambda: http.get(nsfw["urls"]["get"], headers=replicate_headers()).json(), lambda p: p["status"] == "failed"
    )[-1]
    assert "NSFW" in final["error"] and final["output"] is None

    slow = http.post(
        f"{models}/black-forest-labs/flux-schnell/predictions",
        headers=replicate_headers(Prefer="wait=1"),
        json={"input": {"prompt": "slow [[scenario:slow]]"}},
    ).json()
    assert slow["status"] == "starting"  # Prefer: wait gave up, answered the current state
    canceled = http.post(slow["urls"]["cancel"], headers=replicate_headers())
    assert (canceled.status_code, canceled.json()["status"]) == (200, "canceled")
    assert http.get(slow["urls"]["get"], headers=replicate_headers()).json()["status"] == "canceled"
    assert len(vendors.cancels("replicate")) == 1


# --- BFL -----------------------------------------------------------------


def test_bfl_tasks(vendors: VendorStandIn, http: httpx.Client) -> None:
    headers = {"x-key": KEYS["bfl"], "accept": "application/json"}
    first_url, first_bytes = vendors.store_image((8, 8), (1, 1, 1))
    inline = png_bytes((12, 12))
    task = http.post(
        f"{vendors.base_url('bfl')}/flux-kontext-pro",
        headers=headers,
        json={
            "prompt": "the cat from image 1 in the room of image 2",
            "input_image": base64.b64encode(inline).decode(),
            "input_image_2": first_url,
            "width": 1024,
            "height": 768,
        },
    ).json()
    assert task["polling_url"] == f"{vendors.base_url('bfl')}/get_result?id={task['id']}"
    results = poll(lambda: http.get(task["polling_url"], headers=headers).json(), lambda r: r["status"] != "Pending")
    assert [r["status"] for r in results] == ["Pending", "Pending", "Ready"]
    assert 0 <= results[0]["progress"] < results[1]["progress"] <= 1
    assert picture(http.get(results[-1]["result"]["sample"]).content) == ((1024, 768), palette_color(2))
    assert vendors.submits("bfl")[0].references == [inline, first_bytes]

    moderated = http.post(
        f"{vendors.base_url('bfl')}/flux-2-pro", headers=headers, json={"prompt": "bad [[scenario:moderated]]"}
    ).json()
    final = poll(lambda: http.get(moderated["polling_url"], headers=headers).json(), lambda r: r["status"] != "Pending")
    assert final[-1]["status"] == "Content Moderated" and final[-1]["result"] is None

    broke = http.post(f"{vendors.base_url('bfl')}/flux-2-pro", headers=headers, json={"prompt": "[[scenario:credits]]"})
    assert broke.status_code == 402 and "detail" in broke.json()


# --- Gemini -----------------------------------------------------------------


def gemini_generate(vendors: VendorStandIn, http: httpx.Client, prompt: str, **config: Any) -> httpx.Response:
    ref = png_bytes((30, 30))
    return http.post(
        f"{vendors.base_url('gemini')}/models/gemini-2.5-flash-image:generateContent",
        headers={"x-goog-api-key": KEYS["gemini"]},
        json={
            "contents": [
                {
                    "parts": [
                        {"text": prompt},
                        {"inline_data": {"mime_type": "image/png", "data": base64.b64encode(ref).decode()}},
                    ]
                }
            ],
            "generationConfig": {"responseModalities": ["IMAGE"], "imageConfig": config},
        },
    )


def test_gemini_generate_content(vendors: VendorStandIn, http: httpx.Client) -> None:
    answer = gemini_generate(vendors, http, "a fox", aspectRatio="16:9")
    assert answer.status_code == 200
    candidate = answer.json()["candidates"][0]
    assert candidate["finishReason"] == "STOP"
    inline = candidate["content"]["parts"][0]["inlineData"]
    assert inline["mimeType"] == "image/png"
    assert picture(base64.b64decode(inline["data"])) == ((1344, 768), palette_color(1))
    assert len(vendors.submits("gemini")[0].references) == 1

    blocked = gemini_generate(vendors, http, "bad [[scenario:moderated]]").json()
    assert blocked["promptFeedback"]["blockReason"] == "SAFETY" and "candidates" not in blocked
    image_blocked = gemini_generate(vendors, http, "bad [[scenario:moderated_image]]").json()
    assert image_blocked["candidates"][0]["finishReason"] == "IMAGE_SAFETY"

    wrong = gemini_generate(vendors, http, "w [[scenario:wrong_size]]", aspectRatio="16:9").json()
    data = wrong["candidates"][0]["content"]["parts"][0]["inlineData"]["data"]
    assert picture(base64.b64decode(data))[0] == (1024, 1024)

    busy = gemini_generate(vendors, http, "r [[scenario:ratelimit]]")
    assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
    assert busy.json()["error"]["status"] == "RESOURCE_EXHAUSTED"


# --- auth, timeouts -----------------------------------------------------------------


AUTH_CASES = [
    ("openai", "POST", "/images/generations", {"Authorization": "Bearer sk-wrong"}, 401),
    ("fal", "POST", "/fal-ai/flux/dev", {"Authorization": "Key wrong:key"}, 401),
    ("replicate", "POST", "/models/a/b/predictions", {"Authorization": "Bearer r8_wrong"}, 401),
    ("bfl", "POST", "/flux-2-pro", {"x-key": "wrong"}, 401),
    ("gemini", "POST", "/models/gemini-2.5-flash-image:generateContent", {"x-goog-api-key": "wrong"}, 400),
]


@pytest.mark.parametrize(("vendor", "method", "path", "headers", "status"), AUTH_CASES)
def test_a_wrong_or_missing_key_is_refused(
    vendors: VendorStandIn,
    http: httpx.Client,
    vendor: str,
    method: str,
    path: str,
    headers: dict[str, str],
    status: int,
) -> None:
    body = {"prompt": "a fox", "input": {"prompt": "a fox"}, "contents": [{"parts": [{"text": "a fox"}]}]}
    wrong = http.request(method, vendors.base_url(vendor) + path, headers=headers, json=body)
    assert wrong.status_code == status
    missing = http.request(method, vendors.base_url(vendor) + path, json=body)
    assert missing.status_code in (401, 403)
    shape = {
        "openai": lambda b: set(b["error"]) == {"message", "type", "param", "code"},
        "fal": lambda b: "detail" in b,
        "replicate": lambda b: set(b) == {"detail", "status", "title"},
        "bfl": lambda b: "detail" in b,
        "gemini": lambda b: set(b["error"]) >= {"code", "message", "status"},
    }[vendor]
    assert shape(wrong.json()) and shape(missing.json())
    assert not vendors.jobs(vendor)


def test_auth_scenario_and_timeout(vendors: VendorStandIn, http: httpx.Client) -> None:
    refused = http.post(
        f"{vendors.base_url('openai')}/images/generations",
        headers=openai_headers(),
        json={"prompt": "x [[scenario:auth]]"},
    )
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"

    with pytest.raises(httpx.ReadTimeout):
        http.post(
            f"{vendors.base_url('bfl')}/flux-2-pro",
            headers={"x-key": KEYS["bfl"]},
            json={"prompt": "hang [[scenario:timeout]]"},
            timeout=0.3,
        )
    [held] = vendors.submits("bfl")
    assert held.scenario == "timeout" and held.status is None
