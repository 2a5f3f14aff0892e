// TCP handoff configuration: `l4.services[].handoff` (TCP only, servers that receive the
// client's packets unchanged) and the front end's `handoff:` section, routes and agents.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#include "config/config_loader.h"

using namespace switchyard::config;

namespace {

std::vector<std::string> l4_errors(const std::string& service) {
  LoadResult r =
      load_string("l4:\n  interfaces: [eth0]\n  services:\n    - " + service + "\n", "test.yaml");
  std::vector<std::string> out;
  for (const Diagnostic& d : r.diagnostics) out.push_back(d.to_string());
  return out;
}

}  // namespace

TEST_CASE("l4 handoff services", "[config][l4][handoff]") {
  CHECK(l4_errors("{name: h, vip: 192.0.2.1:80, mode: dr, handoff: true, "
                  "servers: [10.0.0.1:80, {address: 10.0.0.2:80, mode: tun}]}")
            .empty());
  LoadResult ok = load_string(
      "l4: {interfaces: [eth0], services: [{name: h, vip: 192.0.2.1:80, mode: dr, handoff: true, "
      "servers: [10.0.0.1:80]}, {name: p, vip: 192.0.2.1:81, servers: [10.0.0.1:81]}]}\n",
      "test.yaml");
  REQUIRE(ok.ok());
  CHECK(ok.config->l4->services[0].handoff);
  CHECK_FALSE(ok.config->l4->services[1].handoff);

  CHECK(l4_errors("{name: h, vip: 192.0.2.1:80, handoff: true, servers: [10.0.0.1:8080]}") ==
        std::vector<std::string>{
            "test.yaml:4:61: l4 service 'h' has handoff: server 10.0.0.1:8080 must use mode dr "
            "or tun (the server answers the client itself, from the VIP)"});
  CHECK(l4_errors("{name: h, vip: 192.0.2.1:53, protocol: udp, mode: dr, handoff: true, "
                  "servers: [10.0.0.1:53]}") ==
        std::vector<std::string>{"test.yaml:4:70: l4 service 'h': handoff needs protocol tcp"});
  CHECK(l4_errors("{name: h, vip: 192.0.2.1:80, mode: dr, handoff: yes please, "
                  "servers: [10.0.0.1:80]}")
            .size() == 1);
}

namespace {

// A key file for the `handoff:` section, removed at the end of the test.
struct KeyFile {
  std::string path;
  explicit KeyFile(const std::string& contents) {
    char name[] = "/tmp/sy-handoff-key-XXXXXX";
    int fd = ::mkstemp(name);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, contents.data(), contents.size()) == static_cast<ssize_t>(contents.size()));
    ::close(fd);
    path = name;
  }
  ~KeyFile() { ::unlink(path.c_str()); }
};

std::vector<std::string> errors_of(const std::string& yaml) {
  LoadResult r = load_string(yaml, "test.yaml");
  std::vector<std::string> out;
  for (const Diagnostic& d : r.diagnostics) out.push_back(d.to_string());
  return out;
}

std::string front_end(const std::string& handoff, const std::string& route_extra,
                      const std::string& server) {
  return handoff +
         "listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]\n"
         "routes:\n"
         "  main:\n"
         "    - {pool: app" +
         route_extra +
         "}\n"
         "pools:\n"
         "  app: {servers: [" +
         server + "]}\n";
}

}  // namespace

TEST_CASE("routes marked handoff: key file, agents, pool action", "[config][handoff]") {
  KeyFile key("0123456789abcdef0123456789abcdef\n");
  const std::string section = "handoff: {key_file: " + key.path + ", timeout: 250ms}\n";
  const std::string agent_server = "{address: 10.0.0.1:80, agent: 10.0.0.1:7000}";

  LoadResult ok = load_string(front_end(section, ", handoff: true", agent_server), "test.yaml");
  for (const Diagnostic& d : ok.diagnostics) UNSCOPED_INFO(d.to_string());
  REQUIRE(ok.diagnostics.empty());
  REQUIRE(ok.config->handoff);
  CHECK(ok.config->handoff->key == "0123456789abcdef0123456789abcdef");  // newline not included
  CHECK(ok.config->handoff->timeout == std::chrono::milliseconds(250));
  CHECK(ok.config->routes.at("main").routes[0].handoff);
  REQUIRE(ok.config->pools.at("app").servers[0].agent);
  CHECK(ok.config->pools.at("app").servers[0].agent->text == "10.0.0.1:7000");

  // No `handoff:` section.
  CHECK(errors_of(front_end("", ", handoff: true", agent_server)) ==
        std::vector<std::string>{"test.yaml:4:19: handoff needs the top-level `handoff:` section "
                                 "(key_file shared with the agents)"});
  // A server without an agent.
  CHECK(errors_of(front_end(section, ", handoff: true", "10.0.0.2:80")) ==
        std::vector<std::string>{"test.yaml:5:19: handoff: server 10.0.0.2:80 of pool 'app' has "
                                 "no `agent` (its switchyard agent's control address)"});
  // Only with a pool action.
  CHECK(errors_of(section + "listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]\n"
                            "routes: {main: [{respond: {status: 200}, handoff: true}]}\n") ==
        std::vector<std::string>{"test.yaml:3:42: handoff is only allowed with pool (the "
                                 "connection moves to one server)"});
  // A short or missing key file is named where the file is given.
  KeyFile short_key("too short\n");
  CHECK(errors_of(front_end("handoff: {key_file: " + short_key.path + "}\n", "", agent_server)) ==
        std::vector<std::string>{"test.yaml:1:21: " + short_key.path +
                                 ": a handoff key needs at least 32 bytes (head -c 32 "
                                 "/dev/urandom)"});
  CHECK(errors_of(front_end("handoff: {key_file: /nonexistent/key}\n", "", agent_server)) ==
        std::vector<std::string>{"test.yaml:1:21: /nonexistent/key: No such file or directory"});
  CHECK(errors_of(front_end("handoff: {timeout: 1s}\n", "", agent_server)).size() == 1);
  // Not with the other ways a connection stops being proxied request by request.
  CHECK(errors_of(front_end(section, ", handoff: true, per_connection: true", agent_server)) ==
        std::vector<std::string>{"test.yaml:5:19: handoff and per_connection exclude each other "
                                 "(handoff moves the connection itself to the server)"});
  // An agent address needs a port.
  CHECK(errors_of(front_end(section, "", "{address: 10.0.0.1:80, agent: 10.0.0.1}")).size() == 1);
}
