"""Mixed-load memory soak: runs a mix of clients against a proxy for a fixed time and samples the
proxy's RSS and open file descriptors every second. Used by `scripts/soak` (10 minutes by
default, figures printed) and, for 20 seconds, by test_faults.py in CI.

The mix, each in its own thread, all on loopback:
  keepalive   GETs on keep-alive connections (reconnecting every 100 requests)
  pipeline    10 pipelined GETs at a time
  upload      POST bodies of 256 KiB, alternately Content-Length and chunked, checked by SHA-256
  download    1 MiB responses, alternately Content-Length and chunked, checked by SHA-256
  http10      HTTP/1.0 requests for chunked responses (de-chunked by the proxy)
  malformed   requests the proxy must refuse (400) and close
  abort       clients that vanish mid-upload or mid-download
  slow        heads that trickle in (but finish before the header timeout)
Every operation is bounded in time; errors are counted, not raised.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
import random
import socket
import sys
import threading
import time

from harness import (Client, Origin, PeerClosed, ProtocolError, Proxy, pattern_sha256,
                     proxy_config, reset_on_close)

MALFORMED = [
    b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
    b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\r\n\r\n",
    b"GET / HTTP/9.9\r\nHost: h\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS hello on the plain port
]


def proxy_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except FileNotFoundError:
        return 0


class Soak:
    def __init__(self, proxy: Proxy, seconds: float, log=None):
        self.proxy = proxy
        self.seconds = seconds
        self.log = log or (lambda msg: None)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ops: collections.Counter = collections.Counter()
        self.errors: collections.Counter = collections.Counter()
        self.error_samples: list[str] = []
        self.samples: list[tuple[float, int, int]] = []  # (t, rss bytes, fds)

    # -- bookkeeping ----------------------------------------------------------------------
    def ok(self, kind: str, n: int = 1) -> None:
        with self.lock:
            self.ops[kind] += n

    def err(self, kind: str, what: str) -> None:
        with self.lock:
            self.errors[kind] += 1
            if len(self.error_samples) < 20:
                self.error_samples.append(f"{kind}: {what}")

    def loop(self, kind: str, body) -> None:
        rng = random.Random(hash(kind) & 0xffff)
        while not self.stop.is_set():
            try:
                body(rng)
            except (OSError, PeerClosed, ProtocolError, TimeoutError, AssertionError) as e:
                self.err(kind, repr(e))
                self.stop.wait(0.05)

    # -- the clients ----------------------------------------------------------------------
    def keepalive(self, rng) -> None:
        with Client(self.proxy.port, timeout=10) as c:
            for i in range(100):
                if self.stop.is_set():
                    return
                r = c.request("GET", f"/k{i}")
                assert r.status == 200, r
                self.ok("keepalive")

    def pipeline(self, rng) -> None:
        with Client(self.proxy.port, timeout=10) as c:
            c.send(b"".join(b"GET /p%d HTTP/1.1\r\nHost: s\r\n\r\n" % i for i in range(10)))
            for i in range(10):
                r = c.read_response()
                assert r.status == 200 and r.body.endswith(b"/p%d\n" % i), r
            self.ok("pipeline", 10)

    def upload(self, rng) -> None:
        size = 256 * 1024
        seed = rng.randrange(1000)
        chunked = rng.random() < 0.5
        with Client(self.proxy.port, timeout=20) as c:
            framing = ("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(size))
            c.send_request("POST", "/echo", [framing])
            digest = c.send_body(size, chunked=chunked, seed=seed, piece_size=16384)
            r = c.read_response()
            assert r.status == 200 and r.header("x-body-sha256") == digest, r
            self.ok("upload")

    def download(self, rng) -> None:
        size = 1024 * 1024
        chunked = rng.random() < 0.5
        with Client(self.proxy.port, timeout=20) as c:
            r = c.request("GET", f"/download?size={size}&seed=3&chunked={int(chunked)}")
            assert r.status == 200 and r.body_length == size, r
            assert hashlib.sha256(r.body).hexdigest() == pattern_sha256(size, 3), "body differs"
            self.ok("download")

    def http10(self, rng) -> None:
        with Client(self.proxy.port, timeout=10) as c:
            r = c.request("GET", "/download?size=100000&seed=5&chunked=1", version="HTTP/1.0")
            assert r.status == 200 and r.body_length == 100000, r
            self.ok("http10")

    def malformed(self, rng) -> None:
        with Client(self.proxy.port, timeout=5) as c:
            c.send(rng.choice(MALFORMED))
            closed, data = c.wait_closed(5)
            assert closed and data.startswith(b"HTTP/1.1 400"), data[:100]
            self.ok("malformed")
        self.stop.wait(0.01)

    def abort(self, rng) -> None:
        s = socket.create_connection(("127.0.0.1", self.proxy.port), timeout=5)
        try:
            if rng.random() < 0.5:
                s.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n" +
                          b"x" * 50000)
            else:
                s.sendall(b"GET /download?size=4000000 HTTP/1.1\r\nHost: a\r\n\r\n")
                s.recv(30000)
            if rng.random() < 0.5:  # sometimes a reset rather than a FIN
                reset_on_close(s)
        finally:
            s.close()
        self.ok("abort")
        self.stop.wait(0.01)

    def slow(self, rng) -> None:
        with Client(self.proxy.port, timeout=10) as c:
            for part in (b"GET /sl", b"ow HTTP/1.1\r\n", b"Host: s\r\n", b"X-A: 1\r\n", b"\r\n"):
                c.send(part)
                self.stop.wait(0.05)
            r = c.read_response()
            assert r.status == 200, r
            self.ok("slow")

    # -- running --------------------------------------------------------------------------
    def sample(self, t0: float) -> None:
        rss = self.proxy.rss_bytes()
        fds = proxy_fds(self.proxy.pid)
        self.samples.append((time.monotonic() - t0, rss, fds))

    def run(self) -> dict:
        kinds = {"keepalive": (self.keepalive, 3), "pipeline": (self.pipeline, 1),
                 "upload": (self.upload, 1), "download": (self.download, 1),
                 "http10": (self.http10, 1), "malformed": (self.malformed, 1),
                 "abort": (self.abort, 1), "slow": (self.slow, 1)}
        threads = []
        for kind, (fn, n) in kinds.items():
            for i in range(n):
                t = threading.Thread(target=self.loop, args=(kind, fn), daemon=True,
                                     name=f"soak-{kind}-{i}")
                threads.append(t)
        t0 = time.monotonic()
        self.sample(t0)
        for t in threads:
            t.start()
        next_report = t0 + 60
        while time.monotonic() - t0 < self.seconds:
            time.sleep(1.0)
            self.sample(t0)
            if time.monotonic() >= next_report:
                next_report += 60
                t, rss, fds = self.samples[-1]
                self.log(f"soak: {t:5.0f}s rss {rss / 2**20:6.1f} MiB fds {fds:4d} "
                         f"ops {sum(self.ops.values())} errors {sum(self.errors.values())}")
        self.stop.set()
        for t in threads:
            t.join(timeout=30)
        # Idle: pooled upstream connections time out (upstream_idle), clients are gone.
        deadline = time.monotonic() + 10
        while True:
            time.sleep(0.5)
            self.sample(t0)
            if self.samples[-1][2] <= self.samples[0][2] or time.monotonic() > deadline:
                break
        return self.summary()

    def summary(self) -> dict:
        warm_at = min(max(5.0, self.seconds * 0.1), 60.0)  # after warm-up: buffers grown
        warm = [s for s in self.samples if s[0] >= warm_at]
        during = [s for s in self.samples if warm_at <= s[0] <= self.seconds + 1] or warm
        rss_warm = warm[0][1] if warm else 0
        return {
            "seconds": self.seconds,
            "ops": dict(self.ops),
            "total_ops": sum(self.ops.values()),
            "errors": dict(self.errors),
            "error_samples": list(self.error_samples),
            "rss_start": self.samples[0][1],
            "rss_warm": rss_warm,
            "rss_peak": max(s[1] for s in self.samples),
            "rss_end_of_load": during[-1][1] if during else 0,
            "rss_after": self.samples[-1][1],
            # Growth from warm-up to the end of the load, per hour (a leak shows as a slope).
            "rss_growth": (during[-1][1] - rss_warm) if during else 0,
            "fds_start": self.samples[0][2],
            "fds_peak": max(s[2] for s in self.samples),
            "fds_after": self.samples[-1][2],
        }


def format_summary(s: dict) -> str:
    mib = 2 ** 20
    lines = [
        f"duration            {s['seconds']:.0f} s, {s['total_ops']} operations "
        f"({s['total_ops'] / max(s['seconds'], 1):.0f}/s)",
        "operations          " + ", ".join(f"{k} {v}" for k, v in sorted(s["ops"].items())),
        "client errors       " + (", ".join(f"{k} {v}" for k, v in sorted(s["errors"].items()))
                                  or "none"),
        f"RSS start           {s['rss_start'] / mib:.1f} MiB",
        f"RSS after warm-up   {s['rss_warm'] / mib:.1f} MiB",
        f"RSS peak            {s['rss_peak'] / mib:.1f} MiB",
        f"RSS end of load     {s['rss_end_of_load'] / mib:.1f} MiB "
        f"(growth since warm-up {s['rss_growth'] / mib:+.1f} MiB)",
        f"RSS idle after      {s['rss_after'] / mib:.1f} MiB",
        f"fds start/peak/idle {s['fds_start']}/{s['fds_peak']}/{s['fds_after']}",
    ]
    lines += [f"  error: {e}" for e in s["error_samples"][:5]]
    return "\n".join(lines)


def start(binary: str | None = None, workers: int = 2) -> tuple[Origin, Proxy]:
    origin = Origin("soak").start()
    proxy = Proxy(proxy_config(
        [origin.address], workers=workers, access_log={"enabled": False},
        timeouts={"client_header": "3s", "client_idle": "5s", "client_body": "5s",
                  "upstream_idle": "2s"}), binary=binary)
    proxy.start()
    return origin, proxy


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-growth-mib", type=float, default=16.0,
                    help="fail when RSS grows more than this after warm-up")
    args = ap.parse_args()
    origin, proxy = start(workers=args.workers)
    try:
        print(f"soak: {proxy.binary}, {args.workers} workers, {args.seconds:.0f} s", flush=True)
        s = Soak(proxy, args.seconds, log=lambda m: print(m, flush=True)).run()
        print(format_summary(s), flush=True)
        failed = []
        if not proxy.running():
            failed.append("the proxy died")
        if s["rss_growth"] > args.max_growth_mib * 2 ** 20:
            failed.append(f"RSS grew {s['rss_growth'] / 2**20:.1f} MiB after warm-up")
        if s["fds_after"] > s["fds_start"] + 4:
            failed.append(f"fds {s['fds_start']} -> {s['fds_after']} once idle")
        for f in failed:
            print(f"soak: FAILED: {f}", flush=True)
        return 1 if failed else 0
    finally:
        proxy.close()
        origin.stop()


if __name__ == "__main__":
    sys.exit(main())
