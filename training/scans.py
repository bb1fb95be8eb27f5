"""Scans and drawings vs tiles: does the handler read real scans, and characters drawn on
the web page's canvas, as well as EMNIST tiles?

`python -m training.scans --n 2000` renders each emnist47 test image two ways and scores
them and the raw tiles through the archived handler's preprocessing and model:
- as a scan: black ink on white paper, random scale 40-220 px, random position and
  margins, light blur, some JPEG;
- as a drawing on the web page's canvas: the character's centre line (training.pen)
  drawn with its 18 px round pen on 280 x 280 px, anti-aliased.
Prints all three and writes bench/results/scans-<date>.json.
"""
from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from training import data as emnist
from training.evaluate import DEFAULT_ARCHIVE, ArchivedModel, accuracy_figures
from training.pen import centre_lines, draw_with_pen

ROOT = Path(__file__).resolve().parent.parent
CANVAS_SIDE, CANVAS_PEN = 280, 18  # web/templates/index.html and web/static/app.js


def render_scan(tile: np.ndarray, rng: np.random.Generator, jpeg: bool | None = None) -> bytes:
    """One upright EMNIST tile as an encoded scan of dark ink on light paper."""
    size = int(rng.integers(40, 221))
    ink = cv2.resize(tile, (size, size), interpolation=cv2.INTER_CUBIC)
    margins = rng.integers(size // 8, size, size=4)  # top, bottom, left, right
    h, w = size + margins[0] + margins[1], size + margins[2] + margins[3]
    paper_level = float(rng.uniform(215, 250))
    ink_level = float(rng.uniform(10, 70))
    page = np.full((h, w), paper_level, np.float32)
    region = page[margins[0]:margins[0] + size, margins[2]:margins[2] + size]
    alpha = ink.astype(np.float32) / 255.0
    region[:] = region * (1 - alpha) + ink_level * alpha
    page = cv2.GaussianBlur(page, (0, 0), float(rng.uniform(0.3, 1.2)))
    page += rng.normal(0, 3.0, page.shape)  # paper grain and sensor noise
    page = np.clip(page, 0, 255).astype(np.uint8)
    if jpeg is None:
        jpeg = rng.random() < 0.5
    buf = io.BytesIO()
    if jpeg:
        Image.fromarray(page).convert("RGB").save(buf, format="JPEG", quality=int(rng.integers(55, 90)))
    else:
        Image.fromarray(page).save(buf, format="PNG")
    return buf.getvalue()


def compare(archive: Path, data_dir: Path, n: int, seed: int = 0) -> dict:
    test = emnist.load_split(data_dir, "test")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(test.images), size=min(n, len(test.images)), replace=False)
    tiles, labels = test.images[pick], test.labels[pick]
    model = ArchivedModel(archive)
    started = time.time()
    tile_pred = model.classify_images(list(tiles)).argmax(1)
    scans = [model.preprocess.decode_image(render_scan(t, rng)) for t in tiles]
    scan_pred = model.classify_images(scans).argmax(1)
    drawings = [draw_with_pen(lines, CANVAS_SIDE, CANVAS_PEN) for lines in centre_lines(tiles)]
    drawn_pred = model.classify_images(drawings).argmax(1)
    tiles_fig, scans_fig = accuracy_figures(tile_pred, labels), accuracy_figures(scan_pred, labels)
    drawn_fig = accuracy_figures(drawn_pred, labels)
    return {"n": int(len(labels)), "tiles": tiles_fig, "scans": scans_fig, "canvas_drawings": drawn_fig,
            "accuracy_gap_points": round(100 * (tiles_fig["accuracy"] - scans_fig["accuracy"]), 2),
            "drawing_gap_points": round(100 * (tiles_fig["accuracy"] - drawn_fig["accuracy"]), 2),
            "seconds": round(time.time() - started, 1), "seed": seed, "archive": str(archive)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "emnist47")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args(argv)
    result = compare(args.archive, args.data, args.n, args.seed)
    print(f"n={result['n']}  tiles: acc {result['tiles']['accuracy']:.4f} bal {result['tiles']['balanced_accuracy']:.4f}"
          f"  scans: acc {result['scans']['accuracy']:.4f} bal {result['scans']['balanced_accuracy']:.4f}"
          f"  gap {result['accuracy_gap_points']} points")
    print(f"canvas drawings: acc {result['canvas_drawings']['accuracy']:.4f} "
          f"bal {result['canvas_drawings']['balanced_accuracy']:.4f}  gap {result['drawing_gap_points']} points")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"scans-{time.strftime('%Y-%m-%d')}.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
