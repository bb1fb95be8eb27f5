"""web.validate: the messages of refused base64 say what is wrong with it."""
import base64

import pytest

from web.errors import ApiError
from web.validate import decode_base64

PNG_START = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xfb\xff\xfe"


def refusal(text: str) -> str:
    with pytest.raises(ApiError) as caught:
        decode_base64(text, 3)
    assert caught.value.status == 422 and caught.value.code == "invalid_base64"
    return caught.value.message


def test_standard_base64_is_read_with_or_without_line_breaks():
    encoded = base64.b64encode(PNG_START).decode()
    assert decode_base64(encoded, 0) == PNG_START
    assert decode_base64(encoded[:8] + "\r\n" + encoded[8:], 0) == PNG_START


def test_url_safe_alphabet_is_named():
    message = refusal(base64.urlsafe_b64encode(PNG_START).decode())
    assert message.startswith("images[3] is not valid base64") and "URL-safe" in message


def test_stray_character_is_named_with_its_place():
    assert "'*' at character 4" in refusal("iVBO*w0KGgo=")


def test_missing_padding_or_a_cut_string_is_named():
    encoded = base64.b64encode(PNG_START).decode()
    assert "length" in refusal(encoded.rstrip("=")[:-1])
