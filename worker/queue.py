"""Submit jobs and wait for them: the producer side, used by the web app and benchmarks."""
from __future__ import annotations

import logging
import threading
import time
from typing import ContextManager

import redis
from celery import Celery

from worker import jobs
from worker.celery_app import RECOGNIZE_JOBS_TASK
from worker.config import WorkerConfig
from worker.gather import Announcement, GatheringQueue

log = logging.getLogger(__name__)


def submit_job(r: redis.Redis, celery: Celery, config: WorkerConfig, images: list[bytes], mode: str = "char",
               top_k: int = 5, callback_url: str | None = None, job_id: str | None = None,
               chars: str = "") -> str:
    """Store the job and its image blobs, then enqueue it. Returns the job id."""
    job_id = job_id or jobs.new_job_id()
    publish_jobs(r, celery, config, [jobs.NewJob(job_id, images, mode, top_k, callback_url, chars)])
    return job_id


class JobPublisher:
    """Store and enqueue the jobs of many request threads, several jobs per Celery message.

    Each message costs a publish here and, in the worker, a BRPOP, an unacked record, a
    task dispatch and an ack: under load that was over a third of a worker's Python time
    for one-character jobs (py-spy). One publisher thread per process takes the jobs
    submitted meanwhile, stores them in one Redis transaction and sends them as one
    `hwr.recognize_jobs` message. Requests announce themselves (`arrival`) before they
    parse their upload, and the publisher waits for those, up to `linger` seconds (see
    worker.gather); a lone job goes out at once. Create it after any fork.

    A group's jobs run one after the other in one worker thread, so only small jobs share
    a message: a job weighs one per image plus one per 64 KiB uploaded, and a group holds
    up to MAX_GROUP_WEIGHT. A large job travels alone and holds no small one up.
    """

    MAX_GROUP_WEIGHT = 64

    def __init__(self, r: redis.Redis, celery: Celery, config: WorkerConfig, linger: float = 0.005):
        self.redis, self.celery, self.config = r, celery, config
        self._queue: GatheringQueue[_Submission] = GatheringQueue(linger, size=_weight)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def arrival(self) -> ContextManager[Announcement]:
        """Wrap a request that may submit a job; pass what it yields to `submit`."""
        return self._queue.announce()

    def submit(self, job: jobs.NewJob, arrival: Announcement | None = None, timeout: float = 60.0) -> None:
        """Store and enqueue `job`; raises what storing or enqueueing it raised."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._publish_forever, name="hwr-job-publisher", daemon=True)
                self._thread.start()
        item = _Submission(job)
        self._queue.put([item], arrival)
        if not item.done.wait(timeout):
            raise TimeoutError(f"job {job.job_id} was not enqueued within {timeout:.0f}s")
        if item.error is not None:
            raise item.error

    def _publish_forever(self) -> None:
        self._queue.consume_forever(self.MAX_GROUP_WEIGHT, self._publish)

    def _publish(self, group: list[_Submission]) -> None:
        try:
            publish_jobs(self.redis, self.celery, self.config, [item.job for item in group])
        except Exception as exc:  # each request answers with the error
            for item in group:
                item.error = exc
        for item in group:
            item.done.set()


def _weight(item: "_Submission") -> int:
    return len(item.job.images) + sum(map(len, item.job.images)) // 65536


class _Submission:
    __slots__ = ("job", "done", "error")

    def __init__(self, job: jobs.NewJob):
        self.job, self.done = job, threading.Event()
        self.error: Exception | None = None


def publish_jobs(r: redis.Redis, celery: Celery, config: WorkerConfig, new_jobs: list[jobs.NewJob]) -> None:
    """Store the jobs in one transaction, then enqueue them as one message."""
    jobs.create_jobs(r, new_jobs, config.result_ttl, config.blob_ttl, config.queue)
    ids = [job.job_id for job in new_jobs]
    # The image counts let the worker fetch the jobs and their blobs in one round trip.
    # ignore_result: the result lives in the job store. Without it the message asks the
    # worker to store a Celery result too (a SET and a PUBLISH per message, kept for a day),
    # and send_task subscribes this producer to that result's channel, never to read it.
    celery.send_task(RECOGNIZE_JOBS_TASK, args=[ids, [len(job.images) for job in new_jobs]], queue=config.queue,
                     task_id=ids[0], ignore_result=True)


def wait_for_job(r: redis.Redis, job_id: str, timeout: float) -> dict | None:
    """Block until the job is final or `timeout` passes; returns the job as it stands then.
    Subscribes before checking, so a finish between the two is never missed."""
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(jobs.done_channel(job_id))
    try:
        deadline = time.monotonic() + timeout
        job = jobs.get_job(r, job_id)
        while job is not None and job["status"] not in jobs.FINAL:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            pubsub.get_message(timeout=min(left, 1.0))
            job = jobs.get_job(r, job_id)
        return job
    finally:
        pubsub.close()


class JobWaiter:
    """Wait for jobs to finish through one shared pattern subscription (`hwr:done:*`) per
    process, instead of a pub/sub connection per wait: wait_for_job opens (and closes) a new
    Redis connection and sends SUBSCRIBE and UNSUBSCRIBE for every job.

    A listener thread reads the finish messages and wakes the threads waiting on those jobs.
    Nothing depends on a message arriving: every `poll` seconds a waiter reads the job
    again, so a message lost while the listener reconnects only delays an answer.
    Create it after any fork (the thread and its connection do not survive one).
    """

    def __init__(self, r: redis.Redis, poll: float = 1.0):
        self.redis = r
        self.poll = poll
        self._lock = threading.Lock()
        self._waiters: dict[str, list[threading.Event]] = {}
        self._subscribed = threading.Event()
        self._thread: threading.Thread | None = None
        self._prefix = jobs.done_channel("")
        self._closed = threading.Event()
        self._pubsub = None

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._listen_forever, name="hwr-job-waiter", daemon=True)
                self._thread.start()

    def _listen_forever(self) -> None:
        backoff = 0.1
        while not self._closed.is_set():
            pubsub = self._pubsub = self.redis.pubsub()
            try:
                pubsub.psubscribe(self._prefix + "*")
                for message in pubsub.listen():
                    kind = message["type"]
                    if kind == b"psubscribe" or kind == "psubscribe":
                        self._subscribed.set()
                        backoff = 0.1
                    elif kind == b"pmessage" or kind == "pmessage":
                        channel = message["channel"]
                        job_id = (channel.decode() if isinstance(channel, bytes) else channel)[len(self._prefix):]
                        with self._lock:
                            events = self._waiters.get(job_id, ())
                            for event in events:
                                event.set()
            except Exception as exc:  # Redis restarted or unreachable: the waiters poll meanwhile
                self._subscribed.clear()
                if self._closed.is_set():
                    return
                log.warning("job waiter: subscription lost (%s); retrying in %.1fs", exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                try:
                    pubsub.close()
                except Exception:
                    pass

    def close(self) -> None:
        """Stop listening: an app whose Redis goes away on purpose (a test's) must not log
        a lost subscription, and retry it, for the rest of the process."""
        self._closed.set()
        pubsub = self._pubsub
        if pubsub is not None:
            try:
                pubsub.close()  # the listener's read fails, and it sees _closed
            except Exception:
                pass
        if self._thread is not None:
            self._thread.join(5)

    def register(self, job_id: str) -> threading.Event:
        """Start listening for `job_id` (before submitting it, so its finish is never missed)."""
        self._start()
        event = threading.Event()
        with self._lock:
            self._waiters.setdefault(job_id, []).append(event)
        # Only the first jobs of a process wait here, for the subscription to be active.
        self._subscribed.wait(2.0)
        return event

    def unregister(self, job_id: str, event: threading.Event) -> None:
        with self._lock:
            events = self._waiters.get(job_id)
            if events is not None:
                events.remove(event)
                if not events:
                    del self._waiters[job_id]

    def wait(self, job_id: str, timeout: float, event: threading.Event | None = None,
             fresh: bool = False) -> dict | None:
        """Block until the job is final or `timeout` passes; returns the job as it stands
        then (None: unknown or expired). `event` from register() when the caller registered
        before submitting; `fresh`: the caller has just created the job, so it is not final
        yet and need not be read before the first wait."""
        own = event is None
        if own:
            event = self.register(job_id)
        try:
            deadline = time.monotonic() + timeout
            job = None if fresh else jobs.get_job(self.redis, job_id)
            while fresh or (job is not None and job["status"] not in jobs.FINAL):
                fresh = False
                left = deadline - time.monotonic()
                if left <= 0:
                    if job is None:
                        job = jobs.get_job(self.redis, job_id)
                    break
                event.wait(min(left, self.poll))
                event.clear()  # a finish writes the job before it publishes: the read below sees it
                job = jobs.get_job(self.redis, job_id)
            return job
        finally:
            if own:
                self.unregister(job_id, event)
