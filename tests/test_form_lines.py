"""worker/form_lines.py: a form's lines in text mode (the reading of words on them is
tested in tests/test_segment.py)."""
from __future__ import annotations

import cv2
import numpy as np

from serve import preprocess
from worker import form_lines


def test_a_hyphen_and_bars_drawn_apart_are_no_lines(emnist_test_sample):
    """A line is LINE_LENGTH letter heights long: a hyphen between words, an E's or a
    t's bar drawn apart stay (marks.py reads a hyphen by its shape)."""
    img = np.full((120, 420), 255, np.uint8)
    for x in (20, 150, 290):
        img[30:90, x:x + 60] = 255 - cv2.resize(emnist_test_sample.images[0], (60, 60))
    img[58:63, 95:135] = 0  # a hyphen, 0.7 letter heights long
    img[90:94, 222:262] = 0  # a bar under the middle letter, as long
    ink = preprocess.ink_map(img)
    _, labels, stats, kept = preprocess.ink_components(ink)
    assert form_lines.lines_written_on(ink, labels, stats, kept) is None
