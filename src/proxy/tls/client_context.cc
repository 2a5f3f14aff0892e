#include "proxy/tls/client_context.h"

#include <openssl/x509v3.h>

#include "tls/tls_check.h"

namespace switchyard::proxy::tls {

ClientContext::~ClientContext() { SSL_CTX_free(ctx_); }

std::shared_ptr<const ClientContext> ClientContext::build(const config::TlsUpstream& tls,
                                                          std::string& error) {
  std::shared_ptr<ClientContext> cc(new ClientContext());
  cc->cfg_ = tls;
  cc->ctx_ = SSL_CTX_new(TLS_client_method());
  if (!cc->ctx_) {
    error = "SSL_CTX_new: " + switchyard::tls::last_error();
    return nullptr;
  }
  SSL_CTX* ctx = cc->ctx_;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  if (tls.verify) {
    int ok = tls.ca.empty() ? SSL_CTX_set_default_verify_paths(ctx)
                            : SSL_CTX_load_verify_locations(ctx, tls.ca.c_str(), nullptr);
    if (ok != 1) {
      error = "pool tls ca: " + switchyard::tls::last_error();
      return nullptr;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  if (!tls.cert.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, tls.cert.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, tls.key.c_str(), SSL_FILETYPE_PEM) != 1) {
      error = "pool tls client certificate: " + switchyard::tls::last_error();
      return nullptr;
    }
  }
  return cc;
}

SSL* ClientContext::new_ssl(const config::SocketAddress& server) const {
  SSL* ssl = SSL_new(ctx_);
  if (!ssl) return nullptr;
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  if (!cfg_.server_name.empty()) {
    SSL_set_tlsext_host_name(ssl, cfg_.server_name.c_str());
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    X509_VERIFY_PARAM_set1_host(param, cfg_.server_name.c_str(), 0);
  } else {
    // No name configured: the certificate must name the address we connect to (an IP SAN).
    std::string host = server.text.substr(0, server.text.rfind(':'));
    if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
    X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
  }
  return ssl;
}

}  // namespace switchyard::proxy::tls
