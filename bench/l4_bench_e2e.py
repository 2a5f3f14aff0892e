#!/usr/bin/env python3
"""End-to-end L4 figures through veth: the namespaces of tests/integration/test_l4.py, real TCP.

For each forwarding mode (nat, dr, tun) a fresh network (client, router, director with XDP in
generic mode, three real servers running a small Python origin) is built; then, from the client:

  * bulk: one keep-alive connection downloads 1 MiB 200 times (curl | wc -c), MB/s;
  * connections: new TCP connection + one small request each, sequentially for 5 s (Python), /s;
  * direct: the same two against real server 1 without the director (baseline, dr network).

The origin is Python (one thread per connection), so the connection rate measures the whole
chain, origin included, more than the director; the bulk figure shows what the data path adds.

    sudo SWITCHYARD_BIN=build/switchyard python3 bench/l4_bench_e2e.py
"""

import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import test_l4  # noqa: E402  (the Lab lives there)

CONNECT_LOOP = r"""
import socket, sys, time
target, seconds = sys.argv[1], float(sys.argv[2])
end = time.monotonic() + seconds
n = 0
while time.monotonic() < end:
    s = socket.create_connection((target, 80), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    while s.recv(4096):
        pass
    s.close()
    n += 1
print(n / seconds)
"""


class _Holder(unittest.TestCase):
    def runTest(self):
        pass


def measure(lab, target):
    urls = " ".join([f"http://{target}/big"] * 200)
    r = lab.sh("cli", "sh", "-c",
               f"s=$(date +%s%N); n=$(curl -s --max-time 120 {urls} | wc -c); "
               "e=$(date +%s%N); echo $n $((e - s))")
    size, ns = (int(x) for x in r.stdout.split())
    assert size == 200 << 20, f"short transfer: {size} bytes"
    bulk = size / 1e6 / (ns / 1e9)
    r = lab.sh("cli", sys.executable, "-c", CONNECT_LOOP, target, "5")
    return bulk, float(r.stdout.strip())


def main():
    why = test_l4.missing_prerequisite()
    if why:
        sys.exit(f"l4_bench_e2e: {why}")
    rows = []
    for mode in ("nat", "dr", "tun"):
        holder = _Holder()
        holder._outcome = None
        lab = test_l4.Lab(holder, mode, lan_mtu=1600 if mode == "tun" else 1500)
        try:
            lab.start_director()
            lab.wait_serving()
            bulk, conns = measure(lab, test_l4.VIP)
            rows.append((f"{mode} via director (XDP generic)", bulk, conns, lab.counters()))
            if mode == "dr":
                bulk, conns = measure(lab, test_l4.REALS[0])
                rows.append(("direct to one real server", bulk, conns, {}))
        finally:
            holder.doCleanups()
    print(f"{'path':36} {'bulk MB/s':>10} {'conn/s':>8}   tc_forwarded/defer_tc")
    for name, bulk, conns, c in rows:
        tc = f"{c.get('tc_forwarded', 0)}/{c.get('defer_tc', 0)}" if c else "-"
        print(f"{name:36} {bulk:10.0f} {conns:8.0f}   {tc}")


if __name__ == "__main__":
    main()
