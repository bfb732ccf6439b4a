//! Who a client is: the [`Identity`] a login proves, and the [`Authenticator`] that turns what
//! the client sent as its password into one.
//!
//! The client's password reaches the gateway only inside TLS (`session/terminate.rs`). A
//! password that is a JWT (three base64url segments) is verified as an OpenID Connect token
//! against the configured issuers ([`oidc`]); anything else is checked against the identity
//! table (`auth::IdentityTable`, argon2). Either way the result is an [`Identity`], which the
//! session records with the login; the token itself is never logged or recorded.

pub mod oidc;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{auth::IdentityTable, config::Config, recording::ProcessInfo};
use oidc::{OidcVerifier, TokenError, UnverifiedToken};

/// How an identity was proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IdentitySource {
    /// A password from the identity table (`[[identities]]`).
    Password,
    /// An OpenID Connect token (`[[oidc]]`).
    Oidc,
    /// The kernel's attribution of a local process (`[[local_identities]]`).
    Kernel,
}

/// The kernel-attested identity of a local process: the first `[[local_identities]]` entry
/// whose user, cgroup, container and command name (those it names) all match.
#[must_use]
pub fn kernel_identity(config: &Config, process: &ProcessInfo) -> Option<Identity> {
    let in_cgroup = |prefix: &str| {
        process.cgroup_path.as_deref().is_some_and(|path| {
            path == prefix || path.starts_with(&format!("{}/", prefix.trim_end_matches('/')))
        })
    };
    let local = config.local_identities.iter().find(|l| {
        (l.uid.is_none() && l.user.is_none() || l.resolved_uid() == Some(process.uid))
            && l.cgroup.as_deref().is_none_or(in_cgroup)
            && l.container.as_deref().is_none_or(|c| {
                process
                    .container_id
                    .as_deref()
                    .is_some_and(|id| id.starts_with(c))
            })
            && l.comm.as_deref().is_none_or(|c| c == process.comm)
    })?;
    let uid = process.uid;
    Some(Identity {
        source: IdentitySource::Kernel,
        subject: format!("uid:{uid}"),
        name: local.name.clone(),
        issuer: None,
        groups: local.groups.clone(),
    })
}

/// A proved identity, recorded with the login (never with the credential that proved it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Identity {
    /// How it was proved.
    pub source: IdentitySource,
    /// Stable identifier: the token's `sub`, or the identity table's user name.
    pub subject: String,
    /// Name for people: the token's username claim (`sub` by default), or the user name.
    pub name: String,
    /// The token's issuer, for token identities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Groups: from the token's groups claim, or the identity table's `groups`.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// Why a login was refused; the `Display` text is what the client reads (after "Access denied
/// for user '...' (Tollgate: "), so it never contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Not in the identity table, or not its password.
    #[error("unknown user or wrong password")]
    WrongPassword,
    /// The password was a token, and the token was refused.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// Why the authenticator could not be built.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The HTTP client for the issuers could not be built.
    #[error("cannot set up the HTTP client for OIDC issuers: {0}")]
    Http(String),
}

/// The seam between the login and the ways to prove an identity: the identity table and the
/// OIDC issuers. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    table: Arc<IdentityTable>,
    issuers: Arc<[OidcVerifier]>,
}

impl Authenticator {
    /// Builds the identity table and one verifier per `[[oidc]]` issuer. Issuers are contacted
    /// on first use, not here, so the gateway starts while an issuer is down.
    pub fn new(config: &Config) -> Result<Self, IdentityError> {
        let issuers = if config.oidc.is_empty() {
            Vec::new()
        } else {
            let http = oidc::http_client().map_err(|e| IdentityError::Http(e.to_string()))?;
            config
                .oidc
                .iter()
                .map(|c| OidcVerifier::new(c, http.clone()))
                .collect()
        };
        Ok(Self {
            table: Arc::new(IdentityTable::new(&config.identities)),
            issuers: issuers.into(),
        })
    }

    /// Proves `user`'s identity with `password` (what the client sent, in clear text inside
    /// TLS): as a token when it is a JWT and issuers are configured, else against the identity
    /// table (argon2, off the async workers).
    pub async fn authenticate(&self, user: &str, password: Vec<u8>) -> Result<Identity, AuthError> {
        let password = Zeroizing::new(password);
        if !self.issuers.is_empty() && oidc::looks_like_jwt(&password) {
            let token = UnverifiedToken::parse(&password)?;
            let issuer = token.issuer();
            let verifier = self
                .issuers
                .iter()
                .find(|v| v.issuer() == issuer)
                .ok_or_else(|| TokenError::UntrustedIssuer(oidc::printable(issuer)))?;
            return Ok(verifier.verify(&token, user).await?);
        }
        let table = Arc::clone(&self.table);
        let name = user.to_owned();
        let verified = tokio::task::spawn_blocking(move || table.verify(&name, &password))
            .await
            .unwrap_or(false);
        if verified {
            Ok(Identity {
                source: IdentitySource::Password,
                subject: user.to_owned(),
                name: user.to_owned(),
                issuer: None,
                groups: self.table.groups(user),
            })
        } else {
            Err(AuthError::WrongPassword)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_identities_match_by_user_cgroup_container_and_command() {
        let config = crate::config::Config::parse(
            r#"
[listener]
addresses = ["127.0.0.1:15306"]
[[local_identities]]
uid = 4242
comm = "mariadb"
name = "svc:ci-cli"
groups = ["ci"]
[[local_identities]]
cgroup = "/system.slice/ci-runner.service"
name = "svc:ci-runner"
[[local_identities]]
container = "0123abcd"
name = "svc:etl"
[[local_identities]]
uid = 4242
name = "svc:ci"
[[targets]]
name = "t"
address = "198.18.0.10"
port = 3306
"#,
            std::path::Path::new("t.toml"),
        )
        .expect("config");
        let process = |uid: u32, comm: &str, cgroup: &str| {
            let mut p = ProcessInfo {
                pid: 1,
                tid: 1,
                uid,
                gid: uid,
                comm: comm.into(),
                cgroup_id: 1,
                cgroup_path: Some(cgroup.into()),
                container_id: None,
            };
            p.container_id = crate::recording::event::container_id(cgroup);
            p
        };
        let name = |p: ProcessInfo| kernel_identity(&config, &p).map(|i| i.name);
        let cli =
            kernel_identity(&config, &process(4242, "mariadb", "/user.slice")).expect("mapped");
        assert_eq!(
            (cli.name.as_str(), cli.subject.as_str()),
            ("svc:ci-cli", "uid:4242")
        );
        assert_eq!(cli.source, IdentitySource::Kernel);
        assert_eq!(cli.groups, ["ci"]);
        assert_eq!(
            name(process(4242, "python3", "/user.slice")).as_deref(),
            Some("svc:ci")
        );
        assert_eq!(
            name(process(
                999,
                "java",
                "/system.slice/ci-runner.service/job-7"
            ))
            .as_deref(),
            Some("svc:ci-runner")
        );
        assert_eq!(
            name(process(999, "java", "/system.slice/ci-runner.services")),
            None
        );
        let docker = format!("/system.slice/docker-0123abcd{}.scope", "e".repeat(56));
        assert_eq!(
            name(process(0, "psql", &docker)).as_deref(),
            Some("svc:etl")
        );
        assert!(name(process(4243, "mariadb", "/user.slice")).is_none());
    }

    fn config(extra: &str) -> Config {
        let hash = crate::auth::hash_password(b"alice-pw").expect("hash");
        let text = format!(
            r#"
[listener]
addresses = ["127.0.0.1:15306"]
fallback_target = "db"
[interception]
mode = "off"
[[identities]]
user = "alice"
password_hash = "{hash}"
[[targets]]
name = "db"
address = "127.0.0.1"
port = 3306
{extra}"#
        );
        Config::parse(&text, std::path::Path::new("t.toml")).expect("config")
    }

    #[tokio::test]
    async fn passwords_go_to_the_identity_table() {
        let auth = Authenticator::new(&config("")).expect("authenticator");
        let identity = auth
            .authenticate("alice", b"alice-pw".to_vec())
            .await
            .expect("alice");
        assert_eq!(identity.source, IdentitySource::Password);
        assert_eq!(identity.subject, "alice");
        let error = auth
            .authenticate("alice", b"wrong".to_vec())
            .await
            .expect_err("wrong password");
        assert_eq!(error.to_string(), "unknown user or wrong password");
    }

    #[tokio::test]
    async fn a_token_from_an_issuer_not_configured_is_refused_by_name() {
        let auth = Authenticator::new(&config(
            "[[oidc]]\nissuer = \"https://idp.example\"\naudiences = [\"tollgate\"]\n",
        ))
        .expect("authenticator");
        let b64 = |s: &str| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
        };
        let token = format!(
            "{}.{}.c2ln",
            b64(r#"{"alg":"RS256","kid":"k"}"#),
            b64(r#"{"iss":"https://evil.example","sub":"x","exp":4102444800}"#)
        );
        let error = auth
            .authenticate("alice", token.into_bytes())
            .await
            .expect_err("untrusted");
        assert_eq!(error.to_string(), "issuer https://evil.example not trusted");
        // Not a JWT: the identity table decides.
        let error = auth
            .authenticate("alice", b"a.b".to_vec())
            .await
            .expect_err("not a token");
        assert_eq!(error.to_string(), "unknown user or wrong password");
    }
}
