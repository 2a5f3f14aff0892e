"""Shared machinery for Switchyard's integration tests (Python 3.11 stdlib only).

Three pieces, used by every test_*.py module here:

* `Origin`  - a threaded HTTP/1.1 origin server on 127.0.0.1:<ephemeral> that records what it
              receives and offers endpoints for every behaviour the tests need (echo, downloads,
              slow answers, broken answers, ...).
* `Proxy`   - runs `$SWITCHYARD_BIN run -c FILE` in its own process group from a config dict
              (see `proxy_config`), waits for it to be ready and captures its stdout (access log)
              and stderr (diagnostics) to files.
* `Client`  - a raw-socket HTTP/1.1 client, so tests control pipelining, slow sending and
              connection reuse byte by byte.

`ProxyTestCase` ties them together: everything it starts is cleaned up, and the proxy's logs are
printed when a test fails.

Every blocking operation here takes a timeout, every loop is bounded, and only loopback is used.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http
import json
import mmap
import os
import random
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
from typing import Callable, Iterable, Iterator

LOOPBACK = "127.0.0.1"
PIECE_SIZE = 64 * 1024          # unit of generated/streamed bodies
MAX_HEAD_BYTES = 1024 * 1024    # what our own parsers accept for one message head
MAX_LINE_BYTES = 64 * 1024      # chunk-size / trailer lines
MiB = 1024 * 1024


def switchyard_bin() -> str:
    """The binary under test: $SWITCHYARD_BIN, else build/switchyard of this checkout."""
    path = os.environ.get("SWITCHYARD_BIN")
    if path:
        return path
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "..", "build", "switchyard"))


# --------------------------------------------------------------------------------------------
# Deterministic pseudo-random bodies
# --------------------------------------------------------------------------------------------

def pattern_pieces(size: int, seed: int = 0, piece_size: int = PIECE_SIZE) -> Iterator[bytes]:
    """Yields `size` deterministic pseudo-random bytes, generated one piece at a time.

    Piece i is a function of (seed, i) only, so any consumer can regenerate the stream without
    holding it in memory.
    """
    index = 0
    remaining = size
    while remaining > 0:
        n = min(piece_size, remaining)
        data = random.Random(seed * 1_000_003 + index).randbytes(piece_size)
        yield data if n == piece_size else data[:n]
        remaining -= n
        index += 1


_pattern_lock = threading.Lock()


@functools.lru_cache(maxsize=64)
def _pattern_sha256_cached(size: int, seed: int) -> str:
    digest = hashlib.sha256()
    for piece in pattern_pieces(size, seed):
        digest.update(piece)
    return digest.hexdigest()


def pattern_sha256(size: int, seed: int = 0) -> str:
    """SHA-256 (hex) of pattern_pieces(size, seed); computed once per (size, seed)."""
    with _pattern_lock:  # so concurrent callers do not all hash 64 MiB
        return _pattern_sha256_cached(size, seed)


# --------------------------------------------------------------------------------------------
# HTTP/1.1 wire helpers shared by the origin and the client
# --------------------------------------------------------------------------------------------

class ProtocolError(Exception):
    """The peer sent something that is not the HTTP/1.1 we expected."""


class PeerClosed(ConnectionError):
    """The peer closed the connection in the middle of a message."""


class Headers(list):
    """An ordered list of (name, value) pairs with case-insensitive lookups."""

    def get(self, name: str, default: str | None = None) -> str | None:
        lname = name.lower()
        for n, v in self:
            if n.lower() == lname:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for n, v in self if n.lower() == lname]

    def has(self, name: str) -> bool:
        return bool(self.get_all(name))

    def tokens(self, name: str) -> list[str]:
        """Comma-separated tokens of all `name` fields, lower-cased ("a, B" -> ["a", "b"])."""
        out = []
        for value in self.get_all(name):
            out.extend(t.strip().lower() for t in value.split(",") if t.strip())
        return out

    def names(self) -> set[str]:
        return {n.lower() for n, _ in self}


def parse_head(head: bytes) -> tuple[str, Headers]:
    """Splits a message head (ending in CRLFCRLF) into its start line and header fields."""
    lines = head.decode("latin-1").split("\r\n")
    headers = Headers()
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ProtocolError(f"malformed header line {line!r}")
        headers.append((name, value.strip(" \t")))
    return lines[0], headers


def reason_phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def encode_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


LAST_CHUNK = b"0\r\n\r\n"


class SocketReader:
    """Buffered reads from a socket with absolute deadlines (time.monotonic() values)."""

    RECV_SIZE = 256 * 1024

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()
        self.eof = False

    def fill(self, deadline: float) -> bool:
        """Appends what the socket has to the buffer. False on EOF; TimeoutError past deadline."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("deadline passed while waiting for data")
        self.sock.settimeout(remaining)
        data = self.sock.recv(self.RECV_SIZE)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_until(self, delim: bytes, deadline: float, limit: int) -> bytes | None:
        """Bytes up to and including `delim`. None on EOF before any byte; PeerClosed on EOF
        inside; ProtocolError when more than `limit` bytes arrive without `delim`."""
        start = 0
        while True:
            idx = self.buf.find(delim, start)
            if idx >= 0:
                end = idx + len(delim)
                out = bytes(self.buf[:end])
                del self.buf[:end]
                return out
            if len(self.buf) > limit:
                raise ProtocolError(f"no {delim!r} within {limit} bytes")
            start = max(0, len(self.buf) - len(delim) + 1)
            if not self.fill(deadline):
                if not self.buf:
                    return None
                raise PeerClosed(f"connection closed inside a message ({len(self.buf)} bytes "
                                 f"without {delim!r}: {bytes(self.buf[:200])!r})")

    def iter_exact(self, n: int, deadline: float) -> Iterator[bytes]:
        """Yields pieces totalling exactly `n` bytes; PeerClosed if the peer closes first."""
        got = 0
        while got < n:
            if not self.buf and not self.fill(deadline):
                raise PeerClosed(f"connection closed after {got} of {n} body bytes")
            take = min(len(self.buf), n - got)
            piece = bytes(self.buf[:take])
            del self.buf[:take]
            got += take
            yield piece

    def read_exact(self, n: int, deadline: float) -> bytes:
        return b"".join(self.iter_exact(n, deadline))

    def iter_until_close(self, deadline: float) -> Iterator[bytes]:
        while True:
            if self.buf:
                piece = bytes(self.buf)
                self.buf.clear()
                yield piece
            if not self.fill(deadline):
                return

    def iter_chunked(self, deadline: float) -> Iterator[bytes]:
        """Decodes a chunked body (including its trailer section), yielding the data."""
        for _ in range(100_000_000):
            line = self.read_until(b"\r\n", deadline, MAX_LINE_BYTES)
            if line is None:
                raise PeerClosed("connection closed before a chunk-size line")
            size_text = line[:-2].split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk-size line {line!r}") from None
            if size == 0:
                break
            yield from self.iter_exact(size, deadline)
            if self.read_exact(2, deadline) != b"\r\n":
                raise ProtocolError("chunk data not followed by CRLF")
        for _ in range(1000):  # trailer section
            line = self.read_until(b"\r\n", deadline, MAX_LINE_BYTES)
            if line is None:
                raise PeerClosed("connection closed inside the chunked trailer section")
            if line == b"\r\n":
                return
        raise ProtocolError("too many trailer fields")


def body_framing(headers: Headers) -> tuple[str, int]:
    """("chunked", 0), ("length", n) or ("none", 0) for a request; responses use "none" as
    "until close" unless the status/method says there is no body."""
    te = headers.tokens("transfer-encoding")
    if te:
        if te[-1] != "chunked":
            raise ProtocolError(f"unsupported Transfer-Encoding {te}")
        return "chunked", 0
    lengths = {v.strip() for v in headers.get_all("content-length")}
    if len(lengths) > 1:
        raise ProtocolError(f"conflicting Content-Length values {sorted(lengths)}")
    if lengths:
        (value,) = lengths
        if not value.isdigit():
            raise ProtocolError(f"bad Content-Length {value!r}")
        return "length", int(value)
    return "none", 0


# --------------------------------------------------------------------------------------------
# Origin server
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class RecordedRequest:
    """One request as the origin received it (recorded once its body has been read)."""
    conn_id: int
    method: str
    target: str
    version: str
    headers: Headers
    body_length: int
    body_sha256: str

    @property
    def path(self) -> str:
        return urllib.parse.urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.target).query))


class _OriginConnection:
    def __init__(self, conn_id: int, sock: socket.socket):
        self.conn_id = conn_id
        self.sock = sock
        self.idle = True  # waiting for (the start of) the next request


class Origin:
    """A threaded HTTP/1.1 origin on 127.0.0.1:<ephemeral port>, one thread per connection.

    Endpoints (by path; the query string carries parameters):
      /                 200 "origin NAME: METHOD TARGET\\n" (also for any unknown path)
      /echo             200 with X-Body-Sha256 / X-Body-Length of the request body
      /download         ?size=N&chunked=0|1 - N pattern bytes, X-Body-Sha256 precomputed
      /slow             ?delay=SECONDS - sleeps, then 200
      /headers          200 JSON list of the [name, value] request headers received
      /close-mid        head with Content-Length: 100000, 1000 bytes, close
      /close-before-head  reads the request, closes without answering
      /garbage          "HELLO\\r\\n\\r\\n", close
      /status           ?code=N - that status, empty body
      /healthz          `health_status` (200 by default, settable) with body "ok\n" or "sick\n"
      /conn             200 "conn ID\\n" - the id of the TCP connection the request came on
      /nolength         200 "until-close" without framing, then close; ?size=N&seed=S: N
                        pattern bytes instead
      /hop              200 carrying hop-by-hop headers (Connection: X-Hop-Secret, Keep-Alive,
                        Proxy-Connection, X-Hop-Secret) plus X-End-To-End: kept
    Any endpoint: ?close=1 answers with Connection: close and closes. HEAD gets the GET headers
    and no body. Expect: 100-continue gets an interim 100 before the body is read.
    """

    IDLE_TIMEOUT = 120.0      # a connection waiting for a request this long is dropped
    REQUEST_TIMEOUT = 60.0    # a request (head + body) must arrive within this

    def __init__(self, name: str = "A", port: int = 0, tls=None):
        self.name = name
        self.tls = tls  # an ssl.SSLContext (server side): connections are TLS
        self.health_status = 200  # what /healthz answers
        self._bind_port = port    # 0 = ephemeral; a stopped origin restarts on its old port
        self._lock = threading.Lock()
        self._connections: dict[int, _OriginConnection] = {}
        self._requests: list[RecordedRequest] = []
        self._accepted = 0
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> "Origin":
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, self._bind_port))
        listener.listen(128)
        listener.settimeout(0.1)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True,
                                               name=f"origin-{self.name}-accept")
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._accept_thread:
            self._accept_thread.join(timeout=2)
        if self._listener:
            self._listener.close()
        with self._lock:
            conns = list(self._connections.values())
            threads = list(self._threads)
        for conn in conns:
            _shutdown_quietly(conn.sock)
        deadline = time.monotonic() + 2
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> "Origin":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- observations ---------------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def connections_accepted(self) -> int:
        with self._lock:
            return self._accepted

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._connections)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Waits until at least `count` requests were recorded; returns what was recorded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reqs = self.requests
            if len(reqs) >= count:
                return reqs
            time.sleep(0.02)
        return self.requests

    def close_idle_connections(self, settle: float = 1.0) -> int:
        """Closes (from the origin side) every connection waiting for its next request.

        A connection whose response was just sent may not be marked idle yet, so this first
        waits up to `settle` seconds for every open connection to be idle.
        """
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            with self._lock:
                if all(c.idle for c in self._connections.values()):
                    break
            time.sleep(0.01)
        with self._lock:
            idle = [c for c in self._connections.values() if c.idle]
        for conn in idle:
            _shutdown_quietly(conn.sock)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            with self._lock:
                if not any(c.conn_id in self._connections for c in idle):
                    break
            time.sleep(0.01)
        return len(idle)

    # -- serving --------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._accepted += 1
                conn = _OriginConnection(self._accepted, sock)
                self._connections[conn.conn_id] = conn
                thread = threading.Thread(target=self._serve, args=(conn,), daemon=True,
                                          name=f"origin-{self.name}-conn{conn.conn_id}")
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: _OriginConnection) -> None:
        if self.tls is not None:
            try:
                conn.sock.settimeout(10)
                conn.sock = self.tls.wrap_socket(conn.sock, server_side=True)
            except OSError:
                _close_quietly(conn.sock)
                return
        reader = SocketReader(conn.sock)
        try:
            for _ in range(1_000_000):
                if self._stopping.is_set():
                    break
                conn.idle = True
                head = reader.read_until(b"\r\n\r\n", time.monotonic() + self.IDLE_TIMEOUT,
                                         MAX_HEAD_BYTES)
                if head is None:
                    break
                conn.idle = False
                if not self._serve_one(conn, reader, head):
                    break
        except (OSError, ProtocolError, ValueError):
            pass
        finally:
            with self._lock:
                self._connections.pop(conn.conn_id, None)
            _close_quietly(conn.sock)

    def _serve_one(self, conn: _OriginConnection, reader: SocketReader, head: bytes) -> bool:
        """Reads one request's body, records it and answers. Returns False to close."""
        deadline = time.monotonic() + self.REQUEST_TIMEOUT
        start_line, headers = parse_head(head)
        parts = start_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            conn.sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 4\r\n"
                              b"Connection: close\r\n\r\n400\n")
            return False
        method, target, version = parts
        framing, length = body_framing(headers)
        has_body = framing == "chunked" or length > 0
        if has_body and "100-continue" in headers.tokens("expect"):
            conn.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if framing == "chunked":
            pieces = reader.iter_chunked(deadline)
        elif framing == "length":
            pieces = reader.iter_exact(length, deadline)
        else:
            pieces = iter(())
        digest = hashlib.sha256()
        body_length = 0
        for piece in pieces:
            digest.update(piece)
            body_length += len(piece)
        request = RecordedRequest(conn.conn_id, method, target, version, headers,
                                  body_length, digest.hexdigest())
        with self._lock:
            self._requests.append(request)

        conn_tokens = headers.tokens("connection")
        keep_alive = ("close" not in conn_tokens and
                      (version == "HTTP/1.1" or "keep-alive" in conn_tokens))
        if request.query.get("close") == "1":
            keep_alive = False
        return self._respond(conn, request, keep_alive)

    def _respond(self, conn: _OriginConnection, req: RecordedRequest, keep_alive: bool) -> bool:
        sock = conn.sock
        head_only = req.method == "HEAD"
        query = req.query
        path = req.path

        def send(status: int, headers: list[tuple[str, str]], body: Iterable[bytes] | bytes = b"",
                 framing: str = "length") -> bool:
            """framing: "length" (body is bytes), "chunked", "none" (no framing headers)."""
            lines = [f"HTTP/1.1 {status} {reason_phrase(status)}"]
            lines += [f"{n}: {v}" for n, v in headers]
            if framing == "length":
                lines.append(f"Content-Length: {len(body)}")
            elif framing == "chunked":
                lines.append("Transfer-Encoding: chunked")
            if not keep_alive:
                lines.append("Connection: close")
            elif req.version == "HTTP/1.0":
                lines.append("Connection: keep-alive")
            head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
            if head_only:
                sock.sendall(head)
                return keep_alive
            if isinstance(body, bytes):
                # One write for head and body: stop() shutting the connection down between two
                # writes made a 200 with no body (the proxy can only cut such a response short),
                # which tests of a server going away counted against the proxy.
                sock.sendall(head + body)
                return keep_alive
            sock.sendall(head)
            if framing == "chunked":
                for piece in body:
                    sock.sendall(encode_chunk(piece))
                sock.sendall(LAST_CHUNK)
            else:
                for piece in body:
                    sock.sendall(piece)
            return keep_alive

        text = [("Content-Type", "text/plain")]
        if path == "/healthz":
            status = self.health_status
            return send(status, text, b"ok\n" if status == 200 else b"sick\n")
        if path == "/echo":
            return send(200, text + [("X-Body-Sha256", req.body_sha256),
                                     ("X-Body-Length", str(req.body_length))],
                        f"echoed {req.body_length} bytes\n".encode())
        if path == "/download":
            size = int(query.get("size", "0"))
            seed = int(query.get("seed", "0"))
            chunked = query.get("chunked", "0") == "1"
            headers = [("Content-Type", "application/octet-stream"),
                       ("X-Body-Sha256", pattern_sha256(size, seed))]
            if chunked:
                return send(200, headers, pattern_pieces(size, seed), framing="chunked")
            headers.append(("Content-Length", str(size)))
            return send(200, headers, pattern_pieces(size, seed), framing="none")
        if path == "/slow":
            delay = float(query.get("delay", "1"))
            self._stopping.wait(timeout=min(delay, 60.0))
            return send(200, text, f"slept {delay}\n".encode())
        if path == "/headers":
            body = json.dumps([[n, v] for n, v in req.headers]).encode()
            return send(200, [("Content-Type", "application/json")], body)
        if path == "/close-mid":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                         b"Content-Length: 100000\r\n\r\n")
            if not head_only:
                sock.sendall(b"x" * 1000)
            return False
        if path == "/close-before-head":
            return False
        if path == "/garbage":
            sock.sendall(b"HELLO\r\n\r\n")
            return False
        if path == "/status":
            code = int(query.get("code", "200"))
            if code in (204, 304):
                return send(code, [], framing="none")
            return send(code, [])
        if path == "/conn":
            return send(200, text, f"conn {conn.conn_id}\n".encode())
        if path == "/nolength":
            keep_alive = False
            if "size" in query:
                size, seed = int(query["size"]), int(query.get("seed", "0"))
                return send(200, text, pattern_pieces(size, seed), framing="none")
            return send(200, text, b"until-close", framing="none")
        if path == "/hop":
            return send(200, text + [("Connection", "X-Hop-Secret"),
                                     ("X-Hop-Secret", "must-not-pass"),
                                     ("Keep-Alive", "timeout=5, max=100"),
                                     ("Proxy-Connection", "keep-alive"),
                                     ("X-End-To-End", "kept")], b"hop\n")
        return send(200, text, f"origin {self.name}: {req.method} {req.target}\n".encode())


@functools.lru_cache(maxsize=8)
def _binary_has_asan(path: str) -> bool:
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return m.find(b"__asan_init") >= 0
    except (OSError, ValueError):
        return False


def sanitized(pid: int) -> bool:
    """True for an ASan build (build-asan/ in CI, gcc: libasan.so; clang: linked in): its
    allocator keeps freed memory in quarantine, so RSS says nothing about leaks there
    (LeakSanitizer does, at exit)."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            if "libasan" in f.read():
                return True
        return _binary_has_asan(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return False


def fd_count(pid: int) -> int:
    """Open file descriptors of process `pid`."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    """CPU time (utime + stime) process `pid` has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reset_on_close(sock: socket.socket) -> None:
    """Makes close() send a TCP reset instead of a FIN (SO_LINGER with a zero timeout)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _shutdown_quietly(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _close_quietly(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


def unused_port() -> int:
    """A loopback port nothing listens on (bound once, then released): connects get refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Response:
    version: str
    status: int
    reason: str
    headers: Headers
    body: bytes = b""
    body_length: int = 0              # also counted when the body went to a sink
    interim: list["Response"] = dataclasses.field(default_factory=list)  # skipped 1xx

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def __str__(self) -> str:
        body = self.body[:200]
        return f"{self.version} {self.status} {self.reason} {list(self.headers)} body={body!r}"


class IncompleteResponse(PeerClosed):
    """The connection closed inside a response body; `.response` holds what arrived."""

    def __init__(self, message: str, response: Response):
        super().__init__(message)
        self.response = response


def build_request(method: str = "GET", target: str = "/",
                  headers: Iterable[tuple[str, str]] = (), body: bytes | None = None,
                  version: str = "HTTP/1.1", host: str | None = "test.local") -> bytes:
    """Serialises a request. Adds Host (unless given or host=None) and Content-Length for a
    body (unless Content-Length/Transfer-Encoding is given)."""
    fields = list(headers)
    names = {n.lower() for n, _ in fields}
    if host and "host" not in names:
        fields.insert(0, ("Host", host))
    if body is not None and not names & {"content-length", "transfer-encoding"}:
        fields.append(("Content-Length", str(len(body))))
    head = f"{method} {target} {version}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in fields)
    return (head + "\r\n").encode("latin-1") + (body or b"")


class Client:
    """One client TCP connection with raw HTTP/1.1 reads and writes."""

    def __init__(self, port: int, host: str = LOOPBACK, timeout: float = 10.0):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=5.0)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = SocketReader(self.sock)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        _close_quietly(self.sock)

    # -- writing ----------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    def send_request(self, method: str = "GET", target: str = "/", headers=(), body=None,
                     version: str = "HTTP/1.1", host: str | None = "test.local") -> None:
        self.send(build_request(method, target, headers, body, version, host))

    def send_body(self, size: int, *, chunked: bool, seed: int = 0,
                  piece_size: int = PIECE_SIZE) -> str:
        """Streams pattern_pieces(size, seed) as the body (chunk-encoded or raw, plus the last
        chunk); returns its SHA-256."""
        digest = hashlib.sha256()
        for piece in pattern_pieces(size, seed, piece_size):
            digest.update(piece)
            self.send(encode_chunk(piece) if chunked else piece)
        if chunked:
            self.send(LAST_CHUNK)
        return digest.hexdigest()

    # -- reading ----------------------------------------------------------------------------
    def request(self, method: str = "GET", target: str = "/", headers=(), body=None,
                version: str = "HTTP/1.1", timeout: float | None = None,
                sink: Callable[[bytes], None] | None = None) -> Response:
        self.send_request(method, target, headers, body, version)
        return self.read_response(method, timeout=timeout, sink=sink)

    def read_response(self, method: str = "GET", timeout: float | None = None,
                      skip_interim: bool = True,
                      sink: Callable[[bytes], None] | None = None) -> Response:
        """Reads one response (status line, headers, body by its framing).

        1xx responses are collected in `.interim` unless skip_interim=False (then the first
        1xx is returned). With `sink`, body bytes go there instead of into `.body`.
        Raises TimeoutError, PeerClosed (no complete head), IncompleteResponse (short body).
        """
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        interim: list[Response] = []
        for _ in range(20):
            resp = self._read_head(deadline)
            if not 100 <= resp.status < 200:
                break
            if not skip_interim:
                return resp
            interim.append(resp)
        else:
            raise ProtocolError("too many interim responses")
        resp.interim = interim
        self._read_body(resp, method, deadline, sink)
        return resp

    def _read_head(self, deadline: float) -> Response:
        head = self.reader.read_until(b"\r\n\r\n", deadline, MAX_HEAD_BYTES)
        if head is None:
            raise PeerClosed("connection closed before a response head")
        start_line, headers = parse_head(head)
        m = re.fullmatch(r"(HTTP/\d\.\d) (\d{3})(?: (.*))?", start_line)
        if not m:
            raise ProtocolError(f"bad status line {start_line!r}")
        return Response(m.group(1), int(m.group(2)), m.group(3) or "", headers)

    def _read_body(self, resp: Response, method: str, deadline: float,
                   sink: Callable[[bytes], None] | None) -> None:
        if method == "HEAD" or resp.status in (204, 304):
            return
        framing, length = body_framing(resp.headers)
        if framing == "chunked":
            pieces = self.reader.iter_chunked(deadline)
        elif framing == "length":
            pieces = self.reader.iter_exact(length, deadline)
        else:
            pieces = self.reader.iter_until_close(deadline)
        parts = []
        try:
            for piece in pieces:
                resp.body_length += len(piece)
                if sink:
                    sink(piece)
                else:
                    parts.append(piece)
        except PeerClosed as e:
            resp.body = b"".join(parts)
            raise IncompleteResponse(f"{e} (status {resp.status})", resp) from None
        resp.body = b"".join(parts)

    def wait_closed(self, timeout: float) -> tuple[bool, bytes]:
        """Waits up to `timeout` for the peer to close. Returns (closed, bytes that arrived).
        A reset counts as closed."""
        deadline = time.monotonic() + timeout
        data = bytes(self.reader.buf)
        self.reader.buf.clear()
        try:
            while True:
                if not self.reader.fill(deadline):
                    break
                data += bytes(self.reader.buf)
                self.reader.buf.clear()
        except TimeoutError:
            return False, data
        except ConnectionError:
            pass
        return True, data

    def readable_within(self, timeout: float) -> bool:
        """True when data (or EOF) is ready to read within `timeout`."""
        if self.reader.buf or self.reader.eof:
            return True
        ready, _, _ = select.select([self.sock], [], [], timeout)
        return bool(ready)


# --------------------------------------------------------------------------------------------
# Proxy process
# --------------------------------------------------------------------------------------------

def proxy_config(servers: list[str] | None = None, *, pools: dict | None = None,
                 routes: dict | None = None, listeners: list | None = None, workers: int = 1,
                 limits: dict | None = None, timeouts: dict | None = None,
                 forwarding: dict | None = None, access_log: dict | None = None) -> dict:
    """A config dict for `Proxy`. By default: one listener "web" on 127.0.0.1:0 whose route
    table "main" sends everything to pool "app" with `servers`; JSON access log on stdout."""
    if pools is None:
        pools = {"app": {"servers": list(servers or [])}}
    if routes is None:
        routes = {"main": [{"pool": next(iter(pools))}]}
    if listeners is None:
        listeners = [{"name": "web", "bind": f"{LOOPBACK}:0", "routes": next(iter(routes))}]
    config: dict = {
        "workers": workers,
        "access_log": access_log or {"enabled": True, "format": "json", "path": "-"},
    }
    if limits:
        config["limits"] = dict(limits)
    if timeouts:
        config["timeouts"] = dict(timeouts)
    if forwarding:
        config["forwarding"] = dict(forwarding)
    config["listeners"] = listeners
    config["routes"] = routes
    config["pools"] = pools
    return config


_PLAIN_SCALAR = re.compile(r"[A-Za-z0-9_./][A-Za-z0-9_./:\-]*")


def _yaml_scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        if _PLAIN_SCALAR.fullmatch(value) and not value.endswith(":"):
            return value
        return json.dumps(value)  # a JSON string is a valid YAML double-quoted scalar
    if value == {}:
        return "{}"
    if value == []:
        return "[]"
    raise TypeError(f"cannot write {value!r} as a YAML scalar")


def _yaml_lines(value, indent: int, out: list[str]) -> None:
    pad = "  " * indent

    def is_scalar(v) -> bool:
        return not isinstance(v, (dict, list)) or v in ({}, [])

    if isinstance(value, dict):
        for key, v in value.items():
            key = _yaml_scalar(key)  # quoted if need be ("*.example.com")
            if is_scalar(v):
                out.append(f"{pad}{key}: {_yaml_scalar(v)}")
            else:
                out.append(f"{pad}{key}:")
                _yaml_lines(v, indent + 1, out)
    elif isinstance(value, list):
        for item in value:
            if is_scalar(item):
                out.append(f"{pad}- {_yaml_scalar(item)}")
            else:
                sub: list[str] = []
                _yaml_lines(item, indent + 1, sub)
                out.append(f"{pad}- {sub[0][len(pad) + 2:]}")
                out.extend(sub[1:])
    else:
        out.append(pad + _yaml_scalar(value))


def to_yaml(config: dict) -> str:
    """Block-style YAML for a config dict (strings quoted only when needed)."""
    out: list[str] = []
    _yaml_lines(config, 0, out)
    return "\n".join(out) + "\n"


class ProxyError(Exception):
    pass


RELOAD_APPLIED = "configuration reloaded from"
RELOAD_REFUSED = "reload refused"


@dataclasses.dataclass
class ReloadOutcome:
    """What a SIGHUP led to: `applied` or refused, and the stderr lines logged meanwhile."""
    applied: bool
    log: str


CONFIG_EXAMPLES_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                    "..", "..", "config"))
_EXAMPLE_SERVER = re.compile(r"127\.0\.0\.1:90\d\d\b")
_EXAMPLE_BIND = re.compile(r"(\bbind:[ \t]*)(\"[^\"]*\"|'[^']*'|[^\s,}#]+)")


def example_config(filename: str, servers: dict[str, str]) -> str:
    """The text of config/`filename` made runnable by a test.

    Example configs name their servers 127.0.0.1:9001, 127.0.0.1:9002, ... (placeholders); each
    must be mapped to a real address in `servers` (e.g. {"127.0.0.1:9001": origin.address}).
    Every `bind:` becomes 127.0.0.1:0. Everything else is kept as written, so line numbers match.
    """
    with open(os.path.join(CONFIG_EXAMPLES_DIR, filename)) as f:
        text = f.read()
    found = set(_EXAMPLE_SERVER.findall(text))
    unmapped = found - set(servers)
    if unmapped:
        raise ValueError(f"{filename}: no address given for placeholder(s) {sorted(unmapped)}")
    unused = set(servers) - found
    if unused:
        raise ValueError(f"{filename}: placeholder(s) {sorted(unused)} do not occur in the file")
    text = _EXAMPLE_SERVER.sub(lambda m: servers[m.group(0)], text)
    return _EXAMPLE_BIND.sub(lambda m: m.group(1) + f"{LOOPBACK}:0", text)


_LISTENER_READY = re.compile(r"listener (\S+) ready on (\S+):(\d+)")


class Proxy:
    """`switchyard run -c FILE` in its own process group, with captured output."""

    READY_TIMEOUT = 10.0

    def __init__(self, config: dict | str, binary: str | None = None):
        self.binary = binary or switchyard_bin()
        self.dir = tempfile.mkdtemp(prefix="switchyard-it-")
        self.config_path = os.path.join(self.dir, "switchyard.yaml")
        self.config_text = config if isinstance(config, str) else to_yaml(config)
        with open(self.config_path, "w") as f:
            f.write(self.config_text)
        self.stdout_path = os.path.join(self.dir, "stdout.log")
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        self.proc: subprocess.Popen | None = None
        self.ports: dict[str, int] = {}
        self.stop_requested = False

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> "Proxy":
        if not os.access(self.binary, os.X_OK):
            raise ProxyError(f"switchyard binary {self.binary!r} not found or not executable "
                             f"(set SWITCHYARD_BIN)")
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen([self.binary, "run", "-c", self.config_path],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         start_new_session=True)
        deadline = time.monotonic() + self.READY_TIMEOUT
        while True:
            text = self.stderr_text()
            for name, _host, port in _LISTENER_READY.findall(text):
                self.ports[name] = int(port)
            if "switchyard ready" in text and self.ports:
                return self
            if self.proc.poll() is not None:
                raise ProxyError(f"proxy exited with {self.proc.returncode} before it was "
                                 f"ready\n{self.describe()}")
            if time.monotonic() > deadline:
                self.kill()
                raise ProxyError(f"proxy not ready within {self.READY_TIMEOUT}s "
                                 f"(no 'switchyard ready' on stderr)\n{self.describe()}")
            time.sleep(0.02)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def port(self) -> int:
        """The port of the only (or first) listener."""
        return next(iter(self.ports.values()))

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float) -> int | None:
        """Exit code, or None if still running after `timeout` seconds."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def send_signal(self, sig: int) -> None:
        self.stop_requested = True
        if self.running():
            self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Sends `sig` and waits up to `timeout`; returns the exit code (negative = killed by
        a signal), or None if it had to be SIGKILLed after the timeout."""
        if self.proc is None:
            return None
        self.send_signal(sig)
        rc = self.wait(timeout)
        if rc is None:
            self.kill()
        return rc

    def kill(self) -> None:
        """SIGKILLs the whole process group and reaps the proxy."""
        self.stop_requested = True
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def close(self, grace: float = 3.0) -> None:
        """Cleanup: SIGTERM, then SIGKILL of the group after `grace` seconds; removes files."""
        if self.proc is not None:
            if self.running():
                self.stop(signal.SIGTERM, grace)
            try:  # stray children, if any
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def write_config(self, config: dict | str) -> None:
        """Replaces the config file (atomically: a reload never sees half a file)."""
        self.config_text = config if isinstance(config, str) else to_yaml(config)
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(self.config_text)
        os.replace(tmp, self.config_path)

    def reload(self, config: dict | str | None = None, timeout: float = 10.0) -> "ReloadOutcome":
        """Writes `config` (if given) to the config file, sends SIGHUP and waits for the proxy to
        log either "configuration reloaded from" or "reload refused". Raises ProxyError when it
        logs neither within `timeout`. Listeners the reload opened are added to `ports`."""
        if config is not None:
            self.write_config(config)
        offset = self.stderr_size()
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGHUP)  # not send_signal: the proxy must keep running
        deadline = time.monotonic() + timeout
        while True:
            text = self.stderr_since(offset)
            applied = RELOAD_APPLIED in text
            if applied or RELOAD_REFUSED in text:
                # The outcome line is the last one a reload logs; lines before it are complete.
                for name, _host, port in _LISTENER_READY.findall(text):
                    self.ports[name] = int(port)
                return ReloadOutcome(applied, text)
            if not self.running():
                raise ProxyError(f"proxy exited after SIGHUP\n{self.describe()}")
            if time.monotonic() > deadline:
                raise ProxyError(f"no '{RELOAD_APPLIED}' or '{RELOAD_REFUSED}' within {timeout}s "
                                 f"of SIGHUP; logged meanwhile:\n{text}")
            time.sleep(0.01)

    # -- observations ---------------------------------------------------------------------
    def stderr_text(self) -> str:
        return _read_text(self.stderr_path)

    def stderr_size(self) -> int:
        try:
            return os.path.getsize(self.stderr_path)
        except FileNotFoundError:
            return 0

    def stderr_since(self, offset: int) -> str:
        """What the proxy wrote to stderr after byte `offset` (see stderr_size)."""
        try:
            with open(self.stderr_path, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stdout_text(self) -> str:
        return _read_text(self.stdout_path)

    def access_log(self) -> list[dict]:
        """The JSON access-log lines written to stdout so far (non-JSON lines are skipped)."""
        entries = []
        for line in self.stdout_text().splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    entries.append(json.loads(line))
                except json.JSONDecodeError:
                    entries.append({"_unparsable": line})
        return entries

    def wait_access_log(self, count: int, timeout: float = 5.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entries = self.access_log()
            if len(entries) >= count:
                return entries
            time.sleep(0.05)
        return self.access_log()

    def rss_bytes(self) -> int:
        """Resident set size of the proxy process (0 once it is gone)."""
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except (FileNotFoundError, ProcessLookupError):
            pass
        return 0

    def describe(self, tail: int = 60) -> str:
        rc = self.proc.poll() if self.proc else None
        err = self.stderr_text().splitlines()[-tail:]
        out = self.stdout_text().splitlines()[-tail:]
        return (f"--- proxy {self.binary} (config {self.config_path}, exit={rc}) ---\n"
                f"--- config ---\n{self.config_text}"
                f"--- stderr (last {tail} lines) ---\n" + "\n".join(err) + "\n"
                f"--- stdout (last {tail} lines) ---\n" + "\n".join(out) + "\n")


def _read_text(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


class RssSampler:
    """Samples a proxy's RSS every `interval` seconds in a thread; `.peak` is the maximum."""

    def __init__(self, proxy: Proxy, interval: float = 0.05):
        self.proxy = proxy
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proxy.rss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.peak = max(self.peak, self.proxy.rss_bytes())


# --------------------------------------------------------------------------------------------
# Load
# --------------------------------------------------------------------------------------------

def served_by(text: str) -> str:
    """The origin name in an Origin's default answer ("origin NAME: ..."), else "?"."""
    m = re.match(r"origin (\S+):", text)
    return m.group(1) if m else "?"


class LoadLoop:
    """`threads` keep-alive clients sending GET `target` until stopped (at most `limit`
    seconds); records every outcome, the count per serving origin and when each last answered."""

    def __init__(self, port: int, threads: int = 4, target: str = "/", limit: float = 20.0):
        self.port = port
        self.target = target
        self.limit = limit
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures: list[str] = []
        self.by_server: dict[str, int] = {}
        self.last_seen: dict[str, float] = {}
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        client = None
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            try:
                if client is None:
                    client = Client(self.port, timeout=5)
                resp = client.request("GET", self.target)
                now = time.monotonic()
                with self.lock:
                    if resp.status == 200:
                        self.ok += 1
                        name = served_by(resp.text)
                        self.by_server[name] = self.by_server.get(name, 0) + 1
                        self.last_seen[name] = now
                    else:
                        self.failures.append(f"status {resp.status}: {resp.text[:80]}")
                if resp.header("connection") == "close":
                    client.close()
                    client = None
            except Exception as e:  # noqa: BLE001 - every failure is recorded
                with self.lock:
                    self.failures.append(f"{type(e).__name__}: {e}")
                if client:
                    client.close()
                client = None
        if client:
            client.close()

    def __enter__(self) -> "LoadLoop":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=10)

    def count(self, name: str) -> int:
        with self.lock:
            return self.by_server.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.by_server)


# --------------------------------------------------------------------------------------------
# TestCase base
# --------------------------------------------------------------------------------------------

class ProxyTestCase(unittest.TestCase):
    """Starts origins/proxies/clients with automatic cleanup and failure diagnostics."""

    def start_origin(self, name: str = "A") -> Origin:
        origin = Origin(name).start()
        self.addCleanup(origin.stop)
        return origin

    def start_proxy(self, config: dict | str) -> Proxy:
        proxy = Proxy(config)
        self.addCleanup(self._cleanup_proxy, proxy)
        proxy.start()
        return proxy

    def start_proxy_for(self, *origins: Origin, **config_args) -> Proxy:
        """A proxy whose single pool holds `origins` (other proxy_config args pass through)."""
        return self.start_proxy(proxy_config([o.address for o in origins], **config_args))

    def connect(self, proxy_or_port: Proxy | int, timeout: float = 10.0) -> Client:
        port = proxy_or_port.port if isinstance(proxy_or_port, Proxy) else proxy_or_port
        client = Client(port, timeout=timeout)
        self.addCleanup(client.close)
        return client

    def fetch(self, proxy: Proxy, target: str = "/", method: str = "GET", headers=(),
              body=None, timeout: float = 10.0) -> Response:
        """One request on a fresh connection (closed afterwards)."""
        with Client(proxy.port, timeout=timeout) as client:
            return client.request(method, target, headers, body)

    def _test_failed(self) -> bool:
        outcome = getattr(self, "_outcome", None)
        if outcome is None:
            return True
        # Python 3.11 runs each cleanup in its own "test part", which resets outcome.success to
        # True, so inside a cleanup the failures already recorded in the result are what counts.
        result = getattr(outcome, "result", None)
        for test, _ in (list(getattr(result, "failures", ())) +
                        list(getattr(result, "errors", ()))):
            if test is self or getattr(test, "test_case", None) is self:  # or a subTest of it
                return True
        return not getattr(outcome, "success", False)

    def _cleanup_proxy(self, proxy: Proxy) -> None:
        died = proxy.proc is not None and not proxy.stop_requested and not proxy.running()
        try:
            if self._test_failed() or died:
                sys.stderr.write("\n" + proxy.describe() + "\n")
        finally:
            proxy.close()
        if died:
            self.fail(f"the proxy died during the test (exit code {proxy.proc.returncode}); "
                      f"its logs are printed above")

    # -- assertions -----------------------------------------------------------------------
    def assertClosedSoon(self, client: Client, timeout: float = 2.0, msg: str = "") -> bytes:
        """Asserts the peer closes the connection within `timeout`; returns any bytes sent."""
        closed, data = client.wait_closed(timeout)
        self.assertTrue(closed, f"connection still open {timeout}s later{': ' + msg if msg else ''}"
                                f" (received meanwhile: {data[:200]!r})")
        return data

    def assertStillOpen(self, client: Client, wait: float = 0.3, msg: str = "") -> None:
        """Asserts nothing (no data, no EOF) arrives within `wait` seconds."""
        self.assertFalse(client.readable_within(wait),
                         f"connection unexpectedly readable/closed{': ' + msg if msg else ''}")

    def assertErrorResponse(self, resp: Response, status: int, msg: str = "") -> None:
        """The proxy's own error responses: status, a body naming it, Connection: close."""
        where = f" ({msg})" if msg else ""
        self.assertEqual(resp.status, status, f"expected {status}{where}, got: {resp}")
        self.assertTrue(resp.body, f"error response {status} has an empty body{where}")
        self.assertIn(str(status), resp.text,
                      f"error body does not mention {status}{where}: {resp.body[:200]!r}")
        self.assertIn("close", resp.headers.tokens("connection"),
                      f"error response {status} lacks 'Connection: close'{where}: {resp}")


# --------------------------------------------------------------------------------------------
# Admin API (src/proxy/admin/, docs/admin-api.md)
# --------------------------------------------------------------------------------------------

ADMIN_TOKEN = "ops-0123456789abcdef-secret"          # read-write token "ops"
ADMIN_READ_ONLY_TOKEN = "viewer-0123456789abcdef-ro"  # read-only token "viewer"
_ADMIN_READY = re.compile(r"admin API ready on (https?)://(\S+):(\d+)")
_METRICS_READY = re.compile(r"metrics ready on http://(\S+):(\d+)")


def admin_block(directory: str, **extra) -> dict:
    """An `admin:` config block on 127.0.0.1:0 with token files written into `directory`
    (mode 0600): "ops" (ADMIN_TOKEN, read-write) and "viewer" (ADMIN_READ_ONLY_TOKEN)."""
    tokens = os.path.join(directory, "admin.tokens")
    viewers = os.path.join(directory, "viewer.tokens")
    for path, line in ((tokens, f"ops:{ADMIN_TOKEN}\n"), (viewers, f"viewer:{ADMIN_READ_ONLY_TOKEN}\n")):
        with open(path, "w") as f:
            f.write("# name:token\n" + line)
        os.chmod(path, 0o600)
    block = {"bind": f"{LOOPBACK}:0", "token_file": tokens, "read_only_token_file": viewers}
    block.update(extra)
    return block


def admin_url(proxy: "Proxy") -> str:
    """http[s]://127.0.0.1:PORT of a started proxy's admin API (from its start-up log)."""
    m = _ADMIN_READY.search(proxy.stderr_text())
    if not m:
        raise ProxyError(f"no 'admin API ready on' line\n{proxy.describe()}")
    return f"{m.group(1)}://{m.group(2)}:{m.group(3)}"


def metrics_port(proxy: "Proxy") -> int:
    m = _METRICS_READY.search(proxy.stderr_text())
    if not m:
        raise ProxyError(f"no 'metrics ready on' line\n{proxy.describe()}")
    return int(m.group(2))


@dataclasses.dataclass
class AdminReply:
    status: int
    headers: dict
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class AdminClient:
    """Requests to the admin API with a bearer token (urllib; HTTPS without verification)."""

    def __init__(self, base_url: str, token: str | None = ADMIN_TOKEN, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body=None, token: str | None = "default",
                headers: dict | None = None) -> AdminReply:
        import ssl
        import urllib.error
        import urllib.request
        data = None
        hdrs = dict(headers or {})
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        tok = self.token if token == "default" else token
        if tok is not None:
            hdrs["Authorization"] = f"Bearer {tok}"
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=hdrs)
        ctx = ssl._create_unverified_context() if self.base_url.startswith("https") else None
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=ctx) as resp:
                return AdminReply(resp.status, {k.lower(): v for k, v in resp.headers.items()},
                                  resp.read())
        except urllib.error.HTTPError as e:
            return AdminReply(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())

    def get(self, path: str, **kw) -> AdminReply:
        return self.request("GET", path, **kw)

    def json(self, method: str, path: str, body=None, expect: int = 200, **kw):
        reply = self.request(method, path, body, **kw)
        if reply.status != expect:
            raise AssertionError(f"{method} {path}: expected {expect}, got {reply.status}: "
                                 f"{reply.text[:500]}")
        return reply.json

    def server(self, pool: str, address: str) -> dict:
        return self.json("GET", f"/api/v1/pools/{pool}/servers/{address}")
