"""worker.gather: groups form from what waits and what was announced, and nothing waits
for an announcement that was withdrawn. No sleeps decide an outcome here: a `take` that
should return at once runs with a linger of a minute, so waiting would time the test out."""
from __future__ import annotations

import threading

import pytest

from worker.gather import GatheringQueue

LONG = 60.0


def take_in_thread(queue: GatheringQueue, max_size: int = 100) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.extend(queue.take(max_size)), daemon=True)
    thread.start()
    return thread, out


def test_a_lone_item_goes_out_at_once():
    queue = GatheringQueue(linger=LONG)
    queue.put(["a"])
    thread, out = take_in_thread(queue)
    thread.join(5)
    assert out == ["a"]


def test_announced_items_join_the_group():
    queue = GatheringQueue(linger=LONG)
    with queue.announce() as coming:
        queue.put(["a", "b"])
        thread, out = take_in_thread(queue)
        thread.join(0.2)
        assert thread.is_alive(), "the consumer should wait for the announced item"
        queue.put(["c"], coming)
        thread.join(5)
    assert out == ["a", "b", "c"]
    assert queue.announced == 0


def test_a_withdrawn_announcement_releases_the_consumer():
    queue = GatheringQueue(linger=LONG)
    with pytest.raises(ValueError):
        with queue.announce():
            queue.put(["a"])
            thread, out = take_in_thread(queue)
            raise ValueError("the request failed validation")
    thread.join(5)
    assert out == ["a"] and queue.announced == 0


def test_linger_bounds_the_wait_for_an_announcement():
    queue = GatheringQueue(linger=0.05)
    with queue.announce():
        queue.put(["a"])
        thread, out = take_in_thread(queue)
        thread.join(5)
        assert out == ["a"]


def test_a_full_group_does_not_wait():
    queue = GatheringQueue(linger=LONG, size=len)
    with queue.announce():
        queue.put(["xxx", "yyy", "zzz"])
        thread, out = take_in_thread(queue, max_size=7)
        thread.join(5)
        assert out == ["xxx", "yyy"]  # the third does not fit in 7
    assert queue.take(7) == ["zzz"]


def test_an_oversized_item_goes_alone_and_retries_go_first():
    queue = GatheringQueue(linger=0.0, size=len)
    queue.put(["a" * 50, "b"])
    assert queue.take(10) == ["a" * 50]
    queue.put(["r1", "r2"], front=True)
    assert queue.take(10) == ["r1", "r2", "b"]


def test_put_keeps_the_announcement_once():
    queue = GatheringQueue(linger=LONG)
    with queue.announce() as coming:
        queue.put(["a"], coming)
        queue.put(["b"], coming)  # a second put must not count the announcement again
        assert queue.announced == 0
    assert queue.announced == 0
    assert queue.take(10) == ["a", "b"]


def test_two_consumers_never_take_from_an_empty_queue():
    """Both wait for the same announcement; the first to wake takes everything, and the
    other must go back to waiting, not fail (it once raised IndexError, which stopped a
    worker's TorchServe dispatcher and left its jobs hanging)."""
    queue = GatheringQueue(linger=LONG)
    with queue.announce() as coming:
        queue.put(["a"])
        first, out_first = take_in_thread(queue)
        second, out_second = take_in_thread(queue)
        first.join(0.2)
        second.join(0.2)
        assert first.is_alive() and second.is_alive()
        queue.put(["b"], coming)
    for thread in (first, second):
        thread.join(0.5)
    assert sorted([out_first, out_second], key=len) == [[], ["a", "b"]]
    waiting = first if first.is_alive() else second
    assert waiting.is_alive(), "the consumer that got nothing must still be waiting"
    queue.put(["c"])
    waiting.join(5)
    assert ["c"] in (out_first, out_second)


def test_a_consumer_goes_on_after_its_handler_fails():
    queue = GatheringQueue(linger=0.0)
    handled = []
    done = threading.Event()

    def handle(group):
        handled.extend(group)
        if "after" in group:
            done.set()
        if group == ["boom"]:
            raise RuntimeError("a bug in the handler")

    threading.Thread(target=queue.consume_forever, args=(10, handle), daemon=True).start()
    queue.put(["boom"])
    while "boom" not in handled and not done.wait(0.01):
        pass
    queue.put(["after"])
    assert done.wait(5), "the consumer thread died with its handler's error"
    assert handled == ["boom", "after"]
