//! Session recording: the events a session produces and where they go.
//!
//! Sessions hand events to a [`Recorder`] over a bounded channel; one writer task appends them
//! to the embedded [`store::Store`], linking each into its session's hash chain on the way
//! ([`chain`]). The data path never writes to disk itself.

pub mod chain;
pub mod event;
pub mod store;

use std::path::Path;

use tokio::{sync::mpsc, task::JoinHandle};

pub use chain::{Chainer, KeyError, SigningKey};
pub use event::{
    EndReason, EventKind, LocalInfile, LoginEvent, ProcessInfo, RecordedEvent, SessionEnded,
    SessionStarted, StatementError, StatementEvent,
};
pub use store::{Store, StoreError};

/// Events buffered between sessions and the writer before a session waits.
const QUEUE_DEPTH: usize = 4096;
/// How long the writer rests after each batch (bounds how stale a reader's view can be).
const BATCH_PAUSE: std::time::Duration = std::time::Duration::from_millis(2);

/// A handle that sessions use to record events. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Recorder {
    sender: mpsc::Sender<RecordedEvent>,
}

/// The writer task; [`RecorderTask::finish`] waits until every queued event is on disk.
#[derive(Debug)]
pub struct RecorderTask {
    handle: JoinHandle<Result<(), StoreError>>,
}

impl Recorder {
    /// Opens (creating when missing) the store at `dir` and starts the writer task, which
    /// chains every event and signs each `session.ended` with `key` when given.
    pub fn start(dir: &Path, key: Option<SigningKey>) -> Result<(Self, RecorderTask), StoreError> {
        let mut store = Store::open(dir)?;
        let mut chainer = Chainer::new(key);
        let (sender, mut receiver) = mpsc::channel::<RecordedEvent>(QUEUE_DEPTH);
        let handle = tokio::task::spawn_blocking(move || {
            // Drain in batches: write everything queued, hand it to the kernel, then pause
            // briefly so that busy sessions queue events without waking this thread for each
            // one (a wake-up per statement costs more than the write itself).
            while let Some(first) = receiver.blocking_recv() {
                let mut next = Some(first);
                while let Some(mut event) = next {
                    let durable = matches!(event.kind, EventKind::SessionEnded(_));
                    let line = chainer.link(&mut event)?;
                    if let Err(error) = store.append_line(line, durable) {
                        tracing::error!(%error, session_id = %event.session_id, "recording store write failed");
                        return Err(error);
                    }
                    next = receiver.try_recv().ok();
                }
                store.flush()?;
                std::thread::sleep(BATCH_PAUSE);
            }
            store.sync()
        });
        Ok((Self { sender }, RecorderTask { handle }))
    }

    /// Queues an event; waits only while the queue is full. Returns false (and logs) when the
    /// writer has stopped, so the caller can decide what a lost event means.
    pub async fn record(&self, event: RecordedEvent) -> bool {
        let session_id = event.session_id;
        if self.sender.send(event).await.is_err() {
            tracing::error!(%session_id, "recording writer has stopped; event not recorded");
            return false;
        }
        true
    }
}

impl RecorderTask {
    /// Waits for the writer to drain: call after every [`Recorder`] handle is dropped.
    pub async fn finish(self) -> Result<(), StoreError> {
        match self.handle.await {
            Ok(result) => result,
            Err(join_error) => Err(StoreError::WriterPanicked(join_error.to_string())),
        }
    }
}
