//! The token cache: `$XDG_CACHE_HOME/tollgate/` (else `~/.cache/tollgate/`), a 0700
//! directory owned by the user, one 0600 file per issuer and client holding the last token
//! response and what it was asked for. Files are written to a fresh 0600 temporary file and
//! renamed into place, so a reader never sees half a file and the mode is never wider, even
//! for a moment. A cache file or directory that others could read is not trusted.

use std::{
    fs,
    io::Write as _,
    os::unix::fs::{
        DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
    },
    path::{Path, PathBuf},
};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{TokenError, TokenSet};

/// A cached token is used as is while it stays valid for longer than this; within it, it is
/// refreshed first.
pub const REFRESH_MARGIN: i64 = 60;

/// What a token was asked for: a cached token answers only the same request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// `login` or `client_credentials`.
    pub grant: String,
    /// Scopes asked for, sorted.
    pub scopes: Vec<String>,
    /// `audience` parameters.
    pub audiences: Vec<String>,
    /// `resource` parameters.
    pub resources: Vec<String>,
}

/// One cache file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// The issuer URL.
    pub issuer: String,
    /// The client id.
    pub client_id: String,
    /// What the tokens were asked for.
    pub request: Request,
    /// The tokens.
    pub tokens: TokenSet,
}

/// The cache directory: `$XDG_CACHE_HOME/tollgate`, else `$HOME/.cache/tollgate`.
pub fn dir() -> Result<PathBuf, TokenError> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| Path::new(v).is_absolute())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .ok_or_else(|| {
            TokenError::Unsafe("neither XDG_CACHE_HOME nor HOME is set: no token cache".to_owned())
        })?;
    Ok(base.join("tollgate"))
}

/// The file for `issuer` and `client_id` inside `dir`: both base64url-encoded, so distinct
/// pairs never share a file and no name can escape the directory.
#[must_use]
pub fn file(dir: &Path, issuer: &str, client_id: &str) -> PathBuf {
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    dir.join(format!(
        "{}.{}.json",
        e.encode(issuer.trim_end_matches('/')),
        e.encode(client_id)
    ))
}

/// Reads the entry at `path`: `None` when there is none, it does not parse, or it is not
/// safe to trust (then a warning says why, and the next write replaces it).
#[must_use]
pub fn load(path: &Path) -> Option<Entry> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if meta.uid() != nix::unistd::geteuid().as_raw() || meta.mode() & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.mode() & 0o777),
            "token cache file not owned by this user or readable by others: ignored"
        );
        return None;
    }
    match serde_json::from_reader(std::io::BufReader::new(file)) {
        Ok(entry) => Some(entry),
        Err(error) => {
            // The error names a position, never content.
            tracing::warn!(path = %path.display(), line = error.line(), "token cache file unreadable: ignored");
            None
        }
    }
}

/// Writes `entry` to `path` (mode 0600, through a temporary file and a rename), creating the
/// directory 0700 first.
pub fn store(path: &Path, entry: &Entry) -> Result<(), TokenError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    ensure_private_dir(dir)?;
    let bytes = serde_json::to_vec(entry).map_err(|e| TokenError::Io {
        what: "encoding the token cache",
        path: path.to_owned(),
        source: std::io::Error::other(e.to_string()),
    })?;
    write_private(path, &bytes, "writing the token cache")
}

/// Creates `dir` (and its parents) with mode 0700 when missing; an existing one must belong
/// to this user, and is tightened to 0700 when group or others could enter it.
pub fn ensure_private_dir(dir: &Path) -> Result<(), TokenError> {
    let io = |source| TokenError::Io {
        what: "creating the token cache directory",
        path: dir.to_owned(),
        source,
    };
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent).map_err(io)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(e)),
    }
    let meta = fs::symlink_metadata(dir).map_err(io)?;
    if !meta.is_dir() || meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(TokenError::Unsafe(format!(
            "token cache directory {} is not a directory owned by this user",
            dir.display()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(())
}

/// Writes `bytes` to `path` with mode 0600: a new temporary file beside it (`O_EXCL`, created
/// 0600), synced, then renamed over `path`.
pub fn write_private(path: &Path, bytes: &[u8], what: &'static str) -> Result<(), TokenError> {
    let io = |source| TokenError::Io {
        what,
        path: path.to_owned(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        // The umask can only narrow 0600; make sure nothing widened it.
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Secret;

    fn entry() -> Entry {
        Entry {
            issuer: "https://issuer.example".to_owned(),
            client_id: "c".to_owned(),
            request: Request {
                grant: "login".to_owned(),
                scopes: vec!["openid".to_owned()],
                audiences: vec![],
                resources: vec![],
            },
            tokens: TokenSet {
                access_token: Secret::new("at".to_owned()),
                id_token: None,
                refresh_token: Some(Secret::new("rt".to_owned())),
                access_expires_at: Some(5),
            },
        }
    }

    #[test]
    fn files_are_0600_in_a_0700_directory_and_read_back() {
        let base = tempfile::tempdir().expect("tempdir");
        let dir = base.path().join("a/tollgate");
        let path = file(&dir, "https://issuer.example/", "c");
        store(&path, &entry()).expect("store");
        let mode = |p: &Path| fs::metadata(p).expect("stat").mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&path), 0o600);
        let back = load(&path).expect("load");
        assert_eq!(back.tokens.refresh_token.expect("rt").expose(), "rt");
        assert_eq!(back.request, entry().request);
    }

    #[test]
    fn a_cache_file_others_can_read_is_ignored_and_a_lax_directory_tightened() {
        let base = tempfile::tempdir().expect("tempdir");
        let dir = base.path().join("tollgate");
        fs::create_dir(&dir).expect("mkdir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        let path = file(&dir, "https://i", "c");
        store(&path, &entry()).expect("store");
        assert_eq!(fs::metadata(&dir).expect("stat").mode() & 0o777, 0o700);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(load(&path).is_none());
    }

    #[test]
    fn distinct_issuer_and_client_pairs_get_distinct_files() {
        let d = Path::new("/c");
        assert_ne!(file(d, "https://a/b", "c"), file(d, "https://a", "b/c"));
        assert_eq!(file(d, "https://a/", "c"), file(d, "https://a", "c"));
    }
}
