//! The Kafka sink: ships the store's events to a topic, in order, and forgets nothing.
//!
//! The embedded store is the spool. The writer appends every event there first; the shipper
//! follows it from a *cursor* (a store position, kept in `kafka.cursor` in the store) and
//! produces each event with librdkafka: idempotent, `acks=all`, the session id as the key, so a
//! session's events stay in order in one partition. The cursor moves past an event only when
//! the broker has acknowledged it and every event before it. While the broker is away the
//! producer keeps retrying (no message timeout) and the spool grows; the recorder's health
//! says when it is full. After a restart the shipper starts again from the cursor: events the
//! broker had but the cursor did not yet say so are sent twice, and consumers drop duplicates
//! by event `id`.

use std::{
    collections::{BTreeMap, VecDeque},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use parking_lot::Mutex;
use rdkafka::{
    ClientConfig, ClientContext,
    error::{KafkaError, RDKafkaErrorCode},
    producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext},
};
use serde::{Deserialize, Serialize};

use super::{
    health::RecorderHealth,
    store::{Tail, TailLine, delete_segments_before},
};
use crate::config::KafkaConfig;

/// File in the store that holds the shipper's cursor.
pub const CURSOR_FILE: &str = "kafka.cursor";
/// Events handed to librdkafka and not yet acknowledged, at most.
const MAX_IN_FLIGHT: usize = 20_000;
/// Bytes read from the store at a time.
const READ_BYTES: usize = 1024 * 1024;
/// How often the cursor is written down.
const CURSOR_EVERY: Duration = Duration::from_millis(200);
/// Wait before a new producer after a failed delivery.
const RETRY_BACKOFF: Duration = Duration::from_secs(1);
/// At shutdown, how long the shipper goes on delivering what is in the spool.
const DRAIN_AT_SHUTDOWN: Duration = Duration::from_secs(5);

/// Errors starting the Kafka sink.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSinkError {
    /// librdkafka refused the configuration.
    #[error("recording.kafka: {0}")]
    Config(#[from] KafkaError),
    /// The SASL password could not be read.
    #[error("recording.kafka: cannot read the SASL password from {what}: {detail}")]
    Password {
        /// The file or environment variable.
        what: String,
        /// Why.
        detail: String,
    },
    /// The shipper thread could not be started.
    #[error("recording.kafka: cannot start the shipper thread: {0}")]
    Thread(std::io::Error),
}

/// The running shipper; [`Shipper::stop`] ends it after a last drain.
#[derive(Debug)]
pub struct Shipper {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

/// What the shipper writes down in [`CURSOR_FILE`].
#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    topic: String,
    acked: u64,
}

/// Deliveries reported by librdkafka, collected by the context and handled by the shipper.
#[derive(Default)]
struct ShipperContext {
    deliveries: Mutex<Vec<(u64, Result<(), String>)>>,
    health: Arc<RecorderHealth>,
    /// Whether "no broker reachable" was logged and "reachable again" was not yet.
    down_reported: AtomicBool,
}

impl ShipperContext {
    fn new(health: Arc<RecorderHealth>) -> Self {
        Self {
            deliveries: Mutex::default(),
            health,
            down_reported: AtomicBool::new(false),
        }
    }

    /// A delivery succeeded: the broker is up (said once after it was down).
    fn delivered(&self) {
        self.health.broker_up.store(true, Ordering::Relaxed);
        if self.down_reported.swap(false, Ordering::Relaxed) {
            tracing::info!("kafka: a broker is reachable again; the spool drains");
        }
    }
}

impl ClientContext for ShipperContext {
    /// librdkafka's own log (a line per reconnect attempt while a broker is away) goes to debug;
    /// what an operator needs is logged once per outage by [`ClientContext::error`].
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        tracing::debug!(target: "librdkafka", ?level, facility, "{message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.health.broker_up.store(false, Ordering::Relaxed);
            if !self.down_reported.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    reason,
                    "kafka: no broker reachable; events wait in the spool and are sent when one is back"
                );
            }
            return;
        }
        tracing::debug!(%error, reason, "kafka");
    }
}

impl ProducerContext for ShipperContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, pos: usize) {
        let outcome = match result {
            Ok(_) => Ok(()),
            Err((error, _)) => Err(error.to_string()),
        };
        self.deliveries.lock().push((pos as u64, outcome));
    }
}

impl Shipper {
    /// Checks the configuration (the producer is created once here) and starts shipping the
    /// store at `dir` to the topic.
    pub fn start(
        dir: &Path,
        config: &KafkaConfig,
        health: Arc<RecorderHealth>,
    ) -> Result<Self, KafkaSinkError> {
        let client = client_config(config)?;
        // Fail at start on a bad setting, not later in the thread.
        let context = ShipperContext::new(Arc::clone(&health));
        let _check: BaseProducer<ShipperContext> = client.create_with_context(context)?;
        health.kafka.store(true, Ordering::Relaxed);
        health
            .spool_max_bytes
            .store(config.spool_max_bytes, Ordering::Relaxed);
        let cursor = read_cursor(dir, &config.topic);
        health.acked_end.store(cursor, Ordering::Relaxed);
        let stop = Arc::new(AtomicBool::new(false));
        let mut shipping = Shipping {
            dir: dir.to_owned(),
            topic: config.topic.clone(),
            keep_shipped: config.keep_shipped,
            client,
            health,
            stop: Arc::clone(&stop),
            cursor,
        };
        let handle = std::thread::Builder::new()
            .name("tollgate-kafka".into())
            .spawn(move || shipping.run())
            .map_err(KafkaSinkError::Thread)?;
        Ok(Self { stop, handle })
    }

    /// Asks the shipper to deliver what it can within a few seconds, write its cursor down and
    /// stop; waits for it.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        if self.handle.join().is_err() {
            tracing::error!("the kafka shipper panicked");
        }
    }
}

/// The message key of a stored event: its session id. The writer puts `session_id` among the
/// first members (`{"v":..,"id":"..","session_id":"..",...}`), so it is found without parsing
/// the whole event (which may carry 64 KiB of rows); anything else is parsed in full. None
/// for a line that is not an event (a torn write).
fn session_key(line: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct SessionKey {
        session_id: uuid::Uuid,
    }
    const MEMBER: &[u8] = b"\"session_id\":\"";
    let head = &line[..line.len().min(160)];
    if let Some(at) = head.windows(MEMBER.len()).position(|w| w == MEMBER) {
        let start = at + MEMBER.len();
        if let Some(id) = line.get(start..start + 36)
            && line.get(start + 36) == Some(&b'"')
            && let Ok(id) = std::str::from_utf8(id)
            && let Ok(id) = uuid::Uuid::parse_str(id)
            && line.last() == Some(&b'}')
        {
            return Some(id.to_string());
        }
    }
    serde_json::from_slice::<SessionKey>(line)
        .ok()
        .map(|key| key.session_id.to_string())
}

/// The SASL password of `[recording.kafka]`, from its file or environment variable, if any;
/// shared by the shipper and the readers of the topic (`sessions --kafka`, `tollgate index`).
pub fn sasl_password(config: &KafkaConfig) -> Result<Option<String>, KafkaSinkError> {
    Ok(
        match (&config.sasl_password_file, &config.sasl_password_env) {
            (Some(file), _) => Some(
                std::fs::read_to_string(file)
                    .map(|text| text.trim_end_matches(['\r', '\n']).to_owned())
                    .map_err(|e| KafkaSinkError::Password {
                        what: file.display().to_string(),
                        detail: e.to_string(),
                    })?,
            ),
            (None, Some(var)) => {
                Some(std::env::var(var).map_err(|e| KafkaSinkError::Password {
                    what: format!("${var}"),
                    detail: e.to_string(),
                })?)
            }
            (None, None) => None,
        },
    )
}

/// The librdkafka settings every Tollgate client starts from: `defaults` (which the operator
/// may change), then the operator's `[recording.kafka.client]` settings, then the SASL password
/// and the brokers. Each client then sets what its own correctness depends on.
pub(crate) fn base_client(
    brokers: &str,
    operator: &BTreeMap<String, String>,
    sasl_password: Option<&str>,
    defaults: &[(&str, &str)],
) -> ClientConfig {
    let mut client = ClientConfig::new();
    for (key, value) in defaults {
        client.set(*key, *value);
    }
    for (key, value) in operator {
        client.set(key, value);
    }
    if let Some(password) = sasl_password {
        client.set("sasl.password", password);
    }
    client.set("bootstrap.servers", brokers);
    client
}

/// The librdkafka settings: the operator's, then the ones delivery safety depends on.
fn client_config(config: &KafkaConfig) -> Result<ClientConfig, KafkaSinkError> {
    // Defaults the operator may change: find a broker that is back within a couple of seconds,
    // and keep what waits in librdkafka's memory small: the spool on disk holds the rest.
    let mut client = base_client(
        &config.brokers,
        &config.client,
        sasl_password(config)?.as_deref(),
        &[
            ("reconnect.backoff.max.ms", "2000"),
            ("queue.buffering.max.kbytes", "65536"),
            ("client.id", "tollgate-gateway"),
        ],
    );
    client
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // Never give up on an event: while the broker is away, the spool grows instead.
        .set("message.timeout.ms", "0")
        .set("compression.codec", config.compression.codec())
        .set("linger.ms", "5")
        .set("message.max.bytes", "16777216");
    Ok(client)
}

/// The cursor in `dir` for `topic`; 0 (the start of the store) when there is none or it is for
/// another topic.
fn read_cursor(dir: &Path, topic: &str) -> u64 {
    let path = dir.join(CURSOR_FILE);
    let Ok(text) = std::fs::read(&path) else {
        return 0;
    };
    match serde_json::from_slice::<Cursor>(&text) {
        Ok(cursor) if cursor.topic == topic => cursor.acked,
        Ok(cursor) => {
            tracing::info!(
                old = %cursor.topic,
                new = %topic,
                "the Kafka topic changed: shipping the whole local store to the new one"
            );
            0
        }
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "unreadable Kafka cursor; shipping from the start of the store");
            0
        }
    }
}

/// Writes the cursor down (a new file renamed over the old one).
fn write_cursor(dir: &Path, topic: &str, acked: u64) -> std::io::Result<()> {
    let path = dir.join(CURSOR_FILE);
    let temporary: PathBuf = dir.join(format!("{CURSOR_FILE}.tmp"));
    let cursor = Cursor {
        topic: topic.to_owned(),
        acked,
    };
    std::fs::write(&temporary, serde_json::to_vec(&cursor)?)?;
    std::fs::rename(&temporary, &path)
}

/// The shipper thread's state.
struct Shipping {
    dir: PathBuf,
    topic: String,
    keep_shipped: bool,
    client: ClientConfig,
    health: Arc<RecorderHealth>,
    stop: Arc<AtomicBool>,
    /// Every event before this position is acknowledged.
    cursor: u64,
}

/// Events handed to the producer, by position: their end, and whether acknowledged.
type InFlight = BTreeMap<u64, (u64, bool)>;

impl Shipping {
    fn run(&mut self) {
        let mut stopping_since = None;
        loop {
            match self.producer_session(&mut stopping_since) {
                Ok(()) => break,
                Err(error) => {
                    self.health.delivery_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        %error,
                        cursor = self.cursor,
                        "kafka delivery failed; starting again from the last acknowledged event"
                    );
                    if stopping_since.is_some() {
                        break;
                    }
                    std::thread::sleep(RETRY_BACKOFF);
                }
            }
        }
        self.save_cursor();
    }

    /// Ships with one producer until told to stop (Ok) or a delivery fails (Err: the caller
    /// starts a new producer from the cursor; dropping this one purges what it holds).
    fn producer_session(
        &mut self,
        stopping_since: &mut Option<tokio::time::Instant>,
    ) -> Result<(), String> {
        let context = ShipperContext::new(Arc::clone(&self.health));
        let producer: BaseProducer<ShipperContext> = self
            .client
            .create_with_context(context)
            .map_err(|e| e.to_string())?;
        let mut tail = Tail::new(&self.dir, self.cursor);
        let mut waiting: VecDeque<TailLine> = VecDeque::new();
        let mut in_flight = InFlight::new();
        let mut last_saved = (self.cursor, tokio::time::Instant::now());
        loop {
            producer.poll(Duration::ZERO);
            self.acknowledge(&producer, &mut in_flight)?;
            if self.stop.load(Ordering::Relaxed) && stopping_since.is_none() {
                *stopping_since = Some(tokio::time::Instant::now());
            }
            if let Some(since) = *stopping_since {
                let drained = in_flight.is_empty()
                    && waiting.is_empty()
                    && tail.position() >= self.health.written_end.load(Ordering::Relaxed);
                if drained || since.elapsed() > DRAIN_AT_SHUTDOWN {
                    return Ok(());
                }
            }
            if waiting.is_empty() && in_flight.len() < MAX_IN_FLIGHT {
                waiting.extend(tail.read(READ_BYTES).map_err(|e| e.to_string())?);
            }
            let mut progressed = false;
            while in_flight.len() < MAX_IN_FLIGHT {
                let Some(line) = waiting.pop_front() else {
                    break;
                };
                match self.send(&producer, &line) {
                    Ok(true) => {
                        in_flight.insert(line.pos, (line.end, false));
                        progressed = true;
                    }
                    Ok(false) => {
                        // Not an event (a torn line after a crash): nothing to ship.
                        in_flight.insert(line.pos, (line.end, true));
                    }
                    Err(()) => {
                        waiting.push_front(line);
                        break;
                    }
                }
            }
            self.advance(&mut in_flight);
            if self.cursor != last_saved.0 && last_saved.1.elapsed() >= CURSOR_EVERY {
                self.save_cursor();
                last_saved = (self.cursor, tokio::time::Instant::now());
            }
            if !progressed {
                producer.poll(Duration::from_millis(10));
            }
        }
    }

    /// Hands one event to the producer. Ok(false): the line is not an event; Err: the
    /// producer's queue is full (try again after a poll).
    fn send(&self, producer: &BaseProducer<ShipperContext>, line: &TailLine) -> Result<bool, ()> {
        let Some(key) = session_key(&line.line) else {
            return Ok(false);
        };
        let pos = usize::try_from(line.pos).unwrap_or(usize::MAX);
        let record = BaseRecord::with_opaque_to(&self.topic, pos)
            .key(&key)
            .payload(&line.line);
        match producer.send(record) {
            Ok(()) => Ok(true),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => Err(()),
            Err((error, _)) => {
                // Anything else (a message too large for the producer...) is retried the same
                // way: the spool keeps the event, the metrics and this log say why it waits.
                tracing::error!(%error, pos = line.pos, "kafka refused an event; retrying");
                self.health.delivery_errors.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(RETRY_BACKOFF);
                Err(())
            }
        }
    }

    /// Takes in the deliveries librdkafka reported.
    fn acknowledge(
        &self,
        producer: &BaseProducer<ShipperContext>,
        in_flight: &mut InFlight,
    ) -> Result<(), String> {
        let deliveries = std::mem::take(&mut *producer.context().deliveries.lock());
        for (pos, outcome) in deliveries {
            match outcome {
                Ok(()) => {
                    if let Some(entry) = in_flight.get_mut(&pos) {
                        entry.1 = true;
                    }
                    self.health.events_acked.fetch_add(1, Ordering::Relaxed);
                    producer.context().delivered();
                }
                Err(error) => return Err(format!("event at {pos}: {error}")),
            }
        }
        Ok(())
    }

    /// Moves the cursor past every acknowledged event at the front.
    fn advance(&mut self, in_flight: &mut InFlight) {
        while let Some(entry) = in_flight.first_entry() {
            let (end, acked) = *entry.get();
            if !acked {
                break;
            }
            entry.remove();
            self.cursor = end;
        }
        self.health.acked_end.store(self.cursor, Ordering::Relaxed);
    }

    /// Writes the cursor down and deletes what the broker has in full.
    fn save_cursor(&self) {
        if let Err(error) = write_cursor(&self.dir, &self.topic, self.cursor) {
            tracing::error!(%error, "cannot write the kafka cursor");
            return;
        }
        if !self.keep_shipped
            && let Err(error) = delete_segments_before(&self.dir, self.cursor)
        {
            tracing::warn!(%error, "cannot delete shipped segments");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_session_id_without_parsing_the_whole_event() {
        let session = uuid::Uuid::now_v7();
        let event = crate::recording::RecordedEvent::now(
            session,
            crate::recording::EventKind::Statement(crate::recording::StatementEvent::default()),
        );
        let line = serde_json::to_vec(&event).expect("json");
        assert_eq!(session_key(&line), Some(session.to_string()));
        // A member order the fast path does not expect still works.
        let odd = format!("{{\"x\":1,\"session_id\":\"{session}\"}}");
        assert_eq!(session_key(odd.as_bytes()), Some(session.to_string()));
        // A torn line is not an event, even when its start looks like one.
        assert_eq!(session_key(&line[..line.len() / 2]), None);
        assert_eq!(session_key(b"garbage"), None);
    }

    #[test]
    fn the_cursor_is_per_topic() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_cursor(dir.path(), "a"), 0);
        write_cursor(dir.path(), "a", 1234).expect("write");
        assert_eq!(read_cursor(dir.path(), "a"), 1234);
        assert_eq!(read_cursor(dir.path(), "b"), 0);
        std::fs::write(dir.path().join(CURSOR_FILE), "garbage").expect("write");
        assert_eq!(read_cursor(dir.path(), "a"), 0);
    }

    #[test]
    fn safety_settings_win_over_the_operators() {
        let config: KafkaConfig = toml::from_str(
            r#"
brokers = "127.0.0.1:1"
topic = "t"
[client]
acks = "1"
"enable.idempotence" = "false"
"security.protocol" = "plaintext"
"#,
        )
        .expect("config");
        let client = client_config(&config).expect("client");
        assert_eq!(client.get("acks"), Some("all"));
        assert_eq!(client.get("enable.idempotence"), Some("true"));
        assert_eq!(client.get("security.protocol"), Some("plaintext"));
        assert_eq!(client.get("compression.codec"), Some("zstd"));
    }
}
