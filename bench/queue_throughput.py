"""Queue vs direct: single-character jobs per second through Redis + Celery workers
(submit_job + wait_for_job) beside the same clients sending one image per request
straight to TorchServe, in one run on the same TorchServe. Also lone-job latency (one
client) both ways. Prints both and the ratio; writes bench/results/queue-<date>.json.

`python -m bench.queue_throughput --clients 32 --seconds 20`
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def drive(clients: int, seconds: float, one_request) -> dict:
    """`clients` threads each calling one_request(i) back to back for `seconds`."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(c: int):
        i = c
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            ok = one_request(i)
            took = time.perf_counter() - started
            with lock:
                latencies.append(took) if ok else errors.__setitem__(0, errors[0] + 1)
            i += clients

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    lat = sorted(latencies) or [0.0]
    return {"clients": clients, "jobs": len(latencies), "errors": errors[0], "seconds": round(elapsed, 2),
            "jobs_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(1000 * lat[len(lat) // 2], 1), "p95_ms": round(1000 * lat[int(len(lat) * 0.95)], 1),
            "mean_ms": round(1000 * statistics.fmean(lat), 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "emnist47")
    args = p.parse_args()

    import redis

    from tests.fixtures.worker import launch_worker, worker_metric
    from tests.stack import RedisServer, TorchServe
    from training.data import load_split
    from training.scans import render_scan
    from worker.celery_app import make_celery
    from worker.config import WorkerConfig
    from worker.queue import submit_job, wait_for_job

    split = load_split(args.data, "test", limit=512)
    rng = np.random.default_rng(0)
    images = [render_scan(t, rng, jpeg=False) for t in split.images]
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        procs = []
        try:
            rs = RedisServer.create(state / "redis").start()
            procs.append(rs)
            ts = TorchServe.create(state / "ts").start()
            procs.append(ts)
            workers = [launch_worker(state, rs.url, ts)
                       for _ in range(args.workers)]
            procs.extend(workers)
            config = WorkerConfig(redis_url=rs.url)
            celery = make_celery(config)
            r = redis.Redis.from_url(rs.url, max_connections=4 * args.clients)
            http = httpx.Client(limits=httpx.Limits(max_connections=args.clients), timeout=60)
            headers = {**ts.headers(), "Content-Type": "application/octet-stream"}

            def direct(i: int) -> bool:
                response = http.post(f"{ts.url}/predictions/emnist", content=images[i % len(images)],
                                     headers=headers)
                return response.status_code == 200 and "predictions" in response.json()["results"][0]

            def queued(i: int) -> bool:
                job = wait_for_job(r, submit_job(r, celery, config, [images[i % len(images)]], "char", 5), 60)
                return job is not None and job["status"] == "succeeded"

            for fn in (direct, queued):  # warm up connections, JIT-free but caches and pools
                drive(4, 2, fn)
            figures = {"lone_direct": drive(1, args.seconds / 4, direct),
                       "lone_queue": drive(1, args.seconds / 4, queued),
                       "direct": drive(args.clients, args.seconds, direct),
                       "queue": drive(args.clients, args.seconds, queued)}
            batches = sum(worker_metric(w, "hwr_worker_batch_size_count") for w in workers)
            tiles = sum(worker_metric(w, "hwr_worker_batch_size_sum") for w in workers)
            figures["mean_batch_size"] = round(tiles / max(batches, 1), 2)
        finally:
            for proc in reversed(procs):
                proc.stop()
    figures["ratio_queue_to_direct"] = round(figures["queue"]["jobs_per_s"] / max(figures["direct"]["jobs_per_s"], 1e-9), 3)
    figures["lone_overhead_ms"] = round(figures["lone_queue"]["mean_ms"] - figures["lone_direct"]["mean_ms"], 2)
    print(f"{args.clients} clients: direct TorchServe {figures['direct']['jobs_per_s']} req/s, "
          f"queue {figures['queue']['jobs_per_s']} jobs/s, ratio {figures['ratio_queue_to_direct']}")
    print(f"lone job: direct {figures['lone_direct']['mean_ms']} ms, queue {figures['lone_queue']['mean_ms']} ms "
          f"(+{figures['lone_overhead_ms']} ms); mean batch size {figures['mean_batch_size']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"queue-{time.strftime('%Y%m%d')}.json"
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "workers": args.workers,
                               **figures}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
