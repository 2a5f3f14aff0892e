"""The live dashboard in a real browser: headless Chromium (Debian's `chromium`) driven by
Playwright (tests/browser/, `playwright-core` from npm) signs in, sees the pools, drains a server
with a click and sees its state change. Over plain HTTP and over HTTPS. The screenshots go to
<build dir>/test-artifacts/.

Skipped, with the reason, when node, chromium or tests/browser/node_modules are missing
(scripts/setup installs them).
"""

import os
import shutil
import subprocess
import tempfile
import unittest

from harness import ADMIN_TOKEN, AdminClient, ProxyTestCase, admin_block, admin_url, proxy_config, switchyard_bin

HERE = os.path.dirname(os.path.abspath(__file__))
BROWSER_DIR = os.path.normpath(os.path.join(HERE, "..", "browser"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def missing() -> str:
    if not shutil.which("node"):
        return "node is not installed"
    if not os.path.exists(CHROMIUM):
        return "chromium is not installed (apt-get install chromium)"
    if not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")):
        return "playwright-core is not installed (cd tests/browser && npm ci)"
    return ""


@unittest.skipIf(missing(), missing())
class DashboardTest(ProxyTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="switchyard-dashboard-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.artifacts = os.path.join(os.path.dirname(os.path.abspath(switchyard_bin())),
                                      "test-artifacts")
        os.makedirs(self.artifacts, exist_ok=True)

    def run_browser(self, admin_extra: dict, screenshot: str) -> None:
        a, b = self.start_origin("A"), self.start_origin("B")
        cfg = proxy_config(pools={"app": {"servers": [a.address, b.address]}}, workers=2)
        cfg["admin"] = admin_block(self.dir, **admin_extra)
        proxy = self.start_proxy(cfg)
        url = admin_url(proxy)
        for _ in range(20):  # some traffic for the charts and tables
            self.assertEqual(self.fetch(proxy).status, 200)
        path = os.path.join(self.artifacts, screenshot)
        if os.path.exists(path):
            os.remove(path)
        env = dict(os.environ, DASHBOARD_URL=url + "/", ADMIN_TOKEN=ADMIN_TOKEN, POOL="app",
                   SERVER=b.address, SCREENSHOT=path, CHROMIUM=CHROMIUM)
        out = subprocess.run(["node", "dashboard.test.mjs"], cwd=BROWSER_DIR, env=env,
                             capture_output=True, text=True, timeout=180)
        self.assertEqual(out.returncode, 0, f"browser test failed:\n{out.stdout}\n{out.stderr}")
        self.assertTrue(os.path.getsize(path) > 10000, "no screenshot")
        # What the click did is what the proxy did, logged with the token's name.
        self.assertIn(f"admin: server app/{b.address} drain=true by admin token 'ops'",
                      proxy.stderr_text())
        self.assertEqual(AdminClient(url).server("app", b.address)["state"], "up")

    def test_dashboard_over_http(self):
        self.run_browser({}, "dashboard.png")

    def test_dashboard_over_https(self):
        cert = os.path.join(self.dir, "admin.pem")
        key = os.path.join(self.dir, "admin.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
                       check=True, capture_output=True, timeout=60)
        self.run_browser({"tls": {"cert": cert, "key": key}}, "dashboard-https.png")


if __name__ == "__main__":
    unittest.main()
