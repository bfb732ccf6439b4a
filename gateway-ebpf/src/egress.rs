//! Egress enforcement: from the bastion itself, only the gateway's own sockets may reach a
//! protected host. Raw sockets, processes in another cgroup, IPv6 or IPv4-mapped addresses and
//! any source port all end here, because the rule looks at the packet's destination and the
//! cgroup of the socket that sent it, nothing a process chooses.
//!
//! - `tollgate_tc_egress`: TC egress on the database-facing interfaces, for every process on
//!   the host whatever its cgroup.
//! - `tollgate_cgroup_egress`: `cgroup_skb/egress` on the scope cgroup, for every interface.

use aya_ebpf::{
    helpers::generated::bpf_skb_cgroup_id,
    macros::{cgroup_skb, classifier},
    programs::{SkBuffContext, TcContext},
};
use gateway_common::Counter;

use crate::{
    maps::{GATEWAY, count},
    packet::{TC_NEXT, TC_SHOT, protected_host, skb_headers},
};

#[classifier]
pub fn tollgate_tc_egress(ctx: TcContext) -> i32 {
    match skb_headers(ctx.skb.skb).map(|(ip, _)| ip) {
        Some(ip) if protected_host(&ip).is_some() => {
            // SAFETY: the context is this program's skb.
            if from_gateway(unsafe { bpf_skb_cgroup_id(ctx.skb.skb) }) {
                count(Counter::EgressGateway);
                TC_NEXT
            } else {
                count(Counter::EgressDropped);
                TC_SHOT
            }
        }
        _ => TC_NEXT,
    }
}

/// `cgroup_skb` verdicts: 1 lets the packet go, 0 drops it.
const PASS: i32 = 1;
const DROP: i32 = 0;

#[cgroup_skb(egress)]
pub fn tollgate_cgroup_egress(ctx: SkBuffContext) -> i32 {
    // cgroup_skb data starts at the network header.
    let ip = skb_headers(ctx.skb.skb).map(|(ip, _)| ip);
    match ip {
        Some(ip) if protected_host(&ip).is_some() => {
            // SAFETY: the context is this program's skb.
            if from_gateway(unsafe { bpf_skb_cgroup_id(ctx.skb.skb) }) {
                PASS
            } else {
                count(Counter::CgroupEgressDropped);
                DROP
            }
        }
        _ => PASS,
    }
}

/// True when the sending socket belongs to the gateway's cgroup.
#[inline(always)]
fn from_gateway(cgroup_id: u64) -> bool {
    GATEWAY
        .get(0)
        .is_some_and(|g| g.gateway_cgroup_id != 0 && g.gateway_cgroup_id == cgroup_id)
}
