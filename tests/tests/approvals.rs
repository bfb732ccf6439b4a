//! Just-in-time approvals through a real gateway in front of a real MariaDB, with a real
//! client (PyMySQL) whose statements a guardrail holds (`action = "approve"`): one approved
//! from the command line while the client waits (it then runs), one that times out, is
//! approved later and runs when the client sends it again (once), one denied, one approved
//! through the admin API and one on the web page (CSRF-checked); the approver sees the statement, identity, target and an EXPLAIN
//! row estimate; every request and decision is in the session's recording; an unknown id is a
//! one-line error. With two replicas sharing a real Kafka broker, a statement held on one is
//! listed and approved from the other's host (command line and admin API). Runs without root.
#![expect(
    clippy::disallowed_types,
    reason = "synchronous test code: std::time::Instant is the right clock here"
)]

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::fs::PermissionsExt as _,
    path::Path,
    process::{Child, ChildStdin, ChildStdout, Command, Output},
    time::{Duration, Instant},
};

use serde_json::Value;
use tollgate_tests::{
    DB_PASSWORD_ENV, Gateway, KafkaBroker, Upstream, free_port, mariadb_script, pymysql_client,
    register_secret, terminated_config, tollgate_bin,
};

const ADMIN_TOKEN: &str = "approvals-admin-token-5d1f0c";

const GUARDRAILS: &str = r#"
[[guardrails]]
name = "ask-first"
risks = ["delete_without_where", "drop", "truncate"]
action = "approve"

[approvals]
wait = "4s"
window = "10m"
approvers_group = "dba"
"#;

/// Runs each line of standard input as a statement; prints `ok <affected rows>` or
/// `err <code> <message>`.
const CLIENT: &str = r"
import sys, pymysql
conn = pymysql.connect(host='127.0.0.1', port=int(sys.argv[1]), user=sys.argv[2],
    password=sys.argv[3], ssl_ca=sys.argv[4], ssl_verify_cert=True, autocommit=True)
cur = conn.cursor()
print('ready', flush=True)
for line in sys.stdin:
    sql = line.strip()
    if not sql:
        continue
    try:
        n = cur.execute(sql)
        print('ok', n, flush=True)
    except pymysql.MySQLError as e:
        print('err', e.args[0], e.args[1], flush=True)
";

/// The client, line by line.
struct Client {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Client {
    fn start(port: u16, upstream: &Upstream) -> Self {
        let mut child = pymysql_client(CLIENT, port, upstream);
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut client = Self {
            child,
            stdin,
            stdout,
        };
        assert_eq!(client.line(), "ready", "the client could not log in");
        client
    }

    fn send(&mut self, sql: &str) {
        writeln!(self.stdin, "{sql}").expect("send a statement");
        self.stdin.flush().expect("flush");
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read the client");
        line.trim().to_owned()
    }

    fn run(&mut self, sql: &str) -> String {
        self.send(sql);
        self.line()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

fn succeeded(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `tollgate approvals list --json`.
fn list(gateway: &Gateway) -> Vec<Value> {
    let out = succeeded(&tollgate(
        &["approvals", "list", "--json"],
        &gateway.config_path,
    ));
    serde_json::from_str::<Value>(&out)
        .expect("a JSON list")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits (10 s at most) for an open request of `sql`; returns it.
fn pending(gateway: &Gateway, sql: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(found) = list(gateway)
            .into_iter()
            .find(|a| a["request"]["sql"] == sql && a["decision"].is_null())
        {
            return found;
        }
        assert!(Instant::now() < deadline, "no request for {sql}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn curl(args: &[&str]) -> (String, String) {
    let output = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (status.to_owned(), body.to_owned())
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one scenario: four held statements in one session, then the recording"
)]
fn held_statements_wait_for_approvers_and_every_decision_is_recorded() {
    let upstream = Upstream::mariadb().expect("mariadb");
    let (out, err) = mariadb_script(
        upstream.port(),
        upstream.user(),
        upstream.password(),
        &[],
        "CREATE DATABASE IF NOT EXISTS appr;\n\
         CREATE OR REPLACE TABLE appr.t (id INT PRIMARY KEY);\n\
         INSERT INTO appr.t VALUES (1), (2), (3);\n\
         CREATE OR REPLACE TABLE appr.u (id INT);\n\
         CREATE OR REPLACE TABLE appr.v (id INT);\n\
         INSERT INTO appr.v VALUES (1);\n\
         CREATE OR REPLACE TABLE appr.w (id INT);\n\
         INSERT INTO appr.w VALUES (1), (2);\n\
         CREATE OR REPLACE TABLE appr.x (id INT);\n",
    );
    assert!(err.is_empty(), "setup: {out} {err}");
    let secrets = tempfile::tempdir().expect("tempdir");
    let token_file = secrets.path().join("admin-token");
    std::fs::write(&token_file, format!("{ADMIN_TOKEN}\n")).expect("write the token");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    register_secret(ADMIN_TOKEN);

    let port = free_port();
    let admin_port = free_port();
    let config = terminated_config(port, "db", &upstream)
        .replace("[[targets]]", "groups = [\"devs\"]\n\n[[targets]]")
        + GUARDRAILS
        + &format!(
            "\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntoken_file = \"{}\"\n",
            token_file.display()
        );
    let gateway = Gateway::start_with_env(None, &config, &[(DB_PASSWORD_ENV, upstream.password())])
        .expect("gateway");
    let mut client = Client::start(port, &upstream);

    // 1. Approved from the command line while the client waits: the statement then runs.
    client.send("DELETE FROM appr.t");
    let asked = pending(&gateway, "DELETE FROM appr.t");
    let request = &asked["request"];
    assert_eq!(request["identity"], "alice", "{asked}");
    assert_eq!(request["groups"][0], "devs", "{asked}");
    assert_eq!(request["target"], "db");
    assert_eq!(request["rule"], "ask-first");
    assert_eq!(request["risks"][0], "delete_without_where");
    assert!(
        request["client_addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{asked}"
    );
    assert_eq!(request["impact"]["rows"], 3, "EXPLAIN's estimate: {asked}");
    let id = request["approval_id"].as_str().expect("id").to_owned();
    let text = succeeded(&tollgate(&["approvals", "list"], &gateway.config_path));
    assert!(
        text.contains(&id) && text.contains("DELETE FROM appr.t"),
        "{text}"
    );
    assert!(text.contains("~3 rows"), "{text}");
    let approved = succeeded(&tollgate(
        &["approvals", "approve", &id[..18], "--reason", "ticket 1"],
        &gateway.config_path,
    ));
    assert!(approved.contains("approved by"), "{approved}");
    assert_eq!(client.line(), "ok 3", "the approved delete ran");

    // 2. Not decided in time: an error naming the request; approved later, the same statement
    // sent again (other spacing and case) runs, once.
    let timed_out = client.run("DROP TABLE appr.u");
    assert!(
        timed_out.starts_with("err 1227 Tollgate: statement held for approval "),
        "{timed_out}"
    );
    assert!(timed_out.contains("not decided within 4s"), "{timed_out}");
    let late = pending(&gateway, "DROP TABLE appr.u");
    let late_id = late["request"]["approval_id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert!(timed_out.contains(&late_id), "{timed_out}");
    assert!(late["request"]["impact"]["rows"].is_u64(), "{late}");
    succeeded(&tollgate(
        &["approvals", "approve", &late_id],
        &gateway.config_path,
    ));
    assert_eq!(
        client.run("drop   table appr.u"),
        "ok 0",
        "runs once approved"
    );
    // Once: the approval is spent (the table is gone, so ask for another drop).
    let again = client.run("DROP TABLE IF EXISTS appr.u");
    assert!(again.starts_with("err 1227"), "{again}");

    // 3. Denied: the error names the approver and the reason.
    client.send("TRUNCATE appr.v");
    let deny_id = pending(&gateway, "TRUNCATE appr.v")["request"]["approval_id"]
        .as_str()
        .expect("id")
        .to_owned();
    succeeded(&tollgate(
        &[
            "approvals",
            "deny",
            &deny_id,
            "--reason",
            "not during business hours",
        ],
        &gateway.config_path,
    ));
    let denied = client.line();
    assert!(
        denied.starts_with("err 1227 Tollgate: statement denied by "),
        "{denied}"
    );
    assert!(
        denied.ends_with(&format!(
            "(approval {deny_id}, guardrail 'ask-first'): not during business hours"
        )),
        "{denied}"
    );

    // 4. Through the admin API (bearer token): list, then approve with a reason.
    client.send("DELETE FROM appr.w");
    let api_id = pending(&gateway, "DELETE FROM appr.w")["request"]["approval_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let base = format!("http://127.0.0.1:{admin_port}");
    let bearer = format!("Authorization: Bearer {ADMIN_TOKEN}");
    let (status, body) = curl(&["-H", &bearer, &format!("{base}/api/approvals")]);
    assert_eq!(status, "200", "{body}");
    assert!(body.contains(&api_id), "{body}");
    let (status, _) = curl(&[&format!("{base}/api/approvals")]);
    assert_eq!(status, "303", "no credentials: to the login page");
    let (status, body) = curl(&[
        "-X",
        "POST",
        "-H",
        &bearer,
        "-d",
        "{\"reason\": \"api\"}",
        &format!("{base}/api/approvals/{api_id}/approve"),
    ]);
    assert_eq!(status, "200", "{body}");
    assert_eq!(client.line(), "ok 2", "approved through the API");
    let (status, body) = curl(&[
        "-X",
        "POST",
        "-H",
        &bearer,
        &format!("{base}/api/approvals/{api_id}/deny"),
    ]);
    assert_eq!(status, "409", "decided already: {body}");
    let (status, body) = curl(&["-H", &bearer, &format!("{base}/approvals")]);
    assert_eq!(status, "200", "{body}");
    assert!(body.contains(&api_id) && body.contains("DELETE FROM appr.w"));

    // 5. Through the web page: signed in with the admin token form, the approve button's
    // form carries the session's CSRF token; without it, or from another origin, 403.
    client.send("DROP TABLE appr.x");
    let web_id = pending(&gateway, "DROP TABLE appr.x")["request"]["approval_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let jar = secrets.path().join("cookies");
    let jar = jar.to_str().expect("path");
    let (status, _) = curl(&[
        "-c",
        jar,
        "-d",
        &format!("token={ADMIN_TOKEN}"),
        &format!("{base}/login/token"),
    ]);
    assert_eq!(status, "303");
    let (status, page) = curl(&["-b", jar, &format!("{base}/approvals")]);
    assert_eq!(status, "200", "{page}");
    assert!(page.contains("DROP TABLE appr.x"), "{page}");
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the form's CSRF token")
        .to_owned();
    let form = format!("{base}/approvals/{web_id}");
    let (status, _) = curl(&["-b", jar, "-d", "decision=approve", &form]);
    assert_eq!(status, "403", "no CSRF token");
    let with_token = format!("csrf={csrf}&decision=approve&reason=web");
    let (status, _) = curl(&[
        "-b",
        jar,
        "-H",
        "Origin: http://evil.example",
        "-d",
        &with_token,
        &form,
    ]);
    assert_eq!(status, "403", "another origin");
    let (status, _) = curl(&["-b", jar, "-d", &with_token, &form]);
    assert_eq!(status, "303");
    assert_eq!(client.line(), "ok 0", "approved in the web page");

    // Bad input: one line naming the id.
    let unknown = tollgate(&["approvals", "approve", "0000dead"], &gateway.config_path);
    assert!(!unknown.status.success());
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert_eq!(
        said.trim(),
        "tollgate: error: no approval request '0000dead' (see `tollgate approvals list`)"
    );
    drop(client);

    // The recording: every request and decision, in the session that asked.
    let deadline = Instant::now() + Duration::from_secs(10);
    let events = loop {
        let events = gateway.recorded_events();
        if events.iter().any(|e| e["type"] == "session.ended") {
            break events;
        }
        assert!(Instant::now() < deadline, "the session never ended");
        std::thread::sleep(Duration::from_millis(100));
    };
    let of = |kind: &str, id: &str| {
        events
            .iter()
            .find(|e| e["type"] == kind && e["approval_id"] == id)
            .unwrap_or_else(|| panic!("no {kind} for {id}"))
            .clone()
    };
    for (id, approved, reason) in [
        (&id, true, Some("ticket 1")),
        (&late_id, true, None),
        (&deny_id, false, Some("not during business hours")),
        (&api_id, true, Some("api")),
        (&web_id, true, Some("web")),
    ] {
        let requested = of("approval.requested", id);
        assert_eq!(requested["identity"], "alice");
        let decided = of("approval.decided", id);
        assert_eq!(decided["approved"], approved, "{decided}");
        assert_eq!(decided["reason"].as_str(), reason, "{decided}");
        assert!(decided["by"].as_str().is_some_and(|b| !b.is_empty()));
        assert_eq!(decided["session_id"], requested["session_id"]);
        assert!(decided["chain_seq"].as_u64() > requested["chain_seq"].as_u64());
    }
    assert!(
        of("approval.decided", &api_id)["by"]
            .as_str()
            .is_some_and(|b| b.starts_with("admin token (web")),
    );
    let statement = |sql: &str| {
        events
            .iter()
            .find(|e| e["type"] == "statement" && e["sql"] == sql)
            .unwrap_or_else(|| panic!("{sql} was not recorded"))
            .clone()
    };
    let ran = statement("DELETE FROM appr.t");
    assert_eq!(ran["guard"]["action"], "approve");
    assert_eq!(ran["affected_rows"], 3, "{ran}");
    assert_eq!(statement("TRUNCATE appr.v")["error"]["code"], 1227);
    let verify = tollgate(&["sessions", "verify", "--all"], &gateway.config_path);
    succeeded(&verify);
}

/// A gateway with the approvals guardrail and an admin token; its admin port.
fn approving_gateway(port: u16, upstream: &Upstream, extra: &str, token: &Path) -> (Gateway, u16) {
    let admin_port = free_port();
    let config = terminated_config(port, "db", upstream)
        .replace("[[targets]]", "groups = [\"devs\"]\n\n[[targets]]")
        + &GUARDRAILS.replace("wait = \"4s\"", "wait = \"30s\"")
        + extra
        + &format!(
            "\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntoken_file = \"{}\"\n",
            token.display()
        );
    let gateway = Gateway::start_with_env(None, &config, &[(DB_PASSWORD_ENV, upstream.password())])
        .expect("gateway");
    (gateway, admin_port)
}

#[test]
fn a_statement_held_on_one_replica_is_approved_from_another_through_kafka() {
    let upstream = Upstream::mariadb().expect("mariadb");
    let (out, err) = mariadb_script(
        upstream.port(),
        upstream.user(),
        upstream.password(),
        &[],
        "CREATE DATABASE IF NOT EXISTS apprk;\n\
         CREATE OR REPLACE TABLE apprk.t (id INT);\n\
         INSERT INTO apprk.t VALUES (1), (2);\n\
         CREATE OR REPLACE TABLE apprk.u (id INT);\n\
         INSERT INTO apprk.u VALUES (1), (2), (3), (4);\n",
    );
    assert!(err.is_empty(), "setup: {out} {err}");
    let secrets = tempfile::tempdir().expect("tempdir");
    let token_file = secrets.path().join("admin-token");
    std::fs::write(&token_file, format!("{ADMIN_TOKEN}\n")).expect("write the token");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    register_secret(ADMIN_TOKEN);
    let broker = KafkaBroker::start().expect("broker");
    let kafka = format!(
        "\n[recording.kafka]\nbrokers = \"127.0.0.1:{}\"\ntopic = \"tollgate.appr\"\nkeep_shipped = true\n",
        broker.port
    );
    let (port_a, port_b) = (free_port(), free_port());
    let (replica_a, admin_a) = approving_gateway(port_a, &upstream, &kafka, &token_file);
    let (replica_b, _) = approving_gateway(port_b, &upstream, &kafka, &token_file);
    for replica in [&replica_a, &replica_b] {
        replica
            .wait_for_log_ok("following the approvals topic")
            .expect("the replica reads the approvals topic");
    }
    let mut client = Client::start(port_b, &upstream);

    // Held on B; listed and approved on A's host, over the topic.
    client.send("DELETE FROM apprk.t");
    let asked = pending(&replica_a, "DELETE FROM apprk.t");
    let id = asked["request"]["approval_id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(asked["request"]["impact"]["rows"], 2, "{asked}");
    succeeded(&tollgate(
        &["approvals", "approve", &id, "--reason", "over kafka"],
        &replica_a.config_path,
    ));
    assert_eq!(client.line(), "ok 2", "approved on another replica");

    // Held on B; approved through A's admin API (A knows it from the topic).
    client.send("DELETE FROM apprk.u");
    let api_id = pending(&replica_a, "DELETE FROM apprk.u")["request"]["approval_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, body) = loop {
        let (status, body) = curl(&[
            "-X",
            "POST",
            "-H",
            &format!("Authorization: Bearer {ADMIN_TOKEN}"),
            &format!("http://127.0.0.1:{admin_a}/api/approvals/{api_id}/approve"),
        ]);
        if status != "404" || Instant::now() > deadline {
            break (status, body);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, "200", "{body}");
    assert_eq!(client.line(), "ok 4", "approved through replica A's API");
    drop(client);

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = replica_b.recorded_events();
        let decided: Vec<&Value> = events
            .iter()
            .filter(|e| e["type"] == "approval.decided")
            .collect();
        if decided.len() == 2 {
            assert_eq!(decided[0]["approval_id"], id.as_str());
            assert_eq!(decided[0]["reason"], "over kafka");
            assert_eq!(decided[1]["approval_id"], api_id.as_str());
            break;
        }
        assert!(Instant::now() < deadline, "decisions not recorded on B");
        std::thread::sleep(Duration::from_millis(100));
    }
}
