//! The embedded recording store: a directory holding an append-only JSON Lines file.
//!
//! One event per line, written whole with a single `write` so a crash leaves at most one torn
//! last line, which readers skip and report.

use std::{
    fs::{File, OpenOptions},
    io::{BufRead as _, BufReader, BufWriter, Write as _},
    path::{Path, PathBuf},
};

use super::event::RecordedEvent;

/// File name of the event log inside the store directory.
pub const EVENTS_FILE: &str = "events.jsonl";

/// Errors of the embedded store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store directory could not be created or opened.
    #[error("recording store {path}: {source}")]
    Open {
        /// The directory or file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An event could not be written.
    #[error("recording store {path}: write failed: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An event could not be serialized (a bug).
    #[error("recording event could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    /// The writer task panicked.
    #[error("recording writer panicked: {0}")]
    WriterPanicked(String),
}

/// An open store, appending to its event log. Appends are buffered: [`Store::flush`] hands
/// them to the kernel, [`Store::sync`] to stable storage.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    file: BufWriter<File>,
}

impl Store {
    /// Opens the store in `dir`, creating the directory (mode 0700) and the log (0600).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StoreError::Open {
                path: dir.to_owned(),
                source,
            })?;
        let path = dir.join(EVENTS_FILE);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        let mut store = Self {
            path,
            file: BufWriter::with_capacity(256 * 1024, file),
        };
        store.terminate_torn_line()?;
        Ok(store)
    }

    /// After a crash mid-write the log may end without a newline; end that torn line so the
    /// next event starts on a line of its own instead of being glued to the fragment.
    fn terminate_torn_line(&mut self) -> Result<(), StoreError> {
        use std::io::{Read as _, Seek as _, SeekFrom};
        let path = self.path.clone();
        let write_error = move |source| StoreError::Write {
            path: path.clone(),
            source,
        };
        let mut reader = File::open(&self.path).map_err(&write_error)?;
        let len = reader.seek(SeekFrom::End(0)).map_err(&write_error)?;
        if len == 0 {
            return Ok(());
        }
        reader.seek(SeekFrom::End(-1)).map_err(&write_error)?;
        let mut last = [0u8; 1];
        reader.read_exact(&mut last).map_err(&write_error)?;
        if last[0] != b'\n' {
            self.file.write_all(b"\n").map_err(&write_error)?;
            self.file.flush().map_err(&write_error)?;
        }
        Ok(())
    }

    /// Appends one event; with `durable`, also waits until it is on stable storage.
    pub fn append(&mut self, event: &RecordedEvent, durable: bool) -> Result<(), StoreError> {
        let line = serde_json::to_vec(event)?;
        self.append_line(line, durable)
    }

    /// Appends one event already serialized (without the newline), as the chain hashed it;
    /// with `durable`, also waits until it is on stable storage.
    pub fn append_line(&mut self, mut line: Vec<u8>, durable: bool) -> Result<(), StoreError> {
        line.push(b'\n');
        self.file
            .write_all(&line)
            .map_err(|source| StoreError::Write {
                path: self.path.clone(),
                source,
            })?;
        if durable {
            self.sync()?;
        }
        Ok(())
    }

    /// Hands everything appended so far to the kernel (readers see it).
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.file.flush().map_err(|source| StoreError::Write {
            path: self.path.clone(),
            source,
        })
    }

    /// Flushes everything appended so far to stable storage.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        self.flush()?;
        self.file
            .get_ref()
            .sync_data()
            .map_err(|source| StoreError::Write {
                path: self.path.clone(),
                source,
            })
    }

    /// Reads every event in the store at `dir`, in write order. Lines that do not parse (a torn
    /// last line after a crash) are skipped and counted in the second value.
    pub fn read_all(dir: &Path) -> Result<(Vec<RecordedEvent>, usize), StoreError> {
        let path = dir.join(EVENTS_FILE);
        let file = File::open(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        let mut events = Vec::new();
        let mut skipped = 0;
        for line in BufReader::new(file).lines() {
            let line = line.map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(&line) {
                Ok(event) => events.push(event),
                Err(_) => skipped += 1,
            }
        }
        Ok((events, skipped))
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::recording::event::{EndReason, EventKind, SessionEnded};

    #[test]
    fn append_then_read_back_skipping_a_torn_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(dir.path()).expect("open");
        let event = RecordedEvent::now(
            Uuid::now_v7(),
            EventKind::SessionEnded(SessionEnded {
                reason: EndReason::Closed,
                detail: None,
                bytes_from_client: Some(10),
                bytes_from_upstream: Some(20),
                duration_ms: 5,
            }),
        );
        store.append(&event, true).expect("append");
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(EVENTS_FILE))
            .and_then(|mut f| f.write_all(b"{\"v\":1,\"id\""))
            .expect("torn write");
        let mut store = Store::open(dir.path()).expect("reopen after a torn write");
        store.append(&event, true).expect("append after reopen");
        let (events, skipped) = Store::read_all(dir.path()).expect("read");
        assert_eq!(events, vec![event.clone(), event]);
        assert_eq!(skipped, 1);
    }
}
