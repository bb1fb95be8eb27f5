"""Text mode: what on a page is a form's lines, not writing. Box borders and ruling lines
(long straight runs), and lines that words are written on or under (level or sloping in a
photo, apart from the words or touched by them, faint and broken), found and erased before
worker/segment.py cuts the letters. Character mode's own finders are in serve/rules.py
and serve/underlines.py; what they share is used from there.
"""
from __future__ import annotations

import cv2
import numpy as np

from serve import paper, preprocess, rules, underlines

# A line that words are written on or under is at least this many letter heights long.
LINE_LENGTH = 1.6
# A faint line breaks into dashes at most LINE_THIN letter heights tall.
LINE_THIN = 0.25


def lines_written_on(ink: np.ndarray, labels: np.ndarray, stats: np.ndarray, kept: np.ndarray) -> np.ndarray | None:
    """The lines (uint8) that words are written on or under, level or sloping a few degrees
    in a photo, apart from the words or touched by them, or None: found as in character
    mode (serve/underlines.py: a band of rows full across a piece), in pieces at least
    twice as wide as tall and LINE_LENGTH letter heights long (a hyphen, or an E's bar
    drawn apart, is no line). A faint line breaks into dashes (thin flat pieces, specks
    too): where they add up to that length, lines are looked for in the fainter ink
    (preprocess.FAINT_FRAME) too. Lines go before `without_rules` reads the letters'
    height: a line that some letters touch is one piece with them, wide and as tall as a
    letter, and holds the letters that do not touch it, as a box would."""
    widths, heights, areas = (stats[:, k] for k in (cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT, cv2.CC_STAT_AREA))
    flat = widths >= 2 * heights
    flat[0] = False
    if not (flat & kept).any():
        return None
    others = np.flatnonzero(kept & ~flat) if (kept & ~flat).any() else np.flatnonzero(kept)
    letter = float(np.median(heights[others[areas[others] >= 0.1 * areas[others].max()]]))
    length = LINE_LENGTH * letter
    found = np.zeros(labels.shape, np.uint8)
    _add_bands(found, labels, stats, np.flatnonzero(kept & flat & (widths >= max(length, rules.FRAME_MIN_SIDE))))
    dashes = flat & (heights <= LINE_THIN * letter) & (widths < length)
    if widths[dashes].sum() >= length:  # enough of them to make a line
        _, faint_labels, faint_stats = paper.label_components((ink > preprocess.FAINT_FRAME).view(np.uint8))
        faint_widths, faint_heights = faint_stats[:, cv2.CC_STAT_WIDTH], faint_stats[:, cv2.CC_STAT_HEIGHT]
        long = (faint_widths >= max(length, rules.FRAME_MIN_SIDE)) & (faint_widths >= 2 * faint_heights)
        _add_bands(found, faint_labels, faint_stats, np.flatnonzero(long[1:]) + 1)
    return found if found.any() else None


def _add_bands(found: np.ndarray, labels: np.ndarray, stats: np.ndarray, ids: np.ndarray) -> None:
    """Into `found` (uint8), in place: the line (underlines.line_band, at any height) across
    each of the pieces `ids`, where there is one."""
    for c in ids:
        x, y, w, h = (int(v) for v in stats[c, :4])
        band = underlines.line_band(labels[y:y + h, x:x + w] == c, anywhere=True)
        if band is not None:
            found[y:y + h, x:x + w] |= band.view(np.uint8)


def without_rules(ink: np.ndarray, stats: np.ndarray, mask: np.ndarray | None = None,
                 faint: bool = False) -> np.ndarray | None:
    """The ink mask (every piece, specks too; `mask` where it is made already) less long
    straight horizontal and vertical runs (box borders, ruling lines), or None when there
    are none. `stats`: the paper.label_components rows of the mask's kept components.
    `faint`: the runs, and the pieces that tell a box, are looked for in the fainter ink
    (preprocess.FAINT_FRAME), where a form's thin lines, turned level from a photo askew,
    are whole.

    A run counts when it is straight for longer than 1.6 times the typical character
    height; handwritten strokes are not, printed borders and rules are.
    """
    if faint:
        _, _, stats = paper.label_components((ink > preprocess.FAINT_FRAME).view(np.uint8))
        stats = stats[rules.not_specks(stats)]
    if len(stats) == 0:
        return None
    boxes = [tuple(int(v) for v in row) for row in stats]
    x0, y0, w, h = (stats[:, k].astype(np.int64) for k in range(4))

    def holding(outer: list[tuple], share: float = 0.0) -> list[tuple]:
        """The boxes of `outer` that hold a piece (share of their height tall or more)
        wholly inside them: one comparison of every pair, in blocks."""
        held = []
        for start in range(0, len(outer), 256):
            o = np.array(outer[start:start + 256], np.int64)[:, :4, None]
            inside = ((x0 > o[:, 0]) & (y0 > o[:, 1]) & (x0 + w < o[:, 0] + o[:, 2]) & (y0 + h < o[:, 1] + o[:, 3])
                      & (h >= share * o[:, 3]))
            held += [b for b, holds in zip(outer[start:start + 256], inside.any(axis=1)) if holds]
        return held

    # Box borders: hollow components with another component inside.
    hollow = holding([b for b in boxes if b[4] < 0.2 * b[2] * b[3]])
    solid = [b for b in boxes if b not in hollow] or boxes
    # The letters' height: not that of a piece with letters inside it (a comb of boxes with
    # thick lines is too full to count as hollow, yet no letter; touching letters around a
    # dot or a broken-off stroke are letters).
    largest = max(b[4] for b in solid)
    frames = set(holding([b for b in solid if b[4] >= 0.1 * largest], 0.35))
    letters = [b for b in solid if b not in frames] or solid
    largest = max(b[4] for b in letters)
    typical = float(np.median([b[3] for b in letters if b[4] >= 0.1 * largest]))
    length = int(max(15, 1.6 * typical))
    if hollow:  # a box is only a little taller than its character: shorter runs count
        length = int(max(15, 0.8 * min(min(b[2], b[3]) for b in hollow)))
    # A straight run lies inside one component, so only a component at least `length`
    # wide (or tall) can hold one: most text has none, and skips both passes over the page.
    wide, tall = (faint or any(b[k] >= length for b in boxes) for k in (2, 3))
    if not (wide or tall):
        return None
    if mask is None:
        mask = ink > preprocess.MASK_LEVEL  # made only here: most text has no rule
    m = (ink > preprocess.FAINT_FRAME).view(np.uint8) if faint else mask.view(np.uint8)
    across, down = m, m
    if faint:  # a thin line turned level keeps gaps of a pixel where its steps were
        across = cv2.morphologyEx(m, cv2.MORPH_CLOSE, np.ones((1, 3), np.uint8))
        down = cv2.morphologyEx(m, cv2.MORPH_CLOSE, np.ones((3, 1), np.uint8))
    runs = np.zeros_like(m)
    if wide:
        runs |= cv2.morphologyEx(across, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (length, 1)))
        # Squared paper: rules across the whole page join its upright lines, and every
        # letter they touch, into one piece no taller than the page, so `tall` misses them.
        # Upright runs as tall as the page go too (letters sit between rules, far shorter).
        height, width = m.shape
        if cv2.reduce(runs, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).max() >= 0.9 * width:
            page_tall = cv2.getStructuringElement(cv2.MORPH_RECT, (1, int(np.ceil(0.9 * height))))
            runs |= cv2.morphologyEx(m, cv2.MORPH_OPEN, page_tall)
    if tall:
        runs |= cv2.morphologyEx(down, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (1, length)))
    if not runs.any():
        return None
    return rules.erase_rules(mask, runs, ink)
