"""A client for the TorchServe EMNIST endpoint: one .npy batch of tiles per request,
round robin over several endpoints, failover on connection errors, bounded exponential
backoff while none answers, and the inference token re-read from TorchServe's key file
when a restart has changed it (401).
"""
from __future__ import annotations

import io
import itertools
import logging
import time

import httpx
import numpy as np

from worker import metrics
from worker.config import WorkerConfig, endpoint_credentials, read_inference_key

log = logging.getLogger(__name__)

# Answers that mean "not now" (model not loaded yet after a restart, overloaded), not "never".
RETRYABLE_STATUS = {404, 408, 429, 502, 503, 504, 507}
BACKOFF_START, BACKOFF_MAX = 0.1, 2.0


class TorchServeUnavailable(RuntimeError):
    """No endpoint answered within the retry budget."""

    code = "torchserve_unavailable"


class TorchServeError(RuntimeError):
    """TorchServe answered, but refused the batch (a bug on one side, not an outage)."""

    code = "torchserve_error"


class _Endpoint:
    def __init__(self, url: str, token: str, key_file: str):
        self.url, self.key_file = url, key_file
        self.token = token or (read_inference_key(key_file) if key_file else "")
        self.down_until = 0.0

    def refresh_token(self) -> None:
        """TorchServe writes a new key file on every start."""
        if self.key_file:
            self.token = read_inference_key(self.key_file) or self.token


class TorchServeClient:
    def __init__(self, config: WorkerConfig):
        self.config = config
        if not config.torchserve_urls:
            raise ValueError("HWR_TORCHSERVE_URLS names no endpoint")
        self.endpoints = [_Endpoint(*c) for c in endpoint_credentials(
            config.torchserve_urls, config.torchserve_token, config.torchserve_key_file)]
        self._rr = itertools.count()
        # Keep-alive connections, enough for every dispatcher to every endpoint.
        pool = max(4, config.batch_inflight * len(self.endpoints) * 2)
        self.http = httpx.Client(timeout=httpx.Timeout(config.torchserve_timeout, connect=3.0),
                                 limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool))

    # -- endpoints -------------------------------------------------------------------
    def _candidates(self) -> list[_Endpoint]:
        """Endpoints to try this round, round-robin order, skipping those marked down
        (all of them when every one is down: one may have come back)."""
        start = next(self._rr) % len(self.endpoints)
        ordered = self.endpoints[start:] + self.endpoints[:start]
        now = time.monotonic()
        up = [e for e in ordered if e.down_until <= now]
        return up or ordered

    def _mark_down(self, endpoint: _Endpoint, why: str) -> None:
        if endpoint.down_until <= time.monotonic():
            log.warning("TorchServe %s unreachable (%s); skipping it for %.1fs", endpoint.url, why,
                        self.config.endpoint_down_seconds)
        endpoint.down_until = time.monotonic() + self.config.endpoint_down_seconds

    # -- requests --------------------------------------------------------------------
    def predict(self, tiles: np.ndarray, top_k: int, deadline: float) -> list[dict]:
        """One answer per tile ({"predictions": [...]} or {"error": ...}), in order.
        Retries until `deadline` (time.monotonic()), then raises TorchServeUnavailable."""
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(tiles, dtype=np.uint8), allow_pickle=False)
        body = buf.getvalue()
        backoff = BACKOFF_START
        last = "no attempt"
        while True:
            for endpoint in self._candidates():
                outcome = self._post(endpoint, body, top_k)
                if isinstance(outcome, list):
                    if len(outcome) != len(tiles):
                        raise TorchServeError(f"TorchServe answered {len(outcome)} results for {len(tiles)} tiles")
                    return outcome
                last = outcome
            left = deadline - time.monotonic()
            if left <= 0:
                metrics.FAILURES.labels(reason="torchserve_unavailable").inc()
                raise TorchServeUnavailable(f"TorchServe did not answer within the retry budget ({last})")
            time.sleep(min(backoff, left))
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _post(self, endpoint: _Endpoint, body: bytes, top_k: int, retry_auth: bool = True) -> list[dict] | str:
        """The results, or a string saying why this attempt should be retried."""
        headers = {"Content-Type": "application/octet-stream", "X-Top-K": str(top_k)}
        token = endpoint.token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        url = f"{endpoint.url}/predictions/{self.config.torchserve_model}"
        started = time.perf_counter()
        try:
            response = self.http.post(url, content=body, headers=headers)
        except httpx.TransportError as exc:  # refused, reset, timed out
            self._mark_down(endpoint, exc.__class__.__name__)
            metrics.FAILURES.labels(reason="torchserve_connection").inc()
            return f"{endpoint.url}: {exc.__class__.__name__}: {exc}"
        metrics.TORCHSERVE_LATENCY.observe(time.perf_counter() - started)
        if response.status_code == 200:
            try:
                return response.json()["results"]
            except (ValueError, KeyError, TypeError) as exc:
                raise TorchServeError(f"unreadable TorchServe answer: {exc}") from None
        if response.status_code == 401 or (response.status_code == 400 and "Token Authorization" in response.text):
            # TorchServe writes a new key file on every start (0.12 answers a stale token with 400).
            metrics.FAILURES.labels(reason="torchserve_unauthorized").inc()
            endpoint.refresh_token()
            if retry_auth and endpoint.token != token:
                return self._post(endpoint, body, top_k, retry_auth=False)
            return f"{endpoint.url}: 401 (token re-read from the key file)"
        # A backend worker that died under the request (TorchServe stopping, or restarting a
        # crashed worker) is an outage, not a refusal: retry like a refused connection.
        if response.status_code in RETRYABLE_STATUS or (
                response.status_code == 500 and "Worker died" in response.text):
            metrics.FAILURES.labels(reason=f"torchserve_{response.status_code}").inc()
            return f"{endpoint.url}: HTTP {response.status_code}"
        metrics.FAILURES.labels(reason="torchserve_error").inc()
        raise TorchServeError(f"TorchServe refused the batch: HTTP {response.status_code}: {response.text[:200]}")
