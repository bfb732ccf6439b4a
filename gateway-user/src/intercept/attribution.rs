//! From an accepted socket back to the process that opened it: the gateway rebuilds the
//! [`FlowKey`] that `sockops` stored and claims (reads and deletes) its [`Attribution`].

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use aya::maps::{HashMap, MapData};
use gateway_common::{Attribution, FlowKey, ipv4_unmapped};
use parking_lot::Mutex;

use crate::recording::ProcessInfo;

/// What the kernel told us about a redirected connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Index of the matched target in the configuration.
    pub target_id: usize,
    /// Where the client was connecting to.
    pub original_destination: SocketAddr,
    /// The connecting process: known for local connections (attributed by the kernel), not
    /// for routed ones (the process runs on another host; its address and port identify it).
    pub process: Option<ProcessInfo>,
}

impl Origin {
    /// The origin of a routed flow accepted on a transparent listener: `local` is the address
    /// the client was connecting to. `None` when it is no protected target (it cannot be, since
    /// the steering program only hands over flows to targets, unless the configuration changed).
    #[must_use]
    pub fn routed(config: &crate::config::Config, local: SocketAddr) -> Option<Self> {
        let ip = match local.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 @ IpAddr::V4(_) => v4,
        };
        let destination = SocketAddr::new(ip, local.port());
        let target_id = config.targets.iter().position(|t| {
            *t.port.get_ref() == destination.port() && t.address.contains(&destination.ip())
        })?;
        Some(Self {
            target_id,
            original_destination: destination,
            process: None,
        })
    }
}

impl From<&Attribution> for Origin {
    fn from(a: &Attribution) -> Self {
        let ip = match ipv4_unmapped(&a.orig_addr) {
            Some(v4) => IpAddr::from(v4),
            None => IpAddr::from(Ipv6Addr::from(a.orig_addr)),
        };
        let comm_len = a.comm.iter().position(|&b| b == 0).unwrap_or(a.comm.len());
        let comm = a.comm.get(..comm_len).unwrap_or_default();
        Self {
            target_id: a.target_id as usize,
            original_destination: SocketAddr::new(ip, a.orig_port),
            process: Some(ProcessInfo {
                pid: a.pid,
                tid: a.tid,
                uid: a.uid,
                gid: a.gid,
                comm: String::from_utf8_lossy(comm).into_owned(),
                cgroup_id: a.cgroup_id,
                cgroup_path: None,
                container_id: None,
            }),
        }
    }
}

/// The flow key `sockops` writes for a connection from `client` to the gateway at `gateway`.
#[must_use]
pub fn flow_key(client: SocketAddr, gateway: SocketAddr) -> FlowKey {
    FlowKey {
        client_addr: mapped_octets(client.ip()),
        gateway_addr: mapped_octets(gateway.ip()),
        client_port: client.port(),
        gateway_port: gateway.port(),
    }
}

fn mapped_octets(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The kernel's table of redirected flows not yet claimed. Cheap to clone.
#[derive(Clone)]
pub struct FlowTable {
    flows: Arc<Mutex<HashMap<MapData, FlowKey, Attribution>>>,
}

impl std::fmt::Debug for FlowTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowTable").finish_non_exhaustive()
    }
}

impl FlowTable {
    pub(super) fn new(flows: HashMap<MapData, FlowKey, Attribution>) -> Self {
        Self {
            flows: Arc::new(Mutex::new(flows)),
        }
    }

    /// Looks up and removes the attribution of the accepted connection `client` -> `gateway`.
    /// `None` means the connection was not redirected by Tollgate's programs (or its entry was
    /// evicted under extreme load).
    #[must_use]
    pub fn claim(&self, client: SocketAddr, gateway: SocketAddr) -> Option<Origin> {
        let key = flow_key(client, gateway);
        let mut flows = self.flows.lock();
        let attribution = flows.get(&key, 0).ok()?;
        if let Err(error) = flows.remove(&key) {
            tracing::warn!(%error, %client, "could not delete claimed flow entry");
        }
        let mut origin = Origin::from(&attribution);
        if let Some(process) = &mut origin.process {
            process.resolve_cgroup();
        }
        Some(origin)
    }
}

#[cfg(test)]
mod tests {
    use gateway_common::{AF_INET, ipv4_mapped};

    use super::*;

    #[test]
    fn flow_keys_use_mapped_ipv4_so_both_socket_families_agree() {
        let v4 = flow_key(
            "127.0.0.1:40000".parse().expect("addr"),
            "127.0.0.1:15306".parse().expect("addr"),
        );
        let mapped = flow_key(
            "[::ffff:127.0.0.1]:40000".parse().expect("addr"),
            "[::ffff:127.0.0.1]:15306".parse().expect("addr"),
        );
        assert_eq!(v4, mapped);
        assert_eq!(v4.client_addr, ipv4_mapped([127, 0, 0, 1]));
        assert_eq!((v4.client_port, v4.gateway_port), (40000, 15306));
    }

    #[test]
    fn attribution_becomes_origin() {
        let mut comm = [0u8; 16];
        comm[..7].copy_from_slice(b"mariadb");
        let origin = Origin::from(&Attribution {
            cookie: 1,
            cgroup_id: 99,
            pid: 10,
            tid: 11,
            uid: 4242,
            gid: 4243,
            target_id: 2,
            orig_port: 3306,
            family: AF_INET,
            orig_addr: ipv4_mapped([198, 18, 0, 10]),
            comm,
        });
        assert_eq!(origin.target_id, 2);
        assert_eq!(origin.original_destination.to_string(), "198.18.0.10:3306");
        let process = origin.process.expect("a local origin has its process");
        assert_eq!(process.comm, "mariadb");
        assert_eq!((process.uid, process.gid), (4242, 4243));

        let mut v6 = [0u8; 16];
        v6[0] = 0xfd;
        v6[15] = 0x10;
        let origin = Origin::from(&Attribution {
            orig_addr: v6,
            orig_port: 3306,
            ..Attribution::default()
        });
        assert_eq!(origin.original_destination.to_string(), "[fd00::10]:3306");
    }

    #[test]
    fn a_routed_flow_is_the_target_its_local_address_names() {
        let text = r#"
[listener]
addresses = ["127.0.0.1:15306"]
[[targets]]
name = "v4"
address = "198.18.2.0/24"
port = 3306
[[targets]]
name = "v6"
address = "fd00:198:18:2::2"
port = 3306
"#;
        let config =
            crate::config::Config::parse(text, std::path::Path::new("t.toml")).expect("config");
        let v4 = Origin::routed(&config, "198.18.2.9:3306".parse().expect("addr")).expect("v4");
        assert_eq!((v4.target_id, v4.process), (0, None));
        assert_eq!(v4.original_destination.to_string(), "198.18.2.9:3306");
        // An IPv4 flow accepted on a dual-stack socket shows its address IPv4-mapped.
        let mapped = Origin::routed(&config, "[::ffff:198.18.2.9]:3306".parse().expect("addr"))
            .expect("mapped");
        assert_eq!(mapped.original_destination.to_string(), "198.18.2.9:3306");
        let v6 =
            Origin::routed(&config, "[fd00:198:18:2::2]:3306".parse().expect("addr")).expect("v6");
        assert_eq!(v6.target_id, 1);
        assert!(Origin::routed(&config, "198.18.2.9:3307".parse().expect("addr")).is_none());
        assert!(Origin::routed(&config, "198.18.3.1:3306".parse().expect("addr")).is_none());
    }
}
