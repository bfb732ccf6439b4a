//! The `tollgate` binary: parse the command line, set up logging and signals, call the library.

use std::{io::Write as _, os::unix::process::CommandExt as _, path::Path, process::ExitCode};

use anyhow::Context as _;
use clap::Parser as _;
use tokio_util::sync::CancellationToken;
use tollgate::{
    cli::{
        ApprovalsCommand, Cli, Command, ExportFormat, KafkaArgs, ScanRange, SessionsCommand,
        SourceArgs, StoreArgs,
    },
    config::Config,
    intercept::join_cgroup,
    recording::{SigningKey, Store, chain},
    server, sessions, telemetry,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One write, so the line cannot interleave with a child's output (a browser that
            // `tollgate login` started shares stderr).
            let line = format!("tollgate: error: {error:#}\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { config } => serve(&config),
        Command::CheckConfig { file } => {
            let config = Config::load(&file)?;
            println!(
                "{}: OK ({} target(s), interception {:?}, store {})",
                file.display(),
                config.targets.len(),
                config.interception.mode,
                config.recording.store.display()
            );
            Ok(())
        }
        Command::Run {
            config,
            cgroup,
            command,
        } => {
            let cgroup = match cgroup {
                Some(cgroup) => cgroup,
                None => Config::load(&config)?.interception.cgroup.context(
                    "interception.cgroup is not set: the scope is the whole host, every process \
                     on it is already steered; run the command directly",
                )?,
            };
            join_cgroup(&cgroup)?;
            let (program, args) = command.split_first().context("no command given")?;
            let error = std::process::Command::new(program).args(args).exec();
            Err(error).with_context(|| format!("cannot run {}", program.to_string_lossy()))
        }
        Command::HashPassword => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            let password = line.trim_end_matches(['\n', '\r']);
            anyhow::ensure!(!password.is_empty(), "empty password on standard input");
            let hash = tollgate::auth::hash_password(password.as_bytes())
                .map_err(|e| anyhow::anyhow!("hashing: {e}"))?;
            println!("{hash}");
            Ok(())
        }
        Command::Login(args) => Ok(tollgate::token::login_command(&args)?),
        Command::Token(args) => Ok(tollgate::token::token_command(&args)?),
        Command::Keygen { out, public_out } => {
            let key = SigningKey::generate();
            key.write_new(&out)?;
            let public = key.public_hex();
            if let Some(path) = public_out {
                std::fs::write(&path, format!("{public}\n"))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            println!("{public}");
            Ok(())
        }
        Command::Sessions { command } => sessions_command(command),
        Command::Index {
            config,
            index,
            group,
            once,
            kafka,
        } => index_topic(&config, &index, group, once, &kafka),
        Command::Ui { config, listen } => ui(&config, listen),
        Command::Approvals { command } => approvals_command(command),
        Command::Up { config } => {
            let config = Config::load(&config)?;
            let pinned = tollgate::intercept::up(&config)?;
            println!(
                "tollgate is up: {} programs and maps pinned in {}",
                pinned.len(),
                config.interception.pin_path.display()
            );
            Ok(())
        }
        Command::Down { config } => {
            let config = Config::load(&config)?;
            let removed = tollgate::intercept::down(&config)?;
            if removed.is_empty() {
                println!("tollgate was not up: nothing to remove");
            } else {
                println!("tollgate is down; removed:");
                for item in removed {
                    println!("  {item}");
                }
            }
            Ok(())
        }
        Command::Status { config, json } => {
            let config = Config::load(&config)?;
            let status = tollgate::intercept::status::Status::read(&config)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{status}");
            }
            Ok(())
        }
    }
}

/// `tollgate approvals list|approve|deny`.
fn approvals_command(command: ApprovalsCommand) -> anyhow::Result<()> {
    use tollgate::{approvals::order, control::order::Channel};
    let channel = |local| if local { Channel::Local } else { Channel::Auto };
    match command {
        ApprovalsCommand::List {
            json,
            local,
            config,
        } => {
            let list = order::list(&Config::load(&config)?, channel(local))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!("no approval requests");
            } else {
                for approval in &list {
                    println!("{}", order::describe(approval));
                }
            }
        }
        ApprovalsCommand::Approve(args) => decide(&args, true)?,
        ApprovalsCommand::Deny(args) => decide(&args, false)?,
    }
    Ok(())
}

fn decide(args: &tollgate::cli::DecideArgs, approved: bool) -> anyhow::Result<()> {
    use tollgate::{approvals::order, control::order::Channel};
    let config = Config::load(&args.config)?;
    let channel = if args.local {
        Channel::Local
    } else {
        Channel::Auto
    };
    let decided = order::decide(&config, &args.id, approved, args.reason.clone(), channel)?;
    println!("{}", order::describe(&decided));
    Ok(())
}

/// `tollgate ui`: the web viewer alone, until SIGINT/SIGTERM.
fn ui(path: &Path, listen: Option<std::net::SocketAddr>) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    until_signal(|shutdown| async move {
        tollgate::admin::run_standalone(&config, listen, shutdown).await
    })
}

/// Runs `task` on a single-threaded runtime with a token cancelled at SIGINT/SIGTERM.
fn until_signal<F, E>(task: impl FnOnce(CancellationToken) -> F) -> anyhow::Result<()>
where
    F: std::future::Future<Output = Result<(), E>>,
    anyhow::Error: From<E>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        task(shutdown).await
    })?;
    Ok(())
}

/// `tollgate sessions kill|unlock`: orders to the live gateways.
fn control_command(command: SessionsCommand) -> anyhow::Result<()> {
    use tollgate::control::order::{self, Channel};
    let channel = |local| if local { Channel::Local } else { Channel::Auto };
    match command {
        SessionsCommand::Kill {
            id,
            lock,
            reason,
            local,
            wait,
            config,
        } => {
            let config = Config::load(&config)?;
            let done = order::kill(&config, &id, lock, reason, channel(local), wait)?;
            println!("{done}");
            Ok(())
        }
        SessionsCommand::Unlock {
            identity,
            local,
            wait,
            config,
        } => {
            let config = Config::load(&config)?;
            println!(
                "{}",
                order::unlock(&config, &identity, channel(local), wait)?
            );
            Ok(())
        }
        other => anyhow::bail!("not a control order: {other:?}"),
    }
}

/// `tollgate sessions ...`.
fn sessions_command(command: SessionsCommand) -> anyhow::Result<()> {
    sessions::progress::enable();
    match command {
        command @ (SessionsCommand::Kill { .. } | SessionsCommand::Unlock { .. }) => {
            control_command(command)
        }
        SessionsCommand::Verify {
            id,
            all: _,
            config,
            store,
            public_key,
        } => verify_sessions(&config, store, public_key.as_deref(), id.as_deref()),
        SessionsCommand::List {
            store,
            json,
            filter,
            index,
            kafka,
        } => {
            let filter = filter.resolve(time::OffsetDateTime::now_utc())?;
            list_command(&store, json, &filter, index.as_deref(), &kafka)
        }
        SessionsCommand::Export { id, format, source } => {
            export(read_source(&source)?, &id, format)
        }
        SessionsCommand::Replay {
            id,
            speed,
            step,
            source,
        } => {
            anyhow::ensure!(
                speed.is_finite() && speed >= 0.0,
                "--speed {speed} is not a speed: give a factor such as 1, 2, 0.5, or 0 for no waiting"
            );
            let (events, _) = read_source(&source)?.session(&id)?;
            let mut pacer = sessions::replay::TerminalPacer { step };
            sessions::replay::replay(&events, speed, &mut pacer, &mut std::io::stdout().lock())
                .context("writing the replay")?;
            Ok(())
        }
        SessionsCommand::Tail { id, idle, store } => {
            let ended = sessions::tail::follow(
                &store_dir(&store.config, store.store)?,
                &id,
                idle,
                &mut std::io::stdout().lock(),
            )?;
            anyhow::ensure!(
                ended,
                "no new event of session {id} for {}; it is still open",
                humantime::format_duration(idle.unwrap_or_default())
            );
            Ok(())
        }
        SessionsCommand::Show { id, json, source } => {
            let (events, _) = read_source(&source)?.session(&id)?;
            if json {
                for event in &events {
                    println!("{}", serde_json::to_string(event)?);
                }
            } else {
                print!("{}", sessions::render_session(&events));
            }
            Ok(())
        }
    }
}

/// `tollgate sessions export`: the session's lines as stored, or a replayable SQL script.
fn export(loaded: sessions::Loaded, id: &str, format: ExportFormat) -> anyhow::Result<()> {
    let (events, lines) = loaded.session(id)?;
    let mut out = std::io::stdout().lock();
    match format {
        ExportFormat::Json => {
            for line in lines {
                out.write_all(&line)?;
                out.write_all(b"\n")?;
            }
        }
        ExportFormat::Sql => out.write_all(sessions::export::sql_script(&events).as_bytes())?,
    }
    out.flush()?;
    Ok(())
}

/// `tollgate sessions list`: from the index, the topic or the store.
fn list_command(
    at: &StoreArgs,
    json: bool,
    filter: &sessions::Filter,
    index: Option<&Path>,
    kafka: &KafkaArgs,
) -> anyhow::Result<()> {
    if let Some(index) = index {
        anyhow::ensure!(
            !json && !kafka.wanted() && at.store.is_none(),
            "--index answers from the index alone: leave out --json, --kafka and --store"
        );
        return list_indexed(index, filter);
    }
    if kafka.wanted() {
        let range = sessions::kafka::TimeRange {
            since: filter.since,
            until: filter.until,
        };
        let loaded = load_source(&at.config, at.store.clone(), kafka, Some(range))?;
        return print_list(loaded, json, filter);
    }
    list_sessions(&store_dir(&at.config, at.store.clone())?, json, filter)
}

/// The events of the store, or with `--kafka`/`--brokers` of the topic (`range` bounds what is
/// read from it); `--stats` prints what was read from each partition.
fn read_source(source: &SourceArgs) -> anyhow::Result<sessions::Loaded> {
    load_source(
        &source.store.config,
        source.store.store.clone(),
        &source.kafka,
        scan_range(&source.range)?,
    )
}

/// The events of the store, or of the topic when `kafka` names one.
fn load_source(
    config: &Path,
    store: Option<std::path::PathBuf>,
    kafka: &KafkaArgs,
    range: Option<sessions::kafka::TimeRange>,
) -> anyhow::Result<sessions::Loaded> {
    let source = if kafka.wanted() {
        anyhow::ensure!(
            store.is_none(),
            "--store and --kafka/--brokers name two sources: give one"
        );
        sessions::Source::Kafka(kafka_source(config, kafka)?, range.unwrap_or_default())
    } else {
        anyhow::ensure!(
            range.is_none(),
            "--since/--until bound what is read from Kafka: add --kafka or --brokers"
        );
        sessions::Source::Store(store_dir(config, store)?)
    };
    let loaded = source.load()?;
    if kafka.stats
        && let sessions::Source::Kafka(source, _) = &source
    {
        for read in &loaded.partitions {
            eprintln!("tollgate: kafka {}: {read}", source.topic);
        }
    }
    if loaded.skipped > 0 {
        eprintln!(
            "tollgate: {} unreadable event(s) skipped (torn write after a crash?)",
            loaded.skipped
        );
    }
    Ok(loaded)
}

/// The topic to read: `--brokers` and `--topic`, else `[recording.kafka]` of the
/// configuration (its topic replaced by `--topic` when given).
fn kafka_source(config: &Path, kafka: &KafkaArgs) -> anyhow::Result<sessions::kafka::KafkaSource> {
    if let (Some(brokers), Some(topic)) = (&kafka.brokers, &kafka.topic) {
        return Ok(sessions::kafka::KafkaSource::plain(brokers, topic));
    }
    let loaded = Config::load(config)?;
    let configured = loaded.recording.kafka.as_ref().with_context(|| {
        format!(
            "{} has no [recording.kafka]: give --brokers and --topic",
            config.display()
        )
    })?;
    let mut source = sessions::kafka::KafkaSource::from_config(configured)?;
    if let Some(topic) = &kafka.topic {
        source.topic.clone_from(topic);
    }
    Ok(source)
}

/// `show|export|replay --since/--until`: the Kafka messages to read, None when not given.
fn scan_range(range: &ScanRange) -> anyhow::Result<Option<sessions::kafka::TimeRange>> {
    let now = time::OffsetDateTime::now_utc();
    let time = |flag, text: &Option<String>| {
        text.as_deref()
            .map(|t| sessions::parse_time(flag, t, now))
            .transpose()
    };
    let range = sessions::kafka::TimeRange {
        since: time("--since", &range.since)?,
        until: time("--until", &range.until)?,
    };
    Ok((range.since.is_some() || range.until.is_some()).then_some(range))
}

/// Prints the sessions of `loaded` that pass `filter`: a table, or their events (`--json`).
fn print_list(
    loaded: sessions::Loaded,
    json: bool,
    filter: &sessions::Filter,
) -> anyhow::Result<()> {
    if json {
        let keep: std::collections::BTreeSet<_> =
            filter.sessions(&loaded.events).into_iter().collect();
        let mut out = std::io::stdout().lock();
        for (event, line) in loaded.events.iter().zip(&loaded.lines) {
            if keep.contains(&event.session_id) {
                out.write_all(line)?;
                out.write_all(b"\n")?;
            }
        }
        return Ok(out.flush()?);
    }
    print!(
        "{}",
        sessions::render_table(&sessions::list_events(loaded.events, filter))
    );
    Ok(())
}

/// `tollgate index`: runs the indexer until SIGINT/SIGTERM (or, `--once`, the topic's end),
/// then says what it indexed.
fn index_topic(
    config: &Path,
    index: &Path,
    group: String,
    once: bool,
    kafka: &KafkaArgs,
) -> anyhow::Result<()> {
    let source = kafka_source(config, kafka)?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if !once {
        // The signals are blocked here (librdkafka's threads block them too) and taken by one
        // thread that asks the indexer to stop after its current batch.
        let signals = nix::sys::signal::SigSet::from_iter([
            nix::sys::signal::Signal::SIGINT,
            nix::sys::signal::Signal::SIGTERM,
        ]);
        signals
            .thread_block()
            .context("blocking SIGINT and SIGTERM")?;
        let flag = std::sync::Arc::clone(&stop);
        std::thread::Builder::new()
            .name("tollgate-signals".into())
            .spawn(move || {
                if signals.wait().is_ok() {
                    tracing::info!("shutdown requested");
                    flag.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            })
            .context("starting the signal thread")?;
    }
    if let Some(parent) = index.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut db = tollgate::index::IndexDb::open(index)?;
    let options = tollgate::index::IndexerOptions {
        source,
        group,
        once,
    };
    let run = tollgate::index::run(&mut db, &options, &stop)?;
    for (partition, messages) in &run.messages {
        eprintln!(
            "tollgate: index {}: partition {partition}: {messages} message(s) indexed",
            options.source.topic
        );
    }
    eprintln!(
        "tollgate: index {}: {} session(s) in {}; partitions assigned {:?}{}",
        options.source.topic,
        db.session_count()?,
        index.display(),
        run.assigned,
        if run.skipped > 0 {
            format!("; {} message(s) that are not events skipped", run.skipped)
        } else {
            String::new()
        }
    );
    Ok(())
}

/// `tollgate sessions list --index`: the sessions from the index, with a warning when the
/// index was behind the topic at its last update or has not been updated for a while.
fn list_indexed(index: &Path, filter: &sessions::Filter) -> anyhow::Result<()> {
    /// An index not updated for this long may miss recent sessions.
    const STALE_SECS: i64 = 300;
    let db = tollgate::index::IndexDb::open_existing(index)?;
    let lag = db.lag()?;
    match lag.age_secs {
        None => eprintln!(
            "tollgate: warning: {} was never updated from the topic: run `tollgate index`",
            index.display()
        ),
        Some(age) if lag.messages > 0 || age > STALE_SECS => eprintln!(
            "tollgate: warning: {} is {} message(s) behind the topic as of its last update {} ago: \
             run `tollgate index` (or check that it runs)",
            index.display(),
            lag.messages,
            humantime::format_duration(std::time::Duration::from_secs(age.unsigned_abs()))
        ),
        Some(_) => {}
    }
    print!("{}", sessions::render_table(&db.list(filter)?));
    Ok(())
}

/// The store to read: `--store`, else the configuration's `recording.store`.
fn store_dir(
    config: &Path,
    store: Option<std::path::PathBuf>,
) -> anyhow::Result<std::path::PathBuf> {
    match store {
        Some(store) => Ok(store),
        None => Ok(Config::load(config)?.recording.store),
    }
}

fn serve(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    // This runtime only accepts connections, handles signals and runs the recorder: sessions
    // run on the session workers (`workers.rs`).
    until_signal(|shutdown| server::run(config, path.to_path_buf(), shutdown))
}

/// Cancels `shutdown` on the first SIGINT or SIGTERM.
async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the gateway with SIGKILL");
        return;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutdown requested");
    shutdown.cancel();
}

fn list_sessions(store: &Path, json: bool, filter: &sessions::Filter) -> anyhow::Result<()> {
    if json {
        let (events, _) = Store::read_all(store)?;
        let keep: std::collections::BTreeSet<_> = filter.sessions(&events).into_iter().collect();
        for event in events.iter().filter(|e| keep.contains(&e.session_id)) {
            println!("{}", serde_json::to_string(event)?);
        }
        return Ok(());
    }
    let (sessions, skipped) = sessions::list(store, filter)?;
    print!("{}", sessions::render_table(&sessions));
    if skipped > 0 {
        eprintln!("tollgate: {skipped} unreadable line(s) skipped (torn write after a crash?)");
    }
    Ok(())
}

/// `tollgate sessions verify`: one line per session, one per problem; an error when any.
fn verify_sessions(
    config: &Path,
    store: Option<std::path::PathBuf>,
    public_key: Option<&Path>,
    id: Option<&str>,
) -> anyhow::Result<()> {
    // The configuration is needed for the store unless given, and for the key unless given.
    let loaded = if store.is_none() || public_key.is_none() {
        Some(Config::load(config)?)
    } else {
        None
    };
    let store = match store {
        Some(store) => store,
        None => loaded
            .as_ref()
            .map(|c| c.recording.store.clone())
            .context("no store")?,
    };
    let key = match (
        public_key,
        loaded
            .as_ref()
            .and_then(|c| c.recording.signing_key.as_deref()),
    ) {
        (Some(path), _) => Some(chain::load_public_key(path)?),
        (None, Some(path)) => Some(SigningKey::load(path)?.verifying_key()),
        (None, None) => None,
    };
    let session = match id {
        Some(id) => Some(
            sessions::events_of(&store, id)?
                .first()
                .map(|e| e.session_id)
                .context("no events")?,
        ),
        None => None,
    };
    let mut text = Vec::new();
    for line in Store::read_lines(&store)? {
        text.extend_from_slice(&line);
        text.push(b'\n');
    }
    let text = String::from_utf8_lossy(&text);
    let verification = chain::verify(
        &text,
        |s| session.is_none_or(|only| s == only),
        key.as_ref(),
    );
    let mut problems = 0;
    for report in &verification.sessions {
        if report.problems.is_empty() {
            println!(
                "session {}: ok, {} events, {}",
                report.session_id, report.events, report.seal
            );
        }
        for problem in &report.problems {
            println!("session {}: {problem}", report.session_id);
            problems += 1;
        }
    }
    for line in &verification.unreadable_lines {
        eprintln!(
            "tollgate: event {line} of {} is not an event (torn write after a crash?)",
            store.display()
        );
    }
    let tampered = verification
        .sessions
        .iter()
        .filter(|r| !r.problems.is_empty())
        .count();
    anyhow::ensure!(
        problems == 0,
        "{problems} problem(s) in {tampered} of {} session(s): the recording was altered",
        verification.sessions.len()
    );
    Ok(())
}
