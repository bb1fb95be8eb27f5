"""bench/web_servers.py: the raw-request probe that checks a server's parser-level errors."""
import socketserver
import threading

import pytest

from bench import web_servers


class _Canned(socketserver.BaseRequestHandler):
    answer = b""

    def handle(self):
        self.request.recv(65536)
        self.request.sendall(self.answer)


@pytest.mark.parametrize("answer, expected", [
    (b'HTTP/1.1 414 URI Too Long\r\nContent-Type: application/json\r\n\r\n{"error": {"code": "uri_too_long"}}',
     {"status": 414, "json_body": True}),
    (b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n", {"status": 400, "json_body": False, "body_bytes": 0}),
    (b"", {"status": 0, "json_body": False}),  # closed without a word
])
def test_probe_reads_the_status_and_whether_the_body_is_json(answer, expected):
    handler = type("Handler", (_Canned,), {"answer": answer})
    with socketserver.TCPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.handle_request, daemon=True).start()
        got = web_servers.probe(server.server_address[1], web_servers.PROTOCOL_PROBES["garbage_request_line"])
    assert expected.items() <= got.items()
