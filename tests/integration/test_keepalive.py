"""Keep-alive on both sides, pipelining, and upstream connection reuse."""

import hashlib
import time
import unittest

from harness import LAST_CHUNK, ProxyTestCase, build_request, encode_chunk


class KeepAliveTest(ProxyTestCase):
    def setUp(self):
        self.origin = self.start_origin("A")
        self.proxy = self.start_proxy_for(self.origin)

    def test_sequential_requests_reuse_one_upstream_connection(self):
        client = self.connect(self.proxy)
        conn_ids = set()
        for i in range(20):
            resp = client.request("GET", "/conn")
            self.assertEqual(resp.status, 200, f"request {i}: {resp}")
            conn_ids.add(resp.text.strip())
        self.assertEqual(len(self.origin.requests), 20)
        self.assertEqual(self.origin.connections_accepted, 1,
                         f"upstream keep-alive not reused: origin saw connections {conn_ids}")

    def test_upstream_connection_is_reused_across_client_connections(self):
        for i in range(3):
            resp = self.fetch(self.proxy, "/conn", headers=[("Connection", "close")])
            self.assertEqual(resp.status, 200, f"request {i}: {resp}")
            time.sleep(0.05)
        self.assertEqual(self.origin.connections_accepted, 1,
                         "the idle upstream connection should be pooled for the next client")

    def test_pipelined_requests_are_answered_in_order(self):
        client = self.connect(self.proxy)
        client.send(b"".join(build_request("GET", f"/pipe{i}") for i in range(10)))
        for i in range(10):
            resp = client.read_response()
            self.assertEqual(resp.status, 200, f"response {i}: {resp}")
            self.assertEqual(resp.body, f"origin A: GET /pipe{i}\n".encode(),
                             f"pipelined response {i} out of order")
        self.assertStillOpen(client, 0.2, "after pipelined keep-alive requests")

    def test_pipelined_requests_with_bodies(self):
        bodies = [b"", b"a", b"hello world" * 100, bytes(range(256)) * 300, b"last"]
        wire = b""
        for i, body in enumerate(bodies):
            if i % 2:  # alternate Content-Length and chunked framing
                chunks = b"".join(encode_chunk(body[j:j + 1000])
                                  for j in range(0, len(body), 1000))
                wire += build_request("POST", "/echo", [("Transfer-Encoding", "chunked")],
                                      chunks + LAST_CHUNK)
            else:
                wire += build_request("POST", "/echo", body=body)
        wire += build_request("GET", "/tail")
        client = self.connect(self.proxy)
        client.send(wire)
        for i, body in enumerate(bodies):
            resp = client.read_response()
            self.assertEqual(resp.status, 200, f"response {i}: {resp}")
            self.assertEqual(resp.header("x-body-length"), str(len(body)), f"body {i}: {resp}")
            self.assertEqual(resp.header("x-body-sha256"), hashlib.sha256(body).hexdigest(),
                             f"body {i} corrupted in transit")
        self.assertEqual(client.read_response().body, b"origin A: GET /tail\n")

    def test_upstream_closed_while_idle_is_not_used_for_a_failure(self):
        client = self.connect(self.proxy)
        self.assertEqual(client.request("GET", "/first").status, 200)
        closed = self.origin.close_idle_connections()
        self.assertEqual(closed, 1, "expected one idle upstream connection to close")
        time.sleep(0.2)
        for i in range(3):
            resp = client.request("GET", f"/again{i}")
            self.assertEqual(resp.status, 200,
                             f"request after the origin closed its idle connection: {resp}")
        self.assertEqual(self.origin.connections_accepted, 2)

    def test_origin_connection_close_is_honoured(self):
        client = self.connect(self.proxy)
        for i in range(3):
            resp = client.request("GET", f"/conn?close=1&i={i}")
            self.assertEqual(resp.status, 200, f"request {i}: {resp}")
            self.assertNotIn("close", resp.headers.tokens("connection"),
                             "origin's Connection: close is hop-by-hop; client conn stays open")
        self.assertEqual(self.origin.connections_accepted, 3,
                         "a connection the origin closed must not be reused")

    def test_response_without_length_is_delimited_for_the_client(self):
        client = self.connect(self.proxy)
        resp = client.request("GET", "/nolength")
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.body, b"until-close", resp)
        if resp.headers.has("content-length") or resp.headers.has("transfer-encoding"):
            # Re-framed for the client: the client connection can go on.
            self.assertEqual(client.request("GET", "/next").status, 200)


if __name__ == "__main__":
    unittest.main()
