//! Types shared by Tollgate's eBPF programs (`gateway-ebpf`) and its userspace gateway
//! (`gateway-user`).
//!
//! Everything here is `#[repr(C)]`, `Copy`, and laid out without implicit padding, so the
//! kernel and userspace agree byte for byte and no uninitialised byte ever reaches a map.
//! Addresses are always stored as 16 bytes in network byte order; IPv4 addresses use the
//! IPv4-mapped IPv6 form (`::ffff:a.b.c.d`), so a connection made by an IPv6 socket to a
//! mapped address and one made by an IPv4 socket produce the same key.
#![no_std]

/// Name of the LPM trie of IPv4 targets (`TargetKeyV4` -> [`TargetValue`]).
pub const MAP_TARGETS_V4: &str = "TARGETS_V4";
/// Name of the LPM trie of IPv6 targets (`TargetKeyV6` -> [`TargetValue`]).
pub const MAP_TARGETS_V6: &str = "TARGETS_V6";
/// Name of the one-element array holding the [`GatewayConfig`].
pub const MAP_GATEWAY: &str = "GATEWAY";
/// Name of the LRU hash of connects waiting for their TCP handshake (socket cookie -> [`Attribution`]).
pub const MAP_PENDING: &str = "PENDING";
/// Name of the LRU hash of established redirected flows ([`FlowKey`] -> [`Attribution`]).
pub const MAP_FLOWS: &str = "FLOWS";

/// Name of the LPM trie of protected IPv4 hosts (address prefix -> [`HostValue`]), any port.
pub const MAP_HOSTS_V4: &str = "HOSTS_V4";
/// Name of the LPM trie of protected IPv6 hosts (address prefix -> [`HostValue`]), any port.
pub const MAP_HOSTS_V6: &str = "HOSTS_V6";
/// Name of the sockmap of the gateway's transparent listeners ([`LISTENER_V4`], [`LISTENER_V6`]).
pub const MAP_LISTENERS: &str = "LISTENERS";
/// Slot of the IPv4 transparent listener in `LISTENERS`.
pub const LISTENER_V4: u32 = 0;
/// Slot of the IPv6 transparent listener in `LISTENERS`.
pub const LISTENER_V6: u32 = 1;
/// Name of the per-CPU array of counters (indexed by [`Counter`]).
pub const MAP_COUNTERS: &str = "COUNTERS";

/// Program name of the `cgroup/connect4` program.
pub const PROG_CONNECT4: &str = "tollgate_connect4";
/// Program name of the `cgroup/connect6` program.
pub const PROG_CONNECT6: &str = "tollgate_connect6";
/// Program name of the `sockops` program.
pub const PROG_SOCKOPS: &str = "tollgate_sockops";
/// Program name of the XDP program on client-facing interfaces (drops what may never pass).
pub const PROG_XDP_GUARD: &str = "tollgate_xdp_guard";
/// Program name of the TC ingress program on client-facing interfaces (marks routed flows for
/// local delivery).
pub const PROG_TC_STEER: &str = "tollgate_tc_steer";
/// Program name of the `sk_lookup` program on the gateway's network namespace (picks the
/// gateway's transparent listener for routed flows).
pub const PROG_SK_LOOKUP: &str = "tollgate_sk_lookup";
/// Program name of the TC egress program on database-facing interfaces (only the gateway's
/// sockets pass to protected hosts).
pub const PROG_TC_EGRESS: &str = "tollgate_tc_egress";
/// Program name of the `cgroup_skb/egress` program on the scope cgroup (same rule as
/// [`PROG_TC_EGRESS`], for every interface).
pub const PROG_CGROUP_EGRESS: &str = "tollgate_cgroup_egress";

/// What the data-path programs count, one slot each in the per-CPU `COUNTERS` array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Routed SYNs to a protected target handed to the gateway's listener (by `sk_lookup`).
    RoutedSynSteered = 0,
    /// Routed packets to a protected target marked for local delivery (to the gateway's sockets).
    RoutedPacketsSteered = 1,
    /// Routed SYNs dropped because no gateway listener was there (fail-closed).
    RoutedNoGateway = 2,
    /// Packets to a protected host that were not TCP (UDP, ICMP, ...), dropped by XDP.
    XdpNotTcp = 3,
    /// TCP packets to a protected host on a port that is no target, dropped by XDP.
    XdpOtherPort = 4,
    /// Fragments to a protected host, dropped by XDP.
    XdpFragment = 5,
    /// IPv4 packets with options (or IPv6 with extension headers) to a protected host, dropped.
    XdpHeaderOptions = 6,
    /// IPv6 packets to the IPv4-mapped form of a protected host, dropped by XDP.
    XdpMapped = 7,
    /// Packets to a protected host from a socket that is not the gateway's, dropped at TC egress.
    EgressDropped = 8,
    /// The same, dropped by `cgroup_skb/egress` in the scope cgroup.
    CgroupEgressDropped = 9,
    /// Packets to a protected host that the gateway's own sockets sent (passed).
    EgressGateway = 10,
}

/// Number of [`Counter`] slots.
pub const COUNTERS: u32 = 11;

impl Counter {
    /// Every counter, in slot order.
    pub const ALL: [Self; COUNTERS as usize] = [
        Self::RoutedSynSteered,
        Self::RoutedPacketsSteered,
        Self::RoutedNoGateway,
        Self::XdpNotTcp,
        Self::XdpOtherPort,
        Self::XdpFragment,
        Self::XdpHeaderOptions,
        Self::XdpMapped,
        Self::EgressDropped,
        Self::CgroupEgressDropped,
        Self::EgressGateway,
    ];

    /// The counter's name, as `tollgate status` and the metrics show it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::RoutedSynSteered => "routed_syn_steered",
            Self::RoutedPacketsSteered => "routed_packets_steered",
            Self::RoutedNoGateway => "routed_dropped_no_gateway",
            Self::XdpNotTcp => "xdp_dropped_not_tcp",
            Self::XdpOtherPort => "xdp_dropped_other_port",
            Self::XdpFragment => "xdp_dropped_fragment",
            Self::XdpHeaderOptions => "xdp_dropped_header_options",
            Self::XdpMapped => "xdp_dropped_ipv4_mapped",
            Self::EgressDropped => "egress_dropped_not_gateway",
            Self::CgroupEgressDropped => "cgroup_egress_dropped_not_gateway",
            Self::EgressGateway => "egress_passed_gateway",
        }
    }
}

/// Most targets (address prefixes) one gateway can protect.
pub const MAX_TARGETS: u32 = 4096;
/// Most redirected connects whose handshake is in flight at once (LRU: the oldest are evicted).
pub const MAX_PENDING: u32 = 16_384;
/// Most redirected flows not yet claimed by the gateway (LRU: the oldest are evicted).
pub const MAX_FLOWS: u32 = 65_536;

/// Bits of the port that prefix every target key: the port always matches exactly.
pub const TARGET_PORT_BITS: u32 = 16;

/// `AF_INET`, as the kernel reports it in `bpf_sock_ops.family` and `bpf_sock_addr.family`.
pub const AF_INET: u16 = 2;
/// `AF_INET6`, as the kernel reports it.
pub const AF_INET6: u16 = 10;

/// Data part of an IPv4 target key in the LPM trie: the port, then the address, both in network
/// byte order. The trie's prefix length is `16 + address prefix`, so the port always matches in
/// full and the address by prefix.
pub type TargetKeyV4 = [u8; 6];
/// Data part of an IPv6 target key: the port, then the 16-byte address, network byte order.
pub type TargetKeyV6 = [u8; 18];
/// Data part of an IPv4 host key (any port): the address, network byte order.
pub type HostKeyV4 = [u8; 4];
/// Data part of an IPv6 host key (any port): the address, network byte order.
pub type HostKeyV6 = [u8; 16];

/// What a protected-host key maps to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostValue {
    /// Index of the (first) target on this host in the gateway's configuration.
    pub target_id: u32,
}

/// What a target key maps to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetValue {
    /// Index of the target in the gateway's configuration (`targets[id]`).
    pub target_id: u32,
}

/// Where the eBPF programs send redirected connections, and who must never be redirected.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GatewayConfig {
    /// The gateway's IPv4 listener address, network byte order.
    pub v4_addr: [u8; 4],
    /// The gateway's IPv4 listener port, network byte order bytes.
    pub v4_port: [u8; 2],
    /// The gateway's IPv6 listener port, network byte order bytes.
    pub v6_port: [u8; 2],
    /// The gateway's IPv6 listener address, network byte order.
    pub v6_addr: [u8; 16],
    /// Non-zero when the gateway listens on IPv4; redirects of IPv4 targets are refused otherwise.
    pub has_v4: u8,
    /// Non-zero when the gateway listens on IPv6; redirects of IPv6 targets are refused otherwise.
    pub has_v6: u8,
    /// Explicit padding, always zero.
    pub padding: [u8; 2],
    /// Process id (tgid) of the gateway: its own connects are never redirected (no loops).
    pub gateway_tgid: u32,
    /// The port of the gateway's transparent listeners for routed flows, network byte order
    /// bytes; zero when the gateway takes no routed flows. Shown by `tollgate status` (the
    /// listeners themselves are in the `LISTENERS` sockmap).
    pub routed_port: [u8; 2],
    /// Explicit padding, always zero.
    pub padding2: [u8; 2],
    /// The mark the steering program puts on routed packets, for the policy route that
    /// delivers them locally.
    pub mark: u32,
    /// cgroup v2 id of the gateway's own cgroup: its sockets alone may reach protected hosts,
    /// and its connects are never redirected. Zero: none (egress to protected hosts is dropped).
    pub gateway_cgroup_id: u64,
}

/// Who opened a redirected connection and where it was going: filled in by `cgroup/connect*`
/// from the connecting task's context, carried to the accepted socket by `sockops`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attribution {
    /// Kernel socket cookie of the client socket (unique while the socket lives).
    pub cookie: u64,
    /// cgroup v2 id of the connecting task.
    pub cgroup_id: u64,
    /// Process id (the kernel's tgid).
    pub pid: u32,
    /// Thread id (the kernel's pid).
    pub tid: u32,
    /// Real user id of the connecting task.
    pub uid: u32,
    /// Real group id of the connecting task.
    pub gid: u32,
    /// Index of the matched target in the gateway's configuration.
    pub target_id: u32,
    /// Original destination port, host byte order.
    pub orig_port: u16,
    /// Address family of the connecting socket ([`AF_INET`] or [`AF_INET6`]).
    pub family: u16,
    /// Original destination address, IPv4-mapped for IPv4, network byte order.
    pub orig_addr: [u8; 16],
    /// Command name of the connecting task (`comm`, NUL padded).
    pub comm: [u8; 16],
}

/// Identifies an established redirected TCP flow as both ends see it: the client's socket
/// (local side in `sockops`) and the gateway's listener (remote side in `sockops`). The
/// gateway rebuilds it from `accept()`'s peer and local addresses.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Client address, IPv4-mapped for IPv4, network byte order.
    pub client_addr: [u8; 16],
    /// Gateway (listener) address, IPv4-mapped for IPv4, network byte order.
    pub gateway_addr: [u8; 16],
    /// Client port, host byte order.
    pub client_port: u16,
    /// Gateway port, host byte order.
    pub gateway_port: u16,
}

/// Writes an IPv4 address (network byte order bytes) as an IPv4-mapped IPv6 address.
#[must_use]
pub const fn ipv4_mapped(v4: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, v4[0], v4[1], v4[2], v4[3],
    ]
}

/// Returns the IPv4 address inside an IPv4-mapped IPv6 address, or `None` for any other address.
#[must_use]
pub const fn ipv4_unmapped(v6: &[u8; 16]) -> Option<[u8; 4]> {
    if v6[0] == 0
        && v6[1] == 0
        && v6[2] == 0
        && v6[3] == 0
        && v6[4] == 0
        && v6[5] == 0
        && v6[6] == 0
        && v6[7] == 0
        && v6[8] == 0
        && v6[9] == 0
        && v6[10] == 0xff
        && v6[11] == 0xff
    {
        Some([v6[12], v6[13], v6[14], v6[15]])
    } else {
        None
    }
}

/// The 16 bytes of an IPv6 address that the kernel holds as four `u32` words in network byte
/// order (`user_ip6`, `remote_ip6`, ...).
#[must_use]
pub const fn ipv6_octets(words: [u32; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 4 {
        let b = words[i].to_ne_bytes();
        out[i * 4] = b[0];
        out[i * 4 + 1] = b[1];
        out[i * 4 + 2] = b[2];
        out[i * 4 + 3] = b[3];
        i += 1;
    }
    out
}

/// The inverse of [`ipv6_octets`].
#[must_use]
pub const fn ipv6_words(octets: [u8; 16]) -> [u32; 4] {
    let mut out = [0u32; 4];
    let mut i = 0;
    while i < 4 {
        out[i] = u32::from_ne_bytes([
            octets[i * 4],
            octets[i * 4 + 1],
            octets[i * 4 + 2],
            octets[i * 4 + 3],
        ]);
        i += 1;
    }
    out
}

#[cfg(feature = "user")]
mod pod {
    //! `aya::Pod` for the map types: all are `repr(C)`, `Copy` and padding-free.
    use super::{Attribution, FlowKey, GatewayConfig, HostValue, TargetValue};

    // SAFETY: repr(C), Copy, no padding, every bit pattern is valid.
    unsafe impl aya::Pod for TargetValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for HostValue {}
    // SAFETY: as above; `padding` makes the padding explicit.
    unsafe impl aya::Pod for GatewayConfig {}
    // SAFETY: as above (8+8+5*4+2+2+16+16 = 72 bytes, 8-aligned).
    unsafe impl aya::Pod for Attribution {}
    // SAFETY: as above (16+16+2+2 = 36 bytes, 2-aligned).
    unsafe impl aya::Pod for FlowKey {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(core::mem::size_of::<Attribution>(), 72);
        assert_eq!(core::mem::size_of::<FlowKey>(), 36);
        assert_eq!(core::mem::size_of::<GatewayConfig>(), 48);
        assert_eq!(core::mem::size_of::<TargetValue>(), 4);
    }

    #[test]
    fn ipv6_words_round_trip_in_network_order() {
        let octets = [0xfd, 0, 1, 0x98, 0, 0x18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
        let words = ipv6_words(octets);
        assert_eq!(words[0].to_ne_bytes(), [0xfd, 0, 1, 0x98]);
        assert_eq!(ipv6_octets(words), octets);
    }

    #[test]
    fn mapped_round_trip() {
        let m = ipv4_mapped([198, 18, 0, 10]);
        assert_eq!(ipv4_unmapped(&m), Some([198, 18, 0, 10]));
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        assert_eq!(ipv4_unmapped(&v6), None);
    }
}
