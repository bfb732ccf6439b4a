//! `tollgate sessions tail ID` follows a live session recorded by a real gateway in front of a
//! real MariaDB: each statement shows up while the client is still connected, and the follower
//! ends by itself when the session ends. Runs without root.
#![expect(
    clippy::disallowed_types,
    reason = "synchronous test code: std::time::Instant is the right clock here"
)]

use std::{
    io::{BufRead as _, BufReader, Write as _},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use tollgate_tests::{
    DB_PASSWORD_ENV, Gateway, Upstream, free_port, pymysql_client, terminated_config, tollgate_bin,
};

/// A client that runs `SELECT 'first'`, waits for a line on stdin, runs `SELECT 'second'`
/// and quits.
const CLIENT: &str = r#"
import sys, pymysql
conn = pymysql.connect(host='127.0.0.1', port=int(sys.argv[1]), user=sys.argv[2],
    password=sys.argv[3], ssl_ca=sys.argv[4], ssl_verify_cert=True)
cur = conn.cursor()
cur.execute("SELECT 'first'")
cur.fetchall()
print('ran', flush=True)
sys.stdin.readline()
cur.execute("SELECT 'second'")
cur.fetchall()
conn.close()
"#;

/// Lines of the follower's stdout, as they come.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout");
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                return;
            }
        }
    });
    receive
}

/// Waits (20 s at most) for a line containing `text`; returns what was read meanwhile.
fn wait_for(lines: &mpsc::Receiver<String>, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = String::new();
    while Instant::now() < deadline {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(100)) {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(text) {
                return seen;
            }
        }
    }
    panic!("the follower never printed {text:?}; it printed:\n{seen}");
}

#[test]
fn tail_follows_a_live_session_statement_by_statement_until_it_ends() {
    let upstream = Upstream::mariadb().expect("mariadb");
    let port = free_port();
    let gateway = Gateway::start_with_env(
        None,
        &terminated_config(port, "db", &upstream),
        &[(DB_PASSWORD_ENV, upstream.password())],
    )
    .expect("gateway");
    let mut client = pymysql_client(CLIENT, port, &upstream);
    let mut ran = String::new();
    BufReader::new(client.stdout.as_mut().expect("stdout"))
        .read_line(&mut ran)
        .expect("the client ran its first statement");

    // The live session's id, from the store.
    let deadline = Instant::now() + Duration::from_secs(10);
    let session = loop {
        if let Some(event) = gateway
            .recorded_events()
            .into_iter()
            .find(|e| e["sql"] == "SELECT 'first'")
        {
            break event["session_id"].as_str().expect("id").to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "the first statement was never recorded"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut follower = Command::new(tollgate_bin())
        .args(["sessions", "tail", &session[..13], "--store"])
        .arg(&gateway.store)
        .stdout(Stdio::piped())
        .spawn()
        .expect("tollgate sessions tail");
    let lines = lines_of(&mut follower);
    let before = wait_for(&lines, "SELECT 'first'");
    assert!(before.contains("alice"), "the login is shown: {before}");
    assert!(!before.contains("SELECT 'second'"), "not run yet: {before}");

    client
        .stdin
        .as_mut()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("tell the client");
    wait_for(&lines, "SELECT 'second'");
    assert!(client.wait().expect("client").success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = follower.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the follower did not end with the session"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}
