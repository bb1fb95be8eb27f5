"""A form in one job (web/fields.py) against the real stack: per-image options, names,
regions of one page sent once, and every way they can be wrong."""
from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image

from tests.fixtures.web import draw_char, draw_line
from tests.test_api import assert_error, b64


def test_each_image_of_a_form_may_have_options_of_its_own(api, torchserve):
    """One job per form: a digits field, a text field and a plain character, each read by
    its own options, its name echoed, in order."""
    ring, line = draw_char("O"), draw_line("O1S7")
    direct = httpx.post(f"{torchserve.url}/predictions/emnist", content=ring, timeout=60,
                        headers={**torchserve.headers(), "X-Top-K": "47"}).json()["results"][0]["predictions"]
    body = {"top_k": 2, "images": [
        {"image": b64(ring), "chars": "digits", "top_k": 3, "name": "house number"},
        {"image": b64(line), "mode": "text", "chars": "0123456789", "name": "Straße/ZIP"},
        b64(ring),
        {"image": b64(ring)},
    ]}
    response = api.post("/v1/recognize", json=body)
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["mode"] == "char" and job["top_k"] == 2 and job["chars"] is None  # the job's own defaults
    digit, text, plain, bare = job["results"]
    assert digit["name"] == "house number" and len(digit["characters"]) == 1
    digits = [p["char"] for p in direct if p["char"].isdigit()]
    digit_p = {p["char"]: p["p"] for p in direct if p["char"].isdigit()}
    got = [a["char"] for a in digit["characters"][0]["alternatives"]]
    # int8 serving rounds some probabilities to exact ties, which either order lists.
    assert [digit_p[c] for c in got] == [digit_p[c] for c in digits[:3]] and got[0] == digits[0], (got, digits)
    assert text["name"] == "Straße/ZIP" and text["text"].replace(" ", "") == "0157", text
    for result in (plain, bare):  # the job's options: all classes, top 2, no name
        assert "name" not in result and result["text"] == direct[0]["char"]
        assert [a["char"] for a in result["characters"][0]["alternatives"]] == [p["char"] for p in direct[:2]]
    # An Idempotency-Key replay must match the per-image options too.
    key = {"Idempotency-Key": "form-17"}
    first = api.post("/v1/jobs", json=body, headers=key)
    assert api.post("/v1/jobs", json=body, headers=key).json()["id"] == first.json()["id"]
    changed = {**body, "images": [{**body["images"][0], "chars": "uppercase"}, *body["images"][1:]]}
    assert_error(api.post("/v1/jobs", json=changed, headers=key), 409, "idempotency_conflict")


def scanned_form() -> tuple[bytes, dict[str, list[int]]]:
    """A form page (JPEG, as scanners save it) with a number field and an initial box,
    and where each field is on it."""
    page = Image.new("L", (900, 500), 235)
    number, initial = Image.open(io.BytesIO(draw_line("407"))), Image.open(io.BytesIO(draw_char("K", size=80)))
    page.paste(number, (60, 80))
    page.paste(initial, (600, 300))
    buf = io.BytesIO()
    page.save(buf, format="JPEG", quality=90)
    return buf.getvalue(), {"number": [40, 60, number.width + 40, number.height + 40],
                            "initial": [580, 280, initial.width + 40, initial.height + 40]}


def test_fields_are_read_as_regions_of_one_page_sent_once(api):
    page, boxes = scanned_form()
    body = {"images": [
        {"image": b64(page), "box": boxes["number"], "mode": "text", "chars": "digits", "name": "number"},
        {"image": 0, "box": boxes["initial"], "chars": "uppercase", "name": "initial"},
        {"image": 1, "mode": "text", "name": "whole page"},  # an earlier item's page, whole
    ]}
    response = api.post("/v1/recognize", json=body)
    assert response.status_code == 200, response.text
    number, initial, whole = response.json()["results"]
    assert number["name"] == "number" and number["text"].replace(" ", "") == "407", number
    assert initial["name"] == "initial" and initial["text"] == "K", initial
    # Boxes come back in the page's pixels, inside their field.
    for result, (x, y, w, h) in ((number, boxes["number"]), (initial, boxes["initial"])):
        for c in result["characters"]:
            bx, by, bw, bh = c["box"]
            assert x <= bx and y <= by and bx + bw <= x + w and by + bh <= y + h, (c["box"], x, y, w, h)
    assert whole["name"] == "whole page" and len(whole["characters"]) == 4, whole
    assert sorted(c["box"][0] for c in whole["characters"])[-1] >= 600  # the initial, far right


def test_rereading_a_page_counts_toward_the_jobs_pixel_budget(api):
    """A page sent once and read whole many times is as much work as sending it many times."""
    buf = io.BytesIO()
    Image.new("L", (5000, 5000), 255).save(buf, format="PNG")  # 25 M pixels, a few KB
    page = b64(buf.getvalue())
    many = {"images": [page, *({"image": 0} for _ in range(30))]}
    error = assert_error(api.post("/v1/jobs", json=many), 413, "too_many_pixels")
    assert "775000000 pixels" in error["message"], error  # 31 reads of 25 M
    regions = {"images": [page, *({"image": 0, "box": [0, 0, 100, 100]} for _ in range(30))]}
    assert api.post("/v1/jobs", json=regions).status_code == 202


@pytest.mark.parametrize("items, code, says", [
    ([{"image": "PAGE", "box": [800, 0, 101, 10]}], "invalid_box", "900x500"),
    ([{"image": "PAGE", "box": [0, 490, 10, 11]}], "invalid_box", "900x500"),
    ([{"image": "PAGE", "box": [0, 0, 0, 10]}], "invalid_box", "width"),
    ([{"image": "PAGE", "box": [0, 0, 10]}], "invalid_box", "[x, y, width, height]"),
    ([{"image": "PAGE", "box": [-1, 0, 10, 10]}], "invalid_box", "whole pixels"),
    ([{"image": "PAGE", "box": [0.5, 0, 10, 10]}], "invalid_box", "whole pixels"),
    (["PAGE", {"image": 1}], "invalid_images", "earlier item"),
    (["PAGE", {"image": -1}], "invalid_images", "earlier item"),
    (["PAGE", {"image": True}], "invalid_base64", "base64"),
])
def test_bad_regions_are_422(api, items, code, says):
    page = b64(scanned_form()[0])
    items = [page if item == "PAGE" else {k: (page if v == "PAGE" else v) for k, v in item.items()} for item in items]
    error = assert_error(api.post("/v1/jobs", json={"images": items}), 422, code)
    assert says in error["message"], error


@pytest.mark.parametrize("item, code", [
    ({"mode": "text"}, "invalid_images"),
    ({"image": "VALID", "mode": "poem"}, "invalid_mode"),
    ({"image": "VALID", "top_k": 0}, "invalid_top_k"),
    ({"image": "VALID", "top_k": "3"}, "invalid_top_k"),
    ({"image": "VALID", "chars": "0-9"}, "invalid_chars"),
    ({"image": "VALID", "chars": None}, "invalid_chars"),
    ({"image": "VALID", "name": 7}, "invalid_name"),
    ({"image": "VALID", "name": "a\nb"}, "invalid_name"),
    ({"image": "VALID", "name": "x" * 201}, "invalid_name"),
    ({"image": "VALID", "callback_url": "https://example.com"}, "invalid_request"),
    ({"image": 5}, "invalid_images"),
    ({"image": 2.5}, "invalid_base64"),
])
def test_bad_per_image_options_are_422_naming_the_image(api, char_png, item, code):
    item = {k: (b64(char_png) if v == "VALID" else v) for k, v in item.items()}
    error = assert_error(api.post("/v1/jobs", json={"images": [b64(char_png), item]}), 422, code)
    assert "images[1]" in error["message"], error
