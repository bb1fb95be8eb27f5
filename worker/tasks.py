"""The Celery tasks a worker runs: hwr.recognize (one job) and hwr.webhook (tell the
client's callback URL that its job is final)."""
from __future__ import annotations

import json
import logging
import threading
import time

import cv2
import httpx
import redis
from celery.signals import worker_ready
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from worker import charsets, jobs, metrics, orphans, recognize, webhooks
from worker.batcher import MicroBatcher
from worker.celery_app import RECOGNIZE_JOBS_TASK, RECOGNIZE_TASK, celery_app
from worker.config import load
from worker.torchserve import TorchServeClient, TorchServeError, TorchServeUnavailable

WEBHOOK_TASK = "hwr.webhook"
log = logging.getLogger("hwr.worker")
config = load()


class _Runtime:
    """Per-process state, made on first use (after Celery has forked or started threads)."""

    _lock = threading.Lock()
    _made = False

    @classmethod
    def get(cls) -> "_Runtime":
        if not cls._made:
            with cls._lock:
                if not cls._made:
                    # A Redis restart must not fail the jobs in flight: retry for about a
                    # minute (a failed task would be acked and its job left unfinished).
                    cls.redis = redis.Redis.from_url(
                        config.redis_url, max_connections=None, health_check_interval=30,
                        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 60),
                        retry_on_error=[redis.ConnectionError, redis.TimeoutError])
                    cv2.setNumThreads(config.opencv_threads)
                    cls.planning_slots = threading.BoundedSemaphore(max(1, config.planning_slots))
                    cls.batcher = MicroBatcher(TorchServeClient(config), config.max_batch,
                                               config.batch_inflight, config.retry_max_seconds,
                                               config.batch_linger)
                    cls._made = True
        return cls


@celery_app.task(name=RECOGNIZE_TASK, ignore_result=True)
def recognize_job(job_id: str, n_images: int | None = None) -> None:
    run_jobs([job_id], [n_images])


@celery_app.task(name=RECOGNIZE_JOBS_TASK, ignore_result=True)
def recognize_jobs(job_ids: list[str], n_images: list[int | None]) -> None:
    """Several jobs in one message: the web front end groups the jobs submitted together."""
    run_jobs(job_ids, n_images)


Outcome = tuple[str, list | None, dict | None]  # final status, results, error


def _internal_error(job_ids: list[str], exc: Exception) -> Outcome:
    # A bug must not leave a job "running" forever; it fails only the jobs it touched.
    log.error("jobs %s: internal error", job_ids, exc_info=exc)
    metrics.FAILURES.labels(reason="internal_error").inc()
    return "failed", None, {"code": "internal_error", "message": exc.__class__.__name__}


def run_jobs(job_ids: list[str], n_images: list[int | None]) -> None:
    """Claim the jobs, send all their tiles to TorchServe together, and finish each once."""
    started = time.perf_counter()
    rt = _Runtime.get()
    claimed = []
    for job_id, (status, fields, blobs) in zip(job_ids, jobs.claim_jobs(rt.redis, list(zip(job_ids, n_images)))):
        if status != "running":  # a redelivered job that already finished, or one that expired
            log.info("job %s: skipped (%s)", job_id, status)
        else:
            claimed.append((job_id, fields, blobs))
    if not claimed:
        return
    outcomes = recognize_claimed(rt, claimed)
    won = jobs.finish_jobs(rt.redis, [(job_id, *outcomes[job_id]) for job_id, _, _ in claimed], config.result_ttl)
    elapsed = time.perf_counter() - started
    for (job_id, fields, blobs), first in zip(claimed, won):
        if not first:
            log.info("job %s: another attempt finished it first", job_id)
            continue
        final, results, error = outcomes[job_id]
        mode = fields["mode"] or "char"
        n_chars = sum(len(r["characters"]) for r in results or [])
        metrics.JOBS.labels(mode=mode, status=final).inc()
        metrics.CHARACTERS.labels(mode=mode).inc(n_chars)
        metrics.JOB_DURATION.labels(mode=mode).observe(elapsed)
        if final == "failed":
            log.warning("job %s: failed: %s", job_id, error)
        else:
            log.debug("job %s: %s, %d images, %d characters in %.1f ms", job_id, final, len(blobs), n_chars,
                      elapsed * 1000)
        if fields["callback_url"]:
            deliver_webhook.apply_async(args=[job_id, fields["callback_url"]], queue=config.queue)


def recognize_claimed(rt: type[_Runtime], claimed: list[tuple[str, dict, list]]) -> dict[str, Outcome]:
    """Each claimed job's outcome. All their tiles go to TorchServe as one request; an
    outage fails them all, a bug only the job it hit."""
    outcomes: dict[str, Outcome] = {}
    planned_jobs = []
    with rt.batcher.planning() as planned:
        for job_id, fields, blobs in claimed:
            try:
                options = jobs.image_options(fields, len(blobs))
                sources = [own.get("source", i) for i, own in enumerate(options)]
                pages = recognize.Pages(blobs, config.max_pixels, sources)
                plans = []
                for i, (blob, own) in enumerate(zip(blobs, options, strict=True)):
                    # Decoding and cutting is CPU bound: only `planning_slots` images of this
                    # process at once (32 threads trading the GIL cost ~20% more CPU). A slot
                    # per image, so a job of thousands takes turns with the small ones.
                    with rt.planning_slots:
                        marks = charsets.marks_of(own["chars"])
                        if sources[i] == i and not own.get("box"):
                            plans.append(recognize.plan_image(blob, own["mode"], config.max_pixels, marks))
                        else:  # a region of an upload, maybe of one that other regions share
                            plans.append(pages.plan(sources[i], own["mode"], own.get("box"), marks))
                planned_jobs.append((job_id, options, plans))
            except Exception as exc:
                outcomes[job_id] = _internal_error([job_id], exc)
        planned_ids = [job_id for job_id, _, _ in planned_jobs]
        try:
            tiles = recognize.all_tiles([p for _, _, plans in planned_jobs for p in plans])
            pending = rt.batcher.submit(tiles, planned)
        except Exception as exc:
            return {**outcomes, **dict.fromkeys(planned_ids, _internal_error(planned_ids, exc))}
    try:
        probs = pending.probabilities()
    except (TorchServeUnavailable, TorchServeError) as exc:
        failed = ("failed", None, {"code": exc.code, "message": str(exc)})
        return {**outcomes, **dict.fromkeys(planned_ids, failed)}
    except Exception as exc:
        return {**outcomes, **dict.fromkeys(planned_ids, _internal_error(planned_ids, exc))}
    cursor = 0
    for job_id, options, plans in planned_jobs:
        n_tiles = sum(len(plan.tiles) for plan in plans)
        part, cursor = probs[cursor:cursor + n_tiles], cursor + n_tiles
        try:
            fields = [recognize.Reading(own["top_k"], charsets.classes_of(own["chars"]), own["mode"] == "text",
                                        own.get("case") == "written") for own in options]
            results = recognize.build_results(plans, part, fields)
            for own, result in zip(options, results):
                if own["name"]:
                    result["name"] = own["name"]
            outcomes[job_id] = ("succeeded", results, None)
        except Exception as exc:
            outcomes[job_id] = _internal_error([job_id], exc)
    return outcomes


@celery_app.task(name=WEBHOOK_TASK, bind=True, ignore_result=True, max_retries=None)
def deliver_webhook(self, job_id: str, url: str) -> None:
    """POST the final job JSON, signed; retried with exponential backoff."""
    try:
        target, pinned_headers, extensions = webhooks.pinned_request(url, config.webhook_allow_private)
    except ValueError as exc:  # DNS may have changed since submission
        log.warning("job %s: webhook refused: %s", job_id, exc)
        metrics.WEBHOOKS.labels(outcome="refused").inc()
        return
    job = jobs.get_job(_Runtime.get().redis, job_id)
    if job is None:
        metrics.WEBHOOKS.labels(outcome="expired").inc()
        return
    body = json.dumps(job).encode()
    timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", webhooks.TIMESTAMP_HEADER: timestamp,
               "User-Agent": "hwr-webhook/1"}
    if config.webhook_secret:
        headers[webhooks.SIGNATURE_HEADER] = webhooks.sign(body, config.webhook_secret, timestamp)
    try:
        # No redirects: a redirect could point at an address the check above refused.
        with httpx.Client(timeout=config.webhook_timeout, follow_redirects=False) as client:
            request = client.build_request("POST", target, content=body, headers={**headers, **pinned_headers},
                                           extensions=extensions)
            response = client.send(request)
        if response.status_code >= 300:
            raise RuntimeError(f"HTTP {response.status_code}")
    except Exception as exc:
        tries = self.request.retries + 1
        if tries >= config.webhook_max_tries:
            log.warning("job %s: webhook to %s failed %d times, giving up: %s", job_id, url, tries, exc)
            metrics.WEBHOOKS.labels(outcome="gave_up").inc()
            return
        metrics.WEBHOOKS.labels(outcome="retry").inc()
        raise self.retry(countdown=min(2 ** tries, 300), exc=exc)
    metrics.WEBHOOKS.labels(outcome="delivered").inc()
    log.info("job %s: webhook delivered to %s", job_id, url)


SWEEPER_LOCK = "hwr:sweeper:"  # + the queue: workers of other queues sweep their own jobs


def resubmit(job_id: str, n_images: int, reason: str) -> None:
    celery_app.send_task(RECOGNIZE_TASK, args=[job_id], kwargs={"n_images": n_images},
                         queue=config.queue, task_id=job_id, ignore_result=True)
    metrics.RESUBMITTED.labels(reason=reason).inc()


def sweep_forever(hostname: str) -> None:
    """Re-send jobs whose Celery message was lost: at once where the broker holds no
    message for a job queued `orphan_after` seconds (worker/orphans.py), and any job
    unfinished `resubmit_after` seconds after submission. One worker sweeps per interval
    (a lock)."""
    r = _Runtime.get().redis
    while True:
        time.sleep(config.sweep_interval)
        try:
            if not r.set(SWEEPER_LOCK + config.queue, hostname, nx=True, ex=max(1, int(config.sweep_interval))):
                continue
            for job_id, n_images in orphans.orphaned_jobs(r, config.queue, config.orphan_after):
                resubmit(job_id, n_images, "orphan")
                log.warning("job %s: queued over %.0f s with no message in the broker, re-sent", job_id,
                            config.orphan_after)
            for job_id, n_images in jobs.stale_jobs(r, config.resubmit_after, config.queue):
                resubmit(job_id, n_images, "stale")
                log.warning("job %s: unfinished %.0f s after submission, re-sent", job_id, config.resubmit_after)
        except Exception:  # never let the sweeper die; the next round tries again
            log.exception("sweeper round failed")


@worker_ready.connect
def start_sweeper(sender=None, **_) -> None:
    name = getattr(sender, "hostname", "worker")
    threading.Thread(target=sweep_forever, args=(name,), name="hwr-sweeper", daemon=True).start()
