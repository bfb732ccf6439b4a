//! Tamper evidence of the embedded store, end to end: a real gateway records a real `mariadb`
//! session, signing with a key made by `tollgate keygen`; `tollgate sessions verify` passes on
//! the store and names each kind of tampering done to a copy of it. Runs without root.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use serde_json::Value;
use tollgate_tests::{Gateway, MariaDb, free_port, mariadb_client, run_capture, tollgate_bin};

/// Runs `tollgate sessions verify --all` on `store` with the public key `public`.
fn verify(store: &Path, public: &Path) -> Output {
    run_capture(
        Command::new(tollgate_bin())
            .args(["sessions", "verify", "--all", "--store"])
            .arg(store)
            .arg("--public-key")
            .arg(public),
    )
    .expect("run tollgate sessions verify")
}

/// Writes `lines` as the only segment of a fresh store directory under `dir`.
fn tampered_store(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let store = dir.join(name);
    std::fs::create_dir(&store).expect("create store copy");
    std::fs::write(
        store.join("00000000000000000000.jsonl"),
        lines.join("\n") + "\n",
    )
    .expect("write copy");
    store
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Index of the line whose event has `type` and, for statements, runs `sql`.
fn find(lines: &[String], kind: &str, sql: Option<&str>) -> usize {
    lines
        .iter()
        .position(|line| {
            let event: Value = serde_json::from_str(line).expect("event JSON");
            event["type"] == kind && sql.is_none_or(|sql| event["sql"] == sql)
        })
        .expect("event in the store")
}

/// `tollgate keygen` into `dir/name.key` and `dir/name.pub`; returns their paths.
fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (key, public) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
    );
    let keygen = run_capture(
        Command::new(tollgate_bin())
            .args(["keygen", "--out"])
            .arg(&key)
            .arg("--public-out")
            .arg(&public),
    )
    .expect("run tollgate keygen");
    assert!(keygen.status.success(), "keygen: {keygen:?}");
    let printed = stdout(&keygen);
    assert_eq!(
        printed.trim().len(),
        64,
        "public key printed as hex: {printed}"
    );
    (key, public)
}

/// Records one `mariadb` session through a gateway signing with `key`; returns the stopped
/// gateway (its store and configuration stay until it is dropped).
fn record_one_session(key: &Path) -> Gateway {
    let db = MariaDb::start(None, "127.0.0.1", free_port()).expect("start MariaDB");
    let gateway_port = free_port();
    let config = tollgate_tests::direct_config(gateway_port, "local", db.port, "").replace(
        "store = \"{store}\"",
        &format!("store = \"{{store}}\"\nsigning_key = \"{}\"", key.display()),
    );
    let mut gateway = Gateway::start(None, &config).expect("start gateway");
    let args = mariadb_client(
        "127.0.0.1",
        gateway_port,
        "app",
        "app-pw",
        "SELECT 1; SELECT 2; SELECT 3; SELECT 4",
    );
    let output = run_capture(Command::new(&args[0]).args(&args[1..])).expect("run mariadb");
    assert!(output.status.success(), "client: {output:?}");
    gateway
        .wait_for_log("session ended", Duration::from_secs(10))
        .expect("session ended");
    gateway.stop();
    gateway
}

#[test]
fn verify_passes_on_the_recorded_store_and_names_each_tampering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, public) = keygen(dir.path(), "signing");
    let gateway = record_one_session(&key);

    // Intact: exit 0, signed, with the configuration's own key as well as the public key.
    let intact = verify(&gateway.store, &public);
    assert!(intact.status.success(), "intact store: {intact:?}");
    assert!(
        stdout(&intact).contains(": ok, ") && stdout(&intact).contains("signed"),
        "{intact:?}"
    );
    let with_config = run_capture(
        Command::new(tollgate_bin())
            .args(["sessions", "verify", "--all", "--config"])
            .arg(&gateway.config_path),
    )
    .expect("verify with the configured key");
    assert!(with_config.status.success(), "{with_config:?}");

    let lines: Vec<String> = tollgate_tests::store_text(&gateway.store)
        .lines()
        .map(str::to_owned)
        .collect();
    let second = find(&lines, "statement", Some("SELECT 2"));
    let third = find(&lines, "statement", Some("SELECT 3"));
    let ended = find(&lines, "session.ended", None);
    let seq_of = |i: usize| -> u64 {
        serde_json::from_str::<Value>(&lines[i]).expect("event")["chain_seq"]
            .as_u64()
            .expect("chain_seq")
    };

    let check = |name: &str, lines: &[String], expected: &str| {
        let store = tampered_store(dir.path(), name, lines);
        let output = verify(&store, &public);
        let out = stdout(&output);
        assert!(!output.status.success(), "{name}: verify passed: {out}");
        assert!(
            out.contains(expected),
            "{name}: expected {expected:?} in {out}"
        );
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("the recording was altered"),
            "{name}: {output:?}"
        );
    };

    let mut edited = lines.clone();
    edited[second] = edited[second].replace("SELECT 2", "SELECT 9");
    check(
        "edited",
        &edited,
        &format!("event seq {} (", seq_of(second)),
    );
    check("edited-kind", &edited, "edited: its hash does not match");

    let mut dropped = lines.clone();
    dropped.remove(second);
    check(
        "dropped",
        &dropped,
        &format!("event seq {}: dropped", seq_of(second)),
    );

    let mut reordered = lines.clone();
    reordered.swap(second, third);
    check(
        "reordered",
        &reordered,
        &format!(
            "event seq {} ({}",
            seq_of(second),
            serde_json::from_str::<Value>(&lines[second]).expect("event")["id"]
                .as_str()
                .expect("id")
        ),
    );
    check(
        "reordered-kind",
        &reordered,
        "reordered: stored after event seq",
    );

    let mut forged = lines.clone();
    forged[ended] = forged[ended].replace("\"reason\":\"closed\"", "\"reason\":\"error\"");
    assert_ne!(
        forged[ended], lines[ended],
        "the end reason is recorded as closed"
    );
    check(
        "forged-end",
        &forged,
        "session.ended does not hash to its chain_head",
    );

    // A wrong public key: the signature does not verify.
    let (_, other_public) = keygen(dir.path(), "other");
    let wrong = verify(&gateway.store, &other_public);
    assert!(!wrong.status.success(), "{wrong:?}");
    assert!(stdout(&wrong).contains("bad signature"), "{wrong:?}");

    // Truncated (no session.ended yet): open, not tampering.
    let truncated = tampered_store(dir.path(), "truncated", &lines[..ended]);
    let open = verify(&truncated, &public);
    assert!(open.status.success(), "{open:?}");
    assert!(
        stdout(&open).contains("open (no session.ended yet)"),
        "{open:?}"
    );
}
