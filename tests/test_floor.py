"""bench/floor.py: the least a queued job can cost, which `make bench` sets beside issue 7's targets."""
import io

import numpy as np
import pytest
from PIL import Image

from bench import e2e, floor


def png(gray: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(gray).save(buf, format="PNG")
    return buf.getvalue()


def letter_l(height: int = 60, width: int = 40) -> np.ndarray:
    page = np.full((height, width), 255, np.uint8)
    page[10:50, 12:17] = 0
    page[45:50, 12:30] = 0
    return page


def run_result(**floor_figures) -> dict:
    def row(clients, chars, **cpu):
        return {"clients": clients, "chars_per_s": chars, "cpu_ms_per_request": cpu}

    return {"model_ceiling": {"chars_per_s": 20000.0, "chars_per_s_by_threads": {"1": 12800.0, "2": 20000.0}},
            "floor": floor_figures,
            "scenarios": {
                "direct_char": [row(32, 600, web=0.0, worker=0.0, redis=0.0, torchserve=2.8, client=0.2)],
                "queue_char": [row(32, 300, web=2.0, worker=3.0, redis=0.3, torchserve=0.6, client=0.3)],
                "queue_text64": [row(8, 3000, web=3.0, worker=15.0, redis=0.5, torchserve=8.0, client=0.9),
                                 row(32, 3500, web=3.0, worker=15.0, redis=0.6, torchserve=8.0, client=1.0)]}}


def test_bound_counts_the_image_work_once_and_nothing_for_the_worker():
    result = run_result(image_ms=1.4, text_image_ms=7.0, web={"cpu_ms_per_request": 0.5})
    best = floor.bound(result)
    # direct 3.0 ms against image 1.4 + TorchServe 0.6 + Redis 0.3 + client 0.3 + web 0.5 = 3.1 ms
    assert best["queue_least_cpu_ms"] == pytest.approx(3.1)
    assert best["best_ratio"] == pytest.approx(3.0 / 3.1)
    assert best["measured_queue_cpu_ms"] == pytest.approx(6.2)


def test_text_bound_takes_the_best_row_and_the_cheapest_model_thread(monkeypatch):
    monkeypatch.setattr(floor.os, "sched_getaffinity", lambda pid: {0, 1})
    result = run_result(image_ms=1.4, text_image_ms=7.0, web={"cpu_ms_per_request": 0.5})
    best = floor.text_bound(result)
    # cut 7.0 + model 64 / 12,800 per ms = 5.0 + web 0.5 + Redis 0.6 + client 1.0 (the 32-client row) = 14.1 ms
    assert best["text_job_least_cpu_ms"] == pytest.approx(14.1)
    assert best["best_chars_per_s"] == pytest.approx(2 * 1000 / 14.1 * 64)
    assert best["best_share"] == pytest.approx(2 * 1000 / 14.1 * 64 / 20000)


def test_no_bound_without_the_floor_or_the_scenarios():
    result = run_result()
    del result["floor"]
    assert floor.bound(result) is None and floor.text_bound(result) is None
    partial = run_result(image_ms=1.0, text_image_ms=5.0, web={"cpu_ms_per_request": 0.5})
    del partial["scenarios"]["direct_char"]
    assert floor.bound(partial) is None


def test_the_do_nothing_app_is_counted_as_an_answer():
    response = floor.app.test_client().post("/v1/recognize", data=b"\x89PNG", content_type="image/png")
    assert e2e.answered("queue", response.status_code, response.data)
    assert response.get_json()["n_bytes"] == 4


def test_image_work_is_timed_in_both_modes():
    images = [png(letter_l())]
    assert floor.image_ms(images, rounds=1) > 0
    line = np.concatenate([letter_l(), letter_l(), letter_l()], axis=1)
    assert floor.image_ms([png(line)], "text", rounds=1) > 0


@pytest.mark.parametrize("server", floor.SERVERS)
def test_web_floor_serves_the_do_nothing_app(tmp_path, server):
    bodies = [{"content": png(letter_l()), "headers": {"Content-Type": "image/png"}}]
    measured = floor.web_floor(tmp_path, bodies, clients=4, seconds=1.0, server=server)
    assert measured["server"] == server
    assert measured["errors"] == 0 and measured["requests_per_s"] > 0
    assert measured["cpu_ms_per_request"] > 0


def test_bound_takes_the_cheaper_server():
    result = run_result(image_ms=1.4, text_image_ms=7.0, web={"cpu_ms_per_request": 0.5},
                        web_by_server={"gunicorn": {"cpu_ms_per_request": 0.5}, "granian": {"cpu_ms_per_request": 0.2}})
    assert floor.bound(result)["queue_least_parts"]["web"] == pytest.approx(0.2)
    assert floor.bound(result)["queue_least_cpu_ms"] == pytest.approx(2.8)
    assert floor.text_bound(result)["least_parts"]["web"] == pytest.approx(0.2)
