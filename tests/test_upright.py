"""worker.upright: writing photographed askew is levelled, italics are sheared upright,
and the boxes come back in the image's own coordinates."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from serve import preprocess
from tests.fixtures.reading import read_pages, read_words
from worker import segment, upright


def test_slanted_words_read_as_well_as_upright_ones(emnist_test_sample):
    """Italic writing (25 degrees) is sheared back to EMNIST's own slant before it is cut:
    within 3 points of the same words upright. Read as it was, it was 12 points behind."""
    words = {"letters": (5, 9)}  # shorter words are read as they are: too few letters tell no slant
    level, slanted = read_words(emnist_test_sample, **words), read_words(emnist_test_sample, slant=25, **words)
    assert level > 0.8
    assert slanted > level - 0.03, (slanted, level)


def test_a_line_photographed_askew_is_levelled(emnist_test_sample):
    """Words of 3-8 letters turned 25 degrees either way read within 2 points of the same
    words level. Levelled only from 5 letters up (the rectangle of least area around them),
    they were 2-8 points behind; read as they were, more."""
    from bench.words import rotate

    level = read_words(emnist_test_sample)
    turned = [read_words(emnist_test_sample, paper=lambda w, rng, a=a: rotate(w, a)) for a in (25, -25)]
    assert min(turned) > level - 0.02, (turned, level)


def test_small_letters_and_descenders_do_not_tilt_a_word(emnist_test_sample, monkeypatch):
    """Words with lowercase letters at x-height and g, q hanging below the line, as
    handwriting has them: turned 20 degrees either way they read within 3 points of level
    (session 8's levelling: 5 behind), and levelling costs level words under a point (a
    tilt must stack the letters' feet 1.3 times better than level does: a descender among
    a few letters tilts their best row by a few degrees)."""
    from bench.words import rotate

    level = read_words(emnist_test_sample, handwritten=True)
    turned = [read_words(emnist_test_sample, handwritten=True, paper=lambda w, rng, a=a: rotate(w, a))
              for a in (20, -20)]
    assert min(turned) > level - 0.03, (turned, level)
    monkeypatch.setattr(upright, "MIN_TILT", 90.0)  # never levelled
    as_they_are = read_words(emnist_test_sample, handwritten=True)
    assert level > as_they_are - 0.01, (level, as_they_are)


def test_a_page_photographed_askew_is_levelled(emnist_test_sample):
    """Pages of 2-5 lines turned 3 or 10 degrees read as well as level ones (within 2
    points), line for line. Before the projection profile (levelling only a single long
    line, past 4 degrees), pages turned 3 degrees ran their lines together: 17 points
    behind, 30% of them with the wrong number of lines (10 degrees: 5% wrong)."""
    level, level_lines = read_pages(emnist_test_sample)
    assert level > 0.8 and level_lines == 1.0
    for turn in (3, 10):
        turned, turned_lines = read_pages(emnist_test_sample, turn)
        assert turned > level - 0.02 and turned_lines == 1.0, (turn, turned, turned_lines, level)


def test_level_writing_is_never_turned(emnist_test_sample):
    """The tilt read from level words and pages stays under MIN_TILT: level writing is cut as
    it is (turning it would blur every letter a little)."""
    from bench.words import compose_paragraph, compose_word

    rng = np.random.default_rng(3)
    for k in range(40):
        idx = rng.choice(len(emnist_test_sample.labels), 12, replace=False)
        words = [list(emnist_test_sample.images[idx[:6]]), list(emnist_test_sample.images[idx[6:]])]
        gray = compose_word(words[0] + words[1], rng) if k % 2 else compose_paragraph([[w] for w in words], rng)
        tilt = upright._tilt(*segment.ink_pieces(preprocess.ink_map(gray))[2:])
        assert tilt is None or abs(tilt) < upright.MIN_TILT, (k, tilt)


@pytest.mark.parametrize("askew", ["leant", "turned"])
def test_boxes_of_warped_writing_are_in_the_image_s_coordinates(askew):
    from bench.words import rotate, shear
    from worker import recognize

    img = np.full((120, 480), 255, np.uint8)
    for x in (40, 120, 200, 280, 360):
        cv2.rectangle(img, (x, 30), (x + 40, 90), 0, 4)  # five upright boxy letters...
    img = shear(img, 30) if askew == "leant" else rotate(img, 20)  # ...in italics, or photographed askew
    plan = recognize.plan_image(cv2.imencode(".png", img)[1].tobytes(), "text", 10**7)
    assert len(plan.boxes) == 5
    ink = img < 128
    for x, y, w, h in plan.boxes:
        assert 0 <= x and x + w <= img.shape[1] and 0 <= y and y + h <= img.shape[0]
        inside = ink[y:y + h, x:x + w].sum()
        assert inside >= 0.95 * (ink.sum() / 5), (x, y, w, h)  # the whole letter, in the image as sent


def test_a_comb_of_boxes_photographed_askew_is_levelled_by_its_lines(emnist_test_sample):
    """A form's comb of boxes turned 0.5-3 degrees: its thin lines no longer make straight
    runs (and break into dashes), so they were read as letters: -8% (1 - CER) of these 60
    test words, against 86.8% level. Levelled by the comb's own slope, and its lines then
    looked for in the fainter ink: 68%."""
    from bench.words import comb_field, rotate

    def askew(tiles, rng):
        return rotate(comb_field(tiles, rng), float(rng.uniform(0.5, 3.0) * rng.choice([-1, 1])))

    level = read_words(emnist_test_sample, compose=comb_field)
    turned = read_words(emnist_test_sample, compose=askew)
    assert turned > level - 0.25, (turned, level)


def test_a_ruled_page_photographed_askew_is_levelled_by_its_rules(emnist_test_sample):
    """A notebook page turned 0.5-3 degrees: its rules and margin line, joined into one
    piece, made no straight runs and read as letters: -89% (1 - CER) of these 60 test
    words, against 84.9% level. Levelled by the rules' own slope: 61%."""
    from bench.words import notebook_paper, rotate

    def askew(word, rng):
        return rotate(notebook_paper(word, rng), float(rng.uniform(0.5, 3.0) * rng.choice([-1, 1])))

    level = read_words(emnist_test_sample, paper=notebook_paper)
    turned = read_words(emnist_test_sample, paper=askew)
    assert turned > level - 0.3, (turned, level)


@pytest.mark.parametrize("degrees", [-1.5, 0.0, 2.5])
def test_a_box_gives_its_own_tilt_and_a_line_under_words_none(degrees):
    """`_rules_tilt`: a field's box turned a few degrees gives that angle (as `_tilt`'s);
    level, none; a line under words (no sides) is left to worker/segment.py."""
    def tilt_of(draw):
        img = np.full((200, 500), 255, np.uint8)
        draw(img)
        turn = cv2.getRotationMatrix2D((250, 100), degrees, 1.0)
        ink = preprocess.ink_map(cv2.warpAffine(img, turn, (500, 200), borderValue=255))
        return upright._rules_tilt(ink, *preprocess.ink_components(ink)[1:])

    boxed = tilt_of(lambda img: (cv2.rectangle(img, (40, 50), (460, 150), 0, 2), img[80:120, 200:210].fill(0)))
    lined = tilt_of(lambda img: (cv2.line(img, (40, 150), (460, 150), 0, 2), img[80:140, 200:210].fill(0)))
    assert lined is None
    if degrees == 0:
        assert boxed is None
    else:
        assert boxed is not None and abs(boxed + degrees) < 0.3
