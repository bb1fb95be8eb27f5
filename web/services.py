"""What the request handlers share: config, one Redis pool, the Celery producer, metrics."""
from __future__ import annotations

from dataclasses import dataclass

import redis
from celery import Celery
from flask import current_app

from web.config import WebConfig
from web.health import Readiness
from web.metrics import WebMetrics
from worker.config import WorkerConfig


@dataclass
class Services:
    config: WebConfig
    worker_config: WorkerConfig
    redis: redis.Redis
    celery: Celery
    metrics: WebMetrics
    readiness: Readiness


def services() -> Services:
    return current_app.extensions["hwr"]
