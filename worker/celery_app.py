"""The Celery app: Redis as broker and result store. Shared by the web app (which only
sends tasks, by name) and the workers (which run them)."""
from __future__ import annotations

from celery import Celery

from worker.config import WorkerConfig, load

RECOGNIZE_TASK = "hwr.recognize"


def make_celery(config: WorkerConfig | None = None) -> Celery:
    config = config or load()
    app = Celery("hwr", broker=config.redis_url, backend=config.redis_url)
    app.conf.update(
        task_default_queue=config.queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # A dead worker's unacked jobs go back to the queue after the visibility timeout.
        # Without an event loop (threads pool) kombu sweeps for them when a poll finds the
        # queue empty; throttle 1 makes every such poll sweep, so they come back promptly.
        broker_transport_options={"visibility_timeout": config.visibility_timeout,
                                  "unacked_restore_throttle": 1},
        worker_prefetch_multiplier=1,
        result_backend_transport_options={"visibility_timeout": config.visibility_timeout},
        result_expires=config.result_ttl,
        task_ignore_result=True,  # results live in the job store (worker/jobs.py)
        broker_connection_retry_on_startup=True,
    )
    return app


celery_app = make_celery()
