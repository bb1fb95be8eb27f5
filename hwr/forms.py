"""`hwr forms PAGES... --template form.json`: the fields of filled-in forms, a row per page.

The template names each field and says where it is on the page and what it holds:

    {"fields": {
        "date":    {"box": [120, 80, 400, 60], "mode": "text", "chars": "digits"},
        "surname": {"box": [120, 160, 600, 60], "chars": "letters"},
        "initial": {"box": [760, 160, 60, 60], "mode": "char", "chars": "uppercase"}}}

`box` is [x, y, width, height] in the page's pixels (leave it out to read the whole page),
`mode` is `text` (the default: a word or a number) or `char`, `chars` what the field may
hold (`digits`, `uppercase`, `letters` or the characters themselves). Every page is one job:
it is sent once with its fields' boxes. JSON lines hold each field's whole result; CSV has a
column per field with its text, then `error_code` and `error_message` for a page the service
refused. A field left empty on the form reads as an empty cell (its result's error is
`blank_image`). Pages must be scanned at the template's size and position.
"""
from __future__ import annotations

import json
from pathlib import Path

from hwr.client import ApiError, Client, Field, JobFailed

FIELD_KEYS = {"box", "mode", "chars", "top_k"}


def load_template(path: Path) -> dict[str, Field]:
    """The template's fields by name, checked here so that a typo fails before any page is sent
    (ValueError saying what is wrong)."""
    try:
        template = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    fields = template.get("fields") if isinstance(template, dict) else None
    if not isinstance(fields, dict) or not fields:
        raise ValueError(f'{path}: expected {{"fields": {{"<name>": {{"box": [x, y, width, height], ...}}, ...}}}}')
    out = {}
    for name, spec in fields.items():
        if not isinstance(spec, dict) or set(spec) - FIELD_KEYS:
            raise ValueError(f"{path}: field {name!r} must be an object with some of {', '.join(sorted(FIELD_KEYS))}")
        box = spec.get("box")
        if box is not None and not (isinstance(box, list) and len(box) == 4 and all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in box) and box[2] and box[3]):
            raise ValueError(f"{path}: field {name!r}: box must be [x, y, width, height] in whole pixels")
        if spec.get("mode", "text") not in ("text", "char"):
            raise ValueError(f"{path}: field {name!r}: mode must be text or char")
        out[name] = Field(image=b"", mode=spec.get("mode", "text"), chars=spec.get("chars"),
                          top_k=spec.get("top_k"), box=tuple(box) if box else None)
    return out


def read_page(client: Client, page: str, fields: dict[str, Field], top_k: int, timeout: float) -> dict:
    """One page's row: {"file", "fields": {name: result}}, or {"file", "error"}; never raises."""
    try:
        data = Path(page).read_bytes()
        on_page = {name: Field(data, f.mode, f.chars, f.top_k, f.box) for name, f in fields.items()}
        return {"file": page, "fields": client.recognize_form(on_page, top_k=top_k, timeout=timeout)}
    except ApiError as exc:
        return {"file": page, "error": {"code": exc.code, "message": exc.message}}
    except JobFailed as exc:
        error = exc.job.get("error") or {}
        return {"file": page, "error": {"code": error.get("code", "job_failed"), "message": error.get("message", "")}}
    except Exception as exc:  # an unreadable file, the network gone: this page fails, the run goes on
        return {"file": page, "error": {"code": exc.__class__.__name__, "message": str(exc)}}


def csv_columns(fields: dict[str, Field]) -> tuple[str, ...]:
    return ("file", *fields, "error_code", "error_message")


def csv_row(row: dict, fields: dict[str, Field]) -> dict:
    error = row.get("error") or {}
    results = row.get("fields") or {}
    return {"file": row["file"], **{name: results.get(name, {}).get("text", "") for name in fields},
            "error_code": error.get("code", ""), "error_message": error.get("message", "")}
