"""serve/paper.py: what is not writing (the paper's grey, uneven light, the desk around a
sheet) does not reach the tile."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from serve import paper
from serve import preprocess as P
from tests.fixtures.images import bar_glyph, squared_page


def test_fast_labelling_finds_the_same_components_as_opencvs_default():
    rng = np.random.default_rng(11)
    masks = [(rng.random(rng.integers(1, 300, 2)) < p).astype(np.uint8) for p in (0.02, 0.3, 0.6) for _ in range(20)]
    masks += [np.zeros((5, 7), np.uint8), np.ones((9, 4), np.uint8)]
    for mask in masks:
        count, labels, stats = paper.label_components(mask)
        want_count, want_labels, want_stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        assert count == want_count and labels[mask == 0].max(initial=0) == 0
        # The same pixels share a label in both (numbering may differ), with the same statistics.
        pairs = np.unique(np.stack([labels.ravel(), want_labels.ravel()]), axis=1)
        assert pairs.shape[1] == len(np.unique(labels)) == len(np.unique(want_labels))
        assert np.array_equal(stats[pairs[0]], want_stats[pairs[1]])


def _written_line(tiles: np.ndarray) -> np.ndarray:
    """Dark ink on white paper: EMNIST tiles side by side at 3x, with paper around them."""
    line = np.concatenate([np.pad(t, ((0, 0), (4, 4))) for t in tiles], axis=1)
    line = cv2.resize(line, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    return np.pad(255 - line, ((60, 60), (90, 90)), constant_values=255)


def _lit(page: np.ndarray, kind: str) -> np.ndarray:
    """The page as a phone photo or a lamp would light it (paper 255 down to ~115)."""
    h, w = page.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    light = {
        "gradient": 1 - 0.55 * (xx / w * 0.8 + yy / h * 0.2),
        "vignette": 1 - 0.5 * np.hypot(xx / (w / 2) - 1, yy / (h / 2) - 1) ** 2 / 2,
        "shadow": cv2.GaussianBlur(np.where(xx > 0.45 * w, 0.5, 1.0).astype(np.float32), (0, 0), 3),
    }[kind]
    noise = np.random.default_rng(0).normal(0, 3, page.shape)
    return (page * light + noise).clip(0, 255).astype(np.uint8)


def test_evenly_lit_images_are_left_as_they_are(emnist_test_sample):
    """Tiles, canvas drawings and scans (what the model's figures were measured on) are
    not touched, so their ink maps are the ones training used."""
    rng = np.random.default_rng(5)
    pages = list(emnist_test_sample.images[:100]) + [255 - t for t in emnist_test_sample.images[:100]]
    scan = (_written_line(emnist_test_sample.images[:5]) + rng.normal(0, 4, (204, 720))).clip(0, 255)
    pages += [scan.astype(np.uint8), (scan * 0.8).astype(np.uint8), bar_glyph()]
    for page in pages:
        assert paper.even_lighting(page) is page


@pytest.mark.parametrize("kind", ["gradient", "vignette", "shadow"])
@pytest.mark.parametrize("ink", ["dark", "light"])
def test_unevenly_lit_writing_reads_as_if_evenly_lit(emnist_test_sample, kind, ink):
    from worker import segment

    flat = _written_line(emnist_test_sample.images[:6])
    lit = _lit(flat, kind)
    if ink == "light":  # chalk on a board: light writing on dark paper, lit unevenly
        flat = (255 - flat) * 0.75 + 30
        flat, lit = flat.astype(np.uint8), _lit(flat, kind)
    want = [segment.char_tile(P.ink_map(flat), c) for c in segment.segment(P.ink_map(flat))]
    lit_ink = P.ink_map(lit)
    got = [segment.char_tile(lit_ink, c) for c in segment.segment(lit_ink)]
    assert len(want) == 6 and len(got) == 6
    for a, b in zip(want, got):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9


def test_a_tight_crop_with_ink_on_its_edges_keeps_its_strokes(monkeypatch):
    """Bold ink touching the edges makes them uneven; the character must come out the same."""
    crop = np.full((60, 48), 245, np.uint8)
    cv2.ellipse(crop, (24, 30), (19, 25), 0, 0, 360, 15, 11)  # a bold O, cut by all four edges
    assert max(paper._edge_quarters(crop)) + 16 >= paper.UNEVEN_PAPER * (min(paper._edge_quarters(crop)) + 16)
    got = P.normalize_char(crop)
    monkeypatch.setattr(paper, "UNEVEN_PAPER", 100.0)  # never even out
    want = P.normalize_char(crop)
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.95


def test_rules_along_the_edges_are_not_taken_for_the_paper():
    """Most of such a page's border is rule: the paper is still the paper. A tight crop's ink
    on its border, however much of it, never takes the paper's place."""
    assert paper.paper_level(squared_page()) == 250
    assert paper.paper_level(np.full((30, 30), 240, np.uint8)) == 240
    crop = np.full((60, 48), 245, np.uint8)
    cv2.ellipse(crop, (24, 30), (19, 25), 0, 0, 360, 15, 11)  # a bold O, cut by all four edges
    border = np.concatenate([crop[0], crop[-1], crop[:, 0], crop[:, -1]])
    assert np.mean(border < 100) > 0.1  # the case the check must leave alone
    assert paper.paper_level(crop) == 245
    photo = np.full((80, 100), 225, np.uint8)  # a sheet with dark desk in two corners
    photo[:30, :30], photo[-30:, -30:], photo[35:45, 45:55] = 110, 110, 30
    assert paper.paper_level(photo) == 225


def _on_a_desk(tile: np.ndarray, desk: int) -> np.ndarray:
    """A character on a sheet of paper, photographed with the desk all around the sheet."""
    sheet = np.full((200, 200), 235, np.uint8)
    sheet[50:150, 50:150] = (235 - cv2.resize(tile, (100, 100)).astype(np.float32) * 0.85).astype(np.uint8)
    photo = np.full((260, 280), desk, np.uint8)
    photo[25:225, 45:245] = sheet
    return photo


@pytest.mark.parametrize("desk", [40, 110])
def test_the_desk_around_a_photographed_sheet_is_not_paper(emnist_test_sample, desk):
    """The border is the desk, not the paper: read from it, the sheet was the ink (0.3% on
    300 test characters). The sheet's surroundings are painted paper first."""
    alike = 0
    for tile in emnist_test_sample.images[:40]:
        photo = _on_a_desk(tile, desk)
        sheet = photo[25:225, 45:245]
        a, b = P.normalize_char(sheet), P.normalize_char(photo)
        alike += np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.97
    assert alike >= 38
    # Light strokes on a dark ground are the writing itself, not a sheet.
    page = 255 - _on_a_desk(emnist_test_sample.images[0], 255)[25:225, 45:245]
    assert np.array_equal(paper.on_the_sheet(page), page)


@pytest.mark.parametrize("sides", [(0,), (2,), (1, 3), (0, 2, 3)])
def test_a_desk_along_some_edges_of_the_photo_is_not_ink(emnist_test_sample, sides):
    """A photo that shows the desk along one to three edges of the sheet (top, bottom,
    left, right): the desk was the largest piece of "ink" (14% of 600 such scans read right,
    words 13%). It is painted paper, so the character reads like the sheet alone."""
    alike = 0
    for k, tile in enumerate(emnist_test_sample.images[:40]):
        sheet = _on_a_desk(tile, 235)[25:225, 45:245]
        depth = (10, 60)[k % 2]  # thinner and thicker than the strokes (about 20 px)
        pad = [(depth if side in sides else 0) for side in range(4)]
        photo = np.pad(sheet, ((pad[0], pad[1]), (pad[2], pad[3])), constant_values=(40, 110)[k % 3 == 0])
        a, b = P.normalize_char(sheet), P.normalize_char(photo)
        alike += np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.97
    assert alike >= 36


def _turned_on_a_desk(sheet: np.ndarray, turn: float, framed: bool) -> np.ndarray:
    """`sheet` lying turned `turn` degrees (counter-clockwise) on a desk of grey 60: the photo
    framed on the sheet's box (a wedge of desk in each corner), or showing the desk all
    around the sheet."""
    h, w = sheet.shape
    photo = np.full((2 * h, 2 * w), 60, np.uint8)
    photo[h // 2:h // 2 + h, w // 2:w // 2 + w] = sheet
    turned = cv2.warpAffine(photo, cv2.getRotationMatrix2D((w, h), turn, 1.0), (2 * w, 2 * h), borderValue=60)
    return turned[h // 2:h // 2 + h, w // 2:w // 2 + w] if framed else turned[h // 4:-h // 4, w // 4:-w // 4]


@pytest.mark.parametrize("turn", [5, -9])
@pytest.mark.parametrize("framed", [True, False])
def test_a_sheet_turned_in_the_photo_reads_as_the_sheet_alone(emnist_test_sample, turn, framed):
    """A photo framed on a sheet that lies turned on the desk shows a wedge of desk in each
    corner, each along about half a side: they were the "ink" (2.5% of 400 such scans read
    right). Their inner edges are straight: painted paper. A turned sheet with the desk all
    around it fills less of its bounding box than a sheet should (0.74 at 10 degrees): it
    was not taken for a sheet (35% of 600 such training-split scans read right, 87% after).
    Either way the sheet's edges tell its turn, which the character is turned back by: it
    reads as on the sheet alone (a turn the model was not trained for costs it points)."""
    alike = 0
    for tile in emnist_test_sample.images[:40]:
        sheet = _on_a_desk(tile, 235)[25:225, 45:245]
        photo = _turned_on_a_desk(sheet, turn, framed)
        assert paper.sheet_and_turn(photo)[1] == pytest.approx(-turn, abs=0.5)
        a, b = P.normalize_char(sheet), P.normalize_char(photo)
        alike += np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.97
    assert alike >= 36


@pytest.mark.parametrize("where", ["middle", "corner"])
def test_a_small_sheet_photographed_from_afar_reads_as_the_sheet_alone(emnist_test_sample, where):
    """A note photographed from afar covers 4-10% of the photo, with the desk all around it,
    in the middle or off in a corner: the desk was taken for the paper and the sheet for ink
    (2.4% of 1,000 such training-split scans read right, 91.0% after). Its outline, four
    straight sides, makes it a sheet."""
    alike = 0
    for k, tile in enumerate(emnist_test_sample.images[:40]):
        sheet = _on_a_desk(tile, 235)[25:225, 45:245]
        photo = np.full((760, 900) if k % 2 else (900, 700), (40, 110)[k % 3 == 0], np.uint8)
        y, x = (photo.shape[0] // 2 - 100, photo.shape[1] // 2 - 100) if where == "middle" else (30, 40 + k)
        photo[y:y + 200, x:x + 200] = sheet
        if k % 4 == 1:  # lying turned too
            photo = cv2.warpAffine(photo, cv2.getRotationMatrix2D((x + 100, y + 100), 7.0, 1.0),
                                   photo.shape[::-1], borderValue=int(photo[0, 0]))
        a, b = P.normalize_char(sheet), P.normalize_char(photo)
        alike += np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.97
    assert alike >= 36


def test_a_bold_light_letter_is_no_small_sheet():
    """A bold light letter on a dark ground (chalk, a dark-themed canvas) that fills most of
    its box encloses dark counters, as a sheet encloses writing, but its outline has a bowl,
    a notch or a slant: no four straight sides. It stays as it is."""
    for shape in ("O", "B", "D", "A"):
        photo = np.full((700, 700), 30, np.uint8)
        if shape == "O":
            cv2.ellipse(photo, (350, 350), (60, 80), 0, 0, 360, 230, -1)
            cv2.ellipse(photo, (350, 350), (25, 40), 0, 0, 360, 30, -1)
        elif shape == "B":
            cv2.rectangle(photo, (290, 260), (360, 440), 230, -1)
            cv2.circle(photo, (360, 305), 45, 230, -1)
            cv2.circle(photo, (360, 395), 45, 230, -1)
            cv2.circle(photo, (350, 305), 15, 30, -1)
            cv2.circle(photo, (350, 395), 15, 30, -1)
        elif shape == "D":
            cv2.ellipse(photo, (330, 350), (90, 90), 0, -90, 90, 230, -1)
            cv2.rectangle(photo, (270, 260), (330, 440), 230, -1)
            cv2.ellipse(photo, (320, 350), (40, 50), 0, -90, 90, 30, -1)
        else:
            cv2.fillPoly(photo, [np.array([[260, 440], [330, 260], [370, 260], [440, 440]])], 230)
            cv2.fillPoly(photo, [np.array([[320, 380], [350, 300], [380, 380]])], 30)
            cv2.fillPoly(photo, [np.array([[330, 440], [350, 410], [370, 440]])], 30)
        photo = cv2.GaussianBlur(photo, (0, 0), 1.0)
        assert np.array_equal(paper.on_the_sheet(photo), photo), shape


def test_a_sheet_is_turned_back_only_by_straight_edges_that_agree(emnist_test_sample):
    """Only a sheet's straight edges against the desk tell a turn: a sheet lying straight,
    a desk along one or two of its edges, a shadow's soft edge, writing, or a turn past
    MAX_TURN (turned on purpose) leave the character as it is."""
    sheet = _on_a_desk(emnist_test_sample.images[3], 235)[25:225, 45:245]
    assert paper.sheet_and_turn(sheet)[1] == 0.0
    assert paper.sheet_and_turn(_on_a_desk(emnist_test_sample.images[3], 60))[1] == 0.0
    assert paper.sheet_and_turn(np.pad(sheet, ((40, 0), (0, 30)), constant_values=60))[1] == 0.0  # an L of desk
    assert paper.sheet_and_turn(_turned_on_a_desk(sheet, 1.0, framed=False))[1] == 0.0  # below MIN_TURN
    assert paper.sheet_and_turn(_turned_on_a_desk(sheet, 40.0, framed=False))[1] == 0.0
    shade = np.linspace(0.55, 1.0, 200, dtype=np.float32)[None, :]
    assert paper.sheet_and_turn((sheet * shade).astype(np.uint8))[1] == 0.0


def test_strokes_along_the_edges_of_a_tight_crop_are_no_desk(emnist_test_sample):
    """Words cropped tight to their ink have strokes along every edge (an l's stem down
    the left, the bar of an E along the top): neither thicker than the other strokes nor
    straight, so nothing is painted. An L alone has no other stroke to compare with."""
    from bench.words import compose_word

    rng = np.random.default_rng(4)
    for _ in range(150):
        idx = rng.choice(len(emnist_test_sample.labels), int(rng.integers(2, 7)), replace=False)
        word = compose_word(list(emnist_test_sample.images[idx]), rng)
        ys, xs = np.nonzero(word < 128)
        crop = np.ascontiguousarray(word[ys.min():ys.max() + 1, xs.min():xs.max() + 1])
        assert np.array_equal(paper.on_the_sheet(crop), crop)
    ell = np.full((120, 100), 255, np.uint8)
    ell[:, :14], ell[-14:, :] = 0, 0  # an L cropped to its ink
    assert np.array_equal(paper.on_the_sheet(ell), ell)


def test_slivers_of_a_turned_sheets_edge_are_not_ink():
    """Beside its wedges of desk, a sheet turned in the photo leaves thin slivers of its
    blurred edge along the photo's sides: they go. Pieces of writing on an edge as thick as
    the rest of it (a tight crop) stay."""
    photo = np.full((90, 100), 230, np.uint8)
    cv2.line(photo, (40, 20), (60, 70), 20, 7)  # the character
    cv2.line(photo, (0, 0), (0, 40), 110, 3)  # the sheet's edge along the left side...
    cv2.line(photo, (60, 89), (99, 89), 110, 3)  # ...and along the bottom
    mask = P.ink_mask(P.ink_map(photo))
    assert not mask[:, :3].any() and not mask[-3:].any()
    assert mask[40:50, 45:55].any()
    crop = np.full((90, 100), 230, np.uint8)
    cv2.line(crop, (40, 20), (60, 70), 20, 7)
    cv2.line(crop, (0, 10), (0, 50), 20, 7)  # a stroke as bold, cut by the crop's edge
    assert P.ink_mask(P.ink_map(crop))[20:40, :2].all()


def test_a_shadow_over_the_writing_is_no_desk():
    """A shadow as dark as a desk along an edge, with writing inside it, stays (the strokes
    in it are darker still); `even_lighting` evens it out."""
    page = np.full((200, 300), 235, np.uint8)
    page[:, :120] = 90  # a hard shadow over the left part
    cv2.circle(page, (60, 100), 35, 20, 10)  # a letter in the shadow
    cv2.circle(page, (200, 100), 35, 20, 10)  # and one in the light
    assert np.array_equal(paper.on_the_sheet(page), page)


def test_median_of_levels_is_numpys_median():
    """The paper checks read medians of grey levels through median_of_levels: it must give
    np.median's very floats, or ink maps (and what was measured) move."""
    rng = np.random.default_rng(11)
    for trial in range(2000):
        shape = (int(rng.integers(1, 9)), int(rng.integers(1, 200))) if trial % 2 else (int(rng.integers(1, 2000)),)
        high = 256 if trial % 3 else 103
        levels = rng.integers(100 if high == 103 else 0, high, size=shape, dtype=np.uint8)
        expected, got = np.median(levels, axis=-1), paper.median_of_levels(levels)
        if levels.ndim == 1:
            assert isinstance(got, float) and got == float(expected)
        else:
            assert got.dtype == expected.dtype and np.array_equal(got, expected)
