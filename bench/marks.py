"""Dates and amounts with their marks: what naming . , - / in `chars` buys (python -m bench.marks).

Writes fields of three kinds from the emnist47 test split's digits, with pen-drawn marks
between them (each mark's angle, length, place and stroke drawn at random):
dates DD/MM/YY, amounts like 1234.50 or 12,80 (their field naming its separator, or
both), and numbers like 0412-337. Each field is
read the way the worker reads a text job (worker.recognize: the same segmentation, the
archive's model and preprocessing), twice: with `chars=digits` (as before marks could be
named; the right answer is then the digits alone) and with the field's marks named
(`0123456789/`, ...). Prints the share of fields read exactly, and writes
bench/results/marks-<date>.json.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from bench.fields import write_figures
from bench.words import compose_word, png
from training import data as emnist
from training.evaluate import ArchivedModel
from worker import charsets, recognize

ROOT = Path(__file__).resolve().parent.parent
KINDS = {"date DD/MM/YY": ("dd/dd/dd", "0123456789/"),
         "amount 1234.50": ("#.dd", "0123456789."),
         "amount 12,80": ("#,dd", "0123456789,"),
         "amount, either separator": ("#.dd", "0123456789.,"),
         "number 0412-337": ("dddd-ddd", "0123456789-")}


def mark_tile(mark: str, rng: np.random.Generator) -> np.ndarray:
    """A mark as an upright white-on-black 28x28 tile, in EMNIST's stroke width."""
    tile = np.zeros((28, 28), np.uint8)
    width = int(rng.integers(2, 4))
    if mark == "/":
        lean = np.radians(rng.uniform(28, 50))
        top, bottom = int(rng.integers(2, 5)), int(rng.integers(23, 26))
        run = (bottom - top) * np.tan(lean)
        cv2.line(tile, (int(14 - run / 2), bottom), (int(14 + run / 2), top), 255, width, cv2.LINE_AA)
    elif mark == "-":
        y, half = int(rng.integers(12, 17)), int(rng.integers(4, 7))
        cv2.line(tile, (14 - half, y), (14 + half, y + int(rng.integers(-1, 2))), 255, width, cv2.LINE_AA)
    elif mark == ".":
        cv2.circle(tile, (14, int(rng.integers(22, 25))), int(rng.integers(1, 3)), 255, -1, cv2.LINE_AA)
    elif mark == ",":
        x = 14 + int(rng.integers(-1, 2))  # a tail from the baseline down and to the left
        cv2.line(tile, (x, 22), (x - int(rng.integers(2, 5)), 28), 255, width, cv2.LINE_AA)
    return tile


def field(pattern: str, digits: dict[int, np.ndarray], rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """A field after `pattern` (d: a digit, #: one to four digits, else a mark): its text and image."""
    text, tiles = "", []
    for symbol in pattern:
        for _ in range(int(rng.integers(1, 5)) if symbol == "#" else 1):
            if symbol in "d#":
                digit = int(rng.integers(0, 10))
                text += str(digit)
                tiles.append(digits[digit][int(rng.integers(len(digits[digit])))])
            else:
                text += symbol
                tiles.append(mark_tile(symbol, rng))
    return text, compose_word(tiles, rng, height=int(rng.integers(48, 100)), gaps=(3, 10))


def read(model: ArchivedModel, image: bytes, chars: str) -> str:
    plan = recognize.plan_image(image, "text", 10**8, charsets.marks_of(chars))
    if plan.error:
        return ""
    probs = model.probabilities(np.stack(plan.tiles)) if plan.tiles else np.zeros((0, len(model.classes)))
    return recognize.build_results([plan], probs, [recognize.Reading(1, charsets.classes_of(chars), True)])[0]["text"]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archive", type=Path, default=ROOT / "serve" / "model-store" / "emnist.mar")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "emnist47")
    p.add_argument("--n", type=int, default=300, help="fields of each kind")
    args = p.parse_args(argv)

    test = emnist.load_split(args.data, "test")
    digits = {d: test.images[test.labels == list(test.classes).index(str(d))] for d in range(10)}
    model = ArchivedModel(args.archive)
    rng = np.random.default_rng(0)
    figures = {"archive": str(args.archive), "n_per_kind": args.n, "kinds": {}}
    for kind, (pattern, chars) in KINDS.items():
        exact = {"digits": 0, "marks": 0}
        for _ in range(args.n):
            text, image = field(pattern, digits, rng)
            data = png(image)
            exact["digits"] += read(model, data, charsets.NAMED["digits"]).replace(" ", "") == "".join(
                filter(str.isdigit, text))
            exact["marks"] += read(model, data, charsets.parse_chars(chars)).replace(" ", "") == text
        row = {"chars": chars, "exact_digits_only": round(exact["digits"] / args.n, 4),
               "exact_with_marks": round(exact["marks"] / args.n, 4)}
        figures["kinds"][kind] = row
        print(f"{kind:18s} chars=digits: {row['exact_digits_only']:.1%} of fields exact (digits alone)   "
              f"chars={chars}: {row['exact_with_marks']:.1%} exact (marks included)")
    write_figures("marks", figures)
    return figures


if __name__ == "__main__":
    main()
