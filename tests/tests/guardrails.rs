//! Guardrails (`[[guardrails]]`) through a real gateway in front of a real MariaDB, with a real
//! client: unbounded writes are blocked with an error naming the rule (also when hidden in an
//! executable comment or behind `WHERE 1=1`) and never reach the database, DDL runs and is
//! flagged, and both marks are in the recording and found by `sessions list --kind`. Runs
//! without root.
#![expect(
    clippy::disallowed_types,
    reason = "synchronous test code: std::time::Instant is the right clock here"
)]

use std::process::Command;

use tollgate_tests::{
    DB_PASSWORD_ENV, Gateway, Upstream, free_port, pymysql_client, terminated_config, tollgate_bin,
};

const GUARDRAILS: &str = r#"
[[guardrails]]
name = "no-unbounded-writes"
risks = ["delete_without_where", "update_without_where"]
action = "block"

[[guardrails]]
name = "ddl-watch"
risks = ["drop", "truncate", "alter"]
action = "flag"
"#;

/// Runs each statement and prints `ok <affected rows> <rows>` or `err <code> <message>`.
const AGENT: &str = r#"
import sys, pymysql
conn = pymysql.connect(host='127.0.0.1', port=int(sys.argv[1]), user=sys.argv[2],
    password=sys.argv[3], ssl_ca=sys.argv[4], ssl_verify_cert=True, autocommit=True,
    client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)
cur = conn.cursor()
for sql in [
    "CREATE DATABASE IF NOT EXISTS guard_test",
    "CREATE OR REPLACE TABLE guard_test.t (id INT)",
    "INSERT INTO guard_test.t VALUES (1), (2)",
    "DELETE FROM guard_test.t",
    "/*!50000 DELETE */ FROM guard_test.t",
    "UPDATE guard_test.t SET id = 3 WHERE 1=1",
    "DELETE FROM guard_test.t WHERE id = 1",
    "SELECT 1; DELETE FROM guard_test.t",
    "SELECT COUNT(*) FROM guard_test.t",
    "DROP TABLE guard_test.t",
]:
    try:
        n = cur.execute(sql)
        print('ok', n, cur.fetchall(), flush=True)
    except pymysql.MySQLError as e:
        print('err', e.args[0], e.args[1], flush=True)
"#;

/// mysql-connector-python's prepared cursor (`COM_STMT_PREPARE`, binary protocol): prints `ok`
/// or `err <code> <message>` for each statement.
const PREPARED_AGENT: &str = r#"
import sys, mysql.connector
conn = mysql.connector.connect(host='127.0.0.1', port=int(sys.argv[1]), user=sys.argv[2],
    password=sys.argv[3], ssl_ca=sys.argv[4], ssl_verify_cert=True, use_pure=True,
    autocommit=True)
cur = conn.cursor(prepared=True)
for sql, params in [
    ("CREATE OR REPLACE TABLE guard_test.p (id INT)", ()),
    ("INSERT INTO guard_test.p VALUES (%s), (%s)", (1, 2)),
    ("DELETE FROM guard_test.p", ()),
    ("DELETE FROM guard_test.p WHERE id = %s", (1,)),
    ("SELECT COUNT(*) FROM guard_test.p", ()),
]:
    try:
        cur.execute(sql, params)
        print('ok', cur.fetchall() if cur.with_rows else cur.rowcount, flush=True)
    except mysql.connector.Error as e:
        print('err', e.errno, e.msg, flush=True)
"#;

/// The gateway's recording once `sessions` sessions have ended in it (10 s at most: events
/// are written just after the client has its answers).
fn ended_sessions(gateway: &Gateway, sessions: usize) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let events = gateway.recorded_events();
        if events
            .iter()
            .filter(|e| e["type"] == "session.ended")
            .count()
            >= sessions
        {
            return events;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sessions' ends were never recorded"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn unbounded_writes_are_blocked_and_ddl_is_flagged_in_the_recording() {
    let upstream = Upstream::mariadb().expect("mariadb");
    let port = free_port();
    let gateway = Gateway::start_with_env(
        None,
        &(terminated_config(port, "db", &upstream) + GUARDRAILS),
        &[(DB_PASSWORD_ENV, upstream.password())],
    )
    .expect("gateway");
    let output = pymysql_client(AGENT, port, &upstream)
        .wait_with_output()
        .expect("client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        10,
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let blocked = "err 1227 Tollgate: statement blocked by guardrail 'no-unbounded-writes'";
    assert!(lines[3].starts_with(blocked), "{}", lines[3]);
    assert!(lines[3].ends_with("(delete_without_where)"), "{}", lines[3]);
    assert!(
        lines[4].starts_with(blocked),
        "executable comment: {}",
        lines[4]
    );
    assert!(lines[5].starts_with(blocked), "WHERE 1=1: {}", lines[5]);
    assert!(lines[5].ends_with("(update_without_where)"), "{}", lines[5]);
    assert!(
        lines[6].starts_with("ok 1"),
        "a bounded delete runs: {}",
        lines[6]
    );
    assert!(
        lines[7].starts_with(blocked),
        "any statement of a multi-statement: {}",
        lines[7]
    );
    // The blocked statements never reached the database: one row is left of two.
    assert_eq!(lines[8], "ok 1 ((1,),)", "{stdout}");
    assert!(
        lines[9].starts_with("ok"),
        "DDL runs, flagged: {}",
        lines[9]
    );

    let events = ended_sessions(&gateway, 1);
    let statement = |sql: &str| {
        events
            .iter()
            .find(|e| e["type"] == "statement" && e["sql"] == sql)
            .unwrap_or_else(|| panic!("{sql} was not recorded"))
            .clone()
    };
    let delete = statement("DELETE FROM guard_test.t");
    assert_eq!(delete["guard"]["action"], "block", "{delete}");
    assert_eq!(delete["guard"]["rule"], "no-unbounded-writes");
    assert_eq!(delete["guard"]["risks"][0], "delete_without_where");
    assert_eq!(delete["error"]["code"], 1227);
    let drop = statement("DROP TABLE guard_test.t");
    assert_eq!(drop["guard"]["action"], "flag", "{drop}");
    assert_eq!(drop["guard"]["rule"], "ddl-watch");
    assert!(drop["error"].is_null(), "{drop}");
    assert!(
        statement("SELECT COUNT(*) FROM guard_test.t")
            .get("guard")
            .is_none()
    );
    let session = delete["session_id"].as_str().expect("id");

    // Prepared statements are checked when prepared.
    let output = pymysql_client(PREPARED_AGENT, port, &upstream)
        .wait_with_output()
        .expect("prepared client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        5,
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(lines[2].starts_with(blocked), "prepared: {}", lines[2]);
    assert!(lines[3].starts_with("ok"), "{}", lines[3]);
    assert_eq!(lines[4], "ok [(1,)]", "{stdout}");
    let prepared_block = ended_sessions(&gateway, 2)
        .into_iter()
        .find(|e| e["command"] == "stmt_prepare" && e["sql"] == "DELETE FROM guard_test.p")
        .expect("the blocked prepare is recorded");
    assert_eq!(prepared_block["guard"]["action"], "block");

    for kind in ["blocked", "flagged"] {
        let list = Command::new(tollgate_bin())
            .args(["sessions", "list", "--json", "--kind", kind, "--store"])
            .arg(&gateway.store)
            .output()
            .expect("sessions list");
        let listed = String::from_utf8_lossy(&list.stdout);
        assert!(list.status.success(), "{listed}");
        assert!(listed.contains(session), "--kind {kind}: {listed}");
    }
}
