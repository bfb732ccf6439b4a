//! Masking (`[[masking]]`) through a real gateway in front of a real MariaDB, with real
//! clients over both protocols: PyMySQL (text), mysql-connector-python's prepared cursor
//! (binary) and the `mariadb` CLI. Raw personal data is seeded straight into MariaDB; through
//! the gateway, plain reads, aliases and computed columns come back masked, statements that
//! would hide a masked column behind a function, a union, a subquery or a user variable are
//! refused with the rule's error, and none of the seeded raw values is in any client's output,
//! the recording, the Kafka topic, the spool, or the gateway's debug log. A server-side
//! cursor's fetched rows are masked too. Masked cells are counted in the recording and the
//! metrics. A member of the exempt group sees the values raw. Runs without root.

use std::{
    io::{Read as _, Write as _},
    path::Path,
    process::Command,
};

use tollgate_tests::{
    DB_PASSWORD_ENV, GATEWAY_PASSWORD, GATEWAY_USER, Gateway, KafkaBroker, Until, Upstream,
    consume_events, free_port, hash_password, mariadb_script, recording_schema, run_capture,
    store_text, terminated_config,
};

/// The Kafka topic the gateway ships to (its store is then the spool, kept for the grep).
const TOPIC: &str = "tollgate.masking";

/// Raw values seeded into MariaDB: none may leave the gateway for a masked session.
const RAW: &[&str] = &[
    "alice.raw@example.com",
    "4111111111111111",
    "123-45-6789",
    "GB82WEST12345698765432",
    "5123.45",
    "1980-02-03",
    "bob.raw@example.org",
    "+1 415-555-0199",
    "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "234-56-7891",
];

const SEED: &str = "
CREATE DATABASE IF NOT EXISTS masktest;
CREATE OR REPLACE TABLE masktest.customers (id INT PRIMARY KEY, name VARCHAR(50),
  email VARCHAR(100), card VARCHAR(25), ssn CHAR(11), iban VARCHAR(40),
  salary DECIMAL(10,2) NOT NULL, born DATE);
INSERT INTO masktest.customers VALUES (1, 'Alice Example', 'alice.raw@example.com',
  '4111111111111111', '123-45-6789', 'GB82WEST12345698765432', 5123.45, '1980-02-03');
CREATE OR REPLACE TABLE masktest.notes (id INT PRIMARY KEY, note TEXT);
INSERT INTO masktest.notes VALUES (1,
  'write to bob.raw@example.org or call +1 415-555-0199, key sk_live_4eC39HqLyjWDarjtT1zdp7dc, ssn 234-56-7891');
";

fn rules(key: &Path) -> String {
    format!(
        r#"
[[identities]]
user = "reader"
password_hash = "{hash}"
groups = ["pii-readers"]

[[masking]]
name = "customer-pii"
fields = ["masktest.customers.email", "masktest.customers.ssn", "masktest.customers.salary", "masktest.customers.born"]
exempt_groups = ["pii-readers"]

[[masking]]
name = "cards"
fields = ["masktest.customers.card"]
style = "partial"
exempt_groups = ["pii-readers"]

[[masking]]
name = "iban"
columns = ["iban"]
style = "hash"
hash_key_file = "{key}"
exempt_groups = ["pii-readers"]

[[masking]]
name = "content"
detectors = ["email", "card", "phone", "national_id", "iban", "api_key"]
exempt_groups = ["pii-readers"]
"#,
        hash = hash_password("reader-pw"),
        key = key.display(),
    )
}

/// Runs each statement with PyMySQL (text protocol) and prints `ok <rows>` or
/// `err <code> <message>`, one line each.
const TEXT_CLIENT: &str = r"
import sys, pymysql
conn = pymysql.connect(host='127.0.0.1', port=int(sys.argv[1]), user=sys.argv[2],
    password=sys.argv[3], ssl_ca=sys.argv[4], ssl_verify_cert=True, autocommit=True)
cur = conn.cursor()
for sql in sys.stdin.read().split('\n'):
    if not sql.strip():
        continue
    try:
        cur.execute(sql)
        print('ok', repr(cur.fetchall()), flush=True)
    except pymysql.MySQLError as e:
        print('err', e.args[0], e.args[1], flush=True)
";

/// The same with mysql-connector-python's prepared cursor (binary protocol).
const BINARY_CLIENT: &str = r"
import sys, mysql.connector
conn = mysql.connector.connect(host='127.0.0.1', port=int(sys.argv[1]), user=sys.argv[2],
    password=sys.argv[3], ssl_ca=sys.argv[4], ssl_verify_cert=True, use_pure=True,
    autocommit=True)
cur = conn.cursor(prepared=True)
for sql in sys.stdin.read().split('\n'):
    if not sql.strip():
        continue
    try:
        cur.execute(sql, (1,))
        print('ok', repr(cur.fetchall()), flush=True)
    except mysql.connector.Error as e:
        print('err', e.errno, e.msg, flush=True)
";

/// A read-only cursor through mysql-connector-python's low-level calls: `COM_STMT_EXECUTE`
/// with `CURSOR_TYPE_READ_ONLY`, then `COM_STMT_FETCH`.
const CURSOR_CLIENT: &str = r#"
import sys, mysql.connector
conn = mysql.connector.connect(host='127.0.0.1', port=int(sys.argv[1]), user=sys.argv[2],
    password=sys.argv[3], ssl_ca=sys.argv[4], ssl_verify_cert=True, use_pure=True,
    autocommit=True)
stmt = conn.cmd_stmt_prepare(b"SELECT id, email, card FROM masktest.customers WHERE id > ?")
result = conn.cmd_stmt_execute(stmt['statement_id'], (0,), stmt['parameters'], flags=1)
conn.cmd_stmt_fetch(stmt['statement_id'], 10)
rows, eof = conn.get_rows(binary=True, columns=result[1])
print('ok', repr(rows), flush=True)
"#;

fn python(script: &str, port: u16, user: &str, password: &str, ca: &Path, input: &str) -> String {
    let mut child = Command::new("python3")
        .args(["-c", script, &port.to_string(), user, password])
        .arg(ca)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write statements");
    let output = child.wait_with_output().expect("client");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn assert_refused(line: &str, rule: &str, check: &str) {
    assert!(
        line.starts_with(&format!(
            "err 1227 Tollgate: statement refused by masking rule '{rule}'"
        )) && line.ends_with(&format!("({check} = false turns this check off)")),
        "expected a refusal by {rule} ({check}): {line}"
    );
}

#[test]
#[expect(clippy::too_many_lines, reason = "one scenario, asserted step by step")]
fn masked_values_never_leave_the_gateway_over_either_protocol() {
    let upstream = Upstream::mariadb().expect("mariadb");
    let (_, err) = mariadb_script(
        upstream.port(),
        upstream.user(),
        upstream.password(),
        &[],
        SEED,
    );
    assert!(err.is_empty(), "seed: {err}");
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("mask.key");
    std::fs::write(&key, b"a test key of more than 16 bytes").expect("key");
    let broker = KafkaBroker::start().expect("broker");
    broker.create_topic(TOPIC, 1).expect("topic");
    let (port, metrics_port) = (free_port(), free_port());
    let config = terminated_config(port, "db", &upstream)
        + &rules(&key)
        + &format!(
            "[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n[recording.kafka]\n\
             brokers = \"{}\"\ntopic = \"{TOPIC}\"\nkeep_shipped = true\n",
            broker.bootstrap()
        );
    let gateway = Gateway::start_with_env(
        None,
        &config,
        &[
            (DB_PASSWORD_ENV, upstream.password()),
            ("TOLLGATE_LOG", "debug"),
        ],
    )
    .expect("gateway");
    let ca = upstream.ca();

    let text = python(
        TEXT_CLIENT,
        port,
        GATEWAY_USER,
        GATEWAY_PASSWORD,
        &ca,
        "SELECT id, name, email, card, ssn, iban, salary, born FROM masktest.customers
SELECT email AS e, c.card AS k FROM masktest.customers c
SELECT CONCAT(email) FROM masktest.customers
SELECT HEX(ssn) FROM masktest.customers
SELECT email FROM masktest.customers UNION SELECT 'x'
SELECT e FROM (SELECT email AS e FROM masktest.customers) t
SELECT @a := email FROM masktest.customers
SELECT /*!50000 LOWER(email) */ FROM masktest.customers
SELECT email FROM masktest.customers WHERE ((
SELECT note FROM masktest.notes
SELECT HEX(note) FROM masktest.notes
SELECT GROUP_CONCAT(note SEPARATOR ' | ') FROM masktest.notes
SELECT JSON_OBJECT('n', note) FROM masktest.notes
SELECT iban FROM masktest.customers",
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 14, "{text}");
    assert_eq!(
        lines[0],
        "ok ((1, 'Alice Example', 'XXXXXXXXXXXXXXXXXXXXX', 'XXXXXXXXXXXX1111', 'XXXXXXXXXXX', \
         '{hash}', Decimal('0'), None),)"
            .replace("{hash}", &iban_hash(lines[0])),
        "{text}"
    );
    assert_eq!(
        lines[1], "ok (('XXXXXXXXXXXXXXXXXXXXX', 'XXXXXXXXXXXX1111'),)",
        "aliases are masked by the original column"
    );
    assert_refused(lines[2], "customer-pii", "prevent_function_usage");
    assert_refused(lines[3], "customer-pii", "prevent_function_usage");
    assert_refused(lines[4], "customer-pii", "check_unions");
    assert_refused(lines[5], "customer-pii", "check_subqueries");
    assert_refused(lines[6], "customer-pii", "check_user_variables");
    assert_refused(lines[7], "customer-pii", "prevent_function_usage");
    assert_refused(lines[8], "customer-pii", "require_fully_parsed");
    assert_eq!(
        lines[9],
        "ok (('write to XXXXXXXXXXXXXXXXXXX or call XXXXXXXXXXXXXXX, key XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX, ssn XXXXXXXXXXX',),)",
        "content detectors mask what no column rule names"
    );
    assert!(
        lines[10].starts_with("ok (('XXXX") && !lines[10].contains("626F62"),
        "HEX() of personal data is masked whole: {}",
        lines[10]
    );
    assert!(
        lines[11].contains("XXXXXXXXXXXXXXXXXXX or call"),
        "{}",
        lines[11]
    );
    assert!(
        lines[12].starts_with("ok (('{\"n\": \"write to XXXXXXXXXXXXXXXXXXX"),
        "{}",
        lines[12]
    );
    assert_eq!(
        lines[13],
        format!("ok (('{}',),)", iban_hash(lines[0])),
        "the keyed hash is stable"
    );

    let binary = python(
        BINARY_CLIENT,
        port,
        GATEWAY_USER,
        GATEWAY_PASSWORD,
        &ca,
        "SELECT id, email, card, iban, salary, born FROM masktest.customers WHERE id = %s
SELECT email AS e FROM masktest.customers WHERE id = %s
SELECT note FROM masktest.notes WHERE id = %s
SELECT CONCAT(email) FROM masktest.customers WHERE id = %s",
    );
    let lines: Vec<&str> = binary.lines().collect();
    assert_eq!(lines.len(), 4, "{binary}");
    let hash = iban_hash(&text);
    assert_eq!(
        lines[0],
        format!(
            "ok [(1, 'XXXXXXXXXXXXXXXXXXXXX', 'XXXXXXXXXXXX1111', '{hash}', Decimal('0'), None)]"
        ),
        "binary rows: strings masked, NOT NULL decimal zero, nullable date NULL; the same hash as over text"
    );
    assert_eq!(lines[1], "ok [('XXXXXXXXXXXXXXXXXXXXX',)]");
    assert!(
        lines[2].starts_with("ok [('write to XXXXXXXXXXXXXXXXXXX or call"),
        "{}",
        lines[2]
    );
    assert_refused(lines[3], "customer-pii", "prevent_function_usage");

    // A server-side cursor: the rows come with COM_STMT_FETCH, masked by the execute's plan.
    let cursor = python(CURSOR_CLIENT, port, GATEWAY_USER, GATEWAY_PASSWORD, &ca, "");
    assert!(
        cursor.starts_with("ok ") && cursor.contains("XXXXXXXXXXXXXXXXXXXXX"),
        "{cursor}"
    );
    assert!(cursor.contains("XXXXXXXXXXXX1111"), "{cursor}");

    // The mariadb CLI (text protocol, its own column handling).
    let ssl = format!("--ssl-ca={}", ca.display());
    let (cli, cli_err) = mariadb_script(
        port,
        GATEWAY_USER,
        GATEWAY_PASSWORD,
        &[&ssl, "--ssl-verify-server-cert", "-N"],
        "SELECT email, card, ssn, salary, born FROM masktest.customers;\nSELECT LEFT(card, 6) FROM masktest.customers;\n",
    );
    assert_eq!(
        cli.trim(),
        "XXXXXXXXXXXXXXXXXXXXX\tXXXXXXXXXXXX1111\tXXXXXXXXXXX\t0\tNULL",
        "{cli_err}"
    );
    assert!(
        cli_err.contains("refused by masking rule 'cards'"),
        "{cli_err}"
    );

    // Nothing raw anywhere: client output, the recording (store segments and index), the log.
    let events = gateway.recorded_events();
    let masked: u64 = events
        .iter()
        .filter(|e| e["type"] == "statement")
        .filter_map(|e| e["masked_cells"].as_u64())
        .sum();
    assert!(masked >= 20, "masked cells recorded: {masked}");
    let first = events
        .iter()
        .find(|e| {
            e["sql"]
                .as_str()
                .is_some_and(|s| s.starts_with("SELECT id, name"))
        })
        .expect("recorded");
    assert_eq!(first["masked_cells"], 6, "{first}");
    assert_eq!(
        first["result"][0]["rows"][0][2], "XXXXXXXXXXXXXXXXXXXXX",
        "the recording holds what the client got"
    );
    let fetch = events
        .iter()
        .find(|e| e["command"] == "stmt_fetch")
        .expect("the cursor's rows came with COM_STMT_FETCH");
    assert_eq!(fetch["masked_cells"], 2, "{fetch}");
    // The events shipped to Kafka (validated against the schema by the consumer).
    let shipped = consume_events(
        &broker.bootstrap(),
        TOPIC,
        &recording_schema(),
        Until::sessions_ended(4),
    )
    .expect("consume the topic");
    let shipped = serde_json::to_string(&shipped).expect("json");
    let metrics = get_metrics(metrics_port);
    let cells = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tollgate_masked_cells_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("tollgate_masked_cells_total");
    assert!(cells >= masked, "metric {cells} < recorded {masked}");
    assert!(
        metrics.contains("tollgate_masking_refused_statements_total 9"),
        "{metrics}"
    );
    let mut everything = String::new();
    everything.push_str(&shipped);
    everything.push_str(&text);
    everything.push_str(&binary);
    everything.push_str(&cursor);
    everything.push_str(&cli);
    everything.push_str(&cli_err);
    everything.push_str(&store_text(&gateway.store));
    everything.push_str(&gateway.log_text());
    everything.push_str(&files_under(gateway.store.parent().expect("gateway dir")));
    for raw in RAW {
        assert!(!everything.contains(raw), "{raw} left the gateway unmasked");
    }
    assert!(
        !everything.contains("a test key of more"),
        "the hash key is never logged or recorded"
    );

    // The exempt group sees the values.
    let exempt = python(
        TEXT_CLIENT,
        port,
        "reader",
        "reader-pw",
        &ca,
        "SELECT email, card FROM masktest.customers\nSELECT CONCAT(email) FROM masktest.customers",
    );
    assert_eq!(
        exempt,
        "ok (('alice.raw@example.com', '4111111111111111'),)\nok (('alice.raw@example.com',),)\n"
    );
}

/// `GET /metrics` from the gateway.
fn get_metrics(port: u16) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics endpoint");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("response");
    text
}

/// The 16 hex digits of the iban column in the first line's row.
fn iban_hash(text: &str) -> String {
    text.split('\'')
        .find(|part| part.len() == 16 && part.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or("<no hash>")
        .to_owned()
}

/// Every file under `dir` (the gateway's directory: configuration, log, store, index), as
/// text.
fn files_under(dir: &Path) -> String {
    let mut out = String::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            out.push_str(&files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    out
}

#[test]
fn a_bad_rule_is_a_one_line_configuration_error() {
    let upstream = Upstream::mariadb().expect("mariadb");
    let config = terminated_config(free_port(), "db", &upstream)
        + "[[masking]]\nname = \"h\"\ncolumns = [\"email\"]\nstyle = \"hash\"\n";
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tollgate.toml");
    std::fs::write(&path, config.replace("{store}", "/tmp/unused")).expect("write");
    let output = run_capture(
        Command::new(tollgate_tests::tollgate_bin())
            .arg("check-config")
            .arg(&path),
    )
    .expect("check-config");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("masking") && stderr.contains("needs hash_key_file"),
        "{stderr}"
    );
}
