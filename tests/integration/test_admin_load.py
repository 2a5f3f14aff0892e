"""Runtime changes through the admin API under load: draining, maintenance, re-weighting, adding
and removing servers take effect at once (the drained server gets no new request within a
moment), and no request fails meanwhile.
"""

import re
import shutil
import tempfile
import threading
import time
import unittest

from harness import AdminClient, Client, ProxyTestCase, admin_block, admin_url, proxy_config


def served_by(text: str) -> str:
    m = re.match(r"origin (\S+):", text)
    return m.group(1) if m else "?"


class Load:
    """`threads` keep-alive clients sending GETs (at most `limit` seconds); every outcome and the
    time of each response per server are recorded."""

    def __init__(self, port: int, threads: int = 6, limit: float = 30.0):
        self.port = port
        self.limit = limit
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures: list[str] = []
        self.last_seen: dict[str, float] = {}
        self.by_server: dict[str, int] = {}
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        client = None
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            try:
                if client is None:
                    client = Client(self.port, timeout=5)
                resp = client.request("GET", "/")
                now = time.monotonic()
                with self.lock:
                    if resp.status == 200:
                        self.ok += 1
                        name = served_by(resp.text)
                        self.by_server[name] = self.by_server.get(name, 0) + 1
                        self.last_seen[name] = now
                    else:
                        self.failures.append(f"status {resp.status}: {resp.text[:80]}")
                if resp.header("connection") == "close":
                    client.close()
                    client = None
            except Exception as e:  # noqa: BLE001 - every failure is recorded
                with self.lock:
                    self.failures.append(f"{type(e).__name__}: {e}")
                if client:
                    client.close()
                client = None
        if client:
            client.close()

    def __enter__(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=10)

    def count(self, name: str) -> int:
        with self.lock:
            return self.by_server.get(name, 0)


class AdminUnderLoadTest(ProxyTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="switchyard-admin-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def wait_until(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.02)
        self.fail(f"timed out waiting for {what}")

    def test_drain_and_maintenance_under_load_fail_nothing(self):
        origins = [self.start_origin(n) for n in ("A", "B", "C")]
        a, b, c = origins
        cfg = proxy_config(pools={"app": {"servers": [o.address for o in origins]}}, workers=2)
        cfg["admin"] = admin_block(self.dir)
        proxy = self.start_proxy(cfg)
        admin = AdminClient(admin_url(proxy))
        base = "/api/v1/pools/app/servers/"
        with Load(proxy.port) as load:
            self.wait_until(lambda: min(load.count(n) for n in "ABC") > 20, 10, "traffic on A, B, C")
            # Drain B: from the moment the API answers, B gets no new request.
            admin.json("PATCH", base + b.address, {"drain": True})
            time.sleep(0.2)  # requests already sent to B finish
            before = load.count("B")
            time.sleep(1.0)
            self.assertEqual(load.count("B"), before, "a drained server got new requests")
            # Maintenance on C too: everything goes to A.
            admin.json("PATCH", base + c.address, {"maintenance": True})
            time.sleep(0.2)
            before_c = load.count("C")
            a_before = load.count("A")
            time.sleep(1.0)
            self.assertEqual(load.count("C"), before_c, "a server in maintenance got new requests")
            self.assertGreater(load.count("A"), a_before + 20)
            # Back: B and C serve again.
            admin.json("PATCH", base + b.address, {"drain": False})
            admin.json("PATCH", base + c.address, {"maintenance": False})
            b_back, c_back = load.count("B"), load.count("C")
            self.wait_until(lambda: load.count("B") > b_back + 20 and load.count("C") > c_back + 20,
                            10, "B and C back in service")
            # Re-weight, add a server and remove one while requests flow.
            d = self.start_origin("D")
            admin.json("PATCH", base + a.address, {"weight": 4})
            admin.json("POST", "/api/v1/pools/app/servers", {"address": d.address}, expect=201)
            self.wait_until(lambda: load.count("D") > 20, 10, "traffic on the added server")
            admin.json("DELETE", base + c.address)
            time.sleep(0.2)
            gone = load.count("C")
            time.sleep(0.5)
            self.assertEqual(load.count("C"), gone, "a removed server got new requests")
        self.assertEqual(load.failures, [], f"{len(load.failures)} failed requests")
        self.assertGreater(load.ok, 500)
        self.assertTrue(proxy.running())


if __name__ == "__main__":
    unittest.main()
