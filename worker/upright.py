"""Writing made level and upright before it is cut (text mode): a photo taken askew is
turned level, and italics are sheared back to EMNIST's own slant. The boxes of the cuts
are mapped back through the same warp to the image as sent."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from serve import paper, preprocess, underlines
from worker.segment import CharCut, ink_pieces, segment

# Slanted (italic) writing leans letters into each other's columns and away from what
# the model learned. EMNIST's own letters lean by TYPICAL_SLANT (the median over letters of
# tan(lean) = mu11 / mu02 of their pixels, measured on training-split words); writing whose
# letters' median differs by more than SLANT_TOLERANCE, with SLANT_AGREEMENT of them
# leaning the same way, is sheared back to it first. (Words made of letters by different
# writers lean every way: shearing them by their median hurt more than it helped.)
TYPICAL_SLANT = -0.17
SLANT_TOLERANCE = 0.09
SLANT_AGREEMENT = 0.8
SLANT_MIN_LETTERS = 5
# Writing whose lines are tilted by more than MIN_TILT degrees (and at most MAX_TILT:
# beyond, it may be a column of text) is levelled before it is cut. The tilt is read from
# a projection profile of the letters' feet (the middles of their bottoms): rows ROW_BIN
# letter heights tall, angles TILT_STEP apart, then 0.1; at least TILT_MIN_LETTERS letters
# spanning TILT_MIN_LENGTH letter heights, and a tilt that stacks them TILT_GAIN times
# better than level does (a descender or a small letter among a few letters tilts their
# best row by a few degrees).
# See tests/test_upright.py.
MIN_TILT, MAX_TILT = 1.5, 45.0
ROW_BIN, PLATEAU, TILT_STEP = 0.25, 0.95, 1.0
TILT_MIN_LETTERS, TILT_MIN_LENGTH = 3, 1.5
TILT_GAIN = 1.3
# A form's printed boxes (a comb of boxes, a box around a field) or a ruled page's rules
# photographed askew by RULES_MIN_TILT degrees or more (up to underlines.UNDERLINE_SLOPE)
# are levelled by their own slope, far surer than the letters' feet, before they are
# erased: a comb turned a degree read at 36% (1 - CER), 2.5 degrees far below zero, on
# training-split words. Such a box is the widest piece, at least twice as wide as tall and
# half the image wide (rules, with all they join: as wide as the image).
RULES_MIN_TILT = 0.3
# Its slope stacks RULES_FULL of its width into one row (a thin line turned in a photo is
# broken here and there even in faint ink).
RULES_FULL = 0.6

@dataclass
class Warp:
    """The affine map (rotation, shear) that made the writing level and upright before it
    was cut, and back, for the cuts' boxes."""

    matrix: np.ndarray | None = None  # 2 x 3, image -> warped ink; None: no warp
    size: tuple[int, int] = (0, 0)  # the image's width and height

    def then(self, step: np.ndarray) -> "Warp":
        """This warp followed by `step` (2 x 3)."""
        first = np.eye(3) if self.matrix is None else np.vstack([self.matrix, [0, 0, 1]])
        return Warp((np.vstack([step, [0, 0, 1]]) @ first)[:2], self.size)

    def original_box(self, box: tuple[int, int, int, int]) -> list[int]:
        """The box around what a box of the warped ink covers in the original image."""
        x, y, w, h = (int(v) for v in box)
        if self.matrix is None:
            return [x, y, w, h]
        inverse = cv2.invertAffineTransform(self.matrix)
        corners = np.array([[x, y], [x + w, y], [x, y + h], [x + w, y + h]], np.float64)
        back = corners @ inverse[:, :2].T + inverse[:, 2]
        (x0, y0), (x1, y1) = np.floor(back.min(axis=0)), np.ceil(back.max(axis=0))
        x0, y0 = max(0, int(x0)), max(0, int(y0))
        x1, y1 = min(self.size[0], int(x1)), min(self.size[1], int(y1))
        return [x0, y0, max(1, x1 - x0), max(1, y1 - y0)]


def _warp(ink: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`ink` through `matrix` (2 x 3), on a canvas just large enough: (ink, the matrix
    with the canvas's shift)."""
    height, width = ink.shape
    corners = np.array([[0, 0, 1], [width, 0, 1], [0, height, 1], [width, height, 1]], np.float64) @ matrix.T
    low, high = corners.min(axis=0), corners.max(axis=0)
    shifted = matrix.copy()
    shifted[:, 2] -= low
    size = tuple(int(np.ceil(v)) for v in high - low)
    return cv2.warpAffine(ink, shifted, size, flags=cv2.INTER_LINEAR), shifted


def _tilt(stats: np.ndarray, kept: np.ndarray) -> float | None:
    """The angle (degrees) of the lines of writing, or None where too few pieces tell it
    (fewer than TILT_MIN_LETTERS, or spanning less than TILT_MIN_LENGTH letter heights).

    A projection profile, as document scanners deskew pages: turned by the right angle,
    the letters' feet stack into a few sharp rows (one per line), so the sum of squared
    row counts peaks there. Of the angles that score within PLATEAU of the best, the middle
    one: a short word scores alike over a few degrees, and its middle is level when it is."""
    ids = np.flatnonzero(kept)
    if len(ids) < TILT_MIN_LETTERS:
        return None
    heights = stats[ids, cv2.CC_STAT_HEIGHT]
    letters = ids[heights >= 0.45 * np.median(heights)]  # not dots, dashes or fragments
    if len(letters) < TILT_MIN_LETTERS:
        return None
    height = float(np.median(stats[letters, cv2.CC_STAT_HEIGHT]))
    # Where each letter stands: the middle of its bottom. Baselines are what a line's letters
    # share; their centres are not (an e's is lower than an E's or an h's).
    cx = stats[letters, cv2.CC_STAT_LEFT] + stats[letters, cv2.CC_STAT_WIDTH] / 2
    cy = (stats[letters, cv2.CC_STAT_TOP] + stats[letters, cv2.CC_STAT_HEIGHT]).astype(np.float64)

    def scores(angles: np.ndarray) -> np.ndarray:
        theta = np.radians(angles)[:, None]
        rows = (cy * np.cos(theta) - cx * np.sin(theta)) / (ROW_BIN * height)
        out = np.zeros(len(angles))
        for shift in (0.0, 0.5):  # two bin grids half a bin apart: no luck of the boundaries
            index = np.floor(rows - rows.min(axis=1, keepdims=True) + shift).astype(np.int64)
            span = int(index.max()) + 1
            counts = np.bincount((index + span * np.arange(len(angles))[:, None]).ravel(),
                                 minlength=span * len(angles)).reshape(len(angles), span)
            out += (counts.astype(np.float64) ** 2).sum(axis=1)
        return out

    def middle_of_best(angles: np.ndarray) -> float:
        """The middle of the run of angles around the best that score within PLATEAU of it."""
        found = scores(angles)
        good = found >= PLATEAU * found.max()
        first = last = int(np.argmax(found))
        while first > 0 and good[first - 1]:
            first -= 1
        while last < len(angles) - 1 and good[last + 1]:
            last += 1
        return float(angles[first] + angles[last]) / 2

    best = middle_of_best(np.arange(-MAX_TILT, MAX_TILT + TILT_STEP / 2, TILT_STEP))
    best = middle_of_best(np.arange(best - TILT_STEP, best + TILT_STEP + 0.05, 0.1))
    theta = np.radians(best)
    along = cx * np.cos(theta) + cy * np.sin(theta)
    # Pieces no further apart along the line than one letter is wide are one letter's strokes.
    if along.max() - along.min() < TILT_MIN_LENGTH * height:
        return None
    # Level unless turning clearly stacks the feet better: a descender or a small letter
    # among a few letters is enough to tilt their best row by a few degrees.
    level, turned = scores(np.array([0.0, best]))
    return best if turned >= TILT_GAIN * level else 0.0


def _rules_tilt(ink: np.ndarray, labels: np.ndarray, stats: np.ndarray, kept: np.ndarray) -> float | None:
    """The angle (degrees, as `_tilt`'s) of the form's printed lines, where the widest piece
    is one (see RULES_MIN_TILT): the slope that stacks its ink into one row full across it
    (underlines.stacking_slope). Thin lines turned in a photo break into dashes in the ink
    mask: where flat pieces (specks too, but 4 px wide or more: not the paper's noise) add
    up to a quarter of the image's width, the widest piece of the fainter ink
    (preprocess.FAINT_FRAME) is looked at too. None where there is no such line, or it lies
    level."""
    ids = np.flatnonzero(kept)
    if not len(ids):
        return None
    tilt = _widest_line_tilt(labels, stats, ids)
    widths, heights = stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT]  # specks too
    dashes = (widths >= 2 * heights) & (widths >= 4)
    if tilt is None and widths[dashes].sum() >= 0.25 * labels.shape[1]:
        count, labels, stats = paper.label_components((ink > preprocess.FAINT_FRAME).view(np.uint8))
        tilt = _widest_line_tilt(labels, stats, np.arange(1, count))
    return tilt


def _widest_line_tilt(labels: np.ndarray, stats: np.ndarray, ids: np.ndarray) -> float | None:
    """`_rules_tilt` of the widest of the pieces `ids`."""
    if not len(ids):
        return None
    c = int(ids[np.argmax(stats[ids, cv2.CC_STAT_WIDTH])])
    x, y, w, h = (int(v) for v in stats[c, :4])
    if w < max(underlines.SLOPED_LINE_MIN, 0.5 * labels.shape[1]):
        return None
    piece = labels[y:y + h, x:x + w] == c
    # A box's sides: ink down most of its height at both ends; or a ruled page's rules,
    # across the whole image, two or more of them, or joined into one piece half the
    # image tall. (A line under words is neither, and is found sloping where it lies:
    # worker/segment.py; levelled by it, words drawn level above it read 3 points worse.)
    side = max(3, w // 20)
    boxed = min(piece[:, :side].any(axis=1).mean(), piece[:, -side:].any(axis=1).mean()) >= 0.6
    across = np.count_nonzero(stats[ids, cv2.CC_STAT_WIDTH] >= 0.9 * labels.shape[1])
    ruled = w >= 0.9 * labels.shape[1] and (across >= 2 or h >= 0.5 * labels.shape[0])
    if not (boxed and w >= 2 * h) and not ruled:
        return None
    shift = underlines.stacking_slope(piece, RULES_FULL)
    if shift is None:
        return None
    degrees = float(np.degrees(np.arctan2(-shift[-1], w - 1)))
    return degrees if abs(degrees) >= RULES_MIN_TILT else None


def _slant(labels: np.ndarray, stats: np.ndarray, kept: np.ndarray) -> float | None:
    """The median lean of the letters (tan, dx per dy, from their second moments), or None
    when fewer than SLANT_MIN_LETTERS letter-like pieces (dots, dashes, rules and joined-up
    words are not) tell it, or they do not lean one way."""
    ids = np.flatnonzero(kept)
    if len(ids) < SLANT_MIN_LETTERS:
        return None
    heights, widths, areas = (stats[ids, k] for k in (cv2.CC_STAT_HEIGHT, cv2.CC_STAT_WIDTH, cv2.CC_STAT_AREA))
    letters = ids[(heights >= 0.6 * np.median(heights)) & (widths <= 2 * heights) & (areas >= 0.1 * areas.max())]
    leans = []
    for c in letters[::max(1, len(letters) // 16)].tolist():  # 16 letters tell the slant of a page
        x, y, w, h = (int(v) for v in stats[c, :4])
        m = cv2.moments((labels[y:y + h, x:x + w] == c).view(np.uint8), binaryImage=True)
        if m["mu02"] > 0:
            leans.append(m["mu11"] / m["mu02"])
    if len(leans) < SLANT_MIN_LETTERS:
        return None
    # Letters by different hands lean every way; one hand's italics lean all one way.
    off = np.asarray(leans) - TYPICAL_SLANT
    if max(np.mean(off > 0), np.mean(off < 0)) < SLANT_AGREEMENT:
        return None
    return float(np.median(leans))


def segment_upright(ink: np.ndarray, marks: str = "") -> tuple[np.ndarray, list[CharCut], Warp]:
    """`segment`, with a tilted line of writing levelled and slanted writing sheared to
    EMNIST's own slant first: the ink that was cut (for the tiles), the cuts, and the warp
    (to map their boxes back). Both are read without rules (a page's rules are no
    letters), and rules are gone before a warp (warped, they would be neither straight
    nor level)."""
    components = preprocess.ink_components(ink)
    warp, written = Warp(size=(ink.shape[1], ink.shape[0])), ink
    rules_tilt = _rules_tilt(ink, *components[1:])
    if rules_tilt is not None:
        height, width = ink.shape
        written, matrix = _warp(ink, cv2.getRotationMatrix2D((width / 2, height / 2), rules_tilt, 1.0))
        warp = warp.then(matrix)
        pieces = ink_pieces(written, faint_rules=True)
        written = _without_rules(written, pieces[0])  # no rules left to turn or shear again
    else:
        pieces = ink_pieces(ink, components)
    # The writing may not follow the form's lines (a line drawn under it askew): its own
    # tilt is read too, once they are gone.
    tilt = _tilt(*pieces[2:])
    if tilt is not None and MIN_TILT < abs(tilt) <= MAX_TILT:
        written = _without_rules(written, pieces[0])
        height, width = written.shape
        written, matrix = _warp(written, cv2.getRotationMatrix2D((width / 2, height / 2), tilt, 1.0))
        warp = warp.then(matrix)
        pieces = ink_pieces(written)
    lean = _slant(*pieces[1:])
    if lean is None or abs(lean - TYPICAL_SLANT) <= SLANT_TOLERANCE:
        return written, segment(written, pieces, marks), warp  # written is ink itself when not levelled
    if warp.matrix is None:
        written = _without_rules(ink, pieces[0])
    k = lean - TYPICAL_SLANT
    written, matrix = _warp(written, np.float64([[1, -k, 0], [0, 1, 0]]))
    return written, segment(written, marks=marks), warp.then(matrix)


def _without_rules(ink: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """The ink less what `ink_pieces` erased as rules (and the specks it dropped)."""
    mask = ink > preprocess.MASK_LEVEL  # what was ink before rules went
    rules = cv2.dilate((mask & ~kept).view(np.uint8), np.ones((3, 3), np.uint8)).view(bool)
    return np.where(rules & ~kept, np.float32(0), ink)
