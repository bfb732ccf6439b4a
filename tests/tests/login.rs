//! The gateway terminates the login: clients authenticate to it over TLS against the identity
//! table, and it logs in to MariaDB with its own credential, which the client never sees.
//! Real MariaDB, real `mariadb` client. Runs without root.

use std::{process::Command, time::Duration};

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
    python_connector_logs_in_and_cannot_change_user(port);

    std::thread::sleep(Duration::from_millis(300));
    gateway.stop();
    let events = gateway.recorded_events();
    let accepted: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "session.login" && e["accepted"] == true)
        .collect();
    assert_eq!(accepted.len(), 5, "{events:?}");
    assert_eq!(accepted[0]["user"], "alice");
    assert_eq!(accepted[0]["upstream_user"], "app");
    let refused = events
        .iter()
        .filter(|e| e["type"] == "session.login" && e["accepted"] == false)
        .count();
    assert_eq!(refused, 4, "{events:?}");
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

/// mysql-connector-python logs in through the gateway too (TLS, `caching_sha2_password` full
/// authentication), and a `COM_CHANGE_USER` to the database account is refused, not relayed.
fn python_connector_logs_in_and_cannot_change_user(port: u16) {
    let script = format!(
        r#"
import mysql.connector
c = mysql.connector.connect(host="127.0.0.1", port={port}, user="alice", password="alice-pw", use_pure=True)
cur = c.cursor()
cur.execute("SELECT CURRENT_USER()")
print(cur.fetchall()[0][0])
try:
    c.cmd_change_user(username="app", password="app-pw")
    print("changed")
except mysql.connector.Error as e:
    print("refused", e.errno)
"#
    );
    let output = run_capture(Command::new("python3").args(["-c", &script])).expect("python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["app@%", "refused 1227"],
        "{stdout}"
    );
    record_compatibility(
        "mysql-connector-python 26.10 (pure)",
        "MariaDB 10.11",
        "text",
        "gateway: client TLS, identity table; upstream TLS",
        "logs in; COM_CHANGE_USER refused",
    );
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
