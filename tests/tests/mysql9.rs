//! Oracle MySQL 9.7 as the upstream (`caching_sha2_password` only, no `mysql_native_password`):
//! the gateway terminates alice's login and logs in with its own `caching_sha2_password` account, first
//! through full authentication with the server's RSA key (empty cache), then the fast path;
//! one scenario gives identical output directly and through the gateway. Needs root (MySQL
//! runs in a Debian sid chroot made by `cargo xtask setup`).

use std::time::Duration;

use tollgate_tests::{
    Gateway, Mysql9, free_port, hash_password, mariadb_script, record_compatibility, require_root,
};

const SCENARIO: &str = "
CREATE DATABASE IF NOT EXISTS compat;
USE compat;
DROP TABLE IF EXISTS t;
CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(20), b BLOB, d DATETIME, n DECIMAL(10,2), j JSON);
INSERT INTO t (v, b, d, n, j) VALUES ('a', 0x00ff10, '2026-01-02 03:04:05', 12.34, '{\"k\": [1, 2]}'), (NULL, NULL, NULL, NULL, NULL);
SELECT * FROM t ORDER BY id;
SET SESSION cte_max_recursion_depth = 200000;
WITH RECURSIVE s (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 100000) SELECT n, n * 2 FROM s;
START TRANSACTION;
DELETE FROM t;
ROLLBACK;
SELECT COUNT(*) FROM t;
SELECT * FROM no_such_table;
SELECT CURRENT_USER();
";

#[test]
fn mysql9_through_the_gateway_with_its_caching_sha2_login() {
    if !require_root("mysql9_through_the_gateway_with_its_caching_sha2_login") {
        return;
    }
    let db = Mysql9::start(free_port()).expect("start MySQL 9");
    let port = free_port();
    let config = format!(
        r#"
[listener]
addresses = ["127.0.0.1:{port}"]
fallback_target = "mysql9"
[interception]
mode = "off"
[recording]
store = "{{store}}"
[[identities]]
user = "alice"
password_hash = "{}"
[[targets]]
name = "mysql9"
address = "127.0.0.1"
port = {}
[[targets.allow]]
groups = ["*"]
[targets.login]
user = "sha2"
password_env = "TOLLGATE_TEST_MYSQL9_PASSWORD"
# Without TLS, to test the RSA key exchange (clients.rs covers verified TLS to MySQL 9).
[targets.tls]
mode = "disabled"
"#,
        hash_password("alice-pw"),
        db.port
    );
    let mut gateway = Gateway::start_with_env(
        None,
        &config,
        &[("TOLLGATE_TEST_MYSQL9_PASSWORD", "sha2-pw")],
    )
    .expect("gateway");

    // First through the gateway: MySQL's cache is empty, so the gateway's login takes the full
    // authentication path with the server's RSA key; the direct run then fills nothing new.
    let (via_out, via_err) = mariadb_script(port, "alice", "alice-pw", &[], SCENARIO);
    let (direct_out, direct_err) = mariadb_script(db.port, "sha2", "sha2-pw", &[], SCENARIO);
    assert!(
        direct_out.contains("100000\t200000"),
        "{direct_out}{direct_err}"
    );
    assert!(direct_err.contains("ERROR 1146"), "{direct_err}");
    assert_eq!(via_err, direct_err);
    assert!(
        via_out == direct_out,
        "identical output through the gateway"
    );
    assert!(
        via_out.contains("sha2@%"),
        "the gateway's account: {via_out}"
    );
    // Again: the fast path (0x01 0x03) now that the server has the account cached.
    let (again, err) = mariadb_script(port, "alice", "alice-pw", &[], SCENARIO);
    assert_eq!(again, direct_out, "{err}");
    record_compatibility(
        "mariadb CLI 10.11",
        "MySQL 9.7",
        "text (100k rows)",
        "gateway: client TLS; upstream caching_sha2 with RSA, then fast path",
        "identical",
    );

    std::thread::sleep(Duration::from_millis(300));
    gateway.stop();
    let events = gateway.recorded_events();
    let recursive = events
        .iter()
        .find(|e| {
            e["type"] == "statement"
                && e["sql"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("WITH RECURSIVE"))
        })
        .expect("recorded");
    assert_eq!(recursive["rows"], 100_000);
    assert!(
        !serde_json::to_string(&events)
            .expect("json")
            .contains("sha2-pw")
    );
    assert!(!gateway.log_text().contains("sha2-pw"));
}
