"""Letter case as written: what `case=written` (worker/case.py) reads (python -m bench.case).

Composes lines of 1-4 words of 2-8 letters (as often as in English, bench.context), each
word lowercase, capitalized or in capitals, and draws each letter with a test (or
training) character of its class, sized and placed as handwriting has them: capitals and
b d f h k l at the cap height on the baseline, t and i a little lower, the other
lowercase letters at the writer's x-height (0.5-0.7 of the cap height), g j p q y hanging
below the baseline; each letter's size and seat vary a little, and every letter of a
line is its character's centre line drawn with the line's one pen (training.pen). Each line is cut and read
with the worker's own code (`plan_decoded`, the archive's model, `build_results` in text
mode) as the model's classes and as written, from the same probabilities, and scored
against the words as written:
- character accuracy, case counted (1 - CER, spaces left out), and with case ignored;
- of the letters EMNIST merges (c i j k l m o p s u v w x y z), read as their right class
  in lines cut into the right number of characters: the share given their right case.
`--capitals` writes every word in block capitals, as forms ask: what the feature may cost
where nothing is lowercase (capitals vary in size too, and wide ones such as M W stand no
taller). `--touching` sets the letters 0-0.12 cap heights into each other, so most touch.
The "ignoring case" figures are text mode's reading of such lines as a whole (cutting and
model); `--wide-sd` tries another width prior for wide characters (worker/segment.py).
Writes bench/results/case-<split>[-capitals][-touching][-wide-sd<sd>]-<date>.json.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bench.context import ENGLISH, label_of
from bench.fields import write_figures
from bench.words import edit_distance, on_paper
from training import data as emnist
from training.evaluate import ArchivedModel
from training.pen import centre_lines, paint_pen
from worker import case, recognize, segment

ROOT = Path(__file__).resolve().parent.parent
# A lowercase letter's top and bottom, in cap heights above the baseline ("x": x-height).
LOWER_SPANS = {**dict.fromkeys("bdfhkl", (1.0, 0.0)), "t": (0.85, 0.0), "i": (0.85, 0.0),
               **dict.fromkeys("gpqy", ("x", -0.4)), "j": (0.85, -0.4)}
SERVED_RULE = case.TALL_OVER_SHORT
PATTERNS = (("lower", 0.55), ("capitalized", 0.25), ("capitals", 0.2))


def written_word(rng: np.random.Generator, capitals: bool = False) -> str:
    weights = np.array(list(ENGLISH.values()))
    word = "".join(rng.choice(list(ENGLISH), int(rng.integers(2, 9)), p=weights / weights.sum()))
    pattern = "capitals" if capitals else rng.choice([p for p, _ in PATTERNS], p=[w for _, w in PATTERNS])
    return word.upper() if pattern == "capitals" else word.capitalize() if pattern == "capitalized" else word


def glyph(lines: np.ndarray, height: int, pen: int) -> np.ndarray:
    """A character's centre line (training.pen) drawn `height` pixels tall, white on black,
    with a round pen `pen` pixels wide: one pen for a line's small and large letters."""
    rows = np.nonzero(lines.any(axis=1))[0]
    side = max(8, round(height * lines.shape[0] / max(1, rows.max() - rows.min() + 1)))
    ink = 255 - paint_pen(lines, side, pen)
    ys, xs = np.nonzero(ink > 40)
    return ink[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def compose_line(words: list[str], split, by_class: list[np.ndarray], rng: np.random.Generator,
                 gaps: tuple[float, float] = (0.1, 0.35)) -> np.ndarray:
    """Words as written, one writer's line: dark ink on white paper. `gaps`: the range of the
    gaps between letters, cap heights (negative: neighbours overlap, so their strokes touch)."""
    cap = int(rng.integers(40, 90))
    x_height = rng.uniform(0.5, 0.7)
    pen = max(2, round(cap * rng.uniform(0.07, 0.12)))
    baseline = int(cap * 1.6)
    canvas = np.zeros((int(cap * 2.2), cap * 2 * sum(len(w) + 1 for w in words)), np.uint8)
    x = int(cap * 0.3)
    for w, word in enumerate(words):
        x += int(cap * rng.uniform(0.8, 1.1)) if w else 0
        for char in word:
            top, bottom = LOWER_SPANS.get(char, ("x", 0.0)) if char.islower() else (1.0, 0.0)
            top, bottom = (x_height if v == "x" else v for v in (top, bottom))
            size = np.exp(rng.normal(0, 0.07))
            height = max(4, round((top - bottom) * cap * size))
            seat = baseline - round(bottom * cap + rng.normal(0, 0.03) * cap)
            ink = glyph(centre_lines(split.images[[rng.choice(by_class[label_of(char)])]])[0], height, pen)
            seat = max(seat, ink.shape[0])
            height = ink.shape[0]
            canvas[seat - height:seat, x:x + ink.shape[1]] = np.maximum(canvas[seat - height:seat, x:x + ink.shape[1]], ink)
            x = max(0, x + ink.shape[1] + int(cap * rng.uniform(*gaps)))
    return on_paper(canvas[:, :x + int(cap * 0.3)])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archive", type=Path, default=ROOT / "serve" / "model-store" / "emnist.mar")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "emnist47")
    p.add_argument("--split", choices=("train", "test"), default="test")
    p.add_argument("--n", type=int, default=400, help="lines")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tall-over-short", type=float, default=case.TALL_OVER_SHORT,
                   help="a line's letters stand at two heights when the taller are this much taller")
    p.add_argument("--capitals", action="store_true", help="every word in block capitals")
    p.add_argument("--touching", action="store_true", help="letters set into each other, so most touch")
    p.add_argument("--wide-sd", type=float, default=segment.CHAR_WIDTH_SD[1],
                   help="the width prior's sd above the usual width, line heights (worker/segment.py)")
    args = p.parse_args(argv)
    case.TALL_OVER_SHORT = args.tall_over_short
    served_sd = segment.CHAR_WIDTH_SD
    segment.CHAR_WIDTH_SD = (served_sd[0], args.wide_sd)

    split = emnist.load_split(args.data, args.split)
    by_class = [np.nonzero(split.labels == c)[0] for c in range(len(split.classes))]
    model = ArchivedModel(args.archive)
    rng = np.random.default_rng([args.seed, args.capitals])
    tallies = {way: {"chars": 0, "errors": 0, "errors_ignoring_case": 0, "merged": 0, "merged_cased": 0}
               for way in ("classes", "as written")}
    for _ in range(args.n):
        words = [written_word(rng, args.capitals) for _ in range(int(rng.integers(1, 5)))]
        truth = "".join(words)
        gaps = (-0.12, 0.0) if args.touching else (0.1, 0.35)
        plan = recognize.plan_decoded(compose_line(words, split, by_class, rng, gaps), "text")
        probs = model.probabilities(np.stack(plan.tiles)) if plan.tiles else np.zeros((0, 47))
        for way, written in (("classes", False), ("as written", True)):
            [result] = recognize.build_results([plan], probs, [recognize.Reading(1, "", True, written)])
            text = result["text"].replace(" ", "").replace("\n", "")
            t = tallies[way]
            t["chars"] += len(truth)
            t["errors"] += edit_distance(text, truth)
            t["errors_ignoring_case"] += edit_distance(_classes(text), _classes(truth))
            if len(text) == len(truth):
                for got, want in zip(text, truth):
                    if want.upper() in case.MERGED and got.upper() == want.upper():
                        t["merged"] += 1
                        t["merged_cased"] += got == want
    figures = {"split": args.split, "lines": args.n, "capitals": args.capitals, "archive": str(args.archive),
               "tall_over_short": args.tall_over_short, "touching": args.touching, "wide_sd": args.wide_sd}
    for way, t in tallies.items():
        figures[way] = {"char_accuracy": round(1 - t["errors"] / t["chars"], 4),
                        "char_accuracy_ignoring_case": round(1 - t["errors_ignoring_case"] / t["chars"], 4),
                        "merged_letters_read": t["merged"],
                        "merged_letters_right_case": round(t["merged_cased"] / max(t["merged"], 1), 4)}
        print(f"{way:10s} {figures[way]}")
    write_figures(f"case-{args.split}" + ("-capitals" if args.capitals else "") + ("-touching" if args.touching else "")
                  + (f"-wide-sd{args.wide_sd}" if args.wide_sd != served_sd[1] else "")
                  + (f"-{args.tall_over_short}" if args.tall_over_short != SERVED_RULE else ""), figures)
    return figures


def _classes(text: str) -> str:
    """The text as EMNIST's classes: lowercase letters it merges as their capitals."""
    return "".join(c.upper() if c.upper() in case.MERGED else c for c in text)


if __name__ == "__main__":
    main()
