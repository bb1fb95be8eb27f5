"""Fault injection: `make chaos` (python -m bench.chaos).

Each scenario submits a fixed number of jobs through the real stack, injects one fault,
then counts submitted, succeeded, failed and lost jobs. A job is lost when the API
accepted it (202) and it never reached a final status, or its record vanished. Clients
behave as real ones do: they retry 429 (after Retry-After) and 503, and poll GET /v1/jobs.
Writes bench/results/chaos-<date>.json; exits non-zero if any scenario lost a job.
"""
from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import hashlib
import json
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import redis

from bench.e2e import cpu_seconds_by_pid
from tests.stack import FullStack
from training import data as emnist
from training.scans import render_scan

ROOT = Path(__file__).resolve().parent.parent
FINAL = ("succeeded", "failed")


class Client:
    """A patient API client: retries 429 and 503 and connection errors, as `hwr` does."""

    def __init__(self, url: str, deadline: float = 180):
        self.http = httpx.Client(base_url=url, timeout=30, limits=httpx.Limits(max_connections=64))
        self.deadline = deadline
        # How submissions that never got a 202 ended ("HTTP 500", "gave up"): refused, not lost,
        # since the client never got an id, but a real client saw an error.
        self.not_accepted: collections.Counter = collections.Counter()
        self._lock = threading.Lock()

    def request(self, method: str, path: str, retry: bool = True, **kwargs) -> httpx.Response | None:
        stop = time.monotonic() + self.deadline
        delay = 0.1
        while True:
            try:
                r = self.http.request(method, path, **kwargs)
                if not retry or r.status_code not in (429, 502, 503, 504):
                    return r
                wait = float(r.headers.get("Retry-After", delay))
            except httpx.HTTPError:
                if not retry:
                    return None
                wait = delay
            if time.monotonic() + wait > stop:
                return None
            time.sleep(min(wait, 5))
            delay = min(delay * 2, 2)

    def submit(self, image: bytes, key: str | None = None, retry: bool = True) -> str | None:
        headers = {"Idempotency-Key": key} if key else {}
        r = self.request("POST", "/v1/jobs", retry=retry, json={"images": [base64.b64encode(image).decode()]},
                         headers=headers)
        if r is not None and r.status_code == 202:
            return r.json()["id"]
        with self._lock:
            self.not_accepted["no answer" if r is None else f"HTTP {r.status_code}"] += 1
        return None

    def take_not_accepted(self) -> dict:
        with self._lock:
            counts, self.not_accepted = dict(self.not_accepted), collections.Counter()
        return counts

    def final_status(self, job_id: str, stop: float) -> str:
        """Poll until the job is final or time.monotonic() passes `stop` (checked at least once)."""
        while True:
            r = self.request("GET", f"/v1/jobs/{job_id}")
            if r is not None and r.status_code == 404:
                return "vanished"
            if r is not None and r.status_code == 200 and r.json()["status"] in FINAL:
                return r.json()["status"]
            if time.monotonic() >= stop:
                return "unfinished"
            time.sleep(0.5)


def job_records(stack: FullStack, ids: list[str]) -> list[dict]:
    """What the job store itself holds for these jobs (diagnosis of lost ones)."""
    r = redis.Redis(port=stack.redis.port)
    try:
        return [{"id": j, **{k.decode(): v.decode() for k, v in r.hgetall(f"hwr:job:{j}").items()
                            if k in (b"status", b"attempts", b"created_at", b"started_at")}} for j in ids]
    finally:
        r.close()


def count(client: Client, ids: list[str], timeout: float, stack: FullStack | None = None) -> dict:
    stop = time.monotonic() + timeout  # one deadline for all: lost jobs must not wait in turns
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda j: client.final_status(j, stop), ids))
    result = {"succeeded": statuses.count("succeeded"), "failed": statuses.count("failed"),
              "lost": sum(s not in FINAL for s in statuses)}
    lost = [j for j, s in zip(ids, statuses) if s not in FINAL]
    if lost and stack is not None:
        result["lost_jobs"] = job_records(stack, lost[:50])
    if stack is not None:  # jobs run more than once: a redelivery happened (a kill or an outage)
        records = job_records(stack, ids)
        result["redelivered"] = sum(int(rec.get("attempts") or 0) >= 2 for rec in records)
    result["not_accepted"] = client.take_not_accepted()
    return result


def submit_many(client: Client, images: list[bytes], n: int, during=None, at: int | None = None) -> list[str]:
    """Submit n jobs from 16 threads; run `during()` once `at` jobs are in."""
    ids: list[str | None] = [None] * n
    fired = threading.Event()

    def one(i: int) -> None:
        ids[i] = client.submit(images[i % len(images)])
        if during and at is not None and i >= at and not fired.is_set():
            fired.set()
            threading.Thread(target=during, daemon=True).start()

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(n)))
    return [i for i in ids if i]


def wait_for_running_job(stack: FullStack, timeout: float = 10.0) -> bool:
    """Block until some job is claimed by a worker (status running): a kill then lands
    mid-batch, not between jobs."""
    r = redis.Redis(port=stack.redis.port)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            keys = list(r.scan_iter("hwr:job:*", count=1000))
            pipe = r.pipeline(transaction=False)
            for key in keys:
                pipe.hget(key, "status")
            if b"running" in pipe.execute():
                return True
        return False
    finally:
        r.close()


def scenario_kill_worker(stack: FullStack, client: Client, images: list[bytes], n: int) -> dict:
    victim = stack.worker_procs[0]
    caught_running = threading.Event()

    def kill():
        if wait_for_running_job(stack):
            caught_running.set()
        # The whole command at once, its Celery processes too (they would otherwise get
        # the SIGTERM their parent's death sends them, and stop gracefully).
        processes = worker_children(victim.proc.pid)
        victim.signal(signal.SIGKILL)
        for pid in processes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        stack.start_worker("worker-replacement")

    ids = submit_many(client, images, n, during=kill, at=n // 4)
    return {"fault": "SIGKILL a worker (all its processes) mid-batch, start a replacement", "submitted": len(ids),
            "killed_with_a_job_running": caught_running.is_set(), **count(client, ids, 240, stack)}


def scenario_kill_worker_process(stack: FullStack, client: Client, images: list[bytes], n: int) -> dict:
    """One Celery process of a supervised worker dies (the OOM killer's way): its parent
    starts another, and the jobs it held are delivered again."""
    parent = stack.worker_procs[-1].proc.pid
    caught_running = threading.Event()
    killed: list[int] = []

    def kill():
        if wait_for_running_job(stack):
            caught_running.set()
        children = worker_children(parent)
        if children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(children[0], signal.SIGKILL)
            killed.append(children[0])

    ids = submit_many(client, images, n, during=kill, at=n // 4)
    result = count(client, ids, 240, stack)
    replaced = bool(killed) and killed[0] not in worker_children(parent) and len(worker_children(parent)) >= 2
    return {"fault": "SIGKILL one process of a supervised worker mid-batch", "submitted": len(ids),
            "killed_with_a_job_running": caught_running.is_set(), "process_replaced": replaced, **result}


def worker_children(pid: int) -> list[int]:
    _, parent = cpu_seconds_by_pid()
    return sorted(child for child, ppid in parent.items() if ppid == pid)


def scenario_stop_torchserve(stack: FullStack, client: Client, images: list[bytes], n: int) -> dict:
    def outage():
        stack.torchserve.stop()
        time.sleep(10)
        stack.torchserve.start()

    ids = submit_many(client, images, n, during=outage, at=n // 4)
    return {"fault": "TorchServe stopped for 10 s", "submitted": len(ids), **count(client, ids, 240, stack)}


def scenario_restart_redis(stack: FullStack, client: Client, images: list[bytes], n: int) -> dict:
    def restart():
        stack.redis.stop()  # SIGTERM: Redis fsyncs its AOF before exiting
        time.sleep(2)
        stack.redis.start()

    ids = submit_many(client, images, n, during=restart, at=n // 3)
    return {"fault": "Redis restarted (AOF on)", "submitted": len(ids), **count(client, ids, 240, stack)}


def idempotency_slot(key: str) -> str:
    """The Redis key web.api keeps an Idempotency-Key in (no API keys configured here)."""
    return "hwr:idem:" + hashlib.sha256(f"\0{key}".encode()).hexdigest()


def scenario_client_disconnects(stack: FullStack, client: Client, images: list[bytes], n: int) -> dict:
    """Clients give up on /v1/recognize after 50 ms; the job must still finish and be found again."""
    keys = [f"chaos-disconnect-{time.time_ns()}-{i}" for i in range(n)]
    outcomes: collections.Counter = collections.Counter()
    lock = threading.Lock()

    def impatient(i: int) -> None:
        try:
            r = httpx.post(f"{stack.url}/v1/recognize", timeout=0.05, headers={"Idempotency-Key": keys[i]},
                           json={"images": [base64.b64encode(images[i % len(images)]).decode()], "timeout": 30})
            outcome = f"answered HTTP {r.status_code}"
        except httpx.TimeoutException:
            outcome = "disconnected"  # the disconnect is the point
        except httpx.HTTPError as exc:
            outcome = exc.__class__.__name__
        with lock:
            outcomes[outcome] += 1

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(impatient, range(n)))
    # Which keys the server had already bound to a job when the clients went away.
    r = redis.Redis(port=stack.redis.port)
    try:
        earlier = [(r.get(idempotency_slot(k)) or b"").decode().partition(":")[2] for k in keys]
    finally:
        r.close()
    # The same Idempotency-Key finds the job that the disconnected request created.
    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(lambda i: client.submit(images[i % len(images)], key=keys[i]), range(n)))
    found_again = sum(bool(e) and j == e for j, e in zip(ids, earlier))
    other_job = sum(bool(e) and j is not None and j != e for j, e in zip(ids, earlier))
    found = [j for j in ids if j]
    result = count(client, found, 240, stack)
    # A key that found no job, or another job than its first request made, lost that job.
    result["lost"] += n - len(found) + other_job
    return {"fault": "client disconnects while waiting on /v1/recognize", "submitted": n,
            "first_requests": dict(outcomes), "found_again_by_key": found_again,
            "key_gave_another_job": other_job, **result}


def scenario_rate_limit_burst(stack: FullStack, client: Client, images: list[bytes], n: int) -> dict:
    impatient = Client(stack.url)
    with ThreadPoolExecutor(32) as pool:
        first = list(pool.map(lambda i: impatient.request("POST", "/v1/jobs", retry=False, json={
            "images": [base64.b64encode(images[i % len(images)]).decode()]}), range(n)))
    burst = collections.Counter("no answer" if r is None else f"HTTP {r.status_code}" for r in first)
    ids = [r.json()["id"] for r in first if r is not None and r.status_code == 202]
    refused = [i for i, r in enumerate(first) if r is None or r.status_code != 202]
    limited = [r for r in first if r is not None and r.status_code == 429]
    retry_after_ok = all(r.headers.get("Retry-After", "").isdigit() for r in limited)
    # Well-behaved clients come back after Retry-After (and after any other refusal) with the refused jobs.
    ids += [j for j in (client.submit(images[i % len(images)]) for i in refused) if j]
    return {"fault": f"burst of {n} submissions beyond the rate limit", "submitted": len(ids),
            "burst_answers": dict(burst), "rate_limited_429": len(limited),
            "retry_after_on_every_429": retry_after_ok, **count(client, ids, 240, stack)}


def readiness_after(url: str, settle: float = 20) -> dict:
    """/readyz once the fault is over: 200, or the last answer's checks after `settle` s."""
    stop = time.monotonic() + settle
    while True:
        try:
            r = httpx.get(f"{url}/readyz", timeout=10)
            if r.status_code == 200 or time.monotonic() > stop:
                return {"status": r.status_code, **({} if r.status_code == 200 else {"checks": r.json()["checks"]})}
        except httpx.HTTPError as exc:
            if time.monotonic() > stop:
                return {"status": None, "error": f"{exc.__class__.__name__}: {exc}"}
        time.sleep(1)


SCENARIOS = {
    "kill_worker": scenario_kill_worker,
    "kill_worker_process": scenario_kill_worker_process,
    "stop_torchserve": scenario_stop_torchserve,
    "restart_redis": scenario_restart_redis,
    "client_disconnects": scenario_client_disconnects,
    "rate_limit_burst": scenario_rate_limit_burst,
}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "emnist47")
    p.add_argument("--jobs", type=int, default=300, help="jobs per scenario")
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--state", type=Path, default=None,
                   help="keep the services' state and logs here (default: var/chaos/<time>)")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    images = [render_scan(t, rng) for t in emnist.load_split(args.data, "test", limit=100).images]
    results = {}
    state = args.state or ROOT / "var" / "chaos" / time.strftime("%Y%m%d-%H%M%S")
    print(f"services' state and logs: {state}", flush=True)
    # Two worker commands of two Celery processes each: kill_worker takes a whole command
    # down, kill_worker_process one process under its supervisor (as `make run` starts them).
    stack = FullStack(state, workers=2,
                      web_env={"HWR_RATE_LIMIT": "100/second"},
                      worker_env={"HWR_WORKER_PROCESSES": "2", "HWR_VISIBILITY_TIMEOUT": "20", "HWR_TORCHSERVE_RETRY_SECONDS": "120",
                                      # Deployments' sweeper (orphans re-sent 60 s after
                                      # submission, anything unfinished after 900 s), checked
                                      # every 5 s instead of 30.
                                      "HWR_SWEEP_INTERVAL": "5"})
    try:
        stack.start()
        client = Client(stack.url)
        for name in args.scenarios.split(","):
            started = time.time()
            results[name] = SCENARIOS[name](stack, client, images, args.jobs)
            results[name]["seconds"] = round(time.time() - started, 1)
            r = results[name]
            print(f"{name:20} submitted {r['submitted']:4d}  succeeded {r['succeeded']:4d}  failed {r['failed']:3d}"
                  f"  lost {r['lost']:3d}  redelivered {r.get('redelivered', 0):3d}"
                  f"  never accepted {sum(r['not_accepted'].values()):3d} {r['not_accepted'] or ''}"
                  f"  ({r['fault']}, {r['seconds']} s)", flush=True)
            results[name]["readyz_after"] = readiness_after(stack.url)
    finally:
        stack.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"chaos-{time.strftime('%Y-%m-%d')}.json").write_text(json.dumps(results, indent=2))
    lost = sum(r["lost"] for r in results.values())
    print(f"total lost: {lost}")
    if lost:
        sys.exit(1)
    return results


if __name__ == "__main__":
    main()
