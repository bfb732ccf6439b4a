//! The MySQL-aware relay against a real MariaDB with the real `mariadb` client: one scenario
//! (DDL, inserts with NULL/blob/datetime/decimal/JSON values, a 100k-row result, a value over
//! 16 MiB, text-protocol prepared statements, a multi-statement query, a rolled-back
//! transaction, an error) must give byte-identical output directly and through the gateway,
//! and every command must be recorded with its outcome. Runs without root.

use std::time::Duration;

use serde_json::Value;
use tollgate_tests::{Gateway, MariaDb, free_port, mariadb_script, record_compatibility};

const SCENARIO: &str = r#"
CREATE DATABASE IF NOT EXISTS compat;
USE compat;
DROP TABLE IF EXISTS t;
CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(20), b BLOB, d DATETIME, n DECIMAL(10,2), j JSON);
INSERT INTO t (v, b, d, n, j) VALUES ('a', 0x00ff10, '2026-01-02 03:04:05', 12.34, '{"k": [1, 2]}'), (NULL, NULL, NULL, NULL, NULL);
SELECT * FROM t ORDER BY id;
SELECT seq, seq * 2 AS twice FROM seq_1_to_100000;
SELECT LENGTH(REPEAT('x', 17000000)) AS len, REPEAT('y', 17000000) AS big;
PREPARE s FROM 'SELECT v, n FROM t WHERE id = ?';
SET @i = 1;
EXECUTE s USING @i;
DEALLOCATE PREPARE s;
START TRANSACTION;
DELETE FROM t;
ROLLBACK;
SELECT COUNT(*) AS kept FROM t;
SELECT * FROM no_such_table;
DELIMITER //
SELECT 1 AS first_result; SELECT 2 AS second_result//
DELIMITER ;
SELECT 'done' AS last;
"#;

fn statement<'e>(events: &'e [Value], sql_prefix: &str) -> &'e Value {
    events
        .iter()
        .find(|e| {
            e["type"] == "statement" && e["sql"].as_str().is_some_and(|s| s.starts_with(sql_prefix))
        })
        .unwrap_or_else(|| panic!("no statement starting with {sql_prefix:?}"))
}

#[test]
fn a_full_scenario_is_identical_through_the_gateway_and_fully_recorded() {
    let db = MariaDb::start(None, "127.0.0.1", free_port()).expect("start MariaDB");
    let gateway_port = free_port();
    let mut gateway = Gateway::start(
        None,
        &tollgate_tests::direct_config(gateway_port, "db", db.port, ""),
    )
    .expect("start gateway");

    let (direct_out, direct_err) = mariadb_script(
        db.port,
        "app",
        "app-pw",
        &["--max-allowed-packet=64M"],
        SCENARIO,
    );
    let (via_out, via_err) = mariadb_script(
        gateway_port,
        "app",
        "app-pw",
        &["--max-allowed-packet=64M"],
        SCENARIO,
    );
    assert!(
        direct_out.contains("100000\t200000"),
        "scenario ran directly"
    );
    assert!(direct_err.contains("ERROR 1146"), "{direct_err}");
    assert_eq!(via_err, direct_err, "same errors through the gateway");
    assert!(
        via_out == direct_out,
        "same output through the gateway ({} vs {} bytes)",
        via_out.len(),
        direct_out.len()
    );

    record_compatibility(
        "mariadb CLI 10.11",
        "MariaDB 10.11",
        "text (multi-statement, 17 MB value, 100k rows)",
        "relayed",
        "identical",
    );
    gateway
        .wait_for_log("session ended", Duration::from_secs(20))
        .expect("session ended");
    gateway.stop();
    let events = gateway.recorded_events();

    let big = statement(&events, "SELECT seq, seq * 2");
    assert_eq!(big["rows"], 100_000);
    assert_eq!(big["columns"], serde_json::json!(["seq", "twice"]));
    let huge = statement(&events, "SELECT LENGTH(REPEAT");
    assert_eq!(huge["rows"], 1);
    let insert = statement(&events, "INSERT INTO t");
    assert_eq!(insert["affected_rows"], 2);
    assert_eq!(insert["last_insert_id"], 1);
    let missing = statement(&events, "SELECT * FROM no_such_table");
    assert_eq!(missing["error"]["code"], 1146);
    assert_eq!(missing["error"]["sql_state"], "42S02");
    let multi = statement(&events, "SELECT 1 AS first_result");
    assert_eq!(multi["result_sets"], 2);
    assert_eq!(
        multi["columns"],
        serde_json::json!(["first_result", "second_result"])
    );
    let rollback = statement(&events, "ROLLBACK");
    assert!(rollback["error"].is_null());
    let init_db = events
        .iter()
        .find(|e| e["type"] == "statement" && e["command"] == "init_db")
        .expect("USE becomes COM_INIT_DB");
    assert_eq!(init_db["sql"], "compat");
    let seqs: Vec<u64> = events
        .iter()
        .filter(|e| e["type"] == "statement")
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "statements in order: {seqs:?}"
    );
    assert!(seqs.len() >= 17, "every command recorded: {seqs:?}");
}

/// Server-side cursors: `COM_STMT_EXECUTE` with `CURSOR_TYPE_READ_ONLY`, rows fetched in
/// batches with `COM_STMT_FETCH` until `SERVER_STATUS_LAST_ROW_SENT`, `COM_STMT_RESET`,
/// `COM_STMT_CLOSE`, with and without `CLIENT_DEPRECATE_EOF`. No driver in the matrix opens
/// cursors, so `tests/clients/cursor_fetch.py` speaks the packets itself; its output must be
/// identical directly and through the gateway, and every fetch must be recorded with its rows.
#[test]
fn cursor_fetch_with_and_without_deprecate_eof() {
    let db = MariaDb::start(None, "127.0.0.1", free_port()).expect("start MariaDB");
    let port = free_port();
    let mut gateway = Gateway::start(
        None,
        &tollgate_tests::direct_config(port, "db", db.port, ""),
    )
    .expect("start gateway");
    let script = tollgate_tests::workspace_root().join("tests/clients/cursor_fetch.py");
    for deprecate_eof in ["0", "1"] {
        let run = |port: u16| {
            let output = tollgate_tests::run_capture(
                std::process::Command::new("python3").arg(&script).args([
                    &port.to_string(),
                    "app",
                    "app-pw",
                    deprecate_eof,
                ]),
            )
            .expect("python");
            assert!(
                output.status.success(),
                "deprecate_eof={deprecate_eof} port {port}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout).into_owned()
        };
        let direct = run(db.port);
        assert!(
            direct.contains(r#""cursor": true, "first": [1, "row-1"], "rows": 1000"#),
            "{direct}"
        );
        assert_eq!(run(port), direct, "deprecate_eof={deprecate_eof}");
    }
    record_compatibility(
        "raw packets (tests/clients/cursor_fetch.py)",
        "MariaDB 10.11",
        "binary, server-side cursor + COM_STMT_FETCH, with and without DEPRECATE_EOF",
        "relayed",
        "identical",
    );
    std::thread::sleep(Duration::from_millis(300));
    gateway.stop();
    let events = gateway.recorded_events();
    let fetches: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "statement" && e["command"] == "stmt_fetch")
        .collect();
    assert_eq!(fetches.len(), 2 * 2 * 4, "4 batches, 2 executes, 2 runs");
    let rows_fetched: u64 = fetches.iter().filter_map(|e| e["rows"].as_u64()).sum();
    assert_eq!(rows_fetched, 2 * 2 * 1000);
    assert!(
        fetches
            .iter()
            .all(|e| e["sql"] == "SELECT seq, CONCAT('row-', seq) FROM seq_1_to_1000"),
        "fetches carry the statement's SQL"
    );
}
