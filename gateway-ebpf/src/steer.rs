//! Routed flows into the gateway, in two steps:
//!
//! - `tollgate_tc_steer`, TC ingress on the bastion's client-facing interfaces: every packet of a
//!   TCP flow bound for a protected target is marked, so a policy route (`tollgate up` installs
//!   it) delivers it to the local stack instead of forwarding it.
//! - `tollgate_sk_lookup`, `sk_lookup` on the bastion's network namespace: when the local stack
//!   looks for the listener of such a flow (a SYN), the gateway's transparent listener is
//!   chosen (`bpf_sk_assign` from the `LISTENERS` sockmap). The accepted socket keeps the flow's
//!   original addresses: the client's as its peer, the database's as its local address.
//!
//! Choosing the listener at lookup time, rather than assigning a socket to the packet at TC,
//! keeps the kernel's TIME-WAIT handling: a SYN that reuses a 4-tuple still in TIME-WAIT ends
//! it and reaches the listener. When the gateway is down its listeners are gone from the
//! sockmap (the kernel removes a closed socket) and the SYN is dropped: fail-closed, never
//! forwarded. Later packets find their established socket through the normal lookup; without
//! one, local delivery refuses them, still never forwarding.

use core::ptr::read_volatile;

use aya_ebpf::{
    macros::{classifier, sk_lookup},
    programs::{SkLookupContext, TcContext},
};
use gateway_common::{Counter, LISTENER_V4, LISTENER_V6, ipv6_octets};

use crate::{
    maps::{GATEWAY, LISTENERS, count},
    packet::{IPPROTO_TCP, Ip, TC_NEXT, TC_OK, TC_SHOT, protected_target, skb_headers},
};

#[classifier]
pub fn tollgate_tc_steer(ctx: TcContext) -> i32 {
    // The network header, not `data`: what precedes it differs by path (generic XDP, for
    // one, can leave no link header before `data`).
    let Some((ip, Some(tcp))) = skb_headers(ctx.skb.skb) else {
        // Not IP, or not plain TCP: XDP already dropped such packets bound for protected hosts.
        return TC_NEXT;
    };
    if protected_target(&ip, tcp.dport).is_none() {
        return TC_NEXT;
    }
    let Some(gateway) = GATEWAY.get(0) else {
        count(Counter::RoutedNoGateway);
        return TC_SHOT;
    };
    ctx.set_mark(gateway.mark);
    count(Counter::RoutedPacketsSteered);
    TC_OK
}

/// `sk_lookup` verdicts.
const SK_DROP: u32 = 0;
const SK_PASS: u32 = 1;
const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;

#[sk_lookup]
pub fn tollgate_sk_lookup(ctx: SkLookupContext) -> u32 {
    let lookup = ctx.lookup;
    // SAFETY: the kernel's bpf_sk_lookup for this call; each field is read once, volatile (the
    // verifier refuses context loads the compiler has moved behind an offset).
    let (family, protocol, ip4, ip6, port) = unsafe {
        (
            read_volatile(&raw const (*lookup).family),
            read_volatile(&raw const (*lookup).protocol),
            read_volatile(&raw const (*lookup).local_ip4),
            [
                read_volatile(&raw const (*lookup).local_ip6[0]),
                read_volatile(&raw const (*lookup).local_ip6[1]),
                read_volatile(&raw const (*lookup).local_ip6[2]),
                read_volatile(&raw const (*lookup).local_ip6[3]),
            ],
            read_volatile(&raw const (*lookup).local_port),
        )
    };
    if protocol != u32::from(IPPROTO_TCP) {
        return SK_PASS;
    }
    // local_port is in host byte order.
    let port = port as u16;
    let (destination, listener) = if family == AF_INET {
        (Ip::destination_v4(ip4.to_ne_bytes()), LISTENER_V4)
    } else if family == AF_INET6 {
        (Ip::destination_v6(ipv6_octets(ip6)), LISTENER_V6)
    } else {
        return SK_PASS;
    };
    if protected_target(&destination, port).is_none() {
        return SK_PASS;
    }
    if LISTENERS.redirect_sk_lookup(&ctx, listener, 0).is_ok() {
        count(Counter::RoutedSynSteered);
        SK_PASS
    } else {
        count(Counter::RoutedNoGateway);
        SK_DROP
    }
}
