// SPDX-License-Identifier: GPL-2.0
/* Whole-connection forwarding for tunnels (mode: tcp listeners, HTTP Upgrade): an sk_skb
 * stream-verdict program attached to the sockhash `sy_tunnel_socks`. Every segment a member
 * socket receives is counted and redirected to the transmit path of its peer socket (flags 0 =
 * egress), so the proxy never copies the bytes. FIN and RST are not propagated by the redirect:
 * the proxy watches both sockets and shuts down / closes the peer itself (src/splice/tunnel.cc).
 *
 * A socket whose bytes cannot be redirected (no sides entry, or its peer is not in the sockhash
 * yet) gets its bytes passed to userspace (SK_PASS), where the proxy's watching receive forwards
 * them by copy. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "splice/abi/tunnel_abi.h"

struct {
  __uint(type, BPF_MAP_TYPE_SOCKHASH);
  __uint(max_entries, SY_TUNNEL_MAX_SOCKETS);
  __type(key, __u64);
  __type(value, __u64);
} sy_tunnel_socks SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, SY_TUNNEL_MAX_SOCKETS);
  __type(key, __u64);
  __type(value, struct sy_tunnel_side);
} sy_tunnel_sides SEC(".maps");

SEC("sk_skb/stream_verdict")
int sy_tunnel_verdict(struct __sk_buff *skb) {
  /* A segment without payload is the FIN (tcp_read_skb hands it over too). Whatever queue it
   * lands in -- the peer's transmit backlog (redirect) or, when this socket's receive memory is
   * full, its own backlog (pass) -- the kernel's worker takes its zero length for a broken pipe
   * and reports EPIPE on that socket. TCP has already recorded the FIN (RCV_SHUTDOWN), which is
   * what the proxy's receive reports as EOF: the empty segment itself carries nothing. */
  if (skb->len == 0) return SK_DROP;
  __u64 cookie = bpf_get_socket_cookie(skb);
  struct sy_tunnel_side *side = bpf_map_lookup_elem(&sy_tunnel_sides, &cookie);
  if (!side) return SK_PASS;
  if (!side->passthrough) {
    __u64 peer = side->peer_cookie;
    if (bpf_sk_redirect_hash(skb, &sy_tunnel_socks, &peer, 0) == SK_PASS) {
      __sync_fetch_and_add(&side->bytes, skb->len);
      return SK_PASS;
    }
    /* The peer is not in the sockhash (yet): dropping would lose bytes, and passing only this
     * segment would let later ones overtake it. Hand this side to userspace for good. */
    side->passthrough = 1;
  }
  __sync_fetch_and_add(&side->passed, skb->len);
  return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
