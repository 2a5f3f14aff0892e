"""Smoke test of the benchmark harness: `bench/run --smoke` must keep working.

Runs every workload for about a second against the origin, Switchyard ($SWITCHYARD_BIN), HAProxy
and NGINX (~40-60 s), into a temporary results directory, and checks the machine-readable results:
every target served requests with no errors, the idle connections stayed open, every process
stayed up; for the TLS workloads (proxies only) also that every handshake was a full TLS 1.3 one
with the same suite, group and certificate type on every proxy. The figures themselves are not
checked (1 s runs on a shared machine mean nothing). Skipped only when wrk, haproxy, nginx,
taskset, g++ or openssl are not installed (scripts/setup installs them).
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from harness import switchyard_bin

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BENCH_RUN = os.path.join(REPO, "bench", "run")
TARGETS = ["direct", "switchyard", "haproxy", "nginx"]
PROXIES = ["switchyard", "haproxy", "nginx"]
LOAD_WORKLOADS = ["small-ka", "small-close", "get-1m", "post-16m", "fixed-rate"]
TLS_WORKLOADS = ["tls-hs-ecdsa", "tls-hs-rsa", "tls-small-ka"]  # proxies only
HANDSHAKE_CERT = {"tls-hs-ecdsa": "ECDSA 256", "tls-hs-rsa": "RSA 2048"}


def _which(name):
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")


class BenchSmokeTest(unittest.TestCase):
    def test_bench_run_smoke(self):
        missing = [t for t in ("wrk", "haproxy", "nginx", "taskset", "g++", "openssl")
                   if not _which(t)]
        if missing:
            self.skipTest(f"benchmark tools not installed: {', '.join(missing)} "
                          f"(scripts/setup installs them)")
        with tempfile.TemporaryDirectory(prefix="bench-smoke.") as results:
            cmd = [sys.executable, BENCH_RUN, "--smoke", "--results-dir", results,
                   "--switchyard", switchyard_bin(), "--no-perf"]
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=400)
            output = f"$ {' '.join(cmd)}\n--- stdout ---\n{proc.stdout[-6000:]}\n" \
                     f"--- stderr ---\n{proc.stderr[-3000:]}"
            self.assertEqual(proc.returncode, 0, f"bench/run --smoke failed\n{output}")

            files = glob.glob(os.path.join(results, "*-smoke.json"))
            self.assertEqual(len(files), 1, f"expected one results file in {results}: {files}")
            csvs = glob.glob(os.path.join(results, "*-smoke.csv"))
            self.assertEqual(len(csvs), 1, f"expected one CSV file in {results}: {csvs}")
            with open(files[0]) as f:
                data = json.load(f)
            self.assertEqual(data["problems"], [], output)

            runs = [r for r in data["runs"] if not r.get("discarded")]
            plan = [(wl, t) for wl in LOAD_WORKLOADS for t in TARGETS] + \
                   [(wl, t) for wl in TLS_WORKLOADS for t in PROXIES]
            for wl, target in plan:
                with self.subTest(workload=wl, target=target):
                    rs = [r for r in runs if r["workload"] == wl and r["target"] == target]
                    self.assertTrue(rs, f"no run of {wl} against {target}\n{output}")
                    for r in rs:
                        self.assertGreater(r["requests"], 0, f"{wl}/{target}: {r}")
                        self.assertEqual(r["error_total"], 0, f"{wl}/{target}: {r}")
                        if target != "direct":
                            self.assertIsNotNone(r.get("cpu_us_per_req"),
                                                 f"{wl}/{target}: no CPU figure: {r}")
                        if wl in HANDSHAKE_CERT:
                            tls = r["tls"]
                            self.assertEqual(
                                (tls["version"], tls["cipher"], tls["group"], tls["cert"]),
                                ("TLSv1.3", "TLS_AES_128_GCM_SHA256", "x25519",
                                 HANDSHAKE_CERT[wl]), f"{wl}/{target}: {r}")
                            self.assertEqual(r["errors"]["resumed"], 0, r)
            self.assertFalse([r for r in runs if r["workload"] in TLS_WORKLOADS
                              and r["target"] == "direct"], "TLS workloads are for proxies only")
            for target in PROXIES:
                with self.subTest(tls_probe=target):
                    probe = data["meta"]["tls_probe"][target]
                    self.assertEqual(sorted(probe), ["ecdsa", "rsa"], probe)
            for target in ("switchyard", "haproxy", "nginx"):
                with self.subTest(workload="idle", target=target):
                    idle = [r for r in data["idle"] if r["target"] == target]
                    self.assertEqual(len(idle), 1, f"idle/{target}: {data['idle']}")
                    r = idle[0]
                    self.assertEqual(r["ok"], r["conns"], f"idle/{target}: {r}")
                    self.assertEqual(r["still_open"], r["conns"], f"idle/{target}: {r}")
                    self.assertIsNotNone(r.get("rss_bytes_per_conn"), f"idle/{target}: {r}")
                    self.assertTrue(r["proxy_alive"], f"idle/{target}: {r}")
            for name, info in data["meta"]["process_logs"].items():
                if isinstance(info, dict):
                    self.assertTrue(info["alive_at_end"], f"{name} was not running at the end: "
                                                          f"{info}")
            summary = {(s["workload"], s["target"]) for s in data["summary"]}
            self.assertIn(("small-ka", "switchyard"), summary)
            self.assertIn(("tls-hs-ecdsa", "switchyard"), summary)
            self.assertEqual(len(data["targets"]), 12, data["targets"])


if __name__ == "__main__":
    unittest.main()
