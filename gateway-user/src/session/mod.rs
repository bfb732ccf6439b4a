//! One client connection from accept to close: resolve where it was going and who opened it,
//! dial the target, relay both ways, and record the session's start and end.
//!
//! Phases (the protocol engine will add the gateway's own authentication between `dial` and
//! `relay`):
//! 1. **resolve**: claim the kernel's attribution for the socket, or use the fallback target;
//! 2. **dial**: connect to the target (error 1429 naming the target to the client on failure);
//! 3. **relay**: follow the MySQL protocol on both legs ([`relay`]), recording the login and
//!    every command with its outcome, until the client quits or the gateway shuts down.

use std::{net::SocketAddr, sync::Arc};

mod capture;
mod change_user;
mod prepared;
mod relay;
mod response;
mod stream;
pub mod terminate;
mod use_statement;

pub use capture::RowCaps;
pub use relay::{RelayEnd, command_name};
pub use response::{Outcome, StatementRecord};

use tokio::{io::AsyncWriteExt as _, net::TcpStream};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    config::{Config, TargetConfig},
    intercept::{FlowTable, Origin},
    protocol::{ErrPacket, error_code},
    recording::Steering,
    recording::{
        EndReason, EventKind, LoginEvent, ProcessInfo, RecordedEvent, Recorder, SessionEnded,
        SessionStarted,
        event::{TlsInfo, TlsLeg},
    },
    upstream::{self, DialError},
};

/// What every session shares.
#[derive(Debug, Clone)]
pub struct SessionContext {
    /// The configuration.
    pub config: Arc<Config>,
    /// Kernel attributions, when interception is on.
    pub flows: Option<FlowTable>,
    /// Where events go.
    pub recorder: Recorder,
    /// `host/pid` of this gateway, recorded with every session.
    pub gateway_instance: Arc<str>,
    /// Cancelled when live sessions must end (shutdown grace period over).
    pub abort: CancellationToken,
    /// What terminating logins needs, when some target has a `login`.
    pub logins: Option<Arc<LoginContext>>,
    /// The live sessions, for kill orders, and the identity locks.
    pub live: crate::control::LiveSessions,
    /// The rate guardrails' buckets, shared by every session (and kept across reloads).
    pub limiter: Arc<crate::guard::rate::RateLimiter>,
}

/// What the gateway needs to terminate logins.
pub struct LoginContext {
    /// TLS toward clients.
    pub tls: tokio_rustls::TlsAcceptor,
    /// Who may log in (identity table and OIDC issuers).
    pub identities: crate::identity::Authenticator,
    /// Each target's accounts and `[[targets.allow]]` rules (by index), for targets whose
    /// logins the gateway terminates.
    pub policies: Vec<Option<crate::policy::TargetPolicy>>,
    /// TLS toward each target's database (by index), unless disabled.
    pub upstream_tls: Vec<Option<terminate::UpstreamTls>>,
}

impl std::fmt::Debug for LoginContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginContext")
            .field("identities", &self.identities)
            .field("policies", &self.policies)
            .finish_non_exhaustive()
    }
}

/// Why the gateway itself refused or ended a session; each maps to one ERR packet.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The connection was not redirected and no fallback target is configured.
    #[error(
        "connection from {client} was not redirected by Tollgate and no listener.fallback_target \
         is configured"
    )]
    NotRedirected {
        /// The client.
        client: SocketAddr,
    },
    /// The target could not be reached.
    #[error("cannot reach target '{target}' at {addr}: {source}")]
    UpstreamUnreachable {
        /// Target name.
        target: String,
        /// What was dialed.
        addr: String,
        /// Why it failed.
        source: DialError,
    },
}

impl SessionError {
    /// The one place a gateway-side failure becomes what the client reads.
    #[must_use]
    pub fn to_err_packet(&self) -> ErrPacket {
        let code = match self {
            Self::NotRedirected { .. } => error_code::HOST_NOT_PRIVILEGED,
            Self::UpstreamUnreachable { .. } => error_code::CANNOT_REACH_UPSTREAM,
        };
        ErrPacket::new(code, format!("Tollgate: {self}"))
    }
}

/// Serves one accepted connection to completion. Never panics on peer behaviour; every outcome
/// is logged and recorded.
pub async fn serve(
    ctx: SessionContext,
    mut client: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    routed: bool,
) {
    let started = tokio::time::Instant::now();
    let session_id = Uuid::now_v7();
    let _ = client.set_nodelay(true);

    // 1. resolve
    let origin = if routed {
        // A routed flow: its local address is the database it was bound for.
        Origin::routed(&ctx.config, local)
    } else {
        ctx.flows
            .as_ref()
            .and_then(|flows| flows.claim(peer, local))
    };
    let steering = match (&origin, routed) {
        (Some(_), true) => Some(Steering::Routed),
        (Some(_), false) => Some(Steering::Local),
        (None, _) => None,
    };
    let Some(target) = resolve_target(&ctx.config, origin.as_ref()) else {
        let error = SessionError::NotRedirected { client: peer };
        tracing::warn!(%session_id, client = %peer, "{error}");
        refuse(&mut client, &error).await;
        return;
    };
    let original_destination = origin.as_ref().map(|o| o.original_destination);
    let Some(upstream_addr) = target.upstream_for(original_destination) else {
        // Validation guarantees the fallback has an address; this is a redirected connection
        // whose original destination is always known, so this cannot happen.
        tracing::error!(%session_id, "no upstream address for target {}", target.name.get_ref());
        return;
    };
    let process = origin.as_ref().and_then(|o| o.process.clone());
    let mut started_event = SessionStarted {
        gateway: ctx.gateway_instance.to_string(),
        client_addr: peer,
        process: process.clone(),
        target: target.name.get_ref().clone(),
        original_destination,
        upstream: upstream_addr.to_string(),
        upstream_local_addr: None,
        tls: None,
        steering,
    };

    // 2. dial
    let server = match upstream::dial(&upstream_addr, ctx.config.limits.connect_timeout).await {
        Ok(server) => server,
        Err(source) => {
            let error = SessionError::UpstreamUnreachable {
                target: target.name.get_ref().clone(),
                addr: upstream_addr.to_string(),
                source,
            };
            log_started(&session_id, &started_event);
            tracing::warn!(%session_id, client = %peer, "{error}");
            ctx.recorder
                .record(RecordedEvent::now(
                    session_id,
                    EventKind::SessionStarted(started_event),
                ))
                .await;
            refuse(&mut client, &error).await;
            record_end(
                &ctx,
                session_id,
                started,
                EndReason::UpstreamUnreachable,
                Some(error.to_string()),
                None,
            )
            .await;
            return;
        }
    };
    started_event.upstream_local_addr = server.local_addr().ok();
    log_started(&session_id, &started_event);
    // Recorded once the legs are set up, with their TLS; stamped now.
    let started_record = RecordedEvent::now(session_id, EventKind::SessionStarted(started_event));

    // 3. login: terminated by the gateway for targets with a `login`, relayed otherwise
    let registration = ctx.live.register(session_id);
    let Some(mut relay) = login_phase(
        &ctx,
        client,
        server,
        target,
        process.as_ref(),
        started_record,
        started,
    )
    .await
    else {
        return;
    };
    if let Some(identity) = relay.identity_name() {
        registration.set_identity(identity);
    }
    let (reason, detail) = relay_to_the_end(&ctx, &mut relay, &registration, session_id).await;
    drop(registration);
    let (from_client, from_upstream) = relay.bytes();
    let totals = Some((from_client, from_upstream, relay.statements()));
    record_end(&ctx, session_id, started, reason, detail, totals).await;
}

/// Relays until the session ends: closed, failed, the gateway's shutdown, or killed.
async fn relay_to_the_end(
    ctx: &SessionContext,
    relay: &mut relay::Relay<'_>,
    registration: &crate::control::Registration,
    session_id: Uuid,
) -> (EndReason, Option<String>) {
    tokio::select! {
        end = relay.run(ctx.config.limits.login_timeout) => match end {
            RelayEnd::Closed => (EndReason::Closed, None),
            RelayEnd::LoginRefused(error) => (
                EndReason::LoginRefused,
                Some(format!("database refused the login: {} {}", error.code, error.message)),
            ),
            RelayEnd::Failed { detail } => {
                tracing::warn!(%session_id, "session failed: {detail}");
                (EndReason::Error, Some(detail))
            }
        },
        () = ctx.abort.cancelled() => (EndReason::Shutdown, None),
        order = registration.killed() => {
            let detail = order.describe();
            tracing::info!(%session_id, "session {detail}");
            relay.tell_killed(&detail).await;
            (EndReason::Killed, Some(detail))
        }
    }
}

/// What terminating logins needs, and the policy of the target at `target_index`, when the
/// gateway terminates logins for it.
fn target_policy(
    ctx: &SessionContext,
    target_index: Option<usize>,
) -> Option<(&LoginContext, &crate::policy::TargetPolicy)> {
    ctx.logins
        .as_deref()
        .zip(target_index)
        .and_then(|(logins, i)| {
            logins
                .policies
                .get(i)
                .and_then(Option::as_ref)
                .map(|p| (logins, p))
        })
}

/// Sets the relay up: after the gateway terminated the login (targets with a `login`), or
/// ready to relay the client's own login. `None` when the terminated login failed (already
/// recorded and told to the client). Records `started_record` (`session.started`) first, with
/// the TLS of the legs once known.
async fn login_phase<'c>(
    ctx: &'c SessionContext,
    client: TcpStream,
    server: TcpStream,
    target: &'c TargetConfig,
    process: Option<&ProcessInfo>,
    started_record: RecordedEvent,
    started: tokio::time::Instant,
) -> Option<relay::Relay<'c>> {
    let session_id = started_record.session_id;
    let hold = Some(hold_setup(ctx, target, process, &started_record));
    let recorder = ctx.recorder.for_session(target.recording_failure());
    let target_index = ctx
        .config
        .targets
        .iter()
        .position(|t| std::ptr::eq(t, target));
    let Some((logins, policy)) = target_policy(ctx, target_index) else {
        // The relay refuses TLS from clients and dials the database in plain TCP.
        record_started(ctx, started_record, Some(TlsInfo::default())).await;
        let mut relay = relay::Relay::new(client, server, recorder, session_id);
        relay.local_infile = target.local_infile;
        relay.guards = guards(ctx, target);
        relay.masking =
            crate::mask::SessionMasking::new(&ctx.config.masking, target.name.get_ref());
        relay.approval.setup = hold;
        return Some(relay);
    };
    let setup = terminate::LoginSetup {
        tls: &logins.tls,
        identities: &logins.identities,
        policy,
        target: target.name.get_ref(),
        upstream_tls: target_index
            .and_then(|i| logins.upstream_tls.get(i))
            .and_then(Option::as_ref),
        local_infile: target.local_infile,
        kernel_identity: process
            .filter(|_| target.kernel_identity)
            .and_then(|p| crate::identity::kernel_identity(&ctx.config, p)),
        timeout: ctx.config.limits.login_timeout,
        session_id,
        locks: &ctx.live,
    };
    let login = terminate::login(client, server, setup).await;
    match login {
        Ok(mut login) => {
            record_started(ctx, started_record, Some(negotiated_tls(&mut login))).await;
            record_login(
                ctx,
                session_id,
                LoginEvent {
                    user: login.user.clone(),
                    upstream_user: Some(login.grant.credential.user.clone()),
                    database: login.database.clone(),
                    accepted: true,
                    error_code: None,
                    error_message: None,
                    client_attributes: login
                        .client_attributes
                        .as_ref()
                        .map(|a| a.0.iter().cloned().collect()),
                    identity: Some(login.identity.clone()),
                    policy: Some(crate::policy::Decision::allowed(&login.grant)),
                    kernel_identity: login
                        .kernel_identity
                        .clone()
                        .filter(|k| *k != login.identity),
                },
            )
            .await;
            let mut relay = relay::Relay::after_login(login, recorder, session_id);
            relay.guards = guards(ctx, target);
            relay.masking =
                crate::mask::SessionMasking::new(&ctx.config.masking, target.name.get_ref());
            relay.approval.setup = hold;
            Some(relay)
        }
        Err(error) => {
            tracing::warn!(%session_id, "{error}");
            record_started(ctx, started_record, None).await;
            let refused = matches!(error, terminate::LoginError::Refused { .. });
            record_refused_login(ctx, session_id, &error).await;
            let reason = if refused {
                EndReason::LoginRefused
            } else {
                EndReason::Error
            };
            record_end(
                ctx,
                session_id,
                started,
                reason,
                Some(error.to_string()),
                None,
            )
            .await;
            None
        }
    }
}

/// The guardrails and rate limits of a session on `target`.
fn guards<'c>(ctx: &'c SessionContext, target: &'c TargetConfig) -> crate::guard::Guards<'c> {
    crate::guard::Guards {
        target: target.name.get_ref(),
        guardrails: &ctx.config.guardrails,
        rate_limits: &ctx.config.rate_limits,
        limiter: Some(&ctx.limiter),
    }
}

/// What holding statements for approval needs of the session (who and where from).
fn hold_setup(
    ctx: &SessionContext,
    target: &TargetConfig,
    process: Option<&ProcessInfo>,
    started: &RecordedEvent,
) -> relay::approval::HoldSetup {
    let client_addr = match &started.kind {
        EventKind::SessionStarted(s) => s.client_addr.to_string(),
        _ => String::new(),
    };
    relay::approval::HoldSetup {
        approvals: ctx.live.approvals.clone(),
        config: ctx.config.approvals.clone(),
        process: process.cloned(),
        client_addr,
        target: target.name.get_ref().clone(),
        gateway: ctx.gateway_instance.to_string(),
    }
}

/// What TLS the two legs of a terminated login negotiated.
fn negotiated_tls(login: &mut terminate::Terminated<'_>) -> TlsInfo {
    TlsInfo {
        client: match login.client.stream_mut() {
            stream::MaybeTls::Tls(tls) => TlsLeg::of(tls.get_ref().1),
            stream::MaybeTls::Plain(_) => None,
        },
        upstream: match login.server.stream_mut() {
            stream::MaybeTls::Tls(tls) => TlsLeg::of(tls.get_ref().1),
            stream::MaybeTls::Plain(_) => None,
        },
    }
}

/// Records `session.started` (`event`), with the TLS of the legs when known.
async fn record_started(ctx: &SessionContext, mut event: RecordedEvent, tls: Option<TlsInfo>) {
    if let EventKind::SessionStarted(started) = &mut event.kind {
        started.tls = tls;
    }
    ctx.recorder.record(event).await;
}

/// Records a login the gateway refused (bad credentials, no TLS, the policy).
async fn record_refused_login(
    ctx: &SessionContext,
    session_id: Uuid,
    error: &terminate::LoginError,
) {
    if let terminate::LoginError::Refused {
        user,
        reason,
        denied,
    } = error
    {
        record_login(
            ctx,
            session_id,
            LoginEvent {
                user: user.clone(),
                upstream_user: None,
                database: None,
                accepted: false,
                error_code: Some(denied.as_ref().map_or(1045, |d| d.code().0)),
                error_message: Some(reason.clone()),
                client_attributes: None,
                identity: None,
                policy: denied.as_ref().map(crate::policy::Decision::denied),
                kernel_identity: None,
            },
        )
        .await;
    }
}

async fn record_login(ctx: &SessionContext, session_id: Uuid, event: LoginEvent) {
    tracing::info!(
        %session_id,
        user = %event.user,
        upstream_user = event.upstream_user.as_deref(),
        accepted = event.accepted,
        identity = event.identity.as_ref().map(|i| i.name.as_str()),
        groups = ?event.identity.as_ref().map(|i| &i.groups),
        policy_rule = event.policy.as_ref().and_then(|p| p.rule),
        account = event.policy.as_ref().and_then(|p| p.account.as_deref()),
        reason = event.error_message.as_deref(),
        "login"
    );
    ctx.recorder
        .record(RecordedEvent::now(session_id, EventKind::Login(event)))
        .await;
}

/// The target of a connection: the one the kernel matched, else the fallback.
fn resolve_target<'c>(config: &'c Config, origin: Option<&Origin>) -> Option<&'c TargetConfig> {
    match origin {
        Some(origin) => config.targets.get(origin.target_id),
        None => config.fallback_target(),
    }
}

fn log_started(session_id: &Uuid, event: &SessionStarted) {
    let process = event.process.as_ref();
    tracing::info!(
        %session_id,
        client = %event.client_addr,
        target_name = %event.target,
        original_destination = event.original_destination.map(|a| a.to_string()),
        upstream = %event.upstream,
        upstream_local = event.upstream_local_addr.map(|a| a.to_string()),
        pid = process.map(|p| p.pid),
        tid = process.map(|p| p.tid),
        uid = process.map(|p| p.uid),
        gid = process.map(|p| p.gid),
        comm = process.map(|p: &ProcessInfo| p.comm.as_str()),
        cgroup_id = process.map(|p| p.cgroup_id),
        "session started"
    );
}

async fn record_end(
    ctx: &SessionContext,
    session_id: Uuid,
    started: tokio::time::Instant,
    reason: EndReason,
    detail: Option<String>,
    totals: Option<(u64, u64, u64)>,
) {
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(
        %session_id,
        reason = ?reason,
        bytes_from_client = totals.map(|t| t.0),
        bytes_from_upstream = totals.map(|t| t.1),
        statements = totals.map(|t| t.2),
        duration_ms,
        detail = detail.as_deref(),
        "session ended"
    );
    ctx.recorder
        .record(RecordedEvent::now(
            session_id,
            EventKind::SessionEnded(SessionEnded {
                reason,
                detail,
                bytes_from_client: totals.map(|t| t.0),
                bytes_from_upstream: totals.map(|t| t.1),
                duration_ms,
                statements: totals.map(|t| t.2),
            }),
        ))
        .await;
}

/// Sends the error as the first (and only) packet and closes: before the handshake, the client
/// expects the server to speak first, so an ERR with sequence id 0 is what it can display.
async fn refuse(client: &mut TcpStream, error: &SessionError) {
    let packet = error.to_err_packet().encode(0, false);
    if let Err(error) = client.write_all(&packet).await {
        tracing::debug!(%error, "could not send error packet to client");
    }
    let _ = client.shutdown().await;
}
