"""Scans and drawings vs tiles: does the handler read real scans, and characters drawn on
the web page's canvas, as well as EMNIST tiles?

`python -m training.scans --n 2000` renders each emnist47 test image two ways and scores
them and the raw tiles through the archived handler's preprocessing and model:
- as a scan: black ink on white paper, random scale 40-220 px, random position and
  margins, light blur, some JPEG;
- as a drawing on the web page's canvas: the character's centre line (training.pen)
  drawn with its 18 px round pen on 280 x 280 px, anti-aliased;
- as a phone photo: a scan lit unevenly (a gradient, a vignette or a shadow's edge);
- as a form's field: a scan inside a printed box, or in a box the character touches;
- on squared paper;
- as a photo of the sheet with the desk all around it, or along 1-3 of its edges, or of
  the sheet lying turned on the desk, framed on it or with the desk all around it.
Prints every figure and writes bench/results/scans-<date>.json.
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
CANVAS_SIDE, CANVAS_PEN = 280, 28  # web/templates/index.html and web/static/app.js
CANVAS_WORD_PEN = 20  # the page's word pad (bench.words --canvas)


def uneven_light(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """How a phone or a desk lamp lights a page: a gradient, a vignette or the soft edge of
    a shadow, the paper falling to 45-75% of its brightness where it is darkest."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    depth = float(rng.uniform(0.25, 0.55))
    kind = int(rng.integers(3))
    if kind == 0:
        angle = rng.uniform(0, 2 * np.pi)
        ramp = np.cos(angle) * xx / w + np.sin(angle) * yy / h
        return 1 - depth * (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    if kind == 1:
        cx, cy = rng.uniform(0.3, 0.7, size=2)
        distance = np.hypot(xx / w - cx, yy / h - cy) / np.hypot(max(cx, 1 - cx), max(cy, 1 - cy))
        return 1 - depth * distance ** 2
    edge = float(rng.uniform(0.2, 0.8)) * w
    shade = np.where(xx > edge, 1 - depth, 1.0).astype(np.float32)
    return cv2.GaussianBlur(shade, (0, 0), max(1.0, 0.02 * w))


def rule_squares(page: np.ndarray, step: int, level: float, rng: np.random.Generator) -> None:
    """Squared paper's rules on `page`, in place: grey lines of `level` both ways, `step` px
    apart from random offsets, under what is drawn (the darker of the two wins)."""
    across, down = (slice(int(rng.integers(step)), None, step) for _ in range(2))
    page[:, across] = np.minimum(page[:, across], level)
    page[down, :] = np.minimum(page[down, :], level)


def on_a_desk(page: np.ndarray, rng: np.random.Generator, all_around: bool = True, far: bool = False) -> np.ndarray:
    """The sheet `page` photographed on a darker desk (grey 20-110): all around it (10-40% of
    the sheet's size on each side; `far`: 60-160%, from afar, the sheet 6-21% of the photo),
    or along 1-3 of its edges (5-30%)."""
    h, w = page.shape
    if far:
        share = rng.uniform(0.6, 1.6, size=4)
    elif all_around:
        share = rng.uniform(0.1, 0.4, size=4)
    else:
        sides = rng.choice(4, int(rng.integers(1, 4)), replace=False)
        share = rng.uniform(0.05, 0.3, size=4) * np.isin(np.arange(4), sides)
    around = (np.array([h, h, w, w]) * share).astype(int)  # top, bottom, left, right
    desk = float(rng.uniform(20, 110))
    photo = np.full((h + around[0] + around[1], w + around[2] + around[3]), desk, np.float32)
    photo[around[0]:around[0] + h, around[2]:around[2] + w] = page
    return photo


def turned_on_a_desk(page: np.ndarray, rng: np.random.Generator, framed: bool = True) -> np.ndarray:
    """The sheet `page` lying turned 4-12 degrees either way on a darker desk (grey 20-110),
    photographed framed on it (a wedge of desk in each corner), or not (`framed` False: the
    desk all around the sheet)."""
    h, w = page.shape
    desk = float(rng.uniform(20, 110))
    photo = np.full((2 * h, 2 * w), desk, np.float32)
    photo[h // 2:h // 2 + h, w // 2:w // 2 + w] = page
    turn = cv2.getRotationMatrix2D((w, h), float(rng.uniform(4, 12) * rng.choice([-1, 1])), 1.0)
    photo = cv2.warpAffine(photo, turn, (2 * w, 2 * h), borderValue=desk)
    return photo[h // 2:h // 2 + h, w // 2:w // 2 + w] if framed else photo[h // 4:-(h // 4), w // 4:-(w // 4)]


def under_line(page: np.ndarray, ink: np.ndarray, margins: np.ndarray, size: int,
               rng: np.random.Generator, comb: bool = False) -> None:
    """A line (1-4 px, grey to black) under the character's ink on `page`, touching or
    crossing its lowest strokes or 4-15% of its size below them, reaching a sixth to a third
    of its size past its box on each side, or, one time in three, across the whole page;
    with `comb`, a comb's cell: reaching 5-20% past, a tick 15-35% of its size tall on each
    end."""
    rows = np.flatnonzero(ink.max(axis=1) > 60)
    bottom = int(margins[0] + (rows.max() if len(rows) else size))
    y = bottom + int(size * (rng.uniform(-0.04, 0.02) if rng.random() < 0.5 else rng.uniform(0.04, 0.15)))
    if comb:
        left = int(margins[2] - size * rng.uniform(0.05, 0.2))
        right = int(margins[2] + size + size * rng.uniform(0.05, 0.2))
    elif rng.random() < 1 / 3:
        left, right = 0, page.shape[1] - 1
    else:
        left = int(margins[2] - size * rng.uniform(1 / 6, 1 / 3))
        right = int(margins[2] + size + size * rng.uniform(1 / 6, 1 / 3))
    thickness, level = int(np.clip(size * rng.uniform(0.01, 0.04), 1, 4)), float(rng.uniform(30, 130))
    cv2.line(page, (left, y), (right, y), level, thickness)
    if comb:
        tick = int(size * rng.uniform(0.15, 0.35))
        for x in (left, right):
            cv2.line(page, (x, y), (x, y - tick), level, thickness)


def render_scan(tile: np.ndarray, rng: np.random.Generator, jpeg: bool | None = None,
                light: bool = False, box: bool = False, tight_box: bool = False, squared: bool = False,
                desk: bool = False, desk_edges: bool = False, turned: bool = False,
                turned_whole: bool = False, desk_far: bool = False, underlined: bool = False,
                comb: bool = False, dotted_box: bool = False) -> bytes:
    """One upright EMNIST tile as an encoded scan of dark ink on light paper; with `light`,
    lit unevenly, as a phone photo; with `box`, inside a printed box, as on a form; with
    `tight_box`, in a box the character touches or crosses (each side 8% of the character
    inside to 2% outside its ink); with `squared`, on squared paper (grey rules both ways,
    a fifth to a third of the character apart); with `desk`, the sheet photographed with a
    darker desk all around it; with `desk_edges`, with the desk along 1-3 of its edges;
    with `turned`, lying turned on the desk, framed on the sheet; with `turned_whole`, lying
    turned on the desk with the desk all around it; with `desk_far`, photographed from afar,
    a small sheet amid the desk; with `underlined`, written on a line (a form's slot), which
    half the characters touch or cross; with `comb`, in a comb's cell (|_|), alike; with
    `dotted_box`, inside a dotted or dashed printed box."""
    size = int(rng.integers(40, 221))
    ink = cv2.resize(tile, (size, size), interpolation=cv2.INTER_CUBIC)
    margins = rng.integers(size // 8, size, size=4)  # top, bottom, left, right
    h, w = size + margins[0] + margins[1], size + margins[2] + margins[3]
    paper_level = float(rng.uniform(215, 250))
    ink_level = float(rng.uniform(10, 70))
    page = np.full((h, w), paper_level, np.float32)
    if squared:
        step, level = int(max(4, size * rng.uniform(0.2, 0.34))), float(rng.uniform(90, 170))
        rule_squares(page, step, level, rng)
    region = page[margins[0]:margins[0] + size, margins[2]:margins[2] + size]
    alpha = ink.astype(np.float32) / 255.0
    region[:] = region * (1 - alpha) + ink_level * alpha
    if underlined or comb:
        under_line(page, ink, margins, size, rng, comb=comb)
    if box or dotted_box:  # the form's box lies in the margin, 1-3 px wide, grey to black
        gaps = (margins * rng.uniform(0.3, 0.8, size=4)).astype(int)
        corners = (int(gaps[2]), int(gaps[0])), (w - 1 - int(gaps[3]), h - 1 - int(gaps[1]))
        level, thickness = float(rng.uniform(30, 130)), int(rng.integers(1, 4))
        if box:
            cv2.rectangle(page, *corners, level, thickness)
        else:  # dashes and gaps of 2-6% of the character's size each
            outline = np.zeros(page.shape, np.uint8)
            cv2.rectangle(outline, *corners, 1, thickness)
            dash = max(2, int(size * rng.uniform(0.02, 0.06)))
            across, down = np.meshgrid(np.arange(w), np.arange(h))
            outline &= ((across + down) // dash % 2 == 0).astype(np.uint8)
            page[outline > 0] = np.minimum(page[outline > 0], level)
    if tight_box:
        ys, xs = np.nonzero(ink > 60)
        if len(ys):
            inset = (rng.uniform(-0.02, 0.08, size=4) * size).astype(int)  # top, bottom, left, right
            corners = ((int(margins[2] + xs.min() + inset[2]), int(margins[0] + ys.min() + inset[0])),
                       (int(margins[2] + xs.max() - inset[3]), int(margins[0] + ys.max() - inset[1])))
            cv2.rectangle(page, *corners, float(rng.uniform(30, 130)), int(rng.integers(1, 4)))
    if light:
        page *= uneven_light(page.shape, rng)
    if desk or desk_edges or desk_far:
        page = on_a_desk(page, rng, all_around=not desk_edges, far=desk_far)
    if turned or turned_whole:
        page = turned_on_a_desk(page, rng, framed=turned)
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

    def rendered(offset: int, **kind) -> dict:
        """Figures for the tiles rendered as `kind`, from a seed of its own (seed + offset),
        so a kind added later leaves the earlier kinds' renders as they were."""
        kind_rng = np.random.default_rng(seed + offset)
        images = [model.preprocess.decode_image(render_scan(t, kind_rng, **kind)) for t in tiles]
        return accuracy_figures(model.classify_images(images).argmax(1), labels)

    tiles_fig, scans_fig = accuracy_figures(tile_pred, labels), accuracy_figures(scan_pred, labels)
    drawn_fig = accuracy_figures(drawn_pred, labels)

    def gap(fig: dict) -> float:  # points below the raw tiles
        return round(100 * (tiles_fig["accuracy"] - fig["accuracy"]), 2)

    result = {"n": int(len(labels)), "tiles": tiles_fig, "scans": scans_fig, "canvas_drawings": drawn_fig,
              "accuracy_gap_points": gap(scans_fig), "drawing_gap_points": gap(drawn_fig)}
    for _, figures, gap_points, offset, kind in KINDS:
        result[figures] = rendered(offset, **{kind: True})
        result[gap_points] = gap(result[figures])
    return {**result, "seconds": round(time.time() - started, 1), "seed": seed, "archive": str(archive)}


# The kinds of paper and photo `compare` renders the tiles as: (label, figures in the
# result, their gap, the offset of the kind's seed, render_scan's keyword for it).
KINDS = (
    ("unevenly lit photos", "unevenly_lit_photos", "photo_gap_points", 1, "light"),
    ("scans in a form's box", "boxed_scans", "boxed_gap_points", 2, "box"),
    ("scans in a box they touch", "touching_box_scans", "touching_box_gap_points", 3, "tight_box"),
    ("scans on squared paper", "squared_paper_scans", "squared_gap_points", 4, "squared"),
    ("sheets photographed on a desk", "desk_photos", "desk_gap_points", 5, "desk"),
    ("sheets with the desk along 1-3 edges", "desk_edge_photos", "desk_edges_gap_points", 6, "desk_edges"),
    ("sheets turned on a desk, framed on the sheet", "turned_sheet_photos", "turned_sheet_gap_points", 7, "turned"),
    ("sheets turned on a desk, the desk all around", "turned_whole_sheet_photos", "turned_whole_sheet_gap_points",
     8, "turned_whole"),
    ("small sheets photographed from afar", "small_sheet_photos", "small_sheet_gap_points", 9, "desk_far"),
    ("scans written on a line", "underlined_scans", "underlined_gap_points", 10, "underlined"),
    ("scans in a comb's cell", "comb_cell_scans", "comb_cell_gap_points", 11, "comb"),
    ("scans in a dotted box", "dotted_box_scans", "dotted_box_gap_points", 12, "dotted_box"),
)
# What `main` prints after the tiles and scans: (label, figures in the result, their gap).
PRINTED = (("canvas drawings", "canvas_drawings", "drawing_gap_points"),
           *((label, figures, gap_points) for label, figures, gap_points, _, _ in KINDS))


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
    for label, figures, gap in PRINTED:
        print(f"{label}: acc {result[figures]['accuracy']:.4f} "
              f"bal {result[figures]['balanced_accuracy']:.4f}  gap {result[gap]} points")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"scans-{time.strftime('%Y-%m-%d')}.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
