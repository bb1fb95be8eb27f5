"""JSON errors everywhere: `{"error": {"code", "message"}}` with the right status.

Every HTTP error Flask or Werkzeug raises (404, 405, 413, ...) and every unexpected
exception goes through here, so no client ever gets an HTML error page.
"""
from __future__ import annotations

import logging

import redis
from flask import Flask, Response, current_app, jsonify, request
from kombu.exceptions import OperationalError as BrokerUnavailable
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

# Machine-readable codes for the statuses Werkzeug raises on its own.
HTTP_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
              409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type",
              422: "invalid_request", 429: "rate_limited", 500: "internal_error", 503: "unavailable"}


class ApiError(Exception):
    """An error the API reports to the client as is."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    response = jsonify(error={"code": code, "message": message})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def drain_request_body() -> None:
    """Read what is left of a refused request's body (up to the upload limit) before
    answering. If the server closes the socket with the rest unread (Werkzeug refusing too
    many form parts mid-body, a 429 decided before the body is read), the kernel resets the
    connection and the client often loses the answer itself ("server disconnected without
    sending a response"). A body already read leaves nothing to drain."""
    length = request.content_length
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if not length or (limit and length > limit):
        return  # nothing to read, or too much to be worth reading
    try:
        stream = request.stream
        while stream.read(1 << 16):
            pass
    except Exception:  # a client that went away: nothing to save
        pass


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        drain_request_body()  # e.g. a 401 decided before the body was read
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        status = exc.code or 500
        headers = {}
        if status == 405 and exc.valid_methods:
            headers["Allow"] = ", ".join(exc.valid_methods)
        message = exc.description or exc.name
        # 413 (too many parts), 429 (decided before the body is read), 404, 405...: an
        # unread body makes the server drop the connection, and a client reusing it
        # sees "server disconnected" instead of this answer.
        drain_request_body()
        if status == 429:  # flask-limiter's RateLimitExceeded: say which limit
            message = f"rate limit exceeded ({exc.description}); retry later"
        elif status == 404 and request.url_rule is None:  # no route at all, not a missing job
            message = f"no endpoint at {request.path[:200]}: the API is described at /openapi.json"
        return error_response(status, HTTP_CODES.get(status, exc.name.lower().replace(" ", "_")), message, headers)

    @app.errorhandler(redis.RedisError)
    def redis_down(exc: redis.RedisError):
        log.warning("redis unavailable: %s", exc)
        return error_response(503, "unavailable", "the job store is unavailable; retry later",
                              {"Retry-After": "1"})

    @app.errorhandler(BrokerUnavailable)
    def broker_down(exc: BrokerUnavailable):
        # Celery's send_task wraps a broker (Redis) connection failure in kombu's
        # OperationalError, not a RedisError: still an outage the client should retry.
        log.warning("broker unavailable: %s", exc)
        return error_response(503, "unavailable", "the job queue is unavailable; retry later",
                              {"Retry-After": "1"})

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal server error")
