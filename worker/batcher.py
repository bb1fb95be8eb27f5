"""Micro-batching across jobs: the tiles of every job this worker process is running go
to TorchServe together, as one .npy batch per request.

Dispatcher threads (HWR_BATCH_INFLIGHT of them) each block until some tiles are waiting,
take everything queued (up to HWR_MAX_BATCH tiles), send it, and hand each job its
probabilities. There is no fixed wait: a lone job on an idle worker goes out at once. Jobs
being decoded and cut into tiles say so (`planning`), and a dispatcher waits for those,
up to HWR_BATCH_LINGER_MS, so that under load their tiles join the same request: a
TorchServe request costs milliseconds of CPU on both sides, whatever its size.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import ContextManager

import numpy as np

from worker import metrics
from worker.charsets import CLASSES
from worker.gather import Announcement, GatheringQueue
from worker.torchserve import TorchServeClient, TorchServeUnavailable

log = logging.getLogger(__name__)


class _Chunk:
    """Up to max_batch tiles of one job, waiting for their probabilities."""

    __slots__ = ("tiles", "deadline", "done", "probs", "error")

    def __init__(self, tiles: np.ndarray, deadline: float):
        self.tiles, self.deadline = tiles, deadline
        self.done = threading.Event()
        self.probs: np.ndarray | None = None
        self.error: Exception | None = None

    def finish(self, probs: np.ndarray | None = None, error: Exception | None = None) -> None:
        self.probs, self.error = probs, error
        self.done.set()


class Pending:
    """Tiles handed to the batcher, whose probabilities may still be coming."""

    def __init__(self, chunks: list[_Chunk]):
        self.chunks = chunks

    def probabilities(self) -> np.ndarray:
        """Every class's probability, a row per tile, in order. Blocks; raises what
        TorchServe's client raised (TorchServeUnavailable once HWR_TORCHSERVE_RETRY_SECONDS
        are spent)."""
        parts = []
        for chunk in self.chunks:
            chunk.done.wait()
            if chunk.error is not None:
                raise chunk.error
            parts.append(chunk.probs)
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(parts) if parts else np.zeros((0, len(CLASSES)), np.float32)


class MicroBatcher:
    def __init__(self, client: TorchServeClient, max_batch: int, inflight: int, retry_seconds: float,
                 linger: float = 0.005):
        self.client = client
        self.max_batch = max(1, min(max_batch, 1024))  # the handler refuses more than 1024
        self.retry_seconds = retry_seconds
        self._queue: GatheringQueue[_Chunk] = GatheringQueue(linger, size=lambda chunk: len(chunk.tiles))
        self._threads = [threading.Thread(target=self._dispatch_forever, name=f"hwr-batch-{i}", daemon=True)
                         for i in range(max(1, inflight))]
        for thread in self._threads:
            thread.start()

    def planning(self) -> ContextManager[Announcement]:
        """Wrap the making of tiles, and pass what it yields to `submit`: the dispatchers
        wait for the tiles being made (see worker.gather)."""
        return self._queue.announce()

    def submit(self, tiles: np.ndarray, planned: Announcement | None = None) -> "Pending":
        """Queue N x 28 x 28 tiles for TorchServe (fulfilling `planned`); returns at once.
        `Pending.probabilities()` blocks for them."""
        deadline = time.monotonic() + self.retry_seconds
        chunks = [_Chunk(tiles[i:i + self.max_batch], deadline) for i in range(0, len(tiles), self.max_batch)]
        self._queue.put(chunks, planned)
        return Pending(chunks)

    def _dispatch_forever(self) -> None:
        self._queue.consume_forever(self.max_batch, self._dispatch)

    def _dispatch(self, batch: list[_Chunk]) -> None:
        try:
            self._send(batch)
        except Exception as exc:  # never lose the dispatcher; the jobs get the error
            log.exception("batch of %d chunks failed", len(batch))
            for chunk in batch:
                if not chunk.done.is_set():
                    chunk.finish(error=exc)

    def _send(self, batch: list[_Chunk]) -> None:
        tiles = np.concatenate([c.tiles for c in batch]) if len(batch) > 1 else batch[0].tiles
        deadline = min(c.deadline for c in batch)
        try:
            probs = self.client.probabilities(tiles, deadline)
        except TorchServeUnavailable as exc:
            # Only the chunks whose own retry budget is spent fail; younger ones go back
            # to the front of the queue and keep their remaining budget.
            now = time.monotonic()
            retry = [c for c in batch if c.deadline > now + 0.05]
            for chunk in batch:
                if chunk not in retry:
                    chunk.finish(error=exc)
            if retry:
                self._queue.put(retry, front=True)
            return
        metrics.BATCH_SIZE.observe(len(tiles))
        cursor = 0
        for chunk in batch:
            n = len(chunk.tiles)
            chunk.finish(probs=probs[cursor:cursor + n])
            cursor += n
