from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

GENERATIONS = Counter("easel_generations_total", "Generations finished by this worker, by status", ["status"])
MODEL_SECONDS = Histogram("easel_model_seconds", "Time spent in the image model", ["model_id"],
                          buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
QUEUE_DEPTH = Gauge("easel_queue_depth", "Messages waiting in the generation queue")
CREDITS_RESERVED = Gauge("easel_credits_reserved", "Credits reserved by generations in flight")
PROVIDER_ERRORS = Counter("easel_provider_errors_total",
                          "Vendor calls that ended a generation in an error, by provider and code "
                          "(provider_auth_failed: a revoked or wrong key)", ["provider", "code"])
IMAGES_COLLECTED = Counter("easel_images_collected_total", "Orphaned node images deleted: unreferenced rows with "
                           "their objects (image), objects no row owns (object)", ["kind"])
WEBHOOK_DELIVERIES = Counter("easel_webhook_deliveries_total", "Webhook delivery attempts by outcome: delivered, "
                             "retry, refused (address not allowed; retried), failed (schedule spent or endpoint "
                             "disabled), gone (410: endpoint disabled)", ["outcome"])
WEBHOOK_SECONDS = Histogram("easel_webhook_delivery_seconds", "Time of one webhook attempt, until the answer",
                            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30))
