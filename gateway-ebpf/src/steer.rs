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
    bindings::{
        BPF_F_CURRENT_NETNS, BPF_TCP_LISTEN, TC_ACT_OK, TC_ACT_SHOT, TC_ACT_UNSPEC, bpf_sock,
        bpf_sock_tuple,
    },
    helpers::generated::{bpf_sk_assign, bpf_sk_release, bpf_skc_lookup_tcp},
    macros::classifier,
    programs::TcContext,
};
use gateway_common::{Counter, GatewayConfig, ipv6_words};

use crate::{
    maps::{GATEWAY, count},
    packet::{IPPROTO_TCP, Ip, Packet, TCP_ACK, TCP_SYN, Tcp, protected_target},
};

#[classifier]
pub fn tollgate_tc_steer(ctx: TcContext) -> i32 {
    let packet = Packet::new(ctx.data(), ctx.data_end());
    let Some(ip) = packet.ip() else {
        return TC_ACT_UNSPEC;
    };
    // XDP already dropped what is bound for a protected host and not plain TCP.
    if ip.protocol != IPPROTO_TCP || ip.fragment || ip.options {
        return TC_ACT_UNSPEC;
    }
    let Some(tcp) = packet.tcp(&ip) else {
        return TC_ACT_UNSPEC;
    };
    if protected_target(&ip, tcp.dport).is_none() {
        return TC_ACT_UNSPEC;
    }
    let Some(gateway) = GATEWAY.get(0).copied() else {
        count(Counter::RoutedNoGateway);
        return TC_ACT_SHOT as i32;
    };
    if tcp.flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
        if !assign_listener(&ctx, &ip, &tcp, &gateway) {
            count(Counter::RoutedNoGateway);
            return TC_ACT_SHOT as i32;
        }
        count(Counter::RoutedSynSteered);
    }
    ctx.set_mark(gateway.mark);
    count(Counter::RoutedPacketsSteered);
    TC_ACT_OK as i32
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
    let sk: *mut bpf_sock = unsafe {
        bpf_skc_lookup_tcp(
            ctx.as_ptr(),
            &raw mut tuple,
            size,
            BPF_F_CURRENT_NETNS as u64,
            0,
        )
    };
    if sk.is_null() {
        return false;
    }
    // SAFETY: `sk` is a live socket reference from the lookup; `state` is readable on any.
    let state = unsafe { read_volatile(&raw const (*sk).state) };
    let assigned = state == BPF_TCP_LISTEN as u32
        // SAFETY: assigning a referenced socket from a TC ingress program, flags 0.
        && unsafe { bpf_sk_assign(ctx.as_ptr(), sk.cast(), 0) } == 0;
    // SAFETY: releases the reference the lookup took, on every path.
    unsafe { bpf_sk_release(sk.cast()) };
    assigned
}
