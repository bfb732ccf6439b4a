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
    /// Recorded sessions.
    Sessions {
        /// What to do with them.
        #[command(subcommand)]
        command: SessionsCommand,
    },
}

/// `tollgate sessions ...`
#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List recorded sessions, oldest first.
    List {
        /// Configuration file (for recording.store).
        #[arg(long, short, default_value = DEFAULT_CONFIG, conflicts_with = "store")]
        config: PathBuf,
        /// Read this store directory instead of the configured one.
        #[arg(long)]
        store: Option<PathBuf>,
        /// Print the raw events as JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one session: who, where, and each statement with its outcome.
    Show {
        /// Session id, or a unique prefix of it.
        id: String,
        /// Configuration file (for recording.store).
        #[arg(long, short, default_value = DEFAULT_CONFIG, conflicts_with = "store")]
        config: PathBuf,
        /// Read this store directory instead of the configured one.
        #[arg(long)]
        store: Option<PathBuf>,
        /// Print the raw events as JSON lines.
        #[arg(long)]
        json: bool,
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
