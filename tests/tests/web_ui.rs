//! The web viewer in a real browser: sessions recorded through a terminating gateway in
//! front of a real MariaDB are read back through the gateway's admin listener by headless
//! Debian chromium (`tests/ui/viewer.mjs`, playwright-core): single sign-on through the real
//! OIDC issuer (`tests/oidc/issuer.mjs`), the list and its filters, a session's header and
//! timeline, the replay step by step, checked against the recording; a non-auditor gets 403,
//! nobody unauthenticated sees a recording, and the admin token works as a header and as the
//! form. Also `tollgate ui` on its own over the same store. Runs without root.
#![expect(
    clippy::disallowed_types,
    reason = "synchronous test code: std::time::Instant is the right clock here"
)]

use std::{
    fmt::Write as _,
    io::{Read as _, Write as _},
    os::unix::fs::PermissionsExt as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use tollgate_tests::{
    DB_PASSWORD_ENV, GATEWAY_PASSWORD, GATEWAY_USER, Gateway, OidcIssuer, Upstream, free_port,
    mariadb_script, register_secret, run_capture, terminated_config, tollgate_bin, workspace_root,
};

/// The admin token the viewer is configured with.
const ADMIN_TOKEN: &str = "viewer-admin-token-5d1c0b7e";

/// One HTTP/1.1 request to 127.0.0.1:`port` (connection closed after it): status, headers
/// (lower-case names) and body.
fn http(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("header end");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// Waits until something accepts on 127.0.0.1:`port`.
fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `sql` as one session through the gateway with the mariadb CLI as alice, reading the
/// script from standard input (`--force`: on past failing statements); waits until `sessions`
/// sessions have ended.
fn session(gateway: &Gateway, port: u16, upstream: &Upstream, sql: &str, sessions: usize) {
    let ca = format!("--ssl-ca={}", upstream.ca().display());
    let (out, err) = mariadb_script(
        port,
        GATEWAY_USER,
        GATEWAY_PASSWORD,
        &[&ca, "--ssl-verify-server-cert"],
        sql,
    );
    assert!(
        !err.contains("Access denied for user"),
        "login: {out} {err}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while gateway.log_messages("session ended").len() < sessions {
        assert!(
            Instant::now() < deadline,
            "session {sessions} did not end:\n{}",
            gateway.log_text()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Runs `tests/ui/viewer.mjs` against the viewer at 127.0.0.1:`port` with `env`; its report.
/// `context` is added to the failure message (e.g. the gateway's log).
fn drive_browser(port: u16, env: &[(&str, &str)], context: &dyn Fn() -> String) -> Value {
    let output = run_capture(
        Command::new("node")
            .arg(workspace_root().join("tests/ui/viewer.mjs"))
            .env("VIEWER", format!("http://127.0.0.1:{port}"))
            .envs(env.iter().copied())
            .stdin(Stdio::null()),
    )
    .expect("run node tests/ui/viewer.mjs");
    assert!(
        output.status.success(),
        "viewer.mjs failed: {}\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        context()
    );
    serde_json::from_slice(&output.stdout).expect("the report is JSON")
}

/// The recorded statements of `session`, in order.
fn statements(events: &[Value], session: &str) -> Vec<Value> {
    let mut statements: Vec<Value> = events
        .iter()
        .filter(|e| e["session_id"] == session && e["type"] == "statement")
        .cloned()
        .collect();
    statements.sort_by_key(|e| e["seq"].as_u64());
    statements
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one recorded store, every page checked against it"
)]
fn auditors_find_and_replay_sessions_in_a_browser() {
    let ui = workspace_root().join("tests/ui");
    assert!(
        ui.join("node_modules/playwright-core/package.json")
            .exists(),
        "{}/node_modules is missing: run `cargo xtask setup` (npm ci of playwright-core)",
        ui.display()
    );
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: run `cargo xtask setup` (Debian's chromium)"
    );
    let upstream = Upstream::mariadb().expect("start MariaDB");
    let issuer = OidcIssuer::start().expect("start the OIDC issuer");
    let (out, err) = mariadb_script(
        upstream.port(),
        upstream.user(),
        upstream.password(),
        &[],
        "CREATE DATABASE webui;\nCREATE TABLE webui.fruit (id INT PRIMARY KEY, name VARCHAR(64));\n",
    );
    assert!(err.is_empty(), "setup: {out} {err}");

    let secrets = tempfile::tempdir().expect("tempdir");
    let token_file = secrets.path().join("admin-token");
    std::fs::write(&token_file, format!("{ADMIN_TOKEN}\n")).expect("write the token");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    register_secret(ADMIN_TOKEN);

    let port = free_port();
    let viewer_port = free_port();
    // alice (groups devs, oncall) may only use the database webui: `USE mysql` is refused.
    let config = terminated_config(port, "db", &upstream)
        .replace(
            "[[targets]]",
            "groups = [\"devs\", \"oncall\"]\n\n[[targets]]",
        )
        .replace(
            "groups = [\"*\"]",
            "groups = [\"*\"]\ndatabases = [\"webui\"]",
        )
        + &format!(
            r#"
[admin]
listen = "127.0.0.1:{viewer_port}"
auditor_group = "admins"
token_file = "{token}"
[admin.oidc]
issuer = "{issuer}"
client_id = "tollgate-viewer"
public_url = "http://127.0.0.1:{viewer_port}"

[[oidc]]
issuer = "{issuer}"
audiences = ["urn:test:api"]
"#,
            token = token_file.display(),
            issuer = issuer.url,
        );
    let mut gateway =
        Gateway::start_with_env(None, &config, &[(DB_PASSWORD_ENV, upstream.password())])
            .expect("start the gateway");
    wait_for_port(viewer_port);

    session(
        &gateway,
        port,
        &upstream,
        "INSERT INTO webui.fruit VALUES (1, 'apple'), (2, '<b>kiwi</b>');\n\
         SELECT id, name FROM webui.fruit ORDER BY id;\n\
         SELECT * FROM webui.missing;\n\
         USE mysql;\n\
         UPDATE webui.fruit SET name = 'pear' WHERE id = 1",
        1,
    );
    session(&gateway, port, &upstream, "SELECT 'other' AS word", 2);
    // The writer thread stores the last events shortly after the session's end is logged.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut events = gateway.recorded_events();
    while events
        .iter()
        .filter(|e| e["type"] == "session.ended")
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "two sessions not stored");
        std::thread::sleep(Duration::from_millis(50));
        events = gateway.recorded_events();
    }
    let recorded = events
        .iter()
        .find(|e| {
            e["type"] == "statement" && e["sql"] == "SELECT id, name FROM webui.fruit ORDER BY id"
        })
        .and_then(|e| e["session_id"].as_str())
        .expect("the fruit session was recorded")
        .to_owned();
    let other = events
        .iter()
        .find(|e| e["type"] == "statement" && e["sql"] == "SELECT 'other' AS word")
        .and_then(|e| e["session_id"].as_str())
        .expect("the other session was recorded")
        .to_owned();

    // Plain HTTP: nothing without a sign-in; the bearer token reads; metrics served here.
    let (status, head, body) = http(viewer_port, &format!("/sessions/{recorded}"), &[]);
    assert_eq!(status, 303, "{head}");
    assert!(head.contains("location: /login"), "{head}");
    assert!(!body.contains("fruit"), "{body}");
    let (status, head, body) = http(
        viewer_port,
        &format!("/sessions/{recorded}"),
        &[("Authorization", "Bearer wrong-token")],
    );
    assert_eq!(status, 401, "{head}");
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    assert!(
        !body.contains("fruit") && !body.contains(&recorded),
        "{body}"
    );
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let (status, head, body) = http(
        viewer_port,
        &format!("/sessions/{recorded}"),
        &[("Authorization", &bearer)],
    );
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("content-security-policy"), "{head}");
    assert!(
        body.contains("SELECT id, name FROM webui.fruit ORDER BY id"),
        "{body}"
    );
    assert!(
        body.contains("&lt;b&gt;kiwi&lt;/b&gt;") && !body.contains("<b>kiwi"),
        "recorded values are escaped: {body}"
    );
    let (status, _, body) = http(viewer_port, "/metrics", &[]);
    assert_eq!(status, 200);
    assert!(body.contains("tollgate_"), "{body}");
    // Filters through the query string, as the list form sends them.
    let auth = [("Authorization", bearer.as_str())];
    let (status, _, body) = http(viewer_port, "/sessions?kind=refused&since=1h", &auth);
    assert_eq!(status, 200);
    assert!(body.contains(&recorded) && !body.contains(&other), "{body}");
    let (status, _, body) = http(viewer_port, "/sessions?user=bob", &auth);
    assert_eq!(status, 200);
    assert!(
        !body.contains(&recorded) && body.contains("0 session(s)"),
        "{body}"
    );
    let (status, _, body) = http(viewer_port, "/sessions?kind=drop", &auth);
    assert_eq!(status, 400);
    assert!(
        body.contains("kind &quot;drop&quot; is not a statement kind"),
        "{body}"
    );
    for bad in [
        "/sessions/not-a-uuid",
        "/sessions/..%2F..%2Fetc/replay",
        "/nowhere",
    ] {
        let (status, _, body) = http(viewer_port, bad, &auth);
        assert_eq!(status, 404, "{bad}: {body}");
    }

    // The browser.
    let screenshot = workspace_root().join("target/web-ui/replay.png");
    std::fs::create_dir_all(screenshot.parent().expect("parent")).expect("mkdir target/web-ui");
    let screenshot_path = screenshot.to_string_lossy().into_owned();
    let report = drive_browser(
        viewer_port,
        &[
            ("SESSION", &recorded),
            ("CONTAINS", "FRUIT"),
            ("AUDITOR", "user-alice"),
            ("OTHER", "user-bob"),
            ("TOKEN", ADMIN_TOKEN),
            ("SCREENSHOT", &screenshot_path),
        ],
        &|| format!("gateway log:\n{}", gateway.log_text()),
    );
    println!("screenshot of the replay: {}", screenshot.display());
    assert!(screenshot.exists());

    let unauthenticated = &report["unauthenticated"];
    assert!(
        unauthenticated["url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/login")),
        "{unauthenticated}"
    );
    assert_eq!(unauthenticated["mentions_session"], false);
    assert_eq!(report["signed_in_as"], "user-alice", "{report}");

    let all = strings(&report["all_sessions"]);
    assert!(all.contains(&recorded) && all.contains(&other), "{all:?}");
    assert_eq!(
        strings(&report["filtered_sessions"]),
        std::slice::from_ref(&recorded),
        "contains=FRUIT: {report}"
    );
    let bad = report["bad_filter"].as_str().expect("bad filter message");
    assert!(
        bad.contains("since \"yesterday\" is not a time") && bad.contains("RFC 3339"),
        "{bad}"
    );

    let header = report["header"].as_str().expect("header");
    for needle in [
        GATEWAY_USER,
        "devs, oncall",
        "password",
        "db (",
        "127.0.0.1",
        "TLS",
        "client: TLSv1",
        "closed",
    ] {
        assert!(
            header.contains(needle),
            "{needle:?} not in the header: {header}"
        );
    }

    let recorded_statements = statements(&events, &recorded);
    let timeline = report["timeline"].as_array().expect("timeline");
    assert_eq!(timeline.len(), recorded_statements.len(), "{timeline:?}");
    for (shown, st) in timeline.iter().zip(&recorded_statements) {
        assert_eq!(shown["seq"], st["seq"]);
        assert_eq!(shown["sql"], st["sql"].as_str().unwrap_or(""), "{shown}");
        assert!(
            shown["duration"]
                .as_str()
                .is_some_and(|d| d.ends_with(" ms")),
            "{shown}"
        );
    }
    let row = |sql: &str| {
        timeline
            .iter()
            .find(|r| r["sql"] == sql)
            .unwrap_or_else(|| panic!("{sql} not in the timeline"))
    };
    assert_eq!(
        strings(&row("SELECT * FROM webui.missing")["marks"]),
        ["error"]
    );
    assert!(
        row("SELECT * FROM webui.missing")["outcome"]
            .as_str()
            .is_some_and(|o| o.contains("ERROR 1146")),
        "{timeline:?}"
    );
    // `USE mysql` (the CLI sends COM_INIT_DB), refused by the gateway's policy.
    let refused = recorded_statements
        .iter()
        .find(|st| {
            st["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("Tollgate:"))
        })
        .unwrap_or_else(|| panic!("no refusal recorded: {recorded_statements:#?}"));
    let refused_row = timeline
        .iter()
        .find(|r| r["seq"] == refused["seq"])
        .expect("the refusal in the timeline");
    assert_eq!(strings(&refused_row["marks"]), ["refused"], "{refused_row}");
    assert!(
        row("SELECT id, name FROM webui.fruit ORDER BY id")["outcome"]
            .as_str()
            .is_some_and(|o| o.starts_with("2 row(s)")),
        "{timeline:?}"
    );
    assert!(
        row("UPDATE webui.fruit SET name = 'pear' WHERE id = 1")["outcome"]
            .as_str()
            .is_some_and(|o| o.contains("1 row(s) affected")),
        "{timeline:?}"
    );

    // The replay: each statement's request, then its response, in order.
    let replay = report["replay"].as_array().expect("replay");
    assert_eq!(replay.len(), recorded_statements.len() * 2, "{replay:?}");
    for (i, st) in recorded_statements.iter().enumerate() {
        let (request, response) = (&replay[2 * i], &replay[2 * i + 1]);
        for (step, phase) in [(request, "request"), (response, "response")] {
            assert_eq!(step["seq"], st["seq"], "{step}");
            assert_eq!(step["phase"], phase, "{step}");
            assert_eq!(step["request"], st["sql"].as_str().unwrap_or(""), "{step}");
            assert_eq!(
                step["injected"], 0,
                "markup from the recording rendered: {step}"
            );
        }
        assert!(
            request["response"]
                .as_str()
                .is_some_and(|r| r.contains("Next shows")),
            "{request}"
        );
        let shown = response["response"].as_str().unwrap_or("");
        if let Some(error) = st["error"].as_object() {
            assert!(
                shown.contains(&format!("ERROR {}", error["code"])),
                "{shown}"
            );
        }
        if st["sql"] == "SELECT id, name FROM webui.fruit ORDER BY id" {
            let cells: Vec<String> = st["result"][0]["rows"]
                .as_array()
                .expect("recorded rows")
                .iter()
                .flat_map(strings)
                .collect();
            assert_eq!(cells, ["1", "apple", "2", "<b>kiwi</b>"]);
            assert_eq!(strings(&response["cells"]), cells, "{response}");
        }
    }
    let last = recorded_statements.last().expect("statements");
    assert_eq!(report["after_prev"]["seq"], last["seq"]);
    assert_eq!(report["after_prev"]["phase"], "request");

    assert_eq!(report["unknown_session"]["status"], 404, "{report}");
    assert!(
        report["signed_out"]["url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/login")),
        "{report}"
    );

    let denied = &report["non_auditor"];
    assert!(
        denied["statuses"]
            .as_array()
            .is_some_and(|s| s.contains(&Value::from(403))),
        "{denied}"
    );
    assert!(
        denied["text"]
            .as_str()
            .is_some_and(|t| t.contains("user-bob is not in the auditor group admins")),
        "{denied}"
    );
    assert_eq!(denied["mentions_session"], false);
    assert!(
        denied["list_url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/login")),
        "{denied}"
    );

    assert_eq!(report["wrong_token"]["status"], 401, "{report}");
    assert_eq!(report["wrong_token"]["text"], "wrong admin token");
    assert!(
        report["token_login"]["url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/sessions")),
        "{report}"
    );
    assert_eq!(report["token_login"]["sessions"], 2);
    let log = gateway.log_text();
    assert!(log.contains("viewer sign-in refused"), "{log}");
    assert!(log.contains("recording viewed"), "{log}");
    gateway.stop();

    // `tollgate ui` on its own, over the same store, as a confidential OIDC client.
    let ui_port = free_port();
    let secret_file = secrets.path().join("viewer-secret");
    std::fs::write(&secret_file, "viewer-secret-8f2e\n").expect("write the client secret");
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    register_secret("viewer-secret-8f2e");
    let ui_config = secrets.path().join("ui.toml");
    std::fs::write(
        &ui_config,
        std::fs::read_to_string(&gateway.config_path)
            .expect("the gateway's configuration")
            .replace(
                "client_id = \"tollgate-viewer\"",
                &format!(
                    "client_id = \"tollgate-viewer-confidential\"\nclient_secret_file = \"{}\"",
                    secret_file.display()
                ),
            )
            .replace(
                &format!("public_url = \"http://127.0.0.1:{viewer_port}\""),
                &format!("public_url = \"http://127.0.0.1:{ui_port}\""),
            ),
    )
    .expect("write ui.toml");
    let ui_log = secrets.path().join("ui.log");
    let mut standalone = Command::new(tollgate_bin())
        .args(["ui", "--config"])
        .arg(&ui_config)
        .args(["--listen", &format!("127.0.0.1:{ui_port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&ui_log).expect("ui.log"))
        .spawn()
        .expect("start tollgate ui");
    wait_for_port(ui_port);
    let (status, _, body) = http(ui_port, "/sessions", &[]);
    let (listed_status, _, listed) = http(ui_port, "/sessions", &[("Authorization", &bearer)]);
    let (metrics_status, _, _) = http(ui_port, "/metrics", &[]);
    let signed_in = drive_browser(
        ui_port,
        &[
            ("SIGN_IN_ONLY", "1"),
            ("SESSION", &recorded),
            ("AUDITOR", "user-alice"),
        ],
        &|| std::fs::read_to_string(&ui_log).unwrap_or_default(),
    );
    let _ = standalone.kill();
    let _ = standalone.wait();
    assert_eq!(status, 303);
    assert!(!body.contains(&recorded));
    assert_eq!(listed_status, 200);
    assert!(
        listed.contains(&recorded) && listed.contains(&other),
        "{listed}"
    );
    assert_eq!(metrics_status, 404, "no recorder without the gateway");
    assert_eq!(signed_in["signed_in_as"], "user-alice", "{signed_in}");
    let all = strings(&signed_in["all_sessions"]);
    assert!(all.contains(&recorded) && all.contains(&other), "{all:?}");
    let log = std::fs::read_to_string(&ui_log).unwrap_or_default();
    assert!(
        !log.contains("viewer-secret-8f2e") && !log.contains(ADMIN_TOKEN),
        "{log}"
    );
}
