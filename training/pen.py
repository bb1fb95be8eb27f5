"""EMNIST characters re-drawn with a pen of even width, as a drawing canvas or a tablet draws them.

EMNIST's strokes come from scanned pencil and ballpoint: blurred, of uneven width. The web
page's canvas (280 x 280 px, an 18 px round pen) draws even, sharp-edged strokes, and the
first model read such drawings ~6 points worse than EMNIST tiles. So each character is
thinned to its centre line (Zhang and Suen's thinning), which keeps the writer's own
trajectory, and re-drawn with a round pen:

- `pen_tiles` draws every training image once, with a random pen, and runs the drawing
  through `serve.preprocess` as the handler would; training mixes these in (`--pen`).
- `draw_with_pen` draws with anti-aliased line segments, a different renderer from
  training's, for the held-out figure in `training.scans`.
"""
from __future__ import annotations

import cv2
import numpy as np
from tqdm import tqdm

from serve.preprocess import BlankImageError, normalize_char

THIN_SIDE = 56  # characters are thinned at twice EMNIST's resolution


def _thinning_tables() -> tuple[np.ndarray, np.ndarray]:
    """For each 8-neighbourhood code (bit i = neighbour P2..P9 clockwise from north), is
    the centre pixel deleted in Zhang-Suen's first / second sub-iteration?"""
    first, second = np.zeros(256, bool), np.zeros(256, bool)
    for code in range(256):
        p = [(code >> i) & 1 for i in range(8)]  # P2, P3, ..., P9
        black = sum(p)
        transitions = sum(p[i] == 0 and p[(i + 1) % 8] == 1 for i in range(8))
        if not (2 <= black <= 6 and transitions == 1):
            continue
        p2, p4, p6, p8 = p[0], p[2], p[4], p[6]
        first[code] = p2 * p4 * p6 == 0 and p4 * p6 * p8 == 0
        second[code] = p2 * p4 * p8 == 0 and p2 * p6 * p8 == 0
    return first, second


_FIRST, _SECOND = _thinning_tables()
# (dy, dx) of P2..P9: north, then clockwise.
_NEIGHBOURS = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))


def thin(masks: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning of a batch of binary masks (N x H x W): one-pixel centre lines."""
    img = (np.asarray(masks) > 0).astype(np.uint8)
    h, w = img.shape[-2:]
    active = np.arange(len(img))  # images still changing
    while len(active):
        changed = np.zeros(len(active), bool)
        for table in (_FIRST, _SECOND):
            sub = img[active]
            padded = np.pad(sub, ((0, 0), (1, 1), (1, 1)))
            code = np.zeros_like(sub)
            for bit, (dy, dx) in enumerate(_NEIGHBOURS):
                code |= padded[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w] << bit
            delete = table[code] & (sub == 1)
            changed |= delete.any(axis=(1, 2))
            sub[delete] = 0
            img[active] = sub
        active = active[changed]
    return img


def centre_lines(tiles: np.ndarray) -> np.ndarray:
    """Upright EMNIST tiles (N x 28 x 28) -> their thinned strokes at THIN_SIDE px."""
    big = np.stack([cv2.resize(t, (THIN_SIDE, THIN_SIDE), interpolation=cv2.INTER_CUBIC) for t in tiles])
    return thin(big > 110)


def paint_pen(lines: np.ndarray, side: int, width: int) -> np.ndarray:
    """One thinned character (THIN_SIDE px) as dark ink on white paper, `side` px, with a
    round pen `width` px wide. Fast: the centre line is scaled up and dilated."""
    scaled = cv2.resize(lines.astype(np.float32), (side, side), interpolation=cv2.INTER_LINEAR) > 0.2
    pen = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (max(1, width), max(1, width)))
    ink = cv2.dilate(scaled.astype(np.uint8) * 255, pen)
    ink = cv2.GaussianBlur(ink, (3, 3), 0)  # a canvas anti-aliases its strokes
    return 255 - ink


def draw_with_pen(lines: np.ndarray, side: int, width: int) -> np.ndarray:
    """The same drawing made as a canvas makes it: anti-aliased round-capped segments
    between neighbouring centre-line pixels."""
    canvas = np.full((side, side), 255, np.uint8)
    scale = side / lines.shape[0]
    on = set(zip(*np.nonzero(lines)))

    def at(y: int, x: int) -> tuple[int, int]:
        return int((x + 0.5) * scale), int((y + 0.5) * scale)

    for y, x in on:
        for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
            if (y + dy, x + dx) in on:
                cv2.line(canvas, at(y, x), at(y + dy, x + dx), 0, width, cv2.LINE_AA)
        cv2.circle(canvas, at(y, x), max(1, width // 2), 0, -1, cv2.LINE_AA)
    return canvas


def pen_tiles(tiles: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each upright EMNIST tile re-drawn with a random pen (canvas 64-320 px, pen 3-12% of
    it) and normalized by the handler's preprocessing. A tile whose drawing comes out
    blank keeps its EMNIST tile."""
    rng = np.random.default_rng(seed)
    out = np.array(tiles, dtype=np.uint8, copy=True)
    for start in tqdm(range(0, len(tiles), 2048), desc="pen drawings", leave=False, mininterval=2):
        lines = centre_lines(tiles[start:start + 2048])
        for i, line in enumerate(lines):
            side = int(rng.integers(64, 321))
            width = max(2, int(round(side * rng.uniform(0.03, 0.12))))
            try:
                out[start + i] = normalize_char(paint_pen(line, side, width))
            except BlankImageError:
                pass
    return out
