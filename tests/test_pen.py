"""training.pen: thinning to centre lines and re-drawing characters with an even pen."""
from __future__ import annotations

import cv2
import numpy as np

from serve.preprocess import normalize_char
from training.pen import THIN_SIDE, centre_lines, draw_with_pen, paint_pen, pen_tiles, thin


def ring(side: int = 56, radius: int = 18, width: int = 7) -> np.ndarray:
    img = np.zeros((side, side), np.uint8)
    cv2.circle(img, (side // 2, side // 2), radius, 255, width)
    return img


def test_a_thick_bar_thins_to_one_line_of_its_length():
    bar = np.zeros((1, 30, 60), np.uint8)
    bar[0, 10:19, 5:55] = 1
    line = thin(bar)[0]
    rows = np.nonzero(line.any(axis=1))[0]
    assert len(rows) == 1 and 10 <= rows[0] <= 18  # one row, inside the bar
    cols = np.nonzero(line[rows[0]])[0]
    assert cols.min() <= 10 and cols.max() >= 49  # most of the length survives


def test_a_ring_stays_one_closed_loop_one_pixel_wide():
    line = thin(ring()[None])[0]
    n_parts, _ = cv2.connectedComponents(line, connectivity=8)
    assert n_parts == 2  # background + one stroke
    # Closed: the inside is still cut off from the outside.
    n_background, _ = cv2.connectedComponents((1 - line).astype(np.uint8), connectivity=4)
    assert n_background == 3  # label 0 (the line) + outside + inside
    assert line.sum() < 0.5 * (ring() > 0).sum()


def test_thinning_is_idempotent_and_batch_independent():
    masks = np.stack([ring(), np.roll(ring(radius=12, width=9), 5, axis=1)]) > 0
    once = thin(masks)
    assert np.array_equal(thin(once), once)
    assert np.array_equal(thin(masks[1:]), once[1:])


def test_drawings_are_dark_even_strokes_on_white(emnist_test_sample):
    lines = centre_lines(emnist_test_sample.images[:10])
    assert lines.shape == (10, THIN_SIDE, THIN_SIDE)
    for drawing in (draw_with_pen(lines[0], 280, 18), paint_pen(lines[0], 280, 18)):
        assert drawing.shape == (280, 280)
        assert np.median(drawing) == 255 and drawing.min() == 0
        tile = normalize_char(drawing)  # the handler reads it as a character
        assert tile.shape == (28, 28) and tile.max() == 255


def test_a_pen_drawing_looks_like_the_character_it_was_drawn_from(emnist_test_sample):
    tiles = emnist_test_sample.images[:200]
    drawn = pen_tiles(tiles, seed=3).astype(np.float32)
    plain = np.stack([normalize_char(t) for t in tiles]).astype(np.float32)
    def correlation(a, b):
        a, b = a - a.mean(), b - b.mean()
        return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))
    same = np.mean([correlation(d, p) for d, p in zip(drawn, plain)])
    other = np.mean([correlation(d, p) for d, p in zip(drawn, np.roll(plain, 1, axis=0))])
    assert same > 0.6 and same > other + 0.3, (same, other)


def test_a_blank_tile_keeps_its_blank_tile():
    tiles = np.zeros((2, 28, 28), np.uint8)
    tiles[1, 6:22, 12:16] = 255
    out = pen_tiles(tiles)
    assert out[0].max() == 0 and out[1].max() == 255
