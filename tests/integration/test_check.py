"""`switchyard check -c FILE` validates a config and reports problems as FILE:LINE:COL: lines."""

import os
import re
import shutil
import subprocess
import tempfile
import unittest

from harness import switchyard_bin

VALID = """\
workers: 1
access_log: { enabled: true, format: json, path: "-" }
limits: { max_header_bytes: 16KiB, max_header_count: 100, max_body_bytes: 1GiB }
timeouts: { client_header: 10s, client_idle: 60s, upstream_connect: 3s, shutdown: 30s }
forwarding: { x_forwarded_for: true, x_forwarded_proto: true, via: true }
listeners:
  - { name: web, bind: "127.0.0.1:0", routes: main }
  - { name: other, bind: "127.0.0.1:0", routes: fallback }
routes:
  main:
    - pool: app
  fallback:
    - respond: { status: 404, body: "no route\\n", headers: { content-type: text/plain } }
pools:
  app:
    servers: [ "127.0.0.1:18080", "127.0.0.1:18081" ]
"""

# Two independent problems; the loader must report both, each with its position.
INVALID = """\
workers: 1
listeners:
  - name: web
    bind: "127.0.0.1:0"
    routes: main
routes:
  main:
    - pool: nowhere
pools:
  app:
    servers: [ "127.0.0.1:18080" ]
    bogus_key: 3
"""
UNKNOWN_POOL_LINE, UNKNOWN_POOL_COLUMNS = 8, {5, 7, 13}  # "- ", "pool", "nowhere"
UNKNOWN_KEY_LINE, UNKNOWN_KEY_COLUMNS = 12, {5, 16}      # "bogus_key", its value

BROKEN_YAML = """\
workers: 1
listeners:
  - name: web
    bind: [ "127.0.0.1:0"
"""


class CheckTest(unittest.TestCase):
    def setUp(self):
        self.binary = switchyard_bin()
        if not os.access(self.binary, os.X_OK):
            self.fail(f"switchyard binary {self.binary!r} not found (set SWITCHYARD_BIN)")
        self.dir = tempfile.mkdtemp(prefix="switchyard-check-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def run_cli(self, command: str, text: str) -> tuple[str, int, str]:
        """Writes `text` to a config file and runs `switchyard COMMAND -c FILE`."""
        path = os.path.join(self.dir, "config.yaml")
        with open(path, "w") as f:
            f.write(text)
        try:
            proc = subprocess.run([self.binary, command, "-c", path], stdin=subprocess.DEVNULL,
                                  capture_output=True, timeout=10, start_new_session=True)
        except subprocess.TimeoutExpired as e:  # run() has killed it by now
            self.fail(f"`switchyard {command}` still running after 10s: {e.output!r}")
        output = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
        return path, proc.returncode, output

    def diagnostics(self, path: str, output: str) -> list[tuple[int, int, str]]:
        """(line, column, message) of every "PATH:LINE:COL: message" line in the output."""
        pattern = re.compile(re.escape(path) + r":(\d+):(\d+): ?(.*)")
        return [(int(m[1]), int(m[2]), m[3]) for m in pattern.finditer(output)]

    def test_valid_config_passes(self):
        path, rc, output = self.run_cli("check", VALID)
        self.assertEqual(rc, 0, f"check rejected a valid config:\n{output}")
        self.assertEqual(self.diagnostics(path, output), [], f"diagnostics for a valid config:\n"
                                                            f"{output}")
        self.assertNotRegex(output.lower(), r"\b(error|warning|invalid|unknown)\b",
                            f"alarming output for a valid config:\n{output}")

    def test_invalid_config_reports_every_problem_with_position(self):
        path, rc, output = self.run_cli("check", INVALID)
        self.assertEqual(rc, 1, f"check should exit 1 on an invalid config:\n{output}")
        found = self.diagnostics(path, output)
        self.assertTrue(any(line == UNKNOWN_KEY_LINE and col in UNKNOWN_KEY_COLUMNS
                            and "bogus_key" in msg for line, col, msg in found),
                        f"no '{path}:{UNKNOWN_KEY_LINE}:COL:' diagnostic naming 'bogus_key' "
                        f"(COL in {sorted(UNKNOWN_KEY_COLUMNS)}):\n{output}")
        self.assertTrue(any(line == UNKNOWN_POOL_LINE and col in UNKNOWN_POOL_COLUMNS
                            and "nowhere" in msg for line, col, msg in found),
                        f"no '{path}:{UNKNOWN_POOL_LINE}:COL:' diagnostic naming pool 'nowhere' "
                        f"(COL in {sorted(UNKNOWN_POOL_COLUMNS)}):\n{output}")

    def test_yaml_syntax_error_has_position(self):
        path, rc, output = self.run_cli("check", BROKEN_YAML)
        self.assertEqual(rc, 1, f"check should exit 1 on broken YAML:\n{output}")
        self.assertTrue(self.diagnostics(path, output),
                        f"no '{path}:LINE:COL:' diagnostic for a YAML syntax error:\n{output}")

    def test_run_refuses_an_invalid_config(self):
        path, rc, output = self.run_cli("run", INVALID)
        self.assertNotEqual(rc, 0, f"run started with an invalid config:\n{output}")
        self.assertTrue(self.diagnostics(path, output),
                        f"run printed no positioned diagnostics:\n{output}")


if __name__ == "__main__":
    unittest.main()
