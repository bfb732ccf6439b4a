//! Library target of the eBPF crate: holds nothing, so `cargo check` on the host has a target.
#![no_std]
