"""Micro-batching across jobs: the tiles of every job this worker process is running go
to TorchServe together, as one .npy batch per request.

Dispatcher threads (HWR_BATCH_INFLIGHT of them) each block until some tiles are waiting,
take everything queued (up to HWR_MAX_BATCH tiles), send it, and hand each job its
answers. There is no fixed wait: a lone job on an idle worker goes out at once. Jobs
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
from worker.gather import Announcement, GatheringQueue
from worker.torchserve import TorchServeClient, TorchServeUnavailable

log = logging.getLogger(__name__)


def keep_top_k(answers: list[dict], top_k: int) -> list[dict]:
    """TorchServe answers cut to `top_k` predictions each (errors stay as they are)."""
    return [{"predictions": a["predictions"][:top_k]} if "predictions" in a else a for a in answers]


class _Chunk:
    """Up to max_batch tiles of one job, waiting for their answers."""

    __slots__ = ("tiles", "top_k", "deadline", "done", "answers", "error")

    def __init__(self, tiles: np.ndarray, top_k: int, deadline: float):
        self.tiles, self.top_k, self.deadline = tiles, top_k, deadline
        self.done = threading.Event()
        self.answers: list[dict] | None = None
        self.error: Exception | None = None

    def finish(self, answers: list[dict] | None = None, error: Exception | None = None) -> None:
        self.answers, self.error = answers, error
        self.done.set()


class Pending:
    """Tiles handed to the batcher, whose answers may still be coming."""

    def __init__(self, chunks: list[_Chunk]):
        self.chunks = chunks

    def answers(self) -> list[dict]:
        """One answer per tile, in order. Blocks; raises what TorchServe's client raised
        (TorchServeUnavailable once HWR_TORCHSERVE_RETRY_SECONDS are spent)."""
        answers: list[dict] = []
        for chunk in self.chunks:
            chunk.done.wait()
            if chunk.error is not None:
                raise chunk.error
            answers.extend(chunk.answers)
        return answers


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

    def submit(self, tiles: np.ndarray, top_k: int, planned: Announcement | None = None) -> "Pending":
        """Queue N x 28 x 28 tiles for TorchServe (fulfilling `planned`); returns at once.
        `Pending.answers()` blocks for them."""
        deadline = time.monotonic() + self.retry_seconds
        chunks = [_Chunk(tiles[i:i + self.max_batch], top_k, deadline)
                  for i in range(0, len(tiles), self.max_batch)]
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
        top_k = max(c.top_k for c in batch)
        deadline = min(c.deadline for c in batch)
        try:
            answers = self.client.predict(tiles, top_k, deadline)
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
            part = answers[cursor:cursor + n]
            cursor += n
            # The batch asked for the largest top_k; each job keeps its own.
            chunk.finish(answers=keep_top_k(part, chunk.top_k))
