"""Words vs characters: does text mode read words as well as the model reads their tiles?

`python -m bench.words --n 300` builds words of 3-8 emnist47 test tiles (black ink on
white, irregular gaps, random scale), runs them as text-mode jobs through real Redis,
TorchServe and a `python -m worker`, and scores character accuracy (1 - CER, by edit
distance) beside per-character accuracy of the same tiles sent to TorchServe directly.
Variants: `--touching` (overlapping letters), `--light` (lit unevenly), `--slant 20`
(leant 20 degrees), `--squared` (on squared paper), `--ruled` (on a ruled notebook
page), `--rotate 25` (turned 25 degrees), `--lines 5` (pages of 2-5 lines of 2-4 words,
one job each, scored without spaces and line breaks), `--desk-edges` (the desk along 1-3
edges of the photo), `--x-height` (lowercase letters sized as handwriting has them),
`--comb` (one letter per cell of a form's comb of boxes; scored without spaces),
`--canvas` (drawn on the web page's word pad: its pen, its size), `--line apart` or
`--line touching` (written on a form's printed line; `--askew`: the page photographed
turned a few degrees), `--tokens numbers` (words of digits only: numbers, which text
mode reads as numbers, worker/context.py) or `--tokens letters`. Prints both figures and writes
bench/results/words[-variant]-<date>.json.
"""
from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
from PIL import Image

from training.junk import ink_columns

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# Gaps between letters of touching words, tile pixels (high end exclusive).
TOUCHING = (-3, 2)


def on_paper(ink: np.ndarray) -> np.ndarray:
    """White-on-black ink as dark ink on white paper (gray uint8)."""
    return (255 - ink.astype(np.int16) * 0.85).clip(0, 255).astype(np.uint8)


def compose_word(tiles: list[np.ndarray], rng: np.random.Generator, height: int | None = None,
                 gaps: tuple[int, int] = (2, 14)) -> np.ndarray:
    """Upright white-on-black tiles -> one word image, dark ink on white paper (gray uint8).

    Each tile is cropped to its ink columns; gaps between letters are drawn from
    [gaps[0], gaps[1]) tile pixels: by default 1/12 to 1/2 of a tile, as in handwriting;
    a negative gap makes neighbours overlap, so their strokes touch or cross."""
    crops = [ink_columns(tile) for tile in tiles]
    lead = int(rng.integers(4, 12))
    canvas = np.zeros((28, lead + sum(c.shape[1] + max(gaps[1], 12) for c in crops)), np.uint8)
    x = lead
    for i, crop in enumerate(crops):
        x = max(x, 0)
        canvas[:, x:x + crop.shape[1]] = np.maximum(canvas[:, x:x + crop.shape[1]], crop)
        x += crop.shape[1] + (int(rng.integers(*gaps)) if i < len(crops) - 1 else int(rng.integers(4, 12)))
    word = np.pad(canvas[:, :x], ((6, 6), (0, 0)))
    scale = (height or int(rng.integers(40, 120))) / word.shape[0]
    return on_paper(cv2.resize(word, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC))


# Lowercase classes that handwriting writes at x-height, and those whose tails hang below
# the line. (EMNIST scales every letter to its tile: an e as tall as an E.)
X_HEIGHT, DESCENDERS = set("aenr"), set("gq")


def compose_handwritten_word(tiles: list[np.ndarray], chars: str, rng: np.random.Generator,
                             height: int | None = None) -> np.ndarray:
    """As `compose_word`, with the letters sized and placed as handwriting has them: a e n r
    at x-height (0.55 of a capital) on the baseline, g q from the x-height line down past
    it (0.95 of a capital), capitals, digits and b d f h t full height."""
    cap = height or int(rng.integers(40, 120))
    columns = [np.zeros((int(cap * 1.4), int(cap * rng.uniform(0.1, 0.3))), np.uint8)]
    for tile, char in zip(tiles, chars):
        crop = ink_columns(tile)
        size = 0.55 if char in X_HEIGHT else 0.95 if char in DESCENDERS else 1.0
        h = int(cap * size)
        glyph = cv2.resize(crop, (max(1, round(crop.shape[1] * h / 28)), h), interpolation=cv2.INTER_CUBIC)
        column = np.zeros((len(columns[0]), glyph.shape[1]), np.uint8)
        top = int(cap * 0.45) if size < 1 else 0
        column[top:top + h] = glyph
        columns += [column, np.zeros((len(column), int(cap * rng.uniform(0.07, 0.5))), np.uint8)]
    return on_paper(np.pad(np.concatenate(columns, axis=1), ((int(cap * 0.2), int(cap * 0.1)), (0, 0))))


def canvas_word(tiles: list[np.ndarray], rng: np.random.Generator, pen: int | None = None) -> np.ndarray:
    """A word drawn on the web page's word pad (web/static/app.js): 840 x 280 px, its pen
    20 px. Each letter is its tile's centre line redrawn with that pen, about as wide as
    the pad leaves it (the pad's height for a short word, smaller for a long one: the pen
    stays the same, so long words are drawn thicker), with gaps of 1/12 to 1/2 a letter."""
    from training.pen import centre_lines, draw_with_pen
    from training.scans import CANVAS_SIDE, CANVAS_WORD_PEN

    side = min(CANVAS_SIDE, int(3 * CANVAS_SIDE / (0.85 * len(tiles))))
    pen = pen or CANVAS_WORD_PEN
    letters = [255 - ink_columns(255 - draw_with_pen(lines, side, pen)) for lines in centre_lines(np.stack(tiles))]
    pad = np.full((CANVAS_SIDE, 3 * CANVAS_SIDE), 255, np.uint8)
    gaps = [int(rng.integers(side // 12, side // 2)) for _ in letters[1:]] + [0]
    width = sum(letter.shape[1] for letter in letters) + sum(gaps)
    if width + 40 > pad.shape[1]:  # wider than the pad: a user would have written smaller
        pad = np.full((CANVAS_SIDE, width + 40), 255, np.uint8)
    x, top = (pad.shape[1] - width) // 2, (CANVAS_SIDE - side) // 2
    for letter, gap in zip(letters, gaps):
        pad[top:top + side, x:x + letter.shape[1]] = letter
        x += letter.shape[1] + gap
    return pad


def comb_field(tiles: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """The letters written one per cell of a form's comb of boxes (cells 40-90 px wide,
    sharing their sides; lines 1-3 px, grey 60-160), each 55-105% of its cell, so that
    some touch or cross the lines."""
    cell = int(rng.integers(40, 90))
    height = int(cell * 1.25)
    page = np.full((height + 40, len(tiles) * cell + 40), 255, np.float32)
    for k, tile in enumerate(tiles):
        size = int(cell * rng.uniform(0.55, 1.05))
        ink = cv2.resize(tile, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255
        x = 20 + k * cell + (cell - size) // 2 + int(rng.integers(-3, 4))
        y = 20 + (height - size) // 2 + int(rng.integers(-3, 4))
        region = page[y:y + size, x:x + size]
        region[:] = region * (1 - ink) + 30 * ink
    level, thickness = float(rng.uniform(60, 160)), int(rng.integers(1, 4))
    cv2.rectangle(page, (20, 20), (20 + len(tiles) * cell, 20 + height), level, thickness)
    for k in range(1, len(tiles)):
        cv2.line(page, (20 + k * cell, 20), (20 + k * cell, 20 + height), level, thickness)
    return page.clip(0, 255).astype(np.uint8)


def shear(gray: np.ndarray, degrees: float) -> np.ndarray:
    """Dark-on-light writing leant by `degrees` (positive: its tops lean right), on a
    page widened to hold it."""
    k = float(np.tan(np.radians(degrees)))
    height, width = gray.shape
    matrix = np.float32([[1, -k, max(0.0, k * height)], [0, 1, 0]])
    return cv2.warpAffine(gray, matrix, (width + int(np.ceil(abs(k) * height)), height),
                          flags=cv2.INTER_LINEAR, borderValue=255)


def squared_paper(word: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The word written on squared paper: grey rules both ways, 1/5 to 1/2 of its height apart."""
    from training.scans import rule_squares

    page, height = word.copy(), word.shape[0]
    rule_squares(page, int(rng.integers(max(6, height // 5), max(7, height // 2))), 160, rng)
    return page


def rotate(gray: np.ndarray, degrees: float) -> np.ndarray:
    """Dark-on-light writing turned `degrees` counter-clockwise (a photo taken askew), on a
    page grown to hold it."""
    height, width = gray.shape
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    size = (int(height * sin + width * cos) + 1, int(height * cos + width * sin) + 1)
    matrix[:, 2] += (size[0] - width) / 2, (size[1] - height) / 2
    return cv2.warpAffine(gray, matrix, size, flags=cv2.INTER_LINEAR, borderValue=255)


def notebook_paper(word: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The word written on a ruled notebook page: grey rules 0.9-1.3 word heights apart, one
    under the letters (descenders cross it), and an upright margin line on the left."""
    height, width = word.shape
    step = int(height * rng.uniform(0.9, 1.3))
    page = np.full((height + 2 * step, width), 255, np.uint8)
    page[step:step + height] = word
    baseline = step + round(height * 32 / 40) + int(rng.integers(-2, 3))  # compose_word: 6 + 26 of 40 rows
    for y in range(baseline % step, page.shape[0] - 1, step):
        page[y:y + 2] = np.minimum(page[y:y + 2], int(rng.integers(120, 190)))
    margin = int(width * 0.04)
    page[:, margin:margin + 2] = np.minimum(page[:, margin:margin + 2], 150)
    return page


def on_a_line(word: np.ndarray, rng: np.random.Generator, touching: bool = False, askew: bool = False) -> np.ndarray:
    """The word written on a form's printed line (1-4 px, grey 30-130, the faintest broken
    into dashes by a scan's blur and noise), reaching 20-80% of a margin of 0.6 word
    heights past it on each side: 4-15% of its height under its lowest ink, or (`touching`)
    through its lowest strokes to 2% under them; `askew`: the whole page photographed
    turned 0.5-3.5 degrees either way."""
    height, width = word.shape
    pad = int(height * 0.6)
    page = np.full((height + 2 * pad, width + 2 * pad), 255, np.float32)
    page[pad:pad + height, pad:pad + width] = word
    rows = np.flatnonzero((word < 128).any(axis=1))
    bottom = pad + int(rows.max() if len(rows) else height - 1)
    y = bottom + int(height * (rng.uniform(-0.04, 0.02) if touching else rng.uniform(0.04, 0.15)))
    left, right = int(pad * rng.uniform(0.2, 0.8)), int(width + 2 * pad - pad * rng.uniform(0.2, 0.8))
    thickness = int(np.clip(height * rng.uniform(0.01, 0.04), 1, 4))
    cv2.line(page, (left, y), (right, y), float(rng.uniform(30, 130)), thickness)
    if askew:
        degrees = float(rng.uniform(0.5, 3.5) * rng.choice([-1, 1]))
        turn = cv2.getRotationMatrix2D((page.shape[1] / 2, page.shape[0] / 2), degrees, 1.0)
        page = cv2.warpAffine(page, turn, page.shape[::-1], flags=cv2.INTER_LINEAR, borderValue=255)
    page = cv2.GaussianBlur(page, (0, 0), float(rng.uniform(0.3, 1.0))) + rng.normal(0, 3.0, page.shape)
    return np.clip(page, 0, 255).astype(np.uint8)


def compose_paragraph(lines: list[list[list[np.ndarray]]], rng: np.random.Generator) -> np.ndarray:
    """Lines of words (each a list of upright tiles) -> one page, dark ink on white. One
    height per page; spaces of 0.8-1.5 and leading of 0.1-0.5 of it, lines left-aligned,
    margins of 0.2-0.6 of it above and to the right."""
    height = int(rng.integers(40, 90))
    rows = []
    for words in lines:
        parts = []
        for tiles in words:
            parts += [np.full((height, int(height * rng.uniform(0.8, 1.5))), 255, np.uint8),
                      compose_word(tiles, rng, height=height)]
        rows.append(np.concatenate(parts, axis=1))
    width = max(row.shape[1] for row in rows) + int(height * rng.uniform(0.2, 0.6))  # a margin to the right too
    page = [np.full((int(height * rng.uniform(0.2, 0.6)), width), 255, np.uint8)]
    for row in rows:
        page.append(np.pad(row, ((0, 0), (0, width - row.shape[1])), constant_values=255))
        page.append(np.full((int(height * rng.uniform(0.1, 0.5)), width), 255, np.uint8))
    return np.concatenate(page)


def png(gray: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(gray).save(buf, format="PNG")
    return buf.getvalue()


def edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=300, help="words")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", choices=("test", "train"), default="test",
                   help="letters from this split (train: for choosing settings without looking at the test)")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "emnist47")
    p.add_argument("--light", action="store_true",
                   help="light each word unevenly, as a phone photo (training.scans.uneven_light)")
    p.add_argument("--slant", type=float, default=0.0,
                   help="shear each word by this many degrees, as italic writing (positive leans right)")
    p.add_argument("--squared", action="store_true", help="write each word on squared paper (grey rules both ways)")
    p.add_argument("--ruled", action="store_true", help="write each word on a ruled notebook page with a margin line")
    p.add_argument("--line", choices=("apart", "touching"),
                   help="write each word on a form's printed line, under its letters or through their feet (on_a_line)")
    p.add_argument("--askew", action="store_true", help="with --line: the page photographed turned 0.5-3.5 degrees")
    p.add_argument("--rotate", type=float, default=0.0, help="turn each word this many degrees (a photo taken askew)")
    p.add_argument("--desk-edges", action="store_true",
                   help="photograph each sheet with the desk along 1-3 of its edges (training.scans.on_a_desk)")
    p.add_argument("--lines", type=int, default=0,
                   help="pages of 2 to this many lines of 2-4 words (of 3-8 letters) instead of single words")
    p.add_argument("--comb", action="store_true", help="write each word one letter per cell of a form's comb of boxes")
    p.add_argument("--canvas", action="store_true", help="draw each word on the web page's word pad, with its pen")
    p.add_argument("--canvas-pen", type=int, default=0, help="with --canvas: this pen width (px) instead of the page's")
    p.add_argument("--x-height", action="store_true",
                   help="lowercase letters at x-height, g and q descending, as handwriting has them")
    p.add_argument("--tokens", choices=("any", "numbers", "letters"), default="any",
                   help="words of any characters (as often as in the data), or of digits or letters only")
    p.add_argument("--touching", action="store_true",
                   help="letters overlap by up to 3 and part at most 1 tile pixel, so most touch (cursive-like)")
    args = p.parse_args()

    import redis

    from serve.preprocess import normalize_tiles
    from tests.fixtures.worker import launch_worker
    from tests.stack import RedisServer, TorchServe
    from training.data import load_split
    from training.scans import on_a_desk, uneven_light
    from worker.celery_app import make_celery
    from worker.config import WorkerConfig
    from worker.queue import submit_job, wait_for_job

    split = load_split(args.data, args.split)
    rng = np.random.default_rng(args.seed)

    pool = {"any": np.arange(len(split.labels)), "numbers": np.nonzero(split.labels < 10)[0],
            "letters": np.nonzero(split.labels >= 10)[0]}[args.tokens]

    def word() -> np.ndarray:
        return rng.choice(pool, size=int(rng.integers(3, 9)), replace=False)

    # Each sample is lines of words of letters (test-split indices): one word, or a page.
    if args.lines >= 2:
        samples = [[[word() for _ in range(int(rng.integers(2, 5)))] for _ in range(int(rng.integers(2, args.lines + 1)))]
                   for _ in range(args.n)]
    else:
        samples = [[[word()]] for _ in range(args.n)]
    words = [idx for sample in samples for line in sample for idx in line]
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        procs = []
        try:
            rs = RedisServer.create(state / "redis").start()
            procs.append(rs)
            ts = TorchServe.create(state / "ts").start()
            procs.append(ts)
            procs.append(launch_worker(state, rs.url, ts))
            config = WorkerConfig(redis_url=rs.url)
            celery, r = make_celery(config), redis.Redis.from_url(rs.url)

            # Per-character accuracy: the same tiles straight to TorchServe, through the
            # preprocessing an image of that tile gets (as training.evaluate measures).
            all_idx = np.concatenate(words)
            tiles = normalize_tiles(split.images[all_idx])
            answer = []
            for start in range(0, len(all_idx), 1024):  # the handler's per-request limit
                buf = io.BytesIO()
                np.save(buf, tiles[start:start + 1024])
                answer += httpx.post(f"{ts.url}/predictions/emnist", content=buf.getvalue(), timeout=120,
                                     headers={**ts.headers(), "X-Top-K": "1"}).json()["results"]
            tile_correct = sum(a["predictions"][0]["char"] == split.classes[split.labels[i]]
                               for a, i in zip(answer, all_idx))

            def run(sample):
                word_rng = np.random.default_rng(int(sample[0][0][0]))
                gaps = TOUCHING if args.touching else (2, 14)
                if args.lines >= 2:
                    word = compose_paragraph([[[split.images[i] for i in idx] for idx in line] for line in sample],
                                             word_rng)
                elif args.comb:
                    word = comb_field([split.images[i] for i in sample[0][0]], word_rng)
                elif args.canvas:
                    word = canvas_word([split.images[i] for i in sample[0][0]], word_rng, args.canvas_pen)
                elif args.x_height:
                    idx = sample[0][0]
                    word = compose_handwritten_word([split.images[i] for i in idx],
                                                    "".join(split.classes[split.labels[i]] for i in idx), word_rng)
                else:
                    word = compose_word([split.images[i] for i in sample[0][0]], rng=word_rng, gaps=gaps)
                if args.slant:
                    word = shear(word, args.slant)
                if args.squared:
                    word = squared_paper(word, word_rng)
                if args.ruled:
                    word = notebook_paper(word, word_rng)
                if args.line:
                    word = on_a_line(word, word_rng, touching=args.line == "touching", askew=args.askew)
                if args.rotate:
                    word = rotate(word, args.rotate)
                if args.light:
                    word = (word * uneven_light(word.shape, word_rng)).astype(np.uint8)
                if args.desk_edges:
                    word = on_a_desk(word.astype(np.float32), word_rng, all_around=False).astype(np.uint8)
                image = png(word)
                job = wait_for_job(r, submit_job(r, celery, config, [image], "text", 1), 120)
                return job["results"][0]["text"] if job and job["status"] == "succeeded" else None

            started = time.perf_counter()
            with ThreadPoolExecutor(16) as pool:
                texts = list(pool.map(run, samples))
            elapsed = time.perf_counter() - started
        finally:
            for proc in reversed(procs):
                proc.stop()
    truths = ["\n".join(" ".join("".join(split.classes[split.labels[i]] for i in idx) for idx in line)
                        for line in sample) for sample in samples]
    lines_right = sum((t or "").count("\n") == truth.count("\n") for t, truth in zip(texts, truths))
    spaced = sum(" " in (t or "") for t in texts)
    # A page's reading order and letters: its spaces and line breaks are counted apart. A
    # comb's letters stand a cell apart, and text mode puts a space where a gap is wide.
    if args.lines >= 2 or args.comb:
        texts = [None if t is None else "".join(t.split()) for t in texts]
        truths = ["".join(truth.split()) for truth in truths]
    errors = sum(edit_distance(t or "", truth) for t, truth in zip(texts, truths))
    n_chars = sum(len(t) for t in truths)
    figures = {
        "words": len(words), "pages": args.n if args.lines >= 2 else 0, "characters": n_chars,
        "line_count_match_rate": round(lines_right / args.n, 4), "with_spaces": spaced,
        "word_char_accuracy": round(1 - errors / n_chars, 4),
        "tile_char_accuracy": round(tile_correct / n_chars, 4),
        "length_match_rate": round(sum(len(t or "") == len(tr) for t, tr in zip(texts, truths)) / args.n, 4),
        "exact_word_rate": round(sum(t == tr for t, tr in zip(texts, truths)) / args.n, 4),
        "failed_jobs": sum(t is None for t in texts),
        "seconds": round(elapsed, 2),
        "examples": [{"truth": tr, "read": t} for t, tr in list(zip(texts, truths))[:10]],
    }
    figures["gap_points"] = round(100 * (figures["tile_char_accuracy"] - figures["word_char_accuracy"]), 2)
    print(f"text mode character accuracy (1 - CER): {figures['word_char_accuracy']:.4f}")
    print(f"per-tile character accuracy:            {figures['tile_char_accuracy']:.4f}")
    print(f"gap: {figures['gap_points']} points; words with the right length: {figures['length_match_rate']:.3f}")
    if args.lines >= 2:
        print(f"pages with the right number of lines: {figures['line_count_match_rate']:.3f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    kind = ("-lit" if args.light else "") + ("-touching" if args.touching else "")
    kind += (f"-slant{args.slant:g}" if args.slant else "") + ("-squared" if args.squared else "")
    kind += ("-ruled" if args.ruled else "") + (f"-rotated{args.rotate:g}" if args.rotate else "")
    kind += (f"-line-{args.line}" if args.line else "") + ("-askew" if args.askew else "")
    kind += (f"-lines{args.lines}" if args.lines >= 2 else "") + ("-desk-edges" if args.desk_edges else "")
    kind += ("-x-height" if args.x_height else "") + ("-comb" if args.comb else "")
    kind += f"-{args.tokens}" if args.tokens != "any" else ""
    kind += ("-train" if args.split == "train" else "") + ("-canvas" if args.canvas else "") + (f"-pen{args.canvas_pen}" if args.canvas_pen else "")
    out = RESULTS / f"words{kind}-{time.strftime('%Y%m%d')}.json"
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "light": args.light,
                               "touching": args.touching, "slant_degrees": args.slant,
                               "squared": args.squared, "ruled": args.ruled,
                               "rotate_degrees": args.rotate, "lines": args.lines, "line": args.line,
                               "askew": args.askew,
                               "desk_edges": args.desk_edges, "x_height": args.x_height, "comb": args.comb,
                               "canvas": args.canvas, "canvas_pen": args.canvas_pen, "split": args.split,
                               "tokens": args.tokens,
                               **figures}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
