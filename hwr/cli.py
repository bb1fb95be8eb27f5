"""`hwr recognize FILES...`: recognize many images through the API, results in input order.
`hwr forms PAGES... --template T.json`: read the fields of filled-in forms, a row per page.

    hwr recognize scans/*.png --mode char --out results.jsonl --concurrency 8
    hwr recognize line.jpg --mode text --url http://host:8000 --api-key KEY
    hwr forms scans/*.jpg --template form.json --out forms.csv

Files go in batches (one job per batch), several batches in flight at once. A batch the
API refuses as a whole (422: one file is not an image) is retried file by file, so every
file still gets its line: a result, or an `error` saying why. Rate limits (429, honouring
Retry-After) and 503 are retried with backoff by the client. Exit status 1 if any file
failed. Environment: HWR_URL and HWR_API_KEY are the defaults of --url and --api-key.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import IO, Callable

from tqdm import tqdm

from hwr import forms
from hwr.client import CASES, MODES, ApiError, Client, error_of

CSV_FIELDS = ("file", "text", "confidence", "error_code", "error_message")


def error_row(path: str, code: str, message: str) -> dict:
    return {"file": path, "text": "", "confidence": None, "characters": [],
            "error": {"code": code, "message": message}}


def recognize_batch(client: Client, paths: list[str], mode: str, top_k: int, timeout: float,
                    chars: str | None = None, case: str | None = None) -> list[dict]:
    """Rows for these files, in order; never raises for one bad file."""
    try:
        results = client.recognize(paths, mode=mode, top_k=top_k, timeout=timeout, chars=chars, case=case)
        return [{"file": p, **r} for p, r in zip(paths, results)]
    except ApiError as exc:
        if exc.status == 422 and len(paths) > 1:  # find the culprit; the others still get results
            return [row for p in paths for row in recognize_batch(client, [p], mode, top_k, timeout, chars, case)]
        return [error_row(p, **error_of(exc)) for p in paths]
    except Exception as exc:  # a failed job, an unreadable file, the network gone: that batch fails, the run goes on
        return [error_row(p, **error_of(exc)) for p in paths]


def csv_row(row: dict) -> dict:
    error = row.get("error") or {}
    return {"file": row["file"], "text": row.get("text", ""), "confidence": row.get("confidence"),
            "error_code": error.get("code", ""), "error_message": error.get("message", "")}


class OrderedWriter:
    """Writes rows in input order as soon as every earlier row is there: JSON lines, or CSV
    with `columns`, each row made by `to_csv`."""

    def __init__(self, out: IO[str], fmt: str, columns: tuple[str, ...] = CSV_FIELDS,
                 to_csv: Callable[[dict], dict] = csv_row):
        self.out, self.fmt, self.to_csv = out, fmt, to_csv
        self.pending: dict[int, dict] = {}
        self.next = 0
        self.lock = threading.Lock()
        self.failed = 0
        self.csv = csv.DictWriter(out, columns) if fmt == "csv" else None
        if self.csv:
            self.csv.writeheader()

    def add(self, index: int, rows: list[dict]) -> None:
        with self.lock:
            for offset, row in enumerate(rows):
                self.pending[index + offset] = row
            while self.next in self.pending:
                self._write(self.pending.pop(self.next))
                self.next += 1
            self.out.flush()

    def _write(self, row: dict) -> None:
        self.failed += bool(row.get("error"))
        if self.csv:
            self.csv.writerow(self.to_csv(row))
        else:
            self.out.write(json.dumps(row, ensure_ascii=False) + "\n")


def run_in_order(args: argparse.Namespace, n_files: int, batches: list[tuple[int, list[str]]],
                 work: Callable[[Client, list[str]], list[dict]], columns: tuple[str, ...] = CSV_FIELDS,
                 to_csv: Callable[[dict], dict] = csv_row) -> int:
    """Run `work` on every batch, `args.concurrency` at once, and write its rows in input order."""
    fmt = "csv" if args.out and args.out.suffix.lower() == ".csv" else "jsonl"
    out = open(args.out, "w", newline="", encoding="utf-8") if args.out else sys.stdout
    writer = OrderedWriter(out, fmt, columns, to_csv)
    try:
        with Client(args.url, args.api_key) as client, \
                tqdm(total=n_files, unit="file", disable=args.quiet, file=sys.stderr) as progress, \
                ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            futures = {pool.submit(work, client, paths): (i, paths) for i, paths in batches}
            for future in as_completed(futures):
                index, paths = futures[future]
                writer.add(index, future.result())
                progress.update(len(paths))
    finally:
        if args.out:
            out.close()
    if writer.failed:
        print(f"{writer.failed} of {n_files} files failed", file=sys.stderr)
    return 1 if writer.failed else 0


def run_recognize(args: argparse.Namespace) -> int:
    files = [str(f) for f in args.files]
    batches = [(i, files[i:i + args.batch_size]) for i in range(0, len(files), args.batch_size)]
    return run_in_order(args, len(files), batches, lambda client, paths: recognize_batch(
        client, paths, args.mode, args.top_k, args.timeout, args.chars, args.case))


def run_forms(args: argparse.Namespace) -> int:
    try:
        template = forms.load_template(args.template)
    except (OSError, ValueError) as exc:
        print(f"hwr forms: {exc}", file=sys.stderr)
        return 2
    pages = [str(f) for f in args.files]

    def read(client: Client, paths: list[str]) -> list[dict]:
        row = forms.read_page(client, paths[0], template, args.top_k, args.timeout)
        if args.review_below is not None and "fields" in row:
            row["review"] = forms.to_review(row, args.review_below)
        return [row]

    return run_in_order(args, len(pages), [(i, [page]) for i, page in enumerate(pages)], read,
                        forms.csv_columns(template), lambda row: forms.csv_row(row, template, args.review_below))


def positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def add_common_options(sub: argparse.ArgumentParser, unit: str) -> None:
    sub.add_argument("--url", default=os.environ.get("HWR_URL", "http://127.0.0.1:8000"),
                     help="API base URL (default: $HWR_URL or http://127.0.0.1:8000)")
    sub.add_argument("--api-key", default=os.environ.get("HWR_API_KEY") or None,
                     help="API key (default: $HWR_API_KEY)")
    sub.add_argument("--out", type=Path, help="output file, .jsonl or .csv (default: JSON lines on stdout)")
    sub.add_argument("--concurrency", type=positive, default=4, help=f"{unit} in flight (default: 4)")
    sub.add_argument("--timeout", type=float, default=300, help="seconds to wait for each job (default: 300)")
    sub.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hwr", description="Handwriting recognition client")
    commands = parser.add_subparsers(dest="command", required=True)
    rec = commands.add_parser("recognize", help="recognize image files", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    rec.add_argument("files", nargs="+", type=Path, help="image files (PNG, JPEG, ...)")
    rec.add_argument("--mode", choices=MODES, default="char",
                     help="char: one character per image; text: a line of text; code: a line read "
                          "character by character, such as a serial number (default: char)")
    rec.add_argument("--top-k", type=int, default=5, choices=range(1, 48), metavar="1..47",
                     help="alternatives per character (default: 5)")
    rec.add_argument("--chars", help="the characters the images may hold: digits, uppercase, letters, "
                                     "or the characters themselves, such as 0123456789ABCDEF (default: all)")
    rec.add_argument("--case", choices=CASES, default="classes",
                     help="classes: letters as EMNIST's 47 classes (c i j k l m o p s u v w x y z as "
                          "capitals); written: in the case they are written, in text and code mode (default: classes)")
    rec.add_argument("--batch-size", type=positive, default=8, help="files per job (default: 8)")
    add_common_options(rec, "requests")
    rec.set_defaults(run=run_recognize)

    form = commands.add_parser("forms", help="read the fields of filled-in forms, a row per page",
                               description=forms.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    form.add_argument("files", nargs="+", type=Path, help="scanned or photographed pages (PNG, JPEG, ...)")
    form.add_argument("--template", type=Path, required=True,
                      help="JSON: each field's box [x, y, width, height] on the page, and its mode and chars")
    form.add_argument("--top-k", type=int, default=5, choices=range(1, 48), metavar="1..47",
                      help="alternatives per character, in JSON lines (default: 5)")
    form.add_argument("--review-below", type=float, metavar="CONFIDENCE",
                      help="list the fields of each page read with less confidence than this (0-1) in a "
                           "`review` column (JSON lines: a `review` list), for a person to check")
    add_common_options(form, "pages")
    form.set_defaults(run=run_forms)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
