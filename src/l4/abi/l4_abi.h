/* The L4 fast path's kernel/user contract: every map key and value shared by the BPF programs in
 * src/l4/bpf/ and the C++ control plane in src/l4/ctl/, and the few pure functions (hashing) both
 * sides must compute identically.
 *
 * This is the ONLY definition of these layouts. Both compilers (clang -target bpf and g++) include
 * this header, and every struct carries a static size check, so a field added on one side cannot
 * silently shift the other (Katran keeps two hand-copied versions and pays for it).
 *
 * Conventions: addresses are 4 x 32-bit words in network byte order (IPv4 uses word 0, the rest
 * are zero, so one key type serves both families); ports are in network byte order; every struct
 * is padded explicitly so there are no compiler-inserted holes (the kernel compares keys bytewise,
 * and holes would make two equal keys differ).
 *
 * Plain C (no C++), usable from BPF where there is no libc. */
#ifndef SWITCHYARD_L4_ABI_H
#define SWITCHYARD_L4_ABI_H

#ifndef __bpf__
#include <linux/types.h>
#endif

#ifdef __cplusplus
#define L4_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define L4_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

/* ------------------------------------------------------------------------------------------ */
/* Sizes. Map sizes are fixed when the maps are created; the control plane refuses configs that
 * exceed them (with a message naming the limit). */

#define L4_MAX_SERVICES 256 /* virtual services (VIP:port:proto) */
#define L4_MAX_REALS 4096   /* (service, real server) bindings, all services together */
/* Entries in one scheduling row. A prime, because Maglev needs a prime table size; 4093 is also
 * IPVS mh's default. Hash schedulers index the row by hash % slots; rr/wrr walk it in order. */
#define L4_RING_SIZE 4093
/* Each service owns two rows: the control plane fills the inactive one, then flips the service's
 * `row` in a single map update, so a packet never sees a half-written row. */
#define L4_ROWS_PER_SERVICE 2
#define L4_MAX_DECAP_VIPS 256 /* real-server side: VIPs the tc decap program accepts */

/* ------------------------------------------------------------------------------------------ */
/* Enumerations. */

#define L4_FAMILY_V4 4
#define L4_FAMILY_V6 6

/* How the data path picks a slot of the service's row for a new flow. The named schedulers
 * (rr, wrr, sh, dh, mh, lc, wlc) are the control plane's business: it turns each into one of
 * these plus the row contents (weights are repeated slots, Maglev is a permutation fill). */
enum l4_pick {
  L4_PICK_CURSOR = 0,        /* per-CPU cursor walking the row: rr, wrr, lc, wlc */
  L4_PICK_HASH_SRC = 1,      /* hash(client address): sh, mh */
  L4_PICK_HASH_SRC_PORT = 2, /* hash(client address, client port): sh/mh with hash source_port */
  L4_PICK_HASH_DST = 3,      /* hash(destination address): dh */
};

/* Forwarding method of a real server (IPVS: masquerading, tunnelling, direct routing). */
enum l4_mode {
  L4_MODE_NAT = 0, /* rewrite destination address/port; replies come back through the director */
  L4_MODE_DR = 1,  /* rewrite destination MAC only; the server holds the VIP itself */
  L4_MODE_TUN = 2, /* IP-in-IP (or 6in4/4in6/6in6) to the server, which decapsulates */
};

/* l4_service.flags */
#define L4_VS_F_RESCHEDULE_DOWN 0x01 /* flows of an unavailable real go to a new one (IPVS
                                      * expire_nodest_conn); otherwise they stay */
#define L4_VS_F_HANDOFF 0x02 /* TCP handoff: new flows go to the local stack (the L7 proxy);
                              * only flows the proxy wrote into conns are forwarded */

/* l4_real.flags */
#define L4_REAL_F_IN_USE 0x01    /* slot holds a configured server */
#define L4_REAL_F_AVAILABLE 0x02 /* healthy and not quiesced: may take new flows */
/* Copy of the service's L4_VS_F_RESCHEDULE_DOWN, so an established flow is judged from its
 * real's entry alone (the data path looks the flow up before, and instead of, the service). */
#define L4_REAL_F_RESCHEDULE_DOWN 0x04

/* l4_conn.state */
#define L4_CONN_ACTIVE 0
#define L4_CONN_CLOSING 1 /* FIN or RST seen from the client: shorter timeout */

/* Global statistics (per-CPU array indexed by these). */
enum l4_stat {
  L4_STAT_PASS = 0,         /* not for a VIP: handed to the kernel */
  L4_STAT_CONN_HIT = 1,     /* packet of a known flow */
  L4_STAT_CONN_NEW = 2,     /* new flow scheduled */
  L4_STAT_NO_REAL = 3,      /* dropped: service has no available real server */
  L4_STAT_DEFER_TC = 4,     /* XDP could not send it (too big for the egress MTU, i.e. a GRO/GSO
                             * aggregate in generic mode, or no neighbour entry): left to tc */
  L4_STAT_TC_KERNEL = 5,    /* tc could not send it either: handed to the kernel's forwarding
                             * (which fragments or answers ICMP "too big") */
  L4_STAT_REVERSE_NAT = 6,  /* NAT reply rewritten back to the VIP */
  L4_STAT_UNSUPPORTED = 7,  /* VIP packet we cannot handle (fragment, IP options): passed */
  L4_STAT_ENCAP_FAIL = 8,   /* dropped: no headroom for the tunnel header */
  L4_STAT_CONN_EXPIRED = 9, /* flow entry older than its timeout: rescheduled */
  L4_STAT_RESCHEDULED = 10, /* flow's real gone or down (with reschedule): rescheduled */
  L4_STAT_TC_FORWARDED = 11, /* deferred packets tc rewrote/encapsulated and sent */
  L4_STAT_MAX = 12,
};

/* XDP -> tc hand-over, in the packet's metadata area (bpf_xdp_adjust_meta): XDP has scheduled
 * the flow and counted the packet, but cannot send it itself, because the packet is an skb-level
 * aggregate (generic XDP sees GRO/GSO super-packets, which need the skb helpers' GSO-aware
 * encapsulation and pseudo-header checksum updates) or the next hop's MAC is unknown (tc can use
 * bpf_redirect_neigh). The tc ingress program acts only on packets carrying this. */
#define L4_META_MAGIC 0x4c34u /* "L4" */
#define L4_META_FORWARD 0     /* client -> real server: real_id says where */
#define L4_META_REVERSE 1     /* NAT reply: tc looks the VIP up in nat_rev */
struct l4_meta {
  __u16 magic;
  __u16 kind;
  __u32 real_id;
};
L4_STATIC_ASSERT(sizeof(struct l4_meta) == 8, "l4_meta layout");

/* ------------------------------------------------------------------------------------------ */
/* Maps of the director program (src/l4/bpf/l4_lb.bpf.c). */

/* services: HASH, l4_vs_key -> l4_service. */
struct l4_vs_key {
  __u32 addr[4]; /* VIP */
  __u16 port;    /* VIP port */
  __u8 proto;    /* IPPROTO_TCP / IPPROTO_UDP */
  __u8 family;   /* L4_FAMILY_V4 / L4_FAMILY_V6 */
};
L4_STATIC_ASSERT(sizeof(struct l4_vs_key) == 20, "l4_vs_key layout");

struct l4_service {
  __u32 id;    /* 0..L4_MAX_SERVICES-1: index of its counters, cursor and rows */
  __u32 row;   /* active row: id * L4_ROWS_PER_SERVICE + (0 or 1) */
  __u32 slots; /* valid entries of the active row; 0 = no real available (new flows dropped) */
  __u8 pick;   /* enum l4_pick */
  __u8 flags;  /* L4_VS_F_* */
  __u16 reserved;
};
L4_STATIC_ASSERT(sizeof(struct l4_service) == 16, "l4_service layout");

/* Where to send packets for one destination: egress interface, MACs and MTU, as bpf_fib_lookup
 * and bpf_check_mtu give them. The data path caches it in the entries below for up to a second
 * (a FIB lookup costs more than all the rest of the established-flow path) and refreshes it
 * after that, so route and neighbour changes take effect within a second. Written by the data
 * path only (the control plane writes zeros, meaning "look up"); `time` is written last. */
struct l4_nexthop {
  __u64 time; /* bpf_jiffies64() of the lookup; 0 = none */
  __u32 ifindex;
  __u16 mtu;
  __u8 dmac[6];
  __u8 smac[6];
  __u8 reserved[6];
};
L4_STATIC_ASSERT(sizeof(struct l4_nexthop) == 32, "l4_nexthop layout");

/* rows: ARRAY of __u32 real ids, L4_MAX_SERVICES * L4_ROWS_PER_SERVICE * L4_RING_SIZE entries;
 * entry (row * L4_RING_SIZE + slot). */

/* reals: ARRAY, real id -> l4_real. One entry per (service, server) binding, so per-server
 * counters are per service, as ipvsadm shows them. */
struct l4_real {
  __u32 addr[4];    /* server address */
  __u32 tun_src[4]; /* TUN: outer source address (the director's address towards the server) */
  __u16 port;       /* NAT: new destination port; DR/TUN: equals the VIP port */
  __u8 family;      /* of addr (TUN may carry an IPv6 flow in IPv4 and vice versa) */
  __u8 mode;        /* enum l4_mode */
  __u8 flags;       /* L4_REAL_F_* */
  __u8 reserved[3];
  /* Bumped whenever this id is given to a different server, so flow entries that still name
   * the id (from before a reload or a restart) are recognised as stale, not misrouted. */
  __u32 gen;
  __u32 service_id;
  struct l4_nexthop nexthop; /* towards addr */
};
L4_STATIC_ASSERT(sizeof(struct l4_real) == 80, "l4_real layout");

/* conns: LRU_HASH, l4_flow_key -> l4_conn. Keyed as the client sends (dst = VIP). */
struct l4_flow_key {
  __u32 src[4];
  __u32 dst[4];
  __u16 sport;
  __u16 dport;
  __u8 proto;
  __u8 family;
  __u16 reserved;
};
L4_STATIC_ASSERT(sizeof(struct l4_flow_key) == 40, "l4_flow_key layout");

struct l4_conn {
  __u64 atime; /* last refresh, bpf_jiffies64() (refreshed at most once a second) */
  __u32 real_id;
  __u32 real_gen; /* l4_real.gen when the flow was scheduled */
  __u8 state;     /* L4_CONN_* */
  __u8 reserved[7];
};
L4_STATIC_ASSERT(sizeof(struct l4_conn) == 24, "l4_conn layout");

/* nat_rev: LRU_HASH, reply flow (src = real server, dst = client) -> the VIP to restore. */
struct l4_nat_rev {
  __u32 vip[4];
  __u16 vport;
  __u8 family;
  __u8 reserved[5];
  struct l4_nexthop nexthop; /* towards the client */
};
L4_STATIC_ASSERT(sizeof(struct l4_nat_rev) == 56, "l4_nat_rev layout");

/* globals: ARRAY with one entry.
 *
 * Time in the data path is jiffies (bpf_jiffies64, which the x86 JIT inlines to a load), not
 * nanoseconds: bpf_ktime_get_*_ns is a helper call that costs as much as a map lookup, once per
 * packet. The control plane measures the kernel's HZ at start and converts the timeouts. */
struct l4_globals {
  __u64 tcp_timeout;     /* jiffies: established TCP flow idle timeout */
  __u64 tcp_fin_timeout; /* jiffies: after FIN/RST from the client */
  __u64 udp_timeout;     /* jiffies */
  __u32 hz;              /* jiffies per second: refresh period of atime and next hops */
  __u32 flags;           /* reserved for feature switches; 0 today */
};
L4_STATIC_ASSERT(sizeof(struct l4_globals) == 32, "l4_globals layout");

/* vs_stats (per service id) and real_stats (per real id): PERCPU_ARRAY of l4_counters. */
struct l4_counters {
  __u64 packets;
  __u64 bytes;
  __u64 new_flows;
  __u64 drops;
};
L4_STATIC_ASSERT(sizeof(struct l4_counters) == 32, "l4_counters layout");

/* stats: PERCPU_ARRAY of __u64, indexed by enum l4_stat. */

/* ------------------------------------------------------------------------------------------ */
/* Map of the real-server decap program (src/l4/bpf/l4_decap.bpf.c). */

/* decap_vips: HASH, l4_decap_key -> __u32 (unused, 1). Only tunnel packets whose inner
 * destination is one of these VIPs are decapsulated; other IPIP traffic is left alone. */
struct l4_decap_key {
  __u32 addr[4];
  __u8 family;
  __u8 reserved[3];
};
L4_STATIC_ASSERT(sizeof(struct l4_decap_key) == 20, "l4_decap_key layout");

/* ------------------------------------------------------------------------------------------ */
/* Hashing, shared so userspace tests can predict the data path's choices.
 *
 * Jenkins' lookup3 final mix over 32-bit words (the kernel's jhash for words), seeded per use. */

static inline __u32 l4_rol32(__u32 word, unsigned int shift) {
  return (word << shift) | (word >> ((-shift) & 31));
}

#define L4_JHASH_INITVAL 0xdeadbeef

static inline __u32 l4_jhash_3words(__u32 a, __u32 b, __u32 c, __u32 initval) {
  a += L4_JHASH_INITVAL + initval;
  b += L4_JHASH_INITVAL + initval;
  c += L4_JHASH_INITVAL + initval;
  c ^= b;
  c -= l4_rol32(b, 14);
  a ^= c;
  a -= l4_rol32(c, 11);
  b ^= a;
  b -= l4_rol32(a, 25);
  c ^= b;
  c -= l4_rol32(b, 16);
  a ^= c;
  a -= l4_rol32(c, 4);
  b ^= a;
  b -= l4_rol32(a, 14);
  c ^= b;
  c -= l4_rol32(b, 24);
  return c;
}

/* Hash of an address (4 words; IPv4 has zeros in words 1-3) and an optional port. */
static inline __u32 l4_hash_addr(const __u32 addr[4], __u16 port) {
  __u32 h = l4_jhash_3words(addr[0], addr[1], addr[2], 0x5157u);
  return l4_jhash_3words(h, addr[3], port, 0x4c34u);
}

#endif /* SWITCHYARD_L4_ABI_H */
