"""Slow or hostile clients hold nothing without bound: a header or body that trickles in, a
stream nobody reads, connections past the cap, a body left unread after an early answer.
Every loop here is bounded in count and time, and talks only to loopback."""

import os
import socket
import time

import httpx
import pytest

from conftest import DEMO_KEY, running_gateway

STREAM_BODY = (b'{"model": "m", "stream": true, "messages": [{"role": "user", '
               b'"content": "go [[mock words=60000]]"}]}')


def config(mock):
    def make(port, metrics):
        return f"""
server:
  listen: ["127.0.0.1:{port}"]
  threads: 2
  clients: {{header_timeout: 1s, body_timeout: 1s, write_timeout: 1s, drain_timeout: 1s, max_connections: 6}}
metrics: {{listen: "127.0.0.1:{metrics}"}}
providers: [{{name: v, kind: openai, base_url: "{mock.url("openai")}/v1", api_key: sk-mock-openai}}]
models: {{m: {{targets: [{{provider: v, model: gpt-4o-mini}}], retry: {{attempts: 1}}}}}}
keys: [{{name: all, key: {DEMO_KEY}}}]
"""
    return make


@pytest.fixture
def gw(mock):
    with running_gateway(config(mock)) as g:
        yield g


def connect(gw):
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    s.settimeout(5)
    return s


def closed_within(sock, seconds):
    """Reads until the gateway closes the connection; the time it took, or None."""
    start = time.monotonic()
    sock.settimeout(seconds)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return time.monotonic() - start, data
            data += chunk
    except (socket.timeout, TimeoutError):
        return None, data
    except ConnectionResetError:
        return time.monotonic() - start, data


def open_connections_to(gw, port):
    """How many TCP connections the gateway's process holds open to a local port (read from
    /proc: the sockets its descriptors name, matched against the kernel's connection table)."""
    pid = gw.process.proc.pid
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for row in list(f)[1:]:
                cols = row.split()
                remote_port = int(cols[2].rsplit(":", 1)[1], 16)
                if remote_port == port and cols[3] == "01" and cols[9] in inodes:
                    count += 1
    return count


def healthy(gw):
    return httpx.get(gw.base_url + "/health", timeout=2).status_code == 200


def test_a_header_that_trickles_in_is_cut_off(gw):
    s = connect(gw)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
    start = time.monotonic()
    closed = None
    for i in range(40):  # one header byte every 100 ms: each read is quick, the whole is not
        try:
            s.sendall(b"X"[:1])
        except OSError:
            closed = time.monotonic() - start
            break
        time.sleep(0.1)
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                closed = time.monotonic() - start
                break
        except BlockingIOError:
            pass
        except OSError:
            closed = time.monotonic() - start
            break
        finally:
            s.setblocking(True)
    s.close()
    assert closed is not None and closed < 2.5, f"held {closed}"
    assert healthy(gw)


def test_a_request_is_read_whole_however_its_first_read_cuts_it(gw):
    """The first read of a request takes at most 8 KiB, moved into a buffer of its size
    (listen.rs): a request line cut short, and a header and body larger than that read, on a
    fresh connection and on a kept-alive one, are read whole."""
    pad = "p" * 10_000
    content = "x" * 20_000
    body = ('{"model": "m", "messages": [{"role": "user", "content": "%s"}]}' % content).encode()
    big = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {DEMO_KEY}\r\n"
           f"Content-Type: application/json\r\nX-Pad: {pad}\r\nContent-Length: {len(body)}\r\n\r\n"
           ).encode() + body
    s = connect(gw)
    s.sendall(b"PO")
    time.sleep(0.2)
    s.sendall(b"ST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + DEMO_KEY.encode()
              + b"\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
    head = s.recv(65536)
    assert head.startswith(b"HTTP/1.1 400"), head[:80]  # read whole: the body is what is refused
    for _ in range(2):  # the second on the kept-alive connection
        s.sendall(big)
        reply = b""
        while b"chat.completion" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            assert chunk, reply[:200]
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    s.close()


def test_a_connection_that_sends_nothing_is_closed_at_the_header_deadline(gw):
    before = gw.metric("modelmux_rejections_total", reason="header_timeout") or 0
    s = connect(gw)
    took, data = closed_within(s, 5)
    s.close()
    assert took is not None and 0.5 < took < 3, took
    assert data == b""
    assert gw.metric("modelmux_rejections_total", reason="header_timeout") == before + 1


def test_a_body_that_trickles_in_gets_a_408(gw):
    s = connect(gw)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + DEMO_KEY.encode()
              + b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
    for _ in range(5):
        time.sleep(0.1)
        s.sendall(b" ")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)  # now read what is left quickly
    took, data = closed_within(s, 5)
    s.close()
    assert took is not None, "the connection was held"
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    assert b'"type":"invalid_request_error"' in data


def test_a_stream_nobody_reads_ends_and_frees_the_vendor(gw, mock):
    vendor_port = int(mock.url("openai").rsplit(":", 1)[1])
    s = connect(gw)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + DEMO_KEY.encode()
              + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(STREAM_BODY)).encode()
              + b"\r\n\r\n" + STREAM_BODY)
    # The vendor may have written its whole reply into socket buffers before the gateway gives
    # up (loopback's grow to tens of megabytes), so what is asserted is the gateway's side: the
    # connection to the vendor is closed, not held for the client, and the client's is cut.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and open_connections_to(gw, vendor_port) == 0:
        time.sleep(0.05)
    assert open_connections_to(gw, vendor_port) == 1, "the stream never reached the vendor"
    while time.monotonic() < deadline and open_connections_to(gw, vendor_port) > 0:
        time.sleep(0.1)
    assert open_connections_to(gw, vendor_port) == 0, "the vendor's connection was held"
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)  # now read what is left quickly
    took, data = closed_within(s, 5)
    s.close()
    assert took is not None, "the client's connection was held"
    assert b"data: [DONE]" not in data
    assert healthy(gw)


def test_connections_past_the_cap_are_closed_at_once(gw):
    held = [connect(gw) for _ in range(6)]
    time.sleep(0.2)
    extra = connect(gw)
    took, _ = closed_within(extra, 3)
    extra.close()
    assert took is not None and took < 1.0, "a seventh connection was kept"
    held.pop().close()
    time.sleep(0.2)
    again = connect(gw)
    again.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert again.recv(100).startswith(b"HTTP/1.1 200")
    again.close()
    for s in held:
        s.close()


def test_an_unread_body_after_an_early_answer_is_not_waited_for(gw):
    """A wrong key is answered before the body is read; the body never comes, and the
    connection is given up after the drain bound instead of held."""
    s = connect(gw)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-wrong-key-123\r\n"
              b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
    took, data = closed_within(s, 6)
    s.close()
    assert data.startswith(b"HTTP/1.1 401"), data[:200]
    assert took is not None and took < 4, f"held for {took}"
