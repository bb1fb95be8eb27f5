"""A queue that gathers work into groups: the consumer takes everything waiting, after
waiting (up to `linger` seconds) for the producers that announced an item is coming.

Two places batch this way: the web front end's job publisher (jobs -> one Celery
message) and the worker's micro-batcher (tiles -> one TorchServe request). Both pay a
fixed cost per group, so bigger groups are cheaper, but neither may hold a lone item:
on an idle service nothing is announced and an item goes out at once. Under load, the
items still being made (uploads being parsed, images being cut into tiles) are
announced, and join the group instead of paying for one of their own.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class Announcement:
    """A producer's promise of an item; kept (by `put`) or withdrawn (by leaving the block)."""

    __slots__ = ("open",)

    def __init__(self) -> None:
        self.open = True


class GatheringQueue(Generic[T]):
    def __init__(self, linger: float, size: Callable[[T], int] = lambda item: 1):
        self.linger = linger
        self._size = size
        self._cond = threading.Condition()
        self._items: collections.deque[T] = collections.deque()
        self._announced = 0

    @contextlib.contextmanager
    def announce(self) -> Iterator[Announcement]:
        """Announce an item that this thread is about to `put`; leaving the block without
        putting it withdraws the announcement (a request that failed validation)."""
        announcement = Announcement()
        with self._cond:
            self._announced += 1
        try:
            yield announcement
        finally:
            with self._cond:
                self._close(announcement)
                self._cond.notify_all()

    def _close(self, announcement: Announcement | None) -> None:
        if announcement is not None and announcement.open:
            announcement.open = False
            self._announced -= 1

    def put(self, items: Iterable[T], announcement: Announcement | None = None, front: bool = False) -> None:
        """Queue `items` (at the front: items going back after a failed attempt), keeping
        the announcement they fulfil in the same step, so a consumer never sees neither."""
        with self._cond:
            if front:
                self._items.extendleft(reversed(list(items)))
            else:
                self._items.extend(items)
            self._close(announcement)
            self._cond.notify_all()

    def take(self, max_size: int) -> list[T]:
        """Block until an item waits; then, while announced items are still coming and the
        group is below `max_size`, wait for them up to `linger`. Returns the oldest items
        whose sizes fit in `max_size` (at least one, whatever its size)."""
        with self._cond:
            while True:
                while not self._items:
                    self._cond.wait()
                deadline = time.monotonic() + self.linger
                while self._announced > 0 and sum(map(self._size, self._items)) < max_size:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                # Another consumer may have taken everything while this one waited.
                if self._items:
                    break
            group = [self._items.popleft()]
            total = self._size(group[0])
            while self._items and total + self._size(self._items[0]) <= max_size:
                total += self._size(self._items[0])
                group.append(self._items.popleft())
            return group

    def consume_forever(self, max_size: int, handle: Callable[[list[T]], None]) -> None:
        """Take groups and hand each to `handle`, forever: the body of a consumer thread.
        Nothing raised stops it, since a dead consumer would leave every producer waiting.
        `handle` should give its group's producers any error itself."""
        while True:
            try:
                handle(self.take(max_size))
            except Exception:
                log.exception("a consumer of a gathering queue failed; it goes on")
                time.sleep(0.1)

    @property
    def announced(self) -> int:
        with self._cond:
            return self._announced
