"""gunicorn settings: `gunicorn -c web/gunicorn.conf.py 'web:create_app()'`.

gthread workers: /v1/recognize holds its thread while it waits for the job (a Redis
pub/sub wait, no CPU), so threads, not processes, set how many clients can wait at once.
"""
import os

bind = f"{os.environ.get('HWR_WEB_BIND', '127.0.0.1')}:{os.environ.get('HWR_WEB_PORT', '8000')}"
worker_class = "gthread"
workers = int(os.environ.get("HWR_WEB_WORKERS", "1"))
threads = int(os.environ.get("HWR_WEB_THREADS", "32"))
# Longer than the longest wait a request may ask for (60 s) plus the upload itself.
timeout = int(os.environ.get("HWR_WEB_TIMEOUT", "90"))
graceful_timeout = 30
keepalive = 5
accesslog = os.environ.get("HWR_WEB_ACCESS_LOG", "-") or None
errorlog = "-"
# Each worker process builds its own app: Redis and broker connections must not cross a fork.
preload_app = False


def child_exit(server, worker):
    # With several processes, prometheus-client keeps per-process files: drop the dead one's.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
