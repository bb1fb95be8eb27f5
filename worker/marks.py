"""Text mode's marks and fragments: which small pieces of ink are punctuation (full stops,
commas, apostrophes, hyphens, slashes), read by their shape since the model has no class
for them, and which are broken-off strokes to join to their letter (worker/segment.py)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from worker.segment import CharCut

# A piece smaller than this many line heights on both sides is no character of the model
# (it has no punctuation): a broken-off stroke or a dot, joined to its nearest neighbour.
FRAGMENT = 0.35
# ...unless it lies further than PUNCTUATION_GAP line heights from both neighbours: then it
# is a mark of its own (a full stop, a comma), as is a flat piece (less than MARK_HEIGHT
# line heights tall and MARK_WIDTH wide, and twice as wide as tall: a hyphen, not a small
# letter) that far from both. The model has no punctuation classes, so marks are left out
# of the reading.
PUNCTUATION_GAP = 0.1
MARK_HEIGHT, MARK_WIDTH = 0.3, 0.6
# A piece under MARK_SIZE line heights wholly above HIGH_MARK of the way down the line's
# letters (an apostrophe, a quote), or wholly below LOW_MARK of it and reaching below them
# (a comma), is a mark however close: no letter lies there. (A bit broken off a letter's
# foot lies where a full stop does: those two are told apart by their gap alone.)
MARK_SIZE, HIGH_MARK, LOW_MARK = 0.5, 0.45, 0.7
# A full stop close to its neighbours, where a field may hold one: round, under this many
# line heights.
DOT_SIZE = 0.25
# A slash leans right by this many degrees from upright. 15% of EMNIST's 1s lean as much on
# their own (23% from 26 degrees): a field that allows "/" may read such a 1 as one.
SLASH_LEAN = (30, 60)


def _union(a: CharCut, b: CharCut) -> CharCut:
    """One character of two pieces (a broken-off stroke joined to its letter)."""
    x0, y0 = min(a.box[0], b.box[0]), min(a.box[1], b.box[1])
    x1 = max(a.box[0] + a.box[2], b.box[0] + b.box[2])
    y1 = max(a.box[1] + a.box[3], b.box[1] + b.box[3])
    mask = np.zeros((y1 - y0, x1 - x0), bool)
    for cut in (a, b):
        x, y, w, h = cut.box
        mask[y - y0:y - y0 + h, x - x0:x - x0 + w] |= cut.mask
    return type(a)(mask, (x0, y0, x1 - x0, y1 - y0))


def merge_fragments(chars: list[CharCut], line_height: float, body: tuple[float, float],
                     marks: str = "") -> list[CharCut]:
    """Join each fragment to the neighbour (left or right) nearest to it; set the marks
    aside: full stops, commas, hyphens (small or flat pieces well clear of both neighbours),
    and pieces that lie wholly above the middle of the line's letters (an apostrophe, a
    quote) or low and below them (a comma) however close. Those of them that `marks` names
    come back as marks (CharCut.mark); the others are dropped. `body`: where the line's
    letters are, top and bottom (medians)."""
    chars = sorted(chars, key=lambda cut: cut.box[0])
    top, bottom = body
    kept_marks = []

    def set_aside(cut: CharCut, mark: str) -> None:
        if mark and mark in ".," and mark not in marks:
            # A field that holds one of them (a decimal point or a decimal comma) gets that
            # one: at a line's size a dot and a comma differ by a pixel or two.
            mark = "," if mark == "." else "."
        if mark and mark in marks:
            cut.mark = mark
            kept_marks.append(cut)

    i = 0
    while len(chars) > 1 and i < len(chars):
        x, y, w, h = chars[i].box
        high = y + h <= top + HIGH_MARK * (bottom - top)
        low = y >= top + LOW_MARK * (bottom - top) and y + h > bottom + 0.05 * line_height
        if max(w, h) < MARK_SIZE * line_height and (high or low):
            # Low and below the letters: a comma's tail, unless it is as round and solid as a
            # full stop.
            round_dot = h <= 1.1 * w and chars[i].mask.mean() >= 0.6
            set_aside(chars.pop(i), "'" if high else "." if round_dot else ",")
            continue
        if "-" in marks and _is_dash((x, y, w, h), body, line_height):
            set_aside(chars.pop(i), "-")
            continue
        fragment = max(w, h) < FRAGMENT * line_height
        flat = h < MARK_HEIGHT * line_height and w < MARK_WIDTH * line_height and w >= 2 * h
        if not (fragment or flat):
            i += 1
            continue
        if "." in marks and _is_dot((x, y, w, h), body, line_height):
            # A field that may hold full stops (12.05.2026): a round dot on the baseline is
            # one even close to a digit (a letter's broken-off foot is rarely that round).
            set_aside(chars.pop(i), ".")
            continue
        neighbours = [j for j in (i - 1, i + 1) if 0 <= j < len(chars)]
        gap = lambda j: max(chars[j].box[0] - (x + w), x - (chars[j].box[0] + chars[j].box[2]), 0)  # noqa: E731
        j = min(neighbours, key=gap)
        if gap(j) > PUNCTUATION_GAP * line_height:
            set_aside(chars.pop(i), _far_mark((x, y, w, h), fragment, body, line_height))
            continue
        if not fragment:  # a flat stroke close to a letter: read as it is
            i += 1
            continue
        lo, hi = min(i, j), max(i, j)
        chars[lo:hi + 1] = [_union(chars[lo], chars[hi])]
        i = max(lo - 1, 0)
    return sorted(chars + kept_marks, key=lambda cut: cut.box[0]) if kept_marks else chars


def _far_mark(box: tuple[int, int, int, int], fragment: bool, body: tuple[float, float], line_height: float) -> str:
    """What a small or flat piece clear of both neighbours is: a hyphen (flat), a comma
    (reaching below the letters), a full stop (low on the line), or no mark ("")."""
    x, y, w, h = box
    top, bottom = body
    if not fragment:
        return "-"
    if y + h > bottom + 0.1 * line_height and h > w:
        return ","
    return "." if y + h / 2 >= top + 0.6 * (bottom - top) else ""


def _is_dash(box: tuple[int, int, int, int], body: tuple[float, float], line_height: float) -> bool:
    """A flat stroke, up to a line height long, in the middle of the line's letters: a
    hyphen or a dash, where a field may hold one (a letter is not that flat)."""
    x, y, w, h = box
    top, bottom = body
    middle = y + h / 2
    return (h < MARK_HEIGHT * line_height and w >= 2.5 * h and w <= 1.0 * line_height
            and top + 0.25 * (bottom - top) <= middle <= top + 0.75 * (bottom - top))


def _is_dot(box: tuple[int, int, int, int], body: tuple[float, float], line_height: float) -> bool:
    """A small round piece in the lowest third of the line's letters."""
    x, y, w, h = box
    top, bottom = body
    return (max(w, h) < DOT_SIZE * line_height and 0.5 * h <= w <= 2 * h
            and y >= top + 0.65 * (bottom - top) and y + h <= bottom + 0.1 * line_height)


def is_slash(cut: CharCut, line_height: float) -> bool:
    """A single straight stroke about as tall as the line, leaning right by SLASH_LEAN
    degrees from upright: a slash. (A 1 leans less once worker/upright.py has undone the
    line's slant.)"""
    x, y, w, h = cut.box
    if h < 0.6 * line_height or w < 0.25 * h:
        return False
    ys, xs = np.nonzero(cut.mask)
    if len(xs) < 10:
        return False
    cov = np.cov(np.stack([xs, ys]).astype(np.float64))
    if cov[0, 1] >= 0:  # x grows downwards: leaning left (a backslash), or not at all
        return False
    (thin, spread), vectors = np.linalg.eigh(cov)
    axis_x, axis_y = vectors[:, 1]  # the stroke's direction
    lean = np.degrees(np.arctan2(abs(axis_x), abs(axis_y)))  # from upright
    return spread > 25 * max(thin, 1e-6) and SLASH_LEAN[0] <= lean <= SLASH_LEAN[1]
