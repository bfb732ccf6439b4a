//! Just-in-time approvals: a statement whose guardrail decision is `approve` is held until
//! someone in `[approvals] approvers_group` approves or denies it.
//!
//! The held session asks [`Approvals::hold`]: an approved, unused request for the same
//! statement ([`ApprovalKey`]: identity, target, database and normalized SQL) within the
//! window lets it run once; a pending one is waited for; otherwise a new request is made (and
//! recorded as `approval.requested`). Decisions come from `tollgate approvals approve|deny`
//! (the control socket, or the approvals topic), the admin API and the web viewer, all through
//! [`Approvals::decide`].
//!
//! Every change is a [`Message`]. With Kafka, each replica publishes its messages on the
//! approvals topic ([`kafka`]) and applies everyone's, so the state is shared by every replica
//! and survives none of them in particular: the topic is the record, each replica's map a view
//! of it. Without Kafka, the map of the one gateway is the state.

use std::{collections::HashMap, sync::Arc, time::Duration};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

use crate::{guard::Risk, recording::ProcessInfo};

pub mod kafka;
pub mod order;

/// `[approvals]`: how long a held statement waits, and who may decide.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsConfig {
    /// How long the client waits for a decision before it gets an error naming the request.
    #[serde(default = "default_wait", with = "humantime_serde")]
    pub wait: Duration,
    /// How long a request stays open (and an approval usable) after it was made: the same
    /// statement run again within it proceeds once approved.
    #[serde(default = "default_window", with = "humantime_serde")]
    pub window: Duration,
    /// The group (in the issuer's groups claim) whose members may decide in the web viewer
    /// and the admin API (the admin token may too). The command line is limited by who may
    /// use the control socket or the Kafka topic.
    #[serde(default)]
    pub approvers_group: Option<String>,
    /// The Kafka topic shared by the replicas (`[recording.kafka]`); by default the recording
    /// topic's name with `.approvals` after it.
    #[serde(default)]
    pub topic: Option<String>,
}

fn default_wait() -> Duration {
    Duration::from_mins(2)
}

fn default_window() -> Duration {
    Duration::from_mins(15)
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        Self {
            wait: default_wait(),
            window: default_window(),
            approvers_group: None,
            topic: None,
        }
    }
}

impl ApprovalsConfig {
    /// Cross-field checks: `(field, message)` of the first problem.
    ///
    /// # Errors
    /// A zero wait, or a window shorter than the wait.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if self.wait.is_zero() {
            return Err(("approvals.wait", "must be above zero"));
        }
        if self.window < self.wait {
            return Err((
                "approvals.window",
                "must be at least approvals.wait (the request stays open that long)",
            ));
        }
        Ok(())
    }
}

/// How many rows a held statement would touch, as the approver sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Impact {
    /// Rows the database estimates the statement examines (`EXPLAIN`'s `rows`, the largest
    /// of its lines); `null` when no estimate could be made.
    pub rows: Option<u64>,
    /// How it was estimated (`explain`), or why there is no estimate.
    pub detail: String,
}

/// A statement held for approval, with what the approver needs to decide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ApprovalRequest {
    /// The request's id (`UUIDv7`), named in the client's error and on the command line.
    pub approval_id: Uuid,
    /// The session that asked (the session of the first attempt).
    pub requested_by_session: Uuid,
    /// The replica that holds that session (`host/pid`).
    pub gateway: String,
    /// When it was asked.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub requested_at: OffsetDateTime,
    /// Until when it can be decided and an approval used.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub expires_at: OffsetDateTime,
    /// Who issued it: the identity the client proved (`null` for relayed logins).
    pub identity: Option<String>,
    /// The identity's groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The client's address.
    pub client_addr: String,
    /// The process that opened the connection (when the kernel redirected it).
    #[serde(default)]
    pub process: Option<ProcessInfo>,
    /// The target (by name).
    pub target: String,
    /// The session's current database.
    pub database: Option<String>,
    /// The SQL text as sent (at most 64 KiB).
    pub sql: String,
    /// The SQL normalized for matching a later run (comments and spacing dropped, keywords
    /// upper-cased, literals kept).
    pub normalized: String,
    /// The guardrail that asked for the approval.
    pub rule: String,
    /// The risks found.
    pub risks: Vec<Risk>,
    /// How many rows it would touch.
    pub impact: Impact,
}

/// An approver's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Decision {
    /// Approved (`true`) or denied.
    pub approved: bool,
    /// Who decided (a viewer's name, or the operator and the channel).
    pub by: String,
    /// Why, as given.
    #[serde(default)]
    pub reason: Option<String>,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub at: OffsetDateTime,
}

/// Body of `approval.decided`: a decision on a request, recorded in the session that asked
/// (and in a session that runs the approved statement, when another one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ApprovalDecided {
    /// The request.
    pub approval_id: Uuid,
    /// The session that asked.
    pub requested_by_session: Uuid,
    /// The decision.
    #[serde(flatten)]
    pub decision: Decision,
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for a decision.
    Pending,
    /// Approved, not run yet.
    Approved,
    /// Approved and run (once).
    Used,
    /// Denied.
    Denied,
    /// Not decided, or not used, within the window.
    Expired,
}

/// A request and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The request.
    pub request: ApprovalRequest,
    /// The decision, once made.
    #[serde(default)]
    pub decision: Option<Decision>,
    /// The session that ran the approved statement.
    #[serde(default)]
    pub used_by: Option<Uuid>,
}

impl Approval {
    /// Where it stands at `now`.
    #[must_use]
    pub fn status(&self, now: OffsetDateTime) -> Status {
        match (&self.decision, self.used_by) {
            (Some(_), Some(_)) => Status::Used,
            (Some(d), None) if !d.approved => Status::Denied,
            _ if now >= self.request.expires_at => Status::Expired,
            (Some(_), None) => Status::Approved,
            (None, _) => Status::Pending,
        }
    }

    /// The `approval.decided` body, once decided.
    #[must_use]
    pub fn decided(&self) -> Option<ApprovalDecided> {
        self.decision.clone().map(|decision| ApprovalDecided {
            approval_id: self.request.approval_id,
            requested_by_session: self.request.requested_by_session,
            decision,
        })
    }
}

/// What makes two runs "the same statement".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApprovalKey {
    /// The identity (`None`: a relayed login).
    pub identity: Option<String>,
    /// The target.
    pub target: String,
    /// The current database (unqualified names resolve against it).
    pub database: Option<String>,
    /// [`normalize`]d SQL.
    pub normalized: String,
}

impl ApprovalRequest {
    /// Its key.
    #[must_use]
    pub fn key(&self) -> ApprovalKey {
        ApprovalKey {
            identity: self.identity.clone(),
            target: self.target.clone(),
            database: self.database.clone(),
            normalized: self.normalized.clone(),
        }
    }
}

/// A change to the shared state: what travels on the approvals topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// A new request.
    Requested(Box<ApprovalRequest>),
    /// A decision on a request.
    Decided {
        /// The request.
        approval_id: Uuid,
        /// The decision.
        decision: Decision,
    },
    /// An approved statement ran, in this session: the approval is spent.
    Used {
        /// The request.
        approval_id: Uuid,
        /// The session that ran it.
        session_id: Uuid,
    },
}

/// Why a decision was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum DecideError {
    /// No request has this id (or prefix).
    #[error("no approval request '{0}' (see `tollgate approvals list`)")]
    NotFound(String),
    /// The prefix names several requests.
    #[error("'{prefix}' names {count} approval requests; give more of the id")]
    Ambiguous {
        /// The prefix given.
        prefix: String,
        /// How many requests start with it.
        count: usize,
    },
    /// It was decided already, or ran out.
    #[error("approval request {id} is {status} already")]
    Closed {
        /// The request.
        id: Uuid,
        /// Its status (`approved`, `denied`, `used`, `expired`).
        status: String,
    },
}

/// What [`Approvals::hold`] found for a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// An approval for it: spent now, the statement runs.
    Run(Box<Approval>),
    /// An open request for it (`new`: made just now): wait for its decision.
    Wait {
        /// The request.
        id: Uuid,
        /// Whether this call made it.
        new: bool,
    },
}

/// The approval requests this gateway knows (all replicas' with Kafka).
#[derive(Debug, Clone)]
pub struct Approvals {
    inner: Arc<Mutex<HashMap<Uuid, Approval>>>,
    /// Bumped at every change: held sessions wait on it.
    changed: Arc<watch::Sender<u64>>,
    /// Messages for the approvals topic, when Kafka is configured.
    outbox: Arc<Mutex<Option<std::sync::mpsc::SyncSender<Message>>>>,
}

impl Default for Approvals {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
            changed: Arc::new(watch::Sender::new(0)),
            outbox: Arc::default(),
        }
    }
}

/// How many messages may wait for the approvals topic.
const OUTBOX: usize = 1024;

impl Approvals {
    /// An empty state.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on, every local change is also sent on the returned channel (for the
    /// approvals topic).
    #[must_use]
    pub fn publish(&self) -> std::sync::mpsc::Receiver<Message> {
        let (tx, rx) = std::sync::mpsc::sync_channel(OUTBOX);
        *self.outbox.lock() = Some(tx);
        rx
    }

    fn emit(&self, message: Message) {
        if let Some(outbox) = self.outbox.lock().as_ref()
            && outbox.try_send(message).is_err()
        {
            tracing::warn!("approvals topic outbox full; a change stays on this replica");
        }
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Applies a change (from the topic, or local); whether it changed anything. Applying a
    /// message twice changes nothing the second time.
    #[must_use = "whether anything changed is worth a log line"]
    pub fn apply(&self, message: &Message) -> bool {
        let changed = {
            let mut inner = self.inner.lock();
            match message {
                Message::Requested(request) => match inner.entry(request.approval_id) {
                    std::collections::hash_map::Entry::Occupied(_) => false,
                    std::collections::hash_map::Entry::Vacant(vacant) => {
                        vacant.insert(Approval {
                            request: (**request).clone(),
                            decision: None,
                            used_by: None,
                        });
                        true
                    }
                },
                Message::Decided {
                    approval_id,
                    decision,
                } => match inner.get_mut(approval_id) {
                    Some(a) if a.decision.is_none() => {
                        a.decision = Some(decision.clone());
                        true
                    }
                    _ => false,
                },
                Message::Used {
                    approval_id,
                    session_id,
                } => match inner.get_mut(approval_id) {
                    Some(a) if a.used_by.is_none() => {
                        a.used_by = Some(*session_id);
                        true
                    }
                    _ => false,
                },
            }
        };
        if changed {
            self.changed.send_modify(|n| *n = n.wrapping_add(1));
        }
        changed
    }

    /// Waits on this for changes.
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// One request.
    #[must_use]
    pub fn get(&self, id: Uuid) -> Option<Approval> {
        self.inner.lock().get(&id).cloned()
    }

    /// For a statement that needs approval (`request` as it would be asked): spend an
    /// approval of the same statement, or wait for an open request of it, or ask (`request`
    /// is then stored and published).
    #[must_use = "the statement waits or runs as the hold says"]
    pub fn hold(&self, request: ApprovalRequest, session_id: Uuid) -> Hold {
        let now = OffsetDateTime::now_utc();
        let key = request.key();
        let (hold, message) = {
            let mut inner = self.inner.lock();
            inner.retain(|_, a| now < a.request.expires_at + time::Duration::hours(1));
            let mut same: Vec<&mut Approval> = inner
                .values_mut()
                .filter(|a| a.request.key() == key)
                .collect();
            same.sort_by_key(|a| a.request.approval_id);
            if let Some(approved) = same.iter_mut().find(|a| a.status(now) == Status::Approved) {
                approved.used_by = Some(session_id);
                let message = Message::Used {
                    approval_id: approved.request.approval_id,
                    session_id,
                };
                (Hold::Run(Box::new((**approved).clone())), message)
            } else if let Some(open) = same.iter().find(|a| a.status(now) == Status::Pending) {
                return Hold::Wait {
                    id: open.request.approval_id,
                    new: false,
                };
            } else {
                let id = request.approval_id;
                inner.insert(
                    id,
                    Approval {
                        request: request.clone(),
                        decision: None,
                        used_by: None,
                    },
                );
                (
                    Hold::Wait { id, new: true },
                    Message::Requested(Box::new(request)),
                )
            }
        };
        self.emit(message);
        hold
    }

    /// Whether a request for this statement is open or approved (no new request, so no
    /// preview, is needed).
    #[must_use]
    pub fn known(&self, key: &ApprovalKey) -> bool {
        let now = OffsetDateTime::now_utc();
        self.inner.lock().values().any(|a| {
            a.request.key() == *key && matches!(a.status(now), Status::Pending | Status::Approved)
        })
    }

    /// Spends approval `id` for `session_id` if it is approved and unused: whether it may run.
    #[must_use = "the statement may run only when this is true"]
    pub fn spend(&self, id: Uuid, session_id: Uuid) -> bool {
        let now = OffsetDateTime::now_utc();
        {
            let mut inner = self.inner.lock();
            match inner.get_mut(&id) {
                Some(a) if a.status(now) == Status::Approved => a.used_by = Some(session_id),
                _ => return false,
            }
        }
        self.emit(Message::Used {
            approval_id: id,
            session_id,
        });
        true
    }

    /// The request whose id is `id` or starts with it (hyphens optional).
    ///
    /// # Errors
    /// When none, or more than one, matches.
    pub fn find(&self, id: &str) -> Result<Approval, DecideError> {
        let wanted: String = id
            .trim()
            .chars()
            .filter(|c| *c != '-')
            .flat_map(char::to_lowercase)
            .collect();
        let inner = self.inner.lock();
        let matching: Vec<&Approval> = inner
            .values()
            .filter(|_| !wanted.is_empty())
            .filter(|a| {
                a.request
                    .approval_id
                    .simple()
                    .to_string()
                    .starts_with(&wanted)
            })
            .collect();
        match matching.as_slice() {
            [] => Err(DecideError::NotFound(id.to_owned())),
            [one] => Ok((*one).clone()),
            many => Err(DecideError::Ambiguous {
                prefix: id.to_owned(),
                count: many.len(),
            }),
        }
    }

    /// Approves or denies the pending request `id` (or a unique prefix of it).
    ///
    /// # Errors
    /// When no open request matches.
    pub fn decide(&self, id: &str, decision: Decision) -> Result<Approval, DecideError> {
        let now = OffsetDateTime::now_utc();
        let found = self.find(id)?;
        let approval_id = found.request.approval_id;
        let decided = {
            let mut inner = self.inner.lock();
            let Some(approval) = inner.get_mut(&approval_id) else {
                return Err(DecideError::NotFound(id.to_owned()));
            };
            let status = approval.status(now);
            if status != Status::Pending {
                return Err(DecideError::Closed {
                    id: approval_id,
                    status: status_name(status).to_owned(),
                });
            }
            approval.decision = Some(decision.clone());
            approval.clone()
        };
        self.emit(Message::Decided {
            approval_id,
            decision,
        });
        Ok(decided)
    }

    /// Every request still worth showing (open, or decided within the last window), oldest
    /// first.
    #[must_use]
    pub fn list(&self) -> Vec<Approval> {
        let mut all: Vec<Approval> = self.inner.lock().values().cloned().collect();
        all.sort_by_key(|a| a.request.approval_id);
        all
    }
}

/// A decision in one line: `<id> approved by carol at <time>: reason`.
#[must_use]
pub fn decided_line(d: &ApprovalDecided) -> String {
    let verb = if d.decision.approved {
        "approved"
    } else {
        "denied"
    };
    let at = d
        .decision
        .at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut line = format!("{} {verb} by {} at {at}", d.approval_id, d.decision.by);
    if let Some(reason) = &d.decision.reason {
        line.push_str(": ");
        line.push_str(reason);
    }
    line
}

/// A status's name (`pending`, `approved`, ...).
#[must_use]
pub fn status_name(status: Status) -> &'static str {
    match status {
        Status::Pending => "pending",
        Status::Approved => "approved",
        Status::Used => "used",
        Status::Denied => "denied",
        Status::Expired => "expired",
    }
}

/// The read-only statements that estimate how many rows `sql` would touch (run on the held
/// session's connection before anything is forwarded), or why there are none. Only a single
/// statement is previewed (`EXPLAIN` of a multi-statement text would run the statements after
/// the first): DML is `EXPLAIN`ed as written; `DROP TABLE` and `TRUNCATE` become an `EXPLAIN`
/// of a count over each table. `EXPLAIN` plans and never executes, so it reads no rows.
///
/// # Errors
/// The reason there is no preview, shown to the approver.
pub fn preview_queries(sql: &str) -> Result<Vec<String>, String> {
    use sqlparser::{
        ast::{ObjectType, Statement},
        dialect::MySqlDialect,
        parser::Parser,
    };
    let statements: Vec<_> = crate::guard::classify(sql)
        .into_iter()
        .filter(|c| !c.verb.is_empty())
        .collect();
    if statements.len() != 1 {
        return Err("several statements: no preview".to_owned());
    }
    let exposed = crate::guard::expose_executable_comments(sql);
    let parsed = Parser::parse_sql(&MySqlDialect {}, &exposed)
        .map_err(|_| "the statement does not parse: no preview".to_owned())?;
    let [statement] = parsed.as_slice() else {
        return Err("several statements: no preview".to_owned());
    };
    let count = |name: &dyn std::fmt::Display| format!("EXPLAIN SELECT COUNT(*) FROM {name}");
    match statement {
        Statement::Delete(_)
        | Statement::Update { .. }
        | Statement::Insert(_)
        | Statement::Query(_) => Ok(vec![format!(
            "EXPLAIN {}",
            exposed.trim().trim_end_matches(';')
        )]),
        Statement::Drop {
            object_type: ObjectType::Table,
            names,
            ..
        } => Ok(names.iter().map(|n| count(n)).collect()),
        Statement::Truncate { table_names, .. } => {
            Ok(table_names.iter().map(|t| count(&t.name)).collect())
        }
        _ => Err(format!("no preview for {}", statements[0].verb)),
    }
}

/// `sql` as the approvals match it: executable comments read as SQL, other comments and
/// spacing dropped, keywords upper-cased, everything else (identifiers, literals) as written,
/// tokens separated by one space. Text the tokenizer refuses is only re-spaced.
#[must_use]
pub fn normalize(sql: &str) -> String {
    use sqlparser::{
        dialect::MySqlDialect,
        keywords::Keyword,
        tokenizer::{Token, Tokenizer},
    };
    let exposed = crate::guard::expose_executable_comments(sql);
    let dialect = MySqlDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, &exposed).tokenize() else {
        return sql.split_whitespace().collect::<Vec<_>>().join(" ");
    };
    let words: Vec<String> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .map(|t| match t {
            Token::Word(w) if w.quote_style.is_none() && w.keyword != Keyword::NoKeyword => {
                w.value.to_uppercase()
            }
            other => other.to_string(),
        })
        .collect();
    let joined = words.join(" ");
    joined.trim_end_matches([' ', ';']).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::Risk;

    fn request(sql: &str, identity: &str) -> ApprovalRequest {
        let now = OffsetDateTime::now_utc();
        ApprovalRequest {
            approval_id: Uuid::now_v7(),
            requested_by_session: Uuid::now_v7(),
            gateway: "a/1".into(),
            requested_at: now,
            expires_at: now + time::Duration::minutes(15),
            identity: Some(identity.into()),
            groups: vec![],
            client_addr: "127.0.0.1:5000".into(),
            process: None,
            target: "db".into(),
            database: Some("app".into()),
            sql: sql.into(),
            normalized: normalize(sql),
            rule: "ask".into(),
            risks: vec![Risk::Drop],
            impact: Impact {
                rows: Some(3),
                detail: "explain".into(),
            },
        }
    }

    fn decision(approved: bool) -> Decision {
        Decision {
            approved,
            by: "carol".into(),
            reason: Some("ticket 42".into()),
            at: OffsetDateTime::now_utc(),
        }
    }

    #[test]
    fn normalizing_drops_comments_spacing_and_case_but_keeps_literals() {
        assert_eq!(
            normalize("delete  from t -- why\n where id = 1;"),
            normalize("DELETE /* x */ FROM t WHERE id=1")
        );
        assert_ne!(
            normalize("DELETE FROM t WHERE id = 1"),
            normalize("DELETE FROM t WHERE id = 2")
        );
        assert_ne!(normalize("DROP TABLE t"), normalize("DROP TABLE `T`"));
        assert_eq!(
            normalize("/*!50000 DROP */ TABLE t"),
            normalize("DROP TABLE t")
        );
    }

    #[test]
    fn the_window_must_cover_the_wait() {
        let config: ApprovalsConfig =
            toml::from_str("wait = \"30s\"\napprovers_group = \"dba\"").expect("parses");
        assert_eq!(config.wait, Duration::from_secs(30));
        assert_eq!(config.window, Duration::from_mins(15));
        assert_eq!(config.validate(), Ok(()));
        let short: ApprovalsConfig =
            toml::from_str("wait = \"5m\"\nwindow = \"1m\"").expect("parses");
        assert_eq!(short.validate().map_err(|e| e.0), Err("approvals.window"));
        assert!(toml::from_str::<ApprovalsConfig>("wiat = \"1m\"").is_err());
    }

    #[test]
    fn previews_are_explains_of_one_statement() {
        assert_eq!(
            preview_queries("DELETE FROM t WHERE a > 1;"),
            Ok(vec!["EXPLAIN DELETE FROM t WHERE a > 1".to_owned()])
        );
        assert_eq!(
            preview_queries("drop table a, `b`"),
            Ok(vec![
                "EXPLAIN SELECT COUNT(*) FROM a".to_owned(),
                "EXPLAIN SELECT COUNT(*) FROM `b`".to_owned()
            ])
        );
        assert_eq!(
            preview_queries("TRUNCATE TABLE db.t"),
            Ok(vec!["EXPLAIN SELECT COUNT(*) FROM db.t".to_owned()])
        );
        assert!(preview_queries("DELETE FROM t; DROP TABLE u").is_err());
        assert!(preview_queries("DELETE FROM t /*! ; DROP TABLE u */").is_err());
        assert!(preview_queries("GRANT ALL ON *.* TO x").is_err());
    }

    #[test]
    fn a_statement_waits_then_runs_once_when_approved() {
        let approvals = Approvals::new();
        let outbox = approvals.publish();
        let session = Uuid::now_v7();
        let first = request("DROP TABLE t", "alice");
        let Hold::Wait { id, new: true } = approvals.hold(first.clone(), session) else {
            panic!("a new request");
        };
        assert_eq!(id, first.approval_id);
        // The same statement again (other spacing) waits on the same request.
        let again = request("drop   table t", "alice");
        assert_eq!(
            approvals.hold(again.clone(), session),
            Hold::Wait { id, new: false }
        );
        // Another identity's is another request.
        assert!(matches!(
            approvals.hold(request("DROP TABLE t", "bob"), session),
            Hold::Wait { new: true, .. }
        ));
        let decided = approvals
            .decide(&id.simple().to_string()[..31], decision(true))
            .expect("decided");
        assert_eq!(decided.status(OffsetDateTime::now_utc()), Status::Approved);
        let Hold::Run(run) = approvals.hold(again.clone(), session) else {
            panic!("approved");
        };
        assert_eq!(run.request.approval_id, id);
        // Once: the next run asks again.
        assert!(matches!(
            approvals.hold(again, session),
            Hold::Wait { new: true, .. }
        ));
        let sent: Vec<Message> = outbox.try_iter().collect();
        assert!(matches!(sent[0], Message::Requested(_)));
        assert!(
            sent.iter()
                .any(|m| matches!(m, Message::Used { approval_id, .. } if *approval_id == id))
        );
    }

    #[test]
    fn deciding_twice_or_an_unknown_id_is_refused() {
        let approvals = Approvals::new();
        let first = request("TRUNCATE t", "alice");
        let id = first.approval_id;
        let _ = approvals.hold(first, Uuid::now_v7());
        approvals
            .decide(&id.to_string(), decision(false))
            .expect("denied");
        assert!(matches!(
            approvals.decide(&id.to_string(), decision(true)),
            Err(DecideError::Closed { .. })
        ));
        assert_eq!(
            approvals
                .decide("nope", decision(true))
                .expect_err("unknown")
                .to_string(),
            "no approval request 'nope' (see `tollgate approvals list`)"
        );
        assert!(matches!(
            approvals.decide("", decision(true)),
            Err(DecideError::NotFound(_))
        ));
        // A denied statement run again is a new request.
        assert!(matches!(
            approvals.hold(request("TRUNCATE t", "alice"), Uuid::now_v7()),
            Hold::Wait { new: true, .. }
        ));
    }

    #[test]
    fn expired_requests_are_neither_decided_nor_spent() {
        let approvals = Approvals::new();
        let mut old = request("DROP TABLE t", "alice");
        old.expires_at = OffsetDateTime::now_utc() - time::Duration::seconds(1);
        let id = old.approval_id;
        assert!(approvals.apply(&Message::Requested(Box::new(old.clone()))));
        assert!(
            !approvals.apply(&Message::Requested(Box::new(old))),
            "idempotent"
        );
        assert!(matches!(
            approvals.decide(&id.to_string(), decision(true)),
            Err(DecideError::Closed { ref status, .. }) if status == "expired"
        ));
        assert!(!approvals.spend(id, Uuid::now_v7()));
    }

    #[test]
    fn messages_from_other_replicas_apply_once() {
        let here = Approvals::new();
        let there = Approvals::new();
        let asked = request("DROP TABLE t", "alice");
        let id = asked.approval_id;
        let outbox = there.publish();
        let _ = there.hold(asked, Uuid::now_v7());
        there
            .decide(&id.to_string(), decision(true))
            .expect("approved");
        for message in outbox.try_iter() {
            assert!(here.apply(&message));
            assert!(!here.apply(&message));
        }
        assert!(here.spend(id, Uuid::now_v7()));
        assert!(!here.spend(id, Uuid::now_v7()), "once");
    }
}
