//! The command-line arguments of `tollgate login` and `tollgate token` (flattened into
//! [`crate::cli::Command`]).

use std::path::PathBuf;

use clap::{ArgGroup, Args, ValueEnum};

/// The client id `tollgate login` uses unless `--client-id` names another: register a public
/// (no secret) native client under this id at the issuer, with the authorization-code (PKCE),
/// refresh-token and device-code grants and the redirect URI `http://127.0.0.1/callback` (any
/// port, RFC 8252).
pub const DEFAULT_CLIENT_ID: &str = "tollgate-cli";

/// What to do with the token once there is one (both commands).
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Print the token on standard output (the access token when it is a JWT, else the ID
    /// token), e.g. `MYSQL_PWD=$(tollgate login --issuer URL --print)`.
    #[arg(long)]
    pub print: bool,
    /// Write a MySQL client option file (mode 0600) with the token as the password, for
    /// `mariadb --defaults-extra-file=PATH`, PyMySQL `read_default_file` or
    /// mysql-connector-python `option_files`.
    #[arg(long, value_name = "PATH")]
    pub write_option_file: Option<PathBuf>,
}

/// `tollgate login`: a person's token, through a browser or the device flow.
#[derive(Debug, Clone, Args)]
pub struct LoginArgs {
    /// The issuer URL (as in the tokens' `iss`; its discovery document is fetched).
    #[arg(long, value_name = "URL")]
    pub issuer: String,
    /// The OAuth client to log in through (a public client: no secret).
    #[arg(long, value_name = "ID", default_value = DEFAULT_CLIENT_ID)]
    pub client_id: String,
    /// A scope to ask for (repeatable, or space separated); `openid` is always asked for.
    /// Default: `openid offline_access`.
    #[arg(long, value_name = "SCOPE")]
    pub scope: Vec<String>,
    /// Use the device-code flow (a code to enter on another device) instead of a browser on
    /// this host. Chosen by itself on a host without a display when the issuer offers it.
    #[arg(long)]
    pub device: bool,
    /// What to do with the token.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// How a confidential client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum ClientAuth {
    /// HTTP Basic (`client_secret_basic`, the OAuth 2.0 default).
    #[default]
    Basic,
    /// In the form body (`client_secret_post`).
    Post,
}

/// `tollgate token --client-credentials`: a token for an agent or a service account.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("secret").required(true).args(["client_secret_env", "client_secret_file"])))]
pub struct TokenArgs {
    /// Use the client-credentials grant (the only grant this command offers today).
    #[arg(long, required = true)]
    pub client_credentials: bool,
    /// The issuer URL (as in the tokens' `iss`; its discovery document is fetched).
    #[arg(long, value_name = "URL")]
    pub issuer: String,
    /// The client id of the agent or service account.
    #[arg(long, value_name = "ID")]
    pub client_id: String,
    /// The environment variable holding the client secret (never the secret itself: command
    /// lines are visible to every user in /proc/*/cmdline).
    #[arg(long, value_name = "VAR")]
    pub client_secret_env: Option<String>,
    /// A file holding the client secret (not readable by group or others).
    #[arg(long, value_name = "PATH")]
    pub client_secret_file: Option<PathBuf>,
    /// How the client authenticates at the token endpoint.
    #[arg(long, value_enum, default_value_t = ClientAuth::Basic)]
    pub client_auth: ClientAuth,
    /// A scope to ask for (repeatable, or space separated).
    #[arg(long, value_name = "SCOPE")]
    pub scope: Vec<String>,
    /// An `audience` parameter to send (repeatable; Auth0, Okta and others).
    #[arg(long, value_name = "AUDIENCE")]
    pub audience: Vec<String>,
    /// A `resource` indicator to send (repeatable; RFC 8707).
    #[arg(long, value_name = "URI")]
    pub resource: Vec<String>,
    /// What to do with the token.
    #[command(flatten)]
    pub output: OutputArgs,
}
