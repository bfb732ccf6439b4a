//! Dialing the database. The foundation dials plain TCP; TLS and MySQL authentication toward
//! the database come with the protocol engine.

use std::{io, time::Duration};

use tokio::net::TcpStream;

use crate::config::UpstreamAddr;

/// Why a target could not be reached. The text never carries a credential.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// Name resolution failed.
    #[error("cannot resolve {addr}: {source}")]
    Resolve {
        /// What was resolved.
        addr: String,
        /// The error.
        source: io::Error,
    },
    /// Every address refused or failed.
    #[error("{source}")]
    Connect {
        /// The last error.
        source: io::Error,
    },
    /// The connect did not finish in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Connects to `addr` within `timeout`, trying each resolved address in turn.
pub async fn dial(addr: &UpstreamAddr, timeout: Duration) -> Result<TcpStream, DialError> {
    let attempt = async {
        let candidates: Vec<std::net::SocketAddr> = match addr {
            UpstreamAddr::Socket(socket) => vec![*socket],
            UpstreamAddr::Named(name) => tokio::net::lookup_host(name.as_str())
                .await
                .map_err(|source| DialError::Resolve {
                    addr: name.clone(),
                    source,
                })?
                .collect(),
        };
        let mut last = io::Error::new(io::ErrorKind::NotFound, "name resolved to no address");
        for candidate in candidates {
            match TcpStream::connect(candidate).await {
                Ok(stream) => {
                    // MySQL is request/response with small packets: never wait to coalesce.
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(error) => last = error,
            }
        }
        Err(DialError::Connect { source: last })
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| DialError::Timeout(timeout))?
}
