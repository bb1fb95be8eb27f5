"""serve/preprocess.py: any reasonable character image becomes an EMNIST-like tile."""
from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image, TiffImagePlugin

from serve import paper
from serve import preprocess as P
from tests.fixtures.images import bar_glyph, encode


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


def test_alpha_is_flattened_onto_white():
    rgba = np.zeros((80, 80, 4), np.uint8)  # fully transparent...
    rgba[10:70, 35:45] = (0, 0, 0, 255)     # ...except an opaque black stroke
    gray = P.decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert gray[0, 0] == 255 and gray[40, 40] == 0


@pytest.mark.parametrize("dtype, fmt", [(np.uint16, "PNG"), (np.uint16, "TIFF"), (np.int32, "TIFF"),
                                        (np.float32, "TIFF")])
def test_scanners_high_bit_depth_greys_are_read(dtype, fmt):
    """A 16-bit (or 32-bit, or float) grey scan: Pillow's own conversion to 8 bits clipped
    it to white ("no ink found"). Scaled so its brightest level is white."""
    page = np.full((80, 80), 60000, np.float64)
    page[10:70, 35:45] = 3000
    if dtype == np.float32:
        page /= 65535
    gray = P.decode_image(encode(Image.fromarray(page.astype(dtype)), fmt))
    assert gray[0, 0] >= 230 and gray[40, 40] <= 20


@pytest.mark.parametrize("colour", [(255, 255, 255), (255, 230, 0), (200, 200, 200)])
def test_light_strokes_on_a_transparent_canvas_are_ink(colour):
    """White, yellow or light grey strokes on a transparent canvas (a dark-themed drawing
    app's export) vanished on white paper: "no ink found". They go onto black paper."""
    rgba = np.zeros((80, 80, 4), np.uint8)
    rgba[10:70, 35:45] = (*colour, 255)
    tile = P.bytes_to_tile(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert tile.max() == 255 and tile[:, 12:16].mean() > 100  # the stroke, upright, in the middle
    # A scan whose transparent margin is the minority keeps white paper under it.
    scan = np.full((80, 80, 4), 235, np.uint8)
    scan[:8, :, 3] = 0
    scan[20:60, 38:42, :3] = 20
    assert P.decode_image(encode(Image.fromarray(scan, "RGBA"), "PNG"))[0, 0] == 255


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF", "HEIF"])
def test_every_client_format_decodes(fmt):
    img = Image.fromarray(bar_glyph()).convert("RGB" if fmt in ("JPEG", "HEIF") else "L")
    tile = P.bytes_to_tile(encode(img, fmt))
    assert tile.max() == 255


@pytest.mark.parametrize("fmt", ["TIFF", "GIF", "PNG", "WEBP"])
def test_multi_page_images_are_refused_not_cut_to_their_first_page(fmt):
    first = Image.fromarray(bar_glyph())
    blank = Image.fromarray(np.full((200, 280), 235, np.uint8))
    data = encode(first, fmt, save_all=True, append_images=[blank, first])
    for read in (P.check_image, P.decode_image):
        with pytest.raises(P.MultiPageImageError, match="3 pages") as e:
            read(data)
        assert e.value.code == "multi_page_image"
    assert P.bytes_to_tile(encode(first, fmt, save_all=True)).max() == 255


def test_a_tiffs_reduced_resolution_preview_is_not_a_page():
    buf = io.BytesIO()
    with TiffImagePlugin.AppendingTiffWriter(buf) as tiff:
        Image.fromarray(bar_glyph()).save(tiff, format="TIFF")
        tiff.newFrame()
        Image.new("L", (35, 25), 235).save(tiff, format="TIFF", tiffinfo={254: 1})  # NewSubfileType: preview
        tiff.newFrame()
    assert Image.open(io.BytesIO(buf.getvalue())).n_frames == 2
    assert P.bytes_to_tile(buf.getvalue()).max() == 255


def test_errors_have_codes():
    with pytest.raises(P.EmptyImageError) as e:
        P.decode_image(b"")
    assert e.value.code == "empty_image"
    with pytest.raises(P.UndecodableImageError):
        P.decode_image(b"<html>not an image</html>")
    with pytest.raises(P.ImageTooLargeError):
        P.decode_image(encode(Image.new("L", (3000, 3000), 255), "PNG"), max_pixels=1_000_000)


@pytest.mark.parametrize("data, says", [
    (b"%PDF-1.7\n1 0 obj <<>> endobj\n", "a PDF document"),
    (b"PK\x03\x04\x14\x00\x06\x00[Content_Types].xml", "a ZIP archive"),
    (b"\x1f\x8b\x08\x00\x00\x00\x00\x00", "gzip-compressed"),
    (b'<?xml version="1.0"?>\n<!-- Inkscape -->\n<svg xmlns="http://www.w3.org/2000/svg"/>', "an SVG drawing"),
    (b"\xef\xbb\xbf<!DOCTYPE html>\n<html><body>502 Bad Gateway</body></html>", "an HTML page"),
    (b'{"images": ["iVBORw0KGgo="]}', "JSON"),
    (b"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAE=", "base64 text"),
    ("Grüße, 谢谢: not a picture\n".encode(), "text"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "a truncated or damaged PNG file"),
    (b"\xff\xd8\xff\xe0\x00", "a truncated or damaged JPEG file"),
])
def test_what_is_sent_instead_of_an_image_is_named(data, says):
    """A form scanned to PDF, a drawing exported as SVG or a proxy's error page saved under
    an image's name: the error says what it is, so the sender knows what to change."""
    with pytest.raises(P.UndecodableImageError, match=f"it is {says}"):
        P.check_image(data)


def test_unknown_bytes_are_not_given_a_name():
    with pytest.raises(P.UndecodableImageError) as e:
        P.check_image(bytes(range(256)) * 4)
    assert "it is" not in str(e.value)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP"])
def test_check_image_refuses_what_decoding_refuses(fmt):
    good = encode(Image.fromarray(bar_glyph()), fmt)
    P.check_image(good)
    refused = 0
    for bad in (good[: len(good) // 2], good[:-20], good[:40] + b"\0" * 20 + good[60:], good[:200]):
        try:
            P.decode_image(bad)
        except P.PreprocessError:
            refused += 1
            with pytest.raises(P.PreprocessError):
                P.check_image(bad)
    assert refused >= 2
    with pytest.raises(P.EmptyImageError):
        P.check_image(b"")
    with pytest.raises(P.ImageTooLargeError):
        P.check_image(encode(Image.new("L", (3000, 3000), 255), fmt), max_pixels=1_000_000)


def test_a_crc_valid_png_with_corrupt_pixels_passes_the_check_but_not_decoding():
    """The one gap of the cheap PNG check: the worker still refuses it, per image."""
    import struct
    import zlib

    raw = b"".join(b"\0" + bytes(range(64)) for _ in range(64))
    garbage = bytes(len(zlib.compress(raw)))  # not a zlib stream

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", garbage) + chunk(b"IEND", b""))
    P.check_image(png)
    with pytest.raises(P.UndecodableImageError):
        P.decode_image(png)


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
