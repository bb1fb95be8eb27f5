"""Spaces between words: does text mode put them where the writer did? (python -m bench.spaces)

Composes lines of emnist47 characters, cuts each with the worker's own code
(`worker.recognize.plan_decoded`, text mode; no model is needed to place spaces) and scores
the spaces it finds against where the words were put:
- lines of 2-5 words of 2-8 characters by one writer: their letters stand a typical gap
  apart (0.1-0.35 letter heights; `--letter-gaps 0.03 0.12` for writers whose letters
  stand close, as in print), each gap varying around it by a factor of e^N(0, 0.4),
  and their spaces a width apart (each varying by e^N(0, 0.15)), for each width in
  SPACE_WIDTHS (letter heights: a typeset space is about 0.3 of a capital's height, a
  handwritten one 0.5-1); recall is the share of those spaces found;
- single words of 3-8 characters whose letters stand LETTER_GAPS[k] letter heights apart,
  each gap varying as above: any space found in one is a false one.
A found space is right when it falls between the two words' ink. `--split train` (the
default) is for choosing the rule; report `--split test`. `--rule` and `--close-rules`
try other rules (worker/segment.py). Prints both tables and writes
bench/results/spaces-<split>-gaps-<letter gaps>-<date>.json.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from bench.fields import write_figures
from bench.words import ink_columns, on_paper
from worker import recognize, segment

ROOT = Path(__file__).resolve().parent.parent
SPACE_WIDTHS = (0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5)
LETTER_GAPS = (0.1, 0.2, 0.3, 0.45)
# A line's writer's typical gap between letters, letter heights; how much each gap and
# space varies around the writer's own (the sd of its log).
LINE_LETTER_GAPS = (0.1, 0.35)
GAP_SPREAD, SPACE_SPREAD = 0.4, 0.15


def _ink_height(tile: np.ndarray) -> int:
    """The height of an upright white-on-black tile's ink (bench.words' threshold)."""
    rows = np.nonzero(tile.max(axis=1) > 40)[0]
    return int(rows.max() - rows.min() + 1) if len(rows) else tile.shape[0]


def compose_line(words: list[list[np.ndarray]], letter_gap: float, space: float,
                 rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Words of upright tiles -> a line (dark ink on white paper) and the x-spans of the gaps
    between its words. `letter_gap` and `space` are the writer's typical ones, in letter
    heights (the line's median ink height); each varies around them."""
    crops = [[(ink_columns(t), _ink_height(t)) for t in word] for word in words]
    height = float(np.median([h for word in crops for _, h in word]))
    scale = rng.uniform(1.5, 4.0)
    parts, spans, x = [np.zeros((28, 8), np.uint8)], [], 8
    for w, word in enumerate(crops):
        if w:
            gap = int(round(space * np.exp(rng.normal(0, SPACE_SPREAD)) * height))
            parts.append(np.zeros((28, gap), np.uint8))
            spans.append((x, x + gap))
            x += gap
        for i, (crop, _) in enumerate(word):
            if i:
                gap = max(1, int(round(letter_gap * np.exp(rng.normal(0, GAP_SPREAD)) * height)))
                parts.append(np.zeros((28, gap), np.uint8))
                x += gap
            parts.append(crop)
            x += crop.shape[1]
    parts.append(np.zeros((28, 8), np.uint8))
    line = np.pad(np.concatenate(parts, axis=1), ((6, 6), (0, 0)))
    line = cv2.resize(line, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    # Ink edges, not the gap's drawn columns: a letter's cropped columns end where its ink does.
    return on_paper(line), [(round(a * scale), round(b * scale)) for a, b in spans]


def found_spaces(gray: np.ndarray) -> list[float]:
    """The x of each space text mode finds: midway between the characters it falls between."""
    plan = recognize.plan_decoded(gray, "text")
    if plan.error:
        return []
    return [(prev[0] + prev[2] + box[0]) / 2 for prev, box, space in zip(plan.boxes, plan.boxes[1:], plan.spaces[1:])
            if space == " "]


def score_lines(split, space: float, letter_gaps: tuple[float, float], n: int, rng: np.random.Generator) -> dict:
    found = right = wanted = exact = 0
    for _ in range(n):
        words = [[split.images[i] for i in rng.integers(0, len(split.labels), int(rng.integers(2, 9)))]
                 for _ in range(int(rng.integers(2, 6)))]
        gray, spans = compose_line(words, rng.uniform(*letter_gaps), space, rng)
        xs = found_spaces(gray)
        hits = [any(a <= x <= b for a, b in spans) for x in xs]
        covered = sum(any(a <= x <= b for x in xs) for a, b in spans)
        found, right, wanted = found + len(xs), right + sum(hits), wanted + len(spans)
        exact += covered == len(spans) and all(hits)
    return {"recall": round(right / max(wanted, 1), 4), "precision": round(right / max(found, 1), 4),
            "lines_exact": round(exact / n, 4)}


def score_words(split, letter_gap: float, n: int, rng: np.random.Generator) -> dict:
    split_words = 0
    for _ in range(n):
        word = [split.images[i] for i in rng.integers(0, len(split.labels), int(rng.integers(3, 9)))]
        gray, _ = compose_line([word], letter_gap, 0.0, rng)
        split_words += bool(found_spaces(gray))
    return {"words_split": round(split_words / n, 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=300, help="lines (and single words) per row of each table")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", choices=("train", "test"), default="train")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "emnist47")
    p.add_argument("--rule", type=float, nargs=2, default=segment.SPACE_RULE, metavar=("HEIGHTS", "GAPS"),
                   help="a space is wider than this many letter heights and median letter gaps")
    p.add_argument("--close-rules", type=float, nargs="*", default=[f for r in segment.CLOSE_SPACE_RULES for f in r],
                   metavar="HEIGHTS GAPS", help="pairs of figures for lines of close letters (none: no such rule)")
    p.add_argument("--letter-gaps", type=float, nargs=2, default=LINE_LETTER_GAPS,
                   help="the range of lines' writers' typical gaps between letters, letter heights")
    args = p.parse_args()

    from training.data import load_split
    split = load_split(args.data, args.split)
    segment.SPACE_RULE = tuple(args.rule)
    segment.CLOSE_SPACE_RULES = tuple(zip(args.close_rules[::2], args.close_rules[1::2]))
    rule = (f"space when wider than {args.rule[0]} letter heights and {args.rule[1]} median letter gaps"
            + "".join(f", or {h} and {k} (lines of close letters)" for h, k in segment.CLOSE_SPACE_RULES))
    print(f"{args.split} split, {args.n} per row; {rule}")
    lines = {}
    for width in SPACE_WIDTHS:
        lines[str(width)] = score_lines(split, width, tuple(args.letter_gaps), args.n, np.random.default_rng([args.seed, int(width * 100)]))
        print(f"spaces {width:4} letter heights wide: {lines[str(width)]}")
    words = {}
    for gap in LETTER_GAPS:
        words[str(gap)] = score_words(split, gap, args.n, np.random.default_rng([args.seed, 7, int(gap * 100)]))
        print(f"single words, letters {gap:4} letter heights apart: {words[str(gap)]}")
    write_figures(f"spaces-{args.split}-gaps-{args.letter_gaps[0]}-{args.letter_gaps[1]}", {
        "split": args.split, "n": args.n, "seed": args.seed, "rule": rule,
        "space_rule": args.rule, "close_space_rules": segment.CLOSE_SPACE_RULES,
        "line_letter_gaps": args.letter_gaps, "gap_spread": GAP_SPREAD, "space_spread": SPACE_SPREAD, "lines_by_space_width": lines, "words_by_letter_gap": words})


if __name__ == "__main__":
    main()
