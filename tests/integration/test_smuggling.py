"""Request smuggling and desynchronisation: the proxy and the origin must always agree on where
each message ends, and on what it is addressed to. Each case here was a real bug found in review.
"""

import unittest

from harness import ProxyTestCase, proxy_config

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


class SmugglingTest(ProxyTestCase):
    def setUp(self):
        self.origin = self.start_origin("A")
        self.proxy = self.start_proxy(proxy_config([self.origin.address]))

    def assertNothingSmuggled(self):
        paths = [r.path for r in self.origin.requests]
        self.assertNotIn("/smuggled", paths, f"origin saw a request the proxy never routed: {paths}")

    def test_connection_naming_content_length_keeps_the_framing(self):
        client = self.connect(self.proxy)
        client.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: content-length\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED)
        resp = client.read_response()
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.header("x-body-length"), str(len(SMUGGLED)),
                         "the origin must receive the body the proxy forwarded, as a body")
        self.assertEqual(client.request("GET", "/after").status, 200)
        self.assertNothingSmuggled()

    def test_connection_naming_transfer_encoding_keeps_the_framing(self):
        client = self.connect(self.proxy)
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED)
        client.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: transfer-encoding\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n" + body)
        resp = client.read_response()
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.header("x-body-length"), str(len(SMUGGLED)))
        self.assertEqual(client.request("GET", "/after").status, 200)
        self.assertNothingSmuggled()

    def test_two_host_headers_are_rejected(self):
        client = self.connect(self.proxy)
        client.send(b"GET /h HTTP/1.1\r\nHost: public.example\r\nHost: admin.example\r\n\r\n")
        resp = client.read_response()
        self.assertErrorResponse(resp, 400, "two Host headers")
        self.assertEqual(self.origin.requests, [], "a request with two Hosts reached the origin")

    def test_connect_is_refused_and_its_body_never_reaches_the_origin(self):
        client = self.connect(self.proxy)
        client.send(b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\nContent-Length: %d\r\n\r\n"
                    % len(SMUGGLED) + SMUGGLED)
        resp = client.read_response()
        self.assertErrorResponse(resp, 501, "CONNECT")
        self.assertEqual(self.origin.requests, [], "CONNECT reached the origin")

    def test_upgrade_request_does_not_break_the_next_request(self):
        client = self.connect(self.proxy)
        first = client.request("GET", "/one", [("Connection", "Upgrade, HTTP2-Settings"),
                                               ("Upgrade", "h2c"),
                                               ("HTTP2-Settings", "AAMAAABkAAQAAP__")])
        self.assertEqual(first.status, 200, first)
        second = client.request("GET", "/two")
        self.assertEqual(second.status, 200, f"request after an Upgrade request: {second}")
        self.assertEqual(second.body, b"origin A: GET /two\n")
        for r in self.origin.requests:
            self.assertFalse(r.headers.has("upgrade"), f"Upgrade was forwarded on {r.path}")


if __name__ == "__main__":
    unittest.main()
