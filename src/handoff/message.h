// The handoff control channel between a front end and `switchyard agent`: framing and
// authentication.
//
// One TCP connection per front-end worker and agent. The agent opens it with a Hello carrying a
// fresh random challenge; every later frame, either way, carries a sequence number and an
// HMAC-SHA256 over (challenge, direction, sequence, frame) keyed with the shared key file. So a
// frame is accepted once, on that connection, in order, and only from a holder of the key: a
// replayed or forged Offer cannot make an agent adopt connections, a forged Ready cannot make a
// front end drop one.
//
// Exchange for one connection (id chosen by the front end):
//   front end: Offer(id, TcpState, unread bytes)   agent: restore, frozen -> Ready(id) | Failed(id)
//   front end: steer the client's packets to the agent's host, close its socket silently, Go(id)
//   agent:     unfreeze, serve the connection
// or, if steering fails: Abort(id) and the front end unfreezes its own socket.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "handoff/key_file.h"
#include "handoff/tcp_state.h"

namespace switchyard::handoff {

enum class FrameType : std::uint8_t { kHello = 1, kOffer, kReady, kFailed, kGo, kAbort };

inline constexpr std::size_t kHeaderBytes = 12;        // magic, version, type, reserved, length
inline constexpr std::size_t kMacBytes = 32;           // HMAC-SHA256
inline constexpr std::size_t kMaxBodyBytes = 1 << 20;  // an Offer carries at most a request head
inline constexpr std::size_t kChallengeBytes = 16;

using Challenge = std::array<unsigned char, kChallengeBytes>;

struct Frame {
  FrameType type = FrameType::kHello;
  std::uint64_t id = 0;   // the connection being handed off (all but Hello)
  TcpState state;         // Offer
  std::string unread;     // Offer: request bytes to put back in the receive queue
  std::string reason;     // Failed
  Challenge challenge{};  // Hello
};

// One end of a channel: the key, the challenge, and the next sequence numbers each way.
class Channel {
 public:
  enum class Side { kFrontEnd, kAgent };
  Channel(Side side, std::string key) : side_(side), key_(std::move(key)) {}

  // Agent: picks a random challenge and returns the Hello frame announcing it.
  std::string hello();
  // Front end: adopts the challenge of a Hello frame (`data` holds exactly one frame).
  bool accept_hello(std::string_view data, std::string& error);

  // Encodes `f` as the next frame from this side.
  std::string encode(const Frame& f);
  // Bytes needed for the frame starting at `data` (header first): 0 if more header is needed.
  static std::size_t frame_size(std::string_view data);
  // Decodes and authenticates the next frame from the other side. `data` is exactly one frame.
  std::optional<Frame> decode(std::string_view data, std::string& error);

 private:
  std::string mac(std::string_view framed, bool from_front_end, std::uint64_t seq) const;

  Side side_;
  std::string key_;
  Challenge challenge_{};
  bool ready_ = false;
  std::uint64_t send_seq_ = 0;
  std::uint64_t recv_seq_ = 0;
};

}  // namespace switchyard::handoff
