"""Pipe splice for message bodies (issue 6, `splice:`): large Content-Length bodies move
socket -> pipe -> socket in both directions, intact, and the connection goes on afterwards
(keep-alive, pipelining); slow readers, resets and timeouts behave as on the copy path; the
counters say which path each body took; nothing leaks (file descriptors, pipes).
"""

import hashlib
import os
import random
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest

from harness import (MiB, AdminClient, Client, IncompleteResponse, PeerClosed, ProxyTestCase,
                     admin_block, admin_url, build_request, pattern_pieces, pattern_sha256,
                     proxy_config, cpu_seconds, fd_count, reset_on_close)
from test_metrics import parse_metrics, value

KiB = 1024
# 1 GiB each way by default; SPLICE_TEST_BIG (bytes) makes it smaller on a slow machine.
BIG = int(os.environ.get("SPLICE_TEST_BIG", str(1024 * MiB)))
MIN_BODY = 64 * KiB
TRANSFER_TIMEOUT = 120.0


def pipe_fds(pid: int) -> int:
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("pipe:"):
                n += 1
        except OSError:
            pass
    return n


class RawOrigin:
    """A one-trick origin: reads a request head (and a Content-Length body), then answers with a
    head announcing `length` bytes, sends `send` of them, waits `hold` seconds and resets the
    connection."""

    def __init__(self, length: int, send: int, hold: float = 0.2):
        self.length, self.send, self.hold = length, send, hold
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.conns: list[socket.socket] = []
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c: socket.socket) -> None:
        try:
            buf = b""
            while b"\r\n\r\n" not in buf:
                data = c.recv(65536)
                if not data:
                    return
                buf += data
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % self.length)
            piece = b"r" * 65536
            left = self.send
            while left > 0:
                n = c.send(piece[:min(left, len(piece))])
                left -= n
            deadline = time.monotonic() + self.hold
            while not self.stopping and time.monotonic() < deadline:
                time.sleep(0.05)
            reset_on_close(c)
            c.close()
        except OSError:
            pass

    def stop(self) -> None:
        self.stopping = True
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


class SpliceTest(ProxyTestCase):
    def start_splice_proxy(self, origin_address: str, splice: dict | None = None,
                           timeouts: dict | None = None):
        d = tempfile.mkdtemp(prefix="switchyard-splice-")
        self.addCleanup(shutil.rmtree, d, True)
        cfg = proxy_config([origin_address], timeouts=timeouts,
                           access_log={"enabled": True, "format": "json", "path": "-"})
        cfg["splice"] = splice if splice is not None else {"bodies": True, "min_body": "64KiB"}
        cfg["admin"] = admin_block(d)
        proxy = self.start_proxy(cfg)
        self.pipes_at_start = pipe_fds(proxy.pid)
        self.admin = AdminClient(admin_url(proxy))
        return proxy

    def forwarded(self) -> tuple[int, int]:
        """(copy, splice) byte counters from /metrics."""
        fams = parse_metrics(self.admin.get("/metrics").text)
        return (int(value(fams, "switchyard_forwarded_bytes_total", method="copy")),
                int(value(fams, "switchyard_forwarded_bytes_total", method="splice")))

    def settled_fds(self, pid: int, at_most: int, timeout: float = 5.0) -> int:
        deadline = time.monotonic() + timeout
        n = fd_count(pid)
        while n > at_most and time.monotonic() < deadline:
            time.sleep(0.05)
            n = fd_count(pid)
        return n

    def assertFdsBack(self, proxy, baseline: int, what: str) -> None:
        n = self.settled_fds(proxy.pid, baseline)
        self.assertLessEqual(n, baseline, f"{what}: {n} fds open vs {baseline} before "
                                          f"({pipe_fds(proxy.pid)} pipe ends)")

    def download(self, client: Client, size: int, seed: int = 0):
        digest = hashlib.sha256()
        resp = client.request("GET", f"/download?size={size}&seed={seed}",
                              timeout=TRANSFER_TIMEOUT, sink=digest.update)
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.body_length, size)
        self.assertEqual(digest.hexdigest(), pattern_sha256(size, seed),
                         f"download of {size} bytes corrupted")
        return resp

    def upload(self, client: Client, size: int, seed: int = 0):
        client.send_request("POST", "/echo", [("Content-Length", str(size))])
        sent = client.send_body(size, chunked=False, seed=seed, piece_size=256 * KiB)
        resp = client.read_response(timeout=TRANSFER_TIMEOUT)
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.header("x-body-length"), str(size), resp)
        self.assertEqual(resp.header("x-body-sha256"), sent, f"upload of {size} bytes corrupted")
        return resp

    def warm_up(self, proxy) -> int:
        """One spliced upload and download (so the worker's pipe pool has its pipe), then the
        proxy's settled fd count with no client connected."""
        with Client(proxy.port, timeout=TRANSFER_TIMEOUT) as c:
            self.download(c, 256 * KiB)
            self.upload(c, 256 * KiB)
        time.sleep(0.3)
        return fd_count(proxy.pid)

    # -- big bodies, both directions ------------------------------------------------------------

    def test_big_download_then_keep_alive(self):
        origin = self.start_origin("A")
        proxy = self.start_splice_proxy(origin.address)
        baseline = self.warm_up(proxy)
        pattern_sha256(BIG)  # the origin and the check both need it: hash once, before timing
        _, spliced0 = self.forwarded()
        c = self.connect(proxy, timeout=TRANSFER_TIMEOUT)
        start = time.monotonic()
        self.download(c, BIG)
        took = time.monotonic() - start
        # The same connection goes on: the parser resumed at the end of the body.
        resp = c.request("GET", "/after")
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.body, b"origin A: GET /after\n")
        copy, spliced = self.forwarded()
        # All but what came with the response head (one 16 KiB receive at most) was spliced.
        self.assertGreaterEqual(spliced - spliced0, BIG - 16 * KiB)
        self.assertLessEqual(spliced - spliced0, BIG)
        log = proxy.wait_access_log(4)
        big = [r for r in log if r.get("path", "").startswith(f"/download?size={BIG}")]
        self.assertEqual(len(big), 1, log)
        self.assertGreater(big[0]["bytes_out"], BIG)  # head + body, as on the copy path
        c.close()
        self.assertFdsBack(proxy, baseline, "after a spliced download")
        sys_note = f"{BIG / MiB:.0f} MiB in {took:.1f} s"
        print(f"\n  spliced download: {sys_note}", flush=True)

    def test_big_upload_then_keep_alive(self):
        origin = self.start_origin("A")
        proxy = self.start_splice_proxy(origin.address)
        baseline = self.warm_up(proxy)
        _, spliced0 = self.forwarded()
        c = self.connect(proxy, timeout=TRANSFER_TIMEOUT)
        self.upload(c, BIG, seed=3)
        self.assertEqual(origin.requests[-1].body_length, BIG)
        resp = c.request("GET", "/after")
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.body, b"origin A: GET /after\n")
        _, spliced = self.forwarded()
        self.assertGreaterEqual(spliced - spliced0, BIG - 16 * KiB)
        log = proxy.wait_access_log(4)
        up = [r for r in log if r.get("method") == "POST" and r.get("bytes_in", 0) > BIG]
        self.assertEqual(len(up), 1, log)
        c.close()
        self.assertFdsBack(proxy, baseline, "after a spliced upload")

    # -- many bodies around the threshold on one connection -----------------------------------

    def test_random_sizes_around_the_threshold_keep_alive_and_pipelined(self):
        origin = self.start_origin("A")
        proxy = self.start_splice_proxy(origin.address)
        baseline = self.warm_up(proxy)
        rng = random.Random(6)
        sizes = [MIN_BODY + rng.randint(-4 * KiB, 4 * KiB) for _ in range(24)]
        sizes += [MIN_BODY - 1, MIN_BODY, MIN_BODY + 1, 3 * MiB + 7, 1]
        copy0, spliced0 = self.forwarded()
        c = self.connect(proxy, timeout=TRANSFER_TIMEOUT)
        for i, size in enumerate(sizes):
            if i % 2:
                self.upload(c, size, seed=i)
            else:
                self.download(c, size, seed=i)
        _, spliced1 = self.forwarded()
        self.assertGreater(spliced1, spliced0, "no body around the threshold was spliced")

        # Pipelined: every request (uploads with their bodies) in one write, answers in order.
        wire = bytearray()
        expect = []
        for i, size in enumerate(sizes[:12]):
            if i % 2:
                body = b"".join(pattern_pieces(size, seed=100 + i))
                wire += build_request("POST", "/echo", [("Content-Length", str(size))], body)
                expect.append(("up", size, hashlib.sha256(body).hexdigest()))
            else:
                wire += build_request("GET", f"/download?size={size}&seed={100 + i}")
                expect.append(("down", size, pattern_sha256(size, 100 + i)))
        wire += build_request("GET", "/last")
        sender = threading.Thread(target=c.send, args=(bytes(wire),))
        sender.start()
        for kind, size, sha in expect:
            resp = c.read_response(timeout=TRANSFER_TIMEOUT)
            self.assertEqual(resp.status, 200, resp)
            if kind == "up":
                self.assertEqual(resp.header("x-body-sha256"), sha, f"pipelined upload {size}")
            else:
                self.assertEqual(hashlib.sha256(resp.body).hexdigest(), sha,
                                 f"pipelined download {size}")
        resp = c.read_response(timeout=TRANSFER_TIMEOUT)
        self.assertEqual(resp.body, b"origin A: GET /last\n")
        sender.join()
        _, spliced2 = self.forwarded()
        self.assertGreater(spliced2, spliced1, "no pipelined body was spliced")
        c.close()
        self.assertFdsBack(proxy, baseline, "after bodies around the threshold")
        # One connection, one request at a time: the pool's pipe was reused, never re-made.
        self.assertLessEqual(pipe_fds(proxy.pid), self.pipes_at_start + 2)

    # -- which path: counters -----------------------------------------------------------------

    def test_below_threshold_and_disabled_copy(self):
        origin = self.start_origin("A")
        proxy = self.start_splice_proxy(origin.address, {"min_body": "1MiB"})
        copy0, spliced0 = self.forwarded()
        with Client(proxy.port, timeout=TRANSFER_TIMEOUT) as c:
            self.download(c, MiB - 1)
            self.upload(c, MiB - 1)
        copy1, spliced1 = self.forwarded()
        self.assertEqual(spliced1, spliced0, "a body below min_body was spliced")
        self.assertGreaterEqual(copy1 - copy0, 2 * (MiB - 1))
        with Client(proxy.port, timeout=TRANSFER_TIMEOUT) as c:
            self.download(c, 2 * MiB)
        _, spliced2 = self.forwarded()
        self.assertGreaterEqual(spliced2 - spliced1, 2 * MiB - 16 * KiB)

        origin2 = self.start_origin("B")
        off = self.start_splice_proxy(origin2.address, {"bodies": False})
        pipes0 = pipe_fds(off.pid)  # whatever the process has besides ours (e.g. stdio)
        with Client(off.port, timeout=TRANSFER_TIMEOUT) as c:
            self.download(c, 8 * MiB)
            self.upload(c, 8 * MiB)
        copy, spliced = self.forwarded()
        self.assertEqual(spliced, 0, "splice.bodies: false, yet bytes were spliced")
        self.assertGreaterEqual(copy, 16 * MiB)
        self.assertEqual(pipe_fds(off.pid), pipes0, "pipes made with splice.bodies: false")

    def test_copied_bodies_arrive_whole_in_any_size_and_framing(self):
        # The copy path sends up to four received pieces at once (read ahead while a send is out,
        # or gathered while the server's socket still holds more): every size around the 16 KiB
        # piece size, each framing (length, chunked, until close), a fast and a pausing reader.
        origin = self.start_origin("A")
        proxy = self.start_splice_proxy(origin.address, {"bodies": False})
        sizes = [1, 16 * KiB - 1, 16 * KiB, 16 * KiB + 1, 48 * KiB + 7, 64 * KiB, 64 * KiB + 1,
                 200 * KiB + 3, 4 * MiB + 5]
        def fetch(c: Client, target: str, size: int, seed: int, what: str) -> None:
            digest = hashlib.sha256()
            resp = c.request("GET", target, timeout=TRANSFER_TIMEOUT, sink=digest.update)
            self.assertEqual(resp.status, 200, resp)
            self.assertEqual(digest.hexdigest(), pattern_sha256(size, seed), f"{size} B, {what}")

        with Client(proxy.port, timeout=TRANSFER_TIMEOUT) as c:
            for i, size in enumerate(sizes):
                for chunked in ("0", "1"):
                    fetch(c, f"/download?size={size}&seed={i}&chunked={chunked}", size, i,
                          f"chunked={chunked}")
        for i, size in enumerate(sizes):
            with Client(proxy.port, timeout=TRANSFER_TIMEOUT) as c:  # the server closes: new one
                fetch(c, f"/nolength?size={size}&seed={i}", size, i, "until close")
        # A reader that pauses: sends stay out, pieces pile up (at most four), nothing is lost.
        size = 16 * MiB + 11
        c = self.connect(proxy, timeout=TRANSFER_TIMEOUT)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * KiB)
        c.send_request("GET", f"/download?size={size}&seed=5")
        head = c.reader.read_until(b"\r\n\r\n", time.monotonic() + 10, 64 * KiB)
        self.assertIn(b"200 OK", head)
        digest, got = hashlib.sha256(), 0
        for _ in range(5):
            time.sleep(0.2)
            piece = c.reader.read_exact(MiB, time.monotonic() + 10)
            digest.update(piece)
            got += len(piece)
        for piece in c.reader.iter_exact(size - got, time.monotonic() + TRANSFER_TIMEOUT):
            digest.update(piece)
        self.assertEqual(digest.hexdigest(), pattern_sha256(size, 5))
        self.assertEqual(c.request("GET", "/after").status, 200)
        copy, spliced = self.forwarded()
        self.assertEqual(spliced, 0)
        self.assertGreaterEqual(copy, size)

    def test_chunked_and_dechunked_bodies_are_copied(self):
        origin = self.start_origin("A")
        proxy = self.start_splice_proxy(origin.address)
        size = 2 * MiB
        _, spliced0 = self.forwarded()
        with Client(proxy.port, timeout=TRANSFER_TIMEOUT) as c:
            digest = hashlib.sha256()
            resp = c.request("GET", f"/download?size={size}&chunked=1", sink=digest.update)
            self.assertEqual(digest.hexdigest(), pattern_sha256(size))
            self.assertEqual(resp.header("transfer-encoding"), "chunked")
        # HTTP/1.0 client: the chunked response is de-chunked (through userspace), and closed.
        with Client(proxy.port, timeout=TRANSFER_TIMEOUT) as c:
            digest = hashlib.sha256()
            resp = c.request("GET", f"/download?size={size}&chunked=1", version="HTTP/1.0",
                             sink=digest.update)
            self.assertEqual(resp.status, 200)
            self.assertEqual(digest.hexdigest(), pattern_sha256(size))
        _, spliced1 = self.forwarded()
        self.assertEqual(spliced1, spliced0, "a chunked body was spliced")
        # An HTTP/1.0 client with a Content-Length response: spliced like any other.
        with Client(proxy.port, timeout=TRANSFER_TIMEOUT) as c:
            digest = hashlib.sha256()
            resp = c.request("GET", f"/download?size={size}", version="HTTP/1.0",
                             sink=digest.update)
            self.assertEqual(digest.hexdigest(), pattern_sha256(size))
        _, spliced2 = self.forwarded()
        self.assertGreaterEqual(spliced2 - spliced1, size - 16 * KiB)

    # -- slow readers and timeouts --------------------------------------------------------------

    def test_slow_reader_does_not_spin_and_gets_everything(self):
        origin = self.start_origin("A")
        proxy = self.start_splice_proxy(origin.address)
        size = 24 * MiB
        expected = pattern_sha256(size, 9)
        c = self.connect(proxy, timeout=TRANSFER_TIMEOUT)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * KiB)
        c.send_request("GET", f"/download?size={size}&seed=9")
        digest = hashlib.sha256()
        head = c.reader.read_until(b"\r\n\r\n", time.monotonic() + 10, 64 * KiB)
        self.assertIn(b"200 OK", head)
        got = 0
        cpu0, t0 = cpu_seconds(proxy.pid), time.monotonic()
        # ~2.5 s of reading 64 KiB every 50 ms: the proxy waits (poll), it does not spin.
        while time.monotonic() - t0 < 2.5:
            piece = c.reader.read_exact(min(64 * KiB, size - got), time.monotonic() + 10)
            digest.update(piece)
            got += len(piece)
            time.sleep(0.05)
        cpu = cpu_seconds(proxy.pid) - cpu0
        self.assertLess(cpu, 0.5, f"proxy used {cpu:.2f} s of CPU over 2.5 s of a slow reader")
        for piece in c.reader.iter_exact(size - got, time.monotonic() + TRANSFER_TIMEOUT):
            digest.update(piece)
        self.assertEqual(digest.hexdigest(), expected)
        self.assertEqual(c.request("GET", "/after").status, 200)

    def unsent_bytes(self, proxy_port: int, client_port: int, timeout: float = 5.0) -> int:
        """The proxy's not-yet-sent bytes towards one client once they stop changing (`ss -ti`:
        `notsent:N`; absent = 0)."""
        last, deadline = None, time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = subprocess.run(
                ["ss", "-tinH", "state", "established",
                 f"( sport = :{proxy_port} and dport = :{client_port} )"],
                capture_output=True, text=True, check=True).stdout
            self.assertIn("127.0.0.1", out, "the client's connection is not in `ss`")
            n = int(out.split("notsent:")[1].split()[0]) if "notsent:" in out else 0
            if n == last:
                return n
            last = n
            time.sleep(0.3)
        return last

    def stalled_download_unsent(self, splice: dict) -> int:
        """Unsent bytes in the proxy's socket to a client that asked for 16 MiB and reads
        nothing."""
        origin = self.start_origin("A")
        proxy = self.start_splice_proxy(origin.address, splice=splice)
        c = self.connect(proxy, timeout=TRANSFER_TIMEOUT)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * KiB)
        c.send_request("GET", f"/download?size={16 * MiB}")
        time.sleep(0.5)
        unsent = self.unsent_bytes(proxy.port, c.sock.getsockname()[1])
        self.assertGreater(self.forwarded()[1], 0, "the body was not spliced")
        c.close()
        return unsent

    def test_unsent_bytes_wait_in_the_pipe_not_in_the_client_socket(self):
        # splice.notsent_lowat (TCP_NOTSENT_LOWAT): a splice stops once that much is unsent, so
        # a client with a closed window holds at most about that much in our send queue (one
        # skb of overshoot allowed); the rest of the pipe's MiB stays in the pipe.
        lowat = 64 * KiB
        unsent = self.stalled_download_unsent(
            {"bodies": True, "min_body": "64KiB", "notsent_lowat": "64KiB"})
        self.assertLessEqual(unsent, 3 * lowat, f"{unsent} bytes unsent with a {lowat}-byte mark")
        with open("/proc/sys/net/ipv4/tcp_notsent_lowat") as f:
            system_lowat = int(f.read())
        if system_lowat < 4 * MiB:
            self.skipTest(f"net.ipv4.tcp_notsent_lowat is {system_lowat}: without our mark the "
                          "kernel's would still bound the send queue (the contrast is not shown)")
        # Without the mark the same download leaves (nearly) the whole pipe in the send queue.
        unsent = self.stalled_download_unsent(
            {"bodies": True, "min_body": "64KiB", "notsent_lowat": 0})
        self.assertGreater(unsent, 3 * lowat, "no mark, yet the send queue stayed short")

    def test_reader_that_stops_is_closed_after_client_idle(self):
        origin = self.start_origin("A")
        proxy = self.start_splice_proxy(origin.address, timeouts={"client_idle": "1s"})
        baseline = self.warm_up(proxy)
        c = self.connect(proxy, timeout=TRANSFER_TIMEOUT)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * KiB)
        c.send_request("GET", f"/download?size={64 * MiB}")
        time.sleep(3.0)  # read nothing: client_idle (1 s) must close it
        closed, _ = c.wait_closed(timeout=10.0)
        self.assertTrue(closed, "a client that stopped reading was never closed")
        c.close()
        self.assertFdsBack(proxy, baseline, "after closing a stalled reader")
        # The server connection went with it (it still had body to send): not reused.
        deadline = time.monotonic() + 10
        while origin.open_connections > 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(origin.open_connections, 0)
        self.assertEqual(self.fetch(proxy, "/ok").status, 200)

    def test_stalled_upload_gets_408(self):
        origin = self.start_origin("A")
        proxy = self.start_splice_proxy(origin.address, timeouts={"client_body": "1s"})
        baseline = self.warm_up(proxy)
        c = self.connect(proxy, timeout=TRANSFER_TIMEOUT)
        c.send_request("POST", "/echo", [("Content-Length", str(8 * MiB))])
        c.send(b"x" * (512 * KiB))
        resp = c.read_response(timeout=10)  # nothing more is sent
        self.assertEqual(resp.status, 408, resp)
        self.assertClosedSoon(c, 5.0)
        c.close()
        self.assertFdsBack(proxy, baseline, "after a stalled upload")

    # -- resets ---------------------------------------------------------------------------------

    def test_upstream_reset_mid_body_closes_the_client(self):
        raw = RawOrigin(length=64 * MiB, send=4 * MiB)
        self.addCleanup(raw.stop)
        proxy = self.start_splice_proxy(raw.address)
        pipes0 = pipe_fds(proxy.pid)
        _, spliced0 = self.forwarded()
        with Client(proxy.port, timeout=30) as c:
            with self.assertRaises((IncompleteResponse, PeerClosed, ConnectionError)):
                c.request("GET", "/reset", timeout=30, sink=lambda b: None)
        _, spliced = self.forwarded()
        self.assertGreater(spliced, spliced0, "the body before the reset was not spliced")
        # The reset connection was not pooled: the next request needs a new one.
        accepted = len(raw.conns)
        with Client(proxy.port, timeout=30) as c:
            with self.assertRaises((IncompleteResponse, PeerClosed, ConnectionError)):
                c.request("GET", "/reset", timeout=30, sink=lambda b: None)
        self.assertEqual(len(raw.conns), accepted + 1)
        time.sleep(0.5)
        # Pipes abandoned with bytes in them are closed; at most one empty one is kept.
        self.assertLessEqual(pipe_fds(proxy.pid), pipes0 + 2)
        self.assertIn("closed mid-response", proxy.stderr_text())

    def test_server_that_stalls_mid_body_times_out(self):
        raw = RawOrigin(length=64 * MiB, send=2 * MiB, hold=30.0)
        self.addCleanup(raw.stop)
        proxy = self.start_splice_proxy(raw.address, timeouts={"upstream_response": "1s"})
        start = time.monotonic()
        with Client(proxy.port, timeout=30) as c:
            with self.assertRaises((IncompleteResponse, PeerClosed, ConnectionError)):
                c.request("GET", "/stall", timeout=20, sink=lambda b: None)
        took = time.monotonic() - start
        self.assertLess(took, 10.0, "the stalled server was waited for past upstream_response")
        _, spliced = self.forwarded()
        self.assertGreater(spliced, 0)
        self.assertIn("response timed out", proxy.stderr_text())

    def test_client_reset_mid_upload_closes_the_upstream(self):
        origin = self.start_origin("A")
        proxy = self.start_splice_proxy(origin.address)
        baseline = self.warm_up(proxy)
        before = origin.connections_accepted
        c = Client(proxy.port, timeout=30)
        c.send_request("POST", "/echo", [("Content-Length", str(256 * MiB))])
        for piece in pattern_pieces(8 * MiB, seed=1):
            c.send(piece)
        time.sleep(0.3)
        reset_on_close(c.sock)
        c.sock.close()
        deadline = time.monotonic() + 10
        while origin.open_connections > 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(origin.open_connections, 0, "the server connection outlived the client")
        self.assertFdsBack(proxy, baseline, "after a client reset mid-upload")
        # A new request gets a new server connection (the half-sent one was not pooled).
        self.assertEqual(self.fetch(proxy, "/ok").status, 200)
        self.assertGreater(origin.connections_accepted, before)


if __name__ == "__main__":
    unittest.main()
