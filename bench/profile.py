"""Where the queue's CPU goes: py-spy profiles of the web and worker tiers under load.

    python -m bench.profile [--scenario queue_char|queue_text64] [--clients 32] [--seconds 15]

Starts the stack as `bench.e2e` does, drives one scenario with the same closed-loop
clients and, meanwhile, samples every process of the web tier (gunicorn and its workers)
and of the worker tier (the supervisor and its Celery processes) with py-spy. Only the
thread holding the GIL is sampled (`--gil`: without it, threads parked on a lock count as
busy), so a function's share of a tier's samples is its share of the Python work; C code
that lets the GIL go (OpenCV, socket reads) is left out. Writes
`bench/results/<date>-profile-<scenario>.json` (top functions per tier, by their own time
and by the time spent under them) and the raw stacks beside it (`-<tier>.txt.gz`, py-spy's
collapsed format, which flame graph tools read).
"""
from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import re
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench import e2e
from tests.stack import VENV_BIN, FullStack
from training import data as emnist

# A frame of py-spy's raw (collapsed) format with --nolineno: "function (path/to/file.py)".
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*)\)$")


def short_frame(frame: str) -> str:
    """"dispatch_request (/x/.venv/lib/python3.11/site-packages/flask/app.py)" ->
    "flask/app.py:dispatch_request": the package path, not the machine's."""
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"].removeprefix(f"{e2e.ROOT}/")
    for marker in ("site-packages/", "/lib/python3.11/"):  # installed packages, the standard library
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{path}:{match['function']}"


def read_collapsed(text: str) -> list[tuple[list[str], int]]:
    """py-spy's raw output: one "frame;frame;...;frame count" line per distinct stack,
    outermost frame first (with --subprocesses, a "process PID:command" frame leads)."""
    stacks = []
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            stacks.append(([short_frame(f) for f in stack.split(";")], int(count)))
    return stacks


def shares(stacks: list[tuple[list[str], int]], top: int = 15) -> dict:
    """Each function's share of all samples: `self` where it is the innermost frame,
    `total` where it is anywhere in the stack (counted once per sample). The frames py-spy
    adds for the process and the thread are not functions, and are left out."""
    own, under = Counter(), Counter()
    total = sum(count for _, count in stacks)
    for frames, count in stacks:
        frames = [f for f in frames if not f.startswith(("process ", "thread "))] or frames
        own[frames[-1]] += count
        for frame in set(frames):
            under[frame] += count
    as_share = lambda counter: [{"function": f, "share": round(c / max(total, 1), 4)}  # noqa: E731
                                for f, c in counter.most_common(top)]
    return {"samples": total, "self": as_share(own), "total": as_share(under)}


def record(pid: int, seconds: float, out: Path, rate: int = 100) -> subprocess.Popen:
    """py-spy on `pid` and its children for `seconds`, raw stacks into `out`."""
    return subprocess.Popen(
        [str(VENV_BIN / "py-spy"), "record", "--pid", str(pid), "--subprocesses", "--gil", "--nolineno",
         "--rate", str(rate), "--duration", str(int(seconds)), "--format", "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def profile(scenario: str, clients: int, seconds: float, results: Path, data: Path, rate: int = 200) -> dict:
    tiles = emnist.load_split(data, "test", limit=1000).images
    stamp = time.strftime("%Y-%m-%d")
    result = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "scenario": scenario, "clients": clients,
              "seconds": seconds, "rate_hz": rate, "tiers": {}}
    results.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hwr-profile-") as tmp:
        stack = FullStack(Path(tmp), web_env={"HWR_RATE_LIMIT": "1000000/minute"},
                          worker_env={"HWR_WORKER_PROCESSES": "auto"})
        try:
            stack.start()
            load = e2e.make_loads(stack, tiles, None)[scenario]
            asyncio.run(e2e.drive(load, 8, 3.0))  # past TorchServe's JIT warm-up, as bench.e2e
            tiers = {"web": stack.web.proc.pid, "worker": stack.worker_procs[0].proc.pid}
            raw = {tier: results / f"{stamp}-profile-{scenario}-{tier}.txt" for tier in tiers}
            spies = {tier: record(pid, seconds, raw[tier], rate) for tier, pid in tiers.items()}
            time.sleep(1.0)  # py-spy attaches to every process first
            row = asyncio.run(e2e.drive(load, clients, seconds - 1.5))
            for tier, spy in spies.items():
                _, err = spy.communicate(timeout=seconds + 60)
                if spy.returncode != 0 or not raw[tier].exists():
                    raise RuntimeError(f"py-spy on the {tier} tier failed ({spy.returncode}): {err[-2000:]}")
                text = raw[tier].read_text()
                result["tiers"][tier] = shares(read_collapsed(text))
                raw[tier].with_suffix(".txt.gz").write_bytes(gzip.compress(text.encode()))
                raw[tier].unlink()
            result["load"] = {k: row[k] for k in ("jobs_per_s", "chars_per_s", "p50_ms", "errors")}
        finally:
            stack.stop()
    path = results / f"{stamp}-profile-{scenario}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"{scenario} at {clients} clients under py-spy: {result['load']['jobs_per_s']:.1f} jobs/s")
    for tier, found in result["tiers"].items():
        print(f"\n{tier}: {found['samples']} samples; most time under (total) / in (self):")
        for under, own in zip(found["total"], found["self"]):
            print(f"  {under['share']:6.1%} {under['function'][:70]:70}  {own['share']:6.1%} {own['function'][:70]}")
    print(f"\nwrote {path}")
    return result


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", default="queue_char", choices=("queue_char", "queue_text64"))
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--results", type=Path, default=e2e.RESULTS)
    p.add_argument("--data", type=Path, default=e2e.ROOT.parent / "shared" / "data" / "emnist47")
    args = p.parse_args(argv)
    return profile(args.scenario, args.clients, args.seconds, args.results, args.data, args.rate)


if __name__ == "__main__":
    main()
