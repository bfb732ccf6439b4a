//! The admin listener (`[admin] listen`, or `tollgate ui` on its own): the web viewer of
//! recorded sessions, and `/metrics` when `[metrics]` has no listener of its own.
//!
//! Pages ([`pages`]): `/login` (single sign-on and the admin token form), `/sessions` (the
//! list with `tollgate sessions list`'s filters), `/sessions/{id}` (header and timeline),
//! `/sessions/{id}/replay?at=N` (one statement at a time: its request, then its response).
//! No recording is served without a signed-in viewer or the admin bearer token ([`auth`]).
//! Reading the store is blocking file I/O, so it runs on tokio's blocking pool.

pub mod approvals;
pub mod auth;
pub mod pages;

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use axum::{
    Router,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    cli::ListFilter,
    config::Config,
    recording::RecorderHealth,
    sessions::{self, ShowError, StatementKind},
};
use auth::{Auth, AuthSetupError, LOGIN_COOKIE, LoginError, Viewer};

/// Why the admin listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// `tollgate ui` without an `[admin]` section.
    #[error(
        "no [admin] section in the configuration: the viewer needs a way to sign in \
         (admin.token_file or [admin.oidc])"
    )]
    NotConfigured,
    /// The token or client secret could not be read, or the OIDC client set up.
    #[error(transparent)]
    Setup(#[from] AuthSetupError),
    /// The listener address could not be bound.
    #[error("admin.listen {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The bind error.
        source: std::io::Error,
    },
}

/// What the handlers share.
#[derive(Debug)]
pub struct AdminState {
    /// The embedded store the recordings are read from.
    store: PathBuf,
    /// Sign-ins and viewer sessions.
    auth: Auth,
    /// The recorder's health for `/metrics`, when this listener serves it.
    metrics: Option<Arc<RecorderHealth>>,
    /// The gateway's approval requests (`tollgate serve` only), and `[approvals]`.
    approvals: Option<(
        crate::approvals::Approvals,
        crate::approvals::ApprovalsConfig,
    )>,
}

impl AdminState {
    /// The state for `config`'s `[admin]` section.
    pub fn new(config: &Config, metrics: Option<Arc<RecorderHealth>>) -> Result<Self, AdminError> {
        let admin = config.admin.as_ref().ok_or(AdminError::NotConfigured)?;
        Ok(Self {
            store: config.recording.store.clone(),
            auth: Auth::new(config, admin)?,
            metrics,
            approvals: None,
        })
    }
}

/// The viewer's routes.
pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/", get(|| async { see_other("/sessions", None) }))
        .route("/login", get(login_page))
        .route("/login/token", post(token_login))
        .route("/login/oidc", get(oidc_begin))
        .route("/oidc/callback", get(oidc_callback))
        .route("/logout", post(logout))
        .route("/sessions", get(list))
        .route("/sessions/{id}", get(show))
        .route("/sessions/{id}/replay", get(replay))
        .route("/metrics", get(metrics))
        .merge(approvals::routes())
        .fallback(|| async {
            html(
                StatusCode::NOT_FOUND,
                pages::message("Not found", None, "There is no such page."),
            )
        })
        .with_state(state)
}

/// Starts the admin listener of `tollgate serve` when `[admin]` is configured; `metrics` is
/// the recorder's health when `/metrics` is to be served here too.
pub async fn start(
    config: &Config,
    metrics: Option<Arc<RecorderHealth>>,
    approvals: Option<crate::approvals::Approvals>,
    shutdown: &CancellationToken,
) -> Result<Option<JoinHandle<()>>, AdminError> {
    let Some(admin) = &config.admin else {
        return Ok(None);
    };
    let mut state = AdminState::new(config, metrics)?;
    state.approvals = approvals.map(|a| (a, config.approvals.clone()));
    let state = Arc::new(state);
    serve(admin.listen, state, shutdown.clone()).await.map(Some)
}

/// `tollgate ui`: the viewer alone, over the configured store, until `shutdown`.
pub async fn run_standalone(
    config: &Config,
    listen: Option<SocketAddr>,
    shutdown: CancellationToken,
) -> Result<(), AdminError> {
    let admin = config.admin.as_ref().ok_or(AdminError::NotConfigured)?;
    let state = Arc::new(AdminState::new(config, None)?);
    let task = serve(listen.unwrap_or(admin.listen), state, shutdown).await?;
    let _ = task.await;
    Ok(())
}

/// Binds `addr` and serves the viewer until `shutdown` is cancelled.
async fn serve(
    addr: SocketAddr,
    state: Arc<AdminState>,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, AdminError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| AdminError::Bind { addr, source })?;
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(addr = %bound, "session viewer at http://{bound}/");
    let app = router(state);
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "admin listener failed");
        }
    }))
}

/// An HTML response that is never cached, framed, or allowed to load anything from
/// elsewhere.
fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// A 303 to `to` (a local path or the issuer), setting `cookie` when given.
fn see_other(to: &str, cookie: Option<&str>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(to) {
        headers.insert(header::LOCATION, location);
    }
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(c).ok()) {
        headers.append(header::SET_COOKIE, cookie);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> &str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The viewer a request comes from: the admin bearer token, or a live viewer session. Without
/// either: a wrong bearer token gets 401, anything else a 303 to the login page; neither
/// carries any recording.
#[expect(
    clippy::result_large_err,
    reason = "the error is the response itself, handed straight back to axum"
)]
fn viewer(state: &AdminState, headers: &HeaderMap) -> Result<Viewer, Response> {
    if let Some(authorization) = headers.get(header::AUTHORIZATION) {
        let given = authorization
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if state.auth.is_admin_token(given) {
            return Ok(Viewer {
                name: "admin token".to_owned(),
                via: "token",
                groups: Vec::new(),
            });
        }
        let mut response = html(
            StatusCode::UNAUTHORIZED,
            pages::login(
                state.auth.has_oidc(),
                state.auth.has_token(),
                Some("wrong admin token"),
            ),
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"tollgate\""),
        );
        return Err(response);
    }
    state
        .auth
        .viewer_of(header_str(headers, header::COOKIE))
        .ok_or_else(|| see_other("/login", None))
}

/// The `name=value` pairs of a query string or form body, decoded.
fn pairs(raw: &str) -> Vec<(String, String)> {
    openidconnect::url::form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn first<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn login_page(State(state): State<Arc<AdminState>>) -> Response {
    html(
        StatusCode::OK,
        pages::login(state.auth.has_oidc(), state.auth.has_token(), None),
    )
}

fn signed_in(state: &AdminState, viewer: Viewer) -> Response {
    tracing::info!(viewer = %viewer.name, via = viewer.via, "viewer session started");
    let cookie = state.auth.start_session(viewer);
    see_other("/sessions", Some(&cookie))
}

fn login_failed(state: &AdminState, error: &LoginError) -> Response {
    let status = match error {
        LoginError::NotAuditor { .. } => StatusCode::FORBIDDEN,
        LoginError::WrongToken => StatusCode::UNAUTHORIZED,
        LoginError::Issuer(_) => StatusCode::BAD_GATEWAY,
        _ => StatusCode::BAD_REQUEST,
    };
    if status == StatusCode::FORBIDDEN {
        return html(
            status,
            pages::message("Forbidden", None, &error.to_string()),
        );
    }
    html(
        status,
        pages::login(
            state.auth.has_oidc(),
            state.auth.has_token(),
            Some(&error.to_string()),
        ),
    )
}

async fn token_login(State(state): State<Arc<AdminState>>, body: String) -> Response {
    let form = pairs(&body);
    match state.auth.token_login(first(&form, "token").unwrap_or("")) {
        Ok(viewer) => signed_in(&state, viewer),
        Err(error) => {
            tracing::warn!("viewer sign-in refused: {error}");
            login_failed(&state, &error)
        }
    }
}

async fn oidc_begin(State(state): State<Arc<AdminState>>) -> Response {
    match state.auth.begin_oidc().await {
        Ok((url, cookie)) => see_other(&url, Some(&cookie)),
        Err(error) => login_failed(&state, &error),
    }
}

async fn oidc_callback(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = pairs(query.as_deref().unwrap_or(""));
    let browser_state = auth::cookie(header_str(&headers, header::COOKIE), LOGIN_COOKIE);
    let error = first(&query, "error").map(|e| (e, first(&query, "error_description")));
    let finished = state
        .auth
        .finish_oidc(
            first(&query, "code"),
            first(&query, "state"),
            error,
            browser_state,
        )
        .await;
    let mut response = match finished {
        Ok(viewer) => signed_in(&state, viewer),
        Err(error) => login_failed(&state, &error),
    };
    response.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static("tollgate_login=; Path=/oidc; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    response
}

async fn logout(State(state): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    let cookie = state.auth.end_session(header_str(&headers, header::COOKIE));
    see_other("/login", Some(&cookie))
}

/// The list page's filters from its query string: the form as given, and the filter.
fn filters(query: &[(String, String)]) -> (pages::FilterForm, ListFilter) {
    let text = |name: &str| first(query, name).unwrap_or("").trim().to_owned();
    let form = pages::FilterForm {
        since: text("since"),
        until: text("until"),
        user: text("user"),
        group: text("group"),
        target: text("target"),
        contains: text("contains"),
        kinds: query
            .iter()
            .filter(|(k, v)| k == "kind" && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect(),
        live: first(query, "live").is_some_and(|v| !v.is_empty()),
    };
    let some = |value: &String| (!value.is_empty()).then(|| value.clone());
    let filter = ListFilter {
        since: some(&form.since),
        until: some(&form.until),
        user: some(&form.user),
        group: some(&form.group),
        target: some(&form.target),
        contains: some(&form.contains),
        kind: Vec::new(),
        live: form.live,
    };
    (form, filter)
}

async fn list(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let viewer = match viewer(&state, &headers) {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let query = pairs(query.as_deref().unwrap_or(""));
    let (form, mut given) = filters(&query);
    for kind in &form.kinds {
        let Ok(parsed) = <StatementKind as clap::ValueEnum>::from_str(kind, true) else {
            let error = format!(
                "kind {kind:?} is not a statement kind (delete, update, ddl, error, refused)"
            );
            return html(
                StatusCode::BAD_REQUEST,
                pages::list(&viewer.name, &form, &[], Some(&error)),
            );
        };
        given.kind.push(parsed);
    }
    let filter = match given.resolve(time::OffsetDateTime::now_utc()) {
        Ok(filter) => filter,
        Err(error) => {
            let message = format!(
                "{} {:?} is not a time: give RFC 3339 (2026-11-26T22:00:00Z) or how long ago \
                 (30s, 30m, 2h, 7d, 2w)",
                error.flag.trim_start_matches('-'),
                error.given
            );
            return html(
                StatusCode::BAD_REQUEST,
                pages::list(&viewer.name, &form, &[], Some(&message)),
            );
        }
    };
    let store = state.store.clone();
    let listed = tokio::task::spawn_blocking(move || sessions::list(&store, &filter)).await;
    match listed {
        Ok(Ok((sessions, _))) => html(
            StatusCode::OK,
            pages::list(&viewer.name, &form, &sessions, None),
        ),
        Ok(Err(error)) => {
            tracing::error!(%error, "the viewer cannot read the store");
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::message(
                    "Store unreadable",
                    Some(&viewer.name),
                    &format!("cannot read the recordings: {error}"),
                ),
            )
        }
        Err(_) => html(
            StatusCode::INTERNAL_SERVER_ERROR,
            pages::message("Error", Some(&viewer.name), "reading the store failed"),
        ),
    }
}

/// The events of session `id` for `viewer`, or the page saying why not (404 for an unknown
/// or malformed id).
async fn session_events(
    state: &AdminState,
    viewer: &Viewer,
    id: &str,
) -> Result<Vec<crate::recording::RecordedEvent>, Response> {
    let not_found = || {
        html(
            StatusCode::NOT_FOUND,
            pages::message(
                "Session not found",
                Some(&viewer.name),
                &format!("No recorded session has the id {id:?}."),
            ),
        )
    };
    let Ok(uuid) = Uuid::parse_str(id) else {
        return Err(not_found());
    };
    let store = state.store.clone();
    let read =
        tokio::task::spawn_blocking(move || sessions::events_of(&store, &uuid.to_string())).await;
    match read {
        Ok(Ok(events)) if !events.is_empty() => {
            tracing::info!(viewer = %viewer.name, via = viewer.via, session = %uuid, "recording viewed");
            Ok(events)
        }
        Ok(Ok(_) | Err(ShowError::Unknown(_) | ShowError::Ambiguous(..))) => Err(not_found()),
        Ok(Err(error)) => Err(html(
            StatusCode::INTERNAL_SERVER_ERROR,
            pages::message(
                "Store unreadable",
                Some(&viewer.name),
                &format!("cannot read the recordings: {error}"),
            ),
        )),
        Err(_) => Err(html(
            StatusCode::INTERNAL_SERVER_ERROR,
            pages::message("Error", Some(&viewer.name), "reading the store failed"),
        )),
    }
}

async fn show(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let viewer = match viewer(&state, &headers) {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    match session_events(&state, &viewer, &id).await {
        Ok(events) => html(StatusCode::OK, pages::session(&viewer.name, &events)),
        Err(response) => response,
    }
}

async fn replay(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let viewer = match viewer(&state, &headers) {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let query = pairs(query.as_deref().unwrap_or(""));
    let at = first(&query, "at")
        .and_then(|a| a.parse::<usize>().ok())
        .unwrap_or(0);
    match session_events(&state, &viewer, &id).await {
        Ok(events) => {
            let statements = events
                .iter()
                .filter(|e| matches!(e.kind, crate::recording::EventKind::Statement(_)))
                .count();
            let at = at.min((statements * 2).saturating_sub(1));
            html(StatusCode::OK, pages::replay(&viewer.name, &events, at))
        }
        Err(response) => response,
    }
}

async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    match &state.metrics {
        Some(health) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            health.prometheus(),
        )
            .into_response(),
        None => html(
            StatusCode::NOT_FOUND,
            pages::message(
                "Not found",
                None,
                "Metrics are served on [metrics] listen, not here.",
            ),
        ),
    }
}
