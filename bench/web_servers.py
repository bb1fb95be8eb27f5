"""The real web app under gunicorn (as deployed) and under granian, side by side.

`python -m bench.web_servers [--scenario queue_char] [--clients 32]`: one stack (Redis,
TorchServe, worker, gunicorn as `make run` starts them) plus the same app under granian
on another port, with the same environment. The same load alternates between the two,
twice each; each point reports jobs/s and CPU ms per job of every tier. Then both
servers get three requests that only an HTTP parser sees (a 20 KB URL, a 200 KB header,
a garbage request line): the API promises a JSON 4xx for every bad input, and these
show whether the server keeps that promise. Writes bench/results/<date>-web-servers.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from bench import e2e
from tests.stack import VENV_BIN, FullStack, free_port, wait_until, web_process
from training import data as emnist

PROTOCOL_PROBES = {
    "url_20kb": b"GET /healthz?" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "header_200kb": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 200000 + b"\r\nConnection: close\r\n\r\n",
    "garbage_request_line": b"HELLO THERE\r\n\r\n",
}


def probe(port: int, request: bytes) -> dict:
    """Status and whether the body is JSON, for one raw request."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    try:
        json_body = isinstance(json.loads(body), dict)
    except ValueError:
        json_body = False
    return {"status": status, "json_body": json_body, "body_bytes": len(body)}


def granian_command(port: int, threads: int = 32) -> list[str]:
    return [str(VENV_BIN / "granian"), "--interface", "wsgi", "--factory", "--host", "127.0.0.1", "--port", str(port),
            "--blocking-threads", str(threads), "--log-level", "warning", "web:create_app"]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=e2e.ROOT.parent / "shared" / "data" / "emnist47")
    p.add_argument("--scenario", default="queue_char", choices=("queue_char", "queue_text64"))
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--results", type=Path, default=e2e.RESULTS)
    args = p.parse_args(argv)
    tiles = emnist.load_split(args.data, "test", limit=1000).images
    result = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "scenario": args.scenario, "clients": args.clients,
              "seconds_per_point": args.seconds, "points": [], "protocol_probes": {}}
    with tempfile.TemporaryDirectory(prefix="hwr-web-servers-") as tmp:
        stack = FullStack(Path(tmp), web_env={"HWR_RATE_LIMIT": "1000000/minute"},
                          worker_env={"HWR_WORKER_PROCESSES": "auto"})
        granian = None
        try:
            stack.start()
            port = free_port()
            env = web_process(Path(tmp), stack.redis.url, stack.torchserve, port,
                              HWR_RATE_LIMIT="1000000/minute").env
            granian = subprocess.Popen(granian_command(port), env=env, stdout=open(Path(tmp) / "granian.log", "ab"),
                                       stderr=subprocess.STDOUT)

            def up() -> bool:
                try:
                    return granian.poll() is None and httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).is_success
                except httpx.HTTPError:
                    return False

            wait_until(up, 60, "the app under granian")
            base = e2e.make_loads(stack, tiles, None)[args.scenario]
            servers = {"gunicorn": (base, stack.web.proc.pid, stack.web_port),
                       "granian": (e2e.Load(base.name, f"http://127.0.0.1:{port}/v1/recognize", base.headers,
                                            base.bodies, base.chars_per_request), granian.pid, port)}
            for load, _, _ in servers.values():
                asyncio.run(e2e.drive(load, 8, 3.0))
            for _ in range(2):
                for name, (load, pid, _) in servers.items():
                    tiers = {**e2e.stack_tiers(stack), "web": [pid]}
                    before = e2e.tier_cpu(tiers)
                    row = asyncio.run(e2e.drive(load, args.clients, args.seconds))
                    after = e2e.tier_cpu(tiers)
                    row["server"] = name
                    row["cpu_ms_per_request"] = {k: 1000 * (after[k] - before[k]) / max(row["sent"], 1) for k in after}
                    result["points"].append(row)
                    print(f"{name:9} {row['jobs_per_s']:7.1f} jobs/s  p50 {row['p50_ms']:6.1f} ms  errors {row['errors']}  "
                          "CPU ms per job: " + ", ".join(f"{k} {v:.2f}" for k, v in row["cpu_ms_per_request"].items()),
                          flush=True)
            for name, (_, _, server_port) in servers.items():
                result["protocol_probes"][name] = {k: probe(server_port, r) for k, r in PROTOCOL_PROBES.items()}
                print(f"{name:9} protocol probes: {result['protocol_probes'][name]}", flush=True)
        finally:
            if granian is not None:
                granian.terminate()
                granian.wait(30)
            stack.stop()
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"{time.strftime('%Y-%m-%d')}-web-servers.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
