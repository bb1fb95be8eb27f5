"""Letter case as written (text mode with `case=written`).

EMNIST's 47 classes hold both cases of the 15 letters whose capital and lowercase look
alike (c i j k l m o p s u v w x y z) under the capital, so the model reads "hello" as
"heLLO". Where those letters stand beside others on a line, their size says which they
are: a lowercase c o s u v w x z m stands at the line's x-height, a j p y hangs from it,
while capitals (and digits, and b d f h) reach the cap height. So, per line:
- the baseline is where most characters end (not g q f J P Y, which may hang below it);
- each character's rise is how far its top stands above the baseline;
- where the rises fall into two groups (least squares), the taller TALL_OVER_SHORT or more
  times the shorter, the line has both heights: a letter read by its height (C O S U V W X
  Z M J P Y) is lowercase when its rise is nearer the shorter group's. The letters
  themselves decide, not what the model read them as, so a misread one does not mislead;
- at one height, the line is lowercase where more of its letters say so (a e n r g q, and
  a J P Y hanging HANG below the baseline) than say it is not (digits and the
  capital-only classes); where none say, the letters keep their classes, the capitals;
- i k l reach the cap height in either case (an i's dot), so their word decides: inside a
  word whose other letters are mostly lowercase, or at the start of one in a line that is
  (not its first word), they are lowercase; "I" alone stays a capital. A letter the
  height rule leaves undecided follows its word the same way.
Lowercase-only and capital-only classes and marks are the model's as they are; digits too,
except those `misread_digits` finds among lowercase letters (worker/recognize.py reads them
again among the letters).
Whatever the case option, text mode reads again the bare strokes that the model read as L in
a word in capitals (`bare_strokes_in_capitals`): EMNIST's L holds the lowercase l, a bare
stroke, but a capital L has a foot, so such a stroke is an I.
Whatever the case option too, it reads again among the letters a digit that stands at the
x-height of a word that holds letters (`misread_digits` without `between_letters`: digits
stand as tall as capitals).
"""
from __future__ import annotations

import statistics

import numpy as np

BY_HEIGHT = frozenset("COSUVWXZMJPY")  # lowercase stands at x-height (j p y hang from it)
BY_WORD = frozenset("IKL")  # lowercase reaches the cap height too
MERGED = BY_HEIGHT | BY_WORD
ALWAYS_TALL = frozenset("0123456789ABDEFGHNQRTbdfh")
ALWAYS_SHORT = frozenset("aegnqr")  # tops at x-height
HANGING = frozenset("gqJPYf")  # may end below the baseline
LOWER_ONLY, UPPER_ONLY = frozenset("abdefghnqrt"), frozenset("ABDEFGHNQRT")
HANG = 0.25  # of the line's height: how far below the baseline a j p y reaches, at least
BARE_STROKE = 0.35  # width over height below which a character is one bare stroke (an I, l or 1)
TALL_OVER_SHORT = 1.3  # a line's letters stand at two heights when the taller are this much taller


def as_written(chars: list[str], boxes: list[tuple[int, int, int, int]], spaces: list[str]) -> list[str]:
    """Each character as written: `chars` as the model reads them (EMNIST classes, or
    marks), `boxes` (x, y, w, h) upright on their line, `spaces` the text before each
    ("\\n" starts a line, " " a word)."""
    written = list(chars)
    for line in _lines(spaces):
        small = _small_by_height(line, chars, boxes, _heights(line, chars, boxes))
        words = [w for w in _split(line, lambda i: bool(spaces[i])) if any(chars[i].isalnum() for i in w)]
        lower_line = _lowercase_word(words[0], chars, small) if words else False
        for n, word in enumerate(words):
            lower_word = _lowercase_word(word, chars, small)
            letters = [i for i in word if chars[i].isalpha()]
            for k, i in enumerate(letters):
                if i in small:
                    lowercase = small[i]
                elif chars[i] in MERGED and len(letters) > 1:
                    lowercase = lower_word and (k > 0 or (n > 0 and lower_line))
                else:
                    continue
                written[i] = chars[i].lower() if lowercase else chars[i]
    return written


def _lines(spaces: list[str]) -> list[list[int]]:
    return _split(range(len(spaces)), lambda i: "\n" in spaces[i])


def _split(indices, starts) -> list[list[int]]:
    groups: list[list[int]] = []
    for i in indices:
        if not groups or starts(i):
            groups.append([])
        groups[-1].append(i)
    return groups


def misread_digits(chars: list[str], boxes: list[tuple[int, int, int, int]], spaces: list[str],
                   between_letters: bool = True, heights: list[tuple] | None = None) -> list[int]:
    """The digits that are lowercase letters the model took for digits (an o for a 0, an l
    for a 1, an s for a 5), in a word that holds letters: those that stand at the x-height
    of a line whose letters stand at two heights (digits stand as tall as capitals), and, with
    `between_letters`, runs of digits between two lowercase letters of a word ("he11o",
    "wor1d"; in strings of random characters such as codes, a digit among letters is often one).
    `heights`: `line_heights` of the same characters, when the caller has them."""
    found = []
    for line, line_height in zip(_lines(spaces), heights or line_heights(chars, boxes, spaces)):
        _, rise, threshold = line_height
        if threshold is None and not between_letters:
            continue  # a line of one height: no digit stands short
        # Which letters are lowercase matters only around digits between letters.
        small = _small_by_height(line, chars, boxes, line_height) if between_letters else {}
        for word in _split(line, lambda i: bool(spaces[i])):
            if not any(chars[i].isalpha() for i in word):
                continue
            short = {i for i in word if chars[i].isdigit() and threshold is not None and rise[i] < threshold}
            digit = [chars[i].isdigit() and i not in short for i in word]
            lower = [chars[i] in LOWER_ONLY or small.get(i, False) or i in short for i in word]
            for k, i in enumerate(word):
                if i in short:
                    found.append(i)
                elif digit[k] and between_letters:
                    before = [j for j in range(k) if not digit[j]]
                    after = [j for j in range(k + 1, len(word)) if not digit[j]]
                    if before and after and lower[before[-1]] and lower[after[0]]:
                        found.append(i)
    return found


def bare_strokes_in_capitals(chars: list[str], boxes: list[tuple[int, int, int, int]],
                             spaces: list[str], heights: list[tuple] | None = None) -> list[int]:
    """The characters read as L that are a bare stroke (narrower than BARE_STROKE of their
    height) in a word written in capitals: EMNIST's L holds the lowercase l, a bare stroke,
    so the model reads a bare-stroke capital I as L as often as not; a capital L has its foot.
    A word is in capitals where at least one of its letters shows it (a capital-only class,
    or a letter standing at the cap height of a line of two heights) and none says
    lowercase; a word that says neither is left as read. `heights`: as `misread_digits`'."""
    found = []
    for line, line_height in zip(_lines(spaces), heights or line_heights(chars, boxes, spaces)):
        small = _small_by_height(line, chars, boxes, line_height)
        for word in _split(line, lambda i: bool(spaces[i])):
            letters = [i for i in word if chars[i].isalpha()]
            if len(letters) < 2:
                continue
            lower, upper = _case_votes(letters, chars, small)
            if upper > 0 and lower == 0:
                found += [i for i in letters if chars[i] == "L" and boxes[i][2] < BARE_STROKE * boxes[i][3]]
    return found


def line_heights(chars: list[str], boxes, spaces: list[str]) -> list[tuple]:
    """Each line's `_heights`, in order: measured once for the rules that read them."""
    return [_heights(line, chars, boxes) for line in _lines(spaces)]


def _heights(line: list[int], chars: list[str], boxes) -> tuple[float, dict[int, float], float | None]:
    """The line's baseline, each character's rise above it, and, where the characters
    stand at two heights, the rise between them (None where they stand at one)."""
    standing = [boxes[i][1] + boxes[i][3] for i in line if chars[i].isalnum() and chars[i] not in HANGING]
    if not standing:
        return 0.0, {}, None
    baseline = statistics.median(standing)
    rise = {i: baseline - boxes[i][1] for i in line if chars[i].isalnum()}
    low, high = _two_levels(sorted(rise.values()))
    return baseline, rise, (low + high) / 2 if high >= TALL_OVER_SHORT * max(low, 1) else None


def _small_by_height(line: list[int], chars: list[str], boxes, heights: tuple) -> dict[int, bool]:
    """{index: lowercase?} for the line's letters read by their height, where it tells;
    `heights`: the line's `_heights`."""
    alike = [i for i in line if chars[i] in BY_HEIGHT]
    baseline, rise, threshold = heights
    if not alike or not rise:
        return {}
    if threshold is not None:
        return {i: rise[i] < threshold for i in alike}
    # One level: the letters that show their height say which (a misread one is outvoted):
    # the lowercase-only short ones, and a j p y hanging below the baseline (J P Y stand on it).
    height = statistics.median(rise.values())
    hanging = sum(chars[i] in "JPY" and boxes[i][1] + boxes[i][3] - baseline > HANG * height for i in rise)
    short = sum(chars[i] in ALWAYS_SHORT for i in rise) + hanging > sum(chars[i] in ALWAYS_TALL for i in rise)
    return dict.fromkeys(alike, True) if short else {}


def _two_levels(rises: list[float]) -> tuple[float, float]:
    """The means of the two groups the sorted `rises` fall into best (least squares: the
    split that leaves the most variance between them)."""
    r = np.asarray(rises, dtype=float)
    if len(r) < 2:
        return float(r[0]), float(r[0])
    k = np.arange(1, len(r))
    low_sum = np.cumsum(r)[:-1]
    high_sum = r.sum() - low_sum
    between = low_sum ** 2 / k + high_sum ** 2 / (len(r) - k)
    best = int(np.argmax(between))
    return float(low_sum[best] / k[best]), float(high_sum[best] / (len(r) - k[best]))


def _lowercase_word(word: list[int], chars: list[str], small: dict[int, bool]) -> bool:
    """Whether a word's letters, its first aside (a capital starts names and sentences), are
    mostly lowercase, by the letters that show it."""
    letters = [i for i in word if chars[i].isalpha()]
    lower, upper = _case_votes(letters[1:] if len(letters) > 1 else letters, chars, small)
    return lower > upper


def _case_votes(letters: list[int], chars: list[str], small: dict[int, bool]) -> tuple[int, int]:
    """How many of `letters` show they are lowercase, and how many that they are capitals:
    by their class (lowercase-only, capital-only) or by their height (`small`)."""
    lower = sum(chars[i] in LOWER_ONLY or small.get(i, False) for i in letters)
    upper = sum(chars[i] in UPPER_ONLY or small.get(i) is False for i in letters)
    return lower, upper
