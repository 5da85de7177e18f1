"""One header field longer than 64 KiB within http.max_header_bytes (up to 1 MiB). Beast's field
container could not hold a value past 65,533 bytes and threw through the request loop, so one
such request (a large Cookie) aborted the daemon; herald's own parser keeps it and answers."""
import socket

from herald_test import HOST


def read_head_and_body(s: socket.socket) -> bytes:
    """Reads one answer (Content-Length bodies, as herald sends), bounded in bytes and time."""
    got = b""
    while b"\r\n\r\n" not in got and len(got) < 65536:
        part = s.recv(65536)
        if not part:
            return got
        got += part
    head, _, body = got.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        part = s.recv(65536)
        if not part:
            break
        body += part
    return head + b"\r\n\r\n" + body


def test_a_70000_byte_cookie_is_answered_and_the_server_lives(herald_factory):
    srv = herald_factory({"http": {"max_header_bytes": "1MiB"}}, workers=1)
    big = b"v" * 70_000
    with socket.create_connection((HOST, srv.port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nCookie: " + big + b"\r\n\r\n")
        first = read_head_and_body(s)
        assert first.startswith(b"HTTP/1.1 200 "), first[:200]
        # The connection goes on: a second request on it is answered too.
        s.sendall(b"POST /publish/large-field HTTP/1.1\r\nHost: x\r\nX-Big: " + big +
                  b"\r\nContent-Length: 2\r\n\r\nhi")
        second = read_head_and_body(s)
        assert second.startswith(b"HTTP/1.1 200 "), second[:300]
        assert b'"offset"' in second, second[-200:]
    assert srv.alive(), srv.log_tail()


def test_a_head_past_max_header_bytes_still_gets_431(herald_factory):
    srv = herald_factory({"http": {"max_header_bytes": "1MiB"}}, workers=1)
    with socket.create_connection((HOST, srv.port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nCookie: " + b"v" * (1 << 20) + b"\r\n\r\n")
        answer = read_head_and_body(s)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        assert b'"headers_too_large"' in answer, answer
    assert srv.alive(), srv.log_tail()
