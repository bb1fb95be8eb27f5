"""API keys, per-key rate limits, CORS and the security headers of every response."""
from __future__ import annotations

import hmac
import time

from flask import Flask, Response, g, request
from flask_cors import CORS
from flask_limiter import Limiter

from web.config import WebConfig
from web.errors import ApiError

API_PREFIX = "/v1/"

# The page and the docs load nothing from elsewhere: scripts, styles and images come from
# this origin only (blob:/data: for the images users pick and the canvas exports).
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                           "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def bearer_token() -> str | None:
    """The API key: `Authorization: Bearer <key>`, or `X-API-Key: <key>` as many API
    gateways and clients send keys."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("X-API-Key", "").strip() or None


def known_key(token: str | None, keys: tuple[str, ...]) -> bool:
    # Compare against every key in constant time, so timing does not tell how close a guess was.
    found = False
    for key in keys:
        found |= token is not None and hmac.compare_digest(token.encode(), key.encode())
    return found


def client_identity() -> str:
    """Whom a request counts against: its API key (checked by then) or its address."""
    key = g.get("api_key")
    return f"key:{key}" if key else f"ip:{request.remote_addr or 'unknown'}"


def install(app: Flask, config: WebConfig) -> Limiter:
    # Registered before the limiter's own before_request, so a bad key is a 401 and never
    # spends anyone's rate limit.
    @app.before_request
    def require_api_key():
        g.api_key = None
        # A CORS preflight never carries credentials (the browser strips them), by the spec.
        if not request.path.startswith(API_PREFIX) or request.method == "OPTIONS":
            return None
        token = bearer_token()
        if config.api_keys:
            if not known_key(token, config.api_keys):
                message = "missing API key" if token is None else "invalid API key"
                raise ApiError(401, "unauthorized",
                               f"{message}: send `Authorization: Bearer <key>` (or `X-API-Key: <key>`)",
                               {"WWW-Authenticate": 'Bearer realm="hwr"'})
            g.api_key = token
        return None

    @app.after_request
    def security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.path.startswith(API_PREFIX):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    if config.cors_origins:
        # Also on errors (401, 413, 429), so a browser client can read what went wrong.
        CORS(app, resources={API_PREFIX + "*": {"origins": list(config.cors_origins)}},
             allow_headers=["Authorization", "X-API-Key", "Content-Type", "Idempotency-Key"],
             expose_headers=["Location", "Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining",
                             "X-RateLimit-Reset"],
             max_age=600)

    # headers_enabled would put X-RateLimit-* on every answer, at the price of a second Redis
    # round trip per request (~10% of the web tier's CPU under load, py-spy): only a refused
    # request gets them, below.
    limiter = Limiter(client_identity, app=app, storage_uri=config.redis_url, headers_enabled=False,
                      key_prefix="hwr:ratelimit", strategy="fixed-window",
                      # If Redis is down, jobs fail anyway (503); do not turn that into 500s here.
                      swallow_errors=True)

    @app.after_request
    def rate_limit_headers(response: Response) -> Response:
        if response.status_code != 429:
            return response
        retry_after = 1
        try:
            current = limiter.current_limit
            if current is not None:
                retry_after = max(1, int(current.reset_at - time.time()))
                response.headers["X-RateLimit-Limit"] = str(current.limit.amount)
                response.headers["X-RateLimit-Remaining"] = "0"
                response.headers["X-RateLimit-Reset"] = str(current.reset_at)
        except Exception:  # the limiter's Redis went away meanwhile: a retry in 1 s is still right
            pass
        response.headers.setdefault("Retry-After", str(retry_after))
        return response

    return limiter
