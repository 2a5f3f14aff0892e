"""The container image (docker/): requests through Switchyard running in a podman container.

Opt-in, because building the image takes 15-25 minutes on 2 cores (docker/build: base image
with mmdebstrap, build packages, the C++ build). The tests run when

  - SWITCHYARD_CONTAINER_TEST=1: the image is built with docker/build first if it is missing
    (run this module directly then, e.g. `SWITCHYARD_CONTAINER_TEST=1 python3 -m unittest
    test_container` in tests/integration: ctest stops a test after 600 s), or
  - the image ($SWITCHYARD_IMAGE, default localhost/switchyard:latest) already exists;

and are skipped with this reason otherwise. What runs is the image's binary, not
$SWITCHYARD_BIN: rebuild the image (docker/build) to test source changes.

The container runs as on this machine's podman: runc, host network (the proxy listens on a
loopback port, the origin is the harness's Origin on loopback), `--ulimit nofile=1024:1024
--ulimit nproc=4096:4096` (podman's defaults exceed this machine's hard limits and root here
lacks CAP_SYS_RESOURCE to raise them), every capability dropped, the
configuration directory mounted read-only at /etc/switchyard, and docker/seccomp.json (the
default profile plus io_uring).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from harness import Client, Origin, to_yaml, unused_port

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
IMAGE = os.environ.get("SWITCHYARD_IMAGE", "localhost/switchyard:latest")
SECCOMP = os.path.join(REPO, "docker", "seccomp.json")
BUILD_TIMEOUT = 3600


def podman(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], check=check, timeout=timeout, capture_output=True,
                          text=True)


def image_exists() -> bool:
    return podman("image", "exists", IMAGE, check=False).returncode == 0


def setUpModule():
    opted_in = os.environ.get("SWITCHYARD_CONTAINER_TEST") == "1"
    if shutil.which("podman") is None and not opted_in:
        raise unittest.SkipTest("container test is opt-in: podman is not installed; run "
                                "docker/build (15-25 min) or set SWITCHYARD_CONTAINER_TEST=1")
    if os.geteuid() != 0:
        raise unittest.SkipTest("container test needs root (rootful podman)")
    if shutil.which("podman") is not None and image_exists():
        return
    if not opted_in:
        raise unittest.SkipTest(f"container test is opt-in: image {IMAGE} does not exist; "
                                f"build it with docker/build (15-25 min on 2 cores) or set "
                                f"SWITCHYARD_CONTAINER_TEST=1 to build it here")
    build = subprocess.run([os.path.join(REPO, "docker", "build")], timeout=BUILD_TIMEOUT,
                           env={**os.environ, "SWITCHYARD_IMAGE": IMAGE})
    if build.returncode != 0 or not image_exists():
        raise RuntimeError(f"docker/build failed (exit {build.returncode})")


class ContainerTest(unittest.TestCase):
    def setUp(self):
        self.origin = Origin("A").start()
        self.addCleanup(self.origin.stop)
        # Readable by the container's unprivileged user (uid 10001): 0755 dir, 0644 files.
        self.etc = tempfile.mkdtemp(prefix="sy-container-")
        self.addCleanup(shutil.rmtree, self.etc, True)
        os.chmod(self.etc, 0o755)
        self.port = unused_port()
        self.admin_port = unused_port()
        config = {
            "workers": 1,
            "access_log": {"enabled": True, "format": "json", "path": "-"},
            "listeners": [{"name": "web", "bind": f"127.0.0.1:{self.port}", "routes": "main"}],
            "routes": {"main": [{"pool": "app"}]},
            "pools": {"app": {"servers": [self.origin.address]}},
            # The entry point writes this token file (the image's default location).
            "admin": {"bind": f"127.0.0.1:{self.admin_port}",
                      "token_file": "/var/lib/switchyard/admin.tokens"},
        }
        path = os.path.join(self.etc, "switchyard.yaml")
        with open(path, "w") as f:
            f.write(to_yaml(config))
        os.chmod(path, 0o644)
        self.name = f"switchyard-test-{os.getpid()}"
        podman("rm", "-f", self.name, check=False)
        self.addCleanup(podman, "rm", "-f", "-t", "2", self.name, check=False)

    def run_container(self, *extra: str) -> None:
        podman("run", "-d", "--name", self.name, "--runtime", "runc", "--network", "host",
               "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096",
               "--cap-drop", "ALL", "--security-opt", "no-new-privileges", *extra,
               "-v", f"{self.etc}:/etc/switchyard:ro", IMAGE)

    def logs(self) -> str:
        r = podman("logs", self.name, check=False)
        return r.stdout + r.stderr

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            logs = self.logs()
            if "switchyard ready" in logs:
                return
            state = podman("inspect", "-f", "{{.State.Status}}", self.name, check=False)
            if state.stdout.strip() in ("exited", "stopped"):
                self.fail(f"container exited before it was ready:\n{logs}")
            time.sleep(0.2)
        self.fail(f"container not ready within {timeout}s:\n{self.logs()}")

    def test_request_through_the_container(self):
        self.run_container("--security-opt", f"seccomp={SECCOMP}")
        self.wait_ready()
        with Client(self.port, timeout=10) as client:
            for i in range(3):  # keep-alive: three requests on one connection
                resp = client.request("GET", f"/hello/{i}")
                self.assertEqual(resp.status, 200, str(resp))
                self.assertEqual(resp.text, f"origin A: GET /hello/{i}\n")
        seen = self.origin.wait_for_requests(3)
        self.assertEqual([r.path for r in seen], ["/hello/0", "/hello/1", "/hello/2"])
        self.assertIn("127.0.0.1", seen[0].headers.get("x-forwarded-for", ""))
        # Access log on stdout (JSON lines), diagnostics on stderr: both in `podman logs`.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            entries = [json.loads(l) for l in self.logs().splitlines() if l.startswith("{")]
            if len(entries) >= 3:
                break
            time.sleep(0.1)
        self.assertEqual([e["path"] for e in entries[:3]], ["/hello/0", "/hello/1", "/hello/2"])
        # Unprivileged user, no capabilities.
        ident = podman("exec", self.name, "id", "-un").stdout.strip()
        self.assertEqual(ident, "switchyard")
        caps = podman("exec", self.name, "grep", "^CapEff", "/proc/1/status").stdout.split()
        self.assertEqual(caps[-1], "0000000000000000")
        # The image's HEALTHCHECK (switchyard ctl health with the entry point's token).
        health = podman("healthcheck", "run", self.name, check=False)
        self.assertEqual(health.returncode, 0, health.stdout + health.stderr + self.logs())
        direct = podman("exec", self.name, "switchyard", "ctl", "health", "-c",
                        "/etc/switchyard/switchyard.yaml")
        self.assertIn("healthy: admin API answers, 1 of 1 listeners", direct.stdout)
        # Graceful stop on SIGTERM (podman stop), exit code 0.
        podman("stop", "-t", "10", self.name, timeout=30)
        code = podman("inspect", "-f", "{{.State.ExitCode}}", self.name).stdout.strip()
        self.assertEqual(code, "0", self.logs())

    def test_default_seccomp_profile_refuses_io_uring_with_a_clear_message(self):
        # Why docker/seccomp.json exists: podman's (and Docker's) default profile has no
        # io_uring. The proxy must say so, not crash.
        self.run_container()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = podman("inspect", "-f", "{{.State.Status}}", self.name).stdout.strip()
            if state in ("exited", "stopped"):
                break
            if "switchyard ready" in self.logs():
                self.skipTest("this podman's default seccomp profile allows io_uring")
            time.sleep(0.2)
        self.assertIn(state, ("exited", "stopped"), self.logs())
        self.assertIn("io_uring", self.logs())


if __name__ == "__main__":
    unittest.main()
