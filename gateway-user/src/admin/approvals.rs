//! Approvals on the admin listener: the JSON API (`GET /api/approvals`, `POST
//! /api/approvals/{id}/approve|deny` with an optional `{"reason": "..."}`) and the page
//! (`/approvals`, with approve/deny forms).
//!
//! Who may decide: the holder of the admin token, or a signed-in viewer in `[approvals]
//! approvers_group` (everyone else gets 403; without an approvers group only the admin token
//! may). Posts authenticated by the viewer's cookie must carry its CSRF token (the form's
//! `csrf` field, or the `X-Tollgate-Csrf` header for the API) and, when the browser sends an
//! `Origin`, come from this listener's own origin; a bearer token is never sent by a browser on
//! its own, so bearer requests need neither.

use std::{fmt::Write as _, sync::Arc};

use axum::{
    Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use super::{
    AdminState,
    auth::{SESSION_COOKIE, Viewer, cookie},
    first, header_str, html, pages, pairs, see_other,
};
use crate::approvals::{Approval, Approvals, DecideError, Decision, Status, status_name};

/// The approvals routes (merged into the viewer's router).
pub fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/api/approvals", get(api_list))
        .route("/api/approvals/{id}/{verdict}", post(api_decide))
        .route("/approvals", get(page))
        .route("/approvals/{id}", post(form_decide))
}

/// The CSRF token of a viewer session: bound to the session's (secret, random) cookie, so a
/// page of another origin, which cannot read the cookie, cannot forge it.
fn csrf_token(session_cookie: &str) -> String {
    let digest = Sha256::digest(format!("tollgate-csrf\0{session_cookie}").as_bytes());
    digest.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A JSON response (axum's `Json` needs a feature the workspace leaves out).
fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    let body = serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned());
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn json_error(status: StatusCode, message: &str) -> Response {
    json(status, &serde_json::json!({ "error": message }))
}

/// Whether `viewer` may decide, with `group` the approvers group: the admin token, or a
/// member of the group (nobody else, and without a group only the admin token).
fn may_decide(group: Option<&str>, viewer: &Viewer) -> bool {
    viewer.via == "token" || group.is_some_and(|g| viewer.groups.iter().any(|have| have == g))
}

/// The approver a request comes from, and the gateway's approvals; the response saying why
/// not otherwise (`api`: JSON errors instead of pages).
#[expect(
    clippy::result_large_err,
    reason = "the error is the response itself, handed straight back to axum"
)]
fn approver(
    state: &AdminState,
    headers: &HeaderMap,
    api: bool,
) -> Result<(Viewer, Approvals), Response> {
    let viewer = super::viewer(state, headers)?;
    let error = |status: StatusCode, message: &str| {
        if api {
            json_error(status, message)
        } else {
            html(
                status,
                pages::message("Approvals", Some(&viewer.name), message),
            )
        }
    };
    let Some((approvals, config)) = &state.approvals else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "approvals are served by the admin listener of `tollgate serve`",
        ));
    };
    if !may_decide(config.approvers_group.as_deref(), &viewer) {
        tracing::warn!(viewer = %viewer.name, "approvals refused: not an approver");
        return Err(error(
            StatusCode::FORBIDDEN,
            &format!(
                "{} is not in the approvers group ([approvals] approvers_group)",
                viewer.name
            ),
        ));
    }
    Ok((viewer, approvals.clone()))
}

/// For a post authenticated by the viewer's cookie: the CSRF token given matches, and the
/// `Origin`, when sent, is this listener's.
fn csrf_ok(headers: &HeaderMap, given: Option<&str>) -> bool {
    if headers.contains_key(header::AUTHORIZATION) {
        return true;
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        let host = header_str(headers, header::HOST);
        let origin_host = origin
            .split_once("://")
            .map_or(origin, |(_, rest)| rest)
            .trim_end_matches('/');
        if host.is_empty() || origin_host != host {
            return false;
        }
    }
    let Some(session) = cookie(header_str(headers, header::COOKIE), SESSION_COOKIE) else {
        return false;
    };
    given.is_some_and(|g| same(g, &csrf_token(session)))
}

async fn api_list(State(state): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    match approver(&state, &headers, true) {
        Ok((_, approvals)) => json(StatusCode::OK, &approvals.list()),
        Err(response) => response,
    }
}

/// The body of `POST /api/approvals/{id}/approve|deny`.
#[derive(Debug, Default, Deserialize)]
struct DecideBody {
    #[serde(default)]
    reason: Option<String>,
}

fn decide(
    approvals: &Approvals,
    viewer: &Viewer,
    id: &str,
    approved: bool,
    reason: Option<String>,
) -> Result<Approval, DecideError> {
    let decided = approvals.decide(
        id,
        Decision {
            approved,
            by: format!("{} (web, {})", viewer.name, viewer.via),
            reason: reason.filter(|r| !r.trim().is_empty()),
            at: OffsetDateTime::now_utc(),
        },
    );
    tracing::info!(viewer = %viewer.name, id, approved, ok = decided.is_ok(), "approval decided in the viewer");
    decided
}

fn decide_status(error: &DecideError) -> StatusCode {
    match error {
        DecideError::NotFound(_) => StatusCode::NOT_FOUND,
        DecideError::Ambiguous { .. } => StatusCode::BAD_REQUEST,
        DecideError::Closed { .. } => StatusCode::CONFLICT,
    }
}

async fn api_decide(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path((id, verdict)): Path<(String, String)>,
    body: String,
) -> Response {
    let (viewer, approvals) = match approver(&state, &headers, true) {
        Ok(found) => found,
        Err(response) => return response,
    };
    if !csrf_ok(
        &headers,
        headers.get("x-tollgate-csrf").and_then(|v| v.to_str().ok()),
    ) {
        return json_error(StatusCode::FORBIDDEN, "missing or wrong CSRF token");
    }
    let approved = match verdict.as_str() {
        "approve" => true,
        "deny" => false,
        _ => return json_error(StatusCode::NOT_FOUND, "use /approve or /deny"),
    };
    let body: DecideBody = if body.trim().is_empty() {
        DecideBody::default()
    } else {
        match serde_json::from_str(&body) {
            Ok(body) => body,
            Err(error) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    &format!("the body is not {{\"reason\": \"...\"}}: {error}"),
                );
            }
        }
    };
    match decide(&approvals, &viewer, &id, approved, body.reason) {
        Ok(approval) => json(StatusCode::OK, &approval),
        Err(error) => json_error(decide_status(&error), &error.to_string()),
    }
}

async fn form_decide(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: String,
) -> Response {
    let (viewer, approvals) = match approver(&state, &headers, false) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let form = pairs(&body);
    if !csrf_ok(&headers, first(&form, "csrf")) {
        return html(
            StatusCode::FORBIDDEN,
            pages::message(
                "Approvals",
                Some(&viewer.name),
                "missing or wrong CSRF token",
            ),
        );
    }
    let approved = first(&form, "decision") == Some("approve");
    let reason = first(&form, "reason").map(str::to_owned);
    match decide(&approvals, &viewer, &id, approved, reason) {
        Ok(_) => see_other("/approvals", None),
        Err(error) => html(
            decide_status(&error),
            pages::message("Approvals", Some(&viewer.name), &error.to_string()),
        ),
    }
}

async fn page(State(state): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    let (viewer, approvals) = match approver(&state, &headers, false) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let csrf = cookie(header_str(&headers, header::COOKIE), SESSION_COOKIE)
        .map(csrf_token)
        .unwrap_or_default();
    html(
        StatusCode::OK,
        render(&viewer.name, &approvals.list(), &csrf),
    )
}

/// The approvals page: open requests first with their forms, then the decided ones.
#[must_use]
pub fn render(viewer: &str, list: &[Approval], csrf: &str) -> String {
    let esc = pages::esc;
    let now = OffsetDateTime::now_utc();
    let mut body = String::from("<h1>Approvals</h1>");
    let mut open: Vec<&Approval> = list.iter().collect();
    open.sort_by_key(|a| (a.status(now) != Status::Pending, a.request.approval_id));
    if open.is_empty() {
        body.push_str("<p id=\"none\">No approval requests.</p>");
    }
    body.push_str(
        "<table id=\"approvals\"><thead><tr><th>Request</th><th>Status</th><th>Who</th>\
         <th>Target</th><th>Statement</th><th>Impact</th><th>Decision</th></tr></thead><tbody>",
    );
    for a in open {
        let r = &a.request;
        let status = a.status(now);
        let process = r.process.as_ref().map_or_else(String::new, |p| {
            format!("<br>pid {} uid {} {}", p.pid, p.uid, esc(&p.comm))
        });
        let decision = match (&a.decision, status) {
            (_, Status::Pending) => {
                let id = esc(&r.approval_id.to_string());
                format!(
                    "<form method=\"post\" action=\"/approvals/{id}\">\
                     <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                     <input name=\"reason\" placeholder=\"reason\">\
                     <button name=\"decision\" value=\"approve\">Approve</button>\
                     <button name=\"decision\" value=\"deny\">Deny</button></form>",
                    csrf = esc(csrf)
                )
            }
            (Some(d), _) => format!(
                "{} by {}{}",
                if d.approved { "approved" } else { "denied" },
                esc(&d.by),
                d.reason
                    .as_deref()
                    .map(|r| format!(": {}", esc(r)))
                    .unwrap_or_default()
            ),
            (None, _) => String::new(),
        };
        let _ = write!(
            body,
            "<tr class=\"approval {status}\" data-id=\"{id}\"><td><code>{id}</code><br>\
             <a href=\"/sessions/{session}\">session</a></td><td>{status}</td>\
             <td>{who} [{groups}]<br>{client}{process}</td><td>{target}{db}</td>\
             <td><pre>{sql}</pre>guardrail '{rule}' ({risks})</td><td>{rows} ({detail})</td>\
             <td>{decision}</td></tr>",
            id = esc(&r.approval_id.to_string()),
            session = esc(&r.requested_by_session.to_string()),
            status = status_name(status),
            who = esc(r.identity.as_deref().unwrap_or("(relayed login)")),
            groups = esc(&r.groups.join(", ")),
            client = esc(&r.client_addr),
            target = esc(&r.target),
            db = r
                .database
                .as_deref()
                .map(|d| format!("/{}", esc(d)))
                .unwrap_or_default(),
            sql = esc(&r.sql),
            rule = esc(&r.rule),
            risks = esc(&r
                .risks
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(", ")),
            rows = r
                .impact
                .rows
                .map_or_else(|| "unknown".to_owned(), |n| format!("~{n} rows")),
            detail = esc(&r.impact.detail),
        );
    }
    body.push_str("</tbody></table>");
    pages::layout("Approvals", Some(viewer), &body, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_approvers_and_the_admin_token_decide() {
        let viewer = |via, groups: &[&str]| Viewer {
            name: "v".into(),
            via,
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        };
        assert!(may_decide(Some("dba"), &viewer("oidc", &["devs", "dba"])));
        assert!(!may_decide(Some("dba"), &viewer("oidc", &["devs"])));
        assert!(!may_decide(None, &viewer("oidc", &["dba"])));
        assert!(may_decide(None, &viewer("token", &[])));
    }

    #[test]
    fn csrf_needs_the_token_of_the_session_and_the_same_origin() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "tollgate_viewer=abc".parse().expect("header"),
        );
        headers.insert(header::HOST, "127.0.0.1:9000".parse().expect("header"));
        let token = csrf_token("abc");
        assert!(csrf_ok(&headers, Some(&token)));
        assert!(!csrf_ok(&headers, Some(&csrf_token("abd"))));
        assert!(!csrf_ok(&headers, None));
        headers.insert(
            header::ORIGIN,
            "http://evil.example".parse().expect("header"),
        );
        assert!(!csrf_ok(&headers, Some(&token)));
        headers.insert(
            header::ORIGIN,
            "http://127.0.0.1:9000".parse().expect("header"),
        );
        assert!(csrf_ok(&headers, Some(&token)));
        let mut bearer = HeaderMap::new();
        bearer.insert(header::AUTHORIZATION, "Bearer x".parse().expect("header"));
        assert!(csrf_ok(&bearer, None));
    }
}
