//! Kernel interception: loads the eBPF programs, fills their maps from the configuration,
//! attaches them to the managed cgroup, and answers "who opened this accepted socket, and
//! where were they going?". The only module that is privileged or `unsafe`-adjacent.

pub mod attribution;
pub mod cgroup;
pub mod counters;
mod loader;
pub mod privilege;
pub mod routes;
pub mod status;

pub use attribution::{FlowTable, Origin};
pub use cgroup::{CgroupError, ManagedCgroup, join_cgroup};
use loader::map_error as map_error_of;
pub use loader::{
    Interceptor, PINNED_MAPS, down, gateway_cgroup_path, gateway_config, host_entries, is_up,
    target_entries_v4, target_entries_v6, up,
};

use std::path::PathBuf;

/// Why interception could not start. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum InterceptError {
    /// The process lacks the privileges to load and attach eBPF programs.
    #[error(
        "loading eBPF programs needs root (or CAP_BPF + CAP_NET_ADMIN, and write access to the \
         cgroup): run `sudo tollgate serve ...`, or set interception.mode = \"off\" to accept only \
         direct connections"
    )]
    NotPrivileged,
    /// This binary was built with `AYA_BUILD_SKIP=1` and carries no eBPF object.
    #[error(
        "this tollgate binary was built without its eBPF programs (AYA_BUILD_SKIP): rebuild with \
         `cargo xtask build`, or set interception.mode = \"off\""
    )]
    NotBuilt,
    /// The managed cgroup could not be prepared.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// The kernel refused to load the object (verifier, missing feature).
    #[error("loading eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    /// A program could not be attached (or loaded, for a reason other than the verifier).
    #[error("eBPF program {program}: {source}")]
    Program {
        /// Program name.
        program: &'static str,
        /// The error.
        source: aya::programs::ProgramError,
    },
    /// The kernel verifier rejected a program (the full log is logged at debug level).
    #[error(
        "eBPF program {program} was rejected by the kernel verifier: {reason} ({io_error}); run \
         with TOLLGATE_LOG=debug for the full verifier log"
    )]
    Rejected {
        /// Program name.
        program: &'static str,
        /// The verifier's last complaint.
        reason: String,
        /// The syscall error.
        io_error: std::io::Error,
    },
    /// A map is missing from the object (a build mismatch) or could not be written.
    #[error("eBPF map {map}: {detail}")]
    Map {
        /// Map name.
        map: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// The listener addresses do not allow redirects (e.g. none for a family a target uses).
    #[error("{0}")]
    Listener(String),
    /// A program could not be attached to an interface.
    #[error(
        "eBPF program {program} on interface {interface}: {source} (does the interface exist in this network namespace?)"
    )]
    Interface {
        /// Program name.
        program: &'static str,
        /// The interface.
        interface: String,
        /// The error.
        source: aya::programs::ProgramError,
    },
    /// The kernel lacks a feature a program needs.
    #[error("eBPF program {program} needs {feature}, which this kernel lacks: {detail}")]
    Feature {
        /// Program name.
        program: &'static str,
        /// The missing feature, named.
        feature: &'static str,
        /// What the kernel said.
        detail: String,
    },
    /// Something the host must provide is missing.
    #[error("this host has no {0}")]
    Missing(&'static str),
    /// `tollgate up` found its programs already pinned.
    #[error(
        "Tollgate is already up (programs pinned in {}): `tollgate status` shows them, \
         `tollgate down` removes them",
        .0.display()
    )]
    AlreadyUp(PathBuf),
    /// Pinning to (or unpinning from) bpffs failed.
    #[error("bpffs {path}: {detail}")]
    Pin {
        /// The pin path.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The policy routes could not be installed.
    #[error(transparent)]
    Routes(#[from] routes::RouteError),
    /// The cgroup file could not be opened for attaching.
    #[error("opening cgroup {path} for attaching: {source}")]
    OpenCgroup {
        /// The cgroup directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl InterceptError {
    /// Wraps a program error; a verifier rejection becomes one readable line, with the full
    /// log at debug level.
    pub(crate) fn program(program: &'static str, source: aya::programs::ProgramError) -> Self {
        match source {
            aya::programs::ProgramError::LoadError {
                io_error,
                verifier_log,
            } => {
                let log = verifier_log.to_string();
                tracing::debug!(program, verifier_log = %log, "eBPF verifier log");
                Self::Rejected {
                    program,
                    reason: verifier_complaint(&log),
                    io_error,
                }
            }
            source => Self::Program { program, source },
        }
    }
}

/// The verifier's complaint: the last line of its log before the statistics it ends with.
fn verifier_complaint(log: &str) -> String {
    log.lines()
        .map(str::trim)
        .rfind(|line| {
            !line.is_empty()
                && !line.starts_with("verification time")
                && !line.starts_with("stack depth")
                && !line.starts_with("processed ")
        })
        .unwrap_or("no verifier output")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::verifier_complaint;

    #[test]
    fn the_complaint_is_the_last_line_before_the_statistics() {
        let log = "0: (bf) r6 = r1\n132: (61) r9 = *(u32 *)(r9 +0)\ndereference of modified ctx ptr R9 off=28 disallowed\nverification time 196 usec\nstack depth 264\nprocessed 69 insns (limit 1000000)\n";
        assert_eq!(
            verifier_complaint(log),
            "dereference of modified ctx ptr R9 off=28 disallowed"
        );
        assert_eq!(verifier_complaint(""), "no verifier output");
    }
}
