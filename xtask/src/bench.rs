//! `cargo xtask bench`: the gateway against a direct connection and an L4 relay (haproxy in
//! TCP mode, the floor any proxy is judged against), in the same run, on this machine.
//!
//! Workloads: sysbench `oltp_point_select` with 1 and 8 threads, and a large result read with
//! the `mariadb` client. Ratios are gateway/direct and gateway/relay; results are printed and
//! written to `target/bench/latest.json`. Numbers from one run only compare with each other:
//! every process shares the machine's cores.

use std::{
    fmt::Write as _,
    fs,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::command::cmd;

const DB_PORT: u16 = 24306;
const RELAY_PORT: u16 = 24307;
const GATEWAY_PORT: u16 = 24308;
/// Packages only the benchmark needs.
const BENCH_PACKAGES: &[&str] = &["sysbench", "haproxy"];

/// One measured quantity on the three paths.
struct Measurement {
    name: String,
    unit: &'static str,
    /// True when bigger is better (throughput), false for times.
    higher_is_better: bool,
    direct: f64,
    relay: f64,
    gateway: f64,
}

/// Runs the benchmark; `seconds` per sysbench run.
pub fn run(root: &Path, seconds: u32) -> anyhow::Result<()> {
    crate::setup::packages(BENCH_PACKAGES)?;
    println!("==> building tollgate (release)");
    crate::build(true)?;
    let work = root.join("target/bench");
    fs::create_dir_all(&work)?;
    let script = root.join("tests/scripts/mariadb.sh");
    let script = script.to_string_lossy().into_owned();
    let db_dir = work.join("mariadb").to_string_lossy().into_owned();
    cmd(&script, &["stop", &db_dir]).run()?;
    cmd(
        &script,
        &["start", &db_dir, &DB_PORT.to_string(), "127.0.0.1"],
    )
    .run()?;
    let _db = Guard(Some(Box::new(move || {
        let _ = cmd(&script, &["stop", &db_dir]).run();
    })));

    let relay = start_haproxy(&work)?;
    let _relay = ChildGuard(relay);
    let gateway = start_gateway(root, &work)?;
    let gateway_pid = gateway.id();
    let _gateway = ChildGuard(gateway);

    cmd(
        "mariadb",
        &[
            "--no-defaults",
            "-h",
            "127.0.0.1",
            "-P",
            &DB_PORT.to_string(),
            "-u",
            "app",
            "-papp-pw",
            "-e",
            "DROP DATABASE IF EXISTS sbtest; CREATE DATABASE sbtest",
        ],
    )
    .run()?;
    sysbench(DB_PORT, "prepare", 1, 0)?;

    let mut results = Vec::new();
    for threads in [1u32, 8] {
        let mut qps = [0.0; 3];
        for (i, port) in [DB_PORT, RELAY_PORT, GATEWAY_PORT].into_iter().enumerate() {
            qps[i] = sysbench(port, "run", threads, seconds)?;
            println!(
                "    point_select threads={threads} port={port}: {:.0} qps",
                qps[i]
            );
        }
        results.push(Measurement {
            name: format!("oltp_point_select_{threads}t"),
            unit: "queries/s",
            higher_is_better: true,
            direct: qps[0],
            relay: qps[1],
            gateway: qps[2],
        });
    }
    let mut secs = [0.0; 3];
    for (i, port) in [DB_PORT, RELAY_PORT, GATEWAY_PORT].into_iter().enumerate() {
        secs[i] = large_read(port)?;
        println!("    large read (1M rows) port={port}: {:.2} s", secs[i]);
    }
    results.push(Measurement {
        name: "large_result_1m_rows".into(),
        unit: "seconds",
        higher_is_better: false,
        direct: secs[0],
        relay: secs[1],
        gateway: secs[2],
    });
    let rss_kib = peak_rss_kib(gateway_pid);

    let report = render(&results, rss_kib);
    print!("{report}");
    let json = to_json(&results, rss_kib);
    fs::write(work.join("latest.json"), json).context("writing target/bench/latest.json")?;
    println!("wrote {}", work.join("latest.json").display());
    Ok(())
}

fn start_haproxy(work: &Path) -> anyhow::Result<Child> {
    let config = work.join("haproxy.cfg");
    fs::write(
        &config,
        format!(
            "global\n  maxconn 4096\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\n\
             frontend mysql\n  bind 127.0.0.1:{RELAY_PORT}\n  default_backend db\n\
             backend db\n  server db 127.0.0.1:{DB_PORT}\n"
        ),
    )?;
    let child = Command::new("haproxy")
        .args(["-f"])
        .arg(&config)
        .args(["-db"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting haproxy")?;
    wait_for_port(RELAY_PORT)?;
    Ok(child)
}

fn start_gateway(root: &Path, work: &Path) -> anyhow::Result<Child> {
    let config = work.join("tollgate.toml");
    let store = work.join("recordings");
    let _ = fs::remove_dir_all(&store);
    fs::write(
        &config,
        format!(
            "[listener]\naddresses = [\"127.0.0.1:{GATEWAY_PORT}\"]\nfallback_target = \"db\"\n\
             [interception]\nmode = \"off\"\n[recording]\nstore = \"{}\"\n\
             [[targets]]\nname = \"db\"\naddress = \"127.0.0.1\"\nport = {DB_PORT}\n",
            store.display()
        ),
    )?;
    let log = fs::File::create(work.join("gateway.log"))?;
    let child = Command::new(root.join("target/release/tollgate"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("TOLLGATE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting the gateway")?;
    wait_for_port(GATEWAY_PORT)?;
    Ok(child)
}

fn wait_for_port(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on 127.0.0.1:{port} after 20 s")
}

/// Runs sysbench `oltp_point_select`; for `run`, returns queries per second.
fn sysbench(port: u16, action: &str, threads: u32, seconds: u32) -> anyhow::Result<f64> {
    let output = cmd(
        "sysbench",
        &[
            "oltp_point_select",
            "--db-driver=mysql",
            "--mysql-host=127.0.0.1",
            &format!("--mysql-port={port}"),
            "--mysql-user=app",
            "--mysql-password=app-pw",
            "--mysql-db=sbtest",
            "--mysql-ssl=off",
            "--tables=1",
            "--table-size=10000",
            &format!("--threads={threads}"),
            &format!("--time={seconds}"),
            action,
        ],
    )
    .output()?;
    if action != "run" {
        return Ok(0.0);
    }
    // "    queries:                             123456 (12345.67 per sec.)"
    output
        .lines()
        .find(|line| line.trim_start().starts_with("queries:"))
        .and_then(|line| line.split('(').nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|qps| qps.parse().ok())
        .with_context(|| format!("no queries/s in sysbench output:\n{output}"))
}

/// Seconds to read a million-row result with the `mariadb` client.
fn large_read(port: u16) -> anyhow::Result<f64> {
    let started = Instant::now();
    let status = Command::new("mariadb")
        .args([
            "--no-defaults",
            "-h",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            "-u",
            "app",
            "-papp-pw",
            "-D",
            "sbtest",
            "--quick",
            "-N",
            "-B",
            "-e",
        ])
        .arg("SELECT seq, REPEAT('x', 100) FROM seq_1_to_1000000")
        .stdout(Stdio::null())
        .status()
        .context("running mariadb")?;
    if !status.success() {
        bail!("the large read through port {port} failed");
    }
    Ok(started.elapsed().as_secs_f64())
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn ratios(m: &Measurement) -> (f64, f64) {
    if m.higher_is_better {
        (m.gateway / m.direct, m.gateway / m.relay)
    } else {
        (m.direct / m.gateway, m.relay / m.gateway)
    }
}

fn render(results: &[Measurement], rss_kib: Option<u64>) -> String {
    let mut out = String::from(
        "\n==> results (ratio: gateway relative to direct / to haproxy; above 1.0 means the gateway did better)\n",
    );
    let _ = writeln!(
        out,
        "{:<24} {:>12} {:>12} {:>12} {:>10}  {:>8} {:>8}",
        "benchmark", "direct", "haproxy", "gateway", "unit", "ratio", "vs relay"
    );
    for m in results {
        let (ratio, ratio_relay) = ratios(m);
        let _ = writeln!(
            out,
            "{:<24} {:>12.2} {:>12.2} {:>12.2} {:>10}  {:>8.3} {:>8.3}",
            m.name, m.direct, m.relay, m.gateway, m.unit, ratio, ratio_relay
        );
    }
    if let Some(kib) = rss_kib {
        let _ = writeln!(out, "gateway peak RSS: {} KiB ({} MiB)", kib, kib / 1024);
    }
    out
}

fn to_json(results: &[Measurement], rss_kib: Option<u64>) -> String {
    let mut items: Vec<String> = results
        .iter()
        .map(|m| {
            let (ratio, ratio_relay) = ratios(m);
            format!(
                "{{\"name\":\"{}\",\"unit\":\"{}\",\"direct\":{:.4},\"relay\":{:.4},\"gateway\":{:.4},\"ratio\":{:.4},\"ratio_relay\":{:.4}}}",
                m.name, m.unit, m.direct, m.relay, m.gateway, ratio, ratio_relay
            )
        })
        .collect();
    if let Some(kib) = rss_kib {
        items.push(format!(
            "{{\"name\":\"gateway_peak_rss\",\"unit\":\"KiB\",\"direct\":null,\"relay\":null,\"gateway\":{kib},\"ratio\":null,\"ratio_relay\":null}}"
        ));
    }
    format!("[\n  {}\n]\n", items.join(",\n  "))
}

/// Runs a closure on drop.
struct Guard(Option<Box<dyn FnOnce()>>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// Kills a child process on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
