// bench-tlsload: full TLS handshakes, as many as the server takes: every connection is new and
// no session is ever resumed.
//
//   bench-tlsload --port PORT --connections N --duration SECONDS
//                 [--host 127.0.0.1] [--sni localhost] [--tls13] [--groups X25519]
//                 [--ciphersuites TLS_AES_128_GCM_SHA256] [--alpn http/1.1] [--timeout SECONDS]
//   bench-tlsload --port PORT --probe [same TLS options]
//
// --groups and --ciphersuites "" keep OpenSSL's defaults (those wrk offers); --tls13 refuses
// TLS 1.2 (default: TLS 1.2 or 1.3, the server chooses).
//
// wrk cannot be made not to resume sessions, and `openssl s_time -new` has one blocking connection
// at a time; this keeps N connections in flight, each one:
//
//   TCP connect -> full handshake (SSL_connect; no session is ever set, so never resumed; a
//   resumed one would count as an error) -> close_notify sent -> read until the server's
//   close_notify or its FIN (this also reads the server's NewSessionTickets, which are counted
//   and thrown away) -> close -> the next connection.
//
// So the server does exactly one full handshake, its session tickets and a clean shutdown per
// connection, and no HTTP request: the proxy's CPU time / handshakes is the cost of a handshake.
// The server certificate is not verified (self-signed test certificates), but the client still
// checks the server's CertificateVerify signature, as every TLS 1.3 client must.
//
// At the end of --duration no new connection is started; those in flight get up to --timeout
// seconds to finish (and count). Prints one JSON object on stdout: counts, rate, handshake latency
// percentiles in microseconds (TCP connect started -> handshake complete), and what was
// negotiated (protocol, cipher, group, ALPN, certificate key) on the first connection; a
// connection negotiating anything else counts in "mismatch". --probe makes one connection and
// prints the same fields for it. TLSLOAD_DUMP=1 in the environment copies any application data
// a server sends (there should be none: "app_data" counts it as an error) to stderr. Single
// thread, epoll; loopback use.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

enum class State { kIdle, kConnecting, kHandshaking, kShuttingDown };

struct Conn {
  int fd = -1;
  SSL* ssl = nullptr;
  State state = State::kIdle;
  int64_t started = 0;
};

struct Params {
  std::string version, cipher, group, alpn, cert;
  bool operator==(const Params&) const = default;
};

struct Stats {
  std::vector<uint32_t> lat;
  uint64_t completed = 0, connect_errors = 0, handshake_errors = 0, shutdown_errors = 0,
           timeouts = 0, resumed = 0, mismatch = 0, resets = 0, app_data = 0,
           peer_close_notify = 0;
};

sockaddr_in g_addr{};
int g_ep = -1;
SSL_CTX* g_ctx = nullptr;
std::string g_sni = "localhost";
uint64_t g_tickets = 0;
Stats g_st;
bool g_have_params = false;
Params g_params;
std::string g_last_error;

int on_new_session(SSL*, SSL_SESSION*) {
  ++g_tickets;
  return 0;  // not kept: nothing is ever resumed
}

std::string ssl_error_text() {
  unsigned long e = ERR_get_error();
  char buf[256];
  if (!e) return errno ? std::string(strerror(errno)) : std::string("connection closed");
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

Params params_of(SSL* ssl) {
  Params p;
  p.version = SSL_get_version(ssl);
  p.cipher = SSL_get_cipher_name(ssl);
  int nid = SSL_get_negotiated_group(ssl);
  const char* g = nid ? SSL_group_to_name(ssl, nid) : nullptr;
  p.group = g ? g : (nid ? OBJ_nid2sn(nid) : "none");
  const unsigned char* a = nullptr;
  unsigned int alen = 0;
  SSL_get0_alpn_selected(ssl, &a, &alen);
  p.alpn = a ? std::string(reinterpret_cast<const char*>(a), alen) : "none";
  X509* cert = SSL_get0_peer_certificate(ssl);
  EVP_PKEY* key = cert ? X509_get0_pubkey(cert) : nullptr;
  if (key) {
    int id = EVP_PKEY_get_base_id(key);
    const char* kind = id == EVP_PKEY_RSA ? "RSA" : id == EVP_PKEY_EC ? "ECDSA" : OBJ_nid2sn(id);
    p.cert = std::string(kind) + " " + std::to_string(EVP_PKEY_get_bits(key));
  } else {
    p.cert = "none";
  }
  return p;
}

void close_conn(Conn& c) {
  if (c.ssl) SSL_free(c.ssl);
  c.ssl = nullptr;
  if (c.fd >= 0) close(c.fd);
  c.fd = -1;
  c.state = State::kIdle;
}

bool open_conn(Conn& c) {
  c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c.fd < 0) return false;
  int one = 1;
  setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  c.started = now_ns();
  int r = connect(c.fd, reinterpret_cast<sockaddr*>(&g_addr), sizeof g_addr);
  if (r < 0 && errno != EINPROGRESS) {
    close(c.fd);
    c.fd = -1;
    return false;
  }
  c.state = State::kConnecting;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLET;
  ev.data.ptr = &c;
  epoll_ctl(g_ep, EPOLL_CTL_ADD, c.fd, &ev);
  return true;
}

// Drives one connection as far as it goes without blocking. Returns true when it is finished
// (successfully or not) and has been closed.
bool drive(Conn& c) {
  if (c.state == State::kConnecting) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
      ++g_st.connect_errors;
      g_last_error = std::string("connect: ") + strerror(err);
      close_conn(c);
      return true;
    }
    c.ssl = SSL_new(g_ctx);
    SSL_set_fd(c.ssl, c.fd);
    SSL_set_tlsext_host_name(c.ssl, g_sni.c_str());
    SSL_set_connect_state(c.ssl);
    c.state = State::kHandshaking;
  }
  if (c.state == State::kHandshaking) {
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(c.ssl);
    if (r != 1) {
      int e = SSL_get_error(c.ssl, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return false;
      ++g_st.handshake_errors;
      g_last_error = "handshake: " + ssl_error_text();
      close_conn(c);
      return true;
    }
    g_st.lat.push_back(uint32_t(std::min<int64_t>((now_ns() - c.started) / 1000, UINT32_MAX)));
    if (SSL_session_reused(c.ssl)) ++g_st.resumed;
    Params p = params_of(c.ssl);
    if (!g_have_params) {
      g_params = p;
      g_have_params = true;
    } else if (!(p == g_params)) {
      ++g_st.mismatch;
    }
    SSL_shutdown(c.ssl);  // sends close_notify (returns 0: the peer's is still to come)
    c.state = State::kShuttingDown;
  }
  // Read until the server's close_notify or FIN: its session tickets come on the way.
  char buf[4096];
  for (;;) {
    ERR_clear_error();
    errno = 0;
    int r = SSL_read(c.ssl, buf, sizeof buf);
    if (r > 0) {
      ++g_st.app_data;  // nothing was asked for: unexpected
      if (getenv("TLSLOAD_DUMP")) fwrite(buf, 1, size_t(r), stderr);
      continue;
    }
    int e = SSL_get_error(c.ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return false;
    if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0)) {
      ++g_st.completed;  // close_notify, or a plain FIN after the handshake
      if (SSL_get_shutdown(c.ssl) & SSL_RECEIVED_SHUTDOWN) ++g_st.peer_close_notify;
    } else if (e == SSL_ERROR_SYSCALL && (errno == ECONNRESET || errno == EPIPE)) {
      ++g_st.completed;  // the handshake was done; the server reset instead of closing
      ++g_st.resets;
    } else {
      ++g_st.shutdown_errors;
      g_last_error = "shutdown: " + ssl_error_text();
    }
    close_conn(c);
    return true;
  }
}

uint32_t pct(const std::vector<uint32_t>& v, double p) {
  if (v.empty()) return 0;
  size_t i = size_t(p / 100.0 * double(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

void json_str(const char* key, const std::string& v, bool comma = true) {
  printf("\"%s\":\"", key);
  for (char ch : v) {
    if (ch == '"' || ch == '\\') putchar('\\');
    if (static_cast<unsigned char>(ch) >= 0x20) putchar(ch);
  }
  printf("\"%s", comma ? "," : "");
}

void usage() {
  fprintf(stderr,
          "usage: bench-tlsload --port PORT [--connections N] [--duration S] [--host IPv4]\n"
          "       [--sni NAME] [--tls13] [--groups LIST] [--ciphersuites LIST] [--alpn PROTO]\n"
          "       [--timeout S] [--probe]\n");
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0, conns = 64;
  double duration = 5, timeout = 10;
  const char* host = "127.0.0.1";
  std::string groups = "X25519", suites = "TLS_AES_128_GCM_SHA256", alpn = "http/1.1";
  bool tls13 = false, probe = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        usage();
        exit(2);
      }
      return argv[++i];
    };
    if (a == "--port") port = atoi(next());
    else if (a == "--connections") conns = atoi(next());
    else if (a == "--duration") duration = atof(next());
    else if (a == "--timeout") timeout = atof(next());
    else if (a == "--host") host = next();
    else if (a == "--sni") g_sni = next();
    else if (a == "--groups") groups = next();
    else if (a == "--ciphersuites") suites = next();
    else if (a == "--alpn") alpn = next();
    else if (a == "--tls13") tls13 = true;
    else if (a == "--probe") probe = true;
    else {
      fprintf(stderr, "unknown option %s\n", a.c_str());
      usage();
      return 2;
    }
  }
  if (port <= 0 || conns < 1 || duration <= 0) {
    usage();
    return 2;
  }
  if (probe) conns = 1;
  if (inet_pton(AF_INET, host, &g_addr.sin_addr) != 1) {
    fprintf(stderr, "bad host %s (numeric IPv4 only)\n", host);
    return 2;
  }
  g_addr.sin_family = AF_INET;
  g_addr.sin_port = htons(uint16_t(port));
  signal(SIGPIPE, SIG_IGN);

  g_ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(g_ctx, tls13 ? TLS1_3_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_verify(g_ctx, SSL_VERIFY_NONE, nullptr);
  // A server may close with a FIN after our close_notify without sending its own: a clean end.
  SSL_CTX_set_options(g_ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
  // Tickets are received (and counted) but never stored, so no connection can resume.
  SSL_CTX_set_session_cache_mode(g_ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(g_ctx, on_new_session);
  std::string alpn_wire;
  if (!alpn.empty() && alpn != "none") {
    alpn_wire.push_back(char(alpn.size()));
    alpn_wire += alpn;
    SSL_CTX_set_alpn_protos(g_ctx, reinterpret_cast<const unsigned char*>(alpn_wire.data()),
                            unsigned(alpn_wire.size()));
  }
  // An empty list keeps OpenSSL's default (what wrk offers): --probe checks what a server picks.
  if ((!groups.empty() && SSL_CTX_set1_groups_list(g_ctx, groups.c_str()) != 1) ||
      (!suites.empty() && SSL_CTX_set_ciphersuites(g_ctx, suites.c_str()) != 1)) {
    fprintf(stderr, "bad --groups or --ciphersuites: %s\n", ssl_error_text().c_str());
    return 2;
  }

  g_ep = epoll_create1(EPOLL_CLOEXEC);
  std::vector<Conn> pool(static_cast<size_t>(conns));
  const int64_t t0 = now_ns();
  const int64_t stop_at = probe ? t0 : t0 + int64_t(duration * 1e9);
  const int64_t hard_stop = stop_at + int64_t(timeout * 1e9);
  const int64_t timeout_ns = int64_t(timeout * 1e9);
  int in_flight = 0;
  for (Conn& c : pool) {
    if (open_conn(c)) {
      ++in_flight;
    } else {
      ++g_st.connect_errors;
      g_last_error = std::string("connect: ") + strerror(errno);
    }
  }
  std::vector<epoll_event> evs(256);
  int64_t last_scan = t0;
  while (in_flight > 0) {
    int64_t now = now_ns();
    if (now >= hard_stop) break;
    int n = epoll_wait(g_ep, evs.data(), int(evs.size()), 50);
    now = now_ns();
    for (int i = 0; i < n; ++i) {
      Conn& c = *static_cast<Conn*>(evs[i].data.ptr);
      if (c.state == State::kIdle) continue;
      if (!drive(c)) continue;
      --in_flight;
      if (now < stop_at) {
        if (open_conn(c)) {
          ++in_flight;
        } else {
          ++g_st.connect_errors;
          g_last_error = std::string("connect: ") + strerror(errno);
        }
      }
    }
    if (now - last_scan > 100000000) {  // connections stuck longer than --timeout
      last_scan = now;
      for (Conn& c : pool) {
        if (c.state != State::kIdle && now - c.started > timeout_ns) {
          ++g_st.timeouts;
          close_conn(c);
          --in_flight;
          if (now < stop_at && open_conn(c)) ++in_flight;
        }
      }
    }
  }
  for (Conn& c : pool) {
    if (c.state != State::kIdle) {
      ++g_st.timeouts;
      close_conn(c);
    }
  }
  const double secs = double(now_ns() - t0) / 1e9;
  std::sort(g_st.lat.begin(), g_st.lat.end());
  double mean = 0;
  for (uint32_t v : g_st.lat) mean += v;
  if (!g_st.lat.empty()) mean /= double(g_st.lat.size());
  const uint64_t errors = g_st.connect_errors + g_st.handshake_errors + g_st.shutdown_errors +
                          g_st.timeouts + g_st.resumed + g_st.mismatch + g_st.app_data;
  printf("{\"handshakes\":%llu,\"duration_s\":%.4f,\"rate\":%.1f,\"connections\":%d,"
         "\"errors\":%llu,\"connect_errors\":%llu,\"handshake_errors\":%llu,"
         "\"shutdown_errors\":%llu,\"timeouts\":%llu,\"resumed\":%llu,\"mismatch\":%llu,"
         "\"app_data\":%llu,\"resets\":%llu,\"peer_close_notify\":%llu,\"tickets\":%llu,",
         (unsigned long long)g_st.completed, secs, secs > 0 ? double(g_st.completed) / secs : 0.0,
         conns, (unsigned long long)errors, (unsigned long long)g_st.connect_errors,
         (unsigned long long)g_st.handshake_errors, (unsigned long long)g_st.shutdown_errors,
         (unsigned long long)g_st.timeouts, (unsigned long long)g_st.resumed,
         (unsigned long long)g_st.mismatch, (unsigned long long)g_st.app_data,
         (unsigned long long)g_st.resets, (unsigned long long)g_st.peer_close_notify,
         (unsigned long long)g_tickets);
  printf("\"latency_us\":{\"p50\":%u,\"p90\":%u,\"p99\":%u,\"p999\":%u,\"max\":%u,\"mean\":%.1f},",
         pct(g_st.lat, 50), pct(g_st.lat, 90), pct(g_st.lat, 99), pct(g_st.lat, 99.9),
         g_st.lat.empty() ? 0 : g_st.lat.back(), mean);
  json_str("version", g_params.version);
  json_str("cipher", g_params.cipher);
  json_str("group", g_params.group);
  json_str("alpn", g_params.alpn);
  json_str("cert", g_params.cert);
  json_str("last_error", g_last_error, false);
  printf("}\n");
  SSL_CTX_free(g_ctx);
  return (probe && g_st.completed != 1) ? 1 : 0;
}
