//! Reading the recording topic straight from Kafka, for `tollgate sessions --kafka` and
//! `tollgate index`.
//!
//! [`read`] assigns every partition of the topic (no consumer group, nothing committed) and
//! reads only the offsets of a time range: `--since` and `--until` become offsets through
//! `ListOffsets` by timestamp, per partition, and each partition is read up to the until-offset
//! or its high watermark. Messages are the store's lines as shipped, keyed by session id.
//!
//! A broker quirk is handled: tansu answers a timestamp past the partition's last message with
//! offset 0 instead of "end". So the first message read from the since-offset is checked: when
//! it is older than `--since`, the answer meant "end" and nothing of the partition is in the
//! range (a Kafka broker never returns an offset whose message is older than the time asked
//! for). An until-offset at or before the start is not trusted either: the partition is then
//! read until its first message newer than `--until`.

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
        let mut client = crate::recording::kafka::base_client(
            &self.brokers,
            &self.client,
            self.sasl_password.as_deref(),
            &[("client.id", "tollgate-reader")],
        );
        client
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

/// Reads the messages of `range` from every partition of the topic (all partitions at once),
/// in offset order per partition, partitions one after another; with what was read from each.
pub fn read(
    source: &KafkaSource,
    range: TimeRange,
) -> Result<(Vec<TopicMessage>, Vec<PartitionRead>), KafkaReadError> {
    let consumer: BaseConsumer<QuietContext> = source
        .client_config()
        // Required by librdkafka's consumer; never joined (assign, no commits).
        .set("group.id", "tollgate-sessions-reader")
        .set("fetch.wait.max.ms", "100")
        .create_with_context(QuietContext)
        .map_err(|e| KafkaReadError::Config(e.to_string()))?;
    let topic = source.topic.as_str();
    let ids = partitions(&consumer, source)?;
    let mut reads = Vec::new();
    for &partition in &ids {
        let watermarks = consumer
            .fetch_watermarks(topic, partition, BROKER_TIMEOUT)
            .map_err(|error| KafkaReadError::Request {
                what: format!("watermarks of partition {partition}"),
                error,
            })?;
        reads.push(PartitionRead {
            partition,
            watermarks,
            range: watermarks,
            messages: 0,
        });
    }
    let since = range
        .since
        .map(|t| offsets_for_time(&consumer, topic, &ids, t))
        .transpose()?;
    // The first message after `until` ends the range.
    let until = range
        .until
        .map(|t| offsets_for_time(&consumer, topic, &ids, t + time::Duration::MILLISECOND))
        .transpose()?;
    let mut ranges = Vec::new();
    for read in &mut reads {
        let (low, high) = read.watermarks;
        let start = since
            .as_ref()
            .map_or(low, |o| {
                o.get(&read.partition).copied().flatten().unwrap_or(high)
            })
            .clamp(low, high);
        // An until-offset past the start is the broker's real answer; one at or before it may
        // be tansu's "0" for a time past the end: then the timestamps bound the range.
        let end = until
            .as_ref()
            .and_then(|o| o.get(&read.partition).copied().flatten())
            .filter(|end| *end > start)
            .unwrap_or(high)
            .min(high);
        read.range = (start, end);
        ranges.push(Range {
            next: start,
            end,
            check_since: range.since.map(millis),
            until: range.until.map(millis),
            done: start >= end,
        });
    }
    let messages = read_ranges(&consumer, topic, &mut reads, &mut ranges)?;
    Ok((messages, reads))
}

/// Unix milliseconds of `time`.
fn millis(time: OffsetDateTime) -> i64 {
    i64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Per partition, the first offset whose message is at or after `time`, as the broker answers
/// (None: no such message).
fn offsets_for_time(
    consumer: &BaseConsumer<QuietContext>,
    topic: &str,
    partitions: &[i32],
    time: OffsetDateTime,
) -> Result<BTreeMap<i32, Option<i64>>, KafkaReadError> {
    let mut list = TopicPartitionList::new();
    for &partition in partitions {
        list.add_partition_offset(topic, partition, Offset::Offset(millis(time)))
            .map_err(|error| KafkaReadError::Request {
                what: "offsets by time".into(),
                error,
            })?;
    }
    let found = consumer
        .offsets_for_times(list, BROKER_TIMEOUT)
        .map_err(|error| KafkaReadError::Request {
            what: "offsets by time".into(),
            error,
        })?;
    Ok(partitions
        .iter()
        .map(|&p| {
            let offset = found
                .find_partition(topic, p)
                .and_then(|e| e.offset().to_raw())
                .filter(|o| *o >= 0);
            (p, offset)
        })
        .collect())
}

/// The state of one partition's read.
#[derive(Debug)]
struct Range {
    next: i64,
    end: i64,
    /// `--since` (Unix ms): the first message read must not be older, else the broker's
    /// offset meant "past the end" (tansu) and nothing of the partition is in the range.
    check_since: Option<i64>,
    /// `--until` (Unix ms): a newer message ends the range.
    until: Option<i64>,
    done: bool,
}

/// Reads every range at once; the messages, partition after partition.
fn read_ranges(
    consumer: &BaseConsumer<QuietContext>,
    topic: &str,
    reads: &mut [PartitionRead],
    ranges: &mut [Range],
) -> Result<Vec<TopicMessage>, KafkaReadError> {
    let mut list = TopicPartitionList::new();
    for (read, range) in reads.iter().zip(ranges.iter()) {
        if !range.done {
            list.add_partition_offset(topic, read.partition, Offset::Offset(range.next))
                .map_err(|error| KafkaReadError::Request {
                    what: format!("assigning partition {}", read.partition),
                    error,
                })?;
        }
    }
    let mut out: BTreeMap<i32, Vec<TopicMessage>> = BTreeMap::new();
    if list.count() == 0 {
        return Ok(Vec::new());
    }
    consumer
        .assign(&list)
        .map_err(|error| KafkaReadError::Request {
            what: "assigning partitions".into(),
            error,
        })?;
    let step = Duration::from_millis(100);
    let mut idle = Duration::ZERO;
    while let Some(waiting) = reads
        .iter()
        .zip(ranges.iter())
        .find(|(_, range)| !range.done)
        .map(|(read, range)| (read.partition, range.next, range.end))
    {
        let message = match consumer.poll(step) {
            None => {
                idle += step;
                if idle >= BROKER_TIMEOUT {
                    return Err(KafkaReadError::Stalled {
                        topic: topic.to_owned(),
                        partition: waiting.0,
                        offset: waiting.1,
                        end: waiting.2,
                    });
                }
                continue;
            }
            Some(Err(error)) => {
                // Transient (a broker reconnecting): librdkafka retries by itself.
                tracing::debug!(%error, "kafka: consumer error while reading");
                continue;
            }
            Some(Ok(message)) => message,
        };
        idle = Duration::ZERO;
        let Some(index) = reads
            .iter()
            .position(|r| r.partition == message.partition())
        else {
            continue;
        };
        let (read, range) = (&mut reads[index], &mut ranges[index]);
        if range.done || message.offset() < range.next {
            continue;
        }
        let timestamp = message.timestamp().to_millis();
        let first = message.offset() == read.range.0;
        range.next = message.offset() + 1;
        if first
            && let (Some(since), Some(ts)) = (range.check_since, timestamp)
            && ts < since
        {
            // tansu's "0" for a time past the partition's last message: nothing in range.
            range.done = true;
            read.range = (read.watermarks.1, read.watermarks.1);
            continue;
        }
        if message.offset() >= range.end
            || range
                .until
                .zip(timestamp)
                .is_some_and(|(until, ts)| ts > until)
        {
            range.done = true;
            read.range.1 = message.offset();
            continue;
        }
        read.messages += 1;
        out.entry(read.partition).or_default().push(TopicMessage {
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: timestamp,
            payload: message.payload().unwrap_or_default().to_vec(),
        });
        if range.next >= range.end {
            range.done = true;
        }
    }
    Ok(out.into_values().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_say_what_was_read_of_what_the_partition_holds() {
        let read = PartitionRead {
            partition: 2,
            watermarks: (0, 90),
            range: (40, 52),
            messages: 12,
        };
        assert_eq!(
            read.to_string(),
            "partition 2: 12 message(s) read, offsets 40..52 (partition holds 0..90)"
        );
    }

    #[test]
    fn an_unreachable_broker_is_one_line_saying_what_to_do() {
        let error = KafkaReadError::Unreachable {
            brokers: "kafka1:9092".into(),
            detail: "Broker transport failure".into(),
        }
        .to_string();
        assert!(
            !error.contains('\n') && error.contains("kafka1:9092") && error.contains("--brokers")
        );
    }
}
