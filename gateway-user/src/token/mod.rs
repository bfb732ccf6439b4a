//! Getting a token is one command: `tollgate login` (a person: the authorization-code flow
//! with PKCE in a browser, or the device-code flow) and `tollgate token --client-credentials`
//! (agents and service accounts), with a safe per-user cache and ways to hand the token to
//! MySQL clients.
//!
//! - [`args`]: the command-line arguments.
//! - [`flows`]: discovery and the grants, through the `openidconnect` crate.
//! - [`browser`]: opening the system browser and the loopback listener for the redirect.
//! - [`cache`]: `$XDG_CACHE_HOME/tollgate/`, one 0600 file per issuer and client in a 0700
//!   directory; a token still valid for more than [`cache::REFRESH_MARGIN`] is reused, one
//!   about to expire is refreshed (refresh token, or the client-credentials grant again).
//! - [`option_file`]: the MySQL client option file.
//!
//! Tokens and secrets live in [`Secret`] (zeroized, redacted in `Debug`) and never reach a log
//! line or an error message: errors describe what failed (issuer unreachable, discovery failed,
//! sign-in refused, device code expired, ...) in one line.

pub mod args;
pub mod browser;
pub mod cache;
pub mod flows;
pub mod option_file;

use std::{fmt, path::PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize as _;

pub use args::{ClientAuth, LoginArgs, OutputArgs, TokenArgs};

/// Everything that can go wrong getting a token. Messages are one line and never contain a
/// token or a secret.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The issuer URL does not parse.
    #[error("invalid issuer URL {issuer}: {reason}")]
    InvalidIssuer {
        /// The URL as given.
        issuer: String,
        /// Why it does not parse.
        reason: String,
    },
    /// No connection to the issuer (refused, timed out, DNS).
    #[error("issuer {issuer} unreachable: {reason}")]
    Unreachable {
        /// The issuer URL.
        issuer: String,
        /// The transport error.
        reason: String,
    },
    /// The discovery document could not be fetched or is not valid.
    #[error("discovery failed for {issuer}: {reason}")]
    Discovery {
        /// The issuer URL.
        issuer: String,
        /// What was wrong.
        reason: String,
    },
    /// The issuer does not offer what was asked for (e.g. no device authorization endpoint).
    #[error("issuer {issuer} {what}")]
    Unsupported {
        /// The issuer URL.
        issuer: String,
        /// What it lacks.
        what: String,
    },
    /// The issuer answered a grant with an OAuth error (other than the ones below).
    #[error("the issuer refused the {grant}: {code}{description}")]
    Refused {
        /// Which request (`client-credentials grant`, `device authorization`, ...).
        grant: &'static str,
        /// The OAuth error code (`invalid_client`, `invalid_scope`, ...).
        code: String,
        /// `": description"` when the issuer sent one, else empty.
        description: String,
    },
    /// The user declined the sign-in (`access_denied`).
    #[error("sign-in refused: the user denied the request{0}")]
    Denied(String),
    /// The device code expired before the user completed the sign-in.
    #[error("the device code expired before the sign-in was completed; run the command again")]
    DeviceCodeExpired,
    /// No redirect reached the loopback listener in time.
    #[error("no sign-in completed within {0} seconds")]
    TimedOut(u64),
    /// The redirect to the loopback listener was not the one this login started.
    #[error("the sign-in redirect was not valid: {0}")]
    BadRedirect(String),
    /// The issuer's answer could not be understood.
    #[error("unexpected answer from the issuer's {endpoint}: {reason}")]
    BadResponse {
        /// Which endpoint.
        endpoint: &'static str,
        /// What was wrong (never the answer's content).
        reason: String,
    },
    /// The ID token from the authorization-code flow did not verify.
    #[error("the ID token from the issuer did not verify: {0}")]
    IdToken(String),
    /// The answer held neither a JWT access token nor an ID token.
    #[error(
        "the issuer returned neither a JWT access token nor an ID token (ask for the openid scope, or an audience/resource with JWT access tokens)"
    )]
    NoUsableToken,
    /// The client secret could not be read.
    #[error("client secret: {0}")]
    Secret(String),
    /// Local I/O (cache, option file, loopback listener).
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file or directory with unsafe ownership or permissions.
    #[error("{0}")]
    Unsafe(String),
    /// A local failure without a path (the async runtime, the HTTP client).
    #[error("{0}")]
    Local(String),
    /// The token cannot be written to an option file as is.
    #[error("{0}")]
    OptionFile(String),
}

/// A token or secret: zeroized when dropped, `[redacted]` in `Debug`, (de)serialized as the
/// plain string (only ever into the 0600 cache file).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    #[must_use]
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret, to hand to where it belongs (the issuer, stdout, the option file).
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// What a token response gave us, as cached.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenSet {
    /// The access token.
    pub access_token: Secret,
    /// The ID token, when the issuer sent one (`openid` scope).
    pub id_token: Option<Secret>,
    /// The refresh token, when the issuer sent one.
    pub refresh_token: Option<Secret>,
    /// When the access token expires (unix seconds), when known.
    pub access_expires_at: Option<i64>,
}

impl TokenSet {
    /// The token to hand to MySQL clients: the access token when it is a JWT, else the ID
    /// token; `None` when there is neither.
    #[must_use]
    pub fn usable(&self) -> Option<&Secret> {
        if jwt_claims(self.access_token.expose()).is_some() {
            Some(&self.access_token)
        } else {
            self.id_token.as_ref()
        }
    }

    /// When the usable token expires (unix seconds): its `exp` claim, else the access token's
    /// `expires_in`; `None` when unknown.
    #[must_use]
    pub fn expires_at(&self) -> Option<i64> {
        let token = self.usable()?;
        jwt_claims(token.expose())
            .and_then(|c| c.get("exp").and_then(serde_json::Value::as_i64))
            .or(if std::ptr::eq(token, &raw const self.access_token) {
                self.access_expires_at
            } else {
                None
            })
    }

    /// The usable token's `sub`, for messages.
    #[must_use]
    pub fn subject(&self) -> Option<String> {
        let claims = jwt_claims(self.usable()?.expose())?;
        claims.get("sub")?.as_str().map(str::to_owned)
    }
}

/// Text from the issuer (an `error_description`) made fit for a one-line message: control
/// characters become spaces, and it is cut at 200 characters.
#[must_use]
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

/// The claims of a compact JWS, decoded but not verified (only to choose which token to use
/// and when it expires; the gateway verifies). `None` when `token` is not a JWT.
#[must_use]
pub fn jwt_claims(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let mut parts = token.split('.');
    let (header, claims, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header: serde_json::Value = serde_json::from_slice(&engine.decode(header).ok()?).ok()?;
    header.get("alg")?;
    serde_json::from_slice(&engine.decode(claims).ok()?).ok()
}

/// Seconds since the epoch.
#[must_use]
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// `tollgate login`: a cached token when still valid, else a refresh, else a sign-in; then
/// the output options.
pub fn login_command(args: &LoginArgs) -> Result<(), TokenError> {
    let runtime = runtime()?;
    let (tokens, origin) = runtime.block_on(flows::login(args))?;
    deliver(&args.output, &args.issuer, &tokens, origin)
}

/// `tollgate token --client-credentials`: like [`login_command`] for agents and service
/// accounts.
pub fn token_command(args: &TokenArgs) -> Result<(), TokenError> {
    let runtime = runtime()?;
    let (tokens, origin) = runtime.block_on(flows::client_credentials(args))?;
    deliver(&args.output, &args.issuer, &tokens, origin)
}

fn runtime() -> Result<tokio::runtime::Runtime, TokenError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TokenError::Local(format!("starting the async runtime: {e}")))
}

/// Where a token came from, for the status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The cache, still valid.
    Cache,
    /// Refreshed (refresh token, or the client-credentials grant again).
    Refreshed,
    /// A new sign-in or grant.
    New,
}

/// Prints the token and/or writes the option file, and a status line on stderr.
fn deliver(
    output: &OutputArgs,
    issuer: &str,
    tokens: &TokenSet,
    origin: Origin,
) -> Result<(), TokenError> {
    let token = tokens.usable().ok_or(TokenError::NoUsableToken)?;
    if let Some(path) = &output.write_option_file {
        option_file::write(path, token)?;
    }
    let until = tokens.expires_at().map_or_else(
        || "an unknown time".to_owned(),
        |at| {
            time::OffsetDateTime::from_unix_timestamp(at)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_else(|| at.to_string())
        },
    );
    let how = match origin {
        Origin::Cache => "cached",
        Origin::Refreshed => "refreshed",
        Origin::New => "new",
    };
    eprintln!(
        "tollgate: {how} token for {} from {issuer}, valid until {until}{}",
        tokens.subject().unwrap_or_else(|| "?".to_owned()),
        output
            .write_option_file
            .as_ref()
            .map(|p| format!("; option file {}", p.display()))
            .unwrap_or_default(),
    );
    if output.print {
        println!("{}", token.expose());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.sig",
            e.encode(r#"{"alg":"RS256"}"#),
            e.encode(claims)
        )
    }

    #[test]
    fn a_jwt_access_token_is_preferred_to_the_id_token() {
        let set = TokenSet {
            access_token: Secret::new(jwt(r#"{"sub":"a","exp":100}"#)),
            id_token: Some(Secret::new(jwt(r#"{"sub":"i","exp":50}"#))),
            refresh_token: None,
            access_expires_at: Some(99),
        };
        assert_eq!(set.subject().as_deref(), Some("a"));
        assert_eq!(set.expires_at(), Some(100));
    }

    #[test]
    fn an_opaque_access_token_gives_way_to_the_id_token() {
        let set = TokenSet {
            access_token: Secret::new("opaque-abc".to_owned()),
            id_token: Some(Secret::new(jwt(r#"{"sub":"i","exp":50}"#))),
            refresh_token: None,
            access_expires_at: Some(99),
        };
        assert_eq!(set.subject().as_deref(), Some("i"));
        assert_eq!(set.expires_at(), Some(50));
        let none = TokenSet {
            id_token: None,
            ..set
        };
        assert!(none.usable().is_none());
    }

    #[test]
    fn issuer_text_is_kept_to_one_line() {
        assert_eq!(one_line("a\nb\r\tc"), "a b  c");
        assert_eq!(one_line(&"x".repeat(500)).len(), 200);
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let s = Secret::new("hunter2".to_owned());
        assert_eq!(format!("{s:?}"), "[redacted]");
    }
}
