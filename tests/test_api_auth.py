"""API keys and per-key rate limits, on the real stack (werkzeug server in a thread)."""
from __future__ import annotations

import httpx
import pytest


@pytest.fixture
def keyed_app(start_web_app, redis_client):
    return start_web_app(HWR_API_KEYS="key-one, key-two", HWR_RATE_LIMIT="4/minute")


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_missing_or_wrong_key_is_401(keyed_app, char_png):
    for headers in ({}, bearer("nope"), {"Authorization": "Basic a2V5LW9uZQ=="}):
        response = httpx.post(f"{keyed_app}/v1/jobs", files={"image": ("a.png", char_png)}, headers=headers)
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert httpx.get(f"{keyed_app}/v1/jobs/" + "0" * 32).status_code == 401


def test_valid_key_runs_a_job(keyed_app, celery_worker, char_png):
    response = httpx.post(f"{keyed_app}/v1/recognize", files={"image": ("a.png", char_png)},
                          headers=bearer("key-two"), timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "succeeded"


def test_the_key_may_come_as_an_x_api_key_header(keyed_app):
    url = f"{keyed_app}/v1/jobs/" + "0" * 32
    assert httpx.get(url, headers={"X-API-Key": "key-one"}).status_code == 404
    assert httpx.get(url, headers={"X-API-Key": "key-three"}).status_code == 401
    assert httpx.get(url, headers={"X-API-Key": ""}).status_code == 401


def test_probes_and_page_need_no_key(keyed_app):
    assert httpx.get(f"{keyed_app}/healthz").status_code == 200
    assert httpx.get(f"{keyed_app}/openapi.json").status_code == 200
    page = httpx.get(f"{keyed_app}/")
    assert page.status_code == 200 and 'id="key-panel" hidden' not in page.text


def test_rate_limit_is_429_per_key_with_retry_after(keyed_app):
    url = f"{keyed_app}/v1/jobs/" + "0" * 32
    statuses = [httpx.request(method, url, headers=bearer("key-one")).status_code
                for method in ("GET", "DELETE", "GET", "DELETE")]
    assert statuses == [404] * 4  # one budget for every API call of a key, deletes too
    limited = httpx.post(f"{keyed_app}/v1/jobs", json={"images": []}, headers=bearer("key-one"))
    assert limited.status_code == 429, limited.text
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert limited.headers["X-RateLimit-Remaining"] == "0" and int(limited.headers["X-RateLimit-Limit"]) == 4
    # Another key has its own budget; a bad key is refused before it spends anyone's.
    assert httpx.get(url, headers=bearer("key-two")).status_code == 404
    assert httpx.get(url, headers=bearer("wrong")).status_code == 401


ORIGIN = "https://forms.example.org"


def test_cors_lets_a_listed_origin_call_the_api_from_a_browser(start_web_app, redis_client):
    url = start_web_app(HWR_API_KEYS="key-one", HWR_RATE_LIMIT="3/minute", HWR_CORS_ORIGINS=ORIGIN)
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type, idempotency-key"}
    # Preflights carry no key and count against no rate limit.
    for _ in range(5):
        response = httpx.options(f"{url}/v1/recognize", headers=preflight)
        assert response.status_code == 200, response.text
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        allowed = response.headers["Access-Control-Allow-Headers"].lower()
        assert {"authorization", "content-type", "idempotency-key"} <= {h.strip() for h in allowed.split(",")}
    job = f"{url}/v1/jobs/" + "0" * 32
    found = httpx.get(job, headers={**bearer("key-one"), "Origin": ORIGIN})
    assert found.status_code == 404 and found.headers["Access-Control-Allow-Origin"] == ORIGIN
    # Errors are readable by the page too, and name the headers it may read.
    refused = httpx.get(job, headers={"Origin": ORIGIN})
    assert refused.status_code == 401 and refused.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "retry-after" in refused.headers["Access-Control-Expose-Headers"].lower()
    # Another origin gets no grant (the browser then withholds the answer from its page).
    other = httpx.get(job, headers={**bearer("key-one"), "Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_cors_is_off_unless_origins_are_listed(keyed_app):
    response = httpx.get(f"{keyed_app}/v1/jobs/" + "0" * 32, headers={**bearer("key-one"), "Origin": ORIGIN})
    assert response.status_code == 404
    assert "Access-Control-Allow-Origin" not in response.headers
