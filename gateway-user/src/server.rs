//! The gateway process: bind listeners, start interception and the recorder, accept within the
//! connection limit, and shut down gracefully (stop accepting, let sessions finish for the
//! grace period, end the rest, detach the programs, flush the recording).

use std::{net::SocketAddr, sync::Arc};

use tokio::{io::AsyncWriteExt as _, net::TcpListener, sync::Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    config::{Config, InterceptionMode},
    intercept::{InterceptError, Interceptor},
    protocol::{ErrPacket, error_code},
    recording::{KeyError, Recorder, RecorderError, SigningKey, StoreError},
    reload::LiveContext,
    session::{self, LoginContext, SessionContext, terminate::UpstreamTls},
    workers::Workers,
};

/// Why the gateway could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listener address could not be bound.
    #[error("cannot listen on {addr}: {source}{hint}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
        /// What to do.
        hint: &'static str,
    },
    /// Interception could not start.
    #[error(transparent)]
    Intercept(#[from] InterceptError),
    /// The recording store failed.
    #[error(transparent)]
    Recording(#[from] StoreError),
    /// The recorder could not start (store, Kafka sink).
    #[error(transparent)]
    Recorder(#[from] RecorderError),
    /// The metrics endpoint could not be bound.
    #[error("metrics.listen {addr}: {source}")]
    Metrics {
        /// The address.
        addr: SocketAddr,
        /// The bind error.
        source: std::io::Error,
    },
    /// The admin listener (web viewer) could not start.
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
    /// The recording signing key could not be loaded.
    #[error("recording.signing_key: {0}")]
    SigningKey(#[from] KeyError),
    /// A target's upstream credential could not be loaded.
    #[error(transparent)]
    Credential(#[from] crate::auth::CredentialError),
    /// TLS toward clients or databases could not be set up.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The OIDC verifiers could not be set up.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    /// A TLS server name is not a valid DNS name or IP address.
    #[error("targets.tls.server_name: {0:?} is not a valid DNS name or IP address")]
    ServerName(String),
    /// The session worker threads could not be started.
    #[error("cannot start the session workers: {0}")]
    Workers(std::io::Error),
}

/// What terminating logins needs, when any target has a `login`.
pub(crate) fn login_context(config: &Config) -> Result<Option<Arc<LoginContext>>, ServeError> {
    if !config
        .targets
        .iter()
        .any(crate::config::TargetConfig::terminates)
    {
        return Ok(None);
    }
    let policies = config
        .targets
        .iter()
        .map(crate::policy::TargetPolicy::load)
        .collect::<Result<Vec<_>, _>>()?;
    if config.listener.tls.is_none() {
        tracing::warn!("listener.tls is not set: clients get a self-signed certificate");
    }
    let upstream_tls = config
        .targets
        .iter()
        .map(upstream_tls)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(Arc::new(LoginContext {
        tls: crate::tls::acceptor(config.listener.tls.as_ref())?,
        identities: crate::identity::Authenticator::new(config)?,
        policies,
        upstream_tls,
    })))
}

/// TLS toward a target's database, per its `tls` section.
fn upstream_tls(target: &crate::config::TargetConfig) -> Result<Option<UpstreamTls>, ServeError> {
    use crate::config::{UpstreamAddr, UpstreamTlsMode};
    if !target.terminates() || target.tls.mode == UpstreamTlsMode::Disabled {
        return Ok(None);
    }
    if !target.tls.verify {
        tracing::warn!(
            target_name = %target.name.get_ref(),
            "targets.tls.verify = false: the database's certificate is not verified"
        );
    }
    let host = match (&target.tls.server_name, target.upstream_for(None)) {
        (Some(name), _) => name.clone(),
        (None, Some(UpstreamAddr::Named(name))) => name
            .rsplit_once(':')
            .map_or(name.as_str(), |(host, _)| host)
            .to_owned(),
        (None, Some(UpstreamAddr::Socket(addr))) => addr.ip().to_string(),
        (None, None) => target.address.addr().to_string(),
    };
    let server_name = rustls::pki_types::ServerName::try_from(host.clone())
        .map_err(|_| ServeError::ServerName(host))?;
    Ok(Some(UpstreamTls {
        connector: crate::tls::connector(&target.tls)?,
        required: target.tls.mode == UpstreamTlsMode::Required,
        server_name,
    }))
}

/// Binds every `listener.addresses` entry.
async fn bind_listeners(config: &Config) -> Result<Vec<TcpListener>, ServeError> {
    let mut listeners = Vec::new();
    for addr in &config.listener.addresses {
        let addr = *addr.get_ref();
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr,
                hint: if source.kind() == std::io::ErrorKind::AddrInUse {
                    " (another process holds it: stop it or change listener.addresses)"
                } else {
                    ""
                },
                source,
            })?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Binds the transparent listeners for routed flows (`0.0.0.0:port` and `[::]:port`) when
/// routed interfaces are configured. The TC steering program hands them SYNs addressed to the
/// databases; `IP_TRANSPARENT` lets the accepted sockets answer from those addresses.
fn bind_routed_listeners(config: &Config) -> Result<Vec<TcpListener>, ServeError> {
    let routed = &config.interception.routed;
    if config.interception.mode != InterceptionMode::Cgroup || routed.interfaces.is_empty() {
        return Ok(Vec::new());
    }
    let mut listeners = Vec::new();
    for addr in [
        SocketAddr::from(([0, 0, 0, 0], routed.port)),
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, routed.port)),
    ] {
        let bound = transparent_listener(addr).map_err(|source| ServeError::Bind {
            addr,
            hint: if source.kind() == std::io::ErrorKind::AddrInUse {
                " (another process holds it: stop it or change interception.routed.port)"
            } else {
                " (transparent listeners need CAP_NET_ADMIN)"
            },
            source,
        })?;
        listeners.push(bound);
    }
    Ok(listeners)
}

fn transparent_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use std::os::fd::AsRawFd as _;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    let fd = socket.as_raw_fd();
    let on: libc::c_int = 1;
    let set = |level, name| {
        // SAFETY: `fd` is a live socket; the option value is a c_int of the given size.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&raw const on).cast(),
                libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(4),
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    if addr.is_ipv4() {
        set(libc::SOL_IP, libc::IP_TRANSPARENT)?;
    } else {
        set(libc::SOL_IPV6, libc::IPV6_V6ONLY)?;
        set(libc::SOL_IPV6, libc::IPV6_TRANSPARENT)?;
    }
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Starts interception (when configured) and binds the transparent listeners for routed flows,
/// registering them with the `sk_lookup` program. A failure undoes what was started.
fn start_interception(
    config: &Config,
    bound: &[SocketAddr],
) -> Result<(Option<Interceptor>, Vec<TcpListener>), ServeError> {
    let mut interceptor = match config.interception.mode {
        InterceptionMode::Cgroup => Some(Interceptor::start(config, bound)?),
        InterceptionMode::Off => None,
    };
    let routed_listeners = bind_routed_listeners(config).and_then(|listeners| {
        if let Some(interceptor) = interceptor.as_mut() {
            interceptor.register_routed_listeners(&listeners)?;
        }
        Ok(listeners)
    });
    match routed_listeners {
        Ok(listeners) => Ok((interceptor, listeners)),
        Err(error) => {
            if let Some(interceptor) = interceptor {
                interceptor.stop();
            }
            Err(error)
        }
    }
}

/// Runs the gateway until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    config_path: std::path::PathBuf,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let config = Arc::new(config);
    let logins = login_context(&config)?;
    let listeners = bind_listeners(&config).await?;
    let bound: Vec<SocketAddr> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();

    let signing_key = config
        .recording
        .signing_key
        .as_deref()
        .map(SigningKey::load)
        .transpose()?;
    let (interceptor, routed_listeners) = start_interception(&config, &bound)?;
    let recorder = Recorder::start(&config.recording, signing_key);
    let (recorder, recorder_task) = match recorder {
        Ok(started) => started,
        Err(error) => {
            if let Some(interceptor) = interceptor {
                interceptor.stop();
            }
            return Err(error.into());
        }
    };

    let (instance, live_sessions) = start_control(&config, &shutdown);
    start_metrics(&config, &recorder, &live_sessions.approvals, &shutdown).await?;
    let abort = CancellationToken::new();
    let ctx = SessionContext {
        config: Arc::clone(&config),
        flows: interceptor.as_ref().map(Interceptor::flows),
        recorder,
        gateway_instance: instance,
        abort: abort.clone(),
        logins,
        live: live_sessions,
        limiter: Arc::default(),
    };
    tracing::info!(
        listeners = ?bound,
        cgroup = interceptor.as_ref().map(|i| i.cgroup_path().display().to_string()),
        store = %config.recording.store.display(),
        targets = config.targets.len(),
        "tollgate ready"
    );

    let live = LiveContext::new(ctx);
    let reloads = tokio::spawn(crate::reload::on_sighup(live.clone(), config_path));
    let tracker = TaskTracker::new();
    let limit = Arc::new(Semaphore::new(config.limits.max_connections));
    let workers = Arc::new(Workers::start(config.listener.workers).map_err(ServeError::Workers)?);
    let accept_loops = TaskTracker::new();
    let routed = routed_listeners.into_iter().map(|l| (l, true));
    for (listener, routed) in listeners.into_iter().map(|l| (l, false)).chain(routed) {
        accept_loops.spawn(accept_loop(
            listener,
            routed,
            live.clone(),
            tracker.clone(),
            Arc::clone(&limit),
            Arc::clone(&workers),
            shutdown.clone(),
        ));
    }
    accept_loops.close();
    accept_loops.wait().await;

    // Shutdown: no new sessions; give live ones the grace period, then end them.
    tracker.close();
    let grace = config.limits.shutdown_grace;
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::info!(
            live = tracker.len(),
            "grace period over; ending live sessions"
        );
        abort.cancel();
        tracker.wait().await;
    }
    if let Some(interceptor) = interceptor {
        interceptor.stop();
    }
    // Every handle on the recorder goes before waiting for it to drain.
    reloads.abort();
    let _ = reloads.await;
    drop(live);
    recorder_task.finish().await?;
    tracing::info!("tollgate stopped");
    Ok(())
}

/// Starts the metrics endpoint and the admin listener (web viewer) when configured (they
/// stop at `shutdown`). The admin listener serves `/metrics` too when `[metrics]` has no
/// listener of its own.
async fn start_metrics(
    config: &Config,
    recorder: &Recorder,
    approvals: &crate::approvals::Approvals,
    shutdown: &CancellationToken,
) -> Result<(), ServeError> {
    let metrics_on_admin = config.metrics.listen.is_none().then(|| recorder.health());
    crate::admin::start(config, metrics_on_admin, Some(approvals.clone()), shutdown).await?;
    let Some(addr) = config.metrics.listen else {
        return Ok(());
    };
    crate::metrics::serve(addr, recorder.health(), shutdown.clone())
        .await
        .map(drop)
        .map_err(|source| ServeError::Metrics { addr, source })
}

/// Names this replica and starts the control socket and, with Kafka, the reader of the
/// control topic (both stop at `shutdown`) for its live sessions. Neither is needed to relay
/// and record, so a failure is a log line.
fn start_control(
    config: &Config,
    shutdown: &CancellationToken,
) -> (Arc<str>, crate::control::LiveSessions) {
    let instance: Arc<str> = gateway_instance().into();
    let live = crate::control::LiveSessions::new();
    let socket = config.control_socket();
    if let Err(error) = crate::control::socket::serve(&socket, live.clone(), shutdown.clone()) {
        tracing::warn!(%error, "`tollgate sessions kill` on this host will not reach this gateway");
    }
    if let Some(kafka) = &config.recording.kafka {
        let started = crate::control::kafka::start(
            kafka,
            instance.to_string(),
            live.clone(),
            shutdown.clone(),
        );
        if let Err(error) = started {
            tracing::warn!(%error, "kill orders from other replicas will not reach this gateway");
        }
    }
    if let Some((kafka, topic)) = crate::approvals::kafka::topic(config) {
        let started = crate::approvals::kafka::start(
            kafka,
            topic,
            &instance,
            live.approvals.clone(),
            shutdown.clone(),
        );
        if let Err(error) = started {
            tracing::warn!(%error, "approvals will not be shared with other replicas");
        }
    }
    (instance, live)
}

async fn accept_loop(
    listener: TcpListener,
    routed: bool,
    live: LiveContext,
    tracker: TaskTracker,
    limit: Arc<Semaphore>,
    workers: Arc<Workers>,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => return,
        };
        let (mut stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            tracing::warn!(client = %peer, "connection limit reached; refusing");
            tracker.spawn(async move {
                let packet = ErrPacket::new(
                    error_code::TOO_MANY_CONNECTIONS,
                    "Tollgate: too many connections (limits.max_connections)",
                )
                .with_sql_state(*b"08004")
                .encode(0, false);
                let _ = stream.write_all(&packet).await;
                let _ = stream.shutdown().await;
            });
            continue;
        };
        // The session moves to a worker: its sockets are registered with that worker's
        // runtime, where it runs from here to the end.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, client = %peer, "cannot hand the connection to a worker");
                continue;
            }
        };
        let ctx = live.current();
        workers.spawn(tracker.track_future(async move {
            let stream = tokio::net::TcpStream::from_std(stream);
            match stream {
                Ok(stream) => session::serve(ctx, stream, peer, local, routed).await,
                Err(error) => warn_not_taken(&error, peer),
            }
            drop(permit);
        }));
    }
}

fn warn_not_taken(error: &std::io::Error, peer: SocketAddr) {
    tracing::warn!(%error, client = %peer, "worker cannot take the connection");
}

/// `hostname/pid`, naming this gateway replica in logs and recordings.
fn gateway_instance() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown-host".into());
    format!("{host}/{}", std::process::id())
}
