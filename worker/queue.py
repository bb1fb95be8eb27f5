"""Submit jobs and wait for them: the producer side, used by the web app and benchmarks."""
from __future__ import annotations

import time

import redis
from celery import Celery

from worker import jobs
from worker.celery_app import RECOGNIZE_TASK
from worker.config import WorkerConfig


def submit_job(r: redis.Redis, celery: Celery, config: WorkerConfig, images: list[bytes], mode: str = "char",
               top_k: int = 5, callback_url: str | None = None, job_id: str | None = None) -> str:
    """Store the job and its image blobs, then enqueue it. Returns the job id."""
    job_id = job_id or jobs.new_job_id()
    jobs.create_job(r, job_id, images, mode, top_k, callback_url, config.result_ttl, config.blob_ttl)
    # The image count lets the worker fetch the job and its blobs in one round trip.
    celery.send_task(RECOGNIZE_TASK, args=[job_id], kwargs={"n_images": len(images)}, queue=config.queue,
                     task_id=job_id)
    return job_id


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
