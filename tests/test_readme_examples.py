"""The curl examples in README.md run, as written, against a stack started by `make run`.

Convention for README.md (what this test runs):
- a fenced block whose info string is exactly `bash` and that contains `curl` is an example;
- it uses $HWR_URL (base URL, no trailing slash) and $HWR_API_KEY (a valid key);
- image files are named relative to the working directory, which holds `char.png`: a
  scanned EMNIST character that the model reads as the letter in $HWR_EXPECTED_CHAR;
- it runs under `bash -euo pipefail`, must exit 0 and print only JSON (one or more
  documents), none with a non-null top-level "error";
- `<!-- readme-test: error -->` on the line just before the fence marks an example that
  shows an error: it must print a JSON document with a non-null "error";
- `<!-- readme-test: skip -->` there leaves the block out (e.g. it needs docker compose).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass

import pytest

from tests.stack import ROOT
from tests.test_make_run import API_KEY, make_run_stack, scanned_char  # noqa: F401  (shared fixtures)

README = ROOT / "README.md"
FENCE = re.compile(r"(?:^<!--\s*readme-test:\s*(?P<mark>\w+)\s*-->\n)?^```bash\n(?P<body>.*?)^```\s*$",
                   re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Example:
    line: int
    body: str
    expect_error: bool

    def __str__(self) -> str:
        return f"README.md:{self.line}"


def extract(text: str) -> list[Example]:
    examples = []
    for match in FENCE.finditer(text):
        mark, body = match.group("mark"), match.group("body")
        if "curl" not in body or mark == "skip":
            continue
        line = text.count("\n", 0, match.start("body"))  # the fence's own line number
        examples.append(Example(line, body, expect_error=(mark == "error")))
    return examples


def json_documents(out: str) -> list:
    """Every JSON document printed, one after another; anything else is an error."""
    decoder, docs, i = json.JSONDecoder(), [], 0
    while True:
        while i < len(out) and out[i].isspace():
            i += 1
        if i == len(out):
            return docs
        doc, i = decoder.raw_decode(out, i)
        docs.append(doc)


def has_error(doc) -> bool:
    return isinstance(doc, dict) and doc.get("error") is not None


EXAMPLES = extract(README.read_text()) if README.exists() else []


def test_extract_follows_the_convention():
    text = ("intro\n```bash\ncurl -s \"$HWR_URL/healthz\"\n```\n"
            "<!-- readme-test: error -->\n```bash\ncurl -s \"$HWR_URL/v1/recognize\"\n```\n"
            "<!-- readme-test: skip -->\n```bash\ndocker compose exec torchserve curl -s localhost:8081/models\n```\n"
            "```bash\nmake run\n```\n```python\ncurl = 1\n```\n")
    found = extract(text)
    assert [(e.line, e.expect_error) for e in found] == [(2, False), (6, True)]
    assert found[0].body == "curl -s \"$HWR_URL/healthz\"\n"
    assert json_documents('{"a": 1}\n{"error": null}\n[1]') == [{"a": 1}, {"error": None}, [1]]
    with pytest.raises(ValueError):
        json_documents("HTTP/1.1 200 OK\n{}")
    assert has_error({"error": {"code": "x"}}) and not has_error({"error": None, "status": "succeeded"})


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES or [None], ids=str)
def test_readme_example(example, request, tmp_path):
    if example is None:
        pytest.skip("README.md has no ```bash block with curl yet (convention: tests/test_readme_examples.py)")
    # Asked for only now, so that a README without examples starts no stack.
    make_run_stack = request.getfixturevalue("make_run_stack")
    image, label = request.getfixturevalue("scanned_char")
    (tmp_path / "char.png").write_bytes(image.read_bytes())
    env = {**os.environ, "HWR_URL": make_run_stack.url, "HWR_API_KEY": API_KEY, "HWR_EXPECTED_CHAR": label}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", example.body], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"{example} exited {result.returncode}:\n{result.stderr}"
    try:
        docs = json_documents(result.stdout)
    except ValueError as exc:
        pytest.fail(f"{example} printed something other than JSON ({exc}):\n{result.stdout[:2000]}")
    assert docs, f"{example} printed nothing"
    if example.expect_error:
        assert any(has_error(doc) for doc in docs), f"{example} is marked as an error example:\n{result.stdout}"
    else:
        assert not any(has_error(doc) for doc in docs), f"{example}:\n{result.stdout}"
