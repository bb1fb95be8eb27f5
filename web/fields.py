"""A form read in one job: JSON image objects with options of their own (mode, top_k,
chars, a name echoed in the result, a box: the region to read), and items that read an
earlier item's image again (a page sent once, read field by field)."""
from __future__ import annotations

import unicodedata

from serve.formats import upright_size
from web.config import NUM_CLASSES
from web.validate import case_option, chars_option, decode_base64, header_pixels, int_option, invalid, mode_option

# What a JSON image object may set for itself (a form's fields each have their own kind,
# and may be regions of one scanned page).
IMAGE_OPTION_FIELDS = ("mode", "top_k", "chars", "case", "name", "box")
MAX_NAME_LENGTH = 200


def json_image(value: object, index: int, sources: list[int]) -> tuple[bytes, dict]:
    """One item of a JSON "images" list: a base64 string, or an object {"image": "<base64>",
    and any of mode, top_k, chars, name, box} for an image with options of its own. Its
    "image" may instead be the index of an earlier item, whose upload it reads again (a
    region of the same page: then its bytes are b"" and its options name the `source`).
    `sources`: the upload each earlier item reads."""
    if not isinstance(value, dict):
        return decode_base64(value, index), {}
    unknown = sorted(set(value) - {"image", *IMAGE_OPTION_FIELDS})
    if unknown:
        raise invalid(f"images[{index}]: unknown key(s) {', '.join(map(str, unknown))[:200]}; allowed: image, "
                      f"{', '.join(IMAGE_OPTION_FIELDS)}")
    if "image" not in value:
        raise invalid(f'images[{index}] is an object without "image", its base64 image', "invalid_images")
    for name in IMAGE_OPTION_FIELDS:
        if name in value and value[name] is None:
            raise invalid(f"images[{index}].{name} is null; leave it out for the job's value", f"invalid_{name}")
    own = {k: value[k] for k in IMAGE_OPTION_FIELDS if k in value}
    image = value["image"]
    if isinstance(image, int) and not isinstance(image, bool):
        if not 0 <= image < index:
            raise invalid(f"images[{index}].image refers to images[{image}]; it may refer only to an earlier "
                          f"item (0 to {index - 1}), whose image it reads again", "invalid_images")
        return b"", {**own, "source": sources[image]}
    return decode_base64(image, index), own


def image_options(own: dict, index: int, mode: str, top_k: int, chars: str, case: str = "classes") -> dict:
    """One image's options in full: its own where it set them, the job's elsewhere."""
    where = f"images[{index}]"
    name = own.get("name", "")
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or any(unicodedata.category(c)[0] == "C" for c in name):
        raise invalid(f"{where}.name must be a string of at most {MAX_NAME_LENGTH} printable characters",
                      "invalid_name")
    box = own.get("box")
    if box is not None and not (isinstance(box, list) and len(box) == 4
                                and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 10**6 for v in box)
                                and box[2] >= 1 and box[3] >= 1):
        raise invalid(f"{where}.box must be [x, y, width, height]: whole pixels, width and height at least 1",
                      "invalid_box")
    return {"source": own.get("source", index), "box": box,
            "mode": mode_option(own["mode"], f"{where}.mode") if "mode" in own else mode,
            "top_k": (int_option(f"{where}.top_k", own["top_k"], 1, NUM_CLASSES, False, "invalid_top_k")
                      if "top_k" in own else top_k),
            "chars": chars_option(own["chars"], where) if "chars" in own else chars,
            "case": case_option(own["case"], f"{where}.case") if "case" in own else case,
            "name": name}


def reread_pixels(images: list[bytes], image_options: tuple[dict, ...]) -> int:
    """The pixels the items that re-read an earlier item's image read in all: each one's
    box's (at most its image's: a box past the image is refused later, by check_boxes,
    saying so), else its whole image's. Each image's header is read once, however many
    items re-read it."""
    whole: dict[int, int] = {}
    total = 0
    for i, own in enumerate(image_options):
        source = own["source"]
        if source == i:
            continue
        if source not in whole:
            whole[source] = header_pixels(images[source])
        total += min(own["box"][2] * own["box"][3], whole[source]) if own["box"] else whole[source]
    return total


def check_boxes(images: list[bytes], image_options: tuple[dict, ...]) -> None:
    sizes: dict[int, tuple[int, int]] = {}
    for i, own in enumerate(image_options):
        if own["box"] is None:
            continue
        source = own["source"]
        if source not in sizes:
            sizes[source] = upright_size(images[source])
        (x, y, w, h), (width, height) = own["box"], sizes[source]
        if x + w > width or y + h > height:
            raise invalid(f"images[{i}].box [{x}, {y}, {w}, {h}] reaches past its image, which is "
                          f"{width}x{height} pixels", "invalid_box")
