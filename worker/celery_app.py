"""The Celery app: Redis as broker and result store. Shared by the web app (which only
sends tasks, by name) and the workers (which run them)."""
from __future__ import annotations

from celery import Celery
from kombu.transport import redis as kombu_redis

from worker.config import WorkerConfig, load

RECOGNIZE_TASK = "hwr.recognize"  # one job: args [job_id], kwargs {"n_images": n}
RECOGNIZE_JOBS_TASK = "hwr.recognize_jobs"  # several: args [[job_id, ...], [n_images, ...]]


class _Channel(kombu_redis.Channel):
    """kombu's Redis channel, keeping one client for its ordinary (non-polling) commands.

    kombu builds a new redis.Redis around the same connection pool for every publish, ack
    and unacked-index update; in redis-py 7 that constructor fills a dict of ~200 response
    callbacks each time, which was ~15% of a worker's Python time under load (py-spy).
    A redis.Redis over a pool is thread safe; the polling (BRPOP) client is still made apart.
    """

    _plain_client = None

    def _create_client(self, asynchronous=False):
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = self._plain_client
        if client is None or client.connection_pool is not self.pool:
            client = self._plain_client = super()._create_client()
        return client


class Transport(kombu_redis.Transport):
    Channel = _Channel


TRANSPORT = f"{__name__}:Transport"


def make_celery(config: WorkerConfig | None = None) -> Celery:
    config = config or load()
    app = Celery("hwr", broker=config.redis_url, backend=config.redis_url)
    app.conf.update(
        broker_transport=TRANSPORT,
        task_default_queue=config.queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # A dead worker's unacked jobs go back to the queue after the visibility timeout.
        # Without an event loop (threads pool) kombu sweeps for them when a poll finds the
        # queue empty; throttle 1 makes every such poll sweep, so they come back promptly.
        broker_transport_options={"visibility_timeout": config.visibility_timeout,
                                  "unacked_restore_throttle": 1},
        worker_prefetch_multiplier=1,
        result_backend_transport_options={"visibility_timeout": config.visibility_timeout},
        result_expires=config.result_ttl,
        task_ignore_result=True,  # results live in the job store (worker/jobs.py)
        broker_connection_retry_on_startup=True,
    )
    return app


celery_app = make_celery()
