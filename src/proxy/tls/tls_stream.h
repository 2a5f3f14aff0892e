// One TLS connection driven through memory BIOs: the session moves ciphertext between the socket
// (io_uring) and this object, which never touches a file descriptor, so the worker never blocks
// and keeps batching its I/O through the ring.
//
// Worker thread only (the thread that owns the session). Owns its SSL.
#pragma once

#include <openssl/ssl.h>
#include <sys/uio.h>

#include <cstddef>
#include <string>
#include <string_view>

namespace switchyard::proxy::tls {

class TlsStream {
 public:
  // Takes ownership of `ssl`; `server` selects the accepting or the connecting side.
  explicit TlsStream(SSL* ssl, bool server = true);
  ~TlsStream();
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  enum class Result {
    kOk,        // done (handshake) or bytes produced (read)
    kWantRead,  // needs more ciphertext from the peer
    kClosed,    // the peer sent close_notify
    kError,     // protocol or verification failure: close the connection (see error())
  };

  // Ciphertext that arrived from the peer.
  void feed(const char* data, std::size_t len);
  Result handshake();
  bool handshake_done() const { return done_; }
  // Plaintext into buf[0..cap); on kOk `n` > 0 bytes.
  Result read(char* buf, std::size_t cap, std::size_t& n);
  // Encrypts all of iov; false on failure.
  bool write(const iovec* iov, int count);
  // Ciphertext waiting to go to the peer.
  bool has_output() const;
  // Appends it to `out` (and drops it here).
  void take_output(std::string& out);
  // Plaintext (or unprocessed ciphertext) is buffered: read() may produce bytes without feed().
  bool has_buffered_input() const;
  // Best-effort close_notify (queued as output).
  void shutdown();

  std::string_view alpn() const;
  const char* version() const { return SSL_get_version(ssl_); }
  bool resumed() const { return SSL_session_reused(ssl_) == 1; }
  // The verified client certificate's subject (RFC 2253), empty if none was presented.
  std::string peer_subject() const;
  // Why the last kError happened (OpenSSL's reason, or the verification error).
  const std::string& error() const { return error_; }

 private:
  Result fail(int ret);

  SSL* ssl_;
  BIO* in_;   // peer -> us (owned by ssl_)
  BIO* out_;  // us -> peer (owned by ssl_)
  bool done_ = false;
  std::string error_;
};

}  // namespace switchyard::proxy::tls
