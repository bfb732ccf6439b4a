//! `cgroup/connect4` and `cgroup/connect6`: rewrite a connect bound for a protected target to
//! the gateway's listener and remember who connected and where they were going.
//!
//! Return value (the kernel's convention for `cgroup/connect*`): 1 lets the connect proceed
//! (rewritten or not), 0 refuses it with `EPERM`. A connect to a protected target that cannot
//! be steered (no gateway listener for its family, attribution map full) is refused: it must
//! never reach the database around the gateway.

use aya_ebpf::{
    EbpfContext as _,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_uid_gid, generated::bpf_get_socket_cookie,
    },
    macros::cgroup_sock_addr,
    maps::lpm_trie::Key,
    programs::SockAddrContext,
};
use aya_log_ebpf::debug;
use gateway_common::{
    AF_INET, AF_INET6, Attribution, GatewayConfig, TARGET_PORT_BITS, TargetValue, ipv4_mapped,
    ipv4_unmapped, ipv6_octets, ipv6_words,
};

use crate::maps::{GATEWAY, PENDING, TARGETS_V4, TARGETS_V6};

const ALLOW: i32 = 1;
const DENY: i32 = 0;

#[cgroup_sock_addr(connect4)]
pub fn tollgate_connect4(ctx: SockAddrContext) -> i32 {
    match try_connect4(&ctx) {
        Ok(verdict) | Err(verdict) => verdict,
    }
}

#[cgroup_sock_addr(connect6)]
pub fn tollgate_connect6(ctx: SockAddrContext) -> i32 {
    match try_connect6(&ctx) {
        Ok(verdict) | Err(verdict) => verdict,
    }
}

fn try_connect4(ctx: &SockAddrContext) -> Result<i32, i32> {
    // SAFETY: the kernel hands every cgroup/connect4 program a valid bpf_sock_addr.
    let sa = unsafe { &mut *ctx.sock_addr };
    // user_ip4 holds the address in network byte order; its in-memory bytes are the address.
    let addr = sa.user_ip4.to_ne_bytes();
    // user_port holds the port in network byte order in its low 16 bits.
    let port_be = (sa.user_port as u16).to_ne_bytes();
    let Some(target) = lookup_v4(addr, port_be) else {
        return Ok(ALLOW);
    };
    let gateway = gateway_config()?;
    if is_gateway_itself(&gateway) {
        return Ok(ALLOW);
    }
    if gateway.has_v4 == 0 {
        return Err(DENY);
    }
    remember(ctx, target, AF_INET, ipv4_mapped(addr), port_be)?;
    sa.user_ip4 = u32::from_ne_bytes(gateway.v4_addr);
    sa.user_port = u32::from(u16::from_ne_bytes(gateway.v4_port));
    debug!(
        ctx,
        "tollgate: connect4 to target {} redirected", target.target_id
    );
    Ok(ALLOW)
}

fn try_connect6(ctx: &SockAddrContext) -> Result<i32, i32> {
    // SAFETY: the kernel hands every cgroup/connect6 program a valid bpf_sock_addr.
    let sa = unsafe { &mut *ctx.sock_addr };
    let addr = ipv6_octets(sa.user_ip6);
    let port_be = (sa.user_port as u16).to_ne_bytes();
    // An IPv6 socket connecting to an IPv4-mapped address reaches an IPv4 target: look it up
    // in the IPv4 table so the mapped form cannot route around a protected IPv4 target.
    let mapped_v4 = ipv4_unmapped(&addr);
    let target = match mapped_v4 {
        Some(v4) => lookup_v4(v4, port_be),
        None => lookup_v6(addr, port_be),
    };
    let Some(target) = target else {
        return Ok(ALLOW);
    };
    let gateway = gateway_config()?;
    if is_gateway_itself(&gateway) {
        return Ok(ALLOW);
    }
    let (new_addr, new_port) = if mapped_v4.is_some() {
        if gateway.has_v4 == 0 {
            return Err(DENY);
        }
        (ipv4_mapped(gateway.v4_addr), gateway.v4_port)
    } else {
        if gateway.has_v6 == 0 {
            return Err(DENY);
        }
        (gateway.v6_addr, gateway.v6_port)
    };
    remember(ctx, target, AF_INET6, addr, port_be)?;
    // Plain field stores at constant offsets: the verifier accepts 4-byte (or 8-byte aligned)
    // writes to user_ip6, but not a store through a context pointer offset at run time.
    let words = ipv6_words(new_addr);
    sa.user_ip6[0] = words[0];
    sa.user_ip6[1] = words[1];
    sa.user_ip6[2] = words[2];
    sa.user_ip6[3] = words[3];
    sa.user_port = u32::from(u16::from_ne_bytes(new_port));
    debug!(
        ctx,
        "tollgate: connect6 to target {} redirected", target.target_id
    );
    Ok(ALLOW)
}

fn lookup_v4(addr: [u8; 4], port_be: [u8; 2]) -> Option<TargetValue> {
    let data = [port_be[0], port_be[1], addr[0], addr[1], addr[2], addr[3]];
    TARGETS_V4
        .get(Key::new(TARGET_PORT_BITS + 32, data))
        .copied()
}

fn lookup_v6(addr: [u8; 16], port_be: [u8; 2]) -> Option<TargetValue> {
    let mut data = [0u8; 18];
    data[0] = port_be[0];
    data[1] = port_be[1];
    let mut i = 0;
    while i < 16 {
        data[i + 2] = addr[i];
        i += 1;
    }
    TARGETS_V6
        .get(Key::new(TARGET_PORT_BITS + 128, data))
        .copied()
}

/// The gateway's configuration; a protected connect with no gateway configured is refused.
fn gateway_config() -> Result<GatewayConfig, i32> {
    GATEWAY.get(0).copied().ok_or(DENY)
}

/// The gateway's own upstream connects are never redirected: recognised by its cgroup, or by
/// its process id when it runs without a cgroup of its own.
fn is_gateway_itself(gateway: &GatewayConfig) -> bool {
    // SAFETY: no arguments; available to cgroup/connect* programs.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    if gateway.gateway_cgroup_id != 0 && cgroup_id == gateway.gateway_cgroup_id {
        return true;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    gateway.gateway_tgid != 0 && tgid == gateway.gateway_tgid
}

/// Stores the connecting task's attribution under the socket's cookie, for `sockops` to
/// re-key by 4-tuple once the handshake completes.
fn remember(
    ctx: &SockAddrContext,
    target: TargetValue,
    family: u16,
    orig_addr: [u8; 16],
    port_be: [u8; 2],
) -> Result<(), i32> {
    // SAFETY: bpf_get_socket_cookie accepts the bpf_sock_addr context of cgroup/connect*.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    let attribution = Attribution {
        cookie,
        // SAFETY: no arguments; available to cgroup/connect* programs.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        target_id: target.target_id,
        orig_port: u16::from_be_bytes(port_be),
        family,
        orig_addr,
        comm: bpf_get_current_comm().unwrap_or([0u8; 16]),
    };
    // Refuse rather than let an unattributed connection through.
    PENDING.insert(cookie, attribution, 0).map_err(|_| DENY)
}
