//! Ending live sessions from outside: `tollgate sessions kill`.
//!
//! Every session registers with [`LiveSessions`] when it starts and leaves when it ends. A
//! kill order names a session (its id or a unique prefix); the session's relay stops, the
//! client gets error 1927 (`Connection was killed`) and `session.ended` says `killed`, by whom
//! and why. An order may also lock the session's identity for a period: its other live
//! sessions end too, and its logins are refused until the lock runs out.
//!
//! Orders reach the gateway two ways:
//! - [`socket`]: a Unix socket beside the store (`[control] socket`), for this host;
//! - [`kafka`]: a control topic every replica reads (`[recording.kafka] control_topic`), so a
//!   kill given on any replica ends the session wherever it runs.

use std::{collections::HashMap, sync::Arc};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub mod kafka;
pub mod order;
pub mod socket;

/// Who ended a session, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillOrder {
    /// Who gave the order (a user name, as the command line saw it, and the channel).
    pub by: String,
    /// Why, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl KillOrder {
    /// The text recorded in `session.ended.detail` and shown to the client.
    #[must_use]
    pub fn describe(&self) -> String {
        match &self.reason {
            Some(reason) => format!("killed by {}: {reason}", self.by),
            None => format!("killed by {}", self.by),
        }
    }
}

/// A lock on an identity: its logins are refused until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityLock {
    /// The identity (as recorded in `session.login.identity.name`).
    pub identity: String,
    /// When the lock runs out.
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
    /// Who set it, and why.
    pub order: KillOrder,
}

impl IdentityLock {
    /// The refusal a locked identity's login gets.
    #[must_use]
    pub fn describe(&self) -> String {
        let until = self
            .until
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut text = format!(
            "identity '{}' is locked until {until} by {}",
            self.identity, self.order.by
        );
        if let Some(reason) = &self.order.reason {
            text.push_str(": ");
            text.push_str(reason);
        }
        text
    }
}

/// Why a kill order did nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum KillError {
    /// No live session has this id (or id prefix).
    #[error("no live session '{0}' on this gateway")]
    NotFound(String),
    /// The prefix names several live sessions.
    #[error("'{prefix}' names {count} live sessions; give more of the id")]
    Ambiguous {
        /// The prefix given.
        prefix: String,
        /// How many live sessions start with it.
        count: usize,
    },
}

/// What a kill order did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillOutcome {
    /// The sessions told to end.
    pub killed: Vec<Uuid>,
    /// The lock set, if the order asked for one and the session had an identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked: Option<IdentityLock>,
}

/// One live session, as the registry knows it.
#[derive(Debug)]
struct LiveEntry {
    identity: Option<String>,
    switch: Arc<KillSwitch>,
}

/// How a session learns it was killed.
#[derive(Debug, Default)]
struct KillSwitch {
    token: CancellationToken,
    order: Mutex<Option<KillOrder>>,
}

impl KillSwitch {
    fn pull(&self, order: KillOrder) {
        self.order.lock().get_or_insert(order);
        self.token.cancel();
    }
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<Uuid, LiveEntry>,
    locks: HashMap<String, IdentityLock>,
}

/// The sessions live on this gateway, the identity locks in force, and the statements held
/// for approval.
#[derive(Debug, Clone, Default)]
pub struct LiveSessions {
    inner: Arc<Mutex<Inner>>,
    /// Approval requests (`tollgate approvals`, over the same socket and, with Kafka, the
    /// approvals topic).
    pub approvals: crate::approvals::Approvals,
}

impl LiveSessions {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a live session; it leaves the registry when the returned guard is dropped.
    #[must_use]
    pub fn register(&self, session_id: Uuid) -> Registration {
        let switch = Arc::new(KillSwitch::default());
        self.inner.lock().sessions.insert(
            session_id,
            LiveEntry {
                identity: None,
                switch: Arc::clone(&switch),
            },
        );
        Registration {
            sessions: self.clone(),
            session_id,
            switch,
        }
    }

    /// How many sessions are live.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.lock().sessions.len()
    }

    /// Whether no session is live.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ends the live session whose id is `id` or starts with it (hyphens optional). With
    /// `lock_until`, also locks its identity until then and ends the identity's other live
    /// sessions.
    ///
    /// # Errors
    /// When no live session, or more than one, matches.
    pub fn kill(
        &self,
        id: &str,
        order: &KillOrder,
        lock_until: Option<OffsetDateTime>,
    ) -> Result<KillOutcome, KillError> {
        let wanted = normalize_id(id);
        let mut inner = self.inner.lock();
        let matching: Vec<Uuid> = inner
            .sessions
            .keys()
            .filter(|session| session.simple().to_string().starts_with(&wanted))
            .copied()
            .collect();
        let session = match matching.as_slice() {
            [] => return Err(KillError::NotFound(id.to_owned())),
            [one] => *one,
            many => {
                return Err(KillError::Ambiguous {
                    prefix: id.to_owned(),
                    count: many.len(),
                });
            }
        };
        let mut outcome = KillOutcome::default();
        let identity = inner
            .sessions
            .get(&session)
            .and_then(|e| e.identity.clone());
        if let (Some(until), Some(identity)) = (lock_until, identity) {
            let lock = IdentityLock {
                identity,
                until,
                order: order.clone(),
            };
            outcome.killed = Self::lock_in(&mut inner, &lock);
            outcome.locked = Some(lock);
        } else if let Some(entry) = inner.sessions.get(&session) {
            entry.switch.pull(order.clone());
            outcome.killed.push(session);
        }
        Ok(outcome)
    }

    /// Locks an identity until `lock.until` and ends its live sessions; returns them.
    #[must_use = "the sessions ended are worth a log line"]
    pub fn lock(&self, lock: &IdentityLock) -> Vec<Uuid> {
        Self::lock_in(&mut self.inner.lock(), lock)
    }

    fn lock_in(inner: &mut Inner, lock: &IdentityLock) -> Vec<Uuid> {
        inner.locks.insert(lock.identity.clone(), lock.clone());
        let mut killed: Vec<Uuid> = inner
            .sessions
            .iter()
            .filter(|(_, entry)| entry.identity.as_deref() == Some(lock.identity.as_str()))
            .map(|(id, entry)| {
                entry.switch.pull(lock.order.clone());
                *id
            })
            .collect();
        killed.sort_unstable();
        killed
    }

    /// Lifts the lock on `identity`; whether there was one.
    #[must_use]
    pub fn unlock(&self, identity: &str) -> bool {
        self.inner.lock().locks.remove(identity).is_some()
    }

    /// The lock in force on `identity`, if any (expired locks are dropped here).
    #[must_use]
    pub fn locked(&self, identity: &str) -> Option<IdentityLock> {
        let mut inner = self.inner.lock();
        let lock = inner.locks.get(identity)?;
        if lock.until <= OffsetDateTime::now_utc() {
            inner.locks.remove(identity);
            return None;
        }
        Some(lock.clone())
    }
}

/// A session's place in [`LiveSessions`], for as long as it lives.
#[derive(Debug)]
pub struct Registration {
    sessions: LiveSessions,
    session_id: Uuid,
    switch: Arc<KillSwitch>,
}

impl Registration {
    /// Says who the session is (once the login is known), for locks. A session whose identity
    /// is locked already is killed at once.
    pub fn set_identity(&self, identity: &str) {
        let lock = {
            let mut inner = self.sessions.inner.lock();
            if let Some(entry) = inner.sessions.get_mut(&self.session_id) {
                entry.identity = Some(identity.to_owned());
            }
            inner.locks.get(identity).cloned()
        };
        if let Some(lock) = lock.filter(|l| l.until > OffsetDateTime::now_utc()) {
            self.switch.pull(lock.order);
        }
    }

    /// Resolves when the session is killed, with the order.
    pub async fn killed(&self) -> KillOrder {
        self.switch.token.cancelled().await;
        self.switch
            .order
            .lock()
            .clone()
            .unwrap_or_else(|| KillOrder {
                by: "unknown".into(),
                reason: None,
            })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.sessions.inner.lock().sessions.remove(&self.session_id);
    }
}

/// An order to the gateway, over the control socket or the control topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// End a live session (and lock its identity until `lock_until`, if given).
    Kill {
        /// Session id or a unique prefix.
        session: String,
        /// Who and why.
        order: KillOrder,
        /// Lock the session's identity until then.
        #[serde(default, with = "time::serde::rfc3339::option")]
        lock_until: Option<OffsetDateTime>,
    },
    /// Lock an identity (ending its live sessions).
    Lock {
        /// The lock.
        lock: IdentityLock,
    },
    /// Lift the lock on an identity.
    Unlock {
        /// The identity.
        identity: String,
    },
}

/// What the gateway did with a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// Done: the sessions ended and the lock set, if any.
    Done(KillOutcome),
    /// The lock was lifted (`true`) or there was none.
    Unlocked(bool),
    /// Nothing done, and why.
    Failed(KillError),
}

impl LiveSessions {
    /// Carries out `request`.
    #[must_use]
    pub fn apply(&self, request: &Request) -> Reply {
        match request {
            Request::Kill {
                session,
                order,
                lock_until,
            } => match self.kill(session, order, *lock_until) {
                Ok(outcome) => Reply::Done(outcome),
                Err(error) => Reply::Failed(error),
            },
            Request::Lock { lock } => Reply::Done(KillOutcome {
                killed: self.lock(lock),
                locked: Some(lock.clone()),
            }),
            Request::Unlock { identity } => Reply::Unlocked(self.unlock(identity)),
        }
    }
}

/// A session id or prefix as given (any case, hyphens optional), in the simple hex form.
fn normalize_id(id: &str) -> String {
    id.chars()
        .filter(|c| *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> KillOrder {
        KillOrder {
            by: "alice".into(),
            reason: Some("runaway agent".into()),
        }
    }

    #[tokio::test]
    async fn kill_by_prefix_ends_the_session_with_the_order() {
        let live = LiveSessions::new();
        let id = Uuid::now_v7();
        let registration = live.register(id);
        let prefix = &id.to_string()[..13];
        let outcome = live.kill(prefix, &order(), None).expect("killed");
        assert_eq!(outcome.killed, vec![id]);
        assert_eq!(registration.killed().await, order());
        drop(registration);
        assert!(live.is_empty());
        assert_eq!(
            live.kill(prefix, &order(), None),
            Err(KillError::NotFound(prefix.into()))
        );
    }

    #[test]
    fn an_ambiguous_prefix_kills_nothing() {
        let live = LiveSessions::new();
        let _a = live.register(Uuid::from_u128(0xabc1 << 112));
        let _b = live.register(Uuid::from_u128(0xabc2 << 112));
        assert!(matches!(
            live.kill("ABC", &order(), None),
            Err(KillError::Ambiguous { count: 2, .. })
        ));
        assert!(live.kill("abc2", &order(), None).is_ok());
    }

    #[tokio::test]
    async fn a_lock_ends_every_session_of_the_identity_and_refuses_new_ones() {
        let live = LiveSessions::new();
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let ra = live.register(a);
        ra.set_identity("agent");
        let rb = live.register(b);
        rb.set_identity("agent");
        let rc = live.register(c);
        rc.set_identity("bob");
        let until = OffsetDateTime::now_utc() + time::Duration::minutes(5);
        let outcome = live
            .kill(&a.to_string(), &order(), Some(until))
            .expect("killed");
        let mut both = vec![a, b];
        both.sort_unstable();
        assert_eq!(outcome.killed, both);
        assert_eq!(
            outcome.locked.as_ref().map(|l| l.identity.as_str()),
            Some("agent")
        );
        ra.killed().await;
        rb.killed().await;
        assert!(!rc.switch.token.is_cancelled());
        assert!(live.locked("agent").is_some());
        assert!(live.locked("bob").is_none());
        // A new session of the locked identity is killed as soon as it says who it is.
        let rd = live.register(Uuid::now_v7());
        rd.set_identity("agent");
        assert!(rd.switch.token.is_cancelled());
        assert!(live.unlock("agent"));
        assert!(live.locked("agent").is_none());
    }

    #[test]
    fn expired_locks_do_not_hold() {
        let live = LiveSessions::new();
        let ended = live.lock(&IdentityLock {
            identity: "agent".into(),
            until: OffsetDateTime::now_utc() - time::Duration::seconds(1),
            order: order(),
        });
        assert!(ended.is_empty());
        assert!(live.locked("agent").is_none());
    }
}
