// `switchyard realserver`: prepares a real server for VS/DR or VS/TUN (IPVS terms).
//
//   switchyard realserver --mode dr|tun --vip ADDR [--vip ADDR ...] [--dev IFACE ...] [--remove]
//
// Both modes: each VIP is added to `lo` (/32 or /128) so the server accepts and answers packets
// addressed to it, and ARP is suppressed for it (net.ipv4.conf.{all,IFACE}.arp_ignore=1,
// arp_announce=2): only the director may answer ARP for the VIP, or clients' routers would send
// straight to one real server.
// TUN also loads the tc decap program (src/l4/bpf/l4_decap.bpf.c) on ingress of every --dev
// (required for tun), because this kernel has no ipip module, and sets rp_filter to 0 there (the
// decapsulated packet arrives from the client's address on an interface that may not route to
// it). Running the command again replaces the VIP set; --remove undoes it.
//
// The tc attachment outlives the command (the kernel holds the program), so this is a one-shot
// setup command, like `ip` or `ipvsadm`. Runs in the caller's network namespace; needs root.
#pragma once

namespace switchyard::l4 {

// argv[0] is the first option after `realserver`. Prints to stdout/stderr; returns the exit code
// (0 ok, 1 failure, 2 usage error).
int realserver_main(int argc, char** argv);

}  // namespace switchyard::l4
