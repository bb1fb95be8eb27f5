#!/usr/bin/env python3
"""Container healthcheck: GET a URL, exit 0 on HTTP 200 (and, with --expect, a body that
contains the text). Standard library only, so every image can run it without curl.

--key-file sends TorchServe's inference token (key_file.json): with token auth on, even
/ping wants it. --predict POSTs one blank 28x28 tile (.npy, as the worker sends batches)
instead, to a TorchServe /predictions/<model> URL: TorchServe's /ping says "Healthy" before
the model is loaded, and only an answer from the model shows that it is.
"""
import argparse
import json
import sys
import urllib.request


def blank_tile_npy() -> bytes:
    """np.save of np.zeros((1, 28, 28), np.uint8), without NumPy: the .npy v1.0 layout."""
    header = "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 28, 28), }"
    header += " " * (63 - (10 + len(header)) % 64) + "\n"  # the data starts 64-byte aligned
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin1") + bytes(28 * 28)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--key-file", help="TorchServe key_file.json: send its inference key as a Bearer token")
    p.add_argument("--expect", help="text the response body must contain")
    p.add_argument("--predict", action="store_true", help="POST one blank tile (.npy) instead of GET")
    p.add_argument("--timeout", type=float, default=5.0)
    args = p.parse_args()
    headers, body = {}, None
    if args.predict:
        headers["Content-Type"] = "application/octet-stream"
        body = blank_tile_npy()
    if args.key_file:
        with open(args.key_file) as f:
            headers["Authorization"] = "Bearer " + json.load(f)["inference"]["key"]
    try:
        with urllib.request.urlopen(urllib.request.Request(args.url, data=body, headers=headers),
                                    timeout=args.timeout) as r:
            body = r.read().decode("utf-8", "replace")
            ok = r.status == 200 and (not args.expect or args.expect in body)
    except Exception as exc:  # connection refused, HTTP error, timeout: all mean "not healthy yet"
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    if not ok:
        print(f"unhealthy: {args.url} answered {body[:200]!r}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
