"""What on an image is lines, not writing: a form's boxes (around a character, or one
the character touches or crosses) and the rules of ruled or squared paper, found and
erased. Part of the ONE preprocessing with serve/preprocess.py and serve/paper.py (the
model archive ships all three).
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
# A line under the character (a form's slot to write on, a comb's cell, the writer's
# underline): the lowest band of rows in the lower half of the ink (of the character and
# the line, or of the line's own piece) that are UNDERLINE_FULL filled across it, at most
# UNDERLINE_FLAT of its length thick, reaching past the rest of the writing on both sides
# by UNDERLINE_PAST of its length, with at most UNDERLINE_BELOW of the rest's ink below it
# (a 4's or a t's bar has the stem going on under it).
UNDERLINE_FLAT = 0.15
UNDERLINE_PAST = 0.12
UNDERLINE_FULL = 0.9
UNDERLINE_BELOW = 0.1
# A line under the character slopes in a photo by this many degrees at most, and is looked
# for sloping only SLOPED_LINE_MIN px long or longer: on a character a few pixels tall, a
# 2's bar or an I's base that slopes by a pixel or two would pass for one.
UNDERLINE_SLOPE = 6.0
SLOPED_LINE_MIN = 48
# A line as long as that goes with its rim: ink running on from its band, in a column, for
# at most LINE_RIM rows (a scan's blur spreads its edges), SLOPED_LINE_RIM if it slopes
# (shifting its columns level leaves steps of a row); a stroke crossing it runs on further.
# A shorter line goes without: a Z's bar on a small tile would pass for one once the
# diagonal's foot on it went with it. On 600 training-split scans, lines apart and touched:
# level 90.2/88.8% -> 91.5/90.5%, sloping 85.7/86.0% -> 89.5/90.0% (plain 91.7%).
LINE_RIM = 1
SLOPED_LINE_RIM = 2
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


def _line_slope(box: np.ndarray) -> np.ndarray | None:
    """Rows to shift each column of a crop by to set a line along its bottom level (a photo
    is rarely square to the form): read off the lowest ink in its first and last columns,
    the line's ends, if the ink lies on that straight line in UNDERLINE_FULL of 16 columns
    across, within 2 px, and it slopes by 2 px to UNDERLINE_SLOPE degrees (see
    SLOPED_LINE_MIN). None otherwise."""
    h, w = box.shape
    if w < SLOPED_LINE_MIN:
        return None
    ends = [np.flatnonzero(box[:, c]) for c in (0, w - 1)]
    if not len(ends[0]) or not len(ends[1]):
        return None
    left, right = int(ends[0][-1]), int(ends[1][-1])
    rise = right - left
    if abs(rise) < 2 or abs(rise) > np.tan(np.radians(UNDERLINE_SLOPE)) * w:
        return None
    columns = np.linspace(0, w - 1, 16).astype(int)
    rows = np.rint(left + rise * columns / (w - 1)).astype(int)
    near = [box[max(0, r - 2):r + 3, c].any() for r, c in zip(rows, columns)]
    if np.count_nonzero(near) < UNDERLINE_FULL * len(near):
        return None
    return -np.rint(rise * np.arange(w) / (w - 1)).astype(int)


def _shifted(box: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """The crop with column c moved down by shift[c] rows (what falls off it is lost)."""
    h, w = box.shape
    pad = int(np.abs(shift).max())
    padded = np.pad(box, ((pad, pad), (0, 0)))
    return padded[np.arange(h)[:, None] - shift[None, :] + pad, np.arange(w)[None, :]]


def _line_written_on(box: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """In a crop of ink, the line its writing stands on, level or, shifted level column by
    column, sloping a few degrees (`_line_slope`), with its rim (LINE_RIM): the lowest
    band of rows in its lower half that are UNDERLINE_FULL filled across the crop, at most
    UNDERLINE_FLAT of its width thick, with the ticks that stand on its ends (a comb's
    cell: the ink within UNDERLINE_PAST of the width from either end, apart from the
    rest). Returns (line, rest): the line's and the ticks' pixels, and the writing's; None
    if there is no such line."""
    level = _level_line_written_on(box, rim=LINE_RIM if box.shape[1] >= SLOPED_LINE_MIN else 0)
    slope = _line_slope(box)
    if slope is None:
        return level
    pad = int(np.abs(slope).max())  # room to shift into: a line along an edge keeps its ends
    sloped = _level_line_written_on(_shifted(np.pad(box, ((pad, pad), (0, 0))), slope), rim=SLOPED_LINE_RIM)
    if sloped is None:
        return level
    sloped = tuple(_shifted(part, -slope)[pad:pad + box.shape[0]] & box for part in sloped)
    # A line thicker than it slopes has full rows level too: the sloping one takes it all.
    if level is None or np.count_nonzero(sloped[1]) < np.count_nonzero(level[1]):
        return sloped
    return level


def _level_line_written_on(box: np.ndarray, rim: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
    """`_line_written_on` for a level line, with ink running on from its band for at
    most `rim` rows in a column."""
    h, w = box.shape
    inked = cv2.reduce(box.view(np.uint8), 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
    full = np.flatnonzero(inked >= UNDERLINE_FULL * w)
    if not len(full):
        return None
    bottom = int(full[-1])
    top = bottom
    while top - 1 in full:  # full rows are sorted: walk up the lowest band
        top -= 1
    if bottom - top + 1 > UNDERLINE_FLAT * w or top + bottom < h:
        return None
    line = np.zeros_like(box)
    line[top:bottom + 1] = box[top:bottom + 1]
    # The rim: ink running on from the band for at most `rim` rows in its column (a
    # stroke crossing the line runs on further, and stays).
    for step, edge in ((-1, top), (1, bottom)):
        runs = []  # per row out from the band: the columns whose ink runs on that far
        for k in range(1, rim + 2):
            row = edge + step * k
            on = box[row] if 0 <= row < h else np.zeros(w, bool)
            runs.append(on & runs[-1] if runs else on)
        for k in range(rim):
            if 0 <= edge + step * (k + 1) < h:
                line[edge + step * (k + 1)] |= runs[k] & ~runs[rim]
    rest = box & ~line
    inked = np.flatnonzero(rest.any(axis=0))
    past = UNDERLINE_PAST * w
    # Runs of inked columns: a tick is one that lies within `past` of an end.
    breaks = np.flatnonzero(np.diff(inked) > 1)
    for run in np.split(inked, breaks + 1) if len(inked) else []:
        if run[-1] < past or run[0] > w - 1 - past:
            line[:, run] |= rest[:, run]
            rest[:, run] = False
    return line, rest


def _reaches_past(line: np.ndarray, rest: np.ndarray) -> bool:
    """Whether a line reaches past the writing (`rest`, in the same crop) by UNDERLINE_PAST
    of its length on both sides, with at most UNDERLINE_BELOW of the writing below it."""
    columns = np.flatnonzero(line.any(axis=0))
    inked = np.flatnonzero(rest.any(axis=0))
    if not len(inked):
        return False
    past = UNDERLINE_PAST * (columns[-1] - columns[0] + 1)
    if inked[0] < columns[0] + past or inked[-1] > columns[-1] - past:
        return False
    bottom = int(np.flatnonzero(line.any(axis=1))[-1])
    return np.count_nonzero(rest[bottom + 1:]) <= UNDERLINE_BELOW * np.count_nonzero(rest)


def underlines(labels: np.ndarray, stats: np.ndarray, kept: np.ndarray) -> list[int]:
    """Kept components that are lines under the rest of the writing, apart from it (see
    `_line_written_on`): a line, or a comb's cell, whose ends reach past the rest. A Z's or
    an E's bottom bar, even drawn apart, starts where the rest of the letter does."""
    ids = np.flatnonzero(kept)
    if len(ids) < 2:
        return []
    x, y, w, h = (stats[ids, k].astype(np.int64) for k in range(4))
    lines = []
    for i in np.flatnonzero(w >= FRAME_MIN_SIDE):
        rest = np.arange(len(ids)) != i
        left, right = int(min(x[i], x[rest].min())), int(max(x[i] + w[i], (x[rest] + w[rest]).max()))
        top, bottom = int(min(y[i], y[rest].min())), int(max(y[i] + h[i], (y[rest] + h[rest]).max()))
        if left < x[i] or right > x[i] + w[i]:
            continue  # the rest reaches further: no line under it
        piece = labels[top:bottom, left:right] == ids[i]
        found = _line_written_on(piece)
        if found is None or found[1].any():  # only a line and its ticks: nothing written on it
            continue
        others = np.isin(labels[top:bottom, left:right], ids[rest])
        if _reaches_past(found[0], others):
            lines.append(int(ids[i]))
    return lines if len(lines) < len(ids) else []


def underline_touched(mask: np.ndarray) -> np.ndarray | None:
    """The line (uint8) that a character written on it touches or crosses, with the ticks
    on its ends, or None (see `_line_written_on`). A 1's foot or an I's base reaches no
    further than its flag or its top; a 4's or a t's bar has the stem going on under it."""
    x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
    if w < FRAME_MIN_SIDE:
        return None
    found = _line_written_on(mask[y:y + h, x:x + w])
    if found is None or not _reaches_past(*found):
        return None
    line = np.zeros(mask.shape, np.uint8)
    line[y:y + h, x:x + w] = found[0]
    return line


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


def erase_rules(mask: np.ndarray, rules: np.ndarray, ink: np.ndarray | None = None) -> np.ndarray:
    """The mask less its rules (uint8 runs found by opening it), one pixel wider, except
    where a stroke crosses them: ink within RULE_BRIDGE px on both sides of a horizontal
    rule (above and below) or of an upright one (left and right), and, given the `ink`
    map, ink on a grey rule clearly darker than the rule (see GREY_RULE)."""
    on_rules = rules > 0
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
