#!/usr/bin/env python3
"""Writes the hand-made seed inputs of tests/fuzz/corpus/<target>/seed-*.

Run once after changing a seed list here (existing seed-* files of a target are replaced; other
files in the corpus, e.g. crash-* regression inputs and what fuzzing found, are kept):
    python3 tests/fuzz/make_seeds.py
"""
import hashlib
import os

HERE = os.path.dirname(os.path.abspath(__file__))

H = b"Host: h\r\n"

REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"GET /a?b=c HTTP/1.0\r\n\r\n",
    b"HEAD /x HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n",
    b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"POST /c HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
    b"3;name=value;q=\"x\\\"y\"\r\nabc\r\n0\r\nTrailer-Field: v\r\n\r\n",
    b"POST /c HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    b"GET /1 HTTP/1.1\r\n" + H + b"\r\nGET /2 HTTP/1.1\r\n" + H + b"\r\n",
    b"POST /1 HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n\r\nabcGET /2 HTTP/1.1\r\n" + H + b"\r\n",
    b"\r\nGET / HTTP/1.1\r\n" + H + b"\r\n",
    b"PUT /u HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
    b"GET http://example.com:8080/p?q HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n",
    b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"Connection: keep-alive, Upgrade\r\nUpgrade: h2c\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"Connection: x-hop\r\nX-Hop: 1\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
    # Shapes the proxy must refuse (the fuzzer mutates around them).
    b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3, 3\r\n\r\nabc",
    b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked \r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\n",
    b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n",
    b"GET / HTTP/1.1\r\n" + H + b"X-Folded: a\r\n b\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"X-Nul: a\x00b\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"X-Cr: a\rb\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"X[a]: b\r\n\r\n",
    b"GET  / HTTP/1.1\r\n" + H + b"\r\n",
    b"get / HTTP/1.1\r\n" + H + b"\r\n",
    b"GET / HTTP/1.2\r\n" + H + b"\r\n",
    b"GET /\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\nGET /2 HTTP/1.1\r\n" + H + b"\r\n",
    b"DESCRIBE / RTSP/1.0\r\n" + H + b"\r\n",
]

RESPONSES = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n\r\nuntil close",
    b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nConnection: close, x-a\r\nX-A: 1\r\nKeep-Alive: 5\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HELLO\r\n\r\n",
]

# Chunked bodies (after a fixed head): byte 0 is the mode (see chunked_fuzz.cc).
CHUNKED = [
    b"5\r\nhello\r\n0\r\n\r\n",
    b"1\r\na\r\n2\r\nbc\r\n0\r\n\r\n",
    b"A\r\n0123456789\r\n0\r\n\r\n",
    b"3;ext\r\nabc\r\n0;last=1\r\n\r\n",
    b"3 ;a=b ; c=\"d e\"\r\nabc\r\n0\r\n\r\n",
    b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n",
    b"0000003\r\nabc\r\n00\r\n\r\n",
    b"ffffffffffffffff\r\n",
    b"10000000000000000\r\n",
    b"0x3\r\nabc\r\n0\r\n\r\n",
    b"-3\r\nabc\r\n0\r\n\r\n",
    b" 3\r\nabc\r\n0\r\n\r\n",
    b"3\nabc\n0\n\n",
    b"3\rabc\r\n0\r\n\r\n",
    b"3\r\nabcX\r\n0\r\n\r\n",
    b"3;\x01\r\nabc\r\n0\r\n\r\n",
    b"3;a=\"\x7f\"\r\nabc\r\n0\r\n\r\n",
    b"0\r\nX : y\r\n\r\n",
    b"0\r\n folded\r\n\r\n",
]

CONFIGS_INLINE = {
    "minimal": b"listeners: [{ name: web, bind: 127.0.0.1:0, routes: main }]\n"
               b"routes: { main: [{ pool: app }] }\npools: { app: { servers: [127.0.0.1:9001] } }\n",
    "edits": b"listeners: [{ name: web, bind: 127.0.0.1:0, routes: main }]\n"
             b"routes:\n  main:\n    - match: { header: { x-a: { regex: \"^a+$\" } }, query: { q: \"1\" } }\n"
             b"      request_headers: { set: { x-b: \"c\" }, add: { x-c: d }, remove: [cookie] }\n"
             b"      response_headers: { set: { x-d: e } }\n"
             b"      rewrite: { path_regex: { pattern: \"^/a(.*)$\", replace: \"/b\\\\1\" } }\n"
             b"      pool: app\n"
             b"    - match: { not: { source: [10.0.0.0/8, \"fd00::/8\"] } }\n"
             b"      redirect: { status: 301, scheme: https, host: \"www.{host}\", path: \"/x{path}\" }\n"
             b"    - respond: { status: 404, headers: { content-type: text/plain }, body: \"no\\n\" }\n"
             b"pools:\n  app:\n    scheduler: mh\n    hash: { header: x-user }\n"
             b"    servers: [{ address: 127.0.0.1:9001, weight: 3 }, 127.0.0.1:9002]\n",
    "limits": b"workers: 2\nlimits: { max_header_bytes: 4KiB, max_header_count: 20, max_body_bytes: 1MiB }\n"
              b"timeouts: { client_header: 1s, upstream_response: 1500ms }\n"
              b"listeners: [{ name: web, bind: \"[::1]:0\", routes: main }]\n"
              b"routes: { main: [{ split: [{ pool: a, weight: 1 }, { pool: b, weight: 9 }], sticky: { cookie: uid } }] }\n"
              b"pools: { a: { servers: [127.0.0.1:9001] }, b: { servers: [127.0.0.1:9002], persistence: { cookie: srv } } }\n",
}


def write(target: str, seeds: list[bytes], prefix: bytes = b"") -> None:
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for name in os.listdir(d):
        if name.startswith("seed-"):
            os.remove(os.path.join(d, name))
    for s in seeds:
        data = prefix + s
        name = "seed-" + hashlib.sha1(data).hexdigest()[:16]
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


def main() -> None:
    # Request/response targets: byte 0 picks how the input is cut into reads.
    write("http_request", [bytes([m]) + r for r in REQUESTS for m in (0, 1, 2)])
    write("http_response", [bytes([m]) + r for r in RESPONSES for m in (0, 1, 6)])
    write("chunked", [bytes([m]) + c for c in CHUNKED for m in (0, 1, 5)])
    configs = list(CONFIGS_INLINE.values())
    cfg_dir = os.path.join(HERE, "..", "..", "config")
    for name in sorted(os.listdir(cfg_dir)):
        if name.endswith(".yaml"):
            with open(os.path.join(cfg_dir, name), "rb") as f:
                configs.append(f.read())
    write("config", configs)
    # rules: the input drives a generator; any bytes are a valid input. A spread of lengths and
    # values so the first runs reach every matcher and action.
    import random
    rng = random.Random(9)
    write("rules", [bytes(rng.randrange(256) for _ in range(n)) for n in (16, 64, 200, 400, 800, 1500)
                    for _ in range(3)])


if __name__ == "__main__":
    main()
