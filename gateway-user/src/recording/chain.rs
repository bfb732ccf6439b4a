//! Tamper evidence: a hash chain per session over the stored lines, sealed at `session.ended`
//! by an ed25519 signature.
//!
//! The writer ([`Chainer`]) sees every event in order. Each event gets `chain_seq` (1-based
//! position in its session) and `prev_hash` (hex SHA-256 of the previous event's stored line,
//! without the newline; 64 zeros for the first). `session.ended` then gets `chain_head`: the hex
//! SHA-256 of its own line as serialized *without* `chain_head` and `signature` (those two are
//! appended as the last members of the JSON object, so a verifier strips them textually and
//! hashes the rest byte for byte). With a signing key it also gets `signature`: hex ed25519 over
//! [`signed_message`], `tollgate-chain-v1 <session id> <events> <chain head>`, where `<events>`
//! is the number of events in the session including `session.ended` (its `chain_seq`).
//!
//! [`verify`] recomputes every session's chain from the raw lines and names each problem: an
//! edited event (its hash is not the next event's `prev_hash`), dropped events (a gap in
//! `chain_seq`), reordered or duplicated events, a `session.ended` that does not hash to its
//! `chain_head`, and a missing or bad signature. A session without `session.ended` is *open*
//! (still live, or the gateway was killed): not tampering, though a dropped tail looks the same.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    path::{Path, PathBuf},
};

use ed25519_dalek::{Signer as _, Verifier as _};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::event::{EventKind, RecordedEvent};

/// `prev_hash` of the first event of a session.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Sessions whose chain state the writer keeps at once. A session's state is dropped at its
/// `session.ended`; a session that never ends (its task died) is evicted, oldest session id
/// (`UUIDv7`: earliest start) first, when this many are open. An evicted session that records
/// again restarts at `chain_seq` 1, which `verify` reports as broken: far more sessions than
/// the gateway's connection limit would have to be live for that to happen.
pub const MAX_OPEN_CHAINS: usize = 65_536;

/// Errors loading or writing keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error("key file {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error (in the message, not chained, so it is printed once).
        error: std::io::Error,
    },
    /// The signing key file is readable by group or others.
    #[error("signing key file {0}: must not be readable by group or others (chmod 600)")]
    Mode(PathBuf),
    /// The file does not hold a key in the expected format.
    #[error("key file {path}: {what}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What was expected.
        what: &'static str,
    },
}

/// The gateway's ed25519 signing key. The file holds the raw 32-byte seed (what
/// `tollgate keygen` writes), mode 0600. Redacted in `Debug`; zeroized on drop.
pub struct SigningKey(ed25519_dalek::SigningKey);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(public {})", self.public_hex())
    }
}

impl SigningKey {
    /// Reads the seed from `path`, refusing a file readable by group or others.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        use std::os::unix::fs::PermissionsExt as _;
        let io = |error| KeyError::Io {
            path: path.to_owned(),
            error,
        };
        let mode = std::fs::metadata(path).map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(KeyError::Mode(path.to_owned()));
        }
        let bytes = zeroize::Zeroizing::new(std::fs::read(path).map_err(io)?);
        let seed: &[u8; 32] = bytes.as_slice().try_into().map_err(|_| KeyError::Format {
            path: path.to_owned(),
            what: "expected a raw 32-byte ed25519 seed (`tollgate keygen` writes one)",
        })?;
        Ok(Self(ed25519_dalek::SigningKey::from_bytes(seed)))
    }

    /// A fresh random key.
    #[must_use]
    pub fn generate() -> Self {
        let seed = zeroize::Zeroizing::new(rand::random::<[u8; 32]>());
        Self(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// Writes the seed to a new file at `path` (mode 0600; never overwrites).
    pub fn write_new(&self, path: &Path) -> Result<(), KeyError> {
        use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
        let io = |error| KeyError::Io {
            path: path.to_owned(),
            error,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        file.write_all(self.0.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// The public key verifiers need.
    #[must_use]
    pub fn verifying_key(&self) -> ed25519_dalek::VerifyingKey {
        self.0.verifying_key()
    }

    /// The public key as 64 hex digits (the format of `--public-out` and `--public-key`).
    #[must_use]
    pub fn public_hex(&self) -> String {
        hex(self.0.verifying_key().as_bytes())
    }
}

/// Reads a public key: 64 hex digits (surrounding whitespace ignored) or 32 raw bytes.
pub fn load_public_key(path: &Path) -> Result<ed25519_dalek::VerifyingKey, KeyError> {
    let format = || KeyError::Format {
        path: path.to_owned(),
        what: "expected an ed25519 public key: 64 hex digits or 32 raw bytes",
    };
    let bytes = std::fs::read(path).map_err(|error| KeyError::Io {
        path: path.to_owned(),
        error,
    })?;
    let raw: [u8; 32] = if let Ok(raw) = bytes.as_slice().try_into() {
        raw
    } else {
        let text = std::str::from_utf8(&bytes).map_err(|_| format())?;
        unhex(text.trim())
            .and_then(|v| v.try_into().ok())
            .ok_or_else(format)?
    };
    ed25519_dalek::VerifyingKey::from_bytes(&raw).map_err(|_| format())
}

/// The bytes the `session.ended` signature covers.
#[must_use]
pub fn signed_message(session_id: Uuid, events: u64, chain_head: &str) -> Vec<u8> {
    format!("tollgate-chain-v1 {session_id} {events} {chain_head}").into_bytes()
}

/// Lowercase hex.
fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Where a session's chain stands in the writer.
#[derive(Debug, Clone, Copy)]
struct Link {
    seq: u64,
    hash: [u8; 32],
}

/// The writer's side: links each event to the previous one of its session and seals
/// `session.ended`. Used by the one writer thread, which sees every event in order.
#[derive(Debug)]
pub struct Chainer {
    open: BTreeMap<Uuid, Link>,
    key: Option<SigningKey>,
}

impl Chainer {
    /// A chainer signing with `key`, or only hashing without one.
    #[must_use]
    pub fn new(key: Option<SigningKey>) -> Self {
        Self {
            open: BTreeMap::new(),
            key,
        }
    }

    /// Fills in the event's chain fields and returns the line to store (without newline).
    pub fn link(&mut self, event: &mut RecordedEvent) -> Result<Vec<u8>, serde_json::Error> {
        let session = event.session_id;
        let ended = matches!(event.kind, EventKind::SessionEnded(_));
        let previous = self.open.get(&session).copied();
        if previous.is_none()
            && self.open.len() >= MAX_OPEN_CHAINS
            && let Some((evicted, _)) = self.open.pop_first()
        {
            tracing::warn!(session_id = %evicted, "recording chain state evicted: too many open sessions");
        }
        let seq = previous.map_or(1, |l| l.seq + 1);
        event.chain_seq = Some(seq);
        event.prev_hash = Some(previous.map_or_else(|| GENESIS.to_owned(), |l| hex(&l.hash)));
        event.chain_head = None;
        event.signature = None;
        let mut line = serde_json::to_vec(event)?;
        let hash = sha256(&line);
        if !ended {
            self.open.insert(session, Link { seq, hash });
            return Ok(line);
        }
        self.open.remove(&session);
        let head = hex(&hash);
        // The object ends with '}': append the seal as its last members.
        line.pop();
        line.extend_from_slice(format!(",\"chain_head\":\"{head}\"").as_bytes());
        if let Some(key) = &self.key {
            let signature = hex(&key.0.sign(&signed_message(session, seq, &head)).to_bytes());
            line.extend_from_slice(format!(",\"signature\":\"{signature}\"").as_bytes());
            event.signature = Some(signature);
        }
        line.push(b'}');
        event.chain_head = Some(head);
        Ok(line)
    }
}

/// The chain fields of a stored line.
#[derive(serde::Deserialize)]
struct Links {
    id: Uuid,
    session_id: Uuid,
    #[serde(rename = "type")]
    kind: String,
    chain_seq: Option<u64>,
    prev_hash: Option<String>,
    chain_head: Option<String>,
    signature: Option<String>,
}

/// One stored event as the verifier sees it.
struct Stored {
    hash: String,
    links: Links,
    raw: String,
}

/// What is wrong with a session's recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The event's stored bytes differ from what the next event's `prev_hash` recorded.
    Edited {
        /// The altered event's `chain_seq`.
        seq: u64,
        /// Its id.
        id: Uuid,
    },
    /// `session.ended` does not hash to its `chain_head`.
    EditedEnd {
        /// Its `chain_seq`.
        seq: u64,
        /// Its id.
        id: Uuid,
    },
    /// Events `from..=to` are missing.
    Dropped {
        /// First missing `chain_seq`.
        from: u64,
        /// Last missing `chain_seq`.
        to: u64,
    },
    /// The first stored event has a predecessor that is not stored.
    DroppedBefore {
        /// The event's `chain_seq`.
        seq: u64,
        /// Its id.
        id: Uuid,
    },
    /// The event is stored after one that follows it in the chain.
    Reordered {
        /// Its `chain_seq`.
        seq: u64,
        /// Its id.
        id: Uuid,
        /// The `chain_seq` stored before it.
        after: u64,
    },
    /// Two stored events claim the same position.
    Duplicated {
        /// The position.
        seq: u64,
        /// The second event's id.
        id: Uuid,
    },
    /// An event follows `session.ended`.
    AfterEnd {
        /// Its `chain_seq`.
        seq: u64,
        /// Its id.
        id: Uuid,
    },
    /// Some events of the session carry no chain fields.
    Unchained {
        /// The first such event's id.
        id: Uuid,
    },
    /// `session.ended` has no signature although a public key was given.
    MissingSignature {
        /// Its id.
        id: Uuid,
    },
    /// The signature does not verify with the public key.
    BadSignature {
        /// Its id.
        id: Uuid,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Edited { seq, id } => write!(
                f,
                "event seq {seq} ({id}): edited: its hash does not match the next event's prev_hash"
            ),
            Self::EditedEnd { seq, id } => write!(
                f,
                "event seq {seq} ({id}): edited: session.ended does not hash to its chain_head"
            ),
            Self::Dropped { from, to } if from == to => {
                write!(f, "event seq {from}: dropped: missing from the store")
            }
            Self::Dropped { from, to } => {
                write!(f, "events seq {from}-{to}: dropped: missing from the store")
            }
            Self::DroppedBefore { seq, id } => write!(
                f,
                "event seq {seq} ({id}): dropped: the events before it are missing"
            ),
            Self::Reordered { seq, id, after } => write!(
                f,
                "event seq {seq} ({id}): reordered: stored after event seq {after}"
            ),
            Self::Duplicated { seq, id } => {
                write!(
                    f,
                    "event seq {seq} ({id}): duplicated: seq {seq} stored twice"
                )
            }
            Self::AfterEnd { seq, id } => write!(
                f,
                "event seq {seq} ({id}): appended: stored after session.ended"
            ),
            Self::Unchained { id } => write!(
                f,
                "event {id}: unchained: no chain_seq/prev_hash (recorded before tamper evidence, or stripped)"
            ),
            Self::MissingSignature { id } => write!(
                f,
                "session.ended ({id}): missing signature: the session is unsigned but a public key was given"
            ),
            Self::BadSignature { id } => write!(
                f,
                "session.ended ({id}): bad signature: does not verify with the public key"
            ),
        }
    }
}

/// How a session without problems stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seal {
    /// Ended, and the signature verifies.
    Signed,
    /// Ended with a signature that was not checked (no public key given).
    SignatureUnchecked,
    /// Ended without a signature (the gateway had no signing key).
    Unsigned,
    /// No `session.ended` yet: live, or the gateway stopped without ending it.
    Open,
}

impl fmt::Display for Seal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Signed => "signed",
            Self::SignatureUnchecked => "signed (signature not checked: no public key)",
            Self::Unsigned => "unsigned",
            Self::Open => "open (no session.ended yet)",
        })
    }
}

/// The verdict on one session.
#[derive(Debug, Clone)]
pub struct SessionReport {
    /// The session.
    pub session_id: Uuid,
    /// Events stored for it.
    pub events: usize,
    /// How it is sealed.
    pub seal: Seal,
    /// What is wrong; empty when intact.
    pub problems: Vec<Problem>,
}

/// The verdict on a store.
#[derive(Debug, Clone, Default)]
pub struct Verification {
    /// One report per session, by session id.
    pub sessions: Vec<SessionReport>,
    /// 1-based numbers of lines that are not events (a torn last line after a crash).
    pub unreadable_lines: Vec<usize>,
}

/// Verifies the chains in `text` (the contents of the event log), for the sessions `select`
/// accepts, checking signatures with `key` when given.
#[must_use]
pub fn verify(
    text: &str,
    select: impl Fn(Uuid) -> bool,
    key: Option<&ed25519_dalek::VerifyingKey>,
) -> Verification {
    let mut sessions: BTreeMap<Uuid, Vec<Stored>> = BTreeMap::new();
    let mut unreadable_lines = Vec::new();
    for (index, raw) in text.split('\n').enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Links>(raw) {
            Ok(links) if select(links.session_id) => {
                sessions.entry(links.session_id).or_default().push(Stored {
                    hash: hex(&sha256(raw.as_bytes())),
                    links,
                    raw: raw.to_owned(),
                });
            }
            Ok(_) => {}
            Err(_) => unreadable_lines.push(index + 1),
        }
    }
    Verification {
        sessions: sessions
            .into_iter()
            .map(|(session_id, events)| verify_session(session_id, &events, key))
            .collect(),
        unreadable_lines,
    }
}

fn verify_session(
    session_id: Uuid,
    events: &[Stored],
    key: Option<&ed25519_dalek::VerifyingKey>,
) -> SessionReport {
    let mut problems = Vec::new();
    let report = |problems: Vec<Problem>, seal| SessionReport {
        session_id,
        events: events.len(),
        seal,
        problems,
    };
    if let Some(unchained) = events
        .iter()
        .find(|e| e.links.chain_seq.is_none() || e.links.prev_hash.is_none())
    {
        problems.push(Problem::Unchained {
            id: unchained.links.id,
        });
        return report(problems, Seal::Open);
    }
    // Position -> stored event (the first one stored at that position).
    let mut by_seq: HashMap<u64, &Stored> = HashMap::new();
    let mut highest = 0;
    let mut end: Option<&Stored> = None;
    for event in events {
        let seq = event.links.chain_seq.unwrap_or_default();
        let id = event.links.id;
        if by_seq.contains_key(&seq) {
            problems.push(Problem::Duplicated { seq, id });
            continue;
        }
        by_seq.insert(seq, event);
        if seq < highest {
            problems.push(Problem::Reordered {
                seq,
                id,
                after: highest,
            });
        }
        highest = highest.max(seq);
        if let Some(end) = end {
            if seq > end.links.chain_seq.unwrap_or_default() {
                problems.push(Problem::AfterEnd { seq, id });
            }
        } else if event.links.kind == "session.ended" {
            end = Some(event);
        }
    }
    check_links(&by_seq, &mut problems);
    let Some(end) = end else {
        return report(problems, Seal::Open);
    };
    let end_seq = end.links.chain_seq.unwrap_or_default();
    let seal = match check_end(session_id, end, key) {
        Ok(seal) => seal,
        Err(problem) => {
            problems.push(problem);
            Seal::Open
        }
    };
    problems.sort_by_key(|p| match p {
        Problem::Dropped { from, .. } => *from,
        Problem::Edited { seq, .. }
        | Problem::EditedEnd { seq, .. }
        | Problem::DroppedBefore { seq, .. }
        | Problem::Reordered { seq, .. }
        | Problem::Duplicated { seq, .. }
        | Problem::AfterEnd { seq, .. } => *seq,
        Problem::Unchained { .. }
        | Problem::MissingSignature { .. }
        | Problem::BadSignature { .. } => end_seq + 1,
    });
    report(problems, seal)
}

/// Checks that `chain_seq` has no gaps and that each event's `prev_hash` is the hash of the
/// event before it in the chain (whatever order they are stored in).
fn check_links(by_seq: &HashMap<u64, &Stored>, problems: &mut Vec<Problem>) {
    // Gaps.
    let mut seqs: Vec<u64> = by_seq.keys().copied().collect();
    seqs.sort_unstable();
    let mut expected = 1;
    for &seq in &seqs {
        if seq > expected {
            if expected == 1 {
                // Reported below, against the first stored event.
            } else {
                problems.push(Problem::Dropped {
                    from: expected,
                    to: seq - 1,
                });
            }
        }
        expected = seq + 1;
    }
    // Links: each event's prev_hash is the hash of the event before it in the chain.
    for &seq in &seqs {
        let Some(event) = by_seq.get(&seq) else {
            continue;
        };
        let prev_hash = event.links.prev_hash.as_deref().unwrap_or_default();
        if seq <= 1 {
            if prev_hash != GENESIS || seq == 0 {
                problems.push(Problem::DroppedBefore {
                    seq,
                    id: event.links.id,
                });
            }
            continue;
        }
        match by_seq.get(&(seq - 1)) {
            Some(previous) if previous.hash != prev_hash => problems.push(Problem::Edited {
                seq: seq - 1,
                id: previous.links.id,
            }),
            None if seqs.first() == Some(&seq) => problems.push(Problem::DroppedBefore {
                seq,
                id: event.links.id,
            }),
            // Intact, or a gap reported above.
            _ => {}
        }
    }
}

/// Checks `session.ended`'s chain head and signature.
fn check_end(
    session_id: Uuid,
    end: &Stored,
    key: Option<&ed25519_dalek::VerifyingKey>,
) -> Result<Seal, Problem> {
    let id = end.links.id;
    let seq = end.links.chain_seq.unwrap_or_default();
    let edited = Problem::EditedEnd { seq, id };
    let head = end.links.chain_head.as_deref().ok_or(edited.clone())?;
    let suffix = match &end.links.signature {
        Some(signature) => format!(",\"chain_head\":\"{head}\",\"signature\":\"{signature}\"}}"),
        None => format!(",\"chain_head\":\"{head}\"}}"),
    };
    let body = end.raw.strip_suffix(&suffix).ok_or(edited.clone())?;
    if hex(&sha256(format!("{body}}}").as_bytes())) != head {
        return Err(edited);
    }
    match (&end.links.signature, key) {
        (None, None) => Ok(Seal::Unsigned),
        (None, Some(_)) => Err(Problem::MissingSignature { id }),
        (Some(_), None) => Ok(Seal::SignatureUnchecked),
        (Some(signature), Some(key)) => {
            let signature = unhex(signature)
                .and_then(|bytes| <[u8; 64]>::try_from(bytes).ok())
                .map(|bytes| ed25519_dalek::Signature::from_bytes(&bytes))
                .ok_or(Problem::BadSignature { id })?;
            key.verify(&signed_message(session_id, seq, head), &signature)
                .map(|()| Seal::Signed)
                .map_err(|_| Problem::BadSignature { id })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::event::{EndReason, SessionEnded, StatementEvent};

    fn statement(session: Uuid, seq: u64) -> RecordedEvent {
        RecordedEvent::now(
            session,
            EventKind::Statement(StatementEvent {
                seq,
                command: "query".into(),
                sql: Some(format!("SELECT {seq}")),
                statement_id: None,
                started_at: time::OffsetDateTime::now_utc(),
                duration_us: 1,
                result_sets: 1,
                columns: vec![],
                column_count: 1,
                rows: 1,
                affected_rows: 0,
                last_insert_id: None,
                warnings: 0,
                error: None,
                local_infile: None,
                ..StatementEvent::default()
            }),
        )
    }

    fn ended(session: Uuid) -> RecordedEvent {
        RecordedEvent::now(
            session,
            EventKind::SessionEnded(SessionEnded {
                reason: EndReason::Closed,
                detail: None,
                bytes_from_client: Some(1),
                bytes_from_upstream: Some(2),
                duration_ms: 3,
                statements: None,
            }),
        )
    }

    /// Two interleaved sessions of 4 statements and an end each; returns the lines.
    fn recorded(key: Option<SigningKey>, end: bool) -> (Vec<String>, Uuid) {
        let mut chainer = Chainer::new(key);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let mut lines = Vec::new();
        let mut write = |mut event: RecordedEvent| {
            let line = chainer.link(&mut event).expect("link");
            lines.push(String::from_utf8(line).expect("utf-8"));
        };
        for seq in 1..=4 {
            write(statement(a, seq));
            write(statement(b, seq));
        }
        if end {
            write(ended(a));
        }
        write(ended(b));
        (lines, a)
    }

    fn check(lines: &[String], key: Option<&ed25519_dalek::VerifyingKey>) -> Vec<String> {
        let v = verify(&lines.join("\n"), |_| true, key);
        v.sessions
            .iter()
            .flat_map(|r| r.problems.iter().map(ToString::to_string))
            .collect()
    }

    fn seal_of(lines: &[String], session: Uuid, key: Option<&ed25519_dalek::VerifyingKey>) -> Seal {
        verify(&lines.join("\n"), |s| s == session, key).sessions[0].seal
    }

    #[test]
    fn an_intact_signed_store_verifies() {
        let key = SigningKey::generate();
        let public = key.verifying_key();
        let (lines, a) = recorded(Some(key), true);
        assert_eq!(check(&lines, Some(&public)), Vec::<String>::new());
        assert_eq!(seal_of(&lines, a, Some(&public)), Seal::Signed);
        assert_eq!(seal_of(&lines, a, None), Seal::SignatureUnchecked);
        // Still ordinary events with their fields.
        let event: serde_json::Value = serde_json::from_str(&lines[0]).expect("json");
        assert_eq!(event["type"], "statement");
        assert_eq!(event["chain_seq"], 1);
        assert_eq!(event["prev_hash"], GENESIS);
        let back: RecordedEvent = serde_json::from_str(&lines[8]).expect("typed");
        assert!(back.chain_head.is_some() && back.signature.is_some());
    }

    #[test]
    fn without_a_key_sessions_are_unsigned_and_a_public_key_finds_them_missing() {
        let (lines, a) = recorded(None, true);
        assert_eq!(check(&lines, None), Vec::<String>::new());
        assert_eq!(seal_of(&lines, a, None), Seal::Unsigned);
        let other = SigningKey::generate().verifying_key();
        let problems = check(&lines, Some(&other));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("missing signature"), "{problems:?}");
    }

    #[test]
    fn an_edited_field_is_named() {
        let (mut lines, a) = recorded(None, true);
        lines[2] = lines[2].replace("SELECT 2", "SELECT 9");
        let problems = check(&lines, None);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("event seq 2 ") && problems[0].contains("edited"),
            "{problems:?}"
        );
        assert!(
            verify(&lines.join("\n"), |s| s == a, None).sessions[0]
                .problems
                .len()
                == 1
        );
    }

    #[test]
    fn an_edited_end_is_named() {
        let key = SigningKey::generate();
        let public = key.verifying_key();
        let (mut lines, _) = recorded(Some(key), true);
        lines[8] = lines[8].replace("\"duration_ms\":3", "\"duration_ms\":4");
        let problems = check(&lines, Some(&public));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("session.ended does not hash"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_dropped_event_is_named() {
        let (mut lines, _) = recorded(None, true);
        lines.remove(4); // a's seq 3
        let problems = check(&lines, None);
        assert_eq!(
            problems,
            vec!["event seq 3: dropped: missing from the store"]
        );
        // Dropping the first event too.
        lines.remove(0);
        let problems = check(&lines, None);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("event seq 2 (") && p.contains("dropped")),
            "{problems:?}"
        );
    }

    #[test]
    fn swapped_events_are_reordered() {
        let (mut lines, _) = recorded(None, true);
        lines.swap(2, 4); // a's seq 2 and 3
        let problems = check(&lines, None);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("event seq 2 (")
                && problems[0].contains("reordered: stored after event seq 3"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_truncated_session_is_open_not_tampered() {
        let (lines, a) = recorded(None, false);
        assert_eq!(check(&lines, None), Vec::<String>::new());
        assert_eq!(seal_of(&lines, a, None), Seal::Open);
    }

    #[test]
    fn a_wrong_key_or_forged_head_fails_the_signature() {
        let (lines, _) = recorded(Some(SigningKey::generate()), true);
        let other = SigningKey::generate().verifying_key();
        let problems = check(&lines, Some(&other));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems.iter().all(|p| p.contains("bad signature")),
            "{problems:?}"
        );
    }

    #[test]
    fn keys_round_trip_through_files_and_demand_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        let key = SigningKey::generate();
        key.write_new(&path).expect("write");
        assert!(key.write_new(&path).is_err(), "never overwrites");
        let loaded = SigningKey::load(&path).expect("load");
        assert_eq!(loaded.public_hex(), key.public_hex());
        assert!(!format!("{loaded:?}").contains(&hex(key.0.as_bytes())));
        std::fs::write(dir.path().join("pub"), format!("{}\n", key.public_hex())).expect("pub");
        assert_eq!(
            load_public_key(&dir.path().join("pub")).expect("public"),
            key.verifying_key()
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(SigningKey::load(&path), Err(KeyError::Mode(_))));
    }
}
