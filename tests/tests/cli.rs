//! The `tollgate` command line: clear one-line errors for bad input. Runs without root.

use std::process::Command;

use tollgate_tests::{run_capture, tollgate_bin};

const GOOD: &str = r#"[listener]
addresses = ["127.0.0.1:15306"]

[interception]
cgroup = "/sys/fs/cgroup/unified/tollgate"

[[targets]]
name = "db"
address = "198.18.0.0/24"
port = 3306
"#;

fn check_config(text: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tollgate.toml");
    std::fs::write(&path, text).expect("write config");
    let output =
        run_capture(Command::new(tollgate_bin()).arg("check-config").arg(&path)).expect("run");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_config_accepts_a_good_file() {
    let (ok, stdout, stderr) = check_config(GOOD);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("OK (1 target(s)"), "{stdout}");
}

#[test]
fn check_config_names_the_bad_field_and_line() {
    let (ok, _, stderr) = check_config(&GOOD.replace("198.18.0.0/24", "198.18.0.0/33"));
    assert!(!ok);
    assert!(
        stderr.contains(
            "tollgate.toml:9:11: targets[0].address: invalid IP prefix \"198.18.0.0/33\""
        ),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");

    let (ok, _, stderr) =
        check_config(&GOOD.replace("[interception]", "[interception]\nmdoe = \"off\""));
    assert!(!ok);
    assert!(stderr.contains("tollgate.toml:5:1: interception.mdoe: unknown field `mdoe`, expected one of `mode`, `cgroup`, `gateway_cgroup`, `pin_path`, `routed`, `egress`"), "{stderr}");

    let (ok, _, stderr) = check_config(&GOOD.replace("port = 3306", "port = 70000"));
    assert!(!ok);
    assert!(
        stderr.contains("tollgate.toml:10:8: targets[0].port"),
        "{stderr}"
    );
}

#[test]
fn check_config_reports_a_missing_file() {
    let output = run_capture(
        Command::new(tollgate_bin()).args(["check-config", "/nonexistent/tollgate.toml"]),
    )
    .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/nonexistent/tollgate.toml: cannot read"),
        "{stderr}"
    );
}

#[test]
fn run_without_the_managed_cgroup_says_to_start_the_gateway() {
    let output = run_capture(Command::new(tollgate_bin()).args([
        "run",
        "--cgroup",
        "/sys/fs/cgroup/unified/tollgate-does-not-exist",
        "--",
        "true",
    ]))
    .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("does not exist: start the gateway first"),
        "{stderr}"
    );
}

#[test]
fn sessions_list_on_a_missing_store_is_a_clear_error() {
    let output = run_capture(Command::new(tollgate_bin()).args([
        "sessions",
        "list",
        "--store",
        "/nonexistent/rec",
    ]))
    .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("recording store /nonexistent/rec: no recording here"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
}

#[test]
fn sessions_show_with_an_unknown_id_says_how_to_find_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("events.jsonl"), "").expect("empty store");
    let output = run_capture(
        Command::new(tollgate_bin())
            .args(["sessions", "show", "0123", "--store"])
            .arg(dir.path()),
    )
    .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no recorded session matches \"0123\""),
        "{stderr}"
    );
    assert!(stderr.contains("tollgate sessions list"), "{stderr}");
}
