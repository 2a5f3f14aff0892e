"""Content-based routing over real sockets: match predicates (host, path, method, header, query,
cookie, source, not/any/all), goto with fallthrough, redirect, respond, header edits, path
rewrites, weighted and sticky splits, and the example configs in config/.

One proxy serves most tests: each pool has its own origin, and every origin's default answer is
"origin NAME: METHOD TARGET", so a response names the pool that served it and the target the
origin received.
"""

import json
import re
import sys
import threading
import time
import unittest

from harness import Client, Origin, Proxy, ProxyTestCase, Response, example_config

POOLS = ["api", "wild", "exact", "pathexact", "static", "plain", "canary", "flagged", "mobile",
         "anonymous", "users", "apifallback", "local", "debug", "paged", "beta", "gold",
         "allpool", "notget", "rewritten", "legacy", "edit", "splita", "splitb"]

# {POOLS} is replaced by the pools section. Routes are in the order they are tried; the tests
# below refer to them by what they match.
ROUTING_CONFIG = r"""
workers: 2
access_log: { enabled: true, format: json, path: "-" }
listeners:
  - name: web
    bind: 127.0.0.1:0
    routes: main
  - name: strict
    bind: 127.0.0.1:0
    routes: strict
routes:
  main:
    - match: { host: api.example.com, path_prefix: /v1/, method: [GET, POST] }
      pool: api
    - match: { host: "*.wild.test" }
      pool: wild
    - match: { host: exact.test }
      pool: exact
    - match: { path: /a/c }
      pool: pathexact
    - match: { path_regex: "^/static/.+\\.(css|js)$" }
      pool: static
      response_headers:
        set: { cache-control: "max-age=3600", content-type: text/css }
        add: { x-added: one }
    - match: { path_prefix: /noctype/ }
      pool: plain
      response_headers: { remove: [content-type] }
    - match: { header: { x-canary: "1" } }
      pool: canary
    - match: { header: { x-flag: { present: true } } }
      pool: flagged
    - match: { header: { user-agent: { regex: ".*(Mobile|Android).*" } } }
      pool: mobile
    - match: { all: [ { path_prefix: /absent/ }, { header: { x-token: { present: false } } } ] }
      pool: anonymous
    - match: { any: [ { host: old.example.com }, { host: "*.old.example.com" } ] }
      redirect: { status: 301, scheme: https, host: new.example.com }
    - match: { path_prefix: /api/ }
      goto: api_routes
    - match: { path_regex: "^/api/" }
      pool: apifallback
    - match: { not: { source: [10.0.0.0/8] }, path_prefix: /admin }
      respond:
        status: 403
        headers: { content-type: text/plain, x-reason: not-internal }
        body: "forbidden\n"
    - match: { source: [127.0.0.0/8], path_prefix: /local/ }
      pool: local
    - match: { source: [10.0.0.0/8], path_prefix: /internal/ }
      pool: local
    - match: { query: { debug: "1" } }
      pool: debug
    - match: { query: { page: { regex: "^[0-9]+$" } } }
      pool: paged
    - match: { cookie: { beta: { present: true } } }
      pool: beta
    - match: { cookie: { tier: { exact: gold } } }
      pool: gold
    - match: { path_prefix: /all/, all: [ { method: PUT }, { header: { x-a: "1" } } ] }
      pool: allpool
    - match: { path_prefix: /not/, not: { method: [GET, HEAD] } }
      pool: notget
    - match: { path_prefix: /v1/ }
      rewrite: { path_prefix: { from: /v1/, to: /api/v1/ } }
      pool: rewritten
    - match: { path_prefix: /old/ }
      rewrite: { path_regex: { pattern: "^/old/(.*)$", replace: "/new/\\1" } }
      pool: legacy
    - match: { path: /headers, header: { x-edit: "1" } }
      request_headers:
        set: { x-version: "1" }
        add: { x-trace: "on" }
        remove: [cookie, x-remove-me]
      pool: edit
    - match: { path_prefix: /split/ }
      split: [ { pool: splita, weight: 30 }, { pool: splitb, weight: 70 } ]
    - match: { path_prefix: /sticky-cookie/ }
      split: [ { pool: splita, weight: 50 }, { pool: splitb, weight: 50 } ]
      sticky: { cookie: uid }
    - match: { path_prefix: /sticky-header/ }
      split: [ { pool: splita, weight: 50 }, { pool: splitb, weight: 50 } ]
      sticky: { header: x-user }
    - match: { method: OPTIONS }
      respond: { status: 204, headers: { allow: "GET, POST" } }
    - respond: { status: 404, headers: { content-type: text/plain }, body: "no route\n" }
  api_routes:
    - match: { path_prefix: /api/users/ }
      pool: users
    - match: { path: /api/status }
      respond: { status: 200, body: "api ok\n" }
  strict:
    - match: { path: /only }
      pool: exact
pools:
{POOLS}
"""

_ORIGIN_BODY = re.compile(r"origin (\S+): (\S+) (\S+)\n")


def served_by(resp: Response) -> str | None:
    """The origin (= pool) named by a default origin answer, else None."""
    m = _ORIGIN_BODY.fullmatch(resp.text)
    return m.group(1) if m and resp.status == 200 else None


def origin_target(resp: Response) -> str | None:
    """The request-target the origin received, from its default answer."""
    m = _ORIGIN_BODY.fullmatch(resp.text)
    return m.group(3) if m else None


class RoutingTestBase(ProxyTestCase):
    """Helpers shared by the routing tests."""

    def request(self, port: int, target: str, method: str = "GET", host: str | None = None,
                headers=(), body=None) -> Response:
        fields = list(headers)
        if host is not None:
            fields.insert(0, ("Host", host))
        with Client(port, timeout=10.0) as client:
            return client.request(method, target, fields, body)

    def assertLands(self, resp: Response, pool: str, what: str, target: str | None = None):
        self.assertEqual(served_by(resp), pool, f"{what}: expected pool {pool!r}, got {resp}")
        if target is not None:
            self.assertEqual(origin_target(resp), target,
                             f"{what}: origin {pool!r} received the wrong target: {resp}")

    def assertNoRoute(self, resp: Response, what: str):
        self.assertEqual(resp.status, 404, f"{what}: expected the 404 no-route answer, got {resp}")
        self.assertIn("no route", resp.text, f"{what}: {resp}")


class RoutingTest(RoutingTestBase):
    """The big route table above, on one proxy shared by every test of the class."""

    origins: dict[str, Origin] = {}
    proxy: Proxy

    @classmethod
    def setUpClass(cls):
        cls.origins = {}
        try:
            for name in POOLS:
                cls.origins[name] = Origin(name).start()
            pools = "\n".join(f"  {name}:\n    servers: [{origin.address}]"
                              for name, origin in cls.origins.items())
            cls.proxy = Proxy(ROUTING_CONFIG.replace("{POOLS}", pools))
            cls.proxy.start()
        except BaseException:
            cls._stop_all()
            raise

    @classmethod
    def _stop_all(cls):
        proxy = getattr(cls, "proxy", None)
        if proxy is not None:
            proxy.close()
        for origin in cls.origins.values():
            origin.stop()

    @classmethod
    def tearDownClass(cls):
        cls._stop_all()

    def setUp(self):
        self.assertTrue(self.proxy.running(), "the shared proxy is not running (died earlier)")
        self.port = self.proxy.ports["web"]
        self.addCleanup(self._after_test)

    def _after_test(self):
        if self._test_failed() or not self.proxy.running():
            sys.stderr.write("\n" + self.proxy.describe(tail=30) + "\n")
        if not self.proxy.running():
            self.fail(f"the proxy died during the test (exit {self.proxy.proc.returncode})")

    def get(self, target: str, host: str | None = None, method: str = "GET", headers=(),
            body=None) -> Response:
        return self.request(self.port, target, method, host, headers, body)

    def total_origin_requests(self) -> int:
        return sum(len(o.requests) for o in self.origins.values())

    # -- host -------------------------------------------------------------------------------
    def test_host_exact_case_insensitive_and_port_ignored(self):
        for host in ("exact.test", "EXACT.Test", "exact.test:8080", "Exact.TEST:1"):
            self.assertLands(self.get("/h", host), "exact", f"Host: {host}", "/h")
        for host in ("sub.exact.test", "exact.test.evil", "xexact.test"):
            self.assertNoRoute(self.get("/h", host), f"Host: {host} must not match exact.test")

    def test_host_wildcard(self):
        for host in ("a.wild.test", "a.b.wild.test", "A.WILD.TEST:80"):
            self.assertLands(self.get("/w", host), "wild", f"Host: {host} vs *.wild.test")
        for host in ("wild.test", "xwild.test", "wild.test.evil"):
            self.assertNoRoute(self.get("/w", host), f"Host: {host} must not match *.wild.test")

    # -- host + path prefix + method, all in one match ----------------------------------------
    def test_host_prefix_and_method_together(self):
        for method in ("GET", "POST"):
            for host in ("api.example.com", "API.Example.COM:8443"):
                resp = self.get("/v1/items?id=3", host, method, body=b"x" if method == "POST"
                                else None)
                self.assertLands(resp, "api", f"{method} {host} /v1/items", "/v1/items?id=3")
        # Another method falls through to the next /v1/ route (the rewriting one).
        resp = self.get("/v1/items", "api.example.com", "DELETE")
        self.assertLands(resp, "rewritten", "DELETE api.example.com /v1/items", "/api/v1/items")
        # Another host, too.
        resp = self.get("/v1/items", "api.example.com.evil", "GET")
        self.assertLands(resp, "rewritten", "GET api.example.com.evil /v1/items")
        # /v1 is not under the prefix /v1/.
        self.assertNoRoute(self.get("/v1", "api.example.com"), "GET api.example.com /v1")

    # -- path ---------------------------------------------------------------------------------
    def test_path_exact_uses_the_normalised_path(self):
        for target in ("/a/c", "/a/./b/../%63", "//a//c", "/%61/c", "/a/b/../c?x=1", "/x/../a/c",
                       "/../a/c"):
            resp = self.get(target)
            self.assertLands(resp, "pathexact", f"GET {target} (normalises to /a/c)")
        for target in ("/a/c/", "/A/c", "/a/cc", "/a", "/a/c%2F"):
            self.assertNoRoute(self.get(target), f"GET {target} must not match path /a/c")

    def test_path_regex(self):
        for target in ("/static/site.css", "/static/js/app.js", "/static/a/../b.css?v=2"):
            self.assertLands(self.get(target), "static", f"GET {target}")
        for target in ("/static/img.png", "/static/site.css.map", "/static/.css",
                       "/x/static/site.css"):
            self.assertNoRoute(self.get(target), f"GET {target} must not match the regex")

    # -- headers ------------------------------------------------------------------------------
    def test_header_exact(self):
        self.assertLands(self.get("/h", headers=[("X-Canary", "1")]), "canary", "X-Canary: 1")
        self.assertLands(self.get("/h", headers=[("x-CANARY", "1")]), "canary",
                         "header names are case-insensitive")
        self.assertLands(self.get("/h", headers=[("X-Canary", "0"), ("X-Canary", "1")]), "canary",
                         "any value of a repeated header may match")
        for value in ("2", "11", "10"):
            self.assertNoRoute(self.get("/h", headers=[("X-Canary", value)]),
                               f"X-Canary: {value} must not match exact '1'")

    def test_header_present_and_absent(self):
        self.assertLands(self.get("/h", headers=[("X-Flag", "whatever")]), "flagged",
                         "X-Flag present")
        self.assertLands(self.get("/absent/x"), "anonymous", "no X-Token on /absent/")
        self.assertNoRoute(self.get("/absent/x", headers=[("X-Token", "t")]),
                           "X-Token present must fail {present: false}")

    def test_header_regex(self):
        mobile = "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Mobile Safari/537.36"
        self.assertLands(self.get("/ua", headers=[("User-Agent", mobile)]), "mobile", mobile)
        self.assertLands(self.get("/ua", headers=[("User-Agent", "Mobile")]), "mobile", "Mobile")
        desktop = "Mozilla/5.0 (X11; Linux x86_64) Firefox/126.0"
        self.assertNoRoute(self.get("/ua", headers=[("User-Agent", desktop)]), desktop)

    # -- query and cookie ---------------------------------------------------------------------
    def test_query(self):
        for target in ("/q?debug=1", "/q?x=2&debug=1", "/q?debug=1&x=2", "/q?%64ebug=1"):
            self.assertLands(self.get(target), "debug", f"GET {target}", target)
        for target in ("/q?debug=0", "/q?debug=10", "/q?xdebug=1", "/q?debug", "/q"):
            self.assertNoRoute(self.get(target), f"GET {target} must not match debug=1")
        self.assertLands(self.get("/q?page=12"), "paged", "page=12 matches ^[0-9]+$")
        self.assertNoRoute(self.get("/q?page=12a"), "page=12a must not match ^[0-9]+$")

    def test_cookie(self):
        for cookie in ("beta=1", "a=b; beta=x", "beta=x; tier=gold"):
            self.assertLands(self.get("/c", headers=[("Cookie", cookie)]), "beta",
                             f"Cookie: {cookie}")
        for cookie in ("tier=gold", "a=1; tier=gold; b=2"):
            self.assertLands(self.get("/c", headers=[("Cookie", cookie)]), "gold",
                             f"Cookie: {cookie}")
        self.assertLands(self.get("/c", headers=[("Cookie", "a=1"), ("Cookie", "tier=gold")]),
                         "gold", "a cookie in a second Cookie field")
        for cookie in ("tier=silver", "tier=golden", "notbeta=1", "xtier=gold"):
            self.assertNoRoute(self.get("/c", headers=[("Cookie", cookie)]),
                               f"Cookie: {cookie} must match neither cookie route")

    # -- source -------------------------------------------------------------------------------
    def test_source(self):
        # The tests connect from 127.0.0.1: in 127.0.0.0/8, not in 10.0.0.0/8.
        self.assertLands(self.get("/local/x"), "local", "source 127.0.0.0/8 from 127.0.0.1")
        self.assertNoRoute(self.get("/internal/x"), "source 10.0.0.0/8 must not match 127.0.0.1")
        self.assertNoRoute(self.get("/internal/x", headers=[("X-Forwarded-For", "10.1.2.3")]),
                           "source is the peer address, not X-Forwarded-For")

    # -- not / any / all ----------------------------------------------------------------------
    def test_not_source_respond_with_status_body_and_headers(self):
        before = self.total_origin_requests()
        for target in ("/admin", "/admin/panel", "/administrator"):
            resp = self.get(target)
            self.assertEqual(resp.status, 403, f"GET {target}: {resp}")
            self.assertEqual(resp.body, b"forbidden\n", f"GET {target}: {resp}")
            self.assertEqual(resp.header("x-reason"), "not-internal", resp)
            self.assertEqual(resp.header("content-type"), "text/plain", resp)
        self.assertEqual(self.total_origin_requests(), before, "respond must not reach an origin")

    def test_not_method(self):
        self.assertLands(self.get("/not/x", method="POST", body=b"p"), "notget", "POST /not/x")
        self.assertLands(self.get("/not/x", method="DELETE"), "notget", "DELETE /not/x")
        self.assertNoRoute(self.get("/not/x"), "GET /not/x is excluded by not")
        resp = self.get("/not/x", method="HEAD")
        self.assertEqual(resp.status, 404, f"HEAD /not/x is excluded by not: {resp}")

    def test_all(self):
        self.assertLands(self.get("/all/x", method="PUT", headers=[("X-A", "1")], body=b""),
                         "allpool", "PUT /all/x with X-A: 1")
        self.assertNoRoute(self.get("/all/x", headers=[("X-A", "1")]), "GET /all/x with X-A")
        self.assertNoRoute(self.get("/all/x", method="PUT", body=b""), "PUT /all/x without X-A")
        self.assertNoRoute(self.get("/other", method="PUT", headers=[("X-A", "1")], body=b""),
                           "PUT /other with X-A (path prefix fails)")

    def test_any_host_redirect(self):
        before = self.total_origin_requests()
        cases = [("old.example.com", "/some/path?x=1&y=2",
                  "https://new.example.com/some/path?x=1&y=2"),
                 ("www.old.example.com:8080", "/p", "https://new.example.com/p"),
                 ("OLD.example.com", "/", "https://new.example.com/")]
        for host, target, location in cases:
            resp = self.get(target, host)
            self.assertEqual(resp.status, 301, f"GET {target} Host: {host}: {resp}")
            self.assertEqual(resp.header("location"), location,
                             f"GET {target} Host: {host}: {resp}")
        self.assertEqual(self.total_origin_requests(), before, "a redirect must not reach origins")
        self.assertNoRoute(self.get("/p", "old.example.com.evil"), "old.example.com.evil")

    # -- goto ---------------------------------------------------------------------------------
    def test_goto_and_fallthrough(self):
        self.assertLands(self.get("/api/users/7?full=1"), "users", "GET /api/users/7 via goto",
                         "/api/users/7?full=1")
        resp = self.get("/api/status")
        self.assertEqual((resp.status, resp.body), (200, b"api ok\n"),
                         f"respond route in the goto table: {resp}")
        self.assertLands(self.get("/api/orders/1"), "apifallback",
                         "nothing in api_routes matches: continue in main after the goto")

    # -- respond ------------------------------------------------------------------------------
    def test_no_route_catch_all_and_options(self):
        resp = self.get("/nowhere")
        self.assertNoRoute(resp, "GET /nowhere")
        self.assertEqual(resp.body, b"no route\n", resp)
        resp = self.get("/anything", method="OPTIONS")
        self.assertEqual(resp.status, 204, f"OPTIONS: {resp}")
        self.assertEqual(resp.header("allow"), "GET, POST", resp)
        self.assertEqual(resp.body, b"", resp)

    def test_request_matching_no_route_gets_404(self):
        # The strict table has no catch-all route.
        port = self.proxy.ports["strict"]
        self.assertLands(self.request(port, "/only"), "exact", "strict listener GET /only")
        for target in ("/nowhere", "/only/", "/"):
            resp = self.request(port, target)
            self.assertNoRoute(resp, f"strict listener GET {target}")
        # The connection stays usable after a no-route answer.
        with Client(port) as client:
            resp = client.request("GET", "/nowhere")
            self.assertEqual(resp.status, 404, resp)
            if "close" not in resp.headers.tokens("connection"):
                self.assertLands(client.request("GET", "/only"), "exact", "after a 404")

    # -- header edits -------------------------------------------------------------------------
    def test_request_header_edits_seen_by_origin(self):
        sent = [("X-Edit", "1"), ("X-Version", "0"), ("X-Version", "00"), ("X-Trace", "client"),
                ("Cookie", "session=abc"), ("X-Remove-Me", "yes"), ("x-remove-me", "again"),
                ("X-Keep", "kept")]
        resp = self.get("/headers", headers=sent)
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(len(self.origins["edit"].requests), 1,
                         f"the request should reach pool edit: {resp}")
        seen = json.loads(resp.body)
        lower = [(n.lower(), v) for n, v in seen]
        self.assertEqual([v for n, v in lower if n == "x-version"], ["1"],
                         f"set must replace every X-Version: {seen}")
        self.assertEqual(sorted(v for n, v in lower if n == "x-trace"), ["client", "on"],
                         f"add must append X-Trace: on and keep the client's: {seen}")
        self.assertFalse([v for n, v in lower if n in ("cookie", "x-remove-me")],
                         f"remove must drop Cookie and X-Remove-Me: {seen}")
        self.assertIn(("x-keep", "kept"), lower, f"untouched header lost: {seen}")
        self.assertIn(("x-edit", "1"), lower, seen)

    def test_response_header_edits_seen_by_client(self):
        resp = self.get("/static/site.css")
        self.assertLands(resp, "static", "GET /static/site.css")
        self.assertEqual(resp.headers.get_all("cache-control"), ["max-age=3600"], resp)
        self.assertEqual(resp.headers.get_all("content-type"), ["text/css"],
                         f"set must replace the origin's Content-Type: {resp}")
        self.assertEqual(resp.headers.get_all("x-added"), ["one"], resp)
        resp = self.get("/noctype/x")
        self.assertLands(resp, "plain", "GET /noctype/x")
        self.assertFalse(resp.headers.has("content-type"),
                         f"remove must drop the origin's Content-Type: {resp}")
        # Other routes do not get the edits.
        resp = self.get("/a/c")
        self.assertEqual(resp.headers.get_all("content-type"), ["text/plain"], resp)
        self.assertFalse(resp.headers.has("cache-control") or resp.headers.has("x-added"), resp)

    # -- rewrites -----------------------------------------------------------------------------
    def test_rewrite_path_prefix_keeps_query(self):
        resp = self.get("/v1/items/3?x=1&y=%20z")
        self.assertLands(resp, "rewritten", "GET /v1/items/3", "/api/v1/items/3?x=1&y=%20z")
        self.assertLands(self.get("/v1/"), "rewritten", "GET /v1/", "/api/v1/")

    def test_rewrite_path_regex_keeps_query(self):
        self.assertLands(self.get("/old/a/b?q=2"), "legacy", "GET /old/a/b?q=2", "/new/a/b?q=2")
        self.assertLands(self.get("/old/"), "legacy", "GET /old/", "/new/")
        self.assertLands(self.get("/old/x", method="POST", body=b"b"), "legacy", "POST /old/x",
                         "/new/x")

    # -- splits -------------------------------------------------------------------------------
    def test_weighted_split_30_70(self):
        total, threads_n = 10_000, 4
        per_thread = total // threads_n
        counts: list[dict[str, int]] = [dict() for _ in range(threads_n)]
        errors: list[str] = []

        def run(index: int) -> None:
            try:
                with Client(self.port, timeout=10.0) as client:
                    for i in range(per_thread):
                        resp = client.request("GET", f"/split/{index}-{i}")
                        name = served_by(resp)
                        if name not in ("splita", "splitb"):
                            errors.append(f"GET /split/{index}-{i}: {resp}")
                            return
                        counts[index][name] = counts[index].get(name, 0) + 1
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(f"thread {index}: {type(e).__name__}: {e}")

        started = time.monotonic()
        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=90)
        self.assertFalse(any(t.is_alive() for t in threads), "split load did not finish in 90s")
        self.assertEqual(errors, [], "requests failed during the split run")
        a = sum(c.get("splita", 0) for c in counts)
        b = sum(c.get("splitb", 0) for c in counts)
        self.assertEqual(a + b, total)
        share = 100.0 * a / total
        self.assertLess(abs(share - 30.0), 3.0,
                        f"split 30/70 gave {a} A / {b} B ({share:.1f}% A) over {total} requests "
                        f"in {time.monotonic() - started:.1f}s; per connection {counts}")

    def test_sticky_cookie(self):
        with Client(self.port) as client:
            seen = set()
            for i in range(50):
                resp = client.request("GET", f"/sticky-cookie/{i}?r={i * 7919}",
                                      [("Cookie", "theme=dark; uid=user-42")])
                seen.add(served_by(resp))
            self.assertEqual(len(seen), 1, f"uid=user-42 landed on {seen} over 50 requests")
            self.assertLessEqual(seen, {"splita", "splitb"})
            by_user = {}
            for user in range(40):
                pools = set()
                for i in range(3):
                    resp = client.request("GET", f"/sticky-cookie/{user}/{i}",
                                          [("Cookie", f"uid=u{user}")])
                    pools.add(served_by(resp))
                self.assertEqual(len(pools), 1, f"uid=u{user} landed on {pools}")
                by_user[user] = pools.pop()
        self.assertEqual(set(by_user.values()), {"splita", "splitb"},
                         f"40 different uids should spread over both pools: {by_user}")

    def test_sticky_header(self):
        with Client(self.port) as client:
            by_user = {}
            for user in range(30):
                pools = {served_by(client.request("GET", f"/sticky-header/{i}",
                                                  [("X-User", f"user{user}")]))
                         for i in range(5)}
                self.assertEqual(len(pools), 1, f"X-User: user{user} landed on {pools}")
                by_user[user] = pools.pop()
        self.assertEqual(set(by_user.values()), {"splita", "splitb"},
                         f"30 different X-User values should spread over both pools: {by_user}")


class ExampleConfigTest(RoutingTestBase):
    """The example configs in config/, with their placeholder servers replaced by origins."""

    def start_example(self, filename: str, pools: dict[str, str]) -> tuple[Proxy, dict]:
        """pools: placeholder address -> origin name. Returns the proxy and origins by name."""
        origins = {name: self.start_origin(name) for name in sorted(set(pools.values()))}
        text = example_config(filename, {ph: origins[name].address
                                         for ph, name in pools.items()})
        return self.start_proxy(text), origins

    def test_api_gateway(self):
        proxy, origins = self.start_example("api-gateway.yaml", {
            "127.0.0.1:9001": "users", "127.0.0.1:9002": "orders1",
            "127.0.0.1:9003": "orders2", "127.0.0.1:9004": "search"})
        port = proxy.ports["gateway"]
        resp = self.request(port, "/healthz")
        self.assertEqual((resp.status, resp.body), (200, b"ok\n"), resp)
        self.assertLands(self.request(port, "/api/users/42?fields=name"), "users",
                         "GET /api/users/42", "/users/42?fields=name")
        orders = set()
        for method in ("GET", "DELETE", "GET", "PUT"):
            resp = self.request(port, "/api/orders/7?x=1", method, headers=[("Cookie", "s=1")],
                                body=b"" if method == "PUT" else None)
            self.assertIn(served_by(resp), ("orders1", "orders2"), f"{method} /api/orders/7: "
                                                                   f"{resp}")
            self.assertEqual(origin_target(resp), "/v2/orders/7?x=1", resp)
            orders.add(served_by(resp))
            recorded = origins[served_by(resp)].requests[-1]
            self.assertEqual(recorded.headers.get_all("x-gateway"), ["switchyard"],
                             recorded.headers)
            self.assertFalse(recorded.headers.has("cookie"), recorded.headers)
        self.assertEqual(orders, {"orders1", "orders2"}, "both orders servers should be used")
        resp = self.request(port, "/api/orders/7", "PATCH", body=b"")
        self.assertEqual(resp.status, 404, f"PATCH is not exposed: {resp}")
        self.assertIn("no such API", resp.text, resp)
        resp = self.request(port, "/api/search?q=switch")
        self.assertLands(resp, "search", "GET /api/search?q=switch", "/search?q=switch")
        self.assertEqual(resp.header("cache-control"), "public, max-age=60", resp)
        self.assertLands(self.request(port, "/api/search/advanced?q=a"), "search",
                         "GET /api/search/advanced", "/search/advanced?q=a")
        resp = self.request(port, "/api/searchers")
        self.assertEqual(resp.status, 404, f"/api/searchers is not the search API: {resp}")
        self.assertNoRoute(self.request(port, "/index.html"), "GET /index.html")

    def test_virtual_hosts(self):
        proxy, origins = self.start_example("virtual-hosts.yaml", {
            "127.0.0.1:9001": "shop", "127.0.0.1:9002": "tenants", "127.0.0.1:9003": "blog",
            "127.0.0.1:9004": "www"})
        port = proxy.ports["http"]
        self.assertLands(self.request(port, "/cart", host="Shop.Example:80"), "shop", "shop")
        resp = self.request(port, "/cart", host="acme.shop.example")
        self.assertLands(resp, "tenants", "tenant subdomain")
        self.assertEqual(origins["tenants"].requests[-1].headers.get_all("x-vhost"), ["tenant"])
        for host in ("old-shop.example", "m.old-shop.example:8080"):
            resp = self.request(port, "/item/9?color=red", host=host)
            self.assertEqual(resp.status, 301, f"Host: {host}: {resp}")
            self.assertEqual(resp.header("location"), "https://shop.example/item/9?color=red",
                             resp)
        resp = self.request(port, "/about?lang=en", host="example.org")
        self.assertEqual(resp.status, 308, resp)
        self.assertEqual(resp.header("location"), "http://www.example.org/about?lang=en", resp)
        self.assertLands(self.request(port, "/blog/post-1", host="www.example.org"), "blog",
                         "www.example.org/blog/ via goto")
        self.assertLands(self.request(port, "/", host="www.example.org"), "www",
                         "www.example.org/")
        resp = self.request(port, "/admin/", host="www.example.org")
        self.assertEqual((resp.status, resp.body), (403, b"forbidden\n"), resp)
        resp = self.request(port, "/", host="unknown.example")
        self.assertEqual((resp.status, resp.body), (421, b"unknown host\n"), resp)
        self.assertEqual(len(origins["shop"].requests), 1, "redirects must not reach shop")

    def test_canary(self):
        proxy, origins = self.start_example("canary.yaml", {
            "127.0.0.1:9001": "stable", "127.0.0.1:9002": "stable2",
            "127.0.0.1:9003": "canary"})
        port = proxy.ports["web"]
        stable = {"stable", "stable2"}
        resp = self.request(port, "/", headers=[("X-Canary", "always")])
        self.assertLands(resp, "canary", "X-Canary: always")
        self.assertEqual(resp.header("x-release"), "canary", resp)
        resp = self.request(port, "/", headers=[("X-Canary", "never")])
        self.assertIn(served_by(resp), stable, f"X-Canary: never: {resp}")
        self.assertEqual(resp.header("x-release"), "stable", resp)
        version = {}
        with Client(port) as client:
            for user in range(100):
                kinds = set()
                for i in range(3):
                    resp = client.request("GET", f"/page/{i}", [("Cookie", f"uid={user}")])
                    name = served_by(resp)
                    self.assertIsNotNone(name, f"uid={user}: {resp}")
                    kinds.add("stable" if name in stable else name)
                self.assertEqual(len(kinds), 1, f"uid={user} saw both versions: {kinds}")
                version[user] = kinds.pop()
        canary_users = sum(1 for v in version.values() if v == "canary")
        self.assertTrue(1 <= canary_users <= 30,
                        f"expected about 10 of 100 users on the canary (90/10), got "
                        f"{canary_users}")


if __name__ == "__main__":
    unittest.main()
