"""worker.context: a token's characters read together (numbers as digits, words as letters)."""
from __future__ import annotations

import numpy as np

from bench.words import compose_word, edit_distance, png
from tests.fixtures.reading import read_text
from tests.test_api import b64
from worker import context, recognize
from worker.charsets import CLASSES


def answer(probs: dict[str, float]) -> np.ndarray:
    """A row of every class's probability: the named classes', the rest shared evenly."""
    rest = (1 - sum(probs.values())) / (len(CLASSES) - len(probs))
    return np.array([probs.get(c, rest) for c in CLASSES])


def sure(char: str) -> np.ndarray:
    return answer({char: 0.95})


AMBIGUOUS_O = answer({"O": 0.55, "0": 0.4})  # an O, or a 0
AMBIGUOUS_0 = answer({"0": 0.5, "O": 0.45})  # a 0, or an O


def best(rows: np.ndarray) -> str:
    return "".join(CLASSES[i] for i in np.asarray(rows).argmax(axis=1))


def read(token: list[np.ndarray], allowed: str = "") -> np.ndarray:
    rows = np.stack(token)
    return context.read_lines(rows, [[list(range(len(rows)))]], allowed)[0]


def test_a_number_reads_its_ambiguous_character_as_a_digit():
    token = [sure("2"), AMBIGUOUS_O, sure("2"), sure("4"), sure("1"), sure("2")]
    assert best(token) == "2O2412"
    assert context.token_kind(np.stack(token)) == "digits"
    rows, among = context.read_lines(np.stack(token), [[[0, 1, 2, 3, 4, 5]]])
    assert best(rows) == "202412" and among == ["0123456789"] * 6
    # Read among the digits, renormalized: the 0 takes the O's share.
    assert rows[1, CLASSES.index("0")] > 0.9 and rows[1, 10:].sum() == 0


def test_a_short_number_needs_surer_digits():
    """Two sure digits are no proof that an O between them is a 0 (NUMBER_PRIOR is small)."""
    token = [sure("2"), AMBIGUOUS_O, sure("4")]
    assert context.token_kind(np.stack(token)) is None
    assert context.token_kind(np.stack([sure("2"), sure("0"), sure("4")])) is None  # nothing to change either


def test_three_sure_digits_make_a_number_of_four():
    """A year with one doubtful digit ("2O19") reads as a number: with NUMBER_PRIOR 0.002 it
    did not, and numbers drawn on the word pad, whose pen leaves a 0 or a bare 1 doubtful,
    lost 2.3 points (README, Numbers and words in free text)."""
    token = [sure("2"), AMBIGUOUS_O, sure("1"), sure("9")]
    assert best(read(token)) == "2019"
    # Two doubtful characters in four are not enough: "2OI9" may be a code.
    assert best(read([sure("2"), AMBIGUOUS_O, answer({"I": 0.55, "1": 0.4}), sure("9")])) == "2OI9"


def test_a_word_reads_its_ambiguous_character_as_a_letter():
    token = [sure("J"), AMBIGUOUS_0, sure("H"), sure("N"), sure("S"), sure("O"), sure("N")]
    assert best(token) == "J0HNSON"
    assert context.token_kind(np.stack(token)) == "letters"
    assert best(read(token)) == "JOHNSON"
    assert best(read(token[:4])) == "JOHN"
    # One sure letter is no proof that the 0 beside it is an O: a code such as "J0" stays.
    assert best(read(token[:2])) == "J0"


def test_codes_that_mix_letters_and_digits_are_read_as_they_look():
    for code in ("A1B2", "SW1A", "K1A0B1", "B12"):
        token = [sure(c) for c in code]
        assert context.token_kind(np.stack(token)) is None
        assert best(read(token)) == code


def read_text_of(tokens: list[list[np.ndarray]]) -> str:
    """A line of tokens read together, as text mode reads it: its tokens a space apart."""
    rows = np.stack([row for token in tokens for row in token])
    spans, start = [], 0
    for token in tokens:
        spans.append(list(range(start, start + len(token))))
        start += len(token)
    read_rows = context.read_lines(rows, [spans])[0]
    return " ".join(best(read_rows[span]) for span in spans)


DOUBTFUL_0 = answer({"0": 0.7, "O": 0.25})  # most likely a 0; an O in a word


def test_a_text_of_words_makes_its_doubtful_token_a_word():
    """Alone, "0IL" (a 0 the model is fairly sure of) is no word; among words it is one."""
    oil = [DOUBTFUL_0, sure("I"), sure("L")]
    assert best(read(oil)) == "0IL"
    words = [[sure(c) for c in "HEAT"], [sure(c) for c in "THE"]]
    assert read_text_of([words[1], oil, words[0]]) == "THE OIL HEAT"
    # Each token's prior comes from the others: two doubtful tokens do not vouch for each other.
    assert read_text_of([oil, oil]) == "0IL 0IL"


def test_a_text_of_words_keeps_its_codes_and_numbers():
    """The word prior a text raises stays below what a sure digit outweighs: a postcode and
    a year among words keep their digits."""
    words = [[sure(c) for c in word] for word in ("THE", "HOUSE", "AT", "NUMBER", "TEN", "IN", "TOWN")]
    code, year = [sure(c) for c in "SW1A"], [sure(c) for c in "2024"]
    assert read_text_of(words + [code, year]) == "THE HOUSE AT NUMBER TEN IN TOWN SW1A 2024"
    assert read_text_of(words + [[sure(c) for c in "K1A0B1"]]).endswith(" K1A0B1")


def test_a_lone_character_and_single_kind_fields_are_left_alone():
    assert context.token_kind(np.stack([AMBIGUOUS_O])) is None
    token = np.stack([sure("2"), AMBIGUOUS_O, sure("2"), sure("4"), sure("1"), sure("2")])
    assert context.token_kind(token, allowed="0123456789") is None  # read among them already
    assert context.token_kind(token, allowed="ABCO") is None


def plan_of(spaces: list[str], marks: list[str]) -> recognize.ImagePlan:
    n = len(spaces)
    tiles = [np.zeros((28, 28), np.uint8) for m in marks if not m]
    return recognize.ImagePlan(tiles=tiles, boxes=[[10 * k, 0, 8, 8] for k in range(n)], spaces=spaces,
                               touching=[None] * n, marks=marks)


def test_results_read_each_token_apart_and_marks_stay_in_their_token():
    # "2O2412 J0HNSON": a number and a word, a space apart.
    spaces = [""] * 6 + [" "] + [""] * 6
    answers = [sure(c) if c != "O" else AMBIGUOUS_O for c in "2O2412"] + [sure("J"), AMBIGUOUS_0] + [
        sure(c) for c in "HNSON"]
    plan = plan_of(spaces, [""] * 13)
    answers = np.stack(answers)
    assert recognize.build_results([plan], answers, [recognize.Reading(3, "", False)])[0]["text"] == "2O2412 J0HNSON"
    [result] = recognize.build_results([plan], answers, [recognize.Reading(3, "", True)])
    assert result["text"] == "202412 JOHNSON"
    assert all(len(c["alternatives"]) == 3 for c in result["characters"])
    assert [a["char"] for a in result["characters"][1]["alternatives"]][0] == "0"
    assert all(a["char"] in "0123456789" for a in result["characters"][1]["alternatives"])
    assert result["characters"][1]["confidence"] == result["characters"][1]["alternatives"][0]["p"] > 0.9
    # The same number cut apart, as a form's comb of boxes cuts one: the line reads as a number.
    comb = ["", " ", "", " ", " ", " "]  # "2 O2 4 1 2"
    [result] = recognize.build_results([plan_of(comb, [""] * 6)], answers[:6], [recognize.Reading(3, "", True)])
    assert result["text"] == "2 02 4 1 2"
    # Two short tokens a space apart, or a line apart: each read as it looks.
    for spaces in (["", "", "", " ", "", ""], ["", "", "", "\n", "", ""]):
        [result] = recognize.build_results([plan_of(spaces, [""] * 6)], answers[:6], [recognize.Reading(3, "", True)])
        assert result["text"] == f"2O2{spaces[3]}412"
    # "12/O5/26": the slashes, read by their shape, do not cut the date apart.
    plan = plan_of([""] * 8, ["", "", "/", "", "", "/", "", ""])
    date = np.stack([sure("1"), sure("2"), AMBIGUOUS_O, sure("5"), sure("2"), sure("6")])
    assert recognize.build_results([plan], date, [recognize.Reading(1, "", True)])[0]["text"] == "12/05/26"


def test_numbers_of_real_digits_read_better_together(emnist_test_sample):
    """In-process through the worker's planning and the archived model: numbers of the test
    split's digits read in context and alone; strings of any of its characters (half of them
    digits) lose little."""
    s = emnist_test_sample
    rng = np.random.default_rng(3)
    scores = {}
    for kind, pool in (("numbers", np.nonzero(s.labels < 10)[0]), ("anything", np.arange(len(s.labels)))):
        tokens = [rng.choice(pool, int(rng.integers(5, 9)), replace=False) for _ in range(40)]
        images = [png(compose_word([s.images[i] for i in idx], np.random.default_rng(k), height=60))
                  for k, idx in enumerate(tokens)]
        for together in (True, False):
            errors = chars = 0
            for idx, image in zip(tokens, images):
                truth = "".join(s.classes[k] for k in s.labels[idx])
                text = read_text(s, image, in_context=together).replace(" ", "")
                errors, chars = errors + edit_distance(text, truth), chars + len(truth)
            scores[kind, together] = 1 - errors / chars
    assert scores["numbers", True] >= scores["numbers", False] + 0.02, scores
    assert scores["anything", True] >= scores["anything", False] - 0.015, scores


def test_a_text_reads_a_number_as_digits_and_a_code_each_character_alone(api, emnist_test_sample):
    """Through the stack: one line of seven real digits read as text and as a code (the
    same upload, per-image modes). Cut the same way; the text's characters are read among
    the digits only, the code's among all classes."""
    s = emnist_test_sample
    digits = np.nonzero(s.labels < 10)[0][:7]
    image = png(compose_word([s.images[i] for i in digits], np.random.default_rng(0), height=60, gaps=(2, 8)))
    response = api.post("/v1/recognize", json={"top_k": 5, "images": [{"image": b64(image), "mode": "text"},
                                                                      {"image": 0, "mode": "code"}]})
    assert response.status_code == 200, response.text
    text, code = response.json()["results"]
    assert len(text["characters"]) == 7 and " " not in text["text"], text["text"]
    assert [c["box"] for c in text["characters"]] == [c["box"] for c in code["characters"]]
    assert all(a["char"].isdigit() for c in text["characters"] for a in c["alternatives"])
    assert any(not a["char"].isdigit() for c in code["characters"] for a in c["alternatives"])
    assert sum(a == b for a, b in zip(text["text"], (s.classes[k] for k in s.labels[digits]))) >= 6
