//! The gateway's relay path with a real MariaDB and the real `mariadb` client, without eBPF
//! (interception off, clients dial the listener): runs without root.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use tollgate_tests::{Gateway, MariaDb, free_port, mariadb_client, run_capture};

fn off_mode_config(gateway_port: u16, target_port: u16, extra: &str) -> String {
    tollgate_tests::direct_config(gateway_port, "local", target_port, extra)
}

fn client(port: u16, sql: &str) -> Command {
    let args = mariadb_client("127.0.0.1", port, "app", "app-pw", sql);
    let mut command = Command::new(&args[0]);
    command.args(&args[1..]);
    command
}

#[test]
fn direct_connection_reaches_the_fallback_target_and_is_recorded() {
    let db = MariaDb::start(None, "127.0.0.1", free_port()).expect("start MariaDB");
    let gateway_port = free_port();
    let mut gateway =
        Gateway::start(None, &off_mode_config(gateway_port, db.port, "")).expect("start gateway");

    let output = run_capture(&mut client(
        gateway_port,
        "SELECT 6*7; SELECT host FROM information_schema.processlist WHERE id = CONNECTION_ID()",
    ))
    .expect("run mariadb client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&"42"),
        "query result through the gateway: {stdout}"
    );
    let host_seen_by_mariadb = lines.get(1).expect("processlist host");

    let ended = gateway
        .wait_for_log("session ended", Duration::from_secs(10))
        .expect("session ended logged");
    assert_eq!(ended["reason"], "Closed");
    assert!(
        ended["bytes_from_upstream"].as_u64().unwrap_or(0) > 0,
        "{ended}"
    );
    let started = gateway.log_messages("session started");
    assert_eq!(started.len(), 1, "one session: {started:?}");
    let started = &started[0];
    // MariaDB saw the gateway's upstream socket, not the client's: the session went through it.
    assert_eq!(
        started["upstream_local"], *host_seen_by_mariadb,
        "{started}"
    );
    assert_eq!(started["target_name"], "local");
    assert!(
        started.get("pid").is_none(),
        "a direct connection has no process attribution"
    );

    gateway.stop();
    let events = gateway.recorded_events();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"session.started"), "{events:?}");
    assert_eq!(kinds.get(1), Some(&"session.login"), "{events:?}");
    assert_eq!(kinds.last(), Some(&"session.ended"), "{events:?}");
    assert!(
        events
            .iter()
            .all(|e| e["session_id"] == events[0]["session_id"])
    );
    assert_eq!(events[1]["user"], "app");
    assert_eq!(events[1]["accepted"], true);
    let select = events
        .iter()
        .find(|e| e["type"] == "statement" && e["sql"] == "SELECT 6*7")
        .unwrap_or_else(|| panic!("the query is recorded: {events:?}"));
    assert_eq!(select["command"], "query");
    assert_eq!(select["rows"], 1);
    assert_eq!(select["columns"], serde_json::json!(["6*7"]));
    assert!(select["error"].is_null());
    let serialized = serde_json::to_string(&events).expect("json");
    assert!(
        !serialized.contains("app-pw"),
        "no password in the recording"
    );
    assert_eq!(events[0]["upstream_local_addr"], *host_seen_by_mariadb);
    assert!(events[0]["process"].is_null());
    assert_eq!(events[events.len() - 1]["reason"], "closed");

    // `sessions show` finds it by an id prefix and lists the statements with their outcome.
    let id = events[0]["session_id"].as_str().expect("id");
    let output = run_capture(
        Command::new(tollgate_tests::tollgate_bin())
            .args(["sessions", "show", &id[..13], "--store"])
            .arg(&gateway.store),
    )
    .expect("sessions show");
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(shown.contains("login     app accepted"), "{shown}");
    assert!(
        shown.contains("1 row(s)") && shown.contains("SELECT 6*7"),
        "{shown}"
    );
    assert_eq!(events[0]["v"], 2);
}

#[test]
fn unreachable_target_gives_the_client_an_error_naming_it() {
    let closed_port = free_port();
    let gateway_port = free_port();
    let mut gateway = Gateway::start(
        None,
        &off_mode_config(gateway_port, closed_port, "connect_timeout = \"2s\""),
    )
    .expect("start gateway");

    let output = run_capture(&mut client(gateway_port, "SELECT 1")).expect("run mariadb client");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    // Error 1429 (could not reach the server behind): MariaDB Connector/C 3.3+ shows a pre-TLS
    // error as "ERROR 2002 ... cannot be verified: 1429 - <message>".
    assert!(stderr.contains("1429"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "Tollgate: cannot reach target 'local' at 127.0.0.1:{closed_port}"
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains("app-pw"),
        "no credential in the error: {stderr}"
    );
    drop(gateway.wait_for_log_ok("session ended"));
    gateway.stop();
    let events = gateway.recorded_events();
    let ended = events
        .iter()
        .find(|e| e["type"] == "session.ended")
        .expect("ended event");
    assert_eq!(ended["reason"], "upstream_unreachable");
}

#[test]
fn connections_over_the_limit_get_error_1040() {
    let db = MariaDb::start(None, "127.0.0.1", free_port()).expect("start MariaDB");
    let gateway_port = free_port();
    let mut gateway = Gateway::start(
        None,
        &off_mode_config(gateway_port, db.port, "max_connections = 1"),
    )
    .expect("start gateway");

    let mut holder = client(gateway_port, "SELECT SLEEP(4)")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("first client");
    gateway
        .wait_for_log("session started", Duration::from_secs(10))
        .expect("first session started");
    let output = run_capture(&mut client(gateway_port, "SELECT 1")).expect("second client");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("1040"), "{stderr}");
    assert!(stderr.contains("too many connections"), "{stderr}");
    assert!(holder.wait().expect("first client exits").success());
}

#[test]
fn shutdown_ends_live_sessions_after_the_grace_period_and_records_them() {
    let db = MariaDb::start(None, "127.0.0.1", free_port()).expect("start MariaDB");
    let gateway_port = free_port();
    let mut gateway = Gateway::start(
        None,
        &off_mode_config(gateway_port, db.port, "shutdown_grace = \"500ms\""),
    )
    .expect("start gateway");

    let mut long = client(gateway_port, "SELECT SLEEP(30)")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("long client");
    gateway
        .wait_for_log("session started", Duration::from_secs(10))
        .expect("session started");
    let status = gateway.stop().expect("gateway exit status");
    assert!(status.success(), "graceful shutdown exits 0: {status}");
    assert!(
        !long.wait().expect("client exits").success(),
        "the client lost its session"
    );
    let events = gateway.recorded_events();
    let ended = events
        .iter()
        .find(|e| e["type"] == "session.ended")
        .expect("ended event");
    assert_eq!(ended["reason"], "shutdown", "{events:?}");
}

#[test]
fn a_packet_out_of_order_gets_error_1156_and_the_session_is_recorded() {
    let db = MariaDb::start(None, "127.0.0.1", free_port()).expect("start MariaDB");
    let gateway_port = free_port();
    let mut gateway =
        Gateway::start(None, &off_mode_config(gateway_port, db.port, "")).expect("start gateway");

    // A raw client: read the greeting, answer with sequence id 5 instead of 1.
    let script = format!(
        r#"
import socket, struct
s = socket.create_connection(("127.0.0.1", {gateway_port}), timeout=10)
def read_packet():
    header = s.recv(4, socket.MSG_WAITALL)
    length = header[0] | header[1] << 8 | header[2] << 16
    return header[3], s.recv(length, socket.MSG_WAITALL)
seq, greeting = read_packet()
assert greeting[0] == 10, greeting
payload = b"\x00" * 32
s.sendall(struct.pack("<I", len(payload))[:3] + bytes([5]) + payload)
seq, reply = read_packet()
code = reply[1] | reply[2] << 8
print(reply[0], code, reply[3:9].decode(), reply[9:].decode())
"#
    );
    let output = run_capture(Command::new("python3").args(["-c", &script])).expect("python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.starts_with("255 1156 #08S01 Tollgate: got packets out of order from the client"),
        "{stdout}"
    );
    gateway
        .wait_for_log("session ended", Duration::from_secs(10))
        .expect("session ended");
    gateway.stop();
    let events = gateway.recorded_events();
    let ended = events
        .iter()
        .find(|e| e["type"] == "session.ended")
        .expect("ended event");
    assert_eq!(ended["reason"], "error");
    assert!(
        ended["detail"]
            .as_str()
            .is_some_and(|d| d.contains("out of order")),
        "{ended}"
    );
    assert!(!gateway.log_text().contains("panicked"));
}

#[test]
fn a_database_that_never_greets_times_out_the_login_with_an_error() {
    // A "database" that accepts connections and never says anything.
    let silent_port = free_port();
    let mut silent = Command::new("python3")
        .args([
            "-c",
            &format!(
                "import socket, time\n\
                 s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
                 s.bind(('127.0.0.1', {silent_port})); s.listen()\n\
                 print('listening', flush=True)\n\
                 c = s.accept(); time.sleep(30)\n"
            ),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("silent server");
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(silent.stdout.as_mut().expect("stdout")),
        &mut ready,
    )
    .expect("silent server ready");
    let gateway_port = free_port();
    let mut gateway = Gateway::start(
        None,
        &off_mode_config(gateway_port, silent_port, "login_timeout = \"1s\""),
    )
    .expect("start gateway");

    // The client gives up after 10 s itself (--connect-timeout); the gateway's 1 s login
    // timeout must answer first, with its own error.
    let output = run_capture(&mut client(gateway_port, "SELECT 1")).expect("client");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let _ = silent.kill();
    let _ = silent.wait();
    assert!(!output.status.success());
    assert!(stderr.contains("did not finish within 1s"), "{stderr}");
    gateway.stop();
    let events = gateway.recorded_events();
    let ended = events
        .iter()
        .find(|e| e["type"] == "session.ended")
        .expect("ended event");
    assert_eq!(ended["reason"], "error", "{ended}");
}
