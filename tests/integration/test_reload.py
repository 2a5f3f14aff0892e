"""Hitless reload: SIGHUP re-reads the config file; a valid file takes effect for new requests at
once while client connections stay open, in-flight requests finish on the old config and upstream
keep-alive connections of unchanged pools survive; an invalid file is refused with file:line:col
errors and the old config keeps serving; listeners are opened and closed to match the file.
"""

import re
import socket
import threading
import time
import unittest

from harness import LOOPBACK, Client, ProxyTestCase, Response, example_config

_ORIGIN_BODY = re.compile(r"origin (\S+): (\S+) (\S+)\n")


def served_by(resp: Response) -> str | None:
    m = _ORIGIN_BODY.fullmatch(resp.text)
    return m.group(1) if m and resp.status == 200 else None


def config_text(main_routes: str, pools: dict[str, str], *, workers: int = 1,
                extra_listeners: str = "", extra_tables: str = "") -> str:
    """A config with listener "web" (127.0.0.1:0, table main). `main_routes` and
    `extra_tables` are YAML lines, already indented for their place; pools: name -> address."""
    pool_lines = "\n".join(f"  {name}:\n    servers: [{address}]"
                           for name, address in pools.items())
    return (f"workers: {workers}\n"
            f"access_log: {{ enabled: true, format: json, path: \"-\" }}\n"
            f"listeners:\n"
            f"  - name: web\n"
            f"    bind: {LOOPBACK}:0\n"
            f"    routes: main\n"
            f"{extra_listeners}"
            f"routes:\n"
            f"  main:\n"
            f"{main_routes}"
            f"{extra_tables}"
            f"pools:\n{pool_lines}\n")


def all_to(pool: str) -> str:
    return f"    - pool: {pool}\n"


def line_of(text: str, needle: str) -> int:
    """1-based number of the only line of `text` containing `needle`."""
    lines = [i + 1 for i, line in enumerate(text.splitlines()) if needle in line]
    assert len(lines) == 1, (needle, lines)
    return lines[0]


def connect_refused(port: int, timeout: float) -> bool:
    """True once a connect to 127.0.0.1:port is refused (polled until `timeout`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1.0):
                pass
        except ConnectionRefusedError:
            return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


class ReloadTest(ProxyTestCase):
    def setUp(self):
        self.a = self.start_origin("A")
        self.b = self.start_origin("B")
        self.pools = {"a": self.a.address, "b": self.b.address}

    def reload(self, proxy, text: str, *, expect_applied: bool = True):
        outcome = proxy.reload(text, timeout=10.0)
        self.assertEqual(outcome.applied, expect_applied,
                         f"reload {'refused' if expect_applied else 'applied'} unexpectedly; "
                         f"proxy logged:\n{outcome.log}")
        return outcome

    def test_reload_switches_routing(self):
        proxy = self.start_proxy(config_text(all_to("a"), self.pools))
        client = self.connect(proxy)
        self.assertEqual(served_by(client.request("GET", "/before")), "A")
        outcome = self.reload(proxy, config_text(all_to("b"), self.pools))
        self.assertIn(proxy.config_path, outcome.log)
        # At once, on new connections...
        new = [served_by(self.fetch(proxy, f"/new-{i}")) for i in range(3)]
        self.assertEqual(new, ["B"] * 3, "requests on new connections after the reload")
        # ... and on the keep-alive connection opened (and idle) before the reload.
        old = [served_by(client.request("GET", f"/after-{i}")) for i in range(3)]
        self.assertEqual(old, ["B"] * 3, "requests on the client connection that was idle "
                                         "across the reload (should all use the new config)")
        self.assertEqual([r.target for r in self.a.requests], ["/before"])
        self.assertTrue(proxy.running())

    def test_reload_under_load_drops_nothing(self):
        config_a = config_text(all_to("a"), self.pools, workers=2)
        config_b = config_text(all_to("b"), self.pools, workers=2)
        proxy = self.start_proxy(config_a)
        port = proxy.port
        stop = threading.Event()
        failures: list[str] = []
        results: list[list[tuple[float, str]]] = [[] for _ in range(4)]
        max_per_thread = 20_000

        def load(index: int) -> None:
            client = None
            try:
                client = Client(port, timeout=5.0)
                for i in range(max_per_thread):
                    if stop.is_set():
                        return
                    sent = time.monotonic()
                    try:
                        resp = client.request("GET", f"/load/{index}/{i}", timeout=5.0)
                    except Exception as e:  # noqa: BLE001 - every failure counts
                        failures.append(f"thread {index} request {i}: {type(e).__name__}: {e}")
                        return
                    name = served_by(resp)
                    if name not in ("A", "B"):
                        failures.append(f"thread {index} request {i}: {resp}")
                        return
                    results[index].append((sent, name))
            except Exception as e:  # noqa: BLE001
                failures.append(f"thread {index}: {type(e).__name__}: {e}")
            finally:
                if client:
                    client.close()

        threads = [threading.Thread(target=load, args=(i,), daemon=True) for i in range(4)]
        for t in threads:
            t.start()
        first_reload_done = None
        reload_log = []
        try:
            time.sleep(0.3)
            for n in range(10):
                started = time.monotonic()
                outcome = proxy.reload(config_b if n % 2 == 0 else config_a, timeout=10.0)
                reload_log.append(outcome.log)
                self.assertTrue(outcome.applied, f"reload {n + 1} refused:\n{outcome.log}")
                if first_reload_done is None:
                    first_reload_done = time.monotonic()
                time.sleep(max(0.0, 0.3 - (time.monotonic() - started)))
            time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=15)
        self.assertFalse(any(t.is_alive() for t in threads), "load threads did not stop")
        counts = [len(r) for r in results]
        self.assertEqual(failures, [], f"requests failed during 10 reloads (completed per "
                                       f"connection: {counts})")
        after = {name for r in results for sent, name in r if sent > first_reload_done}
        self.assertEqual(after, {"A", "B"},
                         f"both route tables should serve after the first reload "
                         f"(completed per connection: {counts})")
        self.assertTrue(all(c > 10 for c in counts), f"some connection hardly progressed: "
                                                     f"{counts}")

    def test_broken_config_is_refused_then_fixed(self):
        proxy = self.start_proxy(config_text(all_to("a"), self.pools))
        client = self.connect(proxy)
        self.assertEqual(served_by(client.request("GET", "/")), "A")
        path = re.escape(proxy.config_path)
        broken = {
            "unknown key": config_text("    - { pool: b, mach: { path_prefix: / } }\n",
                                       self.pools),
            "unknown pool": config_text("    - { match: { path_prefix: / }, pool: nosuch }\n",
                                        self.pools),
        }
        for what, text in broken.items():
            needle = "mach:" if what == "unknown key" else "nosuch"
            outcome = self.reload(proxy, text, expect_applied=False)
            errors = re.findall(rf"{path}:(\d+):(\d+): (.*)", outcome.log)
            self.assertTrue(errors, f"{what}: no '{proxy.config_path}:LINE:COL: message' "
                                    f"error logged:\n{outcome.log}")
            self.assertIn(line_of(text, needle), [int(line) for line, _, _ in errors],
                          f"{what}: error should point at line {line_of(text, needle)}:\n"
                          f"{outcome.log}")
            self.assertIn("reload refused", outcome.log)
            # The old routing keeps working, on the old connection and on new ones.
            self.assertEqual(served_by(client.request("GET", "/still")), "A",
                             f"after refused reload ({what})")
            self.assertEqual(served_by(self.fetch(proxy, "/still-new")), "A",
                             f"new connection after refused reload ({what})")
        self.reload(proxy, config_text(all_to("b"), self.pools))
        # (Existing connections switching at once is test_reload_switches_routing's subject.)
        for i in range(3):
            self.assertEqual(served_by(self.fetch(proxy, f"/fixed-{i}")), "B",
                             f"new connection {i} after the fixed config was reloaded")
        self.assertTrue(proxy.running())

    def test_in_flight_request_finishes_on_old_config(self):
        proxy = self.start_proxy(config_text(all_to("a"), {"a": self.a.address}))
        client = self.connect(proxy)
        client.send_request("GET", "/slow?delay=2")
        self.assertTrue(self.a.wait_for_requests(1, timeout=5.0),
                        "the slow request did not reach origin A")
        # The new config does not even have pool a.
        self.reload(proxy, config_text(all_to("b"), {"b": self.b.address}))
        reloaded_at = time.monotonic()
        resp = client.read_response(timeout=10.0)
        self.assertEqual((resp.status, resp.body), (200, b"slept 2.0\n"),
                         f"in-flight request across the reload: {resp}")
        self.assertGreater(time.monotonic() - reloaded_at, 0.5,
                           "the slow answer came back too quickly: was the reload in flight?")
        self.assertEqual(len(self.b.requests), 0)
        # The connection stays open and its next request uses the new config.
        self.assertEqual(served_by(client.request("GET", "/next")), "B")
        self.assertEqual(served_by(self.fetch(proxy, "/new")), "B")

    def test_upstream_keep_alive_survives_reload_of_unchanged_pool(self):
        def text(version: str) -> str:
            return config_text(f"    - match: {{ path: /maint }}\n"
                               f"      respond: {{ status: 503, body: \"{version}\\n\" }}\n"
                               f"    - pool: app\n", {"app": self.a.address})
        proxy = self.start_proxy(text("v1"))
        client = self.connect(proxy)
        for i in range(5):
            resp = client.request("GET", "/conn")
            self.assertEqual((resp.status, resp.body), (200, b"conn 1\n"), f"request {i}: {resp}")
        self.assertEqual(client.request("GET", "/maint").body, b"v1\n")
        accepted = self.a.connections_accepted
        self.assertEqual(accepted, 1)
        self.reload(proxy, text("v2"))
        resp = self.fetch(proxy, "/maint")
        self.assertEqual((resp.status, resp.body), (503, b"v2\n"), "the reload did not apply")
        # The pooled upstream connection is still the one from before the reload, both for the
        # client connection from before the reload and for new ones.
        for i in range(5):
            resp = client.request("GET", "/conn")
            self.assertEqual((resp.status, resp.body), (200, b"conn 1\n"),
                             f"request {i} after the reload should reuse upstream conn 1: {resp}")
        for i in range(3):
            resp = self.fetch(proxy, "/conn")
            self.assertEqual((resp.status, resp.body), (200, b"conn 1\n"),
                             f"new client connection {i} after the reload: {resp}")
        self.assertEqual(self.a.connections_accepted, accepted,
                         "a reload that left the pool unchanged opened new upstream connections")

    def test_listener_added_and_removed_by_reload(self):
        base = config_text(all_to("a"), self.pools)
        proxy = self.start_proxy(base)
        web_port = proxy.ports["web"]
        client = self.connect(proxy)
        self.assertEqual(served_by(client.request("GET", "/")), "A")
        extra_listener = (f"  - name: extra\n"
                          f"    bind: {LOOPBACK}:0\n"
                          f"    routes: side\n")
        side_table = ("  side:\n"
                      "    - match: { path: /slow }\n"
                      "      pool: a\n"
                      "    - respond: { status: 200, body: \"side\\n\" }\n")
        outcome = self.reload(proxy, config_text(all_to("a"), self.pools,
                                                 extra_listeners=extra_listener,
                                                 extra_tables=side_table))
        self.assertRegex(outcome.log, rf"listener extra ready on {re.escape(LOOPBACK)}:\d+")
        extra_port = proxy.ports["extra"]
        self.assertNotEqual(extra_port, web_port)
        resp = self.fetch(_PortOnly(extra_port), "/x")
        self.assertEqual((resp.status, resp.body), (200, b"side\n"), resp)
        side = self.connect(extra_port)  # stays open, idle, until the listener goes
        self.assertEqual(side.request("GET", "/y").body, b"side\n")
        busy = self.connect(extra_port)  # has a request in progress when the listener goes
        busy.send_request("GET", "/slow?delay=1")
        time.sleep(0.2)
        # The kept listener still works, on its old connection and on new ones.
        self.assertEqual(served_by(client.request("GET", "/still")), "A")
        self.assertEqual(served_by(self.fetch(_PortOnly(web_port), "/new")), "A")
        # Removing it closes it, and its idle keep-alive connections (no route table is left for
        # their next request).
        self.reload(proxy, base)
        self.assertTrue(connect_refused(extra_port, 3.0),
                        f"listener extra (port {extra_port}) still accepts after its removal")
        self.assertClosedSoon(side, 3.0, "idle connection to the removed listener")
        self.assertEqual(busy.read_response().status, 200, "request in progress at the reload")
        self.assertClosedSoon(busy, 3.0, "connection to the removed listener, after its request")
        self.assertEqual(served_by(client.request("GET", "/after")), "A")
        self.assertEqual(served_by(self.fetch(_PortOnly(web_port), "/after-new")), "A")

    def test_reload_between_example_configs(self):
        # config/api-gateway.yaml (listener gateway), then config/maintenance.yaml (listeners web
        # and sorry): gateway is closed, web and sorry are opened.
        servers = {"127.0.0.1:9001": self.a.address, "127.0.0.1:9002": self.b.address}
        gateway_servers = dict(servers)
        gateway_servers.update({"127.0.0.1:9003": self.a.address,   # orders: B and A
                                "127.0.0.1:9004": self.b.address})
        proxy = self.start_proxy(example_config("api-gateway.yaml", gateway_servers))
        gateway = proxy.ports["gateway"]
        resp = self.fetch(_PortOnly(gateway), "/api/users/1")
        self.assertEqual((served_by(resp), resp.text), ("A", "origin A: GET /users/1\n"), resp)
        self.reload(proxy, example_config("maintenance.yaml", servers))
        resp = self.fetch(_PortOnly(proxy.ports["sorry"]), "/api/users/1")
        self.assertEqual(resp.status, 503, resp)
        self.assertEqual(resp.header("retry-after"), "600", resp)
        resp = self.fetch(_PortOnly(proxy.ports["web"]), "/api/users/1")
        self.assertIn(served_by(resp), ("A", "B"), resp)
        self.assertEqual(resp.text.split(" ", 2)[2], "GET /api/users/1\n",
                         f"maintenance.yaml forwards without rewriting: {resp}")
        self.assertTrue(connect_refused(gateway, 3.0), "listener gateway was not closed")


class _PortOnly:
    """Lets ProxyTestCase.fetch() talk to a listener other than the proxy's first one."""

    def __init__(self, port: int):
        self.port = port


if __name__ == "__main__":
    unittest.main()
