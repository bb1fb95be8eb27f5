"""What the request handlers share: config, one Redis pool, the Celery producer, metrics."""
from __future__ import annotations

import threading
from dataclasses import dataclass

import redis
from celery import Celery
from flask import current_app

from web.config import WebConfig
from web.health import Readiness
from web.metrics import WebMetrics
from worker.config import WorkerConfig
from worker.queue import JobWaiter


@dataclass
class Services:
    config: WebConfig
    worker_config: WorkerConfig
    redis: redis.Redis
    celery: Celery
    metrics: WebMetrics
    readiness: Readiness
    waiter: JobWaiter | None = None  # made on first use, in the process that serves requests

    def job_waiter(self) -> JobWaiter:
        if self.waiter is None:
            with _waiter_lock:
                if self.waiter is None:
                    self.waiter = JobWaiter(self.redis)
        return self.waiter


_waiter_lock = threading.Lock()


def services() -> Services:
    return current_app.extensions["hwr"]
