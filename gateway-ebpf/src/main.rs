//! Tollgate's eBPF programs. They never parse MySQL: they only steer sockets and record who
//! opened them.
//!
//! - [`connect`]: `cgroup/connect4` and `cgroup/connect6` rewrite connects bound for a
//!   protected target to the gateway's listener and remember the original destination and the
//!   connecting process under the socket cookie.
//! - [`sockops`]: on handshake completion, re-keys that record by the flow's 4-tuple so the
//!   gateway can look it up for the socket it accepted.
#![no_std]
#![no_main]

mod connect;
mod maps;
mod sockops;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
