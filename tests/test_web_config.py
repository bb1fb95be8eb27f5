"""web.config: environment variables and create_app overrides, one spelling each."""
from __future__ import annotations

import pytest

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


def test_a_malformed_number_names_its_variable():
    with pytest.raises(ValueError, match="HWR_RESULT_TTL must be an integer, got 'a day'"):
        config.load({"HWR_RESULT_TTL": "a day"})
    with pytest.raises(ValueError, match="HWR_RECOGNIZE_TIMEOUT must be a number"):
        config.load({"HWR_RECOGNIZE_TIMEOUT": "10s"})
    assert config.load({"HWR_RESULT_TTL": " 60 "}).result_ttl == 60
