//! `cargo xtask`: Tollgate's developer workflows, so a fresh machine needs only `cargo`.
//!
//! - `setup`: install what building and testing need (system packages, the eBPF toolchain);
//! - `build`: build the eBPF programs and the `tollgate` binary with them embedded;
//! - `test`: every check CI runs (fmt, clippy, unit and integration tests);
//! - `fuzz`: cargo-fuzz over the parsers of peer input;
//! - `bench`: the gateway against a direct connection and haproxy, with ratios;
//! - `quickstart`: a local MariaDB, the gateway, and a demo session through it.
#![allow(
    clippy::disallowed_types,
    reason = "synchronous tooling: std::time::Instant is the right clock here"
)]

mod bench;
mod command;
mod fuzz;
mod quickstart;
mod setup;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

/// Tollgate's developer workflows.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install system packages, bpf-linker and the Debian Rust toolchain (idempotent).
    Setup,
    /// Build the eBPF programs and the `tollgate` binary.
    Build {
        /// Build with optimizations.
        #[arg(long)]
        release: bool,
    },
    /// Run every check: fmt, clippy -D warnings, unit and integration tests.
    Test {
        /// Extra arguments for the test runner (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Compare the gateway with a direct connection and haproxy (sysbench, large reads).
    Bench {
        /// Seconds per sysbench run.
        #[arg(long, default_value_t = 10)]
        seconds: u32,
        /// Only this part: `index` (a filtered `sessions list --index` over 100k sessions) or
        /// `lab` (the eBPF path against a plain routed path in the netns lab; needs root).
        #[arg(long, value_name = "PART")]
        only: Option<String>,
    },
    /// Fuzz the peer-input parsers (cargo-fuzz, nightly), a bounded time per target.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u32,
        /// Only this target.
        target: Option<String>,
    },
    /// Start MariaDB, the gateway and a demo session; keep running until Ctrl-C.
    Quickstart {
        /// Exit 0 after the demo instead of waiting for Ctrl-C.
        #[arg(long)]
        exit_after_demo: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Children (cargo, aya-build) must find bpf-linker where `cargo install` puts it.
    let path = format!(
        "{}:{}",
        setup::cargo_bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // SAFETY: single-threaded here; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PATH", path) };
    match run(cli.command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(task: Task) -> anyhow::Result<()> {
    let root = workspace_root()?;
    std::env::set_current_dir(&root).context("entering the workspace")?;
    match task {
        Task::Setup => setup::all(),
        Task::Build { release } => {
            setup::ebpf_toolchain()?;
            build(release)
        }
        Task::Test { args } => test(&args),
        Task::Bench { seconds, only } => match only.as_deref() {
            None => bench::run(&root, seconds),
            Some("index") => bench::index(&root).map(drop),
            Some("lab") => bench::lab(&root),
            Some(other) => anyhow::bail!("--only {other:?}: the parts are `index` and `lab`"),
        },
        Task::Fuzz { seconds, target } => fuzz::run(&root, seconds, target.as_deref()),
        Task::Quickstart { exit_after_demo } => quickstart::run(&root, exit_after_demo),
    }
}

fn workspace_root() -> anyhow::Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(PathBuf::from)
        .context("xtask has no parent directory")
}

/// `cargo build` of the gateway (the build script builds and embeds the eBPF object).
fn build(release: bool) -> anyhow::Result<()> {
    let mut args = vec!["build", "--package", "gateway-user"];
    if release {
        args.push("--release");
    }
    command::cargo(&args).run()
}

/// fmt, clippy, then the test runner, whose summary line is the last thing printed.
fn test(extra: &[String]) -> anyhow::Result<()> {
    setup::all_but_the_durable_broker()?;
    // The durable broker's build (long, once per machine) runs beside the checks and builds.
    let broker = std::thread::spawn(setup::durable_tansu);
    println!("==> cargo fmt --check");
    command::cargo(&["fmt", "--all", "--", "--check"]).run()?;
    println!("==> cargo clippy -D warnings");
    command::cargo(&[
        "clippy",
        "--workspace",
        "--exclude",
        "gateway-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])
    .run()?;
    println!("==> cargo clippy -D warnings (eBPF crate, for bpfel-unknown-none)");
    command::cmd(
        "rustup",
        &[
            "run",
            setup::DEBIAN_TOOLCHAIN,
            "cargo",
            "clippy",
            "--package",
            "gateway-ebpf",
            "--target",
            "bpfel-unknown-none",
            "--release",
            "--",
            "-D",
            "warnings",
        ],
    )
    .run()?;
    // The integration tests run the real `tollgate` binary, which test builds do not produce.
    println!("==> cargo build (the tollgate binary the integration tests run)");
    build(false)?;
    broker
        .join()
        .map_err(|_| anyhow::anyhow!("the durable broker's build panicked"))??;
    if setup::has_nextest() {
        println!("==> cargo nextest run");
        let mut args = vec![
            "nextest",
            "run",
            "--workspace",
            "--exclude",
            "gateway-ebpf",
            "--no-fail-fast",
        ];
        args.extend(extra.iter().map(String::as_str));
        command::cargo(&args).run_last()
    } else {
        println!("==> cargo test (cargo-nextest not installed)");
        let mut args = vec![
            "test",
            "--workspace",
            "--exclude",
            "gateway-ebpf",
            "--no-fail-fast",
        ];
        if !extra.is_empty() {
            args.push("--");
            args.extend(extra.iter().map(String::as_str));
        }
        command::cargo(&args).run_last()
    }
}
