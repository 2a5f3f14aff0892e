"""Large bodies are streamed both ways, intact and without whole-body buffering."""

import hashlib
import unittest

from harness import MiB, ProxyTestCase, RssSampler, pattern_sha256

BIG = 64 * MiB
RSS_LIMIT = 200 * MiB
TRANSFER_TIMEOUT = 60.0


class BodiesTest(ProxyTestCase):
    def setUp(self):
        self.origin = self.start_origin("A")
        self.proxy = self.start_proxy_for(self.origin)
        self.client = self.connect(self.proxy, timeout=TRANSFER_TIMEOUT)

    def assertRssBounded(self, sampler: RssSampler, what: str) -> None:
        self.assertGreater(sampler.peak, 0, "could not read the proxy's VmRSS")
        self.assertLess(sampler.peak, RSS_LIMIT,
                        f"proxy RSS peaked at {sampler.peak / MiB:.0f} MiB during {what} "
                        f"(whole-body buffering?)")

    def upload(self, chunked: bool) -> None:
        framing = ("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(BIG))
        with RssSampler(self.proxy) as rss:
            self.client.send_request("POST", "/echo", [framing])
            sent_sha = self.client.send_body(BIG, chunked=chunked, seed=7)
            resp = self.client.read_response(timeout=TRANSFER_TIMEOUT)
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.header("x-body-length"), str(BIG), resp)
        self.assertEqual(resp.header("x-body-sha256"), sent_sha, "upload corrupted in transit")
        self.assertEqual(self.origin.requests[-1].body_sha256, sent_sha)
        self.assertRssBounded(rss, f"a {'chunked' if chunked else 'Content-Length'} upload")

    def download(self, chunked: bool) -> None:
        expected = pattern_sha256(BIG)  # warm the origin's cache before measuring anything
        digest = hashlib.sha256()
        with RssSampler(self.proxy) as rss:
            resp = self.client.request("GET", f"/download?size={BIG}&chunked={int(chunked)}",
                                       timeout=TRANSFER_TIMEOUT, sink=digest.update)
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.body_length, BIG)
        self.assertEqual(resp.header("x-body-sha256"), expected, resp)
        self.assertEqual(digest.hexdigest(), expected, "download corrupted in transit")
        self.assertRssBounded(rss, f"a {'chunked' if chunked else 'Content-Length'} download")

    def test_chunked_upload_64mib(self):
        self.upload(chunked=True)

    def test_content_length_upload_64mib(self):
        self.upload(chunked=False)

    def test_chunked_download_64mib(self):
        self.download(chunked=True)

    def test_content_length_download_64mib(self):
        self.download(chunked=False)

    def test_expect_100_continue(self):
        size = 1 * MiB
        self.client.send_request("POST", "/echo", [("Content-Length", str(size)),
                                                   ("Expect", "100-continue")])
        interim = self.client.read_response(timeout=5.0, skip_interim=False)
        self.assertEqual(interim.status, 100,
                         f"expected '100 Continue' before sending the body, got {interim}")
        sent_sha = self.client.send_body(size, chunked=False, seed=3)
        resp = self.client.read_response(timeout=10.0)
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.header("x-body-sha256"), sent_sha, resp)
        # And the connection stays usable.
        self.assertEqual(self.client.request("GET", "/after").status, 200)


if __name__ == "__main__":
    unittest.main()
