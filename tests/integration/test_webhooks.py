"""Webhooks end to end: a real receiver (a ThreadingHTTPServer in this test that checks every
signature itself with `standardwebhooks`), the real api, relay and Celery worker."""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.fixtures.generation import accepted, get_gen, image_node, upload, wait_final, wait_status, worker_settings
from tests.fixtures.s3 import free_port
from tests.fixtures.stack import Account, Stack, wait_for

pytestmark = pytest.mark.integration

GENERATION_EVENTS = ["generation.started", "generation.succeeded", "generation.failed", "generation.canceled"]


class Receiver:
    """A webhook receiver on a free port. Answers with the statuses queued in `script` (then 200)
    and records every request with the outcome of its own signature check."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks/easel"
        self.secrets: list[str] = []
        self.script: list[tuple[int, dict[str, str]]] = []
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                verified_by = []
                for secret in receiver.secrets:
                    try:
                        Webhook(secret).verify(body, headers)
                        verified_by.append(secret)
                    except WebhookVerificationError:
                        pass
                with receiver._lock:
                    status, extra = receiver.script.pop(0) if receiver.script else (200, {})
                    receiver.received.append({"headers": headers, "body": body, "verified_by": verified_by,
                                              "json": json.loads(body), "status": status, "path": self.path})
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.received if r["json"]["type"] == event_type]

    def wait(self, event_type: str, count: int = 1, timeout: float = 30.0) -> list[dict[str, Any]]:
        return wait_for(lambda: len(got := self.of_type(event_type)) >= count and got, timeout=timeout,
                        what=f"{count} {event_type} request(s) at the receiver")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def subscribe(account: Account, receiver: Receiver, events: list[str], **extra: Any) -> dict[str, Any]:
    r = account.client.post("/v1/webhooks", json={"url": receiver.url, "events": events, **extra})
    assert r.status_code == 201, r.text
    endpoint: dict[str, Any] = r.json()
    receiver.secrets.append(endpoint["secret"])
    return endpoint


def deliveries(account: Account, endpoint_id: str) -> list[dict[str, Any]]:
    r = account.client.get(f"/v1/webhooks/{endpoint_id}/deliveries")
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def assert_spec(request: dict[str, Any], event_type: str, endpoint_secret: str) -> dict[str, Any]:
    """What Standard Webhooks says a request carries, checked as a receiver would."""
    headers = request["headers"]
    assert request["verified_by"] == [endpoint_secret]
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"].startswith("msg_")
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 300
    assert all(s.startswith("v1,") for s in headers["webhook-signature"].split(" "))
    body = request["json"]
    assert set(body) == {"type", "timestamp", "data"}
    assert body["type"] == event_type
    assert body["timestamp"].endswith("Z")
    data: dict[str, Any] = body["data"]
    return data


def assert_same_as_api(data: dict[str, Any], api_view: dict[str, Any]) -> None:
    for key, value in api_view.items():
        assert data[key] == value, key


# -- the generation lifecycle --------------------------------------------------------------------- #


def test_a_successful_generation_reaches_its_endpoint_as_the_spec_says(
        stack: Stack, account: Account, board: dict[str, Any], receiver: Receiver) -> None:
    endpoint = subscribe(account, receiver, GENERATION_EVENTS)
    node = image_node(account.client, board["id"], prompt="a lighthouse at dusk")
    gen = accepted(account.client, node["id"])
    done = wait_final(account.client, gen["id"])
    assert done["status"] == "succeeded"

    started = assert_spec(receiver.wait("generation.started")[0], "generation.started", endpoint["secret"])
    assert started["id"] == gen["id"] and started["status"] == "running" and started["image"] is None
    succeeded = assert_spec(receiver.wait("generation.succeeded")[0], "generation.succeeded", endpoint["secret"])
    assert_same_as_api(succeeded, get_gen(account.client, gen["id"]))
    image = succeeded["image"]
    assert image["id"] == done["image_id"]
    assert image["url"] == f"{stack.api_url}/v1/images/{done['image_id']}/content"
    assert account.client.get(image["url"].removeprefix(stack.api_url)).status_code == 302

    listed = wait_for(lambda: (d := deliveries(account, endpoint["id"])) and all(x["state"] == "delivered" for x in d)
                      and len(d) == 2 and d, what="both deliveries delivered")
    assert [d["type"] for d in listed] == ["generation.succeeded", "generation.started"]  # newest first
    assert all(d["attempts"] == 1 and d["last_status_code"] == 200 and d["next_attempt_at"] is None for d in listed)
    assert listed[0]["event_id"] == receiver.wait("generation.succeeded")[0]["headers"]["webhook-id"]


def test_a_failed_generation_is_sent_with_its_error(account: Account, board: dict[str, Any], receiver: Receiver,
                                                    blocked_words: str) -> None:
    endpoint = subscribe(account, receiver, ["generation.failed"])
    node = image_node(account.client, board["id"], prompt=f"a {blocked_words} castle")
    gen = accepted(account.client, node["id"])
    assert wait_final(account.client, gen["id"])["status"] == "failed"
    data = assert_spec(receiver.wait("generation.failed")[0], "generation.failed", endpoint["secret"])
    assert data["error"]["code"] == "content_rejected"
    assert_same_as_api(data, get_gen(account.client, gen["id"]))


def test_a_canceled_generation_is_sent_with_the_request_id_of_the_cancel(
        stack: Stack, account: Account, board: dict[str, Any], receiver: Receiver) -> None:
    endpoint = subscribe(account, receiver, ["generation.canceled"])
    node = image_node(account.client, board["id"], prompt="a quiet harbour")
    assert stack.worker is not None
    with stack.worker.paused():  # stays queued; the delivery waits for the worker too
        gen = accepted(account.client, node["id"])
        r = account.client.post(f"/v1/generations/{gen['id']}/cancel", headers={"X-Request-ID": "req-cancel-webhook"})
        assert r.status_code == 200 and r.json()["status"] == "canceled"
    data = assert_spec(receiver.wait("generation.canceled")[0], "generation.canceled", endpoint["secret"])
    assert_same_as_api(data, get_gen(account.client, gen["id"]))
    [delivery] = deliveries(account, endpoint["id"])
    assert delivery["request_id"] == "req-cancel-webhook"


def test_the_events_filter_excludes_other_types(account: Account, board: dict[str, Any], receiver: Receiver) -> None:
    only_success = subscribe(account, receiver, ["generation.succeeded"])
    node = image_node(account.client, board["id"], prompt="a red kite")
    gen = accepted(account.client, node["id"])
    wait_status(account.client, gen["id"], "succeeded")
    receiver.wait("generation.succeeded")
    wait_for(lambda: deliveries(account, only_success["id"])[0]["state"] == "delivered", what="the delivery")
    assert [d["type"] for d in deliveries(account, only_success["id"])] == ["generation.succeeded"]
    assert receiver.of_type("generation.started") == []

    # Narrowing the filter later applies to the next events.
    r = account.client.patch(f"/v1/webhooks/{only_success['id']}", json={"events": ["asset.created"]})
    assert r.status_code == 200 and r.json()["events"] == ["asset.created"]
    gen2 = accepted(account.client, node["id"])
    wait_status(account.client, gen2["id"], "succeeded")
    other = Receiver().start()
    try:  # a second endpoint that does subscribe shows the event went out
        watcher = subscribe(account, other, ["generation.succeeded"])
        gen3 = accepted(account.client, node["id"])
        wait_status(account.client, gen3["id"], "succeeded")
        assert other.wait("generation.succeeded")[0]["json"]["data"]["id"] == gen3["id"]
        wait_for(lambda: deliveries(account, watcher["id"])[0]["state"] == "delivered", what="the delivery")
    finally:
        other.stop()
    assert len(receiver.of_type("generation.succeeded")) == 1


# -- retries, disabling, outages ------------------------------------------------------------------ #


def test_500_twice_then_200_is_three_attempts_of_one_webhook_id(account: Account, receiver: Receiver) -> None:
    endpoint = subscribe(account, receiver, ["generation.succeeded"])
    receiver.script = [(500, {}), (500, {})]
    assert account.client.post(f"/v1/webhooks/{endpoint['id']}/test").status_code == 202
    got = receiver.wait("webhook.test", count=3)
    assert [r["status"] for r in got] == [500, 500, 200]
    assert len({r["headers"]["webhook-id"] for r in got}) == 1
    assert len({r["body"] for r in got}) == 1
    assert all(r["verified_by"] == [endpoint["secret"]] for r in got)
    [delivery] = wait_for(lambda: (d := deliveries(account, endpoint["id"]))[0]["state"] == "delivered" and d,
                          what="the delivery to be delivered")
    assert delivery["attempts"] == 3 and delivery["last_status_code"] == 200 and delivery["last_error"] is None
    assert delivery["type"] == "webhook.test"


def test_retry_after_on_429_is_honoured(account: Account, receiver: Receiver) -> None:
    endpoint = subscribe(account, receiver, ["asset.created"])
    receiver.script = [(429, {"Retry-After": "2"})]
    account.client.post(f"/v1/webhooks/{endpoint['id']}/test")
    first, second = receiver.wait("webhook.test", count=2)
    gap = int(second["headers"]["webhook-timestamp"]) - int(first["headers"]["webhook-timestamp"])
    assert gap >= 1  # the schedule's first delay is 0.3 s; the receiver asked for 2 s


def test_410_disables_the_endpoint(account: Account, receiver: Receiver) -> None:
    endpoint = subscribe(account, receiver, ["generation.succeeded"])
    receiver.script = [(410, {})]
    account.client.post(f"/v1/webhooks/{endpoint['id']}/test")
    receiver.wait("webhook.test")
    [delivery] = wait_for(lambda: (d := deliveries(account, endpoint["id"]))[0]["state"] == "failed" and d,
                          what="the delivery to fail")
    assert delivery["attempts"] == 1 and delivery["last_status_code"] == 410
    body = account.client.get(f"/v1/webhooks/{endpoint['id']}").json()
    assert body["enabled"] is False and "410" in body["disabled_reason"]
    r = account.client.post(f"/v1/webhooks/{endpoint['id']}/test")
    assert r.status_code == 409 and r.json()["error"]["code"] == "webhook_disabled"
    # Enabled again by its owner, it receives again.
    r = account.client.patch(f"/v1/webhooks/{endpoint['id']}", json={"enabled": True})
    assert r.json()["enabled"] is True and r.json()["disabled_reason"] is None
    account.client.post(f"/v1/webhooks/{endpoint['id']}/test")
    receiver.wait("webhook.test", count=2)


def test_a_receiver_down_when_a_generation_ends_gets_the_event_when_it_is_back(
        account: Account, board: dict[str, Any], receiver: Receiver) -> None:
    endpoint = subscribe(account, receiver, ["generation.succeeded"])
    receiver.stop()
    node = image_node(account.client, board["id"], prompt="a lantern")
    gen = accepted(account.client, node["id"])
    wait_status(account.client, gen["id"], "succeeded")
    failed_once = wait_for(lambda: (d := deliveries(account, endpoint["id"])) and d[0]["attempts"] >= 1
                           and d[0]["last_error"] and d[0], what="a failed first attempt")
    assert failed_once["state"] == "pending" and failed_once["next_attempt_at"] is not None
    assert failed_once["last_status_code"] is None

    back = Receiver(port=receiver.port)
    back.secrets = receiver.secrets
    back.start()
    try:
        data = assert_spec(back.wait("generation.succeeded")[0], "generation.succeeded", endpoint["secret"])
        assert data["id"] == gen["id"]
        delivered = wait_for(lambda: (d := deliveries(account, endpoint["id"])[0])["state"] == "delivered" and d,
                             what="the delivery to be delivered")
        assert delivered["attempts"] >= 2
    finally:
        back.stop()


# -- secrets, redelivery, test events ------------------------------------------------------------ #


def test_rotation_signs_with_both_secrets(account: Account, receiver: Receiver) -> None:
    endpoint = subscribe(account, receiver, ["asset.created"])
    old = endpoint["secret"]
    r = account.client.post(f"/v1/webhooks/{endpoint['id']}/rotate-secret")
    assert r.status_code == 200, r.text
    new = r.json()["secret"]
    assert new != old and new.startswith("whsec_") and r.json()["previous_secret_expires_at"]
    receiver.secrets.append(new)
    assert "secret" not in account.client.get(f"/v1/webhooks/{endpoint['id']}").json()

    account.client.post(f"/v1/webhooks/{endpoint['id']}/test")
    [got] = receiver.wait("webhook.test")
    assert sorted(got["verified_by"]) == sorted([old, new])
    assert len(got["headers"]["webhook-signature"].split(" ")) == 2
    assert got["json"]["data"]["endpoint_id"] == endpoint["id"]


def test_redeliver_sends_the_same_event_again(account: Account, receiver: Receiver) -> None:
    endpoint = subscribe(account, receiver, ["generation.succeeded"])
    account.client.post(f"/v1/webhooks/{endpoint['id']}/test")
    [first] = receiver.wait("webhook.test")
    [delivery] = wait_for(lambda: (d := deliveries(account, endpoint["id"]))[0]["state"] == "delivered" and d,
                          what="the first delivery")
    r = account.client.post(f"/v1/webhooks/{endpoint['id']}/deliveries/{delivery['id']}/redeliver")
    assert r.status_code == 202, r.text
    again = r.json()
    assert again["id"] != delivery["id"] and again["event_id"] == delivery["event_id"] and again["state"] == "pending"
    second = receiver.wait("webhook.test", count=2)[1]
    assert second["headers"]["webhook-id"] == first["headers"]["webhook-id"]
    assert second["body"] == first["body"] and second["verified_by"] == [endpoint["secret"]]
    listed = wait_for(lambda: (d := deliveries(account, endpoint["id"]))[0]["state"] == "delivered" and d,
                      what="the redelivery")
    assert [d["id"] for d in listed] == [again["id"], delivery["id"]]
    missing = account.client.post(f"/v1/webhooks/{endpoint['id']}/deliveries/wdl_nope/redeliver")
    assert missing.status_code == 404


def test_asset_created_arrives_when_a_node_with_an_image_is_deleted(
        stack: Stack, account: Account, board: dict[str, Any], receiver: Receiver) -> None:
    if stack.assets_url is None:
        pytest.skip("the assets service is not installed")
    endpoint = subscribe(account, receiver, ["asset.created"])
    node = image_node(account.client, board["id"])
    upload(account.client, node["id"])
    r = account.client.delete(f"/v1/nodes/{node['id']}")
    assert r.status_code == 200, r.text
    asset_id = r.json()["asset_id"]
    data = assert_spec(receiver.wait("asset.created")[0], "asset.created", endpoint["secret"])
    assert data["id"] == asset_id
    assets = stack.client(account.api_key, base_url=stack.assets_url)
    assert data == assets.get(f"/v1/assets/{asset_id}").json()


# -- safety ------------------------------------------------------------------------------------- #


def test_an_endpoint_on_a_private_address_is_refused_unless_allowed(account: Account, receiver: Receiver) -> None:
    from easel_worker.jobs.webhooks import send

    outcome = send(receiver.url, "msg_x", "{}", ("whsec_" + "A" * 44,), timeout=5, allow_http=True,
                   allow_private=False)
    assert outcome.refused and "loopback" in (outcome.error or "")
    assert send(receiver.url.replace("http://", "https://"), "msg_x", "{}", ("whsec_" + "A" * 44,), timeout=5,
                allow_http=False, allow_private=True).refused is False  # https passes the check (TLS then fails)
    assert send(receiver.url, "msg_x", "{}", ("whsec_" + "A" * 44,), timeout=5, allow_http=False,
                allow_private=True).refused
    assert receiver.received == []

    # Through the worker, with the stack's setting turned off: the attempt is refused and retried.
    endpoint = subscribe(account, receiver, ["asset.created"])
    with worker_settings(webhook_allow_private_networks=False):
        account.client.post(f"/v1/webhooks/{endpoint['id']}/test")
        refused = wait_for(lambda: (d := deliveries(account, endpoint["id"])) and d[0]["last_error"] and d[0],
                           what="a refused attempt")
        assert "private networks are not allowed" in refused["last_error"]
        assert refused["state"] == "pending" and refused["last_status_code"] is None
        assert receiver.of_type("webhook.test") == []


@pytest.mark.parametrize(("address", "refused"), [
    ("127.0.0.1", True), ("10.1.2.3", True), ("172.16.0.1", True), ("192.168.1.1", True), ("169.254.169.254", True),
    ("169.254.1.1", True), ("::1", True), ("fd00:ec2::254", True), ("fe80::1", True), ("224.0.0.1", True),
    ("0.0.0.0", True), ("240.0.0.1", True), ("::ffff:127.0.0.1", True), ("100.64.0.1", False),
    ("8.8.8.8", False), ("2606:4700:4700::1111", False),
])
def test_address_rules(address: str, refused: bool) -> None:
    from easel_shared.webhooks import refusal

    assert (refusal(ipaddress.ip_address(address)) is not None) is refused


def test_the_api_refuses_urls_and_events_it_cannot_send_to(stack: Stack) -> None:
    from types import SimpleNamespace

    from easel_api.services.webhooks import _check_url
    from easel_shared.domain.errors import InvalidField

    strict = SimpleNamespace(settings=stack.settings.model_copy(
        update={"webhook_allow_http": False, "webhook_allow_private_networks": False}))
    for url in ("http://example.com/hook", "ftp://example.com/x", "https://127.0.0.1/hook", "https://[::1]/x",
                "https://169.254.169.254/latest", "https:///nohost", "https://example.com/a#frag",
                "https://xn--ls8h.la/", "https://[::1", "https://example.com:99999/"):
        with pytest.raises(InvalidField):
            _check_url(strict, url)  # type: ignore[arg-type]
    assert _check_url(strict, "https://example.com/hook") == "https://example.com/hook"  # type: ignore[arg-type]


def test_inputs_are_bounded(stack: Stack) -> None:
    account = stack.new_account()
    c = account.client
    url = "https://example.com/hook"
    assert c.post("/v1/webhooks", json={"url": url, "events": ["generation.exploded"]}).status_code == 422
    assert c.post("/v1/webhooks", json={"url": url, "events": []}).status_code == 422
    assert c.post("/v1/webhooks", json={"url": "https://e.com/" + "a" * 2048, "events": ["asset.created"]}
                  ).status_code == 422
    assert c.post("/v1/webhooks", json={"url": url, "events": ["asset.created"], "description": "d" * 501}
                  ).status_code == 422
    assert c.post("/v1/webhooks", json={"url": url, "events": ["asset.created"], "extra": 1}).status_code == 422
    created = [c.post("/v1/webhooks", json={"url": url, "events": ["asset.created"], "description": f"#{i}"})
               for i in range(20)]
    assert all(r.status_code == 201 for r in created)
    first = created[0].json()
    assert first["id"].startswith("whk_") and first["secret"].startswith("whsec_") and first["enabled"] is True
    assert first["description"] == "#0" and first["events"] == ["asset.created"] and first["created_at"]
    over = c.post("/v1/webhooks", json={"url": url, "events": ["asset.created"]})
    assert over.status_code == 409 and over.json()["error"]["code"] == "webhook_limit_reached"
    page1 = c.get("/v1/webhooks", params={"limit": 15}).json()
    page2 = c.get("/v1/webhooks", params={"limit": 15, "cursor": page1["next_cursor"]}).json()
    assert len(page1["items"]) == 15 and len(page2["items"]) == 5 and page2["next_cursor"] is None
    assert all("secret" not in e for e in page1["items"] + page2["items"])
    assert c.delete(f"/v1/webhooks/{first['id']}").status_code == 204
    assert c.get(f"/v1/webhooks/{first['id']}").status_code == 404
    assert c.post("/v1/webhooks", json={"url": url, "events": ["asset.created"]}).status_code == 201


def test_event_types_of_the_schema_are_the_shared_ones() -> None:
    from typing import get_args

    from easel_api.schemas.webhooks import EventType
    from easel_shared.webhooks import EVENT_TYPES

    assert get_args(EventType) == EVENT_TYPES


# -- isolation ---------------------------------------------------------------------------------- #


def test_another_account_can_neither_see_nor_change_an_endpoint_nor_receive_its_events(
        stack: Stack, account: Account, board: dict[str, Any], receiver: Receiver) -> None:
    mine = subscribe(account, receiver, GENERATION_EVENTS)
    other = stack.new_account()
    base = f"/v1/webhooks/{mine['id']}"
    for method, path, body in (("GET", base, None), ("PATCH", base, {"enabled": False}), ("DELETE", base, None),
                               ("POST", f"{base}/rotate-secret", None), ("POST", f"{base}/test", None),
                               ("GET", f"{base}/deliveries", None)):
        r = other.client.request(method, path, json=body)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["error"]["code"] == "not_found"
    assert other.client.get("/v1/webhooks").json()["items"] == []
    assert account.client.get(base).json()["enabled"] is True

    theirs = Receiver().start()
    try:
        their_endpoint = subscribe(other, theirs, ["generation.succeeded"])
        other_board = other.client.post("/v1/boards", json={"name": "theirs"}).json()
        node = image_node(other.client, other_board["id"], prompt="someone else's picture")
        gen = accepted(other.client, node["id"])
        wait_status(other.client, gen["id"], "succeeded")
        assert theirs.wait("generation.succeeded")[0]["json"]["data"]["id"] == gen["id"]
        # Our own event after theirs proves our endpoint was being served meanwhile.
        my_node = image_node(account.client, board["id"], prompt="mine")
        my_gen = accepted(account.client, my_node["id"])
        wait_status(account.client, my_gen["id"], "succeeded")
        receiver.wait("generation.succeeded")
        assert {r["json"]["data"]["id"] for r in receiver.received} == {my_gen["id"]}
        assert [d["type"] for d in deliveries(other, their_endpoint["id"])] == ["generation.succeeded"]
        r = account.client.get(f"/v1/webhooks/{their_endpoint['id']}/deliveries")
        assert r.status_code == 404
    finally:
        theirs.stop()


def test_webhook_routes_need_a_key(stack: Stack) -> None:
    r = httpx.get(f"{stack.api_url}/v1/webhooks", timeout=10)
    assert r.status_code == 401


def test_an_endpoint_gets_no_event_that_happened_before_it_was_made(stack: Stack, account: Account,
                                                                     receiver: Receiver) -> None:
    """An event can be fanned out well after it happened (Redis was away, the relay was behind);
    an endpoint made in between must not receive it. (test_the_events_filter_excludes_other_types
    once saw the previous generation's event reach an endpoint made after it.)"""
    from datetime import timedelta

    from sqlmodel import Session

    from easel_shared.clock import utcnow
    from easel_shared.ids import new_id
    from easel_shared.messages import WebhookEvent
    from easel_shared.models import OutboxEvent
    from easel_shared.repositories import outbox

    endpoint = subscribe(account, receiver, ["generation.succeeded"])

    def event(gen_id: str, occurred_ago: timedelta) -> int:
        message = WebhookEvent(event_id=new_id("evt"), type="generation.succeeded", timestamp=utcnow().isoformat(),
                               data={"id": gen_id})
        with Session(stack.engine) as session:  # committed: this process's after-commit relay fans it out
            row = outbox.enqueue(session, message, account.id)
            row.created_at = utcnow() - occurred_ago
            session.commit()
            assert row.id is not None
            return row.id

    before = event("gen_before_the_endpoint", timedelta(minutes=5))
    event("gen_after_the_endpoint", timedelta(0))
    assert receiver.wait("generation.succeeded")[0]["json"]["data"]["id"] == "gen_after_the_endpoint"

    def fanned_out() -> bool:
        with Session(stack.engine) as session:
            row = session.get(OutboxEvent, before)
            return row is not None and row.processed_at is not None

    wait_for(fanned_out, what="the earlier event to be fanned out")
    assert [d["type"] for d in deliveries(account, endpoint["id"])] == ["generation.succeeded"]
    assert [m["json"]["data"]["id"] for m in receiver.of_type("generation.succeeded")] == ["gen_after_the_endpoint"]
