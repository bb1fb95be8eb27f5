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
import json
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

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
        return r.json()["id"] if r is not None and r.status_code == 202 else None

    def final_status(self, job_id: str, timeout: float) -> str:
        stop = time.monotonic() + timeout
        while time.monotonic() < stop:
            r = self.request("GET", f"/v1/jobs/{job_id}")
            if r is not None and r.status_code == 404:
                return "vanished"
            if r is not None and r.status_code == 200 and r.json()["status"] in FINAL:
                return r.json()["status"]
            time.sleep(0.5)
        return "unfinished"


def count(client: Client, ids: list[str], timeout: float) -> dict:
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda j: client.final_status(j, timeout), ids))
    return {"succeeded": statuses.count("succeeded"), "failed": statuses.count("failed"),
            "lost": sum(s not in FINAL for s in statuses)}


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


def scenario_kill_worker(stack: FullStack, client: Client, images: list[bytes], n: int) -> dict:
    victim = stack.worker_procs[0]

    def kill():
        time.sleep(0.5)
        victim.signal(signal.SIGKILL)
        stack.start_worker("worker-replacement")

    ids = submit_many(client, images, n, during=kill, at=n // 4)
    return {"fault": "SIGKILL a worker mid-batch, start a replacement", "submitted": len(ids), **count(client, ids, 240)}


def scenario_stop_torchserve(stack: FullStack, client: Client, images: list[bytes], n: int) -> dict:
    def outage():
        stack.torchserve.stop()
        time.sleep(10)
        stack.torchserve.start()

    ids = submit_many(client, images, n, during=outage, at=n // 4)
    return {"fault": "TorchServe stopped for 10 s", "submitted": len(ids), **count(client, ids, 240)}


def scenario_restart_redis(stack: FullStack, client: Client, images: list[bytes], n: int) -> dict:
    def restart():
        stack.redis.stop()  # SIGTERM: Redis fsyncs its AOF before exiting
        time.sleep(2)
        stack.redis.start()

    ids = submit_many(client, images, n, during=restart, at=n // 3)
    return {"fault": "Redis restarted (AOF on)", "submitted": len(ids), **count(client, ids, 240)}


def scenario_client_disconnects(stack: FullStack, client: Client, images: list[bytes], n: int) -> dict:
    """Clients give up on /v1/recognize after 50 ms; the job must still finish and be found again."""
    keys = [f"chaos-disconnect-{time.time_ns()}-{i}" for i in range(n)]

    def impatient(i: int) -> None:
        try:
            httpx.post(f"{stack.url}/v1/recognize", timeout=0.05, headers={"Idempotency-Key": keys[i]},
                       json={"images": [base64.b64encode(images[i % len(images)]).decode()], "timeout": 30})
        except httpx.HTTPError:
            pass  # the disconnect is the point

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(impatient, range(n)))
    # The same Idempotency-Key finds the job that the disconnected request created.
    ids = [client.submit(images[i % len(images)], key=keys[i]) for i in range(n)]
    found = [i for i in ids if i]
    result = count(client, found, 240)
    result["lost"] += n - len(found)
    return {"fault": "client disconnects while waiting on /v1/recognize", "submitted": n, **result}


def scenario_rate_limit_burst(stack: FullStack, client: Client, images: list[bytes], n: int) -> dict:
    impatient = Client(stack.url)
    with ThreadPoolExecutor(32) as pool:
        first = list(pool.map(lambda i: impatient.request("POST", "/v1/jobs", retry=False, json={
            "images": [base64.b64encode(images[i % len(images)]).decode()]}), range(n)))
    limited = [r for r in first if r is not None and r.status_code == 429]
    ids = [r.json()["id"] for r in first if r is not None and r.status_code == 202]
    retry_after_ok = all(r.headers.get("Retry-After") for r in limited)
    # Well-behaved clients come back after Retry-After with the refused jobs.
    ids += [j for j in (client.submit(images[i % len(images)]) for i in range(len(limited))) if j]
    return {"fault": f"burst of {n} submissions beyond the rate limit", "submitted": len(ids),
            "rate_limited_429": len(limited), "retry_after_on_every_429": retry_after_ok,
            **count(client, ids, 240)}


SCENARIOS = {
    "kill_worker": scenario_kill_worker,
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
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    images = [render_scan(t, rng) for t in emnist.load_split(args.data, "test", limit=100).images]
    results = {}
    with tempfile.TemporaryDirectory(prefix="hwr-chaos-") as tmp:
        stack = FullStack(Path(tmp), workers=2,
                          web_env={"HWR_RATE_LIMIT": "100/second"},
                          worker_env={"HWR_VISIBILITY_TIMEOUT": "20", "HWR_TORCHSERVE_RETRY_SECONDS": "120"})
        try:
            stack.start()
            client = Client(stack.url)
            for name in args.scenarios.split(","):
                started = time.time()
                results[name] = SCENARIOS[name](stack, client, images, args.jobs)
                results[name]["seconds"] = round(time.time() - started, 1)
                r = results[name]
                print(f"{name:20} submitted {r['submitted']:4d}  succeeded {r['succeeded']:4d}  failed {r['failed']:3d}"
                      f"  lost {r['lost']:3d}  ({r['fault']}, {r['seconds']} s)", flush=True)
                ready = httpx.get(f"{stack.url}/readyz", timeout=10).status_code
                results[name]["readyz_after"] = ready
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
