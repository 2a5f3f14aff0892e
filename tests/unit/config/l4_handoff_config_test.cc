// `l4.services[].handoff`: TCP only, servers that receive the client's packets unchanged.
#include <catch2/catch.hpp>
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
