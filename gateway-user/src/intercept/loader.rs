//! Loads the embedded eBPF object, fills its maps from the configuration and attaches the
//! programs to the managed cgroup. Dropping the [`Interceptor`] detaches everything (aya holds
//! the programs through BPF links owned by this process).

use std::{
    fs::File,
    net::{IpAddr, SocketAddr},
};

use aya::{
    Ebpf,
    maps::{Array, HashMap, LpmTrie, lpm_trie::Key},
    programs::{CgroupAttachMode, CgroupSockAddr, SockOps},
};
use gateway_common::{
    GatewayConfig, MAP_FLOWS, MAP_GATEWAY, MAP_TARGETS_V4, MAP_TARGETS_V6, PROG_CONNECT4,
    PROG_CONNECT6, PROG_SOCKOPS, TARGET_PORT_BITS, TargetKeyV4, TargetKeyV6, TargetValue,
};
use ipnet::IpNet;

use super::{FlowTable, InterceptError, ManagedCgroup, privilege};
use crate::config::{Config, TargetConfig};

/// The eBPF object built by `build.rs` (empty when built with `AYA_BUILD_SKIP=1`).
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tollgate"));

/// Live interception: programs attached, maps filled.
pub struct Interceptor {
    /// Owns the programs and their links; dropping it detaches them.
    ebpf: Ebpf,
    flows: FlowTable,
    cgroup: ManagedCgroup,
    logger: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Interceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interceptor")
            .field("cgroup", &self.cgroup)
            .finish_non_exhaustive()
    }
}

impl Interceptor {
    /// True when this binary carries the eBPF programs.
    #[must_use]
    pub fn is_built() -> bool {
        !EBPF_OBJECT.is_empty()
    }

    /// Prepares the cgroup, loads the programs, fills the maps and attaches. `listeners` are the
    /// addresses the gateway actually listens on. Must run inside a tokio runtime (the eBPF log
    /// forwarder is a task).
    pub fn start(config: &Config, listeners: &[SocketAddr]) -> Result<Self, InterceptError> {
        if !Self::is_built() {
            return Err(InterceptError::NotBuilt);
        }
        if !privilege::can_load_ebpf() {
            return Err(InterceptError::NotPrivileged);
        }
        let gateway = gateway_config(listeners, std::process::id())?;
        let (v4_entries, v6_entries) = (
            target_entries_v4(&config.targets),
            target_entries_v6(&config.targets),
        );
        if !v4_entries.is_empty() && gateway.has_v4 == 0 {
            return Err(InterceptError::Listener(
                "IPv4 targets are configured but listener.addresses has no IPv4 address: add one, \
                 e.g. \"127.0.0.1:15306\""
                    .into(),
            ));
        }
        if !v6_entries.is_empty() && gateway.has_v6 == 0 {
            return Err(InterceptError::Listener(
                "IPv6 targets are configured but listener.addresses has no IPv6 address: add one, \
                 e.g. \"[::1]:15306\""
                    .into(),
            ));
        }

        let cgroup = ManagedCgroup::prepare(&config.interception.cgroup)?;
        // From here on, a failure must undo the cgroup; `attach` does the fallible work.
        match Self::load_and_attach(&cgroup, gateway, &v4_entries, &v6_entries) {
            Ok((ebpf, flows, logger)) => Ok(Self {
                ebpf,
                flows,
                cgroup,
                logger,
            }),
            Err(error) => {
                cgroup.remove();
                Err(error)
            }
        }
    }

    fn load_and_attach(
        cgroup: &ManagedCgroup,
        gateway: GatewayConfig,
        v4_entries: &[(Key<TargetKeyV4>, TargetValue)],
        v6_entries: &[(Key<TargetKeyV6>, TargetValue)],
    ) -> Result<(Ebpf, FlowTable, Option<tokio::task::JoinHandle<()>>), InterceptError> {
        let mut ebpf = Ebpf::load(EBPF_OBJECT)?;
        let logger = start_log_forwarder(&mut ebpf);

        // Maps first: a program attached before its maps are filled would let connects through
        // unsteered.
        let mut gateway_map: Array<_, GatewayConfig> = map(&mut ebpf, MAP_GATEWAY)?;
        gateway_map
            .set(0, gateway, 0)
            .map_err(|e| map_error(MAP_GATEWAY, &e))?;
        let mut targets_v4: LpmTrie<_, TargetKeyV4, TargetValue> = map(&mut ebpf, MAP_TARGETS_V4)?;
        for (key, value) in v4_entries {
            targets_v4
                .insert(key, value, 0)
                .map_err(|e| map_error(MAP_TARGETS_V4, &e))?;
        }
        let mut targets_v6: LpmTrie<_, TargetKeyV6, TargetValue> = map(&mut ebpf, MAP_TARGETS_V6)?;
        for (key, value) in v6_entries {
            targets_v6
                .insert(key, value, 0)
                .map_err(|e| map_error(MAP_TARGETS_V6, &e))?;
        }
        let flows = ebpf
            .take_map(MAP_FLOWS)
            .ok_or_else(|| map_error(MAP_FLOWS, &"not in the eBPF object"))?;
        let flows = HashMap::try_from(flows).map_err(|e| map_error(MAP_FLOWS, &e))?;

        let cgroup_file =
            File::open(cgroup.path()).map_err(|source| InterceptError::OpenCgroup {
                path: cgroup.path().to_owned(),
                source,
            })?;
        // sockops first, so a connect redirected the moment connect4 is attached is already
        // re-keyed when its handshake completes.
        let program = |name| InterceptError::Program {
            program: name,
            source: aya::programs::ProgramError::UnexpectedProgramType,
        };
        let sockops: &mut SockOps = ebpf
            .program_mut(PROG_SOCKOPS)
            .ok_or_else(|| program(PROG_SOCKOPS))?
            .try_into()
            .map_err(|source| InterceptError::program(PROG_SOCKOPS, source))?;
        sockops
            .load()
            .and_then(|()| sockops.attach(&cgroup_file, CgroupAttachMode::Single))
            .map_err(|source| InterceptError::program(PROG_SOCKOPS, source))?;
        for name in [PROG_CONNECT4, PROG_CONNECT6] {
            let connect: &mut CgroupSockAddr = ebpf
                .program_mut(name)
                .ok_or_else(|| program(name))?
                .try_into()
                .map_err(|source| InterceptError::program(name, source))?;
            connect
                .load()
                .and_then(|()| connect.attach(&cgroup_file, CgroupAttachMode::Single))
                .map_err(|source| InterceptError::program(name, source))?;
        }
        Ok((ebpf, FlowTable::new(flows), logger))
    }

    /// The table of redirected flows, for sessions to claim their origin.
    #[must_use]
    pub fn flows(&self) -> FlowTable {
        self.flows.clone()
    }

    /// The managed cgroup's directory.
    #[must_use]
    pub fn cgroup_path(&self) -> &std::path::Path {
        self.cgroup.path()
    }

    /// Detaches every program, then removes the cgroup if Tollgate created it.
    pub fn stop(self) {
        let Self {
            ebpf,
            flows,
            cgroup,
            logger,
        } = self;
        if let Some(logger) = logger {
            logger.abort();
        }
        drop(flows);
        drop(ebpf);
        tracing::info!(cgroup = %cgroup.path().display(), "detached eBPF programs");
        cgroup.remove();
    }
}

fn map<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<T, InterceptError>
where
    T: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .map_mut(name)
        .ok_or_else(|| map_error(name, &"not in the eBPF object"))?;
    T::try_from(map).map_err(|e| map_error(name, &e))
}

fn map_error(map: &'static str, detail: &dyn std::fmt::Display) -> InterceptError {
    InterceptError::Map {
        map,
        detail: detail.to_string(),
    }
}

/// Forwards `aya-log` records from the programs into `tracing` (through the `log` bridge).
fn start_log_forwarder(ebpf: &mut Ebpf) -> Option<tokio::task::JoinHandle<()>> {
    let logger = match aya_log::EbpfLogger::init(ebpf) {
        Ok(logger) => logger,
        Err(error) => {
            tracing::debug!(%error, "eBPF log forwarding unavailable");
            return None;
        }
    };
    // SAFETY: the logger owns its ring buffer's fd and never replaces or closes it while the
    // AsyncFd holds it; the fd is dropped together with the AsyncFd.
    let registered = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)
    };
    let mut logger = match registered {
        Ok(fd) => fd,
        Err(error) => {
            tracing::debug!(%error, "eBPF log forwarding unavailable");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        while let Ok(mut guard) = logger.readable_mut().await {
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    }))
}

/// The gateway's redirect addresses for the eBPF programs. Unspecified listener addresses
/// (`0.0.0.0`, `::`) redirect to loopback.
pub fn gateway_config(
    listeners: &[SocketAddr],
    gateway_tgid: u32,
) -> Result<GatewayConfig, InterceptError> {
    let mut config = GatewayConfig {
        gateway_tgid,
        ..GatewayConfig::default()
    };
    for listener in listeners {
        match listener.ip() {
            IpAddr::V4(ip) => {
                let ip = if ip.is_unspecified() {
                    std::net::Ipv4Addr::LOCALHOST
                } else {
                    ip
                };
                config.v4_addr = ip.octets();
                config.v4_port = listener.port().to_be_bytes();
                config.has_v4 = 1;
            }
            IpAddr::V6(ip) => {
                let ip = if ip.is_unspecified() {
                    std::net::Ipv6Addr::LOCALHOST
                } else {
                    ip
                };
                config.v6_addr = ip.octets();
                config.v6_port = listener.port().to_be_bytes();
                config.has_v6 = 1;
            }
        }
    }
    if config.has_v4 == 0 && config.has_v6 == 0 {
        return Err(InterceptError::Listener(
            "listener.addresses is empty: nothing to redirect to".into(),
        ));
    }
    Ok(config)
}

/// LPM trie entries for the IPv4 targets: key data is port then address, and the prefix
/// length covers the whole port plus the address prefix.
#[must_use]
pub fn target_entries_v4(targets: &[TargetConfig]) -> Vec<(Key<TargetKeyV4>, TargetValue)> {
    targets
        .iter()
        .enumerate()
        .filter_map(|(id, target)| match target.address {
            IpNet::V4(net) => {
                let port = target.port.get_ref().to_be_bytes();
                let a = net.addr().octets();
                let data = [port[0], port[1], a[0], a[1], a[2], a[3]];
                Some((
                    Key::new(TARGET_PORT_BITS + u32::from(net.prefix_len()), data),
                    target_value(id),
                ))
            }
            IpNet::V6(_) => None,
        })
        .collect()
}

/// LPM trie entries for the IPv6 targets (same layout as [`target_entries_v4`]).
#[must_use]
pub fn target_entries_v6(targets: &[TargetConfig]) -> Vec<(Key<TargetKeyV6>, TargetValue)> {
    targets
        .iter()
        .enumerate()
        .filter_map(|(id, target)| match target.address {
            IpNet::V6(net) => {
                let mut data = [0u8; 18];
                data[..2].copy_from_slice(&target.port.get_ref().to_be_bytes());
                data[2..].copy_from_slice(&net.addr().octets());
                Some((
                    Key::new(TARGET_PORT_BITS + u32::from(net.prefix_len()), data),
                    target_value(id),
                ))
            }
            IpNet::V4(_) => None,
        })
        .collect()
}

fn target_value(id: usize) -> TargetValue {
    TargetValue {
        target_id: u32::try_from(id).unwrap_or(u32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn targets() -> Vec<TargetConfig> {
        let text = r#"
[listener]
addresses = ["127.0.0.1:15306"]
[[targets]]
name = "a"
address = "198.18.0.0/24"
port = 3306
[[targets]]
name = "b"
address = "fd00:198:18::10"
port = 3307
"#;
        Config::parse(text, Path::new("t.toml"))
            .expect("config")
            .targets
    }

    #[test]
    fn v4_keys_put_the_port_first_and_count_its_bits() {
        let entries = target_entries_v4(&targets());
        assert_eq!(entries.len(), 1);
        let (key, value) = &entries[0];
        assert_eq!({ key.prefix_len() }, 16 + 24);
        assert_eq!(key.data(), [0x0c, 0xea, 198, 18, 0, 0]);
        assert_eq!(value.target_id, 0);
    }

    #[test]
    fn v6_keys_carry_target_index() {
        let entries = target_entries_v6(&targets());
        assert_eq!(entries.len(), 1);
        let (key, value) = &entries[0];
        assert_eq!({ key.prefix_len() }, 16 + 128);
        assert_eq!(&key.data()[..4], &[0x0c, 0xeb, 0xfd, 0x00]);
        assert_eq!(value.target_id, 1);
    }

    #[test]
    fn unspecified_listeners_redirect_to_loopback() {
        let config = gateway_config(
            &[
                "0.0.0.0:15306".parse().expect("addr"),
                "[::]:15307".parse().expect("addr"),
            ],
            7,
        )
        .expect("config");
        assert_eq!(config.v4_addr, [127, 0, 0, 1]);
        assert_eq!(config.v4_port, 15306u16.to_be_bytes());
        assert_eq!(config.v6_addr, std::net::Ipv6Addr::LOCALHOST.octets());
        assert_eq!(
            (config.has_v4, config.has_v6, config.gateway_tgid),
            (1, 1, 7)
        );
        assert!(gateway_config(&[], 1).is_err());
    }
}
