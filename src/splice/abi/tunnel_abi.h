/* The tunnel fast path's kernel/user contract: the maps shared by src/splice/bpf/tunnel.bpf.c and
 * the C++ side (src/splice/sockmap.cc).
 *
 * This is the ONLY definition of these layouts; both compilers (clang -target bpf and g++) include
 * it and every struct carries a static size check. Plain C, usable from BPF (no libc).
 *
 * How a tunnel uses the maps: both sockets of a tunnel are inserted into `sy_tunnel_socks` keyed
 * by their socket cookie (SO_COOKIE), and `sy_tunnel_sides` maps each socket's cookie to its peer's
 * cookie. The stream-verdict program runs for every segment a member socket receives, adds its
 * length to the side's byte counter and redirects it to the peer's transmit path: the bytes never
 * reach userspace. Sockets leave the sockhash when they are closed; userspace deletes the sides
 * entries. */
#ifndef SWITCHYARD_TUNNEL_ABI_H
#define SWITCHYARD_TUNNEL_ABI_H

#ifndef __bpf__
#include <linux/types.h>
#endif

#ifdef __cplusplus
#define SY_TUNNEL_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define SY_TUNNEL_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

/* Sockets in tunnels at once (two per tunnel), for every worker together. A tunnel that finds the
 * map full is served by the copy engine instead. */
#define SY_TUNNEL_MAX_SOCKETS 65536

/* sy_tunnel_sides value: one per socket in a tunnel, keyed by that socket's cookie (__u64). */
struct sy_tunnel_side {
  __u64 peer_cookie; /* where this socket's received bytes go */
  __u64 bytes;       /* bytes received on this socket and redirected to the peer */
  __u64 passed;      /* bytes handed to userspace instead (passthrough) */
  __u32 passthrough; /* set by the program when a redirect failed (the peer was not in the
                      * sockhash yet): from then on every byte of this side goes to userspace,
                      * which copies it, so that nothing is reordered */
  __u32 pad;
};
SY_TUNNEL_STATIC_ASSERT(sizeof(struct sy_tunnel_side) == 32, "sy_tunnel_side layout");

#endif /* SWITCHYARD_TUNNEL_ABI_H */
