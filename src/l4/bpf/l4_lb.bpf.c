// SPDX-License-Identifier: GPL-2.0
/* The director's L4 fast path: one XDP program for every interface it is attached to.
 *
 * Per packet:
 *   1. Parse Ethernet + IPv4/IPv6 + TCP/UDP. Anything else, fragments and IPv4 options go to the
 *      kernel untouched (XDP_PASS): ARP, ICMP, the director's own traffic.
 *   2. Destination is a virtual service (services map)?  Forward path:
 *        - known flow (conns LRU map) whose real is still valid -> that real (stickiness across
 *          scheduler and config changes);
 *        - otherwise schedule from the service's row (per-CPU cursor or hash) and record the flow;
 *        - NAT: rewrite destination address/port (incremental checksums) and remember the reply
 *          tuple in nat_rev; DR: destination MAC only; TUN: push an outer IP header.
 *   3. Otherwise, a reply of a NAT flow (nat_rev)?  Rewrite the source back to VIP:port.
 *   4. Send: the next hop (bpf_fib_lookup + bpf_check_mtu, cached per real server and per NAT
 *      reply flow for a second) gives egress interface, MACs and MTU -> XDP_TX (same interface)
 *      or bpf_redirect.
 *   5. What XDP cannot send itself -- a frame above the next hop's MTU (in generic mode that is
 *      a GRO/GSO aggregate), or no neighbour entry yet -- it schedules and counts as usual, then
 *      passes unmodified with a note in the metadata area to the tc ingress program at the end
 *      of this file, which has the skb helpers for exactly those cases (struct l4_meta).
 *
 * The tc program runs on the same interfaces; packets without the note leave it at once.
 *
 * Checksums: incremental (RFC 1624) for every rewrite; full only for the new outer IPv4 header. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "l4/abi/l4_abi.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

char LICENSE[] SEC("license") = "GPL";

/* Pinned maps (see ctl/): these hold state that must survive a control-plane restart. Their
 * sizes are set by the control plane before load (conns/nat_rev from the config). */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, L4_MAX_SERVICES);
  __type(key, struct l4_vs_key);
  __type(value, struct l4_service);
} services SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, L4_MAX_SERVICES * L4_ROWS_PER_SERVICE * L4_RING_SIZE);
  __type(key, __u32);
  __type(value, __u32);
} rows SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, L4_MAX_REALS);
  __type(key, __u32);
  __type(value, struct l4_real);
} reals SEC(".maps");

/* BPF_F_NO_COMMON_LRU: per-CPU LRU lists over one shared table, so eviction bookkeeping does not
 * bounce a global lock between cores while every CPU still sees every flow. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 65536);
  __uint(map_flags, BPF_F_NO_COMMON_LRU);
  __type(key, struct l4_flow_key);
  __type(value, struct l4_conn);
} conns SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 65536);
  __uint(map_flags, BPF_F_NO_COMMON_LRU);
  __type(key, struct l4_flow_key);
  __type(value, struct l4_nat_rev);
} nat_rev SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct l4_globals);
} globals SEC(".maps");

/* Not pinned: counters and cursors restart at zero with the control plane. */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, L4_MAX_SERVICES);
  __type(key, __u32);
  __type(value, __u32);
} cursors SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, L4_MAX_SERVICES);
  __type(key, __u32);
  __type(value, struct l4_counters);
} vs_stats SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, L4_MAX_REALS);
  __type(key, __u32);
  __type(value, struct l4_counters);
} real_stats SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, L4_STAT_MAX);
  __type(key, __u32);
  __type(value, __u64);
} stats SEC(".maps");

/* ------------------------------------------------------------------------------------------ */

/* A flow's atime is rewritten at most this often: a write per packet would make every core
 * that handles a flow dirty the same cache line. Timeouts are seconds, so this costs nothing. */

struct packet {
  struct l4_flow_key key;
  __u32 l3_off;   /* offset of the IP header (after Ethernet) */
  __u32 l4_off;   /* offset of the TCP/UDP header */
  __u32 pkt_len;  /* bytes from the Ethernet header to the end */
  __u8 tcp_flags; /* TCP: FIN/SYN/RST bits as in the header's flags byte */
  __u8 tos;       /* IPv4 TOS / IPv6 traffic class, copied to the tunnel header */
};

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04

static __always_inline void count(__u32 stat) {
  __u64* v = bpf_map_lookup_elem(&stats, &stat);
  if (v) *v += 1;
}

static __always_inline void count_flow(void* map, __u32 id, __u32 bytes, int is_new, int drop) {
  struct l4_counters* c = bpf_map_lookup_elem(map, &id);
  if (!c) return;
  if (drop) {
    c->drops += 1;
    return;
  }
  c->packets += 1;
  c->bytes += bytes;
  c->new_flows += is_new;
}

/* Ones' complement arithmetic. Sums are kept in 64 bits over native-order loads of the packet's
 * bytes: a ones' complement sum is independent of byte order as long as every word is read the
 * same way, and wide accumulators may be folded at the end (2^16 = 1 mod 0xffff). */
static __always_inline __u16 csum_fold64(__u64 s) {
  s = (s & 0xffffffffull) + (s >> 32);
  s = (s & 0xffffffffull) + (s >> 32);
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return (__u16)s;
}

/* RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), with m/m' given as `n` 32-bit words each. */
static __always_inline __u16 csum_replace(__u16 check, const __u32* from, const __u32* to, int n) {
  __u64 s = (__u16)~check;
#pragma unroll
  for (int i = 0; i < 4; i++) {
    if (i < n) {
      s += (__u32)~from[i];
      s += to[i];
    }
  }
  return (__u16)~csum_fold64(s);
}

static __always_inline __u16 csum_replace16(__u16 check, __u16 from, __u16 to) {
  __u64 s = (__u16)~check;
  s += (__u16)~from;
  s += to;
  return (__u16)~csum_fold64(s);
}

static __always_inline void ipv4_csum(struct iphdr* iph) {
  __u16* w = (__u16*)iph;
  __u64 s = 0;
  iph->check = 0;
#pragma unroll
  for (int i = 0; i < (int)sizeof(*iph) / 2; i++) s += w[i];
  iph->check = (__u16)~csum_fold64(s);
}

/* 0: a TCP/UDP packet, parsed into *p; 1: not IP or another protocol; 2: IP the fast path does
 * not parse (options, fragments); -1: truncated. Shared by the XDP and tc programs. */
static __always_inline int parse(void* data, void* data_end, struct packet* p) {
  struct ethhdr* eth = data;
  if ((void*)(eth + 1) > data_end) return -1;
  p->l3_off = sizeof(*eth);
  p->pkt_len = (__u32)(data_end - data);
  void* l4;
  if (eth->h_proto == bpf_htons(ETH_P_IP)) {
    struct iphdr* iph = (void*)(eth + 1);
    if ((void*)(iph + 1) > data_end) return -1;
    /* Options would move the L4 header; fragments have no ports (or not ours). Both are rare
     * enough on a VIP that the kernel may have them. */
    if (iph->ihl != 5) return 2;
    if (iph->frag_off & bpf_htons(0x3fff)) return 2;
    p->key.family = L4_FAMILY_V4;
    p->key.proto = iph->protocol;
    p->key.src[0] = iph->saddr;
    p->key.dst[0] = iph->daddr;
    p->tos = iph->tos;
    l4 = iph + 1;
  } else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
    struct ipv6hdr* ip6 = (void*)(eth + 1);
    if ((void*)(ip6 + 1) > data_end) return -1;
    /* Extension headers are not walked: TCP/UDP straight after the fixed header only. */
    p->key.family = L4_FAMILY_V6;
    p->key.proto = ip6->nexthdr;
    __builtin_memcpy(p->key.src, &ip6->saddr, 16);
    __builtin_memcpy(p->key.dst, &ip6->daddr, 16);
    p->tos = (ip6->priority << 4) | (ip6->flow_lbl[0] >> 4);
    l4 = ip6 + 1;
  } else {
    return 1;
  }
  p->l4_off = (__u32)(l4 - data);
  if (p->key.proto == IPPROTO_TCP) {
    struct tcphdr* th = l4;
    if ((void*)(th + 1) > data_end) return -1;
    p->key.sport = th->source;
    p->key.dport = th->dest;
    p->tcp_flags = ((__u8*)th)[13];
  } else if (p->key.proto == IPPROTO_UDP) {
    struct udphdr* uh = l4;
    if ((void*)(uh + 1) > data_end) return -1;
    p->key.sport = uh->source;
    p->key.dport = uh->dest;
  } else {
    return 1;
  }
  return 0;
}

/* Where the L4 checksum field is, or NULL (UDP over IPv4 without checksum keeps 0). */
static __always_inline __u16* l4_check(struct xdp_md* ctx, struct packet* p, int* is_udp) {
  void* data = (void*)(long)ctx->data;
  void* data_end = (void*)(long)ctx->data_end;
  __u32 off = p->l4_off;
  if (off > 14 + 40) return 0; /* keeps the verifier's range small; parse() guarantees it */
  *is_udp = p->key.proto == IPPROTO_UDP;
  if (*is_udp) {
    struct udphdr* uh = data + off;
    if ((void*)(uh + 1) > data_end) return 0;
    return &uh->check;
  }
  struct tcphdr* th = data + off;
  if ((void*)(th + 1) > data_end) return 0;
  return &th->check;
}

/* Rewrites one endpoint (destination when `dst`, else source) of the packet to addr:port,
 * fixing the IPv4 header checksum and the TCP/UDP checksum (pseudo-header and port). */
static __always_inline int rewrite_endpoint(struct xdp_md* ctx, struct packet* p, int dst,
                                            const __u32 addr[4], __u16 port) {
  void* data = (void*)(long)ctx->data;
  void* data_end = (void*)(long)ctx->data_end;
  int is_udp = 0;
  __u16* check = l4_check(ctx, p, &is_udp);
  if (!check) return -1;
  data = (void*)(long)ctx->data;
  data_end = (void*)(long)ctx->data_end;
  __u16 old_port;
  __u32 old_addr[4] = {};
  int words;
  if (p->key.family == L4_FAMILY_V4) {
    struct iphdr* iph = data + sizeof(struct ethhdr);
    if ((void*)(iph + 1) > data_end) return -1;
    __u32* field = dst ? &iph->daddr : &iph->saddr;
    old_addr[0] = *field;
    *field = addr[0];
    iph->check = csum_replace(iph->check, old_addr, addr, 1);
    words = 1;
  } else {
    struct ipv6hdr* ip6 = data + sizeof(struct ethhdr);
    if ((void*)(ip6 + 1) > data_end) return -1;
    __u32* field = dst ? ip6->daddr.in6_u.u6_addr32 : ip6->saddr.in6_u.u6_addr32;
#pragma unroll
    for (int i = 0; i < 4; i++) {
      old_addr[i] = field[i];
      field[i] = addr[i];
    }
    words = 4;
  }
  /* Re-derive the L4 header pointer: the verifier forgets packet ranges across the stores. */
  check = l4_check(ctx, p, &is_udp);
  if (!check) return -1;
  data = (void*)(long)ctx->data;
  data_end = (void*)(long)ctx->data_end;
  __u16* port_field = (__u16*)(data + p->l4_off) + (dst ? 1 : 0);
  if ((void*)(port_field + 1) > data_end) return -1;
  old_port = *port_field;
  *port_field = port;
  /* UDP over IPv4 may carry no checksum (0): leave it so. */
  if (is_udp && p->key.family == L4_FAMILY_V4 && *check == 0) return 0;
  __u16 c = csum_replace(*check, old_addr, addr, words);
  c = csum_replace16(c, old_port, port);
  if (is_udp && c == 0) c = 0xffff; /* 0 means "no checksum" in UDP; -0 is the same sum */
  *check = c;
  return 0;
}

/* Pushes an outer IPv4/IPv6 header addressed to the real server. */
static __always_inline int encapsulate(struct xdp_md* ctx, struct packet* p,
                                       const struct l4_real* real) {
  int outer_v4 = real->family == L4_FAMILY_V4;
  int room = outer_v4 ? (int)sizeof(struct iphdr) : (int)sizeof(struct ipv6hdr);
  __u8 inner_proto = p->key.family == L4_FAMILY_V4 ? IPPROTO_IPIP : IPPROTO_IPV6;
  __u32 inner_len = p->pkt_len - sizeof(struct ethhdr);
  if (bpf_xdp_adjust_head(ctx, -room)) return -1;
  void* data = (void*)(long)ctx->data;
  void* data_end = (void*)(long)ctx->data_end;
  struct ethhdr* eth = data;
  struct ethhdr* old_eth = data + room;
  if ((void*)(old_eth + 1) > data_end) return -1;
  /* MACs are set by the send step; only the EtherType must follow the outer header. */
  __builtin_memcpy(eth->h_source, old_eth->h_source, ETH_ALEN);
  __builtin_memcpy(eth->h_dest, old_eth->h_dest, ETH_ALEN);
  if (outer_v4) {
    struct iphdr* iph = (void*)(eth + 1);
    if ((void*)(iph + 1) > data_end) return -1;
    eth->h_proto = bpf_htons(ETH_P_IP);
    iph->version = 4;
    iph->ihl = 5;
    iph->tos = p->tos;
    iph->tot_len = bpf_htons((__u16)(inner_len + sizeof(*iph)));
    iph->id = 0;
    iph->frag_off = 0;
    iph->ttl = 64;
    iph->protocol = inner_proto;
    iph->saddr = real->tun_src[0];
    iph->daddr = real->addr[0];
    ipv4_csum(iph);
  } else {
    struct ipv6hdr* ip6 = (void*)(eth + 1);
    if ((void*)(ip6 + 1) > data_end) return -1;
    eth->h_proto = bpf_htons(ETH_P_IPV6);
    ip6->version = 6;
    ip6->priority = p->tos >> 4;
    ip6->flow_lbl[0] = (p->tos & 0xf) << 4;
    ip6->flow_lbl[1] = 0;
    ip6->flow_lbl[2] = 0;
    ip6->payload_len = bpf_htons((__u16)inner_len);
    ip6->nexthdr = inner_proto;
    ip6->hop_limit = 64;
    __builtin_memcpy(ip6->saddr.in6_u.u6_addr32, real->tun_src, 16);
    __builtin_memcpy(ip6->daddr.in6_u.u6_addr32, real->addr, 16);
  }
  return 0;
}

/* The next hop towards `dst` (see struct l4_nexthop), refreshed from the FIB when older than a
 * second. NULL when the kernel has no usable answer (no route, no neighbour entry yet): the
 * packet is then left to tc, which can resolve neighbours. */
static __always_inline struct l4_nexthop* nexthop(struct xdp_md* ctx, struct l4_nexthop* nh,
                                                  __u8 family, const __u32 src[4],
                                                  const __u32 dst[4], __u64 now, __u64 refresh) {
  if (nh->time && now - nh->time < refresh) return nh;
  struct bpf_fib_lookup fib = {};
  fib.ifindex = ctx->ingress_ifindex;
  if (family == L4_FAMILY_V4) {
    fib.family = AF_INET;
    fib.ipv4_src = src[0];
    fib.ipv4_dst = dst[0];
  } else {
    fib.family = AF_INET6;
    __builtin_memcpy(fib.ipv6_src, src, 16);
    __builtin_memcpy(fib.ipv6_dst, dst, 16);
  }
  if (bpf_fib_lookup(ctx, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS) return 0;
  __u32 mtu = 0;
  if (bpf_check_mtu(ctx, fib.ifindex, &mtu, 0, 0) < 0) return 0;
  nh->ifindex = fib.ifindex;
  nh->mtu = (__u16)mtu;
  __builtin_memcpy(nh->dmac, fib.dmac, ETH_ALEN);
  __builtin_memcpy(nh->smac, fib.smac, ETH_ALEN);
  nh->time = now;
  return nh;
}

/* Sends the finished frame to the next hop. */
static __always_inline int xmit(struct xdp_md* ctx, const struct l4_nexthop* nh) {
  void* data = (void*)(long)ctx->data;
  void* data_end = (void*)(long)ctx->data_end;
  struct ethhdr* eth = data;
  if ((void*)(eth + 1) > data_end) return XDP_DROP;
  __builtin_memcpy(eth->h_dest, nh->dmac, ETH_ALEN);
  __builtin_memcpy(eth->h_source, nh->smac, ETH_ALEN);
  if (nh->ifindex == ctx->ingress_ifindex) return XDP_TX;
  return bpf_redirect(nh->ifindex, 0);
}

/* Leaves the packet, unmodified, to the tc program (l4_director_tc below) with what XDP decided
 * in the metadata area. */
static __always_inline int defer_to_tc(struct xdp_md* ctx, __u16 kind, __u32 real_id) {
  if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct l4_meta))) {
    count(L4_STAT_ENCAP_FAIL);
    return XDP_DROP;
  }
  void* data = (void*)(long)ctx->data;
  struct l4_meta* meta = (void*)(long)ctx->data_meta;
  if ((void*)(meta + 1) > data) return XDP_DROP;
  meta->magic = L4_META_MAGIC;
  meta->kind = kind;
  meta->real_id = real_id;
  count(L4_STAT_DEFER_TC);
  return XDP_PASS;
}

static __always_inline __u64 flow_timeout(const struct l4_globals* g, __u8 proto, __u8 state) {
  if (proto == IPPROTO_UDP) return g->udp_timeout;
  return state == L4_CONN_CLOSING ? g->tcp_fin_timeout : g->tcp_timeout;
}

/* A new flow's real server, or NULL when the service has none available. */
static __always_inline struct l4_real* schedule(const struct l4_service* vs, struct packet* p,
                                                __u32* real_id) {
  __u32 slots = vs->slots;
  if (slots == 0 || slots > L4_RING_SIZE) return 0;
  __u32 slot;
  if (vs->pick == L4_PICK_CURSOR) {
    __u32 id = vs->id;
    __u32* cursor = bpf_map_lookup_elem(&cursors, &id);
    if (!cursor) return 0;
    slot = *cursor;
    if (slot >= slots) slot = 0;
    *cursor = slot + 1;
  } else if (vs->pick == L4_PICK_HASH_DST) {
    slot = l4_hash_addr(p->key.dst, 0) % slots;
  } else {
    __u16 port = vs->pick == L4_PICK_HASH_SRC_PORT ? p->key.sport : 0;
    slot = l4_hash_addr(p->key.src, port) % slots;
  }
  __u32 index = vs->row * L4_RING_SIZE + slot;
  __u32* id = bpf_map_lookup_elem(&rows, &index);
  if (!id) return 0;
  *real_id = *id;
  struct l4_real* real = bpf_map_lookup_elem(&reals, real_id);
  if (!real || !(real->flags & L4_REAL_F_AVAILABLE)) return 0;
  return real;
}

/* The real server of an established flow, or NULL when the flow is unknown, expired, or its real
 * left the configuration (or is down and the service reschedules). Needs no service lookup: the
 * flow key already contains VIP:port:proto, and everything to judge the flow is in its real's
 * entry. This is the packet-rate path, so it is kept to one hash and two array lookups. */
static __always_inline struct l4_real* established(struct packet* p, const struct l4_globals* g,
                                                   __u64 now, __u32* real_id) {
  struct l4_conn* conn = bpf_map_lookup_elem(&conns, &p->key);
  if (!conn) return 0;
  *real_id = conn->real_id;
  struct l4_real* real = bpf_map_lookup_elem(&reals, real_id);
  if (now - conn->atime > flow_timeout(g, p->key.proto, conn->state)) {
    count(L4_STAT_CONN_EXPIRED);
    return 0;
  }
  if (!real || real->gen != conn->real_gen || !(real->flags & L4_REAL_F_IN_USE) ||
      (!(real->flags & L4_REAL_F_AVAILABLE) && (real->flags & L4_REAL_F_RESCHEDULE_DOWN))) {
    count(L4_STAT_RESCHEDULED);
    return 0;
  }
  count(L4_STAT_CONN_HIT);
  if ((p->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST)) && conn->state != L4_CONN_CLOSING) {
    conn->state = L4_CONN_CLOSING;
    conn->atime = now;
  } else if (now - conn->atime > g->hz) {
    conn->atime = now;
  }
  return real;
}

/* Sends a VIP packet to `real` (scheduled now when is_new). */
static __always_inline int forward(struct xdp_md* ctx, struct packet* p,
                                   const struct l4_globals* g, __u64 now, struct l4_real* real,
                                   __u32 real_id, int is_new) {
  __u64 hz = g->hz;
  count_flow(&vs_stats, real->service_id, p->pkt_len, is_new, 0);
  count_flow(&real_stats, real_id, p->pkt_len, is_new, 0);

  /* A frame larger than the next hop's MTU (once encapsulated) is, in generic mode, a GRO/GSO
   * aggregate: only tc can rewrite it correctly (see struct l4_meta). */
  __u32 l3_len = p->pkt_len - sizeof(struct ethhdr);
  struct l4_nexthop* nh;
  if (real->mode == L4_MODE_NAT) {
    if (real->family != p->key.family) return XDP_DROP; /* the loader forbids it */
    if (is_new) {
      struct l4_flow_key reply = {
          .sport = real->port,
          .dport = p->key.sport,
          .proto = p->key.proto,
          .family = p->key.family,
      };
      __builtin_memcpy(reply.src, real->addr, 16);
      __builtin_memcpy(reply.dst, p->key.src, 16);
      struct l4_nat_rev rev = {.vport = p->key.dport, .family = p->key.family};
      __builtin_memcpy(rev.vip, p->key.dst, 16);
      bpf_map_update_elem(&nat_rev, &reply, &rev, BPF_ANY);
    }
    nh = nexthop(ctx, &real->nexthop, p->key.family, p->key.src, real->addr, now, hz);
    if (!nh || l3_len > nh->mtu) return defer_to_tc(ctx, L4_META_FORWARD, real_id);
    if (rewrite_endpoint(ctx, p, 1, real->addr, real->port)) return XDP_DROP;
    return xmit(ctx, nh);
  }
  if (real->mode == L4_MODE_TUN) {
    __u32 room = real->family == L4_FAMILY_V4 ? sizeof(struct iphdr) : sizeof(struct ipv6hdr);
    nh = nexthop(ctx, &real->nexthop, real->family, real->tun_src, real->addr, now, hz);
    if (!nh || l3_len + room > nh->mtu) return defer_to_tc(ctx, L4_META_FORWARD, real_id);
    if (encapsulate(ctx, p, real)) {
      count(L4_STAT_ENCAP_FAIL);
      return XDP_DROP;
    }
    return xmit(ctx, nh);
  }
  /* DR: the frame goes to the server's MAC, otherwise unchanged; routing towards the server's
   * own address finds the interface and the neighbour entry. */
  if (real->family != p->key.family) return XDP_DROP;
  nh = nexthop(ctx, &real->nexthop, p->key.family, p->key.src, real->addr, now, hz);
  if (!nh || l3_len > nh->mtu) return defer_to_tc(ctx, L4_META_FORWARD, real_id);
  return xmit(ctx, nh);
}

static __always_inline int reverse_nat(struct xdp_md* ctx, struct packet* p,
                                       const struct l4_globals* g, __u64 now) {
  struct l4_nat_rev* rev = bpf_map_lookup_elem(&nat_rev, &p->key);
  if (!rev) {
    count(L4_STAT_PASS);
    return XDP_PASS;
  }
  __u32 vip[4];
  __builtin_memcpy(vip, rev->vip, 16);
  __u16 vport = rev->vport;
  count(L4_STAT_REVERSE_NAT);
  struct l4_nexthop* nh = nexthop(ctx, &rev->nexthop, p->key.family, vip, p->key.dst, now, g->hz);
  if (!nh || p->pkt_len - sizeof(struct ethhdr) > nh->mtu)
    return defer_to_tc(ctx, L4_META_REVERSE, 0);
  if (rewrite_endpoint(ctx, p, 0, vip, vport)) return XDP_DROP;
  return xmit(ctx, nh);
}

/* The data path's clock for the control plane: run through BPF_PROG_TEST_RUN on a 16-byte frame,
 * it returns bpf_jiffies64() and bpf_ktime_get_ns() in it. Two readings some time apart give the
 * kernel's HZ, which userspace cannot otherwise learn portably. Never attached. */
SEC("xdp")
int l4_clock(struct xdp_md* ctx) {
  void* data = (void*)(long)ctx->data;
  __u64* out = data;
  if ((void*)(out + 2) > (void*)(long)ctx->data_end) return XDP_ABORTED;
  out[0] = bpf_jiffies64();
  out[1] = bpf_ktime_get_ns();
  return XDP_PASS;
}

SEC("xdp")
int l4_director(struct xdp_md* ctx) {
  struct packet p = {};
  int rc = parse((void*)(long)ctx->data, (void*)(long)ctx->data_end, &p);
  if (rc < 0) return XDP_PASS; /* truncated: not ours to judge */
  if (rc > 0) {
    count(rc == 2 ? L4_STAT_UNSUPPORTED : L4_STAT_PASS);
    return XDP_PASS;
  }
  __u32 zero = 0;
  const struct l4_globals* g = bpf_map_lookup_elem(&globals, &zero);
  if (!g) return XDP_PASS;
  __u64 now = bpf_jiffies64();
  __u32 real_id = 0;
  struct l4_real* real = established(&p, g, now, &real_id);
  if (real) return forward(ctx, &p, g, now, real, real_id, 0);

  struct l4_vs_key vk = {.port = p.key.dport, .proto = p.key.proto, .family = p.key.family};
  __builtin_memcpy(vk.addr, p.key.dst, 16);
  struct l4_service* vs = bpf_map_lookup_elem(&services, &vk);
  if (vs && (vs->flags & L4_VS_F_HANDOFF)) {
    /* The L7 proxy on this host takes new connections and decides, per request, which it
     * hands off (writing their conns entries); everything else is its to answer. */
    count(L4_STAT_PASS);
    return XDP_PASS;
  }
  if (vs) {
    /* A new flow (or one whose entry expired or whose real is gone): schedule it. */
    real = schedule(vs, &p, &real_id);
    if (!real) {
      count(L4_STAT_NO_REAL);
      count_flow(&vs_stats, vs->id, 0, 0, 1);
      return XDP_DROP;
    }
    struct l4_conn fresh = {
        .atime = now,
        .real_id = real_id,
        .real_gen = real->gen,
        .state = (p.tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST)) ? L4_CONN_CLOSING : L4_CONN_ACTIVE,
    };
    bpf_map_update_elem(&conns, &p.key, &fresh, BPF_ANY);
    count(L4_STAT_CONN_NEW);
    return forward(ctx, &p, g, now, real, real_id, 1);
  }
  return reverse_nat(ctx, &p, g, now);
}

/* ------------------------------------------------------------------------------------------ */
/* tc ingress: the packets XDP scheduled but could not send (see struct l4_meta).
 *
 * Why tc can and XDP cannot: here the packet is an skb. bpf_skb_adjust_room with the ENCAP flags
 * records the tunnel in the skb's GSO state, so a GRO/GSO aggregate is segmented correctly on
 * the way out; bpf_l4_csum_replace with BPF_F_PSEUDO_HDR updates a CHECKSUM_PARTIAL seed
 * correctly; bpf_redirect_neigh resolves a missing next-hop MAC. Packets without the metadata
 * (everything not deferred by XDP) leave at the first check. */

static __always_inline int tc_rewrite(struct __sk_buff* skb, struct packet* p, int dst,
                                      const __u32 addr[4], __u16 port) {
  int udp = p->key.proto == IPPROTO_UDP;
  __u32 check_off = p->l4_off + (udp ? offsetof(struct udphdr, check)
                                     : offsetof(struct tcphdr, check));
  __u64 mangled = udp ? BPF_F_MARK_MANGLED_0 : 0;
  if (p->key.family == L4_FAMILY_V4) {
    __u32 off = p->l3_off + (dst ? offsetof(struct iphdr, daddr) : offsetof(struct iphdr, saddr));
    __u32 from = dst ? p->key.dst[0] : p->key.src[0];
    __u32 to = addr[0];
    if (bpf_l4_csum_replace(skb, check_off, from, to, BPF_F_PSEUDO_HDR | mangled | 4)) return -1;
    if (bpf_l3_csum_replace(skb, p->l3_off + offsetof(struct iphdr, check), from, to, 4))
      return -1;
    if (bpf_skb_store_bytes(skb, off, &to, 4, 0)) return -1;
  } else {
    __u32 off =
        p->l3_off + (dst ? offsetof(struct ipv6hdr, daddr) : offsetof(struct ipv6hdr, saddr));
    __u32 from[4], to[4];
    __builtin_memcpy(from, dst ? p->key.dst : p->key.src, 16);
    __builtin_memcpy(to, addr, 16);
    __s64 diff = bpf_csum_diff(from, 16, to, 16, 0);
    if (bpf_l4_csum_replace(skb, check_off, 0, diff, BPF_F_PSEUDO_HDR | mangled)) return -1;
    if (bpf_skb_store_bytes(skb, off, to, 16, 0)) return -1;
  }
  __u16 from_port = dst ? p->key.dport : p->key.sport;
  if (bpf_l4_csum_replace(skb, check_off, from_port, port, mangled | 2)) return -1;
  if (bpf_skb_store_bytes(skb, p->l4_off + (dst ? 2 : 0), &port, 2, 0)) return -1;
  return 0;
}

static __always_inline int tc_encap(struct __sk_buff* skb, struct packet* p,
                                    const struct l4_real* real) {
  int outer_v4 = real->family == L4_FAMILY_V4;
  __u8 inner_proto = p->key.family == L4_FAMILY_V4 ? IPPROTO_IPIP : IPPROTO_IPV6;
  __u32 inner_len = skb->len - sizeof(struct ethhdr);
  __u16 eth_proto = outer_v4 ? bpf_htons(ETH_P_IP) : bpf_htons(ETH_P_IPV6);
  if (outer_v4) {
    struct iphdr h = {};
    h.version = 4;
    h.ihl = 5;
    h.tos = p->tos;
    h.tot_len = bpf_htons((__u16)(inner_len + sizeof(h)));
    h.ttl = 64;
    h.protocol = inner_proto;
    h.saddr = real->tun_src[0];
    h.daddr = real->addr[0];
    ipv4_csum(&h);
    if (bpf_skb_adjust_room(skb, sizeof(h), BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4))
      return -1;
    if (bpf_skb_store_bytes(skb, sizeof(struct ethhdr), &h, sizeof(h), 0)) return -1;
  } else {
    struct ipv6hdr h = {};
    h.version = 6;
    h.priority = p->tos >> 4;
    h.flow_lbl[0] = (p->tos & 0xf) << 4;
    h.payload_len = bpf_htons((__u16)inner_len);
    h.nexthdr = inner_proto;
    h.hop_limit = 64;
    __builtin_memcpy(h.saddr.in6_u.u6_addr32, real->tun_src, 16);
    __builtin_memcpy(h.daddr.in6_u.u6_addr32, real->addr, 16);
    if (bpf_skb_adjust_room(skb, sizeof(h), BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_ENCAP_L3_IPV6))
      return -1;
    if (bpf_skb_store_bytes(skb, sizeof(struct ethhdr), &h, sizeof(h), 0)) return -1;
  }
  return bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_proto), &eth_proto, 2, 0) ? -1 : 0;
}

/* No MTU check (tot_len 0): an aggregate is segmented on egress. Without a neighbour entry,
 * bpf_redirect_neigh resolves it; anything else (no route, ...) is the kernel's to handle. */
static __always_inline int tc_send(struct __sk_buff* skb, __u8 family, const __u32 src[4],
                                   const __u32 dst[4]) {
  struct bpf_fib_lookup fib = {};
  fib.ifindex = skb->ingress_ifindex;
  if (family == L4_FAMILY_V4) {
    fib.family = AF_INET;
    fib.ipv4_src = src[0];
    fib.ipv4_dst = dst[0];
  } else {
    fib.family = AF_INET6;
    __builtin_memcpy(fib.ipv6_src, src, 16);
    __builtin_memcpy(fib.ipv6_dst, dst, 16);
  }
  long rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
  if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
    if (bpf_skb_store_bytes(skb, 0, fib.dmac, ETH_ALEN, 0) ||
        bpf_skb_store_bytes(skb, ETH_ALEN, fib.smac, ETH_ALEN, 0))
      return TC_ACT_SHOT;
    count(L4_STAT_TC_FORWARDED);
    return bpf_redirect(fib.ifindex, 0);
  }
  if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
    /* The lookup left the next hop (gateway or the destination itself) in ipv4/6_dst. */
    struct bpf_redir_neigh nh = {};
    if (family == L4_FAMILY_V4) {
      nh.nh_family = AF_INET;
      nh.ipv4_nh = fib.ipv4_dst;
    } else {
      nh.nh_family = AF_INET6;
      __builtin_memcpy(nh.ipv6_nh, fib.ipv6_dst, 16);
    }
    count(L4_STAT_TC_FORWARDED);
    return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
  }
  count(L4_STAT_TC_KERNEL);
  return TC_ACT_OK;
}

SEC("tc")
int l4_director_tc(struct __sk_buff* skb) {
  void* data = (void*)(long)skb->data;
  struct l4_meta* meta = (void*)(long)skb->data_meta;
  if ((void*)(meta + 1) > data || meta->magic != L4_META_MAGIC) return TC_ACT_OK;
  __u16 kind = meta->kind;
  __u32 real_id = meta->real_id;
  struct packet p = {};
  if (parse(data, (void*)(long)skb->data_end, &p) != 0) return TC_ACT_OK;

  if (kind == L4_META_REVERSE) {
    struct l4_nat_rev* rev = bpf_map_lookup_elem(&nat_rev, &p.key);
    if (!rev) return TC_ACT_OK;
    __u32 vip[4];
    __builtin_memcpy(vip, rev->vip, 16);
    __u16 vport = rev->vport;
    if (tc_rewrite(skb, &p, 0, vip, vport)) return TC_ACT_SHOT;
    return tc_send(skb, p.key.family, vip, p.key.dst);
  }
  struct l4_real* real = bpf_map_lookup_elem(&reals, &real_id);
  if (!real) return TC_ACT_SHOT;
  __u32 addr[4], tun_src[4];
  __builtin_memcpy(addr, real->addr, 16);
  __builtin_memcpy(tun_src, real->tun_src, 16);
  __u8 family = real->family;
  if (real->mode == L4_MODE_NAT) {
    if (tc_rewrite(skb, &p, 1, addr, real->port)) return TC_ACT_SHOT;
    return tc_send(skb, family, p.key.src, addr);
  }
  if (real->mode == L4_MODE_TUN) {
    if (tc_encap(skb, &p, real)) {
      count(L4_STAT_ENCAP_FAIL);
      return TC_ACT_SHOT;
    }
    return tc_send(skb, family, tun_src, addr);
  }
  return tc_send(skb, family, p.key.src, addr); /* DR */
}
