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

from tests.fixtures.web import draw_char
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
