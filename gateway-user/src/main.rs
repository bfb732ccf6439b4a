//! The `tollgate` binary: parse the command line, set up logging and signals, call the library.

use std::{os::unix::process::CommandExt as _, path::Path, process::ExitCode};

use anyhow::Context as _;
use clap::Parser as _;
use tokio_util::sync::CancellationToken;
use tollgate::{
    cli::{Cli, Command, SessionsCommand},
    config::Config,
    intercept::join_cgroup,
    recording::Store,
    server, sessions, telemetry,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tollgate: error: {error:#}");
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
                None => Config::load(&config)?.interception.cgroup,
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
        Command::Sessions {
            command:
                SessionsCommand::List {
                    config,
                    store,
                    json,
                },
        } => list_sessions(&store_dir(&config, store)?, json),
        Command::Sessions {
            command:
                SessionsCommand::Show {
                    id,
                    config,
                    store,
                    json,
                },
        } => {
            let events = sessions::events_of(&store_dir(&config, store)?, &id)?;
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        server::run(config, path.to_path_buf(), shutdown).await
    })?;
    Ok(())
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

fn list_sessions(store: &Path, json: bool) -> anyhow::Result<()> {
    if json {
        let (events, _) = Store::read_all(store)?;
        for event in events {
            println!("{}", serde_json::to_string(&event)?);
        }
        return Ok(());
    }
    let (sessions, skipped) = sessions::list(store)?;
    print!("{}", sessions::render_table(&sessions));
    if skipped > 0 {
        eprintln!("tollgate: {skipped} unreadable line(s) skipped (torn write after a crash?)");
    }
    Ok(())
}
