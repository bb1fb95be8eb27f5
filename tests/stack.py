"""Start and stop the real services on free ports: Redis, TorchServe, Celery workers, web.

Used by the pytest fixtures, `make bench` and `make chaos`, so every measurement and test
runs against the same real processes. Each process gets its own state directory and its
own process group, so a stop leaves nothing behind.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
DEFAULT_ARCHIVE_STORE = ROOT / "serve" / "model-store"


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """n distinct free ports: each socket stays bound until all are chosen."""
    sockets = []
    try:
        for _ in range(n):
            sockets.append(socket.socket())
            sockets[-1].bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Exited(RuntimeError):
    """The service died while starting: waiting longer cannot help."""


def wait_until(check, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exited:
            raise
        except Exception as exc:  # the service is still starting
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout}s (last error: {last})")


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


@dataclass
class Managed:
    """A child process in its own process group, with its log file."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None

    def start(self) -> "Managed":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     cwd=ROOT, start_new_session=True)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 30) -> None:
        if self.proc is None:
            return
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:  # whatever the group left behind
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""


@dataclass
class RedisServer(Managed):
    port: int = 0

    @classmethod
    def create(cls, state: Path, appendonly: bool = False) -> "RedisServer":
        port = free_port()
        state.mkdir(parents=True, exist_ok=True)
        cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(state),
               "--save", "", "--appendonly", "yes" if appendonly else "no",
               "--maxmemory-policy", "noeviction"]
        return cls("redis", cmd, base_env(), state / "redis.log", port=port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        super().start()
        import redis

        wait_until(lambda: redis.Redis(port=self.port).ping(), 20, "redis-server")
        return self


@dataclass
class TorchServe(Managed):
    ports: dict[str, int] = field(default_factory=dict)
    state: Path = Path(".")
    token_auth: bool = True

    @classmethod
    def create(cls, state: Path, model_store: Path = DEFAULT_ARCHIVE_STORE, token_auth: bool = True,
               workers: int | None = None) -> "TorchServe":
        env = base_env()
        env.update({"HWR_TS_STATE_DIR": str(state), "HWR_TS_MODEL_STORE": str(model_store),
                    "HWR_TS_DISABLE_TOKEN_AUTH": "false" if token_auth else "true"})
        if workers:
            env["HWR_TS_WORKERS"] = str(workers)
        server = cls("torchserve", [str(ROOT / "serve" / "start.sh")], env, state / "start.log",
                     state=state, token_auth=token_auth)
        server.pick_ports()
        return server

    def pick_ports(self) -> None:
        names = ("INFERENCE", "MANAGEMENT", "METRICS", "GRPC_INFERENCE", "GRPC_MANAGEMENT")
        self.ports = dict(zip(names, free_ports(len(names))))
        self.env.update({f"HWR_TS_{k}_PORT": str(v) for k, v in self.ports.items()})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['INFERENCE']}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['METRICS']}/metrics"

    @property
    def key_file(self) -> Path:
        return self.state / "key_file.json"

    def key(self, kind: str = "inference") -> str | None:
        if not self.token_auth:
            return None
        return json.loads(self.key_file.read_text())[kind]["key"]

    def headers(self) -> dict[str, str]:
        key = self.key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    def start(self, timeout: float = 120, attempts: int = 3) -> "TorchServe":
        def model_ready():
            # A prediction, not /ping: that says "Healthy" before the model is loaded.
            from web.health import PROBE_BODY

            if not self.alive():
                raise Exited(f"TorchServe exited:\n{self.tail()}")
            r = httpx.post(f"{self.url}/predictions/emnist", content=PROBE_BODY, timeout=2,
                           headers={**self.headers(), "Content-Type": "application/octet-stream"})
            return r.status_code == 200

        for attempt in range(attempts):
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            super().start()
            try:
                wait_until(model_ready, timeout, "TorchServe")
                return self
            except Exited:
                with open(self.log_path, "rb") as log:
                    log.seek(log_start)
                    lost_a_port = b"Address already in use" in log.read()
                if not lost_a_port or attempt == attempts - 1:
                    raise
                # Another process bound one of its ports between choosing and starting.
                self.pick_ports()
        return self


def worker_process(state: Path, redis_url: str, ts: TorchServe, name: str = "worker", **extra: str) -> Managed:
    """A real Celery worker (`python -m worker`) pointed at this Redis and TorchServe."""
    env = base_env()
    env.update({"HWR_REDIS_URL": redis_url, "HWR_TORCHSERVE_URLS": ts.url, "HWR_WORKER_METRICS_PORT": "0"})
    if ts.token_auth:
        env["HWR_TORCHSERVE_KEY_FILE"] = str(ts.key_file)
    env.update(extra)
    return Managed(name, [sys.executable, "-m", "worker"], env, state / f"{name}.log")


def web_process(state: Path, redis_url: str, ts: TorchServe, port: int, **extra: str) -> Managed:
    """The web app under gunicorn, as deployed."""
    env = base_env()
    env.update({"HWR_REDIS_URL": redis_url, "HWR_TORCHSERVE_URLS": ts.url, "HWR_WEB_PORT": str(port),
                "HWR_WEB_BIND": "127.0.0.1"})
    if ts.token_auth:
        env["HWR_TORCHSERVE_KEY_FILE"] = str(ts.key_file)
    env.update(extra)
    cmd = [str(VENV_BIN / "gunicorn"), "-c", str(ROOT / "web" / "gunicorn.conf.py"), "web:create_app()"]
    return Managed("web", cmd, env, state / "web.log")


@dataclass
class FullStack:
    """Redis + TorchServe + workers + web, as `make run` starts them, on free ports."""

    state: Path
    workers: int = 1
    web_env: dict[str, str] = field(default_factory=dict)
    worker_env: dict[str, str] = field(default_factory=dict)
    redis: RedisServer | None = None
    torchserve: TorchServe | None = None
    worker_procs: list[Managed] = field(default_factory=list)
    web: Managed | None = None
    web_port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start_worker(self, name: str | None = None) -> Managed:
        proc = worker_process(self.state, self.redis.url, self.torchserve,
                              name or f"worker{len(self.worker_procs)}", **self.worker_env).start()
        self.worker_procs.append(proc)
        return proc

    def start(self, timeout: float = 180) -> "FullStack":
        self.state.mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer.create(self.state / "redis", appendonly=True).start()
        self.torchserve = TorchServe.create(self.state / "torchserve").start(timeout)
        for _ in range(self.workers):
            self.start_worker()
        self.web_port = free_port()
        self.web = web_process(self.state, self.redis.url, self.torchserve, self.web_port, **self.web_env).start()

        def ready():
            if not self.web.alive():
                raise RuntimeError(f"web exited:\n{self.web.tail()}")
            return httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200

        wait_until(ready, timeout, "web /readyz")
        return self

    def stop(self) -> None:
        for proc in [self.web, *self.worker_procs, self.torchserve, self.redis]:
            if proc is not None:
                proc.stop()
