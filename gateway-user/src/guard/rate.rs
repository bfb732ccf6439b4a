//! Rate guardrails (`[[rate_limits]]`): statements per second and rows read per minute, per
//! identity or per target, so a runaway agent is slowed down or stopped with a clear error.
//!
//! Each rule keeps token buckets, one per identity (or target): a statement takes a token
//! (refilled at `statements_per_second`, up to `burst`), and the rows a statement returned are
//! taken from a second bucket (refilled at `rows_per_minute` per minute, up to that many). A
//! statement that finds a bucket empty waits for it (`action = "delay"`, at most `max_delay`)
//! or is refused (`action = "block"`, or when the wait would be longer). Buckets live in the
//! gateway process: with several replicas, each enforces the limit on its own sessions.

use std::{collections::HashMap, time::Duration};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// What a limit is counted per.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RateScope {
    /// Each identity on its own (sessions whose login the gateway relays are not limited).
    #[default]
    Identity,
    /// Each target, whoever uses it.
    Target,
}

/// What happens to a statement over the limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateAction {
    /// Wait until the bucket has room again (at most `max_delay`, else refused).
    #[default]
    Delay,
    /// Refuse at once.
    Block,
}

/// `[[rate_limits]]`: one rate guardrail.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// The rule's name, in errors and recordings.
    pub name: String,
    /// Counted per identity (default) or per target.
    #[serde(default)]
    pub per: RateScope,
    /// Statements per second (`COM_QUERY`, `COM_STMT_EXECUTE`), on average.
    #[serde(default)]
    pub statements_per_second: Option<f64>,
    /// Statements that may come at once above the average (default: one second's worth).
    #[serde(default)]
    pub burst: Option<f64>,
    /// Rows read (returned to the client) per minute.
    #[serde(default)]
    pub rows_per_minute: Option<u64>,
    /// Delay (default) or block.
    #[serde(default)]
    pub action: RateAction,
    /// The longest a statement is delayed; past it, it is refused.
    #[serde(default = "default_max_delay", with = "humantime_serde")]
    pub max_delay: Duration,
    /// Identities in any of these groups are held to it (`*`: everyone, the default).
    #[serde(default = "super::everyone")]
    pub groups: Vec<String>,
    /// Identities in any of these groups are exempt.
    #[serde(default)]
    pub exempt_groups: Vec<String>,
    /// Only on these targets (by name); all when empty.
    #[serde(default)]
    pub targets: Vec<String>,
}

fn default_max_delay() -> Duration {
    Duration::from_secs(5)
}

impl RateLimitConfig {
    fn applies(&self, target: &str, groups: &[String]) -> bool {
        super::applies(
            &self.targets,
            &self.groups,
            &self.exempt_groups,
            target,
            groups,
        )
    }

    /// What is wrong with the rule, if anything (for the configuration loader).
    #[must_use]
    pub fn problem(&self) -> Option<&'static str> {
        let positive = |v: Option<f64>| v.is_none_or(|v| v.is_finite() && v > 0.0);
        if self.statements_per_second.is_none() && self.rows_per_minute.is_none() {
            Some("give statements_per_second, rows_per_minute or both")
        } else if !positive(self.statements_per_second) || !positive(self.burst) {
            Some("statements_per_second and burst must be positive numbers")
        } else if self.rows_per_minute == Some(0) {
            Some("rows_per_minute must be at least 1")
        } else {
            None
        }
    }
}

/// A limit a statement ran into: recorded with the statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RateLimitHit {
    /// The rule.
    pub rule: String,
    /// What it counts per.
    pub per: RateScope,
    /// The identity or target whose bucket was empty.
    pub key: String,
    /// What ran out: `statements` or `rows`.
    pub limit: String,
    /// How long the statement was held (rounded up: a held statement shows at least 1).
    pub waited_ms: u64,
    /// True when the statement was refused (error 1226).
    pub refused: bool,
}

impl RateLimitHit {
    /// The error a refused statement gets.
    #[must_use]
    pub fn message(&self) -> String {
        let per = match self.per {
            RateScope::Identity => "identity",
            RateScope::Target => "target",
        };
        format!(
            "Tollgate: rate limit '{}' reached for {per} '{}' ({}): slow down and retry later",
            self.rule, self.key, self.limit
        )
    }
}

/// A token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(capacity: f64, now: Instant) -> Self {
        Self {
            tokens: capacity,
            at: now,
        }
    }

    fn refill(&mut self, rate_per_second: f64, capacity: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate_per_second).min(capacity);
        self.at = now;
    }

    /// How long until the bucket holds `need` tokens.
    fn wait_for(&self, need: f64, rate_per_second: f64) -> Duration {
        if self.tokens >= need {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(((need - self.tokens) / rate_per_second).min(86_400.0))
        }
    }
}

#[derive(Debug, Default)]
struct Buckets {
    statements: HashMap<(String, String), Bucket>,
    rows: HashMap<(String, String), Bucket>,
}

/// The buckets of every rule, shared by the gateway's sessions.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<Buckets>,
}

/// Who a statement is counted as.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The identity, when the gateway knows it.
    pub identity: Option<&'a str>,
    /// Its groups.
    pub groups: &'a [String],
    /// The target.
    pub target: &'a str,
}

impl Subject<'_> {
    fn key(&self, scope: RateScope) -> Option<String> {
        match scope {
            RateScope::Identity => self.identity.map(str::to_owned),
            RateScope::Target => Some(self.target.to_owned()),
        }
    }
}

/// Whether a statement may go now.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Yes.
    Go,
    /// After waiting this long (the limit it ran into, with `waited_ms` set).
    Wait(Duration, RateLimitHit),
    /// No: refuse it.
    Refuse(RateLimitHit),
}

impl RateLimiter {
    /// A limiter with no history.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a statement token from every rule that applies to `subject`; says whether the
    /// statement goes now, after a wait, or not at all (then nothing is taken).
    pub fn admit(&self, rules: &[RateLimitConfig], subject: Subject<'_>) -> Admission {
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        let mut longest: Option<(Duration, RateLimitHit)> = None;
        let mut take = Vec::new();
        for rule in rules
            .iter()
            .filter(|r| r.applies(subject.target, subject.groups))
        {
            let Some(key) = subject.key(rule.per) else {
                continue;
            };
            let hit = |limit: &str, wait: Duration| RateLimitHit {
                rule: rule.name.clone(),
                per: rule.per,
                key: key.clone(),
                limit: limit.to_owned(),
                waited_ms: u64::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(u64::MAX),
                refused: false,
            };
            let mut wait = Duration::ZERO;
            let mut limit = None;
            if let Some(rate) = rule.statements_per_second {
                let capacity = rule.burst.unwrap_or(rate).max(1.0);
                let bucket = buckets
                    .statements
                    .entry((rule.name.clone(), key.clone()))
                    .or_insert_with(|| Bucket::full(capacity, now));
                bucket.refill(rate, capacity, now);
                let needed = bucket.wait_for(1.0, rate);
                if needed > wait {
                    wait = needed;
                    limit = Some(format!("{rate} statements/s"));
                }
                take.push((rule.name.clone(), key.clone()));
            }
            if let Some(per_minute) = rule.rows_per_minute {
                #[expect(clippy::cast_precision_loss, reason = "a rate, not an amount")]
                let capacity = per_minute as f64;
                let bucket = buckets
                    .rows
                    .entry((rule.name.clone(), key.clone()))
                    .or_insert_with(|| Bucket::full(capacity, now));
                bucket.refill(capacity / 60.0, capacity, now);
                // Rows are paid after the fact: a statement may go while the bucket is not
                // in debt.
                let needed = bucket.wait_for(f64::MIN_POSITIVE, capacity / 60.0);
                if needed > wait {
                    wait = needed;
                    limit = Some(format!("{per_minute} rows/min"));
                }
            }
            if let Some(limit) = limit {
                let refuse = rule.action == RateAction::Block || wait > rule.max_delay;
                let mut found = hit(&limit, if refuse { Duration::ZERO } else { wait });
                if refuse {
                    found.refused = true;
                    return Admission::Refuse(found);
                }
                if longest.as_ref().is_none_or(|(w, _)| wait > *w) {
                    longest = Some((wait, found));
                }
            }
        }
        for key in take {
            if let Some(bucket) = buckets.statements.get_mut(&key) {
                // May go below zero while the statement waits for the token it takes.
                bucket.tokens -= 1.0;
            }
        }
        match longest {
            Some((wait, hit)) => Admission::Wait(wait, hit),
            None => Admission::Go,
        }
    }

    /// Charges the rows a statement returned to every rule that applies to `subject`.
    pub fn count_rows(&self, rules: &[RateLimitConfig], subject: Subject<'_>, rows: u64) {
        if rows == 0 {
            return;
        }
        let mut buckets = self.buckets.lock();
        for rule in rules
            .iter()
            .filter(|r| r.applies(subject.target, subject.groups))
        {
            if let (Some(_), Some(key)) = (rule.rows_per_minute, subject.key(rule.per))
                && let Some(bucket) = buckets.rows.get_mut(&(rule.name.clone(), key))
            {
                #[expect(clippy::cast_precision_loss, reason = "row counts far below 2^52")]
                let rows = rows as f64;
                bucket.tokens -= rows;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(toml_text: &str) -> RateLimitConfig {
        toml::from_str(toml_text).expect("rule")
    }

    fn agent() -> Subject<'static> {
        Subject {
            identity: Some("agent"),
            groups: &[],
            target: "db",
        }
    }

    #[tokio::test(start_paused = true)]
    async fn statements_over_the_rate_wait_then_go_again() {
        let rules = [rule("name = \"slow\"\nstatements_per_second = 2.0")];
        let limiter = RateLimiter::new();
        assert_eq!(limiter.admit(&rules, agent()), Admission::Go);
        assert_eq!(limiter.admit(&rules, agent()), Admission::Go);
        let Admission::Wait(wait, hit) = limiter.admit(&rules, agent()) else {
            panic!("the third statement waits");
        };
        assert_eq!(wait, Duration::from_millis(500));
        assert_eq!((hit.rule.as_str(), hit.key.as_str()), ("slow", "agent"));
        assert!(!hit.refused);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(limiter.admit(&rules, agent()), Admission::Go);
        // Other identities have their own bucket.
        let bob = Subject {
            identity: Some("bob"),
            ..agent()
        };
        assert_eq!(limiter.admit(&rules, bob), Admission::Go);
    }

    #[tokio::test(start_paused = true)]
    async fn block_refuses_and_long_waits_are_refused() {
        let rules = [rule(
            "name = \"hard\"\nstatements_per_second = 1.0\naction = \"block\"",
        )];
        let limiter = RateLimiter::new();
        assert_eq!(limiter.admit(&rules, agent()), Admission::Go);
        let Admission::Refuse(hit) = limiter.admit(&rules, agent()) else {
            panic!("refused");
        };
        assert!(hit.refused);
        assert_eq!(
            hit.message(),
            "Tollgate: rate limit 'hard' reached for identity 'agent' (1 statements/s): slow \
             down and retry later"
        );
        let patient = [rule(
            "name = \"p\"\nstatements_per_second = 0.1\nmax_delay = \"1s\"",
        )];
        assert_eq!(limiter.admit(&patient, agent()), Admission::Go);
        assert!(matches!(
            limiter.admit(&patient, agent()),
            Admission::Refuse(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn rows_read_are_paid_after_the_fact() {
        let rules = [rule(
            "name = \"rows\"\nrows_per_minute = 600\naction = \"block\"",
        )];
        let limiter = RateLimiter::new();
        assert_eq!(limiter.admit(&rules, agent()), Admission::Go);
        limiter.count_rows(&rules, agent(), 1000);
        let Admission::Refuse(hit) = limiter.admit(&rules, agent()) else {
            panic!("in debt: refused");
        };
        assert_eq!(hit.limit, "600 rows/min");
        // 400 rows of debt at 10 rows/s: 40 s later it may go again.
        tokio::time::advance(Duration::from_secs(41)).await;
        assert_eq!(limiter.admit(&rules, agent()), Admission::Go);
    }

    #[test]
    fn exempt_groups_relayed_sessions_and_target_scope() {
        let rules = [rule(
            "name = \"r\"\nstatements_per_second = 1.0\naction = \"block\"\nexempt_groups = [\"dba\"]",
        )];
        let limiter = RateLimiter::new();
        let dba = ["dba".to_owned()];
        let admin = Subject {
            groups: &dba,
            ..agent()
        };
        for _ in 0..5 {
            assert_eq!(limiter.admit(&rules, admin), Admission::Go);
        }
        let relayed = Subject {
            identity: None,
            ..agent()
        };
        for _ in 0..5 {
            assert_eq!(limiter.admit(&rules, relayed), Admission::Go);
        }
        let per_target = [rule(
            "name = \"t\"\nper = \"target\"\nstatements_per_second = 1.0\naction = \"block\"",
        )];
        assert_eq!(limiter.admit(&per_target, relayed), Admission::Go);
        assert!(matches!(
            limiter.admit(&per_target, agent()),
            Admission::Refuse(_)
        ));
    }

    #[test]
    fn rules_without_a_limit_are_reported() {
        assert!(rule("name = \"x\"").problem().is_some());
        assert!(
            rule("name = \"x\"\nstatements_per_second = -1.0")
                .problem()
                .is_some()
        );
        assert!(
            rule("name = \"x\"\nrows_per_minute = 10")
                .problem()
                .is_none()
        );
    }
}
