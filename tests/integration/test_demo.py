"""`switchyard demo` (what scripts/demo runs): the proxy answers from its built-in origins."""

import os
import re
import signal
import subprocess
import tempfile
import time
import unittest

from harness import Client, switchyard_bin

READY = re.compile(r"listener demo ready on 127\.0\.0\.1:(\d+)")


class DemoTest(unittest.TestCase):
    def test_demo_proxies_to_its_builtin_origins_round_robin(self):
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen([switchyard_bin(), "demo", "--port", "0"], stdout=out,
                                    stderr=err, start_new_session=True)
            try:
                port = None
                deadline = time.monotonic() + 10
                while port is None and time.monotonic() < deadline:
                    err.seek(0)
                    m = READY.search(err.read().decode(errors="replace"))
                    port = int(m.group(1)) if m else None
                    time.sleep(0.05)
                self.assertIsNotNone(port, "demo never reported its listener")
                seen = set()
                for i in range(6):  # fresh connections: both workers, every origin in turn
                    with Client(port) as c:
                        resp = c.request("GET", f"/try{i}")
                    self.assertEqual(resp.status, 200, resp)
                    m = re.match(rb"Hello from demo origin (\w)", resp.body)
                    self.assertIsNotNone(m, resp.body)
                    seen.add(m.group(1))
                self.assertGreaterEqual(len(seen), 2, f"round robin used only {seen}")
                out.seek(0)
                printed = out.read().decode(errors="replace")
                self.assertIn("pool: demo", printed, "the demo prints the configuration it uses")
                self.assertIn(f"curl -v http://127.0.0.1:{port}/", printed)
            finally:
                os.killpg(proc.pid, signal.SIGTERM)
                self.assertEqual(proc.wait(timeout=10), 0, "demo did not stop cleanly on SIGTERM")


if __name__ == "__main__":
    unittest.main()
