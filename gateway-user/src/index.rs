//! `tollgate index`: a searchable index of the recording topic.
//!
//! The indexer is a member of a Kafka consumer group (`--group`): several indexers share the
//! topic's partitions, and since a session's events all have its id as key, each session is
//! indexed by one of them. Messages are added to the `SQLite` index ([`db`]) in batches, one
//! transaction each, and the group's offsets are committed only after that transaction:
//! delivery is at least once, and the index's upserts are idempotent, so a batch indexed again
//! after a crash changes nothing. `tollgate sessions list --index` answers from the file.

pub mod db;
pub mod synthetic;

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use rdkafka::{
    ClientContext, Message as _, Offset, TopicPartitionList,
    config::RDKafkaLogLevel,
    consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance},
    error::KafkaError,
};

pub use db::{IndexDb, IndexDbError, Lag, PartitionProgress};

use crate::{
    recording::RecordedEvent,
    sessions::kafka::{BROKER_TIMEOUT, KafkaReadError, KafkaSource, partitions},
};

/// Events added to the index per transaction, at most.
const BATCH: usize = 5_000;
/// How long one poll waits for a message.
const POLL: Duration = Duration::from_millis(200);
/// Following the topic: how often an idle indexer writes its progress to the meta table.
const REFRESH_META: Duration = Duration::from_secs(30);
/// `--once`: how long to wait for the group to assign partitions.
const ASSIGNMENT_TIMEOUT: Duration = Duration::from_secs(90);

/// Why indexing stopped.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The index file failed.
    #[error(transparent)]
    Db(#[from] IndexDbError),
    /// The topic could not be read.
    #[error(transparent)]
    Kafka(#[from] KafkaReadError),
    /// The consumer could not be set up.
    #[error("kafka: {what}: {error}")]
    Consumer {
        /// What was asked.
        what: &'static str,
        /// librdkafka's error.
        error: KafkaError,
    },
    /// `--once` and the group gave this indexer no partition.
    #[error(
        "group {group:?} assigned no partition of {topic:?} within {}s: are other indexers of the \
         group holding them all?",
        ASSIGNMENT_TIMEOUT.as_secs()
    )]
    NoAssignment {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
    },
}

/// How to run the indexer.
#[derive(Debug, Clone)]
pub struct IndexerOptions {
    /// The topic and its brokers.
    pub source: KafkaSource,
    /// The consumer group.
    pub group: String,
    /// Stop at the end of every assigned partition instead of following the topic.
    pub once: bool,
}

/// What one run indexed, per partition.
#[derive(Debug, Clone, Default)]
pub struct IndexRun {
    /// Messages indexed per partition.
    pub messages: BTreeMap<i32, u64>,
    /// Messages that were not events (skipped).
    pub skipped: u64,
    /// The partitions assigned when the run ended (`--once`: when it was caught up).
    pub assigned: Vec<i32>,
}

/// Logs the group's assignments.
struct GroupContext;

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        tracing::debug!(target: "librdkafka", ?level, facility, "{message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", %error, reason, "kafka");
    }
}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let ids: Vec<i32> = list
                    .elements()
                    .iter()
                    .map(rdkafka::topic_partition_list::TopicPartitionListElem::partition)
                    .collect();
                tracing::info!(partitions = ?ids, "index: partitions assigned");
            }
            Rebalance::Revoke(list) => {
                let ids: Vec<i32> = list
                    .elements()
                    .iter()
                    .map(rdkafka::topic_partition_list::TopicPartitionListElem::partition)
                    .collect();
                tracing::info!(partitions = ?ids, "index: partitions revoked");
            }
            Rebalance::Error(error) => tracing::warn!(%error, "index: rebalance failed"),
        }
    }
}

/// The indexer's consumer and what it has read but not yet indexed.
struct Indexer<'a> {
    consumer: BaseConsumer<GroupContext>,
    options: &'a IndexerOptions,
    batch: Vec<RecordedEvent>,
    /// Per partition, the offset after the last message in `batch`.
    next: BTreeMap<i32, i64>,
    run: IndexRun,
}

/// Runs the indexer until `stop` is set or, with `--once`, until every assigned partition is
/// indexed to its end.
pub fn run(
    db: &mut IndexDb,
    options: &IndexerOptions,
    stop: &AtomicBool,
) -> Result<IndexRun, IndexError> {
    let consumer: BaseConsumer<GroupContext> = options
        .source
        .client_config()
        .set("group.id", &options.group)
        .set("auto.offset.reset", "earliest")
        .create_with_context(GroupContext)
        .map_err(|error| IndexError::Consumer {
            what: "creating the consumer",
            error,
        })?;
    // Reachability and the topic, with a one-line error each.
    partitions(&consumer, &options.source)?;
    consumer
        .subscribe(&[&options.source.topic])
        .map_err(|error| IndexError::Consumer {
            what: "subscribing",
            error,
        })?;
    let mut indexer = Indexer {
        consumer,
        options,
        batch: Vec::new(),
        next: BTreeMap::new(),
        run: IndexRun::default(),
    };
    let mut unassigned = Duration::ZERO;
    let mut idle = Duration::ZERO;
    while !stop.load(Ordering::Relaxed) {
        match indexer.consumer.poll(POLL) {
            Some(Ok(message)) => {
                let partition = message.partition();
                match message
                    .payload()
                    .map(serde_json::from_slice::<RecordedEvent>)
                {
                    Some(Ok(event)) => indexer.batch.push(event),
                    _ => indexer.run.skipped += 1,
                }
                indexer.next.insert(partition, message.offset() + 1);
                *indexer.run.messages.entry(partition).or_default() += 1;
                if indexer.batch.len() >= BATCH {
                    indexer.flush(db)?;
                }
            }
            Some(Err(error)) => tracing::debug!(%error, "index: consumer error"),
            None => {
                indexer.flush(db)?;
                if options.once {
                    let assigned = indexer.assigned();
                    if assigned.is_empty() {
                        unassigned += POLL;
                        if unassigned >= ASSIGNMENT_TIMEOUT {
                            return Err(IndexError::NoAssignment {
                                group: options.group.clone(),
                                topic: options.source.topic.clone(),
                            });
                        }
                    } else if indexer.caught_up(db, &assigned)? {
                        break;
                    }
                } else {
                    // Following: say in the meta now and then that the index is current, so
                    // readers do not take a quiet topic for a stopped indexer.
                    idle += POLL;
                    if idle >= REFRESH_META {
                        idle = Duration::ZERO;
                        let assigned = indexer.assigned();
                        if let Err(error) = indexer.caught_up(db, &assigned) {
                            tracing::warn!(%error, "index: cannot refresh its progress");
                        }
                    }
                }
            }
        }
    }
    indexer.flush(db)?;
    if !options.once {
        indexer.run.assigned = indexer.assigned();
    }
    Ok(indexer.run)
}

impl Indexer<'_> {
    fn topic(&self) -> &str {
        &self.options.source.topic
    }

    /// The partitions the group assigned to this indexer.
    fn assigned(&self) -> Vec<i32> {
        self.consumer
            .assignment()
            .map(|list| {
                list.elements()
                    .iter()
                    .map(rdkafka::topic_partition_list::TopicPartitionListElem::partition)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Indexes the batch in one transaction, then commits the offsets to the group.
    fn flush(&mut self, db: &mut IndexDb) -> Result<(), IndexError> {
        if self.next.is_empty() {
            return Ok(());
        }
        let progress: Vec<PartitionProgress> = self
            .next
            .iter()
            .map(|(&partition, &next_offset)| PartitionProgress {
                partition,
                next_offset,
                high_watermark: self
                    .consumer
                    .fetch_watermarks(self.topic(), partition, Duration::from_secs(2))
                    .map_or(next_offset, |(_, high)| high.max(next_offset)),
            })
            .collect();
        db.apply(&self.batch, self.topic(), &progress)?;
        let mut list = TopicPartitionList::new();
        for p in &progress {
            list.add_partition_offset(self.topic(), p.partition, Offset::Offset(p.next_offset))
                .map_err(|error| IndexError::Consumer {
                    what: "offsets to commit",
                    error,
                })?;
        }
        // A failed commit (the group rebalanced meanwhile) only means these messages may be
        // indexed again, which changes nothing.
        if let Err(error) = self.consumer.commit(&list, CommitMode::Sync) {
            tracing::warn!(%error, "index: committing offsets failed; they will be indexed again");
        }
        self.batch.clear();
        self.next.clear();
        Ok(())
    }

    /// Whether every partition in `assigned` is indexed to its high watermark; writes how far
    /// each is to the index's meta (so its lag reads 0 when caught up).
    fn caught_up(&mut self, db: &mut IndexDb, assigned: &[i32]) -> Result<bool, IndexError> {
        self.run.assigned = assigned.to_vec();
        let committed =
            self.consumer
                .committed(BROKER_TIMEOUT)
                .map_err(|error| IndexError::Consumer {
                    what: "committed offsets",
                    error,
                })?;
        let mut progress = Vec::new();
        for &partition in assigned {
            let (low, high) = self
                .consumer
                .fetch_watermarks(self.topic(), partition, BROKER_TIMEOUT)
                .map_err(|error| IndexError::Consumer {
                    what: "watermarks",
                    error,
                })?;
            let done = committed
                .find_partition(self.topic(), partition)
                .and_then(|e| e.offset().to_raw())
                .filter(|o| *o >= 0)
                .unwrap_or(low);
            progress.push(PartitionProgress {
                partition,
                next_offset: done,
                high_watermark: high,
            });
        }
        db.apply(&[], self.topic(), &progress)?;
        Ok(progress.iter().all(|p| p.next_offset >= p.high_watermark))
    }
}
