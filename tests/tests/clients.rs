//! The client compatibility matrix. Each real client runs one scenario of the same shape (TLS
//! connect, DDL, inserts, text and binary protocol selects, prepared statements with
//! NULL/blob/datetime/decimal/JSON parameters, a multi-statement query, a 100k-row result, a
//! 20 MiB blob round trip ([`BLOB`]), a
//! rolled-back transaction, a change of database, an error) straight against the database as
//! its own account and through a gateway that terminates the login (the client logs in as
//! alice over TLS; the gateway logs in with its own credential over verified TLS); the outputs
//! must be identical and the sessions recorded command by command, without a password in the
//! recording or the log. Every client runs against MariaDB 10.11 and, as root, against Oracle
//! MySQL 9.7 (its chroot is made by `cargo xtask setup`); each row of `docs/compatibility.md`
//! with the login "upstream verified TLS" comes from here.
//!
//! Clients (installed by `cargo xtask setup`): the `mariadb` CLI; PyMySQL;
//! mysql-connector-python, pure and C extension; mysqlclient (Debian `python3-mysqldb`); node
//! `mysql2` (`query` and `execute`); MariaDB Connector/J (Debian `libmariadb-java`); sysbench
//! `oltp_read_write`.
#![allow(
    clippy::disallowed_types,
    reason = "synchronous test code: std::time::Instant is the right clock for client timeouts"
)]

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use tollgate_tests::{
    GATEWAY_PASSWORD, GATEWAY_USER, Gateway, Upstream, record_compatibility, require_root,
    workspace_root,
};

/// The login column of every row here.
const LOGIN: &str = "gateway: client TLS, identity table; upstream verified TLS";
/// The size of the blob every scenario sends and reads back (byte i is i % 251), and its
/// SHA-256: 20 MiB, so the packets carrying it are split into 16 MiB chunks on the wire.
const BLOB: (usize, &str) = (
    20 * 1024 * 1024,
    "99254018a4506cae413a471f8b9d968a1ab1771565f3247b6e1c3f927e9a572f",
);
/// The result column of the rows here.
const IDENTICAL: &str = "identical";
/// How long one client run may take before it counts as hung.
const CLIENT_TIMEOUT: Duration = Duration::from_mins(3);
/// The 100k-row query of every scenario (a cross join of a 10-row table: portable to MySQL,
/// which has no `seq_1_to_100000`), up to its parameter.
const BIG_PREFIX: &str = "SELECT a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d + 1 AS n";

/// One upstream with its terminating gateway.
struct Side {
    upstream: Upstream,
    gateway: Gateway,
    port: u16,
}

/// MariaDB, and MySQL 9 when running as root (it lives in a chroot), each with a gateway;
/// the servers start in parallel.
fn sides(test: &str) -> Vec<Side> {
    let with_mysql9 = require_root(&format!("{test} against MySQL 9.7"));
    let upstreams = std::thread::scope(|scope| {
        let mysql9 = with_mysql9.then(|| scope.spawn(Upstream::mysql9));
        let mut upstreams = vec![Upstream::mariadb().expect("start MariaDB")];
        if let Some(mysql9) = mysql9 {
            upstreams.push(
                mysql9
                    .join()
                    .expect("MySQL 9 start thread")
                    .expect("start MySQL 9"),
            );
        }
        upstreams
    });
    upstreams
        .into_iter()
        .map(|upstream| {
            let (gateway, port) = Gateway::terminating(&upstream).expect("start the gateway");
            Side {
                upstream,
                gateway,
                port,
            }
        })
        .collect()
}

/// Who a scenario connects as, and where.
struct Login<'a> {
    port: u16,
    user: &'a str,
    password: &'a str,
    /// Verifies the database's certificate, and the gateway's (it presents the same one).
    ca: PathBuf,
}

/// [`run`] for a client straight against the database, where the gateway plays no part: a
/// client that crashes (killed by a signal: mysql-connector-python's C extension, which
/// carries its own OpenSSL, has been seen to abort with `corrupted size vs. prev_size` under
/// load, with a 20 MiB blob, twice in a row on a CI machine) is run again, up to
/// [`DIRECT_ATTEMPTS`] times in all, before the test fails. The gateway's runs are never
/// retried.
fn run_direct(label: &str, command: impl Fn() -> Command) -> (String, String) {
    use std::os::unix::process::ExitStatusExt as _;
    for attempt in 1..DIRECT_ATTEMPTS {
        let output = command().output().expect("run the client");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if output.status.signal().is_none() {
            assert!(
                output.status.success(),
                "{label} failed: {}{stderr}",
                stdout.chars().take(3000).collect::<String>()
            );
            return (stdout, stderr);
        }
        eprintln!(
            "{label}: the client crashed on attempt {attempt} ({}); running it again",
            stderr.trim()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    run(label, command())
}

/// How many times a client run straight against the database is tried when it crashes.
const DIRECT_ATTEMPTS: u32 = 4;

/// Runs a command to completion (stdin: what the command sets, else nothing) within
/// [`CLIENT_TIMEOUT`]; it must succeed. Returns stdout and stderr.
fn run(label: &str, mut command: Command) -> (String, String) {
    use std::io::Read as _;
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{label}: cannot run {command:?}: {e}"));
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the client") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{label}: no answer within {CLIENT_TIMEOUT:?} (killed); stderr: {}",
                stderr.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    assert!(
        status.success(),
        "{label} failed: {}{stderr}",
        stdout.chars().take(3000).collect::<String>()
    );
    (stdout, stderr)
}

/// Panics with the first differing line when `through` is not `direct`.
fn assert_identical(label: &str, direct: &str, through: &str) {
    if direct == through {
        return;
    }
    let (line, (d, t)) = direct
        .lines()
        .chain(std::iter::once("<end>"))
        .zip(through.lines().chain(std::iter::once("<end>")))
        .enumerate()
        .find(|(_, (d, t))| d != t)
        .unwrap_or((0, ("", "")));
    panic!(
        "{label}: output differs through the gateway ({} vs {} bytes), first at line {}:\n  \
         direct:  {:.400}\n  gateway: {:.400}",
        direct.len(),
        through.len(),
        line + 1,
        d,
        t
    );
}

/// Runs `client` straight against the side's database as its own account, then through the
/// gateway as alice: both must succeed with identical stdout and stderr. Returns stdout.
fn identical_through_gateway(
    label: &str,
    side: &Side,
    client: impl Fn(&Login<'_>) -> Command,
) -> String {
    let up = &side.upstream;
    let direct = Login {
        port: up.port(),
        user: up.user(),
        password: up.password(),
        ca: up.ca(),
    };
    let through = Login {
        port: side.port,
        user: GATEWAY_USER,
        password: GATEWAY_PASSWORD,
        ca: up.ca(),
    };
    let label = format!("{label} against {}", up.name());
    let (direct_out, direct_err) = run_direct(&format!("{label} (direct)"), || client(&direct));
    let (via_out, via_err) = run(&format!("{label} (through the gateway)"), client(&through));
    assert_identical(&label, &direct_out, &via_out);
    assert_identical(&format!("{label} (stderr)"), &direct_err, &via_err);
    direct_out
}

/// Stops the side's gateway and returns what it recorded, after checking that every login
/// (`logins` of them, when given) was alice's, made upstream with the database account, and
/// that no password is in the recording or the log.
fn finish(side: Side, logins: Option<usize>) -> (Upstream, Vec<Value>) {
    let Side {
        upstream,
        mut gateway,
        ..
    } = side;
    std::thread::sleep(Duration::from_millis(300));
    gateway.stop();
    let events = gateway.recorded_events();
    let recording = serde_json::to_string(&events).expect("json");
    let log = gateway.log_text();
    for secret in [upstream.password(), GATEWAY_PASSWORD] {
        assert!(!recording.contains(secret), "{secret} in the recording");
        assert!(!log.contains(secret), "{secret} in the log");
    }
    let accepted: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "session.login")
        .collect();
    assert!(!accepted.is_empty(), "logins recorded");
    if let Some(logins) = logins {
        assert_eq!(accepted.len(), logins, "one login per run: {accepted:?}");
    }
    for login in accepted {
        assert_eq!(login["accepted"], true, "{login}");
        assert_eq!(login["user"], GATEWAY_USER, "{login}");
        assert_eq!(login["upstream_user"], upstream.user(), "{login}");
    }
    (upstream, events)
}

/// The recorded `command`s whose SQL starts with `sql_prefix`.
fn recorded<'e>(events: &'e [Value], command: &str, sql_prefix: &str) -> Vec<&'e Value> {
    events
        .iter()
        .filter(|e| {
            e["type"] == "statement"
                && e["command"] == command
                && e["sql"].as_str().is_some_and(|s| s.starts_with(sql_prefix))
        })
        .collect()
}

/// Checks that `count` 100k-row results were recorded as `command`s, each with its rows
/// counted.
fn assert_big_recorded(events: &[Value], command: &str, count: usize) {
    let big = recorded(events, command, BIG_PREFIX);
    assert_eq!(big.len(), count, "{command} of the 100k rows: {big:?}");
    for statement in big {
        assert_eq!(statement["rows"], 100_000, "{statement}");
    }
}

/// Checks the recording of `runs` scenario runs: each blob insert, each change of
/// database (`init_db` or a `USE` query) and each unknown-table error.
fn assert_scenario_recorded(events: &[Value], runs: usize, init_db: bool) {
    let blob_inserts = events
        .iter()
        .filter(|e| {
            e["sql"]
                .as_str()
                .is_some_and(|s| s.starts_with("INSERT INTO blobs"))
                && e["affected_rows"] == 1
        })
        .count();
    assert_eq!(blob_inserts, runs, "the blob inserts");
    let changes = if init_db {
        recorded(events, "init_db", "").len()
    } else {
        recorded(events, "query", "USE ").len()
    };
    assert!(changes >= runs, "changes of database recorded: {changes}");
    let errors = events
        .iter()
        .filter(|e| e["type"] == "statement" && e["error"]["code"] == 1146)
        .count();
    assert_eq!(errors, runs, "the unknown-table errors");
}

/// The `mariadb` CLI's scenario on one side with a blob of `blob.0` bytes.
fn run_cli(side: &Side, blob: (usize, &str)) {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), cli_script(blob.0)).expect("write the CLI script");
    let out = identical_through_gateway("mariadb CLI", side, |login| {
        let mut c = tollgate_tests::mariadb_command(login.port, login.user, login.password);
        c.arg("--ssl")
            .arg(format!("--ssl-ca={}", login.ca.display()))
            .args([
                "--ssl-verify-server-cert",
                "--max-allowed-packet=64M",
                "--force",
                "--batch",
            ])
            .stdin(std::fs::File::open(file.path()).expect("the script"));
        c
    });
    assert!(out.contains("\n100000\trow\n"), "100k rows");
    assert!(out.contains(&format!("{}\t{}", blob.0, blob.1)), "the blob");
    assert!(out.contains("clicompat_other"), "changed database");
}

#[test]
fn mariadb_cli() {
    for side in sides("mariadb_cli") {
        run_cli(&side, BLOB);
        let (upstream, events) = finish(side, Some(1));
        assert_scenario_recorded(&events, 1, true);
        assert_big_recorded(&events, "query", 1);
        // The SQL-level prepared statement's executions, each an insert.
        assert_eq!(recorded(&events, "query", "EXECUTE ins").len(), 3);
        record_compatibility(
            "mariadb CLI 10.11",
            upstream.name(),
            "text (SQL PREPARE/EXECUTE; DELIMITER multi-statement)",
            LOGIN,
            IDENTICAL,
        );
    }
}

/// The `mariadb` CLI's scenario: the shared shape in SQL (the CLI has no binary protocol:
/// parameters go through `PREPARE`/`EXECUTE`; `use` is `COM_INIT_DB`), with a blob of
/// `blob_len` bytes sent as a hex literal.
fn cli_script(blob_len: usize) -> String {
    let mut hex = String::with_capacity(blob_len * 2);
    for i in 0..blob_len {
        let _ = write!(hex, "{:02x}", i % 251);
    }
    format!(
        r#"SHOW SESSION STATUS LIKE 'Ssl_version';
CREATE DATABASE IF NOT EXISTS clicompat;
CREATE DATABASE IF NOT EXISTS clicompat_other;
use clicompat
DROP TABLE IF EXISTS t, digits, blobs;
CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(20), b BLOB, d DATETIME(6), n DECIMAL(12,3), j JSON);
CREATE TABLE digits (d INT PRIMARY KEY);
CREATE TABLE blobs (id INT PRIMARY KEY, b LONGBLOB);
INSERT INTO digits (d) VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9);
SELECT ROW_COUNT() AS digits;
PREPARE ins FROM 'INSERT INTO t (v, b, d, n, j) VALUES (?, ?, ?, ?, ?)';
SET @v = 'a', @b = 0x00ff10, @d = TIMESTAMP '2026-01-02 03:04:05.123456', @n = 12.345, @j = '{{"k": [1, 2]}}';
EXECUTE ins USING @v, @b, @d, @n, @j;
SET @v = NULL, @b = NULL, @d = NULL, @n = NULL, @j = NULL;
EXECUTE ins USING @v, @b, @d, @n, @j;
SET @v = 'blob', @b = UNHEX(REPEAT('000102030405060708090a0b0c0d0e0f', 64)), @d = TIMESTAMP '1999-12-31 23:59:59', @n = -1.5, @j = '[]';
EXECUTE ins USING @v, @b, @d, @n, @j;
DEALLOCATE PREPARE ins;
SELECT id, v, HEX(b), d, n, j FROM t ORDER BY id;
PREPARE sel FROM 'SELECT id, v, HEX(b), d, n, j FROM t WHERE id >= ? ORDER BY id';
SET @i = 1;
EXECUTE sel USING @i;
DEALLOCATE PREPARE sel;
DELIMITER //
SELECT 1 AS a; SELECT 'two' AS b, NULL AS c; SELECT COUNT(*) FROM t//
DELIMITER ;
{BIG_PREFIX}, 'row' AS tag FROM digits a CROSS JOIN digits b CROSS JOIN digits c CROSS JOIN digits e CROSS JOIN digits f WHERE a.d >= 0 ORDER BY n;
INSERT INTO blobs (id, b) VALUES (1, 0x{hex});
SELECT LENGTH(b), SHA2(b, 256) FROM blobs WHERE id = 1;
SELECT b FROM blobs WHERE id = 1;
START TRANSACTION;
INSERT INTO t (v) VALUES ('tx');
DELETE FROM t;
ROLLBACK;
SELECT COUNT(*) AS after_rollback FROM t;
use clicompat_other
SELECT DATABASE();
SELECT * FROM no_such_table;
SELECT 'still usable';
"#
    )
}

/// The Python drivers: (driver argument, interpreter, client, protocol). mysqlclient is
/// Debian's python3-mysqldb, for Debian's own interpreter; PyMySQL and mysqlclient have no
/// server-side prepared statements.
const PYTHON_DRIVERS: [(&str, &str, &str, &str); 4] = [
    (
        "pymysql",
        "python3",
        "PyMySQL 1.1",
        "text (client-side parameters)",
    ),
    (
        "connector-pure",
        "python3",
        "mysql-connector-python 26.10 (pure)",
        "text and binary (server-side prepared)",
    ),
    (
        "connector-c",
        "python3",
        "mysql-connector-python 26.10 (C extension)",
        "text and binary (server-side prepared)",
    ),
    (
        "mysqlclient",
        "/usr/bin/python3",
        "mysqlclient 1.4 (Debian python3-mysqldb)",
        "text (client-side parameters)",
    ),
];

/// One Python driver's scenario on one side with a blob of `blob.0` bytes.
fn run_python(side: &Side, driver: &str, python: &str, blob: (usize, &str)) {
    let script = workspace_root().join("tests/clients/python_scenario.py");
    let out = identical_through_gateway(driver, side, |login| {
        let mut c = Command::new(python);
        c.arg(&script)
            .arg(driver)
            .arg(login.port.to_string())
            .args([login.user, login.password])
            .arg(&login.ca)
            .args(["pycompat", &blob.0.to_string()]);
        c
    });
    let out: Value = serde_json::from_str(&out).expect("the scenario's JSON");
    assert_eq!(out["tls"], true, "{driver}");
    assert_eq!(out["big"][0], 100_000, "{driver}");
    assert_eq!(
        out["blob"],
        serde_json::json!([blob.0, blob.0, blob.1, true]),
        "{driver}"
    );
    assert_eq!(out["error"][0], 1146, "{driver}");
    assert_eq!(out["after_rollback"], serde_json::json!([[3]]), "{driver}");
    assert_eq!(
        out["database"],
        serde_json::json!([["pycompat_other"]]),
        "{driver}"
    );
}

#[test]
fn python_drivers() {
    for side in sides("python_drivers") {
        for (driver, python, _, _) in PYTHON_DRIVERS {
            run_python(&side, driver, python, BLOB);
        }
        let (upstream, events) = finish(side, Some(PYTHON_DRIVERS.len()));
        assert_scenario_recorded(&events, PYTHON_DRIVERS.len(), true);
        // Text: PyMySQL and mysqlclient; binary: both connectors.
        assert_big_recorded(&events, "query", 2);
        assert_big_recorded(&events, "stmt_execute", 2);
        assert!(
            recorded(&events, "stmt_execute", "INSERT INTO t")
                .iter()
                .all(|e| e["affected_rows"] == 1)
        );
        for (_, _, client, protocol) in PYTHON_DRIVERS {
            record_compatibility(client, upstream.name(), protocol, LOGIN, IDENTICAL);
        }
    }
}

#[test]
fn node_mysql2_query_and_execute() {
    let script = workspace_root().join("tests/clients/node/scenario.js");
    for side in sides("node_mysql2_query_and_execute") {
        let out = identical_through_gateway("node mysql2", &side, |login| {
            let mut c = Command::new("node");
            c.arg(&script)
                .arg(login.port.to_string())
                .args([login.user, login.password])
                .arg(&login.ca)
                .args(["nodecompat", &BLOB.0.to_string()]);
            c
        });
        let (len, sha) = BLOB;
        for expected in [
            format!(r#""blob":[{len},{len},"{sha}",true]"#),
            r#""big":[100000,["1","row"],["100000","row"],5000050000]"#.to_owned(),
            r#""error":[1146,"42S02"]"#.to_owned(),
            r#""tls":true"#.to_owned(),
        ] {
            assert!(out.contains(&expected), "{expected}: {out:.2000}");
        }
        let (upstream, events) = finish(side, Some(1));
        assert_scenario_recorded(&events, 1, false);
        assert_big_recorded(&events, "stmt_execute", 1);
        assert_big_recorded(&events, "query", 1);
        assert_eq!(
            recorded(&events, "query", "SELECT id, v, b, d, n, j FROM t")[0]["rows"],
            3
        );
        record_compatibility(
            "node mysql2 3.24",
            upstream.name(),
            "text (query) and binary (execute)",
            LOGIN,
            IDENTICAL,
        );
    }
}

#[test]
fn mariadb_connector_j() {
    let source = workspace_root().join("tests/clients/JdbcScenario.java");
    for side in sides("mariadb_connector_j") {
        let out = identical_through_gateway("Connector/J", &side, |login| {
            let mut c = Command::new("java");
            c.args(["-cp", "/usr/share/java/mariadb-java-client.jar"])
                .arg(&source)
                .arg(login.port.to_string())
                .args([login.user, login.password])
                .arg(&login.ca)
                .args(["jdbccompat", &BLOB.0.to_string()]);
            c
        });
        let (len, sha) = BLOB;
        for expected in [
            "tls=true",
            "big rows=100000 first=1|row last=100000|row sum=5000050000",
            &format!("blob length={len} read={len} sha256={sha} same=true"),
            "error=1146 state=42S02",
            "database: jdbccompat_other",
            "multi2: 3",
        ] {
            assert!(out.contains(expected), "{expected}: {out:.3000}");
        }
        let (upstream, events) = finish(side, Some(1));
        assert_scenario_recorded(&events, 1, true);
        assert_big_recorded(&events, "stmt_execute", 1);
        record_compatibility(
            "MariaDB Connector/J 2.7",
            upstream.name(),
            "text and binary (useServerPrepStmts, allowMultiQueries)",
            LOGIN,
            IDENTICAL,
        );
    }
}

/// sysbench's files for `--mysql-ssl=on`: it loads `cacert.pem`, `client-cert.pem` and
/// `client-key.pem` from its working directory (sysbench 1.0.20 takes no paths), so `dir`
/// gets the upstream's CA and a client certificate signed by it.
fn sysbench_tls_files(dir: &Path, tls: &Path) {
    std::fs::copy(tls.join("ca.pem"), dir.join("cacert.pem")).expect("copy the CA");
    let openssl = |args: &[&str]| {
        run("openssl", {
            let mut c = Command::new("openssl");
            c.args(args).current_dir(dir).stderr(Stdio::null());
            c
        })
    };
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=sysbench",
        "-keyout",
        "client-key.pem",
        "-out",
        "client.csr",
    ]);
    let ca = tls.join("ca.pem");
    let ca_key = tls.join("ca-key.pem");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "client.csr",
        "-CA",
        &ca.to_string_lossy(),
        "-CAkey",
        &ca_key.to_string_lossy(),
        "-CAcreateserial",
        "-days",
        "1",
        "-out",
        "client-cert.pem",
    ]);
}

#[test]
fn sysbench_oltp_read_write() {
    for side in sides("sysbench_oltp_read_write") {
        let dir = tempfile::tempdir().expect("temp dir");
        sysbench_tls_files(dir.path(), &side.upstream.tls_dir());
        let (_, err) = run("create the sysbench database", {
            let mut c = tollgate_tests::mariadb_command(side.port, GATEWAY_USER, GATEWAY_PASSWORD);
            c.args(["-e", "CREATE DATABASE IF NOT EXISTS sbtest"]);
            c
        });
        assert!(err.is_empty(), "{err}");
        let sysbench = |action: &str| {
            let mut c = Command::new("sysbench");
            c.current_dir(dir.path()).args([
                "oltp_read_write",
                "--db-driver=mysql",
                "--mysql-host=127.0.0.1",
                &format!("--mysql-port={}", side.port),
                &format!("--mysql-user={GATEWAY_USER}"),
                &format!("--mysql-password={GATEWAY_PASSWORD}"),
                "--mysql-db=sbtest",
                "--mysql-ssl=on",
                "--tables=2",
                "--table-size=2000",
                "--threads=4",
                "--time=3",
                "--report-interval=0",
                action,
            ]);
            run(&format!("sysbench {action}"), c).0
        };
        // Tables prepared through the gateway (DDL and bulk inserts), the workload through it.
        sysbench("prepare");
        let out = sysbench("run");
        let transactions = out
            .lines()
            .find(|l| l.trim_start().starts_with("transactions:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        assert!(transactions > 0, "{out}");
        // sysbench retries deadlocks (1213) and counts them as "ignored errors"; they happen
        // directly as well. Each must be in the recording with its error code.
        let ignored = out
            .lines()
            .find(|l| l.trim_start().starts_with("ignored errors:"))
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(usize::MAX);
        assert!(
            out.contains("reconnects:                          0 "),
            "{out}"
        );
        let (upstream, events) = finish(side, None);
        let recorded_errors = events
            .iter()
            .filter(|e| {
                e["type"] == "statement"
                    && [1213, 1020, 1205].contains(&e["error"]["code"].as_u64().unwrap_or(0))
            })
            .count();
        assert!(
            recorded_errors >= ignored,
            "{ignored} ignored errors, {recorded_errors} recorded"
        );
        let commits = events
            .iter()
            .filter(|e| e["type"] == "statement" && e["sql"] == "COMMIT")
            .count();
        assert!(
            commits as u64 >= transactions,
            "every transaction recorded ({commits} commits)"
        );
        record_compatibility(
            "sysbench 1.0.20 oltp_read_write",
            upstream.name(),
            "binary (server-side prepared), 4 threads, TLS",
            LOGIN,
            "runs; deadlock retries and every commit recorded",
        );
    }
}
