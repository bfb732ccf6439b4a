//! Who may read recordings through the admin listener: the admin bearer token (header or the
//! login form, compared in constant time) and auditors signed in through an `[[oidc]]` issuer
//! (authorization code with PKCE, `state` bound to the browser by a cookie, the ID token
//! checked against the `nonce` and then by the gateway's own [`OidcVerifier`], which reads the
//! groups claim). A sign-in becomes a server-side viewer session named by a random cookie
//! (`HttpOnly`, `SameSite=Lax`, expiring); nothing else is kept in the browser.

use std::{collections::HashMap, path::Path, time::Duration};

use base64::Engine as _;
use openidconnect::{
    AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata},
    reqwest,
};
use rand::RngCore as _;
use sha2::Digest as _;
use tokio::time::Instant;

use crate::{
    config::{AdminConfig, AdminOidcConfig, Config},
    identity::oidc::{OidcVerifier, UnverifiedToken},
    token::Secret,
};

/// The cookie naming a viewer session.
pub const SESSION_COOKIE: &str = "tollgate_viewer";
/// The cookie binding an OIDC sign-in in progress to the browser that started it.
pub const LOGIN_COOKIE: &str = "tollgate_login";
/// How long an OIDC sign-in may take, from the redirect to the callback.
const LOGIN_TTL: Duration = Duration::from_mins(10);
/// Most OIDC sign-ins in progress at once (the oldest are dropped beyond it).
const MAX_PENDING: usize = 1024;
/// Most viewer sessions at once (the oldest are dropped beyond it).
const MAX_SESSIONS: usize = 4096;

/// Why the admin listener's sign-in could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// A secret file could not be read, or others may read it.
    #[error("{field} {path}: {reason}")]
    SecretFile {
        /// The configuration field.
        field: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The HTTP client for the issuer could not be built.
    #[error("cannot set up the HTTP client for the OIDC issuer: {0}")]
    Http(String),
    /// `[admin.oidc] issuer` is not one of the `[[oidc]]` issuers (the loader checks this;
    /// kept for configurations built in code).
    #[error("admin.oidc.issuer {0:?} is not one of the [[oidc]] issuers")]
    UnknownIssuer(String),
}

/// Why a sign-in failed; the text is shown on the login page (never a secret or a token).
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The admin token given is not the configured one.
    #[error("wrong admin token")]
    WrongToken,
    /// The viewer has no way to sign in this way.
    #[error("this sign-in method is not configured")]
    NotConfigured,
    /// The callback's `state` is unknown, expired, or not this browser's.
    #[error("this sign-in is unknown or expired (or was started in another browser): try again")]
    BadState,
    /// The issuer answered the authorization request with an error.
    #[error("the issuer refused the sign-in: {0}")]
    Refused(String),
    /// The callback carries no code.
    #[error("the issuer's redirect carries no code")]
    NoCode,
    /// Discovery or the code exchange failed.
    #[error("cannot reach the issuer: {0}")]
    Issuer(String),
    /// The ID token is missing or did not verify.
    #[error("the ID token was refused: {0}")]
    IdToken(String),
    /// Signed in, but not in the auditor group.
    #[error("{name} is not in the auditor group {group}: recordings are only for auditors")]
    NotAuditor {
        /// Who signed in.
        name: String,
        /// The group required.
        group: String,
    },
}

/// Who is reading, for the page header and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    /// Their name (the username claim) or `admin token`.
    pub name: String,
    /// How they signed in: `oidc` or `token`.
    pub via: &'static str,
    /// Their groups (from the issuer's groups claim; none for the admin token), for
    /// `[approvals] approvers_group`.
    pub groups: Vec<String>,
}

/// A signed-in browser.
#[derive(Debug, Clone)]
struct ViewerSession {
    viewer: Viewer,
    expires: Instant,
}

/// An OIDC sign-in between the redirect to the issuer and the callback.
struct Pending {
    nonce: Nonce,
    verifier: PkceCodeVerifier,
    expires: Instant,
}

/// The viewer as an OIDC client of one `[[oidc]]` issuer.
struct OidcLogin {
    config: AdminOidcConfig,
    secret: Option<Secret>,
    /// The gateway's verifier for the issuer, with the client id as the audience: the second
    /// check of the ID token, and the one that reads the groups and username claims.
    verifier: OidcVerifier,
    http: reqwest::Client,
}

/// Sign-ins and viewer sessions of the admin listener.
pub struct Auth {
    token: Option<Secret>,
    oidc: Option<OidcLogin>,
    auditor_group: Option<String>,
    ttl: Duration,
    secure_cookies: bool,
    sessions: parking_lot::Mutex<HashMap<String, ViewerSession>>,
    pending: parking_lot::Mutex<HashMap<String, Pending>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("oidc", &self.oidc.as_ref().map(|o| &o.config.issuer))
            .field("auditor_group", &self.auditor_group)
            .finish_non_exhaustive()
    }
}

/// Reads a secret file: mode 0600 (no group or other bits), trimmed, not empty.
fn read_secret_file(field: &'static str, path: &Path) -> Result<Secret, AuthSetupError> {
    use std::os::unix::fs::MetadataExt as _;
    let error = |reason: String| AuthSetupError::SecretFile {
        field,
        path: path.to_owned(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| error(e.to_string()))?;
    if meta.mode() & 0o077 != 0 {
        return Err(error(format!(
            "is readable by group or others (mode {:o}): chmod 600 it",
            meta.mode() & 0o777
        )));
    }
    let raw = Secret::new(std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?);
    let trimmed = raw.expose().trim();
    if trimmed.is_empty() {
        return Err(error("is empty".to_owned()));
    }
    Ok(Secret::new(trimmed.to_owned()))
}

/// 32 random bytes, base64url: session ids and sign-in states.
fn random_id() -> String {
    let mut bytes = [0_u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Compares two secrets in time independent of where they differ (both are hashed first, so
/// their lengths do not show either).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (sha2::Sha256::digest(a), sha2::Sha256::digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0_u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The value of cookie `name` in a `Cookie` header.
#[must_use]
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value)
    })
}

impl Auth {
    /// Reads the admin token and client secret and prepares the OIDC client.
    pub fn new(config: &Config, admin: &AdminConfig) -> Result<Self, AuthSetupError> {
        let token = admin
            .token_file
            .as_deref()
            .map(|path| read_secret_file("admin.token_file", path))
            .transpose()?;
        let oidc = match &admin.oidc {
            None => None,
            Some(login) => {
                let secret = login
                    .client_secret_file
                    .as_deref()
                    .map(|path| read_secret_file("admin.oidc.client_secret_file", path))
                    .transpose()?;
                let http = crate::identity::oidc::http_client()
                    .map_err(|e| AuthSetupError::Http(e.to_string()))?;
                let mut issuer = config
                    .oidc
                    .iter()
                    .find(|o| o.issuer.get_ref() == &login.issuer)
                    .cloned()
                    .ok_or_else(|| AuthSetupError::UnknownIssuer(login.issuer.clone()))?;
                issuer.audiences = toml::Spanned::new(0..0, vec![login.client_id.clone()]);
                issuer.require_user_match = false;
                Some(OidcLogin {
                    config: login.clone(),
                    secret,
                    verifier: OidcVerifier::new(&issuer, http.clone()),
                    http,
                })
            }
        };
        let secure_cookies = admin
            .oidc
            .as_ref()
            .is_some_and(|o| o.public_url.starts_with("https:"));
        Ok(Self {
            token,
            oidc,
            auditor_group: admin.auditor_group.clone(),
            ttl: admin.session_ttl,
            secure_cookies,
            sessions: parking_lot::Mutex::new(HashMap::new()),
            pending: parking_lot::Mutex::new(HashMap::new()),
        })
    }

    /// Whether the admin token form is offered.
    #[must_use]
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Whether OIDC sign-in is offered.
    #[must_use]
    pub fn has_oidc(&self) -> bool {
        self.oidc.is_some()
    }

    /// Whether `given` is the admin token.
    #[must_use]
    pub fn is_admin_token(&self, given: &str) -> bool {
        self.token
            .as_ref()
            .is_some_and(|t| constant_time_eq(t.expose().as_bytes(), given.trim().as_bytes()))
    }

    /// The viewer a request's `Cookie` header names, when its session is live.
    #[must_use]
    pub fn viewer_of(&self, cookie_header: &str) -> Option<Viewer> {
        let id = cookie(cookie_header, SESSION_COOKIE)?;
        let mut sessions = self.sessions.lock();
        match sessions.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.viewer.clone()),
            Some(_) => {
                sessions.remove(id);
                None
            }
            None => None,
        }
    }

    /// Starts a viewer session; the `Set-Cookie` value naming it.
    pub fn start_session(&self, viewer: Viewer) -> String {
        let id = random_id();
        let now = Instant::now();
        let mut sessions = self.sessions.lock();
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            id.clone(),
            ViewerSession {
                viewer,
                expires: now + self.ttl,
            },
        );
        format!(
            "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
            self.ttl.as_secs(),
            if self.secure_cookies { "; Secure" } else { "" }
        )
    }

    /// Ends the viewer session a `Cookie` header names; the `Set-Cookie` value clearing it.
    pub fn end_session(&self, cookie_header: &str) -> String {
        if let Some(id) = cookie(cookie_header, SESSION_COOKIE) {
            self.sessions.lock().remove(id);
        }
        format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0")
    }

    /// The admin token form: a viewer session for the right token.
    pub fn token_login(&self, given: &str) -> Result<Viewer, LoginError> {
        if self.token.is_none() {
            return Err(LoginError::NotConfigured);
        }
        if !self.is_admin_token(given) {
            return Err(LoginError::WrongToken);
        }
        Ok(Viewer {
            name: "admin token".to_owned(),
            via: "token",
            groups: Vec::new(),
        })
    }

    /// Discovery, then the issuer's client for the viewer.
    async fn client(
        login: &OidcLogin,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        LoginError,
    > {
        let issuer = IssuerUrl::new(login.config.issuer.clone())
            .map_err(|e| LoginError::Issuer(e.to_string()))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &login.http)
            .await
            .map_err(|e| LoginError::Issuer(format!("discovery failed: {e}")))?;
        let redirect = RedirectUrl::new(login.config.redirect_uri())
            .map_err(|e| LoginError::Issuer(e.to_string()))?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(login.config.client_id.clone()),
            login
                .secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose().to_owned())),
        )
        .set_auth_type(AuthType::RequestBody)
        .set_redirect_uri(redirect))
    }

    /// Starts an OIDC sign-in: the issuer URL to redirect to and the `Set-Cookie` value that
    /// binds its `state` to this browser.
    pub async fn begin_oidc(&self) -> Result<(String, String), LoginError> {
        let login = self.oidc.as_ref().ok_or(LoginError::NotConfigured)?;
        let client = Self::client(login).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scopes(
                login
                    .config
                    .scopes
                    .iter()
                    .filter(|s| s.as_str() != "openid")
                    .cloned()
                    .map(Scope::new),
            )
            .set_pkce_challenge(challenge)
            .url();
        let now = Instant::now();
        let mut pending = self.pending.lock();
        pending.retain(|_, p| p.expires > now);
        if pending.len() >= MAX_PENDING
            && let Some(oldest) = pending
                .iter()
                .min_by_key(|(_, p)| p.expires)
                .map(|(k, _)| k.clone())
        {
            pending.remove(&oldest);
        }
        pending.insert(
            state.secret().clone(),
            Pending {
                nonce,
                verifier,
                expires: now + LOGIN_TTL,
            },
        );
        let cookie = format!(
            "{LOGIN_COOKIE}={}; Path=/oidc; HttpOnly; SameSite=Lax; Max-Age={}{}",
            state.secret(),
            LOGIN_TTL.as_secs(),
            if self.secure_cookies { "; Secure" } else { "" }
        );
        Ok((url.to_string(), cookie))
    }

    /// The callback: `state` must be this browser's sign-in (`browser_state`, from its login
    /// cookie); the code is exchanged, the ID token verified (nonce, then the gateway's
    /// verifier), and the identity must be in the auditor group.
    pub async fn finish_oidc(
        &self,
        code: Option<&str>,
        state: Option<&str>,
        error: Option<(&str, Option<&str>)>,
        browser_state: Option<&str>,
    ) -> Result<Viewer, LoginError> {
        let login = self.oidc.as_ref().ok_or(LoginError::NotConfigured)?;
        let state = state.ok_or(LoginError::BadState)?;
        if browser_state.is_none_or(|b| !constant_time_eq(b.as_bytes(), state.as_bytes())) {
            return Err(LoginError::BadState);
        }
        let pending = self
            .pending
            .lock()
            .remove(state)
            .filter(|p| p.expires > Instant::now())
            .ok_or(LoginError::BadState)?;
        if let Some((error, description)) = error {
            let text = match description {
                Some(d) => format!("{error}: {d}"),
                None => error.to_owned(),
            };
            return Err(LoginError::Refused(crate::identity::oidc::printable(&text)));
        }
        let code = code.ok_or(LoginError::NoCode)?;
        let client = Self::client(login).await?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| LoginError::Issuer(e.to_string()))?
            .set_pkce_verifier(pending.verifier)
            .request_async(&login.http)
            .await
            .map_err(|e| LoginError::Issuer(exchange_error(&e)))?;
        let id_token = response
            .extra_fields()
            .id_token()
            .ok_or_else(|| LoginError::IdToken("the issuer sent none".to_owned()))?;
        id_token
            .claims(&client.id_token_verifier(), &pending.nonce)
            .map_err(|e| LoginError::IdToken(e.to_string()))?;
        let raw = Secret::new(id_token.to_string());
        let parsed = UnverifiedToken::parse(raw.expose().as_bytes())
            .map_err(|e| LoginError::IdToken(e.to_string()))?;
        let identity = login
            .verifier
            .verify(&parsed, "")
            .await
            .map_err(|e| LoginError::IdToken(e.to_string()))?;
        let group = self.auditor_group.clone().unwrap_or_default();
        if !identity.groups.contains(&group) {
            tracing::warn!(
                name = %identity.name,
                subject = %identity.subject,
                "viewer sign-in refused: not in the auditor group"
            );
            return Err(LoginError::NotAuditor {
                name: identity.name,
                group,
            });
        }
        tracing::info!(name = %identity.name, subject = %identity.subject, "viewer signed in");
        Ok(Viewer {
            name: identity.name,
            via: "oidc",
            groups: identity.groups,
        })
    }
}

/// A code-exchange failure in one line, without the issuer's raw answer.
fn exchange_error<RE: std::error::Error + 'static, T: openidconnect::ErrorResponse + 'static>(
    error: &openidconnect::RequestTokenError<RE, T>,
) -> String {
    match error {
        openidconnect::RequestTokenError::ServerResponse(response) => {
            crate::identity::oidc::printable(&response.to_string())
        }
        openidconnect::RequestTokenError::Request(e) => format!("request failed: {e}"),
        openidconnect::RequestTokenError::Parse(..) => "unreadable token response".to_owned(),
        openidconnect::RequestTokenError::Other(e) => crate::identity::oidc::printable(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name() {
        let header = "a=1; tollgate_viewer=abc; tollgate_viewer_x=zzz";
        assert_eq!(cookie(header, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie("tollgate_viewerx=1", SESSION_COOKIE), None);
        assert_eq!(cookie("", SESSION_COOKIE), None);
    }

    #[test]
    fn secret_files_must_be_private_and_not_empty() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "  s3cret\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let error = read_secret_file("admin.token_file", &path)
            .expect_err("readable by others")
            .to_string();
        assert!(
            error.starts_with("admin.token_file ") && error.contains("chmod 600"),
            "{error}"
        );
        assert!(!error.contains("s3cret"), "{error}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let secret = read_secret_file("admin.token_file", &path).expect("private");
        assert_eq!(secret.expose(), "s3cret");
        std::fs::write(&path, "\n").expect("write");
        let error = read_secret_file("admin.token_file", &path)
            .expect_err("empty")
            .to_string();
        assert!(error.contains("is empty"), "{error}");
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3cre"));
        assert!(!constant_time_eq(b"s3cret", b"s3cret "));
        assert_ne!(random_id(), random_id());
        assert_eq!(random_id().len(), 43);
    }
}
