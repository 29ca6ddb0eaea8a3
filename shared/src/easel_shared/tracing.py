"""OpenTelemetry tracing, on only when OTEL_EXPORTER_OTLP_ENDPOINT is set.

The api's Celery producer and the worker are both instrumented, so the trace context travels in
the task message: one trace runs from the HTTP request through the queue into the generation.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)
_configured = False


def setup_tracing(service: str, endpoint: str | None, *, fastapi_app: Any = None, celery: bool = False) -> bool:
    global _configured
    if not endpoint:
        return False
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if not _configured:
        provider = TracerProvider(resource=Resource.create({"service.name": f"easel-{service}"}))
        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces"))
        )
        trace.set_tracer_provider(provider)
        _configured = True
    if celery:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        instrumentor = CeleryInstrumentor()  # type: ignore[no-untyped-call]
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
    if fastapi_app is not None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(fastapi_app, excluded_urls="healthz,readyz,metrics")
    log.info("tracing to %s", endpoint)
    return True


def shutdown_tracing() -> None:
    if not _configured:
        return
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    shutdown = getattr(provider, "shutdown", None)
    if callable(shutdown):
        shutdown()


def current_carrier() -> dict[str, str]:
    """The active trace context as W3C headers, to store beside work done later (an outbox row)."""
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier


def attached(carrier: dict[str, str]) -> Any:
    """A context manager under which the stored trace context is the current one again."""
    import contextlib

    from opentelemetry import context
    from opentelemetry.propagate import extract

    @contextlib.contextmanager
    def _cm() -> Any:
        token = context.attach(extract(carrier))
        try:
            yield
        finally:
            context.detach(token)

    return _cm()
