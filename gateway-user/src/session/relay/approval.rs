//! Holding a statement whose guardrail decision is `approve` ([`crate::approvals`]): the
//! client's command waits here, unforwarded, until an approver decides or `[approvals] wait`
//! runs out.
//!
//! The impact preview runs on the held session's own database connection, before anything is
//! forwarded: `EXPLAIN` (never executed, so no rows are read or changed) of the one statement,
//! or of a count over each table a `DROP TABLE`/`TRUNCATE` names. That connection is idle
//! (the client waits for its answer), logged in with the account and database the statement
//! would run with, and sees the session's temporary tables and open transaction, so the
//! estimate is of what would really run; a second connection would need a second login with
//! the gateway's credential, which a relayed login does not have, and would see neither. The
//! cost: the database counts one more statement of the session, and a client's `SHOW
//! WARNINGS` after a held statement shows the warnings of what ran last. The preview is
//! bounded by [`PREVIEW_LIMIT`]; a database that does not answer an `EXPLAIN` within it ends
//! the session (the connection's state is unknown then).

use std::collections::HashSet;

use time::OffsetDateTime;
use uuid::Uuid;

use super::{Relay, RelayError, com};
use crate::{
    approvals::{
        ApprovalKey, ApprovalRequest, Approvals, ApprovalsConfig, Hold, Impact, Status, normalize,
        preview_queries,
    },
    guard::GuardDecision,
    protocol::packets,
    recording::{EventKind, ProcessInfo, RecordedEvent},
};

/// How long the impact preview may take on the database.
const PREVIEW_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);
/// The SQL kept in a request (as the recording keeps it).
const MAX_SQL: usize = 64 * 1024;

/// What a session needs to hold statements: set by the login phase.
#[derive(Debug, Clone)]
pub struct HoldSetup {
    /// The gateway's (shared) requests.
    pub approvals: Approvals,
    /// `[approvals]`.
    pub config: ApprovalsConfig,
    /// The process that opened the connection, from `session.started`.
    pub process: Option<ProcessInfo>,
    /// The client's address.
    pub client_addr: String,
    /// The session's target (by name).
    pub target: String,
    /// This replica (`host/pid`).
    pub gateway: String,
}

/// A session's approvals: its setup, and the decisions it still has to record.
#[derive(Debug, Default)]
pub struct Holding {
    /// `None`: statements that need approval are refused (no approvals here).
    pub setup: Option<HoldSetup>,
    /// Requests this session made whose wait ran out: their decision is recorded when it
    /// comes (checked before each command).
    late: Vec<Uuid>,
    /// Requests whose decision is in this session's recording already.
    recorded: HashSet<Uuid>,
}

fn time_text(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Relay<'_> {
    /// For a command a guardrail holds (blocks are answered before, in `gateway_checks`): waits
    /// for its approval. `None`: the command may run; otherwise the error the client gets
    /// instead. Nothing is held while the recording refuses statements (they are refused
    /// anyway, and the request could not be recorded).
    pub(in crate::session) async fn hold_if_needed(
        &mut self,
        command: &[u8],
        guard: Option<&GuardDecision>,
    ) -> Result<Option<String>, RelayError> {
        let Some(guard) = guard else {
            return Ok(None);
        };
        if !guard.needs_approval() || self.recorder.refusal().is_some() {
            return Ok(None);
        }
        let Some(setup) = self.approval.setup.clone() else {
            return Ok(Some(guard.message()));
        };
        let mut sql = String::from_utf8_lossy(command.get(1..).unwrap_or_default()).into_owned();
        if sql.len() > MAX_SQL {
            let mut end = MAX_SQL;
            while !sql.is_char_boundary(end) {
                end -= 1;
            }
            sql.truncate(end);
        }
        let groups = self
            .identity
            .as_ref()
            .map(|i| i.groups.clone())
            .unwrap_or_default();
        let key = ApprovalKey {
            identity: self.identity.as_ref().map(|i| i.name.clone()),
            target: setup.target.clone(),
            database: self.database.clone(),
            normalized: normalize(&sql),
        };
        let impact = if setup.approvals.known(&key) {
            Impact {
                rows: None,
                detail: "previewed with the earlier request".to_owned(),
            }
        } else {
            self.preview(&sql).await?
        };
        let now = OffsetDateTime::now_utc();
        let request = ApprovalRequest {
            approval_id: Uuid::now_v7(),
            requested_by_session: self.session_id,
            gateway: setup.gateway.clone(),
            requested_at: now,
            expires_at: now
                + time::Duration::try_from(setup.config.window).unwrap_or(time::Duration::HOUR),
            identity: key.identity,
            groups,
            client_addr: setup.client_addr.clone(),
            process: setup.process.clone(),
            target: key.target,
            database: key.database,
            sql,
            normalized: key.normalized,
            rule: guard.rule.clone(),
            risks: guard.risks.clone(),
            impact,
        };
        match setup.approvals.hold(request.clone(), self.session_id) {
            Hold::Run(approval) => {
                self.record_decision(approval.request.approval_id, &setup.approvals)
                    .await;
                Ok(None)
            }
            Hold::Wait { id, new } => {
                if new {
                    tracing::info!(session_id = %self.session_id, approval_id = %id,
                        rule = %guard.rule, "statement held for approval");
                    self.recorder
                        .record(RecordedEvent::now(
                            self.session_id,
                            EventKind::ApprovalRequested(request),
                        ))
                        .await;
                }
                Ok(self.wait_for_decision(id, guard, &setup).await)
            }
        }
    }

    /// Waits for the decision on request `id`, up to `[approvals] wait`: `None` when approved
    /// (and spent by this session), else the client's error.
    async fn wait_for_decision(
        &mut self,
        id: Uuid,
        guard: &GuardDecision,
        setup: &HoldSetup,
    ) -> Option<String> {
        let approvals = &setup.approvals;
        let mut changes = approvals.subscribe();
        let deadline = tokio::time::Instant::now() + setup.config.wait;
        loop {
            let Some(approval) = approvals.get(id) else {
                return Some(format!(
                    "Tollgate: approval {id} is no longer known; run the statement again"
                ));
            };
            match approval.status(OffsetDateTime::now_utc()) {
                Status::Pending => {}
                Status::Approved if approvals.spend(id, self.session_id) => {
                    self.record_decision(id, approvals).await;
                    return None;
                }
                Status::Approved => continue,
                Status::Denied => {
                    self.record_decision(id, approvals).await;
                    let (by, reason) = approval.decision.map_or_else(
                        || ("an approver".to_owned(), String::new()),
                        |d| (d.by, d.reason.map(|r| format!(": {r}")).unwrap_or_default()),
                    );
                    return Some(format!(
                        "Tollgate: statement denied by {by} (approval {id}, guardrail '{}'){reason}",
                        guard.rule
                    ));
                }
                Status::Used => {
                    self.record_decision(id, approvals).await;
                    return Some(format!(
                        "Tollgate: approval {id} was used by another session already; run the \
                         statement again to ask anew"
                    ));
                }
                Status::Expired => {
                    return Some(format!(
                        "Tollgate: approval {id} ran out before it was decided; run the \
                         statement again to ask anew"
                    ));
                }
            }
            tokio::select! {
                update = changes.changed() => if update.is_err() { break },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        self.approval.late.push(id);
        let expires = approvals
            .get(id)
            .map(|a| time_text(a.request.expires_at))
            .unwrap_or_default();
        Some(format!(
            "Tollgate: statement held for approval {id} (guardrail '{}'): not decided within \
             {}; once approved (`tollgate approvals approve {id}`), run it again before {expires}",
            guard.rule,
            humantime::format_duration(setup.config.wait)
        ))
    }

    /// Records `approval.decided` for request `id` in this session, once.
    async fn record_decision(&mut self, id: Uuid, approvals: &Approvals) {
        let Some(decided) = approvals.get(id).and_then(|a| a.decided()) else {
            return;
        };
        self.approval.late.retain(|late| *late != id);
        if !self.approval.recorded.insert(id) {
            return;
        }
        tracing::info!(session_id = %self.session_id, approval_id = %id,
            approved = decided.decision.approved, by = %decided.decision.by, "approval decided");
        self.recorder
            .record(RecordedEvent::now(
                self.session_id,
                EventKind::ApprovalDecided(decided),
            ))
            .await;
    }

    /// Records the decisions that came for this session's requests after their wait.
    pub(in crate::session) async fn record_late_decisions(&mut self) {
        if self.approval.late.is_empty() {
            return;
        }
        let Some(approvals) = self.approval.setup.as_ref().map(|s| s.approvals.clone()) else {
            return;
        };
        let now = OffsetDateTime::now_utc();
        let late = self.approval.late.clone();
        for id in late {
            match approvals.get(id) {
                Some(a) if a.decision.is_some() => self.record_decision(id, &approvals).await,
                Some(a) if a.status(now) != Status::Expired => {}
                _ => self.approval.late.retain(|l| *l != id),
            }
        }
    }

    /// How many rows `sql` would touch, estimated on the session's connection.
    async fn preview(&mut self, sql: &str) -> Result<Impact, RelayError> {
        let queries = match preview_queries(sql) {
            Ok(queries) => queries,
            Err(detail) => return Ok(Impact { rows: None, detail }),
        };
        let mut total = 0u64;
        for query in &queries {
            let estimate = tokio::time::timeout(PREVIEW_LIMIT, self.explain(query))
                .await
                .map_err(|_| {
                    RelayError::UpstreamProtocol(format!(
                        "the approval preview (EXPLAIN) got no answer within {PREVIEW_LIMIT:?}"
                    ))
                })??;
            match estimate {
                Ok(rows) => total = total.saturating_add(rows),
                Err(detail) => return Ok(Impact { rows: None, detail }),
            }
        }
        Ok(Impact {
            rows: Some(total),
            detail: format!("EXPLAIN estimate ({})", queries.join("; ")),
        })
    }

    /// Runs one `EXPLAIN` on the database leg and reads its whole answer (nothing reaches the
    /// client): the largest `rows` of its lines, or the database's refusal.
    async fn explain(&mut self, query: &str) -> Result<Result<u64, String>, RelayError> {
        let mut packet = Vec::with_capacity(query.len() + 1);
        packet.push(com::QUERY);
        packet.extend_from_slice(query.as_bytes());
        self.server.reset_sequence();
        self.server
            .write_packet(&packet)
            .await
            .map_err(RelayError::Upstream)?;
        self.server.flush().await.map_err(RelayError::Upstream)?;
        let first = self.server_packet().await?;
        match first.first() {
            Some(0xff) => {
                let error = packets::parse_err(&first);
                return Ok(Err(error.map_or_else(
                    || "EXPLAIN failed".to_owned(),
                    |e| format!("EXPLAIN refused: {} {}", e.code, e.message),
                )));
            }
            Some(0x00) | None => return Ok(Err("EXPLAIN returned no plan".to_owned())),
            Some(_) => {}
        }
        let columns = packets::Reader::new(&first).lenenc().unwrap_or(0);
        let mut rows_column = None;
        for i in 0..columns {
            let definition = self.server_packet().await?;
            if packets::column_name(&definition).is_some_and(|n| n.eq_ignore_ascii_case("rows")) {
                rows_column = Some(i);
            }
        }
        if !self.deprecate_eof {
            self.server_packet().await?;
        }
        let mut largest: Option<u64> = None;
        loop {
            let row = self.server_packet().await?;
            if row.first() == Some(&0xff) {
                return Ok(Err("EXPLAIN failed while sending its plan".to_owned()));
            }
            if packets::is_row_terminator(&row, self.deprecate_eof) {
                break;
            }
            let mut reader = packets::Reader::new(&row);
            for i in 0..columns {
                let value = if reader.rest().first() == Some(&0xfb) {
                    reader.u8();
                    None
                } else {
                    reader.lenenc_bytes()
                };
                if Some(i) == rows_column {
                    let rows = value
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .and_then(|v| v.trim().parse::<u64>().ok());
                    largest = largest.max(rows);
                }
            }
        }
        Ok(largest.ok_or_else(|| "EXPLAIN gave no row estimate".to_owned()))
    }
}
