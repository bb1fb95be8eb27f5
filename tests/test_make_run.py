"""`make run` end to end: scripts/run.sh on free ports with its own HWR_VAR_DIR brings up
redis, TorchServe, a worker and the web app; a scanned EMNIST character posted with curl
comes back right; Ctrl-C (SIGINT to the process group, as a terminal sends it) leaves no
process behind. The stack is shared with tests/test_readme_examples.py (make_run_stack).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.stack import ROOT, base_env, free_port, wait_until

pytestmark = pytest.mark.slow

PORT_VARS = ("HWR_WEB_PORT", "HWR_REDIS_PORT", "HWR_WORKER_METRICS_PORT", "HWR_TS_INFERENCE_PORT",
             "HWR_TS_MANAGEMENT_PORT", "HWR_TS_METRICS_PORT", "HWR_TS_GRPC_INFERENCE_PORT",
             "HWR_TS_GRPC_MANAGEMENT_PORT")
API_KEY = "make-run-test-key"
# What the brief's pgrep check looks for; each hit is then matched to this stack by its
# environment, since other stacks (other tests, other people) may run the same programs.
PGREP_PATTERNS = ("redis-server", "org.pytorch.serve", "python -m worker", "celery", "gunicorn", "honcho")


def _environ(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:  # gone, or not ours to read
        return []


class RunStack:
    """scripts/run.sh as `make run` starts it, in its own session like a terminal job."""

    def __init__(self, var_dir: Path, extra_env: dict[str, str] | None = None):
        self.var_dir = var_dir
        self.ports = {name: free_port() for name in PORT_VARS}
        self.env = base_env()
        for name in list(self.env):  # nothing from the caller's shell may redirect the stack
            if name.startswith("HWR_"):
                del self.env[name]
        self.env.update({name: str(port) for name, port in self.ports.items()})
        self.env.update({"HWR_VAR_DIR": str(var_dir), "HWR_API_KEYS": API_KEY, **(extra_env or {})})
        self.log_path = var_dir.parent / f"{var_dir.name}-run.log"
        self.proc: subprocess.Popen | None = None
        self.stack_id: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['HWR_WEB_PORT']}"

    def start(self, timeout: float = 300) -> "RunStack":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(["scripts/run.sh"], cwd=ROOT, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"run.sh exited with {self.proc.returncode}:\n{self.tail()}")
            return httpx.get(f"{self.url}/readyz", timeout=3).status_code == 200

        try:
            wait_until(ready, timeout, "make run /readyz", interval=1)
            state = (self.var_dir / "run.state").read_text()
            self.stack_id = dict(line.split("=", 1) for line in state.split())["stack_id"]
        except Exception:
            self.kill()
            raise
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.output().splitlines()[-n:])

    def pids(self) -> set[int]:
        """Every live process started from this run: its var dir is in their environment
        (all but redis-server, whose title overwrites it: see pgrep_leftovers)."""
        marker = f"HWR_VAR_DIR={self.var_dir}".encode()
        found = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid() and marker in _environ(int(entry.name)):
                found.add(int(entry.name))
        return found

    def pgrep_leftovers(self) -> dict[str, list[int]]:
        marker = f"HWR_VAR_DIR={self.var_dir}".encode()
        left = {}
        for pattern in PGREP_PATTERNS:
            out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
            mine = [int(p) for p in out if marker in _environ(int(p))]
            if pattern == "redis-server":  # its title overwrites its environment: match its port
                mine += [int(p) for p in subprocess.run(
                    ["pgrep", "-fx", f"redis-server 127.0.0.1:{self.ports['HWR_REDIS_PORT']}"],
                    capture_output=True, text=True).stdout.split()]
            if mine:
                left[pattern] = mine
        return left

    def interrupt(self, timeout: float = 60) -> int:
        """Ctrl-C: SIGINT to the whole foreground process group."""
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """Last resort for a failed test: nothing may outlive the session."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class SharedStack:
    """One running stack for this module and the README examples; started again if a test
    stopped it. At the end of the session it is stopped with `make stop`."""

    def __init__(self):
        self.current: RunStack | None = None
        self.all: list[RunStack] = []

    def get(self) -> RunStack:
        if self.current is None or not self.current.running():
            stack = RunStack(Path(tempfile.mkdtemp(prefix="hwr-make-run-")) / "var")
            self.all.append(stack)
            self.current = stack.start()
        return self.current

    def close(self) -> None:
        stack, self.current = self.current, None
        try:
            if stack is not None and stack.running():
                stop = subprocess.run(["make", "--no-print-directory", "stop"], cwd=ROOT, env=stack.env,
                                      capture_output=True, text=True, timeout=60)
                assert stop.returncode == 0, stop.stdout + stop.stderr
                assert stack.proc.wait(30) == 0, stack.tail()
                assert stack.pids() == set(), f"`make stop` left processes behind:\n{stack.tail()}"
                assert not (stack.var_dir / "run.state").exists()
        finally:
            for each in self.all:
                each.kill()
                shutil.rmtree(each.var_dir.parent, ignore_errors=True)
            self.all.clear()


_SHARED = SharedStack()


@pytest.fixture(scope="session")
def make_run_stack() -> RunStack:
    yield _SHARED.get()
    _SHARED.close()


@pytest.fixture(scope="module")
def scanned_char(emnist_test_sample, tmp_path_factory) -> tuple[Path, str]:
    """A real EMNIST character rendered as a scan that the archived model reads right."""
    from training.evaluate import ArchivedModel
    from training.scans import render_scan

    model = ArchivedModel()
    rng = np.random.default_rng(7)
    tiles, labels = emnist_test_sample.images[:200], emnist_test_sample.labels[:200]
    scans = [render_scan(tile, rng, jpeg=False) for tile in tiles]
    probs = model.classify_images([model.preprocess.decode_image(scan) for scan in scans])
    right = np.flatnonzero(probs.argmax(1) == labels)
    assert len(right), "the model reads none of 200 scans right"
    best = int(right[np.argmax(probs[right].max(1))])
    path = tmp_path_factory.mktemp("scan") / "char.png"
    path.write_bytes(scans[best])
    return path, emnist_test_sample.classes[labels[best]]


def test_taken_port_is_reported_before_anything_starts(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        stack = RunStack(tmp_path / "var")
        taken = busy.getsockname()[1]
        stack.env["HWR_TS_METRICS_PORT"] = str(taken)
        result = subprocess.run(["scripts/run.sh"], cwd=ROOT, env=stack.env, capture_output=True, text=True,
                                timeout=60)
    assert result.returncode != 0
    assert f"port {taken} (HWR_TS_METRICS_PORT) is already in use" in result.stderr
    assert "nothing was started" in result.stderr
    assert "hwr: starting" not in result.stdout
    assert stack.pids() == set() and not (tmp_path / "var" / "run.state").exists()


def test_prints_url_and_api_key(make_run_stack):
    out = make_run_stack.output()
    assert f"hwr: web app and API at {make_run_stack.url}" in out
    assert f"API key: {API_KEY}" in out
    # run.sh polls /readyz itself once a second: its line may trail this test's own check.
    wait_until(lambda: f"hwr: ready at {make_run_stack.url}" in make_run_stack.output(), 10, "the ready line")


def test_recognizes_a_scanned_character_with_curl(make_run_stack, scanned_char):
    image, label = scanned_char
    base = ["curl", "-sS", "--max-time", "60", "-F", f"image=@{image}"]
    result = subprocess.run([*base, "-H", f"Authorization: Bearer {API_KEY}", f"{make_run_stack.url}/v1/recognize"],
                            capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["status"] == "succeeded", body
    assert body["results"][0]["text"] == label, body
    # Keys are on because HWR_API_KEYS is set: no key, no recognition.
    denied = subprocess.run([*base, "-o", "/dev/null", "-w", "%{http_code}", f"{make_run_stack.url}/v1/recognize"],
                            capture_output=True, text=True, timeout=90)
    assert denied.stdout == "401"


def test_ctrl_c_stops_every_process(make_run_stack):
    stack = make_run_stack
    assert stack.pgrep_leftovers().keys() >= {"redis-server", "org.pytorch.serve", "python -m worker", "gunicorn"}
    started = time.monotonic()
    assert stack.interrupt() == 0, stack.tail()
    assert time.monotonic() - started < 45
    assert stack.pgrep_leftovers() == {}, stack.tail()
    assert stack.pids() == set(), stack.tail()
    assert not (stack.var_dir / "run.state").exists()
    assert "hwr: stopped" in stack.output()
