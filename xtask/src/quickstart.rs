//! `cargo xtask quickstart`: the main job on embedded defaults, on this machine.
//!
//! 1. install what is missing and build `tollgate`;
//! 2. start a local MariaDB with a demo schema (`tests/scripts/mariadb.sh`, as the tests do);
//! 3. write `target/quickstart/tollgate.toml` and start the gateway with the embedded store;
//! 4. run a demo `mariadb` session inside the managed cgroup, as an unprivileged user, against
//!    MariaDB's own address: the kernel steers it into the gateway;
//! 5. print what was recorded and where; keep the gateway up until Ctrl-C (or exit).

use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use crate::{command::cmd, setup};

const MARIADB_PORT: u16 = 23306;
const GATEWAY_PORT: u16 = 13306;
/// The demo client runs as `nobody`, to show that the kernel attributes the real user.
const DEMO_UID: &str = "65534";

/// Runs the quickstart.
pub fn run(root: &Path, exit_after_demo: bool) -> anyhow::Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        bail!(
            "the quickstart loads eBPF programs and creates a cgroup, which needs root: run `sudo \
             -E cargo xtask quickstart` (or as root)"
        );
    }
    setup::all_but_the_durable_broker()?;
    println!("==> building tollgate");
    crate::build(false)?;
    let tollgate = root.join("target/debug/tollgate");

    let work = root.join("target/quickstart");
    fs::create_dir_all(&work).context("creating target/quickstart")?;
    let mariadb = start_mariadb(&work.join("mariadb"))?;

    let config = work.join("tollgate.toml");
    let store = work.join("recordings");
    let cgroup = cgroup_root()?.join("tollgate-quickstart");
    // The gateway's own database password: a 0600 file only the gateway reads.
    let password_file = work.join("demo-db.password");
    write_private(&password_file, "demo-pw\n")?;
    let alice_hash = cmd(&tollgate.to_string_lossy(), &["hash-password"])
        .stdin("alice-pw\n")
        .output()
        .context("hashing alice's password")?;
    fs::write(
        &config,
        config_text(
            &cgroup,
            &store,
            &password_file,
            alice_hash.trim(),
            &work.join("mariadb/tls/ca.pem"),
        ),
    )
    .context("writing tollgate.toml")?;
    println!("==> configuration: {}", config.display());

    let log_path = work.join("gateway.log");
    let mut gateway = start_gateway(&tollgate, &config, &log_path)?;
    let gateway_pid = Pid::from_raw(i32::try_from(gateway.id()).unwrap_or(i32::MAX));
    let gateway_guard = Cleanup::new(move || {
        let _ = kill(gateway_pid, Signal::SIGTERM);
    });

    println!(
        "\n==> demo session: `tollgate run` puts the client in {} and it connects to \
         127.0.0.1:{MARIADB_PORT}, MariaDB's own address",
        cgroup.display()
    );
    let demo = demo_command(&tollgate, &config);
    println!("    $ {}\n", shell_words(&demo));
    let status = Command::new(&demo[0])
        .args(&demo[1..])
        .status()
        .context("running the demo client")?;
    if !status.success() {
        bail!(
            "the demo session failed ({status}); gateway log: {}",
            log_path.display()
        );
    }
    println!(
        "\n    alice logged in to the gateway; MariaDB sees the gateway's own account (demo@%) and \
         its upstream socket (`upstream_local` below), not the client's: the session went \
         through Tollgate, and alice never saw the database password."
    );
    show_recording(&tollgate, &config, &store, &log_path)?;

    if !exit_after_demo {
        println!(
            "\n==> the gateway keeps running; try a session of your own (from another terminal):\n    \
             sudo {tollgate} run --config {config} -- mariadb -h 127.0.0.1 -P {MARIADB_PORT} -u alice -palice-pw demo\n    \
             then: {tollgate} sessions list --config {config}\n    Ctrl-C stops the gateway and MariaDB.",
            tollgate = tollgate.display(),
            config = config.display(),
        );
        wait_for_ctrl_c()?;
        println!("\n==> stopping");
    }
    drop(gateway_guard);
    let _ = gateway.wait();
    drop(mariadb);
    println!("==> quickstart done (gateway and MariaDB stopped)");
    Ok(())
}

/// Starts the demo MariaDB (stopping a previous run's first); the guard stops it.
fn start_mariadb(dir: &Path) -> anyhow::Result<Cleanup> {
    let script = script_path();
    let dir_text = dir.to_string_lossy().into_owned();
    // A previous run's server may still be up (e.g. after a kill -9): stop it first.
    cmd(&script, &["stop", &dir_text]).run()?;
    println!("==> starting MariaDB on 127.0.0.1:{MARIADB_PORT} (data in {dir_text})");
    cmd(
        &script,
        &["start", &dir_text, &MARIADB_PORT.to_string(), "127.0.0.1"],
    )
    .run()?;
    Ok(Cleanup::new(move || {
        let _ = cmd(&script, &["stop", &dir_text]).run();
    }))
}

/// Prints the gateway's log lines about the demo session and what the store holds.
fn show_recording(
    tollgate: &Path,
    config: &Path,
    store: &Path,
    log_path: &Path,
) -> anyhow::Result<()> {
    // The gateway logs the end of the session just after the client exits: wait for it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut log = String::new();
    while Instant::now() < deadline {
        log = fs::read_to_string(log_path).unwrap_or_default();
        if log.contains("session ended") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "\n==> what the gateway logged about it ({}):",
        log_path.display()
    );
    let interesting = ["session started", "login", "session ended"];
    for line in log
        .lines()
        .filter(|l| interesting.iter().any(|word| l.contains(word)))
    {
        println!("    {line}");
    }
    let session_id = log
        .lines()
        .filter(|l| l.contains("session started"))
        .filter_map(|l| l.split("session_id=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .next_back()
        .context("the gateway logged no session")?
        .to_owned();
    // The recorder writes in batches: wait until the session's end is in the store.
    let segment = store.join("00000000000000000000.jsonl");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let text = fs::read_to_string(&segment).unwrap_or_default();
        if text
            .lines()
            .any(|l| l.contains(&session_id) && l.contains("\"session.ended\""))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("\n==> what was recorded, and where: {}", store.display());
    let tollgate = tollgate.to_string_lossy();
    let config = config.to_string_lossy();
    println!("    $ tollgate sessions list --config {config}");
    cmd(&tollgate, &["sessions", "list", "--config", &config]).run()?;
    println!("\n    $ tollgate sessions show {session_id} --config {config}");
    cmd(
        &tollgate,
        &["sessions", "show", &session_id, "--config", &config],
    )
    .run()
}

fn wait_for_ctrl_c() -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .context("installing the Ctrl-C handler")?;
    let _ = rx.recv();
    Ok(())
}

fn script_path() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/scripts/mariadb.sh")
        .to_string_lossy()
        .into_owned()
}

/// The cgroup v2 mount: `/sys/fs/cgroup/unified` on hybrid hosts, else `/sys/fs/cgroup`.
fn cgroup_root() -> anyhow::Result<PathBuf> {
    for candidate in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        let path = Path::new(candidate);
        if path.join("cgroup.procs").exists() && path.join("cgroup.controllers").exists() {
            return Ok(path.to_owned());
        }
    }
    bail!(
        "no cgroup v2 mount found at /sys/fs/cgroup/unified or /sys/fs/cgroup: mount one with `mount -t cgroup2 none /sys/fs/cgroup/unified`"
    )
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    let _ = fs::remove_file(path);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

fn config_text(
    cgroup: &Path,
    store: &Path,
    password_file: &Path,
    alice_hash: &str,
    ca: &Path,
) -> String {
    format!(
        r#"# Written by `cargo xtask quickstart`.
[listener]
# Where redirected connections land (one address per family).
addresses = ["127.0.0.1:{GATEWAY_PORT}", "[::1]:{GATEWAY_PORT}"]

[interception]
# Processes in this cgroup (e.g. started with `tollgate run`) are steered into the gateway.
cgroup = "{cgroup}"

[recording]
store = "{store}"

# Who may log in to the gateway (argon2 hashes: `tollgate hash-password`).
[[identities]]
user = "alice"
password_hash = "{alice_hash}"
groups = ["analysts"]

[[targets]]
name = "demo-db"
address = "127.0.0.1"
port = {MARIADB_PORT}

# Deny by default: analysts may use the demo database, for at most 8 hours per session.
[[targets.allow]]
groups = ["analysts"]
databases = ["demo"]
max_session = "8h"

# The gateway logs in to MariaDB itself; clients never see this credential.
[targets.login]
user = "demo"
password_file = "{password_file}"

# ... over TLS, verifying MariaDB's certificate.
[targets.tls]
mode = "required"
ca = "{ca}"
"#,
        cgroup = cgroup.display(),
        store = store.display(),
        password_file = password_file.display(),
        ca = ca.display(),
    )
}

fn start_gateway(tollgate: &Path, config: &Path, log_path: &Path) -> anyhow::Result<Child> {
    let log = fs::File::create(log_path).context("creating the gateway log")?;
    println!("==> starting the gateway (log: {})", log_path.display());
    let mut child = Command::new(tollgate)
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(log)
        .env("NO_COLOR", "1")
        .spawn()
        .context("starting tollgate serve")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = fs::read_to_string(log_path).unwrap_or_default();
        if text.contains("tollgate ready") {
            for line in BufReader::new(text.as_bytes())
                .lines()
                .map_while(Result::ok)
            {
                println!("    {line}");
            }
            return Ok(child);
        }
        if let Some(status) = child.try_wait().context("watching tollgate serve")? {
            bail!("the gateway exited ({status}):\n{text}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the gateway did not become ready within 20 s:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn demo_command(tollgate: &Path, config: &Path) -> Vec<String> {
    [
        tollgate.to_string_lossy().as_ref(),
        "run",
        "--config",
        config.to_string_lossy().as_ref(),
        "--",
        "setpriv",
        &format!("--reuid={DEMO_UID}"),
        &format!("--regid={DEMO_UID}"),
        "--clear-groups",
        "mariadb",
        "--no-defaults",
        "-h",
        "127.0.0.1",
        "-P",
        &MARIADB_PORT.to_string(),
        "-u",
        "alice",
        "-palice-pw",
        "demo",
        "--table",
        "-e",
        "SELECT id, name, plan FROM customers ORDER BY id; \
         SELECT CURRENT_USER() AS mariadb_account, host AS seen_by_mariadb \
         FROM information_schema.processlist WHERE id = CONNECTION_ID()",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// A command line as a shell would need it typed: arguments with spaces or quotes in quotes.
fn shell_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if w.chars()
                .any(|c| c.is_whitespace() || "'\"$;*()".contains(c))
            {
                format!("'{}'", w.replace('\'', "'\\''"))
            } else {
                w.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a closure when dropped: stops what the quickstart started, also on error.
struct Cleanup(Option<Box<dyn FnOnce()>>);

impl Cleanup {
    fn new(f: impl FnOnce() + 'static) -> Self {
        Self(Some(Box::new(f)))
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}
