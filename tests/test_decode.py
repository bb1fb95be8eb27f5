"""serve/decode.py: every format a client sends is read to grey pixels, and whatever
cannot be read gets an error that says what was sent instead."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, TiffImagePlugin

from serve import decode as D
from serve import preprocess as P
from tests.fixtures.images import bar_glyph, encode


def test_alpha_is_flattened_onto_white():
    rgba = np.zeros((80, 80, 4), np.uint8)  # fully transparent...
    rgba[10:70, 35:45] = (0, 0, 0, 255)     # ...except an opaque black stroke
    gray = D.decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert gray[0, 0] == 255 and gray[40, 40] == 0


@pytest.mark.parametrize("dtype, fmt", [(np.uint16, "PNG"), (np.uint16, "TIFF"), (np.int32, "TIFF"),
                                        (np.float32, "TIFF")])
def test_scanners_high_bit_depth_greys_are_read(dtype, fmt):
    """A 16-bit (or 32-bit, or float) grey scan: Pillow's own conversion to 8 bits clipped
    it to white ("no ink found"). Scaled so its brightest level is white."""
    page = np.full((80, 80), 60000, np.float64)
    page[10:70, 35:45] = 3000
    if dtype == np.float32:
        page /= 65535
    gray = D.decode_image(encode(Image.fromarray(page.astype(dtype)), fmt))
    assert gray[0, 0] >= 230 and gray[40, 40] <= 20


@pytest.mark.parametrize("colour", [(255, 255, 255), (255, 230, 0), (200, 200, 200)])
def test_light_strokes_on_a_transparent_canvas_are_ink(colour):
    """White, yellow or light grey strokes on a transparent canvas (a dark-themed drawing
    app's export) vanished on white paper: "no ink found". They go onto black paper."""
    rgba = np.zeros((80, 80, 4), np.uint8)
    rgba[10:70, 35:45] = (*colour, 255)
    tile = P.bytes_to_tile(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert tile.max() == 255 and tile[:, 12:16].mean() > 100  # the stroke, upright, in the middle
    # A scan whose transparent margin is the minority keeps white paper under it.
    scan = np.full((80, 80, 4), 235, np.uint8)
    scan[:8, :, 3] = 0
    scan[20:60, 38:42, :3] = 20
    assert D.decode_image(encode(Image.fromarray(scan, "RGBA"), "PNG"))[0, 0] == 255


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF", "HEIF"])
def test_every_client_format_decodes(fmt):
    img = Image.fromarray(bar_glyph()).convert("RGB" if fmt in ("JPEG", "HEIF") else "L")
    tile = P.bytes_to_tile(encode(img, fmt))
    assert tile.max() == 255


@pytest.mark.parametrize("fmt", ["TIFF", "GIF", "PNG", "WEBP"])
def test_multi_page_images_are_refused_not_cut_to_their_first_page(fmt):
    first = Image.fromarray(bar_glyph())
    blank = Image.fromarray(np.full((200, 280), 235, np.uint8))
    data = encode(first, fmt, save_all=True, append_images=[blank, first])
    for read in (D.check_image, D.decode_image):
        with pytest.raises(D.MultiPageImageError, match="3 pages") as e:
            read(data)
        assert e.value.code == "multi_page_image"
    assert P.bytes_to_tile(encode(first, fmt, save_all=True)).max() == 255


def test_a_tiffs_reduced_resolution_preview_is_not_a_page():
    buf = io.BytesIO()
    with TiffImagePlugin.AppendingTiffWriter(buf) as tiff:
        Image.fromarray(bar_glyph()).save(tiff, format="TIFF")
        tiff.newFrame()
        Image.new("L", (35, 25), 235).save(tiff, format="TIFF", tiffinfo={254: 1})  # NewSubfileType: preview
        tiff.newFrame()
    assert Image.open(io.BytesIO(buf.getvalue())).n_frames == 2
    assert P.bytes_to_tile(buf.getvalue()).max() == 255


def test_errors_have_codes():
    with pytest.raises(D.EmptyImageError) as e:
        D.decode_image(b"")
    assert e.value.code == "empty_image"
    with pytest.raises(D.UndecodableImageError):
        D.decode_image(b"<html>not an image</html>")
    with pytest.raises(D.ImageTooLargeError):
        D.decode_image(encode(Image.new("L", (3000, 3000), 255), "PNG"), max_pixels=1_000_000)


@pytest.mark.parametrize("data, says", [
    (b"%PDF-1.7\n1 0 obj <<>> endobj\n", "a PDF document"),
    (b"PK\x03\x04\x14\x00\x06\x00[Content_Types].xml", "a ZIP archive"),
    (b"\x1f\x8b\x08\x00\x00\x00\x00\x00", "gzip-compressed"),
    (b'<?xml version="1.0"?>\n<!-- Inkscape -->\n<svg xmlns="http://www.w3.org/2000/svg"/>', "an SVG drawing"),
    (b"\xef\xbb\xbf<!DOCTYPE html>\n<html><body>502 Bad Gateway</body></html>", "an HTML page"),
    (b'{"images": ["iVBORw0KGgo="]}', "JSON"),
    (b"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAE=", "base64 text"),
    ("Grüße, 谢谢: not a picture\n".encode(), "text"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "a truncated or damaged PNG file"),
    (b"\xff\xd8\xff\xe0\x00", "a truncated or damaged JPEG file"),
])
def test_what_is_sent_instead_of_an_image_is_named(data, says):
    """A form scanned to PDF, a drawing exported as SVG or a proxy's error page saved under
    an image's name: the error says what it is, so the sender knows what to change."""
    with pytest.raises(D.UndecodableImageError, match=f"it is {says}"):
        D.check_image(data)


def test_unknown_bytes_are_not_given_a_name():
    with pytest.raises(D.UndecodableImageError) as e:
        D.check_image(bytes(range(256)) * 4)
    assert "it is" not in str(e.value)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP"])
def test_check_image_refuses_what_decoding_refuses(fmt):
    good = encode(Image.fromarray(bar_glyph()), fmt)
    D.check_image(good)
    refused = 0
    for bad in (good[: len(good) // 2], good[:-20], good[:40] + b"\0" * 20 + good[60:], good[:200]):
        try:
            D.decode_image(bad)
        except D.PreprocessError:
            refused += 1
            with pytest.raises(D.PreprocessError):
                D.check_image(bad)
    assert refused >= 2
    with pytest.raises(D.EmptyImageError):
        D.check_image(b"")
    with pytest.raises(D.ImageTooLargeError):
        D.check_image(encode(Image.new("L", (3000, 3000), 255), fmt), max_pixels=1_000_000)


def test_a_crc_valid_png_with_corrupt_pixels_passes_the_check_but_not_decoding():
    """The one gap of the cheap PNG check: the worker still refuses it, per image."""
    import struct
    import zlib

    raw = b"".join(b"\0" + bytes(range(64)) for _ in range(64))
    garbage = bytes(len(zlib.compress(raw)))  # not a zlib stream

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", garbage) + chunk(b"IEND", b""))
    D.check_image(png)
    with pytest.raises(D.UndecodableImageError):
        D.decode_image(png)
