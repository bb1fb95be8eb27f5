"""Parse and strictly validate what clients submit: images and options.

Images come as multipart `image` files (or form fields, multipart or urlencoded, holding
base64 or data: URLs: an HTML form's hidden input), JSON `{"images": ["<base64>", ...]}`, or one image
as the raw body (`Content-Type: image/png`, `image/jpeg`, ... or
`application/octet-stream`; or no useful type at all, as `curl --data-binary @char.png`
sends it, when the bytes are plainly an image's); options (mode,
top_k, callback_url, timeout) as form fields, JSON keys or query parameters (the body wins
over the query). Every image is checked (header, pixel limit, and a decode or, for PNG,
its chunk CRCs: serve.preprocess.check_image) before a job is created, so a job does not
hold garbage.
Anything wrong is a 4xx ApiError with a message that says what and where (the checks
themselves: web.validate; a form's per-image options and regions: web.fields).
"""
from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass

import httpx
from flask import Request

from serve.formats import image_format
from serve.preprocess import PreprocessError, check_image
from web import fields
from web.config import NUM_CLASSES, WebConfig
from web.errors import ApiError
from web.validate import (case_option, chars_option, decode_base64, header_pixels, int_option, invalid, mode_option,
                          parse_seconds)
from worker.webhooks import check_callback_url

OPTION_FIELDS = ("mode", "top_k", "chars", "case", "callback_url")
# Multipart file fields that hold images: `image` as documented, and the names other upload
# clients use by habit, with the `[]` or `[0]`, `[1]`, ... that PHP-style form builders append.
IMAGE_FIELD = re.compile(r"(image|images|file|files)(\[[0-9]{0,6}\])?")
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
# Pixels (from the headers) one job's images may hold in all: decoding them to check them
# takes a web thread about a second per 150 M pixels on a small machine.
MAX_JOB_PIXELS = 500_000_000


@dataclass(frozen=True)
class Submission:
    images: list[bytes]
    mode: str
    top_k: int
    callback_url: str | None
    timeout: float | None
    chars: str = ""  # the classes the images' characters may be (worker.charsets); "" for all
    # Per image, when any JSON item set its own: every image's mode, top_k, chars, case, name,
    # box (its region, or None) and source (the upload it reads: its own index, or an earlier one's).
    image_options: tuple[dict, ...] = ()
    case: str = "classes"  # web.config.CASES

    def fingerprint(self) -> str:
        """Same images and options -> same fingerprint (for Idempotency-Key replays)."""
        options = f"{self.mode}\0{self.top_k}\0{self.callback_url or ''}\0{len(self.images)}"
        # Only when set, so that keys stored before `chars` existed still match their replays.
        options += f"\0{self.chars}" if self.chars else ""
        options += f"\0case={self.case}" if self.case != "classes" else ""
        options += f"\0{json.dumps(self.image_options, sort_keys=True)}" if self.image_options else ""
        h = hashlib.sha256(options.encode())
        for image in self.images:
            h.update(hashlib.sha256(image).digest())
        return h.hexdigest()


def check_query(request: Request, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(request.args) - set(allowed))
    if unknown:
        raise invalid(f"unknown query parameter(s): {', '.join(unknown)}; allowed: {', '.join(allowed) or 'none'}")
    for name in allowed:
        if len(request.args.getlist(name)) > 1:
            raise invalid(f"query parameter {name} is given more than once")


def _refuse_chunked_body_over_limit(request: Request, config: WebConfig) -> None:
    """A chunked upload (no Content-Length) is one Werkzeug reads only up to the upload
    limit, cutting the rest off silently: the job would fail as a broken image, form or
    JSON. Read such a body first; one that reaches the limit is refused as too large."""
    if request.content_length is not None:
        return
    try:
        if request.mimetype == "multipart/form-data":
            request.files  # noqa: B018 - parsing the form reads the body
        else:
            request.get_data(cache=True)
    except Exception:  # a cut form may not parse: decided below by how much was read
        pass
    if request.stream.tell() >= config.max_upload_bytes:
        raise ApiError(413, "payload_too_large",
                       f"the body reached the upload limit of {config.max_upload_bytes} bytes")


def _images_and_options(request: Request, config: WebConfig,
                        option_names: tuple[str, ...]) -> tuple[list[bytes], dict, bool]:
    """The raw images, the body's options, and whether those options are text (form fields)."""
    mimetype = request.mimetype
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity"):  # RFC 9110: an unsupported content coding is a 415
        raise ApiError(415, "unsupported_content_encoding",
                       f"Content-Encoding {encoding[:32]!r} is not supported: send the body uncompressed",
                       {"Accept-Encoding": "identity"})
    _refuse_chunked_body_over_limit(request, config)
    if mimetype == "multipart/form-data":
        return _form_images_and_options(request, config, option_names)
    if mimetype == "application/x-www-form-urlencoded" and not image_format(request.get_data(cache=True)):
        # Werkzeug parses such a form whole, with no limit on its fields (MAX_FORM_PARTS is
        # multipart's): 32 MB of "a=&" would be 11 million of them.
        fields_at_most = config.max_images_per_job + 16
        if request.get_data(cache=True).count(b"&") >= fields_at_most:
            raise ApiError(413, "too_many_fields", f"the form has more than {fields_at_most} fields")
        return _form_images_and_options(request, config, option_names)
    if (mimetype == "application/json" or mimetype.endswith("+json")
            or (mimetype == "text/plain" and request.get_data(cache=True).lstrip()[:1] == b"{")):
        # text/plain: what browsers' fetch() labels a JSON.stringify body sent without headers.
        try:
            body = request.get_json(silent=True, force=True)  # force: text/plain too
        except RecursionError:  # [[[[... nested deeper than the parser recurses (silent only covers ValueError)
            raise ApiError(400, "invalid_json", "the body is not valid JSON: nested too deeply") from None
        if body is None:
            raise ApiError(400, "invalid_json", "the body is not valid JSON")
        if not isinstance(body, dict):
            raise invalid('the JSON body must be an object {"images": ["<base64>", ...]}')
        unknown = sorted(set(body) - {"images", "image", *option_names})
        if unknown:
            raise invalid(f"unknown JSON key(s): {', '.join(unknown)}; allowed: images (or image), "
                          f"{', '.join(option_names)}")
        if "image" in body:  # one image, as the multipart field is named
            if "images" in body:
                raise invalid('give "images" (a list) or "image" (one), not both', "invalid_images")
            if not isinstance(body["image"], str):
                raise invalid('"image" must be one base64 string; several go in an "images" list', "invalid_base64")
            body = {**body, "images": [body["image"]]}
        images = body.get("images")
        if not isinstance(images, list):
            raise invalid('"images" must be a list of base64 strings', "invalid_images")
        if len(images) > config.max_images_per_job:
            raise ApiError(413, "too_many_images",
                           f"{len(images)} images in one job; the limit is {config.max_images_per_job}")
        for name in option_names:  # the spec has no nullable option: leave a key out for its default
            if name in body and body[name] is None:
                raise invalid(f"{name} is null; leave it out for the default or give a value", f"invalid_{name}")
        options = {k: body[k] for k in option_names if k in body}
        items: list[tuple[bytes, dict]] = []
        sources: list[int] = []
        for i, value in enumerate(images):
            items.append(fields.json_image(value, i, sources))
            sources.append(items[-1][1].get("source", i))
        if any(own for _, own in items):
            options["image_options"] = [own for _, own in items]
        return [data for data, _ in items], options, False
    if (mimetype.startswith("image/") or mimetype == "application/octet-stream"
            or (mimetype in ("", "application/x-www-form-urlencoded")
                and image_format(request.get_data(cache=True)))):
        # One image, its bytes as sent; options come from the query string. curl's
        # --data-binary labels a file form-urlencoded unless told otherwise, and requests,
        # httpx or fetch() send raw bytes with no type at all: the magic number says what
        # the bytes really are.
        return [request.get_data(cache=False)], {}, True
    raise ApiError(415, "unsupported_media_type",
                   "send multipart/form-data with `image` files, application/json {\"images\": [...]}, "
                   "or one image as the body with Content-Type image/png, image/jpeg, ... "
                   "or application/octet-stream")


def _form_images_and_options(request: Request, config: WebConfig,
                             option_names: tuple[str, ...]) -> tuple[list[bytes], dict, bool]:
    """A form's images and options. Images are `image` files, or `image` text fields holding
    base64 or a data: URL: what an HTML form's hidden input carries from a canvas's
    toDataURL(), multipart or urlencoded."""
    texts = [(name, value) for name, value in request.form.items(multi=True) if IMAGE_FIELD.fullmatch(name)]
    unknown = sorted((set(request.form) - set(option_names) - {name for name, _ in texts})
                     | {name for name in request.files if not IMAGE_FIELD.fullmatch(name)})
    if unknown:
        raise invalid(f"unknown form field(s): {', '.join(unknown)}; images go in `image` fields (files, or "
                      f"base64 text), options are {', '.join(option_names)}")
    for name in option_names:
        if len(request.form.getlist(name)) > 1:
            raise invalid(f"form field {name} is given more than once")
    files = [f for name, f in request.files.items(multi=True) if IMAGE_FIELD.fullmatch(name)]  # in body order
    if files and texts:
        raise invalid("send a form's images either as files or as base64 text fields, not both: "
                      "the order between the two kinds is lost", "invalid_images")
    if len(files or texts) > config.max_images_per_job:
        raise ApiError(413, "too_many_images",
                       f"{len(files or texts)} images in one job; the limit is {config.max_images_per_job}")
    options = {k: request.form[k] for k in option_names if k in request.form}
    if files:
        return [f.read() for f in files], options, True
    images = []
    for i, (name, value) in enumerate(texts):
        try:
            images.append(decode_base64(value, i))
        except ApiError:
            raise invalid(f"form field {name} (image {i}) is text but not base64 or a data: URL; send an image "
                          f"file as a file field (curl -F {name}=@char.png, not {name}=<char.png)",
                          "invalid_base64") from None
    return images, options, True


def check_images(images: list[bytes], max_pixels: int, skip: set[int] | frozenset = frozenset(),
                 reread_pixels: int = 0) -> None:
    """Every image must decode, within the pixel limit; the first failure is reported.
    The whole job is held to a pixel budget first, from the headers: most formats are
    decoded here to check them (`check_image`), and hundreds of large-but-legal images
    would keep a web thread decoding past gunicorn's timeout (which kills every request of
    that process). `skip`: items that read an earlier item's image again, whose pixels
    (`reread_pixels`: their regions' or whole images') count toward the budget too."""
    if not images:
        raise invalid("no image in the request: send `image` files or a non-empty \"images\" list", "no_images")
    budget = max(MAX_JOB_PIXELS, 2 * max_pixels)
    # An image over the per-image limit is left to the loop below, which names it.
    total = sum(n for n in map(header_pixels, images) if n <= max_pixels) + reread_pixels
    if total > budget:
        raise ApiError(413, "too_many_pixels", f"the job's {len(images)} images hold {total} pixels in all; "
                                               f"the limit is {budget}: split it into several jobs")
    for i, data in enumerate(images):
        if i in skip:  # it reads an earlier item's image again
            continue
        try:
            check_image(data, max_pixels)
        except PreprocessError as exc:
            raise invalid(f"image {i}: {exc}", exc.code) from None


def parse_submission(request: Request, config: WebConfig, with_timeout: bool) -> Submission:
    option_names = OPTION_FIELDS + (("timeout",) if with_timeout else ())
    check_query(request, option_names)
    images, body_options, body_is_text = _images_and_options(request, config, option_names)
    options = {**{k: request.args[k] for k in option_names if k in request.args}, **body_options}

    def from_text(name: str) -> bool:
        return body_is_text or name not in body_options

    mode = mode_option(options.get("mode", "char"), "mode")
    top_k = int_option("top_k", options.get("top_k", 5), 1, NUM_CLASSES, from_text("top_k"))
    chars = chars_option(options["chars"], "") if "chars" in options else ""
    case = case_option(options.get("case", "classes"), "case")
    image_options = tuple(fields.image_options(own, i, mode, top_k, chars, case)
                          for i, own in enumerate(options.get("image_options", ())))
    callback_url = options.get("callback_url")
    if callback_url is not None:
        try:
            check_callback_url(callback_url, config.allow_private_callbacks)
            check_deliverable_url(callback_url)
        except ValueError as exc:
            raise invalid(str(exc), "invalid_callback_url") from None
    timeout = None
    if with_timeout:
        timeout = parse_seconds("timeout", options.get("timeout", config.recognize_timeout),
                                config.max_wait_seconds, from_text("timeout"))
    rereads = {i for i, own in enumerate(image_options) if own["source"] != i}
    # Each re-read is work for the worker as if its region were uploaded again: a page sent
    # once and read a thousand times whole must not slip past the job's pixel budget.
    check_images(images, config.max_image_pixels, skip=rereads,
                 reread_pixels=fields.reread_pixels(images, image_options))
    fields.check_boxes(images, image_options)
    return Submission(images, mode, top_k, callback_url, timeout, chars, image_options, case)


def check_deliverable_url(url: str) -> None:
    """ValueError unless the worker's HTTP client can deliver to `url`: no spaces or control
    characters (percent-encode them) and a host that IDNA-encodes. check_callback_url skips
    DNS when private targets are allowed, so without this a junk URL would be accepted and
    only fail, silently, at delivery."""
    bad = next((c for c in url if c.isspace() or unicodedata.category(c)[0] == "C"), None)
    if bad is not None:
        raise ValueError(f"callback_url contains {bad!r} at position {url.index(bad)}; percent-encode it")
    try:
        host = httpx.URL(url).host
        host.encode("idna")
    except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
        raise ValueError(f"callback_url is not a valid URL: {exc}") from None
    if not host or ".." in host or host.startswith(".") or host.endswith(".."):
        raise ValueError(f"callback_url host {host!r} is not a valid host name")


def parse_single_image(request: Request, config: WebConfig) -> bytes:
    """The one image of a preview request (multipart `image` or JSON {"images": [b64]})."""
    check_query(request, ())
    images, _, _ = _images_and_options(request, config, ())
    if len(images) != 1:
        raise invalid(f"send exactly one image, got {len(images)}", "invalid_images")
    return images[0]


def idempotency_key(request: Request) -> str | None:
    value = request.headers.get("Idempotency-Key")
    if value is None:
        return None
    if not IDEMPOTENCY_KEY.fullmatch(value):
        raise invalid("Idempotency-Key must be 1-255 printable ASCII characters without spaces",
                      "invalid_idempotency_key")
    return value
