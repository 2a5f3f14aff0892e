"""testssl.sh audit of the TLS front end (scripts/testssl): no HIGH or CRITICAL finding about the
server. About a minute; skipped with a message when testssl.sh is not installed."""

import os
import shutil
import subprocess
import unittest

from harness import switchyard_bin

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


@unittest.skipIf(shutil.which("testssl") is None, "testssl.sh is not installed (scripts/setup)")
class TestSsl(unittest.TestCase):
    def test_no_high_or_critical_findings(self):
        env = dict(os.environ, SWITCHYARD_BIN=os.path.abspath(switchyard_bin()))
        r = subprocess.run([os.path.join(ROOT, "scripts", "testssl")], env=env, text=True,
                           capture_output=True, timeout=600)
        summary = [l for l in (r.stdout + r.stderr).splitlines()
                   if l.startswith("testssl:") or "HIGH" in l or "CRITICAL" in l]
        print("\n".join(summary))
        self.assertEqual(r.returncode, 0, r.stdout[-4000:] + r.stderr[-4000:])
        self.assertIn("testssl: 0 finding(s)", r.stdout)


if __name__ == "__main__":
    unittest.main()
