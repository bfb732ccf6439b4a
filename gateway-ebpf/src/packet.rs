//! Bounds-checked header parsing shared by the XDP and TC programs, and the lookups that
//! decide whether a packet is bound for a protected host or target.
//!
//! Only what the decisions need is read: the IP version, addresses, protocol, fragment and
//! option bits, and the TCP ports and flags. Every read is checked against the packet's end
//! first, which is also what the verifier demands.

use aya_ebpf::{
    bindings::{__sk_buff, bpf_hdr_start_off::BPF_HDR_START_NET},
    helpers::generated::bpf_skb_load_bytes_relative,
    maps::lpm_trie::Key,
};
use gateway_common::{HostValue, TARGET_PORT_BITS, TargetValue, ipv4_unmapped};

use crate::maps::{HOSTS_V4, HOSTS_V6, TARGETS_V4, TARGETS_V6};

/// TC verdict: let the packet go on, with no opinion (TCX: the next program decides).
pub const TC_NEXT: i32 = -1;
/// TC verdict: accept the packet (as steered).
pub const TC_OK: i32 = 0;
/// TC verdict: drop the packet.
pub const TC_SHOT: i32 = 2;

/// Length of an Ethernet header.
pub const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IPv6 next-header value of the fragment header.
pub const IPPROTO_FRAGMENT: u8 = 44;

/// An IP header's facts (what the decisions need: never the source, which a sender chooses).
#[derive(Clone, Copy)]
pub struct Ip {
    /// 4 or 6.
    pub version: u8,
    /// Destination address; IPv4 in the first four bytes.
    pub dst: [u8; 16],
    /// IPv4 protocol or IPv6 next header.
    pub protocol: u8,
    /// An IPv4 fragment (more-fragments set or a non-zero offset).
    pub fragment: bool,
    /// IPv4 options present.
    pub options: bool,
    /// Offset of the layer-4 header from the start of the packet.
    pub l4_offset: usize,
}

impl Ip {
    /// The facts of an IPv4 header that starts `base` bytes into the packet.
    #[inline(always)]
    pub fn from_v4_header(h: &[u8; 20], base: usize) -> Self {
        let ihl = usize::from(h[0] & 0x0f) * 4;
        let frag = u16::from_be_bytes([h[6], h[7]]);
        let mut dst = [0u8; 16];
        dst[0] = h[16];
        dst[1] = h[17];
        dst[2] = h[18];
        dst[3] = h[19];
        Self {
            version: 4,
            dst,
            protocol: h[9],
            // MF bit or a fragment offset.
            fragment: frag & 0x3fff != 0,
            options: ihl != 20,
            l4_offset: base + 20,
        }
    }

    /// The facts of an IPv6 header that starts `base` bytes into the packet.
    #[inline(always)]
    pub fn from_v6_header(h: &[u8; 40], base: usize) -> Self {
        let mut dst = [0u8; 16];
        let mut i = 0;
        while i < 16 {
            dst[i] = h[24 + i];
            i += 1;
        }
        Self {
            version: 6,
            dst,
            protocol: h[6],
            fragment: h[6] == IPPROTO_FRAGMENT,
            options: false,
            l4_offset: base + 40,
        }
    }

    /// Only a destination: what `sk_lookup` knows of a flow, in the shape the lookups take.
    #[inline(always)]
    pub fn destination_v4(addr: [u8; 4]) -> Self {
        let mut dst = [0u8; 16];
        dst[0] = addr[0];
        dst[1] = addr[1];
        dst[2] = addr[2];
        dst[3] = addr[3];
        Self::destination(4, dst)
    }

    /// Only an IPv6 destination.
    #[inline(always)]
    pub fn destination_v6(addr: [u8; 16]) -> Self {
        Self::destination(6, addr)
    }

    #[inline(always)]
    fn destination(version: u8, dst: [u8; 16]) -> Self {
        Self {
            version,
            dst,
            protocol: IPPROTO_TCP,
            fragment: false,
            options: false,
            l4_offset: 0,
        }
    }

    /// The IPv4 destination (first four bytes of `dst`).
    #[inline(always)]
    pub fn dst_v4(&self) -> [u8; 4] {
        [self.dst[0], self.dst[1], self.dst[2], self.dst[3]]
    }
}

/// What a TCP header tells the programs: its destination port (host byte order).
#[derive(Clone, Copy)]
pub struct Tcp {
    /// Destination port.
    pub dport: u16,
}

/// Reads `N` bytes at `offset` from the network header of a socket buffer (TC or `cgroup_skb`).
/// Relative to the network header, whatever `data` points at (a link header, or none), and
/// whether the bytes are in the linear part or in fragments.
#[inline(always)]
fn net_bytes<const N: usize>(skb: *mut __sk_buff, offset: u32) -> Option<[u8; N]> {
    let mut buf = [0u8; N];
    // SAFETY: `skb` is the program's context; `buf` is N writable bytes.
    let rc = unsafe {
        bpf_skb_load_bytes_relative(
            skb.cast(),
            offset,
            buf.as_mut_ptr().cast(),
            N as u32,
            BPF_HDR_START_NET,
        )
    };
    (rc == 0).then_some(buf)
}

/// The IP header (and, for plain TCP, the TCP destination port) of a socket buffer, read
/// relative to its network header. `None`: not IPv4 or IPv6, or cut short.
#[inline(always)]
pub fn skb_headers(skb: *mut __sk_buff) -> Option<(Ip, Option<Tcp>)> {
    let first = net_bytes::<1>(skb, 0)?[0];
    let ip = match first >> 4 {
        4 => Ip::from_v4_header(&net_bytes::<20>(skb, 0)?, 0),
        6 => Ip::from_v6_header(&net_bytes::<40>(skb, 0)?, 0),
        _ => return None,
    };
    let tcp = if ip.protocol == IPPROTO_TCP && !ip.fragment && !ip.options {
        net_bytes::<4>(skb, ip.l4_offset as u32).map(|h| Tcp {
            dport: u16::from_be_bytes([h[2], h[3]]),
        })
    } else {
        None
    };
    Some((ip, tcp))
}

/// A packet as `[data, end)` addresses (XDP's `xdp_md` or TC's `__sk_buff` data pointers).
#[derive(Clone, Copy)]
pub struct Packet {
    data: usize,
    end: usize,
}

impl Packet {
    /// The packet between `data` and `end`.
    #[inline(always)]
    pub fn new(data: usize, end: usize) -> Self {
        Self { data, end }
    }

    /// Copies `N` bytes at `offset`, or `None` past the end.
    #[inline(always)]
    pub fn bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let start = self.data + offset;
        if start + N > self.end {
            return None;
        }
        // SAFETY: [start, start + N) lies inside the packet, checked just above.
        Some(unsafe { core::ptr::read_unaligned(start as *const [u8; N]) })
    }

    /// Parses the IP header after the Ethernet header. `None`: not IP, or cut short.
    #[inline(always)]
    pub fn ip(&self) -> Option<Ip> {
        let ethertype = u16::from_be_bytes(self.bytes::<2>(12)?);
        if ethertype != ETH_P_IP && ethertype != ETH_P_IPV6 {
            return None;
        }
        let base = ETH_HLEN;
        let first = self.bytes::<1>(base)?[0];
        match first >> 4 {
            4 => Some(Ip::from_v4_header(&self.bytes::<20>(base)?, base)),
            6 => Some(Ip::from_v6_header(&self.bytes::<40>(base)?, base)),
            _ => None,
        }
    }

    /// The TCP header at `ip.l4_offset`. Only for IPv4 without options and IPv6 without
    /// extension headers (the callers drop the rest when it is bound for a protected host).
    #[inline(always)]
    pub fn tcp(&self, ip: &Ip) -> Option<Tcp> {
        let h = self.bytes::<4>(ip.l4_offset)?;
        Some(Tcp {
            dport: u16::from_be_bytes([h[2], h[3]]),
        })
    }
}

/// The protected host `dst` belongs to, if any. An IPv6 destination in the IPv4-mapped form is
/// looked up as the IPv4 address it maps.
#[inline(always)]
pub fn protected_host(ip: &Ip) -> Option<HostValue> {
    if ip.version == 4 {
        return host_v4(ip.dst_v4());
    }
    if let Some(v4) = ipv4_unmapped(&ip.dst) {
        return host_v4(v4);
    }
    HOSTS_V6.get(Key::new(128, ip.dst)).copied()
}

/// The protected host an IPv4 address belongs to.
#[inline(always)]
pub fn host_v4(addr: [u8; 4]) -> Option<HostValue> {
    HOSTS_V4.get(Key::new(32, addr)).copied()
}

/// The protected target `ip.dst`:`port` is, if any (IPv4, or native IPv6).
#[inline(always)]
pub fn protected_target(ip: &Ip, port: u16) -> Option<TargetValue> {
    let p = port.to_be_bytes();
    if ip.version == 4 {
        let a = ip.dst;
        let data = [p[0], p[1], a[0], a[1], a[2], a[3]];
        return TARGETS_V4
            .get(Key::new(TARGET_PORT_BITS + 32, data))
            .copied();
    }
    let mut data = [0u8; 18];
    data[0] = p[0];
    data[1] = p[1];
    let mut i = 0;
    while i < 16 {
        data[i + 2] = ip.dst[i];
        i += 1;
    }
    TARGETS_V6
        .get(Key::new(TARGET_PORT_BITS + 128, data))
        .copied()
}
