// The configuration model: one immutable snapshot of everything `switchyard run` serves.
//
// A Config is built and validated by config_loader (on the control-plane thread), then shared
// read-only with every worker through std::shared_ptr<const Config>. Nothing in here is mutated
// after loading, so workers may read it without synchronisation.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace switchyard::config {

using Millis = std::chrono::milliseconds;

// A numeric socket address ("127.0.0.1:8080", "[::1]:80"), kept with its text for messages.
struct SocketAddress {
  std::string text;
  sockaddr_storage storage{};
  socklen_t length = 0;

  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&storage); }
  int family() const { return storage.ss_family; }
};

// Where a value came from in the YAML file, for messages about it after loading.
struct SourceMark {
  int line = 0;    // 1-based; 0 = unknown
  int column = 0;  // 1-based
};

struct Limits {
  std::size_t max_header_bytes = 16 * 1024;   // request head larger than this -> 431
  std::uint32_t max_header_count = 100;       // more header fields -> 431
  std::uint64_t max_body_bytes = 1ull << 30;  // request body larger -> 413 (0 = no limit)
  std::uint32_t max_connections = 10000;      // client connections per worker
};

struct Timeouts {
  Millis client_header{10000};      // whole request head must arrive within this -> 408
  Millis client_idle{60000};        // keep-alive wait for the next request -> silent close
  Millis client_body{60000};        // max gap between request body reads -> 408
  Millis upstream_connect{3000};    // per connect attempt -> next server, else 503
  Millis upstream_response{60000};  // max gap waiting on upstream response bytes -> 504
  Millis upstream_idle{30000};      // idle pooled upstream connection is closed after this
  Millis shutdown{30000};           // graceful shutdown: in-flight requests get this long
  Millis tunnel_idle{3600000};      // tunnel (tcp listener, WebSocket) without traffic -> closed
};

// Headers the proxy adds to requests it forwards upstream.
struct Forwarding {
  bool x_forwarded_for = true;
  bool x_forwarded_proto = true;
  bool via = true;
};

struct AccessLog {
  enum class Format { kJson, kCommon };
  bool enabled = true;
  Format format = Format::kJson;
  std::string path = "-";  // "-" = stdout
};

// Zero-copy forwarding (top-level `splice:`). One block for every kernel forwarding path: pipe
// splice of message bodies here; connection-wide paths (sockmap) add their keys next to these.
struct Splice {
  // Move request and response bodies with a known Content-Length of at least min_body through
  // a pipe (socket -> pipe -> socket, no copy to userspace). Plain TCP on both sides only.
  bool bodies = true;
  std::uint64_t min_body = 64 * 1024;
  // F_SETPIPE_SZ for the worker's pipes (rounded up by the kernel to a power-of-two number of
  // pages). Above /proc/sys/fs/pipe-max-size needs CAP_SYS_RESOURCE; if refused, the kernel
  // default (64 KiB) is used and said once.
  std::size_t pipe_size = 1024 * 1024;
  // TCP_NOTSENT_LOWAT on both sockets of a splice (bodies and tunnels), kept for the connection's
  // life: at most this much not-yet-sent data in a send queue, the rest waits in the pipe.
  // 0 = the kernel's setting (net.ipv4.tcp_notsent_lowat). Why: splice/splice_socket.h.
  std::size_t notsent_lowat = 32 * 1024;
  // Tunnels (`mode: tcp` listeners, HTTP Upgrade) are forwarded by the kernel through a BPF
  // sockhash (src/splice/sockmap.h) when true and BPF is available; else bytes are copied.
  // Off by default: on kernel 6.18 a socket that joined the sockhash with bytes queued once had
  // a segment redirected twice, and the drain that avoids it is not proven airtight (docs).
  bool sockmap = false;
  // How tunnels move their bytes when the sockmap engine is off (or refuses a tunnel): splice
  // (socket -> pipe -> socket, zero-copy, pipes of pipe_size) or copy (through io_uring buffers).
  enum class TunnelEngine { kSplice, kCopy };
  TunnelEngine tunnels = TunnelEngine::kSplice;
};

struct Header {
  std::string name;
  std::string value;
};

// A fixed response produced by the proxy itself (maintenance pages, catch-all 404s).
struct Respond {
  int status = 200;
  std::vector<Header> headers;
  std::string body;
};

// A network prefix for `source` matching ("10.0.0.0/8", "::1/128"; a bare address is /32 or /128).
struct Cidr {
  int family = AF_INET;           // AF_INET or AF_INET6
  std::uint8_t address[16] = {};  // network byte order; first 4 bytes for IPv4
  int prefix_length = 0;
  std::string text;
};

// How a header, query parameter or cookie value is tested.
struct ValueTest {
  enum class Op { kPresent, kAbsent, kExact, kRegex };
  Op op = Op::kPresent;
  std::string value;  // kExact: the value; kRegex: an RE2 pattern (validated by the loader)
};

// A request predicate. Several keys in one YAML `match` map form a kAll of them.
struct Match {
  enum class Kind {
    kAll,         // children all match (an empty kAll matches everything)
    kAny,         // at least one child matches
    kNot,         // the single child does not match
    kHost,        // patterns: "example.com" exact or "*.example.com" suffix; case-insensitive,
                  // port ignored; any pattern matching is enough
    kPath,        // patterns: exact normalised paths (any)
    kPathPrefix,  // patterns: prefixes of the normalised path (any)
    kPathRegex,   // patterns[0]: RE2 pattern searched in the normalised path (anchor it yourself)
    kMethod,      // patterns: method names, case-sensitive as in HTTP (any)
    kHeader,      // name (case-insensitive) + test; any value of a repeated header may satisfy it
    kQuery,       // name (exact, after percent-decoding) + test
    kCookie,      // name (exact) + test
    kSource,      // cidrs: client address in any of them
  };
  Kind kind = Kind::kAll;
  SourceMark mark;
  std::vector<Match> children;
  std::vector<std::string> patterns;
  std::string name;
  ValueTest test;
  std::vector<Cidr> cidrs;
};

struct WeightedPool {
  std::string pool;
  std::uint32_t weight = 1;
};

// `split`: a weighted choice among pools. Without `sticky` each request draws independently
// (from a per-request hash, so the choice is stable for that request); with it, requests carrying
// the same header/cookie value always land on the same pool while weights are unchanged.
struct Split {
  std::vector<WeightedPool> pools;
  enum class StickyOn { kNone, kHeader, kCookie };
  StickyOn sticky_on = StickyOn::kNone;
  std::string sticky_name;
};

// `redirect`: each part is a template where {scheme}, {host}, {path} and {query} stand for the
// request's own (host without port; query without "?"); an absent part keeps the request's.
struct Redirect {
  int status = 302;  // 301, 302, 303, 307 or 308
  std::optional<std::string> scheme;
  std::optional<std::string> host;
  std::optional<std::string> path;
  std::optional<std::string> query;
};

struct HeaderEdits {
  std::vector<Header> set;          // replace every existing value
  std::vector<Header> add;          // append a field
  std::vector<std::string> remove;  // drop every field with this name
  bool empty() const { return set.empty() && add.empty() && remove.empty(); }
};

// Path rewrite applied before forwarding (to the path only; the query is kept).
struct PathRewrite {
  enum class Kind { kNone, kPrefix, kRegex };
  Kind kind = Kind::kNone;
  std::string from;  // kPrefix: prefix to replace; kRegex: RE2 pattern
  std::string to;    // kPrefix: replacement; kRegex: replacement with \1..\9 captures
};

// One entry of an ordered, first-match route table. Without a match it matches every request.
// Exactly one action: pool, split, redirect, respond or goto (a jump to another table, whose
// first matching route decides; a table that matches nothing falls through to the next route).
struct Route {
  SourceMark mark;
  std::optional<Match> match;
  std::optional<std::string> pool;
  std::optional<Split> split;
  std::optional<Redirect> redirect;
  std::optional<Respond> respond;
  std::optional<std::string> go_to;
  HeaderEdits request_headers;
  HeaderEdits response_headers;
  PathRewrite rewrite;
  // TCP handoff (docs/handoff.md): after this route picks a server, the client's connection
  // itself moves to that server's `switchyard agent`, which answers the client directly. Pool
  // routes only; every server of the pool names its agent.
  bool handoff = false;
  SourceMark handoff_mark;
  // When the route's pool (or split) has no server available: send the request to this pool
  // instead, or answer with this response (a "sorry page"). Without it: 503.
  std::optional<std::string> fallback_pool;
  std::optional<Respond> fallback_respond;
  // CONNECT requests this route matches are tunnelled to a server of its pool (not to the
  // request's authority), if the authority's port is one of `connect_ports`. Empty: the route
  // does not take CONNECT (501).
  std::vector<std::uint16_t> connect_ports;
  // The first request routed here fixes the connection: it is forwarded, and from then on the
  // connection is a tunnel to that server (no more parsing or routing).
  bool per_connection = false;
  // Position among all routes of the config (tables in name order, then list order), set by the
  // loader: indexes per-route counters (proxy/stats.h).
  std::uint32_t index = 0;
};

struct RouteTable {
  std::string name;
  std::vector<Route> routes;
};

struct Server {
  SocketAddress address;
  std::uint32_t weight = 1;           // 0 = quiesced: no new requests, in-flight ones finish
  std::uint32_t max_connections = 0;  // concurrent requests to this server; 0 = unlimited
  bool drain = false;                 // no new requests (persistent clients included); idle
                                      // keep-alive connections to it are closed
  bool backup = false;                // used only while no non-backup server is available
  bool maintenance = false;           // taken out for maintenance: like drain (no new requests,
                                      // idle connections closed), reported as its own state
  // The server's `switchyard agent` control address, for routes marked `handoff`.
  std::optional<SocketAddress> agent;
};

// What a hashing scheduler (sh, dh, mh, lblc, lblcr) hashes.
struct HashKey {
  enum class On {
    kDefault,     // the scheduler's own default: source for sh/mh, URL for dh/lblc/lblcr
    kSource,      // client address
    kSourcePort,  // client address and port (IPVS sh-port)
    kHeader,      // the value of header `name` (absent: falls back to the client address)
    kCookie,      // the value of cookie `name` (absent: falls back to the client address)
    kUrl,         // the normalised path and query
  };
  On on = On::kDefault;
  std::string name;
};

// Active health checks, run by the control plane against every server of the pool.
struct HealthCheck {
  enum class Kind { kTcp, kHttp };
  Kind kind = Kind::kTcp;
  std::string method = "GET";  // kHttp
  std::string path = "/";      // kHttp
  std::string host;            // kHttp: Host header; empty = the server's address
  int expect_min = 200;        // kHttp: accepted status range, inclusive
  int expect_max = 399;
  std::string body_contains;  // kHttp: non-empty = the body must contain it
  Millis interval{2000};
  Millis timeout{1000};
  std::uint32_t rise = 2;             // consecutive successes that bring a DOWN server UP
  std::uint32_t fall = 3;             // consecutive failures that take an UP server DOWN
  std::uint32_t jitter_percent = 10;  // each interval varies by up to this share, spreading checks
};

// Passive health (outlier detection): what workers see on real traffic.
struct OutlierDetection {
  std::uint32_t consecutive_failures = 5;  // connect failures / resets / 5xx in a row; 0 = off
  bool count_5xx = true;                   // whether 5xx responses count as failures
  Millis base_ejection{10000};             // first ejection; doubles on each repeat
  Millis max_ejection{300000};
};

// Keeps a client on the server it was sent to before.
struct Persistence {
  enum class Kind { kNone, kSource, kCookie };
  Kind kind = Kind::kNone;
  Millis timeout{300000};        // kSource: idle time after which the entry expires
  std::uint8_t netmask_v4 = 32;  // kSource: clients in the same /n share an entry
  std::uint8_t netmask_v6 = 128;
  std::string cookie = "SWITCHYARD_SERVER";  // kCookie: cookie name inserted in responses
};

// Requests waiting for a server below its max_connections.
struct Queue {
  std::uint32_t size = 0;  // per worker; 0 = no queue (503 at once when all servers are full)
  Millis timeout{5000};    // waiting longer -> 503
};

// TLS from the proxy to a pool's servers.
struct TlsUpstream {
  bool verify = true;       // check the server's certificate (chain and name)
  std::string ca;           // PEM bundle to verify against; empty = the system's trust store
  std::string server_name;  // sent as SNI and verified; empty = the server's address (IP SAN)
  std::string cert;         // client certificate presented to servers (optional)
  std::string key;
};

struct Pool {
  std::string name;
  SourceMark mark;
  std::string scheduler = "rr";
  std::uint32_t max_idle_per_server = 64;  // idle keep-alive connections kept per worker
  std::vector<Server> servers;
  HashKey hash;
  bool fallback = true;  // hash schedulers: an unavailable server's keys go to another server
                         // (IPVS sh-fallback/mh-fallback); false = 503 instead
  Persistence persistence;
  std::optional<HealthCheck> health;
  OutlierDetection outlier;
  std::uint32_t retries = 2;  // further servers tried after a connect failure or a reset
  Queue queue;
  std::optional<Millis> connect_timeout;   // overrides timeouts.upstream_connect
  std::optional<Millis> response_timeout;  // overrides timeouts.upstream_response
  std::optional<TlsUpstream> tls;          // servers speak TLS
};

// One certificate (with its chain) and its private key, as PEM files. Paths are absolute after
// loading (relative ones are resolved against the configuration file's directory).
struct TlsCertificate {
  std::string cert;
  std::string key;
  SourceMark mark;
};

// TLS termination on a listener. Defaults follow Mozilla's "intermediate" profile.
struct TlsServer {
  std::vector<TlsCertificate> certificates;  // the first is the default (no or unknown SNI);
                                             // the others are chosen by SNI from their names
  std::string min_version = "TLSv1.2";       // TLSv1.2 or TLSv1.3
  std::string max_version = "TLSv1.3";
  std::string ciphers =  // TLS 1.2 cipher list (OpenSSL syntax)
      "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
      "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
      "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
  std::string ciphersuites =  // TLS 1.3 suites
      "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
  std::string groups = "X25519:P-256:P-384";
  std::vector<std::string> alpn = {"http/1.1"};
  bool session_tickets = true;
  Millis ticket_rotation{12 * 3600 * 1000};  // a new ticket key this often; the previous two
                                             // keys still decrypt
  std::uint32_t session_cache = 0;           // server-side session cache entries (OpenSSL's, shared
                                             // by workers behind its lock); 0 = off: tickets resume
  std::string client_ca;                     // mTLS: CA bundle (PEM) for client certificates
  enum class Verify { kNone, kOptional, kRequired };
  Verify verify_client = Verify::kNone;
};

struct Listener {
  enum class Mode { kHttp, kTcp };
  std::string name;
  SocketAddress bind;
  Mode mode = Mode::kHttp;
  std::string routes;  // name of the route table (kHttp)
  std::string pool;    // kTcp: every connection goes to a server of this pool, as a tunnel
  std::optional<TlsServer> tls;
  bool websocket = true;  // kHttp: forward Upgrade requests and tunnel after a 101
  // kTcp: the pool by the server name of the client's TLS ClientHello (`name` lower-case, exact
  // or "*.suffix"); `pool` when none matches, or the client sends no name or no ClientHello.
  struct SniRoute {
    std::string name;
    std::string pool;
  };
  std::vector<SniRoute> sni;
};

// The admin API (src/proxy/admin/). File paths are as written in the file; the admin server
// resolves relative ones against the configuration file's directory.
struct Admin {
  SocketAddress bind;
  std::string token_file;                     // "name:token" lines: read-write tokens
  std::string read_only_token_file;           // optional: read-only tokens
  std::optional<TlsCertificate> tls;          // HTTPS for the admin API (cert + key PEM files)
  std::optional<SocketAddress> metrics_bind;  // /metrics without authentication, own port
};

// ---- L4 fast path (`l4:`): virtual services forwarded by the kernel (XDP), IPVS-style. ----

// How a real server is reached (IPVS forwarding methods).
enum class L4Mode {
  kNat,  // destination address/port rewritten; the server routes replies via the director
  kDr,   // destination MAC rewritten; the server holds the VIP (same L2 segment as the director)
  kTun,  // IP-in-IP to the server, which decapsulates (`switchyard realserver --mode tun`)
};

struct L4Server {
  SocketAddress address;     // DR/TUN: the port equals the VIP's (packets are not rewritten)
  std::uint32_t weight = 1;  // 0 = quiesced: no new flows, existing flows continue
  L4Mode mode = L4Mode::kNat;
  SourceMark mark;
};

struct L4Service {
  std::string name;
  SourceMark mark;
  SocketAddress vip;             // VIP:port
  int protocol = 6;              // IPPROTO_TCP (6) or IPPROTO_UDP (17)
  std::string scheduler = "rr";  // rr, wrr, sh, dh, mh, lc, wlc
  bool hash_port = false;        // sh/mh: hash the client port too (`hash: source_port`)
  bool reschedule_down = false;  // `on_down: reschedule`: flows of a DOWN server move at once
                                 // (IPVS expire_nodest_conn); default `keep`
  // TCP handoff (src/handoff/): new connections go to this host's stack (the L7 proxy listens on
  // the VIP); only connections the proxy handed to a server are forwarded, DR or TUN.
  bool handoff = false;
  std::optional<HealthCheck> health;
  std::vector<L4Server> servers;
};

struct L4 {
  SourceMark mark;
  std::vector<std::string> interfaces;  // where the XDP program is attached
  enum class XdpMode { kAuto, kNative, kGeneric };
  XdpMode xdp_mode = XdpMode::kAuto;
  std::string pin_path = "/sys/fs/bpf/switchyard";  // bpffs directory for the flow tables
  std::uint32_t connections = 262144;  // flow table entries (LVS: connections/s x lifetime)
  Millis tcp_timeout{900000};          // idle established TCP flow
  Millis tcp_fin_timeout{120000};      // after a FIN or RST from the client
  Millis udp_timeout{300000};
  std::vector<L4Service> services;
};

// `handoff:` — the front end's side of TCP handoff (docs/handoff.md).
struct Handoff {
  std::string key_file;  // shared with the agents: at least 32 bytes of secret
  std::string key;       // its contents, read by the loader (so `check` judges the file too)
  Millis timeout{1000};  // from the offer to the agent's answer; then the request is proxied
};

struct Config {
  std::string source_path;    // the file it was loaded from ("<string>" in tests)
  std::uint32_t workers = 0;  // 0 = one per online CPU
  Limits limits;
  Timeouts timeouts;
  Forwarding forwarding;
  AccessLog access_log;
  Splice splice;
  std::vector<Listener> listeners;
  std::map<std::string, RouteTable> routes;
  std::map<std::string, Pool> pools;
  std::optional<Admin> admin;
  std::optional<L4> l4;  // the L4 fast path; absent = not started
  std::optional<Handoff> handoff;
};

}  // namespace switchyard::config
