"""Several Celery worker processes under one `python -m worker` (HWR_WORKER_PROCESSES > 1).

A worker process is bound by its interpreter lock long before it fills a core: decoding,
cutting and batching run in Python threads that take turns. Measured side by side on the
2-core CI machine at 32 clients, single-character jobs through the queue ran at 0.41-0.44x
the rate of direct TorchServe requests with one process, 0.51-0.52x with two (README,
"Benchmarks"). This parent starts N children (`python -m worker` with
HWR_WORKER_PROCESSES=1), each its own Celery node (`hwr-<i>@<host>`) with its own
micro-batcher, and:
- restarts a child that dies (a second later; the jobs it held come back as a killed
  worker's always do: kombu's visibility timeout and the sweeper);
- passes SIGTERM / SIGINT on and waits for the children's warm shutdown;
- serves all children's metrics on HWR_WORKER_METRICS_PORT, through prometheus-client's
  multiprocess mode (a fresh directory per start, so no old run's counts leak in).
Children get SIGTERM if the parent dies, even by SIGKILL (Linux), so none outlives it.
"""
from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from worker.config import WorkerConfig

log = logging.getLogger("hwr.worker.supervisor")
RESTART_DELAY = 1.0
PR_SET_PDEATHSIG = 1


def child_names(argv: list[str], count: int) -> list[list[str]]:
    """Each child's Celery arguments: `argv` with a node name of its own. A name given in
    argv (`-n name@host`, `--hostname=...`) gets `-<child number>` before the `@`."""
    base, rest, i = "hwr@%h", [], 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-n", "--hostname") and i + 1 < len(argv):
            base, i = argv[i + 1], i + 2
            continue
        if arg.startswith("--hostname="):
            base = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    name, at, host = base.partition("@")
    return [[*rest, "-n", f"{name}-{k}{at}{host}"] for k in range(count)]


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: children may then outlive a parent killed outright
        pass


class Supervisor:
    def __init__(self, config: WorkerConfig, argv: list[str]):
        self.config = config
        self.args = child_names(argv, config.processes)
        self.metrics_dir = tempfile.mkdtemp(prefix="hwr-worker-metrics-")
        self.children: list[subprocess.Popen | None] = [None] * config.processes
        self.stopping = False

    def _start(self, k: int) -> None:
        if self.stopping:
            return
        env = {**os.environ, "HWR_WORKER_PROCESSES": "1", "HWR_WORKER_METRICS_PORT": "0",
               "PROMETHEUS_MULTIPROC_DIR": self.metrics_dir}
        # A session of its own: a terminal's Ctrl-C reaches the parent alone, which passes it
        # on once (a second SIGINT would make Celery drop its running tasks).
        self.children[k] = subprocess.Popen([sys.executable, "-m", "worker", *self.args[k]], env=env,
                                            preexec_fn=_die_with_parent, start_new_session=True)
        log.info("worker process %d started (pid %d)", k, self.children[k].pid)

    def _serve_metrics(self) -> None:
        if self.config.metrics_port <= 0:
            return
        from prometheus_client import CollectorRegistry, multiprocess, start_http_server

        from worker.metrics import QueueDepthCollector

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.metrics_dir)
        registry.register(QueueDepthCollector(self.config.redis_url, self.config.queue))
        start_http_server(self.config.metrics_port, registry=registry)
        log.info("metrics of %d processes on :%d/metrics", self.config.processes, self.config.metrics_port)

    def _stop(self, signum, _frame) -> None:
        self.stopping = True
        for child in self.children:
            if child is not None and child.poll() is None:
                child.send_signal(signum)

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(signum, self._stop)
        try:
            self._serve_metrics()
            for k in range(self.config.processes):
                self._start(k)
            died_at: dict[int, float] = {}
            while not self.stopping:
                time.sleep(0.2)
                for k, child in enumerate(self.children):
                    if self.stopping or child is None or child.poll() is None:
                        continue
                    if k not in died_at:
                        log.warning("worker process %d (pid %d) exited with %s; restarting it",
                                    k, child.pid, child.returncode)
                        died_at[k] = time.monotonic()
                    elif time.monotonic() - died_at[k] >= RESTART_DELAY:
                        del died_at[k]
                        self._start(k)
            codes = [child.wait() for child in self.children if child is not None]
            return max((c for c in codes if c > 0), default=0)
        finally:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
