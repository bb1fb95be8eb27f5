"""Text mode: cut a word, a line, several lines or a boxed form field into characters.

Connected components of the ink mask are the starting point (writing photographed
askew, or in italics, is made level and upright first: worker/upright.py). Then:
- box borders, ruling lines and lines written on are erased (worker/form_lines.py), so
  boxed fields and underlined words read as their characters;
- lines are clusters of components that overlap vertically, read top to bottom; small
  parts (i dots) join the line nearest to them;
- within a line, components that overlap horizontally are one character (i and j dots,
  broken strokes); small pieces are joined to their letter or read as marks
  (worker/marks.py); a character wider than the line's height may be touching characters:
  it gets candidate cuts at its columns of least ink, every candidate character between
  two cuts is read, and `best_reading` keeps the sequence the model reads best;
- a gap much wider than usual between two characters is a space.
Every character becomes a tile through preprocess.tile_from_ink, exactly as a single
character image would; its box is in the original image's coordinates.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from serve import paper, preprocess, rules
from worker import form_lines
from worker.marks import is_slash, merge_fragments

# A group of ink wider than this many line heights may be any number of touching characters
# (EMNIST's widest, m and W, are about 1.1 line heights wide; 5% of single letters are wider
# than 1.1): it gets candidate cuts at its columns of least ink.
SPLIT_WIDTH = 1.2
# Two narrow letters run together ("rn", "ti") can be as narrow as one wide letter: a group
# wider than PAIR_WIDTH line heights (and no wider than SPLIT_WIDTH) gets one candidate cut,
# at its least ink, and the model's confidence tells one letter from two. 1.0 gained a little
# more on letters set into each other but gave 30% more tiles to EMNIST's tiles set at one
# scale, whose wide letters stand 1.0-1.1 line heights wide (python -m bench.case, session 24).
PAIR_WIDTH = 1.1
# Candidate characters of touching ones are this many line heights wide (5th and 95th
# percentiles of single letters: 0.46 and 1.11), between candidate cuts at least
# CUT_SPACING apart.
PIECE_WIDTHS = (0.35, 1.15)
CUT_SPACING = 0.15
# A reading of touching characters scores, per character, the log of the model's
# confidence, plus WIDTH_WEIGHT x a Gaussian log prior on its width (mean CHAR_WIDTH line
# heights; sd CHAR_WIDTH_SD line heights below it and above it), less CHAR_PENALTY.
# Without the prior, the model's confidence in slivers of letters over-cuts; the penalty
# keeps a wide W or N whole. Chosen on words made of training-split letters; the wide side
# (0.25 until session 21) was widened on lines whose capitals stand equally tall, as people
# write them: an M or W is then 1.3-2 line heights wide, and the narrow prior cut it in two
# (bench.case: lines of real letters 70% -> 83%; words of EMNIST tiles set at one scale,
# where an M stands shorter than an A, touching: 77% -> 74%). Since session 22 the model has
# learned to be unsure of two letters run together (training/junk.py), so its confidence
# tells a wide letter from a pair more often and the prior weighs half as much (0.5 before;
# training-split lines 85.6% -> 88.3%, touching words 77.9% -> 77.3%).
CHAR_WIDTH, CHAR_WIDTH_SD, WIDTH_WEIGHT = 0.8, (0.25, 0.45), 0.25
CHAR_PENALTY = 0.3
# A gap is a space when wider than both figures of a rule: (letter heights, median gaps
# between letters). SPACE_RULE holds in any line; CLOSE_SPACE_RULES, for writing whose
# letters stand closer (careful capitals, print), in a line of at least MIN_CLOSE_GAPS gaps
# ("HI 42" has three), against their median with spaces counted in: close letters must be
# most of the gaps. Chosen on training-split letters (python -m bench.spaces).
SPACE_RULE = (0.75, 2.5)
CLOSE_SPACE_RULES = ((0.35, 4.0),)
MIN_CLOSE_GAPS = 3
# Past this many candidate characters of touching ones in an image (a cursive page of ~500
# letters has about 15,000), the rest get one cut per expected character.
MAX_CANDIDATES = 20000
# More separate pieces of ink than this is no text the model can read (a form holds a few
# hundred characters); refusing it keeps one image from costing minutes.
MAX_COMPONENTS = 4000


@dataclass
class Touching:
    """Ways to read a group that may be touching characters: candidate characters, each
    spanning the columns between two candidate cuts (the whole group is one of them)."""

    pieces: list[CharCut]
    spans: list[tuple[int, int]]  # (first, last) index of each piece's cuts, of n_cuts
    n_cuts: int
    width_prior: list[float]  # log prior of each piece's width


@dataclass
class CharCut:
    """One character: its ink pixels as a mask over its box, and the box. A group that may
    be touching characters has `touching`: then recognition decides how it is cut."""

    mask: np.ndarray  # bool, h x w: the pixels of this character inside its box
    box: tuple[int, int, int, int]  # x, y, w, h in the image
    space_before: bool = False
    line: int = 0
    touching: Touching | None = None
    mark: str = ""  # a mark the model has no class for (charsets.MARKS), read by its shape


def _clusters_by_overlap(spans: list[tuple[int, int]], min_overlap: float) -> list[list[int]]:
    """Group intervals whose overlap exceeds min_overlap x the shorter one (transitively)."""
    order = sorted(range(len(spans)), key=lambda i: spans[i][0])
    groups: list[list[int]] = []
    ranges: list[list[int]] = []
    # Groups that end at or before the current start can never overlap a later interval
    # (starts only grow): dropping them keeps a 64-character line linear, not quadratic.
    open_groups: list[int] = []
    for i in order:
        a0, a1 = spans[i]
        open_groups = [g for g in open_groups if ranges[g][1] > a0]
        for g in open_groups:
            b0, b1 = ranges[g]
            overlap = min(a1, b1) - max(a0, b0)
            if overlap > min_overlap * min(a1 - a0, b1 - b0):
                groups[g].append(i)
                ranges[g] = [min(a0, b0), max(a1, b1)]
                break
        else:
            groups.append([i])
            ranges.append([a0, a1])
            open_groups.append(len(groups) - 1)
    return groups


def _tight(mask: np.ndarray, x: int, y: int) -> CharCut | None:
    """The cut of a mask whose top-left corner sits at (x, y), trimmed to its ink."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return CharCut(mask[y0:y1, x0:x1], (int(x + x0), int(y + y0), int(x1 - x0), int(y1 - y0)))


def _cut_columns(profile: np.ndarray, spacing: int, limit: int) -> list[int]:
    """Candidate cuts: the columns of least ink among local minima of the (smoothed) ink
    profile, at least `spacing` apart and from the ends, at most `limit`; with both ends."""
    width = len(profile)
    smooth = np.convolve(profile, np.ones(3) / 3, "same")
    inner = smooth[1:-1]
    minima = np.flatnonzero((inner <= smooth[:-2]) & (inner <= smooth[2:])) + 1
    chosen: list[int] = []
    for x in sorted(minima.tolist(), key=lambda x: (smooth[x], x)):
        if min(x, width - x) >= spacing and all(abs(x - c) >= spacing for c in chosen):
            chosen.append(x)
            if len(chosen) == limit:
                break
    return [0, *sorted(chosen), width]


def _touching(cut: CharCut, ink: np.ndarray, line_height: float, frugal: bool = False) -> Touching:
    """The candidate characters of a group that may be touching characters. `frugal`:
    one cut per expected character and no overlapping candidates (an image past its
    MAX_CANDIDATES: a page of scribbles must not cost minutes)."""
    x, y, w, h = cut.box
    profile = (ink[y:y + h, x:x + w] * cut.mask).sum(axis=0)
    if w <= SPLIT_WIDTH * line_height:  # one letter or two: one cut, neither side a sliver
        cols = _cut_columns(profile, max(2, int(PIECE_WIDTHS[0] * line_height)), 1)
    elif frugal:
        cols = _cut_columns(profile, max(2, int(0.8 * CHAR_WIDTH * line_height)), int(w / line_height) + 1)
    else:  # at most ~3 cuts per character
        cols = _cut_columns(profile, max(2, int(CUT_SPACING * line_height)), int(3 * w / line_height) + 2)
    lo, hi = (f * line_height for f in PIECE_WIDTHS)
    last = len(cols) - 1
    pieces, spans, prior = [], [], []
    for i in range(last):
        for j in range(i + 1, last + 1):
            width = cols[j] - cols[i]
            if (i, j) != (0, last) and (not lo <= width <= hi if not frugal else j != i + 1):
                continue
            tight = _tight(cut.mask[:, cols[i]:cols[j]], x + cols[i], y)
            if tight is None:
                continue
            pieces.append(tight)
            spans.append((i, j))
            z = (width / line_height - CHAR_WIDTH) / CHAR_WIDTH_SD[width > CHAR_WIDTH * line_height]
            prior.append(-WIDTH_WEIGHT * z * z / 2)
    return Touching(pieces, spans, last + 1, prior)


def best_reading(touching: Touching, confidence: list[float]) -> list[int]:
    """The pieces (indices, left to right) of the reading that scores best: the sum over
    its characters of log(model confidence) + width prior - CHAR_PENALTY. The whole group
    is always a reading, so one exists whenever the whole was read."""
    best: dict[int, tuple[float, list[int]]] = {0: (0.0, [])}
    order = sorted(range(len(touching.pieces)), key=lambda k: touching.spans[k])
    for k in order:  # by first cut: every path into a cut is complete before it is extended
        i, j = touching.spans[k]
        if i not in best or confidence[k] <= 0:
            continue
        score = best[i][0] + float(np.log(confidence[k])) + touching.width_prior[k] - CHAR_PENALTY
        if j not in best or score > best[j][0]:
            best[j] = (score, best[i][1] + [k])
    return best.get(touching.n_cuts - 1, (0.0, []))[1]


def ink_pieces(ink: np.ndarray, components: tuple | None = None,
               faint_rules: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The ink's components, as `preprocess.ink_components` (`components`, where the caller
    has them already), less box borders and rules (`faint_rules`: see `form_lines.without_rules`)."""
    mask, labels, stats, kept = components or preprocess.ink_components(ink)
    # Specks were judged against the largest piece, which may be a form's box or a rule:
    # once those are gone, what they dwarfed (a thin 1 in a comb of boxes) comes back, and
    # `segment` judges specks against the largest piece left.
    lines = form_lines.lines_written_on(ink, labels, stats, kept)
    if lines is not None:
        # Found with its rim, a line is as wide as it is: a pixel wider, it cost letters that
        # stand on it their feet (150 training-split words on a line: touched 86.5% -> 87.1%,
        # sloping 79.6% -> 81.5%).
        mask = rules.erase_rules(ink > preprocess.MASK_LEVEL, lines, ink, widen=False)
        count, labels, stats = paper.label_components(mask.view(np.uint8))
        kept = np.arange(count) > 0
    erased = form_lines.without_rules(ink, stats[kept], mask if lines is not None else None, faint_rules)
    if erased is not None:  # rules removed: label what is left
        count, labels, stats = paper.label_components(erased.astype(np.uint8))
        return erased, labels, stats, np.arange(count) > 0
    return mask, labels, stats, kept


def segment(ink: np.ndarray, pieces: tuple | None = None, marks: str = "") -> list[CharCut]:
    """Characters in reading order (lines top to bottom, left to right within a line).
    `pieces`: `ink_pieces(ink)` when the caller has it already. `marks`: the marks
    (charsets.MARKS) to keep as such, found by their shape; the others are left out."""
    mask, labels, stats, kept = pieces or ink_pieces(ink)
    # Otherwise the components are ink_mask's own (labelling ~370k pixels of a 64-character
    # line cost 1.5 ms a pass); the specks it dropped keep their labels but are never used.
    comps = [int(c) for c in np.flatnonzero(kept)]
    if not comps:
        return []
    if len(comps) > MAX_COMPONENTS:
        # A page of noise or dots, not writing; finding box borders compares every pair of pieces.
        raise preprocess.PreprocessError(
            f"the image has {len(comps)} separate ink pieces; text mode reads at most {MAX_COMPONENTS}")
    # Plain lists: indexing numpy scalars thousands of times cost more than the grouping.
    lefts, tops, widths, heights, areas = (stats[:, k].tolist() for k in (
        cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT, cv2.CC_STAT_AREA))
    largest = max(areas[c] for c in comps)
    keep = [c for c in comps if areas[c] >= max(4, 0.01 * largest)]
    typical = float(np.median([heights[c] for c in keep]))
    big = [c for c in keep if heights[c] >= 0.45 * typical]
    big_set = set(big)
    small = [c for c in keep if c not in big_set]

    def yspan(c):
        return tops[c], tops[c] + heights[c]

    def xspan(c):
        return lefts[c], lefts[c] + widths[c]

    lines = [[big[i] for i in g] for g in _clusters_by_overlap([yspan(c) for c in big], 0.3)]
    # Dots and fragments join the line whose vertical centre is nearest.
    centres = [np.mean([sum(yspan(c)) / 2 for c in line]) for line in lines]
    for c in small:
        cy = sum(yspan(c)) / 2
        lines[int(np.argmin([abs(cy - m) for m in centres]))].append(c)
    lines.sort(key=lambda line: min(yspan(c)[0] for c in line))

    cuts: list[CharCut] = []
    candidates = 0  # of touching characters, read beside the characters themselves
    for line_no, line in enumerate(lines):
        line_height = float(np.median([yspan(c)[1] - yspan(c)[0] for c in line if c in big_set] or [typical]))
        chars: list[CharCut] = []
        for group in _clusters_by_overlap([xspan(c) for c in line], 0.5):
            ids = [line[i] for i in group]
            x0, x1 = min(xspan(c)[0] for c in ids), max(xspan(c)[1] for c in ids)
            y0, y1 = min(yspan(c)[0] for c in ids), max(yspan(c)[1] for c in ids)
            window = labels[y0:y1, x0:x1]
            # One piece (the usual case): a comparison is ~10x cheaper than np.isin.
            mask = window == ids[0] if len(ids) == 1 else np.isin(window, ids)
            chars.append(CharCut(mask, (x0, y0, x1 - x0, y1 - y0)))
        letters = [c for c in line if c in big_set] or line
        body = (float(np.median([tops[c] for c in letters])), float(np.median([yspan(c)[1] for c in letters])))
        chars = merge_fragments(chars, line_height, body, marks)
        for cut in chars:
            if "/" in marks and not cut.mark and is_slash(cut, line_height):
                cut.mark = "/"
            if not cut.mark and cut.box[2] > PAIR_WIDTH * line_height:
                cut.touching = _touching(cut, ink, line_height, frugal=candidates > MAX_CANDIDATES)
                candidates += len(cut.touching.pieces)
        gaps = [b.box[0] - (a.box[0] + a.box[2]) for a, b in zip(chars, chars[1:])]
        # Spaces are measured against whole characters: a letter written in two strokes is
        # two short pieces of ink, which lower the pieces' median height (line_height).
        letter_height = float(np.median([c.box[3] for c in chars if not c.mark] or [line_height]))
        # The usual gap between letters of a word: spaces themselves must not inflate it.
        letter_gaps = [g for g in gaps if 0 < g <= 0.5 * letter_height]
        median_gap = float(np.median(letter_gaps)) if letter_gaps else 0.0
        threshold = max(SPACE_RULE[0] * letter_height, SPACE_RULE[1] * median_gap)
        positive = [g for g in gaps if g > 0]
        if len(positive) >= MIN_CLOSE_GAPS:
            typical = float(np.median(positive))
            threshold = min([threshold] + [max(h * letter_height, k * typical) for h, k in CLOSE_SPACE_RULES])
        for i, cut in enumerate(chars):
            cut.space_before = i > 0 and gaps[i - 1] > threshold
            cut.line = line_no
            cuts.append(cut)
    return cuts


def char_tile(ink: np.ndarray, cut: CharCut) -> np.ndarray:
    """The 28x28 tile of one character: its own strokes, with the same soft rim that
    `preprocess.tile_from_ink` keeps for a whole-image character (the model was trained so)."""
    x, y, w, h = cut.box
    return preprocess.tile_from_ink(ink[y:y + h, x:x + w], cut.mask)
