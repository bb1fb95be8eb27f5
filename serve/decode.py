"""Image bytes to grey pixels: the first step of the ONE preprocessing (serve/preprocess.py
imports it and the model archive packs it beside the handler). Every format a client
sends (PNG, JPEG, BMP, TIFF, WebP, GIF, HEIC), one page of it, upright by its EXIF
orientation, transparency flattened onto paper, a scanner's 16-bit greys scaled to 8
bits; and, for everything else, an error whose class names a machine-readable `code` and
whose message says what was sent instead (serve/formats.py).
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

try:  # inside a model archive, extra files sit flat beside the handler
    import formats
except ImportError:  # imported from the repository
    from serve import formats

try:  # phones (iPhones by default) save photos as HEIC, which Pillow reads only through this
    from pillow_heif import register_heif_opener
except ImportError:  # an environment without it reads every other format
    pass
else:
    register_heif_opener()

# Images of more pixels than this are refused, from their header.
DEFAULT_MAX_PIXELS = 40_000_000
# Strokes drawn on a transparent canvas this light (median grey) go on black paper, not white.
LIGHT_STROKES = 160
# Decompression bombs are refused by our own pixel limit, with a clear message, before
# Pillow's own warning threshold would matter.
Image.MAX_IMAGE_PIXELS = None


class PreprocessError(ValueError):
    """An image that cannot be turned into a tile. `code` is machine-readable."""

    code = "bad_image"


class UndecodableImageError(PreprocessError):
    code = "undecodable_image"


class EmptyImageError(PreprocessError):
    code = "empty_image"


class ImageTooLargeError(PreprocessError):
    code = "image_too_large"


class BlankImageError(PreprocessError):
    code = "blank_image"


class MultiPageImageError(PreprocessError):
    code = "multi_page_image"


def _open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Open (headers only) and check the size; no pixel is decoded yet."""
    if not data:
        raise EmptyImageError("the image is empty (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data))
        width, height = img.size
    except Exception as exc:  # Pillow raises many types for garbage input
        what = formats.what_it_is(data)
        raise UndecodableImageError(f"cannot decode image: it is {what}" if what else
                                    f"cannot decode image: {exc.__class__.__name__}") from None
    if width == 0 or height == 0:
        raise EmptyImageError(f"the image has zero size ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"the image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
    pages = _pages(img)
    if pages > 1:
        # Reading the first page alone would drop the rest of a scanner's multi-page TIFF
        # without a word: the sender must split it, and learns so.
        raise MultiPageImageError(f"the image has {pages} pages or frames; send each page as an image of its own")
    return img


def _pages(img: Image.Image) -> int:
    """Pages of a multi-page TIFF, frames of an animated GIF, PNG or WebP. A TIFF's
    reduced-resolution previews (NewSubfileType bit 0) are not pages."""
    try:
        if not getattr(img, "is_animated", False):
            return 1
        if img.format != "TIFF":
            return img.n_frames
        pages = 0
        for frame in range(img.n_frames):
            img.seek(frame)
            pages += not int(img.tag_v2.get(254, 0)) & 1
        img.seek(0)
        return pages
    except Exception as exc:
        raise UndecodableImageError(f"cannot decode image: {exc.__class__.__name__}") from None


def check_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Refuse what `decode_image` would refuse, cheaply where the format allows it.

    A PNG is checked chunk by chunk (lengths, CRCs, an end marker), which finds truncated
    and garbled files at ~5% of the cost of decoding them. Only compressed pixel data that
    is corrupt yet CRC-valid, which takes deliberate crafting, passes here; `decode_image`
    still refuses it later. Every other format is decoded in full.
    """
    img = _open_image(data, max_pixels)
    if img.format != "PNG":
        _to_gray(img)
        return
    try:
        img.verify()
    except Exception as exc:
        raise UndecodableImageError(f"cannot decode image: {exc.__class__.__name__}: {exc}") from None


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode PNG/JPEG/BMP/TIFF/WebP/GIF/HEIC bytes (one page or frame) to grayscale uint8.

    Transparent pixels are flattened onto white paper, the way a drawing app exports them
    (onto black where the strokes drawn on them are light: `_paper_under`).
    The pixel limit is checked from the header, before any pixel is decoded.
    """
    return _to_gray(_open_image(data, max_pixels))


def _to_gray(img: Image.Image) -> np.ndarray:
    try:
        img.seek(0)
        img = ImageOps.exif_transpose(img)
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            under = Image.new("RGBA", rgba.size, _paper_under(np.asarray(rgba)))
            img = Image.alpha_composite(under, rgba)
        if img.mode in ("I", "F") or img.mode.startswith("I;16"):
            gray = _to_8_bits(np.asarray(img))
        else:
            gray = np.asarray(img.convert("L"), dtype=np.uint8)
    except Exception as exc:
        raise UndecodableImageError(f"cannot decode image: {exc.__class__.__name__}: {exc}") from None
    return gray


def _to_8_bits(values: np.ndarray) -> np.ndarray:
    """16-bit, 32-bit or float grey levels (a scanner's 16-bit PNG or TIFF) as 0..255, the
    brightest level at 255 (Pillow's own conversion clips them: a 16-bit page came out all
    white, "no ink found"); floats up to 1.0 are read as 0..1."""
    values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    top = float(values.max()) if values.size else 0.0
    scale = 255.0 if 0 < top <= 1.0 and values.dtype.kind == "f" else 255.0 / top if top > 255 else 1.0
    return np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)


def _paper_under(rgba: np.ndarray) -> tuple[int, int, int, int]:
    """The paper to put under a transparent image: white, unless what is drawn on it is a
    few light strokes (white or yellow ink on a transparent canvas, as dark-themed drawing
    apps export it), which would vanish on white: then black."""
    drawn = rgba[..., 3] >= 128
    if np.count_nonzero(drawn) >= 0.5 * drawn.size or not drawn.any():
        return (255, 255, 255, 255)
    luminance = rgba[..., :3][drawn].astype(np.float32) @ np.float32([0.299, 0.587, 0.114])
    return (0, 0, 0, 255) if np.median(luminance) >= LIGHT_STROKES else (255, 255, 255, 255)
