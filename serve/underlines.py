"""A line under the character (a form's slot to write on, a comb's cell, the writer's
underline), level or sloping a few degrees in a photo, whether it lies apart from the
writing or the character touches or crosses it: found, to be erased. Part of the ONE
preprocessing with serve/preprocess.py, serve/paper.py and serve/rules.py (the model
archive ships them all).
"""
from __future__ import annotations

import cv2
import numpy as np

try:  # inside a model archive, extra files sit flat beside the handler
    from rules import FRAME_MIN_SIDE
except ImportError:  # imported from the repository
    from serve.rules import FRAME_MIN_SIDE

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
SLOPE_STEP = 0.25
# A line as long as that goes with its rim: ink running on from its band, in a column, for
# at most LINE_RIM rows (a scan's blur spreads its edges), SLOPED_LINE_RIM if it slopes
# (shifting its columns level leaves steps of a row); a stroke crossing it runs on further.
# A shorter line goes without: a Z's bar on a small tile would pass for one once the
# diagonal's foot on it went with it. On 600 training-split scans, lines apart and touched:
# level 90.2/88.8% -> 91.5/90.5%, sloping 85.7/86.0% -> 89.5/90.0% (plain 91.7%).
LINE_RIM = 1
SLOPED_LINE_RIM = 2

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


def stacking_slope(box: np.ndarray, full: float = UNDERLINE_FULL) -> np.ndarray | None:
    """`_line_slope` read otherwise: the slope, every SLOPE_STEP degrees up to
    UNDERLINE_SLOPE either way, that stacks the most ink into one row (a projection
    profile, as scanners deskew pages), if that row is `full` filled across."""
    h, w = box.shape
    if w < SLOPED_LINE_MIN:
        return None
    box8 = box.view(np.uint8)
    pad = int(np.ceil(np.tan(np.radians(UNDERLINE_SLOPE)) * w))
    angles = np.arange(-UNDERLINE_SLOPE, UNDERLINE_SLOPE + SLOPE_STEP / 2, SLOPE_STEP)
    fullest = np.zeros(len(angles), np.int64)
    for i, degrees in enumerate(angles):
        rise = np.tan(np.radians(degrees)) * (w - 1)
        # Column x moves by -rise * x / (w - 1) rows: the line from (0, r) to (w - 1, r + rise) lies level.
        shear = np.float32([[1, 0, 0], [-rise / (w - 1), 1, pad]])
        level = cv2.warpAffine(box8, shear, (w, h + 2 * pad), flags=cv2.INTER_NEAREST)
        fullest[i] = int(cv2.reduce(level, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).max())
    if fullest.max() < full * w:
        return None
    # A line thicker than a row stacks as well over a few slopes: the middle one is its own.
    first = last = int(np.argmax(fullest))
    while first > 0 and fullest[first - 1] == fullest[last]:
        first -= 1
    while last < len(angles) - 1 and fullest[last + 1] == fullest[first]:
        last += 1
    best_rise = np.tan(np.radians((angles[first] + angles[last]) / 2)) * (w - 1)
    if abs(best_rise) < 2:
        return None
    return -np.rint(best_rise * np.arange(w) / (w - 1)).astype(int)


def _shifted(box: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """The crop with column c moved down by shift[c] rows (what falls off it is lost)."""
    h, w = box.shape
    pad = int(np.abs(shift).max())
    padded = np.pad(box, ((pad, pad), (0, 0)))
    return padded[np.arange(h)[:, None] - shift[None, :] + pad, np.arange(w)[None, :]]


def line_band(box: np.ndarray, anywhere: bool = False) -> np.ndarray | None:
    """In a crop of ink, the line its writing stands on, level or, shifted level column by
    column, sloping a few degrees (`_line_slope`), with its rim (LINE_RIM): the lowest
    band of rows in its lower half that are UNDERLINE_FULL filled across the crop, at most
    UNDERLINE_FLAT of its width thick (`anywhere`: at any height, the lowest such band).
    Its pixels, or None if there is no such line. Text mode (worker/segment.py) erases such
    lines across words too, and where a letter hides a sloping line's end, reads its slope
    from the ink (`stacking_slope`; worker/upright.py levels a form by it too)."""
    level = _level_band(box, LINE_RIM if box.shape[1] >= SLOPED_LINE_MIN else 0, anywhere)
    sloped = _sloping_band(box, _line_slope(box), anywhere)
    if sloped is None and level is None and anywhere:
        sloped = _sloping_band(box, stacking_slope(box), anywhere)
    if sloped is None:
        return level
    # A line thicker than it slopes has full rows level too: the sloping one takes it all.
    if level is None or np.count_nonzero(sloped) > np.count_nonzero(level):
        return sloped
    return level


def _sloping_band(box: np.ndarray, slope: np.ndarray | None, anywhere: bool) -> np.ndarray | None:
    """`_level_band` of the crop shifted level by `slope` (rows per column), shifted back."""
    if slope is None:
        return None
    pad = int(np.abs(slope).max())  # room to shift into: a line along an edge keeps its ends
    band = _level_band(_shifted(np.pad(box, ((pad, pad), (0, 0))), slope), SLOPED_LINE_RIM, anywhere)
    return None if band is None else _shifted(band, -slope)[pad:pad + box.shape[0]] & box


def _level_band(box: np.ndarray, rim: int, anywhere: bool) -> np.ndarray | None:
    """`line_band` for a level line, with ink running on from its band for at most `rim`
    rows in a column."""
    h, w = box.shape
    inked = cv2.reduce(box.view(np.uint8), 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
    full = np.flatnonzero(inked >= UNDERLINE_FULL * w)
    if not len(full):
        return None
    bottom = int(full[-1])
    top = bottom
    while top - 1 in full:  # full rows are sorted: walk up the lowest band
        top -= 1
    if bottom - top + 1 > UNDERLINE_FLAT * w or (top + bottom < h and not anywhere):
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
    return line


def _line_written_on(box: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The line of `line_band` with the ticks that stand on its ends (a comb's cell: the
    ink within UNDERLINE_PAST of the width from either end, apart from the rest). Returns
    (line, rest): the line's and the ticks' pixels, and the writing's; None if there is no
    such line."""
    line = line_band(box)
    if line is None:
        return None
    rest = box & ~line
    inked = np.flatnonzero(rest.any(axis=0))
    past = UNDERLINE_PAST * box.shape[1]
    # Runs of inked columns: a tick is one that lies within `past` of an end.
    breaks = np.flatnonzero(np.diff(inked) > 1)
    for run in np.split(inked, breaks + 1) if len(inked) else []:
        if run[-1] < past or run[0] > box.shape[1] - 1 - past:
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
