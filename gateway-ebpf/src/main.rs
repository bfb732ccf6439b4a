//! Tollgate's eBPF programs. They never parse MySQL: they only steer sockets and record who
//! opened them.
//!
//! - [`connect`]: `cgroup/connect4` and `cgroup/connect6` rewrite connects bound for a
//!   protected target to the gateway's listener and remember the original destination and the
//!   connecting process under the socket cookie.
//! - [`sockops`]: on handshake completion, re-keys that record by the flow's 4-tuple so the
//!   gateway can look it up for the socket it accepted.
//! - [`xdp`]: on client-facing interfaces, drops early what must never reach a protected host.
//! - [`steer`]: TC ingress on client-facing interfaces marks routed flows to a protected target
//!   for local delivery; `sk_lookup` hands their SYNs to the gateway's transparent listener.
//! - [`egress`]: TC egress on database-facing interfaces and `cgroup_skb/egress` on the scope
//!   cgroup: only the gateway's own sockets reach protected hosts.
#![no_std]
#![no_main]
#![allow(
    clippy::cast_possible_truncation,
    reason = "kernel context fields pack narrow values in wide ones (a port in a u32, pid and \
              tgid in one u64): the truncating casts are how they are unpacked"
)]
#![allow(
    clippy::inline_always,
    reason = "eBPF: a bounds check and the reads it guards must stay in one function for the \
              verifier to connect them"
)]
#![allow(
    clippy::needless_pass_by_value,
    reason = "program entry signatures are fixed by aya's macros"
)]

mod connect;
mod egress;
mod maps;
mod packet;
mod sockops;
mod steer;
mod xdp;

// Only for the BPF target: a host build (clippy over the workspace) links std's handler.
#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
