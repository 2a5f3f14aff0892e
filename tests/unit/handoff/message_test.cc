// The handoff channel: frames round-trip, and anything not sent by the key holder, in order, on
// this channel is refused.
#include "handoff/message.h"

#include <arpa/inet.h>

#include <catch2/catch.hpp>
#include <string>

using namespace switchyard::handoff;

namespace {

const std::string kKey(32, 'k');

struct Pair {
  Channel agent{Channel::Side::kAgent, kKey};
  Channel front{Channel::Side::kFrontEnd, kKey};
  Pair() {
    std::string error;
    REQUIRE(front.accept_hello(agent.hello(), error));
  }
};

Frame offer() {
  Frame f;
  f.type = FrameType::kOffer;
  f.id = 42;
  auto& l = reinterpret_cast<sockaddr_in6&>(f.state.local);
  l.sin6_family = AF_INET6;
  inet_pton(AF_INET6, "2001:db8::100", &l.sin6_addr);
  l.sin6_port = htons(80);
  auto& p = reinterpret_cast<sockaddr_in6&>(f.state.peer);
  p.sin6_family = AF_INET6;
  inet_pton(AF_INET6, "2001:db8::9", &p.sin6_addr);
  p.sin6_port = htons(40312);
  f.state.snd_seq = 0xfffffff0;
  f.state.rcv_seq = 7;
  f.state.mss = 1440;
  f.state.sack = true;
  f.state.timestamps = true;
  f.state.window_scaling = true;
  f.state.snd_wscale = 7;
  f.state.rcv_wscale = 9;
  f.state.timestamp = 123456;
  f.state.snd_wl1 = 1;
  f.state.snd_wnd = 2;
  f.state.max_window = 3;
  f.state.rcv_wnd = 4;
  f.state.rcv_wup = 5;
  f.unread = std::string("GET / HTTP/1.1\r\n\r\n\0binary", 25);
  return f;
}

}  // namespace

TEST_CASE("an offer round-trips through the channel", "[handoff]") {
  Pair c;
  std::string wire = c.front.encode(offer());
  CHECK(Channel::frame_size(wire.substr(0, 5)) == 0);
  CHECK(Channel::frame_size(wire) == wire.size());
  std::string error;
  auto f = c.agent.decode(wire, error);
  REQUIRE(f.has_value());
  Frame want = offer();
  CHECK(f->type == FrameType::kOffer);
  CHECK(f->id == 42);
  CHECK(describe(f->state) == describe(want.state));
  CHECK(f->state.timestamp == 123456);
  CHECK(f->state.rcv_wup == 5);
  CHECK(f->unread == want.unread);
  // And the answers come back.
  Frame ready;
  ready.type = FrameType::kFailed;
  ready.id = 42;
  ready.reason = "bind: Cannot assign requested address";
  auto r = c.front.decode(c.agent.encode(ready), error);
  REQUIRE(r.has_value());
  CHECK(r->reason == ready.reason);
}

TEST_CASE("frames from a wrong key, replayed, altered or reflected are refused", "[handoff]") {
  std::string error;
  SECTION("wrong key") {
    Channel agent(Channel::Side::kAgent, kKey);
    Channel front(Channel::Side::kFrontEnd, std::string(32, 'x'));
    REQUIRE(front.accept_hello(agent.hello(), error));
    CHECK_FALSE(agent.decode(front.encode(offer()), error).has_value());
    CHECK(error.find("authentication failed") != std::string::npos);
  }
  SECTION("replayed on the same channel") {
    Pair c;
    std::string wire = c.front.encode(offer());
    REQUIRE(c.agent.decode(wire, error).has_value());
    CHECK_FALSE(c.agent.decode(wire, error).has_value());
  }
  SECTION("replayed on another channel (another challenge)") {
    Pair c1, c2;
    CHECK_FALSE(c2.agent.decode(c1.front.encode(offer()), error).has_value());
  }
  SECTION("altered") {
    Pair c;
    std::string wire = c.front.encode(offer());
    wire[kHeaderBytes + 3] ^= 1;
    CHECK_FALSE(c.agent.decode(wire, error).has_value());
  }
  SECTION("reflected back to its sender") {
    Pair c;
    Frame go;
    go.type = FrameType::kGo;
    go.id = 1;
    CHECK_FALSE(c.front.decode(c.front.encode(go), error).has_value());
  }
  SECTION("not a frame") {
    Pair c;
    std::string junk = "GET / HTTP/1.1\r\n\r\n" + std::string(40, 'a');
    CHECK_FALSE(c.agent.decode(junk, error).has_value());
  }
}
