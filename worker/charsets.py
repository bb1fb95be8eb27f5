"""Which characters a field can hold: the `chars` option of a job.

A form's fields are often known to hold only digits (a date, an amount, a postcode) or only
capitals. The model reads all 47 EMNIST classes, and most of its mistakes are between a
digit and a letter that look alike (O/0, L/1, I/1, S/5, Z/2, g/9). Told the field's
characters, the worker keeps only those classes and renormalizes their probabilities
(the model's posterior given that the character is one of them), so a digits-only field
cannot come back as an O.

`chars` is a named set (below) or the characters themselves, such as "0123456789ABCDEF".
EMNIST merges the lowercase letters it cannot tell from their capitals (c i j k l m o p s u
v w x y z) into them, so "x" means the class X, read back as "X".
"""
from __future__ import annotations

# The model's classes, in label order (EMNIST balanced's mapping).
CLASSES = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabdefghnqrt"
NAMED = {
    "digits": "0123456789",
    "uppercase": "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "letters": CLASSES[10:],
}
MAX_LENGTH = 200  # a list of characters longer than this is not a list of characters
# Marks the model has no class for. In text mode, a field whose `chars` name them gets them
# in its reading where their shape says they are (worker/segment.py: a full stop, a comma,
# a hyphen, a slash), so "3.50" and "12/05/26" do not come back as 350 and 12105126.
MARKS = ".,-/"


def parse_chars(value: str) -> str:
    """The classes a `chars` option allows, in label order, then the marks it allows ("" for
    all classes and no marks), or ValueError saying what is wrong."""
    if not isinstance(value, str):
        raise ValueError(f"chars must be a string, got {type(value).__name__}")
    if value in NAMED:
        return NAMED[value]
    if not value:
        raise ValueError(f"chars is empty: give the characters the field holds, or one of {', '.join(NAMED)}")
    if len(value) > MAX_LENGTH:
        raise ValueError(f"chars is {len(value)} characters long; the model has {len(CLASSES)} classes")
    if "-" in value.strip("-"):  # a hyphen between two characters: 0-9, A-Z
        raise ValueError(f"chars {value[:40]!r} looks like a range: list the characters themselves "
                         f"(0123456789) or name a set ({', '.join(NAMED)}); a hyphen that the field may "
                         f"hold goes first or last (0123456789-)")
    wanted = set()
    for char in value:
        if char in CLASSES or char in MARKS:
            wanted.add(char)
        elif char.isascii() and char.upper() in CLASSES:  # merged into its capital by EMNIST
            wanted.add(char.upper())
        else:
            raise ValueError(f"chars holds {char!r}, which the model cannot read (it reads 0-9, A-Z and "
                             f"a b d e f g h n q r t, and in text mode the marks {' '.join(MARKS)}); "
                             f"or name a set: {', '.join(NAMED)}")
    allowed = "".join(c for c in CLASSES if c in wanted)
    marks = "".join(m for m in MARKS if m in wanted)
    if not allowed:
        raise ValueError(f"chars holds only marks ({' '.join(marks)}): add the characters the field holds")
    return "" if allowed == CLASSES and not marks else allowed + marks


def classes_of(chars: str) -> str:
    """The model's classes a parsed `chars` allows ("" for all of them)."""
    classes = "".join(c for c in chars if c not in MARKS)
    return "" if classes == CLASSES else classes


def marks_of(chars: str) -> str:
    """The marks a parsed `chars` allows."""
    return "".join(c for c in chars if c in MARKS)


def restrict(answers: list[dict], allowed: str, top_k: int) -> list[dict]:
    """TorchServe answers holding every class's probability -> the `top_k` best among
    `allowed`, their probabilities renormalized to sum to 1 over `allowed` (errors stay
    as they are)."""
    kept = []
    for answer in answers:
        if "predictions" not in answer:
            kept.append(answer)
            continue
        options = [p for p in answer["predictions"] if p["char"] in allowed]
        total = sum(p["p"] for p in options)
        if total > 0:
            options = [{**p, "p": round(p["p"] / total, 6)} for p in options]
        else:  # every allowed class underflowed to 0: nothing to prefer among them
            options = [{**p, "p": 1 / len(options)} for p in options]
        kept.append({"predictions": options[:top_k]})
    return kept
