"""Webhook target checks and signing. Light imports only: the web app validates
callback URLs at submission with `check_callback_url`, the worker checks again before
each delivery (DNS can change between the two) and signs the body.

A callback URL must not let a client make the worker call into our own network (SSRF):
every address the host resolves to must be public unless private targets are allowed.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
from urllib.parse import urlsplit

SIGNATURE_HEADER = "X-HWR-Signature"
TIMESTAMP_HEADER = "X-HWR-Timestamp"
MAX_URL_LENGTH = 2048


def _refused_reason(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why an address is not a public target, or None if it is."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return _refused_reason(ip.ipv4_mapped)
    for flag in ("is_loopback", "is_link_local", "is_private", "is_reserved", "is_multicast",
                 "is_unspecified"):
        if getattr(ip, flag):
            return flag[3:].replace("_", "-")
    if not ip.is_global:  # shared address space (100.64/10) and the like
        return "non-global"
    return None


def resolve_host(host: str, port: int) -> list[str]:
    """All addresses the host resolves to (an IP literal resolves to itself)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({info[4][0].split("%")[0] for info in infos})


def check_callback_url(url: str, allow_private: bool) -> list[str]:
    """Raise ValueError(message) unless `url` is an http(s) URL whose host resolves only
    to public addresses (any address when `allow_private`). Returns those addresses
    ([] when `allow_private`: nothing was resolved)."""
    if not isinstance(url, str) or not url:
        raise ValueError("callback_url must be a non-empty string")
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"callback_url is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"callback_url is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("callback_url must use http or https")
    if not parts.hostname:
        raise ValueError("callback_url has no host")
    if parts.username or parts.password:
        raise ValueError("callback_url must not carry credentials")
    if allow_private:
        return []
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = resolve_host(parts.hostname, port)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise ValueError(f"callback_url host {parts.hostname!r} does not resolve: {exc}") from None
    if not addresses:
        raise ValueError(f"callback_url host {parts.hostname!r} does not resolve")
    for address in addresses:
        reason = _refused_reason(ipaddress.ip_address(address))
        if reason:
            raise ValueError(f"callback_url host {parts.hostname!r} resolves to {reason} address "
                             f"{address}; only public addresses are allowed")
    return addresses


def pinned_request(url: str, allow_private: bool) -> tuple[str, dict[str, str], dict[str, str]]:
    """(URL, headers, httpx extensions) that reach `url` at an address checked just now.

    Checking the host and then letting the HTTP client resolve it again would leave a gap
    (DNS rebinding: a public answer for the check, 127.0.0.1 for the connection). So the
    request goes to the checked IP itself, with the original Host header and, for https,
    the original name for SNI and certificate verification."""
    addresses = check_callback_url(url, allow_private)
    if not addresses:  # private targets allowed: no check to keep
        return url, {}, {}
    parts = urlsplit(url)
    ip = addresses[0]
    port = f":{parts.port}" if parts.port else ""
    netloc = (f"[{ip}]" if ":" in ip else ip) + port
    name = parts.hostname
    try:
        ipaddress.ip_address(name)
        is_literal = True
    except ValueError:
        is_literal = False
        name = name.encode("idna").decode("ascii")
    host_header = (f"[{name}]" if ":" in name else name) + port
    extensions = {"sni_hostname": name} if parts.scheme == "https" and not is_literal else {}
    return parts._replace(netloc=netloc).geturl(), {"Host": host_header}, extensions


def sign(body: bytes, secret: str, timestamp: str) -> str:
    """`sha256=<hex>` HMAC of `<timestamp>.<body>`. Signing the timestamp (sent in its own
    header) lets the receiver reject replays of an old body with a fresh timestamp."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(body: bytes, secret: str, signature: str, timestamp: str) -> bool:
    """Constant-time check of a received signature (for receivers and tests)."""
    return hmac.compare_digest(sign(body, secret, timestamp), signature or "")
