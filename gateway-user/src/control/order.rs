//! `tollgate sessions kill` and `sessions unlock`: give an order to the gateways and say what
//! came of it.

use std::{fmt::Write as _, path::Path, time::Duration};

use time::OffsetDateTime;

use super::{
    IdentityLock, KillOrder, Reply, Request,
    kafka::{self, ControlTopicError},
    socket::{self, ControlSocketError},
};
use crate::config::Config;

/// Why an order did not reach a gateway, or did nothing there.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// Over the control socket.
    #[error(transparent)]
    Socket(#[from] ControlSocketError),
    /// Over the control topic.
    #[error(transparent)]
    Topic(#[from] ControlTopicError),
    /// A gateway refused it.
    #[error("{gateway}: {detail}")]
    Refused {
        /// Which gateway.
        gateway: String,
        /// Why.
        detail: String,
    },
    /// No replica answered on the control topic.
    #[error(
        "no gateway replica has a live session '{0}' (none answered within the wait): it may \
         have ended already, see `tollgate sessions list --live`"
    )]
    NoAnswer(String),
    /// The lock duration cannot be added to the current time.
    #[error("--lock {0:?} is too long")]
    LockTooLong(Duration),
}

/// Where an order goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The control topic when Kafka is configured (every replica), else the control socket.
    Auto,
    /// The control socket of the gateway on this host only.
    Local,
}

/// Who gives an order: the invoking user as the system names them (`sudo` keeps the real one).
#[must_use]
pub fn operator() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| format!("uid {}", nix::unistd::getuid()))
}

/// `tollgate sessions kill ID [--lock D] [--reason R]`: ends the session wherever it runs;
/// returns the lines to print.
///
/// # Errors
/// When no gateway ended it.
pub fn kill(
    config: &Config,
    session: &str,
    lock: Option<Duration>,
    reason: Option<String>,
    channel: Channel,
    wait: Duration,
) -> Result<String, OrderError> {
    let lock_until = lock
        .map(|d| {
            time::Duration::try_from(d)
                .ok()
                .and_then(|d| OffsetDateTime::now_utc().checked_add(d))
                .ok_or(OrderError::LockTooLong(d))
        })
        .transpose()?;
    let request = Request::Kill {
        session: session.to_owned(),
        order: KillOrder {
            by: operator(),
            reason,
        },
        lock_until,
    };
    let replies = send(config, &request, channel, wait)?;
    if replies.is_empty() {
        return Err(OrderError::NoAnswer(session.to_owned()));
    }
    describe(&replies)
}

/// `tollgate sessions unlock IDENTITY`: lifts a lock on every replica.
///
/// # Errors
/// When the order cannot be given.
pub fn unlock(
    config: &Config,
    identity: &str,
    channel: Channel,
    wait: Duration,
) -> Result<String, OrderError> {
    let request = Request::Unlock {
        identity: identity.to_owned(),
    };
    let replies = send(config, &request, channel, wait)?;
    let lifted = replies
        .iter()
        .filter(|(_, r)| matches!(r, Reply::Unlocked(true)))
        .count();
    Ok(format!(
        "unlock of identity '{identity}' sent; {lifted} of {} answering gateway(s) had it locked",
        replies.len()
    ))
}

fn send(
    config: &Config,
    request: &Request,
    channel: Channel,
    wait: Duration,
) -> Result<Vec<(String, Reply)>, OrderError> {
    if let (Some(kafka), Channel::Auto) = (&config.recording.kafka, channel) {
        Ok(kafka::order(kafka, request, wait)?)
    } else {
        {
            let path = config.control_socket();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|source| ControlSocketError::Connect {
                    path: path.clone(),
                    source,
                })?;
            let reply = runtime.block_on(socket::send(&path, request))?;
            Ok(vec![(local_name(&path), reply)])
        }
    }
}

fn local_name(path: &Path) -> String {
    format!("the gateway at {}", path.display())
}

/// Lines saying what each gateway did; an error when none ended anything.
fn describe(replies: &[(String, Reply)]) -> Result<String, OrderError> {
    let mut out = String::new();
    let mut refused = None;
    for (gateway, reply) in replies {
        match reply {
            Reply::Done(outcome) if !outcome.killed.is_empty() => {
                for id in &outcome.killed {
                    let _ = writeln!(out, "killed session {id} on {gateway}");
                }
                if let Some(lock) = &outcome.locked {
                    let _ = writeln!(out, "{}", lock_line(lock));
                }
            }
            Reply::Done(_) | Reply::Unlocked(_) => {}
            Reply::Failed(error) => {
                refused.get_or_insert_with(|| OrderError::Refused {
                    gateway: gateway.clone(),
                    detail: error.to_string(),
                });
            }
        }
    }
    match refused {
        Some(error) if out.is_empty() => Err(error),
        _ => Ok(out.trim_end().to_owned()),
    }
}

fn lock_line(lock: &IdentityLock) -> String {
    let until = lock
        .until
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    format!(
        "identity '{}' locked until {until} (`tollgate sessions unlock {}` lifts it)",
        lock.identity, lock.identity
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{KillError, KillOutcome};

    #[test]
    fn describe_names_each_session_and_the_lock() {
        let id = uuid::Uuid::nil();
        let replies = vec![(
            "b/2".to_owned(),
            Reply::Done(KillOutcome {
                killed: vec![id],
                locked: Some(IdentityLock {
                    identity: "agent".into(),
                    until: OffsetDateTime::UNIX_EPOCH,
                    order: KillOrder {
                        by: "alice".into(),
                        reason: None,
                    },
                }),
            }),
        )];
        let text = describe(&replies).expect("killed");
        assert!(
            text.contains(&format!("killed session {id} on b/2")),
            "{text}"
        );
        assert!(
            text.contains("identity 'agent' locked until 1970-01-01T00:00:00Z"),
            "{text}"
        );
    }

    #[test]
    fn a_refusal_alone_is_an_error() {
        let replies = vec![(
            "a/1".to_owned(),
            Reply::Failed(KillError::NotFound("0190".into())),
        )];
        let error = describe(&replies).expect_err("refused");
        assert_eq!(
            error.to_string(),
            "a/1: no live session '0190' on this gateway"
        );
    }
}
