"""The reference canvas (`/canvas`) in a real Chromium, against the real stack: what a person
sees and clicks. Screenshots of the main states go to `test-artifacts/canvas/`.

Chromium is Debian's (`make chromium` installs it); Playwright's own browser builds are not
used. Without it these tests skip, and fail when CI=true."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import re
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image as PILImage
from playwright.sync_api import BrowserContext, Locator, Page, expect, sync_playwright

from tests.fixtures.generation import STUDIO, connect, image_node, text_node, upload
from tests.fixtures.s3 import free_port
from tests.fixtures.stack import SQLITE_ONLY, Account, ServerThread, Stack, png_bytes, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "canvas"
VIDEO_REFUSED = "No image model currently supports video as input."
UPSTREAM_BUSY = "Upstream task in progress."
PAGE_ERRORS: dict[Page, list[str]] = {}  # uncaught exceptions of the page's scripts
WAIT_MS = 20_000  # longest wait for page state (generous for a 2-core machine; never a sleep)

# The canvas is the same page whichever database the api uses: one pass, on SQLite.
pytestmark = [pytest.mark.integration, SQLITE_ONLY]

expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserContext]:
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing: run `make chromium` (Debian's chromium package)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="easel-chromium-") as profile:
        ctx = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1440, "height": 900}, accept_downloads=True)
        ctx.set_default_timeout(WAIT_MS)
        yield ctx
        ctx.close()


@pytest.fixture
def pages(browser: BrowserContext) -> Iterator[list[Page]]:
    """Pages opened by a test, closed after it."""
    opened: list[Page] = []
    yield opened
    for p in opened:
        p.close()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def sign_in(browser: BrowserContext, pages: list[Page], base_url: str, api_key: str) -> Page:
    page = browser.new_page()
    pages.append(page)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{base_url}/canvas")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("API key").fill(api_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Boards")).to_be_visible()
    PAGE_ERRORS[page] = errors
    return page


def open_board(page: Page, board: dict[str, Any]) -> None:
    page.get_by_role("link", name=board["name"]).click()
    expect(page.locator("#live")).to_have_text("Live")


def node(page: Page, node_id: str) -> Locator:
    return page.locator(f'.node[data-node-id="{node_id}"]')


def node_ids(page: Page, kind: str) -> list[str]:
    return page.locator(f".node.kind-{kind}").evaluate_all("els => els.map(e => e.dataset.nodeId)")


def drag_connect(page: Page, source_id: str, target_id: str) -> None:
    node(page, source_id).locator(".port.out").drag_to(node(page, target_id).locator(".node-head"))


def api_node(account: Account, node_id: str) -> dict[str, Any]:
    r = account.client.get(f"/v1/nodes/{node_id}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def place(c: httpx.Client, *where: tuple[dict[str, Any], int, int]) -> None:
    for n, x, y in where:
        r = c.patch(f"/v1/nodes/{n['id']}", json={"position": {"x": x, "y": y}})
        assert r.status_code == 200, r.text


def no_page_errors(*pages: Page) -> None:
    for p in pages:
        assert PAGE_ERRORS.pop(p, []) == []


def test_walk_through_as_a_person_clicks_it(stack: Stack, account: Account, browser: BrowserContext,
                                           pages: list[Page], tmp_path: Path) -> None:
    page = sign_in(browser, pages, stack.api_url, account.api_key)
    assert page.evaluate("sessionStorage.getItem('easel.apiKey')") == account.api_key

    # A new board from the boards list.
    page.get_by_label("Board name").fill("Lighthouse moodboard")
    page.get_by_role("button", name="Create board").click()
    expect(page.locator("#board-name")).to_have_text("Lighthouse moodboard")
    expect(page.locator("#live")).to_have_text("Live")
    board_id = page.evaluate("location.hash").rsplit("/", 1)[-1]

    # Nodes: a text, two images (a reference and the one we generate), a video.
    page.get_by_role("button", name="+ Text").click()
    expect(page.locator(".node.kind-text")).to_have_count(1)
    page.get_by_role("button", name="+ Image").click()
    expect(page.locator(".node.kind-image")).to_have_count(1)
    page.get_by_role("button", name="+ Image").click()
    expect(page.locator(".node.kind-image")).to_have_count(2)
    page.get_by_role("button", name="+ Video").click()
    expect(page.locator(".node.kind-video")).to_have_count(1)
    (text_id,) = node_ids(page, "text")
    ref_id, target_id = node_ids(page, "image")
    (video_id,) = node_ids(page, "video")

    node(page, text_id).get_by_label("Text").fill("a lighthouse at dusk")
    node(page, text_id).get_by_label("Text").blur()
    wait_for(lambda: api_node(account, text_id)["text"] == "a lighthouse at dusk", what="the text to be saved")

    # Drag the text node down by its title: the new position is saved.
    before = api_node(account, text_id)["position"]
    head = node(page, text_id).locator(".node-head")
    box = head.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + 40, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + 40 + 300, box["y"] + box["height"] / 2 + 280, steps=8)
    page.mouse.up()
    moved = wait_for(lambda: (p := api_node(account, text_id)["position"]) != before and p,
                     what="the dragged position to be saved")
    assert abs(moved["x"] - before["x"] - 300) <= 1 and abs(moved["y"] - before["y"] - 280) <= 1, (before, moved)

    # Connect text -> target and reference -> target by dragging from the output dot.
    drag_connect(page, text_id, target_id)
    expect(page.locator("svg.edges .edge")).to_have_count(1)
    drag_connect(page, ref_id, target_id)
    expect(page.locator("svg.edges .edge")).to_have_count(2)
    # Video -> image is refused, and the tooltip near the target says why.
    drag_connect(page, video_id, target_id)
    tooltip = page.get_by_role("tooltip")
    expect(tooltip).to_have_text(VIDEO_REFUSED)
    shot(page, "01-refused-connection")
    expect(page.locator("svg.edges .edge")).to_have_count(2)

    # Upload into the reference node through the file chooser.
    with page.expect_file_chooser() as chooser:
        node(page, ref_id).get_by_role("button", name="Upload").click()
    chooser.value.set_files(files=[{"name": "ref.png", "mimeType": "image/png",
                                    "buffer": png_bytes(320, 240, (30, 90, 200))}])
    expect(node(page, ref_id).locator("img.thumb")).to_be_visible()
    expect(node(page, ref_id).locator(".toolbar button")).to_have_text(["Crop", "Full screen", "Download"])

    # The generation panel of the target: reference strip, upstream text, placeholder, models.
    node(page, target_id).locator(".node-head").click()
    panel = page.locator("aside.panel:not(.library)")
    expect(panel).to_be_visible()
    expect(panel.locator(".ref .ref-num")).to_have_text(["1"])
    expect(panel.locator(".ref img")).to_be_visible()
    expect(panel.locator(".text-chip .chip-text")).to_have_text("a lighthouse at dusk")
    expect(panel.get_by_label("Prompt")).to_have_attribute("placeholder", "Describe the image you want to generate.")
    panel.get_by_label("Model").select_option(STUDIO)
    quote = account.client.post(f"/v1/nodes/{target_id}/quote",
                                json={"model_id": STUDIO, "params": {"resolution": "1K", "aspect_ratio": "1:1"}}).json()
    generate = panel.locator("button.generate")
    expect(generate).to_have_text(f"Generate · {quote['credits']} credits")
    expect(generate).to_be_enabled()
    shot(page, "02-panel-with-price")

    generate.click()
    expect(node(page, target_id).locator("img.thumb")).to_be_visible()
    expect(node(page, target_id).locator(".toolbar button")).to_have_text(["Crop", "Full screen", "Download"])
    done = api_node(account, target_id)
    assert done["status"] == "ready" and done["image"]["source"] == "generation"
    assert done["model_id"] == STUDIO
    expect(page.locator("#credits")).to_have_text(f"{1000 - quote['credits']} credits")
    shot(page, "03-generated")

    # Crop: drag a rectangle over the image, apply.
    node(page, target_id).get_by_role("button", name="Crop").click()
    stage = page.get_by_test_id("crop-stage")
    # Ready once the image is decoded and laid out and the stage listens (a drag before that
    # landed on a smaller box: the test once cropped 92 px instead of ~500 on a loaded machine).
    expect(stage).to_have_attribute("data-ready", "true")
    sbox = stage.bounding_box()
    assert sbox is not None
    page.mouse.move(sbox["x"] + sbox["width"] * 0.1, sbox["y"] + sbox["height"] * 0.2)
    page.mouse.down()
    page.mouse.move(sbox["x"] + sbox["width"] * 0.6, sbox["y"] + sbox["height"] * 0.7, steps=6)
    page.mouse.up()
    expect(page.locator(".crop-size")).to_have_text(re.compile(r"\d+ × \d+ px"))
    shot(page, "04-crop")
    page.get_by_role("button", name="Apply crop").click()
    expect(page.get_by_role("dialog", name="Crop image")).to_have_count(0)
    cropped = wait_for(lambda: (n := api_node(account, target_id))["image"]["source"] == "crop" and n,
                       what="the crop")
    assert 400 < cropped["image"]["width"] < 600 and 400 < cropped["image"]["height"] < 600

    # Full screen: the image over the whole window.
    node(page, target_id).get_by_role("button", name="Full screen").click()
    full = page.get_by_role("dialog", name="Full screen image").locator("img")
    expect(full).to_be_visible()
    wait_for(lambda: full.evaluate("img => img.complete && img.naturalWidth") == cropped["image"]["width"],
             what="the full-size image to load")
    shot(page, "05-full-screen")
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_have_count(0)

    # Download: the stored bytes, under storage's file name.
    with page.expect_download() as dl:
        node(page, target_id).get_by_role("button", name="Download").click()
    saved = tmp_path / dl.value.suggested_filename
    dl.value.save_as(saved)
    with PILImage.open(io.BytesIO(saved.read_bytes())) as img:
        assert img.size == (cropped["image"]["width"], cropped["image"]["height"])

    # Delete the reference node: its image is kept in the library; put it back on the board.
    node(page, ref_id).get_by_role("button", name="Delete node").click()
    expect(node(page, ref_id)).to_have_count(0)
    expect(page.get_by_role("status").filter(has_text="Its image is kept in your assets library.")).to_be_visible()
    page.get_by_role("button", name="Open library").click()
    library = page.locator("aside.library")
    expect(library.locator("li.asset")).to_have_count(1)
    expect(library.locator("li.asset img")).to_be_visible()
    expect(panel.locator(".refs .none")).to_be_visible()  # the target's reference strip emptied live
    shot(page, "06-library")
    library.get_by_role("button", name="Put on board").click()
    expect(page.locator(".node.kind-image")).to_have_count(2)
    back_id = next(i for i in node_ids(page, "image") if i != target_id)
    expect(node(page, back_id).locator("img.thumb")).to_be_visible()
    assert api_node(account, back_id)["image"]["source"] == "asset"
    r = account.client.get(f"/v1/boards/{board_id}")
    assert {n["id"] for n in r.json()["nodes"]} == {text_id, target_id, video_id, back_id}
    no_page_errors(page)


def test_a_model_is_greyed_out_when_too_many_references_are_connected(
        stack: Stack, account: Account, board: dict[str, Any], browser: BrowserContext, pages: list[Page]) -> None:
    c = account.client
    target = image_node(c, board["id"], prompt="two references")
    refs = [image_node(c, board["id"]) for _ in range(2)]
    for color, ref in zip([(200, 40, 40), (40, 200, 40)], refs, strict=True):
        upload(c, ref["id"], color=color)
    edges = [connect(c, board["id"], ref, target) for ref in refs]
    place(c, (refs[0], 40, 40), (refs[1], 40, 320), (target, 360, 180))
    models = {m["id"]: m for m in c.get(f"/v1/nodes/{target['id']}/models").json()["items"]}
    sketch = models["easel-sketch"]
    assert not sketch["available"]

    page = sign_in(browser, pages, stack.api_url, account.api_key)
    open_board(page, board)
    node(page, target["id"]).locator(".node-head").click()
    panel = page.locator("aside.panel:not(.library)")
    expect(panel.locator(".ref .ref-num")).to_have_text(["1", "2"])
    option = panel.get_by_label("Model").locator('option[value="easel-sketch"]')
    expect(option).to_be_disabled()
    expect(panel.locator('.model-reasons li[data-model-id="easel-sketch"]')).to_have_text(sketch["reason"])
    expect(panel.get_by_label("Model")).not_to_have_value("easel-sketch")
    expect(panel.locator("button.generate")).to_be_enabled()
    shot(page, "07-model-greyed-out")

    # A file dropped on an empty node's display area is uploaded into it.
    empty = image_node(c, board["id"])
    place(c, (empty, 700, 40))
    display = node(page, empty["id"]).locator(".display")
    files = page.evaluate_handle("""(b64) => {
        const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "dropped.png", { type: "image/png" }));
        return dt;
    }""", base64.b64encode(png_bytes(90, 60, (240, 200, 20))).decode())
    display.dispatch_event("dragover", {"dataTransfer": files})
    display.dispatch_event("drop", {"dataTransfer": files})
    expect(display.locator("img.thumb")).to_be_visible()
    assert api_node(account, empty["id"])["image"]["width"] == 90

    # Another client removes a reference: the model comes back without a reload.
    assert c.delete(f"/v1/edges/{edges[1]['id']}").status_code == 204
    expect(panel.locator(".ref .ref-num")).to_have_text(["1"])
    expect(option).to_be_enabled()
    expect(panel.locator(".model-reasons li")).to_have_count(
        sum(1 for m in c.get(f"/v1/nodes/{target['id']}/models").json()["items"] if not m["available"]))
    no_page_errors(page)


def test_a_generation_started_in_one_page_shows_in_the_other(
        stack: Stack, account: Account, board: dict[str, Any], browser: BrowserContext, pages: list[Page]) -> None:
    c = account.client
    text = text_node(c, board["id"], "a red bicycle")
    first = image_node(c, board["id"])
    second = image_node(c, board["id"], prompt="the same bicycle, at night")
    connect(c, board["id"], text, first)
    connect(c, board["id"], first, second)
    place(c, (text, 40, 80), (first, 320, 80), (second, 600, 80))

    one = sign_in(browser, pages, stack.api_url, account.api_key)
    two = sign_in(browser, pages, stack.api_url, account.api_key)
    open_board(one, board)
    open_board(two, board)
    node(two, second["id"]).locator(".node-head").click()
    generate_two = two.locator("aside.panel:not(.library) button.generate")
    expect(generate_two).to_be_enabled()

    assert stack.worker is not None
    with stack.worker.paused():  # the generation stays in progress while we look
        node(one, first["id"]).locator(".node-head").click()
        generate = one.locator("aside.panel:not(.library) button.generate")
        expect(generate).to_be_enabled()
        generate.click()
        # The other page learns it from the live stream.
        expect(node(two, first["id"]).locator(".node-badge")).to_have_text("generating")
        expect(node(two, first["id"]).locator(".node-status")).to_have_text(re.compile(r"Queued…|Generating…"))
        expect(node(two, second["id"]).locator(".node-status")).to_have_text(UPSTREAM_BUSY)
        expect(generate_two).to_be_disabled()
        expect(two.locator("aside.panel:not(.library) .why")).to_have_text(UPSTREAM_BUSY)
        expect(one.locator("aside.panel:not(.library) .why")).to_have_text(
            "An image is already being generated on this node.")
        shot(two, "08-second-page-upstream-in-progress")
    # The worker is back: both pages see it finish.
    for p in (one, two):
        expect(node(p, first["id"]).locator("img.thumb")).to_be_visible()
        expect(node(p, second["id"]).locator(".node-status")).to_have_text("")
    expect(generate_two).to_be_enabled()
    no_page_errors(one, two)


@contextlib.contextmanager
def replica(stack: Stack, port: int) -> Iterator[str]:
    """Another api replica on `port`: a real uvicorn server (in a thread, so starting it again
    takes a second rather than a process start) on the stack's database, Redis and storage."""
    from easel_api.main import create_app

    url = f"http://127.0.0.1:{port}"
    server = ServerThread(create_app(stack.settings.model_copy(update={"api_public_url": url})), port)
    server.start()
    try:
        yield url
    finally:
        server.stop()


def test_the_page_catches_up_after_its_api_restarts(
        stack: Stack, account: Account, board: dict[str, Any], browser: BrowserContext, pages: list[Page]) -> None:
    c = account.client
    kept = text_node(c, board["id"], "before the restart")
    place(c, (kept, 40, 60))
    port = free_port()
    with replica(stack, port) as url:
        page = sign_in(browser, pages, url, account.api_key)
        open_board(page, board)
        expect(node(page, kept["id"]).get_by_label("Text")).to_have_value("before the restart")
        page.evaluate("window.__notReloaded = true")
    # The page's api is gone; its stream notices and keeps trying.
    expect(page.locator("#live")).to_have_text("Reconnecting…")
    shot(page, "09-reconnecting")
    # Changes made meanwhile through another api replica.
    assert c.patch(f"/v1/nodes/{kept['id']}", json={"text": "changed while away"}).status_code == 200
    added = image_node(c, board["id"], prompt="added while away")
    place(c, (added, 360, 60))
    connect(c, board["id"], kept, added)
    with replica(stack, port):
        expect(page.locator("#live")).to_have_text("Live")
        expect(node(page, kept["id"]).get_by_label("Text")).to_have_value("changed while away")
        expect(node(page, added["id"])).to_be_visible()
        expect(page.locator("svg.edges .edge")).to_have_count(1)
        assert page.evaluate("window.__notReloaded") is True
        shot(page, "10-caught-up")
    no_page_errors(page)


def test_the_page_loads_without_credentials(stack: Stack) -> None:
    r = httpx.get(f"{stack.api_url}/canvas", follow_redirects=True)
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert httpx.get(f"{stack.api_url}/canvas/config.json").json() == {"assets_url": stack.assets_url}
    assert httpx.get(f"{stack.api_url}/canvas/..%2Fmain.py").status_code == 404
    assert httpx.get(f"{stack.api_url}/v1/boards").status_code == 401  # the api itself still wants the key


def test_the_event_stream_parser_follows_the_sse_spec(stack: Stack, browser: BrowserContext,
                                                      pages: list[Page]) -> None:
    page = browser.new_page()
    pages.append(page)
    page.goto(f"{stack.api_url}/canvas/")
    got = page.evaluate("""async () => {
        const { SseParser } = await import("./events.js");
        const seen = [];
        const ids = [];
        const p = new SseParser((type, data, id) => seen.push([type, data, id]), (id) => ids.push(id));
        // CRLF split across chunks, a comment, a multi-line data field, an event without a type.
        const chunks = [": keep-alive\\r", "\\n\\r\\nid: 1-0\\r", "\\nevent: node.updated\\ndata: {\\"a\\":",
                        "1}\\ndata: 2\\n\\n", "data:x\\n\\n", "id\\n\\n", "id: 2-0\\nevent: e\\n\\n"];
        for (const chunk of chunks) p.push(chunk);
        return { seen, ids };
    }""")
    assert got["seen"] == [["node.updated", '{"a":1}\n2', "1-0"], ["message", "x", "1-0"]]
    # Every dispatch sets the id to resume from; a bare "id" clears it (the server's "start afresh").
    assert got["ids"] == ["1-0", "1-0", "", "2-0"]


def test_a_300_node_board_redraws_only_what_changed(stack: Stack, account: Account, board: dict[str, Any],
                                                    browser: BrowserContext, pages: list[Page]) -> None:
    c = account.client

    def add(i: int) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": "text" if i % 2 else "image",
                                "position": {"x": 40 + (i % 20) * 260, "y": 40 + (i // 20) * 240}}
        if i % 2:
            body["text"] = f"note {i}"
        r = c.post(f"/v1/boards/{board['id']}/nodes", json=body)
        assert r.status_code == 201, r.text
        return r.json()

    with ThreadPoolExecutor(4) as pool:
        made = list(pool.map(add, range(300)))
    for a, b in zip(made[1::2][:100], made[0::2][1:101], strict=True):  # text -> image, 100 edges
        connect(c, board["id"], a, b)

    page = sign_in(browser, pages, stack.api_url, account.api_key)
    open_board(page, board)
    expect(page.locator(".node")).to_have_count(300)
    expect(page.locator("svg.edges .edge")).to_have_count(100)
    # Watch which nodes' elements change while another client edits one text node.
    page.evaluate("""() => {
        window.__touched = new Set();
        new MutationObserver((records) => {
            for (const r of records) {
                const el = (r.target.nodeType === 1 ? r.target : r.target.parentElement).closest(".node");
                if (el) window.__touched.add(el.dataset.nodeId);
            }
        }).observe(document.querySelector(".nodes"), { subtree: true, childList: true, attributes: true,
                                                        characterData: true });
    }""")
    edited = made[151]
    assert c.patch(f"/v1/nodes/{edited['id']}", json={"text": "edited elsewhere"}).status_code == 200
    expect(node(page, edited["id"]).get_by_label("Text")).to_have_value("edited elsewhere")
    touched = page.evaluate("[...window.__touched]")
    # The edited node, and at most the image node it feeds (its upstream text changed).
    downstream = {e["target_node_id"] for e in c.get(f"/v1/boards/{board['id']}").json()["edges"]
                  if e["source_node_id"] == edited["id"]}
    assert set(touched) <= {edited["id"], *downstream}, touched
    no_page_errors(page)


def test_a_failed_generation_says_why(stack: Stack, account: Account, board: dict[str, Any], blocked_words: str,
                                      browser: BrowserContext, pages: list[Page]) -> None:
    target = image_node(account.client, board["id"], prompt=f"a {blocked_words} picture")
    place(account.client, (target, 60, 60))
    page = sign_in(browser, pages, stack.api_url, account.api_key)
    open_board(page, board)
    node(page, target["id"]).locator(".node-head").click()
    page.locator("aside.panel:not(.library) button.generate").click()
    expect(node(page, target["id"]).locator(".node-badge")).to_have_text("failed")
    failed = api_node(account, target["id"])
    assert failed["status"] == "failed" and failed["error"]["code"] == "content_rejected"
    message = f"Failed: {failed['error']['message']}"
    expect(node(page, target["id"]).locator(".node-status")).to_have_text(message)
    expect(page.locator("aside.panel:not(.library) .panel-status")).to_have_text(message)
    expect(node(page, target["id"]).get_by_role("button", name="Upload")).to_be_visible()  # the failed toolbar
    expect(page.locator("#credits")).to_have_text("1000 credits")  # released
    no_page_errors(page)
