//! `tollgate.toml`: the one configuration loader. Parsing and validation both report the field
//! path and the line, e.g. `tollgate.toml:12:11: targets[1].address: invalid IP prefix`.

use std::{
    collections::{BTreeMap, HashSet},
    fmt,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};
use toml::Spanned;

mod admin;
mod recording;

pub use admin::{AdminConfig, AdminOidcConfig};
pub use recording::{
    DEFAULT_STORE, FsyncPolicy, KafkaCompression, KafkaConfig, RecordingConfig, RecordingFailure,
};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the gateway accepts connections (redirected or direct).
    pub listener: ListenerConfig,
    /// How connections are steered into the gateway.
    #[serde(default)]
    pub interception: InterceptionConfig,
    /// Where sessions are recorded.
    #[serde(default)]
    pub recording: RecordingConfig,
    /// Connection limits and timeouts.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The Prometheus metrics endpoint.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// The control socket (`tollgate sessions kill` on this host).
    #[serde(default)]
    pub control: ControlConfig,
    /// The admin listener: the web viewer of recorded sessions (`tollgate ui` serves it too).
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// The protected databases. A connect to one of them from the managed cgroup lands in the
    /// gateway.
    pub targets: Vec<TargetConfig>,
    /// Users the gateway itself authenticates (for targets with a `login`).
    #[serde(default)]
    pub identities: Vec<IdentityConfig>,
    /// OpenID Connect issuers whose tokens the gateway accepts as passwords (for targets with
    /// a `login`).
    #[serde(default)]
    pub oidc: Vec<OidcConfig>,
    /// Kernel-attested identities: local processes (redirected on this host, attributed by the
    /// eBPF programs) mapped by user to an identity and groups, for targets that set
    /// `kernel_identity`.
    #[serde(default)]
    pub local_identities: Vec<LocalIdentityConfig>,
    /// Guardrails on risky statements (flag or block), checked in order for every SQL text.
    #[serde(default)]
    pub guardrails: Vec<crate::guard::GuardrailConfig>,
    /// Inline masking of result sets (`[[masking]]`, see `docs/masking.md`); the first rule
    /// matching a column masks it.
    #[serde(default)]
    pub masking: crate::mask::Masking,
    /// Just-in-time approvals of statements a guardrail holds (`action = "approve"`).
    #[serde(default)]
    pub approvals: crate::approvals::ApprovalsConfig,
    /// Rate guardrails: statements per second and rows read per minute, per identity or
    /// target.
    #[serde(default)]
    pub rate_limits: Vec<crate::guard::rate::RateLimitConfig>,
}

/// `[[local_identities]]`: a Linux user on the bastion mapped to an identity.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalIdentityConfig {
    /// The Linux user id.
    #[serde(default)]
    pub uid: Option<u32>,
    /// The Linux user name (resolved to a uid when the file is loaded).
    #[serde(default)]
    pub user: Option<String>,
    /// Only processes in this cgroup or below it (a cgroup v2 path such as
    /// `/system.slice/ci-runner.service`); any when absent.
    #[serde(default)]
    pub cgroup: Option<String>,
    /// Only processes in the container whose id starts with this; any when absent.
    #[serde(default)]
    pub container: Option<String>,
    /// Only processes with this command name (`comm`, at most 15 bytes, as the kernel keeps
    /// it), e.g. `mariadb`; any when absent.
    #[serde(default)]
    pub comm: Option<String>,
    /// The identity it maps to, e.g. `svc:ci`.
    pub name: String,
    /// Its groups, for `[[targets.allow]]` rules.
    #[serde(default)]
    pub groups: Vec<String>,
}

impl LocalIdentityConfig {
    /// The uid this entry matches (`user` resolved through the system's user database).
    #[must_use]
    pub fn resolved_uid(&self) -> Option<u32> {
        self.uid.or_else(|| {
            let name = self.user.as_deref()?;
            nix::unistd::User::from_name(name)
                .ok()
                .flatten()
                .map(|u| u.uid.as_raw())
        })
    }
}

/// `[[oidc]]`: an OpenID Connect issuer whose tokens (ID tokens and JWT access tokens) clients
/// may use as their MySQL password.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer URL, exactly as tokens carry it in `iss`; its discovery document and keys are
    /// fetched from it. `https`, or `http` to a loopback address only.
    pub issuer: Spanned<String>,
    /// Accepted audiences: a token's `aud` must name one of them (or, for a token without
    /// `aud`, its `azp`), e.g. the API identifier of access tokens and the client id of ID tokens.
    pub audiences: Spanned<Vec<String>>,
    /// Where the groups are in the token's claims: a claim name or a dotted path such as
    /// `realm_access.roles`.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: Spanned<String>,
    /// The claim that names the user (`sub`, `preferred_username`, `email`, ...).
    #[serde(default = "default_username_claim")]
    pub username_claim: Spanned<String>,
    /// When true, the MySQL user name the client gives must equal the username claim;
    /// otherwise it is informational (recorded beside the token's identity).
    #[serde(default)]
    pub require_user_match: bool,
    /// Clock skew allowed when checking `exp` and `nbf`.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// Signature algorithms accepted (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384,
    /// `EdDSA`); `none` and the HMAC algorithms are refused when the file is loaded.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<crate::identity::oidc::SigningAlgorithm>,
    /// The issuer's keys are fetched again when a token names a key the gateway does not know,
    /// at most once per this interval.
    #[serde(default = "default_key_refresh", with = "humantime_serde")]
    pub key_refresh_interval: Duration,
}

fn default_groups_claim() -> Spanned<String> {
    Spanned::new(0..0, "groups".to_owned())
}
fn default_username_claim() -> Spanned<String> {
    Spanned::new(0..0, "sub".to_owned())
}
fn default_leeway() -> Duration {
    Duration::from_secs(30)
}
fn default_algorithms() -> Vec<crate::identity::oidc::SigningAlgorithm> {
    crate::identity::oidc::SigningAlgorithm::DEFAULT.to_vec()
}
fn default_key_refresh() -> Duration {
    Duration::from_secs(10)
}

/// `[[identities]]`: a user the gateway authenticates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// MySQL user name the client logs in with.
    pub user: String,
    /// argon2 PHC hash of the password (`tollgate hash-password` makes one).
    pub password_hash: String,
    /// Groups the user is in, for `[[targets.allow]]` rules.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// `[targets.login]`: the gateway's own database account for a target. With it, the gateway
/// terminates the client's login (TLS, then the identity table) and logs in upstream itself;
/// the client never learns this credential.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginConfig {
    /// Database user name.
    pub user: String,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// File (mode 0600) holding the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// A command (program and arguments, no shell) whose standard output is the password,
    /// e.g. a secrets manager's CLI; run when the gateway starts.
    #[serde(default)]
    pub password_command: Option<Vec<String>>,
}

/// `[[targets.allow]]`: who may use a target, as which of its accounts. Rules are tried in
/// order and the first that matches the identity decides; an identity no rule matches is
/// refused (deny by default).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowRule {
    /// Groups that match (any of them); `"*"` matches every authenticated identity.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Identities that match by name or subject, whatever their groups.
    #[serde(default)]
    pub users: Vec<String>,
    /// The account the gateway logs in with: a name in `[targets.accounts]`, or `"default"`
    /// for `[targets.login]` (the default).
    #[serde(default = "default_account")]
    pub account: String,
    /// Databases the session may use (initial database, `USE`, `COM_INIT_DB`, change of
    /// user); any when absent.
    #[serde(default)]
    pub databases: Option<Vec<String>>,
    /// Longest a session may last; unlimited when absent.
    #[serde(default, with = "humantime_serde")]
    pub max_session: Option<Duration>,
}

/// The account `[targets.login]` stands for in `[[targets.allow]]` rules.
pub const DEFAULT_ACCOUNT: &str = "default";

fn default_account() -> String {
    DEFAULT_ACCOUNT.to_owned()
}

/// `[listener.tls]`: the certificate clients see. Without it, a self-signed certificate is
/// generated at start-up (fine for trying Tollgate, not for production).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// `[listener]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Listening sockets; at most one IPv4 and one IPv6 address (the eBPF programs redirect each
    /// family to one address).
    pub addresses: Vec<Spanned<SocketAddr>>,
    /// Target used for connections that were not redirected by the eBPF programs (a client that
    /// dials the gateway directly, or `interception.mode = "off"`). Without it such connections
    /// are refused.
    #[serde(default)]
    pub fallback_target: Option<Spanned<String>>,
    /// TLS toward clients (used by targets with a `login`).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Session worker threads (each session stays on one); 0, the default, is one per CPU.
    #[serde(default)]
    pub workers: usize,
}

/// How connections reach the gateway.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InterceptionMode {
    /// eBPF `cgroup/connect4`/`connect6` + `sockops` on a managed cgroup (needs root).
    #[default]
    Cgroup,
    /// No eBPF: clients dial the listener themselves and reach the fallback target.
    Off,
}

/// `[interception]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterceptionConfig {
    /// Steering mode.
    #[serde(default)]
    pub mode: InterceptionMode,
    /// The scope of local steering: the cgroup v2 directory Tollgate creates and attaches its
    /// cgroup programs to (never a cgroup mount's root). Processes in it, and in cgroups below
    /// it, are steered (e.g. those started by `tollgate run`). Unset: the whole host (the root
    /// of the cgroup v2 mount), every process but the gateway's own cgroup.
    #[serde(default)]
    pub cgroup: Option<PathBuf>,
    /// The gateway's own cgroup (created, and joined at start): its sockets alone reach
    /// protected hosts, and its connects are never redirected. Unset: `tollgate-gateway` at the
    /// root of the cgroup v2 mount when the host is the scope or when routed or egress
    /// interfaces are configured; otherwise the gateway stays where it was started.
    #[serde(default)]
    pub gateway_cgroup: Option<PathBuf>,
    /// Where `tollgate up` pins programs and maps (bpffs), so they outlive the gateway process:
    /// a restart or an upgrade opens no gap.
    #[serde(default = "default_pin_path")]
    pub pin_path: PathBuf,
    /// Routed traffic: TCP flows to protected targets that arrive on these interfaces are
    /// handed to the gateway.
    #[serde(default)]
    pub routed: RoutedConfig,
    /// Egress enforcement on the interfaces toward the databases.
    #[serde(default)]
    pub egress: EgressConfig,
}

impl Default for InterceptionConfig {
    fn default() -> Self {
        Self {
            mode: InterceptionMode::default(),
            cgroup: None,
            gateway_cgroup: None,
            pin_path: default_pin_path(),
            routed: RoutedConfig::default(),
            egress: EgressConfig::default(),
        }
    }
}

impl InterceptionConfig {
    /// True when the gateway must run in a cgroup of its own (the egress programs and a host
    /// scope tell its sockets apart by it).
    #[must_use]
    pub fn needs_gateway_cgroup(&self) -> bool {
        self.mode == InterceptionMode::Cgroup
            && (self.gateway_cgroup.is_some()
                || self.cgroup.is_none()
                || !self.routed.interfaces.is_empty()
                || !self.egress.interfaces.is_empty())
    }
}

fn default_pin_path() -> PathBuf {
    PathBuf::from(DEFAULT_PIN_PATH)
}

/// Default bpffs directory of `tollgate up`'s pinned programs and maps.
pub const DEFAULT_PIN_PATH: &str = "/sys/fs/bpf/tollgate";

/// `[interception.routed]`: steering of flows routed through this host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutedConfig {
    /// Client-facing interfaces: XDP drops what may never reach a protected host, TC ingress
    /// hands flows to protected targets to the gateway's transparent listener.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Port of the gateway's transparent listeners (`0.0.0.0` and `[::]`) for routed flows.
    #[serde(default = "default_routed_port")]
    pub port: u16,
    /// The packet mark of steered routed packets, and the policy-routing table (same number)
    /// that delivers them locally.
    #[serde(default = "default_mark")]
    pub mark: u32,
    /// How the XDP guard attaches.
    #[serde(default)]
    pub xdp_mode: XdpAttachMode,
}

/// `interception.routed.xdp_mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpAttachMode {
    /// Native on a physical interface, generic on a virtual one (veth, bridge, ...).
    #[default]
    Auto,
    /// In the driver (falls back to generic where the driver has no XDP).
    Native,
    /// In the network stack (every interface has it).
    Generic,
}

impl Default for RoutedConfig {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            port: default_routed_port(),
            mark: default_mark(),
            xdp_mode: XdpAttachMode::default(),
        }
    }
}

const fn default_routed_port() -> u16 {
    15307
}

const fn default_mark() -> u32 {
    0x5447
}

/// `[interception.egress]`: only the gateway's own sockets reach protected hosts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressConfig {
    /// Interfaces toward the databases: TC egress drops packets to a protected host from any
    /// socket outside the gateway's cgroup, whatever process or cgroup sent them.
    #[serde(default)]
    pub interfaces: Vec<String>,
}

/// `[control]`: how `tollgate sessions kill` reaches this gateway on its own host.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// The control socket (mode 0600); by default `control.sock` in the recording store.
    #[serde(default)]
    pub socket: Option<PathBuf>,
}

impl Config {
    /// Where the control socket is.
    #[must_use]
    pub fn control_socket(&self) -> PathBuf {
        self.control
            .socket
            .clone()
            .unwrap_or_else(|| self.recording.store.join("control.sock"))
    }
}

/// `[metrics]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where `GET /metrics` is served (Prometheus text format); off when absent.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

/// `[limits]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most sessions at once; a client over the limit gets MySQL error 1040.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// How long dialing a target may take before the client gets error 1429.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long shutdown waits for live sessions before closing them.
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How long the whole login (greeting to OK, both legs) may take; a client or database
    /// that stalls in it gets an error instead of holding the session open.
    #[serde(default = "default_login_timeout", with = "humantime_serde")]
    pub login_timeout: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: default_max_connections(),
            connect_timeout: default_connect_timeout(),
            shutdown_grace: default_shutdown_grace(),
            login_timeout: default_login_timeout(),
        }
    }
}

fn default_max_connections() -> usize {
    10_000
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_login_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(10)
}

/// `[[targets]]`: one protected database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Unique name, used in logs, recordings and errors.
    pub name: Spanned<String>,
    /// Address or prefix of the database host(s), e.g. `198.18.0.10` or `198.18.0.0/24`.
    #[serde(deserialize_with = "deserialize_prefix")]
    pub address: IpNet,
    /// MySQL port of the target.
    pub port: Spanned<u16>,
    /// Where the gateway dials (`host:port`); by default the connection's original destination.
    #[serde(default)]
    pub upstream: Option<Spanned<String>>,
    /// The gateway's own login (the account named `"default"`). Without it and without
    /// `accounts`, the client's login is relayed to the database.
    #[serde(default)]
    pub login: Option<LoginConfig>,
    /// More database accounts the gateway holds for this target, by name (e.g. `readonly`,
    /// `admin`), for `[[targets.allow]]` rules to choose from.
    #[serde(default)]
    pub accounts: BTreeMap<String, LoginConfig>,
    /// Who may use the target, as which account (deny by default).
    #[serde(default)]
    pub allow: Vec<AllowRule>,
    /// TLS from the gateway to the database (for targets with a `login`).
    #[serde(default)]
    pub tls: UpstreamTlsConfig,
    /// Whether a local process (redirected on this host) whose user is in
    /// `[[local_identities]]` may log in without a password, as that identity; a client that
    /// sends a password or token is authenticated by it as usual (and the kernel identity is
    /// recorded beside it).
    #[serde(default)]
    pub kernel_identity: bool,
    /// Whether clients may use `LOAD DATA LOCAL INFILE` (send a file of theirs to the
    /// database). Off by default: the capability is then negotiated on neither leg, and the
    /// database refuses the statement.
    #[serde(default)]
    pub local_infile: bool,
    /// A compliance target: its sessions must be recorded, so by default it fails closed when
    /// events cannot be recorded.
    #[serde(default)]
    pub compliance: bool,
    /// What the target's sessions do when events cannot be recorded; by default fail-closed
    /// for compliance targets and fail-open for the others.
    #[serde(default)]
    pub on_recording_failure: Option<RecordingFailure>,
}

/// Whether the gateway's connection to a database uses TLS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamTlsMode {
    /// TLS when the database offers it, plain otherwise (logged).
    #[default]
    Preferred,
    /// TLS or no session.
    Required,
    /// Never TLS.
    Disabled,
}

/// `[targets.tls]`: TLS toward the database. The certificate is verified by default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// Whether TLS is used.
    #[serde(default)]
    pub mode: UpstreamTlsMode,
    /// CA certificates (PEM) to verify the database with; the system's roots otherwise.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Name to verify the certificate against; the dialed host or IP otherwise.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Set to false to accept any certificate (logged at warn; for tests only).
    #[serde(default = "default_true")]
    pub verify: bool,
}

fn default_true() -> bool {
    true
}

impl Default for UpstreamTlsConfig {
    fn default() -> Self {
        Self {
            mode: UpstreamTlsMode::default(),
            ca: None,
            server_name: None,
            verify: true,
        }
    }
}

impl TargetConfig {
    /// What the target's sessions do when events cannot be recorded.
    #[must_use]
    pub fn recording_failure(&self) -> RecordingFailure {
        self.on_recording_failure.unwrap_or(if self.compliance {
            RecordingFailure::FailClosed
        } else {
            RecordingFailure::FailOpen
        })
    }

    /// True when the gateway terminates logins for this target (it holds an account).
    #[must_use]
    pub fn terminates(&self) -> bool {
        self.login.is_some() || !self.accounts.is_empty()
    }

    /// Every account the gateway holds for this target, by name (`[targets.login]` as
    /// [`DEFAULT_ACCOUNT`]).
    pub fn all_accounts(&self) -> impl Iterator<Item = (&str, &LoginConfig)> {
        self.login
            .iter()
            .map(|login| (DEFAULT_ACCOUNT, login))
            .chain(
                self.accounts
                    .iter()
                    .map(|(name, login)| (name.as_str(), login)),
            )
    }

    /// The address the gateway dials for a connection to this target whose original destination
    /// is `original` (or unknown, for a connection that was not redirected).
    #[must_use]
    pub fn upstream_for(&self, original: Option<SocketAddr>) -> Option<UpstreamAddr> {
        if let Some(upstream) = &self.upstream {
            return Some(UpstreamAddr::Named(upstream.get_ref().clone()));
        }
        if let Some(original) = original {
            return Some(UpstreamAddr::Socket(original));
        }
        self.single_host()
            .map(|ip| UpstreamAddr::Socket(SocketAddr::new(ip, *self.port.get_ref())))
    }

    /// The target's address when it names exactly one host.
    fn single_host(&self) -> Option<IpAddr> {
        (self.address.prefix_len() == self.address.max_prefix_len()).then(|| self.address.addr())
    }
}

/// Where to dial a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAddr {
    /// A socket address (the original destination or a literal).
    Socket(SocketAddr),
    /// A `host:port` resolved at dial time.
    Named(String),
}

impl fmt::Display for UpstreamAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Socket(addr) => addr.fmt(f),
            Self::Named(name) => f.write_str(name),
        }
    }
}

fn deserialize_prefix<'de, D: Deserializer<'de>>(deserializer: D) -> Result<IpNet, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_prefix(&text).map_err(serde::de::Error::custom)
}

/// Parses `198.18.0.10`, `198.18.0.0/24`, `fd00:198:18::10` or `fd00:198:18::/48`.
pub fn parse_prefix(text: &str) -> Result<IpNet, String> {
    if text.contains('/') {
        let net: IpNet = text
            .parse()
            .map_err(|_| format!("invalid IP prefix {text:?} (expected e.g. 198.18.0.0/24)"))?;
        Ok(net.trunc())
    } else {
        let ip: IpAddr = text
            .parse()
            .map_err(|_| format!("invalid IP address {text:?} (expected e.g. 198.18.0.10)"))?;
        Ok(IpNet::from(ip))
    }
}

/// Why a configuration was rejected: where, which field, and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a field has a bad name, type or value.
    #[error("{path}:{line}:{column}: {field}{message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the bad field.
        line: usize,
        /// 1-based column of the bad field.
        column: usize,
        /// The field's path followed by ": ", or empty when the error is not about one field.
        field: String,
        /// What is wrong and, where it helps, what to write instead.
        message: String,
    },
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates configuration text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let deserializer = toml::Deserializer::new(text);
        let config: Self = serde_path_to_error::deserialize(deserializer).map_err(|error| {
            let field = error.path().to_string();
            let inner = error.into_inner();
            let span = inner.span().unwrap_or(0..0);
            let (line, column) = line_column(text, span.start);
            ConfigError::Invalid {
                path: path.to_owned(),
                line,
                column,
                field: if field == "." || field.is_empty() {
                    String::new()
                } else {
                    format!("{field}: ")
                },
                message: inner.message().trim().to_owned(),
            }
        })?;
        config.validate().map_err(|invalid| {
            let (line, column) = line_column(text, invalid.offset);
            ConfigError::Invalid {
                path: path.to_owned(),
                line,
                column,
                field: format!("{}: ", invalid.field),
                message: invalid.message,
            }
        })?;
        Ok(config)
    }

    /// Checks what the types alone cannot: cross-field rules.
    fn validate(&self) -> Result<(), Invalid> {
        self.validate_listener()?;
        self.validate_targets()?;
        self.validate_fallback()?;
        self.validate_logins()?;
        if let Some(admin) = &self.admin {
            admin.validate(&self.oidc)?;
        }
        self.approvals
            .validate()
            .map_err(|(field, message)| Invalid::new(0, field, message))?;
        for (field, path) in [
            ("interception.cgroup", &self.interception.cgroup),
            (
                "interception.gateway_cgroup",
                &self.interception.gateway_cgroup,
            ),
        ] {
            if path.as_ref().is_some_and(|p| !p.is_absolute()) {
                return Err(Invalid::new(
                    0,
                    field,
                    "must be an absolute path inside a cgroup v2 mount",
                ));
            }
        }
        if self.interception.routed.port == 0 {
            return Err(Invalid::new(
                0,
                "interception.routed.port",
                "must be a port number",
            ));
        }
        for (i, rule) in self.guardrails.iter().enumerate() {
            if let Some(problem) = rule.problem() {
                return Err(Invalid::new(0, format!("guardrails[{i}]"), problem));
            }
        }
        for (i, rule) in self.rate_limits.iter().enumerate() {
            if let Some(problem) = rule.problem() {
                return Err(Invalid::new(0, format!("rate_limits[{i}]"), problem));
            }
        }
        if self.limits.max_connections == 0 {
            return Err(Invalid::new(
                0,
                "limits.max_connections",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    fn validate_listener(&self) -> Result<(), Invalid> {
        let addresses = &self.listener.addresses;
        if addresses.is_empty() {
            return Err(Invalid::new(
                0,
                "listener.addresses",
                "at least one address is needed, e.g. [\"127.0.0.1:15306\"]",
            ));
        }
        let mut families = HashSet::new();
        for (i, address) in addresses.iter().enumerate() {
            if !families.insert(address.get_ref().is_ipv4()) {
                return Err(Invalid::new(
                    address.span().start,
                    format!("listener.addresses[{i}]"),
                    "at most one IPv4 and one IPv6 address: redirected connections of each \
                     family go to exactly one listener",
                ));
            }
        }
        Ok(())
    }

    fn validate_targets(&self) -> Result<(), Invalid> {
        if self.targets.is_empty() {
            return Err(Invalid::new(
                0,
                "targets",
                "at least one [[targets]] entry is needed",
            ));
        }
        let mut names = HashSet::new();
        for (i, target) in self.targets.iter().enumerate() {
            let name = target.name.get_ref();
            if name.trim().is_empty() {
                return Err(Invalid::new(
                    target.name.span().start,
                    format!("targets[{i}].name"),
                    "must not be empty",
                ));
            }
            if !names.insert(name.as_str()) {
                return Err(Invalid::new(
                    target.name.span().start,
                    format!("targets[{i}].name"),
                    format!("duplicate target name {name:?}"),
                ));
            }
            if *target.port.get_ref() == 0 {
                return Err(Invalid::new(
                    target.port.span().start,
                    format!("targets[{i}].port"),
                    "must be 1-65535",
                ));
            }
            if let Some(upstream) = &target.upstream
                && !is_host_port(upstream.get_ref())
            {
                return Err(Invalid::new(
                    upstream.span().start,
                    format!("targets[{i}].upstream"),
                    format!("expected host:port, got {:?}", upstream.get_ref()),
                ));
            }
        }
        Ok(())
    }

    fn validate_logins(&self) -> Result<(), Invalid> {
        for (i, identity) in self.identities.iter().enumerate() {
            crate::auth::check_hash(&identity.password_hash).map_err(|message| {
                Invalid::new(0, format!("identities[{i}].password_hash"), message)
            })?;
        }
        self.validate_oidc()?;
        self.validate_local_identities()?;
        for (i, target) in self.targets.iter().enumerate() {
            Self::validate_policy(i, target)?;
        }
        Ok(())
    }

    /// A target's accounts and `[[targets.allow]]` rules.
    fn validate_policy(i: usize, target: &TargetConfig) -> Result<(), Invalid> {
        let at = target.name.span().start;
        for (name, login) in target.all_accounts() {
            let field = if target.login.is_some() && name == DEFAULT_ACCOUNT {
                format!("targets[{i}].login")
            } else {
                format!("targets[{i}].accounts.{name}")
            };
            if target.login.is_some()
                && name == DEFAULT_ACCOUNT
                && target.accounts.contains_key(name)
            {
                return Err(Invalid::new(
                    at,
                    field,
                    "\"default\" is the name of [targets.login]; pick another account name",
                ));
            }
            let sources = [
                login.password_env.is_some(),
                login.password_file.is_some(),
                login.password_command.is_some(),
            ];
            if sources.iter().filter(|set| **set).count() != 1 {
                return Err(Invalid::new(
                    at,
                    field,
                    "set exactly one of password_env, password_file or password_command",
                ));
            }
            if login.password_command.as_ref().is_some_and(Vec::is_empty) {
                return Err(Invalid::new(
                    at,
                    field,
                    "password_command needs a program (and its arguments)",
                ));
            }
        }
        if !target.terminates() {
            if !target.allow.is_empty() {
                return Err(Invalid::new(
                    at,
                    format!("targets[{i}].allow"),
                    "allow rules need an account: add [targets.login] or [targets.accounts.NAME]",
                ));
            }
            return Ok(());
        }
        if target.allow.is_empty() {
            return Err(Invalid::new(
                at,
                format!("targets[{i}].allow"),
                "no [[targets.allow]] rule: nobody may use this target (deny by default); add \
                 one, e.g. groups = [\"dba\"]",
            ));
        }
        for (r, rule) in target.allow.iter().enumerate() {
            let field = format!("targets[{i}].allow[{r}]");
            if rule.groups.is_empty() && rule.users.is_empty() {
                return Err(Invalid::new(
                    at,
                    field,
                    "matches nobody: set groups (\"*\" for every identity) or users",
                ));
            }
            if !target.all_accounts().any(|(name, _)| name == rule.account) {
                return Err(Invalid::new(
                    at,
                    format!("{field}.account"),
                    format!("no account {:?} in this target", rule.account),
                ));
            }
        }
        Ok(())
    }

    fn validate_local_identities(&self) -> Result<(), Invalid> {
        for (i, local) in self.local_identities.iter().enumerate() {
            let field = format!("local_identities[{i}]");
            if local.uid.is_some() && local.user.is_some() {
                return Err(Invalid::new(0, field, "set uid or user, not both"));
            }
            if local.uid.is_none()
                && local.user.is_none()
                && local.cgroup.is_none()
                && local.container.is_none()
            {
                return Err(Invalid::new(
                    0,
                    field,
                    "matches every process: set uid, user, cgroup or container",
                ));
            }
            if local.user.is_some() && local.resolved_uid().is_none() {
                return Err(Invalid::new(
                    0,
                    format!("{field}.user"),
                    format!("no such user {:?} on this host", local.user),
                ));
            }
        }
        Ok(())
    }

    fn validate_oidc(&self) -> Result<(), Invalid> {
        let mut issuers = HashSet::new();
        for (i, oidc) in self.oidc.iter().enumerate() {
            let issuer = oidc.issuer.get_ref();
            crate::identity::oidc::check_issuer_url(issuer).map_err(|message| {
                Invalid::new(
                    oidc.issuer.span().start,
                    format!("oidc[{i}].issuer"),
                    message,
                )
            })?;
            if !issuers.insert(issuer.as_str()) {
                return Err(Invalid::new(
                    oidc.issuer.span().start,
                    format!("oidc[{i}].issuer"),
                    format!("issuer {issuer:?} is configured twice"),
                ));
            }
            if oidc.audiences.get_ref().is_empty()
                || oidc.audiences.get_ref().iter().any(|a| a.trim().is_empty())
            {
                return Err(Invalid::new(
                    oidc.audiences.span().start,
                    format!("oidc[{i}].audiences"),
                    "name at least one audience, none empty (e.g. [\"urn:tollgate:mysql\"]); a \
                     token for another audience is refused",
                ));
            }
            for (field, claim) in [
                ("groups_claim", &oidc.groups_claim),
                ("username_claim", &oidc.username_claim),
            ] {
                if claim.get_ref().split('.').any(str::is_empty) {
                    return Err(Invalid::new(
                        claim.span().start,
                        format!("oidc[{i}].{field}"),
                        format!(
                            "{:?} is not a claim name or dotted path (e.g. realm_access.roles)",
                            claim.get_ref()
                        ),
                    ));
                }
            }
            if oidc.leeway > Duration::from_mins(5) {
                return Err(Invalid::new(
                    0,
                    format!("oidc[{i}].leeway"),
                    "at most 5m: a leeway is for clock skew, not for extending a token's life",
                ));
            }
            if oidc.algorithms.is_empty() {
                return Err(Invalid::new(
                    0,
                    format!("oidc[{i}].algorithms"),
                    "name at least one algorithm (e.g. [\"RS256\"])",
                ));
            }
        }
        Ok(())
    }

    fn validate_fallback(&self) -> Result<(), Invalid> {
        let Some(fallback) = &self.listener.fallback_target else {
            if self.interception.mode == InterceptionMode::Off {
                return Err(Invalid::new(
                    0,
                    "listener.fallback_target",
                    "required when interception.mode = \"off\" (no connection is redirected, so \
                     every one goes to the fallback target)",
                ));
            }
            return Ok(());
        };
        let Some(target) = self.target_by_name(fallback.get_ref()) else {
            return Err(Invalid::new(
                fallback.span().start,
                "listener.fallback_target",
                format!("no target named {:?}", fallback.get_ref()),
            ));
        };
        if target.upstream_for(None).is_none() {
            return Err(Invalid::new(
                fallback.span().start,
                "listener.fallback_target",
                format!(
                    "target {:?} covers a prefix, so a direct connection has no host to reach: \
                     give it an `upstream = \"host:port\"`",
                    fallback.get_ref()
                ),
            ));
        }
        Ok(())
    }

    /// The target with this name.
    #[must_use]
    pub fn target_by_name(&self, name: &str) -> Option<&TargetConfig> {
        self.targets.iter().find(|t| t.name.get_ref() == name)
    }

    /// The fallback target, if one is configured.
    #[must_use]
    pub fn fallback_target(&self) -> Option<&TargetConfig> {
        self.listener
            .fallback_target
            .as_ref()
            .and_then(|name| self.target_by_name(name.get_ref()))
    }
}

/// A validation failure, before it is placed in the file.
struct Invalid {
    offset: usize,
    field: String,
    message: String,
}

impl Invalid {
    fn new(offset: usize, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            offset,
            field: field.into(),
            message: message.into(),
        }
    }
}

fn is_host_port(text: &str) -> bool {
    if text.parse::<SocketAddr>().is_ok() {
        return true;
    }
    match text.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty() && !host.contains(':') && port.parse::<u16>().is_ok_and(|p| p != 0)
        }
        None => false,
    }
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[listener]
addresses = ["127.0.0.1:15306", "[::1]:15306"]

[interception]
cgroup = "/sys/fs/cgroup/unified/tollgate-test"

[recording]
store = "/tmp/tollgate-rec"

[[targets]]
name = "lab"
address = "198.18.0.0/24"
port = 3306
"#;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("tollgate.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn recording_sinks_and_failure_policies() {
        let config = parse(&format!(
            "{GOOD}compliance = true\n[[targets]]\nname = \"dev\"\naddress = \"198.18.1.0/24\"\n\
             port = 3306\n[[targets]]\nname = \"audit\"\naddress = \"198.18.2.0/24\"\n\
             port = 3306\ncompliance = true\non_recording_failure = \"fail-open\"\n\
             [recording.kafka]\nbrokers = \"198.18.0.9:9092\"\ntopic = \"t\"\n\
             compression = \"lz4\"\n[recording.kafka.client]\n\"security.protocol\" = \"ssl\"\n"
        ))
        .expect("config");
        let failures: Vec<RecordingFailure> = config
            .targets
            .iter()
            .map(TargetConfig::recording_failure)
            .collect();
        assert_eq!(
            failures,
            [
                RecordingFailure::FailClosed,
                RecordingFailure::FailOpen,
                RecordingFailure::FailOpen
            ]
        );
        let kafka = config.recording.kafka.expect("kafka");
        assert_eq!(kafka.compression, KafkaCompression::Lz4);
        assert_eq!(kafka.spool_max_bytes, 1 << 30);
        assert_eq!(config.recording.fsync, FsyncPolicy::Interval);
        let error = parse(&GOOD.replace("[recording]\n", "[recording]\nfsync = \"sometimes\"\n"))
            .expect_err("an unknown fsync policy");
        assert!(error.contains("fsync"), "{error}");
    }

    #[test]
    fn parses_a_good_file() {
        let config = parse(GOOD).expect("good config");
        assert_eq!(config.listener.addresses.len(), 2);
        assert_eq!(config.targets[0].address.to_string(), "198.18.0.0/24");
        assert_eq!(config.interception.mode, InterceptionMode::Cgroup);
        assert_eq!(config.limits.connect_timeout, Duration::from_secs(5));
    }

    #[test]
    fn a_target_the_gateway_logs_in_to_needs_allow_rules_naming_its_accounts() {
        let login = "[targets.login]\nuser = \"app\"\npassword_env = \"PW\"\n";
        let error = parse(&format!("{GOOD}{login}")).expect_err("no rule");
        assert!(
            error.contains("targets[0].allow") && error.contains("deny by default"),
            "{error}"
        );
        let rule = "[[targets.allow]]\ngroups = [\"dba\"]\naccount = \"admin\"\n";
        let error = parse(&format!("{GOOD}{rule}{login}")).expect_err("unknown account");
        assert!(
            error.contains("targets[0].allow[0].account") && error.contains("\"admin\""),
            "{error}"
        );
        let nobody = "[[targets.allow]]\naccount = \"default\"\n";
        let error = parse(&format!("{GOOD}{nobody}{login}")).expect_err("matches nobody");
        assert!(error.contains("matches nobody"), "{error}");
        let two = login.replace(
            "password_env = \"PW\"",
            "password_env = \"PW\"\npassword_file = \"/x\"",
        );
        let error = parse(&format!("{GOOD}{rule}{two}")).expect_err("two sources");
        assert!(error.contains("exactly one of"), "{error}");
        let good = format!(
            "{GOOD}{rule}{login}[targets.accounts.admin]\nuser = \"root\"\n\
             password_command = [\"vault\", \"read\", \"db/admin\"]\n"
        );
        let config = parse(&good).expect("valid policy");
        assert!(config.targets[0].terminates());
        assert_eq!(config.targets[0].all_accounts().count(), 2);
        let relayed = format!("{GOOD}{rule}");
        let error = parse(&relayed).expect_err("rules without accounts");
        assert!(error.contains("need an account"), "{error}");
    }

    #[test]
    fn unknown_field_names_field_and_line() {
        let text = GOOD.replace("port = 3306", "prot = 3306");
        let error = parse(&text).expect_err("unknown field");
        assert!(
            error.starts_with("tollgate.toml:14:1: targets[0]"),
            "{error}"
        );
        assert!(error.contains("unknown field `prot`"), "{error}");
    }

    #[test]
    fn bad_prefix_names_field_and_line() {
        let text = GOOD.replace("198.18.0.0/24", "198.18.0.300/24");
        let error = parse(&text).expect_err("bad prefix");
        assert!(
            error.starts_with("tollgate.toml:13:11: targets[0].address: invalid IP prefix"),
            "{error}"
        );
    }

    #[test]
    fn bad_listener_address_names_field_and_line() {
        let text = GOOD.replace("\"[::1]:15306\"", "\"localhost\"");
        let error = parse(&text).expect_err("bad listener");
        assert!(error.starts_with("tollgate.toml:3:"), "{error}");
        assert!(error.contains("listener.addresses"), "{error}");
    }

    #[test]
    fn duplicate_target_name_is_rejected_with_line() {
        let text =
            format!("{GOOD}\n[[targets]]\nname = \"lab\"\naddress = \"198.18.1.1\"\nport = 3306\n");
        let error = parse(&text).expect_err("duplicate");
        assert!(
            error.starts_with("tollgate.toml:17:8: targets[1].name"),
            "{error}"
        );
    }

    #[test]
    fn two_listeners_of_one_family_are_rejected() {
        let text = GOOD.replace("\"[::1]:15306\"", "\"127.0.0.2:15306\"");
        let error = parse(&text).expect_err("two v4");
        assert!(error.contains("listener.addresses[1]"), "{error}");
    }

    #[test]
    fn off_mode_needs_a_fallback_with_a_host() {
        let text = GOOD.replace("[interception]", "[interception]\nmode = \"off\"");
        let error = parse(&text).expect_err("no fallback");
        assert!(
            error.contains("listener.fallback_target: required"),
            "{error}"
        );

        let text = text.replace("addresses = [", "fallback_target = \"lab\"\naddresses = [");
        let error = parse(&text).expect_err("prefix fallback");
        assert!(error.contains("covers a prefix"), "{error}");

        let text = text.replace(
            "port = 3306",
            "port = 3306\nupstream = \"db.internal:3306\"",
        );
        let config = parse(&text).expect("fallback with upstream");
        let fallback = config.fallback_target().expect("fallback");
        assert_eq!(
            fallback.upstream_for(None),
            Some(UpstreamAddr::Named("db.internal:3306".into()))
        );
    }

    #[test]
    fn single_host_target_dials_itself() {
        let text = GOOD.replace("198.18.0.0/24", "198.18.0.10");
        let config = parse(&text).expect("config");
        assert_eq!(
            config.targets[0].upstream_for(None),
            Some(UpstreamAddr::Socket(
                "198.18.0.10:3306".parse().expect("addr")
            ))
        );
    }

    #[test]
    fn prefixes_are_truncated_and_plain_ips_are_hosts() {
        assert_eq!(
            parse_prefix("198.18.0.7/24").expect("ok").to_string(),
            "198.18.0.0/24"
        );
        assert_eq!(
            parse_prefix("fd00:198:18::10").expect("ok").to_string(),
            "fd00:198:18::10/128"
        );
        assert!(parse_prefix("nope").is_err());
    }

    #[test]
    fn toml_syntax_error_has_line() {
        let error = parse("[listener\n").expect_err("syntax");
        assert!(error.starts_with("tollgate.toml:1:"), "{error}");
    }

    #[test]
    fn host_port_forms() {
        assert!(is_host_port("db:3306"));
        assert!(is_host_port("[::1]:3306"));
        assert!(is_host_port("10.0.0.1:3306"));
        assert!(!is_host_port("db"));
        assert!(!is_host_port("db:0"));
        assert!(!is_host_port(":3306"));
    }
}
