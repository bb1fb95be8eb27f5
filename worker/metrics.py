"""Prometheus metrics of a worker process, served by `python -m worker` on
HWR_WORKER_METRICS_PORT. Light imports: the tasks and the TorchServe client record here."""
from __future__ import annotations

import logging

from prometheus_client import Counter, Histogram, start_http_server
from prometheus_client.core import REGISTRY, GaugeMetricFamily

log = logging.getLogger(__name__)

JOBS = Counter("hwr_worker_jobs_total", "Jobs finished by this worker", ["mode", "status"])
CHARACTERS = Counter("hwr_worker_characters_total", "Characters recognized", ["mode"])
BATCH_SIZE = Histogram("hwr_worker_batch_size", "Tiles per TorchServe request",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
TORCHSERVE_LATENCY = Histogram("hwr_worker_torchserve_latency_seconds", "TorchServe request latency",
                               buckets=(.002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5, 10, 30))
JOB_DURATION = Histogram("hwr_worker_job_duration_seconds", "From task start to final status",
                         ["mode"], buckets=(.005, .01, .02, .05, .1, .2, .5, 1, 2, 5, 10, 30, 60))
FAILURES = Counter("hwr_worker_failures_total", "Failures by reason", ["reason"])
RESUBMITTED = Counter("hwr_worker_jobs_resubmitted_total",
                      "Unfinished jobs re-sent by the sweeper: orphan (no message left in the broker) or stale",
                      ["reason"])
WEBHOOKS = Counter("hwr_worker_webhooks_total", "Webhook deliveries by outcome", ["outcome"])


class QueueDepthCollector:
    """LLEN of the Celery queue, read when Prometheus scrapes (no polling thread)."""

    def __init__(self, redis_url: str, queue: str):
        import redis

        self.redis = redis.Redis.from_url(redis_url, socket_timeout=2)
        self.queue = queue

    def collect(self):
        gauge = GaugeMetricFamily("hwr_worker_queue_depth", "Jobs waiting in the Celery queue", labels=["queue"])
        try:
            gauge.add_metric([self.queue], float(self.redis.llen(self.queue)))
        except Exception as exc:  # Redis down: leave the gauge out rather than fail the scrape
            log.warning("queue depth unavailable: %s", exc)
            return
        yield gauge


def serve(port: int, redis_url: str, queue: str) -> None:
    """Start the metrics HTTP server (port 0: metrics off)."""
    if port <= 0:
        return
    REGISTRY.register(QueueDepthCollector(redis_url, queue))
    start_http_server(port)
    log.info("metrics on :%d/metrics", port)
