#include "tls/tls_check.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

namespace switchyard::tls {
namespace {

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<FILE, FileCloser>;
using X509Ptr = std::unique_ptr<X509, decltype(&X509_free)>;
using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using CtxPtr = std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)>;

File open_file(const std::string& path, std::string& error) {
  File f(std::fopen(path.c_str(), "r"));
  if (!f) error = std::strerror(errno);
  return f;
}

CtxPtr scratch_context() { return CtxPtr(SSL_CTX_new(TLS_server_method()), &SSL_CTX_free); }

}  // namespace

std::string last_error() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  // "error:0A000086:SSL routines::certificate verify failed" -> keep the reason only.
  std::string text(buf);
  std::size_t colon = text.rfind(':');
  return colon == std::string::npos ? text : text.substr(colon + 1);
}

std::string check_certificate_pair(const std::string& cert_file, const std::string& key_file) {
  std::string err;
  File cf = open_file(cert_file, err);
  if (!cf) return "cannot read certificate '" + cert_file + "': " + err;
  X509Ptr cert(PEM_read_X509(cf.get(), nullptr, nullptr, nullptr), &X509_free);
  if (!cert) {
    ERR_clear_error();
    return "'" + cert_file + "' does not contain a PEM certificate";
  }
  File kf = open_file(key_file, err);
  if (!kf) return "cannot read key '" + key_file + "': " + err;
  KeyPtr key(PEM_read_PrivateKey(kf.get(), nullptr, nullptr, nullptr), &EVP_PKEY_free);
  if (!key) {
    ERR_clear_error();
    return "'" + key_file + "' does not contain a PEM private key (encrypted keys are not supported)";
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return "key '" + key_file + "' does not match certificate '" + cert_file + "'";
  }
  // The whole chain must load the way the listener loads it.
  CtxPtr ctx = scratch_context();
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), cert_file.c_str()) != 1) {
    return "certificate chain in '" + cert_file + "': " + last_error();
  }
  return {};
}

std::string check_cipher_list(const std::string& ciphers) {
  CtxPtr ctx = scratch_context();
  if (SSL_CTX_set_cipher_list(ctx.get(), ciphers.c_str()) != 1) return last_error();
  return {};
}

std::string check_ciphersuites(const std::string& suites) {
  CtxPtr ctx = scratch_context();
  if (SSL_CTX_set_ciphersuites(ctx.get(), suites.c_str()) != 1) return last_error();
  return {};
}

std::string check_groups(const std::string& groups) {
  CtxPtr ctx = scratch_context();
  if (SSL_CTX_set1_groups_list(ctx.get(), groups.c_str()) != 1) return last_error();
  return {};
}

std::string check_ca_file(const std::string& file) {
  std::string err;
  if (!open_file(file, err)) return "cannot read CA file '" + file + "': " + err;
  CtxPtr ctx = scratch_context();
  if (SSL_CTX_load_verify_locations(ctx.get(), file.c_str(), nullptr) != 1) {
    return "CA file '" + file + "': " + last_error();
  }
  return {};
}

std::vector<std::string> certificate_names(const std::string& cert_file, std::string& error) {
  std::vector<std::string> names;
  File cf = open_file(cert_file, error);
  if (!cf) return names;
  X509Ptr cert(PEM_read_X509(cf.get(), nullptr, nullptr, nullptr), &X509_free);
  if (!cert) {
    error = "no PEM certificate";
    ERR_clear_error();
    return names;
  }
  auto lower = [](std::string s) {
    for (char& c : s) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
    return s;
  };
  auto* sans = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert.get(), NID_subject_alt_name, nullptr, nullptr));
  if (sans) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
      if (gn->type != GEN_DNS) continue;
      const ASN1_IA5STRING* s = gn->d.dNSName;
      names.push_back(
          lower(std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                            static_cast<std::size_t>(ASN1_STRING_length(s)))));
    }
    GENERAL_NAMES_free(sans);
  }
  if (names.empty()) {
    // RFC 6125 allows the CN only when there are no DNS SANs.
    char cn[256];
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert.get()), NID_commonName, cn,
                                  sizeof(cn)) > 0) {
      names.push_back(lower(cn));
    }
  }
  return names;
}

}  // namespace switchyard::tls
