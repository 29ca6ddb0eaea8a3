"""With OTEL_EXPORTER_OTLP_ENDPOINT set, one trace runs from the api request through Celery into
the worker. A local OTLP/HTTP collector (a tiny HTTP server) receives the spans."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from easel_shared.migrate import upgrade
from tests.fixtures.processes import api_process, running, service_env
from tests.fixtures.stack import Stack, one_database, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, one_database()]


class Collector:
    def __init__(self) -> None:
        self.spans: list[tuple[str, str, bytes, bytes]] = []  # (service, name, trace_id, parent_span_id)
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                req = ExportTraceServiceRequest()
                req.ParseFromString(body)
                with collector.lock:
                    for rs in req.resource_spans:
                        service = next((a.value.string_value for a in rs.resource.attributes
                                        if a.key == "service.name"), "")
                        for ss in rs.scope_spans:
                            for span in ss.spans:
                                collector.spans.append((service, span.name, span.trace_id, span.parent_span_id))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def snapshot(self) -> list[tuple[str, str, bytes, bytes]]:
        with self.lock:
            return list(self.spans)


@pytest.fixture
def traced_processes(stack: Stack, database_factory: Callable[[str], str]) -> Iterator[tuple[Collector, str]]:
    collector = Collector()
    # A database and a Redis database of their own: the in-process stack's relays and worker
    # never see this api's rows or tasks (its relay could otherwise claim a dispatch first and
    # run the generation in the untraced in-process worker).
    db_url = database_factory(stack.db_kind)
    upgrade(db_url)
    redis_url = stack.settings.redis_url.rsplit("/", 1)[0] + "/3"
    traced = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "100",
              "REDIS_URL": redis_url, "DATABASE_URL": db_url}
    try:
        with api_process(stack.settings, **traced) as url, \
                running("easel_worker", service_env(stack.settings, **traced)):
            yield collector, url
    finally:
        collector.server.shutdown()


def test_one_trace_from_request_to_worker(stack: Stack, traced_processes: tuple[Collector, str]) -> None:
    collector, url = traced_processes
    admin = {"Authorization": f"Bearer {stack.settings.admin_token}"}
    made = httpx.post(f"{url}/v1/admin/accounts", json={"name": "traced", "credits": 50}, headers=admin, timeout=30)
    assert made.status_code == 201, made.text
    c = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {made.json()['api_key']}"}, timeout=30)
    board = c.post("/v1/boards", json={"name": "traced"}).json()
    node = c.post(f"/v1/boards/{board['id']}/nodes", json={"kind": "image"}).json()
    r = c.post(f"/v1/nodes/{node['id']}/generations",
               json={"model_id": "easel-sketch", "prompt": "a traced kite", "params": {"resolution": "1K"}})
    assert r.status_code == 202, r.text
    gen_id = r.json()["id"]
    wait_for(lambda: c.get(f"/v1/generations/{gen_id}").json()["status"] == "succeeded", timeout=60,
             what="generation to succeed in the traced worker")

    def joined() -> bool:
        spans = collector.snapshot()
        api_traces = {t for svc, name, t, _ in spans if svc == "easel-api" and "generations" in name}
        worker_traces = {t for svc, _, t, parent in spans if svc == "easel-worker" and parent}
        return bool(api_traces & worker_traces)

    wait_for(joined, timeout=30, what="a worker span in the api request's trace")
    c.close()
