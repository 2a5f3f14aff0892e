// The TLS side of a pool whose servers speak TLS: one client SSL_CTX per pool and snapshot
// (trust store, optional client certificate), and per-connection SNI and name verification.
//
// Built on the control-plane thread, used read-only by workers (SSL_new is thread-safe).
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "config/config.h"

namespace switchyard::proxy::tls {

class ClientContext {
 public:
  // Null and `error` set if OpenSSL refuses the settings.
  static std::shared_ptr<const ClientContext> build(const config::TlsUpstream& tls,
                                                    std::string& error);
  ~ClientContext();
  ClientContext(const ClientContext&) = delete;
  ClientContext& operator=(const ClientContext&) = delete;

  // A client SSL for a connection to `server` ("10.0.0.1:443", "[::1]:443"): SNI and the name to
  // verify are server_name if set, else the server's IP address. Null on allocation failure.
  SSL* new_ssl(const config::SocketAddress& server) const;

 private:
  ClientContext() = default;
  config::TlsUpstream cfg_;
  SSL_CTX* ctx_ = nullptr;
};

}  // namespace switchyard::proxy::tls
