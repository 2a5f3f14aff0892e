// `switchyard agent`: runs on a real server and adopts the connections a front end hands off.
//
// It listens for front ends on a control address, authenticates them with the shared key (see
// message.h), restores each offered connection with TCP_REPAIR (frozen until the front end says
// Go, after it has steered the client's packets here) and then serves it by relaying it to the
// local web server (--backend, usually on loopback). The real server must hold the VIP on lo
// with ARP for it suppressed, as for VS/DR (`switchyard realserver --mode dr --vip VIP`).
//
// Runs on one thread (Boost.Asio); needs CAP_NET_ADMIN for TCP_REPAIR.
#pragma once

namespace switchyard::handoff {

int agent_main(int argc, char** argv);

}  // namespace switchyard::handoff
