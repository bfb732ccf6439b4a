//! Discovery and the grants, through the `openidconnect` crate: the authorization-code flow
//! with PKCE (S256, a random `state` and `nonce`, the ID token verified against the issuer's
//! keys), the device-code flow (RFC 8628), the refresh-token grant and the client-credentials
//! grant; each answer goes through the cache ([`super::cache`]).
//!
//! The cache is consulted before the issuer: a token valid for more than
//! [`cache::REFRESH_MARGIN`] is returned without any request. Otherwise `tollgate login`
//! refreshes with the refresh token (falling back to a new sign-in when the issuer refuses
//! it), and `tollgate token` runs the client-credentials grant again.

use std::{fmt, os::unix::fs::MetadataExt as _, path::Path, time::Duration};

use openidconnect::{
    AdditionalProviderMetadata, AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    DeviceAuthorizationUrl, ErrorResponseType, HttpClientError, IssuerUrl, Nonce,
    OAuth2TokenResponse as _, PkceCodeChallenge, ProviderMetadata, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, StandardErrorResponse,
    core::{
        CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
        CoreClientAuthMethod, CoreDeviceAuthorizationResponse, CoreGrantType, CoreJsonWebKey,
        CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreResponseMode,
        CoreResponseType, CoreSubjectIdentifierType, CoreTokenResponse,
    },
    reqwest,
};
use serde::{Deserialize, Serialize};

use super::{
    ClientAuth, LoginArgs, Origin, Secret, TokenArgs, TokenError, TokenSet, browser,
    cache::{self, Entry, Request},
    now,
};

/// How long `tollgate login` waits for the browser's redirect.
const BROWSER_TIMEOUT: Duration = Duration::from_mins(10);

/// The one piece of discovery metadata `CoreProviderMetadata` lacks.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct DeviceMetadata {
    /// RFC 8628's endpoint; absent when the issuer has no device flow.
    #[serde(default)]
    device_authorization_endpoint: Option<DeviceAuthorizationUrl>,
}
impl AdditionalProviderMetadata for DeviceMetadata {}

/// Discovery metadata with the device authorization endpoint.
type Metadata = ProviderMetadata<
    DeviceMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

type HttpError = HttpClientError<reqwest::Error>;

/// `tollgate login`: the cached token, a refreshed one, or a new sign-in.
pub async fn login(args: &LoginArgs) -> Result<(TokenSet, Origin), TokenError> {
    let request = Request {
        grant: "login".to_owned(),
        scopes: login_scopes(&args.scope),
        audiences: Vec::new(),
        resources: Vec::new(),
    };
    let path = cache::file(&cache::dir()?, &args.issuer, &args.client_id);
    let cached = cache::load(&path).filter(|e| {
        e.request == request && e.issuer == args.issuer && e.client_id == args.client_id
    });
    if let Some(entry) = &cached
        && fresh(&entry.tokens)
    {
        return Ok((entry.tokens.clone(), Origin::Cache));
    }
    let http = http_client()?;
    let metadata = discover(&args.issuer, &http).await?;
    let device_url = metadata
        .additional_metadata()
        .device_authorization_endpoint
        .clone();
    let client =
        CoreClient::from_provider_metadata(metadata, ClientId::new(args.client_id.clone()), None)
            .set_auth_type(AuthType::RequestBody);

    let mut origin = Origin::New;
    let mut tokens = None;
    if let Some(old) = cached.map(|e| e.tokens)
        && let Some(refresh_token) = old.refresh_token.clone()
    {
        let refreshed = client
            .exchange_refresh_token(&RefreshToken::new(refresh_token.expose().to_owned()))
            .map_err(|e| no_endpoint(&args.issuer, &e))?
            .request_async(&http)
            .await
            .map_err(|e| request_error(&args.issuer, "refresh-token grant", e));
        match refreshed {
            Ok(response) => {
                let mut new = token_set(&response);
                new.refresh_token = new.refresh_token.or(old.refresh_token);
                new.id_token = new.id_token.or(old.id_token);
                // Taken when valid now: an issuer may mint tokens shorter-lived than the
                // refresh margin.
                if new.expires_at().is_some_and(|at| at > now()) {
                    tokens = Some(new);
                    origin = Origin::Refreshed;
                }
            }
            Err(error @ TokenError::Unreachable { .. }) => return Err(error),
            Err(error) => eprintln!("tollgate: refresh failed ({error}); signing in again"),
        }
    }
    let tokens = match tokens {
        Some(tokens) => tokens,
        None if args.device || (!browser::available() && device_url.is_some()) => {
            let url = device_url.ok_or_else(|| TokenError::Unsupported {
                issuer: args.issuer.clone(),
                what: "offers no device flow (no device_authorization_endpoint)".to_owned(),
            })?;
            let client = client.set_device_authorization_url(url);
            let details: CoreDeviceAuthorizationResponse = client
                .exchange_device_code()
                .add_scopes(scopes(&request.scopes))
                .request_async(&http)
                .await
                .map_err(|e| request_error(&args.issuer, "device authorization", e))?;
            eprintln!(
                "tollgate: to sign in, visit {} and enter the code {}",
                details.verification_uri().as_str(),
                details.user_code().secret()
            );
            if let Some(complete) = details.verification_uri_complete() {
                eprintln!("tollgate: or open {}", complete.secret());
            }
            let response = client
                .exchange_device_access_token(&details)
                .map_err(|e| no_endpoint(&args.issuer, &e))?
                .request_async(&http, tokio::time::sleep, None)
                .await
                .map_err(|e| request_error(&args.issuer, "device-code grant", e))?;
            // No nonce in this flow: the ID token is left to the gateway to verify.
            token_set(&response)
        }
        None => authorization_code(args, client, &request.scopes, &http).await?,
    };
    cache::store(
        &path,
        &Entry {
            issuer: args.issuer.clone(),
            client_id: args.client_id.clone(),
            request,
            tokens: tokens.clone(),
        },
    )?;
    Ok((tokens, origin))
}

/// The authorization-code flow with PKCE: the loopback listener, the browser, the code
/// exchange, the ID token checked (signature, issuer, audience, expiry, nonce).
async fn authorization_code(
    args: &LoginArgs,
    client: CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
    requested: &[String],
    http: &reqwest::Client,
) -> Result<TokenSet, TokenError> {
    let loopback = browser::Loopback::bind().await?;
    let redirect_uri = RedirectUrl::new(loopback.redirect_uri())
        .map_err(|e| TokenError::BadRedirect(format!("cannot build the redirect URI: {e}")))?;
    let client = client.set_redirect_uri(redirect_uri);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        // `openid` is always added by the crate.
        .add_scopes(
            scopes(requested)
                .into_iter()
                .filter(|s| s.as_str() != "openid"),
        )
        .set_pkce_challenge(challenge)
        .url();
    browser::open(url.as_str());
    let redirect = loopback.wait(BROWSER_TIMEOUT).await?;
    if let Some((error, description)) = redirect.error {
        let description = description
            .map(|d| format!(": {}", super::one_line(&d)))
            .unwrap_or_default();
        let error = super::one_line(&error);
        return Err(if error == "access_denied" {
            TokenError::Denied(description)
        } else {
            TokenError::Refused {
                grant: "authorization request",
                code: error,
                description,
            }
        });
    }
    if redirect.state.as_deref() != Some(state.secret().as_str()) {
        return Err(TokenError::BadRedirect(
            "its state does not match this login (a stale or forged redirect); try again"
                .to_owned(),
        ));
    }
    let code = redirect
        .code
        .ok_or_else(|| TokenError::BadRedirect("it carries no code".to_owned()))?;
    let response = client
        .exchange_code(AuthorizationCode::new(code.expose().to_owned()))
        .map_err(|e| no_endpoint(&args.issuer, &e))?
        .set_pkce_verifier(verifier)
        .request_async(http)
        .await
        .map_err(|e| request_error(&args.issuer, "authorization-code grant", e))?;
    if let Some(id_token) = response.extra_fields().id_token() {
        id_token
            .claims(&client.id_token_verifier(), &nonce)
            .map_err(|e| TokenError::IdToken(e.to_string()))?;
    }
    Ok(token_set(&response))
}

/// `tollgate token --client-credentials`: the cached token, or the grant (again).
pub async fn client_credentials(args: &TokenArgs) -> Result<(TokenSet, Origin), TokenError> {
    let mut scopes_requested: Vec<String> = args
        .scope
        .iter()
        .flat_map(|s| s.split_whitespace())
        .map(str::to_owned)
        .collect();
    scopes_requested.sort();
    scopes_requested.dedup();
    let request = Request {
        grant: "client_credentials".to_owned(),
        scopes: scopes_requested,
        audiences: args.audience.clone(),
        resources: args.resource.clone(),
    };
    let path = cache::file(&cache::dir()?, &args.issuer, &args.client_id);
    let cached = cache::load(&path).filter(|e| {
        e.request == request && e.issuer == args.issuer && e.client_id == args.client_id
    });
    if let Some(entry) = &cached
        && fresh(&entry.tokens)
    {
        return Ok((entry.tokens.clone(), Origin::Cache));
    }
    let secret = read_secret(args)?;
    let http = http_client()?;
    let metadata = discover(&args.issuer, &http).await?;
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(args.client_id.clone()),
        Some(ClientSecret::new(secret.expose().to_owned())),
    )
    .set_auth_type(match args.client_auth {
        ClientAuth::Basic => AuthType::BasicAuth,
        ClientAuth::Post => AuthType::RequestBody,
    });
    let mut grant = client
        .exchange_client_credentials()
        .map_err(|e| no_endpoint(&args.issuer, &e))?
        .add_scopes(scopes(&request.scopes));
    for audience in &request.audiences {
        grant = grant.add_extra_param("audience", audience.clone());
    }
    for resource in &request.resources {
        grant = grant.add_extra_param("resource", resource.clone());
    }
    let response = grant
        .request_async(&http)
        .await
        .map_err(|e| request_error(&args.issuer, "client-credentials grant", e))?;
    let tokens = token_set(&response);
    if tokens.usable().is_none() {
        return Err(TokenError::NoUsableToken);
    }
    cache::store(
        &path,
        &Entry {
            issuer: args.issuer.clone(),
            client_id: args.client_id.clone(),
            request,
            tokens: tokens.clone(),
        },
    )?;
    let origin = if cached.is_some() {
        Origin::Refreshed
    } else {
        Origin::New
    };
    Ok((tokens, origin))
}

/// The scopes `tollgate login` asks for: `openid` plus `--scope` (split on spaces), or
/// `openid offline_access` by default; sorted, without duplicates.
fn login_scopes(given: &[String]) -> Vec<String> {
    let mut scopes: Vec<String> = if given.is_empty() {
        vec!["offline_access".to_owned()]
    } else {
        given
            .iter()
            .flat_map(|s| s.split_whitespace())
            .map(str::to_owned)
            .collect()
    };
    scopes.push("openid".to_owned());
    scopes.sort();
    scopes.dedup();
    scopes
}

fn scopes(names: &[String]) -> Vec<Scope> {
    names.iter().cloned().map(Scope::new).collect()
}

/// True when the usable token stays valid for more than [`cache::REFRESH_MARGIN`].
fn fresh(tokens: &TokenSet) -> bool {
    tokens.usable().is_some()
        && tokens
            .expires_at()
            .is_some_and(|at| at > now() + cache::REFRESH_MARGIN)
}

fn token_set(response: &CoreTokenResponse) -> TokenSet {
    TokenSet {
        access_token: Secret::new(response.access_token().secret().clone()),
        id_token: response
            .extra_fields()
            .id_token()
            .map(|t| Secret::new(t.to_string())),
        refresh_token: response
            .refresh_token()
            .map(|t| Secret::new(t.secret().clone())),
        access_expires_at: response
            .expires_in()
            .map(|d| now().saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))),
    }
}

fn http_client() -> Result<reqwest::Client, TokenError> {
    crate::identity::oidc::http_client()
        .map_err(|e| TokenError::Local(format!("building the HTTP client: {e}")))
}

/// Fetches and validates the discovery document (and the keys it names).
async fn discover(issuer: &str, http: &reqwest::Client) -> Result<Metadata, TokenError> {
    use openidconnect::DiscoveryError;
    let url = IssuerUrl::new(issuer.to_owned()).map_err(|e| TokenError::InvalidIssuer {
        issuer: issuer.to_owned(),
        reason: e.to_string(),
    })?;
    let discovery = |reason: String| TokenError::Discovery {
        issuer: issuer.to_owned(),
        reason,
    };
    Metadata::discover_async(url, http)
        .await
        .map_err(|error| match error {
            DiscoveryError::Request(e) => transport(issuer, &e),
            DiscoveryError::Response(status, _, _) => discovery(format!("HTTP {status}")),
            DiscoveryError::Parse(e) => discovery(format!(
                "not a valid discovery document or key set (at {})",
                e.path()
            )),
            DiscoveryError::Validation(reason) | DiscoveryError::Other(reason) => {
                discovery(super::one_line(&reason))
            }
            DiscoveryError::UrlParse(e) => discovery(e.to_string()),
            _ => discovery("unknown error".to_owned()),
        })
}

/// An error from a token or device endpoint, in one line without the answer's content.
fn request_error<T>(
    issuer: &str,
    grant: &'static str,
    error: RequestTokenError<HttpError, StandardErrorResponse<T>>,
) -> TokenError
where
    T: ErrorResponseType + fmt::Display + 'static,
{
    match error {
        RequestTokenError::ServerResponse(response) => {
            let code = response.error().to_string();
            let description = response
                .error_description()
                .map(|d| format!(": {}", super::one_line(d)))
                .unwrap_or_default();
            let code = super::one_line(&code);
            match code.as_str() {
                "access_denied" => TokenError::Denied(description),
                "expired_token" => TokenError::DeviceCodeExpired,
                _ => TokenError::Refused {
                    grant,
                    code,
                    description,
                },
            }
        }
        RequestTokenError::Request(e) => transport(issuer, &e),
        RequestTokenError::Parse(e, _) => TokenError::BadResponse {
            endpoint: "token endpoint",
            reason: format!("not a token response (at {})", e.path()),
        },
        RequestTokenError::Other(reason) => TokenError::BadResponse {
            endpoint: "token endpoint",
            reason: super::one_line(&reason),
        },
    }
}

/// A transport failure: the innermost cause (e.g. "Connection refused (os error 111)").
fn transport(issuer: &str, error: &HttpError) -> TokenError {
    let mut cause: &dyn std::error::Error = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    TokenError::Unreachable {
        issuer: issuer.to_owned(),
        reason: cause.to_string(),
    }
}

fn no_endpoint(issuer: &str, error: &openidconnect::ConfigurationError) -> TokenError {
    TokenError::Discovery {
        issuer: issuer.to_owned(),
        reason: error.to_string(),
    }
}

/// The client secret from `--client-secret-env` or `--client-secret-file` (the file must not
/// be readable by group or others); surrounding whitespace is dropped.
fn read_secret(args: &TokenArgs) -> Result<Secret, TokenError> {
    let raw = if let Some(var) = &args.client_secret_env {
        std::env::var(var)
            .map_err(|_| TokenError::Secret(format!("environment variable {var} is not set")))?
    } else if let Some(path) = &args.client_secret_file {
        read_secret_file(path)?
    } else {
        return Err(TokenError::Secret(
            "give --client-secret-env or --client-secret-file".to_owned(),
        ));
    };
    let raw = Secret::new(raw);
    let trimmed = raw.expose().trim();
    if trimmed.is_empty() {
        return Err(TokenError::Secret("it is empty".to_owned()));
    }
    Ok(Secret::new(trimmed.to_owned()))
}

fn read_secret_file(path: &Path) -> Result<String, TokenError> {
    let io = |source| TokenError::Io {
        what: "reading the client secret file",
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.mode() & 0o077 != 0 {
        return Err(TokenError::Unsafe(format!(
            "client secret file {} is readable by group or others (mode {:o}): chmod 600 it",
            path.display(),
            meta.mode() & 0o777
        )));
    }
    std::fs::read_to_string(path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_always_asks_for_openid() {
        assert_eq!(login_scopes(&[]), ["offline_access", "openid"]);
        assert_eq!(
            login_scopes(&["api:read email".to_owned(), "openid".to_owned()]),
            ["api:read", "email", "openid"]
        );
    }

    #[tokio::test]
    async fn an_unreachable_issuer_is_one_line() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let issuer = format!("http://127.0.0.1:{port}");
        let error = discover(&issuer, &http_client().expect("client"))
            .await
            .expect_err("nobody listens");
        let text = error.to_string();
        assert!(
            text.starts_with(&format!("issuer {issuer} unreachable: ")),
            "{text}"
        );
        assert!(!text.contains('\n'));
    }

    #[test]
    fn a_secret_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let error = read_secret_file(&path).expect_err("refused");
        assert!(error.to_string().contains("chmod 600"));
        assert!(!error.to_string().contains("s3cret"));
    }
}
