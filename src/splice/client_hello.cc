#include "splice/client_hello.h"

#include <cstdint>

namespace switchyard::splice {
namespace {

constexpr std::size_t kMaxHandshake = 64 * 1024;  // larger: not a ClientHello worth waiting for

// A bounds-checked reader over the handshake message.
struct Reader {
  const unsigned char* p;
  std::size_t left;
  bool ok = true;
  unsigned u8() {
    if (left < 1) return ok = false, 0;
    --left;
    return *p++;
  }
  unsigned u16() {
    unsigned hi = u8();
    return (hi << 8) | u8();
  }
  unsigned u24() {
    unsigned hi = u16();
    return (hi << 8) | u8();
  }
  Reader sub(std::size_t n) {
    if (left < n) {
      ok = false;
      return Reader{p, 0, false};
    }
    Reader r{p, n};
    p += n;
    left -= n;
    return r;
  }
  void skip(std::size_t n) { sub(n); }
};

}  // namespace

ClientHelloResult parse_client_hello_sni(const char* data, std::size_t len,
                                         std::string_view& name) {
  // The handshake message, reassembled from the records' payloads. It sits in `data` unchanged
  // only if it fits in the first record; otherwise the payloads are joined into `joined`.
  const auto* bytes = reinterpret_cast<const unsigned char*>(data);
  unsigned char joined[kMaxHandshake];
  std::size_t have = 0;
  std::size_t off = 0;
  std::size_t need = 0;  // handshake bytes needed, once its header is known
  const unsigned char* msg = nullptr;
  bool single = true;
  while (true) {
    if (len - off < 5) return off == 0 && len > 0 && bytes[0] != 0x16 ? ClientHelloResult::kNotTls
                                                                     : ClientHelloResult::kNeedMore;
    // TLSPlaintext: type 22 (handshake), legacy_version 3.x, length <= 2^14.
    if (bytes[off] != 0x16 || bytes[off + 1] != 3) return ClientHelloResult::kNotTls;
    std::size_t rec_len = (std::size_t{bytes[off + 3]} << 8) | bytes[off + 4];
    if (rec_len == 0 || rec_len > 16384) return ClientHelloResult::kNotTls;
    std::size_t avail = len - off - 5 < rec_len ? len - off - 5 : rec_len;
    const unsigned char* payload = bytes + off + 5;
    if (off == 0 && avail == rec_len) {
      msg = payload;
      have = avail;
    } else {
      if (off == 0) {
        single = false;
      } else if (single) {
        // Second record: the first record's payload moves to the scratch buffer first.
        single = false;
        if (have > sizeof(joined)) return ClientHelloResult::kNotTls;
        for (std::size_t i = 0; i < have; ++i) joined[i] = msg[i];
      }
      if (have + avail > sizeof(joined)) return ClientHelloResult::kNotTls;
      for (std::size_t i = 0; i < avail; ++i) joined[have + i] = payload[i];
      have += avail;
      msg = joined;
    }
    if (need == 0 && have >= 4) {
      if (msg[0] != 1) return ClientHelloResult::kNotTls;  // handshake type: client_hello
      need = 4 + ((std::size_t{msg[1]} << 16) | (std::size_t{msg[2]} << 8) | msg[3]);
      if (need > kMaxHandshake) return ClientHelloResult::kNotTls;
    }
    if (need > 0 && have >= need) break;
    if (avail < rec_len) return ClientHelloResult::kNeedMore;  // the record is still arriving
    off += 5 + rec_len;
  }

  Reader r{msg + 4, need - 4};
  r.skip(2);              // legacy_version
  r.skip(32);             // random
  r.skip(r.u8());         // legacy_session_id
  r.skip(r.u16());        // cipher_suites
  r.skip(r.u8());         // legacy_compression_methods
  if (!r.ok) return ClientHelloResult::kNotTls;
  if (r.left == 0) return ClientHelloResult::kNoName;  // no extensions at all
  Reader ext = r.sub(r.u16());
  if (!r.ok) return ClientHelloResult::kNotTls;
  while (ext.left > 0) {
    unsigned type = ext.u16();
    Reader body = ext.sub(ext.u16());
    if (!ext.ok) return ClientHelloResult::kNotTls;
    if (type != 0) continue;  // server_name
    Reader list = body.sub(body.u16());
    while (list.ok && list.left > 0) {
      unsigned kind = list.u8();
      Reader host = list.sub(list.u16());
      if (!list.ok) break;
      if (kind != 0 || host.left == 0) continue;  // host_name
      name = std::string_view(reinterpret_cast<const char*>(host.p), host.left);
      if (single) return ClientHelloResult::kFound;
      // The name points into the scratch buffer: find the same bytes in `data` (they are there,
      // unless a record boundary splits them, in which case there is no name to give).
      std::string_view all(data, len);
      std::size_t at = all.find(name);
      if (at == std::string_view::npos) return ClientHelloResult::kNoName;
      name = all.substr(at, name.size());
      return ClientHelloResult::kFound;
    }
    return ClientHelloResult::kNotTls;
  }
  return ClientHelloResult::kNoName;
}

}  // namespace switchyard::splice
