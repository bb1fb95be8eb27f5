"""worker/orphans.py: a queued job whose Celery message the broker no longer holds."""
from __future__ import annotations

import json

import pytest

from worker import jobs, orphans
from worker.celery_app import make_celery
from worker.config import WorkerConfig
from worker.queue import publish_jobs

QUEUE = "hwr-orphans"


@pytest.fixture
def published(redis_server, redis_client):
    """Two jobs of QUEUE in one real Celery message, submitted long ago, still queued."""
    config = WorkerConfig(redis_url=redis_server.url, queue=QUEUE)
    new = [jobs.NewJob(jobs.new_job_id(), [b"img"], "char", 1) for _ in range(2)]
    publish_jobs(redis_client, make_celery(config), config, new)
    ids = sorted(job.job_id for job in new)
    redis_client.zadd(jobs.pending_key(QUEUE), dict.fromkeys(ids, 1))
    return ids


def found(redis_client, **kwargs) -> list[str]:
    return sorted(job_id for job_id, _ in orphans.orphaned_jobs(redis_client, QUEUE, 10, settle=0, **kwargs))


def deliver(redis_client) -> str:
    """What kombu does when a worker takes the message: pop it, record it as unacked."""
    raw = redis_client.rpop(QUEUE)
    tag = json.loads(raw)["properties"]["delivery_tag"]
    redis_client.hset(orphans.UNACKED_KEY, tag, json.dumps([json.loads(raw), "", QUEUE]))
    return tag


def test_a_message_waiting_in_the_queue_holds_its_jobs(redis_client, published):
    assert redis_client.llen(QUEUE) == 1
    assert found(redis_client) == []


def test_a_delivered_unacknowledged_message_holds_its_jobs(redis_client, published):
    deliver(redis_client)
    assert found(redis_client) == []


def test_jobs_of_a_message_that_is_gone_are_orphans_once(redis_client, published):
    tag = deliver(redis_client)
    redis_client.hdel(orphans.UNACKED_KEY, tag)  # the worker died between pop and record
    assert found(redis_client) == published
    assert [n for _, n in orphans.orphaned_jobs(redis_client, QUEUE, 0, settle=0)] == [1, 1], "image counts"
    # Stamped as re-submitted: not an orphan again until another `older_than` has passed.
    assert found(redis_client) == []


def test_only_queued_jobs_can_be_orphans(redis_client, published):
    redis_client.delete(QUEUE)
    redis_client.hset(jobs.job_key(published[0]), "status", "running")  # its redelivery is kombu's
    redis_client.hset(jobs.job_key(published[1]), "status", "succeeded")
    assert found(redis_client) == []


def test_young_jobs_are_not_orphans(redis_client, published):
    redis_client.delete(QUEUE)
    redis_client.zadd(jobs.pending_key(QUEUE), dict.fromkeys(published, jobs.now()))
    assert found(redis_client) == []


@pytest.mark.parametrize("message", [
    b"not a kombu message",
    json.dumps({"body": "%%%", "properties": {"body_encoding": "base64"}}).encode(),
    json.dumps({"properties": {}}).encode(),
])
def test_no_verdict_while_a_message_cannot_be_read(redis_client, published, message):
    redis_client.delete(QUEUE)
    redis_client.lpush(QUEUE, message)
    assert found(redis_client) == [], "an unreadable message might name them"


def test_no_verdict_when_there_are_too_many_messages_to_read(redis_client, published):
    redis_client.delete(QUEUE)
    redis_client.lpush(QUEUE, json.dumps({"body": "[[], {}, {}]", "properties": {}}))
    assert found(redis_client, max_messages=0) == []
    assert found(redis_client, max_messages=1) == published


def test_a_message_names_the_jobs_in_its_arguments(redis_client, published):
    raw = redis_client.lindex(QUEUE, 0)
    assert orphans.message_job_ids(raw) == set(published)
