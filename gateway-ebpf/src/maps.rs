//! Every map of Tollgate's eBPF programs, declared once. Userspace finds them by the names in
//! `gateway_common::MAP_*` (the static's name is the map's name).

use aya_ebpf::{
    macros::map,
    maps::{Array, LpmTrie, LruHashMap, PerCpuArray, SockMap},
};
use gateway_common::{
    Attribution, COUNTERS as COUNTER_SLOTS, Counter, FlowKey, GatewayConfig, HostKeyV4, HostKeyV6,
    HostValue, MAX_FLOWS, MAX_PENDING, MAX_TARGETS, TargetKeyV4, TargetKeyV6, TargetValue,
};

/// Protected IPv4 targets: port + address prefix -> target. Filled by userspace from the config.
#[map]
pub static TARGETS_V4: LpmTrie<TargetKeyV4, TargetValue> =
    LpmTrie::with_max_entries(MAX_TARGETS, 0);

/// Protected IPv6 targets: port + address prefix -> target. Filled by userspace from the config.
#[map]
pub static TARGETS_V6: LpmTrie<TargetKeyV6, TargetValue> =
    LpmTrie::with_max_entries(MAX_TARGETS, 0);

/// Index 0 holds the gateway's listener addresses and its own pid. Filled by userspace.
#[map]
pub static GATEWAY: Array<GatewayConfig> = Array::with_max_entries(1, 0);

/// Redirected connects whose TCP handshake has not completed yet, by socket cookie.
/// LRU: a connect that never completes is evicted rather than leaked.
#[map]
pub static PENDING: LruHashMap<u64, Attribution> = LruHashMap::with_max_entries(MAX_PENDING, 0);

/// Established redirected flows, by 4-tuple, until the gateway claims (and deletes) them.
#[map]
pub static FLOWS: LruHashMap<FlowKey, Attribution> = LruHashMap::with_max_entries(MAX_FLOWS, 0);

/// Protected IPv4 hosts, any port: address prefix -> host. What may never be reached around
/// the gateway. Filled by userspace from the targets' addresses.
#[map]
pub static HOSTS_V4: LpmTrie<HostKeyV4, HostValue> = LpmTrie::with_max_entries(MAX_TARGETS, 0);

/// Protected IPv6 hosts, any port. Filled by userspace from the targets' addresses.
#[map]
pub static HOSTS_V6: LpmTrie<HostKeyV6, HostValue> = LpmTrie::with_max_entries(MAX_TARGETS, 0);

/// The gateway's transparent listeners for routed flows: `LISTENER_V4` and `LISTENER_V6`.
/// The gateway puts them in at start; the kernel removes a socket when it closes.
#[map]
pub static LISTENERS: SockMap = SockMap::with_max_entries(2, 0);

/// The data path's counters, one slot per `gateway_common::Counter`, per CPU.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// Adds one to `counter` on this CPU.
#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: the slot is this CPU's own; programs on one CPU do not run concurrently.
        unsafe { *slot += 1 };
    }
}
