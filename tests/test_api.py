"""The /v1 API against the real stack: gunicorn, Redis, TorchServe and a Celery worker."""
from __future__ import annotations

import base64
import gzip
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

from serve.preprocess import bytes_to_tile
from tests.fixtures.web import draw_char, draw_line, print_line


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"code", "message"} and error["message"]
    if code:
        assert error["code"] == code, error
    return error



def test_submit_then_read_job(api, torchserve):
    images = [draw_char(c, seed=i) for i, c in enumerate("AB7")]
    files = [("image", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
    response = api.post("/v1/jobs", files=files, data={"top_k": "3"})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued" and body["links"]["self"] == f"/v1/jobs/{body['id']}"
    assert response.headers["Location"] == body["links"]["self"]

    job = api.get(body["links"]["self"], params={"wait": 60}).json()
    assert job["status"] == "succeeded", job
    assert job["id"] == body["id"] and job["n_images"] == 3 and job["error"] is None
    assert job["created_at"] <= job["finished_at"]
    # Each result must say what TorchServe itself says about the same image.
    direct = [httpx.post(f"{torchserve.url}/predictions/emnist", content=data, timeout=60,
                         headers={**torchserve.headers(), "X-Top-K": "3"}).json()["results"][0] for data in images]
    assert len(job["results"]) == 3
    for result, expected in zip(job["results"], direct):
        [char] = result["characters"]
        assert result["text"] == char["char"] == expected["predictions"][0]["char"]
        assert [a["char"] for a in char["alternatives"]] == [p["char"] for p in expected["predictions"][:3]]
        assert len(char["box"]) == 4 and 0 <= char["confidence"] <= 1
        assert len(char["alternatives"]) == 3  # top_k reaches the model


def test_recognize_json_waits_for_result(api):
    response = api.post("/v1/recognize", json={"images": [b64(draw_char("X"))], "top_k": 47})
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "succeeded"
    [result] = job["results"]
    alternatives = result["characters"][0]["alternatives"]
    assert len(alternatives) == 47 and abs(sum(a["p"] for a in alternatives) - 1) < 0.01


def test_base64_with_mime_line_breaks_and_a_data_url_is_read(api):
    png = draw_char("X")
    wrapped = base64.encodebytes(png).decode()  # 76-column lines, as `base64 char.png` prints
    assert "\n" in wrapped
    response = api.post("/v1/recognize", json={"images": [wrapped, "data:image/png;base64,\r\n" + wrapped]})
    assert response.status_code == 200, response.text
    assert [r["text"] for r in response.json()["results"]] == ["X", "X"]
    assert_error(api.post("/v1/jobs", json={"images": [wrapped.replace("\n", "\n*", 1)]}), 422, "invalid_base64")


def test_case_written_gives_letters_the_case_their_height_shows(api):
    line = print_line("Sun")
    plain = api.post("/v1/recognize?mode=text", files={"image": ("sun.png", line)}).json()
    assert plain["case"] == "classes" and plain["results"][0]["text"] == "SUn"  # EMNIST's classes
    job = api.post("/v1/recognize", files={"image": ("sun.png", line)}, data={"mode": "text", "case": "written"}).json()
    assert job["case"] == "written"
    [result] = job["results"]
    assert result["text"] == "Sun"
    u = result["characters"][1]
    assert u["char"] == "u" and u["alternatives"][0]["char"] == "u"
    # Per image in JSON; a character alone has no line to measure against.
    response = api.post("/v1/recognize", json={"images": [{"image": b64(line), "mode": "text"},
                                                          {"image": b64(draw_char("X")), "case": "written"}],
                                               "case": "written"})
    assert [r["text"] for r in response.json()["results"]] == ["Sun", "X"]
    assert_error(api.post("/v1/jobs", data={"case": "lower"}, files={"image": ("a.png", line)}), 422, "invalid_case")
    assert_error(api.post("/v1/jobs", json={"images": [{"image": b64(line), "case": True}]}), 422, "invalid_case")


def test_raw_image_body_with_query_options(api):
    """`curl --data-binary @char.png -H 'Content-Type: image/png'`: one image, options in the query."""
    data = draw_char("X")
    response = api.post("/v1/recognize", params={"top_k": "3"}, content=data, headers={"Content-Type": "image/png"})
    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    assert len(result["characters"][0]["alternatives"]) == 3
    same = api.post("/v1/recognize", params={"top_k": "3"}, json={"images": [b64(data)]}).json()["results"]
    assert [result] == same
    octet = api.post("/v1/jobs", content=data, headers={"Content-Type": "application/octet-stream"})
    assert octet.status_code == 202, octet.text
    tile = api.post("/v1/preview", content=data, headers={"Content-Type": "image/png"})
    assert tile.status_code == 200 and tile.json()["width"] == 28
    assert_error(api.post("/v1/recognize", content=b"not a png", headers={"Content-Type": "image/png"}),
                 422, "undecodable_image")
    assert_error(api.post("/v1/recognize", content=b"", headers={"Content-Type": "image/png"}), 422)
    assert_error(api.post("/v1/recognize", params={"top_k": "0"}, content=data,
                          headers={"Content-Type": "image/jpeg"}), 422, "invalid_top_k")


def test_recognize_text_mode_boxes_left_to_right(api):
    response = api.post("/v1/recognize?mode=text", files={"image": ("line.png", draw_line("HW4T"))})
    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    boxes = [c["box"] for c in result["characters"]]
    assert len(result["text"].replace(" ", "")) == 4 and len(boxes) == 4, result
    assert [b[0] for b in boxes] == sorted(b[0] for b in boxes)


def test_chars_restricts_the_classes_read(api, torchserve):
    """A digits-only field reads an O-like ring as 0: the answer is TorchServe's own
    probabilities over the digits alone, renormalized."""
    ring = draw_char("O")
    direct = httpx.post(f"{torchserve.url}/predictions/emnist", content=ring, timeout=60,
                        headers={**torchserve.headers(), "X-Top-K": "47"}).json()["results"][0]["predictions"]
    digits = [p for p in direct if p["char"].isdigit()]
    total = sum(p["p"] for p in digits)
    response = api.post("/v1/recognize", files={"image": ("o.png", ring)}, data={"chars": "digits", "top_k": "3"})
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["chars"] == "0123456789"
    [char] = job["results"][0]["characters"]
    # int8 serving rounds some probabilities to exact ties (two digits at 0.002171), which
    # either order lists: the same probabilities, by rank, whichever of the tied comes first.
    renormalized = {p["char"]: p["p"] / total for p in digits}
    assert [a["p"] for a in char["alternatives"]] == pytest.approx([p["p"] / total for p in digits[:3]], abs=2e-5)
    for got in char["alternatives"]:
        assert got["p"] == pytest.approx(renormalized[got["char"]], abs=2e-5)
    assert char["char"] == digits[0]["char"] and char["confidence"] == char["alternatives"][0]["p"]

    # Text mode: every character of the line, touching-letter readings included, obeys it.
    line = api.post("/v1/recognize", params={"mode": "text", "chars": "0123456789"},
                    files={"image": ("l.png", draw_line("O1S7"))}).json()["results"][0]
    assert line["text"].replace(" ", "") == "0157", line  # drawn O, 1, S, 7: a digit each
    assert all(a["char"].isdigit() for c in line["characters"] for a in c["alternatives"])
    # Unrestricted jobs are as before, and say so.
    plain = api.post("/v1/recognize", files={"image": ("o.png", ring)}).json()
    assert plain["chars"] is None and plain["results"][0]["text"] == direct[0]["char"]


def written(text: str) -> bytes:
    """A line in OpenCV's script font, its slashes drawn leaning 35 degrees as a pen draws
    them (the font's lean only 23, as much as many a handwritten 1), as PNG bytes."""
    import cv2

    page = np.full((120, 60 + 45 * len(text)), 245, np.uint8)
    x = 20
    for char in text:
        if char == "/":
            cv2.line(page, (x + 4, 88), (x + 4 + int(52 * np.tan(np.radians(35))), 36), 20, 5, cv2.LINE_AA)
            x += 45
            continue
        cv2.putText(page, char, (x, 85), cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, 2.0, 20, thickness=5, lineType=cv2.LINE_AA)
        x += cv2.getTextSize(char, cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, 2.0, 5)[0][0] + 4
    buf = io.BytesIO()
    Image.fromarray(page).save(buf, format="PNG")
    return buf.getvalue()


def test_marks_named_in_chars_are_read_in_text_mode(api):
    """A date's slashes and an amount's point come back where chars names them; left out,
    they are not read (the model has no class for them) and not guessed as digits."""
    fields = [("12/05/26", "0123456789/"), ("3.50", "0123456789.,"), ("4,20", "0123456789.,"),
              ("12-05", "-0123456789"), ("12.05.2026", "0123456789.")]
    body = {"mode": "text", "images": [{"image": b64(written(text)), "chars": chars} for text, chars in fields]}
    response = api.post("/v1/recognize", json=body)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["text"] for r in results] == [text for text, _ in fields], results
    date = results[0]
    slashes = [c for c in date["characters"] if c["char"] == "/"]
    assert len(slashes) == 2 and all(c["alternatives"] == [{"char": "/", "p": 1.0}] for c in slashes)
    digits = [c["confidence"] for c in date["characters"] if c["char"] != "/"]
    assert date["confidence"] == pytest.approx(sum(digits) / len(digits), abs=1e-5)  # marks do not count
    plain = api.post("/v1/recognize", json={"mode": "text", "chars": "digits",
                                            "images": [b64(written(text)) for text, _ in fields[1:3]]})
    assert [r["text"].replace(" ", "") for r in plain.json()["results"]] == ["350", "420"]


@pytest.mark.parametrize("value", ["", "0-9", "A-Z", "ｘ", "0 1", "./", "a" * 201])
def test_bad_chars_is_422(api, char_png, value):
    files = {"image": ("a.png", char_png)}
    error = assert_error(api.post("/v1/jobs", files=files, data={"chars": value}), 422, "invalid_chars")
    assert "chars" in error["message"]
    assert_error(api.post("/v1/jobs", json={"images": [b64(char_png)], "chars": [value]}), 422, "invalid_chars")


def test_delete_job_forgets_it_at_once(api, redis_client, char_png):
    def recognize():
        return api.post("/v1/recognize", files={"image": ("a.png", char_png)},
                        headers={"Idempotency-Key": "form-17"}).json()

    job = recognize()
    assert job["status"] == "succeeded" and redis_client.keys("hwr:idem:*")
    url = job["links"]["self"]
    response = api.delete(url)
    assert response.status_code == 204 and response.content == b""
    assert_error(api.get(url), 404, "not_found")
    assert_error(api.delete(url), 404, "not_found")
    assert not redis_client.keys(f"*{job['id']}*")  # hash, images and pending entries all gone
    assert not redis_client.keys("hwr:idem:*")  # and the key's record, which holds the upload's hash
    again = recognize()  # a replay is now a new job, not a pointer to the deleted one
    assert again["status"] == "succeeded" and again["id"] != job["id"]
    assert_error(api.delete("/v1/jobs/not-a-job-id"), 404, "not_found")
    assert_error(api.delete(url + "?force=1"), 422, "invalid_request")


def test_deleted_queued_job_never_runs(api, redis_client, char_png):
    """Deleted before a worker claims it: the claim finds it missing, a late finish stores
    nothing, and a waiter on it wakes up to a 404."""
    from worker import jobs

    job_id = jobs.new_job_id()
    jobs.create_jobs(redis_client, [jobs.NewJob(job_id, [char_png])], result_ttl=60, blob_ttl=60, queue="nobody")
    assert api.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        waiting = pool.submit(api.get, f"/v1/jobs/{job_id}", params={"wait": 50})
        time.sleep(1)
        assert api.delete(f"/v1/jobs/{job_id}").status_code == 204
        assert_error(waiting.result(), 404, "not_found")
        assert time.monotonic() - started < 40, "the waiter slept through the deletion"
    [(status, _, blobs)] = jobs.claim_jobs(redis_client, [(job_id, 1)])
    assert status == "missing" and blobs == [None]
    assert jobs.finish_jobs(redis_client, [(job_id, "succeeded", [{"text": "A"}], None)], 60) == [False]
    assert not redis_client.keys(f"*{job_id}*")


def test_recognize_answers_202_when_not_done_in_time(api):
    images = [b64(draw_line("ABCDEFGH"))] * 40
    response = api.post("/v1/recognize", json={"images": images, "mode": "text", "timeout": 0})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] in ("queued", "running")
    job = api.get(body["links"]["self"], params={"wait": 60}).json()
    assert job["status"] == "succeeded" and len(job["results"]) == 40


def test_blank_image_gets_a_per_image_error(api):
    blank = io.BytesIO()
    Image.new("L", (50, 50), 255).save(blank, format="PNG")
    job = api.post("/v1/recognize", json={"images": [b64(blank.getvalue()), b64(draw_char("Q"))]}).json()
    assert job["status"] == "succeeded"
    first, second = job["results"]
    assert first["error"]["code"] == "blank_image" and first["text"] == "" and first["characters"] == []
    assert "error" not in second and second["text"]


def test_idempotency_key_replays_and_conflicts(api):
    body = {"images": [b64(draw_char("K"))]}
    first = api.post("/v1/jobs", json=body, headers={"Idempotency-Key": "order-17"})
    again = api.post("/v1/jobs", json=body, headers={"Idempotency-Key": "order-17"})
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    other = api.post("/v1/jobs", json={"images": [b64(draw_char("L"))]}, headers={"Idempotency-Key": "order-17"})
    assert_error(other, 409, "idempotency_conflict")
    fresh = api.post("/v1/jobs", json=body, headers={"Idempotency-Key": "order-18"})
    assert fresh.json()["id"] != first.json()["id"]


def test_unknown_job_and_path_are_json_404(api):
    assert_error(api.get("/v1/jobs/" + "0" * 32), 404, "not_found")
    assert_error(api.get("/v1/jobs/not-a-job-id"), 404, "not_found")
    error = assert_error(api.get("/v1/nothing-here"), 404, "not_found")
    assert "/openapi.json" in error["message"]
    assert_error(api.get("/favicon.ico"), 404, "not_found")


def test_a_trailing_slash_reaches_the_same_endpoint(api, char_png):
    submitted = api.post("/v1/jobs/", files={"image": ("a.png", char_png)})
    assert submitted.status_code == 202, submitted.text
    job = api.get(submitted.json()["links"]["self"] + "/", params={"wait": 30}).json()
    assert job["id"] == submitted.json()["id"] and job["status"] == "succeeded"
    assert api.post("/v1/recognize/", files={"image": ("a.png", char_png)}).json()["status"] == "succeeded"


def test_wrong_method_is_json_405(api):
    error = assert_error(api.delete("/v1/jobs"), 405, "method_not_allowed")
    assert "POST" in api.put("/v1/recognize").headers["Allow"]
    assert error


NOT_AN_IMAGE = b64(b"this is not an image")


@pytest.mark.parametrize("body, code", [
    ({"images": ["@@not base64@@"]}, "invalid_base64"),
    ({"images": [NOT_AN_IMAGE]}, "undecodable_image"),
    ({"images": [""]}, "empty_image"),
    ({"images": []}, "no_images"),
    ({"images": "abc"}, "invalid_images"),
    ({"images": [123]}, "invalid_base64"),
    ({}, "invalid_images"),
    ({"images": ["VALID"], "mode": "poem"}, "invalid_mode"),
    ({"images": ["VALID"], "top_k": 0}, "invalid_top_k"),
    ({"images": ["VALID"], "top_k": 48}, "invalid_top_k"),
    ({"images": ["VALID"], "top_k": "5"}, "invalid_top_k"),
    ({"images": ["VALID"], "top_k": True}, "invalid_top_k"),
    ({"images": ["VALID"], "top_k": 2.5}, "invalid_top_k"),
    ({"images": ["VALID"], "callback_url": "ftp://example.com/x"}, "invalid_callback_url"),
    ({"images": ["VALID"], "callback_url": 7}, "invalid_callback_url"),
    ({"images": ["VALID"], "colour": "red"}, "invalid_request"),
    ({"image": ["VALID"]}, "invalid_base64"),
    ({"image": "VALID", "images": ["VALID"]}, "invalid_images"),
])
def test_invalid_json_fields_are_422(api, body, code):
    valid = b64(draw_char("A"))
    body = {k: ([valid] if v == ["VALID"] else valid if v == "VALID" else v) for k, v in body.items()}
    assert_error(api.post("/v1/jobs", json=body), 422, code)


def test_invalid_form_query_and_header_values_are_422(api, char_png):
    files = {"image": ("a.png", char_png)}
    assert_error(api.post("/v1/jobs", files=files, data={"top_k": "five"}), 422, "invalid_top_k")
    assert_error(api.post("/v1/jobs?mode=words", files=files), 422, "invalid_mode")
    assert_error(api.post("/v1/jobs?verbose=1", files=files), 422, "invalid_request")
    assert_error(api.post("/v1/jobs", files={"picture": ("a.png", char_png)}), 422, "invalid_request")
    assert_error(api.post("/v1/jobs", files={"image": ("a.png", b"GIF89a-broken")}), 422, "undecodable_image")
    assert_error(api.post("/v1/recognize?timeout=61", files=files), 422, "invalid_timeout")
    assert_error(api.post("/v1/recognize?timeout=nan", files=files), 422, "invalid_timeout")
    assert_error(api.post("/v1/jobs", files=files, headers={"Idempotency-Key": "has space"}), 422,
                 "invalid_idempotency_key")
    assert_error(api.get("/v1/jobs/" + "0" * 32, params={"wait": "-1"}), 422, "invalid_wait")


def test_private_callback_url_is_refused_unless_allowed(start_web_app, redis_client, char_png):
    url = start_web_app(HWR_WEBHOOK_ALLOW_PRIVATE="0")
    response = httpx.post(f"{url}/v1/jobs", files={"image": ("a.png", char_png)},
                          data={"callback_url": "http://127.0.0.1:9/hook"}, timeout=30)
    assert "loopback" in assert_error(response, 422, "invalid_callback_url")["message"]


def test_bad_json_is_400_and_other_types_415(api):
    assert_error(api.post("/v1/jobs", content=b"{not json", headers={"Content-Type": "application/json"}),
                 400, "invalid_json")
    assert_error(api.post("/v1/jobs", content=b"raw", headers={"Content-Type": "text/plain"}), 415)
    assert_error(api.post("/v1/jobs"), 415)


def test_an_image_sent_with_curls_default_type_is_read(api, char_png):
    # `curl --data-binary @char.png URL` sends Content-Type application/x-www-form-urlencoded.
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}
    response = api.post("/v1/recognize?top_k=2", content=char_png, headers=form_type)
    assert response.status_code == 200, response.text
    assert len(response.json()["results"][0]["characters"][0]["alternatives"]) == 2
    # A form of options alone (an HTML form whose hidden image input was never filled).
    assert_error(api.post("/v1/jobs", content=b"mode=char&top_k=3", headers=form_type), 422, "no_images")
    assert_error(api.post("/v1/jobs", content=char_png[:20], headers=form_type), 422, "undecodable_image")


def test_images_as_base64_text_fields_of_a_form_are_read(api, char_png):
    # An HTML form posting a canvas's toDataURL() from a hidden input: urlencoded by default,
    # multipart with enctype="multipart/form-data"; plain base64 is taken too.
    data_url = "data:image/png;base64," + base64.b64encode(char_png).decode()
    response = api.post("/v1/recognize", data={"image": data_url, "top_k": "2"})
    assert response.request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert response.status_code == 200, response.text
    assert len(response.json()["results"][0]["characters"][0]["alternatives"]) == 2
    two = [("image", data_url), ("image", base64.b64encode(char_png).decode()), ("mode", "char")]
    response = api.post("/v1/recognize", files=[(name, (None, value)) for name, value in two])
    assert response.request.headers["content-type"].startswith("multipart/form-data")
    assert response.status_code == 200, response.text
    assert [r["text"] for r in response.json()["results"]] == [response.json()["results"][0]["text"]] * 2
    # A file's bytes sent as a plain field (curl -F image=<char.png) are not base64: say how to send them.
    error = assert_error(api.post("/v1/jobs", files={"image": (None, char_png)}), 422, "invalid_base64")
    assert "curl -F image=@char.png" in error["message"]
    error = assert_error(api.post("/v1/jobs", files=[("image", (None, data_url)), ("image", ("a.png", char_png))]),
                         422, "invalid_images")
    assert "not both" in error["message"]
    assert_error(api.post("/v1/jobs", data={"image": data_url, "colour": "red"}), 422, "invalid_request")
    # Millions of empty fields are refused before they are parsed, not held in memory.
    flood = api.post("/v1/jobs", content=b"a=&" * 3_000_000,
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_error(flood, 413, "too_many_fields")


def test_an_image_sent_with_no_type_at_all_is_read(api, char_png):
    # requests.post(url, data=f.read()), httpx's content= and fetch() with an ArrayBuffer
    # send raw bytes without a Content-Type.
    response = api.post("/v1/recognize?top_k=2", content=char_png)
    assert "content-type" not in response.request.headers
    assert response.status_code == 200, response.text
    assert len(response.json()["results"][0]["characters"][0]["alternatives"]) == 2
    assert_error(api.post("/v1/jobs", content=b"not an image"), 415, "unsupported_media_type")


def test_other_upload_field_names_are_taken_in_order(api, char_png):
    blank = io.BytesIO()
    Image.new("L", (60, 60), 255).save(blank, format="PNG")
    files = [("file", ("1.png", char_png)), ("images[]", ("2.png", blank.getvalue())), ("image", ("3.png", char_png)),
             ("files[0]", ("4.png", char_png)), ("files[1]", ("5.png", blank.getvalue()))]
    response = api.post("/v1/recognize", files=files)
    assert response.status_code == 200, response.text
    codes = [r.get("error", {}).get("code") for r in response.json()["results"]]
    assert codes == [None, "blank_image", None, None, "blank_image"]
    assert_error(api.post("/v1/jobs", files={"picture": ("a.png", char_png)}), 422, "invalid_request")


def test_json_sent_as_text_plain_is_read(api, char_png):
    # fetch(url, {method: "POST", body: JSON.stringify(...)}) without headers sends text/plain.
    body = json.dumps({"images": [b64(char_png)], "top_k": 2}).encode()
    response = api.post("/v1/recognize", content=b"\n " + body, headers={"Content-Type": "text/plain;charset=UTF-8"})
    assert response.status_code == 200, response.text
    assert len(response.json()["results"][0]["characters"][0]["alternatives"]) == 2
    assert_error(api.post("/v1/jobs", content=b'{"images": [', headers={"Content-Type": "text/plain"}),
                 400, "invalid_json")


def test_one_image_may_be_sent_as_a_json_image_string(api, char_png):
    response = api.post("/v1/recognize", json={"image": b64(char_png), "top_k": 2})
    assert response.status_code == 200, response.text
    assert [len(r["characters"]) for r in response.json()["results"]] == [1]


def test_a_pdf_or_svg_upload_is_named_in_the_error(api):
    pdf = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"
    error = assert_error(api.post("/v1/jobs", files={"image": ("form.png", pdf)}), 422, "undecodable_image")
    assert "PDF document" in error["message"] and "PNG or JPEG" in error["message"], error
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><path d="M0 0L9 9"/></svg>'
    error = assert_error(api.post("/v1/jobs", content=svg, headers={"Content-Type": "image/svg+xml"}),
                         422, "undecodable_image")
    assert "SVG" in error["message"], error


def test_compressed_body_is_415_saying_so_not_invalid_json(api):
    body = gzip.compress(json.dumps({"images": ["AA=="]}).encode())
    response = api.post("/v1/jobs", content=body, headers={"Content-Type": "application/json",
                                                           "Content-Encoding": "gzip"})
    assert_error(response, 415, "unsupported_content_encoding")
    assert response.headers["Accept-Encoding"] == "identity"


def test_too_many_images_is_413(api):
    assert_error(api.post("/v1/jobs", json={"images": ["AA=="] * 1001}), 413, "too_many_images")


def test_upload_over_the_size_limit_is_413(start_web_app, redis_client):
    url = start_web_app(HWR_MAX_UPLOAD_BYTES="20000")
    big = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200), np.uint8)).save(big, format="PNG")
    response = httpx.post(f"{url}/v1/jobs", files={"image": ("big.png", big.getvalue())}, timeout=30)
    assert_error(response, 413, "payload_too_large")


def test_chunked_upload_over_the_size_limit_is_413_not_a_broken_image(start_web_app, redis_client, char_png):
    """Without a Content-Length, Werkzeug reads a body only up to the limit and drops the
    rest: the cut image, form or JSON must be refused as too large, not as malformed."""
    url = start_web_app(HWR_MAX_UPLOAD_BYTES="20000")
    big = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200), np.uint8)).save(big, format="PNG")

    def chunked(data: bytes):  # an iterator body: httpx sends it with Transfer-Encoding: chunked
        yield from (data[i:i + 4096] for i in range(0, len(data), 4096))

    b64 = base64.b64encode(big.getvalue()).decode()
    form = httpx.Request("POST", url, files={"image": ("big.png", big.getvalue())})
    for content, content_type in ((big.getvalue(), "image/png"),
                                  (json.dumps({"images": [b64]}).encode(), "application/json"),
                                  (form.read(), form.headers["Content-Type"])):
        response = httpx.post(f"{url}/v1/jobs", content=chunked(content), headers={"Content-Type": content_type},
                              timeout=30)
        assert_error(response, 413, "payload_too_large")
    # A chunked body under the limit is read whole and runs.
    response = httpx.post(f"{url}/v1/jobs", content=chunked(char_png), headers={"Content-Type": "image/png"},
                          timeout=30)
    assert response.status_code == 202, response.text


def test_image_over_the_pixel_limit_is_422(start_web_app, redis_client):
    url = start_web_app(HWR_MAX_PIXELS="5000")
    response = httpx.post(f"{url}/v1/jobs", files={"image": ("a.png", draw_char("A", size=100))}, timeout=30)
    assert_error(response, 422, "image_too_large")


def test_preview_is_the_handlers_tile(api, char_png):
    response = api.post("/v1/preview", files={"image": ("a.png", char_png)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["width"], body["height"]) == (28, 28)
    assert np.array_equal(np.array(body["pixels"], np.uint8), bytes_to_tile(char_png))
    blank = io.BytesIO()
    Image.new("L", (40, 40), 255).save(blank, format="PNG")
    assert_error(api.post("/v1/preview", json={"images": [b64(blank.getvalue())]}), 422, "blank_image")
    assert_error(api.post("/v1/preview", json={"images": [b64(char_png)] * 2}), 422, "invalid_images")


def test_health_and_readiness(api):
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert set(checks) == {"redis", "torchserve", "workers"} and all(c["ok"] for c in checks.values())


def test_readyz_is_503_with_detail_when_torchserve_is_down(start_web_app):
    url = start_web_app(HWR_TORCHSERVE_URLS=f"http://127.0.0.1:{_closed_port()}", HWR_READY_CHECK_TIMEOUT="0.5")
    response = httpx.get(f"{url}/readyz", timeout=30)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["torchserve"]["ok"] is False and body["checks"]["redis"]["ok"] is True


def test_readyz_is_503_when_no_worker_listens(start_web_app, redis_server):
    # Another Redis database: the broker there has no worker.
    url = start_web_app(HWR_REDIS_URL=redis_server.url.rsplit("/", 1)[0] + "/5", HWR_READY_CHECK_TIMEOUT="0.5")
    response = httpx.get(f"{url}/readyz", timeout=30)
    assert response.status_code == 503
    assert response.json()["checks"]["workers"]["ok"] is False


def test_readyz_is_503_when_torchserve_has_no_such_model(start_web_app):
    url = start_web_app(HWR_TORCHSERVE_MODEL="no_such_model", HWR_READY_CHECK_TIMEOUT="2")
    response = httpx.get(f"{url}/readyz", timeout=30)
    assert response.status_code == 503
    torchserve = response.json()["checks"]["torchserve"]
    assert torchserve["ok"] is False and "HTTP 404" in next(iter(torchserve["servers"].values()))


def test_readyz_waits_for_the_model_not_for_torchserves_ping(start_web_app, tmp_path):
    """TorchServe's /ping says "Healthy" while its model is still loading; /readyz must not."""
    from tests.stack import Managed, TorchServe, wait_until

    ts = TorchServe.create(tmp_path / "torchserve")
    Managed.start(ts)  # without TorchServe.start's wait for the model
    try:
        def pings_healthy() -> bool:
            r = httpx.get(f"{ts.url}/ping", headers=ts.headers(), timeout=2)
            return r.status_code == 200 and "Healthy" in r.text

        wait_until(pings_healthy, 90, "TorchServe /ping")
        url = start_web_app(HWR_TORCHSERVE_URLS=ts.url, HWR_TORCHSERVE_KEY_FILE=str(ts.key_file),
                            HWR_READY_CACHE_SECONDS="0", HWR_READY_CHECK_TIMEOUT="0.5")
        early = httpx.get(f"{url}/readyz", timeout=30).json()["checks"]["torchserve"]
        assert early["ok"] is False, early
        wait_until(lambda: httpx.get(f"{url}/readyz", timeout=30).json()["checks"]["torchserve"]["ok"], 120,
                   "the model on the fresh TorchServe")
    finally:
        ts.stop()


def _closed_port() -> int:
    from tests.stack import free_port

    return free_port()


def test_metrics_count_requests_by_endpoint_and_status(api):
    api.get("/v1/jobs/" + "0" * 32)
    text = api.get("/metrics").text
    assert 'hwr_web_requests_total{endpoint="/v1/jobs/<job_id>",method="GET",status="404"}' in text
    assert "hwr_web_request_duration_seconds_bucket" in text


def test_page_docs_and_spec(api):
    page = api.get("/")
    assert page.status_code == 200 and 'id="pad"' in page.text
    csp = page.headers["Content-Security-Policy"]
    assert "http" not in csp and "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Referrer-Policy"] == "no-referrer"
    docs = api.get("/docs")
    assert docs.status_code == 200 and "/v1/recognize" in docs.text
    assert "http://" not in docs.text.replace("http://127.0.0.1", "") and "https://" not in docs.text
    spec = api.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/recognize", "/v1/preview", "/healthz", "/readyz",
            "/metrics"} <= set(spec["paths"])
    assert api.get("/static/app.js").status_code == 200
