//! Tollgate: a MySQL gateway that every MySQL-bound connection on a host is steered into by
//! eBPF, so each session can be attributed, recorded and (in later stages) masked and guarded.
//!
//! Map (see `ARCHITECTURE.md`): [`config`] loads `tollgate.toml`; [`server`] accepts and runs
//! [`session`]s; [`intercept`] loads the eBPF programs and answers who opened a socket;
//! [`upstream`] dials the database; [`protocol`] holds MySQL wire encodings; [`recording`]
//! writes session events to the embedded store, which [`sessions`] reads back.

pub mod admin;
pub mod approvals;
pub mod auth;
pub mod cli;
pub mod config;
pub mod control;
pub mod guard;
pub mod identity;
pub mod index;
pub mod intercept;
pub mod mask;
pub mod metrics;
pub mod policy;
pub mod protocol;
pub mod recording;
pub mod reload;
pub mod server;
pub mod session;
pub mod sessions;
pub mod telemetry;
pub mod tls;
pub mod token;
pub mod upstream;
pub mod workers;
