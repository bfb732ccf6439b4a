//! Real Python drivers through the MySQL-aware relay: PyMySQL (text protocol) and
//! mysql-connector-python (pure Python; text protocol, and binary protocol with server-side
//! prepared statements). Each runs `tests/clients/python_scenario.py` straight against MariaDB
//! and through the gateway; the canonical JSON results must be identical, and the prepared
//! statements must be recorded with their SQL. Runs without root (`cargo xtask setup`
//! installs the drivers).

use std::{process::Command, time::Duration};

use serde_json::Value;
use tollgate_tests::{Gateway, MariaDb, free_port, workspace_root};

fn scenario(driver: &str, port: u16) -> String {
    let script = workspace_root().join("tests/clients/python_scenario.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg(driver)
        .arg(port.to_string())
        .output()
        .expect("run python3 (installed by `cargo xtask setup`)");
    assert!(
        output.status.success(),
        "{driver} on port {port} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn gateway_for(db: &MariaDb) -> (Gateway, u16) {
    let port = free_port();
    let gateway = Gateway::start(
        None,
        &format!(
            r#"
[listener]
addresses = ["127.0.0.1:{port}"]
fallback_target = "db"
[interception]
mode = "off"
[recording]
store = "{{store}}"
[[targets]]
name = "db"
address = "127.0.0.1"
port = {}
"#,
            db.port
        ),
    )
    .expect("start gateway");
    (gateway, port)
}

#[test]
fn python_drivers_get_identical_results_through_the_gateway() {
    let db = MariaDb::start(None, "127.0.0.1", free_port()).expect("start MariaDB");
    let (mut gateway, port) = gateway_for(&db);
    for driver in ["pymysql", "connector", "connector-prepared"] {
        let direct = scenario(driver, db.port);
        let through = scenario(driver, port);
        assert!(
            direct.contains("\"big\": [100000, [1], [100000]]"),
            "{driver}: {direct}"
        );
        assert!(direct.contains("\"error\": 1146"), "{driver}: {direct}");
        assert_eq!(through, direct, "{driver}: identical through the gateway");
    }
    std::thread::sleep(Duration::from_millis(300));
    gateway.stop();

    let events = gateway.recorded_events();
    let prepares: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "statement" && e["command"] == "stmt_prepare")
        .collect();
    assert!(!prepares.is_empty(), "server-side prepares recorded");
    let execute = events
        .iter()
        .find(|e| {
            e["type"] == "statement"
                && e["command"] == "stmt_execute"
                && e["sql"] == "SELECT seq FROM seq_1_to_100000"
        })
        .expect("the execute is recorded with the SQL it was prepared from");
    assert_eq!(execute["rows"], 100_000);
    assert!(execute["statement_id"].is_u64());
    let insert = events
        .iter()
        .find(|e| {
            e["type"] == "statement"
                && e["command"] == "stmt_execute"
                && e["sql"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("INSERT INTO t"))
        })
        .expect("prepared insert recorded");
    assert_eq!(insert["affected_rows"], 1);
    let logins = events
        .iter()
        .filter(|e| e["type"] == "session.login")
        .count();
    assert_eq!(logins, 3, "one login per driver run");
    let serialized = serde_json::to_string(&events).expect("json");
    assert!(!serialized.contains("app-pw"));
}
