//! The gateway terminates the login: clients authenticate to it over TLS against the identity
//! table, and it logs in to MariaDB with its own credential, which the client never sees.
//! Real MariaDB, real `mariadb` client. Runs without root.

use std::{fmt::Write as _, process::Command, time::Duration};

use tollgate_tests::{
    Gateway, MariaDb, free_port, hash_password, mariadb_command, record_compatibility, run_capture,
};

fn client(
    port: u16,
    user: &str,
    password: &str,
    extra: &[&str],
    sql: &str,
) -> (bool, String, String) {
    let output = run_capture(
        mariadb_command(port, user, password)
            .args(extra)
            .args(["-N", "-B", "-e", sql]),
    )
    .expect("mariadb client");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A gateway on `port` that terminates logins (alice / alice-pw) for the MariaDB on
/// `db_port`, logging in as `app` over TLS verified with `ca`; `tls_mode` is an extra line of
/// `[targets.tls]`.
fn login_config(port: u16, db_port: u16, tls_mode: &str, ca: &std::path::Path) -> String {
    format!(
        r#"
[listener]
addresses = ["127.0.0.1:{port}"]
fallback_target = "db"
[interception]
mode = "off"
[recording]
store = "{{store}}"
[[identities]]
user = "alice"
password_hash = "{}"
[[targets]]
name = "db"
address = "127.0.0.1"
port = {db_port}
[[targets.allow]]
groups = ["*"]
[targets.login]
user = "app"
password_env = "TOLLGATE_TEST_DB_PASSWORD"
[targets.tls]
{tls_mode}
ca = "{}"
"#,
        hash_password("alice-pw"),
        ca.display()
    )
}

#[test]
fn clients_log_in_to_the_gateway_and_it_logs_in_with_its_own_credential() {
    let db = MariaDb::start(None, "127.0.0.1", free_port()).expect("start MariaDB");
    let port = free_port();
    let config = login_config(
        port,
        db.port,
        "mode = \"required\"",
        &db.dir().join("tls/ca.pem"),
    ) + &format!(
        "[[identities]]\nuser = \"bob\"\npassword_hash = \"{}\"\n",
        hash_password("bob-pw")
    );
    let mut gateway =
        Gateway::start_with_env(None, &config, &[("TOLLGATE_TEST_DB_PASSWORD", "app-pw")])
            .expect("start gateway");

    // alice logs in to the gateway (TLS is used because the gateway offers it); MariaDB sees
    // the gateway's account.
    let (ok, out, err) = client(
        port,
        "alice",
        "alice-pw",
        &[],
        "SELECT CURRENT_USER(); SHOW SESSION STATUS LIKE 'Ssl_version'",
    );
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"app@%"), "{out}");
    // The gateway's own connection to MariaDB is TLS, verified against the test CA.
    assert!(
        lines
            .get(1)
            .is_some_and(|l| l.starts_with("Ssl_version\tTLSv1.")),
        "gateway to database is TLS: {out}"
    );
    compressed_protocol(port);
    // The initial database reaches MariaDB through the gateway's TLS login.
    let (ok, out, err) = client(
        port,
        "alice",
        "alice-pw",
        &["-D", "demo"],
        "SELECT DATABASE()",
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "demo");
    let (ok, status, err) = client(port, "alice", "alice-pw", &[], "status");
    assert!(ok, "{err}");
    assert!(
        status.contains("Cipher in use"),
        "client to gateway is TLS: {status}"
    );

    refusals(port);
    python_connector_changes_user(port);
    clear_password_clients(port);

    std::thread::sleep(Duration::from_millis(300));
    gateway.stop();
    let events = gateway.recorded_events();
    let accepted: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "session.login" && e["accepted"] == true)
        .collect();
    // Four logins with the mariadb CLI, two with mysql-connector-python, each changing to bob
    // once, and two with mysql_clear_password.
    assert_eq!(accepted.len(), 8 + 2, "{events:?}");
    assert_eq!(
        accepted.iter().filter(|e| e["user"] == "bob").count(),
        2,
        "{events:?}"
    );
    assert_eq!(accepted[0]["user"], "alice");
    assert_eq!(accepted[0]["upstream_user"], "app");
    // The client's connection attributes are recorded with the login.
    assert_eq!(
        accepted[0]["client_attributes"]["_client_name"], "libmariadb",
        "{:?}",
        accepted[0]
    );
    assert_eq!(accepted[0]["client_attributes"]["program_name"], "mysql");
    let refused = events
        .iter()
        .filter(|e| e["type"] == "session.login" && e["accepted"] == false)
        .count();
    // Four refused logins, and three refused changes of user per connector run.
    assert_eq!(refused, 4 + 2 * 3 + 1, "{events:?}");
    assert!(
        events.iter().any(|e| e["type"] == "session.login"
            && e["user"] == "mallory"
            && e["error_message"] == "unknown user or wrong password"),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "statement" && e["sql"] == "SELECT CURRENT_USER()")
    );

    // Neither password appears in the recording or the log.
    let recording = serde_json::to_string(&events).expect("json");
    let log = gateway.log_text();
    for secret in ["app-pw", "alice-pw"] {
        assert!(!recording.contains(secret), "{secret} in the recording");
        assert!(!log.contains(secret), "{secret} in the log");
    }
}

/// mysql-connector-python (pure and C extension) logs in through the gateway too (TLS,
/// `caching_sha2_password` full authentication) and changes user with `COM_CHANGE_USER`: the
/// new identity is checked by the gateway, the database session is reset and switched to the
/// requested database under the gateway's account; wrong passwords, and the database's own
/// account, are refused while the session carries on; after three failures the gateway
/// refuses further attempts.
fn python_connector_changes_user(port: u16) {
    for (variant, pure) in [("pure", "True"), ("C extension", "False")] {
        let script = format!(
            r#"
import mysql.connector
c = mysql.connector.connect(host="127.0.0.1", port={port}, user="alice", password="alice-pw", use_pure={pure})
assert c.is_connected()
cur = c.cursor()
def one(sql):
    cur.execute(sql)
    return cur.fetchall()[0]
print(one("SELECT CURRENT_USER()")[0])
cur.execute("SET @marker = 42")
def change(user, password, database=None):
    try:
        c.cmd_change_user(username=user, password=password, database=database)
        return "changed"
    except mysql.connector.Error as e:
        return "refused %d" % e.errno
print(change("bob", "bob-pw", "demo"))
print(one("SELECT CURRENT_USER(), DATABASE(), @marker IS NULL, COUNT(*) > 0 FROM customers"))
print(change("bob", "wrong-pw"))
print(one("SELECT 1")[0])
print(change("app", "app-pw"))
print(change("mallory", "x"))
print(change("bob", "bob-pw"))
print(one("SELECT 2")[0])
"#
        );
        let output = run_capture(
            Command::new("python3")
                .args(["-c", &script])
                .env("LD_LIBRARY_PATH", connector_vendor_libs()),
        )
        .expect("python");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{variant}: {}{stdout}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            stdout.lines().collect::<Vec<_>>(),
            [
                "app@%",
                "changed",
                "('app@%', 'demo', 1, 1)",
                "refused 1045",
                "1",
                "refused 1045",
                "refused 1045",
                "refused 1047",
                "2",
            ],
            "{variant}: {stdout}"
        );
        record_compatibility(
            &format!("mysql-connector-python 26.10 ({variant})"),
            "MariaDB 10.11",
            "text, COM_CHANGE_USER",
            "gateway: client TLS, identity table; upstream TLS",
            "changes user (gateway re-authenticates); wrong passwords refused, session kept",
        );
    }
}

/// Clients whose plugin is `mysql_clear_password` send the password in the handshake response
/// itself; inside TLS the gateway takes it from there (no auth switch).
fn clear_password_clients(port: u16) {
    let script = format!(
        r#"
import mysql.connector
for password in ["alice-pw", "wrong"]:
    try:
        c = mysql.connector.connect(host="127.0.0.1", port={port}, user="alice", password=password,
                                    use_pure=True, auth_plugin="mysql_clear_password")
        cur = c.cursor()
        cur.execute("SELECT CURRENT_USER()")
        print(cur.fetchall()[0][0])
    except mysql.connector.Error as e:
        print(e.errno)
"#
    );
    let output = run_capture(Command::new("python3").args(["-c", &script])).expect("python");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .collect::<Vec<_>>(),
        ["app@%", "1045"],
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (ok, out, err) = client(
        port,
        "alice",
        "alice-pw",
        &["--default-auth=mysql_clear_password"],
        "SELECT CURRENT_USER()",
    );
    assert!(ok && out.trim() == "app@%", "{out}{err}");
    record_compatibility(
        "mariadb CLI 10.11, mysql-connector-python 26.10 (pure)",
        "MariaDB 10.11",
        "text, client plugin mysql_clear_password",
        "gateway: client TLS, identity table; upstream TLS",
        "logs in (password taken from the handshake response, TLS only)",
    );
}

/// A database account with MariaDB's `client_ed25519` plugin: the gateway signs the
/// database's nonce with the key derived from its password, at login and again when a client
/// changes user.
#[test]
fn the_gateway_logs_in_to_an_ed25519_account() {
    let db = MariaDb::start(None, "127.0.0.1", free_port()).expect("start MariaDB");
    // As MariaDB's root, over its socket.
    let output = run_capture(
        Command::new("mariadb")
            .arg(format!(
                "--defaults-file={}",
                db.dir().join("my.cnf").display()
            ))
            .arg("-e")
            .arg(
                "INSTALL SONAME 'auth_ed25519'; \
                 CREATE USER ed@'%' IDENTIFIED VIA ed25519 USING PASSWORD('ed-pw'); \
                 GRANT SELECT ON demo.* TO ed@'%'",
            ),
    )
    .expect("mariadb");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let port = free_port();
    let config = login_config(
        port,
        db.port,
        "mode = \"required\"",
        &db.dir().join("tls/ca.pem"),
    );
    assert!(config.contains("user = \"app\""));
    let config = config.replace("user = \"app\"", "user = \"ed\"");
    let mut gateway =
        Gateway::start_with_env(None, &config, &[("TOLLGATE_TEST_DB_PASSWORD", "ed-pw")])
            .expect("start gateway");
    let (ok, out, err) = client(
        port,
        "alice",
        "alice-pw",
        &["-D", "demo"],
        "SELECT CURRENT_USER(), COUNT(*) > 0 FROM customers",
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "ed@%\t1");
    let script = format!(
        r#"
import mysql.connector
c = mysql.connector.connect(host="127.0.0.1", port={port}, user="alice", password="alice-pw", use_pure=True)
c.cmd_change_user(username="alice", password="alice-pw", database="demo")
cur = c.cursor()
cur.execute("SELECT CURRENT_USER(), DATABASE()")
print(cur.fetchall()[0])
"#
    );
    let output = run_capture(Command::new("python3").args(["-c", &script])).expect("python");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "('ed@%', 'demo')",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    record_compatibility(
        "mariadb CLI 10.11, mysql-connector-python 26.10 (pure)",
        "MariaDB 10.11",
        "text, COM_CHANGE_USER",
        "gateway: client TLS; upstream client_ed25519 account",
        "logs in and changes user",
    );
    gateway.stop();
    assert!(!gateway.log_text().contains("ed-pw"));
}

/// `LOAD DATA LOCAL INFILE` is refused unless the target sets `local_infile = true`; then the
/// client's file reaches the database and the recording names the file and its size.
#[test]
fn load_data_local_infile_is_off_unless_the_target_allows_it() {
    let db = MariaDb::start(None, "127.0.0.1", free_port()).expect("start MariaDB");
    let ca = db.dir().join("tls/ca.pem");
    let file = db.dir().join("rows.csv");
    let rows = (1..=1000).fold(String::new(), |mut rows, i| {
        let _ = writeln!(rows, "{i},name-{i}");
        rows
    });
    std::fs::write(&file, &rows).expect("write csv");
    let load = format!(
        "CREATE DATABASE IF NOT EXISTS li; CREATE TABLE IF NOT EXISTS li.t (id INT, name TEXT); \
         LOAD DATA LOCAL INFILE '{}' INTO TABLE li.t FIELDS TERMINATED BY ','; \
         SELECT COUNT(*), SUM(id) FROM li.t; DROP DATABASE li",
        file.display()
    );
    let (off_port, on_port) = (free_port(), free_port());
    let off = login_config(off_port, db.port, "mode = \"required\"", &ca);
    let on = login_config(on_port, db.port, "mode = \"required\"", &ca).replace(
        "[[targets.allow]]",
        "local_infile = true\n[[targets.allow]]",
    );
    let env = [("TOLLGATE_TEST_DB_PASSWORD", "app-pw")];
    let mut gateway_off = Gateway::start_with_env(None, &off, &env).expect("gateway");
    let mut gateway_on = Gateway::start_with_env(None, &on, &env).expect("gateway");

    let (ok, _, err) = client(off_port, "alice", "alice-pw", &["--local-infile=1"], &load);
    assert!(!ok, "refused by default");
    assert!(err.contains("local infile"), "{err}");
    let (ok, out, err) = client(on_port, "alice", "alice-pw", &["--local-infile=1"], &load);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "1000\t500500");

    gateway_off.stop();
    gateway_on.stop();
    let events = gateway_on.recorded_events();
    let load_event = events
        .iter()
        .find(|e| {
            e["type"] == "statement"
                && e["sql"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("LOAD DATA LOCAL INFILE"))
        })
        .unwrap_or_else(|| panic!("LOCAL INFILE recorded: {events:?}"));
    assert_eq!(
        load_event["local_infile"]["file"],
        file.display().to_string()
    );
    assert_eq!(load_event["local_infile"]["bytes"], rows.len());
    assert_eq!(load_event["affected_rows"], 1000);
    record_compatibility(
        "mariadb CLI 10.11",
        "MariaDB 10.11",
        "text, LOAD DATA LOCAL INFILE (target local_infile = true)",
        "gateway: client TLS, identity table; upstream TLS",
        "file loaded and recorded (name, size); refused by default",
    );
}

/// A client that goes quiet in the middle of the gateway's login gets ERR 1159 when
/// `limits.login_timeout` runs out, and the session is recorded as ended.
#[test]
fn a_stalled_client_login_gets_a_timeout_error() {
    let db = MariaDb::start(None, "127.0.0.1", free_port()).expect("start MariaDB");
    let port = free_port();
    let config = login_config(
        port,
        db.port,
        "mode = \"required\"",
        &db.dir().join("tls/ca.pem"),
    ) + "[limits]\nlogin_timeout = \"1s\"\n";
    let mut gateway =
        Gateway::start_with_env(None, &config, &[("TOLLGATE_TEST_DB_PASSWORD", "app-pw")])
            .expect("start gateway");
    // Reads the greeting, then says nothing; prints the packet that follows.
    let script = format!(
        r#"
import socket
s = socket.create_connection(("127.0.0.1", {port}), timeout=10)
def packet():
    header = s.recv(4, socket.MSG_WAITALL)
    return s.recv(int.from_bytes(header[:3], "little"), socket.MSG_WAITALL)
assert packet()[0] == 10
err = packet()
print(err[0], int.from_bytes(err[1:3], "little"), err[3:9].decode(), err[9:].decode())
"#
    );
    let output = run_capture(Command::new("python3").args(["-c", &script])).expect("python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with("255 1159 #08S01 Tollgate: the login did not finish within 1s"),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    gateway.stop();
    let events = gateway.recorded_events();
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "session.ended" && e["reason"] == "error"),
        "{events:?}"
    );
}

/// A logged-in client that breaks the protocol (a compressed frame that does not inflate,
/// packets out of order, plain or compressed) gets an ERR with the right code and SQLSTATE,
/// framed as its leg is, and the session ends with the reason recorded.
#[test]
fn protocol_violations_get_an_error_packet_and_end_the_session() {
    let db = MariaDb::start(None, "127.0.0.1", free_port()).expect("start MariaDB");
    let port = free_port();
    let config = login_config(
        port,
        db.port,
        "mode = \"required\"",
        &db.dir().join("tls/ca.pem"),
    );
    let mut gateway =
        Gateway::start_with_env(None, &config, &[("TOLLGATE_TEST_DB_PASSWORD", "app-pw")])
            .expect("start gateway");
    let script = tollgate_tests::workspace_root().join("tests/clients/broken_client.py");
    for (case, expected) in [
        (
            "bad-compressed-frame",
            "1157 08S01 Tollgate: could not uncompress a packet from the client",
        ),
        (
            "out-of-order",
            "1156 08S01 Tollgate: got packets out of order from the client",
        ),
        (
            "out-of-order-compressed",
            "1156 08S01 Tollgate: got packets out of order from the client",
        ),
    ] {
        let output = run_capture(Command::new("python3").arg(&script).args([
            &port.to_string(),
            "alice",
            "alice-pw",
            case,
        ]))
        .expect("python");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.starts_with(expected),
            "{case}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    gateway.stop();
    let ended = gateway
        .recorded_events()
        .into_iter()
        .filter(|e| e["type"] == "session.ended" && e["reason"] == "error")
        .count();
    assert_eq!(ended, 3);
}

/// The configuration of the policy test: alice a reader, bob a dba and a reader, mallory in
/// no group; readers get the read-only account in `demo` for 3 s, dbas the full account.
fn policy_config(port: u16, db_port: u16, ca: &std::path::Path) -> String {
    format!(
        r#"
[listener]
addresses = ["127.0.0.1:{port}"]
fallback_target = "db"
[interception]
mode = "off"
[recording]
store = "{{store}}"
[[identities]]
user = "alice"
password_hash = "{alice}"
groups = ["readers"]
[[identities]]
user = "bob"
password_hash = "{bob}"
groups = ["dba", "readers"]
[[identities]]
user = "mallory"
password_hash = "{mallory}"
[[targets]]
name = "db"
address = "127.0.0.1"
port = {db_port}
[[targets.allow]]
groups = ["dba"]
[[targets.allow]]
groups = ["readers"]
account = "readonly"
databases = ["demo"]
max_session = "3s"
[targets.login]
user = "app"
password_env = "TOLLGATE_TEST_DB_PASSWORD"
[targets.accounts.readonly]
user = "demo"
password_command = ["printf", "demo-pw"]
[targets.tls]
mode = "required"
ca = "{ca}"
"#,
        alice = hash_password("alice-pw"),
        bob = hash_password("bob-pw"),
        mallory = hash_password("mallory-pw"),
        ca = ca.display(),
    )
}

/// Every decision of the policy test is in the recording: rule and account, or why not.
fn assert_policy_recorded(events: &[serde_json::Value]) {
    let logins: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["type"] == "session.login")
        .collect();
    let alice = logins
        .iter()
        .find(|e| e["user"] == "alice" && e["accepted"] == true)
        .expect("alice's login");
    assert_eq!(alice["policy"]["rule"], 1);
    assert_eq!(alice["policy"]["account"], "readonly");
    assert_eq!(alice["upstream_user"], "demo");
    let mallory = logins
        .iter()
        .find(|e| e["user"] == "mallory")
        .expect("mallory's login");
    assert_eq!(mallory["policy"]["allowed"], false);
    assert_eq!(mallory["error_code"], 1045);
    assert!(
        events.iter().any(|e| e["type"] == "session.ended"
            && e["detail"]
                .as_str()
                .is_some_and(|d| d.contains("maximum length"))),
        "{events:?}"
    );
    let statement = events
        .iter()
        .find(|e| e["type"] == "statement" && e["error"]["code"] == 1044)
        .expect("the refused USE is recorded");
    // The mariadb CLI sends `USE` as COM_INIT_DB.
    assert_eq!(statement["command"], "init_db");
    assert_eq!(statement["sql"], "mysql");
}

/// Deny by default, per target: `[[targets.allow]]` rules pick the database account by group
/// (readers get a read-only account limited to one database and a maximum session length,
/// the dba group the full account), refuse identities no rule matches, and every decision is
/// recorded with the login.
#[test]
fn the_policy_picks_the_account_by_group_and_refuses_the_rest() {
    let db = MariaDb::start(None, "127.0.0.1", free_port()).expect("start MariaDB");
    let port = free_port();
    let ca = db.dir().join("tls/ca.pem");
    let config = policy_config(port, db.port, &ca);
    let mut gateway =
        Gateway::start_with_env(None, &config, &[("TOLLGATE_TEST_DB_PASSWORD", "app-pw")])
            .expect("start gateway");

    // A reader logs in with the read-only account, in the one database it may use.
    let (ok, out, err) = client(
        port,
        "alice",
        "alice-pw",
        &["-D", "demo"],
        "SELECT CURRENT_USER(), DATABASE()",
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "demo@%\tdemo");
    let (ok, _, err) = client(port, "alice", "alice-pw", &["-D", "demo"], "USE mysql");
    assert!(!ok);
    assert!(
        err.contains(
            "ERROR 1044 (42000) at line 1: Tollgate: database 'mysql' is not allowed for alice \
             (groups readers) on target 'db'"
        ),
        "{err}"
    );
    let (ok, _, err) = client(port, "alice", "alice-pw", &["-D", "mysql"], "SELECT 1");
    assert!(!ok);
    assert!(err.contains("ERROR 1044 (42000)"), "{err}");
    // The first matching rule decides: bob is a dba (and a reader) and gets the full account.
    let (ok, out, err) = client(
        port,
        "bob",
        "bob-pw",
        &[],
        "USE mysql; SELECT CURRENT_USER(), DATABASE()",
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "app@%\tmysql");
    // No rule for mallory: refused, saying why.
    let (ok, _, err) = client(port, "mallory", "mallory-pw", &[], "SELECT 1");
    assert!(!ok);
    assert!(
        err.contains(
            "ERROR 1045 (28000): Access denied for user 'mallory' (Tollgate: mallory (no groups) \
             may not use target 'db')"
        ),
        "{err}"
    );
    // A reader's session ends after max_session (3 s): the next statement fails.
    let (ok, _, err) = client(
        port,
        "alice",
        "alice-pw",
        &["-D", "demo"],
        "SELECT SLEEP(1); SELECT SLEEP(3); SELECT 'too late'",
    );
    assert!(!ok, "the session outlived max_session");
    assert!(!err.is_empty());

    std::thread::sleep(Duration::from_millis(300));
    gateway.stop();
    assert_policy_recorded(&gateway.recorded_events());
    assert!(!gateway.log_text().contains("demo-pw"));
}

/// `SIGHUP` reloads identities and policy for new sessions while a live session carries on;
/// a file that does not load, or that changes what needs a restart, is rejected and the
/// running configuration stays.
#[test]
fn sighup_reloads_the_policy_without_dropping_live_sessions() {
    let db = MariaDb::start(None, "127.0.0.1", free_port()).expect("start MariaDB");
    let port = free_port();
    let ca = db.dir().join("tls/ca.pem");
    let before = login_config(port, db.port, "mode = \"required\"", &ca);
    let mut gateway =
        Gateway::start_with_env(None, &before, &[("TOLLGATE_TEST_DB_PASSWORD", "app-pw")])
            .expect("start gateway");
    let (ok, _, err) = client(port, "bob", "bob-pw", &[], "SELECT 1");
    assert!(
        !ok && err.contains("1045"),
        "bob is not an identity yet: {err}"
    );

    // A session that stays open across the reloads.
    let mut live = Command::new("python3")
        .args([
            "-c",
            &format!(
                r#"
import sys, mysql.connector
c = mysql.connector.connect(host="127.0.0.1", port={port}, user="alice", password="alice-pw", use_pure=True)
cur = c.cursor()
for line in sys.stdin:
    cur.execute(line.strip())
    print(cur.fetchall()[0][0], flush=True)
"#
            ),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    let mut stdin = live.stdin.take().expect("stdin");
    let mut stdout = std::io::BufReader::new(live.stdout.take().expect("stdout"));
    let mut ask = |sql: &str| {
        use std::io::{BufRead as _, Write as _};
        writeln!(stdin, "{sql}").expect("send");
        let mut answer = String::new();
        stdout.read_line(&mut answer).expect("answer");
        answer.trim().to_owned()
    };
    assert_eq!(ask("SELECT 'before'"), "before");

    let after = format!(
        "{before}[[identities]]\nuser = \"bob\"\npassword_hash = \"{}\"\n",
        hash_password("bob-pw")
    );
    gateway.reload(&after).expect("reload");
    gateway
        .wait_for_log(
            "configuration reloaded; new sessions use it, live sessions keep theirs",
            Duration::from_secs(15),
        )
        .expect("reloaded");
    let (ok, out, err) = client(port, "bob", "bob-pw", &[], "SELECT CURRENT_USER()");
    assert!(ok, "bob after the reload: {err}");
    assert_eq!(out.trim(), "app@%");
    assert_eq!(
        ask("SELECT 'during'"),
        "during",
        "the live session carries on"
    );

    // Broken files are rejected; the running configuration stays.
    let logged = |gateway: &Gateway, text: &str| {
        for _ in 0..300 {
            if gateway.log_text().contains(text) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the gateway did not log {text:?}:\n{}", gateway.log_text());
    };
    gateway.reload("this is not toml").expect("reload");
    logged(
        &gateway,
        "configuration reload rejected, keeping the running one: ",
    );
    let moved = after.replace(
        &format!("127.0.0.1:{port}"),
        &format!("127.0.0.1:{}", free_port()),
    );
    gateway.reload(&moved).expect("reload");
    logged(
        &gateway,
        "listener.addresses changed: restart the gateway to apply",
    );
    let (ok, _, err) = client(port, "bob", "bob-pw", &[], "SELECT 1");
    assert!(ok, "still the reloaded configuration: {err}");
    assert_eq!(ask("SELECT 'after'"), "after");
    drop(stdin);
    let _ = live.wait();
    gateway.stop();
}

/// mysql-connector-python's C extension is linked against the OpenSSL it ships in
/// `mysql/vendor` (newer than Debian 12's); it loads only with that directory on the library
/// path.
fn connector_vendor_libs() -> String {
    let output = run_capture(Command::new("python3").args([
        "-c",
        "import mysql, os; print(os.path.join(list(mysql.__path__)[0], 'vendor'))",
    ]))
    .expect("python");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn a_database_certificate_that_does_not_verify_refuses_the_session() {
    let db = MariaDb::start(None, "127.0.0.1", free_port()).expect("start MariaDB");
    let other = MariaDb::start(None, "127.0.0.1", free_port()).expect("second MariaDB (other CA)");
    let port = free_port();
    // Preferred TLS (the default), verified against another server's CA.
    let config = login_config(port, db.port, "", &other.dir().join("tls/ca.pem"));
    let _gateway =
        Gateway::start_with_env(None, &config, &[("TOLLGATE_TEST_DB_PASSWORD", "app-pw")])
            .expect("start gateway");
    let (ok, _, err) = client(port, "alice", "alice-pw", &[], "SELECT 1");
    assert!(
        !ok,
        "a database with an unknown certificate must not be used"
    );
    assert!(
        err.contains("Tollgate could not log in to target 'db'"),
        "{err}"
    );
    assert!(err.contains("certificate"), "{err}");
    assert!(!err.contains("app-pw"), "{err}");
}

/// Wrong password, unknown user, no TLS, the database account's own password: each refused
/// with 1045 and a reason.
fn refusals(port: u16) {
    let (ok, _, err) = client(port, "alice", "wrong", &[], "SELECT 1");
    assert!(
        !ok && err.contains("1045") && err.contains("Access denied for user 'alice'"),
        "{err}"
    );
    let (ok, _, err) = client(port, "mallory", "alice-pw", &[], "SELECT 1");
    assert!(!ok && err.contains("1045"), "{err}");
    let (ok, _, err) = client(port, "alice", "alice-pw", &["--skip-ssl"], "SELECT 1");
    assert!(!ok && err.contains("log in over TLS"), "{err}");
    // The database account's own password is not accepted by the gateway.
    let (ok, _, err) = client(port, "app", "app-pw", &[], "SELECT 1");
    assert!(!ok && err.contains("1045"), "{err}");
}

/// The compressed protocol (zlib) on the client's leg.
fn compressed_protocol(port: u16) {
    let (ok, out, err) = client(
        port,
        "alice",
        "alice-pw",
        &["--compress"],
        "SELECT LENGTH(REPEAT('x', 300000)), MD5(REPEAT('y', 300000)); SELECT REPEAT('z', 200000)",
    );
    assert!(ok, "{err}");
    assert!(out.starts_with("300000\t"), "{out}");
    assert_eq!(out.lines().nth(1).map(str::len), Some(200_000));
    record_compatibility(
        "mariadb CLI 10.11",
        "MariaDB 10.11",
        "text, zlib compression",
        "gateway: client TLS, identity table; upstream TLS",
        "logs in as the gateway's account",
    );
}
