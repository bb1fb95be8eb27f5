"""gunicorn settings: `gunicorn -c web/gunicorn.conf.py 'web:create_app()'`.

gthread workers: /v1/recognize holds its thread while it waits for the job (a Redis
pub/sub wait, no CPU), so threads, not processes, set how many clients can wait at once.
"""
import json
import os

from gunicorn import util

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
# gunicorn's maximum: long query strings (several options, a long callback_url) still fit.
limit_request_line = 8190
# Each worker process builds its own app: Redis and broker connections must not cross a fork.
preload_app = False


def child_exit(server, worker):
    # With several processes, prometheus-client keeps per-process files: drop the dead one's.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def _write_json_error(sock, status_int, reason, mesg):
    """gunicorn's own answers (414 URI too long, 400 bad request line, ...) as our JSON
    errors: clients never get an HTML page, not even from the HTTP parser."""
    code = {400: "bad_request", 414: "uri_too_long", 431: "headers_too_large"}.get(status_int, "http_error")
    body = json.dumps({"error": {"code": code, "message": f"{reason}: {mesg}"}})
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, (head + body).encode("latin1"))


def post_worker_init(worker):
    util.write_error = _write_json_error
