"""worker.charsets: the `chars` option's parsing and the renormalized answers."""
from __future__ import annotations

import pytest

from worker.charsets import CLASSES, classes_of, marks_of, parse_chars, restrict


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


def answer(*pairs):
    return {"predictions": [{"char": c, "p": p} for c, p in pairs]}


def test_restrict_keeps_the_allowed_classes_renormalized_in_order():
    answers = [answer(("O", 0.6), ("0", 0.3), ("Q", 0.06), ("6", 0.03), ("D", 0.01)),
               {"error": {"code": "bad_tile", "message": "x"}},
               answer(("7", 0.9), ("1", 0.1))]
    kept = restrict(answers, "0123456789", top_k=2)
    assert kept[0] == answer(("0", 0.909091), ("6", 0.090909))
    assert kept[1] == answers[1]
    assert kept[2] == answer(("7", 0.9), ("1", 0.1))
    assert restrict(answers, "01", top_k=5)[0] == answer(("0", 1.0))


def test_restrict_when_every_allowed_class_underflowed():
    kept = restrict([answer(("A", 1.0), ("1", 0.0), ("2", 0.0))], "12", top_k=5)
    assert kept == [answer(("1", 0.5), ("2", 0.5))]
