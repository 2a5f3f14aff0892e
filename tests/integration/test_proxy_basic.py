"""Basic forwarding: routing, round-robin, connection semantics, header hygiene, access log."""

import json
import unittest

from harness import ProxyTestCase, proxy_config

# Hop-by-hop headers a client sends; none may reach the origin (RFC 9110 7.6.1).
CLIENT_HOP_BY_HOP = [
    ("Connection", "Foo"),
    ("Foo", "x"),
    ("Keep-Alive", "timeout=5"),
    ("Proxy-Connection", "keep-alive"),
    ("TE", "trailers"),
]


class ProxyBasicTest(ProxyTestCase):
    def setUp(self):
        self.origin = self.start_origin("A")

    def test_get_is_answered_by_origin(self):
        proxy = self.start_proxy_for(self.origin)
        resp = self.fetch(proxy, "/hello?x=1")
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.body, b"origin A: GET /hello?x=1\n", resp)
        reqs = self.origin.requests
        self.assertEqual(len(reqs), 1, "origin should see exactly one request")
        self.assertEqual((reqs[0].method, reqs[0].target), ("GET", "/hello?x=1"))
        self.assertEqual(reqs[0].version, "HTTP/1.1", "the proxy must speak HTTP/1.1 upstream")

    def test_round_robin_over_two_origins(self):
        other = self.start_origin("B")
        proxy = self.start_proxy_for(self.origin, other)
        names = []
        for i in range(6):
            resp = self.fetch(proxy, f"/rr{i}")
            self.assertEqual(resp.status, 200, resp)
            names.append(resp.text.split()[1].rstrip(":"))
        self.assertEqual(sorted(set(names)), ["A", "B"], f"both origins must be used: {names}")
        for a, b in zip(names, names[1:]):
            self.assertNotEqual(a, b, f"round-robin must alternate between servers: {names}")

    def test_http10_request_is_answered_and_closed(self):
        proxy = self.start_proxy_for(self.origin)
        client = self.connect(proxy)
        resp = client.request("GET", "/old", version="HTTP/1.0")
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.body, b"origin A: GET /old\n")
        self.assertClosedSoon(client, 2.0, "an HTTP/1.0 request without keep-alive must close")

    def test_http10_keep_alive_request(self):
        proxy = self.start_proxy_for(self.origin)
        client = self.connect(proxy)
        resp = client.request("GET", "/one", [("Connection", "keep-alive")], version="HTTP/1.0")
        self.assertEqual(resp.status, 200, resp)
        self.assertNotIn("chunked", resp.headers.tokens("transfer-encoding"),
                         "no chunked encoding towards an HTTP/1.0 client")
        if "keep-alive" in resp.headers.tokens("connection"):
            # The proxy promised to keep the connection: it must honour that.
            resp = client.request("GET", "/two", [("Connection", "keep-alive")],
                                  version="HTTP/1.0")
            self.assertEqual(resp.body, b"origin A: GET /two\n", resp)
        else:
            self.assertClosedSoon(client, 2.0, "1.0 response without 'Connection: keep-alive'")

    def test_chunked_origin_response_to_http10_client_is_not_chunked(self):
        # RFC 9112 6.1: no Transfer-Encoding in a response to an HTTP/1.0 request.
        proxy = self.start_proxy_for(self.origin)
        client = self.connect(proxy)
        resp = client.request("GET", "/download?size=3000&chunked=1", version="HTTP/1.0")
        self.assertEqual(resp.status, 200, resp)
        self.assertFalse(resp.headers.has("transfer-encoding"), resp)
        self.assertEqual(resp.body_length, 3000, "body must be delivered de-chunked")

    def test_connection_close_from_client(self):
        proxy = self.start_proxy_for(self.origin)
        client = self.connect(proxy)
        resp = client.request("GET", "/", [("Connection", "close")])
        self.assertEqual(resp.status, 200, resp)
        self.assertIn("close", resp.headers.tokens("connection"),
                      "response to 'Connection: close' should say so")
        self.assertClosedSoon(client, 2.0, "client asked for Connection: close")

    def test_head_has_headers_but_no_body(self):
        proxy = self.start_proxy_for(self.origin)
        client = self.connect(proxy)
        get = client.request("GET", "/download?size=5000&chunked=0")
        head = client.request("HEAD", "/download?size=5000&chunked=0")
        self.assertEqual(head.status, 200, head)
        self.assertEqual(head.body, b"")
        for name in ("Content-Length", "X-Body-Sha256", "Content-Type"):
            self.assertEqual(head.header(name), get.header(name), f"HEAD vs GET {name}")
        # No stray body bytes may follow the HEAD response on the connection.
        resp = client.request("GET", "/after-head")
        self.assertEqual(resp.body, b"origin A: GET /after-head\n", resp)

    def test_204_and_304_have_no_body(self):
        proxy = self.start_proxy_for(self.origin)
        client = self.connect(proxy)
        for code in (204, 304):
            resp = client.request("GET", f"/status?code={code}")
            self.assertEqual(resp.status, code, resp)
            self.assertFalse(resp.headers.has("transfer-encoding"),
                             f"{code} must not carry Transfer-Encoding: {resp}")
            self.assertIn(resp.header("content-length"), (None, "0"), resp)
        # The connection must still be framed correctly afterwards.
        resp = client.request("GET", "/after")
        self.assertEqual(resp.body, b"origin A: GET /after\n", resp)

    def test_forwarding_headers_added_and_hop_by_hop_removed(self):
        proxy = self.start_proxy_for(self.origin)
        client = self.connect(proxy)
        resp = client.request("GET", "/headers", CLIENT_HOP_BY_HOP + [("X-Custom", "kept")])
        self.assertEqual(resp.status, 200, resp)
        seen = json.loads(resp.body)
        headers = self.origin.requests[-1].headers
        self.assertEqual(headers.get("x-forwarded-for"), "127.0.0.1", seen)
        self.assertEqual(headers.get("x-forwarded-proto"), "http", seen)
        self.assertIn("switchyard", (headers.get("via") or "").lower(), seen)
        self.assertEqual(headers.get("x-custom"), "kept", f"end-to-end header lost: {seen}")
        self.assertTrue(headers.has("host"), f"Host must be forwarded: {seen}")
        for name in ("foo", "keep-alive", "proxy-connection", "te"):
            self.assertFalse(headers.has(name), f"hop-by-hop '{name}' reached origin: {seen}")
        self.assertNotIn("foo", headers.tokens("connection"), seen)

    def test_client_x_forwarded_for_ends_with_client_address(self):
        proxy = self.start_proxy_for(self.origin)
        self.fetch(proxy, "/", headers=[("X-Forwarded-For", "203.0.113.7")])
        xff = self.origin.requests[-1].headers.tokens("x-forwarded-for")
        self.assertEqual(xff[-1:], ["127.0.0.1"], f"X-Forwarded-For was {xff}")

    def test_hop_by_hop_response_headers_removed(self):
        proxy = self.start_proxy_for(self.origin)
        resp = self.fetch(proxy, "/hop")
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.header("x-end-to-end"), "kept", resp)
        for name in ("x-hop-secret", "keep-alive", "proxy-connection"):
            self.assertFalse(resp.headers.has(name), f"hop-by-hop '{name}' reached client: {resp}")
        self.assertNotIn("x-hop-secret", resp.headers.tokens("connection"), resp)

    def test_respond_route_answers_without_origin(self):
        routes = {"main": [{"respond": {"status": 404, "body": "no route\n",
                                        "headers": {"content-type": "text/plain"}}}]}
        proxy = self.start_proxy(proxy_config([self.origin.address], routes=routes))
        client = self.connect(proxy)
        for _ in range(2):  # and the connection stays usable
            resp = client.request("GET", "/anything")
            self.assertEqual(resp.status, 404, resp)
            self.assertEqual(resp.body, b"no route\n", resp)
            self.assertEqual(resp.header("content-type"), "text/plain", resp)
        self.assertEqual(self.origin.connections_accepted, 0, "respond route contacted origin")

    def test_access_log_has_one_json_line_per_request(self):
        proxy = self.start_proxy_for(self.origin)
        client = self.connect(proxy)
        sent = [("GET", "/", 200), ("GET", "/status?code=404", 404), ("HEAD", "/head", 200),
                ("POST", "/echo", 200)]
        for method, target, status in sent:
            body = b"hello" if method == "POST" else None
            resp = client.request(method, target, body=body)
            self.assertEqual(resp.status, status, resp)
        entries = proxy.wait_access_log(len(sent), timeout=5.0)
        self.assertEqual(len(entries), len(sent),
                         f"expected {len(sent)} access-log lines within 5s, got:\n"
                         f"{proxy.stdout_text()}")
        required = {"method", "path", "status", "client", "upstream", "bytes_in", "bytes_out",
                    "duration_ms", "listener"}
        for entry, (method, target, status) in zip(entries, sent):
            self.assertLessEqual(required, set(entry), f"missing keys in {entry}")
            self.assertEqual(entry["method"], method, entry)
            self.assertTrue(target.startswith(entry["path"].split("?")[0]), entry)
            self.assertEqual(int(entry["status"]), status, entry)
            self.assertEqual(entry["listener"], "web", entry)
            self.assertIn("127.0.0.1", str(entry["client"]), entry)
            self.assertIn(str(self.origin.port), str(entry["upstream"]), entry)
        self.assertGreater(int(entries[0]["bytes_out"]), 0, entries[0])
        self.assertGreaterEqual(int(entries[3]["bytes_in"]), 5, entries[3])


if __name__ == "__main__":
    unittest.main()
