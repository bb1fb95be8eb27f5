"""Tiles that are no one character, for outlier exposure (`python -m training.train --junk`).

Text mode cuts a group of touching letters by asking the model which cut reads best
(worker/segment.py `best_reading`). A model that has only ever seen single characters reads
two letters run together as one wide letter (an M, an H, a W) just as confidently, so the
group stays whole. Outlier exposure (Hendrycks et al. 2019) shows the model such inputs
during training with a uniform target over the classes, so that it learns to be unsure of
them while the 47 classes and every interface stay as they are.

Each junk tile is made the way text mode makes its candidates: two or three training
letters set side by side at one scale, overlapping by up to 3 and apart by at most 1 tile
pixel (so they touch, as `bench.words --touching` sets them), then the whole group, or a
window from inside one letter to inside the next, through `serve.preprocess.tile_from_ink`.
A window holds at least half the width of each letter it cuts, so a sliver of a
neighbour (which leaves the letter readable) is not called junk.
"""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from serve.preprocess import BlankImageError, tile_from_ink

GAPS = (-3, 2)  # tile pixels between neighbours (high end exclusive): most touch
MIN_SHARE = 0.5


def ink_columns(tile: np.ndarray) -> np.ndarray:
    """An upright white-on-black tile cropped to its ink's columns."""
    cols = np.nonzero(tile.max(axis=0) > 40)[0]
    return tile[:, cols.min():cols.max() + 1] if len(cols) else tile


def junk_tile(letters: list[np.ndarray], rng: np.random.Generator) -> np.ndarray | None:
    """One junk tile from upright white-on-black EMNIST images, or None when blank."""
    crops = [ink_columns(t) for t in letters]
    canvas = np.zeros((28, sum(c.shape[1] for c in crops) + 4 * len(crops)), np.uint8)
    spans, x = [], 0
    for i, crop in enumerate(crops):
        x = max(x, 0)
        canvas[:, x:x + crop.shape[1]] = np.maximum(canvas[:, x:x + crop.shape[1]], crop)
        spans.append((x, x + crop.shape[1]))
        x += crop.shape[1] + (int(rng.integers(*GAPS)) if i < len(crops) - 1 else 0)
    start, stop = window(spans, rng)
    try:
        return tile_from_ink(canvas[:, start:stop].astype(np.float32) / 255.0)
    except BlankImageError:
        return None


def window(spans: list[tuple[int, int]], rng: np.random.Generator) -> tuple[int, int]:
    """Columns [start, stop) of a junk tile, given each letter's columns (left to right):
    the whole group half the time, else from inside one letter to inside (or the end of)
    the next, holding at least MIN_SHARE of the width of each."""
    if rng.random() < 0.5:
        return spans[0][0], spans[-1][1]
    k = int(rng.integers(0, len(spans) - 1))
    (a0, a1), (b0, b1) = spans[k], spans[k + 1]
    start = a0 + int(rng.uniform(0, 1 - MIN_SHARE) * (a1 - a0))
    stop = b0 + int(np.ceil(rng.uniform(MIN_SHARE, 1) * (b1 - b0)))
    return start, stop


def junk_tiles(images: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """`n` junk tiles (uint8 n x 28 x 28) from random pairs and triples of `images`."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 28, 28), np.uint8)
    made = 0
    with tqdm(total=n, desc="junk tiles", leave=False, mininterval=2) as bar:
        while made < n:
            picks = rng.choice(len(images), size=2 if rng.random() < 0.7 else 3, replace=False)
            tile = junk_tile([images[i] for i in picks], rng)
            if tile is not None:
                out[made] = tile
                made += 1
                bar.update()
    return out
