#include "proxy/tls/server_context.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstring>

#include "tls/tls_check.h"

namespace switchyard::proxy::tls {
namespace {

int version_of(const std::string& name) {
  return name == "TLSv1.3" ? TLS1_3_VERSION : TLS1_2_VERSION;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// TicketKeys

TicketKeys::TicketKeys() {
  for (Key& k : slots_) std::memset(&k, 0, sizeof(k));
  rotate();
  rotate();
  rotate();
}

void TicketKeys::rotate() {
  std::uint64_t next = generation_.load(std::memory_order_relaxed) + 1;
  Key& k = slots_[next % 4];  // not readable until generation_ moves to `next`
  RAND_bytes(k.name, sizeof(k.name));
  RAND_bytes(k.aes, sizeof(k.aes));
  RAND_bytes(k.hmac, sizeof(k.hmac));
  generation_.store(next, std::memory_order_release);
}

const TicketKeys::Key& TicketKeys::current() const {
  return slots_[generation_.load(std::memory_order_acquire) % 4];
}

const TicketKeys::Key* TicketKeys::find(const unsigned char name[16], bool& renew) const {
  std::uint64_t g = generation_.load(std::memory_order_acquire);
  for (std::uint64_t age = 0; age < 3 && age <= g; ++age) {
    const Key& k = slots_[(g - age) % 4];
    if (std::memcmp(k.name, name, sizeof(k.name)) == 0) {
      renew = age > 0;
      return &k;
    }
  }
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// ServerContext

ServerContext::~ServerContext() {
  for (SSL_CTX* c : contexts_) SSL_CTX_free(c);
}

std::shared_ptr<const ServerContext> ServerContext::build(const config::TlsServer& tls,
                                                          std::shared_ptr<TicketKeys> keys,
                                                          std::string& error) {
  std::shared_ptr<ServerContext> sc(new ServerContext());
  sc->cfg_ = tls;
  sc->keys_ = std::move(keys);
  for (const std::string& p : tls.alpn) {
    sc->alpn_wire_.push_back(static_cast<char>(p.size()));
    sc->alpn_wire_.append(p);
  }

  // Certificates whose names are the same set share one SSL_CTX, so an RSA and an ECDSA
  // certificate for the same site sit side by side and OpenSSL picks by what the client supports.
  std::vector<std::string> group_keys;
  std::vector<std::vector<std::string>> group_names;
  std::vector<SSL_CTX*>& contexts = sc->contexts_;
  for (const config::TlsCertificate& cert : tls.certificates) {
    std::string err;
    std::vector<std::string> names = switchyard::tls::certificate_names(cert.cert, err);
    if (!err.empty()) {
      error = "certificate '" + cert.cert + "': " + err;
      return nullptr;
    }
    std::vector<std::string> sorted = names;
    std::sort(sorted.begin(), sorted.end());
    std::string key;
    for (const std::string& n : sorted) key.append(n).append(",");
    std::size_t g = 0;
    while (g < group_keys.size() && group_keys[g] != key) ++g;
    if (g == group_keys.size()) {
      SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
      if (!ctx) {
        error = "SSL_CTX_new: " + switchyard::tls::last_error();
        return nullptr;
      }
      contexts.push_back(ctx);
      group_keys.push_back(key);
      group_names.push_back(names);
      SSL_CTX_set_app_data(ctx, sc.get());
      SSL_CTX_set_min_proto_version(ctx, version_of(tls.min_version));
      SSL_CTX_set_max_proto_version(ctx, version_of(tls.max_version));
      // Idle connections give their read/write buffers back: TLS must not undo the small
      // per-connection footprint of the receive-buffer ring.
      SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
      SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                   SSL_OP_CIPHER_SERVER_PREFERENCE);
      if (SSL_CTX_set_cipher_list(ctx, tls.ciphers.c_str()) != 1 ||
          SSL_CTX_set_ciphersuites(ctx, tls.ciphersuites.c_str()) != 1 ||
          SSL_CTX_set1_groups_list(ctx, tls.groups.c_str()) != 1) {
        error = "cipher settings: " + switchyard::tls::last_error();
        return nullptr;
      }
      SSL_CTX_set_tlsext_servername_callback(ctx, &ServerContext::on_servername);
      SSL_CTX_set_tlsext_servername_arg(ctx, sc.get());
      if (!sc->alpn_wire_.empty()) SSL_CTX_set_alpn_select_cb(ctx, &ServerContext::on_alpn, sc.get());
      if (tls.session_tickets) {
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, &ServerContext::on_ticket_key);
        SSL_CTX_set_num_tickets(ctx, 1);
      } else {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(ctx, 0);
      }
      if (tls.session_cache > 0) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
        SSL_CTX_sess_set_cache_size(ctx, tls.session_cache);
        static const unsigned char kSid[] = "switchyard";
        SSL_CTX_set_session_id_context(ctx, kSid, sizeof(kSid) - 1);
      } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
      }
      if (tls.verify_client != config::TlsServer::Verify::kNone) {
        if (SSL_CTX_load_verify_locations(ctx, tls.client_ca.c_str(), nullptr) != 1) {
          error = "client_ca '" + tls.client_ca + "': " + switchyard::tls::last_error();
          return nullptr;
        }
        STACK_OF(X509_NAME)* names_list = SSL_load_client_CA_file(tls.client_ca.c_str());
        if (names_list) SSL_CTX_set_client_CA_list(ctx, names_list);
        int mode = SSL_VERIFY_PEER;
        if (tls.verify_client == config::TlsServer::Verify::kRequired) {
          mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        }
        SSL_CTX_set_verify(ctx, mode, nullptr);
        static const unsigned char kSid[] = "switchyard";
        SSL_CTX_set_session_id_context(ctx, kSid, sizeof(kSid) - 1);
      }
    }
    SSL_CTX* ctx = contexts[g];
    if (SSL_CTX_use_certificate_chain_file(ctx, cert.cert.c_str()) != 1) {
      error = "certificate '" + cert.cert + "': " + switchyard::tls::last_error();
      return nullptr;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cert.key.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
      error = "key '" + cert.key + "': " + switchyard::tls::last_error();
      return nullptr;
    }
  }
  for (std::size_t g = 0; g < contexts.size(); ++g) {
    for (const std::string& name : group_names[g]) {
      // The first certificate naming a host wins, as the configuration lists them.
      if (name.starts_with("*.")) {
        sc->wildcard_.emplace(name.substr(2), contexts[g]);
      } else {
        sc->exact_.emplace(name, contexts[g]);
      }
    }
  }
  return sc;
}

SSL* ServerContext::new_ssl() const { return SSL_new(contexts_.front()); }

SSL_CTX* ServerContext::find_context(std::string_view server_name) const {
  std::string name = lower(server_name);
  if (!name.empty() && name.back() == '.') name.pop_back();
  if (auto it = exact_.find(name); it != exact_.end()) return it->second;
  // A wildcard covers exactly one label (RFC 6125 §6.4.3).
  std::size_t dot = name.find('.');
  if (dot != std::string::npos) {
    if (auto it = wildcard_.find(name.substr(dot + 1)); it != wildcard_.end()) return it->second;
  }
  return nullptr;
}

int ServerContext::on_servername(SSL* ssl, int*, void* arg) {
  const auto* self = static_cast<const ServerContext*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (!name) return SSL_TLSEXT_ERR_NOACK;  // no SNI: the default certificate
  SSL_CTX* ctx = self->find_context(name);
  if (!ctx) return SSL_TLSEXT_ERR_NOACK;  // unknown name: the default certificate
  if (ctx != SSL_get_SSL_CTX(ssl)) SSL_set_SSL_CTX(ssl, ctx);
  return SSL_TLSEXT_ERR_OK;
}

int ServerContext::on_alpn(SSL*, const unsigned char** out, unsigned char* outlen,
                           const unsigned char* in, unsigned int inlen, void* arg) {
  const auto* self = static_cast<const ServerContext*>(arg);
  unsigned char* selected = nullptr;
  // Server preference: our list first.
  if (SSL_select_next_proto(&selected, outlen,
                            reinterpret_cast<const unsigned char*>(self->alpn_wire_.data()),
                            static_cast<unsigned int>(self->alpn_wire_.size()), in,
                            inlen) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;  // no overlap: carry on without ALPN, as HAProxy does
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

int ServerContext::on_ticket_key(SSL* ssl, unsigned char key_name[16], unsigned char* iv,
                                 EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int enc) {
  const auto* self = static_cast<const ServerContext*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  if (!self) return -1;
  const TicketKeys::Key* key = nullptr;
  bool renew = false;
  if (enc) {
    key = &self->keys_->current();
    std::memcpy(key_name, key->name, 16);
    if (RAND_bytes(iv, 16) != 1) return -1;
  } else {
    key = self->keys_->find(key_name, renew);
    if (!key) return 0;  // unknown or too old: full handshake
  }
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, const_cast<unsigned char*>(key->hmac),
                                        sizeof(key->hmac)),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>("SHA256"), 0),
      OSSL_PARAM_construct_end()};
  if (EVP_MAC_CTX_set_params(mac, params) != 1) return -1;
  int ok = enc ? EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key->aes, iv)
               : EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key->aes, iv);
  if (ok != 1) return -1;
  return renew ? 2 : 1;
}

}  // namespace switchyard::proxy::tls
