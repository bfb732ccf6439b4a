//! Session recording: the events a session produces and where they go.
//!
//! Sessions hand events to a [`Recorder`] over a bounded queue; one writer thread appends them
//! to the embedded [`store::Store`] (segment files with an index), linking each into its
//! session's hash chain on the way ([`chain`]). With a Kafka sink, the store is also the spool:
//! the [`kafka::Shipper`] follows it and moves its cursor only past events the broker
//! acknowledged. The data path never writes to disk itself, and waits on the recorder only as
//! the target's recording-failure policy says ([`RecordingFailure`]): a fail-open session never
//! waits for a statement's event (when it cannot be queued it is counted, and a `gap` event
//! says what was lost), a fail-closed session refuses statements while events cannot be
//! recorded.

pub mod chain;
pub mod event;
pub mod health;
pub mod kafka;
pub mod store;

use std::sync::{Arc, atomic::Ordering};

use parking_lot::Mutex;
use time::OffsetDateTime;
use tokio::sync::mpsc::{self, error::TrySendError};

pub use chain::{Chainer, KeyError, SigningKey};
pub use event::{
    EndReason, EventKind, GapEvent, GapReason, LocalInfile, LoginEvent, ProcessInfo, RecordedEvent,
    SessionEnded, SessionStarted, StatementError, StatementEvent, Steering,
};
pub use health::{RecorderHealth, Unrecordable};
pub use store::{Store, StoreError, StoreOptions};

use crate::config::{FsyncPolicy, RecordingConfig, RecordingFailure};

/// How long the writer rests after a batch that emptied the queue (bounds how stale a reader's
/// view can be).
const BATCH_PAUSE: std::time::Duration = std::time::Duration::from_millis(2);
/// Events written at most before the writer hands them to the kernel and says so.
const MAX_BATCH: usize = 1024;

/// Errors starting the recorder.
#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The Kafka sink could not be started.
    #[error(transparent)]
    Kafka(#[from] kafka::KafkaSinkError),
    /// The writer thread could not be started.
    #[error("cannot start the recording writer: {0}")]
    Thread(std::io::Error),
}

/// A handle that sessions use to record events. Cheap to clone. The gateway's handle has no
/// session; [`Recorder::for_session`] makes one that applies a target's recording-failure
/// policy and keeps track of what its session could not record.
#[derive(Clone, Debug)]
pub struct Recorder {
    sender: mpsc::Sender<RecordedEvent>,
    health: Arc<RecorderHealth>,
    session: Option<Arc<SessionRecording>>,
    /// Rows and bytes of row data recorded per statement at most.
    row_caps: (u64, u64),
}

/// A session's recording state.
#[derive(Debug)]
struct SessionRecording {
    failure: RecordingFailure,
    /// Events lost since the last `gap` event was queued.
    gap: Mutex<Option<GapEvent>>,
}

/// The writer thread and the Kafka shipper; [`RecorderTask::finish`] waits until every queued
/// event is in the store (and, for a few seconds, delivered).
#[derive(Debug)]
pub struct RecorderTask {
    writer: std::thread::JoinHandle<Result<(), StoreError>>,
    shipper: Option<kafka::Shipper>,
}

impl Recorder {
    /// Opens (creating when missing) the store and starts the writer thread, which chains
    /// every event and signs each `session.ended` with `key` when given, and the Kafka
    /// shipper when configured.
    pub fn start(
        config: &RecordingConfig,
        key: Option<SigningKey>,
    ) -> Result<(Self, RecorderTask), RecorderError> {
        let options = StoreOptions {
            segment_bytes: config.segment_bytes,
            fsync: config.fsync,
        };
        let mut store = Store::open(&config.store, options)?;
        let health = Arc::new(RecorderHealth::default());
        health.written_end.store(store.end(), Ordering::Relaxed);
        let capacity = config.queue_events.max(1);
        health
            .queue_capacity
            .store(capacity as u64, Ordering::Relaxed);
        let shipper = config
            .kafka
            .as_ref()
            .map(|kafka| kafka::Shipper::start(&config.store, kafka, Arc::clone(&health)))
            .transpose()?;
        let (sender, receiver) = mpsc::channel::<RecordedEvent>(capacity);
        let writer_health = Arc::clone(&health);
        let fsync_interval = config.fsync_interval;
        let writer = std::thread::Builder::new()
            .name("tollgate-recorder".into())
            .spawn(move || {
                let result = write_events(
                    &mut store,
                    receiver,
                    Chainer::new(key),
                    &writer_health,
                    fsync_interval,
                );
                if result.is_err() {
                    writer_health.writer_stopped.store(true, Ordering::Relaxed);
                }
                result
            })
            .map_err(RecorderError::Thread)?;
        Ok((
            Self {
                sender,
                health,
                session: None,
                row_caps: (
                    config.max_rows_per_statement as u64,
                    config.max_row_bytes_per_statement as u64,
                ),
            },
            RecorderTask { writer, shipper },
        ))
    }

    /// The recorder's state and counters (for the metrics endpoint).
    #[must_use]
    pub fn health(&self) -> Arc<RecorderHealth> {
        Arc::clone(&self.health)
    }

    /// Rows and bytes of row data recorded per statement at most.
    #[must_use]
    pub fn row_caps(&self) -> (u64, u64) {
        self.row_caps
    }

    /// A handle for one session of a target with recording-failure policy `failure`.
    #[must_use]
    pub fn for_session(&self, failure: RecordingFailure) -> Self {
        Self {
            sender: self.sender.clone(),
            health: Arc::clone(&self.health),
            row_caps: self.row_caps,
            session: Some(Arc::new(SessionRecording {
                failure,
                gap: Mutex::new(None),
            })),
        }
    }

    /// For a fail-closed session while events cannot be recorded: the error message a new
    /// statement gets instead of running. None when the statement may run.
    #[must_use]
    pub fn refusal(&self) -> Option<&'static str> {
        let session = self.session.as_ref()?;
        if session.failure != RecordingFailure::FailClosed {
            return None;
        }
        let reason = self.health.unrecordable()?;
        self.health
            .refused_statements
            .fetch_add(1, Ordering::Relaxed);
        Some(match reason {
            Unrecordable::SpoolFull => {
                "Tollgate: this session must be recorded and the recording spool is full (the \
                 event broker is unreachable or slow); statements are refused until it drains"
            }
            Unrecordable::QueueFull | Unrecordable::WriterStopped => {
                "Tollgate: this session must be recorded and the recorder has stopped; \
                 statements are refused (see the gateway's log)"
            }
        })
    }

    /// Records an event. A fail-open session's `statement` event is queued only when there is
    /// room and the spool is not full, never waiting; otherwise it is counted into the
    /// session's next `gap` event. Every other event waits for room in the queue. Returns
    /// false (and logs) when the event was not recorded.
    pub async fn record(&self, event: RecordedEvent) -> bool {
        let fail_open = self
            .session
            .as_ref()
            .is_some_and(|s| s.failure == RecordingFailure::FailOpen);
        if fail_open && matches!(event.kind, EventKind::Statement(_)) {
            return self.record_or_count(event);
        }
        if let Some(gap) = self.take_gap(event.session_id) {
            self.send(gap).await;
        }
        self.send(event).await
    }

    async fn send(&self, event: RecordedEvent) -> bool {
        let session_id = event.session_id;
        if self.sender.send(event).await.is_err() {
            tracing::error!(%session_id, "recording writer has stopped; event not recorded");
            return false;
        }
        true
    }

    /// Fail-open: queues `event` (after the session's pending gap) if it can without waiting,
    /// else counts it as lost.
    fn record_or_count(&self, event: RecordedEvent) -> bool {
        if let Some(reason) = self.health.unrecordable() {
            self.count_lost(&event, gap_reason(reason));
            return false;
        }
        if let Some(gap) = self.take_gap(event.session_id) {
            if let Err(error) = self.sender.try_send(gap) {
                let gap = match error {
                    TrySendError::Full(gap) | TrySendError::Closed(gap) => gap,
                };
                self.restore_gap(gap);
                self.count_lost(&event, GapReason::QueueFull);
                return false;
            }
            self.health.gaps.fetch_add(1, Ordering::Relaxed);
        }
        match self.sender.try_send(event) {
            Ok(()) => true,
            Err(TrySendError::Full(event)) => {
                self.count_lost(&event, GapReason::QueueFull);
                false
            }
            Err(TrySendError::Closed(event)) => {
                self.count_lost(&event, GapReason::WriterStopped);
                false
            }
        }
    }

    /// Adds `event` to the session's pending gap.
    fn count_lost(&self, event: &RecordedEvent, reason: GapReason) {
        let Some(session) = &self.session else {
            return;
        };
        self.health.lost_events.fetch_add(1, Ordering::Relaxed);
        let seq = match &event.kind {
            EventKind::Statement(statement) => Some(statement.seq),
            _ => None,
        };
        let mut gap = session.gap.lock();
        let gap = gap.get_or_insert_with(|| GapEvent {
            lost_events: 0,
            lost_statements: 0,
            first_seq: None,
            last_seq: None,
            from: event.time,
            to: event.time,
            reason,
        });
        gap.lost_events += 1;
        gap.to = event.time;
        if let Some(seq) = seq {
            gap.lost_statements += 1;
            gap.first_seq.get_or_insert(seq);
            gap.last_seq = Some(seq);
        }
        if gap.lost_events == 1 {
            tracing::warn!(
                session_id = %event.session_id,
                ?reason,
                "recording: this fail-open session's events are not being recorded; a gap event will say which"
            );
        }
    }

    /// The session's pending gap as an event, if events were lost since the last one.
    fn take_gap(&self, session_id: uuid::Uuid) -> Option<RecordedEvent> {
        let gap = self.session.as_ref()?.gap.lock().take()?;
        Some(RecordedEvent::now(session_id, EventKind::Gap(gap)))
    }

    /// Puts back a gap event that could not be queued.
    fn restore_gap(&self, event: RecordedEvent) {
        let (Some(session), EventKind::Gap(gap)) = (&self.session, event.kind) else {
            return;
        };
        *session.gap.lock() = Some(gap);
    }
}

fn gap_reason(reason: Unrecordable) -> GapReason {
    match reason {
        Unrecordable::SpoolFull => GapReason::SpoolFull,
        Unrecordable::QueueFull => GapReason::QueueFull,
        Unrecordable::WriterStopped => GapReason::WriterStopped,
    }
}

/// The writer thread: drains the queue in batches into the store until every sender is gone.
fn write_events(
    store: &mut Store,
    mut receiver: mpsc::Receiver<RecordedEvent>,
    mut chainer: Chainer,
    health: &RecorderHealth,
    fsync_interval: std::time::Duration,
) -> Result<(), StoreError> {
    let fsync = store.options().fsync;
    let mut last_sync = OffsetDateTime::now_utc();
    // Drain in batches: write everything queued, hand it to the kernel, then pause briefly so
    // that busy sessions queue events without waking this thread for each one (a wake-up per
    // statement costs more than the write itself).
    while let Some(first) = receiver.blocking_recv() {
        let mut next = Some(first);
        let mut ended_a_session = false;
        let mut batch = 0;
        while let Some(mut event) = next {
            ended_a_session |= matches!(event.kind, EventKind::SessionEnded(_));
            let line = chainer.link(&mut event)?;
            if let Err(error) = store.append_line(line, &event, false) {
                tracing::error!(%error, session_id = %event.session_id, "recording store write failed");
                return Err(error);
            }
            health.events_written.fetch_add(1, Ordering::Relaxed);
            batch += 1;
            // Under sustained load the queue never empties: end the batch anyway, so readers
            // (the Kafka shipper) see the events and the metrics stay current.
            next = if batch < MAX_BATCH {
                receiver.try_recv().ok()
            } else {
                None
            };
        }
        let now = OffsetDateTime::now_utc();
        let sync = match fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::Interval => ended_a_session || now - last_sync >= fsync_interval,
            FsyncPolicy::Never => false,
        };
        if sync {
            store.sync()?;
            last_sync = now;
        } else {
            store.flush()?;
        }
        health.written_end.store(store.end(), Ordering::Relaxed);
        health
            .queue_depth
            .store(receiver.len() as u64, Ordering::Relaxed);
        if batch < MAX_BATCH {
            std::thread::sleep(BATCH_PAUSE);
        }
    }
    store.sync()?;
    health.written_end.store(store.end(), Ordering::Relaxed);
    Ok(())
}

impl RecorderTask {
    /// Waits for the writer to drain (call after every [`Recorder`] handle is dropped), then
    /// gives the Kafka shipper a few seconds to deliver the rest before it stops; what it
    /// could not deliver stays in the spool for the next start.
    pub async fn finish(self) -> Result<(), StoreError> {
        let Self { writer, shipper } = self;
        let written = tokio::task::spawn_blocking(move || writer.join())
            .await
            .map_err(|e| StoreError::WriterPanicked(e.to_string()))?
            .map_err(|_| StoreError::WriterPanicked("the writer thread panicked".into()))?;
        if let Some(shipper) = shipper {
            let _ = tokio::task::spawn_blocking(move || shipper.stop()).await;
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::event::StatementEvent;

    fn statement(session_id: uuid::Uuid, seq: u64) -> RecordedEvent {
        let mut event: StatementEvent = serde_json::from_value(
            serde_json::json!({"seq": seq, "command": "query", "sql": "SELECT 1",
                "statement_id": null, "started_at": "2026-01-01T00:00:00Z", "duration_us": 1,
                "result_sets": 0, "columns": [], "column_count": 0, "rows": 0, "affected_rows": 0,
                "last_insert_id": null, "warnings": 0, "error": null}),
        )
        .expect("statement");
        event.seq = seq;
        RecordedEvent::now(session_id, EventKind::Statement(event))
    }

    #[tokio::test]
    async fn a_fail_open_session_counts_what_it_cannot_queue_into_one_gap_event() {
        let (sender, mut receiver) = mpsc::channel(2);
        let recorder = Recorder {
            sender,
            health: Arc::new(RecorderHealth::default()),
            session: None,
            row_caps: (100, 65536),
        }
        .for_session(RecordingFailure::FailOpen);
        let session = uuid::Uuid::now_v7();
        for seq in 1..=5 {
            recorder.record(statement(session, seq)).await;
        }
        // Two fit; 3..=5 were lost.
        assert_eq!(recorder.health.lost_events.load(Ordering::Relaxed), 3);
        for seq in [1, 2] {
            match receiver.recv().await.expect("event").kind {
                EventKind::Statement(s) => assert_eq!(s.seq, seq),
                other => panic!("unexpected {other:?}"),
            }
        }
        // The next event goes after a gap event saying exactly what was lost.
        assert!(recorder.record(statement(session, 6)).await);
        let EventKind::Gap(gap) = receiver.recv().await.expect("gap").kind else {
            panic!("a gap event first");
        };
        assert_eq!(
            (
                gap.lost_events,
                gap.lost_statements,
                gap.first_seq,
                gap.last_seq
            ),
            (3, 3, Some(3), Some(5))
        );
        assert_eq!(gap.reason, GapReason::QueueFull);
        assert!(matches!(
            receiver.recv().await.expect("event").kind,
            EventKind::Statement(s) if s.seq == 6
        ));
    }

    #[tokio::test]
    async fn a_fail_closed_session_refuses_statements_while_the_spool_is_full() {
        let (sender, _receiver) = mpsc::channel(2);
        let gateway = Recorder {
            sender,
            health: Arc::new(RecorderHealth::default()),
            session: None,
            row_caps: (100, 65536),
        };
        let closed = gateway.for_session(RecordingFailure::FailClosed);
        let open = gateway.for_session(RecordingFailure::FailOpen);
        assert_eq!(closed.refusal(), None);
        gateway.health.kafka.store(true, Ordering::Relaxed);
        gateway.health.spool_max_bytes.store(10, Ordering::Relaxed);
        gateway.health.written_end.store(10, Ordering::Relaxed);
        assert!(closed.refusal().expect("refused").contains("spool is full"));
        assert_eq!(open.refusal(), None, "fail-open sessions go on");
        gateway.health.acked_end.store(5, Ordering::Relaxed);
        assert_eq!(closed.refusal(), None, "recovers when the spool drains");
        assert_eq!(gateway.health.refused_statements.load(Ordering::Relaxed), 1);
    }
}
