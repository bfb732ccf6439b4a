//! `tollgate sessions --kafka` and `tollgate index` against a real broker (tansu) fed by a real
//! gateway in front of a real MariaDB: the topic answers every filter exactly like the store; a
//! time range reads only the offsets of that range (`--stats`); `show`, `export` and `replay`
//! read one session from the topic; `tollgate index --once` builds an index that answers like
//! the store (full text included), picks up where it left off, warns when behind; two
//! indexers of one group split the partitions; bad input gives one-line errors. No root.
#![expect(
    clippy::disallowed_types,
    reason = "synchronous test code: std::time::Instant is the right clock here"
)]

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use tollgate_tests::{
    DB_PASSWORD_ENV, GATEWAY_PASSWORD, GATEWAY_USER, Gateway, KafkaBroker, Until, Upstream,
    consume_events, free_port, mariadb_script, recording_schema, run_capture, terminated_config,
    tollgate_bin,
};

const TOPIC: &str = "tollgate.search";
const PARTITIONS: u32 = 3;

/// Runs `tollgate ARGS` with standard input closed.
fn tollgate(args: &[&str]) -> Output {
    run_capture(Command::new(tollgate_bin()).args(args).stdin(Stdio::null())).expect("run tollgate")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The session ids a `sessions list` table prints.
fn ids_of(output: &Output) -> BTreeSet<String> {
    assert!(output.status.success(), "{output:?}");
    stdout(output)
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// `sessions list FILTERS` over the store, the topic and (when given) the index must all print
/// `expected`.
struct Sources<'a> {
    store: &'a Path,
    brokers: &'a str,
    index: Option<&'a Path>,
}

impl Sources<'_> {
    fn list(&self, filters: &[&str], expected: &BTreeSet<String>) {
        let with = |source: &[&str]| {
            let mut args = vec!["sessions", "list"];
            args.extend_from_slice(source);
            args.extend_from_slice(filters);
            ids_of(&tollgate(&args))
        };
        let store = self.store.to_string_lossy();
        assert_eq!(&with(&["--store", &store]), expected, "store {filters:?}");
        assert_eq!(
            &with(&["--brokers", self.brokers, "--topic", TOPIC]),
            expected,
            "kafka {filters:?}"
        );
        if let Some(index) = self.index {
            assert_eq!(
                &with(&["--index", &index.to_string_lossy()]),
                expected,
                "index {filters:?}"
            );
        }
    }
}

/// Runs `sql` as one session through the gateway with the mariadb CLI, as alice.
fn session(port: u16, upstream: &Upstream, sql: &str) {
    let output = run_capture(
        Command::new("mariadb")
            .arg("--no-defaults")
            .args(["-h", "127.0.0.1", "-P", &port.to_string()])
            .args(["-u", GATEWAY_USER, &format!("-p{GATEWAY_PASSWORD}")])
            .arg(format!("--ssl-ca={}", upstream.ca().display()))
            .args(["--ssl-verify-server-cert", "--batch", "-e", sql]),
    )
    .expect("run mariadb");
    assert!(
        !stderr(&output).contains("Access denied"),
        "login: {output:?}"
    );
}

/// The id of the session with a statement whose SQL is `sql`, in consumed records.
fn session_of(records: &[Value], sql: &str) -> String {
    records
        .iter()
        .map(|r| &r["event"])
        .find(|e| e["type"] == "statement" && e["sql"] == sql)
        .and_then(|e| e["session_id"].as_str())
        .unwrap_or_else(|| panic!("no statement {sql:?} in the topic"))
        .to_owned()
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).clone()).collect()
}

/// `--stats` lines: partition -> (messages read, start, end).
fn stats(output: &Output) -> BTreeMap<i64, (u64, i64, i64)> {
    let text = stderr(output);
    let mut stats = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.contains(" message(s) read, offsets "))
    {
        // tollgate: kafka T: partition P: N message(s) read, offsets A..B (partition holds L..H)
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = |w: &str| words.iter().position(|x| *x == w).expect("word");
        let partition: i64 = words[at("partition") + 1]
            .trim_end_matches(':')
            .parse()
            .expect("partition");
        let messages: u64 = words[at("message(s)") - 1].parse().expect("messages");
        let (a, b) = words[at("offsets") + 1]
            .trim_end_matches(',')
            .split_once("..")
            .expect("range");
        stats.insert(
            partition,
            (messages, a.parse().expect("start"), b.parse().expect("end")),
        );
    }
    assert_eq!(
        stats.len(),
        PARTITIONS as usize,
        "stats of every partition: {text}"
    );
    stats
}

/// Per partition, the offsets of consumed `records` for which `keep` holds.
fn offsets(records: &[Value], keep: impl Fn(&Value) -> bool) -> BTreeMap<i64, Vec<i64>> {
    let mut offsets: BTreeMap<i64, Vec<i64>> = (0..i64::from(PARTITIONS))
        .map(|p| (p, Vec::new()))
        .collect();
    for record in records.iter().filter(|r| keep(r)) {
        offsets
            .entry(record["partition"].as_i64().expect("partition"))
            .or_default()
            .push(record["offset"].as_i64().expect("offset"));
    }
    offsets
}

/// Now, to the second, in RFC 3339 (UTC).
fn now_rfc3339() -> String {
    let output =
        run_capture(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])).expect("date");
    stdout(&output).trim().to_owned()
}

/// A random UUID from the kernel.
fn uuid() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .expect("uuid")
        .trim()
        .to_owned()
}

/// Asserts a one-line error that contains `needle`.
fn one_line_error(output: &Output, needle: &str) {
    assert!(!output.status.success(), "{output:?}");
    let text = stderr(output);
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    assert!(text.contains(needle), "{needle:?} not in: {text}");
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one recorded topic, every command checked against it"
)]
fn the_topic_and_the_index_answer_like_the_store() {
    let upstream = Upstream::mariadb().expect("start MariaDB");
    let (setup_out, setup_err) = mariadb_script(
        upstream.port(),
        upstream.user(),
        upstream.password(),
        &[],
        "CREATE DATABASE shop;\n\
         CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(20));\n\
         INSERT INTO shop.items VALUES (1, 'apple'), (2, 'pear');\n",
    );
    assert!(setup_err.is_empty(), "setup: {setup_out} {setup_err}");
    let broker = KafkaBroker::start().expect("broker");
    broker.create_topic(TOPIC, PARTITIONS).expect("topic");
    let brokers = broker.bootstrap();

    let port = free_port();
    let config = terminated_config(port, "db", &upstream).replace(
        "[[targets]]",
        "groups = [\"devs\", \"oncall\"]\n\n[[targets]]",
    ) + &format!(
        "\n[recording.kafka]\nbrokers = \"{brokers}\"\ntopic = \"{TOPIC}\"\nkeep_shipped = true\n"
    );
    let mut gateway =
        Gateway::start_with_env(None, &config, &[(DB_PASSWORD_ENV, upstream.password())])
            .expect("start the gateway");

    // Two batches of sessions, a few seconds apart.
    session(
        port,
        &upstream,
        "SELECT id, name FROM shop.items ORDER BY id; DELETE FROM shop.items WHERE id = 2",
    );
    session(
        port,
        &upstream,
        "CREATE TABLE shop.audit (id INT); SELECT * FROM shop.missing",
    );
    session(port, &upstream, "SELECT 'Needle' AS word");
    let first = consume_events(
        &brokers,
        TOPIC,
        &recording_schema(),
        Until::sessions_ended(3),
    )
    .expect("first batch in the topic");
    std::thread::sleep(Duration::from_secs(3));
    let mid = now_rfc3339();
    std::thread::sleep(Duration::from_secs(3));
    session(
        port,
        &upstream,
        "UPDATE shop.items SET name = 'quince' WHERE id = 1",
    );
    session(port, &upstream, "SELECT 'later haystack' AS word");
    let records = consume_events(
        &brokers,
        TOPIC,
        &recording_schema(),
        Until::sessions_ended(5),
    )
    .expect("both batches in the topic");

    let deleting = session_of(&records, "DELETE FROM shop.items WHERE id = 2");
    let creating = session_of(&records, "CREATE TABLE shop.audit (id INT)");
    let reading = session_of(&records, "SELECT 'Needle' AS word");
    let updating = session_of(
        &records,
        "UPDATE shop.items SET name = 'quince' WHERE id = 1",
    );
    let later = session_of(&records, "SELECT 'later haystack' AS word");
    let early = set(&[&deleting, &creating, &reading]);
    let late = set(&[&updating, &later]);
    let all = set(&[&deleting, &creating, &reading, &updating, &later]);
    assert_eq!(all.len(), 5);
    let first_ids: BTreeSet<String> = first
        .iter()
        .filter_map(|r| r["event"]["session_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        first_ids, early,
        "the first batch was in the topic before the second"
    );

    // Filters over the topic return exactly what they return over the store.
    let store = gateway.store.clone();
    let mut sources = Sources {
        store: &store,
        brokers: &brokers,
        index: None,
    };
    let filters: Vec<(Vec<&str>, BTreeSet<String>)> = vec![
        (vec![], all.clone()),
        (vec!["--user", GATEWAY_USER], all.clone()),
        (vec!["--user", "bob"], set(&[])),
        (vec!["--group", "devs"], all.clone()),
        (vec!["--group", "admins"], set(&[])),
        (vec!["--target", "db"], all.clone()),
        (vec!["--target", "other"], set(&[])),
        (vec!["--kind", "delete"], set(&[&deleting])),
        (vec!["--kind", "ddl"], set(&[&creating])),
        (vec!["--kind", "error"], set(&[&creating])),
        (vec!["--kind", "update"], set(&[&updating])),
        (vec!["--contains", "NEEDLE"], set(&[&reading])),
        (
            vec!["--contains", "shop.items"],
            set(&[&deleting, &updating]),
        ),
        (
            vec!["--contains", "shop.items", "--kind", "delete"],
            set(&[&deleting]),
        ),
        (vec!["--since", &mid], late.clone()),
        (vec!["--until", &mid], early.clone()),
        (
            vec!["--since", &mid, "--contains", "haystack"],
            set(&[&later]),
        ),
        (vec!["--since", "1h"], all.clone()),
        (vec!["--since", "2099-01-01T00:00:00Z"], set(&[])),
    ];
    for (filter, expected) in &filters {
        sources.list(filter, expected);
    }

    // A time range reads only its offsets: `--since` between the batches reads exactly the
    // second batch's messages, `--until` exactly the first's.
    let is_late = |r: &Value| late.contains(r["event"]["session_id"].as_str().unwrap_or(""));
    let late_offsets = offsets(&records, is_late);
    let early_offsets = offsets(&records, |r| !is_late(r));
    let since = tollgate(&[
        "sessions",
        "list",
        "--brokers",
        &brokers,
        "--topic",
        TOPIC,
        "--since",
        &mid,
        "--stats",
    ]);
    assert_eq!(ids_of(&since), late);
    for (partition, (messages, start, end)) in stats(&since) {
        let wanted = &late_offsets[&partition];
        assert_eq!(
            messages,
            wanted.len() as u64,
            "partition {partition}: {since:?}"
        );
        if let (Some(first), Some(last)) = (wanted.first(), wanted.last()) {
            assert_eq!((start, end), (*first, last + 1), "partition {partition}");
        } else {
            assert_eq!(start, end, "partition {partition}: nothing to read");
        }
    }
    let until = tollgate(&[
        "sessions",
        "list",
        "--brokers",
        &brokers,
        "--topic",
        TOPIC,
        "--until",
        &mid,
        "--stats",
    ]);
    assert_eq!(ids_of(&until), early);
    for (partition, (messages, start, _)) in stats(&until) {
        assert_eq!(
            messages,
            early_offsets[&partition].len() as u64,
            "partition {partition}: {until:?}"
        );
        assert_eq!(start, 0);
    }
    // Past the last message (tansu answers offset 0 there): nothing is read.
    let future = tollgate(&[
        "sessions",
        "list",
        "--brokers",
        &brokers,
        "--topic",
        TOPIC,
        "--since",
        "2099-01-01T00:00:00Z",
        "--stats",
    ]);
    assert!(
        stats(&future)
            .values()
            .all(|(messages, _, _)| *messages == 0),
        "{future:?}"
    );

    // show, export and replay read one session from the topic, as from the store.
    let store_arg = store.to_string_lossy().into_owned();
    for command in [
        vec!["show", &deleting],
        vec!["show", &deleting, "--json"],
        vec!["export", &deleting],
        vec!["export", &deleting, "--format", "sql"],
        vec!["replay", &deleting, "--speed", "0"],
    ] {
        let mut from_store = vec!["sessions"];
        from_store.extend_from_slice(&command);
        let mut from_kafka = from_store.clone();
        from_store.extend_from_slice(&["--store", &store_arg]);
        from_kafka.extend_from_slice(&["--brokers", &brokers, "--topic", TOPIC]);
        let (a, b) = (tollgate(&from_store), tollgate(&from_kafka));
        assert!(a.status.success() && b.status.success(), "{a:?} {b:?}");
        assert_eq!(stdout(&a), stdout(&b), "{command:?}");
        assert!(
            stdout(&b).contains("DELETE FROM shop.items WHERE id = 2"),
            "{command:?}: {}",
            stdout(&b)
        );
    }
    // Within a range: the later session is found from its messages only; the earlier is not.
    let ranged = tollgate(&[
        "sessions",
        "show",
        &later,
        "--brokers",
        &brokers,
        "--topic",
        TOPIC,
        "--since",
        &mid,
    ]);
    assert!(stdout(&ranged).contains("later haystack"), "{ranged:?}");
    one_line_error(
        &tollgate(&[
            "sessions",
            "show",
            &deleting,
            "--brokers",
            &brokers,
            "--topic",
            TOPIC,
            "--since",
            &mid,
        ]),
        "no recorded session matches",
    );

    // Bad input: one line each, saying what to do.
    one_line_error(
        &tollgate(&[
            "sessions",
            "show",
            "ffffffff",
            "--brokers",
            &brokers,
            "--topic",
            TOPIC,
        ]),
        "no recorded session matches",
    );
    one_line_error(
        &tollgate(&[
            "sessions",
            "list",
            "--brokers",
            &brokers,
            "--topic",
            TOPIC,
            "--since",
            "yesterday",
        ]),
        "is not a time",
    );
    one_line_error(
        &tollgate(&[
            "sessions",
            "list",
            "--brokers",
            &brokers,
            "--topic",
            "no.such.topic",
        ]),
        "does not exist",
    );
    let dead = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    one_line_error(
        &tollgate(&["sessions", "list", "--brokers", &dead, "--topic", TOPIC]),
        "cannot reach a Kafka broker",
    );
    assert!(started.elapsed() < Duration::from_secs(30), "bounded wait");
    one_line_error(
        &tollgate(&[
            "sessions", "show", "x", "--store", &store_arg, "--since", "1h",
        ]),
        "add --kafka",
    );

    // The index: built once, answers like the store, full text included.
    let dir = tempfile::tempdir().expect("dir");
    let index = dir.path().join("index.sqlite");
    let index_arg = index.to_string_lossy().into_owned();
    let index_once = |group: &str| {
        let output = tollgate(&[
            "index",
            "--once",
            "--brokers",
            &brokers,
            "--topic",
            TOPIC,
            "--index",
            &index_arg,
            "--group",
            group,
        ]);
        assert!(output.status.success(), "{output:?}");
        stderr(&output)
    };
    one_line_error(
        &tollgate(&["sessions", "list", "--index", &index_arg]),
        "tollgate index",
    );
    let log = index_once("search-1");
    assert!(log.contains("5 session(s)"), "{log}");
    sources.index = Some(&index);
    for (filter, expected) in &filters {
        sources.list(filter, expected);
    }
    let listed = tollgate(&["sessions", "list", "--index", &index_arg]);
    assert!(
        stderr(&listed).is_empty(),
        "no warning when up to date: {listed:?}"
    );

    // A session recorded later: the next run indexes only the new messages.
    session(port, &upstream, "SELECT 'third batch' AS word");
    let records = consume_events(
        &brokers,
        TOPIC,
        &recording_schema(),
        Until::sessions_ended(6),
    )
    .expect("third batch in the topic");
    let third = session_of(&records, "SELECT 'third batch' AS word");
    let new_messages = records
        .iter()
        .filter(|r| r["event"]["session_id"] == third.as_str())
        .count();
    let log = index_once("search-1");
    let indexed: usize = log
        .lines()
        .filter_map(|l| l.split(": ").nth(3))
        .filter_map(|l| l.strip_suffix(" message(s) indexed"))
        .map(|n| n.parse::<usize>().expect("count"))
        .sum();
    assert_eq!(indexed, new_messages, "{log}");
    sources.list(&["--contains", "third batch"], &set(&[&third]));

    // Behind the topic: a warning saying how far and what to do.
    let output = run_capture(Command::new("python3").args([
        "-c",
        "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); \
         c.execute('UPDATE meta SET next_offset = next_offset - 2 WHERE next_offset >= 2'); c.commit()",
        &index_arg,
    ]))
    .expect("python3");
    assert!(output.status.success(), "{output:?}");
    let behind = tollgate(&["sessions", "list", "--index", &index_arg]);
    let warning = stderr(&behind);
    assert!(
        warning.lines().count() == 1
            && warning.contains("message(s) behind the topic")
            && warning.contains("tollgate index"),
        "{warning}"
    );
    gateway.stop();
}

#[test]
fn two_indexers_of_one_group_split_the_partitions() {
    let broker = KafkaBroker::start().expect("broker");
    broker.create_topic(TOPIC, PARTITIONS).expect("topic");
    let brokers = broker.bootstrap();
    // Sessions with known ids spread over the partitions (keys are session ids).
    let mut messages = Vec::new();
    let ids: Vec<String> = (0..12).map(|_| uuid()).collect();
    for id in &ids {
        let started = serde_json::json!({
            "v": 2, "id": uuid(), "session_id": id, "time": now_rfc3339(),
            "type": "session.started", "gateway": "test/1", "client_addr": "127.0.0.1:5000",
            "process": null, "target": "db", "original_destination": null,
            "upstream": "127.0.0.1:3306", "upstream_local_addr": null,
        });
        messages.push((id.clone(), started.to_string()));
    }
    let refs: Vec<(&str, &str)> = messages
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let delivered = broker.produce(TOPIC, &refs).expect("produce");
    let used: BTreeSet<i32> = delivered.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        used.len(),
        PARTITIONS as usize,
        "the keys spread over every partition"
    );

    let dir = tempfile::tempdir().expect("dir");
    let index = dir.path().join("index.sqlite");
    let index_arg = index.to_string_lossy().into_owned();
    let spawn = || {
        Command::new(tollgate_bin())
            .args([
                "index",
                "--brokers",
                &brokers,
                "--topic",
                TOPIC,
                "--index",
                &index_arg,
            ])
            .args(["--group", "split"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tollgate index")
    };
    let indexers = [spawn(), spawn()];
    // Wait until every session is indexed, and a while longer for the group to settle.
    let deadline = Instant::now() + Duration::from_mins(2);
    loop {
        let listed = tollgate(&["sessions", "list", "--index", &index_arg]);
        if listed.status.success() && stdout(&listed).lines().count() == ids.len() + 1 {
            break;
        }
        assert!(Instant::now() < deadline, "not all indexed: {listed:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(10));
    let mut assigned = Vec::new();
    for child in indexers {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let output = child.wait_with_output().expect("indexer exit");
        let text = stderr(&output);
        assert!(output.status.success(), "{text}");
        let line = text
            .lines()
            .find(|l| l.contains("partitions assigned ["))
            .unwrap_or_else(|| panic!("no summary: {text}"));
        let list = line
            .split("partitions assigned [")
            .nth(1)
            .and_then(|r| r.split(']').next())
            .expect("list");
        let partitions: BTreeSet<i32> = list
            .split(", ")
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().expect("partition"))
            .collect();
        assigned.push(partitions);
    }
    assert!(
        assigned.iter().all(|a| !a.is_empty()) && assigned[0].is_disjoint(&assigned[1]),
        "each indexer holds its own partitions: {assigned:?}"
    );
    let union: BTreeSet<i32> = assigned.iter().flatten().copied().collect();
    assert_eq!(union.len(), PARTITIONS as usize, "{assigned:?}");
}
