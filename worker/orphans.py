"""Jobs whose Celery message is gone: found in minutes, not after HWR_RESUBMIT_AFTER.

kombu's Redis transport pops a message (BRPOP) and only then records it as unacked. A
worker SIGKILLed between the two, or a Redis that dies between them, takes the message
with it: no visibility timeout brings it back, and its jobs stay "queued" with nothing
left to run them. `make chaos` saw this in about half of its worker kills under load.

The sweeper's first remedy (`jobs.stale_jobs`) re-sends any job unfinished long after
submission, which must wait longer than the longest backlog (900 s by default). This
module tells the two cases apart instead: a job still queued after `older_than` seconds
whose id no message in the broker names (in the queue's list, or delivered to a worker
and unacknowledged) is an orphan. It is checked twice, `settle` seconds apart, because a
message is briefly in neither place while a worker takes it or kombu restores it.

Knows kombu's Redis layout: a queue is a list named after it (priority 0, the only one
this project sends), and unacknowledged messages are the values of the `unacked` hash,
each `[message, exchange, routing_key]`; a message is JSON whose `body` holds the task's
arguments, base64-encoded when `properties.body_encoding` says so.
"""
from __future__ import annotations

import base64
import binascii
import json
import time

import redis

from worker import jobs

UNACKED_KEY = "unacked"  # kombu's default `unacked_key`; celery_app.py does not change it


class Unreadable(ValueError):
    """A message this module cannot read: it then declares no job an orphan."""


def message_job_ids(raw: bytes) -> set[str]:
    """The job ids a broker message names (the arguments of hwr.recognize_jobs and kin)."""
    try:
        message = json.loads(raw)
        if isinstance(message, list):  # an unacked entry: [message, exchange, routing_key]
            message = message[0]
        body = message["body"]
        if (message.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body, validate=True).decode("utf-8", "replace")
    except (ValueError, KeyError, TypeError, IndexError, binascii.Error) as exc:
        raise Unreadable(str(exc)) from None
    if not isinstance(body, str):
        raise Unreadable(f"message body is {type(body).__name__}")
    return set(jobs.JOB_ID.findall(body))


def job_ids_in_broker(r: redis.Redis, queue: str, max_messages: int) -> set[str] | None:
    """Every job id named by a message the broker still holds for any worker: waiting in
    `queue` or delivered and unacknowledged. None when there are too many to read, or one
    cannot be read: the caller then cannot tell an orphan from a job in a backlog."""
    pipe = r.pipeline(transaction=False)
    pipe.llen(queue)
    pipe.hlen(UNACKED_KEY)
    waiting, delivered = pipe.execute()
    if waiting + delivered > max_messages:
        return None
    pipe = r.pipeline(transaction=False)
    pipe.lrange(queue, 0, -1)
    pipe.hvals(UNACKED_KEY)
    held: set[str] = set()
    try:
        for messages in pipe.execute():
            for raw in messages:
                held |= message_job_ids(raw)
    except Unreadable:
        return None
    return held


def _still_queued(r: redis.Redis, ids: list[str]) -> list[tuple[str, int]]:
    pipe = r.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(jobs.job_key(job_id), "status", "n_images")
    return [(job_id, int(n_images or 0)) for job_id, (status, n_images) in zip(ids, pipe.execute())
            if status == b"queued"]


def orphaned_jobs(r: redis.Redis, queue: str, older_than: float, settle: float = 1.0,
                  max_messages: int = 10_000, limit: int = 500) -> list[tuple[str, int]]:
    """`queue`'s jobs, (id, n_images), queued for more than `older_than` seconds since they
    were (re)submitted and named by no message in the broker, twice, `settle` seconds
    apart. Each is stamped as re-submitted now, so it is returned at most once per
    `older_than`."""
    key = jobs.pending_key(queue)
    ids = [i.decode() for i in r.zrangebyscore(key, "-inf", jobs.now() - older_than, start=0, num=limit)]
    orphans = _still_queued(r, ids)
    for attempt in range(2):
        if attempt:
            time.sleep(settle)
            orphans = _still_queued(r, [job_id for job_id, _ in orphans])
        if not orphans:
            return []
        held = job_ids_in_broker(r, queue, max_messages)
        if held is None:
            return []
        orphans = [(job_id, n) for job_id, n in orphans if job_id not in held]
    if orphans:
        r.zadd(key, {job_id: jobs.now() for job_id, _ in orphans}, xx=True)
    return orphans
