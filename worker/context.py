"""A text's tokens read together: a run of characters that reads as a number is read as
digits, and one that reads as a word as letters.

The model reads each character alone, and most of its mistakes are between a digit and a
letter that look alike (O/0, I/1, L/1, S/5, Z/2, B/8, q/9). Beside its neighbours such a
character is often plain: the O in "2O2412" is a 0, the 0 in "J0HNSON" an O. In text mode
each token (the characters between two spaces; marks such as "/" or "." do not split one)
is weighed as one of three things (and first the whole line, where at least half its tokens
are single characters: a form's comb of boxes cuts a number or a name apart with wide gaps):
- a number: every character a digit;
- a word: every character a letter;
- anything: each character what it looks like most, the model's own reading.
The model was trained on every class equally often, so its probabilities are the evidence
of each character's image. A token is read as a number when its characters' evidence for
digits, times NUMBER_PRIOR, beats the other two, and its characters are then read among
the digits (`charsets.restrict`); likewise a word among the letters.

The priors are knobs, tuned by `python -m bench.context` (characters composed into tokens)
so that strings of random characters, half of them digits as in EMNIST, and codes that mix
letters and digits (SW1A, K1A0B1) lose little (0.2-0.6 points) while numbers and words gain
much (+5 and +3). A digit is strong evidence (10 of 47 classes), so NUMBER_PRIOR is small;
a letter is weak evidence (37 of 47), so a word needs a large prior. NUMBER_PRIOR was 0.002
until session 23: the archive trained on junk tiles is less sure of digits drawn with an even
pen (a bare stroke, a 0), and on training-split numbers drawn on the page's word pad 0.005
read 94.3% of digits against 91.9%, for 0.2 points of random strings and codes.
In a text of several tokens, each token's word prior is learnt from the others
(`_word_priors`): among words, a short word with one doubtful character is still a word.
A field whose `chars` names only digits or only letters is read among them already; a
line read as a code (`mode=code`: serial numbers, references) keeps each character's own
reading.
"""
from __future__ import annotations

import math

import numpy as np

from worker import charsets

NUMBER_PRIOR = 0.005
WORD_PRIOR = 0.5
TEXT_WEIGHT, WORD_PRIOR_MAX = 0.5, 0.9
DIGITS = charsets.NAMED["digits"]
IS_DIGIT = charsets.mask_of(DIGITS)
FLOOR = 1e-9  # a kind the model gives no probability at all still costs, not -inf


def token_kind(probs: np.ndarray, allowed: str = "") -> str | None:
    """"digits", "letters" or None (read each character alone) for a token's rows of class
    probabilities, over the field's `allowed` classes ("" for all)."""
    evidence = _evidence(probs, allowed)
    return _kind(*evidence, list(range(len(probs)))) if evidence else None


def read_lines(probs: np.ndarray, lines: list[list[list[int]]], allowed: str = "") -> tuple[np.ndarray, list[str]]:
    """`probs` (rows of class probabilities over the `allowed` classes) with each token's
    rows read among the digits or the letters where it reads as a number or a word; and the
    classes each row is now read among. `lines`: each line's tokens, each token its row
    numbers. A line that reads as one number or one word as a whole is read so, whatever its
    spaces: the cells of a form's comb of boxes are cut apart by wide gaps."""
    among = [allowed] * len(probs)
    evidence = _evidence(probs, allowed) if any(sum(map(len, line)) > 1 for line in lines) else None
    if evidence is None:
        return probs, among
    read = probs.copy()
    classes = allowed or charsets.CLASSES
    word_priors = _word_priors(evidence, [token for line in lines for token in line])
    for line in lines:
        whole = [row for token in line for row in token]
        # Only a line cut into characters standing apart (half its tokens one character or
        # more) is weighed whole: pages of words lost 0.5-0.7 points of their characters
        # when every line was (bench.words --lines).
        spaced_out = len(line) > 1 and 2 * sum(len(token) == 1 for token in line) >= len(line)
        line_kind = _kind(*evidence, whole) if spaced_out else None
        readings = ([(whole, line_kind)] if line_kind else
                    [(rows, _kind(*evidence, rows, word_priors.get(id(rows)))) for rows in line])
        for rows, kind in readings:
            if kind is not None:
                keep = "".join(c for c in classes if (c in DIGITS) == (kind == "digits"))
                read[rows] = charsets.restrict(probs[rows], keep)
                for row in rows:
                    among[row] = keep
    return read, among


def _evidence(probs: np.ndarray, allowed: str) -> tuple[list[float], list[float]] | None:
    """Per row, the log evidence of its image for a digit and for a letter (relative to
    the share of each among the allowed classes), or None where the field allows only one
    kind."""
    mask = charsets.mask_of(allowed)
    n_classes, n_digits = int(mask.sum()), int((mask & IS_DIGIT).sum())
    if n_digits in (0, n_classes):
        return None
    share = n_digits / n_classes
    digits = probs[:, IS_DIGIT].sum(axis=1) / np.maximum(probs.sum(axis=1), FLOOR)
    return (np.log(np.maximum(digits, FLOOR) / share).tolist(),
            np.log(np.maximum(1 - digits, FLOOR) / (1 - share)).tolist())


def _word_priors(evidence: tuple[list[float], list[float]], tokens: list[list[int]]) -> dict[int, float]:
    """Per token (by id) of a text of several, its word prior learnt from the text's other
    tokens: WORD_PRIOR counted as TEXT_WEIGHT tokens, beside each other token's chance of
    being a word (its posterior under the plain priors); never below WORD_PRIOR, nor above
    WORD_PRIOR_MAX, so that a code among words keeps a digit that looks like one."""
    tokens = [t for t in tokens if len(t) > 1]
    if len(tokens) < 2 or WORD_PRIOR <= 0:
        return {}
    chance = {id(t): _word_chance(*evidence, t) for t in tokens}
    total = sum(chance.values())
    return {key: max(WORD_PRIOR, min(WORD_PRIOR_MAX, (TEXT_WEIGHT * WORD_PRIOR + total - own) /
                                         (TEXT_WEIGHT + len(tokens) - 1)))
            for key, own in chance.items()}


def _word_chance(digit: list[float], letter: list[float], rows: list[int]) -> float:
    """The chance that a token is a word, from its characters' evidence and the plain priors."""
    scores = np.array(_scores(digit, letter, rows, WORD_PRIOR))
    weights = np.exp(scores - scores.max())
    return float(weights[1] / weights.sum())


def _scores(digit: list[float], letter: list[float], rows: list[int], word_prior: float) -> tuple[float, float, float]:
    """The log odds of a token being a number, a word and anything (each character alone)."""
    number = math.log(NUMBER_PRIOR) + sum(digit[r] for r in rows)
    word = math.log(word_prior) + sum(letter[r] for r in rows) if word_prior > 0 else -math.inf
    # Reading each character alone is the model's own reading: its evidence is 1.
    return number, word, math.log(1 - NUMBER_PRIOR - word_prior)


def _kind(digit: list[float], letter: list[float], rows: list[int], word_prior: float | None = None) -> str | None:
    """`word_prior`: the token's, where its text raises it (_word_priors); else WORD_PRIOR."""
    if len(rows) < 2:
        return None
    number, word, anything = _scores(digit, letter, rows, WORD_PRIOR if word_prior is None else word_prior)
    if number > max(word, anything):
        return "digits"
    if word > max(number, anything):
        return "letters"
    return None
