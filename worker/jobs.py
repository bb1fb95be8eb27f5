"""The job store in Redis, shared by the web front end (which creates jobs) and the
workers (which run and finish them). Light imports only: the web app uses it too.

Keys (all expire, so Redis does not grow without bound):
- `hwr:job:<id>`        hash: status, mode, top_k, chars, n_images, queue, created_at,
                        started_at, finished_at, callback_url, results (JSON), error (JSON),
                        attempts, idempotency_slot, image_options (JSON: each image's own
                        mode, top_k, chars, name, box and source; empty when the job's apply
                        to all)
- `hwr:blob:<id>:<i>`   one uploaded image's bytes (TTL HWR_BLOB_TTL)
- `hwr:idem:<key>`      Idempotency-Key -> job id (TTL HWR_RESULT_TTL)
- `hwr:pending:<queue>`  sorted set of a queue's unfinished job ids by (re)submission
                        time, so a job whose Celery message was lost can be found and
                        re-sent by that queue's sweeper (`hwr:pending`: jobs stored
                        without a queue by older releases, anyone's)
- channel `hwr:done:<id>` gets one message when the job reaches a final status, or is
  deleted.

A job finishes exactly once: `finish_jobs` moves it to a final status atomically and
returns False to any later (redelivered) attempt, so clients and webhooks see one result.
"""
from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import redis

FINAL = ("succeeded", "failed")
STATUSES = ("queued", "running", *FINAL)
PENDING = "hwr:pending"


def pending_key(queue: str) -> str:
    """The pending set of `queue`'s jobs (the shared legacy set for jobs without one)."""
    return f"{PENDING}:{queue}" if queue else PENDING


def job_key(job_id: str) -> str:
    return f"hwr:job:{job_id}"


def blob_key(job_id: str, index: int) -> str:
    return f"hwr:blob:{job_id}:{index}"


def done_channel(job_id: str) -> str:
    return f"hwr:done:{job_id}"


# What new_job_id makes: the API checks ids against it, the sweeper finds them in messages.
JOB_ID = re.compile(r"[0-9a-f]{32}")


def new_job_id() -> str:
    return uuid.uuid4().hex


def now() -> float:
    return time.time()


@dataclass(frozen=True)
class NewJob:
    """A job to store: its id, uploaded image bytes and options."""

    job_id: str
    images: list[bytes]
    mode: str = "char"
    top_k: int = 5
    callback_url: str | None = None
    chars: str = ""  # worker.charsets: the classes the characters may be; "" for all
    idempotency_slot: str = ""  # the web's Idempotency-Key record for it, deleted with the job
    # Every image's own mode, top_k, chars, name, box and source, where the client set any
    # (web.inputs.Submission); empty when the job's options apply to every image.
    image_options: tuple[dict, ...] = ()
    case: str = "classes"  # "written": letters in the case they are written (worker/case.py)


def create_jobs(r: redis.Redis, new_jobs: list[NewJob], result_ttl: int, blob_ttl: int, queue: str = "") -> None:
    """Store each job's images as blobs and the job as queued: all of them in one transaction.
    `queue`: the Celery queue its message goes to, where the sweeper re-sends it if need be."""
    pipe = r.pipeline(transaction=True)
    created = now()
    for job in new_jobs:
        record = {"status": "queued", "mode": job.mode, "top_k": job.top_k, "chars": job.chars, "case": job.case,
                  "n_images": len(job.images), "queue": queue, "created_at": created, "callback_url": job.callback_url or "", "attempts": 0,
                  "idempotency_slot": job.idempotency_slot,
                  "image_options": orjson.dumps(job.image_options).decode() if job.image_options else ""}
        for i, image in enumerate(job.images):
            pipe.set(blob_key(job.job_id, i), image, ex=blob_ttl)
        pipe.hset(job_key(job.job_id), mapping={k: str(v) for k, v in record.items()})
        pipe.expire(job_key(job.job_id), result_ttl)
    pipe.zadd(pending_key(queue), {job.job_id: created for job in new_jobs})
    # A queue nobody serves any more must not keep its set forever: by the time it
    # expires, every job in it has expired too (the same TTL, from an earlier start).
    pipe.expire(pending_key(queue), result_ttl)
    pipe.execute()


def load_images(r: redis.Redis, job_id: str, n_images: int) -> list[bytes | None]:
    """The job's image blobs; None where a blob has expired."""
    return r.mget([blob_key(job_id, i) for i in range(n_images)]) if n_images else []


# Lua keeps "move to running unless already final" atomic across redelivered attempts.
_MARK_RUNNING = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status == 'succeeded' or status == 'failed' then return status end
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
return 'running'
"""

_FINISH = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 0 end
if status == 'succeeded' or status == 'failed' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'finished_at', ARGV[2], 'results', ARGV[3], 'error', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('PUBLISH', ARGV[6], ARGV[1])
-- The images are no longer needed: drop them in the same round trip.
local n = tonumber(redis.call('HGET', KEYS[1], 'n_images') or '0') or 0
for i = 0, n - 1 do redis.call('DEL', ARGV[7] .. i) end
local queue = redis.call('HGET', KEYS[1], 'queue')
if queue and queue ~= '' then redis.call('ZREM', ARGV[8] .. ':' .. queue, ARGV[9]) end
redis.call('ZREM', ARGV[8], ARGV[9])
return 1
"""


CLAIM_FIELDS = ("mode", "top_k", "chars", "case", "n_images", "callback_url", "image_options")


def image_options(fields: dict[str, str | None], n_images: int) -> list[dict]:
    """Each image's mode, top_k, chars, case and name: its own if the job has them, else the job's."""
    if fields.get("image_options"):
        return orjson.loads(fields["image_options"])
    own = {"mode": fields.get("mode") or "char", "top_k": int(fields.get("top_k") or 5),
           "chars": fields.get("chars") or "", "case": fields.get("case") or "classes", "name": ""}
    return [own] * n_images


Claim = tuple[str, dict[str, str], list[bytes | None]]


def claim_jobs(r: redis.Redis, wanted: list[tuple[str, int | None]]) -> list[Claim]:
    """Mark every (job id, n_images) running unless it is final or gone, and read its
    fields and (where the caller knows how many) its blobs, all in one round trip. Per
    job: (status: 'running', 'missing' or the final status it had; fields; blobs)."""
    pipe = r.pipeline(transaction=False)
    for job_id, n_images in wanted:
        pipe.eval(_MARK_RUNNING, 1, job_key(job_id), now())
        pipe.hmget(job_key(job_id), CLAIM_FIELDS)
        if n_images:
            pipe.mget([blob_key(job_id, i) for i in range(n_images)])
    replies = iter(pipe.execute())
    claims = []
    for job_id, n_images in wanted:
        status = next(replies)
        status = status.decode() if isinstance(status, bytes) else status
        fields = {k: (v.decode() if v is not None else "") for k, v in zip(CLAIM_FIELDS, next(replies))}
        blobs = next(replies) if n_images else None
        if status == "running" and blobs is None:
            blobs = load_images(r, job_id, int(fields["n_images"] or 0))
        claims.append((status, fields, blobs or []))
    return claims


_DELETE = """
local n = redis.call('HGET', KEYS[1], 'n_images')
if not n then return 0 end
local queue = redis.call('HGET', KEYS[1], 'queue')
local slot = redis.call('HGET', KEYS[1], 'idempotency_slot')
if slot and slot ~= '' then
  local claim = redis.call('GET', slot)
  if claim and string.sub(claim, -#ARGV[3]) == ARGV[3] then redis.call('DEL', slot) end
end
redis.call('DEL', KEYS[1])
for i = 0, (tonumber(n) or 0) - 1 do redis.call('DEL', ARGV[1] .. i) end
if queue and queue ~= '' then redis.call('ZREM', ARGV[2] .. ':' .. queue, ARGV[3]) end
redis.call('ZREM', ARGV[2], ARGV[3])
redis.call('PUBLISH', ARGV[4], 'deleted')
return 1
"""


def delete_job(r: redis.Redis, job_id: str) -> bool:
    """Delete the job, its images and results at once, whatever its status, and the
    Idempotency-Key record that names it (a replay then makes a new job); False if there
    was no such job. A queued job is then never run; a running one finishes into nothing
    (`_MARK_RUNNING` and `_FINISH` do nothing to a job that is gone), and its webhook, if
    any, is not sent. Waiters on the job wake up and find it gone."""
    return bool(r.eval(_DELETE, 1, job_key(job_id), f"hwr:blob:{job_id}:", PENDING, job_id, done_channel(job_id)))


def finish_jobs(r: redis.Redis, outcomes: list[tuple[str, str, list | None, dict | None]],
                result_ttl: int) -> list[bool]:
    """Move each (job id, status, results, error) to its final status once, in one round
    trip. True only for the attempts that did it."""
    pipe = r.pipeline(transaction=False)
    for job_id, status, results, error in outcomes:
        assert status in FINAL
        pipe.eval(_FINISH, 1, job_key(job_id), status, now(), orjson.dumps(results or []),
                  orjson.dumps(error) if error else "", result_ttl, done_channel(job_id), f"hwr:blob:{job_id}:",
                  PENDING, job_id)
    return [bool(done) for done in pipe.execute()]


def stale_jobs(r: redis.Redis, older_than: float, queue: str, limit: int = 500) -> list[tuple[str, int]]:
    """Unfinished jobs of `queue` last (re)submitted more than `older_than` seconds ago:
    (id, n_images), at most `limit` from its own pending set and as many from the legacy
    set, where jobs stored without a queue (older releases) count as anyone's.

    Their Celery message may be gone (kombu can lose one popped just as Redis dies, and
    a job's own TTL can outlive it). Each returned job is stamped as re-submitted now, so
    it comes back at most once per `older_than`. Expired and finished ones are dropped.
    Each queue has its own set, so no other queue's backlog can hide this queue's jobs."""
    cutoff = now() - older_than
    stale = []
    for key in dict.fromkeys((pending_key(queue), PENDING)):
        ids = [i.decode() for i in r.zrangebyscore(key, "-inf", cutoff, start=0, num=limit)]
        if not ids:
            continue
        pipe = r.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(job_key(job_id), "status", "n_images", "queue")
        found, gone = [], []
        for job_id, (status, n_images, job_queue) in zip(ids, pipe.execute()):
            if status is None or status.decode() in FINAL:
                gone.append(job_id)
            elif key != PENDING or not job_queue or job_queue.decode() == queue:
                found.append((job_id, int(n_images or 0)))
        pipe = r.pipeline(transaction=False)
        if gone:
            pipe.zrem(key, *gone)
        if found:
            pipe.zadd(key, {job_id: now() for job_id, _ in found}, xx=True)
        pipe.execute()
        stale.extend(found)
    return stale


def get_job(r: redis.Redis, job_id: str) -> dict[str, Any] | None:
    """The job as the API shows it, or None."""
    raw = r.hgetall(job_key(job_id))
    if not raw:
        return None
    # results and error stay bytes for orjson (a text line's results are ~15 KB of JSON).
    h = {k.decode(): v if k in (b"results", b"error") else v.decode() for k, v in raw.items()}

    def ts(name: str) -> str | None:
        value = h.get(name)
        if not value:
            return None
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(float(value))) + f".{int(float(value) % 1 * 1000):03d}Z"

    return {
        "id": job_id,
        "status": h.get("status", "queued"),
        "mode": h.get("mode", "char"),
        "top_k": int(h.get("top_k", 5)),
        "chars": h.get("chars") or None,
        "case": h.get("case") or "classes",
        "n_images": int(h.get("n_images", 0)),
        "created_at": ts("created_at"),
        "finished_at": ts("finished_at"),
        "results": orjson.loads(h["results"]) if h.get("results") else [],
        "error": orjson.loads(h["error"]) if h.get("error") else None,
        "callback_url": h.get("callback_url") or None,
    }
