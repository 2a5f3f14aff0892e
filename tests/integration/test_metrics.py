"""/metrics after real traffic: the Prometheus text format is valid (a strict parser here, and
`promtool check metrics` when Debian's prometheus package is installed), counters add up to what
was sent, histograms are cumulative, and label values come only from the configuration.
"""

import math
import re
import shutil
import subprocess
import tempfile
import unittest

from harness import AdminClient, Client, ProxyTestCase, admin_block, admin_url, proxy_config

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(rf"^({NAME})(\{{(?:{LABEL})(?:,{LABEL})*\}})? (\S+)$")
LABEL_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')


def parse_metrics(text: str) -> dict:
    """{family: {"type": t, "help": h, "samples": [(name, {labels}, value)]}}; raises
    AssertionError on anything the text format does not allow."""
    families: dict = {}
    current = None
    assert text.endswith("\n"), "the exposition must end with a newline"
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert re.fullmatch(NAME, name), f"line {n}: bad name {name!r}"
            assert name not in families, f"line {n}: family {name} appears twice"
            families[name] = {"help": help_text, "type": None, "samples": []}
            current = name
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert name == current, f"line {n}: TYPE for {name} outside its family"
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            families[name]["type"] = kind
        elif line.startswith("#") or not line:
            raise AssertionError(f"line {n}: unexpected {line!r}")
        else:
            m = SAMPLE.match(line)
            assert m, f"line {n}: not a sample: {line!r}"
            name, labels, value = m.group(1), m.group(2) or "", m.group(3)
            base = current
            assert name == base or (families[base]["type"] == "histogram" and
                                    name in (base + "_bucket", base + "_sum", base + "_count")), \
                f"line {n}: sample {name} outside its family {base}"
            float(value)  # NaN, +Inf and numbers parse
            pairs = dict(LABEL_PAIR.findall(labels))
            families[base]["samples"].append((name, pairs, float(value)))
    for name, fam in families.items():
        assert fam["type"], f"{name} has no TYPE"
        if fam["type"] == "counter":
            assert name.endswith("_total"), f"counter {name} should end in _total"
    return families


def value(fams: dict, family: str, **labels) -> float:
    total = 0.0
    found = False
    for name, pairs, v in fams[family]["samples"]:
        if name == family and all(pairs.get(k) == want for k, want in labels.items()):
            total += v
            found = True
    assert found, f"no sample of {family} with {labels}"
    return total


class MetricsTest(ProxyTestCase):
    def test_metrics_after_traffic(self):
        d = tempfile.mkdtemp(prefix="switchyard-metrics-")
        self.addCleanup(shutil.rmtree, d, True)
        a, b = self.start_origin("A"), self.start_origin("B")
        cfg = proxy_config(pools={"app": {"servers": [a.address, b.address]}}, workers=2,
                           routes={"main": [{"match": {"path": "/missing"},
                                             "respond": {"status": 404}},
                                            {"pool": "app"}]})
        cfg["admin"] = admin_block(d)
        proxy = self.start_proxy(cfg)
        admin = AdminClient(admin_url(proxy))
        with Client(proxy.port) as c:
            for _ in range(30):
                self.assertEqual(c.request("GET", "/").status, 200)
            for _ in range(5):
                self.assertEqual(c.request("GET", "/missing").status, 404)
            self.assertEqual(c.request("GET", "/status?code=503").status, 503)
        reply = admin.get("/metrics")
        self.assertEqual(reply.status, 200)
        self.assertTrue(reply.headers["content-type"].startswith("text/plain; version=0.0.4"))
        fams = parse_metrics(reply.text)

        self.assertEqual(value(fams, "switchyard_requests_total", listener="web", code="2xx"), 30)
        self.assertEqual(value(fams, "switchyard_requests_total", listener="web", code="4xx"), 5)
        self.assertEqual(value(fams, "switchyard_requests_total", listener="web", code="5xx"), 1)
        self.assertEqual(value(fams, "switchyard_route_requests_total", table="main", route="0"), 5)
        self.assertEqual(value(fams, "switchyard_route_requests_total", table="main", route="1"), 31)
        self.assertEqual(value(fams, "switchyard_pool_requests_total", pool="app", code="2xx"), 30)
        self.assertEqual(value(fams, "switchyard_pool_requests_total", pool="app", code="5xx"), 1)
        self.assertEqual(value(fams, "switchyard_server_responses_total", pool="app", code="2xx"), 30)
        self.assertEqual(value(fams, "switchyard_connections_total", listener="web"), 1)
        self.assertGreater(value(fams, "switchyard_received_bytes_total", listener="web"), 0)
        self.assertGreater(value(fams, "switchyard_forwarded_bytes_total", method="copy"), 0)
        self.assertEqual(value(fams, "switchyard_forwarded_bytes_total", method="splice"), 0)
        for server in (a.address, b.address):
            self.assertEqual(value(fams, "switchyard_server_state", pool="app", server=server,
                                   state="up"), 1)
            self.assertEqual(value(fams, "switchyard_server_state", pool="app", server=server,
                                   state="drain"), 0)
        # Histograms: cumulative buckets ending in +Inf == _count; _count = responses.
        fam = fams["switchyard_upstream_response_duration_seconds"]
        self.assertEqual(fam["type"], "histogram")
        count = 0.0
        for server in (a.address, b.address):
            buckets = [(p["le"], v) for name, p, v in fam["samples"]
                       if name.endswith("_bucket") and p["server"] == server]
            self.assertEqual(buckets[-1][0], "+Inf")
            values = [v for _, v in buckets]
            self.assertEqual(values, sorted(values), "buckets must be cumulative")
            les = [float(le) for le, _ in buckets]
            self.assertEqual(les, sorted(les))
            n = [v for name, p, v in fam["samples"]
                 if name.endswith("_count") and p["server"] == server][0]
            self.assertEqual(values[-1], n)
            count += n
        self.assertEqual(count, 31)
        # Bounded labels: every label value is a configured name, a class, a state or a number.
        allowed = {"web", "main", "app", a.address, b.address, "1xx", "2xx", "3xx", "4xx", "5xx",
                   "up", "down", "drain", "maint", "success", "failure", "connect", "reset",
                   "copy", "splice", "sockmap", "0.1.0", "0", "1"}
        for fam in fams.values():
            for _, pairs, _ in fam["samples"]:
                for k, v in pairs.items():
                    if k == "le":
                        continue
                    self.assertIn(v, allowed, f"unexpected label {k}={v}")
        # Reload and admin counters.
        self.assertTrue(proxy.reload().applied)
        fams = parse_metrics(admin.get("/metrics").text)
        self.assertEqual(value(fams, "switchyard_config_reloads_total", result="success"), 1)
        self.assertFalse(any(math.isnan(v) for f in fams.values() for _, _, v in f["samples"]))

        promtool = shutil.which("promtool")
        if not promtool:
            self.skipTest("promtool not installed (Debian package prometheus); parser checks passed")
        out = subprocess.run([promtool, "check", "metrics"], input=admin.get("/metrics").text,
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)


if __name__ == "__main__":
    unittest.main()
