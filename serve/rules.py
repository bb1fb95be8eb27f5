"""What on an image is lines, not writing: a form's boxes (around a character, or one
the character touches or crosses, or dotted) and the rules of ruled or squared paper,
found and erased. Part of the ONE preprocessing with serve/preprocess.py, serve/paper.py
and serve/underlines.py (the model archive ships them all).
"""
from __future__ import annotations

import cv2
import numpy as np

# A frame around a character keeps this share of its ink within FRAME_BAND of the side of
# its bounding box (a drawn rectangle: all of it; a round O: a small part).
FRAME_SHARE = 0.8
FRAME_BAND = 0.08
# A box the character touches or crosses is one piece of ink with it. It is found as
# straight runs of ink at least FRAME_RUN of the ink's width (height) long, along all four
# sides of a rectangle, each side covered for FRAME_SIDE of its length.
FRAME_RUN = 0.5
FRAME_SIDE = 0.8
# Its lines are at most FRAME_THIN of its shorter side thick, and that side at least
# FRAME_MIN_SIDE px: smaller, a box cannot be told from a bold stroke's outline.
FRAME_THIN = 0.25
FRAME_MIN_SIDE = 24
# A stroke that sticks out past the box takes a side's ends past its corners: such a box
# is found by its corners, if its lines are at most FRAME_THIN_CORNERED of its shorter side
# thick (thicker, a small bold o's arcs would pass for one).
FRAME_THIN_CORNERED = 0.15
# Most (this share) of the ink left once a box's lines go lies inside the box.
FRAME_HOLDS = 0.5
# Ruled or squared paper: straight runs across PAGE_RULE of the image's width (height)
# are rules. They are erased when what is left fits in PAGE_MARGIN of the image each way
# (a character on paper; a tight crop of a T keeps its bar), and strokes that cross them
# (or a box's lines) keep their pixels on them where ink lies within RULE_BRIDGE px on
# both sides.
PAGE_RULE = 0.9
PAGE_MARGIN = 0.8
RULE_BRIDGE = 7
# Grey rules (squared paper, a printed form's grey boxes) are fainter than the writing:
# where the writing's ink is at least GREY_RULE times the rules' own, a pixel on a rule
# that is darker than halfway between the two is a stroke crossing it, and stays.
GREY_RULE = 1.5
# A rule is at most this share of the image's shorter side thick (4 px at least).
PAGE_RULE_THIN = 0.03
# A piece of ink under SPECK of the largest (or under 3 px) is a speck, not writing.
SPECK = 0.02
# A dotted or dashed box: at least DOTTED_PIECES pieces of ink, each under DOTTED_SMALL of
# the largest, that, closed across gaps of twice their typical size along its sides, make a
# frame (`frames`) around the writing.
DOTTED_PIECES = 12
DOTTED_SMALL = 0.1


def frames(labels: np.ndarray, stats: np.ndarray, kept: np.ndarray) -> list[int]:
    """Kept components that frame the others: each encloses another kept component and
    keeps at least FRAME_SHARE of its ink along the sides of its bounding box. A form's
    character box is one; a handwritten O, even one with a speck inside, is not."""
    ids = np.flatnonzero(kept)
    if len(ids) < 2:
        return []
    left, top = stats[ids, cv2.CC_STAT_LEFT], stats[ids, cv2.CC_STAT_TOP]
    right, bottom = left + stats[ids, cv2.CC_STAT_WIDTH], top + stats[ids, cv2.CC_STAT_HEIGHT]
    frames = []
    for i, c in enumerate(ids):
        if not ((left > left[i]) & (top > top[i]) & (right < right[i]) & (bottom < bottom[i])).any():
            continue
        width, height = right[i] - left[i], bottom[i] - top[i]
        band = max(2, round(FRAME_BAND * min(width, height)))
        inner = labels[top[i] + band:bottom[i] - band, left[i] + band:right[i] - band] == c
        area = int(stats[c, cv2.CC_STAT_AREA])
        if area - np.count_nonzero(inner) >= FRAME_SHARE * area:
            frames.append(int(c))
    return frames


def not_specks(stats: np.ndarray) -> np.ndarray:
    """Which components of `stats` (OpenCV's, 0: the background) are no specks (SPECK)."""
    kept = np.zeros(len(stats), bool)
    if len(stats) > 1:
        areas = stats[1:, cv2.CC_STAT_AREA]
        kept[1:] = areas >= max(3, SPECK * areas.max())
    return kept


def dotted_frame(labels: np.ndarray, stats: np.ndarray) -> list[int]:
    """Components (specks included) of a dotted or dashed box around the writing: its
    small pieces (under DOTTED_SMALL of the largest), with the gaps between them closed
    along the box's sides, make a frame (`frames`) that encloses the rest."""
    count = len(stats)
    if count - 1 < DOTTED_PIECES:
        return []
    areas = stats[:, cv2.CC_STAT_AREA]
    small = np.flatnonzero(areas[1:] < DOTTED_SMALL * areas[1:].max()) + 1
    if len(small) < DOTTED_PIECES:
        return []
    sizes = np.maximum(stats[small, cv2.CC_STAT_WIDTH], stats[small, cv2.CC_STAT_HEIGHT])
    reach = 2 * int(np.median(sizes)) + 1
    dots = np.isin(labels, small).view(np.uint8)
    # Along the box's sides only, and the writing left out: it must not join the box.
    closed = (cv2.morphologyEx(dots, cv2.MORPH_CLOSE, np.ones((1, reach), np.uint8))
              | cv2.morphologyEx(dots, cv2.MORPH_CLOSE, np.ones((reach, 1), np.uint8)))
    closed[(labels > 0) & (dots == 0)] = 1
    _, closed_labels, closed_stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    found = frames(closed_labels, closed_stats, not_specks(closed_stats))
    if not found:
        return []
    return [int(c) for c in np.unique(labels[np.isin(closed_labels, found)]) if c > 0]


def ruled_frame(mask: np.ndarray) -> np.ndarray | None:
    """The lines (uint8) of a rectangle of straight runs in the mask (a printed box that
    the character may touch or cross), or None. Runs of the character's own strokes inside
    the rectangle are not its pixels; a rectangle with nothing else is the character."""
    mask8 = mask.view(np.uint8)
    x0, y0, w, h = cv2.boundingRect(mask8)
    if min(w, h) < 12:
        return None
    m = mask8[y0:y0 + h, x0:x0 + w]
    run_w, run_h = int(FRAME_RUN * w), int(FRAME_RUN * h)
    # Cheap first, and enough for nearly every character: a rectangle needs two rows and
    # two columns this full of ink, far apart.
    rows = np.flatnonzero(cv2.reduce(m, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel() >= run_w)
    cols = np.flatnonzero(cv2.reduce(m, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel() >= run_h)
    if len(rows) < 2 or len(cols) < 2 or rows[-1] - rows[0] < run_h or cols[-1] - cols[0] < run_w:
        return None
    across = cv2.morphologyEx(m, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (run_w, 1)))
    down = cv2.morphologyEx(m, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (1, run_h)))
    ys, xs = np.flatnonzero(across.any(axis=1)), np.flatnonzero(down.any(axis=0))
    if len(ys) < 2 or len(xs) < 2:
        return None
    top, bottom, left, right = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
    if bottom - top < run_h or right - left < run_w:
        return None
    short = min(right - left, bottom - top)
    if short < FRAME_MIN_SIDE:
        return None
    # Each side: a line of straight runs along most of it, thin for the rectangle's size
    # (a bold stroke's outline is as thick as the stroke). A stroke of the character
    # may stick out past the box, so the line is the outermost run of rows (columns)
    # within the quarter next to the side that covers most of it, not the outermost row.
    near = max(3, short // 4)
    frame = np.zeros_like(m)
    bands = lambda a: _side_bands(a, top, bottom, left, right, near)  # noqa: E731
    runs_along = bands(across)[:2] + bands(down)[2:]  # a side's line is a run along it
    firsts = []  # per side: the row (from the outer edge in) where its line begins
    for runs in runs_along:
        # Three rows together hold a thin line that a scan's slight skew spreads over two.
        starts = np.flatnonzero((runs[:-2] | runs[1:-1] | runs[2:]).mean(axis=1) >= FRAME_SIDE)
        if not len(starts):
            return None
        firsts.append(int(starts[0]))
    # The box's corners, as positions along each side: where the lines across it lie.
    ends = ((firsts[2], right - left - 1 - firsts[3]),) * 2 + ((firsts[0], bottom - top - 1 - firsts[1]),) * 2
    reach, cornered, thickness, begins_at = [], [], [], []
    for runs, ink, first, (start, end) in zip(runs_along, bands(m), firsts, ends):
        line = runs[first:]
        # The line's thickness at each position: its run of rows from where it begins (in
        # the first three); the lower quartile, where no stroke runs along it, counts.
        begins = np.argmax(line[:3], axis=0)
        on_line = line[:3].any(axis=0)
        begins_at.append(begins)
        corner = max(3, len(on_line) // 25)
        reach.append(on_line[:corner].any() and on_line[-corner:].any())
        # The box's own corners are looked for in the ink, not the runs: a thin line broken
        # near a corner leaves a stub there too short to be a run.
        corner = max(3, (end - start + 1) // 25)
        on_ink = ink[first:first + 3].any(axis=0)
        cornered.append(on_ink[start:start + corner].any() and on_ink[max(start, end - corner + 1):end + 1].any())
        thick = np.zeros(line.shape[1], np.int64)
        for offset in range(3):
            here = on_line & (begins == offset)
            thick[here] = np.cumprod(line[offset:, here], axis=0, dtype=np.uint8).sum(axis=0)
        thickness.append(int(np.percentile(thick[on_line], 25)))
    # A box's sides meet in corners: each side's line reaches the ink's ends (an O's
    # flattest arcs stop short of them), or, where a stroke sticks out past the box (a 7's
    # bar above it), the lines across it, and those lines are thin (FRAME_THIN_CORNERED).
    thin = FRAME_THIN
    if not all(reach):
        if not all(cornered):
            return None
        thin = FRAME_THIN_CORNERED
    if max(thickness) > max(2, thin * short):
        return None
    # Each side's line is as thick as its thin stretches, from where it begins at each
    # position: a stroke running along its inner edge keeps what lies past that (erasing
    # two rows more, as until session 25, read 1.6 points worse on training-split scans).
    for runs, frame_side, first, begins, thick in zip(runs_along, bands(frame), firsts, begins_at, thickness):
        row = np.arange(runs.shape[0])[:, None] - first - begins[None, :]
        frame_side |= runs & ((row >= 0) & (row < thick))
    inner = erase_rules(m.view(bool), frame)
    inside = np.count_nonzero(inner[top:bottom, left:right])
    # A box holds its character: a stroke may cross it, but most of what is left lies
    # inside. (A b's square bowl, with its stem above, is no box.)
    if inside < 0.05 * np.count_nonzero(m) or inside < FRAME_HOLDS * np.count_nonzero(inner):
        return None
    full = np.zeros(mask.shape, np.uint8)
    full[y0:y0 + h, x0:x0 + w] = frame
    return full


def _side_bands(a: np.ndarray, top: int, bottom: int, left: int, right: int, near: int) -> tuple:
    """Views of `a` along a rectangle's four sides (top, bottom, left, right), `near` deep:
    rows from the side's outer edge in, a column per position along the side (writing to
    a view writes to `a`)."""
    return (a[top:top + near, left:right], a[bottom - near:bottom, left:right][::-1],
            a[top:bottom, left:left + near].T, a[top:bottom, right - near:right].T[::-1])


def erase_rules(mask: np.ndarray, rules: np.ndarray, ink: np.ndarray | None = None, widen: bool = True) -> np.ndarray:
    """The mask less its rules (uint8 runs found by opening it), one pixel wider (`widen`;
    a line found with its rim, underlines.line_band, is as wide as it is), except where a
    stroke crosses them: ink within RULE_BRIDGE px on both sides of a horizontal
    rule (above and below) or of an upright one (left and right), and, given the `ink`
    map, ink on a grey rule clearly darker than the rule (see GREY_RULE)."""
    on_rules = rules > 0
    if widen:
        rules = cv2.dilate(rules, np.ones((3, 3), np.uint8))
    rest = mask.astype(np.uint8) & (1 - rules)
    bridged = np.zeros_like(rest)
    for kernel in (np.ones((RULE_BRIDGE, 1), np.uint8), np.ones((1, RULE_BRIDGE), np.uint8)):
        before = cv2.dilate(rest, kernel, anchor=(kernel.shape[1] - 1, kernel.shape[0] - 1))  # ink above (left)
        after = cv2.dilate(rest, kernel, anchor=(0, 0))  # ink below (right)
        bridged |= before & after
    if ink is not None and rest.any() and on_rules.any():
        # Medians: strokes cross a rule at few of its pixels, and rules' rims are off `rest`.
        rule_level = float(np.median(ink[on_rules]))
        stroke_level = float(np.median(ink[rest.view(bool)]))
        if stroke_level >= GREY_RULE * rule_level:
            bridged |= (ink > 0.5 * (rule_level + stroke_level)).view(np.uint8)
    return mask & ~(rules & (1 - bridged)).astype(bool)


def page_rules(mask: np.ndarray) -> np.ndarray | None:
    """Thin straight runs across (nearly) the whole image, as uint8, or None: the rules of
    ruled or squared paper. One clear of the image's edges is needed: the bar of a T
    cropped tight runs along an edge. A stroke that spans the image is thicker than a rule.
    `mask`: bool, at least paper.PAGE_MIN_SIDE px each way (smaller holds no paper around its
    character)."""
    mask8 = mask.view(np.uint8)
    height, width = mask8.shape
    thin = max(4, round(PAGE_RULE_THIN * min(height, width)))
    rules, inside = np.zeros_like(mask8), False
    for axis, length in ((1, width), (0, height)):  # rows (runs across), then columns
        # Cheap first: no row (column) that full of ink, no rule across the page.
        if cv2.reduce(mask8, axis, cv2.REDUCE_SUM, dtype=cv2.CV_32S).max() < PAGE_RULE * length:
            continue
        run = int(np.ceil(PAGE_RULE * length))
        runs = cv2.morphologyEx(mask8, cv2.MORPH_OPEN, cv2.getStructuringElement(
            cv2.MORPH_RECT, (run, 1) if axis == 1 else (1, run)))
        on = np.flatnonzero(runs.any(axis=axis))
        for line in np.split(on, np.flatnonzero(np.diff(on) > 1) + 1):
            if 0 < len(line) <= thin:
                lines = slice(line[0], line[-1] + 1)
                if axis == 1:
                    rules[lines] |= runs[lines]
                else:
                    rules[:, lines] |= runs[:, lines]
                inside |= bool(0 < line[0] and line[-1] < (height if axis == 1 else width) - 1)
    return rules if inside else None
