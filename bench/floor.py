"""What the queue path cannot go below, measured beside `bench.e2e`'s scenarios.

Two figures, on the same machine and in the same run:
- `web_floor`: the CPU per request of a Flask app that does nothing (reads the body,
  answers a small JSON) under the deployed gunicorn settings (web/gunicorn.conf.py), driven
  by the same client with the same bytes. No web tier built on Flask and gunicorn costs less.
- `image_ms`: the CPU per image of decoding a scan and making its tile
  (`worker.recognize.plan_image`). A direct TorchServe request does this work in the
  handler; a queued job does it in the worker. It moves between the paths, it is not added.

`bound` then sums the least a queued single-character job can cost: the image work, plus
what TorchServe, Redis and the client spent per job in the run, plus the do-nothing web
request, with nothing at all for the worker's own Celery and Redis work. Divided into a
direct request's CPU it gives the best queue/direct ratio this machine allows while every
tier shares its cores: the issue's 1.0x is within reach only if the bound reaches it.
"""
from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from flask import Flask, jsonify, request

from serve import preprocess
from tests.stack import VENV_BIN, Managed, base_env, free_port, wait_until

app = Flask(__name__)


@app.post("/v1/recognize")
def do_nothing():
    body = request.get_data()
    return jsonify({"id": "0" * 32, "status": "succeeded", "n_bytes": len(body),
                    "results": [{"text": "A", "confidence": 1.0, "characters": [{"char": "A"}]}]})


def web_floor(state: Path, bodies: list[dict], clients: int, seconds: float) -> dict:
    """CPU ms per request of the do-nothing app, as gunicorn serves the real one."""
    import httpx

    from bench import e2e  # not at the top: gunicorn imports this module for `app` alone

    port = free_port()
    env = {**base_env(), "HWR_WEB_PORT": str(port), "HWR_WEB_BIND": "127.0.0.1"}
    server = Managed("web_floor", [str(VENV_BIN / "gunicorn"), "-c", str(e2e.ROOT / "web" / "gunicorn.conf.py"),
                                   "bench.floor:app"], env, state / "web_floor.log").start()
    url = f"http://127.0.0.1:{port}/v1/recognize"
    try:
        def up() -> bool:
            try:
                return httpx.post(url, content=b"x", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, 60, "the do-nothing app")
        load = e2e.Load("web_floor", url, {}, bodies, 1)
        asyncio.run(e2e.drive(load, 8, 2.0))  # warm up
        before = e2e.tier_cpu({"web": [server.proc.pid]})
        row = asyncio.run(e2e.drive(load, clients, seconds))
        after = e2e.tier_cpu({"web": [server.proc.pid]})
    finally:
        server.stop()
    return {"clients": clients, "requests_per_s": row["jobs_per_s"], "errors": row["errors"],
            "cpu_ms_per_request": 1000 * (after["web"] - before["web"]) / max(row["sent"], 1)}


def image_ms(images: list[bytes], mode: str = "char", max_pixels: int = preprocess.DEFAULT_MAX_PIXELS,
             rounds: int = 3) -> float:
    """CPU ms per image of plan_image (decode, ink, cut into characters in text mode,
    tiles), one thread, in this process."""
    import cv2

    from worker import recognize

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # as the worker runs it (HWR_OPENCV_THREADS) and the handler's one thread
    try:
        for data in images:
            recognize.plan_image(data, mode, max_pixels)
        started = time.process_time()
        for _ in range(rounds):
            for data in images:
                recognize.plan_image(data, mode, max_pixels)
        return 1000 * (time.process_time() - started) / (rounds * len(images))
    finally:
        cv2.setNumThreads(threads)


def _rows(result: dict) -> dict:
    return {name: {r["clients"]: r for r in rows} for name, rows in result["scenarios"].items()}


def bound(result: dict, clients: int = 32) -> dict | None:
    """The best queue_char / direct_char ratio the measured tiers allow (module docstring)."""
    rows, floor = _rows(result), result.get("floor")
    if not floor or clients not in rows.get("queue_char", {}) or clients not in rows.get("direct_char", {}):
        return None
    queue, direct = rows["queue_char"][clients]["cpu_ms_per_request"], rows["direct_char"][clients]["cpu_ms_per_request"]
    least = {"image": floor["image_ms"], "torchserve": queue["torchserve"], "redis": queue["redis"],
             "client": queue["client"], "web": floor["web"]["cpu_ms_per_request"], "worker_overhead": 0.0}
    direct_ms = sum(direct.values())
    return {"clients": clients, "direct_cpu_ms": direct_ms, "queue_least_cpu_ms": sum(least.values()),
            "queue_least_parts": least, "best_ratio": direct_ms / sum(least.values()),
            "measured_queue_cpu_ms": sum(queue.values())}


def text_bound(result: dict) -> dict | None:
    """The best share of the model ceiling a 64-character text job can reach here: all
    cores busy, each job costing no more than cutting its line into tiles, the model's own
    work on them (one thread, its cheapest in CPU), and the least web, Redis and client
    work measured; the worker's Celery and Redis work and TorchServe's own counted as 0."""
    floor, rows = result.get("floor"), _rows(result).get("queue_text64")
    if not floor or "text_image_ms" not in floor or not rows:
        return None
    ceiling = result["model_ceiling"]
    model_ms = 64 * 1000 / float(ceiling["chars_per_s_by_threads"]["1"])
    best_row = max(rows.values(), key=lambda r: r["chars_per_s"])
    least = {"cut_and_tiles": floor["text_image_ms"], "model": model_ms,
             "web": floor["web"]["cpu_ms_per_request"], "redis": best_row["cpu_ms_per_request"]["redis"],
             "client": best_row["cpu_ms_per_request"]["client"], "worker_overhead": 0.0, "torchserve_overhead": 0.0}
    cores = len(os.sched_getaffinity(0))
    best_chars = cores * 1000 / sum(least.values()) * 64
    return {"cores": cores, "text_job_least_cpu_ms": sum(least.values()), "least_parts": least,
            "best_chars_per_s": best_chars, "best_share": best_chars / ceiling["chars_per_s"],
            "measured_cpu_ms": sum(best_row["cpu_ms_per_request"].values())}
