"""The admin API over real sockets: every endpoint, authentication (401, 403, 429), runtime
server changes, reloads through the API and how runtime changes survive them, the event stream,
HTTPS, the metrics-only port, `switchyard ctl`, and access-log reopening on SIGUSR1.
"""

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

from harness import (ADMIN_READ_ONLY_TOKEN, ADMIN_TOKEN, LOOPBACK, AdminClient, Client,
                     ProxyTestCase, admin_block, admin_url, metrics_port, proxy_config,
                     switchyard_bin)

FAST_HEALTH = {"http": {"path": "/healthz"}, "interval": "100ms", "timeout": "100ms",
               "rise": 1, "fall": 1, "jitter": 0}


def served_by(text: str) -> str:
    m = re.match(r"origin (\S+):", text)
    return m.group(1) if m else "?"


class AdminTestCase(ProxyTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="switchyard-admin-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def start_farm(self, names=("A", "B"), admin_extra=None, pool_extra=None, workers=2):
        self.origins = [self.start_origin(n) for n in names]
        pool = {"servers": [o.address for o in self.origins]}
        pool.update(pool_extra or {})
        cfg = proxy_config(pools={"app": pool}, workers=workers)
        cfg["admin"] = admin_block(self.dir, **(admin_extra or {}))
        self.proxy = self.start_proxy(cfg)
        self.admin = AdminClient(admin_url(self.proxy))
        return self.proxy

    def wait_for(self, predicate, timeout=5.0, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        self.fail(f"timed out waiting for {what}")

    def serve_counts(self, n=40) -> dict:
        counts = {}
        with Client(self.proxy.port) as c:
            for _ in range(n):
                r = c.request("GET", "/")
                self.assertEqual(r.status, 200, r)
                name = served_by(r.text)
                counts[name] = counts.get(name, 0) + 1
        return counts


class AuthenticationTest(AdminTestCase):
    def test_no_token_is_401_and_the_dashboard_needs_none(self):
        self.start_farm()
        for path in ("/api/v1/pools", "/metrics", "/api/v1/status"):
            r = self.admin.get(path, token=None)
            self.assertEqual(r.status, 401, path)
            self.assertIn("Bearer", r.headers.get("www-authenticate", ""))
        r = self.admin.get("/api/v1/pools", token="wrong-token-0123456789")
        self.assertEqual(r.status, 401)
        self.assertIn("invalid token", r.json["error"])
        r = self.admin.get("/api/v1/pools", headers={"Authorization": "Basic b3BzOng="}, token=None)
        self.assertEqual(r.status, 401)
        # The dashboard's files hold no data: served without a token.
        r = self.admin.get("/", token=None)
        self.assertEqual(r.status, 200)
        self.assertIn("text/html", r.headers["content-type"])
        self.assertIn("default-src 'self'", r.headers["content-security-policy"])
        self.assertEqual(self.admin.get("/nope.js", token=None).status, 404)
        self.assertEqual(self.admin.get("/api/v2/pools").status, 404)
        self.assertEqual(self.admin.get("/api/v1/nope").status, 404)

    def test_read_only_token_reads_but_cannot_write(self):
        self.start_farm()
        ro = AdminClient(self.admin.base_url, token=ADMIN_READ_ONLY_TOKEN)
        self.assertEqual(ro.json("GET", "/api/v1/whoami"), {"name": "viewer", "read_only": True})
        self.assertEqual(ro.get("/metrics").status, 200)
        server = f"/api/v1/pools/app/servers/{self.origins[0].address}"
        for method, path, body in (("PATCH", server, {"drain": True}),
                                   ("DELETE", server, None),
                                   ("POST", "/api/v1/pools/app/servers", {"address": "127.0.0.1:1"}),
                                   ("DELETE", server + "/override", None),
                                   ("POST", "/api/v1/reload", None)):
            r = ro.request(method, path, body)
            self.assertEqual(r.status, 403, f"{method} {path}: {r.text}")
            self.assertIn("read-only", r.json["error"])
        self.assertFalse(self.admin.server("app", self.origins[0].address)["drain"])

    def test_failed_attempts_are_rate_limited(self):
        self.start_farm()
        for i in range(10):
            self.assertEqual(self.admin.get("/api/v1/status", token=f"guess-{i:020d}").status, 401)
        r = self.admin.get("/api/v1/status", token="guess-again-0123456789")
        self.assertEqual(r.status, 429)
        self.assertGreaterEqual(int(r.headers["retry-after"]), 1)
        # While limited, even the right token is not looked at.
        self.assertEqual(self.admin.get("/api/v1/status").status, 429)

    def test_reload_rereads_token_files(self):
        self.start_farm()
        with open(os.path.join(self.dir, "admin.tokens"), "w") as f:
            f.write(f"ops:{ADMIN_TOKEN}\nci:ci-token-0123456789abcdef\n")
        self.assertTrue(self.proxy.reload().applied)
        ci = AdminClient(self.admin.base_url, token="ci-token-0123456789abcdef")
        self.assertEqual(ci.json("GET", "/api/v1/whoami")["name"], "ci")
        # A token file that no longer parses refuses the reload, naming the line.
        with open(os.path.join(self.dir, "admin.tokens"), "w") as f:
            f.write("ops:short\n")
        outcome = self.proxy.reload()
        self.assertFalse(outcome.applied)
        self.assertIn("admin.tokens:1: token of 'ops' must be 16 to 4096 characters long",
                      outcome.log)
        self.assertEqual(ci.get("/api/v1/whoami").status, 200)


class ReadEndpointsTest(AdminTestCase):
    def test_every_read_endpoint(self):
        self.start_farm(pool_extra={"health": FAST_HEALTH})
        a, b = self.origins
        self.wait_for(lambda: all(s["last_check"] for s in
                                  self.admin.json("GET", "/api/v1/pools/app")["servers"]),
                      what="first health checks")
        counts = self.serve_counts(20)
        self.assertEqual(sum(counts.values()), 20)

        status = self.admin.json("GET", "/api/v1/status")
        self.assertEqual(status["version"], "0.1.0")
        self.assertEqual(status["config_file"], self.proxy.config_path)
        self.assertEqual(status["workers"], 2)
        self.assertEqual(status["token"], {"name": "ops", "read_only": False})
        self.assertEqual(self.admin.json("GET", "/api/v1/whoami"), {"name": "ops", "read_only": False})

        config = self.admin.json("GET", "/api/v1/config")
        self.assertEqual(config["listeners"][0]["name"], "web")
        self.assertEqual(config["pools"]["app"]["servers"], 2)
        self.assertEqual(config["route_tables"], {"main": 1})
        self.assertTrue(config["admin"]["read_only_tokens"])

        listeners = self.admin.json("GET", "/api/v1/listeners")
        self.assertEqual(listeners[0]["requests"], 20)
        self.assertEqual(listeners[0]["responses"]["2xx"], 20)
        self.assertGreater(listeners[0]["bytes_out"], 0)

        routes = self.admin.json("GET", "/api/v1/routes")
        self.assertEqual(routes, [{"table": "main", "position": 0, "line": routes[0]["line"],
                                   "action": "pool app", "hits": 20}])

        pools = self.admin.json("GET", "/api/v1/pools")
        self.assertEqual([p["name"] for p in pools], ["app"])
        app = self.admin.json("GET", "/api/v1/pools/app")
        self.assertEqual(app["requests"], 20)
        self.assertEqual(app["health_check"], "http /healthz")
        by_address = {s["address"]: s for s in app["servers"]}
        for origin in (a, b):
            s = by_address[origin.address]
            self.assertEqual(s["state"], "up")
            self.assertEqual(s["health"], "up")
            self.assertEqual(s["requests"], counts.get(origin.name, 0))
            self.assertEqual(s["weight"], 1)
            self.assertTrue(s["last_check"]["ok"])
            self.assertRegex(s["last_check"]["time"], r"^\d{4}-\d\d-\d\dT")
            if s["requests"]:
                self.assertGreater(s["latency_ms"]["p99"], 0)
                self.assertEqual(s["latency_ms"]["count"], s["requests"])
        listed = self.admin.json("GET", "/api/v1/pools/app/servers")
        self.assertEqual([x["address"] for x in listed], [a.address, b.address])
        one = self.admin.server("app", a.address)
        self.assertEqual(one["address"], a.address)
        self.assertEqual(self.admin.get("/api/v1/pools/app/servers/127.0.0.1:1").status, 404)
        self.assertEqual(self.admin.get("/api/v1/pools/nope").status, 404)

        workers = self.admin.json("GET", "/api/v1/workers")
        self.assertEqual([w["id"] for w in workers], [0, 1])
        self.assertEqual(sum(w["requests"] for w in workers), 20)
        self.assertGreater(workers[0]["ring"]["sq_entries"], 0)

        self.assertEqual(self.admin.json("GET", "/api/v1/l4"), {"available": False, "services": []})
        self.assertEqual(self.admin.json("GET", "/api/v1/overrides"),
                         {"overrides": [], "last_reload": []})
        history = self.admin.json("GET", "/api/v1/history")
        self.assertIsInstance(history, list)
        if history:
            newest = history[-1]["seq"]
            self.assertEqual(self.admin.json("GET", f"/api/v1/history?since={newest}"), [])
        self.assertEqual(self.admin.get("/api/v1/history?since=x").status, 400)
        series = self.wait_for(lambda: self.admin.json("GET", "/api/v1/series")["samples"],
                               what="a rate sample")
        self.assertIn("app", series[-1]["pools"])
        self.assertEqual(self.admin.request("DELETE", "/api/v1/pools").status, 405)

    def test_health_transitions_are_events(self):
        self.start_farm(pool_extra={"health": FAST_HEALTH})
        b = self.origins[1]
        self.wait_for(lambda: self.admin.server("app", b.address)["health"] == "up", what="B up")
        b.health_status = 500
        self.wait_for(lambda: self.admin.server("app", b.address)["state"] == "down", what="B down")
        check = self.admin.server("app", b.address)["last_check"]
        self.assertFalse(check["ok"])
        self.assertIn("500", check["reason"])
        self.wait_for(lambda: any(e["kind"] == "health" and b.address in e["text"] and "DOWN" in e["text"]
                                  for e in self.admin.json("GET", "/api/v1/history")),
                      what="a DOWN event")

    def test_event_stream(self):
        self.start_farm()
        host, port = self.admin.base_url.rsplit("//", 1)[1].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
            head = s.recv(4096).decode()
            self.assertTrue(head.startswith("HTTP/1.1 401"), head)
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(f"GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}"
                      f"\r\n\r\n".encode())
            data = b""
            deadline = time.monotonic() + 5
            while data.count(b"\ndata: ") < 2 and time.monotonic() < deadline:
                data += s.recv(65536)
        head, _, stream = data.partition(b"\r\n\r\n")
        self.assertIn(b"Content-Type: text/event-stream", head)
        messages = [json.loads(line[6:]) for line in stream.split(b"\n") if line.startswith(b"data: ")]
        self.assertGreaterEqual(len(messages), 2)
        self.assertEqual(messages[0]["pools"][0]["name"], "app")
        self.assertIn("status", messages[0])


class WriteOperationsTest(AdminTestCase):
    def test_weight_drain_maintenance_take_effect_at_once(self):
        self.start_farm(names=("A", "B", "C"))
        a, b, c = self.origins
        base = "/api/v1/pools/app/servers/"
        s = self.admin.json("PATCH", base + b.address, {"drain": True})
        self.assertEqual((s["state"], s["drain"]), ("drain", True))
        self.assertEqual(s["runtime_change"], {"drain": True})
        s = self.admin.json("PATCH", base + c.address, {"maintenance": True})
        self.assertEqual((s["state"], s["maintenance"]), ("maint", True))
        counts = self.serve_counts(30)
        self.assertEqual(counts, {"A": 30})
        self.admin.json("PATCH", base + b.address, {"drain": False})
        self.admin.json("PATCH", base + c.address, {"maintenance": False, "weight": 3})
        counts = self.serve_counts(50)
        self.assertEqual(set(counts), {"A", "B", "C"})
        self.assertEqual(self.admin.server("app", c.address)["weight"], 3)
        # Only C's weight is still a runtime change.
        overrides = self.admin.json("GET", "/api/v1/overrides")["overrides"]
        self.assertEqual(overrides, [{"pool": "app", "changed": [{"address": c.address, "weight": 3}],
                                      "added": [], "removed": []}])
        history = self.admin.json("GET", "/api/v1/history")
        self.assertTrue(any(e["kind"] == "admin" and "by admin token 'ops'" in e["text"]
                            for e in history))
        self.assertIn(f"admin: server app/{b.address} drain=true by admin token 'ops'",
                      self.proxy.stderr_text())

    def test_bad_requests(self):
        self.start_farm()
        a = self.origins[0]
        base = "/api/v1/pools/app/servers/"
        cases = [
            ("PATCH", base + a.address, b"not json", 400, "JSON object"),
            ("PATCH", base + a.address, {"weight": "x"}, 400, "weight"),
            ("PATCH", base + a.address, {"weight": 257}, 400, "out of range"),
            ("PATCH", base + a.address, {"colour": "red"}, 400, "unknown key"),
            ("PATCH", base + a.address, {}, 400, "nothing to change"),
            ("PATCH", base + "127.0.0.1:1", {"drain": True}, 404, "no server"),
            ("PATCH", "/api/v1/pools/nope/servers/" + a.address, {"drain": True}, 404, "no pool"),
            ("POST", "/api/v1/pools/app/servers", {"weight": 1}, 400, "address is required"),
            ("POST", "/api/v1/pools/app/servers", {"address": "localhost:80"}, 400, "address"),
            ("POST", "/api/v1/pools/app/servers", {"address": a.address}, 409, "already has"),
            ("PUT", base + a.address, {"drain": True}, 405, "not allowed"),
        ]
        for method, path, body, status, text in cases:
            r = self.admin.request(method, path, body)
            self.assertEqual(r.status, status, f"{method} {path} {body!r}: {r.text}")
            self.assertIn(text, r.json["error"], f"{method} {path} {body!r}")

    def test_add_and_remove_servers(self):
        self.start_farm(names=("A",))
        a = self.origins[0]
        b = self.start_origin("B")
        s = self.admin.json("POST", "/api/v1/pools/app/servers", {"address": b.address, "weight": 2},
                            expect=201)
        self.assertEqual((s["address"], s["weight"]), (b.address, 2))
        counts = self.serve_counts(30)
        self.assertEqual(set(counts), {"A", "B"})
        self.admin.json("DELETE", f"/api/v1/pools/app/servers/{a.address}")
        self.assertEqual(self.serve_counts(20), {"B": 20})
        r = self.admin.request("DELETE", f"/api/v1/pools/app/servers/{b.address}")
        self.assertEqual(r.status, 409)
        self.assertIn("no server left", r.json["error"])
        # Back to what the file says: A returns, the added B goes.
        self.admin.json("DELETE", f"/api/v1/pools/app/servers/{a.address}/override")
        self.admin.json("DELETE", f"/api/v1/pools/app/servers/{b.address}/override")
        self.assertEqual(self.serve_counts(10), {"A": 10})
        self.assertEqual([x["address"] for x in self.admin.json("GET", "/api/v1/pools/app")["servers"]],
                         [a.address])


class ReloadTest(AdminTestCase):
    def test_reload_endpoint_reports_check_errors(self):
        self.start_farm()
        good = self.proxy.config_text
        self.proxy.write_config(good + "bogus: 1\n")
        r = self.admin.request("POST", "/api/v1/reload")
        self.assertEqual(r.status, 422)
        self.assertFalse(r.json["ok"])
        self.assertRegex(r.json["errors"][0], r"switchyard\.yaml:\d+:1: unknown key 'bogus' in top level")
        self.proxy.write_config(good)
        self.assertEqual(self.admin.json("POST", "/api/v1/reload"), {"ok": True, "overrides": []})
        status = self.admin.json("GET", "/api/v1/status")
        self.assertEqual(status["reloads"], {"success": 1, "failure": 1})

    def test_runtime_changes_survive_a_reload_unless_the_file_changes_them(self):
        self.start_farm(names=("A", "B"))
        a, b = self.origins
        self.admin.json("PATCH", f"/api/v1/pools/app/servers/{a.address}", {"weight": 5})
        self.admin.json("PATCH", f"/api/v1/pools/app/servers/{b.address}", {"drain": True})
        cfg_text = self.proxy.config_text
        # An unrelated change: both runtime changes stay.
        outcome = self.proxy.reload(cfg_text.replace("workers: 2", "workers: 2\nforwarding:\n  via: false"))
        self.assertTrue(outcome.applied)
        self.assertEqual(self.admin.server("app", a.address)["weight"], 5)
        self.assertTrue(self.admin.server("app", b.address)["drain"])
        # The file now sets A's weight itself: the file wins, and the API says so.
        line = next(l for l in cfg_text.splitlines() if l.strip() == f"- {a.address}")
        indent = line[:line.index("-")]
        new = cfg_text.replace(line, f"{indent}- address: {a.address}\n{indent}  weight: 2")
        self.assertNotEqual(new, cfg_text)
        self.proxy.write_config(new)
        reply = self.admin.json("POST", "/api/v1/reload")
        self.assertIn({"pool": "app", "server": a.address, "setting": "weight", "runtime": "5",
                       "file": "2", "outcome": "overridden"}, reply["overrides"])
        self.assertEqual(self.admin.server("app", a.address)["weight"], 2)
        self.assertTrue(self.admin.server("app", b.address)["drain"])
        last = self.admin.json("GET", "/api/v1/overrides")["last_reload"]
        self.assertEqual(last[0]["outcome"], "overridden")


class HttpsAndMetricsPortTest(AdminTestCase):
    def make_cert(self):
        cert = os.path.join(self.dir, "admin.pem")
        key = os.path.join(self.dir, "admin.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=60)
        return cert, key

    def test_https_admin_and_open_metrics_port(self):
        cert, key = self.make_cert()
        self.start_farm(admin_extra={"tls": {"cert": cert, "key": key},
                                     "metrics_bind": f"{LOOPBACK}:0"})
        self.assertTrue(self.admin.base_url.startswith("https://"), self.admin.base_url)
        self.assertEqual(self.admin.json("GET", "/api/v1/whoami")["name"], "ops")
        self.assertEqual(self.admin.get("/api/v1/pools", token=None).status, 401)
        # The certificate verifies against itself.
        ctx = ssl.create_default_context(cafile=cert)
        host, port = self.admin.base_url[len("https://"):].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as s:
                self.assertIn(s.version(), ("TLSv1.2", "TLSv1.3"))
        # Plain HTTP to the HTTPS port gets nothing useful.
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                data = s.recv(100)
            except OSError:
                data = b""
            self.assertFalse(data.startswith(b"HTTP/1.1 200"))
        # /metrics without a token on its own port; nothing else there.
        open_metrics = AdminClient(f"http://{LOOPBACK}:{metrics_port(self.proxy)}", token=None)
        r = open_metrics.get("/metrics")
        self.assertEqual(r.status, 200)
        self.assertIn("switchyard_requests_total", r.text)
        self.assertEqual(open_metrics.get("/api/v1/pools").status, 404)
        # ctl over HTTPS, verifying with the certificate as CA.
        out = subprocess.run([switchyard_bin(), "ctl", "--url", self.admin.base_url, "--cacert", cert,
                              "--token-file", os.path.join(self.dir, "admin.tokens"), "status"],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("token            ops", out.stdout)


class CtlTest(AdminTestCase):
    def ctl(self, *args, token_file=None, env_token=None):
        env = dict(os.environ)
        env.pop("SWITCHYARD_TOKEN", None)
        if env_token:
            env["SWITCHYARD_TOKEN"] = env_token
        cmd = [switchyard_bin(), "ctl", "--url", self.admin.base_url]
        if token_file:
            cmd += ["--token-file", token_file]
        return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=30, env=env)

    def test_ctl_tables_json_and_writes(self):
        self.start_farm()
        a, b = self.origins
        self.serve_counts(10)
        tokens = os.path.join(self.dir, "admin.tokens")
        out = self.ctl("pools", token_file=tokens)
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = out.stdout.splitlines()
        self.assertTrue(lines[0].startswith("POOL"), out.stdout)
        self.assertTrue(any(a.address in line and " up " in line for line in lines), out.stdout)
        out = self.ctl("--json", "pools", env_token=ADMIN_TOKEN)
        self.assertEqual(json.loads(out.stdout)[0]["name"], "app")
        out = self.ctl("server", "drain", "app", b.address, env_token=ADMIN_TOKEN)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("drain", out.stdout)
        self.assertEqual(self.serve_counts(10), {"A": 10})
        self.assertEqual(self.ctl("server", "maint", "app", b.address, "on", env_token=ADMIN_TOKEN).returncode, 0)
        self.assertEqual(self.admin.server("app", b.address)["state"], "maint")
        self.assertEqual(self.ctl("server", "weight", "app", a.address, "4", env_token=ADMIN_TOKEN).returncode, 0)
        self.assertEqual(self.admin.server("app", a.address)["weight"], 4)
        out = self.ctl("overrides", env_token=ADMIN_TOKEN)
        self.assertIn("maintenance=true", out.stdout)
        for cmd in (["routes"], ["listeners"], ["workers"], ["history"], ["status"], ["pool", "app"]):
            out = self.ctl(*cmd, env_token=ADMIN_TOKEN)
            self.assertEqual(out.returncode, 0, f"{cmd}: {out.stderr}")
        out = self.ctl("metrics", env_token=ADMIN_TOKEN)
        self.assertIn("# TYPE switchyard_requests_total counter", out.stdout)
        out = self.ctl("reload", env_token=ADMIN_TOKEN)
        self.assertEqual(out.returncode, 0, out.stderr)
        # Errors: a read-only token, an unknown server, a missing token, bad usage.
        out = self.ctl("server", "undrain", "app", b.address, env_token=ADMIN_READ_ONLY_TOKEN)
        self.assertEqual(out.returncode, 1)
        self.assertIn("403", out.stderr)
        out = self.ctl("server", "drain", "app", "127.0.0.1:1", env_token=ADMIN_TOKEN)
        self.assertEqual(out.returncode, 1)
        self.assertIn("no server", out.stderr)
        self.assertEqual(self.ctl("pools").returncode, 2)
        self.assertEqual(self.ctl("frobnicate", env_token=ADMIN_TOKEN).returncode, 2)

    def test_ctl_reads_the_configuration(self):
        self.start_farm()
        text = self.proxy.config_text
        at = text.index("admin:")
        port = self.admin.base_url.rsplit(":", 1)[1]
        cfg = text[:at] + text[at:].replace("127.0.0.1:0", "127.0.0.1:" + port, 1)
        path = os.path.join(self.dir, "copy.yaml")
        with open(path, "w") as f:
            f.write(cfg)
        out = subprocess.run([switchyard_bin(), "ctl", "-c", path, "status"], capture_output=True,
                             text=True, timeout=30, env={k: v for k, v in os.environ.items()
                                                         if k != "SWITCHYARD_TOKEN"})
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("ops", out.stdout)


class AccessLogReopenTest(ProxyTestCase):
    def test_sigusr1_reopens_the_access_log(self):
        origin = self.start_origin()
        d = tempfile.mkdtemp(prefix="switchyard-log-")
        self.addCleanup(shutil.rmtree, d, True)
        log = os.path.join(d, "access.log")
        proxy = self.start_proxy(proxy_config([origin.address],
                                              access_log={"enabled": True, "format": "json",
                                                          "path": log}))
        self.assertEqual(self.fetch(proxy, "/first").status, 200)
        deadline = time.monotonic() + 5
        while "/first" not in open(log).read() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.rename(log, log + ".1")  # what logrotate does
        offset = proxy.stderr_size()
        os.kill(proxy.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while "reopened" not in proxy.stderr_since(offset) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.fetch(proxy, "/second").status, 200)
        deadline = time.monotonic() + 5
        while not (os.path.exists(log) and "/second" in open(log).read()) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn("/second", open(log).read())
        self.assertNotIn("/first", open(log).read())
        rotated = open(log + ".1").read()
        self.assertIn("/first", rotated)
        self.assertNotIn("/second", rotated)
        self.assertTrue(proxy.running())


if __name__ == "__main__":
    unittest.main()
