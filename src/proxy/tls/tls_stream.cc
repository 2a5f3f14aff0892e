#include "proxy/tls/tls_stream.h"

#include <openssl/err.h>
#include <openssl/x509.h>

#include <climits>

namespace switchyard::proxy::tls {

TlsStream::TlsStream(SSL* ssl, bool server)
    : ssl_(ssl), in_(BIO_new(BIO_s_mem())), out_(BIO_new(BIO_s_mem())) {
  // An empty memory BIO reports "retry" instead of EOF, which is what makes WANT_READ work.
  BIO_set_mem_eof_return(in_, -1);
  BIO_set_mem_eof_return(out_, -1);
  SSL_set_bio(ssl_, in_, out_);
  if (server) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
  }
}

TlsStream::~TlsStream() { SSL_free(ssl_); }

void TlsStream::feed(const char* data, std::size_t len) {
  while (len > 0) {
    int chunk = len > static_cast<std::size_t>(INT_MAX) ? INT_MAX : static_cast<int>(len);
    int n = BIO_write(in_, data, chunk);
    if (n <= 0) return;
    data += n;
    len -= static_cast<std::size_t>(n);
  }
}

TlsStream::Result TlsStream::fail(int ret) {
  switch (SSL_get_error(ssl_, ret)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:  // memory BIOs never block writing; treat as "more input"
      return Result::kWantRead;
    case SSL_ERROR_ZERO_RETURN:
      return Result::kClosed;
    default: {
      unsigned long e = ERR_get_error();
      char buf[256];
      if (e) {
        ERR_error_string_n(e, buf, sizeof(buf));
        error_ = buf;
      } else {
        error_ = "connection error";
      }
      long verify = SSL_get_verify_result(ssl_);
      if (verify != X509_V_OK) {
        error_ += std::string(" (certificate: ") + X509_verify_cert_error_string(verify) + ")";
      }
      ERR_clear_error();
      return Result::kError;
    }
  }
}

TlsStream::Result TlsStream::handshake() {
  if (done_) return Result::kOk;
  int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    done_ = true;
    return Result::kOk;
  }
  return fail(r);
}

TlsStream::Result TlsStream::read(char* buf, std::size_t cap, std::size_t& n) {
  n = 0;
  int want = cap > static_cast<std::size_t>(INT_MAX) ? INT_MAX : static_cast<int>(cap);
  int r = SSL_read(ssl_, buf, want);
  if (r > 0) {
    n = static_cast<std::size_t>(r);
    return Result::kOk;
  }
  return fail(r);
}

bool TlsStream::write(const iovec* iov, int count) {
  for (int i = 0; i < count; ++i) {
    const char* p = static_cast<const char*>(iov[i].iov_base);
    std::size_t left = iov[i].iov_len;
    while (left > 0) {
      std::size_t written = 0;
      if (SSL_write_ex(ssl_, p, left, &written) != 1) {
        fail(0);
        return false;
      }
      p += written;
      left -= written;
    }
  }
  return true;
}

bool TlsStream::has_output() const { return BIO_ctrl_pending(out_) > 0; }

void TlsStream::take_output(std::string& out) {
  std::size_t pending = BIO_ctrl_pending(out_);
  if (pending == 0) return;
  std::size_t at = out.size();
  out.resize(at + pending);
  int n = BIO_read(out_, out.data() + at, static_cast<int>(pending));
  out.resize(at + (n > 0 ? static_cast<std::size_t>(n) : 0));
}

bool TlsStream::has_buffered_input() const {
  return SSL_pending(ssl_) > 0 || BIO_ctrl_pending(in_) > 0;
}

void TlsStream::shutdown() {
  if (done_) SSL_shutdown(ssl_);
  ERR_clear_error();
}

std::string_view TlsStream::alpn() const {
  const unsigned char* p = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl_, &p, &len);
  return p ? std::string_view(reinterpret_cast<const char*>(p), len) : std::string_view();
}

std::string TlsStream::peer_subject() const {
  X509* cert = SSL_get0_peer_certificate(ssl_);
  if (!cert || SSL_get_verify_result(ssl_) != X509_V_OK) return {};
  BIO* b = BIO_new(BIO_s_mem());
  X509_NAME_print_ex(b, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  long len = BIO_get_mem_data(b, &data);
  std::string s(data, static_cast<std::size_t>(len > 0 ? len : 0));
  BIO_free(b);
  return s;
}

}  // namespace switchyard::proxy::tls
