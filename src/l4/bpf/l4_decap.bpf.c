// SPDX-License-Identifier: GPL-2.0
/* Real-server side of VS/TUN: tc ingress program that strips the director's outer IP header.
 *
 * Why this exists: the kernel this project targets has no ipip/sit modules, so a real server
 * cannot terminate the tunnel with an ipip device. tc (not XDP) because the packet must continue
 * into the stack as a proper skb with its protocol changed (IPv6 inside IPv4 and the reverse),
 * which bpf_skb_adjust_room's DECAP flags do; the inner packet is then delivered locally to the
 * VIP held on lo/dummy, and the reply goes straight to the client (not through the director).
 *
 * Only tunnel packets whose INNER destination is a configured VIP (decap_vips) are touched, so the
 * program is safe on an interface that carries other IPIP traffic. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "l4/abi/l4_abi.h"

/* Added to the uapi in Linux 6.3 (the build headers may be older than the running kernel). */
#ifndef BPF_F_ADJ_ROOM_DECAP_L3_IPV4
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7)
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV6 (1ULL << 8)
#endif

char LICENSE[] SEC("license") = "GPL";

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, L4_MAX_DECAP_VIPS);
  __type(key, struct l4_decap_key);
  __type(value, __u32);
} decap_vips SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} decap_count SEC(".maps");

SEC("tc")
int l4_decap(struct __sk_buff* skb) {
  void* data = (void*)(long)skb->data;
  void* data_end = (void*)(long)skb->data_end;
  struct ethhdr* eth = data;
  if ((void*)(eth + 1) > data_end) return TC_ACT_OK;
  __u8 inner_proto;
  __u32 outer_len;
  if (eth->h_proto == bpf_htons(ETH_P_IP)) {
    struct iphdr* iph = (void*)(eth + 1);
    if ((void*)(iph + 1) > data_end) return TC_ACT_OK;
    if (iph->ihl != 5 || (iph->frag_off & bpf_htons(0x3fff))) return TC_ACT_OK;
    inner_proto = iph->protocol;
    outer_len = sizeof(*iph);
  } else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
    struct ipv6hdr* ip6 = (void*)(eth + 1);
    if ((void*)(ip6 + 1) > data_end) return TC_ACT_OK;
    inner_proto = ip6->nexthdr;
    outer_len = sizeof(*ip6);
  } else {
    return TC_ACT_OK;
  }
  struct l4_decap_key key = {};
  __u64 flags;
  __u16 inner_eth_proto;
  void* inner = data + sizeof(*eth) + outer_len;
  if (inner_proto == IPPROTO_IPIP) {
    struct iphdr* in4 = inner;
    if ((void*)(in4 + 1) > data_end) return TC_ACT_OK;
    key.family = L4_FAMILY_V4;
    key.addr[0] = in4->daddr;
    flags = BPF_F_ADJ_ROOM_DECAP_L3_IPV4;
    inner_eth_proto = bpf_htons(ETH_P_IP);
  } else if (inner_proto == IPPROTO_IPV6) {
    struct ipv6hdr* in6 = inner;
    if ((void*)(in6 + 1) > data_end) return TC_ACT_OK;
    key.family = L4_FAMILY_V6;
    __builtin_memcpy(key.addr, &in6->daddr, 16);
    flags = BPF_F_ADJ_ROOM_DECAP_L3_IPV6;
    inner_eth_proto = bpf_htons(ETH_P_IPV6);
  } else {
    return TC_ACT_OK;
  }
  if (!bpf_map_lookup_elem(&decap_vips, &key)) return TC_ACT_OK;
  if (bpf_skb_adjust_room(skb, -(__s32)outer_len, BPF_ADJ_ROOM_MAC, flags)) return TC_ACT_SHOT;
  /* The Ethernet header stayed in front; its EtherType must name the inner protocol. */
  if (bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_proto), &inner_eth_proto,
                          sizeof(inner_eth_proto), 0))
    return TC_ACT_SHOT;
  __u32 zero = 0;
  __u64* n = bpf_map_lookup_elem(&decap_count, &zero);
  if (n) *n += 1;
  return TC_ACT_OK;
}
