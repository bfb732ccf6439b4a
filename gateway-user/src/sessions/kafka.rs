//! Reading the recording topic straight from Kafka, for `tollgate sessions --kafka` and
//! `tollgate index`.
//!
//! [`read`] assigns every partition of the topic (no consumer group, nothing committed) and
//! reads only the offsets of a time range: `--since` and `--until` become offsets through
//! `ListOffsets` by timestamp, per partition, and each partition is read up to the until-offset
//! or its high watermark. Messages are the store's lines as shipped, keyed by session id.
//!
//! A broker quirk is handled: tansu answers a timestamp past the partition's last message with
//! offset 0 instead of "end". So the message at the offset a broker returns is checked: when it
//! is older than the time asked for, the answer meant "end" (a Kafka broker never returns an
//! offset whose message is older than the time asked for).

use std::{collections::BTreeMap, fmt, time::Duration};

use rdkafka::{
    ClientConfig, ClientContext, Message as _, Offset, TopicPartitionList,
    config::RDKafkaLogLevel,
    consumer::{BaseConsumer, Consumer as _, ConsumerContext},
    error::KafkaError,
};
use time::OffsetDateTime;

use crate::config::KafkaConfig;

/// How long a broker has to answer before the read gives up.
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the recording topic is and how to log in to its brokers.
#[derive(Debug, Clone)]
pub struct KafkaSource {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The recording topic.
    pub topic: String,
    /// More librdkafka settings (`[recording.kafka] client`: TLS, SASL).
    pub client: BTreeMap<String, String>,
    /// The SASL password, when the configuration names one (never printed).
    pub sasl_password: Option<String>,
}

impl KafkaSource {
    /// The source `[recording.kafka]` describes.
    pub fn from_config(config: &KafkaConfig) -> Result<Self, KafkaReadError> {
        Ok(Self {
            brokers: config.brokers.clone(),
            topic: config.topic.clone(),
            client: config.client.clone(),
            sasl_password: crate::recording::kafka::sasl_password(config)
                .map_err(|e| KafkaReadError::Config(e.to_string()))?,
        })
    }

    /// A source with only brokers and topic (no TLS or SASL settings).
    #[must_use]
    pub fn plain(brokers: &str, topic: &str) -> Self {
        Self {
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            client: BTreeMap::new(),
            sasl_password: None,
        }
    }

    /// librdkafka consumer settings: the operator's (producer-only ones are ignored by
    /// librdkafka), then the ones a reader depends on.
    #[must_use]
    pub fn client_config(&self) -> ClientConfig {
        let mut client = ClientConfig::new();
        client.set("client.id", "tollgate-reader");
        for (key, value) in &self.client {
            client.set(key, value);
        }
        if let Some(password) = &self.sasl_password {
            client.set("sasl.password", password);
        }
        client
            .set("bootstrap.servers", &self.brokers)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            // Asking for a topic must never create it (a broker would pick the partitions).
            .set("allow.auto.create.topics", "false")
            .set("socket.connection.setup.timeout.ms", "10000");
        client
    }
}

/// Why the topic could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KafkaReadError {
    /// The settings are unusable.
    #[error("kafka: {0}")]
    Config(String),
    /// No broker answered in time.
    #[error(
        "cannot reach a Kafka broker at {brokers} within {}s ({detail}): check that it runs \
         and that --brokers or [recording.kafka] brokers names it",
        BROKER_TIMEOUT.as_secs()
    )]
    Unreachable {
        /// The bootstrap brokers tried.
        brokers: String,
        /// librdkafka's error.
        detail: String,
    },
    /// The topic does not exist.
    #[error(
        "topic {topic:?} does not exist on {brokers}: check --topic or [recording.kafka] topic"
    )]
    NoTopic {
        /// The topic.
        topic: String,
        /// The bootstrap brokers.
        brokers: String,
    },
    /// A request failed after the broker was reached.
    #[error("kafka: {what}: {error}")]
    Request {
        /// What was asked.
        what: String,
        /// librdkafka's error.
        error: KafkaError,
    },
    /// Reading stopped making progress.
    #[error(
        "kafka: partition {partition} of {topic:?} gave nothing for {}s at offset {offset}, \
         before its end {end}",
        BROKER_TIMEOUT.as_secs()
    )]
    Stalled {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The next offset wanted.
        offset: i64,
        /// Where the partition's range ends.
        end: i64,
    },
}

/// A time range of messages to read (by message timestamp); open ends read everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeRange {
    /// Messages at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Messages at or before this time.
    pub until: Option<OffsetDateTime>,
}

/// What was read from one partition: proves which offsets were touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRead {
    /// The partition.
    pub partition: i32,
    /// Its low and high watermarks when the read started.
    pub watermarks: (i64, i64),
    /// The offsets of the range read (`start..end`).
    pub range: (i64, i64),
    /// Messages read.
    pub messages: u64,
}

impl fmt::Display for PartitionRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "partition {}: {} message(s) read, offsets {}..{} (partition holds {}..{})",
            self.partition,
            self.messages,
            self.range.0,
            self.range.1,
            self.watermarks.0,
            self.watermarks.1
        )
    }
}

/// One message of the topic.
#[derive(Debug, Clone)]
pub struct TopicMessage {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its timestamp (Unix milliseconds), when it has one.
    pub timestamp_ms: Option<i64>,
    /// Its value: one event as stored, a JSON line without the newline.
    pub payload: Vec<u8>,
}

/// librdkafka's own log goes to debug level; the errors a reader needs are returned.
#[derive(Debug, Default, Clone, Copy)]
pub struct QuietContext;

impl ClientContext for QuietContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        tracing::debug!(target: "librdkafka", ?level, facility, "{message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", %error, reason, "kafka");
    }
}

impl ConsumerContext for QuietContext {}

/// The partitions of the source's topic; distinguishes an unreachable broker from a missing
/// topic.
pub fn partitions<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    source: &KafkaSource,
) -> Result<Vec<i32>, KafkaReadError> {
    let metadata = consumer
        .fetch_metadata(Some(&source.topic), BROKER_TIMEOUT)
        .map_err(|e| KafkaReadError::Unreachable {
            brokers: source.brokers.clone(),
            detail: e.to_string(),
        })?;
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == source.topic)
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .ok_or_else(|| KafkaReadError::NoTopic {
            topic: source.topic.clone(),
            brokers: source.brokers.clone(),
        })?;
    let mut ids: Vec<i32> = topic
        .partitions()
        .iter()
        .map(rdkafka::metadata::MetadataPartition::id)
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Reads the messages of `range` from every partition of the topic, in offset order per
/// partition (partitions one after another); with what was read from each.
pub fn read(
    source: &KafkaSource,
    range: TimeRange,
) -> Result<(Vec<TopicMessage>, Vec<PartitionRead>), KafkaReadError> {
    let consumer: BaseConsumer<QuietContext> = source
        .client_config()
        // Required by librdkafka's consumer; never joined (assign, no commits).
        .set("group.id", "tollgate-sessions-reader")
        .create_with_context(QuietContext)
        .map_err(|e| KafkaReadError::Config(e.to_string()))?;
    let topic = source.topic.as_str();
    let mut reads = Vec::new();
    for partition in partitions(&consumer, source)? {
        let watermarks = consumer
            .fetch_watermarks(topic, partition, BROKER_TIMEOUT)
            .map_err(|error| KafkaReadError::Request {
                what: format!("watermarks of partition {partition}"),
                error,
            })?;
        let start = match range.since {
            Some(since) => offset_for_time(&consumer, topic, partition, since, watermarks)?,
            None => watermarks.0,
        };
        let end = match range.until {
            // The first message after `until` ends the range.
            Some(until) => offset_for_time(
                &consumer,
                topic,
                partition,
                until + time::Duration::MILLISECOND,
                watermarks,
            )?,
            None => watermarks.1,
        };
        reads.push(PartitionRead {
            partition,
            watermarks,
            range: (start, end.max(start)),
            messages: 0,
        });
    }
    let mut messages = Vec::new();
    for read in &mut reads {
        read_range(&consumer, topic, read, &mut messages)?;
    }
    Ok((messages, reads))
}

/// Unix milliseconds of `time`.
fn millis(time: OffsetDateTime) -> i64 {
    i64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The first offset of `partition` whose message is at or after `time`, or the high watermark
/// when there is none (see the module doc for the check of the broker's answer).
fn offset_for_time(
    consumer: &BaseConsumer<QuietContext>,
    topic: &str,
    partition: i32,
    time: OffsetDateTime,
    (low, high): (i64, i64),
) -> Result<i64, KafkaReadError> {
    let wanted = millis(time);
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, partition, Offset::Offset(wanted))
        .map_err(|error| KafkaReadError::Request {
            what: "offsets by time".into(),
            error,
        })?;
    let found = consumer
        .offsets_for_times(list, BROKER_TIMEOUT)
        .map_err(|error| KafkaReadError::Request {
            what: format!("offsets by time of partition {partition}"),
            error,
        })?;
    let offset = found
        .find_partition(topic, partition)
        .and_then(|e| e.offset().to_raw())
        .filter(|o| *o >= 0);
    let Some(offset) = offset else {
        return Ok(high);
    };
    if offset >= high {
        return Ok(high);
    }
    let offset = offset.max(low);
    match timestamp_at(consumer, topic, partition, offset)? {
        Some(ts) if ts < wanted => Ok(high),
        _ => Ok(offset),
    }
}

/// The timestamp of the message at `offset` (which must exist).
fn timestamp_at(
    consumer: &BaseConsumer<QuietContext>,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<Option<i64>, KafkaReadError> {
    let mut probe = PartitionRead {
        partition,
        watermarks: (offset, offset + 1),
        range: (offset, offset + 1),
        messages: 0,
    };
    let mut one = Vec::new();
    read_range(consumer, topic, &mut probe, &mut one)?;
    Ok(one.first().and_then(|m| m.timestamp_ms))
}

/// Reads `read.range` of one partition into `out`, counting into `read.messages`.
fn read_range(
    consumer: &BaseConsumer<QuietContext>,
    topic: &str,
    read: &mut PartitionRead,
    out: &mut Vec<TopicMessage>,
) -> Result<(), KafkaReadError> {
    let (start, end) = read.range;
    if start >= end {
        return Ok(());
    }
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, read.partition, Offset::Offset(start))
        .and_then(|()| consumer.assign(&list))
        .map_err(|error| KafkaReadError::Request {
            what: format!("assigning partition {}", read.partition),
            error,
        })?;
    let mut next = start;
    let mut idle = Duration::ZERO;
    let step = Duration::from_millis(200);
    while next < end {
        match consumer.poll(step) {
            None => {
                idle += step;
                if idle >= BROKER_TIMEOUT {
                    return Err(KafkaReadError::Stalled {
                        topic: topic.to_owned(),
                        partition: read.partition,
                        offset: next,
                        end,
                    });
                }
            }
            Some(Err(error)) => {
                // Transient (a broker reconnecting): librdkafka retries by itself.
                tracing::debug!(%error, "kafka: consumer error while reading");
                idle += step;
            }
            Some(Ok(message)) => {
                idle = Duration::ZERO;
                if message.partition() != read.partition || message.offset() < next {
                    continue;
                }
                next = message.offset() + 1;
                if message.offset() >= end {
                    break;
                }
                read.messages += 1;
                out.push(TopicMessage {
                    partition: message.partition(),
                    offset: message.offset(),
                    timestamp_ms: message.timestamp().to_millis(),
                    payload: message.payload().unwrap_or_default().to_vec(),
                });
            }
        }
    }
    consumer
        .unassign()
        .map_err(|error| KafkaReadError::Request {
            what: "unassigning".into(),
            error,
        })
}

/// The events of `messages`, each once (a sink may deliver an event twice: the first copy
/// is kept), in the order read; the second value counts messages that are not events.
#[must_use]
pub fn events(messages: &[TopicMessage]) -> (Vec<crate::recording::RecordedEvent>, usize) {
    let mut seen = std::collections::HashSet::new();
    let mut events = Vec::with_capacity(messages.len());
    let mut skipped = 0;
    for message in messages {
        match serde_json::from_slice::<crate::recording::RecordedEvent>(&message.payload) {
            Ok(event) => {
                if seen.insert(event.id) {
                    events.push(event);
                }
            }
            Err(_) => skipped += 1,
        }
    }
    (events, skipped)
}
