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

// One entry of an ordered, first-match route table. Without a match it matches every request.
struct Route {
  SourceMark mark;
  std::optional<std::string> pool;  // forward to this pool, or
  std::optional<Respond> respond;   // answer directly
};

struct RouteTable {
  std::string name;
  std::vector<Route> routes;
};

struct Server {
  SocketAddress address;
  std::uint32_t weight = 1;
};

struct Pool {
  std::string name;
  std::string scheduler = "rr";
  std::uint32_t max_idle_per_server = 64;  // idle keep-alive connections kept per worker
  std::vector<Server> servers;
};

struct Listener {
  std::string name;
  SocketAddress bind;
  std::string routes;  // name of the route table
};

struct Admin {
  SocketAddress bind;
};

struct Config {
  std::string source_path;    // the file it was loaded from ("<string>" in tests)
  std::uint32_t workers = 0;  // 0 = one per online CPU
  Limits limits;
  Timeouts timeouts;
  Forwarding forwarding;
  AccessLog access_log;
  std::vector<Listener> listeners;
  std::map<std::string, RouteTable> routes;
  std::map<std::string, Pool> pools;
  std::optional<Admin> admin;
};

}  // namespace switchyard::config
