//! The approvals topic (`[approvals] topic`, by default the recording topic's name with
//! `.approvals` after it): every replica publishes its changes ([`Message`]) there and
//! applies everyone's, read from the beginning, so each replica's [`Approvals`] is the same
//! view. `tollgate approvals` reads the topic the same way and produces decisions on it; the
//! replica holding the statement sees the decision within a poll.

use std::{sync::mpsc::Receiver, thread::JoinHandle, time::Duration};

use rdkafka::{
    Message as _, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer as _},
    producer::{BaseProducer, BaseRecord, Producer as _},
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Approvals, Message};
use crate::{
    config::{Config, KafkaConfig},
    control::kafka::{ControlTopicError, consumer, partitions, producer, read_from_beginning},
};

/// The key of every message: one key, one partition, so every replica applies the changes in
/// the same order.
const KEY: &str = "approvals";
/// How long a broker round trip may take.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// The approvals topic of `config`, when Kafka is configured.
#[must_use]
pub fn topic(config: &Config) -> Option<(&KafkaConfig, String)> {
    let kafka = config.recording.kafka.as_ref()?;
    let topic = config
        .approvals
        .topic
        .clone()
        .unwrap_or_else(|| format!("{}.approvals", kafka.topic));
    Some((kafka, topic))
}

fn send(producer: &BaseProducer, topic: &str, message: &Message) -> Result<(), String> {
    let payload = serde_json::to_vec(message).map_err(|e| e.to_string())?;
    producer
        .send(BaseRecord::to(topic).key(KEY).payload(&payload))
        .map_err(|(e, _)| e.to_string())?;
    producer.flush(BROKER_TIMEOUT).map_err(|e| e.to_string())
}

/// Starts the replica's side of the topic (a thread, until `shutdown`): local changes out,
/// everyone's in.
///
/// # Errors
/// When librdkafka refuses the settings.
pub fn start(
    kafka: &KafkaConfig,
    topic: String,
    gateway: &str,
    approvals: Approvals,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, ControlTopicError> {
    let consumer = consumer(kafka, &format!("approvals-{}", gateway.replace('/', "-")))?;
    let producer = producer(kafka)?;
    let outbox = approvals.publish();
    let kafka = kafka.clone();
    std::thread::Builder::new()
        .name("tollgate-approvals".into())
        .spawn(move || {
            follow(
                &kafka, &consumer, &producer, &topic, &approvals, &outbox, &shutdown,
            );
        })
        .map_err(|e| {
            ControlTopicError::Kafka(rdkafka::error::KafkaError::ClientCreation(e.to_string()))
        })
}

fn follow(
    kafka: &KafkaConfig,
    consumer: &BaseConsumer,
    producer: &BaseProducer,
    topic: &str,
    approvals: &Approvals,
    outbox: &Receiver<Message>,
    shutdown: &CancellationToken,
) {
    if !read_from_beginning(consumer, kafka, topic, "approvals", shutdown) {
        return;
    }
    while !shutdown.is_cancelled() {
        for message in outbox.try_iter() {
            if let Err(detail) = send(producer, topic, &message) {
                tracing::warn!(topic, %detail, "cannot publish an approval change");
            }
        }
        let Some(Ok(received)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        if let Some(message) = received
            .payload()
            .and_then(|p| serde_json::from_slice::<Message>(p).ok())
            && approvals.apply(&message)
        {
            tracing::debug!(?message, "approval change from the topic");
        }
    }
}

/// The approvals as the topic has them now (read from the beginning to its end), for the
/// command line.
///
/// # Errors
/// When the brokers cannot be reached.
pub fn read(kafka: &KafkaConfig, topic: &str) -> Result<Approvals, ControlTopicError> {
    let unreachable = |detail: String| ControlTopicError::Unreachable {
        brokers: kafka.brokers.clone(),
        topic: topic.to_owned(),
        detail,
    };
    let consumer = consumer(kafka, &format!("cli-{}", Uuid::now_v7().simple()))?;
    let partitions = partitions(&consumer, kafka, topic).map_err(unreachable)?;
    let approvals = Approvals::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, BROKER_TIMEOUT)
            .map_err(|e| unreachable(e.to_string()))?;
        if high <= low {
            continue;
        }
        let mut list = TopicPartitionList::new();
        let _ = list.add_partition_offset(topic, partition, Offset::Beginning);
        consumer
            .assign(&list)
            .map_err(|e| unreachable(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + BROKER_TIMEOUT;
        loop {
            if tokio::time::Instant::now() > deadline {
                return Err(unreachable(format!(
                    "the topic did not deliver offsets {low}..{high} in time"
                )));
            }
            let Some(received) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let received = received.map_err(|e| unreachable(e.to_string()))?;
            if let Some(message) = received
                .payload()
                .and_then(|p| serde_json::from_slice::<Message>(p).ok())
                && approvals.apply(&message)
            {
                tracing::debug!(?message, "approval change read");
            }
            if received.offset() + 1 >= high {
                break;
            }
        }
    }
    Ok(approvals)
}

/// Produces `message` on the topic.
///
/// # Errors
/// When the brokers cannot be reached.
pub fn produce(
    kafka: &KafkaConfig,
    topic: &str,
    message: &Message,
) -> Result<(), ControlTopicError> {
    let producer = producer(kafka)?;
    send(&producer, topic, message).map_err(|detail| ControlTopicError::Unreachable {
        brokers: kafka.brokers.clone(),
        topic: topic.to_owned(),
        detail,
    })
}
