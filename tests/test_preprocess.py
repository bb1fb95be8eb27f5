"""serve/preprocess.py: any reasonable character image becomes an EMNIST-like tile."""
from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from serve import preprocess as P


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def bar_glyph(size: int = 200, stroke: int = 12) -> np.ndarray:
    """A dark 'L' on light paper, off-centre in a large page."""
    page = np.full((size, size + 80), 235, np.uint8)
    page[30:150, 40:40 + stroke] = 20
    page[150 - stroke:150, 40:110] = 20
    return page


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


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF"])
def test_every_client_format_decodes(fmt):
    img = Image.fromarray(bar_glyph()).convert("RGB" if fmt == "JPEG" else "L")
    tile = P.bytes_to_tile(encode(img, fmt))
    assert tile.max() == 255


def test_gif_uses_the_first_frame():
    first = Image.fromarray(bar_glyph())
    blank = Image.fromarray(np.full((200, 280), 235, np.uint8))
    data = encode(first, "GIF", save_all=True, append_images=[blank])
    assert P.bytes_to_tile(data).max() == 255


def test_errors_have_codes():
    with pytest.raises(P.EmptyImageError) as e:
        P.decode_image(b"")
    assert e.value.code == "empty_image"
    with pytest.raises(P.UndecodableImageError):
        P.decode_image(b"<html>not an image</html>")
    with pytest.raises(P.ImageTooLargeError):
        P.decode_image(encode(Image.new("L", (3000, 3000), 255), "PNG"), max_pixels=1_000_000)


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


def test_a_huge_thin_character_is_read_at_bounded_resolution():
    """A 1-px circle 1,600 px wide: thickened after shrinking to WORK_SIDE, same result."""
    import cv2

    big = np.full((1640, 1640), 255, np.uint8)
    cv2.circle(big, (820, 820), 800, 0, 1)
    small = np.full((140, 140), 255, np.uint8)
    cv2.circle(small, (70, 70), 56, 0, 1)
    a, b = P.normalize_char(big), P.normalize_char(small)
    assert P.stroke_width(a > 90) >= 1.8
    assert ((a > 127) & (b > 127)).sum() / max(((a > 127) | (b > 127)).sum(), 1) > 0.6


def _ink_map_per_pixel(gray: np.ndarray) -> np.ndarray:
    """The ink map's definition, pixel by pixel (what `P.ink_map` computes by lookup table)."""
    import cv2

    gray = P.even_lighting(gray)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    distance = np.abs(gray.astype(np.float32) - float(np.median(border)))
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


def test_fast_labelling_finds_the_same_components_as_opencvs_default():
    rng = np.random.default_rng(11)
    masks = [(rng.random(rng.integers(1, 300, 2)) < p).astype(np.uint8) for p in (0.02, 0.3, 0.6) for _ in range(20)]
    masks += [np.zeros((5, 7), np.uint8), np.ones((9, 4), np.uint8)]
    for mask in masks:
        count, labels, stats = P.label_components(mask)
        want_count, want_labels, want_stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        assert count == want_count and labels[mask == 0].max(initial=0) == 0
        # The same pixels share a label in both (numbering may differ), with the same statistics.
        pairs = np.unique(np.stack([labels.ravel(), want_labels.ravel()]), axis=1)
        assert pairs.shape[1] == len(np.unique(labels)) == len(np.unique(want_labels))
        assert np.array_equal(stats[pairs[0]], want_stats[pairs[1]])


def _written_line(tiles: np.ndarray) -> np.ndarray:
    """Dark ink on white paper: EMNIST tiles side by side at 3x, with paper around them."""
    line = np.concatenate([np.pad(t, ((0, 0), (4, 4))) for t in tiles], axis=1)
    line = cv2.resize(line, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    return np.pad(255 - line, ((60, 60), (90, 90)), constant_values=255)


def _lit(page: np.ndarray, kind: str) -> np.ndarray:
    """The page as a phone photo or a lamp would light it (paper 255 down to ~115)."""
    h, w = page.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    light = {
        "gradient": 1 - 0.55 * (xx / w * 0.8 + yy / h * 0.2),
        "vignette": 1 - 0.5 * np.hypot(xx / (w / 2) - 1, yy / (h / 2) - 1) ** 2 / 2,
        "shadow": cv2.GaussianBlur(np.where(xx > 0.45 * w, 0.5, 1.0).astype(np.float32), (0, 0), 3),
    }[kind]
    noise = np.random.default_rng(0).normal(0, 3, page.shape)
    return (page * light + noise).clip(0, 255).astype(np.uint8)


def test_evenly_lit_images_are_left_as_they_are(emnist_test_sample):
    """Tiles, canvas drawings and scans (what the model's figures were measured on) are
    not touched, so their ink maps are the ones training used."""
    rng = np.random.default_rng(5)
    pages = list(emnist_test_sample.images[:100]) + [255 - t for t in emnist_test_sample.images[:100]]
    scan = (_written_line(emnist_test_sample.images[:5]) + rng.normal(0, 4, (204, 720))).clip(0, 255)
    pages += [scan.astype(np.uint8), (scan * 0.8).astype(np.uint8), bar_glyph()]
    for page in pages:
        assert P.even_lighting(page) is page


@pytest.mark.parametrize("kind", ["gradient", "vignette", "shadow"])
@pytest.mark.parametrize("ink", ["dark", "light"])
def test_unevenly_lit_writing_reads_as_if_evenly_lit(emnist_test_sample, kind, ink):
    from worker import segment

    flat = _written_line(emnist_test_sample.images[:6])
    lit = _lit(flat, kind)
    if ink == "light":  # chalk on a board: light writing on dark paper, lit unevenly
        flat = (255 - flat) * 0.75 + 30
        flat, lit = flat.astype(np.uint8), _lit(flat, kind)
    want = [segment.char_tile(P.ink_map(flat), c) for c in segment.segment(P.ink_map(flat))]
    lit_ink = P.ink_map(lit)
    got = [segment.char_tile(lit_ink, c) for c in segment.segment(lit_ink)]
    assert len(want) == 6 and len(got) == 6
    for a, b in zip(want, got):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9


def test_a_tight_crop_with_ink_on_its_edges_keeps_its_strokes(monkeypatch):
    """Bold ink touching the edges makes them uneven; the character must come out the same."""
    crop = np.full((60, 48), 245, np.uint8)
    cv2.ellipse(crop, (24, 30), (19, 25), 0, 0, 360, 15, 11)  # a bold O, cut by all four edges
    assert max(P._edge_quarters(crop)) + 16 >= P.UNEVEN_PAPER * (min(P._edge_quarters(crop)) + 16)
    got = P.normalize_char(crop)
    monkeypatch.setattr(P, "UNEVEN_PAPER", 100.0)  # never even out
    want = P.normalize_char(crop)
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.95


def _in_a_box(tile: np.ndarray, cut_side: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A character on a form (dark on light), without and with its printed box."""
    page = np.full((130, 130), 240, np.uint8)
    page[23:107, 23:107] = (240 - cv2.resize(tile, (84, 84)).astype(np.float32) * 0.85).astype(np.uint8)
    boxed = page.copy()
    cv2.rectangle(boxed, (8, 8), (121, 121), 60, 2)
    if cut_side:  # cropped through the box: one side of it is missing
        page, boxed = page[:, 12:], boxed[:, 12:]
    return page, boxed


@pytest.mark.parametrize("cut_side", [False, True])
def test_a_box_around_a_character_is_not_part_of_it(emnist_test_sample, cut_side):
    """Forms print a box per character; a crop of one must read as the character alone."""
    for tile in emnist_test_sample.images[:40]:
        plain, boxed = _in_a_box(tile, cut_side)
        a, b = P.normalize_char(plain), P.normalize_char(boxed)
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.97


def test_round_letters_and_tiles_are_no_frames(emnist_test_sample):
    """An O with a speck inside it is still an O; no EMNIST tile loses a stroke as a frame."""
    page = np.full((100, 100), 255, np.uint8)
    cv2.ellipse(page, (50, 50), (30, 40), 0, 0, 360, 0, 5)
    page[48:54, 48:54] = 0
    ink = P.ink_map(page)
    assert P.ink_mask(ink)[10:90, 20:22].any()  # the O's left side is kept
    for tile in emnist_test_sample.images:
        mask, labels, stats, kept = P.ink_components(P.ink_map(tile))
        assert P._frames(labels, stats, kept) == []


def _in_a_tight_box(tile: np.ndarray, inset: int) -> tuple[np.ndarray, np.ndarray]:
    """A character on a form, without and with a box `inset` px inside its ink's edges
    (negative: outside), so that the character touches or crosses the box."""
    page = np.full((130, 130), 240, np.uint8)
    ink = cv2.resize(tile, (84, 84))
    page[23:107, 23:107] = (240 - ink.astype(np.float32) * 0.85).astype(np.uint8)
    ys, xs = np.nonzero(ink > 60)
    boxed = page.copy()
    cv2.rectangle(boxed, (int(23 + xs.min() + inset), int(23 + ys.min() + inset)),
                  (int(23 + xs.max() - inset), int(23 + ys.max() - inset)), 60, 2)
    return page, boxed


def test_a_box_the_character_touches_is_not_part_of_it(emnist_test_sample):
    """Handwriting fills or overruns a form's box: box and character are then one piece
    of ink, and the box must still go."""
    tiles = emnist_test_sample.images[:60]
    alike = 0
    for tile in tiles:
        plain, boxed = _in_a_tight_box(tile, inset=-1)
        a, b = P.normalize_char(plain), P.normalize_char(boxed)
        alike += np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9
    assert alike >= 0.9 * len(tiles)
    # Crossing the strokes, the box is found as often; what it crossed is lost with it.
    crossed = [P.ink_components(P.ink_map(_in_a_tight_box(t, inset=3)[1]))[0] for t in tiles]
    assert sum(P._ruled_frame(mask) is not None for mask in crossed) >= 0.75 * len(tiles)


def test_no_stroke_of_a_character_is_taken_for_a_box(emnist_test_sample):
    """Bold round letters at any size, and a box drawn alone (a square 0), keep all their ink."""
    for tile in emnist_test_sample.images:
        for size in (60, 120, 240):
            page = 255 - cv2.resize(tile, (size, size), interpolation=cv2.INTER_CUBIC)
            assert P._ruled_frame(P.ink_components(P.ink_map(page))[0]) is None
    square = np.full((120, 120), 255, np.uint8)
    cv2.rectangle(square, (20, 20), (100, 100), 0, 4)
    ink = P.ink_map(square)
    assert np.array_equal(P.ink_mask(ink), P.ink_components(ink)[0])


def test_squared_paper_is_not_part_of_the_character(emnist_test_sample):
    """A character written on squared paper: the grid is one piece of ink with it, and goes."""
    alike = 0
    for tile in emnist_test_sample.images[:40]:
        page = np.full((140, 140), 245, np.uint8)
        page[20:120, 20:120] = 245 - (cv2.resize(tile, (100, 100)).astype(np.float32) * 0.9).astype(np.uint8)
        squared = page.copy()
        squared[:, 7::25] = np.minimum(squared[:, 7::25], 110)
        squared[11::25, :] = np.minimum(squared[11::25, :], 110)
        a, b = P.normalize_char(page), P.normalize_char(squared)
        alike += np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9
    assert alike >= 36


@pytest.mark.parametrize("top", [0, 3])
def test_a_bar_across_a_tight_crop_is_no_rule(top):
    """A T cropped to its ink (or nearly), its bar from edge to edge, keeps its bar."""
    page = np.full((120, 100), 255, np.uint8)
    page[top:top + 6, :] = 0  # the bar, across the whole crop
    page[top:110, 47:53] = 0  # the stem, down most of the rest
    ink = P.ink_map(page)
    assert np.array_equal(P.ink_mask(ink), P.ink_components(ink)[0])


def _on_a_desk(tile: np.ndarray, desk: int) -> np.ndarray:
    """A character on a sheet of paper, photographed with the desk all around the sheet."""
    sheet = np.full((200, 200), 235, np.uint8)
    sheet[50:150, 50:150] = (235 - cv2.resize(tile, (100, 100)).astype(np.float32) * 0.85).astype(np.uint8)
    photo = np.full((260, 280), desk, np.uint8)
    photo[25:225, 45:245] = sheet
    return photo


@pytest.mark.parametrize("desk", [40, 110])
def test_the_desk_around_a_photographed_sheet_is_not_paper(emnist_test_sample, desk):
    """The border is the desk, not the paper: read from it, the sheet was the ink (0.3% on
    300 test characters). The sheet's surroundings are painted paper first."""
    alike = 0
    for tile in emnist_test_sample.images[:40]:
        photo = _on_a_desk(tile, desk)
        sheet = photo[25:225, 45:245]
        a, b = P.normalize_char(sheet), P.normalize_char(photo)
        alike += np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.97
    assert alike >= 38
    # Light strokes on a dark ground are the writing itself, not a sheet.
    page = 255 - _on_a_desk(emnist_test_sample.images[0], 255)[25:225, 45:245]
    assert np.array_equal(P.on_the_sheet(page), page)


@pytest.mark.parametrize("sides", [(0,), (2,), (1, 3), (0, 2, 3)])
def test_a_desk_along_some_edges_of_the_photo_is_not_ink(emnist_test_sample, sides):
    """A photo that shows the desk along one to three edges of the sheet (top, bottom,
    left, right): the desk was the largest piece of "ink" (14% of 600 such scans read right,
    words 13%). It is painted paper, so the character reads like the sheet alone."""
    alike = 0
    for k, tile in enumerate(emnist_test_sample.images[:40]):
        sheet = _on_a_desk(tile, 235)[25:225, 45:245]
        depth = (10, 60)[k % 2]  # thinner and thicker than the strokes (about 20 px)
        pad = [(depth if side in sides else 0) for side in range(4)]
        photo = np.pad(sheet, ((pad[0], pad[1]), (pad[2], pad[3])), constant_values=(40, 110)[k % 3 == 0])
        a, b = P.normalize_char(sheet), P.normalize_char(photo)
        alike += np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.97
    assert alike >= 36


def test_strokes_along_the_edges_of_a_tight_crop_are_no_desk(emnist_test_sample):
    """Words cropped tight to their ink have strokes along every edge (an l's stem down
    the left, the bar of an E along the top): neither thicker than the other strokes nor
    straight, so nothing is painted. An L alone has no other stroke to compare with."""
    from bench.words import compose_word

    rng = np.random.default_rng(4)
    for _ in range(150):
        idx = rng.choice(len(emnist_test_sample.labels), int(rng.integers(2, 7)), replace=False)
        word = compose_word(list(emnist_test_sample.images[idx]), rng)
        ys, xs = np.nonzero(word < 128)
        crop = np.ascontiguousarray(word[ys.min():ys.max() + 1, xs.min():xs.max() + 1])
        assert np.array_equal(P.on_the_sheet(crop), crop)
    ell = np.full((120, 100), 255, np.uint8)
    ell[:, :14], ell[-14:, :] = 0, 0  # an L cropped to its ink
    assert np.array_equal(P.on_the_sheet(ell), ell)


def test_a_shadow_over_the_writing_is_no_desk():
    """A shadow as dark as a desk along an edge, with writing inside it, stays (the strokes
    in it are darker still); `even_lighting` evens it out."""
    page = np.full((200, 300), 235, np.uint8)
    page[:, :120] = 90  # a hard shadow over the left part
    cv2.circle(page, (60, 100), 35, 20, 10)  # a letter in the shadow
    cv2.circle(page, (200, 100), 35, 20, 10)  # and one in the light
    assert np.array_equal(P.on_the_sheet(page), page)
