//! The embedded recording store: a directory of append-only segment files with an index.
//!
//! Events are JSON lines. Every byte ever appended has a *position*: segment files are named
//! by the position of their first byte (`00000000000000000000.jsonl`, then for example
//! `00000000000067108864.jsonl`), so a single number says where any event is, and how far a
//! reader (the Kafka shipper) has got. Each event is written whole with a single `write`, so a
//! crash leaves at most one torn last line, which readers skip and report and the next writer
//! ends. Beside each segment, `<base>.index` lists where each session's `session.started`,
//! `session.login` and `session.ended` events are, one JSON line each, so that sessions can be
//! found without reading every event.
//!
//! Stores written before segments had one file, `events.jsonl`; it is still read, first.

use std::{
    fs::{File, OpenOptions},
    io::{BufRead as _, BufReader, BufWriter, Read as _, Seek as _, SeekFrom, Write as _},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::event::{EventKind, RecordedEvent};
use crate::config::FsyncPolicy;

/// File name of the single event log of stores written before segments (read only).
pub const LEGACY_EVENTS_FILE: &str = "events.jsonl";
/// Extension of segment files.
const SEGMENT_EXTENSION: &str = "jsonl";
/// Extension of segment index files.
const INDEX_EXTENSION: &str = "index";

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
    /// The directory holds no recording at all.
    #[error("recording store {0}: no recording here (no segment files, no events.jsonl)")]
    Empty(PathBuf),
}

/// How the store is written.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
    /// When appends reach stable storage.
    pub fsync: FsyncPolicy,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            segment_bytes: 64 * 1024 * 1024,
            fsync: FsyncPolicy::Interval,
        }
    }
}

/// One entry of a segment's index: where a session-level event is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Position of the event's first byte in the store.
    pub pos: u64,
    /// Length of its line, without the newline.
    pub len: u64,
    /// The event's type (`session.started`, `session.login`, `session.ended`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Its session.
    pub session_id: Uuid,
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// `session.login`: the user the client logged in as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// An open store, appending to its newest segment. Appends are buffered: [`Store::flush`]
/// hands them to the kernel, [`Store::sync`] to stable storage.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    options: StoreOptions,
    segment: ActiveSegment,
}

#[derive(Debug)]
struct ActiveSegment {
    base: u64,
    path: PathBuf,
    len: u64,
    file: BufWriter<File>,
    index: BufWriter<File>,
}

impl Store {
    /// Opens the store in `dir` for appending, creating the directory (mode 0700) and the first
    /// segment (0600) when missing.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StoreError::Open {
                path: dir.to_owned(),
                source,
            })?;
        let base = segment_bases(dir)?.last().copied().unwrap_or(0);
        let segment = ActiveSegment::open(dir, base)?;
        Ok(Self {
            dir: dir.to_owned(),
            options,
            segment,
        })
    }

    /// How the store is written.
    #[must_use]
    pub fn options(&self) -> StoreOptions {
        self.options
    }

    /// Position just past the last byte appended.
    #[must_use]
    pub fn end(&self) -> u64 {
        self.segment.base + self.segment.len
    }

    /// Appends one event; with `durable`, also waits until it is on stable storage.
    pub fn append(&mut self, event: &RecordedEvent, durable: bool) -> Result<u64, StoreError> {
        let line = serde_json::to_vec(event)?;
        self.append_line(line, event, durable)
    }

    /// Appends one event already serialized (without the newline), as the chain hashed it;
    /// `event` is the same event (for the index). With `durable`, also waits until it is on
    /// stable storage. Returns the event's position.
    pub fn append_line(
        &mut self,
        mut line: Vec<u8>,
        event: &RecordedEvent,
        durable: bool,
    ) -> Result<u64, StoreError> {
        let line_len = line.len() as u64;
        if self.segment.len > 0 && self.segment.len + line_len + 1 > self.options.segment_bytes {
            self.roll()?;
        }
        let pos = self.end();
        line.push(b'\n');
        let path = &self.segment.path;
        self.segment
            .file
            .write_all(&line)
            .map_err(|source| StoreError::Write {
                path: path.clone(),
                source,
            })?;
        self.segment.len += line_len + 1;
        if let Some(entry) = index_entry(event, pos, line_len) {
            let mut entry = serde_json::to_vec(&entry)?;
            entry.push(b'\n');
            self.segment
                .index
                .write_all(&entry)
                .map_err(|source| StoreError::Write {
                    path: path.with_extension(INDEX_EXTENSION),
                    source,
                })?;
        }
        if durable {
            self.sync()?;
        }
        Ok(pos)
    }

    /// Closes the current segment (on stable storage unless the policy is `never`) and starts
    /// the next one at the current end.
    fn roll(&mut self) -> Result<(), StoreError> {
        if self.options.fsync == FsyncPolicy::Never {
            self.flush()?;
        } else {
            self.sync()?;
        }
        let next = ActiveSegment::open(&self.dir, self.end())?;
        self.segment = next;
        if self.options.fsync != FsyncPolicy::Never {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Hands everything appended so far to the kernel (readers see it).
    pub fn flush(&mut self) -> Result<(), StoreError> {
        let path = &self.segment.path;
        let error = |source| StoreError::Write {
            path: path.clone(),
            source,
        };
        self.segment.file.flush().map_err(error)?;
        self.segment.index.flush().map_err(error)
    }

    /// Flushes everything appended so far to stable storage.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        self.flush()?;
        let path = &self.segment.path;
        let error = |source| StoreError::Write {
            path: path.clone(),
            source,
        };
        self.segment.file.get_ref().sync_data().map_err(error)?;
        self.segment.index.get_ref().sync_data().map_err(error)
    }

    /// Reads every event in the store at `dir`, in write order. Lines that do not parse (a torn
    /// last line after a crash) are skipped and counted in the second value.
    pub fn read_all(dir: &Path) -> Result<(Vec<RecordedEvent>, usize), StoreError> {
        Self::read_all_reporting(dir, |_, _| {})
    }

    /// Like [`Store::read_all`], telling `progress` how many bytes of how many were read
    /// (about every mebibyte), for a progress bar on long scans.
    pub fn read_all_reporting(
        dir: &Path,
        progress: impl FnMut(u64, u64),
    ) -> Result<(Vec<RecordedEvent>, usize), StoreError> {
        let mut events = Vec::new();
        let mut skipped = 0;
        for_each_line_reporting(dir, progress, |_, line| {
            match serde_json::from_slice(line) {
                Ok(event) => events.push(event),
                Err(_) => skipped += 1,
            }
            true
        })?;
        Ok((events, skipped))
    }

    /// Every event line of the store at `dir` exactly as stored (without the newline), in
    /// write order, blank lines left out.
    pub fn read_lines(dir: &Path) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut lines = Vec::new();
        for_each_line(dir, |_, line| {
            lines.push(line.to_vec());
            true
        })?;
        Ok(lines)
    }

    /// The index entries of every segment of the store at `dir`, in write order (entries that
    /// do not parse are skipped).
    pub fn read_index(dir: &Path) -> Result<Vec<IndexEntry>, StoreError> {
        let mut entries = Vec::new();
        for base in segment_bases(dir)? {
            let path = segment_path(dir, base).with_extension(INDEX_EXTENSION);
            let Ok(file) = File::open(&path) else {
                continue;
            };
            for line in BufReader::new(file).split(b'\n') {
                let line = line.map_err(|source| StoreError::Open {
                    path: path.clone(),
                    source,
                })?;
                if let Ok(entry) = serde_json::from_slice(&line) {
                    entries.push(entry);
                }
            }
        }
        Ok(entries)
    }
}

impl ActiveSegment {
    /// Opens (creating) the segment starting at `base` for appending; ends a torn last line.
    fn open(dir: &Path, base: u64) -> Result<Self, StoreError> {
        let path = segment_path(dir, base);
        let open = |path: &Path| {
            use std::os::unix::fs::OpenOptionsExt as _;
            OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(|source| StoreError::Open {
                    path: path.to_owned(),
                    source,
                })
        };
        let file = open(&path)?;
        let index = open(&path.with_extension(INDEX_EXTENSION))?;
        let mut segment = Self {
            base,
            len: 0,
            file: BufWriter::with_capacity(256 * 1024, file),
            index: BufWriter::with_capacity(16 * 1024, index),
            path,
        };
        segment.len = segment.terminate_torn_line()?;
        Ok(segment)
    }

    /// After a crash mid-write the segment may end without a newline; end that torn line so the
    /// next event starts on a line of its own. Returns the segment's length.
    fn terminate_torn_line(&mut self) -> Result<u64, StoreError> {
        let path = self.path.clone();
        let write_error = move |source| StoreError::Write {
            path: path.clone(),
            source,
        };
        let mut reader = File::open(&self.path).map_err(&write_error)?;
        let len = reader.seek(SeekFrom::End(0)).map_err(&write_error)?;
        if len == 0 {
            return Ok(0);
        }
        reader.seek(SeekFrom::End(-1)).map_err(&write_error)?;
        let mut last = [0u8; 1];
        reader.read_exact(&mut last).map_err(&write_error)?;
        if last[0] == b'\n' {
            return Ok(len);
        }
        self.file.write_all(b"\n").map_err(&write_error)?;
        self.file.flush().map_err(&write_error)?;
        Ok(len + 1)
    }
}

/// The index entry for `event` at `pos`, when it is a session-level event.
fn index_entry(event: &RecordedEvent, pos: u64, len: u64) -> Option<IndexEntry> {
    let (kind, user) = match &event.kind {
        EventKind::SessionStarted(_) => ("session.started", None),
        EventKind::Login(login) => ("session.login", Some(login.user.clone())),
        EventKind::SessionEnded(_) => ("session.ended", None),
        _ => return None,
    };
    Some(IndexEntry {
        pos,
        len,
        kind: kind.to_owned(),
        session_id: event.session_id,
        time: event.time,
        user,
    })
}

/// Path of the segment starting at `base`.
#[must_use]
pub fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.{SEGMENT_EXTENSION}"))
}

/// The bases of the segments in `dir`, in order (none when `dir` does not exist).
pub fn segment_bases(dir: &Path) -> Result<Vec<u64>, StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StoreError::Open {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let mut bases: Vec<u64> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let name = name.to_str()?;
            let digits = name.strip_suffix(".jsonl")?;
            (digits.len() == 20).then(|| digits.parse().ok()).flatten()
        })
        .collect();
    bases.sort_unstable();
    Ok(bases)
}

/// Calls `each(position, line)` for every non-blank line of the store at `dir` (the legacy
/// `events.jsonl` first, with no position), until it returns false.
fn for_each_line(
    dir: &Path,
    each: impl FnMut(Option<u64>, &[u8]) -> bool,
) -> Result<(), StoreError> {
    for_each_line_reporting(dir, |_, _| {}, each)
}

/// Bytes read between two progress reports.
const REPORT_EVERY: u64 = 1024 * 1024;

fn for_each_line_reporting(
    dir: &Path,
    mut progress: impl FnMut(u64, u64),
    mut each: impl FnMut(Option<u64>, &[u8]) -> bool,
) -> Result<(), StoreError> {
    let legacy = dir.join(LEGACY_EVENTS_FILE);
    let bases = segment_bases(dir)?;
    let mut files: Vec<(Option<u64>, PathBuf)> = Vec::new();
    if legacy.exists() {
        files.push((None, legacy));
    }
    files.extend(
        bases
            .iter()
            .map(|&base| (Some(base), segment_path(dir, base))),
    );
    if files.is_empty() {
        return Err(StoreError::Empty(dir.to_owned()));
    }
    let total: u64 = files
        .iter()
        .filter_map(|(_, path)| std::fs::metadata(path).ok())
        .map(|m| m.len())
        .sum();
    let (mut done, mut reported) = (0_u64, 0_u64);
    for (base, path) in files {
        let file = File::open(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        let mut pos = base;
        for line in BufReader::new(file).split(b'\n') {
            let line = line.map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
            let here = pos;
            pos = pos.map(|p| p + line.len() as u64 + 1);
            done += line.len() as u64 + 1;
            if done - reported >= REPORT_EVERY {
                reported = done;
                progress(done, total);
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if !each(here, &line) {
                return Ok(());
            }
        }
    }
    progress(done.min(total), total);
    Ok(())
}

/// Makes the directory's entries (a new segment) durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| StoreError::Write {
            path: dir.to_owned(),
            source,
        })
}

/// Reads the store from a position onwards, following the writer: the Kafka shipper's view.
#[derive(Debug)]
pub struct Tail {
    dir: PathBuf,
    pos: u64,
    pending: Vec<u8>,
}

/// One event line read by a [`Tail`].
#[derive(Debug, Clone)]
pub struct TailLine {
    /// Position of its first byte.
    pub pos: u64,
    /// Position just past its newline.
    pub end: u64,
    /// The line, without the newline.
    pub line: Vec<u8>,
}

impl Tail {
    /// A reader starting at `pos` (a line boundary: 0, or a position a previous reader
    /// reached). A position before the first segment that still exists starts at that
    /// segment.
    #[must_use]
    pub fn new(dir: &Path, pos: u64) -> Self {
        Self {
            dir: dir.to_owned(),
            pos,
            pending: Vec::new(),
        }
    }

    /// Position of the next line to be returned.
    #[must_use]
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Complete lines from the current position, about `max_bytes` of them at most (at least
    /// one line when there is one). Empty when the reader has caught up with the writer.
    pub fn read(&mut self, max_bytes: usize) -> Result<Vec<TailLine>, StoreError> {
        let bases = segment_bases(&self.dir)?;
        let Some(index) = bases.iter().rposition(|&base| base <= self.pos) else {
            // Before the first segment (deleted ones, or none yet).
            if let Some(&first) = bases.first() {
                self.pos = first;
                return self.read(max_bytes);
            }
            return Ok(Vec::new());
        };
        let base = bases[index];
        let path = segment_path(&self.dir, base);
        let mut file = File::open(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        let offset = self.pos - base;
        let len = file
            .seek(SeekFrom::End(0))
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        if offset >= len {
            // At the end of this segment: go on to the next one once the writer has started it
            // (it finishes a segment before starting the next).
            if let Some(&next) = bases.get(index + 1) {
                self.pos = next;
                return self.read(max_bytes);
            }
            return Ok(Vec::new());
        }
        file.seek(SeekFrom::Start(offset))
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        self.pending.clear();
        let want = u64::try_from(max_bytes.max(64 * 1024)).unwrap_or(u64::MAX);
        let available = len - offset;
        file.take(want.min(available))
            .read_to_end(&mut self.pending)
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        let mut lines = Vec::new();
        let mut start = 0;
        while let Some(newline) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let line = &self.pending[start..start + newline];
            let pos = self.pos + start as u64;
            let end = pos + newline as u64 + 1;
            start += newline + 1;
            if !line.iter().all(u8::is_ascii_whitespace) {
                lines.push(TailLine {
                    pos,
                    end,
                    line: line.to_vec(),
                });
            }
            if start >= max_bytes {
                break;
            }
        }
        if start == 0 && available > want {
            // One line longer than what was read: read it whole.
            return self.read(max_bytes.saturating_mul(4));
        }
        self.pos += start as u64;
        Ok(lines)
    }
}

/// Deletes the segments (and their indexes) whose every byte lies before `pos`, keeping the
/// newest segment always. Returns how many were deleted.
pub fn delete_segments_before(dir: &Path, pos: u64) -> Result<usize, StoreError> {
    let bases = segment_bases(dir)?;
    let mut deleted = 0;
    for pair in bases.windows(2) {
        let (base, next) = (pair[0], pair[1]);
        if next > pos {
            break;
        }
        let path = segment_path(dir, base);
        for path in [path.with_extension(INDEX_EXTENSION), path] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(StoreError::Write { path, source }),
            }
        }
        deleted += 1;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::recording::event::{EndReason, EventKind, SessionEnded};

    fn ended() -> RecordedEvent {
        RecordedEvent::now(
            Uuid::now_v7(),
            EventKind::SessionEnded(SessionEnded {
                reason: EndReason::Closed,
                detail: None,
                bytes_from_client: Some(10),
                bytes_from_upstream: Some(20),
                duration_ms: 5,
                statements: None,
            }),
        )
    }

    #[test]
    fn append_then_read_back_skipping_a_torn_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let event = ended();
        let mut store = Store::open(dir.path(), StoreOptions::default()).expect("open");
        store.append(&event, true).expect("append");
        std::fs::OpenOptions::new()
            .append(true)
            .open(segment_path(dir.path(), 0))
            .and_then(|mut f| f.write_all(b"{\"v\":1,\"id\""))
            .expect("torn write");
        let mut store =
            Store::open(dir.path(), StoreOptions::default()).expect("reopen after a torn write");
        store.append(&event, true).expect("append after reopen");
        let (events, skipped) = Store::read_all(dir.path()).expect("read");
        assert_eq!(events, vec![event.clone(), event]);
        assert_eq!(skipped, 1);
    }

    #[test]
    fn segments_roll_are_indexed_and_read_in_order_after_the_legacy_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let legacy = ended();
        std::fs::write(
            dir.path().join(LEGACY_EVENTS_FILE),
            serde_json::to_vec(&legacy).expect("json"),
        )
        .expect("legacy file");
        let options = StoreOptions {
            segment_bytes: 600,
            fsync: FsyncPolicy::Never,
        };
        let mut store = Store::open(dir.path(), options).expect("open");
        let events: Vec<RecordedEvent> = (0..10).map(|_| ended()).collect();
        let mut positions = Vec::new();
        for event in &events {
            positions.push(store.append(event, false).expect("append"));
        }
        store.flush().expect("flush");
        let bases = segment_bases(dir.path()).expect("bases");
        assert!(bases.len() >= 3, "segments rolled: {bases:?}");
        assert_eq!(bases[0], 0);
        assert!(bases.windows(2).all(|w| positions.contains(&w[1])));
        let mut reports = Vec::new();
        let (read, skipped) =
            Store::read_all_reporting(dir.path(), |done, total| reports.push((done, total)))
                .expect("read");
        let last = reports.last().copied().expect("reported");
        assert_eq!(
            last.0, last.1,
            "the last report is the whole store: {reports:?}"
        );
        assert_eq!(skipped, 0);
        assert_eq!(read[0], legacy);
        assert_eq!(&read[1..], &events[..]);
        let index = Store::read_index(dir.path()).expect("index");
        assert_eq!(
            index.iter().map(|e| e.pos).collect::<Vec<_>>(),
            positions,
            "every session.ended is indexed at its position"
        );

        // A reopened store goes on in the newest segment, at the same end.
        let end = store.end();
        drop(store);
        let store = Store::open(dir.path(), options).expect("reopen");
        assert_eq!(store.end(), end);
    }

    #[test]
    fn a_tail_follows_the_writer_across_segments_and_old_segments_can_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = StoreOptions {
            segment_bytes: 500,
            fsync: FsyncPolicy::Never,
        };
        let mut store = Store::open(dir.path(), options).expect("open");
        let mut tail = Tail::new(dir.path(), 0);
        assert!(tail.read(1 << 20).expect("empty").is_empty());
        let mut seen = Vec::new();
        for round in 0..4 {
            for _ in 0..3 {
                store.append(&ended(), false).expect("append");
            }
            store.flush().expect("flush");
            loop {
                let lines = tail.read(300).expect("tail");
                if lines.is_empty() {
                    break;
                }
                for line in lines {
                    assert_eq!(line.end, line.pos + line.line.len() as u64 + 1);
                    seen.push(line);
                }
            }
            assert_eq!(seen.len(), (round + 1) * 3);
            assert_eq!(tail.position(), store.end());
        }
        let lines = Store::read_lines(dir.path()).expect("lines");
        assert_eq!(
            seen.iter().map(|l| l.line.clone()).collect::<Vec<_>>(),
            lines
        );
        let before = segment_bases(dir.path()).expect("bases").len();
        let deleted = delete_segments_before(dir.path(), seen[7].pos).expect("delete");
        assert!(deleted >= 1);
        assert_eq!(
            segment_bases(dir.path()).expect("bases").len(),
            before - deleted
        );
        // A tail from a deleted position starts at the first segment left.
        let mut late = Tail::new(dir.path(), 0);
        let first = late.read(1 << 20).expect("read")[0].pos;
        assert!(first > 0 && first <= seen[7].pos);
    }
}
