"""A small Python client for the handwriting-recognition API.

    from hwr.client import Client
    results = Client("http://127.0.0.1:8000", api_key=None).recognize(["a.png", "b.jpg"], mode="char")

`recognize` returns one result per image, in input order (text, confidence, characters
with boxes and alternatives, or an error). Requests answered 429 (rate limited; the
Retry-After header is honoured) or 503 (service not ready) are retried with backoff; each
submission carries an Idempotency-Key, so a retried POST never creates a second job.
One Client may be shared by threads (httpx.Client is thread-safe).
"""
from __future__ import annotations

import base64
import random
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx

RETRY_STATUSES = (429, 502, 503, 504)
FINAL = ("succeeded", "failed")
ImageInput = str | Path | bytes


class ApiError(Exception):
    """An error answer of the API: `status`, `code` and `message` from its JSON body."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class JobFailed(Exception):
    def __init__(self, job: dict):
        error = job.get("error") or {}
        super().__init__(f"job {job.get('id')} failed: {error.get('code')}: {error.get('message')}")
        self.job = job


def error_of(exc: Exception) -> dict:
    """{"code", "message"} of what stopped a request: the API's error, the failed job's, or
    the exception's own (an unreadable file, the network gone)."""
    if isinstance(exc, ApiError):
        return {"code": exc.code, "message": exc.message}
    if isinstance(exc, JobFailed):
        error = exc.job.get("error") or {}
        return {"code": error.get("code", "job_failed"), "message": error.get("message", str(exc))}
    return {"code": exc.__class__.__name__, "message": str(exc)}


def _read(image: ImageInput) -> tuple[str, bytes]:
    if isinstance(image, (bytes, bytearray)):
        return "image", bytes(image)
    path = Path(image)
    return path.name, path.read_bytes()


# How the service reads an image (web/config.py's MODES): one character, a line of text
# (its words and numbers read as such), or a code (each character alone).
MODES = ("char", "text", "code")
# Letters as EMNIST's classes ("heLLO": c i j k l m o p s u v w x y z as capitals), or as
# written ("hello", told by their size on the line: text and code mode) (web/config.py's CASES).
CASES = ("classes", "written")


@dataclass(frozen=True)
class Field:
    """One field of a form for `Client.recognize_form`: its image and how to read it."""

    image: ImageInput
    mode: str = "text"  # a field holds a word or a number more often than one character
    chars: str | None = None  # "digits", "uppercase", "letters" or the characters themselves
    top_k: int | None = None
    box: tuple[int, int, int, int] | None = None  # x, y, width, height: the field's region of its page
    case: str | None = None  # "written": letters in the case they are written (CASES)


class Client:
    def __init__(self, url: str = "http://127.0.0.1:8000", api_key: str | None = None, *, timeout: float = 90.0,
                 max_retries: int = 8, backoff: float = 0.5, max_backoff: float = 30.0):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        self.max_retries, self.backoff, self.max_backoff = max_retries, backoff, max_backoff

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transport ------------------------------------------------------------------------
    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        retry_after = response.headers.get("Retry-After") if response is not None else None
        if retry_after:
            try:
                return min(float(retry_after), self.max_backoff)
            except ValueError:
                pass
        # Exponential backoff with jitter, so many clients do not retry in lockstep.
        return min(self.backoff * 2 ** attempt, self.max_backoff) * random.uniform(0.5, 1.0)

    def request(self, method: str, path: str, **kwargs) -> dict:
        """One API call with retries on 429/5xx-unavailable and connection errors."""
        for attempt in range(self.max_retries + 1):
            response = None
            try:
                response = self.http.request(method, path, **kwargs)
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
                if attempt == self.max_retries:
                    raise
            if response is not None:
                if response.status_code not in RETRY_STATUSES or attempt == self.max_retries:
                    return self._body(response)
            time.sleep(self._delay(attempt, response))
        raise AssertionError("unreachable")

    @staticmethod
    def _body(response: httpx.Response) -> dict:
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success and isinstance(body, dict):
            return body
        if response.status_code == 204:
            return {}
        error = body.get("error", {}) if isinstance(body, dict) else {}
        raise ApiError(response.status_code, error.get("code", "http_error"),
                       error.get("message", response.text[:200]))

    # -- API ------------------------------------------------------------------------------
    @staticmethod
    def _files(images: Iterable[ImageInput]) -> list:
        return [("image", (name, data, "application/octet-stream")) for name, data in map(_read, images)]

    @staticmethod
    def _options(mode: str, top_k: int, callback_url: str | None, chars: str | None = None,
                 case: str | None = None) -> dict:
        data = {"mode": mode, "top_k": str(top_k)}
        if callback_url:
            data["callback_url"] = callback_url
        if chars:
            data["chars"] = chars
        if case:
            data["case"] = case
        return data

    def submit(self, images: ImageInput | list[ImageInput], mode: str = "char", top_k: int = 5,
               callback_url: str | None = None, idempotency_key: str | None = None,
               chars: str | None = None, case: str | None = None) -> str:
        """Queue a job; returns its id. `chars`: the characters the images may hold
        ("digits", "uppercase", "letters" or the characters themselves); `case`: "written"
        for letters in the case they are written (text and code mode)."""
        images = images if isinstance(images, list) else [images]
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        body = self.request("POST", "/v1/jobs", files=self._files(images),
                            data=self._options(mode, top_k, callback_url, chars, case), headers=headers)
        return body["id"]

    def get(self, job_id: str, wait: float = 0) -> dict:
        """The job as it stands (after waiting up to `wait` seconds for it to finish)."""
        params = {"wait": f"{wait:g}"} if wait else None
        return self.request("GET", f"/v1/jobs/{job_id}", params=params)

    def delete(self, job_id: str) -> None:
        """Delete the job now: its images, results and status (ApiError 404 if it is gone)."""
        self.request("DELETE", f"/v1/jobs/{job_id}")

    def wait(self, job_id: str, timeout: float = 300) -> dict:
        """Block until the job is final (the server holds each request up to 30 s)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            job = self.get(job_id, wait=max(0.0, min(30.0, left)))
            if job["status"] in FINAL or left <= 0:
                return job

    def recognize(self, images: ImageInput | list[ImageInput], mode: str = "char", top_k: int = 5,
                  timeout: float = 300, idempotency_key: str | None = None, chars: str | None = None,
                  case: str | None = None) -> list[dict]:
        """Recognize and return one result per image, in order. Raises JobFailed/ApiError."""
        images = images if isinstance(images, list) else [images]
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        body = self.request("POST", "/v1/recognize", files=self._files(images),
                            data={**self._options(mode, top_k, None, chars, case), "timeout": f"{min(timeout, 30):g}"},
                            headers=headers)
        return self._finished(body, timeout)

    def recognize_form(self, fields: dict[str, Field | ImageInput], top_k: int = 5, timeout: float = 300,
                       idempotency_key: str | None = None) -> dict[str, dict]:
        """Read a form's fields in one job, each by its own options; returns name -> result.

            client.recognize_form({"date": Field("date.png", mode="text", chars="digits"),
                                   "initial": Field("initial.png", chars="uppercase")})
            client.recognize_form({"date": Field("page.jpg", chars="digits", box=(40, 60, 300, 80)),
                                   "initial": Field("page.jpg", chars="uppercase", box=(580, 280, 120, 120))})

        Fields that are regions (`box`) of one page send the page once.
        """
        items, sent = [], {}  # sent: an image's bytes -> the item that carries them
        for name, spec in fields.items():
            spec = spec if isinstance(spec, Field) else Field(spec)
            data = _read(spec.image)[1]
            # Fields that are regions of one page send the page once.
            image = sent.setdefault(data, len(items))
            item = {"image": image if image < len(items) else base64.b64encode(data).decode(),
                    "name": name, "mode": spec.mode}
            items.append({**item, **({"chars": spec.chars} if spec.chars else {}),
                          **({"top_k": spec.top_k} if spec.top_k else {}),
                          **({"case": spec.case} if spec.case else {}),
                          **({"box": list(spec.box)} if spec.box else {})})
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        body = self.request("POST", "/v1/recognize", json={"images": items, "top_k": top_k,
                                                            "timeout": min(timeout, 30)}, headers=headers)
        return dict(zip(fields, self._finished(body, timeout)))

    def _finished(self, job: dict, timeout: float) -> list[dict]:
        if job["status"] not in FINAL:
            job = self.wait(job["id"], timeout)
        if job["status"] == "failed":
            raise JobFailed(job)
        if job["status"] != "succeeded":
            raise TimeoutError(f"job {job['id']} is still {job['status']} after {timeout}s")
        return job["results"]
