"""Graceful shutdown on SIGTERM: in-flight requests finish, new ones are refused, and
`timeouts.shutdown` bounds the wait."""

import signal
import time
import unittest

from harness import Client, PeerClosed, ProxyTestCase


def new_connection_refused(port: int) -> bool:
    """True when a new connection is refused, reset/closed unanswered, or answered 503."""
    try:
        client = Client(port, timeout=1.0)
    except (ConnectionError, TimeoutError):  # refused, or reset while connecting
        return True
    with client:
        try:
            return client.request("GET", "/probe", timeout=1.0).status == 503
        except ConnectionError:  # reset, broken pipe, closed unanswered (PeerClosed)
            return True
        except TimeoutError:
            return False


class ShutdownTest(ProxyTestCase):
    def setUp(self):
        self.origin = self.start_origin("A")

    def start_slow_requests(self, proxy, count: int, delay: float) -> list[Client]:
        clients = [self.connect(proxy) for _ in range(count)]
        for client in clients:
            client.send_request("GET", f"/slow?delay={delay}")
        reqs = self.origin.wait_for_requests(count, timeout=3.0)
        self.assertEqual(len(reqs), count, "slow requests did not all reach the origin")
        return clients

    def test_sigterm_drains_in_flight_requests(self):
        proxy = self.start_proxy_for(self.origin, timeouts={"shutdown": "10s"})
        started = time.monotonic()
        clients = self.start_slow_requests(proxy, 3, delay=2)
        time.sleep(max(0.0, 0.5 - (time.monotonic() - started)))
        proxy.send_signal(signal.SIGTERM)
        term_at = time.monotonic()

        refused = False
        for _ in range(30):
            if new_connection_refused(proxy.port):
                refused = True
                break
            if time.monotonic() - term_at > 1.0:
                break
            time.sleep(0.05)
        self.assertTrue(refused, "new connections still served 1s after SIGTERM")

        for i, client in enumerate(clients):
            try:
                resp = client.read_response(timeout=5.0)
            except (PeerClosed, ConnectionResetError) as e:
                self.fail(f"in-flight request {i} cut off by graceful shutdown: {e!r}")
            self.assertEqual(resp.status, 200, f"in-flight request {i}: {resp}")
            self.assertEqual(resp.body, b"slept 2.0\n", f"in-flight request {i}")

        rc = proxy.wait(10.0)
        self.assertIsNotNone(rc, "proxy still running 10s after SIGTERM with nothing in flight")
        self.assertEqual(rc, 0, "graceful shutdown should exit 0")
        self.assertLess(time.monotonic() - term_at, 5.0, "shutdown took too long")

    def test_shutdown_timeout_bounds_the_wait(self):
        proxy = self.start_proxy_for(self.origin, timeouts={"shutdown": "1s"})
        (client,) = self.start_slow_requests(proxy, 1, delay=5)
        proxy.send_signal(signal.SIGTERM)
        term_at = time.monotonic()
        rc = proxy.wait(4.0)
        elapsed = time.monotonic() - term_at
        self.assertIsNotNone(rc, "proxy still running 4s after SIGTERM with shutdown 1s")
        self.assertLessEqual(elapsed, 2.5, f"exit took {elapsed:.2f}s with shutdown 1s")
        self.assertGreaterEqual(rc, 0, f"proxy died from signal {-rc} during shutdown")
        try:
            resp = client.read_response(timeout=2.0)
        except (PeerClosed, ConnectionResetError):
            return  # the cut-off request's connection was closed: expected
        self.assertNotEqual(resp.status, 200, "a request outliving the shutdown timeout got 200")

    def test_idle_connections_do_not_delay_shutdown(self):
        proxy = self.start_proxy_for(self.origin, timeouts={"shutdown": "10s"})
        client = self.connect(proxy)
        self.assertEqual(client.request("GET", "/").status, 200)
        proxy.send_signal(signal.SIGTERM)
        term_at = time.monotonic()
        rc = proxy.wait(5.0)
        elapsed = time.monotonic() - term_at
        self.assertIsNotNone(rc, "an idle keep-alive connection kept the proxy alive 5s")
        self.assertEqual(rc, 0)
        self.assertLess(elapsed, 2.0, f"exit took {elapsed:.2f}s with only idle connections")
        self.assertClosedSoon(client, 1.0, "idle connection after the proxy exited")


if __name__ == "__main__":
    unittest.main()
