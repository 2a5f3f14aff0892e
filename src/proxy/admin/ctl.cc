// The Beast client side lives here only (slow to compile).
#include "proxy/admin/ctl.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <future>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "config/config_loader.h"

namespace switchyard::proxy::admin {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using Json = nlohmann::ordered_json;

constexpr const char* kUsage =
    "usage: switchyard ctl [options] <command> [arguments]\n"
    "\n"
    "commands:\n"
    "  status                          version, uptime, reloads\n"
    "  health                          exit 0 when the admin API answers and every listener\n"
    "                                  accepts connections, else 1 (keepalived, container checks)\n"
    "  pools | pool NAME               pools and their servers\n"
    "  listeners | routes | workers    traffic by listener, route hits, workers\n"
    "  overrides                       runtime changes and what the last reload did to them\n"
    "  history                         recent events (reloads, changes, health)\n"
    "  metrics                         the Prometheus text\n"
    "  server drain POOL ADDRESS       stop sending new requests to a server\n"
    "  server undrain POOL ADDRESS\n"
    "  server maint POOL ADDRESS on|off   maintenance mode\n"
    "  server weight POOL ADDRESS N\n"
    "  server add POOL ADDRESS [--weight N] [--max-connections N] [--backup]\n"
    "  server remove POOL ADDRESS\n"
    "  server reset POOL ADDRESS       forget runtime changes: back to the configuration file\n"
    "  reload                          reload the configuration file\n"
    "\n"
    "options:\n"
    "  -c, --config FILE     admin address, TLS and token file from this configuration\n"
    "  --url URL             http[s]://HOST:PORT (default http://127.0.0.1:9090)\n"
    "  --token-file FILE     'name:token' lines (the first token is used) or a bare token;\n"
    "                        default: $SWITCHYARD_TOKEN, else the configuration's token_file\n"
    "  --json                print the API's JSON\n"
    "  --cacert FILE         HTTPS: trust this CA bundle\n"
    "  --timeout SECONDS     health: give up after this long (default 2)\n"
    "  --insecure            HTTPS: do not verify the server's certificate\n";

struct Options {
  std::string url;
  std::string token;
  bool json = false;
  bool insecure = false;
  std::string cacert;
  std::chrono::seconds timeout{30};
};

struct Reply {
  int status = 0;
  std::string body;
};

int usage(const std::string& msg) {
  std::fprintf(stderr, "switchyard ctl: %s\n\n%s", msg.c_str(), kUsage);
  return 2;
}

std::string read_token(const std::string& path, std::string& error) {
  std::ifstream in(path);
  if (!in) {
    error = "cannot read token file " + path;
    return {};
  }
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    std::size_t colon = line.find(':');
    std::string token = colon == std::string::npos ? line : line.substr(colon + 1);
    while (!token.empty() && token.front() == ' ') token.erase(0, 1);
    return token;
  }
  error = "no token in " + path;
  return {};
}

// http[s]://host:port -> parts; false if malformed.
bool split_url(const std::string& url, bool& tls, std::string& host, std::string& port) {
  std::string rest;
  if (url.rfind("https://", 0) == 0) {
    tls = true;
    rest = url.substr(8);
  } else if (url.rfind("http://", 0) == 0) {
    tls = false;
    rest = url.substr(7);
  } else {
    return false;
  }
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  std::size_t colon = rest.rfind(':');
  if (rest.empty()) return false;
  if (!rest.empty() && rest.front() == '[') {
    std::size_t close = rest.find(']');
    if (close == std::string::npos) return false;
    host = rest.substr(1, close - 1);
    port = close + 1 < rest.size() && rest[close + 1] == ':' ? rest.substr(close + 2)
                                                             : (tls ? "443" : "80");
    return true;
  }
  if (colon == std::string::npos) {
    host = rest;
    port = tls ? "443" : "80";
  } else {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  return !host.empty() && !port.empty();
}

Reply request(const Options& o, http::verb method, const std::string& target,
              const std::string& body) {
  bool tls = false;
  std::string host, port;
  if (!split_url(o.url, tls, host, port)) throw std::runtime_error("bad --url " + o.url);
  net::io_context io;
  tcp::resolver resolver(io);
  auto endpoints = resolver.resolve(host, port);
  http::request<http::string_body> req{method, target, 11};
  req.set(http::field::host, host + ":" + port);
  req.set(http::field::user_agent, "switchyard-ctl");
  req.set(http::field::authorization, "Bearer " + o.token);
  if (!body.empty()) {
    req.set(http::field::content_type, "application/json");
    req.body() = body;
  }
  req.prepare_payload();
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  if (tls) {
    ssl::context ctx(ssl::context::tls_client);
    if (o.insecure) {
      ctx.set_verify_mode(ssl::verify_none);
    } else {
      ctx.set_verify_mode(ssl::verify_peer);
      if (!o.cacert.empty()) {
        ctx.load_verify_file(o.cacert);
      } else {
        ctx.set_default_verify_paths();
      }
    }
    beast::ssl_stream<beast::tcp_stream> stream(io, ctx);
    if (!SSL_set_tlsext_host_name(stream.native_handle(), host.c_str())) {
      throw std::runtime_error("cannot set SNI");
    }
    if (!o.insecure) stream.set_verify_callback(ssl::host_name_verification(host));
    beast::get_lowest_layer(stream).expires_after(o.timeout);
    beast::get_lowest_layer(stream).connect(endpoints);
    stream.handshake(ssl::stream_base::client);
    http::write(stream, req);
    http::read(stream, buffer, parser);
    beast::error_code ignored;
    beast::get_lowest_layer(stream).socket().shutdown(tcp::socket::shutdown_both, ignored);
  } else {
    beast::tcp_stream stream(io);
    stream.expires_after(o.timeout);
    stream.connect(endpoints);
    http::write(stream, req);
    http::read(stream, buffer, parser);
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  }
  res = parser.release();
  return {static_cast<int>(res.result_int()), std::move(res.body())};
}

std::string url_segment(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '.' || c == '-' || c == '_' || c == ':' || c == '~') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof(buf), "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

// A plain text table with aligned columns.
void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width;
  for (const auto& row : rows) {
    for (std::size_t i = 0; i < row.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], row[i].size());
    }
  }
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    std::puts(line.c_str());
  }
}

std::string text(const Json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.2f", v.get<double>());
    return buf;
  }
  return v.dump();
}

std::string ago(const Json& check) {
  if (check.is_null()) return "-";
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  long long secs = (now - check["unix_ms"].get<long long>()) / 1000;
  std::string s = check["ok"].get<bool>() ? "ok" : "FAIL";
  if (!check["ok"].get<bool>() && check.contains("reason")) s += " (" + text(check["reason"]) + ")";
  return s + " " + std::to_string(std::max(0ll, secs)) + "s ago";
}

void print_pools(const Json& pools) {
  std::vector<std::vector<std::string>> rows{{"POOL", "SERVER", "STATE", "HEALTH", "WEIGHT",
                                              "ACTIVE", "REQUESTS", "ERRORS", "P50ms", "P99ms",
                                              "LAST CHECK", "CHANGED"}};
  for (const Json& p : pools) {
    for (const Json& s : p["servers"]) {
      const Json& lat = s["latency_ms"];
      rows.push_back({text(p["name"]), text(s["address"]), text(s["state"]), text(s["health"]),
                      text(s["weight"]), text(s["active"]), text(s["requests"]),
                      text(s["errors_total"]), lat.is_null() ? "-" : text(lat["p50"]),
                      lat.is_null() ? "-" : text(lat["p99"]), ago(s["last_check"]),
                      s["runtime_change"].is_null() ? "" : "runtime"});
    }
  }
  print_table(rows);
}

void print_reply(const std::string& what, const Json& j) {
  if (what == "pools") return print_pools(j);
  if (what == "pool") return print_pools(Json::array({j}));
  if (what.rfind("server:", 0) == 0) {
    return print_pools(Json::array({Json{{"name", what.substr(7)}, {"servers", {j}}}}));
  }
  std::vector<std::vector<std::string>> rows;
  if (what == "listeners") {
    rows.push_back({"LISTENER", "BIND", "ROUTES", "TLS", "ACTIVE", "CONNECTIONS", "REQUESTS", "2xx",
                    "4xx", "5xx"});
    for (const Json& l : j) {
      rows.push_back({text(l["name"]), text(l["bind"]), text(l["routes"]), text(l["tls"]),
                      text(l["active_connections"]), text(l["connections"]), text(l["requests"]),
                      text(l["responses"]["2xx"]), text(l["responses"]["4xx"]),
                      text(l["responses"]["5xx"])});
    }
  } else if (what == "routes") {
    rows.push_back({"TABLE", "#", "LINE", "ACTION", "HITS"});
    for (const Json& r : j) {
      rows.push_back({text(r["table"]), text(r["position"]), text(r["line"]), text(r["action"]),
                      text(r["hits"])});
    }
  } else if (what == "workers") {
    rows.push_back(
        {"WORKER", "CONNECTIONS", "UPSTREAMS", "REQUESTS", "ACCEPTED", "FREE BUFFERS", "RING"});
    for (const Json& w : j) {
      std::string flags;
      for (const Json& f : w["ring"]["flags"]) flags += (flags.empty() ? "" : ",") + text(f);
      rows.push_back({text(w["id"]), text(w["connections"]), text(w["upstream_connections"]),
                      text(w["requests"]), text(w["accepted"]), text(w["ring"]["free_buffers"]),
                      text(w["ring"]["sq_entries"]) + " " + flags});
    }
  } else if (what == "history") {
    rows.push_back({"#", "TIME", "KIND", "EVENT"});
    for (const Json& e : j) {
      rows.push_back({text(e["seq"]), text(e["time"]), text(e["kind"]), text(e["text"])});
    }
  } else if (what == "status") {
    rows.push_back({"version", text(j["version"])});
    rows.push_back({"config file", text(j["config_file"])});
    rows.push_back({"started", text(j["started"]) + " (" + text(j["uptime_s"]) + " s ago)"});
    rows.push_back({"config loaded", text(j["config_loaded"])});
    rows.push_back({"reloads", text(j["reloads"]["success"]) + " ok, " +
                                   text(j["reloads"]["failure"]) + " refused"});
    rows.push_back({"runtime changes", text(j["runtime_changes"]) +
                                           (j["overrides_active"].get<bool>() ? " (active)" : "")});
    rows.push_back({"workers", text(j["workers"])});
    rows.push_back({"token", text(j["token"]["name"]) +
                                 (j["token"]["read_only"].get<bool>() ? " (read-only)" : "")});
  } else if (what == "overrides") {
    rows.push_back({"POOL", "SERVER", "CHANGE"});
    for (const Json& p : j["overrides"]) {
      for (const Json& s : p["changed"]) {
        std::string change;
        for (const auto& [k, v] : s.items()) {
          if (k != "address") change += (change.empty() ? "" : " ") + k + "=" + text(v);
        }
        rows.push_back({text(p["pool"]), text(s["address"]), change});
      }
      for (const Json& s : p["added"]) {
        rows.push_back({text(p["pool"]), text(s["address"]), "added weight=" + text(s["weight"])});
      }
      for (const Json& a : p["removed"]) rows.push_back({text(p["pool"]), text(a), "removed"});
    }
    if (!j["last_reload"].empty()) {
      print_table(rows);
      rows = {{""}, {"LAST RELOAD", "SERVER", "SETTING", "RUNTIME", "FILE"}};
      for (const Json& n : j["last_reload"]) {
        rows.push_back({text(n["outcome"]), text(n["pool"]) + "/" + text(n["server"]),
                        text(n["setting"]), text(n["runtime"]), text(n["file"])});
      }
    }
  } else if (what == "reload") {
    std::puts("configuration reloaded");
    for (const Json& n : j["overrides"]) {
      std::printf("runtime change %s: %s/%s %s=%s (file: %s)\n", text(n["outcome"]).c_str(),
                  text(n["pool"]).c_str(), text(n["server"]).c_str(), text(n["setting"]).c_str(),
                  text(n["runtime"]).c_str(), text(n["file"]).c_str());
    }
    return;
  } else {
    std::puts(j.dump(2).c_str());
    return;
  }
  print_table(rows);
}

// `ctl health`: the instance is healthy when its admin API answers /api/v1/status (the control
// plane is alive) and every listener with a fixed port accepts a TCP connection (the workers'
// sockets are open). A pure L4 director has no listeners: the status answer is the whole check.
// Returns the line to print: "healthy: ..." or "unhealthy: why".
std::string check_health(const Options& o) {
  auto failed = [](const std::string& where, const std::exception& e) {
    const auto* se = dynamic_cast<const boost::system::system_error*>(&e);
    return "unhealthy: " + where + ": " + (se ? se->code().message() : std::string(e.what()));
  };
  Json listeners;
  try {
    Reply status = request(o, http::verb::get, "/api/v1/status", "");
    if (status.status != 200) {
      return "unhealthy: " + o.url + "/api/v1/status answered " + std::to_string(status.status);
    }
    Reply reply = request(o, http::verb::get, "/api/v1/listeners", "");
    listeners = Json::parse(reply.body, nullptr, false);
    if (reply.status != 200 || !listeners.is_array()) {
      return "unhealthy: " + o.url + "/api/v1/listeners answered " + std::to_string(reply.status);
    }
  } catch (const std::exception& e) {
    return failed(o.url, e);
  }
  int checked = 0;
  for (const Json& l : listeners) {
    std::string bind = text(l["bind"]);
    std::size_t colon = bind.rfind(':');
    if (colon == std::string::npos || bind.substr(colon + 1) == "0") continue;  // ephemeral
    std::string host = bind.substr(0, colon), port = bind.substr(colon + 1);
    if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
    // A wildcard bind is reached on loopback.
    if (host == "0.0.0.0" || host.empty()) host = "127.0.0.1";
    if (host == "::") host = "::1";
    try {
      net::io_context io;
      tcp::resolver resolver(io);
      tcp::socket socket(io);
      net::connect(socket, resolver.resolve(host, port));
      beast::error_code ignored;
      socket.shutdown(tcp::socket::shutdown_both, ignored);
    } catch (const std::exception& e) {
      return failed("listener " + text(l["name"]) + " (" + bind + ")", e);
    }
    ++checked;
  }
  return "healthy: admin API answers, " + std::to_string(checked) + " of " +
         std::to_string(listeners.size()) + " listeners accept connections";
}

// Exit code 0 healthy, 1 not. Beast's synchronous calls ignore stream expiry, so a proxy that
// accepts but never answers (stopped, wedged) would block forever: the check runs on a thread
// of its own and is abandoned after o.timeout. The process then ends with _Exit, so that no
// static destructor runs under the still-blocked thread.
int health(const Options& o) {
  std::promise<std::string> result;
  std::future<std::string> line = result.get_future();
  std::thread worker([&o, &result] {
    try {
      result.set_value(check_health(o));
    } catch (const std::exception& e) {
      result.set_value(std::string("unhealthy: ") + e.what());
    }
  });
  if (line.wait_for(o.timeout) != std::future_status::ready) {
    std::printf("unhealthy: %s: no answer within %lld s\n", o.url.c_str(),
                static_cast<long long>(o.timeout.count()));
    std::fflush(stdout);
    std::_Exit(1);
  }
  worker.join();
  std::string answer = line.get();
  std::puts(answer.c_str());
  return answer.rfind("healthy", 0) == 0 ? 0 : 1;
}

}  // namespace

int run_ctl(int argc, char** argv) {
  Options o;
  std::string config_path, token_file;
  std::vector<std::string> args;
  std::optional<std::uint32_t> weight, max_connections, timeout;
  bool backup = false;
  auto number = [](const std::string& s, std::uint32_t& out) {
    try {
      std::size_t used = 0;
      unsigned long v = std::stoul(s, &used);
      if (used != s.size() || v > 1000000) return false;
      out = static_cast<std::uint32_t>(v);
      return true;
    } catch (...) {
      return false;
    }
  };
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::optional<std::string> {
      if (i + 1 >= argc) return std::nullopt;
      return std::string(argv[++i]);
    };
    if (a == "-c" || a == "--config" || a == "--url" || a == "--token-file" || a == "--cacert" ||
        a == "--weight" || a == "--max-connections" || a == "--timeout") {
      auto v = value();
      if (!v) return usage(a + " needs a value");
      if (a == "-c" || a == "--config") config_path = *v;
      if (a == "--url") o.url = *v;
      if (a == "--token-file") token_file = *v;
      if (a == "--cacert") o.cacert = *v;
      std::uint32_t n = 0;
      if ((a == "--weight" || a == "--max-connections" || a == "--timeout") && !number(*v, n)) {
        return usage(a + " needs a number");
      }
      if (a == "--weight") weight = n;
      if (a == "--max-connections") max_connections = n;
      if (a == "--timeout" && n == 0) return usage("--timeout needs a number above 0");
      if (a == "--timeout") timeout = n;
    } else if (a == "--json") {
      o.json = true;
    } else if (a == "--insecure") {
      o.insecure = true;
    } else if (a == "--backup") {
      backup = true;
    } else if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a.size() > 1 && a[0] == '-' && a[1] == '-') {
      return usage("unknown option " + a);
    } else {
      args.push_back(a);
    }
  }
  if (args.empty()) return usage("missing command");

  // Defaults from the configuration file: address, scheme and token file of its admin block.
  if (!config_path.empty()) {
    config::LoadResult loaded = config::load_file(config_path);
    if (!loaded.ok()) {
      for (const auto& d : loaded.diagnostics) std::fprintf(stderr, "%s\n", d.to_string().c_str());
      return 1;
    }
    if (!loaded.config->admin) {
      std::fprintf(stderr, "switchyard ctl: %s has no admin block\n", config_path.c_str());
      return 1;
    }
    const config::Admin& adm = *loaded.config->admin;
    if (o.url.empty()) {
      std::string bind = adm.bind.text;
      // A wildcard bind is reached on loopback.
      if (bind.rfind("0.0.0.0:", 0) == 0) bind = "127.0.0.1" + bind.substr(7);
      if (bind.rfind("[::]:", 0) == 0) bind = "[::1]" + bind.substr(4);
      o.url = (adm.tls ? "https://" : "http://") + bind;
    }
    if (token_file.empty() && !std::getenv("SWITCHYARD_TOKEN")) token_file = adm.token_file;
  }
  if (o.url.empty()) o.url = "http://127.0.0.1:9090";
  if (!token_file.empty()) {
    std::string err;
    o.token = read_token(token_file, err);
    if (!err.empty()) {
      std::fprintf(stderr, "switchyard ctl: %s\n", err.c_str());
      return 1;
    }
  } else if (const char* env = std::getenv("SWITCHYARD_TOKEN")) {
    o.token = env;
  }
  if (o.token.empty()) return usage("no token: use --token-file, -c or SWITCHYARD_TOKEN");

  const std::string& cmd = args[0];
  if (cmd == "health" && args.size() == 1) {
    // Health checkers (keepalived, container runtimes) run it every second or so: fail fast.
    o.timeout = std::chrono::seconds(timeout.value_or(2));
    return health(o);
  }
  http::verb method = http::verb::get;
  std::string target, body, what = cmd;
  auto need = [&](std::size_t n) { return args.size() == n; };
  if ((cmd == "status" || cmd == "pools" || cmd == "listeners" || cmd == "routes" ||
       cmd == "workers" || cmd == "overrides" || cmd == "history") &&
      need(1)) {
    target = "/api/v1/" + cmd;
  } else if (cmd == "pool" && need(2)) {
    target = "/api/v1/pools/" + url_segment(args[1]);
  } else if (cmd == "metrics" && need(1)) {
    target = "/metrics";
  } else if (cmd == "reload" && need(1)) {
    method = http::verb::post;
    target = "/api/v1/reload";
  } else if (cmd == "server" && args.size() >= 4) {
    const std::string& op = args[1];
    std::string base = "/api/v1/pools/" + url_segment(args[2]) + "/servers";
    std::string one = base + "/" + url_segment(args[3]);
    what = "server:" + args[2];
    if ((op == "drain" || op == "undrain") && need(4)) {
      method = http::verb::patch;
      target = one;
      body = Json{{"drain", op == "drain"}}.dump();
    } else if ((op == "maint" || op == "maintenance") && need(5) &&
               (args[4] == "on" || args[4] == "off")) {
      method = http::verb::patch;
      target = one;
      body = Json{{"maintenance", args[4] == "on"}}.dump();
    } else if (op == "weight" && need(5)) {
      std::uint32_t w = 0;
      if (!number(args[4], w)) return usage("weight needs a number");
      method = http::verb::patch;
      target = one;
      body = Json{{"weight", w}}.dump();
    } else if (op == "add" && need(4)) {
      method = http::verb::post;
      target = base;
      Json j{{"address", args[3]}};
      if (weight) j["weight"] = *weight;
      if (max_connections) j["max_connections"] = *max_connections;
      if (backup) j["backup"] = true;
      body = j.dump();
    } else if (op == "remove" && need(4)) {
      method = http::verb::delete_;
      target = one;
      what = "done";
    } else if (op == "reset" && need(4)) {
      method = http::verb::delete_;
      target = one + "/override";
      what = "done";
    } else {
      return usage("unknown or incomplete server command");
    }
  } else {
    return usage("unknown or incomplete command " + cmd);
  }

  Reply reply;
  try {
    reply = request(o, method, target, body);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "switchyard ctl: %s: %s\n", o.url.c_str(), e.what());
    return 1;
  }
  if (reply.status >= 400) {
    Json j = Json::parse(reply.body, nullptr, false);
    std::string msg = !j.is_discarded() && j.contains("error") ? text(j["error"]) : reply.body;
    std::fprintf(stderr, "switchyard ctl: %d: %s\n", reply.status, msg.c_str());
    if (!j.is_discarded() && j.contains("errors")) {
      for (const Json& e : j["errors"]) std::fprintf(stderr, "%s\n", text(e).c_str());
    }
    return 1;
  }
  if (cmd == "metrics" || o.json) {
    std::fputs(reply.body.c_str(), stdout);
    return 0;
  }
  Json j = Json::parse(reply.body, nullptr, false);
  if (j.is_discarded()) {
    std::fputs(reply.body.c_str(), stdout);
    return 0;
  }
  if (what == "done") {
    std::puts("ok");
    return 0;
  }
  print_reply(what, j);
  return 0;
}

}  // namespace switchyard::proxy::admin
