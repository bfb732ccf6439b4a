//! The Kafka side of the test harness, end to end without the gateway: a real tansu broker,
//! topics with an explicit partition count, JSON messages keyed by session id from a Python
//! producer, read back by the independent consumer (`tests/kafka/consume.py`) with schema and
//! key checks, and broker stops, crashes and restarts on the same port. With the durable
//! tansu build the messages must survive the restarts. Runs without root.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::{Value, json};
use tollgate_tests::{KafkaBroker, Until, consume_events};

const FIRST: &str = "0190a000-0000-7000-8000-000000000001";
const SECOND: &str = "0190a000-0000-7000-8000-000000000002";
const THIRD: &str = "0190a000-0000-7000-8000-000000000003";
const TOPIC: &str = "recordings";

/// A small stand-in for the recording schema, written into `dir`: what the harness needs.
fn write_schema(dir: &Path) -> PathBuf {
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["session_id", "type", "n"],
        "properties": {
            "session_id": {"type": "string", "format": "uuid"},
            "type": {"enum": ["statement", "session.ended"]},
            "n": {"type": "integer", "minimum": 1}
        },
        "additionalProperties": false
    });
    let path = dir.join("test.schema.json");
    std::fs::write(&path, schema.to_string()).expect("write the test schema");
    path
}

/// A broker with [`TOPIC`] (3 partitions) and the test schema in a scratch directory.
fn broker_with_topic() -> (KafkaBroker, PathBuf, tempfile::TempDir) {
    let scratch = tempfile::tempdir().expect("tempdir");
    let schema = write_schema(scratch.path());
    let broker = KafkaBroker::start().expect("start tansu");
    println!(
        "tansu {} ({}) on {}",
        broker.binary().display(),
        if broker.is_durable() {
            "durable"
        } else {
            "memory only"
        },
        broker.bootstrap()
    );
    broker.create_topic(TOPIC, 3).expect("create the topic");
    (broker, schema, scratch)
}

/// `count` events of one fake session, the last one `session.ended`.
fn session(session_id: &str, count: u64) -> Vec<String> {
    (1..=count)
        .map(|n| {
            let kind = if n == count {
                "session.ended"
            } else {
                "statement"
            };
            json!({"session_id": session_id, "type": kind, "n": n}).to_string()
        })
        .collect()
}

/// Produces `values` keyed by `key`; where each went.
fn produce(broker: &KafkaBroker, topic: &str, key: &str, values: &[String]) -> Vec<(i32, i64)> {
    let messages: Vec<(&str, &str)> = values.iter().map(|v| (key, v.as_str())).collect();
    broker.produce(topic, &messages).expect("produce")
}

/// The `n` of every consumed event of `session_id`, in the order read.
fn numbers(records: &[Value], session_id: &str) -> Vec<u64> {
    records
        .iter()
        .filter(|r| r["key"] == session_id)
        .map(|r| r["event"]["n"].as_u64().expect("n"))
        .collect()
}

#[test]
fn topic_produce_consume() {
    let (broker, schema, _scratch) = broker_with_topic();
    assert_eq!(broker.partitions(TOPIC).expect("partitions"), 3);
    // Asking about a missing topic does not create it (tansu would, with 4 partitions).
    assert_eq!(broker.partitions("absent").expect("partitions"), 0);
    assert_eq!(broker.partitions("absent").expect("partitions"), 0);

    let delivered = produce(&broker, TOPIC, FIRST, &session(FIRST, 3));
    produce(&broker, TOPIC, SECOND, &session(SECOND, 2));
    // One key, one partition: a session's events stay in order.
    assert!(
        delivered.iter().all(|(p, _)| *p == delivered[0].0),
        "one session over several partitions: {delivered:?}"
    );

    let records = consume_events(
        &broker.bootstrap(),
        TOPIC,
        &schema,
        Until::sessions_ended(2),
    )
    .expect("consume both sessions");
    assert_eq!(records.len(), 5, "{records:#?}");
    assert_eq!(numbers(&records, FIRST), [1, 2, 3]);
    assert_eq!(numbers(&records, SECOND), [1, 2]);
    for record in &records {
        assert_eq!(record["key"], record["event"]["session_id"]);
        assert!(
            record["partition"]
                .as_i64()
                .is_some_and(|p| (0..3).contains(&p))
        );
    }
    // Lingering past the goal finds nothing more: no duplicates.
    let again = consume_events(
        &broker.bootstrap(),
        TOPIC,
        &schema,
        Until::events(5).linger(Duration::from_millis(500)),
    )
    .expect("consume again");
    assert_eq!(again.len(), 5, "{again:#?}");
}

#[test]
fn consumer_refuses_bad_messages_and_times_out() {
    let (broker, schema, _scratch) = broker_with_topic();
    // A key that is not the event's session id.
    broker.create_topic("bad-key", 1).expect("create bad-key");
    produce(&broker, "bad-key", "not-the-session", &session(FIRST, 1));
    let error = consume_events(&broker.bootstrap(), "bad-key", &schema, Until::events(1))
        .expect_err("a wrong key is refused");
    assert!(
        format!("{error:#}").contains("is not the event's session_id"),
        "{error:#}"
    );
    // A schema violation.
    broker
        .create_topic("bad-event", 1)
        .expect("create bad-event");
    let invalid = json!({"session_id": FIRST, "type": "statement", "n": 0}).to_string();
    produce(&broker, "bad-event", FIRST, &[invalid]);
    let error = consume_events(&broker.bootstrap(), "bad-event", &schema, Until::events(1))
        .expect_err("a schema violation is refused");
    assert!(
        format!("{error:#}").contains("schema violation"),
        "{error:#}"
    );
    // A goal that is not met.
    produce(&broker, TOPIC, FIRST, &session(FIRST, 2));
    let error = consume_events(
        &broker.bootstrap(),
        TOPIC,
        &schema,
        Until::events(3).timeout(Duration::from_secs(2)),
    )
    .expect_err("only two events");
    assert!(format!("{error:#}").contains("timeout"), "{error:#}");
}

#[test]
fn stop_kill_and_restart_on_the_same_port() {
    let (mut broker, schema, _scratch) = broker_with_topic();
    let port = broker.port;
    produce(&broker, TOPIC, FIRST, &session(FIRST, 3));
    produce(&broker, TOPIC, SECOND, &session(SECOND, 2));

    // Stop (SIGTERM) and start again.
    broker.stop().expect("the broker was running");
    assert!(!broker.is_running());
    broker.restart().expect("restart");
    assert!(broker.is_running());
    assert_eq!(broker.port, port);
    if broker.is_durable() {
        assert_eq!(broker.partitions(TOPIC).expect("partitions"), 3);
        let records = consume_events(
            &broker.bootstrap(),
            TOPIC,
            &schema,
            Until::sessions_ended(2),
        )
        .expect("the messages survive a restart");
        assert_eq!(numbers(&records, FIRST), [1, 2, 3]);
        assert_eq!(numbers(&records, SECOND), [1, 2]);
    } else {
        println!("memory-only tansu: the topic is gone after the restart, as expected");
        assert_eq!(broker.partitions(TOPIC).expect("partitions"), 0);
    }

    // After a crash (SIGKILL) and a restart, the broker takes and serves messages again.
    broker.kill();
    assert!(!broker.is_running());
    broker.restart().expect("restart after kill");
    if !broker.is_durable() {
        broker
            .create_topic(TOPIC, 3)
            .expect("create the topic again");
    }
    produce(&broker, TOPIC, THIRD, &session(THIRD, 2));
    let sessions = if broker.is_durable() { 3 } else { 1 };
    let records = consume_events(
        &broker.bootstrap(),
        TOPIC,
        &schema,
        Until::sessions_ended(sessions).linger(Duration::from_millis(300)),
    )
    .expect("consume after the crash");
    assert_eq!(numbers(&records, THIRD), [1, 2]);
    if broker.is_durable() {
        assert_eq!(numbers(&records, FIRST), [1, 2, 3]);
        assert_eq!(numbers(&records, SECOND), [1, 2]);
    }
    assert_eq!(records.len(), if broker.is_durable() { 7 } else { 2 });
    assert!(
        broker.log_text().contains("tansu"),
        "{}",
        broker.log_path().display()
    );
}
