//! The control topic: orders every gateway replica reads (`[recording.kafka] control_topic`,
//! by default the recording topic's name with `.control` after it).
//!
//! `tollgate sessions kill` on any host produces a [`Request`] there; every replica reads the
//! topic from the beginning, carries the request out against its own live sessions, and the
//! replica that ended something produces an acknowledgement, which the command waits for.
//! Locks travel in the acknowledgements too, so every replica (also one started later)
//! refuses a locked identity until its lock runs out.

use std::{thread::JoinHandle, time::Duration};

use rdkafka::{
    ClientConfig, Message as _, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer as _},
    error::RDKafkaErrorCode,
    producer::{BaseProducer, BaseRecord, Producer as _},
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{KillError, LiveSessions, Reply, Request};
use crate::config::KafkaConfig;

/// How long a broker round trip may take before the command gives up.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// The key of every control message: one key, one partition, so replicas see orders (a lock,
/// then its lifting) in the order they were given.
const ORDER_KEY: &str = "control";
/// How long the gateway waits between attempts to reach the topic.
const RETRY: Duration = Duration::from_secs(2);

/// A message on the control topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlMessage {
    /// An order, for every replica.
    Request {
        /// Matches the acknowledgements to the order.
        request_id: Uuid,
        /// The order.
        request: Request,
    },
    /// What one replica did with an order.
    Ack {
        /// The order's id.
        request_id: Uuid,
        /// The replica (`host/pid`).
        gateway: String,
        /// What it did.
        reply: Reply,
    },
}

/// Errors of the control topic.
#[derive(Debug, thiserror::Error)]
pub enum ControlTopicError {
    /// librdkafka refused the settings.
    #[error("control topic: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The SASL password could not be read.
    #[error(transparent)]
    Password(#[from] crate::recording::kafka::KafkaSinkError),
    /// The broker did not answer.
    #[error(
        "cannot reach the Kafka brokers {brokers} for the control topic '{topic}' ({detail}); \
         check [recording.kafka] brokers, or give the order on the gateway's host with --local"
    )]
    Unreachable {
        /// Bootstrap brokers.
        brokers: String,
        /// Control topic.
        topic: String,
        /// What failed.
        detail: String,
    },
}

/// The control topic of `config`.
#[must_use]
pub fn topic(config: &KafkaConfig) -> String {
    config
        .control_topic
        .clone()
        .unwrap_or_else(|| format!("{}.control", config.topic))
}

/// librdkafka settings to reach the brokers of `config` (TLS, SASL as configured).
pub(crate) fn client_config(config: &KafkaConfig) -> Result<ClientConfig, ControlTopicError> {
    Ok(crate::recording::kafka::base_client(
        &config.brokers,
        &config.client,
        crate::recording::kafka::sasl_password(config)?.as_deref(),
        &[("reconnect.backoff.max.ms", "2000")],
    ))
}

pub(crate) fn consumer(
    config: &KafkaConfig,
    name: &str,
) -> Result<BaseConsumer, ControlTopicError> {
    Ok(client_config(config)?
        .set("group.id", format!("tollgate-control-{name}"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("client.id", format!("tollgate-control-{name}"))
        .create()?)
}

pub(crate) fn producer(config: &KafkaConfig) -> Result<BaseProducer, ControlTopicError> {
    Ok(client_config(config)?
        .set("client.id", "tollgate-control")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "10000")
        .create()?)
}

fn send(producer: &BaseProducer, topic: &str, message: &ControlMessage) -> Result<(), String> {
    let payload = serde_json::to_vec(message).map_err(|e| e.to_string())?;
    producer
        .send(BaseRecord::to(topic).key(ORDER_KEY).payload(&payload))
        .map_err(|(e, _)| e.to_string())?;
    producer.flush(BROKER_TIMEOUT).map_err(|e| e.to_string())
}

/// Partitions of `topic`, creating it (one partition: orders stay in order) when missing.
pub(crate) fn partitions(
    consumer: &BaseConsumer,
    config: &KafkaConfig,
    topic: &str,
) -> Result<Vec<i32>, String> {
    for attempt in 0..2 {
        let metadata = consumer
            .fetch_metadata(Some(topic), BROKER_TIMEOUT)
            .map_err(|e| e.to_string())?;
        let found: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| {
                t.partitions()
                    .iter()
                    .map(rdkafka::metadata::MetadataPartition::id)
            })
            .collect();
        if !found.is_empty() {
            return Ok(found);
        }
        if attempt == 0 {
            create_topic(config, topic)?;
        }
    }
    Err(format!("topic '{topic}' has no partitions"))
}

/// Creates `topic` with one partition (an existing one is fine).
fn create_topic(config: &KafkaConfig, topic: &str) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = client_config(config)
        .map_err(|e| e.to_string())?
        .create()
        .map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let options = AdminOptions::new().operation_timeout(Some(BROKER_TIMEOUT));
    let created = runtime
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
            &options,
        ))
        .map_err(|e| e.to_string())?;
    for result in created {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(format!("cannot create topic '{topic}': {code}")),
        }
    }
    Ok(())
}

/// Starts the gateway's reader of the control topic (a thread, until `shutdown`).
///
/// # Errors
/// When librdkafka refuses the settings.
pub fn start(
    config: &KafkaConfig,
    gateway: String,
    live: LiveSessions,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, ControlTopicError> {
    let topic = topic(config);
    let consumer = consumer(config, &gateway.replace('/', "-"))?;
    let producer = producer(config)?;
    let config = config.clone();
    std::thread::Builder::new()
        .name("tollgate-control".into())
        .spawn(move || {
            follow(
                &config, &consumer, &producer, &topic, &gateway, &live, &shutdown,
            );
        })
        .map_err(|e| {
            ControlTopicError::Kafka(rdkafka::error::KafkaError::ClientCreation(e.to_string()))
        })
}

fn follow(
    config: &KafkaConfig,
    consumer: &BaseConsumer,
    producer: &BaseProducer,
    topic: &str,
    gateway: &str,
    live: &LiveSessions,
    shutdown: &CancellationToken,
) {
    if !read_from_beginning(consumer, config, topic, "control", shutdown) {
        return;
    }
    while !shutdown.is_cancelled() {
        let Some(received) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = match received {
            Ok(message) => message,
            Err(error) => {
                tracing::debug!(%error, "control topic read failed");
                continue;
            }
        };
        let Some(parsed) = message
            .payload()
            .and_then(|p| serde_json::from_slice::<ControlMessage>(p).ok())
        else {
            continue;
        };
        if let Some(ack) = handle(&parsed, gateway, live)
            && let Err(detail) = send(producer, topic, &ack)
        {
            tracing::warn!(topic, %detail, "cannot acknowledge a control order");
        }
    }
}

/// Assigns every partition of `topic` to `consumer` from the beginning, waiting (and saying so
/// once) while the brokers are away; false when `shutdown` came first or the assignment
/// failed. `what` names the topic in log lines (`control`, `approvals`).
pub(crate) fn read_from_beginning(
    consumer: &BaseConsumer,
    config: &KafkaConfig,
    topic: &str,
    what: &str,
    shutdown: &CancellationToken,
) -> bool {
    let mut warned = false;
    let assigned = loop {
        if shutdown.is_cancelled() {
            return false;
        }
        match partitions(consumer, config, topic) {
            Ok(partitions) => break partitions,
            Err(detail) => {
                if !warned {
                    tracing::warn!(topic, %detail, "{what} topic unreachable; retrying");
                    warned = true;
                }
                std::thread::sleep(RETRY);
            }
        }
    };
    let mut list = TopicPartitionList::new();
    for partition in &assigned {
        let _ = list.add_partition_offset(topic, *partition, Offset::Beginning);
    }
    if let Err(error) = consumer.assign(&list) {
        tracing::error!(topic, %error, "cannot read the {what} topic");
        return false;
    }
    tracing::info!(
        topic,
        partitions = assigned.len(),
        "following the {what} topic"
    );
    true
}

/// Carries out a control message on this replica; the acknowledgement to send, if any.
fn handle(message: &ControlMessage, gateway: &str, live: &LiveSessions) -> Option<ControlMessage> {
    match message {
        ControlMessage::Request {
            request_id,
            request,
        } => {
            let reply = live.apply(request);
            tracing::info!(?request, ?reply, "control order from the control topic");
            // A replica without the session stays silent; the one that has it answers.
            let silent = matches!(reply, Reply::Failed(KillError::NotFound(_)));
            (!silent).then(|| ControlMessage::Ack {
                request_id: *request_id,
                gateway: gateway.to_owned(),
                reply,
            })
        }
        ControlMessage::Ack {
            reply: Reply::Done(outcome),
            gateway: from,
            ..
        } if from != gateway => {
            // A lock another replica set holds here too.
            if let Some(lock) = &outcome.locked {
                let killed = live.lock(lock);
                if !killed.is_empty() {
                    tracing::info!(identity = %lock.identity, ?killed, "locked identity's sessions ended");
                }
            }
            None
        }
        ControlMessage::Ack { .. } => None,
    }
}

/// Produces `request` on the control topic and collects the replicas' acknowledgements for
/// `wait` (returning early, a moment after the first one that ended a session).
///
/// # Errors
/// When the brokers cannot be reached.
pub fn order(
    config: &KafkaConfig,
    request: &Request,
    wait: Duration,
) -> Result<Vec<(String, Reply)>, ControlTopicError> {
    let topic = topic(config);
    let unreachable = |detail: String| ControlTopicError::Unreachable {
        brokers: config.brokers.clone(),
        topic: topic.clone(),
        detail,
    };
    let consumer = consumer(config, &format!("cli-{}", Uuid::now_v7().simple()))?;
    let producer = producer(config)?;
    let partitions = partitions(&consumer, config, &topic).map_err(unreachable)?;
    // Read from where the topic ends now, so every acknowledgement is seen.
    let mut list = TopicPartitionList::new();
    for partition in partitions {
        let (_, high) = consumer
            .fetch_watermarks(&topic, partition, BROKER_TIMEOUT)
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = list.add_partition_offset(&topic, partition, Offset::Offset(high));
    }
    consumer
        .assign(&list)
        .map_err(|e| unreachable(e.to_string()))?;
    let request_id = Uuid::now_v7();
    send(
        &producer,
        &topic,
        &ControlMessage::Request {
            request_id,
            request: request.clone(),
        },
    )
    .map_err(unreachable)?;
    let deadline = tokio::time::Instant::now() + wait;
    let mut acks = Vec::new();
    let mut settle: Option<tokio::time::Instant> = None;
    loop {
        let now = tokio::time::Instant::now();
        let until = settle.map_or(deadline, |s| s.min(deadline));
        if now >= until {
            break;
        }
        let Some(Ok(message)) = consumer.poll(until - now) else {
            continue;
        };
        if let Some(ControlMessage::Ack {
            request_id: id,
            gateway,
            reply,
        }) = message
            .payload()
            .and_then(|p| serde_json::from_slice::<ControlMessage>(p).ok())
            && id == request_id
        {
            if matches!(&reply, Reply::Done(o) if !o.killed.is_empty()) && settle.is_none() {
                settle = Some(tokio::time::Instant::now() + Duration::from_secs(1));
            }
            acks.push((gateway, reply));
        }
    }
    Ok(acks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{IdentityLock, KillOrder, KillOutcome};

    fn order() -> KillOrder {
        KillOrder {
            by: "alice".into(),
            reason: None,
        }
    }

    #[test]
    fn only_the_replica_with_the_session_answers() {
        let live = LiveSessions::new();
        let id = Uuid::now_v7();
        let _registration = live.register(id);
        let kill = |session: String| ControlMessage::Request {
            request_id: Uuid::nil(),
            request: Request::Kill {
                session,
                order: order(),
                lock_until: None,
            },
        };
        assert_eq!(
            handle(&kill(Uuid::now_v7().to_string()), "a/1", &live),
            None
        );
        let ack = handle(&kill(id.to_string()), "a/1", &live).expect("acknowledged");
        assert!(
            matches!(ack, ControlMessage::Ack { reply: Reply::Done(ref o), .. } if o.killed == vec![id])
        );
    }

    #[test]
    fn locks_in_other_replicas_acknowledgements_hold_here() {
        let live = LiveSessions::new();
        let lock = IdentityLock {
            identity: "agent".into(),
            until: time::OffsetDateTime::now_utc() + time::Duration::minutes(1),
            order: order(),
        };
        let ack = ControlMessage::Ack {
            request_id: Uuid::nil(),
            gateway: "b/2".into(),
            reply: Reply::Done(KillOutcome {
                killed: vec![],
                locked: Some(lock),
            }),
        };
        assert_eq!(handle(&ack, "a/1", &live), None);
        assert!(live.locked("agent").is_some());
    }
}
