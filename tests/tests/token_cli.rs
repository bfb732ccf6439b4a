//! Getting a token is one command: the real `tollgate login` and `tollgate token` against a
//! real issuer (`tests/oidc/issuer.mjs`): the client-credentials grant, the
//! authorization-code flow with PKCE driven by a scripted browser (`tests/oidc/browser.py` as
//! `$BROWSER`), the device flow on a host without a display, the 0600 cache and its reuse
//! (the issuer counts token requests), refresh of short-lived tokens, the option file read by
//! the `mariadb` CLI, PyMySQL and mysql-connector-python logging in to a real gateway, and
//! one-line errors that never show a secret. Runs without root.
#![allow(
    clippy::disallowed_types,
    reason = "synchronous test code: std::time::Instant is the right clock here"
)]

use std::{
    io::{BufRead as _, BufReader},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use tollgate_tests::{
    DB_PASSWORD_ENV, Gateway, OidcIssuer, Upstream, free_port, run_capture, terminated_config,
    tollgate_bin, workspace_root,
};

const AGENT_SECRET: &str = "agent-1-secret";
/// `agent-1:agent-1-secret` in an HTTP Basic header (the default `--client-auth basic`).
const AGENT_BASIC: &str = "YWdlbnQtMTphZ2VudC0xLXNlY3JldA";

/// A gateway terminating logins for a fresh MariaDB, trusting `issuer` for access tokens
/// (`urn:test:api`) and ID tokens of `tollgate-cli`; returns it, its port and the CA clients
/// verify it with.
fn gateway(issuer: &OidcIssuer) -> (Upstream, Gateway, u16, PathBuf) {
    let upstream = Upstream::mariadb().expect("start MariaDB");
    let port = free_port();
    let config = format!(
        "{}\n[[oidc]]\nissuer = \"{}\"\naudiences = [\"urn:test:api\", \"tollgate-cli\"]\n",
        terminated_config(port, "db", &upstream),
        issuer.url
    );
    let gateway = Gateway::start_with_env(None, &config, &[(DB_PASSWORD_ENV, upstream.password())])
        .expect("start the gateway");
    let ca = upstream.ca();
    (upstream, gateway, port, ca)
}

/// `tollgate ARGS` with its own cache directory, no display, no browser, the agent's secret
/// in `AGENT_SECRET`; extra environment from `env`.
fn tollgate(cache: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(tollgate_bin());
    command
        .args(args)
        .env("XDG_CACHE_HOME", cache)
        .env("AGENT_SECRET", AGENT_SECRET)
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("BROWSER");
    for (k, v) in env {
        command.env(k, v);
    }
    run_capture(&mut command).expect("run tollgate")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).trim().to_owned()
}

fn agent_args<'a>(issuer: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "token",
        "--client-credentials",
        "--issuer",
        issuer,
        "--client-id",
        "agent-1",
        "--client-secret-env",
        "AGENT_SECRET",
        "--scope",
        "api:read",
    ];
    args.extend_from_slice(extra);
    args
}

/// The files in the cache directory `XDG_CACHE_HOME/tollgate`.
fn cache_files(cache: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(cache.join("tollgate"))
        .expect("cache directory")
        .map(|e| e.expect("entry").path())
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").mode() & 0o777
}

/// The `mariadb` CLI reading the option file (and nothing but where to connect).
fn mariadb_with_option_file(port: u16, option_file: &Path, sql: &str) -> (bool, String, String) {
    let output = run_capture(
        Command::new("mariadb")
            .arg(format!("--defaults-extra-file={}", option_file.display()))
            .args(["-h", "127.0.0.1", "-P", &port.to_string(), "-u", "agent"])
            .args(["-N", "-B", "-e", sql])
            .env_remove("MYSQL_PWD"),
    )
    .expect("mariadb client");
    (output.status.success(), stdout(&output), stderr(&output))
}

/// PyMySQL (`read_default_file`) or mysql-connector-python (`option_files`) with the option
/// file; `CURRENT_USER()`.
fn python_with_option_file(driver: &str, port: u16, option_file: &Path, ca: &Path) -> String {
    let script = match driver {
        "pymysql" => {
            r#"
import sys, pymysql
conn = pymysql.connect(host="127.0.0.1", port=int(sys.argv[1]), user="agent",
                       read_default_file=sys.argv[2], ssl_ca=sys.argv[3])
cur = conn.cursor(); cur.execute("SELECT CURRENT_USER()"); print(cur.fetchone()[0])
"#
        }
        _ => {
            r#"
import sys, mysql.connector
conn = mysql.connector.connect(host="127.0.0.1", port=int(sys.argv[1]), user="agent",
                               option_files=sys.argv[2], ssl_ca=sys.argv[3])
cur = conn.cursor(); cur.execute("SELECT CURRENT_USER()"); print(cur.fetchone()[0])
"#
        }
    };
    let output = run_capture(
        Command::new("python3")
            .args(["-c", script, &port.to_string()])
            .arg(option_file)
            .arg(ca),
    )
    .expect("python3");
    assert!(output.status.success(), "{driver}: {}", stderr(&output));
    stdout(&output)
}

/// The `mariadb` CLI with the token in `MYSQL_PWD` (as after
/// `MYSQL_PWD=$(tollgate login --print)`), no option files: `CURRENT_USER()`.
fn mariadb_with_env(port: u16, user: &str, token: &str) -> Output {
    run_capture(
        Command::new("mariadb")
            .args(["--no-defaults", "-h", "127.0.0.1", "-P", &port.to_string()])
            .args(["-u", user, "-N", "-B", "-e", "SELECT CURRENT_USER()"])
            .env("MYSQL_PWD", token),
    )
    .expect("mariadb")
}

#[test]
fn client_credentials_token_logs_in_through_the_option_file_and_is_cached() {
    let issuer = OidcIssuer::start().expect("start the OIDC issuer");
    let (upstream, gateway, port, ca) = gateway(&issuer);
    let cache = tempfile::tempdir().expect("cache dir");
    let work = tempfile::tempdir().expect("work dir");
    let option_file = work.path().join("token.cnf");
    let option_arg = option_file.to_string_lossy().into_owned();

    let first = tollgate(
        cache.path(),
        &agent_args(
            &issuer.url,
            &["--print", "--write-option-file", &option_arg],
        ),
        // Every log line of every crate, HTTP included, is searched for the token and secret.
        &[("TOLLGATE_LOG", "trace")],
    );
    assert!(first.status.success(), "{}", stderr(&first));
    let token = stdout(&first);
    assert_eq!(token.split('.').count(), 3, "a JWT access token is printed");
    assert!(
        stderr(&first).contains("new token for agent-1"),
        "{}",
        stderr(&first)
    );
    for secret in [token.as_str(), AGENT_SECRET, AGENT_BASIC] {
        assert!(!stderr(&first).contains(secret), "{}", stderr(&first));
    }
    let requests = issuer.token_requests().expect("stats");

    // The cache: one 0600 file in a 0700 directory; the option file is 0600 too.
    let files = cache_files(cache.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(mode(&cache.path().join("tollgate")), 0o700);
    assert_eq!(mode(&files[0]), 0o600);
    assert_eq!(mode(&option_file), 0o600);
    let text = std::fs::read_to_string(&option_file).expect("option file");
    assert!(
        text.contains(&format!("[client]\npassword={token}\n")),
        "{text}"
    );

    // The token logs in to the gateway: the mariadb CLI with only --defaults-extra-file,
    // PyMySQL and mysql-connector-python with the same file, and MYSQL_PWD.
    let account = format!("{}@%", upstream.user());
    let (ok, out, err) = mariadb_with_option_file(port, &option_file, "SELECT CURRENT_USER()");
    assert!(ok, "mariadb --defaults-extra-file: {err}");
    assert_eq!(out, account);
    assert_eq!(
        python_with_option_file("pymysql", port, &option_file, &ca),
        account
    );
    assert_eq!(
        python_with_option_file("connector", port, &option_file, &ca),
        account
    );
    let with_env = mariadb_with_env(port, "agent", &token);
    assert!(
        with_env.status.success(),
        "MYSQL_PWD: {}",
        stderr(&with_env)
    );
    let login = gateway
        .recorded_events()
        .into_iter()
        .find(|e| e["type"] == "session.login")
        .expect("a recorded login");
    assert_eq!(login["identity"]["subject"], "agent-1", "{login}");

    // Second call: the cached token, without a request to the issuer.
    let second = tollgate(cache.path(), &agent_args(&issuer.url, &["--print"]), &[]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(stdout(&second), token);
    assert!(
        stderr(&second).contains("cached token"),
        "{}",
        stderr(&second)
    );
    assert_eq!(issuer.token_requests().expect("stats"), requests);

    // A wrong secret: one line naming the refusal, without the secret.
    let fresh_cache = tempfile::tempdir().expect("cache dir");
    let refused = tollgate(
        fresh_cache.path(),
        &agent_args(&issuer.url, &["--print"]),
        &[("AGENT_SECRET", "not-the-secret")],
    );
    assert!(!refused.status.success());
    let err = stderr(&refused);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(
            "tollgate: error: the issuer refused the client-credentials grant: invalid_client"
        ),
        "{err}"
    );
    assert!(!err.contains("not-the-secret"));

    // The issuer stopped: the cached token still serves; without a cache, one clear line.
    let url = issuer.url.clone();
    drop(issuer);
    let offline = tollgate(cache.path(), &agent_args(&url, &["--print"]), &[]);
    assert!(offline.status.success(), "{}", stderr(&offline));
    assert_eq!(stdout(&offline), token);
    let unreachable = tollgate(fresh_cache.path(), &agent_args(&url, &["--print"]), &[]);
    assert!(!unreachable.status.success());
    let err = stderr(&unreachable);
    assert!(
        err.starts_with(&format!("tollgate: error: issuer {url} unreachable: ")),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn the_secret_never_comes_from_the_command_line_and_a_readable_secret_file_is_refused() {
    let cache = tempfile::tempdir().expect("cache dir");
    let missing = tollgate(
        cache.path(),
        &[
            "token",
            "--client-credentials",
            "--issuer",
            "http://127.0.0.1:9",
            "--client-id",
            "a",
        ],
        &[],
    );
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("--client-secret-env <VAR>|--client-secret-file <PATH>"),
        "{}",
        stderr(&missing)
    );
    let dir = tempfile::tempdir().expect("dir");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret-value\n").expect("write");
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    let secret_arg = secret.to_string_lossy().into_owned();
    let lax = tollgate(
        cache.path(),
        &[
            "token",
            "--client-credentials",
            "--issuer",
            "http://127.0.0.1:9",
            "--client-id",
            "a",
            "--client-secret-file",
            &secret_arg,
        ],
        &[],
    );
    assert!(!lax.status.success());
    let err = stderr(&lax);
    assert!(
        err.contains("readable by group or others") && !err.contains("s3cret"),
        "{err}"
    );
}

#[test]
fn short_lived_client_credentials_tokens_are_fetched_again() {
    let issuer = OidcIssuer::start().expect("start the OIDC issuer");
    issuer.set_access_token_ttl(30).expect("ttl");
    let cache = tempfile::tempdir().expect("cache dir");
    let first = tollgate(cache.path(), &agent_args(&issuer.url, &["--print"]), &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let requests = issuer.token_requests().expect("stats");
    // Within a minute of expiry: a new grant, not the cached token.
    let second = tollgate(cache.path(), &agent_args(&issuer.url, &["--print"]), &[]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("refreshed token"),
        "{}",
        stderr(&second)
    );
    assert_ne!(stdout(&second), stdout(&first));
    assert_eq!(issuer.token_requests().expect("stats"), requests + 1);
}

/// `tollgate login` with `tests/oidc/browser.py` as the browser, signing in as `login`.
fn browser_login(issuer: &OidcIssuer, cache: &Path, extra: &[(&str, &str)]) -> Output {
    let browser = workspace_root().join("tests/oidc/browser.py");
    let browser = browser.to_string_lossy().into_owned();
    let mut env = vec![("BROWSER", browser.as_str())];
    env.extend_from_slice(extra);
    tollgate(
        cache,
        &[
            "login",
            "--issuer",
            &issuer.url,
            "--scope",
            "api:read offline_access",
            "--print",
        ],
        &env,
    )
}

#[test]
fn authorization_code_with_pkce_through_a_browser_then_refresh_and_denial() {
    let issuer = OidcIssuer::start().expect("start the OIDC issuer");
    let (upstream, _gateway, port, _ca) = gateway(&issuer);
    issuer.set_access_token_ttl(30).expect("ttl");
    let cache = tempfile::tempdir().expect("cache dir");

    let first = browser_login(&issuer, cache.path(), &[("LOGIN", "user-alice")]);
    assert!(first.status.success(), "{}", stderr(&first));
    let err = stderr(&first);
    assert!(err.contains("code_challenge_method=S256"), "{err}");
    assert!(
        err.contains("redirect_uri=http%3A%2F%2F127.0.0.1%3A"),
        "{err}"
    );
    assert!(err.contains("new token for user-alice"), "{err}");
    let token = stdout(&first);
    assert!(!err.contains(&token));
    assert_eq!(mode(&cache_files(cache.path())[0]), 0o600);

    let login = mariadb_with_env(port, "alice", &token);
    assert!(login.status.success(), "{}", stderr(&login));
    assert_eq!(stdout(&login), format!("{}@%", upstream.user()));

    // The token lives 30 s, within the refresh margin: the refresh token gets a new one, no
    // browser this time (a sign-in would say "sign in at").
    let requests = issuer.token_requests().expect("stats");
    let second = browser_login(&issuer, cache.path(), &[("LOGIN", "user-alice")]);
    assert!(second.status.success(), "{}", stderr(&second));
    let err = stderr(&second);
    assert!(err.contains("refreshed token for user-alice"), "{err}");
    assert!(!err.contains("sign in at"), "{err}");
    assert_ne!(stdout(&second), token);
    assert_eq!(issuer.token_requests().expect("stats"), requests + 1);

    // The user cancels at the consent page.
    let other_cache = tempfile::tempdir().expect("cache dir");
    let denied = browser_login(
        &issuer,
        other_cache.path(),
        &[("LOGIN", "user-bob"), ("DENY", "1")],
    );
    assert!(!denied.status.success());
    let err = stderr(&denied);
    // The browser's own output may come after the error line; the error is one line.
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("tollgate: error"))
        .collect();
    assert_eq!(
        errors,
        [
            "tollgate: error: sign-in refused: the user denied the request: End-User aborted interaction"
        ],
        "{err}"
    );
    assert!(stdout(&denied).is_empty());
}

#[test]
fn device_flow_on_a_host_without_a_display() {
    let issuer = OidcIssuer::start().expect("start the OIDC issuer");
    let cache = tempfile::tempdir().expect("cache dir");
    let mut child = Command::new(tollgate_bin())
        .args([
            "login",
            "--issuer",
            &issuer.url,
            "--scope",
            "api:read",
            "--print",
        ])
        .env("XDG_CACHE_HOME", cache.path())
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("BROWSER")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tollgate login");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut code_line, mut url) = (String::new(), None);
    while url.is_none() && Instant::now() < deadline {
        let line = lines.next().expect("a line").expect("stderr line");
        if line.contains("enter the code") {
            code_line = line;
        } else if let Some(rest) = line.strip_prefix("tollgate: or open ") {
            url = Some(rest.to_owned());
        }
    }
    let url = url.expect("the device flow's verification URL");
    assert!(
        code_line.starts_with(&format!(
            "tollgate: to sign in, visit {}/device and enter the code ",
            issuer.url
        )),
        "{code_line}"
    );
    let browser = run_capture(
        Command::new(workspace_root().join("tests/oidc/browser.py"))
            .arg(&url)
            .env("LOGIN", "user-bob"),
    )
    .expect("browser");
    assert!(browser.status.success(), "{}", stderr(&browser));
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let output = child.wait_with_output().expect("tollgate login");
    assert!(output.status.success(), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("new token for user-bob")),
        "{rest:?}"
    );
    assert_eq!(stdout(&output).split('.').count(), 3);
    assert_eq!(mode(&cache_files(cache.path())[0]), 0o600);
}

#[test]
fn an_expired_device_code_and_a_failed_discovery_are_one_line_each() {
    let issuer = OidcIssuer::start().expect("start the OIDC issuer");
    issuer.set_device_code_ttl(2).expect("device ttl");
    let cache = tempfile::tempdir().expect("cache dir");
    // Nobody enters the code.
    let expired = tollgate(
        cache.path(),
        &["login", "--issuer", &issuer.url, "--device", "--print"],
        &[],
    );
    assert!(!expired.status.success());
    let err = stderr(&expired);
    assert_eq!(
        err.lines().last().unwrap_or_default(),
        "tollgate: error: the device code expired before the sign-in was completed; run the \
         command again",
        "{err}"
    );
    assert!(stdout(&expired).is_empty());

    let wrong = format!("{}/not-an-issuer", issuer.url);
    let failed = tollgate(cache.path(), &["login", "--issuer", &wrong, "--print"], &[]);
    assert!(!failed.status.success());
    assert_eq!(
        stderr(&failed),
        format!("tollgate: error: discovery failed for {wrong}: HTTP 404 Not Found")
    );
}
