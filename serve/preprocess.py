"""Turn any reasonable character image into the 28x28 tile the model was trained on.

This is the ONE preprocessing module of the project (with the modules it imports:
serve/decode.py, image bytes to grey pixels, whose errors and `decode_image` it passes on
to its callers; serve/paper.py, serve/rules.py and serve/underlines.py, what on an image
is not writing). The TorchServe handler, the Celery worker (for segmented characters) and
`training.evaluate` all call it, so what is measured is what is served. It deliberately imports no torch: workers run
without it.

The model sees tiles the way EMNIST made them (Cohen et al. 2017): the ink's region of
interest cropped, centred in a square frame that keeps the aspect ratio, padded by 2 px
at 28 px, downsampled with antialiasing, intensity stretched to 0..255, white ink on black,
upright (EMNIST's files store images transposed; `emnist_upright` undoes that).
"""
from __future__ import annotations

import functools
import io

import cv2
import numpy as np

try:  # inside a model archive, extra files sit flat beside the handler
    import decode
    import paper
    import rules
    import underlines
except ImportError:  # imported from the repository
    from serve import decode, paper, rules, underlines
# What callers catch and call comes from the step that reads the bytes.
PreprocessError, UndecodableImageError, EmptyImageError = (
    decode.PreprocessError, decode.UndecodableImageError, decode.EmptyImageError)
ImageTooLargeError, BlankImageError, MultiPageImageError = (
    decode.ImageTooLargeError, decode.BlankImageError, decode.MultiPageImageError)
check_image, decode_image, DEFAULT_MAX_PIXELS = decode.check_image, decode.decode_image, decode.DEFAULT_MAX_PIXELS

# This module and those it imports: the model archive packs them flat beside the handler.
MODULES = ("preprocess", "decode", "paper", "rules", "underlines", "formats")

TILE = 28
# EMNIST pads the square ROI by 2 px on each side of the 28 px tile: the ink spans 24 px.
INK_SPAN = TILE - 4
# Stroke width of EMNIST tiles in tile pixels (2 * ink area / perimeter): median 3.2,
# 10th percentile 2.4 over 2,000 emnist47 test tiles. Thinner strokes are thickened to
# this before downsampling, so a 1-px pen line on a 200 px scan does not fade to nothing.
TARGET_STROKE = 2.8
# Characters larger than this (px) are shrunk before stroke thickening; 4 tiles keeps the
# stroke-width estimate exact enough and the work bounded.
WORK_SIDE = 4 * TILE
# Characters smaller than this (px) are enlarged to SMALL_TO, smoothly, before thickening:
# at a few pixels a stroke, thickening by whole pixels and stretching the result to the
# tile made blocky tiles (scans 20-28 px on a side, the characters 8-18 px: 71.9% of 2,500
# training-split characters read right, 80.8% enlarged). Hardly any EMNIST character is this
# small: 3 of 104,221 training images and none of the test images (at 18 px: 5 test images).
SMALL_SIDE = 14
SMALL_TO = 2 * TILE
# Ink above this (of 1) is a character's stroke: the ink mask.
MASK_LEVEL = 0.35
# Ink above this is enough to join a faint box's pieces (and to find a grey grid's rules).
FAINT_FRAME = 0.1

def ink_map(gray: np.ndarray) -> np.ndarray:
    """Float32 ink intensity in 0..1 (ink high), whatever the polarity, background removed.

    Polarity comes from the border: the paper is what surrounds the writing. The paper
    level is the border median, so uneven JPEG noise and grey paper fall below Otsu's
    threshold on the distance from it. Unevenly lit paper is evened out first.
    """
    return ink_and_turn(gray)[0]


def ink_and_turn(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """`ink_map`, and the degrees that set straight a sheet lying turned in a photo that
    shows its edges against the desk (`paper.sheet_and_turn`; 0.0 if none): char mode
    turns the character by them (`tile_from_ink`). The model learned upright characters
    turned a few degrees at most: on sheets turned 4-12 degrees it read 2.6 points below
    plain scans (training.scans). Text mode sets each line level by its writing instead
    (worker/upright.py)."""
    gray = np.ascontiguousarray(gray, dtype=np.uint8)  # OpenCV wants contiguous rows
    if gray.ndim != 2 or gray.size == 0:
        raise EmptyImageError("the image has zero size")
    sheet, turn = paper.sheet_and_turn(gray)
    gray = paper.even_lighting(sheet)
    paper_level = paper.paper_level(gray)
    # Every step below maps one grey level to one value, so it is computed once per level
    # (256 of them) and applied as a lookup table: the same numbers as per-pixel float
    # arithmetic, in two passes over the image instead of about ten.
    levels = np.arange(256, dtype=np.float32)
    distance = np.abs(levels - paper_level)
    darkest, brightest, _, _ = cv2.minMaxLoc(gray)
    peak = float(max(distance[int(darkest)], distance[int(brightest)]))
    if peak < 32:  # less contrast than faint pencil on paper: nothing is written
        return np.zeros(gray.shape, np.float32), turn
    dist_u8 = cv2.LUT(gray, (distance * (255.0 / peak)).astype(np.uint8))
    otsu, _ = cv2.threshold(dist_u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    # Below the floor is paper noise (grain, JPEG ringing); above `solid` is a full stroke.
    # Between the two the ramp keeps the soft, antialiased stroke edges the model knows.
    floor = max(otsu * 0.3, 12.0)
    if dist_u8.size < 1 << 24:  # cv2's histogram counts in float32: exact below 2**24
        counts = cv2.calcHist([dist_u8], [0], None, [256], [0, 256]).ravel().astype(np.int64)
    else:
        counts = np.bincount(dist_u8.ravel(), minlength=256)
    counts[: int(otsu) + 1] = 0  # the stroke levels: those above Otsu's threshold
    solid = percentile_of_levels(counts, 90) if counts.any() else 255.0
    ramp = np.clip((levels - floor) / max(solid - floor, 1.0), 0.0, 1.0)
    return cv2.LUT(dist_u8, ramp), turn


def percentile_of_levels(counts: np.ndarray, q: float) -> float:
    """`np.percentile` (its default, linear method) of the grey levels that `counts` holds
    (counts[v]: how many pixels are at level v), to the same float, read off the cumulative
    counts instead of sorting one value per pixel (a text line has ~10^5 stroke pixels)."""
    cumulative = np.cumsum(counts)
    n = int(cumulative[-1])
    index = (n - 1) * (q / 100)  # NumPy's virtual index and interpolation, step by step
    if index >= n - 1:
        return float(np.flatnonzero(counts)[-1])
    below = int(np.floor(index))
    gamma = index - below
    a, b = (int(v) for v in np.searchsorted(cumulative, (below, below + 1), side="right"))
    return float(b - (b - a) * (1 - gamma)) if gamma >= 0.5 else float(a + (b - a) * gamma)


def ink_components(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`ink_mask` and the connected components it was made from: (mask, labels, stats,
    kept), where kept[i] says whether component i of labels/stats (0: the paper) is in the
    mask. Text mode segments with them instead of labelling the same pixels again."""
    mask = (ink > MASK_LEVEL).astype(np.uint8)
    count, labels, stats = paper.label_components(mask)
    kept = rules.not_specks(stats)
    if kept[1:].all():  # no specks (the usual case): the threshold is the mask, no lookup
        return mask.view(bool), labels, stats, kept
    return kept[labels], labels, stats, kept


def ink_mask(ink: np.ndarray) -> np.ndarray:
    """Binary mask of a single character's ink: specks far smaller than the largest stroke
    are dropped, and so are the rules of ruled or squared paper and a box around the
    character (a form's character field), even one the character touches."""
    mask, labels, stats, kept = ink_components(ink)
    # Rules are looked for in fainter ink: a grey grid is only in places dark enough for
    # the mask, and those places alone are no straight runs.
    faint = ink > FAINT_FRAME if min(ink.shape) >= paper.PAGE_MIN_SIDE else None
    grid = rules.page_rules(faint) if faint is not None else None
    if grid is not None:
        written = np.where(rules.erase_rules(mask, grid, ink), ink, np.float32(0))
        written_components = ink_components(written)
        _, _, w, h = cv2.boundingRect(written_components[0].view(np.uint8))
        if 0 < w <= rules.PAGE_MARGIN * ink.shape[1] and 0 < h <= rules.PAGE_MARGIN * ink.shape[0]:
            # What is left is ink of the mask alone: the frame search goes on from it.
            ink, faint = written, None
            mask, labels, stats, kept = written_components
    not_writing = paper.edge_slivers(labels, stats, kept) + underlines.underlines(labels, stats, kept)
    if not_writing:
        kept = kept.copy()
        kept[not_writing] = False
        mask = kept[labels]
    if np.count_nonzero(kept) < 2:  # one piece of ink: a box can only be one the character touches
        return _without_ruled_frame(ink, mask)
    frames = rules.frames(labels, stats, kept)
    if frames:
        kept = kept.copy()
        kept[frames] = False
        return kept[labels]
    # A faint, thin box breaks into pieces at the mask's threshold; fainter ink joins them.
    faint = ink > FAINT_FRAME if faint is None else faint
    _, faint_labels, faint_stats = paper.label_components(faint.view(np.uint8))
    frames = rules.frames(faint_labels, faint_stats, rules.not_specks(faint_stats))
    if frames:
        return mask & ~np.isin(faint_labels, frames)
    # A dotted or dashed box is specks but at its corners, where its dashes meet.
    dotted = rules.dotted_frame(labels, stats)
    if dotted:
        kept = kept.copy()
        kept[dotted] = False
        mask = kept[labels]
    return _without_ruled_frame(ink, mask)


def _without_ruled_frame(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The mask less a box or a line the character touches (strokes that cross it bridged,
    as across rules), and less the specks that leaves."""
    frame = rules.ruled_frame(mask)
    if frame is None:
        frame = underlines.underline_touched(mask)
    if frame is None:
        return mask
    return ink_components(np.where(rules.erase_rules(mask, frame, ink), ink, np.float32(0)))[0]


def _as_u8(mask: np.ndarray) -> np.ndarray:
    """A mask as the uint8 image OpenCV wants; a bool mask is viewed, not copied."""
    return mask.view(np.uint8) if mask.dtype == bool else mask.astype(np.uint8, copy=False)


@functools.lru_cache(maxsize=64)
def _square_kernel(side: int) -> np.ndarray:
    return np.ones((side, side), np.uint8)


@functools.lru_cache(maxsize=64)
def _round_kernel(side: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width in pixels: twice the area over the contour length."""
    mask = _as_u8(mask)
    area = float(cv2.countNonZero(mask))
    if area == 0:
        return 0.0
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    perimeter = sum(cv2.arcLength(c, True) for c in contours)
    return 2.0 * area / max(perimeter, 1.0)


def tile_from_ink(ink: np.ndarray, mask: np.ndarray | None = None, turn: float = 0.0) -> np.ndarray:
    """Crop, thicken, centre and downsample an ink map into a 28x28 uint8 tile.

    `mask` is the character's `ink_mask` when the caller already has it (the worker does:
    it needs the box, and in text mode each character's own strokes). `turn`: degrees to
    turn the character by (counter-clockwise), to set it upright (`ink_and_turn`)."""
    mask = ink_mask(ink) if mask is None else mask
    x0, y0, w, h = cv2.boundingRect(_as_u8(mask))
    if w == 0 or h == 0:
        raise BlankImageError("no ink found in the image")
    side = max(w, h)
    char_mask = _as_u8(mask[y0:y0 + h, x0:x0 + w])
    # Specks are dropped, but the faint rim around kept strokes stays: it is part of them.
    # (Dilating inside the ink's box is exact: the mask is empty outside it.) Ink as dark
    # as the mask's that the mask left out (a speck, a box's line a stroke runs along, a
    # grid's rule, a neighbour's stroke) is no rim: it stays out (session 25: training-split
    # scans in a box they touch 81.7% -> 82.2%, on squared paper 89.1% -> 89.5%).
    window = ink[y0:y0 + h, x0:x0 + w]
    rim = max(1, int(round(side / INK_SPAN)))
    keep = cv2.dilate(char_mask, _square_kernel(2 * rim + 1)) & (window <= MASK_LEVEL) | char_mask
    # copyTo zero-fills the new array where `keep` is 0: np.where's result, in one pass.
    crop = cv2.copyTo(window.astype(np.float32, copy=False), keep)
    if turn:
        crop, char_mask = _turned(crop, char_mask, turn)
        side = max(crop.shape)
    if side > WORK_SIDE:
        # Thickening costs grow with the character's size to the fourth power: work at a
        # few times the tile's resolution instead (an 11 KB PNG of a 1,600 px thin circle
        # took 4 s, a 3,200 px one over a minute).
        size = (max(1, round(crop.shape[1] * WORK_SIDE / side)), max(1, round(crop.shape[0] * WORK_SIDE / side)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        char_mask = crop > MASK_LEVEL
        side = max(crop.shape)
    elif side < SMALL_SIDE:
        size = (round(crop.shape[1] * SMALL_TO / side), round(crop.shape[0] * SMALL_TO / side))
        # Cubic rings a little past 0 and 1; convertScaleAbs below would fold a ring below 0 into ink.
        crop = np.clip(cv2.resize(crop, (max(1, size[0]), max(1, size[1])), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)
        char_mask = crop > MASK_LEVEL
        side = max(crop.shape)
    scale = INK_SPAN / side
    width_in_tile = stroke_width(char_mask) * scale
    if width_in_tile < TARGET_STROKE:
        grow = int(round((TARGET_STROKE - width_in_tile) / scale))
        if grow >= 1:
            crop = cv2.dilate(cv2.copyMakeBorder(crop, grow, grow, grow, grow, cv2.BORDER_CONSTANT, value=0),
                              _round_kernel(grow + 1))
            side = max(crop.shape)
    # Centre in a square frame, then pad by 2/24 of it: EMNIST's 2 px margin.
    pad = int(round(side * 2 / INK_SPAN))
    frame = side + 2 * pad
    h, w = crop.shape
    top, left = (frame - h) // 2, (frame - w) // 2
    square = cv2.copyMakeBorder(crop, top, frame - h - top, left, frame - w - left, cv2.BORDER_CONSTANT, value=0)
    if frame > TILE:
        # EMNIST blurred before downsampling; INTER_AREA averages, which antialiases.
        tile = cv2.resize(square, (TILE, TILE), interpolation=cv2.INTER_AREA)
    else:
        tile = cv2.resize(square, (TILE, TILE), interpolation=cv2.INTER_LINEAR)
    peak = cv2.minMaxLoc(tile)[1]
    if peak <= 0:
        raise BlankImageError("no ink found in the image")
    # Stretch to 0..255 and round half to even, saturating: one OpenCV call does what
    # clip(tile * 255 / peak).round() does in four NumPy passes, to the same bytes.
    return cv2.convertScaleAbs(tile, alpha=255.0 / peak)


def _turned(crop: np.ndarray, mask: np.ndarray, turn: float) -> tuple[np.ndarray, np.ndarray]:
    """A character's ink and mask turned `turn` degrees about their centre (OpenCV's sign),
    cropped to the mask."""
    h, w = crop.shape
    side = int(np.ceil(np.hypot(h, w))) + 2
    top, left = (side - h) // 2, (side - w) // 2
    framed = [cv2.copyMakeBorder(a, top, side - h - top, left, side - w - left, cv2.BORDER_CONSTANT, value=0)
              for a in (crop, mask)]
    rotation = cv2.getRotationMatrix2D(((side - 1) / 2, (side - 1) / 2), turn, 1.0)
    crop = cv2.warpAffine(framed[0], rotation, (side, side), flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(framed[1], rotation, (side, side), flags=cv2.INTER_NEAREST)
    x0, y0, w, h = cv2.boundingRect(mask)
    return crop[y0:y0 + h, x0:x0 + w], mask[y0:y0 + h, x0:x0 + w]


def normalize_char(gray: np.ndarray) -> np.ndarray:
    """Any grayscale character image (either polarity, any size) to an upright 28x28 tile."""
    ink, turn = ink_and_turn(gray)
    return tile_from_ink(ink, turn=turn)


def bytes_to_tile(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Encoded image bytes to a tile; raises a PreprocessError subclass with a clear message."""
    return normalize_char(decode_image(data, max_pixels))


def emnist_upright(images: np.ndarray) -> np.ndarray:
    """EMNIST IDX files store each image transposed; swap the axes to see it upright."""
    return np.ascontiguousarray(np.swapaxes(images, -1, -2))


def normalize_tiles(tiles: np.ndarray) -> np.ndarray:
    """Run upright EMNIST-style tiles (N x 28 x 28, white on black) through `normalize_char`.

    Blank tiles stay blank. Training and evaluation use this so that the model sees
    exactly what the handler makes of a tile.
    """
    out = np.zeros_like(tiles, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        try:
            out[i] = normalize_char(tile)
        except BlankImageError:
            pass
    return out


def to_model_input(tiles: np.ndarray) -> np.ndarray:
    """uint8 N x 28 x 28 tiles to float32 N x 1 x 28 x 28 in 0..1 (the model normalizes)."""
    tiles = np.asarray(tiles)
    if tiles.ndim == 2:
        tiles = tiles[None]
    return (tiles.astype(np.float32) / 255.0)[:, None]


def load_npy_tiles(data: bytes, max_tiles: int) -> np.ndarray:
    """Parse a pre-normalized batch: an .npy uint8 array N x 28 x 28 (no pickles)."""
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:
        raise UndecodableImageError(f"cannot read .npy batch: {exc}") from None
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[1:] != (TILE, TILE):
        raise PreprocessError(
            f"an .npy batch must be uint8 N x {TILE} x {TILE}; got {arr.dtype} {arr.shape}")
    if len(arr) == 0:
        raise EmptyImageError("the .npy batch holds no tiles")
    if len(arr) > max_tiles:
        raise ImageTooLargeError(f"the .npy batch holds {len(arr)} tiles; the limit is {max_tiles}")
    return arr
