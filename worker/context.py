"""A text's tokens read together: a run of characters that reads as a number is read as
digits.

The model reads each character alone, and most of its mistakes are between a digit and a
letter that look alike (O/0, I/1, L/1, S/5, Z/2, B/8, q/9). Beside its neighbours such a
character is rarely ambiguous: the O in "2O24" is a 0. In text mode each token (the
characters between two spaces; marks such as "/" or "." do not split one) is weighed as
a number (every character a digit) or as anything (each character what it looks like
most, the model's own reading). The model was trained on every class equally often, so
its probabilities are the evidence of each character's image: a token is read as a number
when its characters' evidence for digits, times NUMBER_PRIOR, beats its evidence for
anything, and its characters are then read among the digits (`charsets.restrict`).

NUMBER_PRIOR is small on purpose (`python -m bench.context`, test-split characters
composed into tokens): it reads numbers right far more often (91.4% -> 95.8% of their
digits, whole numbers 64% -> 83%), while strings of characters drawn at random, half of
them digits, as EMNIST has them, and codes that mix letters and digits (SW1A, K1A0B1) read
as before. A larger prior reads more numbers right and more random strings wrong. The
same weighing for words (every character a letter, WORD_PRIOR) buys little: 37 of the 47
classes are letters, so a string of letters is likely by chance, and only a large prior
turns a word's 0 into an O, which costs random strings more than it gives words; it is off.
A field whose `chars` names only digits or only letters is read among them already.
"""
from __future__ import annotations

import math

from worker import charsets

NUMBER_PRIOR = 0.002
WORD_PRIOR = 0.0  # off: see above
DIGITS = charsets.NAMED["digits"]
FLOOR = 1e-9  # a type the model gives no probability at all still costs, not -inf


def token_kind(answers: list[dict], allowed: str = "") -> str | None:
    """"digits", "letters" or None (read each character alone) for a token's answers,
    each holding every allowed class's probability (`allowed`: the field's classes, "" for
    all)."""
    classes = allowed or charsets.CLASSES
    n_digits = sum(c in DIGITS for c in classes)
    if len(answers) < 2 or n_digits in (0, len(classes)) or any("predictions" not in a for a in answers):
        return None
    digit_share = n_digits / len(classes)
    number = math.log(NUMBER_PRIOR)
    word = math.log(WORD_PRIOR) if WORD_PRIOR > 0 else -math.inf
    for answer in answers:
        digits = sum(p["p"] for p in answer["predictions"] if p["char"] in DIGITS)
        total = sum(p["p"] for p in answer["predictions"]) or 1.0
        number += math.log(max(digits / total, FLOOR) / digit_share)
        word += math.log(max((total - digits) / total, FLOOR) / (1 - digit_share))
    # Reading each character alone is the model's own reading: its evidence is 1.
    anything = math.log(1 - NUMBER_PRIOR - WORD_PRIOR)
    if number > max(word, anything):
        return "digits"
    if word > max(number, anything):
        return "letters"
    return None


def read_tokens(tokens: list[list[dict]], allowed: str = "") -> list[list[dict]]:
    """Each token's answers (complete distributions over the allowed classes), read among
    the digits or the letters where the token reads as a number or a word."""
    classes = allowed or charsets.CLASSES
    read = []
    for answers in tokens:
        kind = token_kind(answers, allowed)
        if kind is None:
            read.append(answers)
            continue
        keep = "".join(c for c in classes if (c in DIGITS) == (kind == "digits"))
        read.append(charsets.restrict(answers, keep, len(keep)))
    return read
