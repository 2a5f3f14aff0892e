// switchyard: command-line entry point. Only wiring: the work is in the subsystems.
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "config/config_loader.h"
#include "core/log.h"
#include "handoff/agent.h"
#include "l4/ctl/realserver.h"
#include "l4/ctl/status_cmd.h"
#include "proxy/admin/ctl.h"
#include "proxy/demo.h"
#include "proxy/server.h"
#include "proxy/snapshot.h"

namespace {

constexpr const char* kUsage =
    "usage: switchyard <command> [options]\n"
    "\n"
    "commands:\n"
    "  run   -c FILE        serve the configuration in FILE\n"
    "  check -c FILE        validate FILE; print file:line:column: message for each problem\n"
    "  demo  [--port N]     proxy on 127.0.0.1:N (default 8080) in front of built-in origins\n"
    "  ctl   COMMAND        talk to a running proxy's admin API (switchyard ctl --help)\n"
    "  version              print the version\n"
    "  realserver --mode dr|tun --vip ADDR [--dev IFACE] [--remove]\n"
    "                       prepare this host as an L4 real server (VIP on lo, ARP\n"
    "                       suppressed; tun: tc decap program on IFACE)\n"
    "  l4 status [--pin-path DIR]  L4 services, real servers and counters\n"
    "  agent --listen ADDR:PORT --key FILE --backend ADDR:PORT\n"
    "                       on a real server: adopt connections a front end hands off\n"
    "\n"
    "options:\n"
    "  -v, --verbose        debug logging\n";

int usage_error(const char* msg) {
  std::fprintf(stderr, "switchyard: %s\n\n%s", msg, kUsage);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage_error("missing command");
  std::string_view command = argv[1];
  // The admin API client has its own options.
  if (command == "ctl") return switchyard::proxy::admin::run_ctl(argc - 2, argv + 2);
  // Own option syntax (repeatable --vip/--dev): parsed by the L4 code.
  if (command == "realserver") return switchyard::l4::realserver_main(argc - 2, argv + 2);
  if (command == "l4") return switchyard::l4::l4_main(argc - 2, argv + 2);
  if (command == "agent") {
    switchyard::core::init_logging(spdlog::level::info);
    return switchyard::handoff::agent_main(argc - 2, argv + 2);
  }
  std::string config_path;
  unsigned port = 8080;
  bool verbose = false;
  for (int i = 2; i < argc; ++i) {
    std::string_view a = argv[i];
    if ((a == "-c" || a == "--config") && i + 1 < argc) {
      config_path = argv[++i];
    } else if (a == "--port" && i + 1 < argc) {
      port = static_cast<unsigned>(std::stoul(argv[++i]));
    } else if (a == "-v" || a == "--verbose") {
      verbose = true;
    } else {
      return usage_error(("unknown option " + std::string(a)).c_str());
    }
  }
  if (command == "help" || command == "--help" || command == "-h") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (command == "version" || command == "--version") {
    std::puts("switchyard 0.1.0");
    return 0;
  }
  switchyard::core::init_logging(verbose ? spdlog::level::debug : spdlog::level::info);
  if (command == "demo") {
    if (port > 65535) return usage_error("--port must be 0..65535");
    return switchyard::proxy::run_demo(static_cast<std::uint16_t>(port), 3);
  }
  if (command != "run" && command != "check") {
    return usage_error(("unknown command " + std::string(command)).c_str());
  }
  if (config_path.empty()) return usage_error("-c FILE is required");
  switchyard::config::LoadResult loaded = switchyard::config::load_file(config_path);
  if (!loaded.ok()) {
    for (const auto& d : loaded.diagnostics) std::fprintf(stderr, "%s\n", d.to_string().c_str());
    std::fprintf(stderr, "switchyard: %zu error%s in %s\n", loaded.diagnostics.size(),
                 loaded.diagnostics.size() == 1 ? "" : "s", config_path.c_str());
    return 1;
  }
  std::string err;
  auto snapshot = switchyard::proxy::make_snapshot(loaded.config, err);
  if (!snapshot) {
    std::fprintf(stderr, "%s: %s\n", config_path.c_str(), err.c_str());
    return 1;
  }
  if (command == "check") {
    std::printf("%s: configuration is valid\n", config_path.c_str());
    return 0;
  }
  return switchyard::proxy::run_server(snapshot, config_path);
}
