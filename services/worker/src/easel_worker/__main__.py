"""`python -m easel_worker`: a Celery worker on the `generations` and `webhooks` queues
(`WORKER_QUEUES`), plus the sweeper.

The pool is threads: the work is I/O plus Pillow (which releases the GIL), and threads keep the
database engine and Redis clients safe without fork hooks. SIGTERM is Celery's warm shutdown:
running generations finish; with acks_late any unfinished message goes back to the queue.
"""

from __future__ import annotations

from easel_shared.logs import configure_logging
from easel_shared.settings import load_settings_or_exit
from easel_shared.tasks import GENERATION_QUEUE


def main() -> None:
    settings = load_settings_or_exit("worker")
    configure_logging(settings.log_level, settings.log_format)
    from easel_shared.tracing import setup_tracing
    from easel_worker import background, runtime
    from easel_worker.celery_app import create_celery

    setup_tracing("worker", settings.otel_exporter_otlp_endpoint, celery=True)
    if settings.worker_metrics_port:
        import logging

        from prometheus_client import start_http_server

        try:
            start_http_server(settings.worker_metrics_port)
        except OSError as exc:  # metrics are not worth refusing to work over
            logging.getLogger("easel_worker").warning(
                "metrics port %s unavailable: %s", settings.worker_metrics_port, exc)
    rt = runtime.init(settings)
    app = create_celery(settings)
    background.start(rt)
    try:
        app.worker_main([
            "worker", "--queues", settings.worker_queues or GENERATION_QUEUE, "--pool", "threads",
            "--concurrency", str(settings.worker_concurrency), "--loglevel", settings.log_level,
            "--without-gossip", "--without-mingle", "--hostname", "easel-worker@%h",
        ])
    finally:
        rt.stopping.set()


if __name__ == "__main__":
    main()
