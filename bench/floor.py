"""What the queue path cannot go below, measured beside `bench.e2e`'s scenarios.

Two figures, on the same machine and in the same run:
- `web_floor`: the CPU per request of a Flask app that does nothing (reads the body,
  answers a small JSON), driven by the same client with the same bytes, under the deployed
  gunicorn settings (web/gunicorn.conf.py) and under granian (a WSGI server written in
  Rust, the cheapest per request of the servers measured with keep-alive connections:
  README). The bound takes the cheaper of the two.
- `image_ms`: the CPU per image of decoding a scan and making its tile
  (`worker.recognize.plan_image`). A direct TorchServe request does this work in the
  handler; a queued job does it in the worker. It moves between the paths, it is not added.

`bound` then sums the least a queued single-character job can cost: the image work, plus
what TorchServe, Redis and the client spent per job in the run, plus the cheaper do-nothing
web request, with nothing at all for the worker's own Celery and Redis work. Divided into a
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


SERVERS = ("gunicorn", "granian")


def server_command(server: str, port: int, threads: int = 32) -> list[str]:
    """The do-nothing app under `server`: gunicorn as the real app is deployed, or granian
    with as many threads (its access log is off by default; the floor turns gunicorn's off)."""
    from bench import e2e  # not at the top: gunicorn imports this module for `app` alone

    if server == "gunicorn":
        return [str(VENV_BIN / "gunicorn"), "-c", str(e2e.ROOT / "web" / "gunicorn.conf.py"), "bench.floor:app"]
    if server == "granian":
        return [str(VENV_BIN / "granian"), "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
                "--blocking-threads", str(threads), "--log-level", "warning", "bench.floor:app"]
    raise ValueError(f"unknown server {server!r}: one of {SERVERS}")


def web_floor(state: Path, bodies: list[dict], clients: int, seconds: float, server: str = "gunicorn") -> dict:
    """CPU ms per request of the do-nothing app under `server`."""
    import httpx

    from bench import e2e

    port = free_port()
    env = {**base_env(), "HWR_WEB_PORT": str(port), "HWR_WEB_BIND": "127.0.0.1", "HWR_WEB_ACCESS_LOG": ""}
    server_proc = Managed(f"web_floor_{server}", server_command(server, port), env,
                          state / f"web_floor_{server}.log").start()
    url = f"http://127.0.0.1:{port}/v1/recognize"
    try:
        def up() -> bool:
            try:
                return httpx.post(url, content=b"x", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, 60, f"the do-nothing app under {server}")
        load = e2e.Load("web_floor", url, {}, bodies, 1)
        asyncio.run(e2e.drive(load, 8, 2.0))  # warm up
        before = e2e.tier_cpu({"web": [server_proc.proc.pid]})
        row = asyncio.run(e2e.drive(load, clients, seconds))
        after = e2e.tier_cpu({"web": [server_proc.proc.pid]})
    finally:
        server_proc.stop()
    return {"server": server, "clients": clients, "requests_per_s": row["jobs_per_s"], "errors": row["errors"],
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


def least_web_ms(floor: dict) -> float:
    """The cheaper do-nothing request of the servers measured (`web`: gunicorn, as deployed;
    `web_by_server`: all of them, where the run measured more than one)."""
    measured = floor.get("web_by_server") or {"gunicorn": floor["web"]}
    return min(row["cpu_ms_per_request"] for row in measured.values())


def _rows(result: dict) -> dict:
    return {name: {r["clients"]: r for r in rows} for name, rows in result["scenarios"].items()}


def bound(result: dict, clients: int = 32) -> dict | None:
    """The best queue_char / direct_char ratio the measured tiers allow (module docstring)."""
    rows, floor = _rows(result), result.get("floor")
    if not floor or clients not in rows.get("queue_char", {}) or clients not in rows.get("direct_char", {}):
        return None
    queue, direct = rows["queue_char"][clients]["cpu_ms_per_request"], rows["direct_char"][clients]["cpu_ms_per_request"]
    least = {"image": floor["image_ms"], "torchserve": queue["torchserve"], "redis": queue["redis"],
             "client": queue["client"], "web": least_web_ms(floor), "worker_overhead": 0.0}
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
             "web": least_web_ms(floor), "redis": best_row["cpu_ms_per_request"]["redis"],
             "client": best_row["cpu_ms_per_request"]["client"], "worker_overhead": 0.0, "torchserve_overhead": 0.0}
    cores = len(os.sched_getaffinity(0))
    best_chars = cores * 1000 / sum(least.values()) * 64
    return {"cores": cores, "text_job_least_cpu_ms": sum(least.values()), "least_parts": least,
            "best_chars_per_s": best_chars, "best_share": best_chars / ceiling["chars_per_s"],
            "measured_cpu_ms": sum(best_row["cpu_ms_per_request"].values())}
