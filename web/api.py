"""The /v1 REST API: submit jobs, read them, recognize and wait, preview a tile."""
from __future__ import annotations

import hashlib

from flask import Blueprint, g, jsonify, request, url_for

from serve.preprocess import PreprocessError, decode_image, normalize_char
from web import inputs
from web.errors import ApiError
from web.services import services
from worker import jobs
from worker.gather import Announcement

bp = Blueprint("api", __name__, url_prefix="/v1")

JOB_FIELDS = ("id", "status", "mode", "top_k", "chars", "case", "n_images", "created_at", "finished_at", "results",
              "error", "callback_url")


def job_links(job_id: str) -> dict:
    return {"self": url_for("api.read_job", job_id=job_id)}


def public_job(job: dict) -> dict:
    return {**{k: job.get(k) for k in JOB_FIELDS}, "links": job_links(job["id"])}


def accepted(job_id: str, status: str = "queued"):
    response = jsonify(id=job_id, status=status, links=job_links(job_id))
    response.status_code = 202
    response.headers["Location"] = job_links(job_id)["self"]
    return response


def idempotency_slot(key: str) -> str:
    # Scoped to the API key, so two clients that pick the same key never see each other's jobs.
    owner = g.get("api_key") or ""
    return "hwr:idem:" + hashlib.sha256(f"{owner}\0{key}".encode()).hexdigest()


def submit(submission: inputs.Submission, arrival: Announcement, job_id: str | None = None) -> str:
    """Create and enqueue the job; with an Idempotency-Key, a replay returns the first job."""
    s = services()
    job_id = job_id or jobs.new_job_id()
    key = inputs.idempotency_key(request)
    slot = None
    if key is not None:
        slot = idempotency_slot(key)
        fingerprint = submission.fingerprint()
        # SET NX claims the key atomically: of two concurrent first requests exactly one wins.
        if not s.redis.set(slot, f"{fingerprint}:{job_id}", nx=True, ex=s.config.result_ttl):
            stored = (s.redis.get(slot) or b"").decode()
            earlier_fingerprint, _, earlier_id = stored.partition(":")
            if earlier_fingerprint != fingerprint:
                raise ApiError(409, "idempotency_conflict",
                               "this Idempotency-Key was used with a different request body")
            return earlier_id
    try:
        s.job_publisher().submit(jobs.NewJob(job_id, submission.images, submission.mode, submission.top_k,
                                             submission.callback_url, submission.chars, slot or "",
                                             submission.image_options, submission.case), arrival)
    except Exception:
        if slot:  # the key must not point at a job that was never created
            s.redis.delete(slot)
        raise
    s.metrics.jobs.labels(submission.mode).inc()
    s.metrics.images.inc(len(submission.images))
    return job_id


@bp.post("/jobs")
def create_job():
    s = services()
    with s.job_publisher().arrival() as arrival:
        submission = inputs.parse_submission(request, s.config, with_timeout=False)
        return accepted(submit(submission, arrival))


@bp.get("/jobs/<job_id>")
def read_job(job_id: str):
    s = services()
    inputs.check_query(request, ("wait",))
    wait = inputs.parse_seconds("wait", request.args.get("wait", "0"), s.config.max_wait_seconds)
    if not jobs.JOB_ID.fullmatch(job_id):
        raise ApiError(404, "not_found", f"no job {job_id[:64]!r}")
    job = s.job_waiter().wait(job_id, wait) if wait > 0 else jobs.get_job(s.redis, job_id)
    if job is None:
        raise ApiError(404, "not_found", f"no job {job_id!r} (unknown, deleted, or its results expired)")
    return jsonify(public_job(job))


@bp.delete("/jobs/<job_id>")
def delete_job(job_id: str):
    """Forget a job now, not when its results expire: its images, results and status (forms
    hold personal data). A queued job is never run and a running one stores nothing."""
    s = services()
    inputs.check_query(request, ())
    if not jobs.JOB_ID.fullmatch(job_id) or not jobs.delete_job(s.redis, job_id):
        raise ApiError(404, "not_found", f"no job {job_id[:64]!r} (unknown, deleted, or its results expired)")
    return "", 204


@bp.post("/recognize")
def recognize():
    s = services()
    waiter = s.job_waiter()
    new_id = jobs.new_job_id()
    with s.job_publisher().arrival() as arrival:
        submission = inputs.parse_submission(request, s.config, with_timeout=True)
        # Listen before submitting: the job may finish before this thread gets to wait.
        event = waiter.register(new_id)
        try:
            job_id = submit(submission, arrival, new_id)
            if job_id == new_id:  # just created: not final yet, no need to read it before waiting
                job = waiter.wait(job_id, submission.timeout, event, fresh=True)
            else:  # an Idempotency-Key replay: the earlier job, which may be final already
                job = waiter.wait(job_id, submission.timeout)
        finally:
            waiter.unregister(new_id, event)
    if job is not None and job["status"] in jobs.FINAL:
        return jsonify(public_job(job))
    return accepted(job_id, job["status"] if job else "queued")


@bp.post("/preview")
def preview():
    """The 28x28 tile the model would see for this image, made by serve.preprocess itself."""
    config = services().config
    data = inputs.parse_single_image(request, config)
    try:
        tile = normalize_char(decode_image(data, config.max_image_pixels))
    except PreprocessError as exc:
        raise ApiError(422, exc.code, str(exc)) from None
    return jsonify(width=int(tile.shape[1]), height=int(tile.shape[0]), pixels=tile.tolist())
