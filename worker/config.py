"""Worker configuration, read from the environment in this one place."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path


def parse_number(name: str, raw: object, kind: type[int] | type[float]) -> int | float:
    """`raw` as `kind`, or a ValueError that names the variable (not just int()'s complaint)."""
    try:
        return kind(str(raw).strip())
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ValueError(f"{name} must be {what}, got {str(raw)[:40]!r}") from None


def _env_int(name: str, default: int) -> int:
    return parse_number(name, os.environ.get(name, default), int)


def _env_float(name: str, default: float) -> float:
    return parse_number(name, os.environ.get(name, default), float)


def _env_bool(name: str, default: bool) -> bool:
    return os.environ.get(name, "1" if default else "0").strip().lower() in ("1", "true", "yes", "on")


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity, and a container's CPU quota
    (cgroup v2 `cpu.max`, e.g. compose's `cpus: 2`), whichever is smaller."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, round(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def _processes(raw: str) -> int:
    if raw.strip().lower() == "auto":
        return usable_cores()
    count = parse_number("HWR_WORKER_PROCESSES", raw, int)
    if count < 1:
        raise ValueError(f"HWR_WORKER_PROCESSES must be at least 1 or 'auto', got {raw.strip()[:40]!r}")
    return count


@dataclass(frozen=True)
class WorkerConfig:
    redis_url: str = field(default_factory=lambda: os.environ.get("HWR_REDIS_URL", "redis://127.0.0.1:6379/0"))
    torchserve_urls: tuple[str, ...] = field(default_factory=lambda: tuple(
        u.strip().rstrip("/") for u in os.environ.get("HWR_TORCHSERVE_URLS", "http://127.0.0.1:8080").split(",")
        if u.strip()))
    torchserve_model: str = field(default_factory=lambda: os.environ.get("HWR_TORCHSERVE_MODEL", "emnist"))
    # TorchServe's inference token: given directly, or read from its key_file.json.
    torchserve_token: str = field(default_factory=lambda: os.environ.get("HWR_TORCHSERVE_TOKEN", ""))
    torchserve_key_file: str = field(default_factory=lambda: os.environ.get("HWR_TORCHSERVE_KEY_FILE", ""))
    queue: str = field(default_factory=lambda: os.environ.get("HWR_QUEUE", "hwr"))
    result_ttl: int = field(default_factory=lambda: _env_int("HWR_RESULT_TTL", 86400))
    blob_ttl: int = field(default_factory=lambda: _env_int("HWR_BLOB_TTL", 3600))
    # Redis redelivers a message not acked within this many seconds (a dead worker's jobs).
    visibility_timeout: int = field(default_factory=lambda: _env_int("HWR_VISIBILITY_TIMEOUT", 300))
    max_batch: int = field(default_factory=lambda: _env_int("HWR_MAX_BATCH", 256))
    concurrency: int = field(default_factory=lambda: _env_int("HWR_WORKER_CONCURRENCY", 32))
    # Celery worker processes under one `python -m worker` (worker/supervisor.py); "auto":
    # one per core.
    processes: int = field(default_factory=lambda: _processes(os.environ.get("HWR_WORKER_PROCESSES", "1")))
    torchserve_timeout: float = field(default_factory=lambda: _env_float("HWR_TORCHSERVE_TIMEOUT", 30.0))
    retry_max_seconds: float = field(default_factory=lambda: _env_float("HWR_TORCHSERVE_RETRY_SECONDS", 60.0))
    metrics_port: int = field(default_factory=lambda: _env_int("HWR_WORKER_METRICS_PORT", 9808))
    # TorchServe requests one worker process keeps in flight at once (TorchServe's own
    # backend workers run them in parallel); tiles queue up and batch while they run.
    batch_inflight: int = field(default_factory=lambda: _env_int("HWR_BATCH_INFLIGHT", 2))
    # The longest a batch waits for jobs still making their tiles, to share their request.
    batch_linger: float = field(default_factory=lambda: _env_float("HWR_BATCH_LINGER_MS", 5.0) / 1000)
    # Images one process decodes and cuts into tiles at the same time. The work is CPU
    # bound (the GIL and the node's cores), so more threads than cores only trade the GIL
    # back and forth; the other threads keep waiting on Redis and TorchServe meanwhile.
    planning_slots: int = field(default_factory=lambda: _env_int("HWR_PLANNING_SLOTS", 2))
    # OpenCV's own thread pool, per process. Jobs already run in parallel; a pool inside
    # each image call spent ~9% of a loaded worker's CPU handing work between threads.
    opencv_threads: int = field(default_factory=lambda: _env_int("HWR_OPENCV_THREADS", 1))
    # An endpoint that refused a connection is skipped for this long (others take over).
    endpoint_down_seconds: float = field(default_factory=lambda: _env_float("HWR_TORCHSERVE_DOWN_SECONDS", 3.0))
    max_pixels: int = field(default_factory=lambda: _env_int("HWR_MAX_PIXELS", 40_000_000))
    webhook_secret: str = field(default_factory=lambda: os.environ.get("HWR_WEBHOOK_SECRET", ""))
    webhook_allow_private: bool = field(default_factory=lambda: _env_bool("HWR_WEBHOOK_ALLOW_PRIVATE", False))
    webhook_max_tries: int = field(default_factory=lambda: _env_int("HWR_WEBHOOK_MAX_TRIES", 5))
    webhook_timeout: float = field(default_factory=lambda: _env_float("HWR_WEBHOOK_TIMEOUT", 10.0))
    log_level: str = field(default_factory=lambda: os.environ.get("HWR_WORKER_LOG_LEVEL", "INFO"))
    # Celery's two INFO lines per task ("received", "succeeded in"): off by default, they
    # cost ~6% of a worker's Python time at hundreds of jobs/s. Failures are logged anyway.
    task_log: bool = field(default_factory=lambda: _env_bool("HWR_WORKER_TASK_LOG", False))
    # A job still unfinished this long after it was (re)submitted is sent again: its message
    # may be lost (see jobs.stale_jobs). Keep it above the visibility timeout plus the
    # longest expected backlog, or busy queues do work twice (harmless, but wasted).
    resubmit_after: float = field(default_factory=lambda: _env_float("HWR_RESUBMIT_AFTER", 900.0))
    sweep_interval: float = field(default_factory=lambda: _env_float("HWR_SWEEP_INTERVAL", 30.0))
    # A job still queued this long after submission whose id no message in the broker names
    # lost its message (worker/orphans.py): re-sent at the next sweep, backlog or not.
    orphan_after: float = field(default_factory=lambda: _env_float("HWR_ORPHAN_AFTER", 60.0))


def load() -> WorkerConfig:
    return WorkerConfig()


def read_inference_key(path: str) -> str:
    """The inference token in TorchServe's key_file.json ("" when unreadable: not started yet)."""
    try:
        return json.loads(Path(path).read_text())["inference"]["key"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def endpoint_credentials(urls: tuple[str, ...], tokens: str, key_files: str) -> list[tuple[str, str, str]]:
    """(url, token, key file) per TorchServe endpoint.

    Every TorchServe node makes its own random token, so HWR_TORCHSERVE_TOKEN and
    HWR_TORCHSERVE_KEY_FILE take either one value for all endpoints or a comma-separated
    list in the order of HWR_TORCHSERVE_URLS."""
    def spread(value: str, name: str) -> list[str]:
        parts = [p.strip() for p in value.split(",")] if value else [""]
        if len(parts) == 1:
            return parts * len(urls)
        if len(parts) != len(urls):
            raise ValueError(f"{name} lists {len(parts)} values for {len(urls)} HWR_TORCHSERVE_URLS")
        return parts

    return list(zip(urls, spread(tokens, "HWR_TORCHSERVE_TOKEN"), spread(key_files, "HWR_TORCHSERVE_KEY_FILE")))
