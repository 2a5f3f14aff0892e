"""Runtime changes through the admin API under load: draining, maintenance, re-weighting, adding
and removing servers take effect at once (the drained server gets no new request within a
moment), and no request fails meanwhile.
"""

import shutil
import tempfile
import time
import unittest

from harness import AdminClient, LoadLoop, ProxyTestCase, admin_block, admin_url, proxy_config


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
        with LoadLoop(proxy.port, threads=6, limit=30.0) as load:
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
