//! Session recording: the events a session produces and where they go.
//!
//! Sessions hand events to a [`Recorder`] over a bounded channel; one writer task appends them
//! to the embedded [`store::Store`]. The data path never writes to disk itself.

pub mod event;
pub mod store;

use std::path::Path;

use tokio::{sync::mpsc, task::JoinHandle};

pub use event::{
    EndReason, EventKind, LoginEvent, ProcessInfo, RecordedEvent, SessionEnded, SessionStarted,
    StatementError, StatementEvent,
};
pub use store::{Store, StoreError};

/// Events buffered between sessions and the writer before a session waits.
const QUEUE_DEPTH: usize = 4096;

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
    /// Opens (creating when missing) the store at `dir` and starts the writer task.
    pub fn start(dir: &Path) -> Result<(Self, RecorderTask), StoreError> {
        let mut store = Store::open(dir)?;
        let (sender, mut receiver) = mpsc::channel::<RecordedEvent>(QUEUE_DEPTH);
        let handle = tokio::task::spawn_blocking(move || {
            while let Some(event) = receiver.blocking_recv() {
                let durable = matches!(event.kind, EventKind::SessionEnded(_));
                // Batch writes while events keep coming; hand them to the kernel as soon as
                // the queue is drained, so readers never lag behind an idle gateway.
                let result = store.append(&event, durable).and_then(|()| {
                    if receiver.is_empty() {
                        store.flush()
                    } else {
                        Ok(())
                    }
                });
                if let Err(error) = result {
                    tracing::error!(%error, session_id = %event.session_id, "recording store write failed");
                    return Err(error);
                }
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
