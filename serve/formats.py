"""What bytes sent as an image are, by their first bytes: an image format the service
reads, or a well-known kind of file that is not an image (a form scanned to PDF, a drawing
exported as SVG, an error page saved under the image's name). Naming it tells the sender
what to change, where Pillow's "cannot identify image file" does not.
"""
from __future__ import annotations

import io
import re

from PIL import Image

# What clients send instead of an image.
NOT_IMAGES = (
    (b"%PDF-", "a PDF document, not an image: send each page as a PNG or JPEG image"),
    (b"PK\x03\x04", "a ZIP archive (or a Word or Excel file), not an image: send the images themselves"),
    (b"\x1f\x8b", "gzip-compressed: send the image uncompressed"),
)
MARKUP = re.compile(rb"\A(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(!doctype\s+)?(svg|html)\b",
                    re.IGNORECASE | re.DOTALL)

# The first bytes of each image format the service reads.
IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
               (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))


def image_format(data: bytes) -> str:
    """The image format `data`'s first bytes announce ("PNG", "JPEG", ...), or ""."""
    for magic, name in IMAGE_MAGIC:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return "HEIF" if data[4:8] == b"ftyp" else ""  # an ISO base media box


def not_an_image(data: bytes) -> str:
    """What `data` is when it is a well-known kind of file that is not an image; "" if unknown."""
    head = data[:4096]
    for magic, what in NOT_IMAGES:
        if head.startswith(magic):
            return what
    markup = MARKUP.match(head)
    if markup:
        if markup.group(2).lower() == b"svg":
            return "an SVG drawing (vector graphics), not a raster image: export it as PNG"
        return "an HTML page, not an image"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped[:1] in (b"{", b"["):
        return "JSON, not an image: JSON goes in a request body with Content-Type application/json"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a multi-byte character cut at 4096 is still text
        text = head[:exc.start].decode("utf-8") if exc.start > len(head) - 4 else ""
    if text and all(c.isprintable() or c in "\t\r\n" for c in text):
        if re.fullmatch(r"\s*(data:[\w.+/-]*;base64,)?[A-Za-z0-9+/=\s]{16,}", text):
            return "base64 text, not image bytes: decode it first, or send it in a JSON body's \"images\" list"
        return "text, not an image"
    return ""


def what_it_is(data: bytes) -> str:
    """For an error message: what `data` is when Pillow cannot open it ("" if unknown)."""
    what = not_an_image(data)
    if what:
        return what
    name = image_format(data)
    return f"a truncated or damaged {name} file" if name else ""


def upright_size(data: bytes) -> tuple[int, int]:
    """(width, height) of an image as it is read (after its EXIF orientation, as browsers
    show it), from its header. Pillow's exceptions for what is not an image pass through."""
    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
        try:
            turned = img.getexif().get(0x0112) in (5, 6, 7, 8)  # Orientation: a quarter turn
        except Exception:  # unreadable EXIF: decoding ignores it too (ImageOps.exif_transpose)
            turned = False
    return (height, width) if turned else (width, height)
