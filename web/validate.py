"""The checks every option and image field goes through: each wrong value is a 4xx
ApiError whose message says what and where (web.inputs reads the bodies, web.fields a
form's per-image options)."""
from __future__ import annotations

import base64
import binascii
import io
import math
import re

from PIL import Image

from web.config import CASES, MODES
from web.errors import ApiError
from worker import charsets

DATA_URL = re.compile(r"^data:[\w.+/-]*;base64,", re.IGNORECASE)
BASE64_WHITESPACE = str.maketrans("", "", " \t\r\n")
# Numbers in form fields and query strings: ASCII digits only (Python's int() and float()
# would also take "５", "٣" or "1_0", which no client means).
TEXT_INT = re.compile(r"\s*[+-]?[0-9]{1,6}\s*")
TEXT_NUMBER = re.compile(r"\s*[+-]?([0-9]{1,12}(\.[0-9]{0,12})?|\.[0-9]{1,12})([eE][+-]?[0-9]{1,3})?\s*")


def invalid(message: str, code: str = "invalid_request") -> ApiError:
    return ApiError(422, code, message)


def int_option(name: str, value: object, low: int, high: int, from_text: bool, code: str = "") -> int:
    """An integer option; form fields and query parameters are text, JSON must be a number."""
    code = code or f"invalid_{name}"
    if from_text and isinstance(value, str) and TEXT_INT.fullmatch(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{name} must be an integer between {low} and {high}", code)
    if not low <= value <= high:
        raise invalid(f"{name} must be between {low} and {high}, got {value}", code)
    return value


def parse_seconds(name: str, value: object, high: float, from_text: bool = True) -> float:
    """A wait in seconds, 0..high, from JSON (number) or a query/form string."""
    if from_text and isinstance(value, str):
        if not TEXT_NUMBER.fullmatch(value):
            raise invalid(f"{name} must be a number of seconds between 0 and {high:g}", f"invalid_{name}")
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise invalid(f"{name} must be a number of seconds between 0 and {high:g}", f"invalid_{name}")
    if not 0 <= value <= high:
        raise invalid(f"{name} must be between 0 and {high:g} seconds, got {value:g}", f"invalid_{name}")
    return float(value)


def decode_base64(value: object, index: int) -> bytes:
    if not isinstance(value, str):
        raise invalid(f"images[{index}] must be a base64 string", "invalid_base64")
    # Line breaks as MIME writes them (`base64` without -w0, Python's encodebytes, Java's
    # MIME encoder) are part of valid base64 (RFC 2045); anything else that is not of
    # the alphabet is refused.
    text = DATA_URL.sub("", value, count=1).translate(BASE64_WHITESPACE)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"images[{index}] is not valid base64{_why_not_base64(text)}", "invalid_base64") from None


def _why_not_base64(text: str) -> str:
    """What is wrong with a string that does not decode, where one thing plainly is. The
    URL-safe alphabet and missing padding are refused, not guessed at: a string cut short
    also lacks its padding, and its image would fail later with a less useful error."""
    if re.search(r"[-_]", text) and not re.search(r"[+/]", text.rstrip("=")):
        return ": it uses the URL-safe alphabet (- and _); send standard base64 (+ and /)"
    stray = re.search(r"[^A-Za-z0-9+/=]", text)
    if stray:
        return f": {stray.group()!r} at character {stray.start()} is not in base64's alphabet"
    if len(text) % 4:
        return f": its length ({len(text)}) is not a multiple of 4 (cut short, or its = padding left out)"
    return ""


def mode_option(value: object, where: str) -> str:
    if value not in MODES:
        raise invalid(f"{where} must be one of {', '.join(MODES)}, got {str(value)[:40]!r}", "invalid_mode")
    return str(value)


def case_option(value: object, where: str) -> str:
    if value not in CASES:
        raise invalid(f"{where} must be one of {', '.join(CASES)}, got {str(value)[:40]!r}", "invalid_case")
    return str(value)


def chars_option(value: object, where: str) -> str:
    try:
        return charsets.parse_chars(value)
    except ValueError as exc:
        raise invalid(f"{where}{': ' if where else ''}{exc}", "invalid_chars") from None


def header_pixels(data: bytes) -> int:
    """width x height from the image header alone (0 if unreadable: check_image says why)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size[0] * img.size[1]
    except Exception:
        return 0
