"""One job's images -> tiles (char mode: the whole image is one character; text and code
mode: segmented), then the model's probabilities -> the API's result per image (a text's
tokens read together, worker/context.py; a code's characters each alone).

Touching characters in text mode send every candidate character to TorchServe in the same
request as the rest; the probabilities then decide how the group is cut
(`segment.best_reading`)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from serve import preprocess
from worker import case, charsets, context, segment, upright

# Below this many pixels on a side no character is legible (EMNIST tiles are 28x28).
MIN_SIDE = 8


@dataclass
class ImagePlan:
    """What one image became: its tiles and boxes, or the error that stopped it. Each box
    is a character, or a group of touching characters with one tile per candidate."""

    tiles: list[np.ndarray] = field(default_factory=list)
    boxes: list[list[int]] = field(default_factory=list)
    spaces: list[str] = field(default_factory=list)  # text to put before each character
    # Per box: a group of touching characters, with its candidates' boxes in the image.
    touching: list[tuple[segment.Touching, list[list[int]]] | None] = field(default_factory=list)
    # Per box: a mark read by its shape (charsets.MARKS), which has no tile; "" for the model's.
    marks: list[str] = field(default_factory=list)
    # Per box in text and code mode: the box upright on its line (worker/upright.py), where
    # letters' heights compare (worker/case.py); with touching groups' pieces' in `touching`.
    upright: list[tuple[int, int, int, int]] = field(default_factory=list)
    error: dict | None = None


def _error(code: str, message: str) -> dict:
    return {"code": code, "message": message}


def plan_image(data: bytes | None, mode: str, max_pixels: int, marks: str = "") -> ImagePlan:
    """`marks`: in text mode, the marks (charsets.MARKS) to read where their shape shows them."""
    gray = _decoded(data, max_pixels)
    return gray if isinstance(gray, ImagePlan) else plan_decoded(gray, mode, marks=marks)


def _decoded(data: bytes | None, max_pixels: int) -> np.ndarray | ImagePlan:
    """An upload's grey image, or the plan of the error that stops it."""
    if data is None:
        return ImagePlan(error=_error("image_expired", "the image blob expired before the job ran"))
    try:
        return preprocess.decode_image(data, max_pixels)
    except preprocess.PreprocessError as exc:
        return ImagePlan(error=_error(exc.code, str(exc)))


class Pages:
    """A job's uploads for reading regions of them (a form's fields on one scanned page):
    each upload is decoded once, however many of its regions are read."""

    def __init__(self, blobs: list[bytes | None], max_pixels: int, sources: list[int]):
        """`sources`: the upload each image reads; only uploads read more than once are kept
        decoded (a job of a thousand single fields does not hold a thousand pages)."""
        self.blobs, self.max_pixels = blobs, max_pixels
        self.shared = {i for i, n in Counter(sources).items() if n > 1}
        self.decoded: dict[int, np.ndarray | ImagePlan] = {}

    def plan(self, index: int, mode: str, box: list[int] | None, marks: str = "") -> ImagePlan:
        """Upload `index` read in `mode`, only its region `box` [x, y, w, h] if given."""
        page = self.decoded.get(index)
        if page is None:
            page = _decoded(self.blobs[index], self.max_pixels)
            if index in self.shared:
                self.decoded[index] = page
        return page if isinstance(page, ImagePlan) else plan_decoded(page, mode, box, marks)


def _moved(plan: ImagePlan, dx: int, dy: int) -> ImagePlan:
    """The plan of a region, its boxes in the whole image's coordinates."""
    def move(box: list[int]) -> list[int]:
        return [box[0] + dx, box[1] + dy, box[2], box[3]]
    plan.boxes = [move(b) for b in plan.boxes]
    plan.touching = [(t[0], [move(b) for b in t[1]]) if t else None for t in plan.touching]
    return plan


def plan_decoded(gray: np.ndarray, mode: str, box: list[int] | None = None, marks: str = "") -> ImagePlan:
    """A decoded grey image (or its region `box`, [x, y, w, h]) -> tiles and boxes."""
    if box is not None:
        x, y, w, h = box
        return _moved(plan_decoded(gray[y:y + h, x:x + w], mode, marks=marks), x, y)
    try:
        height, width = gray.shape
        if min(height, width) < MIN_SIDE:  # 1x1, 2x2, a 1-px strip: a result would be a guess
            return ImagePlan(error=_error(
                "image_too_small", f"the image is {width}x{height} pixels; a character needs at least "
                                   f"{MIN_SIDE}x{MIN_SIDE}"))
        ink, turn = preprocess.ink_and_turn(gray)
        if mode != "char":  # text, or a code: a line of characters read each alone
            ink, cuts, warp = upright.segment_upright(ink, marks)
            if not cuts:
                raise preprocess.BlankImageError("no ink found in the image")
            plan = ImagePlan()
            for i, cut in enumerate(cuts):
                pieces = cut.touching.pieces if cut.touching else [cut] if not cut.mark else []
                plan.marks.append(cut.mark)
                plan.tiles.extend(segment.char_tile(ink, piece) for piece in pieces)
                plan.touching.append(
                    (cut.touching, [warp.original_box(p.box) for p in pieces]) if cut.touching else None)
                plan.boxes.append(warp.original_box(cut.box))
                plan.upright.append(cut.box)
                new_line = i > 0 and cut.line != cuts[i - 1].line
                plan.spaces.append("\n" if new_line else " " if cut.space_before else "")
            return plan
        mask = preprocess.ink_mask(ink)
        if not mask.any():
            raise preprocess.BlankImageError("no ink found in the image")
        ys, xs = np.nonzero(mask)
        box = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
        return ImagePlan(tiles=[preprocess.tile_from_ink(ink, mask, turn)], boxes=[box], spaces=[""], touching=[None])
    except preprocess.PreprocessError as exc:
        return ImagePlan(error=_error(exc.code, str(exc)))


def all_tiles(plans: list[ImagePlan]) -> np.ndarray:
    tiles = [t for p in plans for t in p.tiles]
    return np.stack(tiles) if tiles else np.zeros((0, preprocess.TILE, preprocess.TILE), np.uint8)


class Reading(NamedTuple):
    """How one image's characters are read."""

    top_k: int
    allowed: str = ""  # the classes it may hold, "" for all
    in_context: bool = False  # its tokens read together (worker/context.py)
    written_case: bool = False  # its letters in the case they are written (worker/case.py)


def build_results(plans: list[ImagePlan], probs: np.ndarray, fields: list[Reading]) -> list[dict]:
    """The API result per image, from the plans and the model's probabilities of every class
    for their tiles (a row per tile, in order). `fields`: per image, how it is read. Each
    image is read among its classes, a text's tokens together (worker/context.py; not a
    code's), and each character lists its `top_k` best classes."""
    results, cursor = [], 0
    for plan, (top_k, allowed, in_context, written_case) in zip(plans, fields, strict=True):
        if plan.error is not None:
            results.append({"text": "", "confidence": 0.0, "characters": [], "error": plan.error})
            continue
        rows = charsets.restrict(probs[cursor:cursor + len(plan.tiles)], allowed)
        cursor += len(plan.tiles)
        read, at = [], 0  # (text before it, its row or a mark, box, upright box) per character
        for box, space, touching, mark, on_line in zip(plan.boxes, plan.spaces, plan.touching,
                                                       plan.marks or [""] * len(plan.boxes),
                                                       plan.upright or plan.boxes):
            if mark:  # read by its shape: no row of the model's belongs to it
                read.append((space, mark, box, on_line))
                continue
            group = range(at, at + (len(touching[0].pieces) if touching else 1))
            at = group.stop
            if touching:
                options, option_boxes = touching
                chosen = segment.best_reading(options, [float(rows[i].max()) for i in group])
                read += [(space if k == 0 else "", group[i], option_boxes[i], options.pieces[i].box)
                         for k, i in enumerate(chosen)]
            else:
                read.append((space, group[0], box, on_line))
        rows, among = context.read_lines(rows, _lines(read) if in_context else [], allowed)
        # A field whose classes hold no lowercase letter (`chars=uppercase`, hex in capitals)
        # asked for capitals: its letters stay so.
        written_case = written_case and (not allowed or any(c in case.LOWER_ONLY for c in allowed))
        results.append(_result(read, rows, among, top_k, written_case, in_context))
    return results


def _lines(read: list[tuple]) -> list[list[list[int]]]:
    """The rows of each line's tokens: characters between spaces (marks belong to their
    token but have no row), lines apart where a line break comes before a character."""
    lines: list[list[list[int]]] = []
    for space, row, *_ in read:
        if not lines or "\n" in space:
            lines.append([[]])
        elif space and lines[-1][-1]:
            lines[-1].append([])
        if not isinstance(row, str):
            lines[-1][-1].append(row)
    return [[token for token in line if token] for line in lines]


def _result(read: list[tuple], rows: np.ndarray, among: list[str], top_k: int, written_case: bool = False,
            in_context: bool = False) -> dict:
    chars, text = [], []
    def best_of(listed: list[list[dict]]) -> list[str]:
        return [row if isinstance(row, str) else listed[row][0]["char"] for _, row, *_ in read]

    listed = charsets.predictions(rows, top_k, among)
    best = written = best_of(listed)
    on_line, spaces = [r[3] for r in read], [r[0] for r in read]
    if in_context:  # text, not a code, whose characters are each what they look
        # A bare stroke read as L in a word in capitals is an I; a digit standing at the
        # x-height of a line of two heights in a word that holds letters is a lowercase letter
        # (an o, an s: digits stand as tall as capitals), and with case=written so is a run of
        # digits between two lowercase letters ("he11o"): each read among the letters its
        # field allows (as context.read_lines reads a word), the stroke among those but L.
        def allows(i: int, letters: str) -> bool:
            return any(c in letters for c in among[read[i][1]] or charsets.CLASSES)

        heights = case.line_heights(best, on_line, spaces)  # both rules read them
        rereads = [(i, "L") for i in case.bare_strokes_in_capitals(best, on_line, spaces, heights)
                   if allows(i, "I")]
        rereads += [(i, "") for i in case.misread_digits(best, on_line, spaces, written_case, heights)
                    if allows(i, charsets.NAMED["letters"])]
        if rereads:
            rows, among = rows.copy(), list(among)
            for i, but in rereads:  # among the letters its field allows
                row = read[i][1]
                among[row] = "".join(c for c in among[row] or charsets.CLASSES if c.isalpha() and c not in but)
                rows[row] = charsets.restrict(rows[row:row + 1], among[row])[0]
            listed = charsets.predictions(rows, top_k, among)
            best = written = best_of(listed)
    if written_case:
        written = case.as_written(best, on_line, spaces)
    for (space, row, box, _), char, read_as in zip(read, written, best):
        if isinstance(row, str):  # a mark
            chars.append({"char": row, "confidence": 1.0, "box": box, "alternatives": [{"char": row, "p": 1.0}]})
            text.append(space + row)
            continue
        alternatives = listed[row]
        if char != read_as:  # written lowercase: so are the alternatives that hold both cases
            alternatives = [{**a, "char": a["char"].lower()} if a["char"] in case.MERGED else a for a in alternatives]
        chars.append({"char": char, "confidence": alternatives[0]["p"], "box": box, "alternatives": alternatives})
        text.append(space + char)
    # The text's confidence is the mean of its characters' (one weak character shows);
    # marks, found by their shape, have no confidence of the model's to add.
    confident = [c["confidence"] for c in chars if c["char"] not in charsets.MARKS]
    confidence = round(float(np.mean(confident)), 6) if confident else 0.0
    return {"text": "".join(text), "confidence": confidence, "characters": chars}
