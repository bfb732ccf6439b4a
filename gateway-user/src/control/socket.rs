//! The control socket: a Unix socket (mode 0600, so only the gateway's own user and root can
//! use it) that takes one JSON [`Request`] line per connection and answers one JSON [`Reply`]
//! line. The peer's uid, as the kernel reports it, is added to the order's `by`.

use std::{
    os::unix::fs::{FileTypeExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

use super::{LiveSessions, Reply, Request};

/// A request line is at most this long.
const MAX_REQUEST: u64 = 64 * 1024;
/// A client has this long to send its request, and the gateway to answer.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors of the control socket.
#[derive(Debug, thiserror::Error)]
pub enum ControlSocketError {
    /// The socket could not be set up.
    #[error("control socket {path}: {source}")]
    Bind {
        /// Its path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No gateway answers there.
    #[error(
        "no gateway answers on the control socket {path} ({source}): is `tollgate serve` running \
         with this configuration, and are you root or its user?"
    )]
    Connect {
        /// Its path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The exchange failed.
    #[error("control socket {path}: {detail}")]
    Exchange {
        /// Its path.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
}

/// Binds the control socket at `path` (replacing a stale one) and serves it until `shutdown`.
///
/// # Errors
/// When the socket cannot be created.
pub fn serve(
    path: &Path,
    live: LiveSessions,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, ControlSocketError> {
    let bind_error = |source| ControlSocketError::Bind {
        path: path.to_owned(),
        source,
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(bind_error(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a socket",
            )));
        }
        // A socket left by an earlier run: nobody can be listening on it if binding works.
        std::fs::remove_file(path).map_err(bind_error)?;
    }
    let listener = UnixListener::bind(path).map_err(bind_error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_error)?;
    tracing::info!(path = %path.display(), "control socket ready");
    let path = path.to_owned();
    Ok(tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = shutdown.cancelled() => break,
            };
            match accepted {
                Ok((stream, _)) => {
                    let live = live.clone();
                    tokio::spawn(async move {
                        if let Err(error) = answer(stream, &live).await {
                            tracing::warn!(%error, "control socket request failed");
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        let _ = std::fs::remove_file(&path);
    }))
}

async fn answer(stream: UnixStream, live: &LiveSessions) -> std::io::Result<()> {
    let uid = stream.peer_cred().map(|c| c.uid()).ok();
    let (read, mut write) = stream.into_split();
    let mut request_line = String::new();
    let read = tokio::time::timeout(
        EXCHANGE_TIMEOUT,
        BufReader::new(read.take(MAX_REQUEST)).read_line(&mut request_line),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request in time"))?;
    read?;
    let reply = match serde_json::from_str::<Request>(&request_line) {
        Ok(mut request) => {
            if let (
                Request::Kill { order, .. }
                | Request::Lock {
                    lock: super::IdentityLock { order, .. },
                },
                Some(uid),
            ) = (&mut request, uid)
            {
                order.by = format!("{} (uid {uid})", order.by);
            }
            let reply = live.apply(&request);
            tracing::info!(?request, ?reply, "control order");
            serde_json::to_string(&reply)
        }
        Err(error) => match serde_json::from_str(&request_line) {
            Ok(order) => serde_json::to_string(&crate::approvals::order::answer(
                &live.approvals,
                order,
                uid,
            )),
            Err(_) => serde_json::to_string(&serde_json::json!({
                "error": format!("not a control request: {error}")
            })),
        },
    }
    .map_err(std::io::Error::other)?;
    write.write_all(reply.as_bytes()).await?;
    write.write_all(b"\n").await?;
    write.shutdown().await
}

/// Sends `request` to the gateway listening on `path` and returns its reply.
///
/// # Errors
/// When no gateway answers there, or the answer is not a reply.
pub async fn send(path: &Path, request: &Request) -> Result<Reply, ControlSocketError> {
    exchange(path, request).await
}

/// Sends any request line (control orders, approval orders) and reads the one reply line.
///
/// # Errors
/// When no gateway answers there, or the answer is not a `Rep`.
pub async fn exchange<Req: serde::Serialize, Rep: serde::de::DeserializeOwned>(
    path: &Path,
    request: &Req,
) -> Result<Rep, ControlSocketError> {
    let failed = |detail: String| ControlSocketError::Exchange {
        path: path.to_owned(),
        detail,
    };
    let mut stream =
        UnixStream::connect(path)
            .await
            .map_err(|source| ControlSocketError::Connect {
                path: path.to_owned(),
                source,
            })?;
    let mut line = serde_json::to_string(request).map_err(|e| failed(e.to_string()))?;
    line.push('\n');
    let mut answer = String::new();
    tokio::time::timeout(EXCHANGE_TIMEOUT, async {
        stream.write_all(line.as_bytes()).await?;
        BufReader::new(&mut stream)
            .take(MAX_REQUEST)
            .read_line(&mut answer)
            .await
    })
    .await
    .map_err(|_| failed("no answer within 5 s".into()))?
    .map_err(|e| failed(e.to_string()))?;
    serde_json::from_str(&answer)
        .map_err(|_| failed(format!("unexpected answer: {}", answer.trim())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::KillOrder;

    #[tokio::test]
    async fn a_kill_over_the_socket_ends_the_session_and_names_the_uid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("control.sock");
        let live = LiveSessions::new();
        let shutdown = CancellationToken::new();
        let server = serve(&path, live.clone(), shutdown.clone()).expect("serve");
        let mode = std::fs::metadata(&path)
            .expect("socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let id = uuid::Uuid::now_v7();
        let registration = live.register(id);
        let request = Request::Kill {
            session: id.to_string(),
            order: KillOrder {
                by: "alice".into(),
                reason: None,
            },
            lock_until: None,
        };
        let reply = send(&path, &request).await.expect("reply");
        assert!(matches!(reply, Reply::Done(ref outcome) if outcome.killed == vec![id]));
        let order = registration.killed().await;
        assert!(order.by.starts_with("alice (uid "), "{order:?}");
        let again = send(&path, &request).await.expect("reply");
        drop(registration);
        assert!(matches!(again, Reply::Done(_)), "{again:?}");
        let gone = send(&path, &request).await.expect("reply");
        assert!(matches!(gone, Reply::Failed(_)), "{gone:?}");
        shutdown.cancel();
        server.await.expect("server");
        assert!(!path.exists());
        let refused = send(&path, &request).await.expect_err("nobody listens");
        assert!(
            refused.to_string().contains("is `tollgate serve` running"),
            "{refused}"
        );
    }
}
