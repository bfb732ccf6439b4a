//! OpenID Connect tokens as MySQL passwords: verifying ID tokens and JWT access tokens
//! (RFC 9068, what service accounts and agents get from the client-credentials grant) against
//! a configured issuer.
//!
//! The `openidconnect` crate does discovery, the JWKS types and the signature check
//! ([`JsonWebKey::verify_signature`]); its `IdTokenVerifier` is not used because it only fits
//! ID tokens (it wants our client id in `aud`, a nonce policy, and does not check `nbf`), while
//! most tokens here are access tokens. So this module splits the compact JWS itself and checks
//! the claims itself, in this order, each failure with its own message:
//! issuer trusted, algorithm allowed, key known (refetching the issuer's keys once when a token
//! names an unknown `kid`, at most once per `key_refresh_interval`), signature, `exp`, `nbf`
//! (with `leeway`), audience, then the identity claims.
//!
//! `none` and HMAC algorithms are not representable in [`SigningAlgorithm`], so a token using
//! them fails the allow-list before any key is looked at (no key confusion).

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::Engine as _;
use openidconnect::{
    IssuerUrl, JsonWebKey as _,
    core::{
        CoreJsonWebKey, CoreJsonWebKeySet, CoreJsonWebKeyUse, CoreJwsSigningAlgorithm,
        CoreProviderMetadata,
    },
    reqwest,
};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::{Identity, IdentitySource};
use crate::config::OidcConfig;

/// How long fetched keys are used before they are fetched again on the next token, even when
/// every token names a known key (so a key the issuer withdrew stops working).
const KEY_MAX_AGE: Duration = Duration::from_mins(15);
/// How long one discovery or JWKS request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest text taken from a token into a message (issuer, key id, algorithm).
const MAX_ECHO: usize = 100;

/// A signature algorithm a configuration may allow. `none` and HMAC (HS256, ...) are
/// deliberately absent: the configuration loader refuses them with a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// RSASSA-PSS with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512.
    Ps512,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// ECDSA P-384 with SHA-384.
    Es384,
    /// Ed25519.
    EdDsa,
}

impl SigningAlgorithm {
    /// Every algorithm, in the order messages list them.
    pub const ALL: [Self; 9] = [
        Self::Rs256,
        Self::Rs384,
        Self::Rs512,
        Self::Ps256,
        Self::Ps384,
        Self::Ps512,
        Self::Es256,
        Self::Es384,
        Self::EdDsa,
    ];
    /// The default allow-list: RS256, ES256, `EdDSA`.
    pub const DEFAULT: [Self; 3] = [Self::Rs256, Self::Es256, Self::EdDsa];

    /// The JOSE name (`RS256`, ...).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Rs384 => "RS384",
            Self::Rs512 => "RS512",
            Self::Ps256 => "PS256",
            Self::Ps384 => "PS384",
            Self::Ps512 => "PS512",
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::EdDsa => "EdDSA",
        }
    }

    /// The algorithm with this JOSE name, if it is one a configuration may allow.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    fn core(self) -> CoreJwsSigningAlgorithm {
        match self {
            Self::Rs256 => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            Self::Rs384 => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
            Self::Rs512 => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
            Self::Ps256 => CoreJwsSigningAlgorithm::RsaSsaPssSha256,
            Self::Ps384 => CoreJwsSigningAlgorithm::RsaSsaPssSha384,
            Self::Ps512 => CoreJwsSigningAlgorithm::RsaSsaPssSha512,
            Self::Es256 => CoreJwsSigningAlgorithm::EcdsaP256Sha256,
            Self::Es384 => CoreJwsSigningAlgorithm::EcdsaP384Sha384,
            Self::EdDsa => CoreJwsSigningAlgorithm::EdDsa,
        }
    }
}

impl<'de> Deserialize<'de> for SigningAlgorithm {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        if let Some(algorithm) = Self::from_name(&name) {
            return Ok(algorithm);
        }
        let message = if name.eq_ignore_ascii_case("none") {
            "algorithm none is never accepted: an unsigned token proves nothing".to_owned()
        } else if name.to_ascii_uppercase().starts_with("HS") {
            format!(
                "algorithm {name} is never accepted: HMAC needs a secret shared with the issuer, \
                 and allowing it invites key confusion (a token signed with the issuer's public \
                 key as the secret)"
            )
        } else {
            format!(
                "unknown algorithm {name:?} (expected some of {})",
                Self::ALL.map(Self::name).join(", ")
            )
        };
        Err(serde::de::Error::custom(message))
    }
}

/// Why a token was refused. The text is what the client reads; it never contains the token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not a compact JWS with JSON header and claims.
    #[error("token malformed: {0}")]
    Malformed(&'static str),
    /// No `[[oidc]]` entry has this issuer.
    #[error("issuer {0} not trusted")]
    UntrustedIssuer(String),
    /// The header's `alg` is not in the issuer's allow-list.
    #[error("algorithm {0} not allowed")]
    AlgorithmNotAllowed(String),
    /// The issuer publishes no key with the token's `kid` (after a refetch, when allowed).
    #[error("unknown signing key {0}")]
    UnknownKey(String),
    /// The signature does not verify with the issuer's key.
    #[error("signature invalid")]
    SignatureInvalid,
    /// `exp` (plus the leeway) has passed.
    #[error("token expired at {}", rfc3339(*.0))]
    Expired(i64),
    /// `nbf` (minus the leeway) is still ahead.
    #[error("token not valid before {}", rfc3339(*.0))]
    NotYetValid(i64),
    /// Neither `aud` nor (without `aud`) `azp` names an accepted audience.
    #[error("audience not accepted")]
    AudienceNotAccepted,
    /// A claim the gateway needs is missing or not a string (number for `exp`).
    #[error("token has no {0} claim")]
    MissingClaim(String),
    /// `require_user_match` is set and the MySQL user name differs from the username claim.
    #[error("MySQL user '{user}' does not match the token's {claim} '{value}'")]
    UserMismatch {
        /// The user name the client gave.
        user: String,
        /// The username claim's name.
        claim: String,
        /// Its value in the token.
        value: String,
    },
    /// The issuer's discovery document or keys could not be fetched.
    #[error("cannot fetch the keys of issuer {issuer} to verify the token")]
    IssuerUnavailable {
        /// The issuer.
        issuer: String,
    },
}

/// `secs` since the epoch as RFC 3339 UTC (`2023-11-14T22:13:20Z`).
fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

/// Text from a token made safe to echo: no control characters, at most [`MAX_ECHO`] chars.
#[must_use]
pub fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_ECHO)
        .collect()
}

/// True when `password` has the shape of a compact JWS: three dot-separated base64url
/// segments, the first two non-empty (the third is empty for `alg: none`, which is then
/// refused as a token rather than tried as a password).
#[must_use]
pub fn looks_like_jwt(password: &[u8]) -> bool {
    let mut segments = 0;
    for (i, segment) in password.split(|b| *b == b'.').enumerate() {
        segments += 1;
        let base64url = segment
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_');
        if !base64url || (i < 2 && segment.is_empty()) {
            return false;
        }
    }
    segments == 3
}

/// Checks an `[[oidc]]` issuer URL: `https`, or `http` to a loopback host (tests, a local
/// issuer); no query or fragment.
pub fn check_issuer_url(issuer: &str) -> Result<(), String> {
    let url =
        IssuerUrl::new(issuer.to_owned()).map_err(|e| format!("{issuer:?} is not a URL: {e}"))?;
    let url = url.url();
    let loopback = match url.host() {
        Some(openidconnect::url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(openidconnect::url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(openidconnect::url::Host::Domain(name)) => name == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(format!(
                "{issuer:?} must use https (http only for a loopback address): the keys that \
                 decide who may log in come from it"
            ));
        }
        other => return Err(format!("{issuer:?}: unsupported scheme {other}")),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{issuer:?} must not have a query or fragment"));
    }
    Ok(())
}

/// The HTTP client for discovery and keys: rustls, no redirects (the issuer's own URLs only),
/// a timeout, and no pooled connections (fetches are rare, and sessions run on several
/// runtimes).
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(HTTP_TIMEOUT)
        .pool_max_idle_per_host(0)
        .build()
}

/// The JOSE header fields the gateway reads.
#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    /// Critical extensions: the gateway understands none, so a token with any is refused.
    #[serde(default)]
    crit: Option<Value>,
}

/// A compact JWS split and decoded, not yet verified.
pub struct UnverifiedToken {
    header: Header,
    claims: Map<String, Value>,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
}

impl std::fmt::Debug for UnverifiedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnverifiedToken")
            .field("alg", &self.header.alg)
            .field("kid", &self.header.kid)
            .finish_non_exhaustive()
    }
}

impl UnverifiedToken {
    /// Splits and decodes a compact JWS.
    pub fn parse(token: &[u8]) -> Result<Self, TokenError> {
        let decode = |segment: &[u8]| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(segment)
                .map_err(|_| TokenError::Malformed("not base64url"))
        };
        let mut parts = token.split(|b| *b == b'.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("not three segments"));
        };
        let signing_input = token
            .get(..header.len() + 1 + claims.len())
            .unwrap_or_default()
            .to_vec();
        let header: Header = serde_json::from_slice(&decode(header)?)
            .map_err(|_| TokenError::Malformed("the header is not a JOSE header"))?;
        if header.crit.is_some() {
            return Err(TokenError::Malformed("unsupported critical header"));
        }
        let claims: Map<String, Value> = serde_json::from_slice(&decode(claims)?)
            .map_err(|_| TokenError::Malformed("the claims are not a JSON object"))?;
        Ok(Self {
            header,
            claims,
            signing_input,
            signature: decode(signature)?,
        })
    }

    /// The (unverified) `iss`, to pick the issuer that verifies it; empty when missing.
    #[must_use]
    pub fn issuer(&self) -> &str {
        self.claims.get("iss").and_then(Value::as_str).unwrap_or("")
    }
}

/// An issuer's keys as last fetched.
struct Keys {
    set: CoreJsonWebKeySet,
    fetched_at: Instant,
}

/// Verifies tokens of one `[[oidc]]` issuer. Keys are fetched on first use and cached.
pub struct OidcVerifier {
    issuer: String,
    audiences: Vec<String>,
    groups_claim: String,
    username_claim: String,
    require_user_match: bool,
    leeway: Duration,
    algorithms: Vec<SigningAlgorithm>,
    refresh_interval: Duration,
    http: reqwest::Client,
    /// The keys verifications read (swapped whole by a refresh).
    keys: parking_lot::RwLock<Option<Arc<Keys>>>,
    /// Held while fetching (one fetch at a time); when the last fetch started.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

impl OidcVerifier {
    /// A verifier for `config` (validated by the loader), fetching with `http`.
    #[must_use]
    pub fn new(config: &OidcConfig, http: reqwest::Client) -> Self {
        Self {
            issuer: config.issuer.get_ref().clone(),
            audiences: config.audiences.get_ref().clone(),
            groups_claim: config.groups_claim.get_ref().clone(),
            username_claim: config.username_claim.get_ref().clone(),
            require_user_match: config.require_user_match,
            leeway: config.leeway,
            algorithms: config.algorithms.clone(),
            refresh_interval: config.key_refresh_interval,
            http,
            keys: parking_lot::RwLock::new(None),
            last_fetch: tokio::sync::Mutex::new(None),
        }
    }

    /// The issuer URL, as tokens carry it in `iss`.
    #[must_use]
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Verifies `token` and returns the identity it proves; `user` is the MySQL user name the
    /// client gave (checked against the username claim when `require_user_match` is set).
    pub async fn verify(
        &self,
        token: &UnverifiedToken,
        user: &str,
    ) -> Result<Identity, TokenError> {
        if token.issuer() != self.issuer {
            return Err(TokenError::UntrustedIssuer(printable(token.issuer())));
        }
        let algorithm = SigningAlgorithm::from_name(&token.header.alg)
            .filter(|a| self.algorithms.contains(a))
            .ok_or_else(|| TokenError::AlgorithmNotAllowed(printable(&token.header.alg)))?;
        let kid = token.header.kid.as_deref();
        let keys = self.keys_for(kid).await?;
        let verified = keys.iter().any(|key| {
            key.verify_signature(&algorithm.core(), &token.signing_input, &token.signature)
                .is_ok()
        });
        if !verified {
            return Err(TokenError::SignatureInvalid);
        }
        let identity = self.check_claims(&token.claims, user, unix_now())?;
        tracing::debug!(
            issuer = %self.issuer,
            subject = %identity.subject,
            kid = kid.map(printable),
            alg = algorithm.name(),
            "token verified"
        );
        Ok(identity)
    }

    /// The claims checks after the signature: times, audience, identity.
    fn check_claims(
        &self,
        claims: &Map<String, Value>,
        user: &str,
        now: i64,
    ) -> Result<Identity, TokenError> {
        let leeway = i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX);
        let exp = claims
            .get("exp")
            .and_then(numeric_date)
            .ok_or_else(|| TokenError::MissingClaim("exp".into()))?;
        if now > exp.saturating_add(leeway) {
            return Err(TokenError::Expired(exp));
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = numeric_date(nbf).ok_or_else(|| TokenError::MissingClaim("nbf".into()))?;
            if now.saturating_add(leeway) < nbf {
                return Err(TokenError::NotYetValid(nbf));
            }
        }
        let accepted = |value: &Value| {
            value
                .as_str()
                .is_some_and(|v| self.audiences.iter().any(|a| a == v))
        };
        let audience_ok = match claims.get("aud") {
            Some(Value::Array(values)) => values.iter().any(accepted),
            Some(value) => accepted(value),
            None => claims.get("azp").is_some_and(accepted),
        };
        if !audience_ok {
            return Err(TokenError::AudienceNotAccepted);
        }
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or_else(|| TokenError::MissingClaim("sub".into()))?;
        let name = claim_at(claims, &self.username_claim)
            .and_then(Value::as_str)
            .ok_or_else(|| TokenError::MissingClaim(self.username_claim.clone()))?;
        if self.require_user_match && name != user {
            return Err(TokenError::UserMismatch {
                user: printable(user),
                claim: self.username_claim.clone(),
                value: printable(name),
            });
        }
        let groups = match claim_at(claims, &self.groups_claim) {
            Some(Value::Array(values)) => values
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        Ok(Identity {
            source: IdentitySource::Oidc,
            subject: subject.to_owned(),
            name: name.to_owned(),
            issuer: Some(self.issuer.clone()),
            groups,
        })
    }

    /// The issuer's signing keys that may have signed a token with `kid` (every signing key
    /// when the token names none); refetched when missing, older than [`KEY_MAX_AGE`], or
    /// without `kid`, at most once per refresh interval.
    async fn keys_for(&self, kid: Option<&str>) -> Result<Vec<CoreJsonWebKey>, TokenError> {
        let cached = self.keys.read().clone();
        let fresh = cached
            .as_ref()
            .is_some_and(|k| k.fetched_at.elapsed() < KEY_MAX_AGE);
        if fresh && let Some(keys) = &cached {
            let found = matching(&keys.set, kid);
            if !found.is_empty() {
                return Ok(found);
            }
        }
        let keys = self.refresh(cached.as_ref().map(|k| k.fetched_at)).await?;
        let found = matching(&keys.set, kid);
        if found.is_empty() {
            return Err(TokenError::UnknownKey(
                kid.map_or_else(|| "(the token names no key)".to_owned(), printable),
            ));
        }
        Ok(found)
    }

    /// Fetches the keys again unless another task did since `seen` or the last fetch was less
    /// than the refresh interval ago; returns the keys to use. A failed fetch keeps the old
    /// keys when there are any.
    async fn refresh(&self, seen: Option<Instant>) -> Result<Arc<Keys>, TokenError> {
        let mut last_fetch = self.last_fetch.lock().await;
        let current = self.keys.read().clone();
        let unavailable = || TokenError::IssuerUnavailable {
            issuer: self.issuer.clone(),
        };
        if let Some(keys) = &current
            && Some(keys.fetched_at) != seen
        {
            return Ok(Arc::clone(keys));
        }
        if last_fetch.is_some_and(|at| at.elapsed() < self.refresh_interval) {
            return current.ok_or_else(unavailable);
        }
        *last_fetch = Some(Instant::now());
        match self.fetch().await {
            Ok(set) => {
                tracing::info!(
                    issuer = %self.issuer,
                    keys = set.keys().len(),
                    "fetched the issuer's signing keys"
                );
                let keys = Arc::new(Keys {
                    set,
                    fetched_at: Instant::now(),
                });
                *self.keys.write() = Some(Arc::clone(&keys));
                Ok(keys)
            }
            Err(error) => {
                tracing::warn!(issuer = %self.issuer, "cannot fetch the issuer's keys: {error}");
                current.ok_or_else(unavailable)
            }
        }
    }

    /// Discovery, then the JWKS it names (the `openidconnect` crate checks that the discovery
    /// document names this issuer).
    async fn fetch(&self) -> Result<CoreJsonWebKeySet, String> {
        let issuer = IssuerUrl::new(self.issuer.clone()).map_err(|e| e.to_string())?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| error_chain(&e))?;
        Ok(metadata.jwks().clone())
    }
}

/// An error and its sources, one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Signing keys in `set` named `kid` (all signing keys when `kid` is `None`).
fn matching(set: &CoreJsonWebKeySet, kid: Option<&str>) -> Vec<CoreJsonWebKey> {
    set.keys()
        .iter()
        .filter(|key| matches!(key.key_use(), None | Some(CoreJsonWebKeyUse::Signature)))
        .filter(|key| kid.is_none_or(|kid| key.key_id().is_some_and(|id| id.as_str() == kid)))
        .cloned()
        .collect()
}

/// The value at a dotted claim path (`realm_access.roles`).
fn claim_at<'c>(claims: &'c Map<String, Value>, path: &str) -> Option<&'c Value> {
    let mut parts = path.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// A JWT `NumericDate` (seconds, possibly fractional) as whole seconds.
fn numeric_date(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.is_finite() && f.abs() < 1e15)
            .map(|f| {
                #[expect(
                    clippy::cast_possible_truncation,
                    reason = "finite and far inside i64 (checked above)"
                )]
                let secs = f.floor() as i64;
                secs
            })
    })
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier(extra: &str) -> OidcVerifier {
        let text = format!(
            r#"
[listener]
addresses = ["127.0.0.1:15306"]
fallback_target = "db"
[interception]
mode = "off"
[[targets]]
name = "db"
address = "127.0.0.1"
port = 3306
[[oidc]]
issuer = "https://idp.example"
audiences = ["urn:tollgate", "tollgate-cli"]
{extra}"#
        );
        let config =
            crate::config::Config::parse(&text, std::path::Path::new("t.toml")).expect("config");
        OidcVerifier::new(&config.oidc[0], http_client().expect("http"))
    }

    fn claims(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).expect("claims")
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn times_audience_and_groups() {
        let v = verifier("groups_claim = \"realm_access.roles\"\nleeway = \"30s\"\n");
        let ok = v
            .check_claims(
                &claims(
                    r#"{"sub":"u1","aud":["x","urn:tollgate"],"exp":1800000010,
                        "realm_access":{"roles":["dba","readers"]}}"#,
                ),
                "anyone",
                NOW,
            )
            .expect("valid");
        assert_eq!(ok.groups, ["dba", "readers"]);
        assert_eq!(ok.name, "u1");
        assert_eq!(ok.source, IdentitySource::Oidc);

        let expired = v
            .check_claims(
                &claims(r#"{"sub":"u","aud":"urn:tollgate","exp":1799999960}"#),
                "",
                NOW,
            )
            .expect_err("expired");
        assert_eq!(expired.to_string(), "token expired at 2027-01-15T07:59:20Z");
        // Within the leeway.
        v.check_claims(
            &claims(r#"{"sub":"u","aud":"urn:tollgate","exp":1799999980}"#),
            "",
            NOW,
        )
        .expect("leeway");
        let early = v
            .check_claims(
                &claims(r#"{"sub":"u","aud":"urn:tollgate","exp":1900000000,"nbf":1800000100}"#),
                "",
                NOW,
            )
            .expect_err("nbf");
        assert_eq!(
            early.to_string(),
            "token not valid before 2027-01-15T08:01:40Z"
        );
        let audience = v
            .check_claims(
                &claims(r#"{"sub":"u","aud":"other","exp":1900000000}"#),
                "",
                NOW,
            )
            .expect_err("aud");
        assert_eq!(audience.to_string(), "audience not accepted");
        // azp counts only without aud.
        v.check_claims(
            &claims(r#"{"sub":"u","azp":"tollgate-cli","exp":1900000000}"#),
            "",
            NOW,
        )
        .expect("azp");
        v.check_claims(
            &claims(r#"{"sub":"u","aud":"other","azp":"tollgate-cli","exp":1900000000}"#),
            "",
            NOW,
        )
        .expect_err("aud wins over azp");
        let missing = v
            .check_claims(&claims(r#"{"sub":"u","aud":"urn:tollgate"}"#), "", NOW)
            .expect_err("no exp");
        assert_eq!(missing.to_string(), "token has no exp claim");
    }

    #[test]
    fn username_claim_and_required_match() {
        let v = verifier("username_claim = \"email\"\nrequire_user_match = true\n");
        let token = claims(
            r#"{"sub":"u1","email":"a@example.test","aud":"urn:tollgate","exp":1900000000,"groups":"solo"}"#,
        );
        let ok = v
            .check_claims(&token, "a@example.test", NOW)
            .expect("match");
        assert_eq!(ok.groups, ["solo"]);
        let error = v.check_claims(&token, "bob", NOW).expect_err("mismatch");
        assert_eq!(
            error.to_string(),
            "MySQL user 'bob' does not match the token's email 'a@example.test'"
        );
    }

    #[test]
    fn jwt_shapes() {
        assert!(looks_like_jwt(b"eyJh.eyJi.c2ln"));
        assert!(looks_like_jwt(b"eyJh.eyJi."));
        assert!(!looks_like_jwt(b"eyJh.eyJi"));
        assert!(!looks_like_jwt(b"a.b.c.d"));
        assert!(!looks_like_jwt(b".eyJi.c2ln"));
        assert!(!looks_like_jwt(b"pass word.x.y"));
        assert!(!looks_like_jwt(b"alice-pw"));
    }

    #[test]
    fn config_refuses_none_and_hmac_and_plain_http() {
        let parse = |extra: &str| {
            crate::config::Config::parse(
                &format!(
                    "[listener]\naddresses = [\"127.0.0.1:1\"]\n[[targets]]\nname = \"db\"\n\
                     address = \"127.0.0.1\"\nport = 3306\n[[oidc]]\n{extra}"
                ),
                std::path::Path::new("t.toml"),
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
        };
        let base = "issuer = \"https://idp.example\"\naudiences = [\"a\"]\n";
        let error = parse(&format!("{base}algorithms = [\"RS256\", \"HS256\"]\n")).expect_err("hs");
        assert!(
            error.starts_with("t.toml:10:")
                && error.contains("oidc[0].algorithms[1]: algorithm HS256 is never accepted"),
            "{error}"
        );
        let error = parse(&format!("{base}algorithms = [\"none\"]\n")).expect_err("none");
        assert!(
            error.contains("algorithm none is never accepted"),
            "{error}"
        );
        let error =
            parse("issuer = \"http://idp.example\"\naudiences = [\"a\"]\n").expect_err("http");
        assert!(
            error.starts_with("t.toml:8:10: oidc[0].issuer: \"http://idp.example\" must use https"),
            "{error}"
        );
        parse("issuer = \"http://127.0.0.1:4000\"\naudiences = [\"a\"]\n").expect("loopback http");
        let error = parse("issuer = \"https://idp.example\"\naudiences = []\n").expect_err("aud");
        assert!(
            error.contains("oidc[0].audiences: name at least one"),
            "{error}"
        );
        let error = parse(&format!("{base}groups_claim = \"a..b\"\n")).expect_err("path");
        assert!(error.contains("oidc[0].groups_claim"), "{error}");
    }

    #[test]
    fn parse_refuses_critical_headers_and_bad_segments() {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let token = format!("{}.{}.", b64(r#"{"alg":"RS256","crit":["x"]}"#), b64("{}"));
        assert_eq!(
            UnverifiedToken::parse(token.as_bytes())
                .expect_err("crit")
                .to_string(),
            "token malformed: unsupported critical header"
        );
        let token = format!("{}.{}.", b64("[]"), b64("{}"));
        assert!(UnverifiedToken::parse(token.as_bytes()).is_err());
    }
}
