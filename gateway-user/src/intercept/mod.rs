//! Kernel interception: loads the eBPF programs, fills their maps from the configuration,
//! attaches them to the managed cgroup, and answers "who opened this accepted socket, and
//! where were they going?". The only module that is privileged or `unsafe`-adjacent.

pub mod attribution;
pub mod cgroup;
mod loader;
pub mod privilege;

pub use attribution::{FlowTable, Origin};
pub use cgroup::{CgroupError, ManagedCgroup, join_cgroup};
pub use loader::{Interceptor, gateway_config, target_entries_v4, target_entries_v6};

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
    /// A program could not be loaded or attached.
    #[error("eBPF program {program}: {source}")]
    Program {
        /// Program name.
        program: &'static str,
        /// The error.
        source: aya::programs::ProgramError,
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
    /// The cgroup file could not be opened for attaching.
    #[error("opening cgroup {path} for attaching: {source}")]
    OpenCgroup {
        /// The cgroup directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}
