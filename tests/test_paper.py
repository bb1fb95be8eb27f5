"""serve/paper.py: what is not writing (uneven light, the desk around a sheet, a form's
boxes, the rules of ruled and squared paper) does not reach the tile."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from serve import paper
from serve import preprocess as P
from tests.fixtures.images import bar_glyph


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


def _in_a_box(tile: np.ndarray, cut_side: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A character on a form (dark on light), without and with its printed box."""
    page = np.full((130, 130), 240, np.uint8)
    page[23:107, 23:107] = (240 - cv2.resize(tile, (84, 84)).astype(np.float32) * 0.85).astype(np.uint8)
    boxed = page.copy()
    cv2.rectangle(boxed, (8, 8), (121, 121), 60, 2)
    if cut_side:  # cropped through the box: one side of it is missing
        page, boxed = page[:, 12:], boxed[:, 12:]
    return page, boxed


@pytest.mark.parametrize("cut_side", [False, True])
def test_a_box_around_a_character_is_not_part_of_it(emnist_test_sample, cut_side):
    """Forms print a box per character; a crop of one must read as the character alone."""
    for tile in emnist_test_sample.images[:40]:
        plain, boxed = _in_a_box(tile, cut_side)
        a, b = P.normalize_char(plain), P.normalize_char(boxed)
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.97


def test_round_letters_and_tiles_are_no_frames(emnist_test_sample):
    """An O with a speck inside it is still an O; no EMNIST tile loses a stroke as a frame."""
    page = np.full((100, 100), 255, np.uint8)
    cv2.ellipse(page, (50, 50), (30, 40), 0, 0, 360, 0, 5)
    page[48:54, 48:54] = 0
    ink = P.ink_map(page)
    assert P.ink_mask(ink)[10:90, 20:22].any()  # the O's left side is kept
    for tile in emnist_test_sample.images:
        mask, labels, stats, kept = P.ink_components(P.ink_map(tile))
        assert paper.frames(labels, stats, kept) == []


def _in_a_tight_box(tile: np.ndarray, inset: int) -> tuple[np.ndarray, np.ndarray]:
    """A character on a form, without and with a box `inset` px inside its ink's edges
    (negative: outside), so that the character touches or crosses the box."""
    page = np.full((130, 130), 240, np.uint8)
    ink = cv2.resize(tile, (84, 84))
    page[23:107, 23:107] = (240 - ink.astype(np.float32) * 0.85).astype(np.uint8)
    ys, xs = np.nonzero(ink > 60)
    boxed = page.copy()
    cv2.rectangle(boxed, (int(23 + xs.min() + inset), int(23 + ys.min() + inset)),
                  (int(23 + xs.max() - inset), int(23 + ys.max() - inset)), 60, 2)
    return page, boxed


def test_a_box_the_character_touches_is_not_part_of_it(emnist_test_sample):
    """Handwriting fills or overruns a form's box: box and character are then one piece
    of ink, and the box must still go."""
    tiles = emnist_test_sample.images[:60]
    alike = 0
    for tile in tiles:
        plain, boxed = _in_a_tight_box(tile, inset=-1)
        a, b = P.normalize_char(plain), P.normalize_char(boxed)
        alike += np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9
    assert alike >= 0.9 * len(tiles)
    # Crossing the strokes, the box is found as often; what it crossed is lost with it.
    crossed = [P.ink_components(P.ink_map(_in_a_tight_box(t, inset=3)[1]))[0] for t in tiles]
    assert sum(paper.ruled_frame(mask) is not None for mask in crossed) >= 0.75 * len(tiles)


def test_boxes_of_thick_lines_around_small_characters_are_found(emnist_test_sample):
    """A small scan's box lines are thick for its size (a 3 px line, blurred, around a
    40 px character): they are still a box. Session 16 let a box's lines be a quarter of its
    shorter side thick instead of 15%: 71 of these 100 boxes are found instead of 61."""
    from training.scans import render_scan

    found = 0
    for i, tile in enumerate(emnist_test_sample.images[:100]):
        scan = P.decode_image(render_scan(tile, np.random.default_rng(i), tight_box=True))
        found += paper.ruled_frame(P.ink_components(P.ink_map(scan))[0]) is not None
    assert found >= 68


def test_four_straight_sides_with_most_ink_outside_them_are_no_box(monkeypatch):
    """A box holds its character. Four straight sides with more of what is left outside
    them than inside (a b's square bowl below its stem) are the character's own strokes."""
    page = np.full((140, 120), 255, np.uint8)
    cv2.rectangle(page, (30, 50), (80, 100), 0, 5)  # four straight sides...
    page[14:50, 51:59] = 0  # ...a stroke rising far above them
    page[68:82, 48:62] = 0  # ...and a blot inside
    mask = P.ink_components(P.ink_map(page))[0]
    assert paper.ruled_frame(mask) is None
    monkeypatch.setattr(paper, "FRAME_HOLDS", 0.0)  # what the rule keeps out
    assert paper.ruled_frame(mask) is not None


def test_no_stroke_of_a_character_is_taken_for_a_box(emnist_test_sample):
    """Bold round letters at any size, and a box drawn alone (a square 0), keep all their ink."""
    for tile in emnist_test_sample.images:
        for size in (60, 120, 240):
            page = 255 - cv2.resize(tile, (size, size), interpolation=cv2.INTER_CUBIC)
            assert paper.ruled_frame(P.ink_components(P.ink_map(page))[0]) is None
    square = np.full((120, 120), 255, np.uint8)
    cv2.rectangle(square, (20, 20), (100, 100), 0, 4)
    ink = P.ink_map(square)
    assert np.array_equal(P.ink_mask(ink), P.ink_components(ink)[0])


def test_squared_paper_is_not_part_of_the_character(emnist_test_sample):
    """A character written on squared paper: the grid is one piece of ink with it, and goes."""
    alike = 0
    for tile in emnist_test_sample.images[:40]:
        page = np.full((140, 140), 245, np.uint8)
        page[20:120, 20:120] = 245 - (cv2.resize(tile, (100, 100)).astype(np.float32) * 0.9).astype(np.uint8)
        squared = page.copy()
        squared[:, 7::25] = np.minimum(squared[:, 7::25], 110)
        squared[11::25, :] = np.minimum(squared[11::25, :], 110)
        a, b = P.normalize_char(page), P.normalize_char(squared)
        alike += np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9
    assert alike >= 36


def _squared_page(step: int = 6, rule: int = 160) -> np.ndarray:
    """Squared paper with rules along three edges, and dark upright strokes (enough ink to
    set the ink map's full strength: on a page all grid, strokes and rules both reach it)."""
    page = np.full((61, 178), 250, np.uint8)
    page[::step, :] = rule
    page[:, ::step] = rule
    for left in (28, 58, 88, 118):
        page[5:56, left:left + 5] = 30
    return page


def test_rules_along_the_edges_are_not_taken_for_the_paper():
    """Most of such a page's border is rule: the paper is still the paper. A tight crop's ink
    on its border, however much of it, never takes the paper's place."""
    assert paper.paper_level(_squared_page()) == 250
    assert paper.paper_level(np.full((30, 30), 240, np.uint8)) == 240
    crop = np.full((60, 48), 245, np.uint8)
    cv2.ellipse(crop, (24, 30), (19, 25), 0, 0, 360, 15, 11)  # a bold O, cut by all four edges
    border = np.concatenate([crop[0], crop[-1], crop[:, 0], crop[:, -1]])
    assert np.mean(border < 100) > 0.1  # the case the check must leave alone
    assert paper.paper_level(crop) == 245
    photo = np.full((80, 100), 225, np.uint8)  # a sheet with dark desk in two corners
    photo[:30, :30], photo[-30:, -30:], photo[35:45, 45:55] = 110, 110, 30
    assert paper.paper_level(photo) == 225


def test_a_stroke_across_grey_rules_keeps_its_pixels_on_them():
    """Where a dark stroke crosses a grey rule, the pixels it shares with the rule are the
    stroke's: it stays one piece. On a rule as dark as the stroke, only geometry can tell."""

    def rules_of(mask):  # as text mode finds a page's rules: runs across, and as tall as it
        m = mask.view(np.uint8)
        return (cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((1, 100), np.uint8))
                | cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((58, 1), np.uint8)))

    ink = P.ink_map(_squared_page())
    mask = ink > P.MASK_LEVEL
    assert paper.erase_rules(mask, rules_of(mask), ink)[5:56, 88:93].all()
    assert not paper.erase_rules(mask, rules_of(mask))[5:56, 88:93].all()  # without the ink: cut
    dark = P.ink_map(_squared_page(rule=30))
    dark_mask = dark > P.MASK_LEVEL
    assert np.array_equal(paper.erase_rules(dark_mask, rules_of(dark_mask), dark),
                          paper.erase_rules(dark_mask, rules_of(dark_mask)))


@pytest.mark.parametrize("top", [0, 3])
def test_a_bar_across_a_tight_crop_is_no_rule(top):
    """A T cropped to its ink (or nearly), its bar from edge to edge, keeps its bar."""
    page = np.full((120, 100), 255, np.uint8)
    page[top:top + 6, :] = 0  # the bar, across the whole crop
    page[top:110, 47:53] = 0  # the stem, down most of the rest
    ink = P.ink_map(page)
    assert np.array_equal(P.ink_mask(ink), P.ink_components(ink)[0])


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


@pytest.mark.parametrize("turn", [5, -9])
def test_a_sheet_turned_in_the_photo_leaves_no_wedges_of_desk(emnist_test_sample, turn):
    """A photo framed on a sheet that lies turned on the desk shows a wedge of desk in each
    corner, each along about half a side: they were the "ink" (2.5% of 400 such scans read
    right). Their inner edges are straight: painted paper, the character reads as on the
    sheet alone."""
    alike = 0
    for tile in emnist_test_sample.images[:40]:
        sheet = _on_a_desk(tile, 235)[25:225, 45:245]
        photo = np.full((400, 400), 60, np.uint8)
        photo[100:300, 100:300] = sheet
        turned = cv2.warpAffine(photo, cv2.getRotationMatrix2D((200, 200), turn, 1.0), (400, 400), borderValue=60)
        framed = turned[100:300, 100:300]  # the photo framed on the sheet's box: desk in its corners
        upright = cv2.warpAffine(sheet, cv2.getRotationMatrix2D((100, 100), turn, 1.0), (200, 200), borderValue=235)
        a, b = P.normalize_char(upright), P.normalize_char(framed)
        alike += np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.97
    assert alike >= 36


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
