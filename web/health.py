"""Liveness and readiness.

/healthz says the process serves requests. /readyz says a job submitted now can finish:
Redis answers, at least one TorchServe's model answers a one-tile prediction, and at least
one Celery worker answers a control ping. The result is cached for a second or two: load
balancers poll it often and every check is a network round trip.

TorchServe's own /ping is not enough: it says "Healthy" about a second after the JVM
starts, before the archive is even registered, and the model's workers need several more
seconds (7 s here) to load it; requests sent meanwhile wait for them.
"""
from __future__ import annotations

import io
import threading
import time

import httpx
import numpy as np
import redis
from celery import Celery

from web.config import WebConfig
from worker.config import endpoint_credentials, read_inference_key


def _npy(tiles: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, tiles, allow_pickle=False)
    return buffer.getvalue()


# One blank tile, sent as the worker sends its batches: the smallest request the model answers.
PROBE_BODY = _npy(np.zeros((1, 28, 28), np.uint8))


class Readiness:
    def __init__(self, config: WebConfig, redis_client: redis.Redis, celery: Celery):
        self.config, self.redis, self.celery = config, redis_client, celery
        self._lock = threading.Lock()
        self._cached: tuple[float, bool, dict] | None = None

    def check_redis(self) -> dict:
        try:
            self.redis.ping()
            return {"ok": True, "detail": "PONG"}
        except redis.RedisError as exc:
            return {"ok": False, "detail": f"{exc.__class__.__name__}: {exc}"}

    def check_torchserve(self) -> dict:
        answers = {}
        endpoints = endpoint_credentials(self.config.torchserve_urls, self.config.torchserve_token,
                                         self.config.torchserve_key_file)
        for url, token, key_file in endpoints:
            # Read each time: TorchServe writes a new key file on every start.
            token = token or (read_inference_key(key_file) if key_file else "")
            headers = {"Content-Type": "application/octet-stream", "X-Top-K": "1"}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            try:
                r = httpx.post(f"{url}/predictions/{self.config.torchserve_model}", content=PROBE_BODY,
                               headers=headers, timeout=self.config.ready_check_timeout)
                answers[url] = "serving" if r.status_code == 200 else f"HTTP {r.status_code}: {r.text[:200]}"
            except httpx.HTTPError as exc:  # refused, or the model's workers are still loading it
                answers[url] = f"{exc.__class__.__name__}: {exc}"
        serving = sum(v == "serving" for v in answers.values())
        return {"ok": serving > 0, "detail": f"{serving}/{len(answers)} serving the model", "servers": answers}

    def check_workers(self) -> dict:
        try:
            # limit=1: return as soon as one worker answers instead of waiting out the timeout.
            replies = self.celery.control.ping(timeout=self.config.ready_check_timeout, limit=1)
        except Exception as exc:  # kombu raises many kinds when the broker is unreachable
            return {"ok": False, "detail": f"{exc.__class__.__name__}: {exc}"}
        names = sorted(name for reply in replies for name in reply)
        if not names:
            return {"ok": False, "detail": "no Celery worker answered a ping"}
        return {"ok": True, "detail": f"worker {names[0]} answered"}

    def status(self) -> tuple[bool, dict]:
        with self._lock:  # one thread refreshes; the others wait and reuse its answer
            now = time.monotonic()
            if self._cached and now - self._cached[0] < self.config.ready_cache_seconds:
                return self._cached[1], self._cached[2]
            checks = {"redis": self.check_redis()}
            checks["torchserve"] = self.check_torchserve()
            # Without Redis the broker is gone too: do not wait out a ping that cannot work.
            checks["workers"] = self.check_workers() if checks["redis"]["ok"] else {
                "ok": False, "detail": "skipped: Redis (the broker) is unreachable"}
            ready = all(c["ok"] for c in checks.values())
            self._cached = (time.monotonic(), ready, checks)
            return ready, checks
