//! Command-line interface of the `tollgate` binary.

use std::{ffi::OsString, path::PathBuf};

use clap::{Parser, Subcommand};

use crate::telemetry::LogFormat;

/// Default configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/tollgate/tollgate.toml";

/// Tollgate: record, attribute and guard every MySQL session on this host.
#[derive(Debug, Parser)]
#[command(name = "tollgate", version, about)]
pub struct Cli {
    /// Log line format (level via `TOLLGATE_LOG`, e.g. `debug`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway: attach the eBPF programs, accept, relay and record until SIGINT/SIGTERM.
    Serve {
        /// Configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Attach the eBPF programs and pin them (and their maps) in bpffs, so they stay attached
    /// across gateway restarts and upgrades; install the policy routes for routed steering.
    Up {
        /// Configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Detach and unpin everything `tollgate up` attached; remove its routes and empty cgroups.
    Down {
        /// Configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Show the attached programs, the maps' contents and the data path's counters.
    Status {
        /// Configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Validate a configuration file; errors name the field and the line.
    CheckConfig {
        /// Configuration file.
        file: PathBuf,
    },
    /// Run a command inside the managed cgroup, so its MySQL connections go through the gateway.
    Run {
        /// Configuration file (for interception.cgroup).
        #[arg(long, short, default_value = DEFAULT_CONFIG, conflicts_with = "cgroup")]
        config: PathBuf,
        /// The cgroup to join, instead of reading it from the configuration.
        #[arg(long)]
        cgroup: Option<PathBuf>,
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, required = true, value_name = "COMMAND")]
        command: Vec<OsString>,
    },
    /// Print an argon2 hash of a password read from standard input (for `[[identities]]`).
    HashPassword,
    /// Get an OIDC token for a person: browser (authorization code + PKCE) or device code;
    /// cached, refreshed, printed or written to a MySQL option file.
    Login(crate::token::LoginArgs),
    /// Get an OIDC token for an agent or a service account (`--client-credentials`).
    Token(crate::token::TokenArgs),
    /// Make an ed25519 signing key for `[recording] signing_key` (a raw 32-byte seed, mode
    /// 0600) and print its public key (64 hex digits) for verifiers.
    Keygen {
        /// Where to write the signing key (must not exist).
        #[arg(long)]
        out: PathBuf,
        /// Also write the public key (64 hex digits) here, for `sessions verify --public-key`.
        #[arg(long)]
        public_out: Option<PathBuf>,
    },
    /// Keep a searchable index (`SQLite`, full text on SQL) of the recording topic, as a member
    /// of a consumer group; `sessions list --index` reads it.
    Index {
        /// Configuration file (for `[recording.kafka]`).
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The index file (created when missing).
        #[arg(
            long,
            value_name = "PATH",
            default_value = "/var/lib/tollgate/index.sqlite"
        )]
        index: PathBuf,
        /// Consumer group: indexers of one group share the topic's partitions.
        #[arg(long, default_value = "tollgate-index")]
        group: String,
        /// Index up to the end of every assigned partition, then exit.
        #[arg(long)]
        once: bool,
        /// Brokers and topic instead of the configuration's.
        #[command(flatten)]
        kafka: KafkaArgs,
    },
    /// Serve the web viewer of recorded sessions (the `[admin]` section's sign-in) over the
    /// configured store, without the gateway.
    Ui {
        /// Configuration file (for `[admin]` and recording.store).
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Listen here instead of `admin.listen`.
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Recorded sessions.
    Sessions {
        /// What to do with them.
        #[command(subcommand)]
        command: SessionsCommand,
    },
    /// Statements a guardrail holds for approval (`action = "approve"`): list, approve, deny.
    Approvals {
        /// What to do.
        #[command(subcommand)]
        command: ApprovalsCommand,
    },
}

/// `tollgate approvals ...`: over the approvals topic when Kafka is configured (every
/// replica), else over the control socket of the gateway on this host.
#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// The requests: statement, identity and process, target, impact, status.
    List {
        /// One JSON document (an array of requests) instead of text.
        #[arg(long)]
        json: bool,
        /// Only the gateway on this host (its control socket), even with Kafka configured.
        #[arg(long)]
        local: bool,
        /// Configuration file (for the control socket and `[recording.kafka]`).
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Approve a held statement: it runs (once) if its client still waits, or when the same
    /// statement is run again within `[approvals] window`.
    Approve(DecideArgs),
    /// Deny a held statement: its client gets an error naming you and the reason.
    Deny(DecideArgs),
}

/// The arguments of `approvals approve|deny`.
#[derive(Debug, clap::Args)]
pub struct DecideArgs {
    /// The request's id, or a unique prefix of it.
    pub id: String,
    /// Why, recorded with the decision and shown to the client on a denial.
    #[arg(long)]
    pub reason: Option<String>,
    /// Only the gateway on this host (its control socket), even with Kafka configured.
    #[arg(long)]
    pub local: bool,
    /// Configuration file (for the control socket and `[recording.kafka]`).
    #[arg(long, short, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

/// `tollgate sessions ...`
#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List recorded sessions, oldest first.
    List {
        /// The store read.
        #[command(flatten)]
        store: StoreArgs,
        /// Print the raw events as JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        /// Which sessions (every filter given must hold).
        #[command(flatten)]
        filter: ListFilter,
        /// Answer from this index (built by `tollgate index`) instead of the store.
        #[arg(long, value_name = "PATH")]
        index: Option<PathBuf>,
        /// Read the Kafka topic instead of the store (`--since`/`--until` bound what is read).
        #[command(flatten)]
        kafka: KafkaArgs,
    },
    /// Show one session: who, where, and each statement with its outcome.
    Show {
        /// Session id, or a unique prefix of it.
        id: String,
        /// Print the raw events as JSON lines.
        #[arg(long)]
        json: bool,
        /// Where the session is read.
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Export one session: its events as stored (`json`, JSON lines) or a replayable SQL
    /// script (`sql`: the statements in order, each after a comment with its outcome).
    Export {
        /// Session id, or a unique prefix of it.
        id: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Json)]
        format: ExportFormat,
        /// Where the session is read.
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Replay one session in the terminal: each statement and its outcome, at the recorded
    /// pacing divided by `--speed`.
    Replay {
        /// Session id, or a unique prefix of it.
        id: String,
        /// Speed factor: 2 plays twice as fast, 0 does not wait at all.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Wait for Enter before each statement (end of input plays the rest).
        #[arg(long)]
        step: bool,
        /// Where the session is read.
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Follow a live session as it is recorded, statement by statement, until it ends.
    Tail {
        /// Session id, or a unique prefix of it.
        id: String,
        /// Give up after this long without a new event of the session (e.g. `10m`); by
        /// default, follow until the session ends.
        #[arg(long, value_parser = humantime::parse_duration)]
        idle: Option<std::time::Duration>,
        /// The store read.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// End a live session wherever it runs (every replica reads the Kafka control topic; the
    /// gateway on this host without Kafka), optionally locking its identity for a while.
    Kill {
        /// Session id, or a unique prefix of it.
        id: String,
        /// Also lock the session's identity for this long (e.g. `1h`): its other live
        /// sessions end and its logins are refused until then.
        #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
        lock: Option<std::time::Duration>,
        /// Why, recorded with the session's end and shown to the client.
        #[arg(long)]
        reason: Option<String>,
        /// Only the gateway on this host (its control socket), even with Kafka configured.
        #[arg(long)]
        local: bool,
        /// How long to wait for the replicas to answer over Kafka.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
        wait: std::time::Duration,
        /// Configuration file (for the control socket and `[recording.kafka]`).
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Lift a lock that `sessions kill --lock` set on an identity.
    Unlock {
        /// The identity.
        identity: String,
        /// Only the gateway on this host (its control socket), even with Kafka configured.
        #[arg(long)]
        local: bool,
        /// How long to collect the replicas' answers over Kafka.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
        wait: std::time::Duration,
        /// Configuration file (for the control socket and `[recording.kafka]`).
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Check the hash chains and signatures: exits non-zero, with one line per problem, when
    /// an event was edited, dropped or reordered or a signature is missing or bad.
    Verify {
        /// Session id, or a unique prefix of it.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Verify every session in the store.
        #[arg(long)]
        all: bool,
        /// Configuration file (for `recording.store` and `recording.signing_key`).
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Read this store directory instead of the configured one.
        #[arg(long)]
        store: Option<PathBuf>,
        /// The gateway's public key (64 hex digits, as `keygen` prints it); by default derived
        /// from the configured signing key when readable.
        #[arg(long)]
        public_key: Option<PathBuf>,
    },
}

/// `tollgate sessions ... --config|--store`: the recording store to read (the configured one,
/// or a directory given).
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Configuration file (for recording.store and the Kafka settings).
    #[arg(long, short, default_value = DEFAULT_CONFIG, conflicts_with = "store")]
    pub config: PathBuf,
    /// Read this store directory instead of the configured one.
    #[arg(long)]
    pub store: Option<PathBuf>,
}

/// `tollgate sessions show|export|replay`: where a session is read, the store or the Kafka
/// topic (a time range of it).
#[derive(Debug, Clone, clap::Args)]
pub struct SourceArgs {
    /// The store, and the configuration.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Read the Kafka topic instead of the store.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// With Kafka: read only the messages of this time range.
    #[command(flatten)]
    pub range: ScanRange,
}

/// `tollgate sessions --kafka`: read the recording topic instead of the store.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KafkaArgs {
    /// Read the Kafka topic of `[recording.kafka]` in the configuration instead of the store.
    #[arg(long)]
    pub kafka: bool,
    /// Read the topic from these brokers instead (implies --kafka; needs --topic).
    #[arg(long, value_name = "HOST:PORT[,...]", requires = "topic")]
    pub brokers: Option<String>,
    /// The topic to read (with --brokers, or instead of the configured one).
    #[arg(long, value_name = "TOPIC")]
    pub topic: Option<String>,
    /// Print on standard error what was read from each partition (offsets, messages).
    #[arg(long)]
    pub stats: bool,
}

impl KafkaArgs {
    /// Whether the topic is to be read.
    #[must_use]
    pub fn wanted(&self) -> bool {
        self.kafka || self.brokers.is_some()
    }
}

/// `tollgate sessions show|export|replay --kafka --since/--until`: the messages to read.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ScanRange {
    /// With Kafka: read messages from this time on (RFC 3339, or how long ago: `2h`).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// With Kafka: read messages up to this time (RFC 3339, or how long ago).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
}

/// The filters of `tollgate sessions list`, as given.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ListFilter {
    /// Sessions active at or after this time: RFC 3339, or how long ago (`30m`, `2h`, `7d`).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Sessions started at or before this time: RFC 3339, or how long ago.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Sessions of this MySQL user or identity name.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Sessions whose identity is in this group.
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// Sessions on this target (its name in the configuration).
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
    /// Sessions with a statement whose SQL contains this text (case-insensitive).
    #[arg(long, value_name = "TEXT")]
    pub contains: Option<String>,
    /// Sessions with at least one statement of this kind (repeat for several: all must occur).
    #[arg(long, value_enum, value_name = "KIND")]
    pub kind: Vec<crate::sessions::StatementKind>,
    /// Only sessions still running (no `session.ended` yet).
    #[arg(long)]
    pub live: bool,
}

impl ListFilter {
    /// The filter, with relative times taken back from `now`.
    pub fn resolve(
        &self,
        now: time::OffsetDateTime,
    ) -> Result<crate::sessions::Filter, crate::sessions::TimeError> {
        let time = |flag, text: &Option<String>| {
            text.as_deref()
                .map(|t| crate::sessions::parse_time(flag, t, now))
                .transpose()
        };
        Ok(crate::sessions::Filter {
            since: time("--since", &self.since)?,
            until: time("--until", &self.until)?,
            user: self.user.clone(),
            group: self.group.clone(),
            target: self.target.clone(),
            contains: self.contains.clone(),
            kinds: self.kind.clone(),
            live: self.live,
        })
    }
}

/// `tollgate sessions export --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// The events as JSON lines, exactly as stored.
    Json,
    /// A replayable SQL script.
    Sql,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_the_rest_as_the_command() {
        let cli = Cli::try_parse_from(["tollgate", "run", "--cgroup", "/x", "mariadb", "-h", "db"])
            .expect("parse");
        let Command::Run {
            command, cgroup, ..
        } = cli.command
        else {
            panic!("expected run");
        };
        assert_eq!(cgroup, Some(PathBuf::from("/x")));
        assert_eq!(command, ["mariadb", "-h", "db"].map(OsString::from));
    }
}
