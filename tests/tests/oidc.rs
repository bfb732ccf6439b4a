//! OpenID Connect tokens as the MySQL password: a real issuer (`oidc-provider`), real MariaDB,
//! the gateway terminating the login, and real clients (the `mariadb` CLI with no flags at
//! all, PyMySQL, node `mysql2` and MariaDB Connector/J with their usual TLS options) logging in with an access
//! token or an ID token. Forged, expired, early and misaddressed tokens are refused with the
//! reason; a key rotation at the issuer is picked up without a restart; no token reaches the
//! gateway's log (at debug level) or the recording. Runs without root.

use std::{path::Path, process::Command, time::Duration};

use serde_json::Value;
use tollgate_tests::{
    Gateway, MariaDb, OidcIssuer, free_port, hash_password, run_capture, workspace_root,
};

/// A gateway on `port` terminating logins for the MariaDB `db`, trusting `issuer` (audiences:
/// its access tokens' API and its ID tokens' client), with alice/alice-pw in the identity
/// table; its certificate is MariaDB's test certificate (127.0.0.1, signed by `tls/ca.pem`).
fn config(port: u16, db: &MariaDb, issuer: &OidcIssuer, oidc_extra: &str) -> String {
    let tls = db.dir().join("tls");
    format!(
        r#"
[listener]
addresses = ["127.0.0.1:{port}"]
fallback_target = "db"
[listener.tls]
cert = "{cert}"
key = "{key}"
[interception]
mode = "off"
[recording]
store = "{{store}}"
[[identities]]
user = "alice"
password_hash = "{hash}"
groups = ["devs"]
[[oidc]]
issuer = "{issuer}"
audiences = ["urn:test:api", "test-app"]
{oidc_extra}
[[targets]]
name = "db"
address = "127.0.0.1"
port = {db_port}
[[targets.allow]]
groups = ["admins", "devs", "agents"]
[targets.login]
user = "app"
password_env = "TOLLGATE_TEST_DB_PASSWORD"
[targets.tls]
mode = "required"
ca = "{ca}"
"#,
        cert = tls.join("server-cert.pem").display(),
        key = tls.join("server-key.pem").display(),
        ca = tls.join("ca.pem").display(),
        hash = hash_password("alice-pw"),
        issuer = issuer.url,
        db_port = db.port,
    )
}

fn start(issuer: &OidcIssuer, oidc_extra: &str) -> (MariaDb, Gateway, u16) {
    let db = MariaDb::start(None, "127.0.0.1", free_port()).expect("start MariaDB");
    let port = free_port();
    let gateway = Gateway::start_with_env(
        None,
        &config(port, &db, issuer, oidc_extra),
        &[
            ("TOLLGATE_TEST_DB_PASSWORD", "app-pw"),
            // Everything the gateway logs, at every level, is searched for tokens.
            ("TOLLGATE_LOG", "debug"),
        ],
    )
    .expect("start gateway");
    (db, gateway, port)
}

/// The `mariadb` CLI with no options but where to connect (the token in `MYSQL_PWD`, so it is
/// not on the command line): `(success, stdout, stderr)`.
fn mariadb(
    port: u16,
    user: &str,
    password: &str,
    extra: &[&str],
    sql: &str,
) -> (bool, String, String) {
    let output = run_capture(
        Command::new("mariadb")
            .args([
                "--no-defaults",
                "-h",
                "127.0.0.1",
                "-P",
                &port.to_string(),
                "-u",
                user,
            ])
            .args(extra)
            .args(["-N", "-B", "-e", sql])
            .env("MYSQL_PWD", password),
    )
    .expect("mariadb client");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    )
}

/// What the client prints when the gateway refuses `user` for `reason`.
fn refused(user: &str, reason: &str) -> String {
    format!("ERROR 1045 (28000): Access denied for user '{user}' (Tollgate: {reason})")
}

fn pymysql(port: u16, ca: &Path, user: &str, token: &str) -> String {
    let script = r#"
import os, sys, pymysql
conn = pymysql.connect(host="127.0.0.1", port=int(sys.argv[1]), user=sys.argv[2],
                       password=os.environ["TOKEN"], ssl_ca=sys.argv[3], ssl_verify_cert=True)
with conn.cursor() as cur:
    cur.execute("SELECT CURRENT_USER()")
    print(cur.fetchone()[0])
"#;
    let output = run_capture(
        Command::new("python3")
            .args(["-c", script, &port.to_string(), user])
            .arg(ca)
            .env("TOKEN", token),
    )
    .expect("python3");
    assert!(
        output.status.success(),
        "PyMySQL: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn mysql2(port: u16, ca: &Path, user: &str, token: &str) -> String {
    let script = r"
const fs = require('fs');
const mysql = require('mysql2/promise');
(async () => {
  const conn = await mysql.createConnection({
    host: '127.0.0.1', port: Number(process.argv[1]), user: process.argv[2],
    password: process.env.TOKEN, ssl: { ca: fs.readFileSync(process.argv[3]) },
  });
  const [rows] = await conn.query('SELECT CURRENT_USER() AS u');
  console.log(rows[0].u);
  await conn.end();
})().catch((e) => { console.error(e.message); process.exit(1); });
";
    let output = run_capture(
        Command::new("node")
            .args(["-e", script, &port.to_string(), user])
            .arg(ca)
            .env("TOKEN", token)
            .env(
                "NODE_PATH",
                workspace_root().join("tests/clients/node/node_modules"),
            ),
    )
    .expect("node");
    assert!(
        output.status.success(),
        "mysql2: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// MariaDB Connector/J (Debian `libmariadb-java`) with the token as the password and TLS
/// verified against `ca`.
fn jdbc(port: u16, ca: &Path, user: &str, token: &str) -> String {
    let output = run_capture(
        Command::new("java")
            .args(["-cp", "/usr/share/java/mariadb-java-client.jar"])
            .arg(workspace_root().join("tests/clients/JdbcTokenLogin.java"))
            .args([&port.to_string(), user])
            .arg(ca)
            .env("TOKEN", token),
    )
    .expect("java");
    assert!(
        output.status.success(),
        "Connector/J: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn logins(gateway: &Gateway) -> Vec<Value> {
    gateway
        .recorded_events()
        .into_iter()
        .filter(|e| e["type"] == "session.login")
        .collect()
}

#[test]
fn real_clients_log_in_with_tokens_and_no_token_is_logged_or_recorded() {
    let issuer = OidcIssuer::start().expect("start the OIDC issuer");
    let (db, mut gateway, port) = start(&issuer, "");
    let ca = db.dir().join("tls/ca.pem");
    let (alice_access, _) = issuer
        .user_tokens("alice", "alice-pw")
        .expect("alice's tokens");
    let (_, bob_id) = issuer.user_tokens("bob", "bob-pw").expect("bob's tokens");
    let agent = issuer.agent_token().expect("agent token");

    // The mariadb CLI, no flags: TLS because the gateway offers it, the token as the password.
    let (ok, out, err) = mariadb(port, "alice", &alice_access, &[], "SELECT CURRENT_USER()");
    assert!(ok, "{err}");
    assert_eq!(out, "app@%");
    // An ID token works too (PyMySQL), and so does an agent's client-credentials access token
    // (node mysql2). The MySQL user name is informational.
    assert_eq!(pymysql(port, &ca, "bob", &bob_id), "app@%");
    assert_eq!(mysql2(port, &ca, "ci-agent", &agent), "app@%");
    // A JDBC driver too (it starts with mysql_native_password; the gateway switches it).
    assert_eq!(jdbc(port, &ca, "alice", &alice_access), "app@%");
    // Passwords still go to the identity table.
    let (ok, _, err) = mariadb(port, "alice", "alice-pw", &[], "SELECT 1");
    assert!(ok, "{err}");

    std::thread::sleep(Duration::from_millis(300));
    gateway.stop();
    let logins = logins(&gateway);
    let identity = |user: &str| {
        logins
            .iter()
            .find(|e| e["user"] == user && e["accepted"] == true)
            .map_or_else(
                || panic!("no accepted login of {user}: {logins:?}"),
                |e| e["identity"].clone(),
            )
    };
    let alice = identity("alice");
    assert_eq!(alice["source"], "oidc", "{alice}");
    assert_eq!(alice["subject"], "user-alice");
    assert_eq!(alice["issuer"], issuer.url.as_str());
    assert_eq!(alice["groups"], serde_json::json!(["admins", "devs"]));
    let bob = identity("bob");
    assert_eq!(bob["subject"], "user-bob");
    assert_eq!(bob["groups"], serde_json::json!(["devs"]));
    let agent_identity = identity("ci-agent");
    assert_eq!(agent_identity["subject"], "agent-1");
    assert_eq!(
        agent_identity["groups"],
        serde_json::json!(["agents", "readers"])
    );
    assert!(
        logins
            .iter()
            .any(|e| e["identity"]["source"] == "password" && e["identity"]["subject"] == "alice"),
        "{logins:?}"
    );

    // No token, nor its signature alone, in the log (debug level) or the recording.
    let log = gateway.log_text();
    let recording = serde_json::to_string(&gateway.recorded_events()).expect("json");
    assert!(log.contains("fetched the issuer's signing keys"), "{log}");
    for token in [&alice_access, &bob_id, &agent] {
        let signature = token.rsplit('.').next().expect("signature");
        for text in [token.as_str(), signature] {
            assert!(!log.contains(text), "a token in the gateway's log");
            assert!(!recording.contains(text), "a token in the recording");
        }
    }
}

#[test]
fn bad_tokens_are_refused_with_the_reason() {
    let issuer = OidcIssuer::start().expect("start the OIDC issuer");
    let (_db, mut gateway, port) = start(&issuer, "");
    let unrelated = "http://127.0.0.1:1";
    let cases = [
        (
            "exp=1700000000",
            "token expired at 2023-11-14T22:13:20Z".to_owned(),
        ),
        (
            "nbf=4102444800&exp=4102448400",
            "token not valid before 2100-01-01T00:00:00Z".to_owned(),
        ),
        ("aud=urn:other:api", "audience not accepted".to_owned()),
        (
            &format!("iss={unrelated}") as &str,
            format!("issuer {unrelated} not trusted"),
        ),
        ("forge=bad-signature", "signature invalid".to_owned()),
        ("forge=foreign-key", "signature invalid".to_owned()),
        ("forge=none", "algorithm none not allowed".to_owned()),
        (
            "forge=hs256-public",
            "algorithm HS256 not allowed".to_owned(),
        ),
        (
            "forge=unknown-kid",
            "unknown signing key not-published".to_owned(),
        ),
        // A valid token whose groups no [[targets.allow]] rule names.
        (
            "sub=user-eve&groups=contractors",
            "user-eve (groups contractors) may not use target 'db'".to_owned(),
        ),
    ];
    let mut tokens = Vec::new();
    for (query, reason) in &cases {
        let token = issuer.test_token(query).expect("test token");
        let (ok, _, err) = mariadb(port, "alice", &token, &[], "SELECT 1");
        assert!(!ok, "{query} was accepted");
        assert_eq!(err, refused("alice", reason), "{query}");
        tokens.push(token);
    }
    // The same issuer's good token, offered without TLS: refused before it is even sent.
    let good = issuer
        .test_token("sub=user-alice&groups=devs")
        .expect("token");
    let (ok, _, err) = mariadb(port, "alice", &good, &[], "SELECT 1");
    assert!(ok, "{err}");
    let (ok, _, err) = mariadb(port, "alice", &good, &["--skip-ssl"], "SELECT 1");
    assert!(!ok);
    assert_eq!(
        err,
        "ERROR 1045 (28000): Tollgate: log in over TLS (the gateway checks your password itself \
         and never asks for it over an unencrypted connection)"
    );

    std::thread::sleep(Duration::from_millis(300));
    gateway.stop();
    let logins = logins(&gateway);
    assert!(
        logins.iter().any(|e| e["accepted"] == false
            && e["error_message"] == "token expired at 2023-11-14T22:13:20Z"),
        "{logins:?}"
    );
    let log = gateway.log_text();
    let recording = serde_json::to_string(&gateway.recorded_events()).expect("json");
    tokens.push(good);
    for token in &tokens {
        assert!(
            !log.contains(token.as_str()),
            "a token in the gateway's log"
        );
        assert!(
            !recording.contains(token.as_str()),
            "a token in the recording"
        );
    }
}

#[test]
fn a_key_rotation_at_the_issuer_is_picked_up_without_a_restart() {
    let issuer = OidcIssuer::start().expect("start the OIDC issuer");
    let (_db, mut gateway, port) = start(&issuer, "key_refresh_interval = \"1s\"");
    let (before, _) = issuer.user_tokens("alice", "alice-pw").expect("token");
    let (ok, _, err) = mariadb(port, "alice", &before, &[], "SELECT 1");
    assert!(ok, "{err}");

    let kid = issuer.rotate().expect("rotate");
    assert_eq!(kid, "test-rs256-2");
    std::thread::sleep(Duration::from_millis(1100));
    let (after, _) = issuer.user_tokens("alice", "alice-pw").expect("token");
    let (ok, _, err) = mariadb(port, "alice", &after, &[], "SELECT 1");
    assert!(ok, "a token signed with the new key: {err}");
    // The old key left the issuer's key set, so tokens it signed no longer verify.
    let (ok, _, err) = mariadb(port, "alice", &before, &[], "SELECT 1");
    assert!(!ok);
    assert_eq!(err, refused("alice", "unknown signing key test-rs256-1"));

    gateway.stop();
    let fetches = gateway.log_messages("fetched the issuer's signing keys");
    assert!(fetches.len() >= 2, "{fetches:?}");
}
