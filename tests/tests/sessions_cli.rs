//! `tollgate sessions list|export|replay` on a store recorded from real sessions: a
//! terminating gateway in front of a real MariaDB, and the `mariadb` CLI logging in as alice
//! (group `devs`). Filters return exactly the right sessions, the SQL export replays, and the
//! replay shows each recorded statement and its rows. Runs without root.

use std::{
    collections::BTreeSet,
    path::Path,
    process::{Command, Output, Stdio},
    time::Duration,
};

use serde_json::Value;
use tollgate_tests::{
    DB_PASSWORD_ENV, GATEWAY_PASSWORD, GATEWAY_USER, Gateway, Upstream, mariadb_script,
    run_capture, store_text, terminated_config, tollgate_bin,
};

/// Runs `tollgate sessions ARGS --store STORE` with standard input closed.
fn tollgate(store: &Path, args: &[&str]) -> Output {
    run_capture(
        Command::new(tollgate_bin())
            .arg("sessions")
            .args(args)
            .arg("--store")
            .arg(store)
            .stdin(Stdio::null()),
    )
    .expect("run tollgate sessions")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The session ids `tollgate sessions list FILTERS` prints.
fn listed(store: &Path, filters: &[&str]) -> BTreeSet<String> {
    let mut args = vec!["list"];
    args.extend_from_slice(filters);
    let output = tollgate(store, &args);
    assert!(output.status.success(), "list {filters:?}: {output:?}");
    stdout(&output)
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Runs `sql` as one session through the gateway with the mariadb CLI, as alice; waits
/// until the gateway has recorded the end of `sessions` sessions.
fn session(gateway: &Gateway, port: u16, upstream: &Upstream, sql: &str, sessions: usize) {
    let output = run_capture(
        Command::new("mariadb")
            .arg("--no-defaults")
            .args(["-h", "127.0.0.1", "-P", &port.to_string()])
            .args(["-u", GATEWAY_USER, &format!("-p{GATEWAY_PASSWORD}")])
            .arg(format!("--ssl-ca={}", upstream.ca().display()))
            .args(["--ssl-verify-server-cert", "--batch", "-e", sql]),
    )
    .expect("run mariadb");
    // The last statement of a session may fail on purpose; the login must not.
    assert!(
        !stderr(&output).contains("Access denied"),
        "login: {output:?}"
    );
    wait_for_sessions(gateway, sessions);
}

/// Inserts and selects a row through the gateway with server-side prepared statements
/// (mysql-connector-python's prepared cursor: `COM_STMT_PREPARE`, `COM_STMT_EXECUTE`), as
/// alice; waits until the gateway has recorded the end of `sessions` sessions.
fn prepared_session(gateway: &Gateway, port: u16, upstream: &Upstream, sessions: usize) {
    const SCRIPT: &str = r#"
import sys, mysql.connector
port, user, password, ca = sys.argv[1:5]
conn = mysql.connector.connect(host="127.0.0.1", port=int(port), user=user, password=password,
    ssl_ca=ca, ssl_verify_cert=True, use_pure=True, autocommit=True)
cur = conn.cursor(prepared=True)
cur.execute("INSERT INTO shop.items VALUES (%s, %s)", (3, "kiwi's"))
cur.execute("SELECT name FROM shop.items WHERE id = %s", (3,))
print(cur.fetchall())
conn.close()
"#;
    let output = run_capture(
        Command::new("python3")
            .args([
                "-c",
                SCRIPT,
                &port.to_string(),
                GATEWAY_USER,
                GATEWAY_PASSWORD,
            ])
            .arg(upstream.ca()),
    )
    .expect("run python3");
    assert!(output.status.success(), "{output:?}");
    wait_for_sessions(gateway, sessions);
}

/// Waits until the gateway has logged the end of `sessions` sessions.
fn wait_for_sessions(gateway: &Gateway, sessions: usize) {
    for _ in 0..400 {
        if gateway.log_messages("session ended").len() >= sessions {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("session {sessions} did not end:\n{}", gateway.log_text());
}

/// The id of the session with a statement whose SQL is `sql`.
fn session_of(events: &[Value], sql: &str) -> String {
    events
        .iter()
        .find(|e| e["type"] == "statement" && e["sql"] == sql)
        .and_then(|e| e["session_id"].as_str())
        .unwrap_or_else(|| panic!("no statement {sql:?} recorded"))
        .to_owned()
}

/// The `time` of the `kind` event of `session`.
fn time_of(events: &[Value], session: &str, kind: &str) -> String {
    events
        .iter()
        .find(|e| e["session_id"] == session && e["type"] == kind)
        .and_then(|e| e["time"].as_str())
        .unwrap_or_else(|| panic!("no {kind} in {session}"))
        .to_owned()
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).clone()).collect()
}

/// Index of `needle` in `text`, failing with the text.
fn at(text: &str, needle: &str) -> usize {
    text.find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in:\n{text}"))
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one recorded store, every command checked against it"
)]
fn list_filters_export_and_replay_recorded_sessions() {
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

    let port = tollgate_tests::free_port();
    // alice is in two groups, and may only `USE shop` (the gateway refuses other databases).
    let config = terminated_config(port, "db", &upstream)
        .replace(
            "[[targets]]",
            "groups = [\"devs\", \"oncall\"]\n\n[[targets]]",
        )
        .replace(
            "groups = [\"*\"]",
            "groups = [\"*\"]\ndatabases = [\"shop\"]",
        );
    let mut gateway =
        Gateway::start_with_env(None, &config, &[(DB_PASSWORD_ENV, upstream.password())])
            .expect("start the gateway");

    session(
        &gateway,
        port,
        &upstream,
        "SELECT id, name FROM shop.items ORDER BY id; DELETE FROM shop.items WHERE id = 2",
        1,
    );
    session(
        &gateway,
        port,
        &upstream,
        "CREATE TABLE shop.audit (id INT); SELECT * FROM shop.missing",
        2,
    );
    session(&gateway, port, &upstream, "SELECT 'Needle' AS word", 3);
    session(&gateway, port, &upstream, "SELECT 'refusal'; USE mysql", 4);
    prepared_session(&gateway, port, &upstream, 5);
    gateway.stop();
    let store = gateway.store.clone();

    let events: Vec<Value> = store_text(&store)
        .lines()
        .map(|l| serde_json::from_str(l).expect("event JSON"))
        .collect();
    let deleting = session_of(&events, "DELETE FROM shop.items WHERE id = 2");
    let creating = session_of(&events, "CREATE TABLE shop.audit (id INT)");
    let reading = session_of(&events, "SELECT 'Needle' AS word");
    let refusing = session_of(&events, "SELECT 'refusal'");
    let preparing = session_of(&events, "INSERT INTO shop.items VALUES (?, ?)");
    let all = set(&[&deleting, &creating, &reading, &refusing, &preparing]);
    assert_eq!(all.len(), 5, "five sessions");

    // Filters, alone and combined: exactly the right sessions.
    assert_eq!(listed(&store, &[]), all);
    assert_eq!(listed(&store, &["--user", GATEWAY_USER]), all);
    assert_eq!(listed(&store, &["--user", "bob"]), set(&[]));
    assert_eq!(listed(&store, &["--group", "devs"]), all);
    assert_eq!(listed(&store, &["--group", "admins"]), set(&[]));
    assert_eq!(listed(&store, &["--target", "db"]), all);
    assert_eq!(listed(&store, &["--target", "other"]), set(&[]));
    assert_eq!(listed(&store, &["--kind", "delete"]), set(&[&deleting]));
    assert_eq!(listed(&store, &["--kind", "ddl"]), set(&[&creating]));
    assert_eq!(
        listed(&store, &["--kind", "error"]),
        set(&[&creating, &refusing])
    );
    assert_eq!(listed(&store, &["--kind", "update"]), set(&[]));
    assert_eq!(
        listed(&store, &["--kind", "refused"]),
        set(&[&refusing]),
        "the gateway's refusal; the database's own error is not one"
    );
    assert_eq!(
        listed(&store, &["--kind", "ddl", "--kind", "delete"]),
        set(&[])
    );
    assert_eq!(listed(&store, &["--contains", "NEEDLE"]), set(&[&reading]));
    assert_eq!(
        listed(&store, &["--contains", "shop.items", "--kind", "delete"]),
        set(&[&deleting])
    );
    assert_eq!(
        listed(&store, &["--contains", "shop.items", "--kind", "ddl"]),
        set(&[])
    );
    assert_eq!(listed(&store, &["--live"]), set(&[]));
    assert_eq!(listed(&store, &["--since", "1h"]), all);
    assert_eq!(listed(&store, &["--until", "1h"]), set(&[]));
    assert_eq!(
        listed(&store, &["--since", "1h", "--until", "7d"]),
        set(&[])
    );
    // The first session ended before the second started.
    let second_started = time_of(&events, &creating, "session.started");
    let first_ended = time_of(&events, &deleting, "session.ended");
    assert_eq!(
        listed(&store, &["--since", &second_started]),
        set(&[&creating, &reading, &refusing, &preparing])
    );
    assert_eq!(
        listed(&store, &["--until", &first_ended]),
        set(&[&deleting])
    );
    assert_eq!(
        listed(
            &store,
            &[
                "--since",
                &second_started,
                "--user",
                GATEWAY_USER,
                "--kind",
                "error",
                "--contains",
                "shop."
            ]
        ),
        set(&[&creating])
    );

    // Bad input: one line saying what to do.
    let bad = tollgate(&store, &["list", "--since", "yesterday"]);
    assert!(!bad.status.success(), "{bad:?}");
    assert!(
        stderr(&bad).contains("RFC 3339") && stderr(&bad).trim().lines().count() == 1,
        "{bad:?}"
    );
    for command in [
        &["show", "ffffffff"][..],
        &["export", "ffffffff", "--format", "sql"],
        &["replay", "ffffffff", "--speed", "0"],
    ] {
        let unknown = tollgate(&store, command);
        assert!(!unknown.status.success(), "{command:?}: {unknown:?}");
        assert!(
            stderr(&unknown).contains("tollgate sessions list")
                && stderr(&unknown).trim().lines().count() == 1,
            "{command:?}: {unknown:?}"
        );
    }

    // JSON export: the session's lines exactly as stored.
    let json = tollgate(&store, &["export", &creating, "--format", "json"]);
    assert!(json.status.success(), "{json:?}");
    let stored: String = store_text(&store)
        .lines()
        .filter(|l| l.contains(&format!("\"session_id\":\"{creating}\"")))
        .fold(String::new(), |text, l| text + l + "\n");
    assert!(!stored.is_empty());
    assert_eq!(stdout(&json), stored);

    // SQL export: the statements in order, the outcome in comments.
    let sql = tollgate(&store, &["export", &creating, "--format", "sql"]);
    assert!(sql.status.success(), "{sql:?}");
    let script = stdout(&sql);
    let create = at(&script, "\nCREATE TABLE shop.audit (id INT);\n");
    let failing = at(&script, "\nSELECT * FROM shop.missing;\n");
    assert!(create < failing, "{script}");
    assert!(at(&script, "ERROR 1146") < failing, "{script}");
    assert!(at(&script, "-- #1 ") < create, "{script}");

    // The exported DELETE session replays against the database: pear is gone again.
    let (_, restore_err) = mariadb_script(
        upstream.port(),
        upstream.user(),
        upstream.password(),
        &[],
        "INSERT INTO shop.items VALUES (2, 'pear');\n",
    );
    assert!(restore_err.is_empty(), "{restore_err}");
    let export = tollgate(&store, &["export", &deleting, "--format", "sql"]);
    assert!(export.status.success(), "{export:?}");
    let (_, replay_err) = mariadb_script(
        upstream.port(),
        upstream.user(),
        upstream.password(),
        &[],
        &stdout(&export),
    );
    assert!(replay_err.is_empty(), "{replay_err}\n{}", stdout(&export));
    let (left, _) = mariadb_script(
        upstream.port(),
        upstream.user(),
        upstream.password(),
        &["-N"],
        "SELECT GROUP_CONCAT(name ORDER BY id) FROM shop.items;\n",
    );
    assert_eq!(left.trim(), "apple,kiwi's");

    // Prepared executes: the bound values inlined as SQL literals.
    let prepared = tollgate(&store, &["export", &preparing, "--format", "sql"]);
    assert!(prepared.status.success(), "{prepared:?}");
    let script = stdout(&prepared);
    let insert = at(&script, "\nINSERT INTO shop.items VALUES (3, 'kiwi''s');\n");
    let select = at(&script, "\nSELECT name FROM shop.items WHERE id = 3;\n");
    assert!(
        at(&script, "-- prepared:") < insert && insert < select,
        "{script}"
    );
    let replay = tollgate(&store, &["replay", &preparing, "--speed", "0"]);
    let text = stdout(&replay);
    assert!(
        at(&text, "> INSERT INTO shop.items VALUES (3, 'kiwi''s')") < at(&text, "| kiwi's |"),
        "{text}"
    );

    // Replay: the header, each statement and its rows, in order.
    let replay = tollgate(&store, &["replay", &deleting, "--speed", "0"]);
    assert!(replay.status.success(), "{replay:?}");
    let text = stdout(&replay);
    assert!(text.contains("login     alice"), "{text}");
    assert!(text.contains("groups=[devs, oncall]"), "{text}");
    assert!(text.contains("target    db"), "{text}");
    let select = at(&text, "> SELECT id, name FROM shop.items ORDER BY id");
    let apple = at(&text, "| 1  | apple |");
    let pear = at(&text, "| 2  | pear  |");
    let delete = at(&text, "> DELETE FROM shop.items WHERE id = 2");
    let affected = at(&text, "OK, 1 row(s) affected");
    assert!(
        select < apple && apple < pear && pear < delete && delete < affected,
        "{text}"
    );
    assert!(at(&text, "2 row(s)") < delete, "{text}");

    let errors = tollgate(&store, &["replay", &creating, "--speed", "0"]);
    let text = stdout(&errors);
    assert!(
        at(&text, "> CREATE TABLE shop.audit") < at(&text, "ERROR 1146"),
        "{text}"
    );

    // Step mode at end of input plays the rest without waiting.
    let stepped = tollgate(&store, &["replay", &deleting, "--step", "--speed", "0"]);
    assert!(stepped.status.success(), "{stepped:?}");
    assert!(stdout(&stepped).contains("> DELETE FROM shop.items WHERE id = 2"));
}

/// The `started_at_ns` of the statement of `session` whose SQL is `sql`.
fn started_ns(events: &[Value], session: &str, sql: &str) -> u64 {
    events
        .iter()
        .find(|e| e["session_id"] == session && e["sql"] == sql)
        .and_then(|e| e["started_at_ns"].as_u64())
        .unwrap_or_else(|| panic!("no {sql:?} in {session}"))
}

#[test]
#[expect(
    clippy::disallowed_types,
    reason = "synchronous test code timing a child process: std::time::Instant is the right clock"
)]
fn live_sessions_are_listed_until_they_end_and_replay_keeps_the_pacing() {
    use std::io::Write as _;

    let upstream = Upstream::mariadb().expect("start MariaDB");
    let port = tollgate_tests::free_port();
    let mut gateway = Gateway::start_with_env(
        None,
        &terminated_config(port, "db", &upstream),
        &[(DB_PASSWORD_ENV, upstream.password())],
    )
    .expect("start the gateway");
    let store = gateway.store.clone();

    // A client that stays connected, fed statement by statement.
    let mut client = Command::new("mariadb")
        .arg("--no-defaults")
        .args(["-h", "127.0.0.1", "-P", &port.to_string()])
        .args(["-u", GATEWAY_USER, &format!("-p{GATEWAY_PASSWORD}")])
        .arg(format!("--ssl-ca={}", upstream.ca().display()))
        .args(["--ssl-verify-server-cert", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mariadb");
    let mut input = client.stdin.take().expect("stdin");
    writeln!(input, "SELECT 'live-one';").expect("send");
    input.flush().expect("flush");
    let mut live = BTreeSet::new();
    for _ in 0..400 {
        live = listed(&store, &["--live", "--contains", "live-one"]);
        if !live.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(live.len(), 1, "the running session is listed as live");
    assert_eq!(listed(&store, &["--live"]), live);

    // A recorded pause of at least a second before the second statement.
    std::thread::sleep(Duration::from_millis(1200));
    writeln!(input, "SELECT 'live-two';").expect("send");
    drop(input);
    let status = client.wait().expect("mariadb exits");
    assert!(status.success(), "client: {status}");
    for _ in 0..400 {
        if !gateway.log_messages("session ended").is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    gateway.stop();
    assert_eq!(listed(&store, &["--live"]), set(&[]), "ended: not live");
    let session = live.into_iter().next().expect("one session");
    assert_eq!(
        listed(&store, &["--contains", "live-two"]),
        set(&[&session])
    );

    let events: Vec<Value> = store_text(&store)
        .lines()
        .map(|l| serde_json::from_str(l).expect("event JSON"))
        .collect();
    let gap = Duration::from_nanos(
        started_ns(&events, &session, "SELECT 'live-two'")
            - started_ns(&events, &session, "SELECT 'live-one'"),
    );
    assert!(gap >= Duration::from_secs(1), "recorded gap {gap:?}");

    let timed = |speed: &str| {
        let start = std::time::Instant::now();
        let output = tollgate(&store, &["replay", &session, "--speed", speed]);
        assert!(output.status.success(), "{output:?}");
        let text = stdout(&output);
        assert!(
            at(&text, "> SELECT 'live-one'") < at(&text, "> SELECT 'live-two'"),
            "{text}"
        );
        start.elapsed()
    };
    let original = timed("1");
    assert!(
        original >= gap,
        "--speed 1 took {original:?}, the gap was {gap:?}"
    );
    let doubled = timed("2");
    assert!(
        doubled >= gap / 2 && doubled < original,
        "--speed 2 took {doubled:?}, --speed 1 {original:?}"
    );
    let instant = timed("0");
    assert!(instant < gap / 2, "--speed 0 took {instant:?}");
}
