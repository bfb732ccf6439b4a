//! Does this process hold what loading and attaching cgroup eBPF programs needs?

/// `CAP_NET_ADMIN`
const CAP_NET_ADMIN: u32 = 12;
/// `CAP_SYS_ADMIN`
const CAP_SYS_ADMIN: u32 = 21;
/// `CAP_BPF` (Linux 5.8+)
const CAP_BPF: u32 = 39;

/// True when the effective capabilities allow loading and attaching cgroup socket programs:
/// `CAP_SYS_ADMIN`, or `CAP_BPF` together with `CAP_NET_ADMIN`.
#[must_use]
pub fn can_load_ebpf() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| effective_capabilities(&status))
        .is_some_and(allows_ebpf)
}

fn allows_ebpf(caps: u64) -> bool {
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_NET_ADMIN))
}

/// Parses the `CapEff:` line of `/proc/self/status`.
fn effective_capabilities(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cap_eff_and_judges() {
        let root = "Name:\tx\nCapEff:\t000001ffffffffff\n";
        assert!(effective_capabilities(root).is_some_and(allows_ebpf));
        let nobody = "CapEff:\t0000000000000000\n";
        assert!(!effective_capabilities(nobody).is_some_and(allows_ebpf));
        let bpf_only = format!("CapEff:\t{:016x}\n", 1u64 << CAP_BPF);
        assert!(!effective_capabilities(&bpf_only).is_some_and(allows_ebpf));
        let bpf_net = format!(
            "CapEff:\t{:016x}\n",
            (1u64 << CAP_BPF) | (1u64 << CAP_NET_ADMIN)
        );
        assert!(effective_capabilities(&bpf_net).is_some_and(allows_ebpf));
        assert_eq!(effective_capabilities("nothing"), None);
    }
}
