"""worker/supervisor.py: several Celery worker processes under one `python -m worker`."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from bench.e2e import cpu_seconds_by_pid
from tests.fixtures.worker import worker_metric
from tests.stack import wait_until
from training.scans import render_scan
from worker.celery_app import make_celery
from worker.config import WorkerConfig, load
from worker.queue import submit_job, wait_for_job
from worker.supervisor import child_names

pytestmark = pytest.mark.timeout(300)


def test_each_child_gets_a_node_name_of_its_own():
    assert child_names([], 2) == [["-n", "hwr-0@%h"], ["-n", "hwr-1@%h"]]
    assert child_names(["-n", "ocr@box", "--loglevel=INFO"], 2) == [
        ["--loglevel=INFO", "-n", "ocr-0@box"], ["--loglevel=INFO", "-n", "ocr-1@box"]]
    assert child_names(["--hostname=ocr"], 1) == [["-n", "ocr-0"]]


def test_process_count_is_checked(monkeypatch):
    monkeypatch.setenv("HWR_WORKER_PROCESSES", "auto")
    assert load().processes >= 1
    for bad, message in (("0", "must be at least 1"), ("two", "must be an integer")):
        monkeypatch.setenv("HWR_WORKER_PROCESSES", bad)
        with pytest.raises(ValueError, match=f"HWR_WORKER_PROCESSES {message}"):
            load()


def children_of(pid: int) -> list[int]:
    _, parent = cpu_seconds_by_pid()
    return sorted(child for child, ppid in parent.items() if ppid == pid)


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for init to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# A queue of its own: the session's shared worker must not take these jobs.
QUEUE = "hwr-supervisor-test"


def run_jobs(redis_server, redis_client, images: list[bytes]) -> list[dict]:
    config = WorkerConfig(redis_url=redis_server.url, queue=QUEUE)
    celery = make_celery(config)
    ids = [submit_job(redis_client, celery, config, [image]) for image in images]
    return [wait_for_job(redis_client, job_id, 120) for job_id in ids]


def test_two_processes_share_the_queue_restart_and_stop(redis_server, redis_client, start_worker,
                                                        emnist_test_sample):
    import numpy as np

    rng = np.random.default_rng(3)
    images = [render_scan(tile, rng, jpeg=False) for tile in emnist_test_sample.images[:40]]
    proc = start_worker(HWR_WORKER_PROCESSES="2", HWR_QUEUE=QUEUE)
    wait_until(lambda: proc.tail(400).count(" ready.") >= 2, 90, "both worker processes ready")
    children = children_of(proc.proc.pid)
    assert len(children) == 2

    # Both are Celery nodes of their own, and the parent's metrics add up both processes' jobs.
    replies = make_celery(WorkerConfig(redis_url=redis_server.url)).control.ping(timeout=2.0)
    names = {name for reply in replies for name in reply}
    assert {n.split("@")[0] for n in names} >= {f"{proc.name}-0", f"{proc.name}-1"}, names
    done = run_jobs(redis_server, redis_client, images)
    assert [job["status"] for job in done] == ["succeeded"] * len(images)
    assert worker_metric(proc, "hwr_worker_jobs_total") == len(images)

    # A child killed outright is replaced; jobs go on succeeding.
    os.kill(children[0], signal.SIGKILL)
    wait_until(lambda: len(children_of(proc.proc.pid)) == 2 and children[0] not in children_of(proc.proc.pid),
               30, "the killed worker process replaced")
    wait_until(lambda: proc.tail(400).count(" ready.") >= 3, 90, "the new worker process ready")
    done = run_jobs(redis_server, redis_client, images[:10])
    assert [job["status"] for job in done] == ["succeeded"] * 10
    assert worker_metric(proc, "hwr_worker_jobs_total") >= len(images) + 10  # the dead one's count stays

    # SIGTERM to the parent stops every child (warm shutdown), then the parent.
    current = children_of(proc.proc.pid)
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.proc.wait(30) == 0
    wait_until(lambda: not any(running(pid) for pid in current), 10, "children gone")


def test_children_die_with_a_parent_killed_outright(start_worker):
    proc = start_worker(HWR_WORKER_PROCESSES="2", HWR_WORKER_METRICS_PORT="0", HWR_QUEUE=QUEUE)
    wait_until(lambda: len(children_of(proc.proc.pid)) == 2, 60, "two worker processes")
    children = children_of(proc.proc.pid)
    proc.proc.send_signal(signal.SIGKILL)
    proc.proc.wait(10)
    # Linux's parent-death signal: a SIGTERM, so each finishes its tasks and exits.
    wait_until(lambda: not any(running(pid) for pid in children), 60, "children gone with their parent")
