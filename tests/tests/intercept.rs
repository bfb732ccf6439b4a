//! The kernel data path end to end, with real parts: the eBPF programs attached to a test
//! cgroup, a real MariaDB and the real `mariadb` client, all inside a network namespace made
//! for the test (addresses from `198.18.0.0/15` and `fd00:198:18::/48`). Needs root; skips with
//! the reason otherwise. Everything is removed on drop, also when an assertion fails.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use tollgate_tests::{
    Gateway, MariaDb, Netns, cgroup2_root, command_in, mariadb_client, require_root, run_capture,
    tollgate_bin,
};

const DB_V4: &str = "198.18.0.10";
const DB_V6: &str = "fd00:198:18::10";
const CLIENT_UID: u32 = 4242;

/// The lab's configuration; `port` 0 lets the kernel pick listener ports (for tests that run
/// outside a namespace of their own and must not collide).
fn lab_config(cgroup: &Path, port: u16) -> String {
    format!(
        r#"
[listener]
addresses = ["127.0.0.1:{port}", "[::1]:{port}"]

[interception]
cgroup = "{cgroup}"

[recording]
store = "{{store}}"

[[targets]]
name = "lab-v4"
address = "198.18.0.0/24"
port = 3306

[[targets]]
name = "lab-v6"
address = "fd00:198:18::/64"
port = 3306
"#,
        cgroup = cgroup.display()
    )
}

/// Runs the real `mariadb` client through `tollgate run` (inside the managed cgroup), optionally
/// as another user; returns (pid, stdout lines, stderr).
fn client_in_cgroup(
    ns: &Netns,
    config: &Path,
    as_uid: Option<u32>,
    host: &str,
    port: u16,
    sql: &str,
) -> (u32, Vec<String>, String) {
    let mut command = command_in(Some(ns), tollgate_bin());
    command.args(["run", "--config"]).arg(config).arg("--");
    if let Some(uid) = as_uid {
        command.args([
            "setpriv",
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
        ]);
    }
    command.args(mariadb_client(host, port, "app", "app-pw", sql));
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn client");
    // nsenter, tollgate run and setpriv each exec the next: the pid is the mariadb client's.
    let pid = child.id();
    let output = child.wait_with_output().expect("client output");
    let stdout = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if output.status.success() {
        (pid, stdout, stderr)
    } else {
        (0, stdout, stderr)
    }
}

fn session_started_by(gateway: &Gateway, pid: u32) -> Value {
    gateway
        .log_messages("session started")
        .into_iter()
        .find(|line| line["pid"] == pid)
        .unwrap_or_else(|| panic!("no session for pid {pid} in:\n{}", gateway.log_text()))
}

fn port_of(host: &str) -> &str {
    host.rsplit(':').next().unwrap_or_default()
}

#[test]
fn cgroup_connections_to_targets_go_through_the_gateway_with_process_attribution() {
    if !require_root("cgroup_connections_to_targets_go_through_the_gateway") {
        return;
    }
    let ns = Netns::create("e2e", &["198.18.0.10/24", "fd00:198:18::10/64"]).expect("netns");
    let _db = MariaDb::start(Some(&ns), "*", 3306).expect("MariaDB in the netns");
    let cgroup = cgroup2_root().join(format!("tollgate-test-e2e-{}", std::process::id()));
    let mut gateway = Gateway::start(Some(&ns), &lab_config(&cgroup, 15306)).expect("gateway");
    assert!(cgroup.is_dir(), "the gateway created its cgroup");

    let sql =
        "SELECT 6*7; SELECT host FROM information_schema.processlist WHERE id = CONNECTION_ID()";

    // IPv4, as an unprivileged user: redirected by cgroup/connect4.
    let (pid, lines, stderr) = client_in_cgroup(
        &ns,
        &gateway.config_path,
        Some(CLIENT_UID),
        DB_V4,
        3306,
        sql,
    );
    assert!(pid != 0, "IPv4 client failed: {stderr}");
    assert_eq!(lines.first().map(String::as_str), Some("42"), "{lines:?}");
    let host_v4 = lines.get(1).expect("processlist host").clone();
    gateway
        .wait_for_log("session ended", Duration::from_secs(10))
        .expect("session ended");
    let started = session_started_by(&gateway, pid);
    assert_eq!(started["uid"], CLIENT_UID, "{started}");
    assert_eq!(started["gid"], CLIENT_UID, "{started}");
    assert_eq!(started["comm"], "mariadb", "{started}");
    assert_eq!(started["target_name"], "lab-v4");
    assert_eq!(started["original_destination"], "198.18.0.10:3306");
    // MariaDB saw the gateway's upstream socket: the connection went through the gateway.
    assert_eq!(started["upstream_local"], host_v4.as_str(), "{started}");

    // IPv6: redirected by cgroup/connect6 to the IPv6 listener.
    let (pid6, lines, stderr) = client_in_cgroup(&ns, &gateway.config_path, None, DB_V6, 3306, sql);
    assert!(pid6 != 0, "IPv6 client failed: {stderr}");
    assert_eq!(lines.first().map(String::as_str), Some("42"), "{lines:?}");
    let started6 = session_started_by(&gateway, pid6);
    assert_eq!(started6["uid"], 0);
    assert_eq!(started6["target_name"], "lab-v6");
    assert_eq!(started6["original_destination"], "[fd00:198:18::10]:3306");
    let upstream6 = started6["upstream_local"].as_str().expect("upstream_local");
    assert_eq!(
        port_of(upstream6),
        port_of(lines.get(1).expect("host")),
        "{started6}"
    );

    // An IPv6 socket to the IPv4-mapped address must not slip past the IPv4 target.
    let (pid_mapped, lines, stderr) = client_in_cgroup(
        &ns,
        &gateway.config_path,
        None,
        "::ffff:198.18.0.10",
        3306,
        sql,
    );
    assert!(pid_mapped != 0, "mapped-address client failed: {stderr}");
    assert_eq!(lines.first().map(String::as_str), Some("42"));
    let mapped = session_started_by(&gateway, pid_mapped);
    assert_eq!(mapped["target_name"], "lab-v4", "{mapped}");

    // Outside the cgroup nothing is steered: MariaDB sees the client itself, no new session.
    let sessions_before = gateway.log_messages("session started").len();
    let args = mariadb_client(DB_V4, 3306, "app", "app-pw", sql);
    let output =
        run_capture(command_in(Some(&ns), &args[0]).args(&args[1..])).expect("direct client");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        gateway.log_messages("session started").len(),
        sessions_before
    );

    // A port that is not a target is not steered either (nothing listens there).
    let (pid_other, _, stderr) =
        client_in_cgroup(&ns, &gateway.config_path, None, DB_V4, 3307, "SELECT 1");
    assert_eq!(pid_other, 0, "nothing listens on 3307");
    assert!(stderr.contains("Can't connect"), "{stderr}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        gateway.log_messages("session started").len(),
        sessions_before
    );

    // Recorded: three sessions with their process attribution, each started and ended.
    let status = gateway.stop().expect("gateway stopped");
    assert!(status.success(), "clean shutdown: {status}");
    let events = gateway.recorded_events();
    let started: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "session.started")
        .collect();
    let ended = events
        .iter()
        .filter(|e| e["type"] == "session.ended")
        .count();
    assert_eq!((started.len(), ended), (3, 3), "{events:?}");
    let first = started
        .iter()
        .find(|e| e["process"]["pid"] == pid)
        .expect("recorded attribution of the IPv4 client");
    assert_eq!(first["process"]["uid"], CLIENT_UID);
    assert_eq!(first["original_destination"], "198.18.0.10:3306");
    assert_eq!(first["upstream_local_addr"], host_v4.as_str());

    // The gateway removed the cgroup it created.
    assert!(!cgroup.exists(), "cgroup {} left behind", cgroup.display());
}

fn serve_error(config: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tollgate.toml");
    std::fs::write(
        &path,
        config.replace("{store}", &dir.path().join("rec").to_string_lossy()),
    )
    .expect("write config");
    let output = run_capture(
        Command::new(tollgate_bin())
            .args(["serve", "--config"])
            .arg(&path),
    )
    .expect("run tollgate serve");
    assert!(!output.status.success(), "serve must refuse");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_cgroup_outside_cgroup2_or_at_its_root_is_refused_with_a_clear_error() {
    if !require_root("a_cgroup_outside_cgroup2_or_at_its_root_is_refused") {
        return;
    }
    let stderr = serve_error(&lab_config(Path::new("/nonexistent-tollgate/tollgate"), 0));
    assert!(
        stderr.contains("is not inside a cgroup v2 mount"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");

    let stderr = serve_error(&lab_config(&cgroup2_root(), 0));
    assert!(stderr.contains("is the root of a cgroup mount"), "{stderr}");
}

#[test]
fn serve_without_privileges_says_what_to_do() {
    let config = lab_config(
        &PathBuf::from("/sys/fs/cgroup/unified/tollgate-unprivileged"),
        0,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tollgate.toml");
    std::fs::write(
        &path,
        config.replace("{store}", "/tmp/tollgate-unprivileged-store"),
    )
    .expect("write config");
    // As root, drop to nobody (which also drops every capability).
    let mut command = if nix::unistd::Uid::effective().is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        c.arg(tollgate_bin());
        c
    } else {
        Command::new(tollgate_bin())
    };
    let output = run_capture(command.args(["serve", "--config"]).arg(&path)).expect("serve");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("loading eBPF programs needs root"),
        "{stderr}"
    );
    assert!(stderr.contains("interception.mode = \"off\""), "{stderr}");
}

/// The kernel-identity test's configuration: uid 4242 maps to svc:ci, uid 4244 in the managed
/// cgroup to svc:lab; both in group ci, which the target allows.
fn kernel_identity_config(cgroup: &Path, ca: &Path) -> String {
    format!(
        r#"
[listener]
addresses = ["127.0.0.1:15306"]
[interception]
cgroup = "{cgroup}"
[recording]
store = "{{store}}"
[[identities]]
user = "alice"
password_hash = "{alice}"
groups = ["ci"]
[[local_identities]]
uid = {CLIENT_UID}
name = "svc:ci"
groups = ["ci"]
[[local_identities]]
uid = {lab_uid}
cgroup = "/{cgroup_name}"
name = "svc:lab"
groups = ["ci"]
[[targets]]
name = "lab-v4"
address = "198.18.0.0/24"
port = 3306
kernel_identity = true
[[targets.allow]]
groups = ["ci"]
[targets.login]
user = "app"
password_env = "TOLLGATE_TEST_DB_PASSWORD"
[targets.tls]
mode = "required"
ca = "{ca}"
server_name = "localhost"
"#,
        cgroup = cgroup.display(),
        cgroup_name = cgroup.file_name().unwrap_or_default().to_string_lossy(),
        lab_uid = CLIENT_UID + 2,
        alice = tollgate_tests::hash_password("alice-pw"),
        ca = ca.display(),
    )
}

/// The kernel identities are recorded with the logins, and the process's cgroup path with the
/// session.
fn assert_kernel_logins(events: &[Value], cgroup: &Path) {
    let login = events
        .iter()
        .find(|e| e["type"] == "session.login" && e["accepted"] == true)
        .expect("the mapped login");
    assert_eq!(login["identity"]["source"], "kernel");
    assert_eq!(login["identity"]["name"], "svc:ci");
    assert_eq!(login["identity"]["subject"], format!("uid:{CLIENT_UID}"));
    assert_eq!(login["identity"]["groups"][0], "ci");
    assert_eq!(login["upstream_user"], "app");
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "session.login" && e["identity"]["name"] == "svc:lab"),
        "{events:?}"
    );
    let both = events
        .iter()
        .find(|e| e["type"] == "session.login" && e["user"] == "alice")
        .expect("alice's login");
    assert_eq!(both["identity"]["source"], "password");
    assert_eq!(both["kernel_identity"]["name"], "svc:ci");
    let started = events
        .iter()
        .find(|e| e["type"] == "session.started")
        .expect("started");
    assert_eq!(
        started["process"]["cgroup_path"],
        format!(
            "/{}",
            cgroup.file_name().unwrap_or_default().to_string_lossy()
        )
    );
}

/// Kernel-attested identity: a local process whose user is in `[[local_identities]]` logs in
/// to a target that allows it without any password, as the mapped identity and its groups (the
/// policy then picks the account); an unmapped user without a password is refused.
#[test]
fn a_mapped_local_process_logs_in_as_its_kernel_identity_without_a_password() {
    if !require_root("a_mapped_local_process_logs_in_as_its_kernel_identity") {
        return;
    }
    let ns = Netns::create("kid", &["198.18.0.10/24"]).expect("netns");
    let db = MariaDb::start(Some(&ns), "*", 3306).expect("MariaDB in the netns");
    let cgroup = cgroup2_root().join(format!("tollgate-test-kid-{}", std::process::id()));
    let config = kernel_identity_config(&cgroup, &db.dir().join("tls/ca.pem"));
    let mut gateway = Gateway::start_with_env(
        Some(&ns),
        &config,
        &[("TOLLGATE_TEST_DB_PASSWORD", "app-pw")],
    )
    .expect("gateway");
    let config_path = gateway.config_path.clone();
    let run_as = |uid: u32, login: &[&str]| {
        let mut command = command_in(Some(&ns), tollgate_bin());
        command
            .args(["run", "--config"])
            .arg(&config_path)
            .args(["--", "setpriv"])
            .args([
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
            ])
            .args([
                "mariadb",
                "--no-defaults",
                "-h",
                DB_V4,
                "-P",
                "3306",
                "--connect-timeout=10",
                "-N",
                "-B",
                "-e",
                "SELECT CURRENT_USER()",
            ])
            .args(login);
        run_capture(&mut command).expect("client")
    };
    let mapped = run_as(CLIENT_UID, &["-u", "ci"]);
    assert!(
        mapped.status.success(),
        "{}",
        String::from_utf8_lossy(&mapped.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&mapped.stdout).trim(), "app@%");
    // Matched by user and cgroup (the managed cgroup `tollgate run` puts it in).
    let by_cgroup = run_as(CLIENT_UID + 2, &["-u", "ci"]);
    assert!(
        by_cgroup.status.success(),
        "{}",
        String::from_utf8_lossy(&by_cgroup.stderr)
    );
    // A mapped process that does send a password: that identity, the kernel's recorded beside.
    let both = run_as(CLIENT_UID, &["-u", "alice", "-palice-pw"]);
    assert!(
        both.status.success(),
        "{}",
        String::from_utf8_lossy(&both.stderr)
    );
    let unmapped = run_as(CLIENT_UID + 1, &["-u", "ci"]);
    assert!(!unmapped.status.success(), "no identity, no password");
    assert!(
        String::from_utf8_lossy(&unmapped.stderr).contains("1045"),
        "{}\n{}",
        String::from_utf8_lossy(&unmapped.stderr),
        gateway.log_text()
    );
    std::thread::sleep(Duration::from_millis(300));
    gateway.stop();
    assert_kernel_logins(&gateway.recorded_events(), &cgroup);
}

/// A target on this host's own loopback (as in the quickstart): a process in the cgroup that
/// dials it lands in the gateway, whose listener is on the same protected address. The egress
/// rule (only the gateway reaches protected hosts) must let that redirected connect through,
/// and still stop a raw-socket-free plain connect to another port of the protected address.
#[test]
fn a_loopback_target_is_steered_through_the_egress_rule() {
    if !require_root("a_loopback_target_is_steered_through_the_egress_rule") {
        return;
    }
    let ns = Netns::create("lo", &["198.18.0.20/24"]).expect("netns");
    let _db = MariaDb::start(Some(&ns), "127.0.0.1", 3306).expect("MariaDB on loopback");
    let _other = MariaDb::start(Some(&ns), "127.0.0.1", 3307).expect("a second server");
    let cgroup = cgroup2_root().join(format!("tollgate-test-lo-{}", std::process::id()));
    let config = format!(
        r#"
[listener]
addresses = ["127.0.0.1:15306"]

[interception]
cgroup = "{cgroup}"

[recording]
store = "{{store}}"

[[targets]]
name = "local-db"
address = "127.0.0.1"
port = 3306
"#,
        cgroup = cgroup.display()
    );
    let mut gateway = Gateway::start(Some(&ns), &config).expect("gateway");

    let (pid, lines, stderr) = client_in_cgroup(
        &ns,
        &gateway.config_path,
        None,
        "127.0.0.1",
        3306,
        "SELECT 6*7",
    );
    assert!(pid != 0, "the steered client failed: {stderr}");
    assert_eq!(lines.first().map(String::as_str), Some("42"), "{lines:?}");
    let started = session_started_by(&gateway, pid);
    assert_eq!(started["target_name"], "local-db", "{started}");

    // Another port of the protected address, from the cgroup: not the gateway, dropped.
    let (pid_other, _, stderr) = client_in_cgroup(
        &ns,
        &gateway.config_path,
        None,
        "127.0.0.1",
        3307,
        "SELECT 1",
    );
    assert_eq!(pid_other, 0, "reached 3307 around the gateway");
    assert!(stderr.contains("Can't connect"), "{stderr}");
    gateway.stop();
}
