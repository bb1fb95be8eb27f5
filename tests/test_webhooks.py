"""Webhook target checks: SSRF refusals and delivery pinned to the checked address."""
from __future__ import annotations

import http.server
import threading

import httpx
import pytest

from worker import webhooks


def test_private_and_loopback_targets_are_refused():
    for url in ("http://127.0.0.1/hook", "http://10.0.0.5/hook", "http://[::1]/hook", "http://169.254.169.254/"):
        with pytest.raises(ValueError, match="only public addresses"):
            webhooks.check_callback_url(url, allow_private=False)
    assert webhooks.check_callback_url("http://127.0.0.1/hook", allow_private=True) == []


def test_pinned_request_targets_the_checked_address(monkeypatch):
    monkeypatch.setattr(webhooks, "resolve_host", lambda host, port: ["93.184.215.14"])
    url, headers, extensions = webhooks.pinned_request("https://hooks.example:8443/in?x=1", False)
    assert url == "https://93.184.215.14:8443/in?x=1"
    assert headers == {"Host": "hooks.example:8443"} and extensions == {"sni_hostname": "hooks.example"}
    url, headers, _ = webhooks.pinned_request("http://b\u00fccher.example/hook", False)
    assert url == "http://93.184.215.14/hook" and headers == {"Host": "xn--bcher-kva.example"}


def test_rebinding_to_a_private_address_is_refused_at_delivery(monkeypatch):
    answers = iter([["93.184.215.14"], ["127.0.0.1"]])  # public at submission, loopback later
    monkeypatch.setattr(webhooks, "resolve_host", lambda host, port: next(answers))
    webhooks.check_callback_url("http://rebind.example/hook", False)
    with pytest.raises(ValueError, match="loopback"):
        webhooks.pinned_request("http://rebind.example/hook", False)


def test_delivery_connects_to_the_pinned_address_without_resolving_again(monkeypatch):
    """The name below does not resolve here at all: the POST arrives only because the
    client connects to the address the check returned, with the original Host header."""
    seen = {}

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            seen["host"] = self.headers["Host"]
            seen["body"] = self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    monkeypatch.setattr(webhooks, "resolve_host", lambda host, port: ["127.0.0.1"])
    monkeypatch.setattr(webhooks, "_refused_reason", lambda ip: None)  # pretend loopback is public
    try:
        url, headers, extensions = webhooks.pinned_request(f"http://hooks.invalid:{port}/in", False)
        with httpx.Client(timeout=10) as client:
            response = client.send(client.build_request("POST", url, content=b"{}", headers=headers,
                                                        extensions=extensions))
        assert response.status_code == 204
        assert seen == {"host": f"hooks.invalid:{port}", "body": b"{}"}
    finally:
        server.shutdown()
