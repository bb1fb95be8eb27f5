"""worker/config.py: per-endpoint TorchServe credentials."""
from __future__ import annotations

import json

import pytest

from worker.config import endpoint_credentials, read_inference_key

URLS = ("http://ts1:8080", "http://ts2:8080")


def test_one_key_file_serves_every_endpoint():
    assert endpoint_credentials(URLS, "", "/keys/k.json") == [
        ("http://ts1:8080", "", "/keys/k.json"), ("http://ts2:8080", "", "/keys/k.json")]


def test_key_files_and_tokens_follow_the_urls_in_order():
    creds = endpoint_credentials(URLS, "t1,t2", "/a.json, /b.json")
    assert creds == [("http://ts1:8080", "t1", "/a.json"), ("http://ts2:8080", "t2", "/b.json")]


def test_a_list_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="HWR_TORCHSERVE_KEY_FILE lists 3 values for 2"):
        endpoint_credentials(URLS, "", "/a,/b,/c")


def test_read_inference_key(tmp_path):
    path = tmp_path / "key_file.json"
    assert read_inference_key(str(path)) == ""  # TorchServe has not written it yet
    path.write_text(json.dumps({"inference": {"key": "abc"}, "management": {"key": "m"}}))
    assert read_inference_key(str(path)) == "abc"


def test_a_malformed_number_names_its_variable(monkeypatch):
    from worker.config import load

    monkeypatch.setenv("HWR_PLANNING_SLOTS", "two")
    with pytest.raises(ValueError, match="HWR_PLANNING_SLOTS must be an integer, got 'two'"):
        load()
    monkeypatch.setenv("HWR_PLANNING_SLOTS", "3")
    monkeypatch.setenv("HWR_BATCH_LINGER_MS", "5ms")
    with pytest.raises(ValueError, match="HWR_BATCH_LINGER_MS must be a number"):
        load()
    monkeypatch.setenv("HWR_BATCH_LINGER_MS", "7.5")
    assert load().planning_slots == 3 and load().batch_linger == 0.0075
