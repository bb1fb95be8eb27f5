"""End-to-end load test through the real stack: `make bench` (python -m bench.e2e).

Starts Redis, TorchServe, the workers and the web app on free ports, then drives them with
N concurrent asyncio/aiohttp clients, each sending its next request as soon as the last one
answered (closed loop). In the same run, for comparison:
- the same clients sending one image per request straight to TorchServe;
- the in-process ceiling: the archived model called directly at batch 64;
- the least a queued job could cost on this machine (bench/floor.py), which bounds the
  queue/direct ratio and the text jobs' share of the ceiling.
Figures go to stdout, bench/results/<date>.json and bench/results/<date>.png.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import numpy as np

from bench import floor
from tests.stack import FullStack
from training import data as emnist
from training.evaluate import ArchivedModel
from training.scans import render_scan

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


@dataclass
class Load:
    name: str
    url: str
    headers: dict
    bodies: list  # request bodies, cycled: {"content": bytes, "headers": {...}} or {"json": ...}
    chars_per_request: int
    kind: str = "queue"  # how to tell a good answer: "queue" (the API's job JSON) or "direct" (TorchServe's)


def answered(kind: str, status: int, body: bytes) -> bool:
    """A real answer, not just a 200: TorchServe's predictions, or a job that succeeded with
    a recognized character for every image (a 202 from a timed-out wait is not an answer)."""
    if status != 200:
        return False
    body = json.loads(body)
    results = body.get("results") or []
    if kind == "direct":
        return bool(results) and all("predictions" in r for r in results)
    return (body.get("status") == "succeeded" and bool(results)
            and all(r.get("characters") and "error" not in r for r in results))


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


class AiohttpPoster:
    """The load client. httpx's async pool cost 1.1-1.5 ms of CPU per request at 1-8
    connections, 3.5 ms at 32 and 9.5-13.8 ms at 128, on the cores the stack under test
    shares, so at 32 and 128 clients the figures measured the client (README, "End to
    end"). aiohttp costs 0.16-0.32 ms per single-character request."""

    def __init__(self, clients: int, headers: dict):
        self._session = aiohttp.ClientSession(
            headers=headers, timeout=aiohttp.ClientTimeout(total=120),
            connector=aiohttp.TCPConnector(limit=clients, force_close=False))

    async def post(self, url: str, body: dict) -> tuple[int, bytes]:
        kwargs = {"data": body["content"]} if "content" in body else {"json": body["json"]}
        async with self._session.post(url, headers=body.get("headers"), **kwargs) as response:
            return response.status, await response.read()

    async def close(self) -> None:
        await self._session.close()


class HttpxPoster:
    """The client of sessions 1-10, kept to compare against (`--client httpx`)."""

    def __init__(self, clients: int, headers: dict):
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        self._client = httpx.AsyncClient(limits=limits, timeout=120, headers=headers)

    async def post(self, url: str, body: dict) -> tuple[int, bytes]:
        response = await self._client.post(url, **body)
        return response.status_code, response.content

    async def close(self) -> None:
        await self._client.aclose()


POSTERS = {"aiohttp": AiohttpPoster, "httpx": HttpxPoster}


async def drive(load: Load, clients: int, seconds: float, warmup: float = 1.0, client: str = "aiohttp") -> dict:
    """Closed-loop load: each client sends, waits for the answer, sends again."""
    latencies: list[float] = []
    errors = sent = 0
    poster = POSTERS[client](clients, load.headers)
    started = time.perf_counter()
    measure_from, stop_at = started + warmup, started + warmup + seconds

    async def one_client(offset: int) -> None:
        nonlocal errors, sent
        i = offset
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            body = load.bodies[i % len(load.bodies)]
            i += clients
            sent += 1
            try:
                ok = answered(load.kind, *await poster.post(load.url, body))
            except (httpx.HTTPError, aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                ok = False
            t1 = time.perf_counter()
            # Count what completes inside the measured window, whenever it started: with
            # 128 clients a text job can take longer than the window itself.
            if measure_from <= t1 <= stop_at:
                if ok:
                    latencies.append(t1 - t0)
                else:
                    errors += 1

    try:
        await asyncio.gather(*(one_client(k) for k in range(clients)))
    finally:
        await poster.close()
    done = len(latencies)
    return {"clients": clients, "requests": done, "errors": errors, "sent": sent,
            "jobs_per_s": done / seconds, "chars_per_s": done * load.chars_per_request / seconds,
            "p50_ms": 1000 * percentile(latencies, 50), "p95_ms": 1000 * percentile(latencies, 95),
            "p99_ms": 1000 * percentile(latencies, 99)}


def cpu_seconds_by_pid() -> tuple[dict[int, float], dict[int, int]]:
    """utime + stime of every process, and each one's parent (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    cpu, parent = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        pid = int(entry.name)
        parent[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
    return cpu, parent


def tier_cpu(tiers: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds used so far by each tier: its processes and all their descendants.
    The client is this process (it does nothing else while it drives the load)."""
    cpu, parent = cpu_seconds_by_pid()
    children: dict[int, list[int]] = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    out = {}
    for name, roots in tiers.items():
        todo, total = list(roots), 0.0
        while todo:
            pid = todo.pop()
            total += cpu.get(pid, 0.0)
            todo.extend(children.get(pid, ()))
        out[name] = total
    times = os.times()
    out["client"] = times.user + times.system
    return out


def stack_tiers(stack: FullStack) -> dict[str, list[int]]:
    return {"web": [stack.web.proc.pid], "worker": [w.proc.pid for w in stack.worker_procs],
            "redis": [stack.redis.proc.pid], "torchserve": [stack.torchserve.proc.pid]}


def text_line(tiles: np.ndarray, rng: np.random.Generator, gap_every: int = 8) -> bytes:
    """One line of handwriting from tiles: dark ink on white, word gaps every few chars."""
    pieces = []
    for i, tile in enumerate(tiles):
        pieces.append(255 - tile)
        gap = 18 if (i + 1) % gap_every == 0 else int(rng.integers(2, 6))
        pieces.append(np.full((28, gap), 255, np.uint8))
    line = np.concatenate(pieces, axis=1)
    page = np.full((line.shape[0] + 16, line.shape[1] + 16), 255, np.uint8)
    page[8:-8, 8:-8] = line
    import cv2

    ok, png = cv2.imencode(".png", cv2.resize(page, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC))
    return png.tobytes()


def model_ceiling(tiles: np.ndarray, seconds: float = 3.0, precision: str | None = None) -> dict:
    """Characters/s of the archived model called in-process at batch 64: the best of one
    torch thread and one per core (on a busy machine, OpenMP threads that wait for each other
    can make "all cores" ten times slower than one thread; the ceiling is the better one)."""
    import os

    import torch

    model = ArchivedModel(precision=precision)
    batch = model.preprocess.normalize_tiles(tiles[:64])
    default_threads = torch.get_num_threads()
    by_threads = {}
    try:
        for threads in sorted({1, os.cpu_count() or 1}):
            torch.set_num_threads(threads)
            model.probabilities(batch)
            done, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                model.probabilities(batch)
                done += len(batch)
            by_threads[threads] = done / (time.perf_counter() - started)
    finally:
        torch.set_num_threads(default_threads)
    best = max(by_threads, key=by_threads.get)
    return {"batch": 64, "chars_per_s": by_threads[best], "threads": best, "precision": model.meta["precision"],
            "chars_per_s_by_threads": {str(k): v for k, v in by_threads.items()}}


def make_loads(stack: FullStack, tiles: np.ndarray, api_key: str | None) -> dict[str, Load]:
    rng = np.random.default_rng(0)
    scans = [render_scan(t, rng, jpeg=False) for t in tiles[:200]]
    lines = [text_line(tiles[i * 64:(i + 1) * 64], rng) for i in range(8)]
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    api_headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return {
        "queue_char": Load("queue_char", f"{stack.url}/v1/recognize", api_headers,
                           # The same bytes the direct client sends, as the raw request body.
                           [{"content": s, "headers": {"Content-Type": "image/png"}} for s in scans], 1),
        "direct_char": Load("direct_char", f"{stack.torchserve.url}/predictions/emnist", stack.torchserve.headers(),
                            [{"content": s} for s in scans], 1, kind="direct"),
        "queue_text64": Load("queue_text64", f"{stack.url}/v1/recognize", api_headers,
                             [{"json": {"images": [b64(line)], "mode": "text"}} for line in lines], 64),
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name in ("queue_char", "direct_char", "queue_text64"):
        rows = result["scenarios"].get(name, [])
        key = "chars_per_s"
        left.plot([r["clients"] for r in rows], [r[key] for r in rows], marker="o", label=name)
        right.plot([r["clients"] for r in rows], [r["p50_ms"] for r in rows], marker="o", label=name)
    left.axhline(result["model_ceiling"]["chars_per_s"], ls="--", c="grey", label="model ceiling (batch 64)")
    left.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="characters/s", title="throughput")
    right.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="p50 latency (ms)", title="latency")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def summarize(result: dict) -> dict:
    by = {name: {r["clients"]: r for r in rows} for name, rows in result["scenarios"].items()}
    targets = {}
    if 32 in by.get("queue_char", {}) and 32 in by.get("direct_char", {}):
        ratio = by["queue_char"][32]["jobs_per_s"] / max(by["direct_char"][32]["jobs_per_s"], 1e-9)
        targets["queue_vs_direct_at_32"] = {"ratio": ratio, "goal": ">= 1.0", "met": ratio >= 1.0}
        best = floor.bound(result)
        if best:
            targets["queue_vs_direct_at_32"]["best_possible_ratio"] = best
    if by.get("queue_text64"):
        best = max(r["chars_per_s"] for r in by["queue_text64"].values())
        share = best / result["model_ceiling"]["chars_per_s"]
        targets["text64_vs_ceiling"] = {"share": share, "goal": ">= 0.40", "met": share >= 0.40}
        best = floor.text_bound(result)
        if best:
            targets["text64_vs_ceiling"]["best_possible_share"] = best
    if 1 in by.get("queue_char", {}) and 1 in by.get("direct_char", {}):
        extra = by["queue_char"][1]["p50_ms"] - by["direct_char"][1]["p50_ms"]
        targets["p50_overhead_at_1_ms"] = {"ms": extra, "goal": "<= 15", "met": extra <= 15}
    return targets


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "emnist47")
    p.add_argument("--clients", default="1,8,32,128")
    p.add_argument("--seconds", type=float, default=6.0, help="measured time per point")
    p.add_argument("--workers", type=int, default=1, help="`python -m worker` commands started")
    p.add_argument("--worker-processes", default="auto",
                   help="HWR_WORKER_PROCESSES of each (default auto, one per core, as `make run` starts it)")
    p.add_argument("--scenarios", default="direct_char,queue_char,queue_text64")
    p.add_argument("--results", type=Path, default=RESULTS, help="folder for <date>.json and <date>.png")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of load per scenario before measuring")
    p.add_argument("--client", choices=tuple(POSTERS), default="aiohttp", help="the load client's HTTP library")
    p.add_argument("--precision", choices=("int8", "fp32", "auto"), default=None,
                   help="the model's precision in TorchServe and the ceiling (default: as the archive serves)")
    args = p.parse_args(argv)
    if args.precision:
        os.environ["HWR_MODEL_PRECISION"] = args.precision  # TorchServe's environment (tests.stack copies it)
    tiles = emnist.load_split(args.data, "test", limit=1000).images
    result = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds_per_point": args.seconds,
              "workers": args.workers, "worker_processes": args.worker_processes, "client": args.client,
              "scenarios": {}}
    result["model_ceiling"] = model_ceiling(tiles, precision=args.precision)
    ceiling = result["model_ceiling"]
    print(f"model ceiling (in-process, batch 64, {ceiling['precision']}): {ceiling['chars_per_s']:.0f} chars/s "
          f"(by torch threads: {', '.join(f'{k}: {v:.0f}' for k, v in ceiling['chars_per_s_by_threads'].items())})")
    with tempfile.TemporaryDirectory(prefix="hwr-bench-") as tmp:
        stack = FullStack(Path(tmp), workers=args.workers, web_env={"HWR_RATE_LIMIT": "1000000/minute"},
                          worker_env={"HWR_WORKER_PROCESSES": args.worker_processes})
        try:
            stack.start()
            loads = make_loads(stack, tiles, None)
            # A fresh stack is slow for its first seconds (TorchServe's JVM compiles its hot
            # paths: 50-60 ms of CPU per request at first against 3-5 once warm); without
            # this, the first point measured that instead of the service.
            for name in args.scenarios.split(","):
                asyncio.run(drive(loads[name], 8, args.warmup, client=args.client))
            for clients in [int(c) for c in args.clients.split(",")]:
                for name in args.scenarios.split(","):
                    before = tier_cpu(stack_tiers(stack))
                    row = asyncio.run(drive(loads[name], clients, args.seconds, client=args.client))
                    after = tier_cpu(stack_tiers(stack))
                    # CPU milliseconds per request sent (every one sent is answered before drive returns).
                    row["cpu_ms_per_request"] = {k: 1000 * (after[k] - before[k]) / max(row["sent"], 1)
                                                 for k in after}
                    result["scenarios"].setdefault(name, []).append(row)
                    print(f"{name:13} clients {clients:3d}: {row['jobs_per_s']:7.1f} jobs/s {row['chars_per_s']:8.1f} "
                          f"chars/s  p50 {row['p50_ms']:7.1f} p95 {row['p95_ms']:7.1f} p99 {row['p99_ms']:7.1f} ms"
                          f"  errors {row['errors']}", flush=True)
                    print(" " * 15 + "CPU ms per request: " + ", ".join(
                        f"{k} {v:.2f}" for k, v in row["cpu_ms_per_request"].items()), flush=True)
        finally:
            stack.stop()
        # The least a queued job can cost on this machine (bench/floor.py), for the targets.
        lines = [base64.b64decode(b["json"]["images"][0]) for b in loads["queue_text64"].bodies]
        web = {server: floor.web_floor(Path(tmp), loads["queue_char"].bodies, 32, args.seconds, server)
               for server in floor.SERVERS}
        result["floor"] = {"image_ms": floor.image_ms([b["content"] for b in loads["queue_char"].bodies]),
                           "text_image_ms": floor.image_ms(lines, "text"),
                           "web": web["gunicorn"], "web_by_server": web}
        print(f"floor: a scan's image work {result['floor']['image_ms']:.2f} ms, a text line's "
              f"{result['floor']['text_image_ms']:.2f} ms, a do-nothing Flask request "
              + ", ".join(f"{k} {v['cpu_ms_per_request']:.2f}" for k, v in web.items()) + " ms of CPU", flush=True)
    result["targets"] = summarize(result)
    print(json.dumps(result["targets"], indent=2))
    args.results.mkdir(parents=True, exist_ok=True)
    stem = args.results / time.strftime("%Y-%m-%d")
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    plot(result, stem.with_suffix(".png"))
    print(f"wrote {stem}.json and {stem}.png")
    return result


if __name__ == "__main__":
    main()
