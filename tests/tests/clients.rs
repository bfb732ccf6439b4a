//! Real client drivers through the MySQL-aware relay, each running one scenario (typed inserts,
//! text and binary protocol reads, a 100k-row result, a rolled-back transaction, an error)
//! straight against MariaDB and through the gateway: the outputs must be identical, and the
//! session must be recorded command by command. Runs without root; `cargo xtask setup`
//! installs the drivers:
//! - PyMySQL and mysql-connector-python (pure; text protocol, and binary with server-side
//!   prepared statements);
//! - node `mysql2` (`query` and `execute`);
//! - MariaDB Connector/J (Debian `libmariadb-java`, `useServerPrepStmts=true`).

use std::{process::Command, time::Duration};

use serde_json::Value;
use tollgate_tests::{Gateway, MariaDb, free_port, record_compatibility, workspace_root};

/// MariaDB and a gateway in front of it (interception off: clients dial the listener).
fn db_and_gateway() -> (MariaDb, Gateway, u16) {
    let db = MariaDb::start(None, "127.0.0.1", free_port()).expect("start MariaDB");
    let port = free_port();
    let gateway = Gateway::start(
        None,
        &tollgate_tests::direct_config(port, "db", db.port, ""),
    )
    .expect("start gateway");
    (db, gateway, port)
}

/// Runs `client(port)` directly and through the gateway; both must succeed with identical
/// output, which is returned.
fn identical_through_gateway(
    label: &str,
    db: &MariaDb,
    gateway_port: u16,
    client: impl Fn(u16) -> Command,
) -> String {
    let run = |port: u16| {
        let output = client(port)
            .output()
            .unwrap_or_else(|e| panic!("{label}: cannot run: {e}"));
        assert!(
            output.status.success(),
            "{label} on port {port} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let direct = run(db.port);
    let through = run(gateway_port);
    assert_eq!(through, direct, "{label}: identical through the gateway");
    direct
}

fn finish(mut gateway: Gateway) -> Vec<Value> {
    std::thread::sleep(Duration::from_millis(300));
    gateway.stop();
    let events = gateway.recorded_events();
    let serialized = serde_json::to_string(&events).expect("json");
    assert!(
        !serialized.contains("app-pw"),
        "no password in the recording"
    );
    events
}

fn recorded<'e>(events: &'e [Value], command: &str, sql_prefix: &str) -> &'e Value {
    events
        .iter()
        .find(|e| {
            e["type"] == "statement"
                && e["command"] == command
                && e["sql"].as_str().is_some_and(|s| s.starts_with(sql_prefix))
        })
        .unwrap_or_else(|| panic!("no {command} of {sql_prefix:?} recorded"))
}

#[test]
fn python_drivers() {
    let (db, gateway, port) = db_and_gateway();
    let script = workspace_root().join("tests/clients/python_scenario.py");
    for driver in ["pymysql", "connector", "connector-prepared"] {
        let out = identical_through_gateway(driver, &db, port, |p| {
            let mut c = Command::new("python3");
            c.arg(&script).arg(driver).arg(p.to_string());
            c
        });
        assert!(
            out.contains("\"big\": [100000, [1], [100000]]"),
            "{driver}: {out}"
        );
        assert!(out.contains("\"error\": 1146"), "{driver}: {out}");
        let (client, protocol) = match driver {
            "pymysql" => ("PyMySQL 1.1", "text"),
            "connector" => ("mysql-connector-python 26.10 (pure)", "text"),
            _ => (
                "mysql-connector-python 26.10 (pure)",
                "binary (server-side prepared)",
            ),
        };
        record_compatibility(client, "MariaDB 10.11", protocol, "relayed", "identical");
    }
    let events = finish(gateway);
    let execute = recorded(&events, "stmt_execute", "SELECT seq FROM seq_1_to_100000");
    assert_eq!(execute["rows"], 100_000);
    assert!(execute["statement_id"].is_u64());
    assert_eq!(
        recorded(&events, "stmt_execute", "INSERT INTO t")["affected_rows"],
        1
    );
    assert!(events.iter().any(|e| e["command"] == "stmt_prepare"));
    let logins = events
        .iter()
        .filter(|e| e["type"] == "session.login")
        .count();
    assert_eq!(logins, 3, "one login per driver run");
}

#[test]
fn node_mysql2_query_and_execute() {
    let (db, gateway, port) = db_and_gateway();
    let script = workspace_root().join("tests/clients/node/scenario.js");
    let out = identical_through_gateway("node mysql2", &db, port, |p| {
        let mut c = Command::new("node");
        c.arg(&script).arg(p.to_string());
        c
    });
    assert!(out.contains(r#""big":[100000,["1"],["100000"]]"#), "{out}");
    assert!(out.contains("\"error\":1146"), "{out}");
    record_compatibility(
        "node mysql2 3.24",
        "MariaDB 10.11",
        "text (query) and binary (execute)",
        "relayed",
        "identical",
    );
    let events = finish(gateway);
    assert_eq!(
        recorded(&events, "stmt_execute", "SELECT seq FROM seq_1_to_100000")["rows"],
        100_000
    );
    assert_eq!(
        recorded(&events, "query", "SELECT id, v, b, d, n, j FROM t")["rows"],
        2
    );
}

#[test]
fn mariadb_connector_j() {
    let (db, gateway, port) = db_and_gateway();
    let source = workspace_root().join("tests/clients/JdbcScenario.java");
    let out = identical_through_gateway("Connector/J", &db, port, |p| {
        let mut c = Command::new("java");
        c.args(["-cp", "/usr/share/java/mariadb-java-client.jar"])
            .arg(&source)
            .arg(p.to_string());
        c
    });
    assert!(
        out.contains("binary rows=100000 first=1 last=100000"),
        "{out}"
    );
    assert!(out.contains("error=1146 state=42S02"), "{out}");
    record_compatibility(
        "MariaDB Connector/J 2.7",
        "MariaDB 10.11",
        "text and binary (useServerPrepStmts)",
        "relayed",
        "identical",
    );
    let events = finish(gateway);
    assert_eq!(
        recorded(&events, "stmt_execute", "SELECT seq FROM seq_1_to_100000")["rows"],
        100_000
    );
}

#[test]
fn sysbench_oltp_read_write() {
    let (db, gateway, port) = db_and_gateway();
    let sysbench = |port: u16, action: &str| {
        let output = Command::new("sysbench")
            .args([
                "oltp_read_write",
                "--db-driver=mysql",
                "--mysql-host=127.0.0.1",
                &format!("--mysql-port={port}"),
                "--mysql-user=app",
                "--mysql-password=app-pw",
                "--mysql-db=demo",
                "--mysql-ssl=off",
                "--tables=2",
                "--table-size=2000",
                "--threads=4",
                "--time=4",
                "--report-interval=0",
                action,
            ])
            .output()
            .expect("run sysbench (installed by `cargo xtask setup`)");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "sysbench {action} on port {port}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    };
    // Tables prepared through the gateway (DDL and bulk inserts), the workload through it.
    sysbench(port, "prepare");
    let run = sysbench(port, "run");
    let transactions = run
        .lines()
        .find(|l| l.trim_start().starts_with("transactions:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(transactions > 0, "{run}");
    // sysbench retries deadlocks (1213) and counts them as "ignored errors"; they happen
    // directly as well. Each must be in the recording with its error code.
    let ignored = run
        .lines()
        .find(|l| l.trim_start().starts_with("ignored errors:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(usize::MAX);
    assert!(
        run.contains("reconnects:                          0 "),
        "{run}"
    );
    let _ = db;
    let events = finish(gateway);
    let recorded_errors = events
        .iter()
        .filter(|e| {
            e["type"] == "statement"
                && [1213, 1020, 1205].contains(&e["error"]["code"].as_u64().unwrap_or(0))
        })
        .count();
    assert!(
        recorded_errors >= ignored,
        "{ignored} ignored errors, {recorded_errors} recorded"
    );
    let commits = events
        .iter()
        .filter(|e| e["type"] == "statement" && e["sql"] == "COMMIT")
        .count();
    assert!(
        commits as u64 >= transactions,
        "every transaction recorded ({commits} commits)"
    );
    record_compatibility(
        "sysbench 1.0.20 oltp_read_write",
        "MariaDB 10.11",
        "binary (server-side prepared), 4 threads",
        "relayed",
        "runs; deadlock retries and every commit recorded",
    );
}
