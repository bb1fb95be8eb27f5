"""worker.case: letters EMNIST merges come back in the case their height and word show."""
from worker.case import as_written

CAP, X = 40, 24  # a line's cap height and x-height, pixels


def line(spec: str, baseline: int = 100, left: int = 0):
    """(chars, upright boxes, spaces) of a line: each character is written "A^" (cap
    height), "a_" (x-height) or "p," (from the x-height down past the baseline), "L^|" for
    one bare stroke (a fifth as wide as it is high); a space before a character is its own item."""
    chars, boxes, spaces, space = [], [], [], ""
    tokens = iter(spec.split(" "))
    for token in tokens:
        if token == "":
            space = " "
            continue
        char, size = token[0], token[1]
        top = baseline - (CAP if size == "^" else X)
        bottom = baseline + (12 if size == "," else 0)
        chars.append(char)
        width = (bottom - top) // 5 if token.endswith("|") else 20
        boxes.append((left + 30 * len(chars), top, width, bottom - top))
        spaces.append(space)
        space = ""
    return chars, boxes, spaces


def written(spec: str) -> str:
    chars, boxes, spaces = line(spec)
    return "".join(s + c for s, c in zip(spaces, as_written(chars, boxes, spaces)))


def test_small_letters_beside_tall_ones_are_lowercase():
    assert written("H^ e_ L^ L^ O_") == "Hello"
    assert written("S^ U_ n_") == "Sun"
    assert written("Z^ O_ O_") == "Zoo"


def test_capitals_of_one_height_stay_capitals():
    assert written("H^ E^ L^ L^ O^") == "HELLO"
    assert written("S^ W^ I^ M^") == "SWIM"  # nothing on the line says lowercase


def test_lowercase_letters_with_tall_ones_among_them():
    # i's dot makes it as tall as a capital; its word says which it is.
    assert written("S_ W_ I^ M_") == "swim"
    assert written("C_ O_ P, Y,") == "copy"  # p and y hang from the x-height


def test_a_line_of_one_height_goes_by_the_letters_that_show_theirs():
    assert written("S_ U_ n_") == "sun"  # n is lowercase only: the line is at x-height
    assert written("S_ O_ S_") == "SOS"  # no letter shows it: EMNIST's classes


def test_i_k_l_follow_their_word_and_a_lone_capital_i_stays():
    assert written("L^ I^ K^ e_") == "Like"  # a word's first letter may be a capital
    assert written("W_ e_  L^ I^ K^ e_") == "we like"  # not the line's first word: it is lowercase too
    assert written("I^  a_ M_") == "I am"


def test_digits_marks_and_other_classes_are_left_as_read():
    assert written("2^ 0^ 2^ 4^") == "2024"
    assert written("a_ b^ d^ e_ f^ g, h^ n_ q, r_ t^") == "abdefghnqrt"
    assert written("A^ B^ D^ E^ F^ G^ H^ N^ Q^ R^ T^") == "ABDEFGHNQRT"


def test_each_line_has_its_own_heights():
    first, boxes1, spaces1 = line("H^ E^ L^ L^ O^")
    second, boxes2, spaces2 = line("W_ O_ r_ L^ d^", baseline=300)
    spaces2[0] = "\n"
    chars = first + second
    result = as_written(chars, boxes1 + boxes2, spaces1 + spaces2)
    assert "".join(result) == "HELLOworld"


def read_line(spec: str, seconds: str, allowed: str = "", written: bool = True, mode: str = "text") -> dict:
    """recognize.build_results' result for a line `spec` (as `line` takes it) whose
    characters the model reads as they are named there (p 0.8), each with a second
    reading (`seconds`, p 0.15)."""
    import numpy as np

    from worker import charsets, recognize

    chars, boxes, spaces = line(spec)
    n = len(chars)
    plan = recognize.ImagePlan(tiles=[np.zeros((28, 28), np.uint8)] * n, boxes=[list(b) for b in boxes],
                               spaces=spaces, touching=[None] * n, marks=[""] * n, upright=boxes)
    probs = np.full((n, len(charsets.CLASSES)), 0.001)
    for row, (char, second) in enumerate(zip(chars, seconds)):
        probs[row, charsets.CLASSES.index(char)] = 0.8
        probs[row, charsets.CLASSES.index(second)] = 0.15
    return recognize.build_results([plan], probs, [recognize.Reading(2, allowed, mode == "text", written)])[0]


def test_results_follow_case_unless_the_field_holds_capitals_only():
    """Through recognize.build_results: "Sun" (S at the cap height, u and n at x-height) as
    written; a field whose `chars` hold no lowercase letter keeps its capitals; the
    alternatives of a lowercased letter are lowercase too."""
    from worker.charsets import NAMED

    assert read_line("S^ U_ n_", "5VN", written=False)["text"] == "SUn"
    result = read_line("S^ U_ n_", "5VN")
    assert result["text"] == "Sun"
    assert [a["char"] for a in result["characters"][1]["alternatives"]] == ["u", "v"]
    assert read_line("S^ U_ n_", "5VN", NAMED["letters"])["text"] == "Sun"
    assert read_line("S^ U_ n_", "5VN", NAMED["uppercase"] + "n")["text"] == "Sun"  # it names a lowercase letter
    assert read_line("S^ U_ n_", "5VN", NAMED["uppercase"])["text"] == "SUN"  # capitals only: n read among them


def test_digits_a_lowercase_word_holds_are_its_letters():
    from worker.case import misread_digits

    def misread(spec: str) -> str:
        chars, boxes, spaces = line(spec)
        return "".join(chars[i] for i in misread_digits(chars, boxes, spaces))

    assert misread("h^ e_ 1^ 1^ 0_") == "110"  # "he110": the short 0, and the 1s between e and it
    assert misread("W_ 0_ r_ 1^ d^") == "01"  # "w0r1d"
    assert misread("S^ W^ 1^ A^") == ""  # a code in capitals
    assert misread("R^ O_ O_ M_  1^ 2^ b^") == ""  # a number beside a word, and before a letter
    assert misread("2^ 0^ 2^ 4^") == ""


def test_results_read_a_lowercase_word_s_digits_among_the_letters():
    """Through recognize.build_results with case=written: "he110" (the model's best
    readings) comes back "hello"; by EMNIST's classes only its 0 standing at the x-height is
    a letter (test_a_digit_at_the_x_height_of_a_word_is_a_letter)."""
    assert read_line("h^ e_ 1^ 1^ 0_", "bCLLO", written=False)["text"] == "he11O"
    result = read_line("h^ e_ 1^ 1^ 0_", "bCLLO")
    assert result["text"] == "hello"
    assert result["characters"][4]["alternatives"][0]["char"] == "o"
    # A code (mode=code) keeps each character as it looks, its case as written.
    assert read_line("h^ e_ 1^ 1^ 0_", "bCLLO", mode="code")["text"] == "he110"


def test_a_bare_stroke_read_as_l_in_a_word_in_capitals_is_an_i():
    """EMNIST's L holds the lowercase l, so the model reads a capital I written as a bare
    stroke as L as often as not; in a word in capitals, a bare stroke is no L (whose foot
    makes it wide)."""
    from worker.case import bare_strokes_in_capitals

    def bare(spec: str) -> list[int]:
        return bare_strokes_in_capitals(*line(spec))

    assert bare("T^ L^| L^ E^") == [1]  # "TILE", its I read as L; the L with its foot stays
    assert bare("T^ L^| M^  E^ L^|") == [1, 4]  # each word in capitals by its own letters
    assert bare("h^ e_ L^| L^| O_") == []  # lowercase: a bare stroke is an l
    assert bare("M^ L^| L^| L^|") == []  # no letter says capitals (MILL or Mill)
    assert bare("L^|") == []  # a character alone
    assert read_line("T^ L^| L^ E^", "EIOF", written=False)["text"] == "TILE"
    assert read_line("T^ L^| L^ E^", "EIOF")["text"] == "TILE"
    # A code keeps each character as it looks; a field that allows no I keeps its L.
    assert read_line("T^ L^| L^ E^", "EIOF", mode="code", written=False)["text"] == "TLLE"
    assert read_line("T^ L^| L^ E^", "EIOF", "ELT", written=False)["text"] == "TLLE"


def test_a_digit_at_the_x_height_of_a_word_is_a_letter():
    """Digits stand as tall as capitals: in text mode, whatever `case`, a digit standing at
    the x-height of a line of two heights in a word that holds letters is a lowercase letter
    the model took for a digit (an o for a 0, an s for a 5), read among the letters. Digits
    as tall as capitals between letters stay digits unless case=written: in codes and
    strings of random characters a digit among letters is often one."""
    from worker.case import misread_digits

    def short(spec: str) -> str:
        chars, boxes, spaces = line(spec)
        return "".join(chars[i] for i in misread_digits(chars, boxes, spaces, between_letters=False))

    assert short("h^ e_ 1^ 1^ 0_") == "0"
    assert short("n_ 0_ r^ t^ h^") == "0"
    assert short("A^ 5^ b^ 0_ t^") == "0"  # the 5 stands as tall as the capitals
    assert short("2^ 0^ 2^ 4^  d_ a_ y_") == ""  # a number beside a word
    assert read_line("n_ 0_ r^ t^ h^", "NOFTh", written=False)["text"] == "nOrth"
    assert read_line("A^ 5^ b^ 0_ t^", "ASbOt", written=False)["text"] == "A5bOt"
    # A code keeps each character as it looks.
    assert read_line("n_ 0_ r^ t^ h^", "NOFTh", mode="code", written=False)["text"] == "n0rth"
