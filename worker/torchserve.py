"""A client for the TorchServe EMNIST endpoint: one .npy batch of tiles per request, answered
with a .npy array of every class's probability; round robin over several endpoints, failover on
connection errors, bounded exponential backoff while none answers, and the inference token
re-read from TorchServe's key file when a restart has changed it (401).
"""
from __future__ import annotations

import io
import itertools
import logging
import time

import numpy as np
import orjson
import urllib3

from worker import metrics
from worker.charsets import CLASSES
from worker.config import WorkerConfig, endpoint_credentials, read_inference_key

log = logging.getLogger(__name__)

# Answers that mean "not now" (model not loaded yet after a restart, overloaded), not "never".
RETRYABLE_STATUS = {404, 408, 429, 502, 503, 504, 507}
BACKOFF_START, BACKOFF_MAX = 0.1, 2.0


ANSWER_HEADER = "X-Answer"  # "probabilities": serve/handler.py answers a .npy array


def _probabilities(data: bytes) -> np.ndarray:
    """A TorchServe answer -> rows of every class's probability."""
    if data.startswith(b"\x93NUMPY"):
        probs = np.load(io.BytesIO(data), allow_pickle=False)
        if probs.ndim != 2 or probs.dtype.kind != "f":
            raise ValueError(f"a {probs.dtype} array of shape {probs.shape}, not probabilities")
        return probs
    results = orjson.loads(data)["results"]
    probs = np.zeros((len(results), len(CLASSES)), np.float32)
    for row, result in zip(probs, results):
        if "predictions" not in result:
            raise TorchServeError(f"TorchServe refused a tile: {result.get('error')}")
        for p in result["predictions"]:
            row[CLASSES.index(p["char"])] = p["p"]
    return probs


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
        # urllib3, not httpx: a request cost ~0.7 ms of worker CPU instead of ~1.4 (measured
        # against a local server), and the worker makes one per batch. Keep-alive connections,
        # enough for every dispatcher; one quiet retry when a kept-alive connection was closed
        # by TorchServe meanwhile. Everything else is retried (with backoff) in `probabilities`.
        self.http = urllib3.PoolManager(
            num_pools=max(4, len(self.endpoints)), maxsize=max(4, config.batch_inflight * 2),
            timeout=urllib3.Timeout(connect=3.0, read=config.torchserve_timeout),
            retries=urllib3.Retry(total=1, connect=1, read=1, redirect=0, status=0, other=0,
                                  allowed_methods=None, raise_on_status=False))

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
    def probabilities(self, tiles: np.ndarray, deadline: float) -> np.ndarray:
        """Every class's probability for each tile, a row per tile (columns in
        charsets.CLASSES order). Retries until `deadline` (time.monotonic()), then raises
        TorchServeUnavailable."""
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(tiles, dtype=np.uint8), allow_pickle=False)
        body = buf.getvalue()
        backoff = BACKOFF_START
        last = "no attempt"
        while True:
            for endpoint in self._candidates():
                outcome = self._post(endpoint, body)
                if isinstance(outcome, np.ndarray):
                    if outcome.shape != (len(tiles), len(CLASSES)):
                        raise TorchServeError(f"TorchServe answered {outcome.shape[0]} x {outcome.shape[1]} "
                                              f"probabilities for {len(tiles)} tiles")
                    return outcome
                last = outcome
            left = deadline - time.monotonic()
            if left <= 0:
                metrics.FAILURES.labels(reason="torchserve_unavailable").inc()
                raise TorchServeUnavailable(f"TorchServe did not answer within the retry budget ({last})")
            time.sleep(min(backoff, left))
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _post(self, endpoint: _Endpoint, body: bytes, retry_auth: bool = True) -> np.ndarray | str:
        """The probabilities, or a string saying why this attempt should be retried."""
        # The handler answers a .npy array of probabilities (12 KB for a line of 64
        # characters) instead of JSON listing every class for every tile, which cost both
        # sides about 3 ms of CPU per line; an archive too old for that answers JSON with
        # every class (X-Top-K), read the same.
        headers = {"Content-Type": "application/octet-stream", ANSWER_HEADER: "probabilities",
                   "X-Top-K": str(len(CLASSES))}
        token = endpoint.token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        url = f"{endpoint.url}/predictions/{self.config.torchserve_model}"
        started = time.perf_counter()
        try:
            response = self.http.request("POST", url, body=body, headers=headers)
        except urllib3.exceptions.HTTPError as exc:  # refused, reset, timed out
            self._mark_down(endpoint, exc.__class__.__name__)
            metrics.FAILURES.labels(reason="torchserve_connection").inc()
            return f"{endpoint.url}: {exc.__class__.__name__}: {exc}"
        metrics.TORCHSERVE_LATENCY.observe(time.perf_counter() - started)
        status = response.status
        if status == 200:
            try:
                return _probabilities(response.data)
            except (ValueError, KeyError, TypeError) as exc:
                raise TorchServeError(f"unreadable TorchServe answer: {exc}") from None
        text = response.data.decode("utf-8", "replace")
        if status == 401 or (status == 400 and "Token Authorization" in text):
            # TorchServe writes a new key file on every start (0.12 answers a stale token with 400).
            metrics.FAILURES.labels(reason="torchserve_unauthorized").inc()
            endpoint.refresh_token()
            if retry_auth and endpoint.token != token:
                return self._post(endpoint, body, retry_auth=False)
            return f"{endpoint.url}: 401 (token re-read from the key file)"
        # A backend worker that died under the request (TorchServe stopping, or restarting a
        # crashed worker) is an outage, not a refusal: retry like a refused connection.
        if status in RETRYABLE_STATUS or (status == 500 and "Worker died" in text):
            metrics.FAILURES.labels(reason=f"torchserve_{status}").inc()
            return f"{endpoint.url}: HTTP {status}"
        metrics.FAILURES.labels(reason="torchserve_error").inc()
        raise TorchServeError(f"TorchServe refused the batch: HTTP {status}: {text[:200]}")
