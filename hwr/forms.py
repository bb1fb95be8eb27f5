"""`hwr forms PAGES... --template form.json`: the fields of filled-in forms, a row per page.

The template names each field and says where it is on the page and what it holds:

    {"page": [1000, 700],
     "fields": {
        "date":    {"box": [120, 80, 400, 60], "mode": "text", "chars": "digits"},
        "surname": {"box": [120, 160, 600, 60], "chars": "letters"},
        "initial": {"box": [760, 160, 60, 60], "mode": "char", "chars": "uppercase"}}}

`box` is [x, y, width, height] in the page's pixels (leave it out to read the whole page),
`mode` is `text` (the default: a word or a number), `code` (a serial number or a code that
mixes letters and digits: each character read alone) or `char`, `chars` what the field may
hold (`digits`, `uppercase`, `letters` or the characters themselves), `case` `written` for
letters in the case they are written (a name: "Smith", not "SMiTH"). `page`, optional, is
the size of the page the boxes were measured on: each page's boxes are then scaled to its
own size, so scans at another resolution read the same fields. Every page is one job: it is
sent once with its fields' boxes. JSON lines hold each field's whole result; CSV has a
column per field with its text, then `review` (with --review-below C: the fields read with
less confidence than C, for a person to check), `error_code` and `error_message` for a page
the service refused. A field left empty on the form reads as an empty cell (its result's
error is `blank_image`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from hwr.client import CASES, MODES, Client, Field, error_of
from serve.formats import upright_size

FIELD_KEYS = {"box", "mode", "chars", "top_k", "case"}


@dataclass(frozen=True)
class Template:
    fields: dict[str, Field]
    page: tuple[int, int] | None = None  # the page size its boxes were measured on

    def on(self, data: bytes) -> dict[str, Field]:
        """The fields of one page (its bytes), boxes scaled to its size if the template says
        the size it was measured on."""
        if not self.page:
            return {name: replace(f, image=data) for name, f in self.fields.items()}
        size = upright_size(data)
        return {name: replace(f, image=data, box=_scaled(f.box, self.page, size) if f.box else None)
                for name, f in self.fields.items()}


def _scaled(box: tuple[int, ...], measured_on: tuple[int, int], size: tuple[int, int]) -> tuple[int, ...]:
    """`box`, measured on a page of size `measured_on`, on a page of `size`; inside it."""
    (sx, sy), (width, height) = (size[0] / measured_on[0], size[1] / measured_on[1]), size
    x, y = min(round(box[0] * sx), width - 1), min(round(box[1] * sy), height - 1)
    return x, y, max(1, min(round(box[2] * sx), width - x)), max(1, min(round(box[3] * sy), height - y))


def load_template(path: Path) -> Template:
    """The template, checked here so that a typo fails before any page is sent (ValueError
    saying what is wrong)."""
    try:
        template = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    fields = template.get("fields") if isinstance(template, dict) else None
    if not isinstance(fields, dict) or not fields:
        raise ValueError(f'{path}: expected {{"fields": {{"<name>": {{"box": [x, y, width, height], ...}}, ...}}}}')
    page = template.get("page")
    if page is not None and not (isinstance(page, list) and len(page) == 2
                                 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in page)):
        raise ValueError(f"{path}: page must be [width, height] in pixels, the size the boxes were measured on")
    out = {}
    for name, spec in fields.items():
        if not isinstance(spec, dict) or set(spec) - FIELD_KEYS:
            raise ValueError(f"{path}: field {name!r} must be an object with some of {', '.join(sorted(FIELD_KEYS))}")
        box = spec.get("box")
        if box is not None and not (isinstance(box, list) and len(box) == 4 and all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in box) and box[2] and box[3]):
            raise ValueError(f"{path}: field {name!r}: box must be [x, y, width, height] in whole pixels")
        if spec.get("mode", "text") not in MODES:
            raise ValueError(f"{path}: field {name!r}: mode must be text, code or char")
        if spec.get("case", "classes") not in CASES:
            raise ValueError(f"{path}: field {name!r}: case must be {' or '.join(CASES)}")
        out[name] = Field(image=b"", mode=spec.get("mode", "text"), chars=spec.get("chars"),
                          top_k=spec.get("top_k"), box=tuple(box) if box else None, case=spec.get("case"))
    return Template(out, tuple(page) if page else None)


def read_page(client: Client, page: str, template: Template, top_k: int, timeout: float) -> dict:
    """One page's row: {"file", "fields": {name: result}}, or {"file", "error"}; never raises."""
    try:
        data = Path(page).read_bytes()
        try:
            fields = template.on(data)
        except OSError:  # not an image Pillow reads: the service says what it is
            fields = {name: replace(f, image=data) for name, f in template.fields.items()}
        return {"file": page, "fields": client.recognize_form(fields, top_k=top_k, timeout=timeout)}
    except Exception as exc:  # refused, a failed job, an unreadable file: this page fails, the run goes on
        return {"file": page, "error": error_of(exc)}


def csv_columns(template: Template) -> tuple[str, ...]:
    return ("file", *template.fields, "review", "error_code", "error_message")


def to_review(row: dict, below: float | None) -> list[str]:
    """The fields read with less confidence than `below` (a blank field is not one of them)."""
    results = row.get("fields") or {}
    return [name for name, r in results.items() if below is not None and r.get("characters")
            and r.get("confidence", 0.0) < below]


def csv_row(row: dict, template: Template, review_below: float | None = None) -> dict:
    error = row.get("error") or {}
    results = row.get("fields") or {}
    return {"file": row["file"], **{name: results.get(name, {}).get("text", "") for name in template.fields},
            "review": " ".join(to_review(row, review_below)),
            "error_code": error.get("code", ""), "error_message": error.get("message", "")}
