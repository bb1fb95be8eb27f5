"""The OpenAPI 3 description of every endpoint (/openapi.json) and a docs page (/docs).

Written by hand next to the code it describes; tests/test_schemathesis.py checks the live
app against it, so the two cannot drift apart unnoticed.
"""
from __future__ import annotations

from flask import Blueprint, jsonify, render_template

from web.config import CASES, MODES, NUM_CLASSES, WebConfig
from web.services import services
from worker import charsets

bp = Blueprint("openapi", __name__)


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str, headers: dict | None = None) -> dict:
    out = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def _errors(*statuses: int) -> dict:
    text = {400: "Malformed request (e.g. invalid JSON)", 401: "Missing or invalid API key (when keys are on)",
            404: "No such job", 409: "Idempotency-Key reused with a different body",
            413: "Upload too large, or too many images in one job", 414: "URL too long",
            415: "Unsupported content type or content encoding",
            422: "Invalid field: the message says which", 429: "Rate limit exceeded",
            503: "Job store unavailable"}
    out = {str(s): _json(_ref("Error"), text[s]) for s in statuses}
    if 429 in statuses:
        out["429"]["headers"] = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "string"}}}
    return out


# One image as the whole body (`curl --data-binary @char.png -H "Content-Type: image/png"`);
# its options go in the query string.
RAW_IMAGE = {media: {"schema": {"type": "string", "format": "binary"}}
             for media in ("image/png", "image/jpeg", "image/*", "application/octet-stream")}


def build_spec(config: WebConfig) -> dict:
    max_wait = config.max_wait_seconds
    options = {
        "mode": {"type": "string", "enum": list(MODES), "default": "char",
                 "description": "`char`: each image is one character; `text`: a line of text, segmented, "
                                "where a token (the characters between spaces) whose characters together "
                                "read as a number or a word is read among the digits or the letters; "
                                "`code`: segmented as text, each character read alone (serial numbers, "
                                "codes that mix letters and digits)"},
        "top_k": {"type": "integer", "minimum": 1, "maximum": NUM_CLASSES, "default": 5,
                  "description": "Alternatives listed per character"},
        "chars": {"type": "string", "pattern": f"^[0-9A-Za-z.,/-]{{1,{charsets.MAX_LENGTH}}}$",
                  "description": "The characters the images may hold (a form field known to be digits, say): "
                                 "`digits`, `uppercase`, `letters`, or the characters themselves, such as "
                                 "`0123456789ABCDEF`. Only those classes are read, their probabilities "
                                 "renormalized. Lowercase letters EMNIST merges with their capitals (c, o, "
                                 "s, ...) mean the capital. In text and code mode, the marks . , - / may be named too: "
                                 "they are then read where their shape shows them (`0123456789./` for a "
                                 "date or an amount). Default: all 47 classes, no marks"},
        "case": {"type": "string", "enum": list(CASES), "default": "classes",
                 "description": "`classes`: letters as EMNIST's 47 classes, which hold c i j k l m o p s u v w x "
                                "y z under their capitals (\"heLLO\"); `written`: in text and code mode, each "
                                "of those letters in the case it is written, told by its height on its line "
                                "and its word (\"hello\"), and digits among lowercase letters read as the letters "
                                "they are (\"he110\" -> \"hello\"); their alternatives follow. Where `chars` hold no "
                                "lowercase letter (`uppercase`), letters stay capitals. Either way, in text "
                                "mode a digit standing at the x-height of a word of letters is read as a letter "
                                "(\"n0rth\" -> \"nOrth\" by classes)"},
        "callback_url": {"type": "string", "maxLength": 2048,
                         "description": "Public http(s) URL that gets the finished job as a signed POST"},
    }
    timeout = {"type": "number", "minimum": 0, "maximum": max_wait, "default": config.recognize_timeout,
               "description": "Seconds to wait for the result before answering 202"}

    def query(names: dict) -> list:
        return [{"name": k, "in": "query", "required": False, "schema": v} for k, v in names.items()]

    def submission(with_timeout: bool) -> dict:
        fields = {**options, **({"timeout": timeout} if with_timeout else {})}
        image_object = {
            "type": "object", "required": ["image"], "additionalProperties": False,
            "description": "An image with options of its own (a form's field): they override the job's for this "
                           "image, and `name` comes back in its result",
            "properties": {
                "image": {"oneOf": [{"type": "string", "format": "byte"},
                                    {"type": "integer", "minimum": 0,
                                     "description": "The index of an earlier item, whose image this one reads "
                                                    "again (another field of the same page, sent once)"}]},
                "box": {"type": "array", "minItems": 4, "maxItems": 4,
                        "items": {"type": "integer", "minimum": 0, "maximum": 1000000},
                        "description": "[x, y, width, height]: read only this region of the image (a field of a "
                                       "scanned form); character boxes come back in the whole image's pixels"},
                "mode": options["mode"], "top_k": options["top_k"], "chars": options["chars"],
                "case": options["case"], "name": {"type": "string", "maxLength": 200}}}
        json_body = {"type": "object", "required": ["images"], "additionalProperties": False, "properties": {
            "images": {"type": "array", "minItems": 1, "maxItems": config.max_images_per_job,
                       "items": {"oneOf": [{"type": "string", "format": "byte"}, image_object]},
                       "description": "Base64 images (PNG, JPEG, BMP, TIFF, WebP, GIF, HEIC); data: URLs and MIME "
                                      "line breaks accepted. One image may instead be sent as a string `image`"},
            **fields}}
        form = {"type": "object", "required": ["image"], "additionalProperties": False, "properties": {
            "image": {"type": "array", "minItems": 1, "maxItems": config.max_images_per_job,
                      "items": {"type": "string", "format": "binary"},
                      "description": "Image files; or, all of them, text fields holding base64 or a data: URL"},
            **fields}}
        # An HTML form posting a canvas's toDataURL() from a hidden input.
        url_form = {"type": "object", "required": ["image"], "additionalProperties": False, "properties": {
            "image": {"type": "array", "minItems": 1, "maxItems": config.max_images_per_job,
                      "items": {"type": "string", "format": "byte"}, "description": "Base64 images or data: URLs"},
            **fields}}
        return {"required": True, "content": {"application/json": {"schema": json_body},
                                              "multipart/form-data": {"schema": form},
                                              "application/x-www-form-urlencoded": {"schema": url_form},
                                              **RAW_IMAGE}}

    idempotency = {"name": "Idempotency-Key", "in": "header", "required": False,
                   "schema": {"type": "string", "pattern": "^[!-~]{1,255}$"},
                   "description": "Same key and body: the same job again; same key, other body: 409"}
    accepted = _json(_ref("JobAccepted"), "Job queued; poll `links.self`",
                     {"Location": {"description": "The job's URL", "schema": {"type": "string"}}})
    submit_errors = _errors(400, 401, 409, 413, 414, 415, 422, 429, 503)
    nullable_str = {"type": "string", "nullable": True}
    error_body = {"type": "object", "required": ["code", "message"],
                  "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}
    check = {"type": "object", "required": ["ok", "detail"],
             "properties": {"ok": {"type": "boolean"}, "detail": {"type": "string"}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Handwriting recognition API", "version": "1.0.0",
                 "description": "EMNIST-47 character and text recognition. Errors are always "
                                "`{\"error\": {\"code\", \"message\"}}`."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "Needed when the server sets HWR_API_KEYS"},
                                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                                           "description": "The same key, as a header of its own"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": error_body}},
                "Alternative": {"type": "object", "required": ["char", "p"], "properties": {
                    "char": {"type": "string"}, "p": {"type": "number", "minimum": 0, "maximum": 1}}},
                "Character": {"type": "object", "required": ["char", "confidence", "box", "alternatives"],
                              "properties": {
                                  "char": {"type": "string"}, "confidence": {"type": "number"},
                                  "box": {"type": "array", "minItems": 4, "maxItems": 4,
                                          "items": {"type": "integer"}, "description": "x, y, width, height"},
                                  "alternatives": {"type": "array", "items": _ref("Alternative")}}},
                "Result": {"type": "object", "required": ["text", "characters"], "properties": {
                    "text": {"type": "string"}, "confidence": {"type": "number", "nullable": True},
                    "characters": {"type": "array", "items": _ref("Character")},
                    "name": {"type": "string", "description": "The image's `name`, where it gave one"},
                    "error": error_body}},
                "Links": {"type": "object", "required": ["self"], "properties": {"self": {"type": "string"}}},
                "JobAccepted": {"type": "object", "required": ["id", "status", "links"], "properties": {
                    "id": {"type": "string"}, "status": {"type": "string", "enum": ["queued", "running"]},
                    "links": _ref("Links")}},
                "Job": {"type": "object",
                        "required": ["id", "status", "created_at", "finished_at", "results", "error", "links"],
                        "properties": {
                            "id": {"type": "string"},
                            "status": {"type": "string", "enum": ["queued", "running", "succeeded", "failed"]},
                            "mode": {"type": "string", "enum": list(MODES)}, "top_k": {"type": "integer"},
                            "chars": {**nullable_str, "description": "The classes the job allowed; null: all"},
                            "case": {"type": "string", "enum": list(CASES)},
                            "n_images": {"type": "integer"}, "created_at": nullable_str,
                            "finished_at": nullable_str, "callback_url": nullable_str,
                            "results": {"type": "array", "items": _ref("Result"),
                                        "description": "One per image, in input order"},
                            "error": {**error_body, "nullable": True}, "links": _ref("Links")}},
                "Tile": {"type": "object", "required": ["width", "height", "pixels"], "properties": {
                    "width": {"type": "integer"}, "height": {"type": "integer"},
                    "pixels": {"type": "array", "items": {"type": "array", "items": {
                        "type": "integer", "minimum": 0, "maximum": 255}},
                        "description": "Rows of the 28x28 tile, white ink on black"}}},
                "Ready": {"type": "object", "required": ["status", "checks"], "properties": {
                    "status": {"type": "string", "enum": ["ready", "not_ready"]},
                    "checks": {"type": "object", "additionalProperties": check}}},
            }},
        "security": [{}, {"bearer": []}, {"apiKey": []}],
        "paths": {
            "/v1/jobs": {"post": {
                "summary": "Submit a job", "operationId": "createJob",
                "parameters": [*query(options), idempotency], "requestBody": submission(False),
                "responses": {"202": accepted, **submit_errors}}},
            "/v1/jobs/{job_id}": {"get": {
                "summary": "Read a job", "operationId": "readJob",
                "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}},
                               *query({"wait": {"type": "number", "minimum": 0, "maximum": max_wait, "default": 0,
                                                "description": "Wait up to this many seconds for the job to "
                                                               "finish before answering"}})],
                "responses": {"200": _json(_ref("Job"), "The job"), **_errors(401, 404, 414, 422, 429, 503)}},
                "delete": {
                "summary": "Delete a job now: its images, results and status (a queued job never runs)",
                "operationId": "deleteJob",
                "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"204": {"description": "Deleted"}, **_errors(401, 404, 414, 422, 429, 503)}}},
            "/v1/recognize": {"post": {
                "summary": "Submit a job and wait for its result", "operationId": "recognize",
                "parameters": [*query({**options, "timeout": timeout}), idempotency],
                "requestBody": submission(True),
                "responses": {"200": _json(_ref("Job"), "The finished job"),
                              "202": accepted, **submit_errors}}},
            "/v1/preview": {"post": {
                "summary": "The 28x28 tile the model sees for one character image", "operationId": "preview",
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": {
                        "type": "object", "required": ["images"], "additionalProperties": False, "properties": {
                            "images": {"type": "array", "minItems": 1, "maxItems": 1,
                                       "items": {"type": "string", "format": "byte"}}}}},
                    "multipart/form-data": {"schema": {
                        "type": "object", "required": ["image"], "additionalProperties": False, "properties": {
                            "image": {"type": "string", "format": "binary"}}}}, **RAW_IMAGE}},
                "responses": {"200": _json(_ref("Tile"), "The tile"), **_errors(400, 401, 413, 415, 422, 429)}}},
            "/healthz": {"get": {"summary": "Liveness", "operationId": "healthz", "security": [],
                                 "responses": {"200": _json({"type": "object", "required": ["status"], "properties": {
                                     "status": {"type": "string", "enum": ["ok"]}}}, "Alive")}}},
            "/readyz": {"get": {"summary": "Readiness: Redis, TorchServe and a Celery worker answer",
                                "operationId": "readyz", "security": [],
                                "responses": {"200": _json(_ref("Ready"), "Ready"),
                                              "503": _json(_ref("Ready"), "Not ready; `checks` says why")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "operationId": "metrics", "security": [],
                                 "responses": {"200": {"description": "Prometheus text format", "content": {
                                     "text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi", "security": [],
                                      "responses": {"200": _json({"type": "object"}, "OpenAPI 3")}}},
            "/docs": {"get": {"summary": "API documentation page", "operationId": "docs", "security": [],
                              "responses": {"200": {"description": "HTML", "content": {
                                  "text/html": {"schema": {"type": "string"}}}}}}},
            "/": {"get": {"summary": "Drawing and upload page", "operationId": "page", "security": [],
                          "responses": {"200": {"description": "HTML", "content": {
                              "text/html": {"schema": {"type": "string"}}}}}}},
        },
    }


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(build_spec(services().config))


@bp.get("/docs")
def docs():
    return render_template("docs.html", spec=build_spec(services().config))
