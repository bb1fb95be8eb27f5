"""What on an image is not writing: the paper's grey and uneven light, and the desk
around a photographed sheet (a form's boxes and the rules of ruled or squared paper are in
serve/rules.py, a line under the character in serve/underlines.py). Part of the ONE
preprocessing (serve/preprocess.py imports them, and the model archive ships them all), so
what training evaluation measures is what the handler and the workers serve.
"""
from __future__ import annotations

import cv2
import numpy as np

# Paper whose brightest edge is this many times its darkest (+16 levels, against noise
# on dark paper) is lit unevenly: scanned paper varies by a few levels, a phone photo's
# corners or a shadow by a third or more; 1.1 is 24 levels below white.
UNEVEN_PAPER = 1.1
# Shade leaves paper at 40% of its brightness or more; ink on an edge is darker.
INK_NOT_SHADE = 0.4
# Levels between the paper and a grey rule along the image's edge, at least.
RULE_CONTRAST = 32
# Smaller, an image holds no paper around its character: a 28 px tile's bold bar is no rule.
PAGE_MIN_SIDE = 48
# A photo of a sheet on a desk: at least SHEET_BORDER of the image's border is darker than
# the sheet, which covers SHEET_AREA of the image and SHEET_FILL of its bounding box (or,
# lying turned, of the least rectangle around it).
SHEET_BORDER = 0.9
SHEET_AREA = 0.2
SHEET_FILL = 0.75
# A small sheet photographed from afar, down to SMALL_SHEET_AREA of the image, is taken for
# one only if its outline is a convex quadrilateral (within SHEET_OUTLINE of its perimeter):
# a bold light letter that fills its box has a bowl, a notch or a slant.
SMALL_SHEET_AREA = 0.02
SHEET_OUTLINE = 0.02
# A desk along only some edges of the photo: a dark piece of one even grey (no writing on
# it: a shadow over the writing has ink inside it), along DESK_EDGE of a side of the image
# and DESK_THICK times as thick as the writing's strokes, or with an inner edge within
# DESK_STRAIGHT px of a straight line along DESK_FULL_SIDE of a side, or from a corner
# along DESK_CORNER of it (a sheet turned in the photo leaves wedges of desk).
DESK_EDGE = 0.5
DESK_CORNER = 0.25
DESK_THICK = 1.5
DESK_FULL_SIDE = 0.98
DESK_STRAIGHT = 1.0
# A sheet turned in the photo can leave, beside its wedges of desk, slivers of its blurred
# edge along the photo's sides, too faint for the desk and dark enough for ink. A piece
# along SLIVER_ALONG of a side it touches, less than SLIVER_THIN as thick as the
# writing's largest piece, is such a sliver (a tight crop's strokes on its edge are as
# thick as the rest of the writing).
SLIVER_ALONG = 0.25
SLIVER_THIN = 0.6
# A sheet lying turned shows it in its straight edges against the desk. A turn is read when
# each piece's edges (at least TURN_EDGE of the photo's shorter side long) run one way
# (TURN_ONE_WAY: the length of their mean direction, 1 for one straight line), the pieces
# agree within TURN_AGREE degrees, and char mode sets the character upright by it when it is
# MIN_TURN to MAX_TURN degrees (a sheet turned further is turned on purpose, or is no sheet).
TURN_EDGE = 0.15
TURN_ONE_WAY = 0.8
TURN_AGREE = 3.0
MIN_TURN, MAX_TURN = 2.0, 30.0
# Edges are measured in a photo shrunk to about this many px on its shorter side.
TURN_SIDE = 400


def label_components(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """8-connected components of a uint8 mask: (count, labels, stats), as OpenCV's
    connectedComponentsWithStats. Grana's block-based algorithm gives the same components
    with their statistics 1.5-2.7x faster than OpenCV's default (a 64-character line: 2.3 ->
    0.9 ms), and text mode labels every line it reads."""
    count, labels, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(mask, 8, cv2.CV_32S, cv2.CCL_GRANA)
    return count, labels, stats


def median_of_levels(levels: np.ndarray):
    """np.median of uint8 grey levels (of a 1-D array, or of each row of a 2-D one), to the
    same float64s: the middle one or two of a partition, without np.median's generic
    machinery, which cost every character job about a tenth of its worker's Python time."""
    n = levels.shape[-1]
    if levels.dtype != np.uint8 or n == 0:
        return np.median(levels, axis=-1)
    middle = n // 2
    part = np.partition(levels, (middle - 1, middle) if n % 2 == 0 else middle, axis=-1)
    upper = part[..., middle].astype(np.float64)
    result = upper if n % 2 else (part[..., middle - 1] + upper) / 2
    return float(result) if result.ndim == 0 else result


def paper_level(gray: np.ndarray) -> float:
    """The paper's grey level: the median of the image's border, the paper being what
    surrounds the writing. On squared paper a rule can run along an edge, and rules can
    then be most of the border. Their level lies between the paper's and the ink's: when the
    image holds ink beyond the border's median on one side, a tenth of the border or more
    lies beyond it on the other (RULE_CONTRAST levels or further, both), and the whole image
    holds more pixels near that tenth's level than near the median's, the paper is there.
    (A tight crop's ink on its border lies beyond the paper on the ink's own side: nothing
    is beyond the paper on the other.)"""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    level = median_of_levels(border)
    brighter, darker = border[border > level + RULE_CONTRAST], border[border < level - RULE_CONTRAST]
    if max(len(brighter), len(darker)) < 0.1 * len(border):  # the usual case: one paper level
        return level
    counts = np.bincount(gray.ravel(), minlength=256).cumsum()

    def pixels(low: float, high: float) -> int:  # in the image, at levels low..high
        low, high = max(int(np.ceil(low)), 0), min(int(np.floor(high)), 255)
        return int(counts[high] - (counts[low - 1] if low > 0 else 0)) if high >= low else 0

    def near(value: float) -> int:
        return pixels(value - RULE_CONTRAST / 2, value + RULE_CONTRAST / 2)

    ink_floor = 0.005 * gray.size
    for side, ink_beyond in ((brighter, pixels(0, level - RULE_CONTRAST - 1)),
                             (darker, pixels(level + RULE_CONTRAST + 1, 255))):
        if len(side) >= 0.1 * len(border) and ink_beyond >= ink_floor:
            candidate = median_of_levels(side)
            if near(candidate) > near(level):
                return candidate
    return level


def _edge_quarters(gray: np.ndarray) -> list[float]:
    """Median grey level of each quarter of each image edge (16 values): a vignette darkens
    the corners' quarters, a shadow or a gradient one side's."""
    height, width = gray.shape
    rows = gray[[0, -1], :width // 4 * 4].reshape(8, -1)
    columns = gray[:height // 4 * 4, [0, -1]].T.reshape(8, -1)
    return median_of_levels(rows).tolist() + median_of_levels(columns).tolist()


def even_lighting(gray: np.ndarray) -> np.ndarray:
    """Paper of one brightness: unevenly lit paper (a phone photo's vignette, a page half
    in shadow) divided by its own brightness; evenly lit paper returned as it is.

    The paper's brightness is the image closed (dark ink) or opened (light ink): a closing
    removes dark shapes narrower than its window and keeps slow gradients and a shadow's
    edge where they are. The window must be wider than the strokes but narrower than a
    band of shadow, so it is chosen by measurement: windows double until what they remove
    stops growing (the strokes are gone). Whether the lighting is uneven at all is read
    from the medians of the edges' quarters, so ink touching an edge of a tight crop does
    not count as shadow, nor does a quarter so dark that it must be ink.
    """
    height, width = gray.shape
    if min(height, width) < 16:
        return gray
    quarters = _edge_quarters(gray)
    # Light paper if any edge is light: shade may cover most of the edges, but not all.
    dark_ink = max(quarters) >= 128
    # Quarters far darker (lighter, on dark paper) than the rest are ink, not shade.
    if dark_ink:
        paper_quarters = [q for q in quarters if q >= INK_NOT_SHADE * max(quarters)]
    else:
        paper_quarters = [q for q in quarters if INK_NOT_SHADE * (q + 16) <= min(quarters) + 16]
    darkest, brightest = min(paper_quarters), max(paper_quarters)
    if brightest + 16 < UNEVEN_PAPER * (darkest + 16):
        return gray
    # Strokes stay at least ~3 px wide at this resolution (the short side keeps 96+ px).
    shrink = max(1, min(height, width) // 96)
    small = cv2.resize(gray, (max(1, width // shrink), max(1, height // shrink)), interpolation=cv2.INTER_AREA)
    operation = cv2.MORPH_CLOSE if dark_ink else cv2.MORPH_OPEN
    widest = min(small.shape) // 2
    paper, removed, side = small, 0, 3
    while side <= widest:
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (side, side))
        closed = cv2.morphologyEx(small, operation, kernel, borderType=cv2.BORDER_REPLICATE)
        # Counting only clear changes keeps paper grain, which any window removes, out.
        now = cv2.countNonZero(cv2.compare(cv2.absdiff(closed, small), 24, cv2.CMP_GT))
        if removed and now <= 1.2 * removed:  # a plateau: only the strokes were removed
            paper = closed
            break
        paper, removed, side = closed, now, 2 * side + 1
    paper = cv2.resize(paper, (width, height), interpolation=cv2.INTER_LINEAR)
    # Light dims ink and paper alike (for chalk on a board too): divide it out, keeping
    # the paper at its usual level. Near-black paper is floored so noise is not magnified.
    return cv2.divide(gray, np.maximum(paper, 16), scale=255 if dark_ink else float(np.median(quarters)))


def on_the_sheet(gray: np.ndarray) -> np.ndarray:
    """`sheet_and_turn` without the turn."""
    return sheet_and_turn(gray)[0]


def sheet_and_turn(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """A photo of a sheet of paper with the desk around it, or along some of its edges: the
    desk painted the paper's grey, so the paper is what surrounds the writing (the image
    keeps its size, and boxes their coordinates), and the degrees that would set the sheet
    straight, read off its straight edges (`_turn_of_edges`; 0.0 when none shows a turn).
    Anything else is returned as it is, with 0.0.

    All around: the sheet is a light piece, at least SHEET_AREA of the image, that fills
    SHEET_FILL of its bounding box and has dark writing inside it, in an image whose border
    is mostly dark. Light strokes on a dark ground (EMNIST's own tiles) fill little of
    their box. Along some edges: see `_desk_along_edges`."""
    height, width = gray.shape
    if min(height, width) < PAGE_MIN_SIDE:
        return gray, 0.0
    sides = (gray[0], gray[-1], gray[:, 0], gray[:, -1])
    border = np.concatenate(sides)
    # Cheap first: a desk is darker than the middle of the picture, where the sheet is, or
    # than the lightest of it, where a small sheet lies.
    middle = median_of_levels(gray[height // 4:height - height // 4:4, width // 4:width - width // 4:4].ravel())
    desk_level = median_of_levels(border)
    if desk_level + 32 > middle:
        sample = gray[::4, ::4]
        if np.count_nonzero(sample > desk_level + 32) < 0.01 * sample.size:
            if all(np.count_nonzero(side.astype(np.float32) + 32 <= middle) < DESK_EDGE * side.size
                   for side in sides):
                return gray, 0.0
            return _desk_along_edges(gray)
    level, light = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    if np.mean(border > level) > 1 - SHEET_BORDER:  # the border is mostly light: no desk all around
        return _desk_along_edges(gray)
    count, labels, stats = label_components(light)
    if count < 2:
        return gray, 0.0
    sheet = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h, area = (int(v) for v in stats[sheet])
    if area < SMALL_SHEET_AREA * height * width:
        return gray, 0.0
    inside = (labels[y:y + h, x:x + w] == sheet).astype(np.uint8)
    small, turned = area < SHEET_AREA * height * width, area < SHEET_FILL * w * h
    if small or turned:
        contours, _ = cv2.findContours(inside, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        if small and not _four_sided(contours):
            return gray, 0.0
        if turned:  # a sheet lying turned fills less of its box: of its own rectangle, then
            _, (long, short), _ = cv2.minAreaRect(np.concatenate(contours))
            if area < SHEET_FILL * long * short:
                return gray, 0.0
    # The writing: dark pixels the sheet encloses (its holes).
    outside = np.pad(inside, 1)
    cv2.floodFill(outside, None, (0, 0), 2)
    holes = np.count_nonzero(outside[1:-1, 1:-1] == 0)
    if holes == 0:
        return gray, 0.0
    paper = float(np.median(gray[labels == sheet]))
    within = outside[1:-1, 1:-1] != 2
    sheet_and_writing = np.zeros_like(light)
    sheet_and_writing[y:y + h, x:x + w] = within
    turn = _turn_of_edges([(within, x, y)], gray.shape)
    return np.where(sheet_and_writing.view(bool), gray, np.uint8(round(paper))), turn


def _four_sided(contours: tuple) -> bool:
    """Whether a piece's outline (its outer contours) is a convex quadrilateral: a sheet,
    level or turned."""
    outline = max(contours, key=cv2.contourArea)
    corners = cv2.approxPolyDP(outline, SHEET_OUTLINE * cv2.arcLength(outline, True), True)
    return len(corners) == 4 and cv2.isContourConvex(corners)


def _thickness(labels: np.ndarray, stats: np.ndarray, c: int) -> float:
    """The radius of the largest disc inside component c."""
    x, y, w, h = (int(v) for v in stats[c, :4])
    piece = (labels[y:y + h, x:x + w] == c).view(np.uint8)
    return float(cv2.distanceTransform(np.pad(piece, 1), cv2.DIST_L2, 3).max())


def _desk_along_edges(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """The desk painted the sheet's grey where it shows along some edges of the photo.

    Desk: a dark piece (Otsu) of one even grey (a shadow dark enough to pass for ink has
    the writing's strokes inside it, darker still), that either runs along DESK_EDGE of a
    side of the image DESK_THICK times as thick as the writing's strokes (the thickest
    point of each dark piece clear of the border, their median), or has a straight inner
    edge (the sheet's edge; a handwritten stroke wobbles) along a whole side or from a
    corner along DESK_CORNER of one (a wedge: the sheet is turned in the photo). A
    stroke along the edge of a tight crop is neither, and a crop whose writing all
    touches the border holds no stroke to compare with: both stay."""
    height, width = gray.shape
    level, dark = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    count, labels, stats = label_components(dark)
    x, y, w, h, area = (stats[1:, k] for k in range(5))
    at_edge = (x == 0) | (y == 0) | (x + w == width) | (y + h == height)
    clear = np.flatnonzero(~at_edge & (area >= 4)) + 1
    long_side = np.maximum(w * ((y == 0) | (y + h == height)) / width, h * ((x == 0) | (x + w == width)) / height)
    candidates = np.flatnonzero(at_edge & (long_side >= DESK_CORNER)) + 1
    if not len(clear) or not len(candidates):
        return gray, 0.0

    largest = clear[np.argsort(stats[clear, cv2.CC_STAT_AREA])[-16:]]
    stroke = max(1.0, float(np.median([_thickness(labels, stats, c) for c in largest])))
    desk = np.zeros(gray.shape, np.uint8)
    edged = []  # desk pieces with a straight edge: the sheet's, which shows its turn
    for c in candidates:
        cx, cy, cw, ch = (int(v) for v in stats[c, :4])
        region = labels[cy:cy + ch, cx:cx + cw] == c
        # Per side of the image the piece touches: its pixels from that side inwards, the
        # rows from the corner it reaches (if it reaches one) on.
        top, bottom, left, right = cy == 0, cy + ch == height, cx == 0, cx + cw == width
        inwards = [(side, band[::-1] if flip else band, corner) for side, touches, band, flip, corner in (
            (width, top, region.T, right and not left, left or right),
            (width, bottom, region.T[:, ::-1], right and not left, left or right),
            (height, left, region, bottom and not top, top or bottom),
            (height, right, region[:, ::-1], bottom and not top, top or bottom)) if touches]
        along = max(np.count_nonzero(band[:, 0]) / side for side, band, _ in inwards)
        if along < DESK_CORNER:
            continue
        thick = along >= DESK_EDGE and _thickness(labels, stats, c) >= DESK_THICK * stroke
        straight = any(_straight_band(band, side, corner) for side, band, corner in inwards)
        if not (thick or straight):
            continue
        greys = gray[cy:cy + ch, cx:cx + cw][region]
        if np.count_nonzero(greys.astype(np.float32) + 32 < np.median(greys)) > 0.005 * greys.size:
            continue  # darker strokes inside: writing in a shadow, not a desk
        desk[cy:cy + ch, cx:cx + cw] |= region.view(np.uint8)
        if straight:
            edged.append((region, cx, cy))
    if not desk.any():
        return gray, 0.0
    # The sheet's edge is blurred: the grey between desk and paper goes with the desk.
    reach = 2 * int(np.ceil(stroke)) + 1
    desk = cv2.dilate(desk, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (reach, reach)))
    paper = float(np.median(gray[(dark == 0) & (desk == 0)]))
    return np.where(desk.view(bool), np.uint8(round(paper)), gray), _turn_of_edges(edged, gray.shape)


def _turn_of_edges(pieces: list[tuple[np.ndarray, int, int]], shape: tuple[int, int]) -> float:
    """The degrees that set a sheet lying turned in a photo straight (for OpenCV's
    getRotationMatrix2D: counter-clockwise as shown), from the straight edges between it
    and the desk: the direction of each piece's edges inside the photo (`pieces`: masks of
    desk or sheet, each with the photo's x and y of its top left corner; `shape`: the
    photo's), taken modulo 90 degrees so that edges along and across the sheet agree (a
    wedge's one edge, an L of desk along two sides, a whole sheet's four). 0.0 unless each
    piece's edges run one way (TURN_ONE_WAY), the pieces agree within TURN_AGREE degrees,
    and the turn is MIN_TURN to MAX_TURN degrees."""
    turns, weights = [], []
    shrink = max(1, min(shape) // TURN_SIDE)
    for piece, x, y in pieces:
        # Framed with what lies around it: more of itself past the photo's edges (no edge
        # there), nothing elsewhere.
        h, w = piece.shape
        top, bottom, left, right = y > 0, y + h < shape[0], x > 0, x + w < shape[1]
        piece = piece.astype(np.float32)
        if shrink > 1:  # a turn is the same at any scale
            h, w = max(1, h // shrink), max(1, w // shrink)
            piece = cv2.resize(piece, (w, h), interpolation=cv2.INTER_AREA)
        piece = np.pad(piece, 4, mode="edge")
        for inner, side in ((top, piece[:4]), (bottom, piece[-4:]), (left, piece[:, :4]), (right, piece[:, -4:])):
            if inner:
                side[:] = 0
        soft = cv2.GaussianBlur(piece, (0, 0), 1.5, borderType=cv2.BORDER_REPLICATE)
        across, down = (cv2.Sobel(soft, cv2.CV_32F, dx, 1 - dx, ksize=3, borderType=cv2.BORDER_REPLICATE)
                        for dx in (1, 0))
        # Past the photo's edges the piece's last row or column runs on: no edge of it.
        rows = slice(0 if top else 4, h + (8 if bottom else 4))
        columns = slice(0 if left else 4, w + (8 if right else 4))
        across, down = across[rows, columns], down[rows, columns]
        strength = np.hypot(across, down)
        total = float(strength.sum())
        if total < TURN_EDGE * min(shape) / shrink:  # about that many px of edge
            continue
        edge = strength > 0.01
        # Each pixel's edge direction, four times over: directions 90 degrees apart coincide.
        way = np.sum(strength[edge] * np.exp(4j * np.arctan2(down[edge], across[edge])))
        if abs(way) < TURN_ONE_WAY * total:
            continue
        turns.append(float(np.degrees(np.angle(way))) / 4)
        weights.append(total)
    if not turns or max(turns) - min(turns) > TURN_AGREE:
        return 0.0
    turn = float(np.average(turns, weights=weights))
    return turn if MIN_TURN <= abs(turn) <= MAX_TURN else 0.0


def _straight_band(band: np.ndarray, side: int, corner: bool) -> bool:
    """Whether a piece's pixels, each row counted inwards from one side of the image
    (`side` rows long), run along all of it, or from a corner (`corner`: band row 0 is at
    one) along DESK_CORNER of it, with a straight inner edge (within DESK_STRAIGHT px of a
    line: a sheet's edge, level or turned: a turned sheet leaves a wedge of desk in a
    corner). Rows where a band along the next side crosses (a corner of the desk) do not
    count."""
    covered = np.count_nonzero(band[:, 0])
    if len(band) >= DESK_FULL_SIDE * side and covered >= DESK_FULL_SIDE * side:
        rows = len(band)
    elif corner and covered >= DESK_CORNER * side and band[:covered, 0].all():
        rows = covered
    else:
        return False
    depth = np.where(band[:rows].all(axis=1), band.shape[1], np.argmin(band[:rows], axis=1)).astype(np.float64)
    index = np.arange(rows, dtype=np.float64)
    inside = depth <= 2 * np.median(depth) + 2
    if np.count_nonzero(inside) < 0.6 * rows:
        return False
    slope, start = np.polyfit(index[inside], depth[inside], 1)
    return float(np.std(depth[inside] - (slope * index[inside] + start))) <= DESK_STRAIGHT


def edge_slivers(labels: np.ndarray, stats: np.ndarray, kept: np.ndarray) -> list[int]:
    """Kept components that are slivers of a turned sheet's edge along the photo's sides
    (see SLIVER_ALONG): long along a side they touch, thin beside the largest piece."""
    ids = np.flatnonzero(kept)
    if len(ids) < 2:
        return []
    height, width = labels.shape
    x, y, w, h = (stats[ids, k] for k in range(4))
    along = np.maximum(np.where((x == 0) | (x + w == width), h / height, 0),
                       np.where((y == 0) | (y + h == height), w / width, 0))
    largest = int(ids[np.argmax(stats[ids, cv2.CC_STAT_AREA])])
    candidates = [int(c) for c in ids[along >= SLIVER_ALONG] if c != largest]
    if not candidates:  # the usual case: nothing runs along a side
        return []
    stroke = _thickness(labels, stats, largest)
    return [c for c in candidates if _thickness(labels, stats, c) < SLIVER_THIN * stroke]
