//! `tollgate sessions tail ID`: follows a session as the gateway records it, statement by
//! statement (watching an agent at work), until it ends.

use std::{io, path::Path, time::Duration};

use super::{ShowError, replay};
use crate::recording::{EventKind, RecordedEvent, store::Tail};

/// How often the store is read again once the follower has caught up.
const POLL: Duration = Duration::from_millis(200);

/// No pacing: events are printed as they arrive.
struct AsTheyCome;

impl replay::Pacer for AsTheyCome {
    fn sleep(&mut self, _gap: Duration) {}
    fn step(&mut self) {}
}

/// Prints the session `id` (or a unique prefix) event by event as it is recorded into the store
/// at `dir`, returning once its `session.ended` is printed. With `idle`, also returns (false)
/// after that long without a new event of the session.
pub fn follow(
    dir: &Path,
    id: &str,
    idle: Option<Duration>,
    out: &mut impl io::Write,
) -> Result<bool, ShowError> {
    let recorded = super::events_of(dir, id)?;
    let Some(session) = recorded.first().map(|e| e.session_id) else {
        return Err(ShowError::Unknown(id.to_owned()));
    };
    if recorded
        .iter()
        .any(|e| matches!(e.kind, EventKind::SessionEnded(_)))
    {
        // Already over (possibly in a store written before segments): print it whole.
        for event in &recorded {
            print(event, out)?;
        }
        return Ok(true);
    }
    let needle = session.to_string();
    let mut tail = Tail::new(dir, 0);
    let mut quiet = Duration::ZERO;
    loop {
        let lines = tail.read(1024 * 1024)?;
        let mut printed = false;
        for line in lines {
            if !contains(&line.line, needle.as_bytes()) {
                continue;
            }
            let Ok(event) = serde_json::from_slice::<RecordedEvent>(&line.line) else {
                continue;
            };
            if event.session_id != session {
                continue;
            }
            print(&event, out)?;
            printed = true;
            if matches!(event.kind, EventKind::SessionEnded(_)) {
                return Ok(true);
            }
        }
        if printed {
            quiet = Duration::ZERO;
            continue;
        }
        if idle.is_some_and(|idle| quiet >= idle) {
            return Ok(false);
        }
        std::thread::sleep(POLL);
        quiet += POLL;
    }
}

fn print(event: &RecordedEvent, out: &mut impl io::Write) -> Result<(), ShowError> {
    replay::replay(std::slice::from_ref(event), 0.0, &mut AsTheyCome, out).map_err(|e| {
        ShowError::Store(crate::recording::StoreError::Write {
            path: "standard output".into(),
            source: e,
        })
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::recording::{
        EndReason, SessionEnded, StatementEvent, Store, StoreOptions, event::SessionStarted,
    };

    #[test]
    fn follows_a_live_session_until_it_ends_and_ignores_the_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(dir.path(), StoreOptions::default()).expect("store");
        let (watched, other) = (Uuid::now_v7(), Uuid::now_v7());
        let started = |session| {
            RecordedEvent::now(
                session,
                EventKind::SessionStarted(
                    serde_json::from_value::<SessionStarted>(serde_json::json!({
                        "gateway": "test/1", "client_addr": "198.18.0.1:5000", "process": null,
                        "target": "db", "original_destination": null, "upstream": "db:3306",
                        "upstream_local_addr": null
                    }))
                    .expect("started"),
                ),
            )
        };
        let statement = |session, sql: &str| {
            RecordedEvent::now(
                session,
                EventKind::Statement(StatementEvent {
                    sql: Some(sql.to_owned()),
                    command: "query".into(),
                    ..StatementEvent::default()
                }),
            )
        };
        for event in [
            started(watched),
            started(other),
            statement(other, "SELECT 'other'"),
        ] {
            store.append(&event, false).expect("append");
        }
        store.flush().expect("flush");
        let path = dir.path().to_owned();
        let prefix = watched.to_string();
        let follower = std::thread::spawn(move || {
            let mut out = Vec::new();
            let ended = follow(&path, &prefix, Some(Duration::from_secs(10)), &mut out);
            (
                ended.expect("follow"),
                String::from_utf8(out).expect("utf-8"),
            )
        });
        std::thread::sleep(Duration::from_millis(300));
        store
            .append(&statement(watched, "SELECT 'later'"), false)
            .expect("append");
        let ended = RecordedEvent::now(
            watched,
            EventKind::SessionEnded(SessionEnded {
                reason: EndReason::Closed,
                detail: None,
                bytes_from_client: None,
                bytes_from_upstream: None,
                duration_ms: 1,
                statements: Some(1),
            }),
        );
        store.append(&ended, false).expect("append");
        store.flush().expect("flush");
        let (ended, out) = follower.join().expect("follower");
        assert!(ended);
        assert!(out.contains("SELECT 'later'"), "{out}");
        assert!(!out.contains("SELECT 'other'"), "{out}");
    }
}
