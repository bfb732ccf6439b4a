//! Loads the embedded eBPF object, fills its maps from the configuration and attaches the
//! programs: the cgroup programs to the scope cgroup, XDP and TC ingress to the routed
//! (client-facing) interfaces, TC egress to the egress (database-facing) interfaces.
//!
//! Two lifecycles share this code:
//! - `tollgate up` attaches and pins every link and map under `interception.pin_path`, so they
//!   outlive any process; `tollgate serve` then only opens the pinned maps and writes its
//!   listener and identity into them. A gateway restart opens no gap: while it is down,
//!   protected traffic has nowhere to go and is dropped (fail-closed).
//! - `tollgate serve` alone (nothing pinned) attaches for its own lifetime and detaches at exit.

use std::{
    fs::File,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

use aya::{
    Ebpf,
    maps::{Array, HashMap, LpmTrie, Map, MapData, PerCpuArray, SockMap, lpm_trie::Key},
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, SchedClassifier,
        SkLookup, SockOps, TcAttachType, Xdp, links::FdLink, xdp::XdpMode,
    },
};
use gateway_common::{
    GatewayConfig, HostKeyV4, HostKeyV6, HostValue, LISTENER_V4, LISTENER_V6, MAP_COUNTERS,
    MAP_FLOWS, MAP_GATEWAY, MAP_HOSTS_V4, MAP_HOSTS_V6, MAP_LISTENERS, MAP_PENDING, MAP_TARGETS_V4,
    MAP_TARGETS_V6, PROG_CGROUP_EGRESS, PROG_CONNECT4, PROG_CONNECT6, PROG_SK_LOOKUP, PROG_SOCKOPS,
    PROG_TC_EGRESS, PROG_TC_STEER, PROG_XDP_GUARD, TARGET_PORT_BITS, TargetKeyV4, TargetKeyV6,
    TargetValue,
};
use ipnet::IpNet;

use super::{
    FlowTable, InterceptError, ManagedCgroup, cgroup, privilege, routes, routes::PolicyRoutes,
};
use crate::config::{Config, InterceptionConfig, TargetConfig, XdpAttachMode};

/// The eBPF object built by `build.rs` (empty when built with `AYA_BUILD_SKIP=1`).
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tollgate"));

/// Every map `tollgate up` pins (the file name in `pin_path` is the map's name).
pub const PINNED_MAPS: [&str; 9] = [
    MAP_GATEWAY,
    MAP_LISTENERS,
    MAP_TARGETS_V4,
    MAP_TARGETS_V6,
    MAP_HOSTS_V4,
    MAP_HOSTS_V6,
    MAP_PENDING,
    MAP_FLOWS,
    MAP_COUNTERS,
];

/// Where local steering applies: a cgroup Tollgate manages, or the whole host.
#[derive(Debug)]
enum Scope {
    /// A cgroup below a cgroup v2 mount's root.
    Managed(ManagedCgroup),
    /// The root of the cgroup v2 mount: every process on the host.
    Host(PathBuf),
}

impl Scope {
    fn prepare(config: &InterceptionConfig) -> Result<Self, InterceptError> {
        match &config.cgroup {
            Some(path) => Ok(Self::Managed(ManagedCgroup::prepare(path)?)),
            None => cgroup::cgroup2_mount()
                .map(Self::Host)
                .ok_or(InterceptError::Missing(
                    "a cgroup v2 mount (for the host scope)",
                )),
        }
    }

    fn path(&self) -> &Path {
        match self {
            Self::Managed(cgroup) => cgroup.path(),
            Self::Host(root) => root,
        }
    }

    fn remove(self) {
        if let Self::Managed(cgroup) = self {
            cgroup.remove();
        }
    }
}

/// Live interception: programs attached (by this process or pinned by `tollgate up`), maps
/// filled.
pub struct Interceptor {
    /// This process's own attachment (nothing pinned): dropping it detaches everything.
    owned: Option<Owned>,
    flows: FlowTable,
    /// The sockmap the `sk_lookup` program picks routed flows' listener from.
    listeners: SockMap<MapData>,
    scope_path: PathBuf,
    logger: Option<tokio::task::JoinHandle<()>>,
}

/// What `tollgate serve` attached by itself.
struct Owned {
    ebpf: Ebpf,
    links: Vec<FdLink>,
    scope: Scope,
    routes: Option<PolicyRoutes>,
}

impl std::fmt::Debug for Interceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interceptor")
            .field("scope", &self.scope_path)
            .field("pinned", &self.owned.is_none())
            .finish_non_exhaustive()
    }
}

impl Interceptor {
    /// True when this binary carries the eBPF programs.
    #[must_use]
    pub fn is_built() -> bool {
        !EBPF_OBJECT.is_empty()
    }

    /// Starts interception for `tollgate serve`. `listeners` are the addresses the gateway
    /// actually listens on. Joins the gateway's own cgroup first when one is needed. When
    /// `tollgate up` has pinned the programs, only writes this gateway into the pinned maps;
    /// otherwise attaches everything for this process's lifetime. Must run inside a tokio
    /// runtime (the eBPF log forwarder is a task).
    pub fn start(config: &Config, listeners: &[SocketAddr]) -> Result<Self, InterceptError> {
        check_can_load()?;
        let interception = &config.interception;
        let (gateway, gateway_cgroup) = gateway_entry(interception, listeners, std::process::id())?;
        if let Some(path) = gateway_cgroup {
            cgroup::join_cgroup(&path)?;
        }
        if is_up(interception) {
            return Self::adopt_pinned(interception, gateway);
        }
        check_families(config, &gateway)?;
        let scope = Scope::prepare(interception)?;
        let scope_path = scope.path().to_owned();
        // From here on, a failure must undo the cgroup.
        match Attachment::attach(config, &scope, gateway, None) {
            Ok(mut attachment) => {
                let routes = if interception.routed.interfaces.is_empty() {
                    None
                } else {
                    let routes = PolicyRoutes::new(interception.routed.mark);
                    if let Err(error) = routes.install() {
                        scope.remove();
                        return Err(error.into());
                    }
                    Some(routes)
                };
                let logger = start_log_forwarder(&mut attachment.ebpf);
                if let Some(map) = attachment.ebpf.take_map(MAP_COUNTERS)
                    && let Ok(counters) = PerCpuArray::try_from(map)
                {
                    super::counters::publish(counters);
                }
                Ok(Self {
                    flows: attachment.flows,
                    listeners: attachment.listeners,
                    owned: Some(Owned {
                        ebpf: attachment.ebpf,
                        links: attachment.links,
                        scope,
                        routes,
                    }),
                    scope_path,
                    logger,
                })
            }
            Err(error) => {
                scope.remove();
                Err(error)
            }
        }
    }

    /// Writes this gateway into the maps `tollgate up` pinned and opens the flow table.
    fn adopt_pinned(
        interception: &InterceptionConfig,
        gateway: GatewayConfig,
    ) -> Result<Self, InterceptError> {
        let pins = &interception.pin_path;
        let mut gateway_map: Array<MapData, GatewayConfig> = pinned_map(pins, MAP_GATEWAY)?;
        gateway_map
            .set(0, gateway, 0)
            .map_err(|e| map_error(MAP_GATEWAY, &e))?;
        let flows: HashMap<MapData, _, _> = pinned_map(pins, MAP_FLOWS)?;
        let listeners: SockMap<MapData> = pinned_map(pins, MAP_LISTENERS)?;
        super::counters::publish(pinned_map(pins, MAP_COUNTERS)?);
        tracing::info!(pin_path = %pins.display(), "using the programs pinned by `tollgate up`");
        Ok(Self {
            owned: None,
            flows: FlowTable::new(flows),
            listeners,
            scope_path: interception
                .cgroup
                .clone()
                .or_else(cgroup::cgroup2_mount)
                .unwrap_or_default(),
            logger: None,
        })
    }

    /// Puts the transparent listeners for routed flows where the `sk_lookup` program finds
    /// them. The kernel takes a listener out of the map when it closes.
    pub fn register_routed_listeners(
        &mut self,
        listeners: &[tokio::net::TcpListener],
    ) -> Result<(), InterceptError> {
        for listener in listeners {
            let slot = match listener.local_addr() {
                Ok(addr) if addr.is_ipv4() => LISTENER_V4,
                Ok(_) => LISTENER_V6,
                Err(e) => return Err(map_error(MAP_LISTENERS, &e)),
            };
            self.listeners
                .set(slot, listener, 0)
                .map_err(|e| map_error(MAP_LISTENERS, &e))?;
        }
        Ok(())
    }

    /// The table of redirected flows, for sessions to claim their origin.
    #[must_use]
    pub fn flows(&self) -> FlowTable {
        self.flows.clone()
    }

    /// The scope cgroup's directory.
    #[must_use]
    pub fn cgroup_path(&self) -> &Path {
        &self.scope_path
    }

    /// Detaches every program this process attached (pinned ones stay), removes its policy
    /// routes, then removes the cgroup if Tollgate created it.
    pub fn stop(self) {
        let Self {
            owned,
            flows,
            listeners,
            logger,
            ..
        } = self;
        if let Some(logger) = logger {
            logger.abort();
        }
        drop(flows);
        drop(listeners);
        let Some(owned) = owned else {
            tracing::info!("programs stay attached (pinned by `tollgate up`)");
            return;
        };
        let Owned {
            ebpf,
            links,
            scope,
            routes,
        } = owned;
        drop(links);
        drop(ebpf);
        if let Some(routes) = routes {
            routes.remove();
        }
        tracing::info!(cgroup = %scope.path().display(), "detached eBPF programs");
        scope.remove();
    }
}

/// `tollgate up`: attaches every program and pins links and maps under `pin_path`, creates the
/// gateway's cgroup and installs the policy routes. Returns what was pinned.
pub fn up(config: &Config) -> Result<Vec<PathBuf>, InterceptError> {
    check_can_load()?;
    let interception = &config.interception;
    if is_up(interception) {
        return Err(InterceptError::AlreadyUp(interception.pin_path.clone()));
    }
    let listeners: Vec<SocketAddr> = config
        .listener
        .addresses
        .iter()
        .map(|a| *a.get_ref())
        .collect();
    // The gateway is not running yet: no process id; its cgroup is known.
    let (gateway, _) = gateway_entry(interception, &listeners, 0)?;
    check_families(config, &gateway)?;
    mount_bpffs(&interception.pin_path)?;
    let scope = Scope::prepare(interception)?;
    let pins = &interception.pin_path;
    let attachment = match Attachment::attach(config, &scope, gateway, Some(pins)) {
        Ok(attachment) => attachment,
        Err(error) => {
            // Nothing half-pinned stays behind.
            let _ = std::fs::remove_dir_all(pins);
            return Err(error);
        }
    };
    let mut pinned: Vec<PathBuf> = PINNED_MAPS.iter().map(|name| pins.join(name)).collect();
    for (link, name) in attachment.links.into_iter().zip(attachment.names) {
        let path = pins.join(format!("link_{name}"));
        link.pin(&path).map_err(|e| pin_error(&path, &e))?;
        pinned.push(path);
    }
    if !interception.routed.interfaces.is_empty() {
        PolicyRoutes::new(interception.routed.mark).install()?;
    }
    Ok(pinned)
}

/// `tollgate down`: unpins (and so detaches) everything `up` pinned, removes the policy routes
/// and the cgroups Tollgate manages when they are empty. Returns what was removed.
pub fn down(config: &Config) -> Result<Vec<String>, InterceptError> {
    if !privilege::can_load_ebpf() {
        return Err(InterceptError::NotPrivileged);
    }
    let interception = &config.interception;
    let mut removed = Vec::new();
    let pins = &interception.pin_path;
    if let Ok(entries) = std::fs::read_dir(pins) {
        for entry in entries.flatten() {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| pin_error(&path, &e))?;
            removed.push(path.display().to_string());
        }
        std::fs::remove_dir(pins).map_err(|e| pin_error(pins, &e))?;
    }
    let routes = PolicyRoutes::new(interception.routed.mark);
    if routes.installed() {
        routes.remove();
        removed.push(format!(
            "policy routes (fwmark {0}, table {0})",
            interception.routed.mark
        ));
    }
    let gateway_cgroup = gateway_cgroup_path(interception)?;
    for path in interception.cgroup.iter().chain(gateway_cgroup.iter()) {
        if path.is_dir()
            && !cgroup::is_mount_root(path)
            && !cgroup::has_processes(path)
            && std::fs::remove_dir(path).is_ok()
        {
            removed.push(path.display().to_string());
        }
    }
    Ok(removed)
}

/// The `GATEWAY` map's entry for a gateway listening on `listeners` as process `tgid` (0: not
/// running yet), with its cgroup created when it needs one (returned, for it to join).
fn gateway_entry(
    interception: &InterceptionConfig,
    listeners: &[SocketAddr],
    tgid: u32,
) -> Result<(GatewayConfig, Option<PathBuf>), InterceptError> {
    let mut gateway = gateway_config(listeners, tgid)?;
    gateway.mark = interception.routed.mark;
    if !interception.routed.interfaces.is_empty() {
        gateway.routed_port = interception.routed.port.to_be_bytes();
    }
    let gateway_cgroup = gateway_cgroup_path(interception)?;
    if let Some(path) = &gateway_cgroup {
        gateway.gateway_cgroup_id = cgroup::ensure_cgroup(path)?;
    }
    Ok((gateway, gateway_cgroup))
}

/// True when `tollgate up` has pinned the programs at `pin_path`.
#[must_use]
pub fn is_up(interception: &InterceptionConfig) -> bool {
    interception.pin_path.join(MAP_GATEWAY).exists()
}

/// Opens one map `tollgate up` pinned.
pub(crate) fn pinned_map<T>(pins: &Path, name: &'static str) -> Result<T, InterceptError>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    let data = MapData::from_pin(pins.join(name)).map_err(|e| map_error(name, &e))?;
    let map = Map::from_map_data(data).map_err(|e| map_error(name, &e))?;
    T::try_from(map).map_err(|e| map_error(name, &e))
}

/// The gateway's own cgroup, when it needs one (explicit, or the default beside the host's
/// cgroup root).
pub fn gateway_cgroup_path(
    interception: &InterceptionConfig,
) -> Result<Option<PathBuf>, InterceptError> {
    if !interception.needs_gateway_cgroup() {
        return Ok(None);
    }
    match &interception.gateway_cgroup {
        Some(path) => Ok(Some(path.clone())),
        None => cgroup::cgroup2_mount()
            .map(|root| Some(root.join("tollgate-gateway")))
            .ok_or(InterceptError::Missing(
                "a cgroup v2 mount (for the gateway's cgroup)",
            )),
    }
}

fn check_can_load() -> Result<(), InterceptError> {
    if !Interceptor::is_built() {
        return Err(InterceptError::NotBuilt);
    }
    if !privilege::can_load_ebpf() {
        return Err(InterceptError::NotPrivileged);
    }
    Ok(())
}

fn check_families(config: &Config, gateway: &GatewayConfig) -> Result<(), InterceptError> {
    if !target_entries_v4(&config.targets).is_empty() && gateway.has_v4 == 0 {
        return Err(InterceptError::Listener(
            "IPv4 targets are configured but listener.addresses has no IPv4 address: add one, \
             e.g. \"127.0.0.1:15306\""
                .into(),
        ));
    }
    if !target_entries_v6(&config.targets).is_empty() && gateway.has_v6 == 0 {
        return Err(InterceptError::Listener(
            "IPv6 targets are configured but listener.addresses has no IPv6 address: add one, \
             e.g. \"[::1]:15306\""
                .into(),
        ));
    }
    Ok(())
}

/// Mounts bpffs on the pin path's mount point (`/sys/fs/bpf`) when nothing is mounted there.
fn mount_bpffs(pins: &Path) -> Result<(), InterceptError> {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let root = Path::new("/sys/fs/bpf");
    if !pins.starts_with(root) {
        return Ok(());
    }
    if cgroup::is_filesystem(root, BPF_FS_MAGIC) {
        return Ok(());
    }
    nix::mount::mount(
        Some("bpf"),
        root,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| {
        InterceptError::Missing(if e == nix::errno::Errno::ENODEV {
            "bpffs (the kernel has no BPF filesystem: CONFIG_BPF_SYSCALL)"
        } else {
            "bpffs at /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf)"
        })
    })
}

/// Programs loaded and attached, maps filled.
struct Attachment {
    ebpf: Ebpf,
    links: Vec<FdLink>,
    /// Pin names of `links`, in order.
    names: Vec<String>,
    flows: FlowTable,
    listeners: SockMap<MapData>,
}

impl Attachment {
    /// Loads, fills the maps (and pins them in `pins` when given), then attaches.
    fn attach(
        config: &Config,
        scope: &Scope,
        gateway: GatewayConfig,
        pins: Option<&Path>,
    ) -> Result<Self, InterceptError> {
        let mut ebpf = Ebpf::load(EBPF_OBJECT)?;
        // Maps first: a program attached before its maps are filled would let traffic through
        // unsteered.
        fill_maps(&mut ebpf, config, gateway)?;
        if let Some(pins) = pins {
            std::fs::create_dir_all(pins).map_err(|e| pin_error(pins, &e))?;
            for name in PINNED_MAPS {
                let path = pins.join(name);
                ebpf.map(name)
                    .ok_or_else(|| map_error(name, &"not in the eBPF object"))?
                    .pin(&path)
                    .map_err(|e| pin_error(&path, &e))?;
            }
        }
        let flows = ebpf
            .take_map(MAP_FLOWS)
            .ok_or_else(|| map_error(MAP_FLOWS, &"not in the eBPF object"))?;
        let flows = FlowTable::new(HashMap::try_from(flows).map_err(|e| map_error(MAP_FLOWS, &e))?);
        let listeners = ebpf
            .take_map(MAP_LISTENERS)
            .ok_or_else(|| map_error(MAP_LISTENERS, &"not in the eBPF object"))?;
        let listeners = SockMap::try_from(listeners).map_err(|e| map_error(MAP_LISTENERS, &e))?;
        let mut attachment = Self {
            ebpf,
            links: Vec::new(),
            names: Vec::new(),
            flows,
            listeners,
        };
        let interception = &config.interception;
        // Egress first, then ingress, then the cgroup programs: enforcement is in place before
        // anything is steered.
        for interface in &interception.egress.interfaces {
            attachment.attach_tc(PROG_TC_EGRESS, interface, TcAttachType::Egress)?;
        }
        if !interception.routed.interfaces.is_empty() {
            attachment.attach_sk_lookup()?;
        }
        for interface in &interception.routed.interfaces {
            attachment.attach_xdp(interface, interception.routed.xdp_mode)?;
            attachment.attach_tc(PROG_TC_STEER, interface, TcAttachType::Ingress)?;
        }
        attachment.attach_cgroup(scope.path())?;
        Ok(attachment)
    }

    /// Finds program `name`, loads and attaches it with `attach` (which returns its link), and
    /// keeps the link as a plain BPF link named `pin_name`; the kernel lacks `feature` when the
    /// link is no BPF link.
    fn keep_link<P, L>(
        &mut self,
        name: &'static str,
        pin_name: String,
        feature: &'static str,
        attach: impl FnOnce(&mut P) -> Result<L, InterceptError>,
    ) -> Result<(), InterceptError>
    where
        for<'a> &'a mut P:
            TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
        FdLink: TryFrom<L>,
        <FdLink as TryFrom<L>>::Error: std::fmt::Display,
    {
        let link = attach(program::<P>(&mut self.ebpf, name)?)?;
        let link = fd_link(name, feature, link)?;
        self.push(link, pin_name);
        Ok(())
    }

    fn attach_tc(
        &mut self,
        name: &'static str,
        interface: &str,
        kind: TcAttachType,
    ) -> Result<(), InterceptError> {
        let pin_name = format!("{name}_{interface}");
        let feature = "TCX links (kernel 6.6 or later)";
        self.keep_link(name, pin_name, feature, |program: &mut SchedClassifier| {
            load_once(name, program.load(), program.fd().is_ok())?;
            let id = program
                .attach(interface, kind)
                .map_err(|source| interface_error(name, interface, source))?;
            program
                .take_link(id)
                .map_err(|source| InterceptError::program(name, source))
        })
    }

    /// `sk_lookup` on this process's network namespace (the bastion's).
    fn attach_sk_lookup(&mut self) -> Result<(), InterceptError> {
        let name = PROG_SK_LOOKUP;
        let netns = File::open("/proc/self/ns/net").map_err(|e| InterceptError::Feature {
            program: name,
            feature: "network namespaces (/proc/self/ns/net)",
            detail: e.to_string(),
        })?;
        let feature = "sk_lookup programs (kernel 5.9 or later)";
        self.keep_link(name, name.to_owned(), feature, |program: &mut SkLookup| {
            program
                .load()
                .map_err(|source| InterceptError::program(name, source))?;
            let id = program
                .attach(&netns)
                .map_err(|e| InterceptError::Feature {
                    program: name,
                    feature,
                    detail: e.to_string(),
                })?;
            program
                .take_link(id)
                .map_err(|source| InterceptError::program(name, source))
        })
    }

    /// XDP on `interface`: in `mode`; `auto` is native on a physical interface and generic on a
    /// virtual one (a veth: native XDP there copies every multi-segment packet, generic mode
    /// does not).
    fn attach_xdp(&mut self, interface: &str, mode: XdpAttachMode) -> Result<(), InterceptError> {
        let name = PROG_XDP_GUARD;
        let generic = match mode {
            XdpAttachMode::Native => false,
            XdpAttachMode::Generic => true,
            XdpAttachMode::Auto => routes::is_virtual(interface),
        };
        let first = if generic {
            XdpMode::Skb
        } else {
            XdpMode::Default
        };
        let pin_name = format!("{name}_{interface}");
        let feature = "XDP links (kernel 5.9 or later)";
        self.keep_link(name, pin_name, feature, |program: &mut Xdp| {
            load_once(name, program.load(), program.fd().is_ok())?;
            // Failing the chosen mode, generic (skb) mode, which every interface has.
            let id = match program.attach(interface, first) {
                Ok(id) => id,
                Err(_) => program
                    .attach(interface, XdpMode::Skb)
                    .map_err(|source| interface_error(name, interface, source))?,
            };
            program
                .take_link(id)
                .map_err(|source| InterceptError::program(name, source))
        })
    }

    fn attach_cgroup(&mut self, path: &Path) -> Result<(), InterceptError> {
        let file = File::open(path).map_err(|source| InterceptError::OpenCgroup {
            path: path.to_owned(),
            source,
        })?;
        // Through BPF links (flags 0): links always run beside other programs on the cgroup,
        // so on the host scope other tools' programs on the root cgroup stay.
        let mode = CgroupAttachMode::Single;
        let failed = |name| move |source| InterceptError::program(name, source);
        // The egress rule before any redirect; sockops before connect4/6, so a connect
        // redirected the moment connect4 is attached is already re-keyed when its handshake
        // completes.
        let name = PROG_CGROUP_EGRESS;
        self.keep_link(
            name,
            name.to_owned(),
            CGROUP_LINKS,
            |program: &mut CgroupSkb| {
                program
                    .load()
                    .and_then(|()| program.attach(&file, CgroupSkbAttachType::Egress, mode))
                    .and_then(|id| program.take_link(id))
                    .map_err(failed(name))
            },
        )?;
        let name = PROG_SOCKOPS;
        self.keep_link(
            name,
            name.to_owned(),
            CGROUP_LINKS,
            |program: &mut SockOps| {
                program
                    .load()
                    .and_then(|()| program.attach(&file, mode))
                    .and_then(|id| program.take_link(id))
                    .map_err(failed(name))
            },
        )?;
        for name in [PROG_CONNECT4, PROG_CONNECT6] {
            self.keep_link(
                name,
                name.to_owned(),
                CGROUP_LINKS,
                |program: &mut CgroupSockAddr| {
                    program
                        .load()
                        .and_then(|()| program.attach(&file, mode))
                        .and_then(|id| program.take_link(id))
                        .map_err(failed(name))
                },
            )?;
        }
        Ok(())
    }

    fn push(&mut self, link: FdLink, name: String) {
        self.links.push(link);
        self.names.push(name);
    }
}

/// What cgroup programs need to be attached as links.
const CGROUP_LINKS: &str = "cgroup BPF links (kernel 5.7 or later)";

/// A program's link as a plain BPF link (pinnable); the kernel lacks `feature` otherwise.
fn fd_link<L>(name: &'static str, feature: &'static str, link: L) -> Result<FdLink, InterceptError>
where
    FdLink: TryFrom<L>,
    <FdLink as TryFrom<L>>::Error: std::fmt::Display,
{
    FdLink::try_from(link).map_err(|e| InterceptError::Feature {
        program: name,
        feature,
        detail: e.to_string(),
    })
}

/// A program used on several interfaces is loaded once.
fn load_once(
    name: &'static str,
    loaded: Result<(), aya::programs::ProgramError>,
    was_loaded: bool,
) -> Result<(), InterceptError> {
    match loaded {
        Ok(()) => Ok(()),
        Err(aya::programs::ProgramError::AlreadyLoaded) if was_loaded => Ok(()),
        Err(source) => Err(InterceptError::program(name, source)),
    }
}

fn interface_error(
    program: &'static str,
    interface: &str,
    source: aya::programs::ProgramError,
) -> InterceptError {
    InterceptError::Interface {
        program,
        interface: interface.to_owned(),
        source,
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, InterceptError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(InterceptError::Program {
            program: name,
            source: aya::programs::ProgramError::UnexpectedProgramType,
        })?
        .try_into()
        .map_err(|source| InterceptError::program(name, source))
}

fn fill_maps(
    ebpf: &mut Ebpf,
    config: &Config,
    gateway: GatewayConfig,
) -> Result<(), InterceptError> {
    let mut gateway_map: Array<_, GatewayConfig> = map(ebpf, MAP_GATEWAY)?;
    gateway_map
        .set(0, gateway, 0)
        .map_err(|e| map_error(MAP_GATEWAY, &e))?;
    let mut targets_v4: LpmTrie<_, TargetKeyV4, TargetValue> = map(ebpf, MAP_TARGETS_V4)?;
    for (key, value) in target_entries_v4(&config.targets) {
        targets_v4
            .insert(&key, value, 0)
            .map_err(|e| map_error(MAP_TARGETS_V4, &e))?;
    }
    let mut targets_v6: LpmTrie<_, TargetKeyV6, TargetValue> = map(ebpf, MAP_TARGETS_V6)?;
    for (key, value) in target_entries_v6(&config.targets) {
        targets_v6
            .insert(&key, value, 0)
            .map_err(|e| map_error(MAP_TARGETS_V6, &e))?;
    }
    let (hosts_v4, hosts_v6) = host_entries(&config.targets);
    let mut map_v4: LpmTrie<_, HostKeyV4, HostValue> = map(ebpf, MAP_HOSTS_V4)?;
    for (key, value) in hosts_v4 {
        map_v4
            .insert(&key, value, 0)
            .map_err(|e| map_error(MAP_HOSTS_V4, &e))?;
    }
    let mut map_v6: LpmTrie<_, HostKeyV6, HostValue> = map(ebpf, MAP_HOSTS_V6)?;
    for (key, value) in hosts_v6 {
        map_v6
            .insert(&key, value, 0)
            .map_err(|e| map_error(MAP_HOSTS_V6, &e))?;
    }
    Ok(())
}

/// LPM trie entries of one family's protected hosts.
pub type HostEntries<K> = Vec<(Key<K>, HostValue)>;

/// LPM trie entries of the protected hosts (every target's address prefix, any port).
#[must_use]
pub fn host_entries(targets: &[TargetConfig]) -> (HostEntries<HostKeyV4>, HostEntries<HostKeyV6>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for (id, target) in targets.iter().enumerate() {
        let value = HostValue {
            target_id: target_value(id).target_id,
        };
        match target.address {
            IpNet::V4(net) => v4.push((
                Key::new(u32::from(net.prefix_len()), net.addr().octets()),
                value,
            )),
            IpNet::V6(net) => v6.push((
                Key::new(u32::from(net.prefix_len()), net.addr().octets()),
                value,
            )),
        }
    }
    (v4, v6)
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

fn pin_error(path: &Path, detail: &dyn std::fmt::Display) -> InterceptError {
    InterceptError::Pin {
        path: path.to_owned(),
        detail: detail.to_string(),
    }
}

pub(crate) fn map_error(map: &'static str, detail: &dyn std::fmt::Display) -> InterceptError {
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

    #[test]
    fn hosts_are_the_targets_prefixes_without_their_ports() {
        let (v4, v6) = host_entries(&targets());
        assert_eq!(v4.len(), 1);
        assert_eq!({ v4[0].0.prefix_len() }, 24);
        assert_eq!(v4[0].0.data(), [198, 18, 0, 0]);
        assert_eq!(v6.len(), 1);
        assert_eq!({ v6[0].0.prefix_len() }, 128);
        assert_eq!(v6[0].1.target_id, 1);
    }

    #[test]
    fn routed_steering_settings_parse_with_their_defaults() {
        let text = r#"
[listener]
addresses = ["127.0.0.1:15306"]
[interception.routed]
interfaces = ["eth0"]
[interception.egress]
interfaces = ["eth1"]
[[targets]]
name = "a"
address = "198.18.2.2"
port = 3306
"#;
        let config = Config::parse(text, Path::new("t.toml")).expect("config");
        let interception = &config.interception;
        assert_eq!(interception.routed.port, 15307);
        assert_eq!(interception.routed.mark, 0x5447);
        assert_eq!(interception.routed.xdp_mode, XdpAttachMode::Auto);
        assert_eq!(interception.egress.interfaces, ["eth1"]);
        assert!(
            interception.cgroup.is_none(),
            "the host is the default scope"
        );
        assert!(interception.needs_gateway_cgroup());
        let bad = text.replace(
            "interfaces = [\"eth0\"]",
            "interfaces = [\"eth0\"]\nport = 0",
        );
        let error = Config::parse(&bad, Path::new("t.toml")).expect_err("port 0");
        assert!(
            error.to_string().contains("interception.routed.port"),
            "{error}"
        );
    }
}
