//! The `lab` part (`--only lab`): the per-connection and per-packet cost of the eBPF path
//! against a plain routed path, in the same run, in the three-host lab of `tests/lab/lab.sh`
//! (docs/lab.md, "Benchmark"). Needs root; skipped with a message otherwise.
//!
//! Rounds alternate the sides so all see the same machine: the plain side (the bastion only
//! routes), the relay side (haproxy in TCP mode in the bastion, Tollgate still down), then
//! `tollgate up` + `tollgate serve` in the bastion (the eBPF side), then `tollgate serve`
//! stopped and `tollgate down`. Best of [`ROUNDS`] per quantity.
//!
//! - MySQL to 198.18.2.2:3306 (MariaDB on the db host): sequential connections (greeting and
//!   `COM_QUIT`; and with a login), and `SELECT 1` round trips over one connection. On the
//!   eBPF side the connect is steered into the gateway, which relays it. The relay side (an L4
//!   proxy on the bastion: what any proxy costs, the floor the gateway is judged against)
//!   connects to haproxy on the bastion's client-facing 198.18.1.1:3306 instead, which
//!   forwards to 198.18.2.2:3306.
//! - Not ours: an echo/sink server on 198.18.2.3, an address added to the db host for the
//!   bench only, so unprotected. Its packets still cross the bastion's client-facing interface
//!   (XDP and TC ingress) and database-facing one (TC egress): 64-byte round trips over one
//!   connection and a bulk stream, i.e. what classifying a packet as "not ours" costs.
//!
//! The traffic comes from `xtask/bench/lab_client.py` in the client host, stays in the lab's
//! addresses and is bounded in count; the lab is removed on drop, also on error.

use std::{
    fmt::Write as _,
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use super::{ChildGuard, gateway_only};
use crate::command::cmd;

/// The lab's tag: namespaces `tgl-bench-c`, `tgl-bench-b`, `tgl-bench-d`.
const TAG: &str = "bench";
const DB: &str = "198.18.2.2";
/// The unprotected address added to the db host, and the echo/sink server's port.
const OTHER: &str = "198.18.2.3";
const ECHO_PORT: &str = "7000";
const CLIENT: &str = "198.18.1.2";
/// The bastion's client-facing address: haproxy listens there on the relay side.
const RELAY: &str = "198.18.1.1";
/// The bastion's address on the database network: what MariaDB sees through the gateway.
const BASTION_DB: &str = "198.18.2.1";
const ROUNDS: usize = 3;
/// Per round and side.
const CONNECTIONS: u32 = 2000;
const LOGINS: u32 = 1000;
const QUERIES: u32 = 10_000;
const ROUND_TRIPS: u32 = 20_000;
const STREAM_SECONDS: &str = "1";
/// The MySQL clients' source ports: each run binds its own block, from here up, and never
/// reuses a port. After a steered connection the bastion may hold the gateway's accepted
/// socket in TIME-WAIT (its local address the database's): a new SYN with the same four-tuple
/// then goes nowhere, neither after `tollgate down` (the bastion's early demux attaches it to
/// that socket and forwarding drops it) nor with the gateway up (the steered SYN's new
/// connection collides with it). Random ephemeral ports hit such a tuple within a few
/// thousand connections; fresh ones never do. The relay side reuses the plain side's block of
/// its round: its connections go to another address (the relay's), so no four-tuple repeats.
const SPORT_BASE: u32 = 10_000;

/// Which path a run measures.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    /// The bastion only routes.
    Plain,
    /// haproxy (TCP mode) on the bastion; only the MySQL quantities.
    Relay,
    /// Tollgate up: the connect is steered into the gateway.
    Ebpf,
}

/// One quantity, best of the rounds on each side.
struct Pair {
    name: &'static str,
    unit: &'static str,
    what: &'static str,
    plain: Sample,
    /// `None` for the quantities the relay does not carry (the unprotected ones).
    relay: Option<Sample>,
    ebpf: Sample,
}

/// A client run's numbers: a rate (higher is better) and latencies in microseconds.
#[derive(Clone, Copy)]
struct Sample {
    rate: f64,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
}

impl Sample {
    const NONE: Self = Self {
        rate: 0.0,
        p50_us: None,
        p99_us: None,
    };

    /// The better of two runs, quantity by quantity.
    fn best(self, other: Self) -> Self {
        let min = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Self {
            rate: self.rate.max(other.rate),
            p50_us: min(self.p50_us, other.p50_us),
            p99_us: min(self.p99_us, other.p99_us),
        }
    }
}

/// Runs the part; its JSON items (none when skipped).
pub fn run(root: &Path) -> anyhow::Result<Vec<String>> {
    if !nix::unistd::Uid::effective().is_root() {
        println!("==> lab: skipped (needs root: network namespaces, eBPF programs, cgroups)");
        return Ok(Vec::new());
    }
    println!("==> lab: building tollgate (release)");
    crate::build(true)?;
    let work = root.join("target/bench/lab");
    fs::create_dir_all(&work)?;
    let started = Instant::now();
    let lab = Lab::up(root, &work)?;
    let client = root.join("xtask/bench/lab_client.py");
    let client = client.to_string_lossy().into_owned();
    let _echo = lab.echo_server(&client)?;

    let mut pairs = [
        pair(
            "lab_connect_greeting",
            "connections/s",
            "TCP connect + greeting + COM_QUIT",
            true,
        ),
        pair(
            "lab_connect_login",
            "connections/s",
            "TCP connect + greeting + login + COM_QUIT",
            true,
        ),
        pair(
            "lab_select1_pingpong",
            "queries/s",
            "SELECT 1 round trips, one connection",
            true,
        ),
        pair(
            "lab_unprotected_pingpong",
            "round trips/s",
            "64-byte echo round trips to 198.18.2.3",
            false,
        ),
        pair(
            "lab_unprotected_stream",
            "MB/s",
            "bulk send to 198.18.2.3",
            false,
        ),
    ];
    let mut sport = SPORT_BASE;
    for round in 1..=ROUNDS {
        println!("    round {round}/{ROUNDS}: plain routed path");
        lab.check_seen_as(DB, CLIENT)?;
        let mut relay_sport = sport;
        measure(&lab, &client, &mut pairs, Side::Plain, &mut sport)?;
        println!("    round {round}/{ROUNDS}: haproxy (TCP mode) on the bastion");
        let relay = lab.relay_up()?;
        lab.check_seen_as(RELAY, BASTION_DB)?;
        measure(&lab, &client, &mut pairs, Side::Relay, &mut relay_sport)?;
        drop(relay);
        println!("    round {round}/{ROUNDS}: tollgate up + serve");
        let gateway = lab.tollgate_up()?;
        lab.check_seen_as(DB, BASTION_DB)?;
        measure(&lab, &client, &mut pairs, Side::Ebpf, &mut sport)?;
        drop(gateway);
        println!(
            "    bastion sockets in TIME-WAIT after tollgate down: {}",
            lab.bastion_time_wait()
        );
    }
    drop(lab);
    print!("{}", render(&pairs, started.elapsed()));
    Ok(pairs.iter().map(to_json).collect())
}

fn pair(name: &'static str, unit: &'static str, what: &'static str, relayed: bool) -> Pair {
    Pair {
        name,
        unit,
        what,
        plain: Sample::NONE,
        relay: relayed.then_some(Sample::NONE),
        ebpf: Sample::NONE,
    }
}

/// One run of every client on one side (the relay side: the MySQL ones, to haproxy), folded
/// into the best so far; `sport` is the next free source port (see [`SPORT_BASE`]).
fn measure(
    lab: &Lab,
    client: &str,
    pairs: &mut [Pair; 5],
    side: Side,
    sport: &mut u32,
) -> anyhow::Result<()> {
    let db = if side == Side::Relay { RELAY } else { DB };
    let connections = CONNECTIONS.to_string();
    let logins = LOGINS.to_string();
    let queries = QUERIES.to_string();
    let round_trips = ROUND_TRIPS.to_string();
    let ports = [*sport, *sport + CONNECTIONS, *sport + CONNECTIONS + LOGINS];
    *sport += CONNECTIONS + LOGINS + 1;
    let ports = ports.map(|p| p.to_string());
    let runs: [&[&str]; 5] = [
        &["connect", db, "3306", &connections, "--sport", &ports[0]],
        &[
            "connect", db, "3306", &logins, "app", "app-pw", "--sport", &ports[1],
        ],
        &[
            "query", db, "3306", &queries, "app", "app-pw", "--sport", &ports[2],
        ],
        &["pingpong", OTHER, ECHO_PORT, &round_trips, "64"],
        &["stream", OTHER, ECHO_PORT, STREAM_SECONDS],
    ];
    for (pair, args) in pairs.iter_mut().zip(runs) {
        let best = match side {
            Side::Plain => &mut pair.plain,
            Side::Ebpf => &mut pair.ebpf,
            Side::Relay => match &mut pair.relay {
                Some(relay) => relay,
                None => continue,
            },
        };
        *best = best.best(lab.client_run(client, args)?);
    }
    Ok(())
}

/// The lab `bench`, MariaDB on its db host and the extra address; removed on drop (Tollgate
/// down first when it is up).
struct Lab {
    script: String,
    mariadb: String,
    work: PathBuf,
    tollgate: String,
    config: PathBuf,
    cgroups: [PathBuf; 2],
    python: &'static str,
}

impl Lab {
    fn up(root: &Path, work: &Path) -> anyhow::Result<Self> {
        let script = root.join("tests/lab/lab.sh").to_string_lossy().into_owned();
        let cgroup_root = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.join("cgroup.controllers").exists())
            .context("no cgroup v2 mount")?;
        let cgroups = [
            cgroup_root.join("tollgate-bench"),
            cgroup_root.join("tollgate-bench-gw"),
        ];
        let store = work.join("recordings");
        let _ = fs::remove_dir_all(&store);
        let config = work.join("tollgate.toml");
        fs::write(
            &config,
            format!(
                "[listener]\naddresses = [\"127.0.0.1:15306\"]\n\n\
                 [interception]\ncgroup = \"{}\"\ngateway_cgroup = \"{}\"\n\
                 pin_path = \"/sys/fs/bpf/tollgate-bench\"\n\n\
                 [interception.routed]\ninterfaces = [\"tgc\"]\nport = 15307\n\n\
                 [interception.egress]\ninterfaces = [\"tgd\"]\n\n\
                 [recording]\nstore = \"{}\"\n\n\
                 [[targets]]\nname = \"db\"\naddress = \"{DB}/32\"\nport = 3306\n",
                cgroups[0].display(),
                cgroups[1].display(),
                store.display()
            ),
        )?;
        let python = if Path::new("/usr/bin/python3").exists() {
            "/usr/bin/python3"
        } else {
            "python3"
        };
        // From here on, dropping the guard removes whatever was made.
        let lab = Self {
            script,
            mariadb: root
                .join("tests/scripts/mariadb.sh")
                .to_string_lossy()
                .into_owned(),
            work: work.to_path_buf(),
            tollgate: root
                .join("target/release/tollgate")
                .to_string_lossy()
                .into_owned(),
            config,
            cgroups,
            python,
        };
        // Leftovers of an interrupted run first.
        lab.tollgate_down();
        cmd(&lab.script, &["up", TAG]).output()?;
        cmd(
            "ip",
            &[
                "-n",
                &format!("tgl-{TAG}-d"),
                "addr",
                "add",
                &format!("{OTHER}/24"),
                "dev",
                "eth0",
            ],
        )
        .output()?;
        let db_dir = lab.db_dir();
        let out = lab
            .exec("db", &lab.mariadb, &["start", &db_dir, "3306", "*"])
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!(
                "starting MariaDB on the db host: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(lab)
    }

    fn db_dir(&self) -> String {
        self.work.join("mariadb").to_string_lossy().into_owned()
    }

    /// `lab.sh exec bench HOST program args...`
    fn exec(&self, host: &str, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new(&self.script);
        command.args(["exec", TAG, host, program]).args(args);
        command
    }

    /// The echo/sink server on [`OTHER`], once it says "ready".
    fn echo_server(&self, client: &str) -> anyhow::Result<ChildGuard> {
        let mut child = ChildGuard(
            self.exec("db", self.python, &[client, "serve", OTHER, ECHO_PORT])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .context("starting the echo server")?,
        );
        let stdout = child.0.stdout.take().context("the echo server's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("the echo server did not start: {line:?}");
        }
        Ok(child)
    }

    /// TCP sockets in TIME-WAIT in the bastion (`?` when `ss` fails).
    fn bastion_time_wait(&self) -> String {
        self.exec("bastion", "ss", &["-Htan", "state", "time-wait"])
            .stdin(Stdio::null())
            .output()
            .map_or_else(
                |_| "?".to_owned(),
                |out| {
                    String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .count()
                        .to_string()
                },
            )
    }

    /// One run of `lab_client.py` in the client host.
    fn client_run(&self, client: &str, args: &[&str]) -> anyhow::Result<Sample> {
        let mut full = vec![client];
        full.extend_from_slice(args);
        let output = self
            .exec("client", self.python, &full)
            .stdin(Stdio::null())
            .output()
            .context("running lab_client.py")?;
        if !output.status.success() {
            bail!(
                "lab_client.py {} failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let rate = number(&text, "rate")
            .or_else(|| number(&text, "mb_per_s"))
            .with_context(|| format!("no rate in {text:?}"))?;
        Ok(Sample {
            rate,
            p50_us: number(&text, "p50_us"),
            p99_us: number(&text, "p99_us"),
        })
    }

    /// Fails unless MariaDB, reached at `host`, sees the client's connection come from
    /// `expected` (the client itself on the plain path, the bastion through the relay or the
    /// gateway).
    fn check_seen_as(&self, host: &str, expected: &str) -> anyhow::Result<()> {
        let output = self
            .exec(
                "client",
                "mariadb",
                &[
                    "--no-defaults",
                    "-h",
                    host,
                    "-u",
                    "app",
                    "-papp-pw",
                    "--connect-timeout=5",
                    "-N",
                    "-B",
                    "-e",
                    "SELECT host FROM information_schema.processlist WHERE id = CONNECTION_ID()",
                ],
            )
            .stdin(Stdio::null())
            .output()
            .context("running mariadb in the client host")?;
        let seen = String::from_utf8_lossy(&output.stdout);
        let address = seen.trim().rsplit_once(':').map_or("", |(a, _)| a);
        if address != expected {
            bail!(
                "MariaDB saw the client as {:?}, not {expected}: {}",
                seen.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    /// haproxy in TCP mode in the bastion, [`RELAY`]:3306 to [`DB`]:3306 (the bench's haproxy
    /// configuration, `start_haproxy`), once it listens; killed when the guard drops.
    fn relay_up(&self) -> anyhow::Result<ChildGuard> {
        let config = self.work.join("haproxy.cfg");
        fs::write(
            &config,
            format!(
                "global\n  maxconn 4096\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\n\
                 frontend mysql\n  bind {RELAY}:3306\n  default_backend db\n\
                 backend db\n  server db {DB}:3306\n"
            ),
        )?;
        let log = fs::File::create(self.work.join("haproxy.log"))?;
        let config = config.to_string_lossy().into_owned();
        // `lab.sh exec` execs nsenter, which execs haproxy: the child is haproxy itself.
        let mut relay = ChildGuard(
            self.exec("bastion", "haproxy", &["-f", &config, "-db"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("starting haproxy")?,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let listening = self
                .exec("bastion", "ss", &["-Hltn", &format!("src {RELAY}:3306")])
                .stdin(Stdio::null())
                .output()?;
            if !String::from_utf8_lossy(&listening.stdout).trim().is_empty() {
                return Ok(relay);
            }
            if relay.0.try_wait()?.is_some() || Instant::now() > deadline {
                bail!(
                    "haproxy did not start listening on {RELAY}:3306; see {}",
                    self.work.join("haproxy.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// `tollgate up`, then `tollgate serve` in the bastion until it logs "tollgate ready";
    /// both undone when the guard drops.
    fn tollgate_up(&self) -> anyhow::Result<Tollgate<'_>> {
        let config = self.config.to_string_lossy().into_owned();
        // Down again on drop, also when `up` fails halfway.
        let mut tollgate = Tollgate {
            lab: self,
            serve: None,
        };
        let out = self
            .exec("bastion", &self.tollgate, &["up", "--config", &config])
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!(
                "tollgate up failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let log_path = self.work.join("serve.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let ready_before = ready_count(&log_path);
        let child = self
            .exec("bastion", &self.tollgate, &["serve", "--config", &config])
            .env("TOLLGATE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting tollgate serve")?;
        let serve = tollgate.serve.insert(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while ready_count(&log_path) <= ready_before {
            if serve.try_wait()?.is_some() || Instant::now() > deadline {
                bail!(
                    "tollgate serve did not get ready; see {}",
                    log_path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Ok(tollgate)
    }

    fn tollgate_down(&self) {
        let config = self.config.to_string_lossy().into_owned();
        if Path::new(&format!("/run/netns/tgl-{TAG}-b")).exists() {
            let _ = self
                .exec("bastion", &self.tollgate, &["down", "--config", &config])
                .stdin(Stdio::null())
                .output();
        }
        for cgroup in &self.cgroups {
            let _ = fs::remove_dir(cgroup);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.tollgate_down();
        let _ = self
            .exec("db", &self.mariadb, &["stop", &self.db_dir()])
            .stdin(Stdio::null())
            .output();
        let _ = cmd(&self.script, &["down", TAG]).output();
    }
}

/// `tollgate serve` in the bastion (SIGTERM, then SIGKILL on drop), and `tollgate down`.
struct Tollgate<'a> {
    lab: &'a Lab,
    serve: Option<Child>,
}

impl Drop for Tollgate<'_> {
    fn drop(&mut self) {
        if let Some(mut child) = self.serve.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.lab.tollgate_down();
    }
}

fn ready_count(log: &Path) -> usize {
    fs::read_to_string(log)
        .unwrap_or_default()
        .matches("tollgate ready")
        .count()
}

/// The number after `"key": ` in a line of JSON (`lab_client.py` prints flat objects).
fn number(json: &str, key: &str) -> Option<f64> {
    let rest = &json[json.find(&format!("\"{key}\":"))? + key.len() + 3..];
    let rest = rest.trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | 'e' | 'E' | '+')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn render(pairs: &[Pair], elapsed: Duration) -> String {
    let mut out = format!(
        "\n==> lab: eBPF path vs plain routed path and an L4 relay (haproxy, TCP mode, on the \
         bastion) (best of {ROUNDS}, alternating; {:.0} s; ratios: eBPF / plain and eBPF / relay, \
         below 1.0 means the eBPF path is slower)\n",
        elapsed.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "{:<26} {:>10} {:>10} {:>10} {:>14} {:>10} {:>10}  {:>23} {:>23}",
        "benchmark",
        "plain",
        "relay",
        "eBPF",
        "unit",
        "eBPF/plain",
        "eBPF/relay",
        "p50 us plain/relay/eBPF",
        "p99 us plain/relay/eBPF"
    );
    let us = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
    let relay_us = |p: &Pair, pick: fn(&Sample) -> Option<f64>| us(p.relay.as_ref().and_then(pick));
    for p in pairs {
        let _ = writeln!(
            out,
            "{:<26} {:>10.1} {:>10} {:>10.1} {:>14} {:>10.3} {:>10}  {:>23} {:>23}",
            p.name,
            p.plain.rate,
            p.relay
                .map_or_else(|| "-".to_owned(), |r| format!("{:.1}", r.rate)),
            p.ebpf.rate,
            p.unit,
            p.ebpf.rate / p.plain.rate,
            ratio_ebpf_relay(p).map_or_else(|| "-".to_owned(), |r| format!("{r:.3}")),
            format!(
                "{}/{}/{}",
                us(p.plain.p50_us),
                relay_us(p, |s| s.p50_us),
                us(p.ebpf.p50_us)
            ),
            format!(
                "{}/{}/{}",
                us(p.plain.p99_us),
                relay_us(p, |s| s.p99_us),
                us(p.ebpf.p99_us)
            ),
        );
    }
    for p in pairs {
        let _ = writeln!(out, "  {}: {}", p.name, p.what);
    }
    out
}

/// eBPF / relay, for the quantities the relay carries.
fn ratio_ebpf_relay(p: &Pair) -> Option<f64> {
    p.relay.map(|r| p.ebpf.rate / r.rate)
}

/// `direct` is the plain routed path, `relay` haproxy on the bastion (null for the unprotected
/// rows) and `gateway` the eBPF path (for the unprotected rows: with the programs attached);
/// `ratio` is eBPF / plain, `ratio_relay` (also `ratio_ebpf_relay`) eBPF / relay.
fn to_json(p: &Pair) -> String {
    let json_us = |v: Option<f64>| v.map_or_else(|| "null".to_owned(), |v| format!("{v:.1}"));
    let json_num = |v: Option<f64>| v.map_or_else(|| "null".to_owned(), |v| format!("{v:.4}"));
    let relay_rate = json_num(p.relay.map(|r| r.rate));
    let ratio_relay = json_num(ratio_ebpf_relay(p));
    let item = gateway_only(
        p.name,
        p.unit,
        &format!("{:.4}", p.ebpf.rate),
        &format!(
            ",\"plain\":{:.4},\"ebpf\":{:.4},\"ratio_ebpf_plain\":{:.4},\
             \"ratio_ebpf_relay\":{ratio_relay},\"plain_p50_us\":{},\"relay_p50_us\":{},\
             \"ebpf_p50_us\":{},\"plain_p99_us\":{},\"relay_p99_us\":{},\"ebpf_p99_us\":{},\
             \"rounds\":{ROUNDS},\"what\":\"{}\"",
            p.plain.rate,
            p.ebpf.rate,
            p.ebpf.rate / p.plain.rate,
            json_us(p.plain.p50_us),
            json_us(p.relay.and_then(|r| r.p50_us)),
            json_us(p.ebpf.p50_us),
            json_us(p.plain.p99_us),
            json_us(p.relay.and_then(|r| r.p99_us)),
            json_us(p.ebpf.p99_us),
            p.what
        ),
    );
    item.replacen(
        "\"direct\":null",
        &format!("\"direct\":{:.4}", p.plain.rate),
        1,
    )
    .replacen("\"relay\":null", &format!("\"relay\":{relay_rate}"), 1)
    .replacen(
        "\"ratio\":null",
        &format!("\"ratio\":{:.4}", p.ebpf.rate / p.plain.rate),
        1,
    )
    .replacen(
        "\"ratio_relay\":null",
        &format!("\"ratio_relay\":{ratio_relay}"),
        1,
    )
}
