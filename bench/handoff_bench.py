#!/usr/bin/env python3
"""Director CPU per GiB: TCP handoff vs proxying (pipe splice, copy) vs tunnels (sockmap, copy).

The network of tests/integration/test_handoff.py (namespaces: client, router, director with XDP
in generic mode, two real servers each running `switchyard agent` in front of a Python origin).
From the client, one connection downloads 1 GiB of pattern bytes, checksummed, through:

  * handoff        a route marked `handoff`: the connection moves to real server 1, which
                   answers the client directly; the director forwards only the client's ACKs;
  * proxy-splice   the same request proxied (response body spliced: splice.bodies, default);
  * proxy-copy     proxied with splice.bodies: false (bytes copied through userspace);
  * tunnel-sockmap a `mode: tcp` listener, splice.sockmap: true (the kernel redirects the bytes);
  * tunnel-copy    the same listener with the sockmap off.

For each: the director process's CPU time (utime+stime from /proc/PID/stat, all threads: workers,
control plane; the XDP program's softirq time is not in it), the bytes on the director's
interface (rx+tx), real server 1's agent's CPU time (it relays handed-off connections to its
local origin; 0 for the other paths) and the wall time, median of --rounds. The client and origins are Python, so
wall times measure them more than the director.

    sudo SWITCHYARD_BIN=build/switchyard python3 bench/handoff_bench.py [--rounds 3] [--gib 1]
"""

import argparse
import json
import os
import statistics
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import test_handoff  # noqa: E402  (the lab lives there)
from test_handoff import VIP, HandoffLab, pattern_sha256  # noqa: E402

TUNNEL_PORT = 8081


class Bench(unittest.TestCase):
    def runTest(self):  # unittest needs one; the lab only uses the TestCase for its cleanups
        pass


def measure(h: HandoffLab, path: str, target: str, size: int, digest: str) -> dict:
    before_bytes, before_cpu = h.interface_bytes(), h.director_cpu()
    before_agent = h.agent_cpu("rs1")
    start = time.monotonic()
    [[status, got, sha, _]] = h.get(path, target=target)
    wall = time.monotonic() - start
    if (status, int(got), sha) != ("200", size, digest):
        raise SystemExit(f"{path} via {target}: status {status}, {got} bytes, sha {sha}")
    return {"cpu_ms": (h.director_cpu() - before_cpu) * 1000,
            "agent_cpu_ms": (h.agent_cpu("rs1") - before_agent) * 1000,
            "iface_bytes": h.interface_bytes() - before_bytes, "wall_s": wall}


def run(config_extra: str, cases: list[tuple[str, str, str]], size: int, rounds: int) -> dict:
    t = Bench()
    h = HandoffLab(t)
    try:
        h.lab.start_director(h.config(config_extra, tcp_port=TUNNEL_PORT))
        digest = pattern_sha256(size)
        out = {name: [] for name, _, _ in cases}
        for r in range(rounds):
            for name, path, target in cases:
                sys.stderr.write(f"\r{name}: round {r + 1}/{rounds}   ")
                out[name].append(measure(h, path, target, size, digest))
        sys.stderr.write("\n")
        return out
    finally:
        t.doCleanups()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--gib", type=float, default=1.0)
    args = ap.parse_args()
    from test_l4 import missing_prerequisite
    if (why := missing_prerequisite()):
        print(f"skipped: {why}")
        return 2
    size = int(args.gib * (1 << 30))
    bytes_path = f"/bytes/{size}"
    results = {}
    results.update(run("", [("handoff", "/one" + bytes_path, VIP),
                            ("proxy-splice", bytes_path, VIP),
                            ("tunnel-copy", bytes_path, f"{VIP}:{TUNNEL_PORT}")],
                       size, args.rounds))
    results.update(run("splice: { bodies: false, sockmap: true }\n",
                       [("proxy-copy", bytes_path, VIP),
                        ("tunnel-sockmap", bytes_path, f"{VIP}:{TUNNEL_PORT}")],
                       size, args.rounds))
    gib = size / (1 << 30)
    print(f"\n1 transfer of {size} bytes per round, {args.rounds} rounds, medians; "
          f"kernel {os.uname().release}, nproc {os.cpu_count()}")
    print(f"{'path':<16}{'director CPU ms/GiB':>22}{'director iface MB/GiB':>24}"
          f"{'agent CPU ms/GiB':>19}{'wall s/GiB':>12}")
    summary = {}
    for name in ("handoff", "proxy-splice", "proxy-copy", "tunnel-sockmap", "tunnel-copy"):
        runs = results[name]
        cpu = statistics.median(r["cpu_ms"] for r in runs) / gib
        iface = statistics.median(r["iface_bytes"] for r in runs) / gib / 1e6
        wall = statistics.median(r["wall_s"] for r in runs) / gib
        agent = statistics.median(r["agent_cpu_ms"] for r in runs) / gib
        summary[name] = {"cpu_ms_per_gib": cpu, "iface_mb_per_gib": iface,
                         "agent_cpu_ms_per_gib": agent, "wall_s_per_gib": wall, "runs": runs}
        print(f"{name:<16}{cpu:>22.0f}{iface:>24.1f}{agent:>19.0f}{wall:>12.2f}")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = os.path.join(HERE, "results", f"handoff-{stamp}.json")
    with open(path, "w") as f:
        json.dump({"size": size, "rounds": args.rounds, "kernel": os.uname().release,
                   "results": summary}, f, indent=2)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
