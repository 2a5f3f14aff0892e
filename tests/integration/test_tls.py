"""TLS termination over real sockets: certificate choice by SNI (exact, wildcard, default), RSA
and ECDSA side by side, ALPN, refused old protocols, resumption (tickets for TLS 1.2 and 1.3),
certificate reload without dropping open connections, client certificates (mTLS), and `check`
messages for bad certificate files.

Certificates are generated here with the openssl command line (never committed private keys).
"""

import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

from harness import Origin, ProxyTestCase, proxy_config, switchyard_bin

OPENSSL = shutil.which("openssl")


def openssl(*args: str, cwd: str) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_cert(d: str, name: str, cn: str, sans: list[str], key: str = "ec",
              ca: str | None = None) -> tuple[str, str]:
    """Writes NAME.pem / NAME.key in `d`: self-signed, or signed by CA `ca` (ca.pem/ca.key)."""
    keyopt = (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if key == "ec"
              else ["-newkey", "rsa:2048"])
    san = ["-addext", "subjectAltName=" + ",".join(f"DNS:{s}" for s in sans)] if sans else []
    if ca is None:
        openssl("req", "-x509", *keyopt, "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem",
                "-days", "2", "-subj", f"/CN={cn}", *san, cwd=d)
    else:
        openssl("req", *keyopt, "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={cn}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", cwd=d)
    return os.path.join(d, f"{name}.pem"), os.path.join(d, f"{name}.key")


@unittest.skipIf(OPENSSL is None, "the openssl command is not installed")
class TlsTestCase(ProxyTestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="switchyard-tls-")
        d = cls.dir
        cls.default = make_cert(d, "default", "default.test", [], key="rsa")
        cls.site_ec = make_cert(d, "site-ec", "www.example.test",
                                ["www.example.test", "*.wild.test"], key="ec")
        cls.site_rsa = make_cert(d, "site-rsa", "www.example.test",
                                 ["www.example.test", "*.wild.test"], key="rsa")
        cls.other = make_cert(d, "other", "other.test", ["other.test"], key="ec")
        make_cert(d, "ca", "Test Client CA", [], key="ec")
        cls.client = make_cert(d, "client", "client1", [], key="ec", ca="ca")
        cls.stranger = make_cert(d, "stranger", "stranger", [], key="ec")
        cls.ca_file = os.path.join(d, "ca.pem")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def tls_proxy(self, origin, **tls_extra):
        tls = {"certificates": [{"cert": c, "key": k} for c, k in
                                (self.default, self.site_ec, self.site_rsa, self.other)]}
        tls.update(tls_extra)
        listeners = [{"name": "web", "bind": "127.0.0.1:0", "routes": "main", "tls": tls}]
        return self.start_proxy(proxy_config([origin.address], listeners=listeners))

    def s_client(self, proxy, *args: str, stdin: bytes = b"") -> str:
        r = subprocess.run([OPENSSL, "s_client", "-connect", f"127.0.0.1:{proxy.port}", *args],
                           input=stdin, capture_output=True, timeout=20)
        return r.stdout.decode("latin-1") + r.stderr.decode("latin-1")

    def client_context(self, cert=None, version=None) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if version:
            ctx.minimum_version = ctx.maximum_version = version
        if cert:
            ctx.load_cert_chain(cert[0], cert[1])
        return ctx

    def https(self, proxy, target="/", *, ctx=None, host="www.example.test", method="GET",
              body=b"", headers=(), session=None):
        """One request on a new TLS connection: (status, headers dict, body, ssl socket info)."""
        ctx = ctx or self.client_context()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=host, session=session) as s:
                req = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
                for n, v in headers:
                    req += f"{n}: {v}\r\n"
                req += f"Content-Length: {len(body)}\r\n\r\n"
                s.sendall(req.encode() + body)
                data = b""
                while True:
                    piece = s.recv(65536)
                    if not piece:
                        break
                    data += piece
                head, _, payload = data.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                status = int(lines[0].split()[1])
                hdrs = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
                return status, hdrs, payload, s.session, s.session_reused


class Certificates(TlsTestCase):
    def test_sni_picks_exact_wildcard_and_default_certificates(self):
        proxy = self.tls_proxy(self.start_origin())
        cases = {"www.example.test": "CN = www.example.test",
                 "a.wild.test": "CN = www.example.test",
                 "other.test": "CN = other.test",
                 "a.b.wild.test": "CN = default.test",   # a wildcard covers one label
                 "unknown.test": "CN = default.test"}
        for name, subject in cases.items():
            with self.subTest(name=name):
                out = self.s_client(proxy, "-servername", name)
                self.assertIn(f"subject={subject}", out)
        self.assertIn("subject=CN = default.test", self.s_client(proxy, "-noservername"))

    def test_rsa_and_ecdsa_certificates_side_by_side(self):
        proxy = self.tls_proxy(self.start_origin())
        ecdsa = self.s_client(proxy, "-servername", "www.example.test", "-tls1_2",
                              "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")
        self.assertIn("Server public key is 256 bit", ecdsa)
        rsa = self.s_client(proxy, "-servername", "www.example.test", "-tls1_2",
                            "-cipher", "ECDHE-RSA-AES128-GCM-SHA256")
        self.assertIn("Server public key is 2048 bit", rsa)

    def test_alpn_offers_http11(self):
        proxy = self.tls_proxy(self.start_origin())
        self.assertIn("ALPN protocol: http/1.1", self.s_client(proxy, "-alpn", "h2,http/1.1"))
        self.assertIn("No ALPN negotiated", self.s_client(proxy, "-alpn", "h2"))

    def test_tls_10_and_11_are_refused(self):
        proxy = self.tls_proxy(self.start_origin())
        for flag in ("-tls1", "-tls1_1"):
            with self.subTest(flag=flag):
                out = self.s_client(proxy, flag, "-cipher", "DEFAULT@SECLEVEL=0")
                self.assertRegex(out, r"alert protocol version|no protocols available|"
                                      r"unsupported protocol")
                self.assertNotIn("Cipher is ECDHE", out)
        self.assertIn("TLSv1.3", self.s_client(proxy))

    def test_bad_certificate_files_are_check_errors_naming_them(self):
        d = self.dir
        config_path = os.path.join(d, "bad.yaml")
        with open(config_path, "w") as f:
            f.write("listeners:\n"
                    "  - name: web\n    bind: 127.0.0.1:0\n    routes: main\n    tls:\n"
                    "      certificates:\n"
                    f"        - {{ cert: {self.site_ec[0]}, key: {self.other[1]} }}\n"
                    "        - { cert: missing.pem, key: missing.key }\n"
                    "routes: { main: [ { pool: app } ] }\n"
                    "pools: { app: { servers: [127.0.0.1:9] } }\n")
        r = subprocess.run([switchyard_bin(), "check", "-c", config_path], capture_output=True,
                           timeout=20, text=True)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        out = r.stdout + r.stderr
        self.assertIn(f"bad.yaml:7:11: key '{self.other[1]}' does not match certificate "
                      f"'{self.site_ec[0]}'", out)
        self.assertIn(f"bad.yaml:8:11: cannot read certificate '{d}/missing.pem': "
                      "No such file or directory", out)


class Traffic(TlsTestCase):
    def test_requests_bodies_and_forwarded_proto(self):
        origin = self.start_origin()
        proxy = self.tls_proxy(origin)
        status, _, body, _, _ = self.https(proxy, "/headers", headers=[("X-Forwarded-Proto",
                                                                         "http")])
        self.assertEqual(status, 200)
        seen = {n.lower(): v for n, v in json.loads(body)}
        self.assertEqual(seen["x-forwarded-proto"], "https")
        # 4 MiB each way, checked end to end.
        size = 4 * 1024 * 1024
        status, hdrs, body, _, _ = self.https(proxy, f"/download?size={size}&seed=3")
        self.assertEqual(status, 200)
        self.assertEqual(hashlib.sha256(body).hexdigest(), hdrs["x-body-sha256"])
        upload = os.urandom(size)
        status, hdrs, _, _, _ = self.https(proxy, "/echo", method="POST", body=upload)
        self.assertEqual(hdrs["x-body-sha256"], hashlib.sha256(upload).hexdigest())

    def test_redirects_keep_the_https_scheme(self):
        origin = self.start_origin()
        tls = {"certificates": [{"cert": self.default[0], "key": self.default[1]}]}
        listeners = [{"name": "web", "bind": "127.0.0.1:0", "routes": "main", "tls": tls}]
        routes = {"main": [{"match": {"path_prefix": "/old/"},
                            "redirect": {"status": 301, "host": "new.test"}},
                           {"pool": "app"}]}
        proxy = self.start_proxy(proxy_config([origin.address], listeners=listeners,
                                              routes=routes))
        status, hdrs, _, _, _ = self.https(proxy, "/old/page?x=1")
        self.assertEqual(status, 301)
        self.assertEqual(hdrs["location"], "https://new.test/old/page?x=1")

    def test_keep_alive_and_pipelining_over_tls(self):
        proxy = self.tls_proxy(self.start_origin())
        ctx = self.client_context()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="www.example.test") as s:
                req = b"GET /conn HTTP/1.1\r\nHost: x\r\n\r\n"
                s.sendall(req * 5)  # pipelined: several requests in one TLS record
                data = b""
                deadline = time.monotonic() + 10
                while data.count(b"HTTP/1.1 200") < 5 and time.monotonic() < deadline:
                    data += s.recv(65536)
        self.assertEqual(data.count(b"HTTP/1.1 200"), 5)

    def test_session_resumption_with_tickets(self):
        proxy = self.tls_proxy(self.start_origin())
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            with self.subTest(version=version.name):
                ctx = self.client_context(version=version)
                _, _, _, session, reused = self.https(proxy, ctx=ctx)
                self.assertFalse(reused)
                _, _, _, _, reused = self.https(proxy, ctx=ctx, session=session)
                self.assertTrue(reused, "the second handshake did not resume")

    def test_garbage_and_plain_http_on_a_tls_port_do_not_hurt(self):
        proxy = self.tls_proxy(self.start_origin())
        for junk in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", os.urandom(3000)):
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
                s.sendall(junk)
                s.settimeout(5)
                try:
                    while s.recv(4096):
                        pass
                except (ConnectionResetError, socket.timeout):
                    pass
        self.assertEqual(self.https(proxy)[0], 200)


class Reload(TlsTestCase):
    def test_reload_swaps_certificate_without_dropping_open_connections(self):
        d = tempfile.mkdtemp(prefix="switchyard-tls-reload-")
        self.addCleanup(shutil.rmtree, d, True)
        cert, key = make_cert(d, "live", "before.test", ["before.test"])
        origin = self.start_origin()
        listeners = [{"name": "web", "bind": "127.0.0.1:0", "routes": "main",
                      "tls": {"certificates": [{"cert": cert, "key": key}]}}]
        config = proxy_config([origin.address], listeners=listeners)
        proxy = self.start_proxy(config)
        ctx = self.client_context()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="before.test") as s:
                def request():
                    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                    data = b""
                    while b"\r\n\r\n" not in data:
                        data += s.recv(4096)
                    head, _, rest = data.partition(b"\r\n\r\n")
                    length = int([l for l in head.split(b"\r\n")
                                  if l.lower().startswith(b"content-length")][0].split(b":")[1])
                    while len(rest) < length:
                        rest += s.recv(4096)
                    return head.split(b" ")[1]

                self.assertEqual(request(), b"200")
                make_cert(d, "live", "after.test", ["after.test"])  # same files, new contents
                self.assertTrue(proxy.reload(config).applied)
                self.assertEqual(request(), b"200", "the open connection was disturbed")
        self.assertIn("subject=CN = after.test", self.s_client(proxy, "-servername", "x"))


class ClientCertificates(TlsTestCase):
    def test_required_client_certificate(self):
        origin = self.start_origin()
        proxy = self.tls_proxy(origin, client_ca=self.ca_file, verify_client="required")
        status, _, body, _, _ = self.https(proxy, "/headers",
                                           ctx=self.client_context(cert=self.client))
        self.assertEqual(status, 200)
        seen = {n.lower(): v for n, v in json.loads(body)}
        self.assertEqual(seen["x-client-verify"], "SUCCESS")
        self.assertEqual(seen["x-client-cert-subject"], "CN=client1")
        for cert in (None, self.stranger):
            with self.subTest(cert=cert and "untrusted"):
                with self.assertRaises((ssl.SSLError, ConnectionError, IndexError)):
                    self.https(proxy, ctx=self.client_context(cert=cert))

    def test_optional_client_certificate_and_spoofed_headers(self):
        origin = self.start_origin()
        proxy = self.tls_proxy(origin, client_ca=self.ca_file, verify_client="optional")
        _, _, body, _, _ = self.https(proxy, "/headers", headers=[
            ("X-Client-Cert-Subject", "CN=admin"), ("X-Client-Verify", "SUCCESS")])
        seen = [(n.lower(), v) for n, v in json.loads(body)]
        self.assertIn(("x-client-verify", "NONE"), seen)
        self.assertNotIn(("x-client-verify", "SUCCESS"), seen)
        self.assertFalse(any(n == "x-client-cert-subject" for n, _ in seen), seen)


class UpstreamTls(TlsTestCase):
    def tls_origin(self, name: str, cert) -> "Origin":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert[0], cert[1])
        origin = Origin(name, tls=ctx).start()
        self.addCleanup(origin.stop)
        return origin

    def test_verified_tls_to_servers_with_connection_reuse(self):
        # A CA-signed certificate naming the origin's IP address and a DNS name.
        d = self.dir
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", "origin-ip.key", "-out", "origin-ip.csr", "-subj", "/CN=origin",
                cwd=d)
        with open(os.path.join(d, "san.ext"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:origin.internal\n")
        openssl("x509", "-req", "-in", "origin-ip.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", "origin-ip.pem", "-days", "2", "-extfile", "san.ext",
                cwd=d)
        ip_cert = (os.path.join(d, "origin-ip.pem"), os.path.join(d, "origin-ip.key"))
        origin = self.tls_origin("SECURE", ip_cert)
        pools = {"app": {"tls": {"ca": self.ca_file}, "servers": [origin.address]}}
        proxy = self.start_proxy(proxy_config(pools=pools))
        with self.connect(proxy) as client:
            for _ in range(5):
                resp = client.request("GET", "/")
                self.assertEqual(resp.status, 200)
                self.assertIn("origin SECURE", resp.text)
            size = 3 * 1024 * 1024
            resp = client.request("GET", f"/download?size={size}&seed=5")
            self.assertEqual(hashlib.sha256(resp.body).hexdigest(), resp.header("x-body-sha256"))
            upload = os.urandom(size)
            resp = client.request("POST", "/echo", body=upload)
            self.assertEqual(resp.header("x-body-sha256"), hashlib.sha256(upload).hexdigest())
        self.assertEqual(origin.connections_accepted, 1, "the TLS connection was not reused")
        # By name: server_name is sent as SNI and checked against the certificate.
        pools["app"]["tls"] = {"ca": self.ca_file, "server_name": "origin.internal"}
        proxy2 = self.start_proxy(proxy_config(pools=pools))
        self.assertEqual(self.fetch(proxy2, "/").status, 200)

    def test_unverifiable_server_certificate_is_refused(self):
        origin = self.tls_origin("SELF", self.stranger)  # self-signed, no IP SAN
        pools = {"app": {"tls": {"ca": self.ca_file}, "retries": 0,
                         "servers": [origin.address]}}
        proxy = self.start_proxy(proxy_config(pools=pools))
        self.assertEqual(self.fetch(proxy, "/").status, 503)
        self.assertIn("TLS handshake failed", proxy.stderr_text())
        # verify: false accepts it (an operator's explicit choice).
        pools["app"]["tls"] = {"verify": False}
        proxy2 = self.start_proxy(proxy_config(pools=pools))
        self.assertEqual(self.fetch(proxy2, "/").status, 200)


if __name__ == "__main__":
    unittest.main()
