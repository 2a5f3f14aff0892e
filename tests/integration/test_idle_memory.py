"""Idle keep-alive client connections are cheap (issue 5: <= 0.5 KiB each): thousands of them
held open by a one-worker proxy grow its RSS by less than MAX_RSS_PER_CONN bytes each, and every
one of them still works afterwards: a request on a sample of them is answered, the connection
gauges count them, client_idle closes them all, and SIGTERM closes them at once.

The bound is generous (the target is 512 B; the full per-connection Session this replaced cost
about 3.6 KiB): it catches a regression to holding a Session, or a buffer, per idle connection,
not the last hundred bytes. Under ASan RSS says nothing (redzones, quarantine), so the bound is
only checked in other builds; everything else is.
"""

from __future__ import annotations

import re
import selectors
import shutil
import signal
import socket
import sys
import tempfile
import time
import unittest

from harness import (AdminClient, Client, ProxyTestCase, SocketReader, admin_block, admin_url,
                     proxy_config, sanitized)

N = 2000
MAX_RSS_PER_CONN = 1024
IDLE_S = 10


def metric(text: str, family: str) -> float:
    """Sum of a family's samples in a Prometheus exposition."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(family + " ") or line.startswith(family + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def open_keep_alive(port: int, n: int, request: bool = True, batch: int = 50,
                    timeout: float = 60.0) -> list[socket.socket]:
    """`n` connections to `port`, each with one GET / answered in full (when `request`), left
    open; at most `batch` of them connecting or waiting for their answer at a time. Raises
    AssertionError if any connection fails or is not answered with a 200."""
    req = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    socks: list[socket.socket] = []
    pending: dict[socket.socket, bytearray] = {}
    deadline = time.monotonic() + timeout
    opened = 0
    try:
        while (opened < n or pending) and time.monotonic() < deadline:
            while opened < n and len(pending) < batch:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                opened += 1
                try:
                    s.connect(("127.0.0.1", port))
                except BlockingIOError:
                    pass
                socks.append(s)
                pending[s] = bytearray()
                sel.register(s, selectors.EVENT_WRITE, "connect")
            for key, _ in sel.select(timeout=1.0):
                s = key.fileobj
                if key.data == "connect":
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    assert err == 0, f"connect failed: {err}"
                    if not request:
                        sel.unregister(s)
                        del pending[s]
                        continue
                    s.send(req)
                    sel.modify(s, selectors.EVENT_READ, "read")
                    continue
                data = s.recv(65536)
                assert data, "the proxy closed a connection before answering"
                buf = pending[s]
                buf += data
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    continue
                m = re.search(rb"\r\ncontent-length:\s*(\d+)", bytes(buf[:end]), re.I)
                assert m, f"no Content-Length in {bytes(buf[:end])!r}"
                if len(buf) >= end + 4 + int(m.group(1)):
                    assert buf.startswith(b"HTTP/1.1 200"), bytes(buf[:end])
                    sel.unregister(s)
                    del pending[s]
        assert not pending, f"{len(pending)} of {n} connections not answered in {timeout}s"
    except BaseException:
        for s in socks:
            s.close()
        raise
    finally:
        sel.close()
    return socks


def adopt(sock: socket.socket, timeout: float = 10.0) -> Client:
    """A harness Client on an already connected socket."""
    c = Client.__new__(Client)
    c.timeout = timeout
    c.sock = sock
    c.reader = SocketReader(sock)
    return c


def still_open(socks: list[socket.socket]) -> int:
    n = 0
    for s in socks:
        try:
            s.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            n += 1
        except OSError:
            pass
    return n


def wait_all_closed(socks: list[socket.socket], timeout: float) -> int:
    """Waits until the proxy closed every socket (EOF or reset); returns how many did not."""
    sel = selectors.DefaultSelector()
    left = set(socks)
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while left and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.5):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                assert data == b"", f"unexpected bytes on an idle connection: {data[:200]!r}"
                sel.unregister(s)
                left.discard(s)
    finally:
        sel.close()
    return len(left)


class IdleMemoryTest(ProxyTestCase):
    def setUp(self):
        self.origin = self.start_origin("A")
        self.dir = tempfile.mkdtemp(prefix="switchyard-idle-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def start(self, **timeouts):
        cfg = proxy_config([self.origin.address], workers=1,
                           limits={"max_connections": 3 * N},
                           timeouts={"client_idle": f"{IDLE_S}s", "client_header": f"{IDLE_S}s",
                                     "shutdown": "10s", **timeouts})
        cfg["admin"] = admin_block(self.dir)
        proxy = self.start_proxy(cfg)
        self.admin = AdminClient(admin_url(proxy))
        return proxy

    def warm_up(self, proxy) -> None:
        """What every proxy allocates once and reuses (receive buffer ring, pools, free lists)
        becomes resident first: 64 connections with a few requests each, then closed. The
        connections measured afterwards have at most 50 requests in flight at a time, so what
        grows is what the idle connections hold, not the memory of a larger burst of requests
        (bench/run's idle workload has 200 in flight: that figure includes such a burst)."""
        clients = [Client(proxy.port) for _ in range(64)]
        try:
            for _ in range(3):
                for c in clients:
                    self.assertEqual(c.request("GET", "/").status, 200)
        finally:
            for c in clients:
                c.close()
        time.sleep(0.5)

    def gauges(self) -> tuple[float, float]:
        text = self.admin.get("/metrics").text
        return (metric(text, "switchyard_connections_active"),
                metric(text, "switchyard_worker_connections"))

    def close_all(self, socks):
        for s in socks:
            s.close()

    def test_idle_keep_alive_connections_cost_little_and_keep_working(self):
        proxy = self.start()
        self.warm_up(proxy)
        rss0 = proxy.rss_bytes()
        started = time.monotonic()
        socks = open_keep_alive(proxy.port, N)
        self.addCleanup(self.close_all, socks)
        time.sleep(0.5)
        rss1 = proxy.rss_bytes()
        per_conn = (rss1 - rss0) / N
        sys.stderr.write(f"\nidle: {N} keep-alive connections: RSS {rss0 / 1024:.0f} -> "
                         f"{rss1 / 1024:.0f} KiB, {per_conn:.0f} B per connection "
                         f"(opened in {time.monotonic() - started:.1f}s)\n")
        self.assertEqual(still_open(socks), N, "idle connections closed before client_idle")
        if not sanitized(proxy.pid):
            self.assertLess(per_conn, MAX_RSS_PER_CONN,
                            f"RSS grew {per_conn:.0f} B per idle keep-alive connection")
        # The worker's tick publishes the gauges every 50 ms.
        time.sleep(0.2)
        active, worker = self.gauges()
        self.assertEqual(active, N, "switchyard_connections_active with only idle connections")
        self.assertEqual(worker, N, "switchyard_worker_connections with only idle connections")

        # Every 20th connection takes a second request (each is parked in between).
        sample = socks[::20]
        for s in sample:
            s.setblocking(True)
            self.assertEqual(adopt(s).request("GET", "/again").status, 200)
            s.setblocking(False)
        entries = proxy.wait_access_log(64 * 3 + N + len(sample))
        self.assertEqual(len(entries), 64 * 3 + N + len(sample), "access log lines")

        # client_idle closes them all, silently, and the gauges come back to zero.
        left = wait_all_closed(socks, IDLE_S + 5)
        self.assertEqual(left, 0, f"{left} idle connections still open {IDLE_S + 5}s later")
        time.sleep(0.2)
        self.assertEqual(self.gauges(), (0, 0), "connection gauges after the idle timeout")
        self.assertTrue(proxy.running())

    def test_connections_that_never_send_cost_little_and_time_out(self):
        proxy = self.start(client_header="3s")
        self.warm_up(proxy)
        rss0 = proxy.rss_bytes()
        socks = open_keep_alive(proxy.port, N, request=False)
        self.addCleanup(self.close_all, socks)
        time.sleep(0.5)
        per_conn = (proxy.rss_bytes() - rss0) / N
        sys.stderr.write(f"\nidle: {N} silent connections: {per_conn:.0f} B per connection\n")
        if not sanitized(proxy.pid):
            self.assertLess(per_conn, MAX_RSS_PER_CONN,
                            f"RSS grew {per_conn:.0f} B per silent connection")
        # One of them speaks after all and is served.
        s = socks[N // 2]
        s.setblocking(True)
        self.assertEqual(adopt(s).request("GET", "/").status, 200)
        s.setblocking(False)
        # client_header closes the others without a word (nothing was asked, nothing to answer).
        left = wait_all_closed([x for x in socks if x is not s], 3 + 5)
        self.assertEqual(left, 0, f"{left} silent connections still open after client_header")

    def test_reload_limits_apply_to_parked_connections(self):
        """Parked connections and the Sessions kept for reuse take the new snapshot's limits."""
        cfg = proxy_config([self.origin.address], workers=1, limits={"max_header_count": 30})
        proxy = self.start_proxy(cfg)
        headers = [(f"X-H{i}", "v") for i in range(20)]
        parked = [self.connect(proxy) for _ in range(4)]
        for c in parked:
            self.assertEqual(c.request("GET", "/", headers).status, 200)
        outcome = proxy.reload(proxy_config([self.origin.address], workers=1,
                                            limits={"max_header_count": 10}))
        self.assertTrue(outcome.applied, outcome.log)
        for c in parked[:2] + [self.connect(proxy)]:
            self.assertEqual(c.request("GET", "/", headers).status, 431)
        for c in parked[2:] + [self.connect(proxy)]:
            self.assertEqual(c.request("GET", "/").status, 200)

    def test_sigterm_closes_idle_connections_at_once(self):
        proxy = self.start()
        socks = open_keep_alive(proxy.port, 500)
        self.addCleanup(self.close_all, socks)
        busy = Client(proxy.port)
        self.addCleanup(busy.close)
        busy.send_request("GET", "/slow?delay=1")
        time.sleep(0.2)
        proxy.send_signal(signal.SIGTERM)
        term_at = time.monotonic()
        left = wait_all_closed(socks, 3.0)
        self.assertEqual(left, 0, f"{left} idle connections open 3s after SIGTERM")
        self.assertEqual(busy.read_response().status, 200, "the request in flight finishes")
        rc = proxy.wait(5.0)
        self.assertEqual(rc, 0)
        self.assertLess(time.monotonic() - term_at, 4.0)


if __name__ == "__main__":
    unittest.main()
