//! `tollgate approvals list|approve|deny`: over the approvals topic when Kafka is configured
//! (every replica), else over the control socket of the gateway on this host; and the
//! socket's side of it ([`answer`]).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{Approval, Approvals, DecideError, Decision, Message, kafka, status_name};
use crate::{
    config::Config,
    control::{
        kafka::ControlTopicError,
        order::{Channel, operator},
        socket::{self, ControlSocketError},
    },
};

/// An approvals order over the control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "approvals", rename_all = "snake_case")]
pub enum ApprovalOrder {
    /// Every request the gateway knows.
    List,
    /// Approve or deny one.
    Decide {
        /// Its id or a unique prefix.
        id: String,
        /// The decision.
        decision: Decision,
    },
}

/// The gateway's answer to an [`ApprovalOrder`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalReply {
    /// The requests.
    Listed(Vec<Approval>),
    /// The request, decided.
    Decided(Box<Approval>),
    /// Nothing done, and why.
    Failed(DecideError),
}

/// Carries out `order` on this gateway (the socket's peer `uid` is added to the decider).
#[must_use]
pub fn answer(approvals: &Approvals, order: ApprovalOrder, uid: Option<u32>) -> ApprovalReply {
    match order {
        ApprovalOrder::List => ApprovalReply::Listed(approvals.list()),
        ApprovalOrder::Decide { id, mut decision } => {
            if let Some(uid) = uid {
                decision.by = format!("{} (uid {uid})", decision.by);
            }
            let reply = match approvals.decide(&id, decision) {
                Ok(approval) => ApprovalReply::Decided(Box::new(approval)),
                Err(error) => ApprovalReply::Failed(error),
            };
            tracing::info!(?reply, "approval order");
            reply
        }
    }
}

/// Why an approvals command failed.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalOrderError {
    /// Over the control socket.
    #[error(transparent)]
    Socket(#[from] ControlSocketError),
    /// Over the approvals topic.
    #[error(transparent)]
    Topic(#[from] ControlTopicError),
    /// The gateway refused it.
    #[error(transparent)]
    Refused(#[from] DecideError),
    /// The gateway's answer did not fit the order.
    #[error("unexpected answer from the gateway")]
    Unexpected,
}

fn local(config: &Config, order: &ApprovalOrder) -> Result<ApprovalReply, ApprovalOrderError> {
    let path = config.control_socket();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| ControlSocketError::Connect {
            path: path.clone(),
            source,
        })?;
    Ok(runtime.block_on(socket::exchange(&path, order))?)
}

/// `tollgate approvals list`: the requests (every replica's with Kafka).
///
/// # Errors
/// When no gateway or broker answers.
pub fn list(config: &Config, channel: Channel) -> Result<Vec<Approval>, ApprovalOrderError> {
    if let (Some((kafka, topic)), Channel::Auto) = (kafka::topic(config), channel) {
        return Ok(kafka::read(kafka, &topic)?.list());
    }
    match local(config, &ApprovalOrder::List)? {
        ApprovalReply::Listed(list) => Ok(list),
        ApprovalReply::Failed(error) => Err(error.into()),
        ApprovalReply::Decided(_) => Err(ApprovalOrderError::Unexpected),
    }
}

/// `tollgate approvals approve|deny ID [--reason R]`: the decided request.
///
/// # Errors
/// When no open request has the id, or no gateway or broker answers.
pub fn decide(
    config: &Config,
    id: &str,
    approved: bool,
    reason: Option<String>,
    channel: Channel,
) -> Result<Approval, ApprovalOrderError> {
    let decision = Decision {
        approved,
        by: operator(),
        reason,
        at: OffsetDateTime::now_utc(),
    };
    if let (Some((kafka, topic)), Channel::Auto) = (kafka::topic(config), channel) {
        let known = kafka::read(kafka, &topic)?;
        let decided = known.decide(id, decision.clone())?;
        kafka::produce(
            kafka,
            &topic,
            &Message::Decided {
                approval_id: decided.request.approval_id,
                decision,
            },
        )?;
        return Ok(decided);
    }
    match local(
        config,
        &ApprovalOrder::Decide {
            id: id.to_owned(),
            decision,
        },
    )? {
        ApprovalReply::Decided(approval) => Ok(*approval),
        ApprovalReply::Failed(error) => Err(error.into()),
        ApprovalReply::Listed(_) => Err(ApprovalOrderError::Unexpected),
    }
}

fn time_text(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// What an approver needs to see of a request, in a few lines.
#[must_use]
pub fn describe(approval: &Approval) -> String {
    let r = &approval.request;
    let now = OffsetDateTime::now_utc();
    let mut out = String::new();
    let who = r.identity.as_deref().unwrap_or("(relayed login)");
    let _ = writeln!(
        out,
        "{}  {}  {who} [{}] on {}{}",
        r.approval_id,
        status_name(approval.status(now)),
        r.groups.join(","),
        r.target,
        r.database
            .as_deref()
            .map(|d| format!("/{d}"))
            .unwrap_or_default(),
    );
    let _ = writeln!(out, "  sql: {}", r.sql);
    let risks: Vec<&str> = r.risks.iter().map(|k| k.name()).collect();
    let _ = writeln!(
        out,
        "  guardrail '{}' ({}); impact: {} ({})",
        r.rule,
        risks.join(", "),
        r.impact
            .rows
            .map_or_else(|| "unknown".to_owned(), |n| format!("~{n} rows")),
        r.impact.detail
    );
    let process = r.process.as_ref().map_or_else(
        || "not redirected by the kernel".to_owned(),
        |p| format!("pid {} uid {} comm {}", p.pid, p.uid, p.comm),
    );
    let _ = writeln!(
        out,
        "  from {} ({process}); session {} on {}",
        r.client_addr, r.requested_by_session, r.gateway
    );
    let _ = write!(
        out,
        "  requested {}, open until {}",
        time_text(r.requested_at),
        time_text(r.expires_at)
    );
    if let Some(d) = &approval.decision {
        let verb = if d.approved { "approved" } else { "denied" };
        let _ = write!(out, "\n  {verb} by {} at {}", d.by, time_text(d.at));
        if let Some(reason) = &d.reason {
            let _ = write!(out, ": {reason}");
        }
    }
    out
}
