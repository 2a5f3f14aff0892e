"""HTTP/1.1 strictness (RFC 9110/9112): a table of raw byte sequences sent to the proxy, each with
its expected outcome, checked against a recording origin. The policy the table encodes is
docs/http-policy.md; test_smuggling.py and test_limits.py hold the cases that came from review.

Each case says:
  * `send`: the exact bytes a client sends on one fresh connection;
  * `statuses`: the responses it gets, in order (interim 1xx skipped); a `truncated` response is
    one whose head arrived but whose body the proxy cut short by closing;
  * `closed`: whether the proxy closes the connection after them (else it must stay open);
  * `upstream`: how many complete requests the origin receives - never more than the proxy saw;
  * `forwarded`: if given, exactly the bytes the origin receives (forwarding headers are off, so
    what reaches the origin is the client's request, normalised);
  * `respond`: if given, the origin's raw answer to the (first) request, to test how upstream
    responses are validated.

All cases share one proxy and one origin and run in sequence (well under 30 s together).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import unittest

from harness import (Client, IncompleteResponse, Origin, PeerClosed, ProtocolError,
                     ProxyTestCase, RecordedRequest, SocketReader, proxy_config)

H = b"Host: h\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"


@dataclasses.dataclass
class Case:
    name: str
    send: bytes
    statuses: tuple[int, ...]
    closed: bool
    upstream: int
    forwarded: bytes | None = None
    respond: bytes | None = None
    truncated: bool = False
    timeout: float = 3.0


def rejected(name: str, send: bytes, status: int = 400) -> Case:
    """The proxy answers `status` and closes; nothing reaches the origin."""
    return Case(name, send, (status,), True, 0)


def passed(name: str, send: bytes, forwarded: bytes | None = None, upstream: int = 1) -> Case:
    """Forwarded (as `send` itself unless `forwarded` says otherwise), answered 200, kept open."""
    return Case(name, send, (200,) * upstream, False, upstream,
                forwarded=send if forwarded is None else forwarded)


def bad_response(name: str, respond: bytes, status: int = 502) -> Case:
    """The origin answers `respond` to a plain GET: the client gets `status` and a close."""
    return Case(name, b"GET /r HTTP/1.1\r\n" + H + b"\r\n", (status,), True, 1, respond=respond)


def chunked_post(body: bytes, te: bytes = b"chunked") -> bytes:
    return b"POST /c HTTP/1.1\r\n" + H + b"Transfer-Encoding: " + te + b"\r\n\r\n" + body


def cl_post(cl: bytes, body: bytes) -> bytes:
    return b"POST /c HTTP/1.1\r\n" + H + b"Content-Length: " + cl + b"\r\n\r\n" + body


CASES = [
    # -- Content-Length and Transfer-Encoding together, and their variants (RFC 9112 §6.3) -----
    rejected("CL then TE", b"POST / HTTP/1.1\r\n" + H +
             b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    rejected("TE then CL", b"POST / HTTP/1.1\r\n" + H +
             b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"),
    rejected("TE then CL 0", b"POST / HTTP/1.1\r\n" + H +
             b"Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n"),
    rejected("two identical Content-Lengths", b"POST / HTTP/1.1\r\n" + H +
             b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
    rejected("comma-listed identical Content-Length", cl_post(b"5, 5", b"hello")),
    rejected("comma-listed differing Content-Length", cl_post(b"5, 6", b"hello!")),
    rejected("Content-Length with a sign", cl_post(b"+5", b"hello")),
    rejected("negative Content-Length", cl_post(b"-1", b"")),
    rejected("hex Content-Length", cl_post(b"0x5", b"hello")),
    rejected("empty Content-Length", cl_post(b"", b"")),
    rejected("Content-Length overflow", cl_post(b"99999999999999999999999", b"")),
    rejected("Content-Length with a space inside", cl_post(b"1 2", b"hello world!")),
    passed("Content-Length with OWS around it", cl_post(b"  5 ", b"hello"),
           forwarded=cl_post(b"5", b"hello")),
    passed("chunked", chunked_post(b"5\r\nhello\r\n0\r\n\r\n")),
    passed("'chunked ' with a trailing space", chunked_post(b"5\r\nhello\r\n0\r\n\r\n", b"chunked "),
           forwarded=chunked_post(b"5\r\nhello\r\n0\r\n\r\n")),
    # llhttp 8.1 does not take a tab after "chunked" (RFC 9110 OWS would allow it): refused.
    rejected("'chunked' with a trailing tab", chunked_post(b"0\r\n\r\n", b"chunked\t")),
    passed("'Chunked' in another case", chunked_post(b"0\r\n\r\n", b"Chunked")),
    passed("gzip, chunked", chunked_post(b"0\r\n\r\n", b"gzip, chunked")),
    rejected("xchunked", chunked_post(b"0\r\n\r\n", b"xchunked")),
    rejected("chunkedx", chunked_post(b"0\r\n\r\n", b"chunkedx")),
    rejected("chunked, identity", chunked_post(b"0\r\n\r\n", b"chunked, identity")),
    rejected("identity alone", chunked_post(b"0\r\n\r\n", b"identity")),
    rejected("chunked, chunked", chunked_post(b"0\r\n\r\n", b"chunked, chunked")),
    rejected("two Transfer-Encoding fields", b"POST /c HTTP/1.1\r\n" + H +
             b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    rejected("Transfer-Encoding gzip then chunked in two fields, chunked first",
             b"POST /c HTTP/1.1\r\n" + H +
             b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n"),
    rejected("empty Transfer-Encoding", chunked_post(b"0\r\n\r\n", b"")),
    rejected("Transfer-Encoding in HTTP/1.0",
             b"POST /c HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    rejected("Transfer-Encoding with obs-fold", b"POST /c HTTP/1.1\r\n" + H +
             b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"),
    rejected("Transfer-Encoding with a space before the colon", b"POST /c HTTP/1.1\r\n" + H +
             b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
    # Not a framing header at all: the request has no body, and "0\r\n\r\n" is garbage after it.
    Case("Transfer_Encoding is just another field", b"POST /c HTTP/1.1\r\n" + H +
         b"Transfer_Encoding: chunked\r\n\r\n0\r\n\r\n", (200, 400), True, 1),

    # -- chunk sizes, extensions, trailers (RFC 9112 §7.1) ---------------------------------------
    rejected("chunk size overflow", chunked_post(b"fffffffffffffffff1\r\nx\r\n0\r\n\r\n")),
    rejected("chunk size 0x prefix", chunked_post(b"0x5\r\nhello\r\n0\r\n\r\n")),
    rejected("negative chunk size", chunked_post(b"-5\r\nhello\r\n0\r\n\r\n")),
    rejected("space before a chunk size", chunked_post(b" 5\r\nhello\r\n0\r\n\r\n")),
    rejected("space after a chunk size", chunked_post(b"5 \r\nhello\r\n0\r\n\r\n")),
    rejected("empty chunk size", chunked_post(b"\r\nhello\r\n0\r\n\r\n")),
    rejected("chunk data longer than its size", chunked_post(b"3\r\nhello\r\n0\r\n\r\n")),
    rejected("no CRLF after chunk data", chunked_post(b"5\r\nhello0\r\n\r\n")),
    rejected("bare LF line ends in chunks", chunked_post(b"5\nhello\n0\n\n")),
    rejected("bare LF after a chunk size", chunked_post(b"5\nhello\r\n0\r\n\r\n")),
    rejected("bare CR after a chunk size", chunked_post(b"5\rhello\r\n0\r\n\r\n")),
    rejected("last chunk 0 CR CR LF", chunked_post(b"0\r\r\n\r\n")),
    rejected("final CRLF replaced by CR and a byte", chunked_post(b"0\r\n\rX")),
    passed("chunk extensions", chunked_post(b"5;a;b=c\r\nhello\r\n0;last\r\n\r\n")),
    # llhttp 8.1 refuses an extension after one with a value (valid by RFC 9112): refused.
    rejected("chunk extension after one with a value",
             chunked_post(b"5;a=b;c\r\nhello\r\n0\r\n\r\n")),
    passed("quoted chunk extension", chunked_post(b'5;a="b c"\r\nhello\r\n0\r\n\r\n')),
    # llhttp 8.1 refuses a quoted-pair in a quoted extension value (valid by RFC 9112): refused.
    rejected("quoted-pair in a chunk extension",
             chunked_post(b'5;a="b\\"c"\r\nhello\r\n0\r\n\r\n')),
    rejected("whitespace in a chunk extension", chunked_post(b"5 ;a=b\r\nhello\r\n0\r\n\r\n")),
    rejected("control character in a chunk extension",
             chunked_post(b"5;a=\x01\r\nhello\r\n0\r\n\r\n")),
    rejected("bare CR in a chunk extension", chunked_post(b"5;a\rb\r\nhello\r\n0\r\n\r\n")),
    rejected("chunk extension abuse (8 KiB)",
             chunked_post(b"5;" + b"a" * 8192 + b"\r\nhello\r\n0\r\n\r\n")),
    passed("upper-case hex chunk size", chunked_post(b"A\r\n0123456789\r\n0\r\n\r\n")),
    passed("leading zeros in chunk sizes", chunked_post(b"0005\r\nhello\r\n000\r\n\r\n")),
    passed("trailer fields", chunked_post(b"5\r\nhello\r\n0\r\nX-T: 1\r\nY: a b\r\n\r\n")),
    rejected("obs-fold in a trailer", chunked_post(b"0\r\nX-T: 1\r\n 2\r\n\r\n")),
    rejected("space before a trailer colon", chunked_post(b"0\r\nX-T : 1\r\n\r\n")),
    rejected("NUL in a trailer", chunked_post(b"0\r\nX-T: a\x00b\r\n\r\n")),

    # -- header fields (RFC 9110 §5, RFC 9112 §5) ------------------------------------------------
    rejected("obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n"),
    rejected("obs-fold with a tab", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n\tb\r\n\r\n"),
    rejected("space before the colon", b"GET / HTTP/1.1\r\n" + H + b"X-A : a\r\n\r\n"),
    rejected("tab before the colon", b"GET / HTTP/1.1\r\n" + H + b"X-A\t: a\r\n\r\n"),
    rejected("space before the first field", b"GET / HTTP/1.1\r\n X-A: a\r\n" + H + b"\r\n"),
    rejected("bracket in a field name", b"GET / HTTP/1.1\r\n" + H + b"X[a]: b\r\n\r\n"),
    rejected("at sign in a field name", b"GET / HTTP/1.1\r\n" + H + b"X@A: b\r\n\r\n"),
    rejected("NUL in a field name", b"GET / HTTP/1.1\r\n" + H + b"X\x00A: b\r\n\r\n"),
    rejected("empty field name", b"GET / HTTP/1.1\r\n" + H + b": b\r\n\r\n"),
    rejected("field line without a colon", b"GET / HTTP/1.1\r\n" + H + b"X-A\r\n\r\n"),
    rejected("NUL in a value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n"),
    rejected("bare CR in a value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n"),
    rejected("bare LF in a value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\nb\r\n\r\n"),
    rejected("DEL in a value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x7fb\r\n\r\n"),
    rejected("control character in a value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x1bb\r\n\r\n"),
    rejected("bare LF line ends", b"GET / HTTP/1.1\n" + b"Host: h\n\n"),
    passed("obs-text in a value", b"GET / HTTP/1.1\r\n" + H + b"X-A: caf\xe9\r\n\r\n"),
    passed("OWS around a value", b"GET / HTTP/1.1\r\n" + H + b"X-A: \t a b \t\r\n\r\n",
           forwarded=b"GET / HTTP/1.1\r\n" + H + b"X-A: a b\r\n\r\n"),

    # -- request-target forms (RFC 9112 §3.2) ---------------------------------------------------
    passed("absolute-form: origin-form and Host from the target",
           b"GET http://example.com/p?q=1 HTTP/1.1\r\nHost: other.example\r\n\r\n",
           forwarded=b"GET /p?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"),
    passed("absolute-form with a port, without a path",
           b"GET HTTP://Example.com:8080?x HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
           forwarded=b"GET /?x HTTP/1.1\r\nHost: Example.com:8080\r\n\r\n"),
    rejected("absolute-form with userinfo",
             b"GET http://user@example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n"),
    rejected("absolute-form with another scheme",
             b"GET ftp://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n"),
    rejected("absolute-form without a host", b"GET http:///p HTTP/1.1\r\n" + H + b"\r\n"),
    rejected("authority-form with GET", b"GET example.com:80 HTTP/1.1\r\nHost: example.com\r\n\r\n"),
    rejected("CONNECT (authority-form)",
             b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 501),
    passed("asterisk-form with OPTIONS", b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n"),
    rejected("asterisk-form with GET", b"GET * HTTP/1.1\r\n" + H + b"\r\n"),
    rejected("fragment in the target", b"GET /a#/../admin HTTP/1.1\r\n" + H + b"\r\n"),
    rejected("non-ASCII in the target", b"GET /caf\xe9 HTTP/1.1\r\n" + H + b"\r\n"),
    rejected("control character in the target", b"GET /a\x01b HTTP/1.1\r\n" + H + b"\r\n"),

    # -- Host (RFC 9112 §3.2) --------------------------------------------------------------------
    rejected("HTTP/1.1 without Host", b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n"),
    rejected("two Hosts differing only in case of the name",
             b"GET / HTTP/1.1\r\nHost: h\r\nhost: h\r\n\r\n"),
    rejected("Host with a space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
    rejected("Host with a slash", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"),
    rejected("Host with userinfo", b"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n"),
    passed("Host with a port and an IPv6 literal", b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"),
    # (HTTP/1.0 without Host: test_http10_without_host below, the address is the origin's.)

    # -- request line (RFC 9112 §3) --------------------------------------------------------------
    rejected("two spaces after the method", b"GET  / HTTP/1.1\r\n" + H + b"\r\n"),
    rejected("two spaces before the version", b"GET /  HTTP/1.1\r\n" + H + b"\r\n"),
    rejected("space after the version", b"GET / HTTP/1.1 \r\n" + H + b"\r\n"),
    rejected("tab as separator", b"GET\t/ HTTP/1.1\r\n" + H + b"\r\n"),
    rejected("space before the method", b" GET / HTTP/1.1\r\n" + H + b"\r\n"),
    rejected("lower-case method", b"get / HTTP/1.1\r\n" + H + b"\r\n"),
    rejected("unknown method", b"FROB / HTTP/1.1\r\n" + H + b"\r\n"),
    rejected("HTTP/1.2", b"GET / HTTP/1.2\r\n" + H + b"\r\n"),
    rejected("HTTP/2.0", b"GET / HTTP/2.0\r\n" + H + b"\r\n"),
    rejected("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    rejected("HTTP/0.9 request line", b"GET /\r\n\r\n"),
    rejected("HTTP/0.9 version", b"GET / HTTP/0.9\r\n" + H + b"\r\n"),
    rejected("lower-case http", b"GET / http/1.1\r\n" + H + b"\r\n"),
    rejected("RTSP/1.0", b"DESCRIBE / RTSP/1.0\r\n" + H + b"\r\n"),
    rejected("bare LF before the request line", b"\nGET / HTTP/1.1\r\n" + H + b"\r\n"),
    passed("empty line before the request line", b"\r\nGET / HTTP/1.1\r\n" + H + b"\r\n",
           forwarded=b"GET / HTTP/1.1\r\n" + H + b"\r\n"),

    # -- Expect (RFC 9110 §10.1.1) ---------------------------------------------------------------
    passed("Expect: 100-continue with the body sent at once",
           b"POST /e HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello"),
    passed("Expect: 100-continue without a body",
           b"GET /e HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\n\r\n"),
    passed("Expect: 100-continue with a chunked body",
           b"POST /e HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nTransfer-Encoding: chunked"
           b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),

    # -- what follows a message ------------------------------------------------------------------
    Case("request after Connection: close is not read",
         b"GET /a HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\nGET /b HTTP/1.1\r\n" + H + b"\r\n",
         (200,), True, 1, forwarded=b"GET /a HTTP/1.1\r\n" + H + b"\r\n"),
    Case("request after an HTTP/1.0 request is not read",
         b"GET /a HTTP/1.0\r\n" + H + b"\r\nGET /b HTTP/1.1\r\n" + H + b"\r\n",
         (200,), True, 1, forwarded=b"GET /a HTTP/1.1\r\n" + H + b"\r\n"),
    Case("body longer than Content-Length: the rest is a bad request",
         cl_post(b"5", b"helloXGET /b HTTP/1.1\r\n" + H + b"\r\n"), (200, 400), True, 1,
         forwarded=cl_post(b"5", b"hello")),
    Case("body longer than Content-Length: the rest is a request, forwarded on its own",
         cl_post(b"5", b"helloGET /b HTTP/1.1\r\n" + H + b"\r\n"), (200, 200), False, 2,
         forwarded=cl_post(b"5", b"hello") + b"GET /b HTTP/1.1\r\n" + H + b"\r\n"),
    Case("Content-Length 0 then a request in the body",
         cl_post(b"0", b"GET /smuggled HTTP/1.1\r\n" + H + b"\r\n"), (200, 200), False, 2,
         forwarded=cl_post(b"0", b"") + b"GET /smuggled HTTP/1.1\r\n" + H + b"\r\n"),
    Case("chunked body then a pipelined request",
         chunked_post(b"3\r\nabc\r\n0\r\n\r\nGET /b HTTP/1.1\r\n" + H + b"\r\n"), (200, 200),
         False, 2, forwarded=chunked_post(b"3\r\nabc\r\n0\r\n\r\n") +
         b"GET /b HTTP/1.1\r\n" + H + b"\r\n"),
    Case("body shorter than Content-Length: 408 after client_body", cl_post(b"100", b"short"),
         (408,), True, 0, timeout=4.0),

    # -- upstream responses (how they are validated) ---------------------------------------------
    bad_response("response with Content-Length and Transfer-Encoding",
                 b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"0\r\n\r\n"),
    bad_response("response with Transfer-Encoding and Content-Length",
                 b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
                 b"0\r\n\r\n"),
    bad_response("response with two Content-Lengths",
                 b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    bad_response("HTTP/1.0 response with Transfer-Encoding",
                 b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    # llhttp reads "chunked<TAB>" as another coding (body until close); we would have sent it on
    # trimmed, as chunked (found by fuzzing).
    bad_response("response with 'chunked' and a trailing tab",
                 b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n"),
    bad_response("response with chunked, gzip", b"HTTP/1.1 200 OK\r\n"
                 b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
    bad_response("response with obs-fold",
                 b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n"),
    bad_response("response with a space before a colon",
                 b"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n"),
    bad_response("response with bare LF line ends", b"HTTP/1.1 200 OK\nContent-Length: 0\n\n"),
    bad_response("response status 034", b"HTTP/1.1 034 Odd\r\nContent-Length: 0\r\n\r\n"),
    bad_response("response status 600", b"HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n"),
    bad_response("HTTP/2.0 response", b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"),
    bad_response("101 without an upgrade request",
                 b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"),
    Case("chunked response with a bare LF in the body: cut short",
         b"GET /r HTTP/1.1\r\n" + H + b"\r\n", (200,), True, 1, truncated=True,
         respond=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"),
    Case("chunked response ending in 0 CR CR LF: cut short",
         b"GET /r HTTP/1.1\r\n" + H + b"\r\n", (200,), True, 1, truncated=True,
         respond=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\r\n"),
    Case("chunked response with extensions and trailers passes unchanged",
         b"GET /r HTTP/1.1\r\n" + H + b"\r\n", (200,), False, 1,
         respond=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"5;a=b\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"),
    Case("204 with a Content-Length has no body",
         b"GET /r HTTP/1.1\r\n" + H + b"\r\n", (204,), False, 1,
         respond=b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"),
]


class _RecordingReader(SocketReader):
    """A SocketReader that also hands every byte it receives to `sink`."""

    def __init__(self, sock, sink):
        super().__init__(sock)
        self.sink = sink

    def fill(self, deadline: float) -> bool:
        before = len(self.buf)
        got = super().fill(deadline)
        if got:
            self.sink(bytes(self.buf[before:]))
        return got


class RecordingOrigin(Origin):
    """harness.Origin that also records every byte received (all connections, in arrival order)
    and can answer with scripted raw responses (`script`, consumed one per request)."""

    def __init__(self, name: str = "R"):
        super().__init__(name)
        self._raw: list[bytes] = []
        self.script: list[tuple[bytes, bool]] = []  # (raw answer, keep the connection open)

    def raw_size(self) -> int:
        with self._lock:
            return len(self._raw)

    def raw_since(self, mark: int) -> bytes:
        with self._lock:
            return b"".join(self._raw[mark:])

    def _serve(self, conn) -> None:
        # Same loop as Origin._serve, with a recording reader.
        def record(data: bytes) -> None:
            with self._lock:
                self._raw.append(data)

        reader = _RecordingReader(conn.sock, record)
        try:
            for _ in range(1_000_000):
                if self._stopping.is_set():
                    break
                conn.idle = True
                head = reader.read_until(b"\r\n\r\n", time.monotonic() + self.IDLE_TIMEOUT,
                                         1024 * 1024)
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
            try:
                conn.sock.close()
            except OSError:
                pass

    def _respond(self, conn, req: RecordedRequest, keep_alive: bool) -> bool:
        with self._lock:
            scripted = self.script.pop(0) if self.script else None
        if scripted is None:
            conn.sock.sendall(OK if keep_alive else
                              b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
            return keep_alive
        raw, keep = scripted
        conn.sock.sendall(raw)
        return keep


class HttpConformanceTest(ProxyTestCase):
    def setUp(self):
        self.origin = RecordingOrigin()
        self.origin.start()
        self.addCleanup(self.origin.stop)
        self.proxy = self.start_proxy(proxy_config(
            [self.origin.address],
            forwarding={"x_forwarded_for": False, "x_forwarded_proto": False, "via": False},
            timeouts={"client_header": "2s", "client_body": "1s", "client_idle": "10s",
                      "upstream_response": "2s"}))

    def run_case(self, case: Case) -> None:
        origin = self.origin
        before = len(origin.requests)
        mark = origin.raw_size()
        with origin._lock:
            # A scripted answer may be anything: the origin closes after it.
            origin.script = [(case.respond, False)] if case.respond is not None else []
        with Client(self.proxy.port, timeout=case.timeout) as client:
            try:
                client.send(case.send)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the proxy may answer and close before reading everything we sent
            for i, status in enumerate(case.statuses):
                try:
                    resp = client.read_response(timeout=case.timeout)
                except IncompleteResponse as e:
                    self.assertTrue(case.truncated and i == len(case.statuses) - 1,
                                    f"response {i} was cut short: {e}")
                    self.assertEqual(e.response.status, status)
                    continue
                except (PeerClosed, ConnectionResetError, TimeoutError, ProtocolError) as e:
                    self.fail(f"response {i} (expected {status}) did not arrive: {e!r}")
                self.assertFalse(case.truncated and i == len(case.statuses) - 1,
                                 f"response {i} arrived complete, expected it cut short: {resp}")
                self.assertEqual(resp.status, status, f"response {i}: {resp}")
                if status >= 400 and case.respond is None or status == 502:
                    self.assertErrorResponse(resp, status)
            if case.closed:
                self.assertClosedSoon(client, 2.0, "the proxy should close the connection")
            else:
                self.assertStillOpen(client, 0.1, "the proxy should keep the connection open")
        # What reached the origin. Forwarded requests were answered, so they are there; a request
        # wrongly forwarded after a local error answer would follow within milliseconds (and
        # test_table also checks the total at the end).
        deadline = time.monotonic() + (0.02 if case.upstream == 0 else 2.0)
        while time.monotonic() < deadline:
            if case.upstream and len(origin.requests) - before >= case.upstream:
                break
            time.sleep(0.005)
        got = origin.requests[before:]
        self.assertEqual(len(got), case.upstream,
                         f"origin saw {len(got)} request(s), expected {case.upstream}: "
                         f"{[(r.method, r.target) for r in got]}; "
                         f"bytes: {origin.raw_since(mark)[:300]!r}")
        if case.forwarded is not None:
            self.assertEqual(origin.raw_since(mark), case.forwarded, "forwarded bytes differ")

    def test_table(self):
        names = [c.name for c in CASES]
        self.assertEqual(len(names), len(set(names)), "case names must be unique")
        only = os.environ.get("CONFORMANCE_CASE")  # run one case: CONFORMANCE_CASE="obs-fold"
        start = len(self.origin.requests)
        expected = 0
        for case in CASES:
            if only and case.name != only:
                continue
            expected += case.upstream
            with self.subTest(case.name):
                started = time.monotonic()
                self.run_case(case)
                if os.environ.get("CONFORMANCE_TIMES"):
                    print(f"{time.monotonic() - started:6.3f}s {case.name}")
        # The proxy survived every case and still serves; nothing more reached the origin than
        # the cases say.
        with Client(self.proxy.port) as client:
            self.assertEqual(client.request("GET", "/after-all").status, 200)
        time.sleep(0.2)
        self.assertEqual(len(self.origin.requests) - start, expected + 1,
                         "the origin received more requests than the cases account for")

    def test_http10_without_host_gets_the_server_address(self):
        self.run_case(Case("HTTP/1.0 without Host", b"GET /old HTTP/1.0\r\n\r\n", (200,), True, 1,
                           forwarded=b"GET /old HTTP/1.1\r\nHost: " +
                           self.origin.address.encode() + b"\r\n\r\n"))

    def test_bytes_after_a_response_make_the_upstream_connection_unusable(self):
        client = self.connect(self.proxy)
        with self.origin._lock:
            # The origin keeps the connection open: only the proxy can decide not to reuse it.
            self.origin.script = [(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", True)]
        accepted = self.origin.connections_accepted
        resp = client.request("GET", "/extra")
        self.assertEqual((resp.status, resp.body), (200, b"ok"))
        resp = client.request("GET", "/next")
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(self.origin.connections_accepted, accepted + 1 + 1,
                         "the connection that carried stray bytes must not be reused")


if __name__ == "__main__":
    unittest.main()
