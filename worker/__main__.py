"""`python -m worker`: a Celery worker for the hwr queue, plus its metrics endpoint.

Threads pool: a job spends its time waiting on Redis and TorchServe (and in OpenCV and
NumPy, which release the GIL), and all the jobs of one process must share one
micro-batcher so their tiles travel to TorchServe together. Prefetch is one message per
thread: every thread can hold a job whose tiles join the next batch, and no more
messages than that sit unacked in a worker that might die.
Extra arguments are passed on to `celery worker` (e.g. `-n name@%h`). With
HWR_WORKER_PROCESSES > 1 this process supervises that many such workers (worker/supervisor.py).
"""
from __future__ import annotations

import logging
import sys

from worker import metrics
from worker.config import load


def main(argv: list[str]) -> None:
    config = load()
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per TorchServe request is noise
    if config.processes > 1:
        from worker.supervisor import Supervisor

        sys.exit(Supervisor(config, argv).run())
    if not config.task_log:  # Celery's "received" / "succeeded in" lines; errors still show
        for name in ("celery.worker.strategy", "celery.app.trace"):
            logging.getLogger(name).setLevel(logging.WARNING)
    metrics.serve(config.metrics_port, config.redis_url, config.queue)
    from worker.tasks import celery_app  # registers the tasks

    celery_app.worker_main([
        "worker", "--pool=threads", f"--concurrency={config.concurrency}", f"--queues={config.queue}",
        "--prefetch-multiplier=1", "--without-gossip", "--without-mingle", "--without-heartbeat",
        f"--loglevel={config.log_level}", *argv,
    ])


if __name__ == "__main__":
    main(sys.argv[1:])
