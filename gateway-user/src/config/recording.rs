//! `[recording]`: where sessions are recorded, how durably, and the Kafka sink.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde::Deserialize;

/// Default directory of the embedded recording store.
pub const DEFAULT_STORE: &str = "/var/lib/tollgate/recordings";

/// `[recording]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingConfig {
    /// Directory of the embedded recording store (created when missing): append-only segment
    /// files with an index. With `[recording.kafka]` it is also the spool events wait in until
    /// the broker has them.
    #[serde(default = "default_store")]
    pub store: PathBuf,
    /// The gateway's ed25519 signing key (a raw 32-byte seed, mode 0600, made by
    /// `tollgate keygen`): each `session.ended` carries its chain head signed with it. Without
    /// one the events are still hash-chained, but unsigned.
    #[serde(default)]
    pub signing_key: Option<PathBuf>,
    /// A segment file is closed and a new one started past this size, in bytes.
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
    /// When the store is flushed to stable storage.
    #[serde(default)]
    pub fsync: FsyncPolicy,
    /// With `fsync = "interval"`: at most this long between flushes to stable storage.
    #[serde(default = "default_fsync_interval", with = "humantime_serde")]
    pub fsync_interval: Duration,
    /// Events queued between the sessions and the writer. When the queue is full, a fail-open
    /// target's statements are not recorded (a `gap` event says which) and a fail-closed
    /// target's session waits.
    #[serde(default = "default_queue_events")]
    pub queue_events: usize,
    /// Rows of a result recorded per statement at most (the totals are always recorded).
    #[serde(default = "default_max_rows")]
    pub max_rows_per_statement: usize,
    /// Bytes of row data recorded per statement at most.
    #[serde(default = "default_max_row_bytes")]
    pub max_row_bytes_per_statement: usize,
    /// Production sink: every event is also produced to a Kafka topic.
    #[serde(default)]
    pub kafka: Option<KafkaConfig>,
}

/// When the embedded store is flushed to stable storage (`fsync`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FsyncPolicy {
    /// After every batch the writer takes from the queue (a few milliseconds of events).
    Always,
    /// At most every `fsync_interval`, and at the end of every session.
    #[default]
    Interval,
    /// Never explicitly: the kernel writes back when it will.
    Never,
}

/// `[recording.kafka]`: the Kafka sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The topic events go to; the key of each message is its session id, so a session's
    /// events stay in order in one partition.
    pub topic: String,
    /// Compression of the producer's batches.
    #[serde(default)]
    pub compression: KafkaCompression,
    /// More librdkafka producer settings, e.g. `"security.protocol" = "sasl_ssl"`,
    /// `"sasl.mechanism" = "SCRAM-SHA-512"`, `"sasl.username"`, `"ssl.ca.location"`. The
    /// settings that make delivery safe (`enable.idempotence`, `acks`) cannot be overridden.
    #[serde(default)]
    pub client: BTreeMap<String, String>,
    /// File holding the SASL password (`sasl.password`), so it is not in this file.
    #[serde(default)]
    pub sasl_password_file: Option<PathBuf>,
    /// Environment variable holding the SASL password.
    #[serde(default)]
    pub sasl_password_env: Option<String>,
    /// Bytes of events waiting for the broker at most. Past it the spool is full: fail-closed
    /// targets refuse statements, fail-open targets' statements go unrecorded (with a `gap`
    /// event).
    #[serde(default = "default_spool_max_bytes")]
    pub spool_max_bytes: u64,
    /// Keep segment files in the store after the broker has all their events (for
    /// `tollgate sessions` on this host). By default they are deleted: Kafka is the record.
    #[serde(default)]
    pub keep_shipped: bool,
    /// The topic of control orders (`tollgate sessions kill`) that every replica reads; by
    /// default the topic's name with `.control` after it.
    #[serde(default)]
    pub control_topic: Option<String>,
}

/// Compression codec of the Kafka producer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KafkaCompression {
    /// None.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard.
    #[default]
    Zstd,
}

impl KafkaCompression {
    /// The librdkafka `compression.codec` value.
    #[must_use]
    pub fn codec(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

/// What a target's sessions do when an event cannot be recorded (the spool is full, the queue
/// is full, or the writer has stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordingFailure {
    /// New statements get a MySQL error until events can be recorded again.
    FailClosed,
    /// Statements go on unrecorded; a `gap` event says exactly what was lost.
    FailOpen,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        Self {
            store: default_store(),
            signing_key: None,
            segment_bytes: default_segment_bytes(),
            fsync: FsyncPolicy::default(),
            fsync_interval: default_fsync_interval(),
            queue_events: default_queue_events(),
            max_rows_per_statement: default_max_rows(),
            max_row_bytes_per_statement: default_max_row_bytes(),
            kafka: None,
        }
    }
}

fn default_store() -> PathBuf {
    PathBuf::from(DEFAULT_STORE)
}
fn default_segment_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_fsync_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_queue_events() -> usize {
    64 * 1024
}
fn default_max_rows() -> usize {
    100
}
fn default_max_row_bytes() -> usize {
    64 * 1024
}
fn default_spool_max_bytes() -> u64 {
    1024 * 1024 * 1024
}
