//! The recording's Kafka sink against a real broker (tansu) and a real MariaDB, read back by an
//! independent consumer (Python confluent-kafka) that validates every event against the JSON
//! Schema in `docs/recording/`: events arrive complete and in order; nothing is lost when the
//! broker is killed under load or the gateway is killed with `SIGKILL`; a fail-closed target refuses
//! statements while the spool is full and recovers.
//!
//! No root needed.
#![expect(
    clippy::disallowed_types,
    reason = "synchronous test code: std::time::Instant is the right clock here"
)]

use std::{
    collections::{BTreeMap, HashSet},
    io::{Read as _, Write as _},
    process::Command,
    time::Duration,
};

use serde_json::Value;
use std::time::Instant;
use tollgate_tests::{
    DB_PASSWORD_ENV, GATEWAY_PASSWORD, GATEWAY_USER, Gateway, KafkaBroker, Until, Upstream,
    consume_events, free_port, pymysql_client, recording_schema, run_capture, terminated_config,
    tollgate_bin, workspace_root,
};

const TOPIC: &str = "tollgate.sessions";

/// A terminating gateway for `upstream` that also ships to `broker_port`, with `kafka` (more
/// `[recording.kafka]` lines) and `target` (more `[[targets]]` lines).
fn kafka_config(
    port: u16,
    upstream: &Upstream,
    broker_port: u16,
    metrics_port: u16,
    kafka: &str,
    target: &str,
) -> String {
    terminated_config(port, "db", upstream)
        .replace("[[targets.allow]]", &format!("{target}\n[[targets.allow]]"))
        + &format!(
            r#"
[metrics]
listen = "127.0.0.1:{metrics_port}"

[recording.kafka]
brokers = "127.0.0.1:{broker_port}"
topic = "{TOPIC}"
{kafka}
"#
        )
}

fn start_gateway(upstream: &Upstream, config: &str) -> Gateway {
    Gateway::start_with_env(None, config, &[(DB_PASSWORD_ENV, upstream.password())])
        .expect("start the gateway")
}

/// `GET /metrics` from the gateway's endpoint, as name -> value.
fn metrics(port: u16) -> BTreeMap<String, u64> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics endpoint");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("response");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(name, value)| Some((name.to_owned(), value.trim().parse().ok()?)))
        .collect()
}

/// Runs `sql` (statements separated by `;`) as one session through the gateway with the
/// mariadb CLI.
fn session(port: u16, upstream: &Upstream, sql: &str) {
    let output = run_capture(
        Command::new("mariadb")
            .args(["-h", "127.0.0.1", "-P", &port.to_string()])
            .args(["-u", GATEWAY_USER, &format!("-p{GATEWAY_PASSWORD}")])
            .arg(format!("--ssl-ca={}", upstream.ca().display()))
            .args(["--ssl-verify-server-cert", "--batch", "-e", sql]),
    )
    .expect("run mariadb");
    assert!(output.status.success(), "{output:?}");
}

/// The events of the consumed records, one per event id (duplicates dropped), and how many
/// duplicates there were.
fn dedupe(records: &[Value]) -> (Vec<Value>, usize) {
    let mut seen = HashSet::new();
    let mut events = Vec::new();
    for record in records {
        let event = &record["event"];
        if seen.insert(event["id"].as_str().unwrap_or_default().to_owned()) {
            let mut event = event.clone();
            event["_partition"] = record["partition"].clone();
            events.push(event);
        }
    }
    let duplicates = records.len() - events.len();
    (events, duplicates)
}

/// Per session, its events in the order consumed.
fn by_session(events: &[Value]) -> BTreeMap<String, Vec<Value>> {
    let mut sessions: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for event in events {
        sessions
            .entry(event["session_id"].as_str().unwrap_or_default().to_owned())
            .or_default()
            .push(event.clone());
    }
    sessions
}

/// The chain positions of a session's events must be 1, 2, 3, ... in the order consumed.
fn assert_in_order(session: &str, events: &[Value]) {
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e["chain_seq"].as_u64().expect("chain_seq"))
        .collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(
        seqs, expected,
        "session {session}: events out of order or missing"
    );
    let partitions: HashSet<String> = events.iter().map(|e| e["_partition"].to_string()).collect();
    assert_eq!(partitions.len(), 1, "session {session} spans partitions");
}

#[test]
fn a_sessions_events_arrive_complete_in_order_and_valid() {
    let upstream = Upstream::mariadb().expect("mariadb");
    let broker = KafkaBroker::start().expect("broker");
    broker.create_topic(TOPIC, 3).expect("topic");
    let (port, metrics_port) = (free_port(), free_port());
    let config = kafka_config(
        port,
        &upstream,
        broker.port,
        metrics_port,
        "keep_shipped = true",
        "",
    );
    let mut gateway = start_gateway(&upstream, &config);
    for n in 1..=3 {
        session(
            port,
            &upstream,
            &format!(
                "CREATE DATABASE IF NOT EXISTS kt; USE kt; \
                 CREATE TABLE IF NOT EXISTS t{n} (id INT PRIMARY KEY, v VARCHAR(20)); \
                 REPLACE INTO t{n} VALUES (1, 'a'), (2, 'b'); SELECT * FROM t{n} ORDER BY id; \
                 SELECT {n}"
            ),
        );
    }
    let records = consume_events(
        &broker.bootstrap(),
        TOPIC,
        &recording_schema(),
        Until::sessions_ended(3)
            .timeout(Duration::from_mins(1))
            .linger(Duration::from_secs(1)),
    )
    .expect("consume: every event valid against the schema, keyed by its session");
    let (events, duplicates) = dedupe(&records);
    assert_eq!(duplicates, 0, "no duplicates without a failure");
    let sessions = by_session(&events);
    assert_eq!(sessions.len(), 3);
    for (id, events) in &sessions {
        assert_in_order(id, events);
        let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
        assert_eq!(types.first(), Some(&"session.started"), "{id}");
        assert_eq!(types.last(), Some(&"session.ended"), "{id}");
        let statements = types.iter().filter(|t| **t == "statement").count();
        assert_eq!(
            events.last().expect("end")["statements"],
            statements,
            "session.ended totals the statements: {id}"
        );
        assert!(types.contains(&"session.login"), "{id}");
        let select = events
            .iter()
            .find(|e| {
                e["sql"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("SELECT * FROM t"))
            })
            .expect("the select");
        assert_eq!(select["rows"], 2, "{select}");
        assert!(
            events.last().expect("end")["signature"].is_null()
                || events.last().expect("end")["chain_head"].is_string()
        );
    }
    // The broker has exactly what the local store has, event for event.
    std::thread::sleep(Duration::from_millis(500));
    let local: Vec<Value> = gateway.recorded_events();
    let local_ids: HashSet<&str> = local.iter().filter_map(|e| e["id"].as_str()).collect();
    let kafka_ids: HashSet<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(local_ids, kafka_ids);
    let verify = run_capture(
        Command::new(tollgate_bin())
            .args(["sessions", "verify", "--all", "--config"])
            .arg(&gateway.config_path),
    )
    .expect("verify");
    assert!(verify.status.success(), "{verify:?}");

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = metrics(metrics_port);
        if m["tollgate_recording_spool_bytes"] == 0 {
            assert!(m["tollgate_recording_events_acked_total"] >= local.len() as u64);
            assert_eq!(m["tollgate_recording_broker_up"], 1);
            assert_eq!(m["tollgate_recording_gaps_total"], 0);
            break;
        }
        assert!(Instant::now() < deadline, "the spool never drained: {m:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    gateway.stop();
}

/// One `PyMySQL` load connection (`tests/clients/recording_load.py`) through the gateway.
fn load_client(port: u16, upstream: &Upstream, client: usize, seconds: u64) -> std::process::Child {
    Command::new("python3")
        .arg(workspace_root().join("tests/clients/recording_load.py"))
        .arg(port.to_string())
        .args([GATEWAY_USER, GATEWAY_PASSWORD])
        .arg(upstream.ca())
        .arg(client.to_string())
        .arg(seconds.to_string())
        .arg("20")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start a load client")
}

fn load_result(child: std::process::Child) -> Value {
    let output = child.wait_with_output().expect("load client");
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).expect("load client's JSON")
}

#[test]
fn the_broker_killed_for_30s_under_8_connections_loses_no_statement() {
    let upstream = Upstream::mariadb().expect("mariadb");
    let mut broker = KafkaBroker::start().expect("broker");
    assert!(
        broker.is_durable(),
        "this test needs the durable tansu build (SQLite storage): run `cargo xtask setup`"
    );
    broker.create_topic(TOPIC, 4).expect("topic");
    let (port, metrics_port) = (free_port(), free_port());
    let config = kafka_config(port, &upstream, broker.port, metrics_port, "", "");
    let mut gateway = start_gateway(&upstream, &config);
    let clients: Vec<_> = (1..=8)
        .map(|client| load_client(port, &upstream, client, 45))
        .collect();
    std::thread::sleep(Duration::from_secs(8));
    broker.kill();
    std::thread::sleep(Duration::from_secs(5));
    let during = metrics(metrics_port);
    std::thread::sleep(Duration::from_secs(25));
    broker.restart().expect("restart the broker");
    let results: Vec<Value> = clients.into_iter().map(load_result).collect();
    for result in &results {
        assert_eq!(
            result["errors"],
            serde_json::json!([]),
            "fail-open: {result}"
        );
        assert!(result["statements"].as_u64().unwrap_or(0) > 100, "{result}");
    }
    assert!(
        during["tollgate_recording_spool_bytes"] > 0,
        "the spool grew while the broker was down: {during:?}"
    );
    assert_eq!(during["tollgate_recording_broker_up"], 0, "{during:?}");
    gateway.stop();

    let records = consume_events(
        &broker.bootstrap(),
        TOPIC,
        &recording_schema(),
        Until::sessions_ended(8)
            .timeout(Duration::from_mins(3))
            .linger(Duration::from_secs(1)),
    )
    .expect("consume");
    let (events, duplicates) = dedupe(&records);
    eprintln!(
        "{} events, {duplicates} duplicates dropped by id",
        events.len()
    );
    let sessions = by_session(&events);
    assert_eq!(sessions.len(), 8);
    let mut counted: Vec<u64> = Vec::new();
    for (id, events) in &sessions {
        assert_in_order(id, events);
        assert!(
            events.iter().all(|e| e["type"] != "gap"),
            "no gap: the spool never filled"
        );
        let selects = events
            .iter()
            .filter(|e| e["sql"].as_str().is_some_and(|s| s.starts_with("SELECT ")))
            .count();
        counted.push(selects as u64);
    }
    let mut sent: Vec<u64> = results
        .iter()
        .map(|r| r["statements"].as_u64().unwrap_or(0))
        .collect();
    counted.sort_unstable();
    sent.sort_unstable();
    assert_eq!(counted, sent, "every statement's event arrived");
}

#[test]
fn a_sigkilled_gateway_delivers_its_spool_after_a_restart() {
    let BrokerAway {
        upstream,
        mut broker,
        port,
        mut gateway,
        ..
    } = broker_away("", "");
    // A session that is still open when the gateway dies.
    let mut client = pymysql_client(
        r"
import sys, time, pymysql
conn = pymysql.connect(host='127.0.0.1', port=int(sys.argv[1]), user=sys.argv[2],
    password=sys.argv[3], ssl_ca=sys.argv[4], ssl_verify_cert=True)
cur = conn.cursor()
for i in range(1, 21):
    cur.execute(f'SELECT {i}')
    assert cur.fetchone() == (i,)
print('done', flush=True)
time.sleep(60)
",
        port,
        &upstream,
    );
    let mut line = [0u8; 5];
    client
        .stdout
        .as_mut()
        .expect("stdout")
        .read_exact(&mut line)
        .expect("the client ran its statements");
    std::thread::sleep(Duration::from_millis(500));
    gateway.kill();
    let _ = client.kill();
    let _ = client.wait();

    bring_back(&mut broker);
    gateway
        .restart(&[(DB_PASSWORD_ENV, upstream.password())])
        .expect("restart the gateway");
    let records = consume_events(
        &broker.bootstrap(),
        TOPIC,
        &recording_schema(),
        Until::events(22)
            .timeout(Duration::from_mins(1))
            .linger(Duration::from_secs(1)),
    )
    .expect("the spooled events arrive");
    let (events, _) = dedupe(&records);
    let sessions = by_session(&events);
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let (id, events) = sessions.iter().next().expect("the session");
    assert_in_order(id, events);
    let selects: Vec<&str> = events
        .iter()
        .filter_map(|e| e["sql"].as_str())
        .filter(|s| s.starts_with("SELECT "))
        .collect();
    let expected: Vec<String> = (1..=20).map(|i| format!("SELECT {i}")).collect();
    assert_eq!(selects, expected);
    gateway.stop();
}

/// A broker that has the topic but is away, and a gateway (with more `[recording.kafka]` and
/// `[[targets]]` lines) shipping to it.
struct BrokerAway {
    upstream: Upstream,
    broker: KafkaBroker,
    port: u16,
    metrics_port: u16,
    gateway: Gateway,
}

fn broker_away(kafka: &str, target: &str) -> BrokerAway {
    let upstream = Upstream::mariadb().expect("mariadb");
    let mut broker = KafkaBroker::start().expect("broker");
    broker.create_topic(TOPIC, 2).expect("topic");
    broker.stop();
    let (port, metrics_port) = (free_port(), free_port());
    let config = kafka_config(port, &upstream, broker.port, metrics_port, kafka, target);
    let gateway = start_gateway(&upstream, &config);
    BrokerAway {
        upstream,
        broker,
        port,
        metrics_port,
        gateway,
    }
}

/// Restarts the broker; the memory-only one forgot the topic, which is made again (unless a
/// producer made it already).
fn bring_back(broker: &mut KafkaBroker) {
    broker.restart().expect("restart the broker");
    if !broker.is_durable() {
        let _ = broker.create_topic(TOPIC, 2);
    }
}

/// Near the spool's limit it may fill, drain a little and fill again: one `gap` event per run
/// of lost events. Each must count the statements in its `seq` range, and exactly the
/// statements the gaps name are missing.
fn assert_gaps_name_what_is_missing(events: &[Value]) {
    let gaps: Vec<&Value> = events.iter().filter(|e| e["type"] == "gap").collect();
    assert!(!gaps.is_empty(), "a gap event");
    let recorded: HashSet<u64> = events
        .iter()
        .filter(|e| e["type"] == "statement")
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    let mut in_gaps = Vec::new();
    for gap in &gaps {
        assert_eq!(gap["reason"], "spool_full", "{gap}");
        let (first, last) = (
            gap["first_seq"].as_u64().expect("first_seq"),
            gap["last_seq"].as_u64().expect("last_seq"),
        );
        assert_eq!(
            gap["lost_statements"].as_u64(),
            Some(last - first + 1),
            "{gap}"
        );
        in_gaps.extend(first..=last);
    }
    let last = recorded.iter().max().copied().unwrap_or(0);
    let missing: Vec<u64> = (1..=last).filter(|s| !recorded.contains(s)).collect();
    assert_eq!(missing, in_gaps);
}

/// The fail-closed test's client: statements until one is refused (reported), then, told to
/// go on, one statement retried until it runs again (reported).
const FAIL_CLOSED_CLIENT: &str = r"
import sys, time, json, pymysql
conn = pymysql.connect(host='127.0.0.1', port=int(sys.argv[1]), user=sys.argv[2],
    password=sys.argv[3], ssl_ca=sys.argv[4], ssl_verify_cert=True)
cur = conn.cursor()
refused = None
for i in range(1, 2000):
    try:
        cur.execute(f'SELECT {i}, REPEAT(\'x\', 200)')
        cur.fetchall()
    except pymysql.MySQLError as e:
        refused = [e.args[0], e.args[1], i]
        break
print(json.dumps({'refused': refused}), flush=True)
sys.stdin.readline()
# The spool drains once the broker is back: statements run again.
deadline = time.monotonic() + 60
while True:
    try:
        cur.execute('SELECT 424242')
        print(json.dumps({'recovered': cur.fetchone()[0]}), flush=True)
        break
    except pymysql.MySQLError as e:
        if time.monotonic() > deadline:
            print(json.dumps({'recovered': None, 'error': str(e)}), flush=True)
            break
        time.sleep(0.2)
conn.close()
";

#[test]
fn a_fail_closed_target_refuses_statements_while_the_spool_is_full_and_recovers() {
    let BrokerAway {
        upstream,
        mut broker,
        port,
        metrics_port,
        mut gateway,
    } = broker_away("spool_max_bytes = 20000", "compliance = true");
    let mut client = pymysql_client(FAIL_CLOSED_CLIENT, port, &upstream);
    let mut stdout = std::io::BufReader::new(client.stdout.take().expect("stdout"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).expect("first report");
    let first: Value = serde_json::from_str(&line).expect("json");
    let refused = &first["refused"];
    assert_eq!(refused[0], 1290, "a clear MySQL error: {first}");
    assert!(
        refused[1]
            .as_str()
            .unwrap_or_default()
            .contains("spool is full"),
        "{first}"
    );
    let m = metrics(metrics_port);
    assert!(
        m["tollgate_recording_refused_statements_total"] >= 1,
        "{m:?}"
    );
    assert!(m["tollgate_recording_spool_bytes"] >= 20000, "{m:?}");

    broker.restart().expect("broker back");
    if !broker.is_durable() {
        // The memory-only broker forgot the topic (a producer may have made it already).
        let _ = broker.create_topic(TOPIC, 2);
    }
    client
        .stdin
        .as_mut()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("tell the client");
    line.clear();
    std::io::BufRead::read_line(&mut stdout, &mut line).expect("second report");
    let second: Value = serde_json::from_str(&line).expect("json");
    assert_eq!(second["recovered"], 424_242, "{second}");
    let _ = client.wait();

    let records = consume_events(
        &broker.bootstrap(),
        TOPIC,
        &recording_schema(),
        Until::sessions_ended(1).timeout(Duration::from_mins(1)),
    )
    .expect("consume");
    let (events, _) = dedupe(&records);
    let statements: Vec<&Value> = events.iter().filter(|e| e["type"] == "statement").collect();
    // Nothing ran unrecorded: every statement that ran is there, and so is every refusal.
    let ran = refused[2].as_u64().expect("i") - 1;
    let selects = statements
        .iter()
        .filter(|e| e["sql"].as_str().is_some_and(|s| s.contains("REPEAT")))
        .count() as u64;
    assert!(selects > ran, "{selects} recorded, {ran} ran");
    assert!(
        statements.iter().any(|e| e["error"]["code"] == 1290),
        "the refusals are recorded"
    );
    assert!(
        events.iter().all(|e| e["type"] != "gap"),
        "fail-closed loses nothing"
    );
    gateway.stop();
}

#[test]
fn a_fail_open_target_goes_on_when_the_spool_is_full_and_records_a_gap_saying_what_was_lost() {
    let BrokerAway {
        upstream,
        mut broker,
        port,
        metrics_port,
        mut gateway,
    } = broker_away("spool_max_bytes = 20000", "");
    // 200 statements while the broker is away: the spool fills after a few dozen, the client
    // sees no error.
    let script = r"
import sys, json, pymysql
conn = pymysql.connect(host='127.0.0.1', port=int(sys.argv[1]), user=sys.argv[2],
    password=sys.argv[3], ssl_ca=sys.argv[4], ssl_verify_cert=True)
cur = conn.cursor()
for i in range(1, 201):
    cur.execute(f'SELECT {i}, REPEAT(\'x\', 200)')
    assert cur.fetchone()[0] == i
sys.stdin.readline()
cur.execute('SELECT 424242')
conn.close()
print('ok', flush=True)
";
    let mut client = pymysql_client(script, port, &upstream);
    let deadline = Instant::now() + Duration::from_mins(1);
    while metrics(metrics_port)["tollgate_recording_lost_events_total"] < 1 {
        if let Ok(Some(status)) = client.try_wait() {
            let mut stderr = String::new();
            let _ = client
                .stderr
                .take()
                .expect("stderr")
                .read_to_string(&mut stderr);
            panic!("the client ended ({status}) before the spool filled: {stderr}");
        }
        assert!(Instant::now() < deadline, "the spool never filled");
        std::thread::sleep(Duration::from_millis(100));
    }
    bring_back(&mut broker);
    // Wait until the spool drained, then end the session: its next event is the gap.
    let deadline = Instant::now() + Duration::from_mins(1);
    while metrics(metrics_port)["tollgate_recording_spool_bytes"] > 0 {
        assert!(Instant::now() < deadline, "the spool never drained");
        std::thread::sleep(Duration::from_millis(100));
    }
    client
        .stdin
        .as_mut()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("tell the client");
    let output = client.wait_with_output().expect("client");
    assert!(
        output.status.success(),
        "no error for the client: {output:?}"
    );

    let records = consume_events(
        &broker.bootstrap(),
        TOPIC,
        &recording_schema(),
        Until::sessions_ended(1).timeout(Duration::from_mins(1)),
    )
    .expect("consume");
    let (events, _) = dedupe(&records);
    assert_gaps_name_what_is_missing(&events);
    assert!(
        events
            .iter()
            .any(|e| e["sql"].as_str() == Some("SELECT 424242")),
        "recording resumed after the gap"
    );
    gateway.stop();
}

#[test]
fn replicas_share_one_topic_and_each_session_stays_whole_and_ordered() {
    let upstream = Upstream::mariadb().expect("mariadb");
    let broker = KafkaBroker::start().expect("broker");
    broker.create_topic(TOPIC, 3).expect("topic");
    let replicas: Vec<(u16, Gateway)> = (0..2)
        .map(|_| {
            let (port, metrics_port) = (free_port(), free_port());
            let config = kafka_config(port, &upstream, broker.port, metrics_port, "", "");
            (port, start_gateway(&upstream, &config))
        })
        .collect();
    for round in 0..2 {
        for (port, _) in &replicas {
            session(*port, &upstream, &format!("SELECT {round}; SELECT {port}"));
        }
    }
    let records = consume_events(
        &broker.bootstrap(),
        TOPIC,
        &recording_schema(),
        Until::sessions_ended(4).timeout(Duration::from_mins(1)),
    )
    .expect("consume");
    let (events, duplicates) = dedupe(&records);
    assert_eq!(duplicates, 0);
    let sessions = by_session(&events);
    assert_eq!(sessions.len(), 4);
    let mut instances = HashSet::new();
    for (id, events) in &sessions {
        assert_in_order(id, events);
        instances.insert(events[0]["gateway"].as_str().expect("gateway").to_owned());
    }
    assert_eq!(instances.len(), 2, "both replicas' sessions: {instances:?}");
}
