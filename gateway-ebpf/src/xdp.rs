//! XDP on the bastion's client-facing interfaces: drops, before the stack sees them, packets
//! bound for a protected host that could never be a steered MySQL flow. What passes toward a
//! protected host is plain TCP to a protected target port, which TC ingress then steers.
//!
//! Dropped (each with its counter): anything not TCP (UDP, ICMP, ...), TCP to another port,
//! fragments (IPv4 fragments and any IPv6 fragment header), IPv4 with options and IPv6 with
//! extension headers (ports cannot be read where expected), and IPv6 packets addressed to the
//! IPv4-mapped form of a protected host.

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use gateway_common::{Counter, ipv4_unmapped};

use crate::{
    maps::count,
    packet::{IPPROTO_TCP, Packet, protected_host, protected_target},
};

/// `frags`: the program accepts multi-buffer packets (it reads only the headers, always in the
/// first buffer), so attaching it keeps GRO/GSO on the interface (a veth would otherwise turn
/// software segmentation off on its peer and cut bulk throughput several times).
#[xdp(frags)]
pub fn tollgate_xdp_guard(ctx: XdpContext) -> u32 {
    let packet = Packet::new(ctx.data(), ctx.data_end());
    match verdict(&packet) {
        Ok(()) => xdp_action::XDP_PASS,
        Err(counter) => {
            count(counter);
            xdp_action::XDP_DROP
        }
    }
}

#[inline(always)]
fn verdict(packet: &Packet) -> Result<(), Counter> {
    let Some(ip) = packet.ip() else {
        return Ok(());
    };
    if protected_host(&ip).is_none() {
        return Ok(());
    }
    if ip.version == 6 && ipv4_unmapped(&ip.dst).is_some() {
        return Err(Counter::XdpMapped);
    }
    if ip.fragment {
        return Err(Counter::XdpFragment);
    }
    if ip.protocol != IPPROTO_TCP {
        // An IPv6 extension header in front of TCP counts here too: it is not TCP where the
        // header says what follows.
        return Err(Counter::XdpNotTcp);
    }
    if ip.options {
        return Err(Counter::XdpHeaderOptions);
    }
    let Some(tcp) = packet.tcp(&ip) else {
        return Err(Counter::XdpHeaderOptions);
    };
    if protected_target(&ip, tcp.dport).is_none() {
        return Err(Counter::XdpOtherPort);
    }
    Ok(())
}
