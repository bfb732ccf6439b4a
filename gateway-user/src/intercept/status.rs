//! `tollgate status`: what `tollgate up` pinned, read back from bpffs: the links (programs and
//! where they are attached), the gateway the programs steer to, the protected targets and
//! hosts, unclaimed flows and the data path's counters.

use std::{
    fmt,
    net::{Ipv4Addr, Ipv6Addr},
    path::Path,
};

use aya::maps::{Array, HashMap, LpmTrie, MapData, PerCpuArray};
use gateway_common::{
    Attribution, FlowKey, GatewayConfig, HostKeyV4, HostKeyV6, HostValue, MAP_COUNTERS, MAP_FLOWS,
    MAP_GATEWAY, MAP_HOSTS_V4, MAP_HOSTS_V6, MAP_TARGETS_V4, MAP_TARGETS_V6, TARGET_PORT_BITS,
    TargetKeyV4, TargetKeyV6, TargetValue,
};
use serde::Serialize;

use super::{InterceptError, loader::pinned_map, map_error_of, routes::PolicyRoutes};
use crate::config::Config;

/// Everything `tollgate status` shows.
#[derive(Debug, Serialize)]
pub struct Status {
    /// Where the programs are pinned.
    pub pin_path: String,
    /// True when `tollgate up` has pinned them.
    pub up: bool,
    /// Pinned links: `program_interface` or `program` (cgroup programs).
    pub links: Vec<String>,
    /// The gateway the programs steer to.
    pub gateway: Option<GatewayStatus>,
    /// Protected targets (`address/prefix port N -> target`).
    pub targets: Vec<String>,
    /// Protected hosts (`address/prefix -> target`), every port.
    pub hosts: Vec<String>,
    /// Redirected local flows not yet claimed by the gateway.
    pub unclaimed_flows: usize,
    /// Data-path counters, summed over CPUs.
    pub counters: Vec<(String, u64)>,
    /// True when the policy routes for routed steering are installed.
    pub policy_routes: bool,
}

/// The `GATEWAY` map, readable.
#[derive(Debug, Serialize)]
pub struct GatewayStatus {
    /// IPv4 listener for local redirects.
    pub listener_v4: Option<String>,
    /// IPv6 listener for local redirects.
    pub listener_v6: Option<String>,
    /// Port of the transparent listeners for routed flows (0: no routed steering).
    pub routed_port: u16,
    /// Mark of steered routed packets.
    pub mark: u32,
    /// The gateway's cgroup id (0: none).
    pub cgroup_id: u64,
    /// The gateway's process id, as last written (0: not started since `up`).
    pub pid: u32,
    /// True when that process is alive.
    pub running: bool,
}

impl Status {
    /// Reads the pinned maps of `config`'s `pin_path`.
    pub fn read(config: &Config) -> Result<Self, InterceptError> {
        let interception = &config.interception;
        let pins = &interception.pin_path;
        let mut status = Self {
            pin_path: pins.display().to_string(),
            up: super::is_up(interception),
            links: Vec::new(),
            gateway: None,
            targets: Vec::new(),
            hosts: Vec::new(),
            unclaimed_flows: 0,
            counters: Vec::new(),
            policy_routes: PolicyRoutes::new(interception.routed.mark).installed(),
        };
        if !status.up {
            return Ok(status);
        }
        if let Ok(entries) = std::fs::read_dir(pins) {
            let mut links: Vec<String> = entries
                .flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_prefix("link_")
                        .map(str::to_owned)
                })
                .collect();
            links.sort();
            status.links = links;
        }
        status.gateway = Some(read_gateway(pins)?);
        status.targets = read_targets(pins, config)?;
        status.hosts = read_hosts(pins, config)?;
        let flows: HashMap<MapData, FlowKey, Attribution> = pinned_map(pins, MAP_FLOWS)?;
        status.unclaimed_flows = flows.keys().count();
        let counters: PerCpuArray<MapData, u64> = pinned_map(pins, MAP_COUNTERS)?;
        status.counters = super::counters::read(&counters)?;
        Ok(status)
    }

    /// The value of the counter named `name`.
    #[must_use]
    pub fn counter(&self, name: &str) -> Option<u64> {
        self.counters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }
}

fn read_gateway(pins: &Path) -> Result<GatewayStatus, InterceptError> {
    let map: Array<MapData, GatewayConfig> = pinned_map(pins, MAP_GATEWAY)?;
    let g = map.get(&0, 0).map_err(|e| map_error_of(MAP_GATEWAY, &e))?;
    let pid = g.gateway_tgid;
    Ok(GatewayStatus {
        listener_v4: (g.has_v4 != 0).then(|| {
            format!(
                "{}:{}",
                Ipv4Addr::from(g.v4_addr),
                u16::from_be_bytes(g.v4_port)
            )
        }),
        listener_v6: (g.has_v6 != 0).then(|| {
            format!(
                "[{}]:{}",
                Ipv6Addr::from(g.v6_addr),
                u16::from_be_bytes(g.v6_port)
            )
        }),
        routed_port: u16::from_be_bytes(g.routed_port),
        mark: g.mark,
        cgroup_id: g.gateway_cgroup_id,
        pid,
        running: pid != 0 && Path::new(&format!("/proc/{pid}")).exists(),
    })
}

fn target_name(config: &Config, id: u32) -> String {
    config
        .targets
        .get(id as usize)
        .map_or_else(|| format!("#{id}"), |t| t.name.get_ref().clone())
}

fn read_targets(pins: &Path, config: &Config) -> Result<Vec<String>, InterceptError> {
    let mut out = Vec::new();
    let v4: LpmTrie<MapData, TargetKeyV4, TargetValue> = pinned_map(pins, MAP_TARGETS_V4)?;
    for (key, value) in v4.iter().flatten() {
        let d = key.data();
        out.push(format!(
            "{}/{} port {} -> {}",
            Ipv4Addr::new(d[2], d[3], d[4], d[5]),
            key.prefix_len() - TARGET_PORT_BITS,
            u16::from_be_bytes([d[0], d[1]]),
            target_name(config, value.target_id)
        ));
    }
    let v6: LpmTrie<MapData, TargetKeyV6, TargetValue> = pinned_map(pins, MAP_TARGETS_V6)?;
    for (key, value) in v6.iter().flatten() {
        let d = key.data();
        let mut addr = [0u8; 16];
        addr.copy_from_slice(&d[2..]);
        out.push(format!(
            "{}/{} port {} -> {}",
            Ipv6Addr::from(addr),
            key.prefix_len() - TARGET_PORT_BITS,
            u16::from_be_bytes([d[0], d[1]]),
            target_name(config, value.target_id)
        ));
    }
    Ok(out)
}

fn read_hosts(pins: &Path, config: &Config) -> Result<Vec<String>, InterceptError> {
    let mut out = Vec::new();
    let v4: LpmTrie<MapData, HostKeyV4, HostValue> = pinned_map(pins, MAP_HOSTS_V4)?;
    for (key, value) in v4.iter().flatten() {
        out.push(format!(
            "{}/{} -> {}",
            Ipv4Addr::from(key.data()),
            key.prefix_len(),
            target_name(config, value.target_id)
        ));
    }
    let v6: LpmTrie<MapData, HostKeyV6, HostValue> = pinned_map(pins, MAP_HOSTS_V6)?;
    for (key, value) in v6.iter().flatten() {
        out.push(format!(
            "{}/{} -> {}",
            Ipv6Addr::from(key.data()),
            key.prefix_len(),
            target_name(config, value.target_id)
        ));
    }
    Ok(out)
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.up {
            writeln!(f, "tollgate is down (nothing pinned in {})", self.pin_path)?;
            return Ok(());
        }
        writeln!(f, "tollgate is up (pinned in {})", self.pin_path)?;
        writeln!(f, "programs attached:")?;
        for link in &self.links {
            writeln!(f, "  {link}")?;
        }
        if let Some(g) = &self.gateway {
            writeln!(
                f,
                "gateway: {} (pid {}, cgroup id {}), listeners {} {}, routed port {}, mark {:#x}",
                if g.running {
                    "running"
                } else {
                    "NOT RUNNING: protected traffic is dropped"
                },
                g.pid,
                g.cgroup_id,
                g.listener_v4.as_deref().unwrap_or("-"),
                g.listener_v6.as_deref().unwrap_or("-"),
                g.routed_port,
                g.mark
            )?;
        }
        writeln!(
            f,
            "policy routes: {}",
            if self.policy_routes {
                "installed"
            } else {
                "absent"
            }
        )?;
        writeln!(f, "protected targets:")?;
        for target in &self.targets {
            writeln!(f, "  {target}")?;
        }
        writeln!(f, "protected hosts (every port):")?;
        for host in &self.hosts {
            writeln!(f, "  {host}")?;
        }
        writeln!(f, "unclaimed local flows: {}", self.unclaimed_flows)?;
        writeln!(f, "counters:")?;
        for (name, value) in &self.counters {
            writeln!(f, "  {name:<36} {value}")?;
        }
        Ok(())
    }
}
