// The TLS side of a listener: OpenSSL contexts built from its `tls:` block, certificate choice by
// SNI, ALPN, and session-ticket keys shared by every worker and rotated on a schedule.
//
// Built on the control-plane thread for each configuration snapshot (so a reload re-reads the
// certificate files) and then used read-only by every worker: SSL_new() on a shared SSL_CTX is
// thread-safe. Connections keep the SSL_CTX they started with (OpenSSL reference-counts it), so a
// reload that swaps certificates never disturbs an open connection.
#pragma once

#include <openssl/ssl.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "config/config.h"

namespace switchyard::proxy::tls {

// Session-ticket encryption keys: the current one encrypts, it and the two before it decrypt
// (a ticket older than two rotations means a full handshake). One instance for the process, so
// tickets stay valid across workers and reloads.
//
// Threads: rotate() on the control plane; lookups from any worker during handshakes. Slots are
// written only after they left the readable window (four slots, three readable), and rotations
// are minutes apart, so readers never see a half-written key.
class TicketKeys {
 public:
  struct Key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
  };
  TicketKeys();
  void rotate();
  const Key& current() const;
  // The key named `name`, or null; `renew` set when it is not the current one.
  const Key* find(const unsigned char name[16], bool& renew) const;

 private:
  Key slots_[4];
  std::atomic<std::uint64_t> generation_{0};
};

class ServerContext {
 public:
  // Null and `error` set if OpenSSL refuses anything (the loader checked the files already, but
  // they may have changed since).
  static std::shared_ptr<const ServerContext> build(const config::TlsServer& tls,
                                                    std::shared_ptr<TicketKeys> keys,
                                                    std::string& error);
  ~ServerContext();
  ServerContext(const ServerContext&) = delete;
  ServerContext& operator=(const ServerContext&) = delete;

  // A new server-side SSL for an accepted connection (starts on the default certificate; SNI
  // may switch it). Null on allocation failure.
  SSL* new_ssl() const;
  const config::TlsServer& config() const { return cfg_; }

 private:
  ServerContext() = default;
  static int on_servername(SSL* ssl, int* alert, void* arg);
  static int on_alpn(SSL* ssl, const unsigned char** out, unsigned char* outlen,
                     const unsigned char* in, unsigned int inlen, void* arg);
  static int on_ticket_key(SSL* ssl, unsigned char key_name[16], unsigned char* iv,
                           EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int enc);
  SSL_CTX* find_context(std::string_view server_name) const;

  config::TlsServer cfg_;
  std::shared_ptr<TicketKeys> keys_;
  std::vector<SSL_CTX*> contexts_;  // [0] = default; one per distinct certificate name set
  std::unordered_map<std::string, SSL_CTX*> exact_;     // "www.example.com"
  std::unordered_map<std::string, SSL_CTX*> wildcard_;  // "example.com" for "*.example.com"
  std::string alpn_wire_;                               // configured ALPN, wire format
};

}  // namespace switchyard::proxy::tls
