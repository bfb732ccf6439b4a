//! The recorder's state as sessions and the metrics endpoint see it: whether events can be
//! recorded right now, and the counters behind the metrics.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Shared by the sessions, the writer, the shipper and the metrics endpoint. Every field is a
/// plain atomic: reading it never waits.
#[derive(Debug, Default)]
pub struct RecorderHealth {
    /// Position just past the last byte the writer appended to the store.
    pub written_end: AtomicU64,
    /// Position up to which the broker has acknowledged every event (with Kafka).
    pub acked_end: AtomicU64,
    /// Most bytes allowed between `acked_end` and `written_end` (0: no limit, no Kafka).
    pub spool_max_bytes: AtomicU64,
    /// Whether the writer has stopped (a store write failed): nothing can be recorded.
    pub writer_stopped: AtomicBool,
    /// Whether the Kafka sink is configured.
    pub kafka: AtomicBool,
    /// Whether the broker answered lately (with Kafka).
    pub broker_up: AtomicBool,
    /// Events the writer appended.
    pub events_written: AtomicU64,
    /// Events the broker acknowledged.
    pub events_acked: AtomicU64,
    /// Deliveries the broker refused or that failed (each is sent again).
    pub delivery_errors: AtomicU64,
    /// `gap` events recorded.
    pub gaps: AtomicU64,
    /// Events lost (not recorded) by fail-open sessions.
    pub lost_events: AtomicU64,
    /// Statements refused by fail-closed sessions because events could not be recorded.
    pub refused_statements: AtomicU64,
    /// Events in the queue between sessions and the writer.
    pub queue_depth: AtomicU64,
    /// Capacity of that queue.
    pub queue_capacity: AtomicU64,
}

/// Why events cannot be recorded right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unrecordable {
    /// The spool holds as many bytes as it may: the broker is away or slow.
    SpoolFull,
    /// The queue to the writer is full.
    QueueFull,
    /// The writer has stopped.
    WriterStopped,
}

impl RecorderHealth {
    /// Bytes in the spool: written but not yet acknowledged by the broker (0 without Kafka).
    #[must_use]
    pub fn spool_bytes(&self) -> u64 {
        if !self.kafka.load(Ordering::Relaxed) {
            return 0;
        }
        self.written_end
            .load(Ordering::Relaxed)
            .saturating_sub(self.acked_end.load(Ordering::Relaxed))
    }

    /// Why events cannot be recorded right now, if they cannot.
    #[must_use]
    pub fn unrecordable(&self) -> Option<Unrecordable> {
        if self.writer_stopped.load(Ordering::Relaxed) {
            return Some(Unrecordable::WriterStopped);
        }
        let max = self.spool_max_bytes.load(Ordering::Relaxed);
        (max > 0 && self.spool_bytes() >= max).then_some(Unrecordable::SpoolFull)
    }

    /// The metrics in the Prometheus text format.
    #[must_use]
    pub fn prometheus(&self) -> String {
        let mut text = String::new();
        for (name, kind, help, value) in self.samples() {
            text.push_str("# HELP ");
            text.push_str(name);
            text.push(' ');
            text.push_str(help);
            text.push_str("\n# TYPE ");
            text.push_str(name);
            text.push(' ');
            text.push_str(kind);
            text.push('\n');
            text.push_str(name);
            text.push(' ');
            text.push_str(&value.to_string());
            text.push('\n');
        }
        text.push_str(&crate::intercept::counters::prometheus());
        text
    }

    /// Every metric: name, type, help and value.
    fn samples(&self) -> [(&'static str, &'static str, &'static str, u64); 15] {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let flag = |flag: &AtomicBool| u64::from(flag.load(Ordering::Relaxed));
        [
            (
                "tollgate_recording_queue_depth",
                "gauge",
                "Events queued between sessions and the recording writer.",
                get(&self.queue_depth),
            ),
            (
                "tollgate_recording_queue_capacity",
                "gauge",
                "Capacity of the recording queue.",
                get(&self.queue_capacity),
            ),
            (
                "tollgate_recording_spool_bytes",
                "gauge",
                "Bytes of events written locally and not yet acknowledged by Kafka.",
                self.spool_bytes(),
            ),
            (
                "tollgate_recording_spool_max_bytes",
                "gauge",
                "Most bytes the spool may hold before the recording-failure policy applies.",
                get(&self.spool_max_bytes),
            ),
            (
                "tollgate_recording_broker_lag_events",
                "gauge",
                "Events written locally and not yet acknowledged by Kafka.",
                if self.kafka.load(Ordering::Relaxed) {
                    get(&self.events_written).saturating_sub(get(&self.events_acked))
                } else {
                    0
                },
            ),
            (
                "tollgate_recording_broker_up",
                "gauge",
                "1 when the Kafka broker answered lately.",
                flag(&self.broker_up),
            ),
            (
                "tollgate_recording_writer_stopped",
                "gauge",
                "1 when the recording writer has stopped after a store error.",
                flag(&self.writer_stopped),
            ),
            (
                "tollgate_recording_events_written_total",
                "counter",
                "Events appended to the local store.",
                get(&self.events_written),
            ),
            (
                "tollgate_recording_events_acked_total",
                "counter",
                "Events acknowledged by Kafka.",
                get(&self.events_acked),
            ),
            (
                "tollgate_recording_delivery_errors_total",
                "counter",
                "Kafka deliveries that failed (and were sent again).",
                get(&self.delivery_errors),
            ),
            (
                "tollgate_recording_gaps_total",
                "counter",
                "Gap events recorded by fail-open sessions.",
                get(&self.gaps),
            ),
            (
                "tollgate_recording_lost_events_total",
                "counter",
                "Events fail-open sessions could not record.",
                get(&self.lost_events),
            ),
            (
                "tollgate_recording_refused_statements_total",
                "counter",
                "Statements fail-closed sessions refused because they could not be recorded.",
                get(&self.refused_statements),
            ),
            (
                "tollgate_masked_cells_total",
                "counter",
                "Result cells masked by [[masking]] rules before the client and the recording saw them.",
                crate::mask::masked_cells_total(),
            ),
            (
                "tollgate_masking_refused_statements_total",
                "counter",
                "Statements refused by the masking rules' statement checks.",
                crate::mask::refused_statements_total(),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spool_is_full_at_its_limit_and_only_with_kafka() {
        let health = RecorderHealth::default();
        health.written_end.store(1000, Ordering::Relaxed);
        health.spool_max_bytes.store(500, Ordering::Relaxed);
        assert_eq!(health.unrecordable(), None, "no Kafka: no spool");
        health.kafka.store(true, Ordering::Relaxed);
        assert_eq!(health.unrecordable(), Some(Unrecordable::SpoolFull));
        health.acked_end.store(600, Ordering::Relaxed);
        assert_eq!(health.unrecordable(), None);
        health.writer_stopped.store(true, Ordering::Relaxed);
        assert_eq!(health.unrecordable(), Some(Unrecordable::WriterStopped));
        let text = health.prometheus();
        assert!(
            text.contains("\ntollgate_recording_spool_bytes 400\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE tollgate_recording_gaps_total counter\n"));
    }
}
