//! `sockops`: when a redirected client socket finishes its handshake, move its attribution from
//! the socket cookie (all `cgroup/connect*` knows) to the flow's 4-tuple (all the gateway
//! knows after `accept()`).
//!
//! Ordering: the kernel runs `BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB` on the client while it
//! processes the SYN-ACK, before it sends the final ACK; the gateway's listener queues the
//! connection only when that ACK arrives. So the flow entry exists before `accept()` returns.

use core::ptr::read_volatile;

use aya_ebpf::{
    EbpfContext as _, bindings::BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB,
    helpers::generated::bpf_get_socket_cookie, macros::sock_ops, programs::SockOpsContext,
};
use gateway_common::{AF_INET, AF_INET6, FlowKey, ipv4_mapped, ipv6_octets};

use crate::maps::{FLOWS, PENDING};

/// `sockops` programs return 1 on success; the value does not affect the socket here.
const OK: u32 = 1;

#[sock_ops]
pub fn tollgate_sockops(ctx: SockOpsContext) -> u32 {
    if ctx.op() == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB {
        let _ = try_established(&ctx);
    }
    OK
}

fn try_established(ctx: &SockOpsContext) -> Result<(), i64> {
    // SAFETY: bpf_get_socket_cookie accepts the bpf_sock_ops context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    // SAFETY: the value is copied out at once; PENDING is only written by connect programs.
    let Some(attribution) = (unsafe { PENDING.get(cookie) }).copied() else {
        return Ok(());
    };
    // Read every context field up front with volatile loads: the verifier refuses a load
    // through a context pointer that the compiler has offset ahead of a branch, which is what
    // LLVM does when a plain load is only used inside one arm.
    let ops = ctx.ops;
    // SAFETY: `ops` is the kernel's bpf_sock_ops for this call; each field is read once.
    let (family, local_ip4, remote_ip4, local_ip6, remote_ip6, local_port, remote_port_raw) = unsafe {
        (
            read_volatile(&raw const (*ops).family),
            read_volatile(&raw const (*ops).local_ip4),
            read_volatile(&raw const (*ops).remote_ip4),
            [
                read_volatile(&raw const (*ops).local_ip6[0]),
                read_volatile(&raw const (*ops).local_ip6[1]),
                read_volatile(&raw const (*ops).local_ip6[2]),
                read_volatile(&raw const (*ops).local_ip6[3]),
            ],
            [
                read_volatile(&raw const (*ops).remote_ip6[0]),
                read_volatile(&raw const (*ops).remote_ip6[1]),
                read_volatile(&raw const (*ops).remote_ip6[2]),
                read_volatile(&raw const (*ops).remote_ip6[3]),
            ],
            read_volatile(&raw const (*ops).local_port),
            read_volatile(&raw const (*ops).remote_port),
        )
    };
    let (client_addr, gateway_addr) = if family == u32::from(AF_INET) {
        (
            ipv4_mapped(local_ip4.to_ne_bytes()),
            ipv4_mapped(remote_ip4.to_ne_bytes()),
        )
    } else if family == u32::from(AF_INET6) {
        (ipv6_octets(local_ip6), ipv6_octets(remote_ip6))
    } else {
        return Ok(());
    };
    let key = FlowKey {
        client_addr,
        gateway_addr,
        // local_port is in host byte order.
        client_port: local_port as u16,
        gateway_port: remote_port(remote_port_raw),
    };
    FLOWS.insert(key, attribution, 0)?;
    PENDING.remove(cookie)?;
    Ok(())
}

/// `remote_port` is in network byte order; depending on the kernel version it sits in the
/// upper or the lower 16 bits of the field. A port is never 0, so whichever half is set is it.
fn remote_port(raw: u32) -> u16 {
    let half = if raw >> 16 != 0 {
        raw >> 16
    } else {
        raw & 0xffff
    };
    u16::from_be(half as u16)
}
