//! Who the client is, and with what the gateway logs in upstream.
//!
//! - [`IdentityTable`]: the static identity table from the configuration (user names with
//!   argon2 password hashes); the identity work replaces it with OIDC and kernel identity
//!   behind the same seam ([`IdentityTable::verify`]).
//! - [`UpstreamCredential`]: the gateway's own database account for a target, read from an
//!   environment variable or a 0600 file; zeroized on drop and redacted in `Debug`.

use std::{collections::HashMap, fmt, path::PathBuf};

use argon2::{
    Argon2, PasswordHash, PasswordHasher as _, PasswordVerifier as _,
    password_hash::{SaltString, rand_core::OsRng},
};
use zeroize::Zeroizing;

use crate::config::{IdentityConfig, LoginConfig};

/// Users the gateway accepts, with their argon2 password hashes.
#[derive(Clone, Default)]
pub struct IdentityTable {
    users: HashMap<String, String>,
    groups: HashMap<String, Vec<String>>,
    /// A hash verified for unknown users, so the time a refusal takes does not tell whether
    /// the user exists.
    dummy: String,
}

impl fmt::Debug for IdentityTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityTable")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl IdentityTable {
    /// Builds the table from the configuration (hashes were validated when it was loaded).
    #[must_use]
    pub fn new(identities: &[IdentityConfig]) -> Self {
        Self {
            users: identities
                .iter()
                .map(|i| (i.user.clone(), i.password_hash.clone()))
                .collect(),
            groups: identities
                .iter()
                .map(|i| (i.user.clone(), i.groups.clone()))
                .collect(),
            dummy: hash_password(b"tollgate: no such user").unwrap_or_default(),
        }
    }

    /// The groups of `user` (none for an unknown user).
    #[must_use]
    pub fn groups(&self, user: &str) -> Vec<String> {
        self.groups.get(user).cloned().unwrap_or_default()
    }

    /// True when `password` is the password of `user`. CPU-heavy (argon2): call it off the
    /// async workers.
    #[must_use]
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        let (hash, known) = match self.users.get(user) {
            Some(hash) => (hash.as_str(), true),
            None => (self.dummy.as_str(), false),
        };
        let verified = PasswordHash::new(hash)
            .is_ok_and(|hash| Argon2::default().verify_password(password, &hash).is_ok());
        verified && known
    }
}

/// Checks that `hash` is an argon2 PHC string.
pub fn check_hash(hash: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(hash).map_err(|e| format!("not a PHC hash string: {e}"))?;
    if !parsed.algorithm.as_str().starts_with("argon2") {
        return Err(format!("expected an argon2 hash, got {}", parsed.algorithm));
    }
    Ok(())
}

/// An argon2id hash of `password` for the identity table (`tollgate hash-password`).
pub fn hash_password(password: &[u8]) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password, &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| e.to_string())
}

/// The gateway's own login for a target. The password never appears in `Debug`, logs, errors
/// or recordings, and is wiped from memory when dropped.
#[derive(Clone)]
pub struct UpstreamCredential {
    /// Database user name.
    pub user: String,
    password: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for UpstreamCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamCredential")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why an upstream credential could not be loaded. Never contains the secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The environment variable is not set.
    #[error("target {target}: environment variable {var} (login.password_env) is not set")]
    MissingEnv {
        /// Target name.
        target: String,
        /// Variable name.
        var: String,
    },
    /// The file could not be read.
    #[error("target {target}: cannot read login.password_file {path}: {source}")]
    File {
        /// Target name.
        target: String,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file can be read by others.
    #[error(
        "target {target}: login.password_file {path} is readable by group or others: chmod 600 it"
    )]
    FileMode {
        /// Target name.
        target: String,
        /// The file.
        path: PathBuf,
    },
    /// The password command could not run, failed, or printed nothing. Its output is never
    /// part of the message.
    #[error("target {target}: password_command {program}: {reason}")]
    Command {
        /// Target name.
        target: String,
        /// The program run.
        program: String,
        /// What went wrong (exit status, or why it could not start).
        reason: String,
    },
}

/// Longest a `password_command` may run.
const PASSWORD_COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs a `password_command` (no shell) and returns its standard output without the trailing
/// newline. Its standard error goes to the gateway's; its output is never logged.
#[expect(
    clippy::disallowed_types,
    reason = "synchronous start-up code: a blocking deadline, no tokio clock involved"
)]
fn password_from_command(
    target: &str,
    argv: &[String],
) -> Result<Zeroizing<Vec<u8>>, CredentialError> {
    use std::io::Read as _;
    let program = argv.first().cloned().unwrap_or_default();
    let error = |reason: String| CredentialError::Command {
        target: target.to_owned(),
        program: program.clone(),
        reason,
    };
    let mut child = std::process::Command::new(&program)
        .args(argv.get(1..).unwrap_or_default())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .map_err(|e| error(format!("cannot run it: {e}")))?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| error("no output pipe".into()))?;
    let reader = std::thread::spawn(move || {
        let mut bytes = Zeroizing::new(Vec::new());
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let deadline = std::time::Instant::now() + PASSWORD_COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| error(e.to_string()))? {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(error(format!(
                "did not finish within {PASSWORD_COMMAND_TIMEOUT:?}"
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let mut bytes = reader
        .join()
        .map_err(|_| error("reading its output failed".into()))?;
    if !status.success() {
        return Err(error(format!("exited with {status}")));
    }
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err(error("printed no password".into()));
    }
    Ok(bytes)
}

impl UpstreamCredential {
    /// Loads the credential a target's `login` section names.
    pub fn load(target: &str, login: &LoginConfig) -> Result<Self, CredentialError> {
        let password = if let Some(var) = &login.password_env {
            std::env::var(var)
                .map(|p| Zeroizing::new(p.into_bytes()))
                .map_err(|_| CredentialError::MissingEnv {
                    target: target.to_owned(),
                    var: var.clone(),
                })?
        } else if let Some(path) = &login.password_file {
            use std::os::unix::fs::PermissionsExt as _;
            let file_error = |source| CredentialError::File {
                target: target.to_owned(),
                path: path.clone(),
                source,
            };
            let mode = std::fs::metadata(path)
                .map_err(file_error)?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(CredentialError::FileMode {
                    target: target.to_owned(),
                    path: path.clone(),
                });
            }
            let mut bytes = Zeroizing::new(std::fs::read(path).map_err(file_error)?);
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
            bytes
        } else if let Some(argv) = &login.password_command {
            password_from_command(target, argv)?
        } else {
            Zeroizing::new(Vec::new())
        };
        Ok(Self {
            user: login.user.clone(),
            password,
        })
    }

    /// The password, for computing the login scramble.
    #[must_use]
    pub fn password(&self) -> &[u8] {
        &self.password
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_the_right_password_of_a_known_user() {
        let hash = hash_password(b"s3cret").expect("hash");
        check_hash(&hash).expect("valid");
        let table = IdentityTable::new(&[IdentityConfig {
            user: "alice".into(),
            password_hash: hash,
            groups: vec!["devs".into()],
        }]);
        assert!(table.verify("alice", b"s3cret"));
        assert!(!table.verify("alice", b"wrong"));
        assert!(!table.verify("bob", b"s3cret"));
        assert!(check_hash("plain").is_err());
    }

    #[test]
    fn credentials_are_redacted() {
        let credential = UpstreamCredential {
            user: "app".into(),
            password: Zeroizing::new(b"hunter2".to_vec()),
        };
        let shown = format!("{credential:?}");
        assert!(
            shown.contains("app") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
