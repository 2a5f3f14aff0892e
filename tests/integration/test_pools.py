"""Server pools over real sockets: active health checks, retries, drain, persistence, backup
servers, route fallbacks, max_connections with a queue, and hashing schedulers.

Every origin answers "origin NAME: METHOD TARGET" by default, so a response names the server that
served it. Loads are bounded in time and count.
"""

import re
import threading
import time
import unittest

from harness import LoadLoop, Origin, ProxyTestCase, proxy_config, served_by, unused_port

FAST_HEALTH = {"http": {"path": "/healthz"}, "interval": "100ms", "timeout": "100ms",
               "rise": 2, "fall": 2, "jitter": 0}


class PoolTestCase(ProxyTestCase):
    def wait_for_log(self, proxy, pattern: str, timeout: float, offset: int = 0) -> float:
        """Seconds until `pattern` (a regex) appears in the proxy's stderr after `offset`."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if re.search(pattern, proxy.stderr_since(offset)):
                return time.monotonic() - start
            time.sleep(0.02)
        self.fail(f"no /{pattern}/ in the proxy log within {timeout}s")

    def names(self, proxy, n: int, target: str = "/", headers=()) -> list[str]:
        out = []
        for _ in range(n):
            resp = self.fetch(proxy, target, headers=headers)
            self.assertEqual(resp.status, 200, resp.text)
            out.append(served_by(resp.text))
        return out


class HealthAndRetries(PoolTestCase):
    def test_killed_server_is_marked_down_then_readmitted_with_no_failed_requests(self):
        a, b, c = self.start_origin("A"), self.start_origin("B"), self.start_origin("C")
        pools = {"app": {"scheduler": "rr", "retries": 2, "health": FAST_HEALTH,
                         "servers": [{"address": o.address} for o in (a, b, c)]}}
        proxy = self.start_proxy(proxy_config(pools=pools, workers=2))
        self.wait_for_log(proxy, rf"server app/{re.escape(b.address)} UP", 5)
        with LoadLoop(proxy.port) as load:
            time.sleep(1.0)
            offset = proxy.stderr_size()
            b.stop()
            killed = time.monotonic()
            took = self.wait_for_log(proxy, rf"server app/{re.escape(b.address)} DOWN", 5, offset)
            # interval x fall = 200 ms, plus a check timeout and scheduling slack.
            self.assertLess(took, 1.0, "the monitor took too long to mark the server down")
            time.sleep(0.5)
            before = load.snapshot().get("B", 0)
            time.sleep(0.5)
            self.assertEqual(load.snapshot().get("B", 0), before, "B still gets requests")
            # Restart on the same port: readmitted after `rise` good checks.
            offset = proxy.stderr_size()
            b2 = Origin("B", port=b.port).start()
            self.addCleanup(b2.stop)
            took = self.wait_for_log(proxy, rf"server app/{re.escape(b.address)} UP", 5, offset)
            self.assertLess(took, 1.5)
            time.sleep(0.5)
            self.assertGreater(load.snapshot().get("B", 0), before, "B was not readmitted")
            self.assertLess(time.monotonic() - killed, 15)
        self.assertEqual(load.failures, [], f"failed requests: {load.failures[:5]}")
        self.assertGreater(load.ok, 100)

    def test_http_check_status_and_body(self):
        a, b = self.start_origin("A"), self.start_origin("B")
        health = dict(FAST_HEALTH, http={"path": "/healthz", "expect": 200, "body": "ok"})
        pools = {"app": {"health": health,
                         "servers": [{"address": a.address}, {"address": b.address}]}}
        proxy = self.start_proxy(proxy_config(pools=pools))
        self.wait_for_log(proxy, rf"server app/{re.escape(b.address)} UP", 5)
        b.health_status = 503
        self.wait_for_log(proxy, rf"server app/{re.escape(b.address)} DOWN", 5)
        time.sleep(0.1)
        self.assertEqual(set(self.names(proxy, 6)), {"A"})

    def test_retries_never_hit_the_same_server_twice(self):
        origins = [self.start_origin(n) for n in "ABC"]
        pools = {"app": {"retries": 1, "outlier": {"consecutive_failures": 0},
                         "servers": [{"address": o.address} for o in origins]}}
        proxy = self.start_proxy(proxy_config(pools=pools))
        resp = self.fetch(proxy, "/close-before-head")
        self.assertEqual(resp.status, 502)
        seen = [len([r for r in o.requests if r.path == "/close-before-head"]) for o in origins]
        self.assertEqual(sorted(seen), [0, 1, 1], "1 try + 1 retry, on two different servers")

    def test_non_idempotent_requests_are_not_retried_once_sent(self):
        origins = [self.start_origin(n) for n in "AB"]
        pools = {"app": {"retries": 3, "outlier": {"consecutive_failures": 0},
                         "servers": [{"address": o.address} for o in origins]}}
        proxy = self.start_proxy(proxy_config(pools=pools))
        resp = self.fetch(proxy, "/close-before-head", method="POST", body=b"x" * 10)
        self.assertEqual(resp.status, 502)
        seen = sum(len(o.requests) for o in origins)
        self.assertEqual(seen, 1)

    def test_connect_failures_move_on_and_any_method_retries(self):
        a = self.start_origin("A")
        dead = [f"127.0.0.1:{unused_port()}" for _ in range(2)]
        pools = {"app": {"scheduler": "rr", "retries": 2,
                         "servers": [{"address": d} for d in dead] + [{"address": a.address}]}}
        proxy = self.start_proxy(proxy_config(pools=pools))
        for _ in range(4):
            resp = self.fetch(proxy, "/", method="POST", body=b"hello")
            self.assertEqual(resp.status, 200, resp.text)
            self.assertEqual(served_by(resp.text), "A")
        # With no retries left the answer is 503 (nothing could take the request).
        pools["app"]["retries"] = 0
        pools["app"]["servers"] = [{"address": d} for d in dead]
        proxy2 = self.start_proxy(proxy_config(pools=pools))
        self.assertEqual(self.fetch(proxy2, "/").status, 503)

    def test_passive_ejection_after_consecutive_failures(self):
        a, b = self.start_origin("A"), self.start_origin("B")
        pools = {"app": {"scheduler": "rr",
                         "outlier": {"consecutive_failures": 3, "base_ejection": "5s"},
                         "servers": [{"address": a.address}, {"address": b.address}]}}
        proxy = self.start_proxy(proxy_config(pools=pools))
        for _ in range(6):  # three 500s from each server
            self.fetch(proxy, "/status?code=500")
        self.wait_for_log(proxy, r"ejected for 5000 ms: 3 consecutive", 2)
        # Both ejected: nothing usable, 503 (no panic routing).
        self.assertEqual(self.fetch(proxy, "/").status, 503)


class DrainAndReload(PoolTestCase):
    def test_drain_stops_new_requests_and_lets_in_flight_ones_finish(self):
        a, b = self.start_origin("A"), self.start_origin("B")
        servers = [{"address": a.address}, {"address": b.address}]
        config = proxy_config(pools={"app": {"scheduler": "rr", "servers": servers}})
        proxy = self.start_proxy(config)
        results = []

        def slow():
            results.append(self.fetch(proxy, "/slow?delay=1.5", timeout=10))

        threads = [threading.Thread(target=slow) for _ in range(2)]
        for t in threads:
            t.start()
        a.wait_for_requests(1)
        b.wait_for_requests(1)
        config["pools"]["app"]["servers"][0]["drain"] = True
        self.assertTrue(proxy.reload(config).applied)
        before = len(a.requests)
        self.assertEqual(set(self.names(proxy, 10)), {"B"})
        self.assertEqual(len(a.requests), before, "a draining server got a new request")
        for t in threads:
            t.join(timeout=10)
        self.assertEqual([r.status for r in results], [200, 200])
        # Its keep-alive connections are closed rather than kept idle (once the proxy has seen
        # the last responses' sends complete, a moment after the clients got them).
        deadline = time.monotonic() + 3
        while a.open_connections and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(a.open_connections, 0)

    def test_weight_change_by_reload_keeps_other_servers_connections(self):
        a, b = self.start_origin("A"), self.start_origin("B")
        config = proxy_config(pools={"app": {"scheduler": "wrr", "servers": [
            {"address": a.address, "weight": 1}, {"address": b.address, "weight": 1}]}})
        proxy = self.start_proxy(config)
        with self.connect(proxy) as client:
            for _ in range(4):
                self.assertEqual(client.request("GET", "/").status, 200)
            accepted = b.connections_accepted
            config["pools"]["app"]["servers"][0]["weight"] = 0
            self.assertTrue(proxy.reload(config).applied)
            names = [served_by(client.request("GET", "/").text) for _ in range(4)]
        self.assertEqual(set(names), {"B"})
        self.assertEqual(b.connections_accepted, accepted, "B's idle connection was not reused")


class Persistence(PoolTestCase):
    def test_source_persistence_holds_across_connections_workers_and_reload(self):
        origins = [self.start_origin(n) for n in "ABCD"]
        config = proxy_config(workers=2, pools={"app": {
            "scheduler": "rr", "persistence": {"source": {"timeout": "60s"}},
            "servers": [{"address": o.address} for o in origins]}})
        proxy = self.start_proxy(config)
        first = self.names(proxy, 12)  # 12 connections, spread over both workers
        self.assertEqual(len(set(first)), 1, first)
        config["timeouts"] = {"client_idle": "30s"}  # an unrelated change
        self.assertTrue(proxy.reload(config).applied)
        self.assertEqual(set(self.names(proxy, 6)), set(first))

    def test_cookie_persistence_inserts_and_honours_the_cookie(self):
        origins = [self.start_origin(n) for n in "ABC"]
        pools = {"app": {"scheduler": "rr", "persistence": {"cookie": {"name": "SRV"}},
                         "servers": [{"address": o.address} for o in origins]}}
        proxy = self.start_proxy(proxy_config(pools=pools))
        resp = self.fetch(proxy, "/")
        cookie = resp.header("set-cookie")
        self.assertIsNotNone(cookie)
        self.assertRegex(cookie, r"^SRV=[0-9a-f]{16}; Path=/; HttpOnly$")
        server = served_by(resp.text)
        value = cookie.split(";")[0]
        for _ in range(6):
            r = self.fetch(proxy, "/", headers=[("Cookie", f"a=b; {value}")])
            self.assertEqual(served_by(r.text), server)
            self.assertIsNone(r.header("set-cookie"), "a matching cookie is not set again")
        # A cookie naming no server: scheduled normally and given a fresh cookie.
        r = self.fetch(proxy, "/", headers=[("Cookie", "SRV=0000000000000000")])
        self.assertIsNotNone(r.header("set-cookie"))


class Capacity(PoolTestCase):
    def test_max_connections_queues_then_refuses(self):
        a = self.start_origin("A")
        pools = {"app": {"queue": {"size": 1, "timeout": "5s"},
                         "servers": [{"address": a.address, "max_connections": 1}]}}
        proxy = self.start_proxy(proxy_config(pools=pools))
        results = {}

        def get(i):
            start = time.monotonic()
            r = self.fetch(proxy, "/slow?delay=0.6", timeout=10)
            results[i] = (r.status, time.monotonic() - start)

        threads = []
        for i in range(3):
            threads.append(threading.Thread(target=get, args=(i,)))
            threads[-1].start()
            time.sleep(0.15)
        for t in threads:
            t.join(timeout=10)
        statuses = sorted(s for s, _ in results.values())
        self.assertEqual(statuses, [200, 200, 503], results)
        # The queued one waited for the first to finish: never two at the origin at once.
        slowest_ok = max(d for s, d in results.values() if s == 200)
        self.assertGreater(slowest_ok, 1.0)
        refused = [d for s, d in results.values() if s == 503]
        self.assertLess(refused[0], 0.5, "a full queue answers at once")

    def test_queue_timeout_is_503(self):
        a = self.start_origin("A")
        pools = {"app": {"queue": {"size": 5, "timeout": "300ms"},
                         "servers": [{"address": a.address, "max_connections": 1}]}}
        proxy = self.start_proxy(proxy_config(pools=pools))
        t = threading.Thread(target=lambda: self.fetch(proxy, "/slow?delay=1.5", timeout=10))
        t.start()
        a.wait_for_requests(1)
        start = time.monotonic()
        self.assertEqual(self.fetch(proxy, "/").status, 503)
        self.assertLess(time.monotonic() - start, 1.2)
        t.join(timeout=10)


class FallbackAndBackup(PoolTestCase):
    def test_route_fallback_respond_and_pool(self):
        backup = self.start_origin("SORRY")
        dead = f"127.0.0.1:{unused_port()}"
        pools = {"app": {"retries": 0, "servers": [{"address": dead}]},
                 "sorry": {"servers": [{"address": backup.address}]}}
        routes = {"main": [
            {"match": {"path_prefix": "/page/"}, "pool": "app",
             "fallback": {"respond": {"status": 503, "body": "be right back\n"}}},
            {"pool": "app", "fallback": {"pool": "sorry"}}]}
        proxy = self.start_proxy(proxy_config(pools=pools, routes=routes))
        r = self.fetch(proxy, "/page/1")
        self.assertEqual((r.status, r.text), (503, "be right back\n"))
        r = self.fetch(proxy, "/other")
        self.assertEqual(r.status, 200)
        self.assertEqual(served_by(r.text), "SORRY")

    def test_backup_server_serves_only_while_primaries_are_down(self):
        a, bk = self.start_origin("A"), self.start_origin("BACKUP")
        pools = {"app": {"health": FAST_HEALTH, "servers": [
            {"address": a.address}, {"address": bk.address, "backup": True}]}}
        proxy = self.start_proxy(proxy_config(pools=pools))
        self.assertEqual(set(self.names(proxy, 4)), {"A"})
        a.health_status = 500
        self.wait_for_log(proxy, rf"server app/{re.escape(a.address)} DOWN", 5)
        time.sleep(0.1)
        self.assertEqual(set(self.names(proxy, 4)), {"BACKUP"})


class HashingSchedulers(PoolTestCase):
    def test_header_hash_keeps_a_user_on_one_server_and_spreads_users(self):
        origins = [self.start_origin(n) for n in "ABCD"]
        for scheduler in ("mh", "sh", "dh"):
            with self.subTest(scheduler=scheduler):
                pools = {"app": {"scheduler": scheduler, "hash": {"header": "x-user"},
                                 "servers": [{"address": o.address} for o in origins]}}
                proxy = self.start_proxy(proxy_config(pools=pools))
                seen = set()
                for user in range(16):
                    names = self.names(proxy, 3, headers=[("X-User", f"user{user}")])
                    self.assertEqual(len(set(names)), 1, names)
                    seen.add(names[0])
                self.assertGreaterEqual(len(seen), 3, seen)

    def test_least_connection_avoids_the_busy_server(self):
        a, b = self.start_origin("A"), self.start_origin("B")
        pools = {"app": {"scheduler": "lc",
                         "servers": [{"address": a.address}, {"address": b.address}]}}
        proxy = self.start_proxy(proxy_config(pools=pools))
        # Tie broken either way: occupy whichever server gets the slow request, then the rest
        # must go to the other one.
        t = threading.Thread(target=lambda: self.fetch(proxy, "/slow?delay=1.2", timeout=10))
        t.start()
        deadline = time.monotonic() + 5
        while not (a.requests or b.requests) and time.monotonic() < deadline:
            time.sleep(0.01)
        busy = "A" if a.requests else "B"
        names = self.names(proxy, 6)
        self.assertNotIn(busy, names)
        t.join(timeout=10)


if __name__ == "__main__":
    unittest.main()
