#include "handoff/message.h"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstring>

namespace switchyard::handoff {
namespace {

constexpr char kMagic[4] = {'S', 'Y', 'H', 'O'};
constexpr std::uint8_t kVersion = 1;

class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}
  void u8(std::uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u16(std::uint16_t v) { be(v, 2); }
  void u32(std::uint32_t v) { be(v, 4); }
  void u64(std::uint64_t v) { be(v, 8); }
  void bytes(const void* p, std::size_t n) { out_.append(static_cast<const char*>(p), n); }
  void blob(std::string_view s) {
    u32(static_cast<std::uint32_t>(s.size()));
    out_.append(s);
  }

 private:
  void be(std::uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) out_.push_back(static_cast<char>(v >> (8 * i)));
  }
  std::string& out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool ok() const { return ok_; }
  bool done() const { return ok_ && pos_ == in_.size(); }
  std::uint8_t u8() { return static_cast<std::uint8_t>(be(1)); }
  std::uint16_t u16() { return static_cast<std::uint16_t>(be(2)); }
  std::uint32_t u32() { return static_cast<std::uint32_t>(be(4)); }
  std::uint64_t u64() { return be(8); }
  void bytes(void* p, std::size_t n) {
    if (!take(n)) return;
    std::memcpy(p, in_.data() + pos_ - n, n);
  }
  std::string blob() {
    std::uint32_t n = u32();
    if (!take(n)) return {};
    return std::string(in_.substr(pos_ - n, n));
  }

 private:
  bool take(std::size_t n) {
    if (!ok_ || in_.size() - pos_ < n) {
      ok_ = false;
      return false;
    }
    pos_ += n;
    return true;
  }
  std::uint64_t be(int n) {
    if (!take(static_cast<std::size_t>(n))) return 0;
    std::uint64_t v = 0;
    for (int i = 0; i < n; ++i) {
      v = (v << 8) | static_cast<unsigned char>(in_[pos_ - static_cast<std::size_t>(n) + i]);
    }
    return v;
  }
  std::string_view in_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

// Address as family, 16 address bytes, port (network order kept as is).
void write_address(Writer& w, const sockaddr_storage& a) {
  unsigned char addr[16] = {};
  std::uint16_t port = 0;
  if (a.ss_family == AF_INET6) {
    const auto& s6 = reinterpret_cast<const sockaddr_in6&>(a);
    std::memcpy(addr, &s6.sin6_addr, 16);
    port = s6.sin6_port;
  } else {
    const auto& s4 = reinterpret_cast<const sockaddr_in&>(a);
    std::memcpy(addr, &s4.sin_addr, 4);
    port = s4.sin_port;
  }
  w.u8(a.ss_family == AF_INET6 ? 6 : 4);
  w.bytes(addr, sizeof addr);
  w.bytes(&port, sizeof port);
}

bool read_address(Reader& r, sockaddr_storage& a) {
  std::uint8_t family = r.u8();
  unsigned char addr[16];
  std::uint16_t port = 0;
  r.bytes(addr, sizeof addr);
  r.bytes(&port, sizeof port);
  a = {};
  if (family == 6) {
    auto& s6 = reinterpret_cast<sockaddr_in6&>(a);
    s6.sin6_family = AF_INET6;
    std::memcpy(&s6.sin6_addr, addr, 16);
    s6.sin6_port = port;
  } else if (family == 4) {
    auto& s4 = reinterpret_cast<sockaddr_in&>(a);
    s4.sin_family = AF_INET;
    std::memcpy(&s4.sin_addr, addr, 4);
    s4.sin_port = port;
  } else {
    return false;
  }
  return r.ok();
}

void write_header(std::string& out, FrameType type, std::size_t body) {
  Writer w(out);
  w.bytes(kMagic, sizeof kMagic);
  w.u8(kVersion);
  w.u8(static_cast<std::uint8_t>(type));
  w.u16(0);
  w.u32(static_cast<std::uint32_t>(body));
}

}  // namespace

std::string Channel::hello() {
  RAND_bytes(challenge_.data(), static_cast<int>(challenge_.size()));
  ready_ = true;
  std::string out;
  write_header(out, FrameType::kHello, challenge_.size());
  out.append(reinterpret_cast<const char*>(challenge_.data()), challenge_.size());
  return out;
}

bool Channel::accept_hello(std::string_view data, std::string& error) {
  if (frame_size(data) != data.size() || data.size() != kHeaderBytes + kChallengeBytes ||
      static_cast<FrameType>(data[5]) != FrameType::kHello) {
    error = "expected a Hello frame";
    return false;
  }
  std::memcpy(challenge_.data(), data.data() + kHeaderBytes, kChallengeBytes);
  ready_ = true;
  return true;
}

std::size_t Channel::frame_size(std::string_view data) {
  if (data.size() < kHeaderBytes) return 0;
  Reader r(data.substr(0, kHeaderBytes));
  char magic[4];
  r.bytes(magic, 4);
  std::uint8_t version = r.u8();
  auto type = static_cast<FrameType>(r.u8());
  r.u16();
  std::uint32_t body = r.u32();
  // A frame that cannot be ours still has a size: the caller's decode() names what is wrong.
  if (std::memcmp(magic, kMagic, 4) != 0 || version != kVersion || body > kMaxBodyBytes) {
    return kHeaderBytes;
  }
  return kHeaderBytes + body + (type == FrameType::kHello ? 0 : kMacBytes);
}

std::string Channel::mac(std::string_view framed, bool from_front_end, std::uint64_t seq) const {
  std::string input(reinterpret_cast<const char*>(challenge_.data()), challenge_.size());
  Writer w(input);
  w.u8(from_front_end ? 1 : 2);
  w.u64(seq);
  input.append(framed);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), out, &len);
  return std::string(reinterpret_cast<const char*>(out), len);
}

std::string Channel::encode(const Frame& f) {
  std::string body;
  Writer w(body);
  w.u64(f.id);
  if (f.type == FrameType::kOffer) {
    const TcpState& s = f.state;
    write_address(w, s.local);
    write_address(w, s.peer);
    w.u32(s.snd_seq);
    w.u32(s.rcv_seq);
    w.u16(s.mss);
    w.u8(static_cast<std::uint8_t>((s.sack ? 1 : 0) | (s.timestamps ? 2 : 0) |
                                   (s.window_scaling ? 4 : 0)));
    w.u8(s.snd_wscale);
    w.u8(s.rcv_wscale);
    w.u32(s.timestamp);
    for (std::uint32_t v : {s.snd_wl1, s.snd_wnd, s.max_window, s.rcv_wnd, s.rcv_wup}) w.u32(v);
    w.blob(f.unread);
  } else if (f.type == FrameType::kFailed) {
    w.blob(f.reason);
  }
  std::string out;
  write_header(out, f.type, body.size());
  out += body;
  out += mac(out, side_ == Side::kFrontEnd, send_seq_++);
  return out;
}

std::optional<Frame> Channel::decode(std::string_view data, std::string& error) {
  if (!ready_) {
    error = "no challenge yet";
    return std::nullopt;
  }
  if (data.size() < kHeaderBytes + kMacBytes || frame_size(data) != data.size() ||
      std::memcmp(data.data(), kMagic, 4) != 0 || static_cast<std::uint8_t>(data[4]) != kVersion) {
    error = "not a handoff frame of version 1";
    return std::nullopt;
  }
  std::string_view framed = data.substr(0, data.size() - kMacBytes);
  std::string expect = mac(framed, side_ == Side::kAgent, recv_seq_);
  if (CRYPTO_memcmp(expect.data(), data.data() + framed.size(), kMacBytes) != 0) {
    error = "authentication failed (wrong key, or a replayed or altered frame)";
    return std::nullopt;
  }
  ++recv_seq_;
  Frame f;
  f.type = static_cast<FrameType>(data[5]);
  Reader r(framed.substr(kHeaderBytes));
  f.id = r.u64();
  switch (f.type) {
    case FrameType::kOffer: {
      TcpState& s = f.state;
      read_address(r, s.local);
      if (!read_address(r, s.peer) || s.local.ss_family != s.peer.ss_family) {
        error = "bad addresses in Offer";
        return std::nullopt;
      }
      s.snd_seq = r.u32();
      s.rcv_seq = r.u32();
      s.mss = r.u16();
      std::uint8_t flags = r.u8();
      s.sack = flags & 1;
      s.timestamps = flags & 2;
      s.window_scaling = flags & 4;
      s.snd_wscale = r.u8();
      s.rcv_wscale = r.u8();
      s.timestamp = r.u32();
      s.snd_wl1 = r.u32();
      s.snd_wnd = r.u32();
      s.max_window = r.u32();
      s.rcv_wnd = r.u32();
      s.rcv_wup = r.u32();
      f.unread = r.blob();
      break;
    }
    case FrameType::kFailed:
      f.reason = r.blob();
      break;
    case FrameType::kReady:
    case FrameType::kGo:
    case FrameType::kAbort:
      break;
    default:
      error = fmt::format("unexpected frame type {}", static_cast<int>(f.type));
      return std::nullopt;
  }
  if (!r.done()) {
    error = "malformed frame body";
    return std::nullopt;
  }
  return f;
}

}  // namespace switchyard::handoff
