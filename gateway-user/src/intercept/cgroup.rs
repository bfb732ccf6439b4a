//! The cgroup Tollgate manages: created on start inside a cgroup v2 mount (never a mount's
//! root), removed on stop when Tollgate created it and it is empty.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

/// `CGROUP2_SUPER_MAGIC` from `linux/magic.h`.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// Why the managed cgroup could not be used. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The parent directory is not part of a cgroup v2 hierarchy.
    #[error(
        "interception.cgroup = {path}: {parent} is not inside a cgroup v2 mount (cgroup2 is \
         usually at /sys/fs/cgroup or, on hybrid hosts, /sys/fs/cgroup/unified); mount one with \
         `mount -t cgroup2 none DIR` or point interception.cgroup into it"
    )]
    NotCgroup2 {
        /// The configured cgroup.
        path: PathBuf,
        /// Its parent.
        parent: PathBuf,
    },
    /// The path is the root of a cgroup mount: steering every process on the host is refused.
    #[error(
        "interception.cgroup = {0} is the root of a cgroup mount; Tollgate only attaches to a \
         cgroup it creates below the root, e.g. {0}/tollgate"
    )]
    IsRoot(PathBuf),
    /// The cgroup does not exist (e.g. `tollgate run` before `tollgate serve`).
    #[error(
        "cgroup {0} does not exist: start the gateway first (`tollgate serve --config ...` creates \
         it), or check interception.cgroup"
    )]
    Missing(PathBuf),
    /// Creating the cgroup or moving a process into it failed.
    #[error("cgroup {path}: {action}: {source}{hint}")]
    Io {
        /// The cgroup.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The I/O error.
        source: std::io::Error,
        /// What to do about it, when known.
        hint: &'static str,
    },
}

/// A cgroup that Tollgate prepared; [`ManagedCgroup::remove`] undoes what it did.
#[derive(Debug)]
pub struct ManagedCgroup {
    path: PathBuf,
    created: bool,
}

impl ManagedCgroup {
    /// Creates the cgroup at `path` (or adopts it if it exists), after checking that its parent
    /// is in a cgroup v2 mount and that `path` is not a mount root.
    pub fn prepare(path: &Path) -> Result<Self, CgroupError> {
        let created = create_below_cgroup2(path)?;
        Ok(Self {
            path: path.to_owned(),
            created,
        })
    }

    /// The cgroup's directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the cgroup if Tollgate created it. A cgroup that still holds processes is left
    /// in place with a warning (the kernel refuses to remove it).
    pub fn remove(self) {
        if !self.created {
            return;
        }
        match std::fs::remove_dir(&self.path) {
            Ok(()) => tracing::info!(cgroup = %self.path.display(), "removed managed cgroup"),
            Err(error) => tracing::warn!(
                cgroup = %self.path.display(),
                %error,
                "managed cgroup left in place (processes still in it?)"
            ),
        }
    }
}

/// Moves the calling process into the cgroup at `path`, so its future connects are steered.
pub fn join_cgroup(path: &Path) -> Result<(), CgroupError> {
    if !path.is_dir() {
        return Err(CgroupError::Missing(path.to_owned()));
    }
    let procs = path.join("cgroup.procs");
    let io_error = |source: std::io::Error| CgroupError::Io {
        path: path.to_owned(),
        action: "join",
        hint: permission_hint(&source),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&procs)
        .map_err(io_error)?;
    // "0" means "the writing process".
    file.write_all(b"0").map_err(io_error)
}

/// The mount point of the cgroup v2 hierarchy (from `/proc/self/mountinfo`).
#[must_use]
pub fn cgroup2_mount() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        // "id parent major:minor root mountpoint options... - fstype source superoptions"
        let (before, after) = line.split_once(" - ")?;
        (after.split_whitespace().next()? == "cgroup2")
            .then(|| before.split_whitespace().nth(4).map(PathBuf::from))
            .flatten()
    })
}

/// The gateway's own cgroup: created if missing. Its id is what the eBPF programs compare a
/// socket's cgroup with.
pub fn ensure_cgroup(path: &Path) -> Result<u64, CgroupError> {
    create_below_cgroup2(path)?;
    cgroup_id(path)
}

/// Creates the cgroup at `path` (true) or finds it there (false), after checking that its
/// parent is in a cgroup v2 mount and that `path` is not a mount root.
fn create_below_cgroup2(path: &Path) -> Result<bool, CgroupError> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    if !is_cgroup2(parent) {
        if is_cgroup2(path) {
            return Err(CgroupError::IsRoot(path.to_owned()));
        }
        return Err(CgroupError::NotCgroup2 {
            path: path.to_owned(),
            parent: parent.to_owned(),
        });
    }
    match std::fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(CgroupError::Io {
            path: path.to_owned(),
            action: "create",
            hint: permission_hint(&source),
            source,
        }),
    }
}

/// The cgroup v2 id of the cgroup at `path` (its directory's inode number).
pub fn cgroup_id(path: &Path) -> Result<u64, CgroupError> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path)
        .map(|m| m.ino())
        .map_err(|source| CgroupError::Io {
            path: path.to_owned(),
            action: "stat",
            hint: "",
            source,
        })
}

/// True when the cgroup at `path` holds at least one process.
#[must_use]
pub fn has_processes(path: &Path) -> bool {
    std::fs::read_to_string(path.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty())
}

/// True when `path` is the root of a cgroup v2 mount.
#[must_use]
pub fn is_mount_root(path: &Path) -> bool {
    is_cgroup2(path) && !path.parent().is_some_and(is_cgroup2)
}

fn permission_hint(error: &std::io::Error) -> &'static str {
    if error.kind() == std::io::ErrorKind::PermissionDenied {
        " (needs root: run with sudo)"
    } else {
        ""
    }
}

fn is_cgroup2(path: &Path) -> bool {
    is_filesystem(path, CGROUP2_SUPER_MAGIC)
}

/// True when `path` is on a filesystem of type `magic` (`statfs`'s `f_type`).
pub(crate) fn is_filesystem(path: &Path, magic: i64) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|fs| {
        #[expect(
            clippy::useless_conversion,
            reason = "f_type's integer type differs by arch"
        )]
        let kind = i64::from(fs.filesystem_type().0);
        kind == magic
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_parent_outside_cgroup2() {
        let dir = tempfile::tempdir().expect("tempdir");
        let error = ManagedCgroup::prepare(&dir.path().join("tollgate")).expect_err("not cgroup2");
        assert!(matches!(error, CgroupError::NotCgroup2 { .. }), "{error}");
        assert!(error.to_string().contains("mount -t cgroup2"), "{error}");
    }

    #[test]
    fn join_reports_a_missing_cgroup() {
        let error = join_cgroup(Path::new("/nonexistent/tollgate")).expect_err("missing");
        assert!(
            error.to_string().contains("start the gateway first"),
            "{error}"
        );
    }
}
