"""web.config: environment variables and create_app overrides, one spelling each."""
from __future__ import annotations

from web import config


def test_defaults(monkeypatch):
    for name in ("HWR_API_KEYS", "HWR_RATE_LIMIT", "HWR_MAX_IMAGES_PER_JOB", "HWR_WEBHOOK_ALLOW_PRIVATE"):
        monkeypatch.delenv(name, raising=False)
    settings = config.load()
    assert settings.api_keys == () and settings.rate_limit == "6000/minute"
    assert settings.max_images_per_job == 1000 and settings.allow_private_callbacks is False


def test_overrides_win_over_environment(monkeypatch):
    monkeypatch.setenv("HWR_API_KEYS", "from-env")
    settings = config.load({"HWR_API_KEYS": " a, b ,", "HWR_TORCHSERVE_URLS": "http://x:1/, http://y:2",
                            "HWR_WEBHOOK_ALLOW_PRIVATE": "yes", "HWR_QUEUE": "q2"})
    assert settings.api_keys == ("a", "b")
    assert settings.torchserve_urls == ("http://x:1", "http://y:2")
    assert settings.allow_private_callbacks is True
    worker = settings.worker_config()
    assert worker.queue == "q2" and worker.redis_url == settings.redis_url
