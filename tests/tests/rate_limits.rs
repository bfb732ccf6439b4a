//! Rate guardrails (`[[rate_limits]]`) through a real gateway in front of a real MariaDB, with
//! a real client: over the statement rate an identity is refused with error 1226 naming the
//! rule (`action = "block"`) or held back (`action = "delay"`); rows read over the limit
//! refuse the next statement; each hit is in the recording. Runs without root.
#![expect(
    clippy::disallowed_types,
    reason = "synchronous test code: std::time::Instant is the right clock here"
)]

use std::time::{Duration, Instant};

use tollgate_tests::{
    DB_PASSWORD_ENV, Gateway, Upstream, free_port, pymysql_client, terminated_config,
};

/// Runs the statements given on stdin (one per line), printing `ok <rows>` or
/// `err <code> <message>` for each.
const CLIENT: &str = r"
import sys, pymysql
conn = pymysql.connect(host='127.0.0.1', port=int(sys.argv[1]), user=sys.argv[2],
    password=sys.argv[3], ssl_ca=sys.argv[4], ssl_verify_cert=True)
cur = conn.cursor()
for sql in sys.stdin.read().splitlines():
    try:
        print('ok', cur.execute(sql), flush=True)
    except pymysql.MySQLError as e:
        print('err', e.args[0], e.args[1], flush=True)
";

/// Starts a gateway with `rules`, runs `statements` through it; the client's lines, how long
/// they took, and the gateway (for its recording).
fn run(upstream: &Upstream, rules: &str, statements: &[&str]) -> (Vec<String>, Duration, Gateway) {
    let port = free_port();
    let gateway = Gateway::start_with_env(
        None,
        &(terminated_config(port, "db", upstream) + rules),
        &[(DB_PASSWORD_ENV, upstream.password())],
    )
    .expect("gateway");
    let mut client = pymysql_client(CLIENT, port, upstream);
    let input = statements.join("\n") + "\n";
    std::io::Write::write_all(client.stdin.as_mut().expect("stdin"), input.as_bytes())
        .expect("statements");
    drop(client.stdin.take());
    let started = Instant::now();
    let output = client.wait_with_output().expect("client");
    let took = started.elapsed();
    let lines = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    assert_eq!(
        lines.len(),
        statements.len(),
        "{lines:?} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The client is gone; its session is recorded to the end shortly after.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gateway
        .recorded_events()
        .iter()
        .any(|e| e["type"] == "session.ended")
    {
        assert!(
            Instant::now() < deadline,
            "the session's end was never recorded"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (lines, took, gateway)
}

fn hits(gateway: &Gateway) -> Vec<serde_json::Value> {
    gateway
        .recorded_events()
        .into_iter()
        .filter(|e| e["type"] == "statement" && !e["rate_limit"].is_null())
        .map(|e| e["rate_limit"].clone())
        .collect()
}

#[test]
fn statements_over_the_rate_are_refused_delayed_and_recorded() {
    let upstream = Upstream::mariadb().expect("mariadb");

    let block = r#"
[[rate_limits]]
name = "agents-burst"
statements_per_second = 1.0
burst = 4.0
action = "block"
"#;
    // The client's own setup at connect (`SET AUTOCOMMIT`) counts too.
    let (lines, _, gateway) = run(&upstream, block, &["SELECT 1"; 8]);
    assert_eq!(&lines[..2], ["ok 1", "ok 1"], "{lines:?}");
    let refused: Vec<&String> = lines.iter().filter(|l| l.starts_with("err")).collect();
    assert!(!refused.is_empty(), "{lines:?}");
    let first_refused = lines.iter().position(|l| l.starts_with("err")).unwrap_or(0);
    assert!(
        lines[first_refused..]
            .iter()
            .filter(|l| l.starts_with("ok"))
            .count()
            <= 1,
        "refused once over the rate, not at random: {lines:?}"
    );
    assert!(
        refused[0].starts_with(
            "err 1226 Tollgate: rate limit 'agents-burst' reached for identity 'alice' (1 statements/s)"
        ),
        "{lines:?}"
    );
    let recorded = hits(&gateway);
    assert_eq!(recorded.len(), refused.len(), "{recorded:?}");
    assert_eq!(recorded[0]["refused"], true);
    assert_eq!(recorded[0]["rule"], "agents-burst");
    drop(gateway);

    // Delayed, not refused: five statements at 4/s after a burst of one take at least 1 s.
    let delay = r#"
[[rate_limits]]
name = "agents-pace"
statements_per_second = 4.0
burst = 1.0
"#;
    let (lines, took, gateway) = run(&upstream, delay, &["SELECT 1"; 5]);
    assert!(lines.iter().all(|l| l == "ok 1"), "{lines:?}");
    assert!(
        took >= Duration::from_millis(900),
        "not held back: {took:?}"
    );
    let recorded = hits(&gateway);
    // Four of ours at least, and the client's own setup statements.
    assert!(recorded.len() >= 4, "{recorded:?}");
    assert!(
        recorded
            .iter()
            .all(|h| h["refused"] == false && h["waited_ms"].as_u64() > Some(0))
    );
    drop(gateway);

    // Rows read: a big result spends the minute's rows; the next statement is refused.
    let rows = r#"
[[rate_limits]]
name = "agents-rows"
rows_per_minute = 20
action = "block"
"#;
    let (lines, _, gateway) = run(
        &upstream,
        rows,
        &[
            "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 50) SELECT n FROM s",
            "SELECT 1",
        ],
    );
    assert_eq!(lines[0], "ok 50");
    assert!(
        lines[1].starts_with("err 1226 Tollgate: rate limit 'agents-rows'")
            && lines[1].contains("20 rows/min"),
        "{lines:?}"
    );
    assert_eq!(hits(&gateway).len(), 1);
}
