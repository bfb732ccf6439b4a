//! TC ingress on the bastion's client-facing interfaces: a routed TCP flow bound for a protected
//! target is handed to the gateway's transparent listener (`bpf_sk_assign`, TPROXY-style). The
//! accepted socket keeps the flow's original addresses: the client's as its peer, the
//! database's as its local address.
//!
//! Every packet of such a flow is marked, so a policy route (`tollgate up` installs it) delivers
//! it locally instead of forwarding it. A SYN additionally needs the gateway's listener; when
//! none is there (the gateway is down) the SYN is dropped: fail-closed, never forwarded. Later
//! packets find their established socket through the normal lookup; without one, local
//! delivery answers them with a reset, still never forwarding.

use core::ptr::read_volatile;

use aya_ebpf::{
    EbpfContext as _,
    bindings::{bpf_sock, bpf_sock_tuple},
    helpers::generated::{bpf_sk_assign, bpf_sk_release, bpf_skc_lookup_tcp},
    macros::classifier,
    programs::TcContext,
};
use gateway_common::{Counter, GatewayConfig, ipv6_words};

use crate::{
    maps::{GATEWAY, count},
    packet::{
        IPPROTO_TCP, Ip, Packet, TC_NEXT, TC_OK, TC_SHOT, TCP_ACK, TCP_SYN, Tcp, protected_target,
    },
};

/// `BPF_F_CURRENT_NETNS` (-1 as the helpers' u64): look up in the packet's own namespace.
const CURRENT_NETNS: u64 = u64::MAX;
/// `BPF_TCP_LISTEN`: the state of a listening socket.
const TCP_LISTEN: u32 = 10;

#[classifier]
pub fn tollgate_tc_steer(ctx: TcContext) -> i32 {
    let packet = Packet::new(ctx.data(), ctx.data_end());
    let Some(ip) = packet.ip() else {
        return TC_NEXT;
    };
    // XDP already dropped what is bound for a protected host and not plain TCP.
    if ip.protocol != IPPROTO_TCP || ip.fragment || ip.options {
        return TC_NEXT;
    }
    let Some(tcp) = packet.tcp(&ip) else {
        return TC_NEXT;
    };
    if protected_target(&ip, tcp.dport).is_none() {
        return TC_NEXT;
    }
    let Some(gateway) = GATEWAY.get(0).copied() else {
        count(Counter::RoutedNoGateway);
        return TC_SHOT;
    };
    if tcp.flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
        if !assign_listener(&ctx, &ip, &tcp, &gateway) {
            count(Counter::RoutedNoGateway);
            return TC_SHOT;
        }
        count(Counter::RoutedSynSteered);
    }
    ctx.set_mark(gateway.mark);
    count(Counter::RoutedPacketsSteered);
    TC_OK
}

/// Looks up the gateway's listener for this flow's family and assigns the SYN to it.
#[inline(always)]
fn assign_listener(ctx: &TcContext, ip: &Ip, tcp: &Tcp, gateway: &GatewayConfig) -> bool {
    if gateway.routed_port == [0, 0] {
        return false;
    }
    // SAFETY: all-zero is a valid bpf_sock_tuple (plain integers in a union).
    let mut tuple: bpf_sock_tuple = unsafe { core::mem::zeroed() };
    let size = if ip.version == 4 {
        tuple.__bindgen_anon_1.ipv4.saddr = u32::from_ne_bytes(ip.src_v4());
        tuple.__bindgen_anon_1.ipv4.daddr = u32::from_ne_bytes(ip.dst_v4());
        tuple.__bindgen_anon_1.ipv4.sport = tcp.sport.to_be();
        tuple.__bindgen_anon_1.ipv4.dport = u16::from_ne_bytes(gateway.routed_port);
        12
    } else {
        tuple.__bindgen_anon_1.ipv6.saddr = ipv6_words(ip.src);
        tuple.__bindgen_anon_1.ipv6.daddr = ipv6_words(ip.dst);
        tuple.__bindgen_anon_1.ipv6.sport = tcp.sport.to_be();
        tuple.__bindgen_anon_1.ipv6.dport = u16::from_ne_bytes(gateway.routed_port);
        36
    };
    // SAFETY: the tuple is initialised for `size` bytes; the context is this program's skb.
    let sk: *mut bpf_sock =
        unsafe { bpf_skc_lookup_tcp(ctx.as_ptr(), &raw mut tuple, size, CURRENT_NETNS, 0) };
    if sk.is_null() {
        return false;
    }
    // SAFETY: `sk` is a live socket reference from the lookup; `state` is readable on any.
    let state = unsafe { read_volatile(&raw const (*sk).state) };
    let assigned = state == TCP_LISTEN
        // SAFETY: assigning a referenced socket from a TC ingress program, flags 0.
        && unsafe { bpf_sk_assign(ctx.as_ptr(), sk.cast(), 0) } == 0;
    // SAFETY: releases the reference the lookup took, on every path.
    unsafe { bpf_sk_release(sk.cast()) };
    assigned
}
