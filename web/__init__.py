"""The web front end: REST API (/v1), the drawing page (/), docs, health and metrics.

    gunicorn -c web/gunicorn.conf.py 'web:create_app()'
"""
from __future__ import annotations

import redis
from flask import Flask, jsonify

from web import api, errors, openapi, pages, security
from web import config as web_config
from web.health import Readiness
from web.metrics import WebMetrics
from web.services import Services
from worker.celery_app import make_celery


def create_app(config: dict | None = None) -> Flask:
    """`config` overrides environment variables by name, e.g. {"HWR_API_KEYS": "k1"}."""
    settings = web_config.load(config)
    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_upload_bytes,
        # Werkzeug's default (1000 parts) would cut a job short of HWR_MAX_IMAGES_PER_JOB.
        MAX_FORM_PARTS=settings.max_images_per_job + 16,
        JSON_SORT_KEYS=False,
    )
    app.json.sort_keys = False
    app.json.compact = True

    worker_config = settings.worker_config()
    redis_client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, health_check_interval=30)
    celery = make_celery(worker_config)
    metrics = WebMetrics(settings.prometheus_multiproc_dir)
    app.extensions["hwr"] = Services(settings, worker_config, redis_client, celery, metrics,
                                     Readiness(settings, redis_client, celery))

    errors.register(app)
    metrics.install(app)
    limiter = security.install(app, settings)

    # A browser's CORS preflight (OPTIONS) is not an API call: it spends no rate limit.
    limiter.limit(settings.rate_limit, methods=["GET", "POST"])(api.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(openapi.bp)

    # Only the /v1 blueprint is rate limited: probes, scrapers and the page are not API calls.
    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz():
        ready, checks = app.extensions["hwr"].readiness.status()
        response = jsonify(status="ready" if ready else "not_ready", checks=checks)
        response.status_code = 200 if ready else 503
        return response

    return app
