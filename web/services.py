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
from worker.queue import JobPublisher, JobWaiter


@dataclass
class Services:
    config: WebConfig
    worker_config: WorkerConfig
    redis: redis.Redis
    celery: Celery
    metrics: WebMetrics
    readiness: Readiness
    # Made on first use, in the process that serves requests (their threads do not survive a fork).
    waiter: JobWaiter | None = None
    publisher: JobPublisher | None = None

    def job_waiter(self) -> JobWaiter:
        if self.waiter is None:
            with _made_lock:
                if self.waiter is None:
                    self.waiter = JobWaiter(self.redis)
        return self.waiter

    def job_publisher(self) -> JobPublisher:
        if self.publisher is None:
            with _made_lock:
                if self.publisher is None:
                    self.publisher = JobPublisher(self.redis, self.celery, self.worker_config,
                                                  linger=self.config.publish_linger)
        return self.publisher

    def close(self) -> None:
        """Stop the job waiter's listener thread (before the Redis it listens to goes away)."""
        if self.waiter is not None:
            self.waiter.close()


_made_lock = threading.Lock()


def services() -> Services:
    return current_app.extensions["hwr"]
