//! The lab: a client host, the bastion where Tollgate runs and a database host, made from
//! network namespaces and veth pairs by `tests/lab/lab.sh` (the same script the benchmarks and
//! the Vagrant VM use; docs/lab.md draws it). The bastion routes between the client's network
//! (`198.18.1.0/24`, `fd00:198:18:1::/64`) and the database's (`198.18.2.0/24`,
//! `fd00:198:18:2::/64`).
//!
//! Also the instruments of the bypass suite (`tests/scripts/bypass.py`): a packet capture on
//! the database host ([`Sniffer`]), "pong" servers ([`Background`]), and the techniques
//! ([`bypass`], [`bypass_in_cgroup`]), each answering whether it reached the database host.

use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::Value;

use crate::{Netns, command_in, run_capture, workspace_root};

/// The client's address (`eth0` of the client host).
pub const CLIENT_V4: &str = "198.18.1.2";
/// The client's IPv6 address.
pub const CLIENT_V6: &str = "fd00:198:18:1::2";
/// The bastion's address on the client's network (`tgc`), the client's default gateway.
pub const BASTION_CLIENT_V4: &str = "198.18.1.1";
/// The bastion's IPv6 address on the client's network.
pub const BASTION_CLIENT_V6: &str = "fd00:198:18:1::1";
/// The bastion's address on the database's network (`tgd`): where the gateway dials from.
pub const BASTION_DB_V4: &str = "198.18.2.1";
/// The bastion's IPv6 address on the database's network.
pub const BASTION_DB_V6: &str = "fd00:198:18:2::1";
/// The database host's address (`eth0` of the database host).
pub const DB_V4: &str = "198.18.2.2";
/// The database host's IPv6 address.
pub const DB_V6: &str = "fd00:198:18:2::2";

/// One of the lab's three hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// `tgl-TAG-c`: where clients run.
    Client,
    /// `tgl-TAG-b`: routes between the two networks; where Tollgate runs.
    Bastion,
    /// `tgl-TAG-d`: where MariaDB runs.
    Db,
}

/// `tests/lab/lab.sh`.
#[must_use]
pub fn lab_script() -> PathBuf {
    workspace_root().join("tests/lab/lab.sh")
}

/// `tests/scripts/bypass.py`.
#[must_use]
pub fn bypass_script() -> PathBuf {
    workspace_root().join("tests/scripts/bypass.py")
}

/// A lab made by `lab.sh up TAG`, removed by `lab.sh down TAG` on drop (also when a test
/// fails; processes still running in its hosts are ended then). Drop servers started in it
/// (e.g. [`crate::MariaDb`]) before the lab: declare them after it.
pub struct Lab {
    tag: String,
    client: Netns,
    bastion: Netns,
    db: Netns,
}

impl Lab {
    /// Brings up the lab `tag` (1-16 letters or digits; make it unique per test process, e.g.
    /// a letter and the pid), replacing a leftover lab of the same tag.
    pub fn up(tag: &str) -> anyhow::Result<Self> {
        let lab = Self {
            tag: tag.to_owned(),
            client: Netns {
                name: format!("tgl-{tag}-c"),
            },
            bastion: Netns {
                name: format!("tgl-{tag}-b"),
            },
            db: Netns {
                name: format!("tgl-{tag}-d"),
            },
        };
        let output = run_capture(Command::new(lab_script()).args(["up", tag]))?;
        if !output.status.success() {
            bail!(
                "lab.sh up {tag} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(lab)
    }

    /// The lab's tag.
    #[must_use]
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The client host.
    #[must_use]
    pub fn client(&self) -> &Netns {
        &self.client
    }

    /// The bastion.
    #[must_use]
    pub fn bastion(&self) -> &Netns {
        &self.bastion
    }

    /// The database host.
    #[must_use]
    pub fn db(&self) -> &Netns {
        &self.db
    }

    /// One of the hosts.
    #[must_use]
    pub fn host(&self, host: Host) -> &Netns {
        match host {
            Host::Client => &self.client,
            Host::Bastion => &self.bastion,
            Host::Db => &self.db,
        }
    }

    /// `program` to be run in `host` (`nsenter --net`, see [`command_in`]).
    #[must_use]
    pub fn command(&self, host: Host, program: impl AsRef<std::ffi::OsStr>) -> Command {
        command_in(Some(self.host(host)), program)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // lab.sh down ends what still runs in the hosts and deletes them; the Netns fields'
        // own drops then find nothing left to delete.
        let _ = run_capture(Command::new(lab_script()).args(["down", &self.tag]));
    }
}

/// Parses the one JSON line a technique prints.
fn technique_result(command: &mut Command) -> anyhow::Result<Value> {
    let output = run_capture(command)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}): {stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| {
        format!(
            "{command:?} printed no result line: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Runs `bypass.py ARGS...` in `netns`: `{"technique", "reached", "detail"}`.
pub fn bypass(netns: &Netns, args: &[&str]) -> anyhow::Result<Value> {
    technique_result(
        command_in(Some(netns), "python3")
            .arg(bypass_script())
            .args(args),
    )
}

/// Like [`bypass`], from a process that first moves itself into `cgroup` (cgroup v2).
pub fn bypass_in_cgroup(netns: &Netns, cgroup: &Path, args: &[&str]) -> anyhow::Result<Value> {
    technique_result(
        command_in(Some(netns), "sh")
            .args(["-c", r#"echo $$ > "$0" && exec "$@""#])
            .arg(cgroup.join("cgroup.procs"))
            .arg("python3")
            .arg(bypass_script())
            .args(args),
    )
}

/// Starts `command` (stdout piped) and waits until it prints "ready".
fn start_ready(mut command: Command) -> anyhow::Result<Child> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if line.trim() != "ready" {
        let _ = child.kill();
        let output = child.wait_with_output()?;
        bail!(
            "{command:?} did not get ready: {line}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(child)
}

/// A `bypass.py` server (`listen-tcp PORT`, `listen-udp PORT`), killed on drop.
pub struct Background {
    child: Child,
}

impl Background {
    /// Starts `bypass.py ARGS...` in `netns` and waits until it listens.
    pub fn start(netns: &Netns, args: &[&str]) -> anyhow::Result<Self> {
        let mut command = command_in(Some(netns), "python3");
        command.arg(bypass_script()).args(args);
        Ok(Self {
            child: start_ready(command)?,
        })
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A packet capture (`bypass.py sniff`) on an interface of a host: every IPv4 and IPv6 packet,
/// summarised (`dir` "in"/"out", `family`, `src`, `dst`, `proto`, `sport`, `dport`, `flags`,
/// `seq`, `fragment`). Killed on drop.
pub struct Sniffer {
    child: Option<Child>,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sniffer {
    /// Starts capturing on `iface` in `netns` (at most 10 minutes); returns once it captures.
    pub fn start(netns: &Netns, iface: &str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("tollgate-sniff-")
            .tempdir()?;
        let out = dir.path().join("packets.json");
        let mut command = command_in(Some(netns), "python3");
        command
            .arg(bypass_script())
            .args(["sniff", "--iface", iface, "--seconds", "600", "--out"])
            .arg(&out);
        Ok(Self {
            child: Some(start_ready(command)?),
            out,
            _dir: dir,
        })
    }

    /// Stops the capture (after a moment for packets in flight) and returns what it saw.
    pub fn finish(mut self) -> anyhow::Result<Vec<Value>> {
        std::thread::sleep(Duration::from_millis(200));
        let child = self.child.take().context("the sniffer has stopped")?;
        kill(Pid::from_raw(i32::try_from(child.id())?), Signal::SIGTERM)?;
        let output = child.wait_with_output()?;
        let text = fs::read_to_string(&self.out).with_context(|| {
            format!(
                "the sniffer wrote nothing ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
        Ok(serde_json::from_str(&text)?)
    }
}

impl Drop for Sniffer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A cgroup v2 directory that is removed on drop, after the processes in it are killed:
/// one made with [`CgroupDir::create`], or one something else made ([`CgroupDir::adopt`]).
pub struct CgroupDir {
    /// The directory.
    pub path: PathBuf,
}

impl CgroupDir {
    /// Makes the directory (a leftover one is fine).
    pub fn create(path: PathBuf) -> anyhow::Result<Self> {
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }

    /// Takes charge of removing `path` (which may not exist yet) on drop.
    #[must_use]
    pub fn adopt(path: PathBuf) -> Self {
        Self { path }
    }
}

impl Drop for CgroupDir {
    fn drop(&mut self) {
        for _ in 0..50 {
            if !self.path.exists() {
                return;
            }
            let procs = fs::read_to_string(self.path.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|line| line.trim().parse().ok()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            if fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("cgroup {} left behind", self.path.display());
    }
}
