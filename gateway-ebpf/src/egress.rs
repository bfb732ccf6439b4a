//! Egress enforcement: from the bastion itself, only the gateway's own sockets may reach a
//! protected host. Raw sockets, processes in another cgroup, IPv6 or IPv4-mapped addresses and
//! any source port all end here, because the rule looks at the packet's destination and the
//! cgroup of the socket that sent it, nothing a process chooses.
//!
//! - `tollgate_tc_egress`: TC egress on the database-facing interfaces, for every process on
//!   the host whatever its cgroup.
//! - `tollgate_cgroup_egress`: `cgroup_skb/egress` on the scope cgroup, for every interface.
//!
//! The gateway's own listeners pass: when a target is on this host (`127.0.0.1`), a redirected
//! local connect goes to the gateway's listener on a protected host's address.

use aya_ebpf::{
    bindings::__sk_buff,
    helpers::generated::bpf_skb_cgroup_id,
    macros::{cgroup_skb, classifier},
    programs::{SkBuffContext, TcContext},
};
use gateway_common::{Counter, GatewayConfig};

use crate::{
    maps::{GATEWAY, count},
    packet::{Ip, TC_NEXT, TC_SHOT, protected_host, skb_headers},
};

#[classifier]
pub fn tollgate_tc_egress(ctx: TcContext) -> i32 {
    match verdict(ctx.skb.skb) {
        Verdict::NotProtected | Verdict::ToListener => TC_NEXT,
        Verdict::FromGateway => {
            count(Counter::EgressGateway);
            TC_NEXT
        }
        Verdict::Drop => {
            count(Counter::EgressDropped);
            TC_SHOT
        }
    }
}

/// `cgroup_skb` verdicts: 1 lets the packet go, 0 drops it.
const PASS: i32 = 1;
const DROP: i32 = 0;

#[cgroup_skb(egress)]
pub fn tollgate_cgroup_egress(ctx: SkBuffContext) -> i32 {
    match verdict(ctx.skb.skb) {
        Verdict::Drop => {
            count(Counter::CgroupEgressDropped);
            DROP
        }
        _ => PASS,
    }
}

/// What the egress rule says of one packet.
enum Verdict {
    /// Not bound for a protected host.
    NotProtected,
    /// Bound for a protected host, from the gateway's cgroup.
    FromGateway,
    /// Bound for the gateway's own listener on a protected host's address (a redirected local
    /// connect, when a target is on this host, e.g. `127.0.0.1`).
    ToListener,
    /// Bound for a protected host from anyone else.
    Drop,
}

#[inline(always)]
fn verdict(skb: *mut __sk_buff) -> Verdict {
    let Some((ip, tcp)) = skb_headers(skb) else {
        return Verdict::NotProtected;
    };
    if protected_host(&ip).is_none() {
        return Verdict::NotProtected;
    }
    let Some(gateway) = GATEWAY.get(0) else {
        return Verdict::Drop;
    };
    // SAFETY: the context is this program's skb.
    let cgroup_id = unsafe { bpf_skb_cgroup_id(skb) };
    if gateway.gateway_cgroup_id != 0 && gateway.gateway_cgroup_id == cgroup_id {
        return Verdict::FromGateway;
    }
    if let Some(tcp) = tcp
        && is_listener(&ip, tcp.dport, gateway)
    {
        return Verdict::ToListener;
    }
    Verdict::Drop
}

/// True when `ip`'s destination and `port` are one of the gateway's listeners for local
/// redirects.
#[inline(always)]
fn is_listener(ip: &Ip, port: u16, gateway: &GatewayConfig) -> bool {
    let port = port.to_be_bytes();
    if ip.version == 4 {
        return gateway.has_v4 != 0 && port == gateway.v4_port && ip.dst_v4() == gateway.v4_addr;
    }
    gateway.has_v6 != 0 && port == gateway.v6_port && ip.dst == gateway.v6_addr
}
