//! The compressed protocol on the client's leg of a terminating gateway (the database's leg
//! stays uncompressed): zstd and zlib with Oracle's MySQL 9.7 client (root: it runs in the
//! MySQL 9 chroot), zlib with mysql-connector-python (pure and C extension). Each moves a few
//! megabytes (100k rows, multi-megabyte values) and must print exactly what a run straight
//! against MariaDB prints; the gateway logs the algorithm it negotiated. The `mariadb` CLI's
//! `--compress` is covered by `login.rs`.

use std::process::Command;

use serde_json::Value;
use tollgate_tests::{
    GATEWAY_PASSWORD, GATEWAY_USER, Gateway, MYSQL9_CHROOT, Upstream, record_compatibility,
    require_root, run_capture,
};

/// 100k rows, a 3.2 MB value of hex digits (compresses about 2:1) and a 5 MB repetitive one.
const SCENARIO: &str = "\
SET SESSION group_concat_max_len = 67108864, max_recursive_iterations = 200000;
WITH RECURSIVE s (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 100000)
  SELECT n, n * 2, MD5(n), IF(n % 7 = 0, NULL, REPEAT('ab', n % 40)) FROM s;
WITH RECURSIVE s (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 100000)
  SELECT GROUP_CONCAT(MD5(n) ORDER BY n SEPARATOR '') FROM s;
SELECT REPEAT('tollgate-', 600000), LENGTH(REPEAT('tollgate-', 600000));
SELECT 1 + 1;
";

/// Log lines of the gateway saying which compression the client's leg negotiated.
fn compressed_sessions(gateway: &Gateway) -> Vec<Value> {
    gateway.log_messages("client leg compressed")
}

/// The MySQL 9.7 `mysql` client from the chroot (it shares the network namespace), `-N -B`
/// output, running [`SCENARIO`]; returns stdout and stderr.
fn mysql9_client(port: u16, user: &str, password: &str, extra: &[&str]) -> (String, String) {
    let output = run_capture(
        Command::new("chroot")
            .args([MYSQL9_CHROOT, "mysql", "--no-defaults", "-h", "127.0.0.1"])
            .args(["-P", &port.to_string(), "-u", user])
            .arg(format!("-p{password}"))
            .args(["--max-allowed-packet=64M", "-N", "-B"])
            .args(extra)
            .args(["-e", SCENARIO]),
    )
    .expect("the MySQL 9 client");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn mysql9_client_with_zstd_and_zlib() {
    if !require_root("mysql9_client_with_zstd_and_zlib") {
        return;
    }
    let upstream = Upstream::mariadb().expect("start MariaDB");
    let (gateway, port) = Gateway::terminating(&upstream).expect("start the gateway");

    let (direct, direct_err) = mysql9_client(
        upstream.port(),
        upstream.user(),
        upstream.password(),
        &["--ssl-mode=DISABLED"],
    );
    assert!(direct.lines().count() > 100_000, "{direct_err}");
    assert!(
        direct.len() > 8_000_000,
        "a few megabytes: {}",
        direct.len()
    );

    let runs = [
        ("zstd", 7, "--zstd-compression-level=7"),
        ("zlib", 6, "--zstd-compression-level=3"),
    ];
    for (i, (algorithm, level, level_flag)) in runs.into_iter().enumerate() {
        let (out, err) = mysql9_client(
            port,
            GATEWAY_USER,
            GATEWAY_PASSWORD,
            &[
                "--ssl-mode=REQUIRED",
                &format!("--compression-algorithms={algorithm}"),
                level_flag,
            ],
        );
        assert!(
            out == direct,
            "{algorithm}: identical output through the gateway ({} vs {} bytes): {err}",
            out.len(),
            direct.len()
        );
        let sessions = compressed_sessions(&gateway);
        assert_eq!(sessions.len(), i + 1, "{}", gateway.log_text());
        let session = &sessions[i];
        assert_eq!(session["compression"], algorithm, "{session}");
        assert_eq!(session["level"], level, "{session}");
        record_compatibility(
            "mysql CLI 9.7",
            upstream.name(),
            &format!("text, {algorithm} compression (100k rows, 5 MB value)"),
            "gateway: client TLS, identity table; upstream TLS",
            "identical",
        );
    }
}

/// mysql-connector-python with `compress=True` (zlib), pure Python and C extension: the same
/// rows and values as straight against MariaDB.
#[test]
fn python_connector_with_zlib() {
    let upstream = Upstream::mariadb().expect("start MariaDB");
    let (gateway, port) = Gateway::terminating(&upstream).expect("start the gateway");
    let run = |port: u16, user: &str, password: &str, pure: bool, compress: bool| {
        let script = format!(
            r#"
import hashlib, mysql.connector
c = mysql.connector.connect(host="127.0.0.1", port={port}, user="{user}", password="{password}",
                            use_pure={pure}, compress={compress}, ssl_disabled={direct})
cur = c.cursor()
digest = hashlib.sha256()
rows = 0
for statement in """{SCENARIO}""".split(";"):
    if statement.strip():
        cur.execute(statement)
        if cur.with_rows:
            for row in cur.fetchall():
                rows += 1
                digest.update(repr(row).encode())
print(rows, digest.hexdigest())
"#,
            pure = if pure { "True" } else { "False" },
            compress = if compress { "True" } else { "False" },
            direct = if compress { "False" } else { "True" },
        );
        let output = run_capture(
            Command::new("python3")
                .args(["-c", &script])
                .env("LD_LIBRARY_PATH", connector_vendor_libs()),
        )
        .expect("python");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    for (i, (variant, pure)) in [("pure", true), ("C extension", false)]
        .into_iter()
        .enumerate()
    {
        let direct = run(
            upstream.port(),
            upstream.user(),
            upstream.password(),
            pure,
            false,
        );
        assert!(direct.starts_with("100003 "), "{direct}");
        let via = run(port, GATEWAY_USER, GATEWAY_PASSWORD, pure, true);
        assert_eq!(via, direct, "{variant}: identical through the gateway");
        let sessions = compressed_sessions(&gateway);
        assert_eq!(sessions.len(), i + 1, "{}", gateway.log_text());
        assert_eq!(sessions[i]["compression"], "zlib");
        record_compatibility(
            &format!("mysql-connector-python 26.10 ({variant})"),
            upstream.name(),
            "text, zlib compression (100k rows, 5 MB value)",
            "gateway: client TLS, identity table; upstream TLS",
            "identical",
        );
    }
}

/// Where mysql-connector-python keeps the client libraries its C extension needs.
fn connector_vendor_libs() -> String {
    let output = run_capture(Command::new("python3").args([
        "-c",
        "import mysql, os; print(os.path.join(list(mysql.__path__)[0], 'vendor'))",
    ]))
    .expect("python");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}
