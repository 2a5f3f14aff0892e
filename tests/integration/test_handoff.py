"""TCP handoff end to end (docs/handoff.md), in network namespaces with real TCP.

The network is test_l4's DR lab (client, router, director, real servers on one bridge; the real
servers hold the VIP on lo). The director runs `switchyard run` with an L7 listener on the VIP,
routes marked `handoff` and an l4 service with `handoff: true`; each real server runs
`switchyard agent` in front of its HTTP origin. A request routed by content moves, connection
and all, to the chosen real server, which answers the client directly: the director only
forwards the client's packets (counted on its interface).
"""

from __future__ import annotations

import hashlib
import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
import unittest

from harness import switchyard_bin
from test_l4 import L4TestCase, Lab, REALS, VIP

AGENT_PORT = 7000
GIB = 1 << 30

# Downloads /bytes/N from the VIP (argv[1]: "host" for port 80, or "host:port") on one connection
# and prints
# "<status> <body bytes> <sha256> <server header>"; then, if asked, a second request on the same
# connection ("again" argument) and its line.
CLIENT = textwrap.dedent(r"""
    import hashlib, socket, sys
    vip, path = sys.argv[1], sys.argv[2]
    again = sys.argv[3:]
    host, _, port = vip.partition(":")
    s = socket.create_connection((host, int(port or 80)), timeout=20)
    def one(path):
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: vip\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                sys.exit("connection closed before a response head")
            buf += chunk
        head, body = buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = lines[0].split()[1].decode()
        length, server = 0, "-"
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
            if k.strip().lower() == b"x-server":
                server = v.strip().decode()
        h = hashlib.sha256(body[:length])
        got = min(len(body), length)
        while got < length:
            chunk = s.recv(min(1 << 20, length - got))
            if not chunk:
                break
            h.update(chunk)
            got += len(chunk)
        print(status, got, h.hexdigest(), server, flush=True)
    one(path)
    for p in again:
        one(p)
""")

# The real servers' origin for this test (on 0.0.0.0:8080, the agent's backend): answers every
# request with "X-Server: <name>"; /bytes/N streams N pattern bytes, anything else "<name>\n".
ORIGIN = textwrap.dedent(r"""
    import http.server, sys
    name = sys.argv[1]
    BLOCK = bytes((i * 7 + 3) & 255 for i in range(1 << 20))
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def log_message(self, *a): pass
        def do_GET(self):
            n = len(name) + 1
            if "/bytes/" in self.path:
                n = int(self.path.rsplit("/", 1)[1])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.send_header("X-Server", name)
            self.end_headers()
            if "/bytes/" not in self.path:
                self.wfile.write((name + "\n").encode())
                return
            left = n
            while left > 0:
                piece = BLOCK[:min(left, len(BLOCK))]
                self.wfile.write(piece)
                left -= len(piece)
    class S(http.server.ThreadingHTTPServer):
        allow_reuse_address = True
        daemon_threads = True
    server = S(("0.0.0.0", 8080), H)
    print("ready", flush=True)
    server.serve_forever()
""")


# Accepts connections on argv[1] (host:port) and never sends a byte.
SILENT = textwrap.dedent(r"""
    import socket, sys, time
    host, port = sys.argv[1].rsplit(":", 1)
    s = socket.create_server((host, int(port)))
    print("ready", flush=True)
    held = []
    while True:
        c, _ = s.accept()
        held.append(c)
""")


def pattern_sha256(n: int) -> str:
    block = bytes((i * 7 + 3) & 255 for i in range(1 << 20))
    h = hashlib.sha256()
    left = n
    while left > 0:
        piece = block[:min(left, len(block))]
        h.update(piece)
        left -= len(piece)
    return h.hexdigest()


def process_cpu(pid: int) -> float:
    """utime + stime of a process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class HandoffLab:
    """test_l4's DR lab plus a key, an origin and an agent on rs1 and rs2, and the director."""

    def __init__(self, test: unittest.TestCase, mode: str = "dr"):
        self.test = test
        self.mode = mode
        self.lab = Lab(test, mode)
        self.key = os.path.join(self.lab.tmp, "handoff.key")
        with open(self.key, "wb") as f:
            f.write(os.urandom(32).hex().encode() + b"\n")
        os.chmod(self.key, 0o600)
        self.agents: dict[str, subprocess.Popen] = {}
        self.agent_logs: dict[str, str] = {}
        # The director's L7 listener binds the VIP.
        self.lab.sh("dir", "ip", "addr", "add", f"{VIP}/32", "dev", "lo")
        for host in ("rs1", "rs2"):
            self._start(host, [sys.executable, "-c", ORIGIN, host], "ready")
            self.start_agent(host)

    def _start(self, host: str, argv: list[str], ready: str, log: str | None = None):
        out = open(log, "w+") if log else subprocess.PIPE
        p = subprocess.Popen(["ip", "netns", "exec", self.lab.ns(host), *argv],
                             stdout=out, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
        if log:
            out.close()  # the child has its own descriptor
        self.lab.processes.append(p)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if log:
                with open(log) as f:
                    if ready in f.read():
                        return p
                time.sleep(0.05)
            else:
                r, _, _ = select.select([p.stdout], [], [], 0.2)
                if r and ready in p.stdout.readline():
                    return p
            if p.poll() is not None:
                break
        self.test.fail(f"{argv[:2]} in {host} did not start")

    def start_agent(self, host: str):
        real = REALS[int(host[-1]) - 1]
        log = os.path.join(self.lab.tmp, f"agent-{host}.log")
        self.agent_logs[host] = log
        self.agents[host] = self._start(
            host, [switchyard_bin(), "agent", "--listen", f"{real}:{AGENT_PORT}", "--key",
                   self.key, "--backend", "127.0.0.1:8080"], "listening", log)

    def stop_agent(self, host: str):
        p = self.agents.pop(host)
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=10)

    def agent_log(self, host: str) -> str:
        with open(self.agent_logs[host]) as f:
            return f.read()

    def config(self, extra: str = "", tcp_port: int | None = None) -> str:
        """`extra`: more top-level YAML (e.g. a splice section); `tcp_port`: also a `mode: tcp`
        listener on the VIP at that port, tunnelling to rs1's origin."""
        r1, r2 = REALS[0], REALS[1]
        # (indented like the template's lines, which dedent() strips after formatting)
        tunnel = (f'\n{" " * 14}- {{ name: tunnel, bind: "{VIP}:{tcp_port}", mode: tcp, '
                  f'pool: proxied }}' if tcp_port else "")
        return self.lab.config() .replace(f"mode: {self.mode}",
                                          f"mode: {self.mode}\n      handoff: true") \
            .replace(f", {REALS[2]}:80", "") + textwrap.dedent(f"""\
            workers: 1
            handoff: {{ key_file: {self.key}, timeout: 1s }}
            listeners:
              - {{ name: web, bind: "{VIP}:80", routes: main }}{tunnel}
            routes:
              main:
                - match: {{ path_prefix: /one/ }}
                  pool: one
                  handoff: true
                - match: {{ path_prefix: /two/ }}
                  pool: two
                  handoff: true
                - pool: proxied
            pools:
              one: {{ servers: [{{ address: "{r1}:8080", agent: "{r1}:{AGENT_PORT}" }}] }}
              two: {{ servers: [{{ address: "{r2}:8080", agent: "{r2}:{AGENT_PORT}" }}] }}
              proxied: {{ servers: ["{r1}:8080"] }}
            """) + extra

    def get(self, *paths: str, target: str = VIP) -> list[list[str]]:
        r = self.lab.sh("cli", sys.executable, "-c", CLIENT, target, *paths, check=False)
        agents = "".join(f"---- agent {h}\n{self.agent_log(h)}" for h in self.agent_logs)
        self.test.assertEqual(r.returncode, 0,
                              f"{r.stderr}\n---- director\n{self.lab.director_log()}{agents}")
        return [line.split() for line in r.stdout.splitlines()]

    def interface_bytes(self) -> int:
        total = 0
        for what in ("rx_bytes", "tx_bytes"):
            r = self.lab.sh("dir", "cat", f"/sys/class/net/eth0/statistics/{what}")
            total += int(r.stdout)
        return total

    def director_cpu(self) -> float:
        return process_cpu(self.lab.director.pid)

    def agent_cpu(self, host: str) -> float:
        return process_cpu(self.agents[host].pid)


class HandoffTest(L4TestCase):
    def setUp(self):
        super().setUp()
        self.h = HandoffLab(self)
        self.h.lab.start_director(self.h.config())

    def test_routes_hand_connections_to_the_server_chosen_by_content(self):
        one = self.h.get("/one/x")
        two = self.h.get("/two/x")
        proxied = self.h.get("/elsewhere")
        self.assertEqual(one[0][0], "200")
        self.assertEqual(one[0][3], "rs1")
        self.assertEqual(two[0][3], "rs2")
        self.assertEqual(proxied[0][3], "rs1")
        log = self.h.lab.director_log()
        self.assertNotIn("proxying", log)
        self.assertIn("agent: adopted", self.h.agent_log("rs1"))
        self.assertIn("agent: adopted", self.h.agent_log("rs2"))

    def test_tun_servers_take_handed_off_connections_too(self):
        self.h.lab.stop_director()
        tun = HandoffLab(self, "tun")
        tun.lab.start_director(tun.config())
        answers = tun.get("/one/a", "/two/b")
        self.assertEqual([a[3] for a in answers], ["rs1", "rs1"])
        [[status, _, _, server]] = tun.get("/two/x")
        self.assertEqual((status, server), ("200", "rs2"))
        self.assertIn("agent: adopted", tun.agent_log("rs1"))
        self.assertNotIn("proxying", tun.lab.director_log())

    def test_a_handed_off_connection_stays_with_its_server(self):
        # The second request would route to rs2, but the connection now lives on rs1.
        answers = self.h.get("/one/a", "/two/b")
        self.assertEqual([a[3] for a in answers], ["rs1", "rs1"])

    def download_through_director(self, what: str, target: str):
        """One GET of 1 GiB: (answer, bytes that crossed the director's interface); the time and
        the director's CPU are written to stderr for the note."""
        before_bytes, before_cpu = self.h.interface_bytes(), self.h.director_cpu()
        start = time.monotonic()
        [answer] = self.h.get(target)
        elapsed = time.monotonic() - start
        moved = self.h.interface_bytes() - before_bytes
        cpu = self.h.director_cpu() - before_cpu
        sys.stderr.write(f"\n{what} 1 GiB: {elapsed:.2f} s, director interface bytes {moved}, "
                         f"director CPU {cpu * 1000:.0f} ms\n")
        return answer, moved

    def test_one_gib_download_bypasses_the_director(self):
        [status, got, digest, server], moved = self.download_through_director(
            "handoff", f"/one/bytes/{GIB}")
        self.assertEqual((status, int(got), server), ("200", GIB, "rs1"))
        self.assertEqual(digest, pattern_sha256(GIB))
        # Only the client's ACKs cross the director (in and, forwarded, out): a few MiB.
        self.assertLess(moved, 64 << 20, f"director moved {moved} bytes for 1 GiB handed off")

        # The same download proxied, for comparison: every byte crosses the director twice.
        [status, got, digest, _], moved = self.download_through_director(
            "proxied", f"/bytes/{GIB}")
        self.assertEqual((status, int(got), digest), ("200", GIB, pattern_sha256(GIB)))
        self.assertGreater(moved, 2 * GIB)

    def test_unreachable_agent_falls_back_to_proxying(self):
        self.h.stop_agent("rs1")
        [[status, _, _, server]] = self.h.get("/one/x")
        self.assertEqual((status, server), ("200", "rs1"))
        log = self.h.lab.director_log()
        self.assertRegex(log, r"handoff: .* not handed to agent .*proxying")
        # The agent is back: the next connections move again (after the link's 1 s rest).
        self.h.start_agent("rs1")
        time.sleep(1.2)
        [[status, _, _, server]] = self.h.get("/one/y")
        self.assertEqual((status, server), ("200", "rs1"))
        self.assertIn("agent: adopted", self.h.agent_log("rs1"))

    def test_silent_agent_falls_back_after_the_handoff_timeout(self):
        # Something accepts on the agent's port but never speaks: no Hello, no answer.
        self.h.stop_agent("rs2")
        silent = self.h._start("rs2", [sys.executable, "-c", SILENT, f"{REALS[1]}:{AGENT_PORT}"],
                               "ready")
        start = time.monotonic()
        [[status, _, _, server]] = self.h.get("/two/x")
        waited = time.monotonic() - start
        self.assertEqual((status, server), ("200", "rs2"))
        self.assertGreaterEqual(waited, 0.9)  # handoff.timeout is 1 s
        self.assertRegex(self.h.lab.director_log(),
                         r"not handed to agent .*: no answer within handoff.timeout; proxying")
        # Within the next second the agent is not asked again: proxied at once.
        start = time.monotonic()
        [[status, _, _, server]] = self.h.get("/two/y")
        self.assertLess(time.monotonic() - start, 0.9)
        self.assertEqual((status, server), ("200", "rs2"))
        silent.kill()

    def test_agent_refusing_the_connection_falls_back_to_proxying(self):
        # An agent with another key fails the channel's authentication: nothing is adopted.
        self.h.stop_agent("rs2")
        with open(self.h.key, "wb") as f:
            f.write(os.urandom(32).hex().encode())
        self.h.start_agent("rs2")
        [[status, _, _, server]] = self.h.get("/two/x")
        self.assertEqual((status, server), ("200", "rs2"))
        self.assertNotIn("agent: adopted", self.h.agent_log("rs2"))
        self.assertRegex(self.h.lab.director_log(), r"not handed to agent .*proxying")


if __name__ == "__main__":
    unittest.main()
