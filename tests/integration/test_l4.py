"""End-to-end tests of the L4 fast path (src/l4/) in network namespaces, with real TCP.

Each test builds its own small network out of namespaces and veth pairs, all named after this
process's pid, and removes it afterwards (addCleanup), including the director's pinned maps:

    cli 10.77.1.2 --- 10.77.1.1 rtr 10.77.2.1 (bridge br0) ---+--- 10.77.2.10 dir  (XDP on eth0)
                                                              +--- 10.77.2.21 rs1 (HTTP origin)
                                                              +--- 10.77.2.22 rs2
                                                              +--- 10.77.2.23 rs3
    VIP 10.77.100.1:80, routed by rtr to the director.

NAT: the real servers' default route is the director (replies come back through it).
DR/TUN: it is the router (replies go straight to the client); real servers are prepared with
`switchyard realserver --mode dr|tun`.

Only addresses inside these namespaces are used. Needs root, iproute2, curl and nsenter; the
tests skip with the reason when the kernel or the host lacks one of them.
"""

from __future__ import annotations

import itertools
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

from harness import switchyard_bin

VIP = "10.77.100.1"
DIRECTOR = "10.77.2.10"
ROUTER_LAN = "10.77.2.1"
REALS = ["10.77.2.21", "10.77.2.22", "10.77.2.23"]

# A small HTTP/1.1 origin (keep-alive), run inside a real server's namespace:
#   GET /         -> "<name>\n"
#   GET /healthz  -> 200, or 503 while the file <flagdir>/<name>.down exists
#   GET /big      -> 1 MiB
#   POST /        -> "<name> <bytes received>\n"
ORIGIN = textwrap.dedent(r"""
    import http.server, os, sys
    name, flagdir = sys.argv[1], sys.argv[2]
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def log_message(self, *a): pass
        def send(self, code, body):
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def do_GET(self):
            if self.path == "/healthz":
                down = os.path.exists(os.path.join(flagdir, name + ".down"))
                return self.send(503 if down else 200, b"down\n" if down else b"ok\n")
            if self.path == "/big":
                return self.send(200, b"x" * (1 << 20))
            self.send(200, (name + "\n").encode())
        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            got = 0
            while got < n:
                chunk = self.rfile.read(min(65536, n - got))
                if not chunk: break
                got += len(chunk)
            self.send(200, f"{name} {got}\n".encode())
    class S(http.server.ThreadingHTTPServer):
        allow_reuse_address = True
        daemon_threads = True
    server = S(("0.0.0.0", 80), H)
    print("ready", flush=True)
    server.serve_forever()
""")

# A keep-alive client inside the client namespace: one request per line on stdin, prints each
# response body; exits (EOF on stdout) if the connection breaks.
KEEPALIVE = textwrap.dedent(r"""
    import socket, sys
    s = socket.create_connection((sys.argv[1], 80), timeout=5)
    print("connected", flush=True)
    for _ in sys.stdin:
        s.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                sys.exit("connection closed")
            buf += chunk
        head, body = buf.split(b"\r\n\r\n", 1)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(body) < length:
            chunk = s.recv(4096)
            if not chunk:
                sys.exit("connection closed")
            body += chunk
        print(body.decode().strip(), flush=True)
""")

_counter = itertools.count()


def run(*args: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, timeout=timeout, capture_output=True, text=True)


def missing_prerequisite() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, XDP)"
    for tool in ("ip", "curl", "nsenter"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    if not os.access(switchyard_bin(), os.X_OK):
        return f"switchyard binary not found at {switchyard_bin()}"
    probe = f"syprobe{os.getpid()}"
    r = run("ip", "netns", "add", probe, check=False)
    if r.returncode != 0:
        return f"cannot create a network namespace: {r.stderr.strip()}"
    run("ip", "netns", "del", probe, check=False)
    return None


class Lab:
    """The namespaces, links, origins and director of one test; everything is undone by close()."""

    def __init__(self, test: unittest.TestCase, mode: str, lan_mtu: int = 1500):
        self.test = test
        self.mode = mode
        self.tag = f"sy{os.getpid()}x{next(_counter)}"
        self.tmp = tempfile.mkdtemp(prefix="sy-l4-")
        self.flagdir = os.path.join(self.tmp, "flags")
        os.mkdir(self.flagdir)
        self.pin_path = f"/sys/fs/bpf/{self.tag}"
        self.namespaces: list[str] = []
        self.processes: list[subprocess.Popen] = []
        self.director: subprocess.Popen | None = None
        self.director_logs: list[str] = []
        self.lan_mtu = lan_mtu
        test.addCleanup(self.close)
        self._build()

    # -- namespaces -------------------------------------------------------------------------

    def ns(self, short: str) -> str:
        return f"{self.tag}{short}"

    def sh(self, short: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run("ip", "netns", "exec", self.ns(short), *args, check=check)

    def _build(self):
        for short in ("cli", "rtr", "dir", "rs1", "rs2", "rs3"):
            run("ip", "netns", "add", self.ns(short))
            self.namespaces.append(self.ns(short))
            self.sh(short, "ip", "link", "set", "lo", "up")
        rtr = self.ns("rtr")
        run("ip", "-n", rtr, "link", "add", "c0", "type", "veth", "peer", "name", "eth0",
            "netns", self.ns("cli"))
        run("ip", "-n", rtr, "link", "add", "br0", "type", "bridge")
        ports = {"dir": "p0", "rs1": "p1", "rs2": "p2", "rs3": "p3"}
        for host, port in ports.items():
            run("ip", "-n", rtr, "link", "add", port, "mtu", str(self.lan_mtu), "type", "veth",
                "peer", "name", "eth0", "mtu", str(self.lan_mtu), "netns", self.ns(host))
            run("ip", "-n", rtr, "link", "set", port, "master", "br0", "up")
        run("ip", "-n", rtr, "link", "set", "br0", "mtu", str(self.lan_mtu), "up")
        run("ip", "-n", rtr, "link", "set", "c0", "up")
        run("ip", "-n", rtr, "addr", "add", "10.77.1.1/24", "dev", "c0")
        run("ip", "-n", rtr, "addr", "add", f"{ROUTER_LAN}/24", "dev", "br0")
        run("ip", "-n", rtr, "route", "add", f"{VIP}/32", "via", DIRECTOR)
        self.sh("rtr", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        addresses = {"cli": "10.77.1.2/24", "dir": f"{DIRECTOR}/24"}
        for i, host in enumerate(("rs1", "rs2", "rs3")):
            addresses[host] = f"{REALS[i]}/24"
        for host, address in addresses.items():
            n = self.ns(host)
            run("ip", "-n", n, "addr", "add", address, "dev", "eth0")
            run("ip", "-n", n, "link", "set", "eth0", "up")
        run("ip", "-n", self.ns("cli"), "route", "add", "default", "via", "10.77.1.1")
        run("ip", "-n", self.ns("dir"), "route", "add", "default", "via", ROUTER_LAN)
        self.sh("dir", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # NAT: replies must come back through the director; DR/TUN: straight to the router.
        gateway = DIRECTOR if self.mode == "nat" else ROUTER_LAN
        for host in ("rs1", "rs2", "rs3"):
            run("ip", "-n", self.ns(host), "route", "add", "default", "via", gateway)
            if self.mode in ("dr", "tun"):
                args = ["--mode", self.mode, "--vip", VIP]
                if self.mode == "tun":
                    args += ["--dev", "eth0"]
                r = self.sh(host, switchyard_bin(), "realserver", *args)
                self.test.assertIn("realserver", r.stdout)
            self._start_origin(host)

    def _start_origin(self, host: str):
        p = subprocess.Popen(["ip", "netns", "exec", self.ns(host), sys.executable, "-c", ORIGIN,
                              host, self.flagdir],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             start_new_session=True)
        self.processes.append(p)
        ready, _, _ = select.select([p.stdout], [], [], 10)
        self.test.assertTrue(ready and p.stdout.readline().strip() == "ready",
                             f"origin in {host} did not start")

    # -- director ---------------------------------------------------------------------------

    def config(self, scheduler: str = "rr", on_down: str = "keep") -> str:
        servers = ", ".join(f"{a}:80" for a in REALS)
        return textwrap.dedent(f"""\
            l4:
              interfaces: [eth0]
              xdp_mode: generic
              pin_path: {self.pin_path}
              services:
                - name: web
                  vip: {VIP}:80
                  scheduler: {scheduler}
                  mode: {self.mode}
                  on_down: {on_down}
                  health: {{ http: {{ path: /healthz }}, interval: 200ms, timeout: 150ms, rise: 1, fall: 1 }}
                  servers: [{servers}]
            """)

    def start_director(self, config: str | None = None):
        path = os.path.join(self.tmp, "director.yaml")
        with open(path, "w") as f:
            f.write(config or self.config())
        log = open(os.path.join(self.tmp, f"director{len(self.director_logs)}.log"), "w+")
        self.director_logs.append(log.name)
        # nsenter --net (not `ip netns exec`): keeps the host's mount namespace, so the pinned
        # maps land in the host's bpffs and outlive the process, as on a real director.
        self.director = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.ns('dir')}", "--", switchyard_bin(), "run",
             "-c", path],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()  # the child has its own descriptor
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            text = self.director_log()
            if "switchyard ready" in text:
                return
            if self.director.poll() is not None:
                break
            if "cannot attach XDP" in text and "generic" in text:
                self.test.skipTest("kernel refuses generic XDP: " + text[-300:])
            time.sleep(0.05)
        self.test.fail("director did not start:\n" + self.director_log())

    def counters(self) -> dict[str, int]:
        """The data path's global counters, via `switchyard l4 status` on the pinned maps."""
        r = run(switchyard_bin(), "l4", "status", "--pin-path", self.pin_path)
        out = {}
        for line in r.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                out[parts[0]] = int(parts[1])
        return out

    def director_log(self) -> str:
        with open(self.director_logs[-1]) as f:
            return f.read()

    def stop_director(self):
        if self.director is None:
            return
        if self.director.poll() is None:
            os.killpg(self.director.pid, signal.SIGTERM)
            try:
                self.director.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.director.pid, signal.SIGKILL)
                self.director.wait(timeout=5)
        self.director = None

    # -- clients ----------------------------------------------------------------------------

    def curl(self, path: str = "/", extra: tuple[str, ...] = (), timeout: float = 5) -> str:
        r = self.sh("cli", "curl", "-sS", "--max-time", str(timeout), *extra,
                    f"http://{VIP}{path}", check=False)
        if r.returncode != 0:
            return f"error: {r.stderr.strip()}"
        return r.stdout.strip()

    def wait_serving(self, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        answer = ""
        while time.monotonic() < deadline:
            answer = self.curl(timeout=1)
            if answer in ("rs1", "rs2", "rs3"):
                return answer
            time.sleep(0.1)
        self.test.fail(f"VIP never answered (last: {answer}):\n{self.director_log()}")

    def keepalive(self) -> "KeepAlive":
        k = KeepAlive(self)
        self.processes.append(k.process)
        return k

    # -- teardown ---------------------------------------------------------------------------

    def close(self):
        failed = self.test._outcome is not None and any(
            t is self.test for t, _ in (self.test._outcome.result.failures +
                                        self.test._outcome.result.errors))
        if failed:
            for name in self.director_logs:
                with open(name) as f:
                    sys.stderr.write(f"---- {name}\n{f.read()}\n")
        self.stop_director()
        for p in self.processes:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            for stream in (p.stdin, p.stdout, p.stderr):
                if stream is not None:
                    stream.close()
        for n in reversed(self.namespaces):
            run("ip", "netns", "del", n, check=False)
        shutil.rmtree(self.pin_path, ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


class KeepAlive:
    """One TCP connection from the client namespace to the VIP, used request by request."""

    def __init__(self, lab: Lab):
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", lab.ns("cli"), sys.executable, "-c", KEEPALIVE, VIP],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        assert self._line(10) == "connected"

    def _line(self, timeout: float) -> str:
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            return "timeout"
        line = self.process.stdout.readline()
        if not line:
            return "closed: " + self.process.stderr.read().strip()[-300:]
        return line.strip()

    def ask(self, timeout: float = 10) -> str:
        self.process.stdin.write("GET\n")
        self.process.stdin.flush()
        return self._line(timeout)


class L4TestCase(unittest.TestCase):
    def setUp(self):
        why = missing_prerequisite()
        if why:
            self.skipTest(why)

    def spread(self, lab: Lab, requests: int = 12) -> set[str]:
        answers = [lab.curl() for _ in range(requests)]
        for a in answers:
            self.assertIn(a, ("rs1", "rs2", "rs3"), answers)
        return set(answers)


class NatTest(L4TestCase):
    def test_nat_forwards_tcp_to_every_server(self):
        lab = Lab(self, "nat")
        lab.start_director()
        lab.wait_serving()
        self.assertEqual(self.spread(lab), {"rs1", "rs2", "rs3"})
        self.assertIn("XDP attached to eth0 in generic (SKB) mode", lab.director_log())
        counters = lab.counters()
        self.assertGreaterEqual(counters["conn_new"], 12, counters)
        self.assertGreater(counters["reverse_nat"], 0, counters)
        status = run(switchyard_bin(), "l4", "status", "--pin-path", lab.pin_path).stdout
        self.assertIn(f"{VIP}:80", status)
        self.assertIn("-> 10.77.2.21:80", status)

    def test_nat_large_transfers_both_ways(self):
        lab = Lab(self, "nat")
        lab.start_director()
        lab.wait_serving()
        size = lab.sh("cli", "sh", "-c", f"curl -sS --max-time 10 http://{VIP}/big | wc -c")
        self.assertEqual(size.stdout.strip(), str(1 << 20))
        upload = lab.sh("cli", "sh", "-c",
                        f"head -c 500000 /dev/zero | curl -sS --max-time 10 "
                        f"--data-binary @- http://{VIP}/")
        self.assertRegex(upload.stdout.strip(), r"^rs[123] 500000$")
        # Over veth the stacks hand GSO aggregates around: XDP leaves those to tc.
        counters = lab.counters()
        self.assertGreater(counters["tc_forwarded"], 0, counters)

    def test_down_server_gets_no_new_flows_but_keeps_established_ones(self):
        lab = Lab(self, "nat")
        lab.start_director()
        lab.wait_serving()
        conn = lab.keepalive()
        victim = conn.ask()
        self.assertIn(victim, ("rs1", "rs2", "rs3"))
        open(os.path.join(lab.flagdir, victim + ".down"), "w").close()
        # Health checks every 200 ms with fall 1: the director stops sending new flows to it.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if victim not in {lab.curl() for _ in range(6)}:
                break
            time.sleep(0.2)
        answers = [lab.curl() for _ in range(12)]
        self.assertNotIn(victim, answers)
        self.assertEqual(set(answers), {"rs1", "rs2", "rs3"} - {victim})
        # The established connection still reaches the DOWN server (on_down: keep).
        for _ in range(3):
            self.assertEqual(conn.ask(), victim)
        # Back up: it takes new flows again.
        os.unlink(os.path.join(lab.flagdir, victim + ".down"))
        deadline = time.monotonic() + 10
        seen = set()
        while time.monotonic() < deadline and victim not in seen:
            seen.add(lab.curl())
        self.assertIn(victim, seen)

    def test_restarted_director_keeps_established_flows(self):
        lab = Lab(self, "nat")
        lab.start_director()
        lab.wait_serving()
        # rr cursors are per CPU, so six connections cover at least two servers.
        conns = [lab.keepalive() for _ in range(6)]
        servers = [c.ask() for c in conns]
        self.assertGreaterEqual(len(set(servers)), 2, servers)
        lab.stop_director()
        self.assertIn("XDP detached from eth0", lab.director_log())
        lab.start_director()
        self.assertIn("restored 1 services and 3 real servers", lab.director_log())
        # With fresh rr cursors, forgetting the flows would send some of them to another server
        # (which answers with RST); tests/bpf checks the same deterministically on one CPU.
        for _ in range(2):
            self.assertEqual([c.ask() for c in reversed(conns)], list(reversed(servers)))

    def test_reload_keeps_flows_and_applies_new_servers(self):
        lab = Lab(self, "nat")
        cfg = lab.config()
        lab.start_director(cfg)
        lab.wait_serving()
        conn = lab.keepalive()
        first = conn.ask()
        # Drop rs3 from the service (if it is not the one in use) and switch to mh.
        keep = [a for i, a in enumerate(REALS) if f"rs{i + 1}" == first or i < 2]
        new_cfg = cfg.replace("scheduler: rr", "scheduler: mh").replace(
            ", ".join(f"{a}:80" for a in REALS), ", ".join(f"{a}:80" for a in keep))
        with open(os.path.join(lab.tmp, "director.yaml"), "w") as f:
            f.write(new_cfg)
        os.killpg(lab.director.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "configuration reloaded" not in lab.director_log():
            time.sleep(0.05)
        self.assertEqual(conn.ask(), first)
        allowed = {f"rs{REALS.index(a) + 1}" for a in keep}
        self.assertLessEqual({lab.curl() for _ in range(8)}, allowed)


class DrTest(L4TestCase):
    def test_dr_forwards_tcp_and_replies_bypass_the_director(self):
        lab = Lab(self, "dr")
        lab.start_director()
        lab.wait_serving()
        self.assertEqual(self.spread(lab), {"rs1", "rs2", "rs3"})
        size = lab.sh("cli", "sh", "-c", f"curl -sS --max-time 10 http://{VIP}/big | wc -c")
        self.assertEqual(size.stdout.strip(), str(1 << 20))
        # The real servers answer from the VIP they hold on lo, through the router.
        route = lab.sh("rs1", "ip", "route", "get", "10.77.1.2", "from", VIP)
        self.assertIn(f"via {ROUTER_LAN}", route.stdout)

    def test_dr_down_server_keeps_established_flow(self):
        lab = Lab(self, "dr")
        lab.start_director()
        lab.wait_serving()
        conn = lab.keepalive()
        victim = conn.ask()
        open(os.path.join(lab.flagdir, victim + ".down"), "w").close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and victim in {lab.curl() for _ in range(6)}:
            time.sleep(0.2)
        self.assertNotIn(victim, [lab.curl() for _ in range(9)])
        self.assertEqual(conn.ask(), victim)


class TunTest(L4TestCase):
    def test_tun_forwards_tcp_through_ipip_decapsulated_by_tc(self):
        # The outer header needs 20 bytes more than the client's 1500-byte frames: the
        # director-to-server segment gets MTU 1600 (docs/l4.md, "TUN and MTU").
        lab = Lab(self, "tun", lan_mtu=1600)
        lab.start_director()
        lab.wait_serving()
        self.assertEqual(self.spread(lab), {"rs1", "rs2", "rs3"})
        size = lab.sh("cli", "sh", "-c", f"curl -sS --max-time 10 http://{VIP}/big | wc -c")
        self.assertEqual(size.stdout.strip(), str(1 << 20))
        upload = lab.sh("cli", "sh", "-c",
                        f"head -c 500000 /dev/zero | curl -sS --max-time 10 "
                        f"--data-binary @- http://{VIP}/")
        self.assertRegex(upload.stdout.strip(), r"^rs[123] 500000$")
        # The upload's aggregates were encapsulated by tc (GSO-aware), the rest by XDP.
        counters = lab.counters()
        self.assertGreater(counters["tc_forwarded"], 0, counters)
        self.assertGreater(counters["conn_hit"], 0, counters)
        tc = lab.sh("rs1", "tc", "filter", "show", "dev", "eth0", "ingress")
        self.assertIn("l4_decap", tc.stdout)

    def test_realserver_remove_undoes_the_setup(self):
        lab = Lab(self, "tun", lan_mtu=1600)
        lab.sh("rs1", switchyard_bin(), "realserver", "--mode", "tun", "--vip", VIP, "--dev",
               "eth0", "--remove")
        self.assertNotIn("l4_decap", lab.sh("rs1", "tc", "filter", "show", "dev", "eth0",
                                            "ingress").stdout)
        self.assertNotIn(VIP, lab.sh("rs1", "ip", "addr", "show", "dev", "lo").stdout)


if __name__ == "__main__":
    unittest.main()
