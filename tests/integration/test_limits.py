"""Limits, malformed input, timeouts and upstream failures: each gets the right error status.

Limits and timeouts are configured small so the tests run fast. Every error response the proxy
itself produces must have a body naming the status and `Connection: close`, then be followed by
the proxy closing the connection.
"""

import time
import unittest

from harness import (LAST_CHUNK, Client, IncompleteResponse, PeerClosed, ProtocolError,
                     ProxyTestCase, encode_chunk, proxy_config, unused_port)

LIMITS = {"max_header_bytes": "4KiB", "max_header_count": 20, "max_body_bytes": "1MiB"}
TIMEOUTS = {"client_header": "1s", "client_idle": "1s", "client_body": "2s",
            "upstream_connect": "1s", "upstream_response": "1s", "shutdown": "2s"}


class LimitsTest(ProxyTestCase):
    def setUp(self):
        self.origin = self.start_origin("A")

    def start(self, servers=None, limits=None, timeouts=None):
        """A proxy in front of `servers` (default: the origin) with the small limits above."""
        return self.start_proxy(proxy_config(
            servers if servers is not None else [self.origin.address],
            limits={**LIMITS, **(limits or {})}, timeouts={**TIMEOUTS, **(timeouts or {})}))

    def assertRejected(self, client: Client, status: int, msg: str = "", timeout: float = 5.0):
        """Reads the proxy's error response and asserts it, and that the connection closes."""
        try:
            resp = client.read_response(timeout=timeout)
        except (ConnectionError, TimeoutError, ProtocolError) as e:
            self.fail(f"expected a {status} response ({msg}), but reading it failed: {e!r}")
        self.assertErrorResponse(resp, status, msg)
        self.assertClosedSoon(client, 2.0, f"after the {status} error response")
        return resp

    # -- request head ---------------------------------------------------------------------
    def test_header_bytes_over_limit_is_431(self):
        client = self.connect(self.start())
        client.send_request("GET", "/", [("X-Big", "a" * 8000)])
        self.assertRejected(client, 431, "8000-byte header with max_header_bytes 4KiB")
        self.assertEqual(self.origin.requests, [], "rejected request reached the origin")

    def test_header_count_over_limit_is_431(self):
        client = self.connect(self.start())
        client.send_request("GET", "/", [(f"X-H{i}", "v") for i in range(30)])
        self.assertRejected(client, 431, "30 headers with max_header_count 20")

    def test_malformed_request_line_is_400(self):
        client = self.connect(self.start())
        client.send(b"THIS IS NOT HTTP\r\n\r\n")
        self.assertRejected(client, 400, "garbage request line")

    def test_content_length_and_transfer_encoding_is_400(self):
        client = self.connect(self.start())
        client.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        self.assertRejected(client, 400, "both Content-Length and Transfer-Encoding")
        self.assertEqual(self.origin.requests, [], "smuggling-prone request reached the origin")

    def test_conflicting_content_lengths_is_400(self):
        client = self.connect(self.start())
        client.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                    b"Content-Length: 6\r\n\r\nhello!")
        self.assertRejected(client, 400, "two different Content-Length headers")
        self.assertEqual(self.origin.requests, [], "ambiguous request reached the origin")

    # -- request body ---------------------------------------------------------------------
    def test_content_length_over_limit_is_413(self):
        client = self.connect(self.start())
        client.send_request("POST", "/echo", [("Content-Length", str(2 * 1024 * 1024))])
        self.assertRejected(client, 413, "Content-Length 2MiB with max_body_bytes 1MiB; "
                                         "the proxy must answer without waiting for the body")

    def test_chunked_body_over_limit_is_rejected(self):
        client = self.connect(self.start())
        client.send_request("POST", "/echo", [("Transfer-Encoding", "chunked")])
        piece = b"z" * 65536
        try:
            for _ in range(40):  # 2.5 MiB, stop early if the proxy already answered
                client.send(encode_chunk(piece))
                if client.readable_within(0):
                    break
            client.send(LAST_CHUNK)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the proxy gave up on us: fine, as long as no success follows
        try:
            resp = client.read_response(timeout=5.0)
        except (PeerClosed, ConnectionResetError):
            resp = None  # closed without a response: acceptable
        if resp is not None:
            self.assertErrorResponse(resp, 413, "chunked body beyond max_body_bytes")
        self.assertFalse([r for r in self.origin.requests if r.body_length > 1024 * 1024],
                         "the origin received a complete body larger than max_body_bytes")

    # -- client timeouts ------------------------------------------------------------------
    def test_slowloris_head_times_out_with_408(self):
        client = self.connect(self.start())
        started = time.monotonic()
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        for _ in range(25):  # one byte every 200 ms, for at most 5 s
            if client.readable_within(0.2):
                break
            try:
                client.send(b"a")
            except (BrokenPipeError, ConnectionResetError):
                break
        try:
            resp = client.read_response(timeout=1.0)
        except ConnectionResetError:
            self.fail("connection reset before the 408 could be read (proxy closed with "
                      "unread input and no lingering close?)")
        except (PeerClosed, TimeoutError) as e:
            self.fail(f"no 408 response after {time.monotonic() - started:.2f}s: {e!r}")
        elapsed = time.monotonic() - started
        self.assertErrorResponse(resp, 408, "head trickling in with client_header 1s")
        self.assertGreaterEqual(elapsed, 0.8, f"408 after only {elapsed:.2f}s")
        self.assertLessEqual(elapsed, 3.0, f"408 took {elapsed:.2f}s with client_header 1s")

    def test_idle_keep_alive_connection_is_closed(self):
        client = self.connect(self.start())
        self.assertEqual(client.request("GET", "/").status, 200)
        started = time.monotonic()
        closed, data = client.wait_closed(4.0)
        elapsed = time.monotonic() - started
        self.assertTrue(closed, "idle keep-alive connection still open 4s later (client_idle 1s)")
        self.assertEqual(data, b"", "idle close should be silent")
        self.assertGreaterEqual(elapsed, 0.7, f"closed after only {elapsed:.2f}s idle")
        self.assertLessEqual(elapsed, 3.0, f"closed after {elapsed:.2f}s idle, client_idle 1s")

    # -- upstream failures ----------------------------------------------------------------
    def test_upstream_connect_refused_is_503(self):
        client = self.connect(self.start(servers=[f"127.0.0.1:{unused_port()}"]))
        client.send_request("GET", "/")
        self.assertRejected(client, 503, "the only server refuses connections")

    def test_dead_server_is_skipped(self):
        proxy = self.start(servers=[f"127.0.0.1:{unused_port()}", self.origin.address])
        for i in range(4):
            resp = self.fetch(proxy, f"/retry{i}")
            self.assertEqual(resp.status, 200, f"request {i} with one dead server: {resp}")
        self.assertEqual(len(self.origin.requests), 4)

    def test_upstream_response_timeout_is_504(self):
        client = self.connect(self.start())
        started = time.monotonic()
        client.send_request("GET", "/slow?delay=3")
        self.assertRejected(client, 504, "/slow?delay=3 with upstream_response 1s")
        elapsed = time.monotonic() - started
        self.assertLess(elapsed, 2.5, f"504 took {elapsed:.2f}s with upstream_response 1s")

    def test_garbage_from_upstream_is_502(self):
        client = self.connect(self.start())
        client.send_request("GET", "/garbage")
        self.assertRejected(client, 502, "origin answered 'HELLO'")

    def test_upstream_close_before_head_is_502(self):
        client = self.connect(self.start())
        client.send_request("GET", "/close-before-head")
        self.assertRejected(client, 502, "origin closed without answering")

    def test_upstream_close_mid_body_closes_client(self):
        client = self.connect(self.start())
        started = time.monotonic()
        client.send_request("GET", "/close-mid")
        try:
            resp = client.read_response(timeout=5.0)
        except IncompleteResponse as e:
            self.assertLess(e.response.body_length, 100000)
        except (PeerClosed, ConnectionResetError):
            pass  # closed before even a head: acceptable
        else:
            self.assertNotEqual(resp.status, 200,
                                f"truncated upstream body delivered as complete: {resp}")
            self.assertClosedSoon(client, 2.0, "after an upstream body was cut short")
        self.assertLess(time.monotonic() - started, 5.0)

    # -- connection limit -----------------------------------------------------------------
    def test_max_connections(self):
        proxy = self.start(limits={"max_connections": 4}, timeouts={"client_idle": "10s"})
        clients = [self.connect(proxy) for _ in range(4)]
        for i, client in enumerate(clients):
            self.assertEqual(client.request("GET", f"/c{i}").status, 200, f"connection {i}")

        fifth = self.connect(proxy)
        try:
            fifth.send_request("GET", "/fifth")
        except (BrokenPipeError, ConnectionResetError):
            pass
        closed, data = fifth.wait_closed(2.0)
        self.assertTrue(closed, f"5th connection over max_connections 4 not closed within 2s "
                                f"(received {data[:200]!r})")
        if data:
            self.assertTrue(data.startswith(b"HTTP/1.1 503"),
                            f"5th connection got something other than a 503: {data[:200]!r}")

        for i, client in enumerate(clients):
            self.assertEqual(client.request("GET", f"/again{i}").status, 200,
                             f"connection {i} after the 5th was refused")

        # Closing one frees a slot (the proxy notices the close asynchronously).
        clients[0].close()
        for _ in range(20):
            time.sleep(0.1)
            with Client(proxy.port, timeout=2.0) as client:
                try:
                    if client.request("GET", "/freed").status == 200:
                        break
                except (PeerClosed, ConnectionResetError, BrokenPipeError, TimeoutError):
                    continue
        else:
            self.fail("no new connection accepted within 2s after one of 4 was closed")


if __name__ == "__main__":
    unittest.main()
