"""`hwr recognize` end to end: the console script against the live gunicorn app."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.fixtures.web import draw_char, print_line
from tests.stack import base_env

HWR = Path(sys.executable).parent / "hwr"
ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUVWXYZabdefghnqrt"


@pytest.fixture(scope="module")
def image_files(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    files = []
    for i in range(200):
        path = folder / f"img-{i:03d}.png"
        path.write_bytes(draw_char(ALPHABET[i % len(ALPHABET)], size=48 + i % 5 * 16, seed=i))
        files.append(path)
    return files


def run_hwr(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(HWR), "recognize", *args], env=base_env(), capture_output=True, text=True,
                          timeout=timeout)


def test_recognize_200_files_to_jsonl_in_order(web_app, redis_client, image_files, tmp_path):
    out = tmp_path / "results.jsonl"
    run = run_hwr(*map(str, image_files), "--url", web_app, "--out", str(out), "--concurrency", "4",
                  "--batch-size", "7", "--top-k", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 200
    assert [row["file"] for row in rows] == [str(f) for f in image_files]
    for row in rows:
        assert "error" not in row, row
        assert len(row["text"]) == 1 and row["characters"][0]["char"] == row["text"]
        assert len(row["characters"][0]["alternatives"]) == 2
    assert "200/200" in run.stderr  # the progress bar got to the end


def test_bad_file_gets_its_own_error_line_and_csv(web_app, redis_client, image_files, tmp_path):
    garbage = tmp_path / "not-an-image.png"
    garbage.write_bytes(b"definitely not a PNG")
    files = [*map(str, image_files[:3]), str(garbage), str(image_files[3])]
    out = tmp_path / "results.csv"
    run = run_hwr(*files, "--url", web_app, "--out", str(out), "--batch-size", "5", "--quiet")
    assert run.returncode == 1 and "1 of 5 files failed" in run.stderr
    rows = list(csv.DictReader(out.open()))
    assert [r["file"] for r in rows] == files
    assert rows[3]["error_code"] == "undecodable_image" and rows[3]["text"] == ""
    assert all(r["text"] and not r["error_code"] for i, r in enumerate(rows) if i != 3)


def test_rate_limited_client_retries_after_429(start_web_app, redis_client, celery_worker, image_files, tmp_path):
    url = start_web_app(HWR_API_KEYS="cli-key", HWR_RATE_LIMIT="3/second")
    out = tmp_path / "limited.jsonl"
    run = run_hwr(*map(str, image_files[:12]), "--url", url, "--api-key", "cli-key", "--out", str(out),
                  "--batch-size", "1", "--concurrency", "4", "--quiet")
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(out.read_text().splitlines()) == 12
    metrics = httpx.get(f"{url}/metrics").text
    assert 'status="429"' in metrics, "the limit was never hit: this test proves nothing"
    denied = run_hwr(str(image_files[0]), "--url", url, "--api-key", "wrong", "--quiet")
    assert denied.returncode == 1 and "unauthorized" in denied.stdout


def test_cli_case_written(web_app, redis_client, tmp_path):
    """`--case written` reaches the API: a printed "Sun" keeps its lowercase u."""
    line = tmp_path / "sun.png"
    line.write_bytes(print_line("Sun"))
    texts = []
    for case in ("classes", "written"):
        out = tmp_path / f"{case}.jsonl"
        run = run_hwr(str(line), "--url", web_app, "--out", str(out), "--mode", "text", "--case", case, "--quiet")
        assert run.returncode == 0, run.stderr[-3000:]
        texts.append(json.loads(out.read_text())["text"])
    assert texts == ["SUn", "Sun"], texts


def test_cli_chars_and_the_client_delete(web_app, redis_client, image_files, tmp_path):
    """`--chars digits` reaches the API (letters come back as digits), and Client.delete
    forgets a job."""
    from hwr.client import ApiError, Client

    letters = [str(f) for i, f in enumerate(image_files[:40]) if ALPHABET[i % len(ALPHABET)].isalpha()]
    out = tmp_path / "digits.jsonl"
    run = run_hwr(*letters, "--url", web_app, "--out", str(out), "--chars", "digits", "--quiet")
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == len(letters) and all(row["text"].isdigit() for row in rows), rows
    bad = run_hwr(letters[0], "--url", web_app, "--out", str(tmp_path / "bad.csv"), "--chars", "0-9", "--quiet")
    assert bad.returncode == 1 and "invalid_chars" in (tmp_path / "bad.csv").read_text()

    with Client(web_app) as client:
        job_id = client.submit(letters[0])
        client.wait(job_id, timeout=60)
        client.delete(job_id)
        with pytest.raises(ApiError) as gone:
            client.get(job_id)
        assert gone.value.status == 404


def test_the_client_reads_a_form_field_by_field(web_app, redis_client, image_files):
    from hwr.client import Client, Field

    letter, digit = image_files[10], image_files[3]  # drawn "A" and "3"
    with Client(web_app) as client:
        form = client.recognize_form({"initial": Field(letter, mode="char", chars="uppercase", top_k=2),
                                      "as digit": Field(letter, mode="char", chars="digits"),
                                      "number": digit.read_bytes()})
    assert list(form) == ["initial", "as digit", "number"]
    assert all(result["name"] == name for name, result in form.items())
    assert form["initial"]["text"] == "A" and len(form["initial"]["characters"][0]["alternatives"]) == 2
    assert form["as digit"]["text"].isdigit()
    assert form["number"]["text"] == "3" and len(form["number"]["characters"][0]["alternatives"]) == 5


def test_the_client_sends_a_page_once_for_its_fields(web_app, redis_client, image_files):
    from PIL import Image

    from hwr.client import Client, Field

    page = Image.new("L", (400, 200), 240)
    page.paste(Image.open(image_files[10]), (20, 20))  # "A"
    page.paste(Image.open(image_files[3]), (220, 20))  # "3"
    buf = io.BytesIO()
    page.save(buf, format="PNG")
    sent = []
    with Client(web_app) as client:
        client.http.event_hooks["request"].append(lambda request: sent.append(len(request.content)))
        form = client.recognize_form({"letter": Field(buf.getvalue(), mode="char", box=(0, 0, 200, 200)),
                                      "digit": Field(buf.getvalue(), mode="char", box=(200, 0, 200, 200),
                                                     chars="digits")})
    assert (form["letter"]["text"], form["digit"]["text"]) == ("A", "3")
    assert form["digit"]["characters"][0]["box"][0] >= 220
    assert sent[0] < 1.5 * len(buf.getvalue()) * 4 / 3  # the page's base64 once, not twice


def form_page(number: str, initial: str | None, seed: int) -> bytes:
    """A filled-in form as a scanner saves it: a number field and an initial box."""
    from PIL import Image

    from tests.fixtures.web import draw_line

    page = Image.new("L", (800, 400), 238)
    page.paste(Image.open(io.BytesIO(draw_line(number))), (40, 40))
    if initial:
        page.paste(Image.open(io.BytesIO(draw_char(initial, size=80, seed=seed))), (600, 250))
    buf = io.BytesIO()
    page.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def test_forms_reads_every_page_by_its_template_into_a_csv_row(web_app, redis_client, tmp_path):
    template = tmp_path / "form.json"
    template.write_text(json.dumps({"fields": {
        "number": {"box": [20, 20, 400, 120], "mode": "text", "chars": "digits"},
        "initial": {"box": [580, 230, 160, 140], "mode": "char", "chars": "uppercase"}}}))
    pages = []
    for i, (number, initial) in enumerate([("407", "K"), ("12", None), ("95", "X")]):
        pages.append(tmp_path / f"page-{i}.jpg")
        pages[-1].write_bytes(form_page(number, initial, i))
    pages.insert(2, tmp_path / "notes.jpg")
    pages[2].write_text("not a scan")
    out = tmp_path / "forms.csv"
    run = subprocess.run([str(HWR), "forms", *map(str, pages), "--template", str(template), "--url", web_app,
                          "--out", str(out), "--quiet"], env=base_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and "1 of 4 files failed" in run.stderr, run.stderr[-3000:]
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["file", "number", "initial", "review", "error_code", "error_message"]
    assert [r["file"] for r in rows] == list(map(str, pages))
    assert [(r["number"].replace(" ", ""), r["initial"]) for r in rows] == [
        ("407", "K"), ("12", ""), ("", ""), ("95", "X")], rows  # page 1's initial is left blank
    assert rows[2]["error_code"] == "undecodable_image" and "text" in rows[2]["error_message"]

    jsonl = tmp_path / "forms.jsonl"
    run = subprocess.run([str(HWR), "forms", str(pages[1]), "--template", str(template), "--url", web_app,
                          "--out", str(jsonl), "--quiet"], env=base_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    [row] = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert row["fields"]["initial"]["error"]["code"] == "blank_image"
    assert all(c["box"][0] >= 20 for c in row["fields"]["number"]["characters"])  # page pixels


def test_forms_scales_boxes_to_each_page_and_lists_weak_fields_for_review(web_app, redis_client, tmp_path):
    """A template measured on an 800x400 page reads the same form scanned at twice the
    resolution; --review-below lists the fields read with less confidence."""
    from PIL import Image

    template = tmp_path / "form.json"
    template.write_text(json.dumps({"page": [800, 400], "fields": {
        "number": {"box": [20, 20, 400, 120], "mode": "text", "chars": "digits"},
        "initial": {"box": [580, 230, 160, 140], "mode": "char"}}}))
    small = Image.open(io.BytesIO(form_page("52", "H", 7)))
    big = tmp_path / "page-300dpi.png"
    small.resize((1600, 800), Image.Resampling.BICUBIC).save(big)

    def forms_jsonl(*extra: str) -> dict:
        out = tmp_path / "out.jsonl"
        run = subprocess.run([str(HWR), "forms", str(big), "--template", str(template), "--url", web_app,
                              "--out", str(out), "--quiet", *extra], env=base_env(), capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        return json.loads(out.read_text())

    row = forms_jsonl()
    fields = row["fields"]
    assert (fields["number"]["text"].replace(" ", ""), fields["initial"]["text"]) == ("52", "H"), fields
    assert all(c["box"][0] >= 40 for c in fields["number"]["characters"])  # the big page's pixels
    assert "review" not in row
    weaker, stronger = sorted(fields, key=lambda name: fields[name]["confidence"])
    assert fields[weaker]["confidence"] < fields[stronger]["confidence"], fields
    between = (fields[weaker]["confidence"] + fields[stronger]["confidence"]) / 2
    assert forms_jsonl("--review-below", f"{between}")["review"] == [weaker]
    assert forms_jsonl("--review-below", "0")["review"] == []


@pytest.mark.parametrize("template, says", [
    ("{", "not valid JSON"),
    ('{"number": {"box": [0, 0, 10, 10]}}', '"fields"'),
    ('{"fields": {"number": {"box": [0, 0, 10]}}}', "box must be"),
    ('{"fields": {"number": {"mode": "word"}}}', "mode must be"),
    ('{"fields": {"number": {"colour": "red"}}}', "must be an object with some of"),
    ('{"page": [800], "fields": {"number": {}}}', "page must be [width, height]"),
    ('{"fields": {"name": {"case": "lower"}}}', "case must be classes or written"),
])
def test_forms_refuses_a_bad_template_before_sending_anything(tmp_path, template, says):
    path = tmp_path / "form.json"
    path.write_text(template)
    run = subprocess.run([str(HWR), "forms", "page.jpg", "--template", str(path), "--url", "http://127.0.0.1:9"],
                         env=base_env(), capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and says in run.stderr, run.stderr


def test_the_client_knows_the_services_modes():
    """hwr (installed apart from the service) keeps its own list of modes for --mode and
    forms templates: it must be the API's."""
    from hwr.client import MODES
    from web.config import MODES as API_MODES

    assert MODES == API_MODES


def test_the_client_knows_the_services_cases():
    from hwr.client import CASES
    from web.config import CASES as API_CASES

    assert CASES == API_CASES
