//! `tollgate sessions kill` ends a live session of a real client through a real gateway in
//! front of a real MariaDB: over the control socket on the gateway's host, and over a real
//! Kafka broker's control topic from another replica. `--lock` keeps the identity out until
//! `sessions unlock`. Runs without root.
#![expect(
    clippy::disallowed_types,
    reason = "synchronous test code: std::time::Instant is the right clock here"
)]

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Command, Output},
    time::{Duration, Instant},
};

use tollgate_tests::{
    DB_PASSWORD_ENV, Gateway, KafkaBroker, Upstream, free_port, pymysql_client, terminated_config,
    tollgate_bin,
};

/// A client that runs `SELECT 1` every 100 ms until the connection fails, then prints the
/// error and exits 0 (exit 3 when nothing stopped it within 30 s).
const BUSY_CLIENT: &str = r#"
import sys, time, pymysql
conn = pymysql.connect(host='127.0.0.1', port=int(sys.argv[1]), user=sys.argv[2],
    password=sys.argv[3], ssl_ca=sys.argv[4], ssl_verify_cert=True)
cur = conn.cursor()
cur.execute("SELECT 'busy'")
cur.fetchall()
print('ran', flush=True)
deadline = time.time() + 30
try:
    while time.time() < deadline:
        cur.execute("SELECT 1")
        cur.fetchall()
        time.sleep(0.1)
except Exception as e:
    print('ended:', repr(e), flush=True)
    sys.exit(0)
sys.exit(3)
"#;

/// A client that, after its first statement, waits in `SELECT SLEEP(8)`; prints the error
/// that ends it and exits 0 (exit 3 when the sleep was not interrupted).
const SLEEPING_CLIENT: &str = r#"
import sys, pymysql
conn = pymysql.connect(host='127.0.0.1', port=int(sys.argv[1]), user=sys.argv[2],
    password=sys.argv[3], ssl_ca=sys.argv[4], ssl_verify_cert=True)
cur = conn.cursor()
cur.execute("SELECT 'busy'")
cur.fetchall()
print('ran', flush=True)
try:
    cur.execute("SELECT SLEEP(8)")
    cur.fetchall()
except Exception as e:
    print('ended:', repr(e), flush=True)
    sys.exit(0)
sys.exit(3)
"#;

/// A client that logs in, runs `SELECT 'again'` and prints `ok`, or prints the error.
const LOGIN_CLIENT: &str = r#"
import sys, pymysql
try:
    conn = pymysql.connect(host='127.0.0.1', port=int(sys.argv[1]), user=sys.argv[2],
        password=sys.argv[3], ssl_ca=sys.argv[4], ssl_verify_cert=True)
    cur = conn.cursor()
    cur.execute("SELECT 'again'")
    cur.fetchall()
    print('ok')
except Exception as e:
    print('refused:', repr(e))
"#;

fn start(upstream: &Upstream, config: &str) -> Gateway {
    Gateway::start_with_env(None, config, &[(DB_PASSWORD_ENV, upstream.password())])
        .expect("start the gateway")
}

/// Starts `script` ([`BUSY_CLIENT`], [`SLEEPING_CLIENT`]) on `port` and returns it once its
/// first statement ran, with the session id `gateway` recorded for it.
#[expect(
    clippy::zombie_processes,
    reason = "the client goes back to the caller, which waits for it"
)]
fn busy_session(
    script: &str,
    gateway: &Gateway,
    port: u16,
    upstream: &Upstream,
) -> (Child, String) {
    let mut client = pymysql_client(script, port, upstream);
    let mut ran = String::new();
    BufReader::new(client.stdout.as_mut().expect("stdout"))
        .read_line(&mut ran)
        .expect("the client ran its first statement");
    assert_eq!(ran.trim(), "ran", "the client could not start");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(event) = gateway
            .recorded_events()
            .into_iter()
            .find(|e| e["sql"] == "SELECT 'busy'")
        {
            let id = event["session_id"].as_str().expect("id").to_owned();
            return (client, id);
        }
        assert!(Instant::now() < deadline, "the session was never recorded");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tollgate(args: &[&str], config: &Path) -> Output {
    Command::new(tollgate_bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run tollgate")
}

/// Waits (20 s at most) for the client to exit; its stdout.
fn finished(client: Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut client = client;
    loop {
        if let Some(status) = client.try_wait().expect("wait") {
            let output = client.wait_with_output().expect("output");
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            assert!(status.success(), "the client was not stopped: {stdout}");
            return stdout;
        }
        assert!(
            Instant::now() < deadline,
            "the killed client is still running"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (10 s at most) for `session.ended` of `session`.
fn ended(gateway: &Gateway, session: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(event) = gateway
            .recorded_events()
            .into_iter()
            .find(|e| e["session_id"] == session && e["type"] == "session.ended")
        {
            return event;
        }
        assert!(
            Instant::now() < deadline,
            "session.ended was never recorded"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn login(port: u16, upstream: &Upstream) -> String {
    let output = pymysql_client(LOGIN_CLIENT, port, upstream)
        .wait_with_output()
        .expect("login client");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn kill_over_the_control_socket_ends_the_session_and_the_lock_keeps_the_identity_out() {
    let upstream = Upstream::mariadb().expect("mariadb");
    let port = free_port();
    let gateway = start(&upstream, &terminated_config(port, "db", &upstream));
    let (client, session) = busy_session(SLEEPING_CLIENT, &gateway, port, &upstream);

    let kill = tollgate(
        &[
            "sessions",
            "kill",
            &session[..13],
            "--lock",
            "10m",
            "--reason",
            "runaway agent",
        ],
        &gateway.config_path,
    );
    let said = String::from_utf8_lossy(&kill.stdout);
    assert!(
        kill.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&kill.stderr)
    );
    assert!(
        said.contains(&format!("killed session {session}")),
        "{said}"
    );
    assert!(said.contains("identity 'alice' locked until"), "{said}");

    // The client, waiting for its statement, is told in MySQL's words for a killed connection.
    let told = finished(client);
    assert!(told.contains("1927"), "{told}");
    assert!(told.contains("runaway agent"), "{told}");
    let end = ended(&gateway, &session);
    assert_eq!(end["reason"], "killed", "{end}");
    let detail = end["detail"].as_str().expect("detail");
    assert!(
        detail.starts_with("killed by ")
            && detail.contains("(uid ")
            && detail.ends_with(": runaway agent"),
        "{detail}"
    );

    // Locked: the identity cannot log in again, and the refusal is recorded.
    let refused = login(port, &upstream);
    assert!(
        refused.contains("1045") && refused.contains("locked until"),
        "{refused}"
    );
    let unlock = tollgate(&["sessions", "unlock", "alice"], &gateway.config_path);
    assert!(unlock.status.success(), "{unlock:?}");
    assert!(
        String::from_utf8_lossy(&unlock.stdout).contains("1 of 1"),
        "{unlock:?}"
    );
    assert_eq!(login(port, &upstream), "ok");

    // A session that is not live: one line saying so, exit 1.
    let gone = tollgate(&["sessions", "kill", &session], &gateway.config_path);
    assert!(!gone.status.success());
    let stderr = String::from_utf8_lossy(&gone.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no live session"), "{stderr}");
}

#[test]
fn kill_on_one_replica_ends_the_session_on_another_over_the_control_topic() {
    let upstream = Upstream::mariadb().expect("mariadb");
    let broker = KafkaBroker::start().expect("broker");
    let kafka = format!(
        "\n[recording.kafka]\nbrokers = \"127.0.0.1:{}\"\ntopic = \"tollgate.kill\"\nkeep_shipped = true\n",
        broker.port
    );
    let (port_a, port_b) = (free_port(), free_port());
    let replica_a = start(
        &upstream,
        &(terminated_config(port_a, "db", &upstream) + &kafka),
    );
    let replica_b = start(
        &upstream,
        &(terminated_config(port_b, "db", &upstream) + &kafka),
    );
    for replica in [&replica_a, &replica_b] {
        replica
            .wait_for_log_ok("following the control topic")
            .expect("the replica reads the control topic");
    }
    let (client, session) = busy_session(BUSY_CLIENT, &replica_b, port_b, &upstream);

    // Given on replica A's host, carried out by replica B.
    let kill = tollgate(
        &["sessions", "kill", &session, "--lock", "10m"],
        &replica_a.config_path,
    );
    let said = String::from_utf8_lossy(&kill.stdout);
    assert!(
        kill.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&kill.stderr)
    );
    let b_pid = replica_b.pid().expect("replica B runs");
    assert!(
        said.contains(&format!("killed session {session} on ")),
        "{said}"
    );
    assert!(
        said.contains(&format!("/{b_pid}")),
        "replica B did it: {said}"
    );
    // Between statements: the unsolicited error reads as a lost connection, as after the
    // server's own KILL.
    assert!(finished(client).contains("ended:"));
    assert_eq!(ended(&replica_b, &session)["reason"], "killed");

    // The lock holds on replica A too.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let outcome = login(port_a, &upstream);
        if outcome.contains("locked until") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica A never saw the lock: {outcome}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Nobody has it any more: a one-line error after the wait.
    let gone = tollgate(
        &["sessions", "kill", &session, "--wait", "2s"],
        &replica_a.config_path,
    );
    assert!(!gone.status.success());
    let stderr = String::from_utf8_lossy(&gone.stderr);
    assert!(
        stderr.contains("no gateway replica has a live session"),
        "{stderr}"
    );
}
