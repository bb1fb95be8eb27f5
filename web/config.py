"""Web service configuration: every environment variable the web app reads, read here.

`load(overrides)` lets tests and `create_app({...})` pass the same names as the
environment (`{"HWR_API_KEYS": "k1,k2"}`), so there is one spelling for each setting.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from serve.preprocess import DEFAULT_MAX_PIXELS
from worker.config import WorkerConfig, parse_number

# The model's classes (EMNIST balanced, 47): the most alternatives a character can have.
NUM_CLASSES = 47
MODES = ("char", "text", "code")  # code: a line read as text, each character alone
# classes: letters as EMNIST's classes (the capital for c i j k l m o p s u v w x y z);
# written: in the case their size and word show (worker/case.py)
CASES = ("classes", "written")


@dataclass(frozen=True)
class WebConfig:
    redis_url: str
    torchserve_urls: tuple[str, ...]
    torchserve_token: str
    torchserve_key_file: str
    torchserve_model: str
    queue: str
    result_ttl: int
    blob_ttl: int
    api_keys: tuple[str, ...]
    cors_origins: tuple[str, ...]
    rate_limit: str
    max_upload_bytes: int
    max_images_per_job: int
    max_image_pixels: int
    recognize_timeout: float
    max_wait_seconds: float
    publish_linger: float
    allow_private_callbacks: bool
    ready_cache_seconds: float
    ready_check_timeout: float
    prometheus_multiproc_dir: str

    def worker_config(self) -> WorkerConfig:
        """What `worker.queue.submit_job` needs: the same Redis, queue and expiry times."""
        return WorkerConfig(redis_url=self.redis_url, torchserve_urls=self.torchserve_urls,
                            torchserve_token=self.torchserve_token,
                            torchserve_key_file=self.torchserve_key_file,
                            torchserve_model=self.torchserve_model, queue=self.queue,
                            result_ttl=self.result_ttl, blob_ttl=self.blob_ttl)


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def load(overrides: Mapping[str, object] | None = None) -> WebConfig:
    env = {**os.environ, **{k: str(v) for k, v in (overrides or {}).items()}}

    def get(name: str, default: object) -> str:
        return env.get(name, str(default))

    def integer(name: str, default: int) -> int:
        return parse_number(name, get(name, default), int)

    def number(name: str, default: float) -> float:
        return parse_number(name, get(name, default), float)

    return WebConfig(
        redis_url=get("HWR_REDIS_URL", "redis://127.0.0.1:6379/0"),
        torchserve_urls=tuple(u.rstrip("/") for u in _csv(get("HWR_TORCHSERVE_URLS", "http://127.0.0.1:8080"))),
        torchserve_token=get("HWR_TORCHSERVE_TOKEN", ""),
        torchserve_key_file=get("HWR_TORCHSERVE_KEY_FILE", ""),
        torchserve_model=get("HWR_TORCHSERVE_MODEL", "emnist"),
        queue=get("HWR_QUEUE", "hwr"),
        result_ttl=integer("HWR_RESULT_TTL", 86400),
        blob_ttl=integer("HWR_BLOB_TTL", 3600),
        api_keys=_csv(get("HWR_API_KEYS", "")),
        # Web pages on these origins may call /v1 from the browser ("*": any); none by default.
        cors_origins=_csv(get("HWR_CORS_ORIGINS", "")),
        rate_limit=get("HWR_RATE_LIMIT", "6000/minute"),
        max_upload_bytes=integer("HWR_MAX_UPLOAD_BYTES", 32 * 1024 * 1024),
        max_images_per_job=integer("HWR_MAX_IMAGES_PER_JOB", 1000),
        max_image_pixels=integer("HWR_MAX_PIXELS", DEFAULT_MAX_PIXELS),
        recognize_timeout=number("HWR_RECOGNIZE_TIMEOUT", 10),
        max_wait_seconds=number("HWR_MAX_WAIT_SECONDS", 60),
        # The longest a job waits for requests still parsing, to share their Celery message.
        publish_linger=number("HWR_PUBLISH_LINGER_MS", 5) / 1000,
        allow_private_callbacks=_flag(get("HWR_WEBHOOK_ALLOW_PRIVATE", "false")),
        ready_cache_seconds=number("HWR_READY_CACHE_SECONDS", 1.5),
        ready_check_timeout=number("HWR_READY_CHECK_TIMEOUT", 1.0),
        # prometheus-client's own variable: set it when gunicorn runs several processes.
        prometheus_multiproc_dir=get("PROMETHEUS_MULTIPROC_DIR", ""),
    )
