// The admin HTTP(S) server: Boost.Beast on the control-plane io_context. Serves the admin API
// (api.h), /metrics, the dashboard and its event stream on admin.bind, and /metrics alone without
// authentication on admin.metrics_bind when configured.
//
// Threads: constructed, started, stopped and run on the control-plane thread only. Every handler
// runs there too, so the API reads and changes the ControlPlane without locks. Nothing blocks:
// a slow client holds only its own connection (bounded count, timeouts on every read and write).
#pragma once

#include <boost/asio/io_context.hpp>
#include <memory>
#include <string>

#include "config/config.h"

namespace switchyard::proxy {
class ControlPlane;
}

namespace switchyard::proxy::admin {

class AdminServer {
 public:
  AdminServer(boost::asio::io_context& io, ControlPlane& control);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Reads the token files and the TLS certificate, binds and starts accepting. Logs
  // "admin API ready on http[s]://ADDRESS:PORT". Returns an error message, empty on success.
  // Also registers with the ControlPlane so that reloads re-read the token files.
  std::string start(const config::Admin& admin);
  // Closes the listening sockets and every connection (graceful shutdown).
  void stop();

  struct Impl;  // the .cc's; public so that its connection classes may name it

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace switchyard::proxy::admin
