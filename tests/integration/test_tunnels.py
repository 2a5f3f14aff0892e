"""Tunnels: `mode: tcp` listeners and HTTP Upgrade (WebSocket), under each engine of
src/splice/tunnel.cc: `splice` (socket -> pipe -> socket, the default), `copy`
(`splice: { tunnels: copy }`, through io_uring buffers) and `sockmap` (`splice: { sockmap: true }`,
forwarded by the kernel through a BPF sockmap, src/splice/tunnel.bpf.c). Real servers and clients
over loopback sockets.

The 1 GiB test prints the proxy's CPU time per GiB for each engine (that is the measurement
issue 6 asks for); run it alone with
    cd build-tun && ctest -R integration.test_tunnels -V
"""

import base64
import hashlib
import os
import shutil
import socket
import struct
import tempfile
import threading
import time
import unittest
import urllib.request

from harness import (LOOPBACK, MiB, ProxyTestCase, admin_block, example_config, metrics_port,
                     proxy_config, cpu_seconds, fd_count, reset_on_close)

GiB = 1024 * MiB
BULK = int(os.environ.get("TUNNEL_BULK_BYTES", str(GiB)))
BLOCK = 1 * MiB
# Seconds both ends of the bulk test wait before sending (0: at once, so the first bytes queue
# up while the tunnel is being set up).
START_DELAY = float(os.environ.get("TUNNEL_START_DELAY", "0"))
TRANSFER_TIMEOUT = 240.0  # every load loop below gives up after this
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# --------------------------------------------------------------------------------------------
# Data: `size` bytes in 1 MiB blocks, each a random block stamped with its index (so lost,
# duplicated or reordered blocks change the digest).

_BASE_BLOCK = os.urandom(BLOCK)


def blocks(size: int, seed: int):
    i = 0
    sent = 0
    while sent < size:
        n = min(BLOCK, size - sent)
        head = struct.pack(">QQ", seed, i)
        yield (head + _BASE_BLOCK[len(head):])[:n]
        sent += n
        i += 1


_digests: dict = {}


def expected_digest(size: int, seed: int) -> str:
    key = (size, seed)
    if key not in _digests:
        h = hashlib.sha256()
        for b in blocks(size, seed):
            h.update(b)
        _digests[key] = h.hexdigest()
    return _digests[key]


def send_all(sock: socket.socket, size: int, seed: int, deadline: float) -> None:
    for b in blocks(size, seed):
        view = memoryview(b)
        while view:
            if time.monotonic() > deadline:
                raise TimeoutError("send took too long")
            n = sock.send(view)
            view = view[n:]


def recv_all(sock: socket.socket, deadline: float) -> tuple[int, str]:
    """Reads until EOF; (bytes, sha256)."""
    h = hashlib.sha256()
    total = 0
    buf = bytearray(1 << 20)
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError("receive took too long")
        n = sock.recv_into(buf)
        if n == 0:
            return total, h.hexdigest()
        h.update(memoryview(buf)[:n])
        total += n


def exchange(sock: socket.socket, size: int, seed: int,
             timeout: float = TRANSFER_TIMEOUT) -> tuple[int, str]:
    """Sends `size` pattern bytes then FIN while reading everything the peer sends, both at
    once; returns what was read as recv_all does."""
    deadline = time.monotonic() + timeout
    sender = threading.Thread(target=lambda: (send_all(sock, size, seed, deadline),
                                              sock.shutdown(socket.SHUT_WR)))
    sender.start()
    got = recv_all(sock, deadline)
    sender.join(timeout)
    return got


def recv_exact(sock: socket.socket, n: int, timeout: float = 10.0) -> bytes:
    deadline = time.monotonic() + timeout
    out = bytearray()
    while len(out) < n:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError(f"EOF after {len(out)} of {n} bytes")
        out += chunk
    return bytes(out)


# --------------------------------------------------------------------------------------------
# Servers: a thread per connection running `handler(sock)`.

class TcpServer:
    def __init__(self, handler):
        self.handler = handler
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(64)
        self.address = f"{LOOPBACK}:{self.sock.getsockname()[1]}"
        self.results = []
        self.errors = []
        self.accepted = 0
        self.stopped = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            result = self.handler(conn)
            if result is not None:
                self.results.append(result)
        except Exception as e:  # reported by the test through .errors
            self.errors.append(repr(e))
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def wait_results(self, n: int, timeout: float):
        deadline = time.monotonic() + timeout
        while len(self.results) + len(self.errors) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.results

    def stop(self):
        self.stopped = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def bulk_handler(size: int, seed: int, delay: float | None = None):
    """Sends `size` bytes and reads everything the client sends, both at once, after `delay`
    seconds (default START_DELAY)."""
    def handle(conn):
        time.sleep(START_DELAY if delay is None else delay)
        return exchange(conn, size, seed)
    return handle


def metrics(proxy) -> dict:
    text = urllib.request.urlopen(f"http://{LOOPBACK}:{metrics_port(proxy)}/metrics",
                                  timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


# --------------------------------------------------------------------------------------------
# A minimal RFC 6455 client and server: the handshake, masked client frames, unmasked server
# frames, text/binary/close opcodes; enough to prove the proxy passes a real WebSocket session.

def ws_accept_key(key: bytes) -> str:
    return base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()


def ws_frame(opcode: int, payload: bytes, mask: bool) -> bytes:
    head = bytes([0x80 | opcode])
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack(">H", n)
    else:
        head += bytes([m | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if n < 4096 else \
        (int.from_bytes(payload, "big") ^ int.from_bytes((key * (n // 4 + 1))[:n], "big")).to_bytes(n, "big")
    return head + key + masked


def ws_read_frame(sock: socket.socket, timeout: float = 10.0) -> tuple[int, bytes]:
    b0, b1 = recv_exact(sock, 2, timeout)
    opcode = b0 & 0x0F
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", recv_exact(sock, 2, timeout))[0]
    elif n == 127:
        n = struct.unpack(">Q", recv_exact(sock, 8, timeout))[0]
    key = recv_exact(sock, 4, timeout) if b1 & 0x80 else None
    payload = recv_exact(sock, n, timeout) if n else b""
    if key:
        payload = (int.from_bytes(payload, "big") ^
                   int.from_bytes((key * (n // 4 + 1))[:n], "big")).to_bytes(n, "big")
    return opcode, payload


def read_head(sock: socket.socket, timeout: float = 10.0) -> tuple[bytes, bytes]:
    """(head, bytes after it)."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\r\n\r\n" not in data:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"EOF in head: {data!r}")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    return head, rest


def header(head: bytes, name: str) -> str | None:
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == name.encode():
            return v.strip().decode()
    return None


class Prefixed:
    """A socket whose first reads replay bytes already read with a head."""

    def __init__(self, sock, data):
        self.sock, self.data = sock, data

    def recv(self, n):
        if self.data:
            out, self.data = self.data[:n], self.data[n:]
            return out
        return self.sock.recv(n)

    def settimeout(self, t):
        self.sock.settimeout(t)


def ws_echo_handler(conn):
    """A WebSocket echo origin. A request without Upgrade gets a plain 200 (keep-alive)."""
    rest = b""
    while True:
        head, rest = read_head(conn, 30)
        if header(head, "upgrade") is None:
            body = b"plain http\n"
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            continue
        break
    key = header(head, "sec-websocket-key").encode()
    # The first frame rides right behind the 101 head: the proxy must pass it on.
    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + ws_accept_key(key).encode() +
                 b"\r\n\r\n" + ws_frame(1, b"hello from the origin", mask=False))

    src = Prefixed(conn, rest)
    echoed = 0
    while True:
        opcode, payload = ws_read_frame(src, 30)
        if opcode == 8:
            conn.sendall(ws_frame(8, payload, mask=False))
            return ("closed", echoed)
        conn.sendall(ws_frame(opcode, payload, mask=False))
        echoed += 1


# --------------------------------------------------------------------------------------------

ENGINES = ("sockmap", "splice", "copy")


def splice_block(engine: str) -> dict:
    """The `splice:` block that makes tunnels use `engine`."""
    return {"sockmap": engine == "sockmap", "tunnels": "copy" if engine == "copy" else "splice"}


def engine_bytes(m: dict, method: str) -> float:
    return m.get(f'switchyard_forwarded_bytes_total{{method="{method}"}}', 0)


class TunnelTestBase(ProxyTestCase):
    def tcp_proxy(self, *servers, engine="splice", timeouts=None, scheduler="rr"):
        d = tempfile.mkdtemp(prefix="switchyard-tunnel-")
        self.addCleanup(shutil.rmtree, d, True)
        config = proxy_config(
            pools={"backend": {"scheduler": scheduler, "servers": [s.address for s in servers]}},
            routes={"main": [{"pool": "backend"}]},
            listeners=[{"name": "tcp", "bind": f"{LOOPBACK}:0", "mode": "tcp", "pool": "backend"}],
            timeouts=timeouts)
        config["splice"] = splice_block(engine)
        config["admin"] = admin_block(d, metrics_bind=f"{LOOPBACK}:0")
        return self.start_proxy(config)

    def server(self, handler) -> TcpServer:
        s = TcpServer(handler)
        self.addCleanup(s.stop)
        return s

    def dial(self, proxy, timeout=10.0) -> socket.socket:
        c = socket.create_connection((LOOPBACK, proxy.port), timeout=timeout)
        self.addCleanup(c.close)
        return c

    def assertFdsBackTo(self, proxy, baseline: int, timeout: float = 5.0):
        deadline = time.monotonic() + timeout
        while fd_count(proxy.pid) > baseline and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertLessEqual(fd_count(proxy.pid), baseline,
                             f"proxy holds {fd_count(proxy.pid) - baseline} more descriptors than "
                             f"before the test: leaked tunnel sockets?")


class TcpBulkTest(TunnelTestBase):
    def transfer(self, engine: str, size: int) -> dict:
        """`size` bytes each way at once through a tcp listener; checks both digests."""
        up_seed, down_seed = 11, 22
        origin = self.server(bulk_handler(size, down_seed))
        proxy = self.tcp_proxy(origin, engine=engine)
        want_up, want_down = expected_digest(size, up_seed), expected_digest(size, down_seed)
        cpu0 = cpu_seconds(proxy.pid)
        t0 = time.monotonic()
        c = self.dial(proxy, timeout=TRANSFER_TIMEOUT)
        time.sleep(START_DELAY)
        got_down = exchange(c, size, up_seed)
        results = origin.wait_results(1, 30)
        elapsed = time.monotonic() - t0
        cpu = cpu_seconds(proxy.pid) - cpu0
        m = metrics(proxy)
        info = (f" (engine={engine}; proxy metrics: copy bytes {engine_bytes(m, 'copy'):.0f}, "
                f"splice bytes {engine_bytes(m, 'splice'):.0f}, sockmap bytes "
                f"{engine_bytes(m, 'sockmap'):.0f})")
        self.assertEqual(origin.errors, [])
        self.assertEqual(got_down, (size, want_down), "server -> client bytes corrupted" + info)
        self.assertEqual(results, [(size, want_up)], "client -> server bytes corrupted" + info)
        return {"cpu": cpu, "elapsed": elapsed, "metrics": m, "proxy": proxy}

    def test_gib_each_way_every_engine(self):
        for engine in ENGINES:
            with self.subTest(engine=engine):
                if engine == "sockmap" and os.environ.get("SWITCHYARD_SOCKMAP_BULK") != "1":
                    # On kernel 6.18 the sockmap engine delivered one ~64 KiB segment twice in
                    # about 1 of 10 of these transfers (bulk both ways, under back-pressure), so
                    # it is off by default (docs/configuration.md, "Tunnels"). Run it with
                    # SWITCHYARD_SOCKMAP_BULK=1 to reproduce, or to check a newer kernel.
                    self.skipTest("sockmap bulk transfer: known kernel double delivery on 6.18; "
                                  "SWITCHYARD_SOCKMAP_BULK=1 runs it")
                r = self.transfer(engine, BULK)
                m = r["metrics"]
                kernel = engine_bytes(m, "sockmap")
                tunnels = m.get(f'switchyard_tunnels_total{{engine="{engine}"}}', 0)
                self.assertEqual(tunnels, 1, f"the tunnel did not use the {engine} engine")
                log = r["proxy"].stderr_text()
                if engine == "sockmap":
                    # All but what queued up while the tunnel was set up (sent first, copied).
                    self.assertGreaterEqual(kernel, 2 * BULK * 0.9, "sockmap counter did not move")
                    self.assertGreaterEqual(
                        kernel + m['switchyard_forwarded_bytes_total{method="copy"}'], 2 * BULK)
                    self.assertIn("tunnels: sockmap engine", log)
                elif engine == "splice":
                    # Nothing is read before a tcp listener's tunnel starts: every byte spliced.
                    self.assertEqual(kernel, 0)
                    self.assertEqual(engine_bytes(m, "splice"), 2 * BULK)
                    self.assertEqual(engine_bytes(m, "copy"), 0)
                    self.assertEqual(log.count("splice.sockmap is false; tunnels splice through "
                                               "pipes"), 1)
                else:
                    self.assertEqual(kernel, 0)
                    self.assertEqual(engine_bytes(m, "splice"), 0)
                    self.assertGreaterEqual(engine_bytes(m, "copy"), 2 * BULK)
                    self.assertEqual(log.count("splice.sockmap is false; tunnels copy through "
                                               "userspace"), 1)
                gib = 2 * BULK / GiB
                print(f"\n[tunnel bench] engine={engine} bytes={2 * BULK} ({gib:.2f} GiB, both "
                      f"directions) wall={r['elapsed']:.2f}s proxy_cpu={r['cpu']:.3f}s "
                      f"cpu_per_GiB={r['cpu'] / gib * 1000:.1f}ms", flush=True)
        # Which path the bytes took is pinned by the counters above; CPU time is printed for
        # BENCHMARKS.md only: timing assertions fail on a loaded machine (CI runs tests in
        # parallel on 2 cores), and the project's rule keeps performance out of tests.


class TcpSemanticsTest(TunnelTestBase):
    def test_client_half_close_still_receives(self):
        def handler(conn):
            deadline = time.monotonic() + 30
            n, digest = recv_all(conn, deadline)  # until the client's FIN arrives here
            time.sleep(0.2)
            conn.sendall(b"after your FIN: %d " % n)
            send_all(conn, 4 * MiB, 5, deadline)
            return (n, digest)
        for engine in ENGINES:
            with self.subTest(engine=engine):
                origin = self.server(handler)
                proxy = self.tcp_proxy(origin, engine=engine)
                c = self.dial(proxy)
                c.sendall(b"x" * 100000)
                c.shutdown(socket.SHUT_WR)
                prefix = recv_exact(c, len(b"after your FIN: 100000 "))
                self.assertEqual(prefix, b"after your FIN: 100000 ")
                got = recv_all(c, time.monotonic() + 30)
                self.assertEqual(got, (4 * MiB, expected_digest(4 * MiB, 5)))
                self.assertEqual(origin.wait_results(1, 5)[0][0], 100000)

    def test_server_half_close_client_keeps_sending(self):
        def handler(conn):
            conn.sendall(b"banner and bye\n")
            conn.shutdown(socket.SHUT_WR)  # the server is done talking, not listening
            deadline = time.monotonic() + 30
            return recv_all(conn, deadline)
        for engine in ENGINES:
            with self.subTest(engine=engine):
                origin = self.server(handler)
                proxy = self.tcp_proxy(origin, engine=engine)
                c = self.dial(proxy)
                self.assertEqual(recv_exact(c, 15), b"banner and bye\n")
                c.settimeout(10)
                self.assertEqual(c.recv(10), b"", "the server's FIN did not reach the client")
                send_all(c, 8 * MiB, 9, time.monotonic() + 30)
                c.shutdown(socket.SHUT_WR)
                results = origin.wait_results(1, 10)
                self.assertEqual(results, [(8 * MiB, expected_digest(8 * MiB, 9))])

    def test_upstream_reset_resets_client_and_frees_descriptors(self):
        def handler(conn):
            conn.sendall(b"hi")
            recv_exact(conn, 5)
            reset_on_close(conn)
            return "reset"
        for engine in ENGINES:
            with self.subTest(engine=engine):
                origin = self.server(handler)
                proxy = self.tcp_proxy(origin, engine=engine)
                time.sleep(0.2)
                baseline = fd_count(proxy.pid)
                for _ in range(5):
                    c = self.dial(proxy)
                    self.assertEqual(recv_exact(c, 2), b"hi")
                    c.sendall(b"hello")
                    c.settimeout(5)
                    try:
                        data = c.recv(100)
                        self.assertEqual(data, b"", "expected the connection to end")
                        reset = False
                    except ConnectionResetError:
                        reset = True
                    self.assertTrue(reset, "the upstream's reset was not passed on as a reset")
                    c.close()
                self.assertFdsBackTo(proxy, baseline)
                self.assertEqual(metrics(proxy)["switchyard_tunnels_open"], 0)

    def test_idle_timeout_closes_tunnel(self):
        def handler(conn):
            conn.sendall(b"ready")
            conn.settimeout(30)
            got = b""
            try:
                while True:  # until the proxy closes the idle tunnel
                    chunk = conn.recv(10)
                    if not chunk:
                        return got
                    got += chunk
            except OSError as e:
                return repr(e)
        for engine in ENGINES:
            with self.subTest(engine=engine):
                origin = self.server(handler)
                proxy = self.tcp_proxy(origin, engine=engine, timeouts={"tunnel_idle": "1s"})
                baseline = fd_count(proxy.pid)
                c = self.dial(proxy)
                self.assertEqual(recv_exact(c, 5), b"ready")
                # Traffic keeps it open past the timeout...
                for _ in range(4):
                    time.sleep(0.4)
                    c.sendall(b".")
                # ...silence closes it.
                t0 = time.monotonic()
                c.settimeout(10)
                self.assertEqual(c.recv(100), b"", "idle tunnel not closed")
                waited = time.monotonic() - t0
                self.assertGreater(waited, 0.5)
                self.assertLess(waited, 4.0)
                self.assertEqual(origin.wait_results(1, 5), [b"...."])
                self.assertFdsBackTo(proxy, baseline + 1)  # + the client socket the test holds

    def test_connections_are_balanced_and_limited(self):
        def handler(conn):
            conn.sendall(conn.getsockname()[1].to_bytes(2, "big"))
            conn.settimeout(10)
            conn.recv(1)
        a, b = self.server(handler), self.server(handler)
        proxy = self.tcp_proxy(a, b)
        ports = []
        for _ in range(4):
            c = self.dial(proxy)
            ports.append(int.from_bytes(recv_exact(c, 2), "big"))
            c.close()
        self.assertEqual(len(set(ports)), 2, f"rr did not alternate: {ports}")

    def test_many_concurrent_tunnels(self):
        size, n = 4 * MiB, 24
        for engine in ENGINES:
            with self.subTest(engine=engine):
                # Sockmap: both ends wait a little before sending, so that each tunnel joins the
                # sockhash before its peers are done. Sending at once, a 4 MiB transfer often
                # ended within the set-up's drain rounds (a side with a FIN cannot join), and
                # fewer than half the tunnels were sockmap ones on a loaded machine, whatever the
                # fallback engine (seen with splice and copy alike).
                delay = 0.3 if engine == "sockmap" else 0.0
                origin = self.server(bulk_handler(size, 3, delay))
                proxy = self.tcp_proxy(origin, engine=engine)
                baseline = fd_count(proxy.pid)
                got = []

                def one(i):
                    c = socket.create_connection((LOOPBACK, proxy.port), timeout=60)
                    try:
                        time.sleep(delay)
                        got.append(exchange(c, size, 100 + i, timeout=60))
                    finally:
                        c.close()
                threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(90)
                self.assertEqual(got, [(size, expected_digest(size, 3))] * n)
                results = origin.wait_results(n, 30)
                self.assertEqual(sorted(results),
                                 sorted((size, expected_digest(size, 100 + i)) for i in range(n)))
                m = metrics(proxy)
                kinds = {e: m[f'switchyard_tunnels_total{{engine="{e}"}}'] for e in ENGINES}
                self.assertEqual(sum(kinds.values()), n)
                if engine == "sockmap":
                    # A tunnel whose peers finished while it was being set up (a side that
                    # already has a FIN cannot join the sockhash) is served by the splice engine.
                    self.assertGreaterEqual(kinds["sockmap"], n // 2)
                else:
                    self.assertEqual(kinds[engine], n)
                self.assertFdsBackTo(proxy, baseline)

    def test_shutdown_deadline_closes_open_tunnels(self):
        def handler(conn):
            conn.sendall(b"hi")
            conn.settimeout(30)
            try:
                while conn.recv(100):
                    pass
            except OSError:
                pass
            return "closed"
        for engine in ENGINES:
            with self.subTest(engine=engine):
                origin = self.server(handler)
                proxy = self.tcp_proxy(origin, engine=engine, timeouts={"shutdown": "1s"})
                c = self.dial(proxy)
                self.assertEqual(recv_exact(c, 2), b"hi")
                t0 = time.monotonic()
                code = proxy.stop(timeout=10)
                self.assertIsNotNone(code, "proxy did not exit with a tunnel open")
                self.assertLess(time.monotonic() - t0, 5)
                self.assertEqual(origin.wait_results(1, 5), ["closed"])

    def test_no_server_closes_connection(self):
        dead = socket.socket()
        dead.bind((LOOPBACK, 0))
        addr = f"{LOOPBACK}:{dead.getsockname()[1]}"
        dead.close()  # nothing listens there: connect is refused

        class Dead:
            address = addr
        proxy = self.tcp_proxy(Dead())
        c = self.dial(proxy)
        c.settimeout(10)
        try:
            self.assertEqual(c.recv(10), b"")
        except ConnectionResetError:
            pass


class WebSocketTest(TunnelTestBase):
    def ws_proxy(self, origin, engine="splice"):
        d = tempfile.mkdtemp(prefix="switchyard-ws-")
        self.addCleanup(shutil.rmtree, d, True)
        config = proxy_config([origin.address])
        config["splice"] = splice_block(engine)
        config["admin"] = admin_block(d, metrics_bind=f"{LOOPBACK}:0")
        return self.start_proxy(config)

    def handshake(self, c, extra: bytes = b"") -> bytes:
        key = base64.b64encode(os.urandom(16))
        c.sendall(b"GET /chat HTTP/1.1\r\nHost: example\r\nUpgrade: websocket\r\n"
                  b"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: " + key +
                  b"\r\nSec-WebSocket-Version: 13\r\n\r\n" + extra)
        head, rest = read_head(c)
        self.assertTrue(head.startswith(b"HTTP/1.1 101 "), head)
        self.assertEqual(header(head, "upgrade").lower(), "websocket")
        self.assertIn("upgrade", header(head, "connection").lower())
        self.assertEqual(header(head, "sec-websocket-accept"), ws_accept_key(key))
        return rest

    def test_websocket_echo(self):
        for engine in ENGINES:
            with self.subTest(engine=engine):
                origin = self.server(ws_echo_handler)
                proxy = self.ws_proxy(origin, engine=engine)
                baseline = fd_count(proxy.pid)
                c = self.dial(proxy)
                # A frame sent right behind the handshake (before the 101) must arrive too.
                rest = self.handshake(c, ws_frame(1, b"eager", mask=True))

                src = Prefixed(c, rest)
                self.assertEqual(ws_read_frame(src), (1, b"hello from the origin"))
                self.assertEqual(ws_read_frame(src), (1, b"eager"))
                for i, size in enumerate((0, 125, 126, 65535, 65536, 3 * MiB)):
                    payload = os.urandom(size)
                    c.sendall(ws_frame(2, payload, mask=True))
                    self.assertEqual(ws_read_frame(src), (2, payload), f"frame {i} ({size} B)")
                if engine == "sockmap":
                    # The kernel's byte counts reach /metrics while the tunnel is still open.
                    deadline = time.monotonic() + 5
                    while time.monotonic() < deadline:
                        live = metrics(proxy)['switchyard_forwarded_bytes_total{method="sockmap"}']
                        if live > 3 * MiB:
                            break
                        time.sleep(0.2)
                    self.assertGreater(live, 3 * MiB, "sockmap bytes not published while open")
                    self.assertEqual(metrics(proxy)["switchyard_tunnels_open"], 1)
                c.sendall(ws_frame(8, b"\x03\xe8bye", mask=True))
                self.assertEqual(ws_read_frame(src), (8, b"\x03\xe8bye"))
                c.shutdown(socket.SHUT_WR)
                c.settimeout(10)
                self.assertEqual(c.recv(10), b"")
                self.assertEqual(origin.wait_results(1, 5), [("closed", 7)])
                m = metrics(proxy)
                self.assertEqual(m[f'switchyard_tunnels_total{{engine="{engine}"}}'], 1)
                kernel = engine_bytes(m, "sockmap")
                if engine == "sockmap":
                    self.assertGreater(kernel, 3 * MiB, "sockmap counter did not move")
                else:
                    self.assertEqual(kernel, 0)
                if engine == "splice":
                    self.assertGreater(engine_bytes(m, "splice"), 3 * MiB, "nothing spliced")
                    self.assertLess(engine_bytes(m, "copy"), 64 * 1024)  # heads, eager frames
                else:
                    self.assertEqual(engine_bytes(m, "splice"), 0)
                log = proxy.wait_access_log(1)
                self.assertEqual(log[-1]["status"], 101)
                self.assertGreater(log[-1]["bytes_in"], 3 * MiB)
                c.close()
                self.assertFdsBackTo(proxy, baseline)

    def test_upgrade_refused_connection_continues(self):
        origin = self.server(ws_echo_handler)
        proxy = self.ws_proxy(origin)
        c = self.dial(proxy)
        # The origin answers a request without Upgrade with a plain 200, and the same
        # connection then carries the upgrade.
        c.sendall(b"GET /plain HTTP/1.1\r\nHost: example\r\n\r\n")
        head, rest = read_head(c)
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        if len(rest) < 11:
            rest += recv_exact(c, 11 - len(rest))
        self.assertEqual(rest, b"plain http\n")
        self.handshake(c)

    def test_upgrade_not_forwarded_when_disabled(self):
        seen = []

        def handler(conn):
            head, _ = read_head(conn, 30)
            seen.append(head)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno")
        origin = self.server(handler)
        config = proxy_config([origin.address])
        config["listeners"][0]["websocket"] = False
        proxy = self.start_proxy(config)
        c = self.dial(proxy)
        c.sendall(b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        head, _ = read_head(c)
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        self.assertIsNone(header(seen[0], "upgrade"), seen[0])


def echo_handler(conn):
    """Echoes every byte back until the client's FIN, then ends its side too."""
    total = 0
    while True:
        data = conn.recv(1 << 20)
        if not data:
            conn.shutdown(socket.SHUT_WR)
            return total
        conn.sendall(data)
        total += len(data)


class Buffered:
    """Reads heads and bodies off a socket, keeping what was read past them (pipelining)."""

    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def _fill(self, deadline):
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"EOF with {self.buf!r} buffered")
        self.buf += chunk

    def head(self, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        return head

    def exact(self, n: int, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            self._fill(deadline)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self) -> tuple[bytes, bytes]:
        """(head, body) of one Content-Length response."""
        head = self.head()
        return head, self.exact(int(header(head, "content-length")))


def http_origin(name: str):
    """A keep-alive HTTP/1.1 origin answering every request (no body) with "<name> <target>"."""
    def handle(conn):
        served = []
        src = Buffered(conn)
        while True:
            try:
                head = src.head(30)
            except (ConnectionError, OSError):
                return served
            target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode()
            served.append(target)
            body = f"{name} {target}".encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    return handle


class FixedRouteTunnelTest(TunnelTestBase):
    """CONNECT (routes with `connect`) and per-connection routes: HTTP connections that become
    tunnels to a server of the route's pool."""

    def http_proxy(self, routes, pools, engine="splice"):
        d = tempfile.mkdtemp(prefix="switchyard-fixed-")
        self.addCleanup(shutil.rmtree, d, True)
        config = proxy_config(pools=pools, routes=routes)
        config["splice"] = splice_block(engine)
        config["admin"] = admin_block(d, metrics_bind=f"{LOOPBACK}:0")
        return self.start_proxy(config)

    def connect_proxy(self, db, app, engine="splice"):
        return self.http_proxy(
            routes={"main": [
                {"match": {"method": "CONNECT", "host": "db.example"},
                 "connect": {"ports": [443, 5432]}, "pool": "db"},
                {"pool": "app"}]},
            pools={"db": {"servers": [db.address]}, "app": {"servers": [app.address]}},
            engine=engine)

    def test_connect_tunnels_to_the_route_pool(self):
        size = 8 * MiB
        for engine in ENGINES:
            with self.subTest(engine=engine):
                db = self.server(echo_handler)
                app = self.server(http_origin("app"))
                proxy = self.connect_proxy(db, app, engine)
                baseline = fd_count(proxy.pid)
                c = self.dial(proxy)
                # Bytes right behind the CONNECT head (a TLS ClientHello, typically) go too.
                c.sendall(b"CONNECT db.example:5432 HTTP/1.1\r\nHost: db.example:5432\r\n\r\n"
                          b"eager")
                head, rest = read_head(c)
                self.assertEqual(head, b"HTTP/1.1 200 Connection Established")
                if len(rest) < 5:
                    rest += recv_exact(c, 5 - len(rest))
                self.assertEqual(rest, b"eager")
                got = exchange(c, size, 7, timeout=60)
                self.assertEqual(got, (size, expected_digest(size, 7)))
                self.assertEqual(db.wait_results(1, 10), [size + 5])
                self.assertEqual(app.accepted, 0)
                log = proxy.wait_access_log(1)
                self.assertEqual(log[-1]["status"], 200)
                self.assertEqual(log[-1]["method"], "CONNECT")
                self.assertEqual(log[-1]["upstream"], db.address)
                self.assertGreaterEqual(log[-1]["bytes_in"], size)
                self.assertGreaterEqual(log[-1]["bytes_out"], size)
                m = metrics(proxy)
                self.assertEqual(m[f'switchyard_tunnels_total{{engine="{engine}"}}'], 1)
                if engine == "splice":
                    self.assertGreaterEqual(engine_bytes(m, "splice"), 2 * size)
                self.assertFdsBackTo(proxy, baseline + 1)  # + the client socket the test holds

    def test_connect_refusals(self):
        db = self.server(echo_handler)
        app = self.server(http_origin("app"))
        proxy = self.connect_proxy(db, app)
        cases = [
            # A port the route does not allow.
            (b"CONNECT db.example:22 HTTP/1.1\r\nHost: db.example:22\r\n\r\n", b"403"),
            # Matched by a route without `connect`.
            (b"CONNECT other.example:443 HTTP/1.1\r\nHost: other.example:443\r\n\r\n", b"501"),
            # Not host:port.
            (b"CONNECT db.example HTTP/1.1\r\nHost: db.example\r\n\r\n", b"400"),
            # A CONNECT with a body.
            (b"CONNECT db.example:443 HTTP/1.1\r\nHost: db.example:443\r\n"
             b"Content-Length: 3\r\n\r\nabc", b"400"),
        ]
        for request, status in cases:
            with self.subTest(request=request):
                c = self.dial(proxy)
                c.sendall(request)
                head, _ = read_head(c)
                self.assertEqual(head.split(b" ")[1], status, head)
        self.assertEqual(db.accepted, 0)
        # The listener still serves ordinary requests.
        c = self.dial(proxy)
        c.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(Buffered(c).response()[1], b"app /x")

    def test_connect_to_a_dead_server_is_503(self):
        dead = socket.socket()
        dead.bind((LOOPBACK, 0))
        addr = f"{LOOPBACK}:{dead.getsockname()[1]}"
        dead.close()

        class Dead:
            address = addr
        app = self.server(http_origin("app"))
        proxy = self.connect_proxy(Dead(), app)
        c = self.dial(proxy)
        c.sendall(b"CONNECT db.example:443 HTTP/1.1\r\nHost: db.example:443\r\n\r\n")
        head, _ = read_head(c)
        self.assertTrue(head.startswith(b"HTTP/1.1 503"), head)

    def test_per_connection_route_keeps_the_connection_on_its_server(self):
        for engine in ("splice", "copy"):
            with self.subTest(engine=engine):
                a = self.server(http_origin("A"))
                b = self.server(http_origin("B"))
                proxy = self.http_proxy(
                    routes={"main": [
                        {"match": {"path_prefix": "/a/"}, "per_connection": True, "pool": "pa"},
                        {"pool": "pb"}]},
                    pools={"pa": {"servers": [a.address]}, "pb": {"servers": [b.address]}},
                    engine=engine)
                c = self.dial(proxy)
                r = Buffered(c)
                # Before the per-connection route: requests are routed one by one.
                c.sendall(b"GET /b/0 HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertEqual(r.response()[1], b"B /b/0")
                c.sendall(b"GET /a/1 HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertEqual(r.response()[1], b"A /a/1")
                # From now on the connection is A's, whatever the path says.
                c.sendall(b"GET /b/2 HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertEqual(r.response()[1], b"A /b/2")
                # Pipelined, unparsed by the proxy: still A.
                c.sendall(b"GET /b/3 HTTP/1.1\r\nHost: x\r\n\r\n"
                          b"GET /b/4 HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertEqual(r.response()[1], b"A /b/3")
                self.assertEqual(r.response()[1], b"A /b/4")
                # A new connection is routed afresh.
                c2 = self.dial(proxy)
                c2.sendall(b"GET /b/5 HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertEqual(Buffered(c2).response()[1], b"B /b/5")
                c2.close()
                c.shutdown(socket.SHUT_WR)
                c.settimeout(10)
                self.assertEqual(r.buf + c.recv(10), b"")  # A saw our FIN and closed: the tunnel ends
                c.close()
                self.assertEqual(a.wait_results(1, 10), [["/a/1", "/b/2", "/b/3", "/b/4"]])
                self.assertEqual(a.accepted, 1)
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    tunnel_lines = [e for e in proxy.access_log() if e["path"] == "/a/1"]
                    if tunnel_lines:
                        break
                    time.sleep(0.05)
                self.assertEqual(len(tunnel_lines), 1)
                line = tunnel_lines[0]
                self.assertEqual(line["status"], 0)  # the responses were not parsed
                self.assertEqual(line["upstream"], a.address)
                # Every request after /a/1 went through the tunnel, and every response came back.
                requests = b"GET /b/2 HTTP/1.1\r\nHost: x\r\n\r\n" * 3
                self.assertGreater(line["bytes_in"], len(requests))
                self.assertGreater(line["bytes_out"], 4 * len(b"HTTP/1.1 200 OK\r\n"))
                m = metrics(proxy)
                self.assertEqual(m[f'switchyard_tunnels_total{{engine="{engine}"}}'], 1)
                if engine == "splice":
                    # What was not already read with the first request went by splice(2).
                    self.assertGreater(engine_bytes(m, "splice"), len(requests))


def tls_name_handler(ctx_factory, name: str):
    """A TLS origin (TLS terminated here, not by the proxy): answers "<name> <sni> <bytes>"."""
    def handle(conn):
        seen = []
        ctx = ctx_factory()
        ctx.sni_callback = lambda sock, server_name, c: seen.append(server_name)
        tls = ctx.wrap_socket(conn, server_side=True)
        data = tls.recv(100)
        sni = seen[0] if seen and seen[0] else "-"  # called with None without SNI
        tls.sendall(f"{name} {sni} ".encode() + data)
        tls.close()
        return sni
    return handle


class SniRoutingTest(TunnelTestBase):
    """`mode: tcp` listeners with `sni:`: the pool by the ClientHello's server name, TLS passed
    through untouched to origins that terminate it."""

    @classmethod
    def setUpClass(cls):
        import ssl
        from test_tls import OPENSSL, make_cert
        if OPENSSL is None:
            raise unittest.SkipTest("the openssl command is not installed")
        cls.ssl = ssl
        cls.dir = tempfile.mkdtemp(prefix="switchyard-sni-")
        cls.cert = make_cert(cls.dir, "origin", "origin.test", ["a.example", "*.b.example"])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, True)

    def server_ctx(self):
        ctx = self.ssl.SSLContext(self.ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*self.cert)
        return ctx

    def ask(self, proxy, server_hostname):
        ctx = self.ssl.SSLContext(self.ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = self.ssl.CERT_NONE
        raw = self.dial(proxy)
        with ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
            tls.sendall(b"ping")
            out = b""
            while True:
                chunk = tls.recv(100)
                if not chunk:
                    return out.decode()
                out += chunk

    def test_pool_by_server_name(self):
        for engine in ("splice", "copy"):
            with self.subTest(engine=engine):
                a = self.server(tls_name_handler(self.server_ctx, "A"))
                b = self.server(tls_name_handler(self.server_ctx, "B"))
                d = self.server(tls_name_handler(self.server_ctx, "D"))
                tmp = tempfile.mkdtemp(prefix="switchyard-sni-")
                self.addCleanup(shutil.rmtree, tmp, True)
                config = proxy_config(
                    pools={"pa": {"servers": [a.address]}, "pb": {"servers": [b.address]},
                           "pd": {"servers": [d.address]}},
                    routes={"main": [{"pool": "pd"}]},
                    listeners=[{"name": "tls", "bind": f"{LOOPBACK}:0", "mode": "tcp",
                                "pool": "pd",
                                "sni": {"a.example": "pa", "*.b.example": "pb"}}])
                config["splice"] = splice_block(engine)
                config["admin"] = admin_block(tmp, metrics_bind=f"{LOOPBACK}:0")
                proxy = self.start_proxy(config)
                self.assertEqual(self.ask(proxy, "a.example"), "A a.example ping")
                self.assertEqual(self.ask(proxy, "x.b.example"), "B x.b.example ping")
                self.assertEqual(self.ask(proxy, "deep.x.b.example"), "B deep.x.b.example ping")
                self.assertEqual(self.ask(proxy, "b.example"), "D b.example ping")  # not *.b
                self.assertEqual(self.ask(proxy, "c.example"), "D c.example ping")
                self.assertEqual(self.ask(proxy, None), "D - ping")  # no SNI: the default
                # Not TLS at all: the default pool gets the bytes as they are.
                c = self.dial(proxy)
                c.sendall(b"GET / HTTP/1.0\r\n\r\n")
                c.settimeout(10)
                try:
                    c.recv(100)
                except OSError:
                    pass
                deadline = time.monotonic() + 5
                while d.accepted < 4 and time.monotonic() < deadline:
                    time.sleep(0.05)
                self.assertEqual((a.accepted, b.accepted, d.accepted), (1, 2, 4))
                m = metrics(proxy)
                self.assertEqual(m[f'switchyard_tunnels_total{{engine="{engine}"}}'], 7)

    def test_silent_client_is_closed_after_the_header_timeout(self):
        d = self.server(tls_name_handler(self.server_ctx, "D"))
        config = proxy_config(
            pools={"pd": {"servers": [d.address]}}, routes={"main": [{"pool": "pd"}]},
            listeners=[{"name": "tls", "bind": f"{LOOPBACK}:0", "mode": "tcp", "pool": "pd",
                        "sni": {"a.example": "pd"}}],
            timeouts={"client_header": "500ms"})
        proxy = self.start_proxy(config)
        c = self.dial(proxy)
        c.settimeout(10)
        t0 = time.monotonic()
        try:
            self.assertEqual(c.recv(10), b"")
        except ConnectionResetError:
            pass
        self.assertLess(time.monotonic() - t0, 5)
        self.assertEqual(d.accepted, 0)


class ExampleConfigTest(TunnelTestBase):
    def test_config_tunnels_yaml(self):
        def db_handler(conn):
            data = recv_exact(conn, 4)
            conn.sendall(b"db:" + data)
            return data
        db1, db2 = self.server(db_handler), self.server(db_handler)
        web = self.server(ws_echo_handler)
        proxy = self.start_proxy(example_config("tunnels.yaml", {
            "127.0.0.1:9001": db1.address, "127.0.0.1:9002": db2.address,
            "127.0.0.1:9003": web.address}))
        c = socket.create_connection((LOOPBACK, proxy.ports["db"]), timeout=10)
        self.addCleanup(c.close)
        c.sendall(b"ping")
        self.assertEqual(recv_exact(c, 7), b"db:ping")
        w = socket.create_connection((LOOPBACK, proxy.ports["web"]), timeout=10)
        self.addCleanup(w.close)
        key = base64.b64encode(os.urandom(16))
        w.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
        head, _ = read_head(w)
        self.assertTrue(head.startswith(b"HTTP/1.1 101 "), head)
        self.assertEqual(db1.accepted + db2.accepted, 1)


if __name__ == "__main__":
    unittest.main()
