"""worker.charsets: the `chars` option's parsing and the renormalized answers."""
from __future__ import annotations

import numpy as np
import pytest

from worker.charsets import CLASSES, classes_of, marks_of, parse_chars, predictions, restrict


@pytest.mark.parametrize("value, allowed", [
    ("digits", "0123456789"),
    ("uppercase", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    ("letters", CLASSES[10:]),
    ("FED0123", "0123DEF"),  # label order, whatever order they came in
    ("00110", "01"),
    ("x", "X"),  # EMNIST merges x into X
    ("abc", "Cab"),  # a and b have classes of their own, c is C's
    (CLASSES, ""),  # every class: no restriction
    (CLASSES.lower() + CLASSES.upper(), ""),
    ("/0123456789.", "0123456789./"),  # marks after the classes, in MARKS order
    ("-0123456789", "0123456789-"),
    (CLASSES + ",", CLASSES + ","),  # every class, and a mark: spelt out
])
def test_parse_chars(value, allowed):
    assert parse_chars(value) == allowed


@pytest.mark.parametrize("chars, classes, marks", [
    ("", "", ""), ("0123456789./", "0123456789", "./"), (CLASSES + ",", "", ","), ("AB", "AB", ""),
])
def test_a_parsed_chars_splits_into_classes_and_marks(chars, classes, marks):
    assert (classes_of(chars), marks_of(chars)) == (classes, marks)


@pytest.mark.parametrize("value, says", [
    ("", "empty"),
    ("12-3", "looks like a range"),
    ("-0-9", "looks like a range"),  # a hyphen first does not make a range a list
    ("./", "only marks"),
    ("1;2", "';'"),
    ("A B", "' '"),
    ("ı", "'ı'"),  # upper() makes it I, but no client means that
    ("７", "'７'"),
    ("1" * 201, "201 characters"),
    (7, "must be a string"),
    (None, "must be a string"),
])
def test_parse_chars_says_what_is_wrong(value, says):
    with pytest.raises(ValueError, match=says):
        parse_chars(value)


def row(**probs: float) -> np.ndarray:
    """A row of class probabilities (`_0=0.3` for the class "0")."""
    named = {k.lstrip("_"): v for k, v in probs.items()}
    return np.array([named.get(c, 0.0) for c in CLASSES])


def test_restrict_keeps_the_allowed_classes_renormalized():
    probs = np.stack([row(O=0.6, _0=0.3, Q=0.06, _6=0.03, D=0.01), row(_7=0.9, _1=0.1)])
    kept = restrict(probs, "0123456789")
    first, second = predictions(kept, 2, ["0123456789"] * 2)
    assert first == [{"char": "0", "p": 0.909091}, {"char": "6", "p": 0.090909}]
    assert second == [{"char": "7", "p": 0.9}, {"char": "1", "p": 0.1}]
    assert kept[:, 10:].sum() == 0 and np.allclose(kept.sum(axis=1), 1)
    assert predictions(restrict(probs, "01")[:1], 5, ["01"]) == [[{"char": "0", "p": 1.0}, {"char": "1", "p": 0.0}]]
    assert restrict(probs, "") is probs  # every class: nothing to do


def test_restrict_when_every_allowed_class_underflowed():
    kept = restrict(np.stack([row(A=1.0)]), "12")
    assert predictions(kept, 5, ["12"]) == [[{"char": "1", "p": 0.5}, {"char": "2", "p": 0.5}]]


def test_predictions_list_the_best_first_among_each_rows_classes():
    probs = np.stack([row(A=0.5, B=0.3, _8=0.2)] * 3)
    every, some, capped = predictions(probs, 47, ["", "8AC", "AB"])
    assert [p["char"] for p in every][:3] == ["A", "B", "8"] and len(every) == 47
    assert some == [{"char": "A", "p": 0.5}, {"char": "8", "p": 0.2}, {"char": "C", "p": 0.0}]
    assert capped == [{"char": "A", "p": 0.5}, {"char": "B", "p": 0.3}]
    assert [[p["char"] for p in r] for r in predictions(probs[:1], 2, [""])] == [["A", "B"]]
    assert predictions(probs[:0], 5, []) == []
