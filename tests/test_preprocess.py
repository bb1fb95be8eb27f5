"""serve/preprocess.py: any reasonable character image becomes an EMNIST-like tile."""
from __future__ import annotations

import io

import cv2
import numpy as np
import pytest

from serve import paper
from serve import preprocess as P
from tests.fixtures.images import bar_glyph


def centroid(tile: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(tile > 64)
    w = tile[ys, xs].astype(float)
    return float((ys * w).sum() / w.sum()), float((xs * w).sum() / w.sum())


def test_tile_is_white_on_black_centred_with_emnist_margin():
    tile = P.normalize_char(bar_glyph())
    assert tile.shape == (28, 28) and tile.dtype == np.uint8
    assert tile.max() == 255 and np.median(tile) == 0, "ink white, background black"
    ys, xs = np.nonzero(tile > 32)
    assert ys.min() >= 1 and ys.max() <= 26 and xs.min() >= 1 and xs.max() <= 26
    assert max(ys.max() - ys.min(), xs.max() - xs.min()) >= 21, "the ink spans ~24 px, as in EMNIST"
    cy, cx = centroid(tile)
    assert 8 < cy < 20 and 6 < cx < 20


def test_polarity_does_not_matter():
    dark_on_light = P.normalize_char(bar_glyph())
    light_on_dark = P.normalize_char(255 - bar_glyph())
    assert np.abs(dark_on_light.astype(int) - light_on_dark.astype(int)).mean() < 4


def test_aspect_ratio_is_kept():
    page = np.full((200, 200), 255, np.uint8)
    page[20:180, 95:105] = 0  # a tall thin '1'
    tile = P.normalize_char(page)
    ys, xs = np.nonzero(tile > 64)
    assert (ys.max() - ys.min()) > 3 * (xs.max() - xs.min())


def test_thin_strokes_are_thickened_to_emnist_width():
    thin = np.full((220, 220), 255, np.uint8)
    thin[20:200, 100:102] = 0  # a 2-px pen line on a big scan
    thin[20:22, 60:160] = 0
    tile = P.normalize_char(thin)
    width = P.stroke_width(tile > 90)
    assert width >= 1.8, f"strokes should not fade away when downsampled (width {width:.2f})"


def test_blank_and_noise_only_images_are_reported():
    with pytest.raises(P.BlankImageError):
        P.normalize_char(np.full((50, 50), 255, np.uint8))
    rng = np.random.default_rng(0)
    noisy_paper = np.clip(rng.normal(235, 4, (120, 120)), 0, 255).astype(np.uint8)
    with pytest.raises(P.BlankImageError):
        P.normalize_char(noisy_paper)


def test_npy_batches_are_checked():
    buf = io.BytesIO()
    np.save(buf, np.zeros((3, 28, 28), np.uint8))
    assert P.load_npy_tiles(buf.getvalue(), 10).shape == (3, 28, 28)
    bad = io.BytesIO()
    np.save(bad, np.zeros((3, 32, 32), np.float32))
    with pytest.raises(P.PreprocessError):
        P.load_npy_tiles(bad.getvalue(), 10)
    with pytest.raises(P.ImageTooLargeError):
        P.load_npy_tiles(buf.getvalue(), 2)


def test_emnist_tiles_survive_normalization(emnist_test_sample):
    """Real tiles come out nearly as they went in: the pipeline reproduces EMNIST's framing."""
    tiles = emnist_test_sample.images[:200]
    normalized = P.normalize_tiles(tiles)
    iou = [((a > 127) & (b > 127)).sum() / max(((a > 127) | (b > 127)).sum(), 1) for a, b in zip(tiles, normalized)]
    assert np.median(iou) > 0.6


def test_ink_the_mask_drops_beside_a_stroke_is_not_its_rim():
    """The faint rim around a stroke is kept with it; a speck the mask dropped, two pixels
    from the stroke (inside the L's box) and as dark, is no rim and stays out of the tile."""
    ink = np.zeros((100, 100), np.float32)
    ink[10:90, 45:55] = ink[80:90, 45:85] = 1.0  # an L
    ink[10:80, 55] = 0.2  # its stem's antialiased rim
    specked = ink.copy()
    specked[50:52, 57:59] = 1.0
    assert not P.ink_mask(specked)[50:52, 57:59].any()
    assert np.array_equal(P.tile_from_ink(specked), P.tile_from_ink(ink))
    assert P.tile_from_ink(ink).max() == 255


def test_a_huge_thin_character_is_read_at_bounded_resolution():
    """A 1-px circle 1,600 px wide: thickened after shrinking to WORK_SIDE, same result."""
    big = np.full((1640, 1640), 255, np.uint8)
    cv2.circle(big, (820, 820), 800, 0, 1)
    small = np.full((140, 140), 255, np.uint8)
    cv2.circle(small, (70, 70), 56, 0, 1)
    a, b = P.normalize_char(big), P.normalize_char(small)
    assert P.stroke_width(a > 90) >= 1.8
    assert ((a > 127) & (b > 127)).sum() / max(((a > 127) | (b > 127)).sum(), 1) > 0.6


def _ink_map_per_pixel(gray: np.ndarray) -> np.ndarray:
    """The ink map's definition, pixel by pixel (what `P.ink_map` computes by lookup table)."""
    gray = paper.even_lighting(gray)
    distance = np.abs(gray.astype(np.float32) - paper.paper_level(gray))
    peak = float(distance.max())
    if peak < 32:
        return np.zeros(gray.shape, np.float32)
    dist_u8 = (distance * (255.0 / peak)).astype(np.uint8)
    otsu, _ = cv2.threshold(dist_u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    floor = max(otsu * 0.3, 12.0)
    strokes = dist_u8[dist_u8 > otsu]
    solid = float(np.percentile(strokes, 90)) if strokes.size else 255.0
    return np.clip((dist_u8.astype(np.float32) - floor) / max(solid - floor, 1.0), 0.0, 1.0)


def test_the_lookup_table_ink_map_equals_the_per_pixel_definition(emnist_test_sample):
    rng = np.random.default_rng(3)
    pages = [bar_glyph(), 255 - bar_glyph(), np.full((9, 9), 200, np.uint8)]
    pages += [255 - t for t in emnist_test_sample.images[:50]]
    pages += [rng.integers(0, 256, rng.integers(2, 60, 2)).astype(np.uint8) for _ in range(100)]
    pages += [rng.normal(190, 35, (40, 70)).clip(0, 255).astype(np.uint8) for _ in range(50)]
    pages.append(np.asfortranarray(bar_glyph()))  # not C-contiguous
    for page in pages:
        got, want = P.ink_map(page), _ink_map_per_pixel(np.ascontiguousarray(page))
        assert got.dtype == np.float32 and np.array_equal(got, want)


def test_percentile_of_levels_is_numpys_percentile_of_the_pixels():
    """ink_map reads the strokes' 90th percentile off a histogram: it must be the very float
    np.percentile gives for one value per pixel, or the tiles (and what was measured) move."""
    rng = np.random.default_rng(7)
    for trial in range(3000):
        counts = np.zeros(256, np.int64)
        levels = rng.integers(0, 256, size=rng.integers(1, 6))
        counts[levels] = rng.integers(0, (1, 3, 60, 5000, 90000)[trial % 5] + 1, size=len(levels))
        if not counts.any():
            continue
        q = 90 if trial % 3 else float(rng.uniform(0, 100))
        pixels = np.repeat(np.arange(256, dtype=np.uint8), counts)
        assert P.percentile_of_levels(counts, q) == float(np.percentile(pixels, q)), (counts[levels], q)
