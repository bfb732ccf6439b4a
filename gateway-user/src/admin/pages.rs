//! The viewer's pages: plain server-rendered HTML with inline CSS (no external assets, so it
//! works on a bastion without internet) and a few lines of inline script for keyboard
//! stepping. Everything taken from a recording goes through [`esc`].

use std::fmt::Write as _;

use crate::{
    guard::GuardAction,
    recording::{
        EventKind, RecordedEvent, StatementEvent,
        event::{RecordedValue, ResultSet},
    },
    sessions::{SessionSummary, StatementKind},
};

/// Widest a result cell is shown (longer values end with `…`).
const MAX_CELL: usize = 200;
/// Most rows of a result set shown (the recording keeps at most 100 anyway).
const MAX_ROWS: usize = 100;
/// Most sessions on the list page (newest first).
pub const MAX_LISTED: usize = 500;

/// `text` escaped for HTML text and double- or single-quoted attribute values.
#[must_use]
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f8fa}
header.top{background:#24292f;color:#fff;padding:.5em 1em;display:flex;gap:1em;align-items:center}
header.top a{color:#fff;text-decoration:none;font-weight:600}
header.top form{margin-left:auto}
main{padding:1em 1.5em}
table{border-collapse:collapse;background:#fff;font-size:.9em}
th,td{border:1px solid #d0d7de;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#eaeef2}
pre,code,.sql{font-family:ui-monospace,monospace;white-space:pre-wrap;word-break:break-word}
.error{color:#b3261e}
.msg{background:#ffebe9;border:1px solid #ff8182;padding:.5em 1em;margin:.5em 0}
.mark{display:inline-block;border-radius:.8em;padding:0 .5em;font-size:.8em;margin-right:.2em}
.mark-refused{background:#b3261e;color:#fff}.mark-error{background:#ffebe9;color:#b3261e}
.mark-truncated{background:#fff8c5}.mark-blocked{background:#000;color:#fff}
.mark-flagged{background:#bf8700;color:#fff}.mark-approved{background:#1a7f37;color:#fff}
dl.head{display:grid;grid-template-columns:max-content auto;gap:.2em 1em;background:#fff;padding:.7em;border:1px solid #d0d7de}
dl.head dt{font-weight:600}dl.head dd{margin:0}
form.filters{display:flex;flex-wrap:wrap;gap:.5em;align-items:end;margin-bottom:1em}
form.filters label{display:flex;flex-direction:column;font-size:.8em}
.step{background:#fff;border:1px solid #d0d7de;padding:1em;margin:1em 0}
.nav{display:flex;gap:1em;align-items:center}
.nav a,.button,button{padding:.3em .9em;border:1px solid #8c959f;border-radius:4px;background:#fff;color:#1b1f24;text-decoration:none;cursor:pointer;font-size:1em}
.disabled{opacity:.4;pointer-events:none}
.waiting{color:#57606a;font-style:italic}
";

/// A whole page: `title`, the signed-in viewer (with a sign-out button) and `body`.
#[must_use]
pub fn layout(title: &str, viewer: Option<&str>, body: &str, script: &str) -> String {
    let who = viewer.map_or_else(String::new, |name| {
        format!(
            "<span>{}</span><form method=\"post\" action=\"/logout\"><button \
             type=\"submit\">Sign out</button></form>",
            esc(name)
        )
    });
    let script = if script.is_empty() {
        String::new()
    } else {
        format!("<script>{script}</script>")
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width\"><title>{title} · Tollgate</title><style>{STYLE}</style>\
         </head><body><header class=\"top\"><a href=\"/sessions\">Tollgate sessions</a>\
         <a href=\"/approvals\">Approvals</a>{who}\
         </header><main>{body}</main>{script}</body></html>",
        title = esc(title)
    )
}

/// The login page: OIDC sign-in and/or the admin token form, with `message` (why the last
/// attempt failed) when there is one.
#[must_use]
pub fn login(oidc: bool, token: bool, message: Option<&str>) -> String {
    let mut body = String::from("<h1>Sign in</h1>");
    if let Some(message) = message {
        let _ = write!(body, "<p class=\"msg\" id=\"message\">{}</p>", esc(message));
    }
    if oidc {
        body.push_str(
            "<p><a class=\"button\" id=\"oidc-login\" href=\"/login/oidc\">Sign in with \
             single sign-on</a></p>",
        );
    }
    if token {
        body.push_str(
            "<form method=\"post\" action=\"/login/token\"><p><label>Admin token \
             <input type=\"password\" name=\"token\" id=\"token\" autocomplete=\"off\"></label> \
             <button type=\"submit\" id=\"token-login\">Sign in</button></p></form>",
        );
    }
    layout("Sign in", None, &body, "")
}

/// A page that only says what went wrong.
#[must_use]
pub fn message(title: &str, viewer: Option<&str>, text: &str) -> String {
    layout(
        title,
        viewer,
        &format!(
            "<h1>{}</h1><p class=\"msg\" id=\"message\">{}</p><p><a href=\"/sessions\">All \
             sessions</a></p>",
            esc(title),
            esc(text)
        ),
        "",
    )
}

/// The filter values as given on the list page.
#[derive(Debug, Default, Clone)]
pub struct FilterForm {
    /// `since`
    pub since: String,
    /// `until`
    pub until: String,
    /// `user`
    pub user: String,
    /// `group`
    pub group: String,
    /// `target`
    pub target: String,
    /// `contains`
    pub contains: String,
    /// `kind` (any number).
    pub kinds: Vec<String>,
    /// `live`
    pub live: bool,
}

/// The session list: the filter form, `error` (a malformed filter) or the sessions.
#[must_use]
pub fn list(
    viewer: &str,
    form: &FilterForm,
    sessions: &[SessionSummary],
    error: Option<&str>,
) -> String {
    let mut body = String::from(
        "<h1>Recorded sessions</h1><form class=\"filters\" method=\"get\" action=\"/sessions\">",
    );
    for (name, value, hint) in [
        ("since", &form.since, "2h, 7d or RFC 3339"),
        ("until", &form.until, "RFC 3339 or 30m"),
        ("user", &form.user, "user or identity"),
        ("group", &form.group, "group"),
        ("target", &form.target, "target"),
        ("contains", &form.contains, "SQL text"),
    ] {
        let _ = write!(
            body,
            "<label>{name}<input name=\"{name}\" id=\"f-{name}\" value=\"{}\" \
             placeholder=\"{hint}\"></label>",
            esc(value)
        );
    }
    body.push_str("<label>kind<select name=\"kind\" id=\"f-kind\"><option value=\"\">any</option>");
    for kind in ["delete", "update", "ddl", "error", "refused"] {
        let selected = if form.kinds.iter().any(|k| k == kind) {
            " selected"
        } else {
            ""
        };
        let _ = write!(body, "<option{selected}>{kind}</option>");
    }
    let _ = write!(
        body,
        "</select></label><label>live<input type=\"checkbox\" name=\"live\" value=\"1\"{}>\
         </label><button type=\"submit\" id=\"f-apply\">Filter</button> <a class=\"button\" \
         href=\"/sessions\">Clear</a></form>",
        if form.live { " checked" } else { "" }
    );
    if let Some(error) = error {
        let _ = write!(
            body,
            "<p class=\"msg error\" id=\"message\">{}</p>",
            esc(error)
        );
        return layout("Sessions", Some(viewer), &body, "");
    }
    let _ = write!(
        body,
        "<p id=\"count\">{} session(s){}</p><table id=\"sessions\"><thead><tr><th>Started</th>\
         <th>Session</th><th>Target</th><th>User</th><th>Client</th><th>Process</th>\
         <th>Statements</th><th>Duration</th><th>End</th></tr></thead><tbody>",
        sessions.len(),
        if sessions.len() > MAX_LISTED {
            format!(", the newest {MAX_LISTED} shown")
        } else {
            String::new()
        }
    );
    for s in sessions.iter().rev().take(MAX_LISTED) {
        let (target, client, process) = s.started.as_ref().map_or_else(
            || ("?".to_owned(), "?".to_owned(), "-".to_owned()),
            |st| {
                (
                    st.target.clone(),
                    st.client_addr.to_string(),
                    st.process.as_ref().map_or_else(
                        || "- (direct)".to_owned(),
                        |p| format!("{} pid={} uid={}", p.comm, p.pid, p.uid),
                    ),
                )
            },
        );
        let (duration, end) = s.ended.as_ref().map_or_else(
            || ("-".to_owned(), "live".to_owned()),
            |e| (format!("{} ms", e.duration_ms), enum_name(&e.reason)),
        );
        let _ = write!(
            body,
            "<tr class=\"session\" data-id=\"{id}\"><td>{}</td><td><a href=\"/sessions/{id}\">\
             <code>{id}</code></a></td><td>{}</td><td class=\"user\">{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.started_at),
            esc(&target),
            esc(s.user.as_deref().unwrap_or("-")),
            esc(&client),
            esc(&process),
            s.statements,
            esc(&duration),
            esc(&end),
            id = s.id,
        );
    }
    body.push_str("</tbody></table>");
    layout("Sessions", Some(viewer), &body, "")
}

/// A serde enum's wire name (`closed`, `login_refused`, ...).
fn enum_name(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// What the timeline marks on a statement. Issue 8's guardrails add `Blocked`, `Flagged` and
/// `Approved` from their own recorded fields; their styles are already in the page
/// (`.mark-blocked`, `.mark-flagged`, `.mark-approved`), and [`marks`] is the one place that
/// decides a statement's marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// The gateway refused it itself (it never reached the database).
    Refused,
    /// It failed (the database's error).
    Error,
    /// Not all rows or values were recorded (caps).
    Truncated,
    /// A guardrail blocked it (`guard.action = block`).
    Blocked,
    /// A guardrail flagged it (`guard.action = flag`).
    Flagged,
    /// It ran after an approval (`guard.action = approve`, not refused).
    Approved,
}

impl Mark {
    fn name(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::Error => "error",
            Self::Truncated => "truncated",
            Self::Blocked => "blocked",
            Self::Flagged => "flagged",
            Self::Approved => "approved",
        }
    }
}

/// A statement's marks, most serious first.
#[must_use]
pub fn marks(st: &StatementEvent) -> Vec<Mark> {
    let mut marks = Vec::new();
    match st.guard.as_ref().map(|g| g.action) {
        Some(GuardAction::Block) => marks.push(Mark::Blocked),
        Some(GuardAction::Approve) if st.error.is_none() => marks.push(Mark::Approved),
        Some(GuardAction::Flag) => marks.push(Mark::Flagged),
        _ => {}
    }
    if StatementKind::Refused.matches(st) {
        marks.push(Mark::Refused);
    } else if st.error.is_some() {
        marks.push(Mark::Error);
    }
    if st.rows_truncated || st.params_truncated {
        marks.push(Mark::Truncated);
    }
    marks
}

fn marks_html(st: &StatementEvent) -> String {
    let mut out = String::new();
    for mark in marks(st) {
        let _ = write!(out, "<span class=\"mark mark-{0}\">{0}</span>", mark.name());
    }
    out
}

/// A duration in milliseconds to three digits.
fn millis(st: &StatementEvent) -> String {
    let ns = if st.duration_ns > 0 {
        st.duration_ns
    } else {
        st.duration_us.saturating_mul(1000)
    };
    format!("{}.{:03} ms", ns / 1_000_000, (ns / 1000) % 1000)
}

/// What came back, in one line: rows, affected rows, or the error.
fn outcome(st: &StatementEvent) -> String {
    match &st.error {
        Some(e) => format!(
            "ERROR {}{}: {}",
            e.code,
            e.sql_state
                .as_deref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default(),
            e.message
        ),
        None if st.result_sets > 0 => format!(
            "{} row(s){}",
            st.rows,
            if st.rows_truncated {
                ", not all recorded"
            } else {
                ""
            }
        ),
        None => format!(
            "OK, {} row(s) affected{}",
            st.affected_rows,
            st.last_insert_id
                .filter(|id| *id > 0)
                .map(|id| format!(", last insert id {id}"))
                .unwrap_or_default()
        ),
    }
}

/// The SQL as sent (executes: with their parameters inlined, as the export does).
fn request(st: &StatementEvent) -> String {
    let sql = st.sql.as_deref().unwrap_or("");
    if st.command == "stmt_execute" {
        crate::sessions::export::inline_params(sql, st).unwrap_or_else(|| sql.to_owned())
    } else {
        sql.to_owned()
    }
}

fn cell(value: &RecordedValue) -> String {
    let text = match value {
        RecordedValue::Null => return "<i>NULL</i>".to_owned(),
        RecordedValue::Int(i) => i.to_string(),
        RecordedValue::UInt(u) => u.to_string(),
        RecordedValue::Float(f) => f.to_string(),
        RecordedValue::Text(t) => t.clone(),
        RecordedValue::Binary { hex, bytes } => format!("0x{hex} ({bytes} bytes)"),
        RecordedValue::TruncatedText { text, bytes } => format!("{text}… ({bytes} bytes)"),
        RecordedValue::Malformed { .. } => return "<i>(malformed)</i>".to_owned(),
    };
    let shown: String = if text.chars().count() > MAX_CELL {
        text.chars().take(MAX_CELL - 1).chain(['…']).collect()
    } else {
        text
    };
    esc(&shown)
}

/// The recorded rows of one result set (values as recorded: masked when masking applies).
fn result_table(st: &StatementEvent, set: &ResultSet) -> String {
    let names: Vec<&str> = if set.columns.is_empty() {
        st.columns.iter().map(String::as_str).collect()
    } else {
        set.columns.iter().map(|c| c.name.as_str()).collect()
    };
    let mut out = String::from("<table class=\"result\"><thead><tr>");
    for name in &names {
        let _ = write!(out, "<th>{}</th>", esc(name));
    }
    out.push_str("</tr></thead><tbody>");
    for row in set.rows.iter().take(MAX_ROWS) {
        out.push_str("<tr>");
        for value in row {
            let _ = write!(out, "<td>{}</td>", cell(value));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    let recorded = set.rows.len() as u64;
    if set.row_count > recorded {
        let _ = write!(
            out,
            "<p class=\"waiting\">{} of {} row(s) recorded</p>",
            recorded.min(MAX_ROWS as u64),
            set.row_count
        );
    }
    out
}

/// The response to a statement: result tables, then the outcome line.
fn response(st: &StatementEvent) -> String {
    let mut out = String::new();
    for set in &st.result {
        out.push_str(&result_table(st, set));
    }
    let class = if st.error.is_some() { " error" } else { "" };
    let _ = write!(
        out,
        "<p class=\"outcome{class}\">{} <span class=\"duration\">({})</span></p>",
        esc(&outcome(st)),
        millis(st)
    );
    out
}

/// The header of a session page: who, from where, to where, over what.
fn header(events: &[RecordedEvent]) -> String {
    let mut rows: Vec<(&str, String)> = Vec::new();
    if let Some(first) = events.first() {
        rows.push(("Session", format!("<code>{}</code>", first.session_id)));
    }
    for event in events {
        match &event.kind {
            EventKind::SessionStarted(s) => {
                rows.push((
                    "Started",
                    esc(&event
                        .time
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default()),
                ));
                started_rows(&mut rows, s);
            }
            EventKind::Login(l) => login_rows(&mut rows, l),
            EventKind::SessionEnded(e) => {
                rows.push((
                    "Ended",
                    esc(&format!(
                        "{} after {} ms{}",
                        enum_name(&e.reason),
                        e.duration_ms,
                        e.detail
                            .as_deref()
                            .map(|d| format!(": {d}"))
                            .unwrap_or_default()
                    )),
                ));
            }
            EventKind::Statement(_)
            | EventKind::Gap(_)
            | EventKind::ApprovalRequested(_)
            | EventKind::ApprovalDecided(_) => {}
        }
    }
    if !events
        .iter()
        .any(|e| matches!(e.kind, EventKind::SessionEnded(_)))
    {
        rows.push(("Ended", "still live".to_owned()));
    }
    let mut out = String::from("<dl class=\"head\" id=\"header\">");
    for (label, value) in rows {
        let _ = write!(out, "<dt>{label}</dt><dd>{value}</dd>");
    }
    out.push_str("</dl>");
    out
}

/// The header rows of `session.started`: target, client, process, TLS.
fn started_rows(rows: &mut Vec<(&str, String)>, s: &crate::recording::SessionStarted) {
    rows.push((
        "Target",
        format!("{} ({})", esc(&s.target), esc(&s.upstream)),
    ));
    rows.push(("Client", esc(&s.client_addr.to_string())));
    rows.push((
        "Process",
        s.process.as_ref().map_or_else(
            || "- (connected directly, not redirected)".to_owned(),
            |p| {
                esc(&format!(
                    "{} pid={} uid={} gid={} cgroup={}{}",
                    p.comm,
                    p.pid,
                    p.uid,
                    p.gid,
                    p.cgroup_path.as_deref().unwrap_or("-"),
                    p.container_id
                        .as_deref()
                        .map(|c| format!(" container={c}"))
                        .unwrap_or_default()
                ))
            },
        ),
    ));
    let leg = |leg: Option<&crate::recording::event::TlsLeg>| {
        leg.map_or_else(
            || "none".to_owned(),
            |l| format!("{} {}", l.version, l.cipher),
        )
    };
    rows.push((
        "TLS",
        s.tls.as_ref().map_or_else(
            || "not negotiated".to_owned(),
            |t| {
                esc(&format!(
                    "client: {}; database: {}",
                    leg(t.client.as_ref()),
                    leg(t.upstream.as_ref())
                ))
            },
        ),
    ));
}

/// The header rows of `session.login`: MySQL user, identities and groups, policy.
fn login_rows(rows: &mut Vec<(&str, String)>, l: &crate::recording::LoginEvent) {
    rows.push((
        "MySQL user",
        esc(&format!(
            "{}{}{} ({})",
            l.user,
            l.upstream_user
                .as_deref()
                .map(|u| format!(", database account {u}"))
                .unwrap_or_default(),
            l.database
                .as_deref()
                .map(|d| format!(", db {d}"))
                .unwrap_or_default(),
            if l.accepted { "accepted" } else { "refused" }
        )),
    ));
    for (label, identity) in [
        ("Identity", l.identity.as_ref()),
        ("Kernel identity", l.kernel_identity.as_ref()),
    ] {
        if let Some(i) = identity {
            rows.push((
                label,
                esc(&format!(
                    "{} ({}, subject {}{})",
                    i.name,
                    enum_name(&i.source),
                    i.subject,
                    i.issuer
                        .as_deref()
                        .map(|s| format!(", issuer {s}"))
                        .unwrap_or_default()
                )),
            ));
            rows.push(("Groups", esc(&i.groups.join(", "))));
        }
    }
    if let Some(p) = &l.policy {
        rows.push((
            "Policy",
            esc(&match (&p.rule, &p.account) {
                (Some(rule), Some(account)) => {
                    format!("allowed by rule {rule}, account {account}")
                }
                _ => format!(
                    "denied: {}",
                    p.reason.as_deref().unwrap_or("no rule matched")
                ),
            }),
        ));
    }
    if !l.accepted
        && let Some(m) = &l.error_message
    {
        rows.push((
            "Login error",
            format!("<span class=\"error\">{}</span>", esc(m)),
        ));
    }
}

fn statements(events: &[RecordedEvent]) -> Vec<&StatementEvent> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Statement(st) => Some(st),
            _ => None,
        })
        .collect()
}

/// Nanoseconds since the epoch when a statement arrived.
fn start_ns(st: &StatementEvent) -> u64 {
    if st.started_at_ns > 0 {
        return st.started_at_ns;
    }
    u64::try_from(st.started_at.unix_timestamp_nanos()).unwrap_or_default()
}

/// The session page: header, then the timeline of statements with their outcomes, marks and
/// recorded results (in a collapsed block each), gaps where events were lost.
#[must_use]
pub fn session(viewer: &str, events: &[RecordedEvent]) -> String {
    let id = events
        .first()
        .map(|e| e.session_id.to_string())
        .unwrap_or_default();
    let mut body = format!(
        "<h1>Session <code>{id}</code></h1><p><a class=\"button\" id=\"replay\" \
         href=\"/sessions/{id}/replay\">Replay step by step</a></p>{}",
        header(events)
    );
    let first = statements(events).first().map(|st| start_ns(st));
    body.push_str(
        "<h2>Timeline</h2><table id=\"timeline\"><thead><tr><th>#</th><th>At</th>\
         <th>Command</th><th>SQL</th><th>Duration</th><th>Result</th><th>Marks</th></tr>\
         </thead><tbody>",
    );
    for event in events {
        match &event.kind {
            EventKind::Statement(st) => {
                let offset = first.map_or(0, |f| start_ns(st).saturating_sub(f));
                let details = if st.result.is_empty() {
                    String::new()
                } else {
                    format!(
                        "<details><summary>recorded rows</summary>{}</details>",
                        st.result
                            .iter()
                            .map(|set| result_table(st, set))
                            .collect::<String>()
                    )
                };
                let class = if st.error.is_some() { " error" } else { "" };
                let _ = write!(
                    body,
                    "<tr class=\"statement{class}\" id=\"st-{seq}\" data-seq=\"{seq}\"><td>{seq}</td>\
                     <td>+{}.{:03} s</td><td>{}</td><td><div class=\"sql\">{}</div>{details}</td>\
                     <td class=\"duration\">{}</td><td class=\"outcome\">{}</td><td>{}</td></tr>",
                    offset / 1_000_000_000,
                    (offset / 1_000_000) % 1000,
                    esc(&st.command),
                    esc(&request(st)),
                    millis(st),
                    esc(&outcome(st)),
                    marks_html(st),
                    seq = st.seq,
                );
            }
            EventKind::ApprovalRequested(r) => {
                let _ = write!(
                    body,
                    "<tr class=\"approval\"><td colspan=\"7\">approval {} requested: guardrail \
                     '{}', impact {} ({}) <span class=\"mark mark-flagged\">held</span></td></tr>",
                    esc(&r.approval_id.to_string()),
                    esc(&r.rule),
                    r.impact
                        .rows
                        .map_or_else(|| "unknown".to_owned(), |n| format!("~{n} rows")),
                    esc(&r.impact.detail),
                );
            }
            EventKind::ApprovalDecided(d) => {
                let mark = if d.decision.approved {
                    Mark::Approved
                } else {
                    Mark::Blocked
                };
                let _ = write!(
                    body,
                    "<tr class=\"approval\"><td colspan=\"7\">{} <span class=\"mark mark-{}\">{}\
                     </span></td></tr>",
                    esc(&crate::approvals::decided_line(d)),
                    mark.name(),
                    if d.decision.approved {
                        "approved"
                    } else {
                        "denied"
                    },
                );
            }
            EventKind::Gap(g) => {
                let _ = write!(
                    body,
                    "<tr class=\"gap error\"><td colspan=\"7\">{} event(s) lost ({} \
                     statement(s)), {}</td></tr>",
                    g.lost_events,
                    g.lost_statements,
                    esc(&enum_name(&g.reason))
                );
            }
            _ => {}
        }
    }
    body.push_str("</tbody></table>");
    layout(&format!("Session {id}"), Some(viewer), &body, "")
}

/// Replay mode: step `at` of `2 × statements` (even: the request of statement `at / 2`, odd:
/// its response too), with Prev/Next links (and the arrow keys).
#[must_use]
pub fn replay(viewer: &str, events: &[RecordedEvent], at: usize) -> String {
    let id = events
        .first()
        .map(|e| e.session_id.to_string())
        .unwrap_or_default();
    let all = statements(events);
    let steps = all.len() * 2;
    let mut body = format!(
        "<h1>Replay of <a href=\"/sessions/{id}\"><code>{id}</code></a></h1>{}",
        header(events)
    );
    let Some(st) = all.get(at / 2) else {
        body.push_str("<p id=\"step\">No statements were recorded in this session.</p>");
        return layout(&format!("Replay {id}"), Some(viewer), &body, "");
    };
    let showing_response = at % 2 == 1;
    let link = |to: Option<usize>, label: &str, rel: &str| match to {
        Some(to) => format!(
            "<a id=\"{rel}\" rel=\"{rel}\" href=\"/sessions/{id}/replay?at={to}\">{label}</a>"
        ),
        None => format!("<a id=\"{rel}\" class=\"disabled\" aria-disabled=\"true\">{label}</a>"),
    };
    let previous = at.checked_sub(1);
    let next = Some(at + 1).filter(|n| *n < steps);
    let _ = write!(
        body,
        "<div class=\"nav\">{}{}<span id=\"position\">statement {} of {} · {}</span></div>\
         <div class=\"step\" id=\"step\" data-seq=\"{}\" data-phase=\"{}\"><p>#{} \
         <code>{}</code>{} at {}</p><h3>Request</h3><pre class=\"sql\" id=\"request\">{}</pre>\
         <h3>Response</h3><div id=\"response\">{}</div><p>{}</p></div>",
        link(previous, "◀ Prev", "prev"),
        link(next, "Next ▶", "next"),
        at / 2 + 1,
        all.len(),
        if showing_response {
            "response"
        } else {
            "request"
        },
        st.seq,
        if showing_response {
            "response"
        } else {
            "request"
        },
        st.seq,
        esc(&st.command),
        st.database
            .as_deref()
            .map(|d| format!(" in <code>{}</code>", esc(d)))
            .unwrap_or_default(),
        esc(&st
            .started_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()),
        esc(&request(st)),
        if showing_response {
            response(st)
        } else {
            "<p class=\"waiting\">Next shows what the database answered.</p>".to_owned()
        },
        marks_html(st),
    );
    let script = "document.addEventListener('keydown',function(e){var a=null;\
                  if(e.key==='ArrowRight')a=document.querySelector('a[rel=next]');\
                  if(e.key==='ArrowLeft')a=document.querySelector('a[rel=prev]');\
                  if(a&&a.href)location.href=a.href;});";
    layout(&format!("Replay {id}"), Some(viewer), &body, script)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
    }

    #[test]
    fn statement_marks() {
        use crate::recording::event::StatementError;
        let mut st = StatementEvent {
            command: "query".into(),
            sql: Some("SELECT 1".into()),
            ..StatementEvent::default()
        };
        assert!(marks(&st).is_empty());
        st.rows_truncated = true;
        st.error = Some(StatementError {
            code: 1044,
            sql_state: Some("42000".into()),
            message: "Tollgate: access denied to database 'mysql'".into(),
        });
        assert_eq!(marks(&st), [Mark::Refused, Mark::Truncated]);
        st.error = Some(StatementError {
            code: 1146,
            sql_state: Some("42S02".into()),
            message: "Table 'shop.x' doesn't exist".into(),
        });
        assert_eq!(marks(&st), [Mark::Error, Mark::Truncated]);
        st.error = None;
        st.rows_truncated = false;
        st.params_truncated = false;
        for (action, mark) in [
            (GuardAction::Flag, Mark::Flagged),
            (GuardAction::Approve, Mark::Approved),
            (GuardAction::Block, Mark::Blocked),
        ] {
            st.guard = Some(crate::guard::GuardDecision {
                action,
                rule: "r".into(),
                risks: vec![crate::guard::Risk::Drop],
            });
            assert_eq!(marks(&st)[0], mark);
        }
    }
}
