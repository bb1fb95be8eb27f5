"""A corpus of bad inputs against the real stack (gunicorn, Redis, TorchServe, a Celery worker).

Each case is one test id. After every case:
- the answer is the expected 4xx with a JSON error body (never a 5xx, never HTML, and
  never a hang: every request has a client timeout), or, for the few inputs a demanding
  user expects to be accepted (a 1x1 image, a blank page, odd filenames, an IDN callback
  host), a 202/200 whose job carries a clear per-image error instead of a guess;
- /readyz is still 200;
- a job submitted and finished before the corpus is still there, identical.

Decisions, asserted precisely:
- 10000x10000 (100 M pixels, over HWR_MAX_PIXELS = 40 M) is refused at the door with 422
  image_too_large: it is a resource limit, read from the header before any pixel is decoded.
- 1x1 is accepted; its result is the per-image error image_too_small (the other images of
  the job still get their results), never a guessed character.
- a blank page is accepted; its result is the per-image error blank_image.
- a job's images are held to a pixel budget from their headers (15 legal 6000x6000 scans,
  540 M pixels): 413 too_many_pixels, before the web thread decodes any of them.
- JSON null for an option is refused (the OpenAPI spec declares no option nullable).
"""
from __future__ import annotations

import base64
import io
import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import Callable

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.fixtures.web import draw_char

pytestmark = pytest.mark.timeout(300)

TIMEOUT = httpx.Timeout(60.0, connect=10.0)  # no case may hang the client
BASELINE_KEY = "bad-inputs-baseline"


# -- image builders ------------------------------------------------------------------------
def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def gray_png(width: int, height: int, value: int = 255, idat: bytes | None = None) -> bytes:
    """A valid 8-bit grayscale PNG streamed row by row (a 20000x20000 one is ~430 KB and
    never exists decoded here), or, with `idat`, one whose header claims the size."""
    if idat is None:
        comp = zlib.compressobj(9)
        row = b"\x00" + bytes([value]) * width
        idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real small JPEG whose SOF0 header is patched to claim width x height."""
    data = bytearray(encode(Image.new("L", (16, 16), 255), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


CHAR_PNG = draw_char("A", size=200)
CHAR_JPEG = encode(Image.open(io.BytesIO(CHAR_PNG)).convert("RGB"), "JPEG", quality=90)
PDF = (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] "
       b"/Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
HTML = b"<!DOCTYPE html><html><head><title>x</title></head><body><img src=x onerror=alert(1)></body></html>"
TEXT = "Dear team,\nplease recognize this. Merci, Grüße, 谢谢\n".encode()
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"><text y="20">A</text></svg>'


def blank_page() -> bytes:
    """A scanned A5 page at 150 dpi with nothing on it: grey paper, sensor noise, JPEG."""
    rng = np.random.default_rng(1)
    page = np.clip(rng.normal(238, 4, (1240, 874)), 0, 255).astype(np.uint8)
    return encode(Image.fromarray(page), "JPEG", quality=85)


# -- the corpus ----------------------------------------------------------------------------
@dataclass
class Case:
    """One request and what must come back. `status` 4xx: that status and error `code`.
    `per_image`: the job is accepted and each image's result has that error code, or None
    for a real character."""

    request: Callable[[], dict]
    status: int = 422
    code: str | None = None
    path: str = "/v1/jobs"
    per_image: list[str | None] | None = None
    extra: dict = field(default_factory=dict)


def files(*parts: tuple[str, bytes | Callable[[], bytes]], **data: str) -> Callable[[], dict]:
    """Multipart `image` files; a content may be a callable, built only when the case runs."""
    return lambda: {"files": [("image", (name, content() if callable(content) else content, "image/png"))
                              for name, content in parts], "data": data}


def json_body(body) -> Callable[[], dict]:
    return lambda: {"json": body() if callable(body) else body}


def raw(content: bytes, content_type: str = "application/json", **headers: str) -> Callable[[], dict]:
    return lambda: {"content": content, "headers": {"Content-Type": content_type, **headers}}


def with_char(**options) -> Callable[[], dict]:
    return lambda: {"json": {"images": [b64(CHAR_PNG)], **options}}


CASES: dict[str, Case] = {
    # Truncated files: a valid header, the body cut.
    "png_truncated_half": Case(files(("a.png", CHAR_PNG[:len(CHAR_PNG) // 2])), code="undecodable_image"),
    "png_truncated_after_ihdr": Case(files(("a.png", CHAR_PNG[:33])), code="undecodable_image"),
    "jpeg_truncated_half": Case(files(("a.jpg", CHAR_JPEG[:len(CHAR_JPEG) // 2])), code="undecodable_image"),
    "jpeg_truncated_no_eoi": Case(json_body(lambda: {"images": [b64(CHAR_JPEG[:-2])]}), code="undecodable_image"),
    # Decompression bombs: refused from the header, nothing decoded.
    "png_bomb_20000x20000": Case(files(("bomb.png", lambda: gray_png(20000, 20000))), code="image_too_large"),
    "png_header_claims_2g_x_2g": Case(files(("liar.png", lambda: gray_png(2**31 - 1, 2**31 - 1, idat=zlib.compress(b"\0" * 64)))),
                                      code="image_too_large"),
    "jpeg_header_claims_65500x65500": Case(json_body(lambda: {"images": [b64(jpeg_claiming(65500, 65500))]}),
                                           code="image_too_large"),
    "many_large_images_over_the_job_pixel_budget": Case(
        lambda: (lambda big: {"files": [("image", (f"{i}.png", big, "image/png")) for i in range(15)]})(
            gray_png(6000, 6000)), status=413, code="too_many_pixels"),
    "png_10000x10000": Case(files(("big.png", lambda: gray_png(10000, 10000))), code="image_too_large"),
    # Accepted, with a clear per-image error (the real character next to it still gets read).
    "png_1x1_in_a_job": Case(files(("dot.png", gray_png(1, 1, 0)), ("a.png", CHAR_PNG)), status=200,
                             path="/v1/recognize", per_image=["image_too_small", None]),
    "png_2x2_json": Case(json_body(lambda: {"images": [b64(encode(Image.new("L", (2, 2), 0), "PNG"))],
                                            "mode": "text"}), status=200, path="/v1/recognize",
                         per_image=["image_too_small"]),
    "blank_scanned_page": Case(files(("page.jpg", blank_page)), status=200, path="/v1/recognize",
                               per_image=["blank_image"]),
    "blank_page_text_mode": Case(files(("page.png", lambda: gray_png(1240, 1754)), mode="text"), status=200,
                                 path="/v1/recognize", per_image=["blank_image"]),
    # Other files named .png.
    "pdf_named_png": Case(files(("scan.png", PDF)), code="undecodable_image"),
    "html_named_png": Case(files(("page.png", HTML)), code="undecodable_image"),
    # One image as the raw body (curl --data-binary), options in the query.
    "raw_body_pdf_as_image_png": Case(raw(PDF, "image/png"), code="undecodable_image"),
    "raw_body_truncated_png": Case(raw(CHAR_PNG[:40], "image/png"), path="/v1/recognize", code="undecodable_image"),
    "raw_body_bomb": Case(lambda: {**raw(gray_png(20000, 20000), "application/octet-stream")(),
                                   "params": {"top_k": "3"}}, code="image_too_large"),
    "raw_body_top_k_huge": Case(lambda: {**raw(CHAR_PNG, "image/png")(), "params": {"top_k": "99999"}},
                                code="invalid_top_k"),
    "raw_body_accepted": Case(lambda: {**raw(CHAR_PNG, "image/jpeg")(), "params": {"top_k": "2"}},
                              status=200, path="/v1/recognize", per_image=[None]),
    "text_named_png": Case(files(("note.png", TEXT)), code="undecodable_image"),
    "svg_named_png": Case(json_body(lambda: {"images": [b64(SVG)]}), code="undecodable_image"),
    "tiff_of_three_pages": Case(files(("form.tif", lambda: encode(
        Image.open(io.BytesIO(CHAR_PNG)), "TIFF", save_all=True,
        append_images=[Image.new("L", (200, 200), 255)] * 2))), code="multi_page_image"),
    "second_image_bad": Case(files(("a.png", CHAR_PNG), ("b.png", PDF)), code="undecodable_image"),
    # Malformed JSON.
    "json_truncated": Case(raw(b'{"images": ["iVBORw0'), status=400, code="invalid_json"),
    "json_trailing_garbage": Case(raw(b'{"images": []} {"images": []}'), status=400, code="invalid_json"),
    "json_single_quotes": Case(raw(b"{'images': ['AA==']}"), status=400, code="invalid_json"),
    "json_invalid_utf8": Case(raw(b'{"images": ["\xff\xfe"]}'), status=400, code="invalid_json"),
    "json_nested_100k_deep": Case(raw(b"[" * 100_000 + b"]" * 100_000), status=400, code="invalid_json"),
    "json_nested_in_images": Case(raw(b'{"images": ' + b"[" * 5000 + b"]" * 5000 + b"}"), status=400,
                                  code="invalid_json"),
    "json_5000_digit_top_k": Case(raw(b'{"images": ["AA=="], "top_k": ' + b"9" * 5000 + b"}"), status=400,
                                  code="invalid_json"),
    "json_empty_body": Case(raw(b""), status=400, code="invalid_json"),
    "multipart_without_boundary": Case(raw(b"--x\r\n\r\n", "multipart/form-data"), code="no_images"),
    # Wrong base64.
    "base64_bad_padding": Case(json_body(lambda: {"images": [b64(CHAR_PNG)[:-1]]}), code="invalid_base64"),
    "base64_urlsafe_alphabet": Case(json_body({"images": [base64.urlsafe_b64encode(b"\xfb\xff\xfe" * 20).decode()]}),
                                    code="invalid_base64"),
    "base64_with_unicode": Case(json_body({"images": ["iVBORw0KGgo\u00e9\u00e8=="]}), code="invalid_base64"),
    "base64_is_a_data_url_of_html": Case(json_body({"images": ["data:text/html;base64," + b64(HTML)]}),
                                         code="undecodable_image"),
    # Wrong types.
    "images_is_an_object": Case(json_body({"images": {"0": "AA=="}}), code="invalid_images"),
    "images_is_null": Case(json_body({"images": None}), code="invalid_images"),
    "images_is_a_number": Case(json_body({"images": 3}), code="invalid_images"),
    "images_nested_list": Case(json_body(lambda: {"images": [[b64(CHAR_PNG)]]}), code="invalid_base64"),
    "body_is_a_list": Case(json_body(lambda: [b64(CHAR_PNG)]), code="invalid_request"),
    "top_k_null": Case(with_char(top_k=None), code="invalid_top_k"),
    "top_k_list": Case(with_char(top_k=[5]), code="invalid_top_k"),
    "top_k_word": Case(with_char(top_k="five"), code="invalid_top_k"),
    "top_k_false": Case(with_char(top_k=False), code="invalid_top_k"),
    "top_k_negative": Case(with_char(top_k=-3), code="invalid_top_k"),
    "top_k_huge": Case(with_char(top_k=10**30), code="invalid_top_k"),
    "top_k_infinite": Case(raw(b'{"images": ["' + b64(CHAR_PNG).encode() + b'"], "top_k": 1e999}'),
                           code="invalid_top_k"),
    "top_k_nan": Case(raw(b'{"images": ["' + b64(CHAR_PNG).encode() + b'"], "top_k": NaN}'), code="invalid_top_k"),
    "top_k_form_negative": Case(files(("a.png", CHAR_PNG), top_k="-1"), code="invalid_top_k"),
    "top_k_form_huge": Case(files(("a.png", CHAR_PNG), top_k="99999999999999"), code="invalid_top_k"),
    "mode_number": Case(with_char(mode=1), code="invalid_mode"),
    "mode_null": Case(with_char(mode=None), code="invalid_mode"),
    "mode_list": Case(with_char(mode=["char"]), code="invalid_mode"),
    "callback_url_null": Case(with_char(callback_url=None), code="invalid_callback_url"),
    "timeout_string_json": Case(with_char(timeout="10"), path="/v1/recognize", code="invalid_timeout"),
    # Too many images in one job (HWR_MAX_IMAGES_PER_JOB = 1000).
    "json_5000_images": Case(json_body({"images": ["AA=="] * 5000}), status=413, code="too_many_images"),
    "multipart_2000_images": Case(lambda: {"files": [("image", (f"{i}.png", b"x", "image/png")) for i in range(2000)]},
                                  status=413, code="payload_too_large"),
    # A form's fields: image objects with options of their own, regions and re-reads.
    "field_box_past_the_image": Case(lambda: {"json": {"images": [{"image": b64(CHAR_PNG), "box": [0, 0, 5000, 10]}]}},
                                     code="invalid_box"),
    "field_box_of_strings": Case(lambda: {"json": {"images": [{"image": b64(CHAR_PNG), "box": ["0", "0", "9", "9"]}]}},
                                 code="invalid_box"),
    "field_rereads_itself": Case(json_body({"images": [{"image": 0}]}), code="invalid_images"),
    "field_rereads_a_later_item": Case(lambda: {"json": {"images": [{"image": 1}, b64(CHAR_PNG)]}},
                                       code="invalid_images"),
    "field_huge_index": Case(json_body({"images": [{"image": 10**30}]}), code="invalid_images"),
    "field_nested_object": Case(json_body({"images": [{"image": {"image": "AA=="}}]}), code="invalid_base64"),
    "field_name_with_bidi_control": Case(lambda: {"json": {"images": [{"image": b64(CHAR_PNG), "name": "a\u202eb"}]}},
                                         code="invalid_name"),
    "field_name_unicode_accepted": Case(lambda: {"json": {"images": [{"image": b64(CHAR_PNG),
                                                                      "name": "Straße 住所 \U0001f4dd"}]}}, status=202),
    # Unicode in fields.
    "mode_fullwidth": Case(with_char(mode="\uff43\uff48\uff41\uff52"), code="invalid_mode"),
    "mode_with_nul": Case(with_char(mode="char\u0000"), code="invalid_mode"),
    "mode_form_unicode": Case(files(("a.png", CHAR_PNG), mode="t\u00e9xt"), code="invalid_mode"),
    "top_k_form_fullwidth_digit": Case(files(("a.png", CHAR_PNG), top_k="\uff15"), code="invalid_top_k"),
    "top_k_form_arabic_indic_digit": Case(files(("a.png", CHAR_PNG), top_k="\u0663"), code="invalid_top_k"),
    "timeout_query_fullwidth": Case(lambda: {"files": [("image", ("a.png", CHAR_PNG, "image/png"))],
                                             "params": {"timeout": "\uff11\uff10"}},
                                    path="/v1/recognize", code="invalid_timeout"),
    "query_name_unicode": Case(lambda: {**with_char()(), "params": {"m\u00f6de": "char"}}, code="invalid_request"),
    "callback_url_emoji_host": Case(with_char(callback_url="http://\U0001f4a5.example/hook"),
                                    code="invalid_callback_url"),
    "callback_url_line_separator": Case(with_char(callback_url="http://example.com/ho\u2028ok"),
                                        code="invalid_callback_url"),
    "callback_url_space_in_host": Case(with_char(callback_url="http://exa mple.com/hook"),
                                       code="invalid_callback_url"),
    "callback_url_label_too_long": Case(with_char(callback_url=f"http://{'a' * 70}.example/hook"),
                                        code="invalid_callback_url"),
    "callback_url_idn_host_accepted": Case(with_char(callback_url="http://b\u00fccher.example/hook"), status=202),
    "idempotency_key_non_ascii": Case(lambda: {**with_char()(), "headers": {"Idempotency-Key": "cl\u00e9-\u2603".encode()}},
                                      code="invalid_idempotency_key"),
    "idempotency_key_empty": Case(lambda: {**with_char()(), "headers": {"Idempotency-Key": ""}},
                                  code="invalid_idempotency_key"),
    "idempotency_key_of_baseline_other_body": Case(
        lambda: {"json": {"images": [b64(draw_char("Z"))]}, "headers": {"Idempotency-Key": BASELINE_KEY}},
        status=409, code="idempotency_conflict"),
    "filename_unicode_accepted": Case(files(("\u624b\u66f8\u304d-\u00e9\u00e8-\U0001f58b.png", CHAR_PNG)),
                                      status=200, path="/v1/recognize", per_image=[None]),
    "filename_traversal_and_nul_accepted": Case(files(("../../etc/passwd\u0000.png", CHAR_PNG)), status=200,
                                                path="/v1/recognize", per_image=[None]),
    "filename_unicode_bad_content": Case(files(("\u00fcbung.png", TEXT)), code="undecodable_image"),
}


# -- fixtures and checks -------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(web_app):
    with httpx.Client(base_url=web_app, timeout=TIMEOUT) as c:
        yield c


@pytest.fixture(scope="module")
def baseline(client) -> dict:
    """A job submitted and finished before the corpus; every case must leave it as it is."""
    response = client.post("/v1/jobs", json={"images": [b64(draw_char(c, seed=i)) for i, c in enumerate("HW")]},
                           headers={"Idempotency-Key": BASELINE_KEY})
    assert response.status_code == 202, response.text
    job = client.get(response.json()["links"]["self"], params={"wait": 60}).json()
    assert job["status"] == "succeeded" and [r["text"] for r in job["results"]] != ["", ""], job
    return job


def assert_json_error(response: httpx.Response, status: int, code: str | None) -> dict:
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    error = response.json()["error"]
    assert set(error) == {"code", "message"} and isinstance(error["message"], str) and error["message"]
    if code:
        assert error["code"] == code, error
    return error


def final_job(client: httpx.Client, response: httpx.Response) -> dict:
    assert response.status_code in (200, 202), response.text[:500]
    job = response.json()
    deadline = time.monotonic() + 120
    while job["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
        job = client.get(job["links"]["self"], params={"wait": 30}).json()
    assert job["status"] == "succeeded", job
    return job


def assert_service_intact(client: httpx.Client, baseline: dict) -> None:
    ready = None
    for _ in range(3):  # readiness is cached ~1.5 s and pings a worker: allow a slow moment
        ready = client.get("/readyz")
        if ready.status_code == 200:
            break
        time.sleep(1.5)
    assert ready.status_code == 200, ready.text
    again = client.get(baseline["links"]["self"])
    assert again.status_code == 200 and again.json() == baseline


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(client, baseline, name):
    case = CASES[name]
    started = time.monotonic()
    response = client.post(case.path, **case.request())
    assert time.monotonic() - started < 30, "the API took too long to refuse a bad input"
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if case.status >= 400:
        error = assert_json_error(response, case.status, case.code)
        assert "Traceback" not in error["message"]
    elif case.per_image is None:
        assert response.status_code == case.status, response.text[:500]
        assert response.json()["status"] in ("queued", "running", "succeeded")
    else:
        job = final_job(client, response)
        assert [r.get("error", {}).get("code") for r in job["results"]] == case.per_image, job["results"]
        for result, expected in zip(job["results"], case.per_image):
            if expected:  # a clear error, not a guess
                assert result["text"] == "" and result["characters"] == [] and result["error"]["message"]
            else:
                assert len(result["text"]) == 1 and result["characters"]
    assert_service_intact(client, baseline)
