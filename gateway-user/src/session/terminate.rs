//! The login when the gateway terminates it (targets with a `login`): the client authenticates
//! to the gateway (over TLS, against the identity table) and the gateway logs in to the
//! database with its own credential, which the client never sees.
//!
//! Client leg: the gateway's greeting (the database's version and capabilities, TLS offered,
//! `caching_sha2_password`), the TLS upgrade, an auth switch to `caching_sha2_password` for
//! clients that start with another plugin, then "perform full authentication", which makes
//! the client send its password in clear text inside TLS. Without TLS the login is refused:
//! the gateway never asks for a password over an unencrypted connection.
//!
//! Database leg: a handshake response with the gateway's user, answering
//! `mysql_native_password` and `caching_sha2_password` (fast path, and full authentication
//! with the server's RSA key), including auth switches.

use mysql_common::constants::CapabilityFlags;
use std::time::Duration;

use tokio::{net::TcpStream, time::Instant};
use tokio_rustls::TlsAcceptor;

use super::stream::{ClientStream, Prefixed, UpstreamStream};
use crate::{
    auth::UpstreamCredential,
    identity::{Authenticator, Identity},
    policy::{Denied, Grant, TargetPolicy},
    protocol::{
        ErrPacket,
        attributes::Attributes,
        codec::{CodecError, Leg},
        compression::Algorithm,
        handshake::{self, NONCE_LEN, ServerGreeting},
        packets,
    },
};

/// Capabilities never negotiated between the legs (see `relay.rs`); TLS is added back on the
/// client leg, where the gateway terminates it.
fn stripped(local_infile: bool) -> CapabilityFlags {
    super::relay::stripped_capabilities(local_infile)
}

/// A finished login: both legs authenticated.
pub struct Terminated<'a> {
    /// The client's leg (TLS).
    pub client: Leg<ClientStream>,
    /// The database's leg.
    pub server: Leg<UpstreamStream>,
    /// Both legs use OK packets instead of EOF.
    pub deprecate_eof: bool,
    /// The MySQL user name the client gave.
    pub user: String,
    /// The identity the client proved (password or token).
    pub identity: Identity,
    /// The initial database.
    pub database: Option<String>,
    /// Whether `LOAD DATA LOCAL INFILE` was allowed for the session.
    pub local_infile: bool,
    /// The connection attributes the client sent.
    pub client_attributes: Option<Attributes>,
    /// The kernel-attested identity of the local process, when there is one.
    pub kernel_identity: Option<Identity>,
    /// What the policy granted the identity (account, databases, session length).
    pub grant: Grant<'a>,
    /// What re-authenticating the client later (`COM_CHANGE_USER`) needs.
    pub reauthentication: Reauthentication<'a>,
}

/// What `COM_CHANGE_USER` needs once the login is done: the client proves the new identity to
/// the gateway (as at login), and the gateway re-authenticates its own account on the
/// database, which resets the database session as the client expects.
pub struct Reauthentication<'a> {
    /// Who may log in.
    pub identities: &'a Authenticator,
    /// The target's accounts and rules (a new identity may get another account).
    pub policy: &'a TargetPolicy,
    /// The database's login nonce (a `COM_CHANGE_USER` answer is computed against it).
    pub nonce: [u8; NONCE_LEN],
    /// The database's default authentication plugin.
    pub plugin: String,
    /// Capabilities the client negotiated (they decide how its `COM_CHANGE_USER` is laid out).
    pub client_capabilities: u32,
    /// The client's character set at login (kept when a `COM_CHANGE_USER` names none).
    pub charset: u8,
    /// The connection attributes the database was sent, when it takes them (a
    /// `COM_CHANGE_USER` then carries them too, with the new identity).
    pub attributes: Option<Attributes>,
    /// The session, for the attributes.
    pub session_id: uuid::Uuid,
}

/// Why a terminated login failed; the client has been told already when it makes sense.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The client's credentials were wrong, TLS was missing, or the client misbehaved.
    #[error("client login refused for '{user}': {reason}")]
    Refused {
        /// The user name the client gave (empty before it gave one).
        user: String,
        /// Why.
        reason: String,
        /// The policy's refusal, when the policy refused.
        denied: Option<Denied>,
    },
    /// The database refused the gateway's login or broke the protocol.
    #[error("database login failed: {0}")]
    Upstream(String),
    /// A socket failed.
    #[error("{0}")]
    Io(String),
    /// The login did not finish within `limits.login_timeout`; the client got ERR 1159 when
    /// it could still read one.
    #[error("the login did not finish within {0:?} (limits.login_timeout)")]
    Timeout(std::time::Duration),
}

impl From<CodecError> for LoginError {
    fn from(error: CodecError) -> Self {
        Self::Io(error.to_string())
    }
}

/// Everything the login needs from the gateway's configuration.
pub struct LoginSetup<'a> {
    /// TLS toward the client.
    pub tls: &'a TlsAcceptor,
    /// Who may log in.
    pub identities: &'a Authenticator,
    /// The target's accounts and `[[targets.allow]]` rules.
    pub policy: &'a TargetPolicy,
    /// Target name, for messages.
    pub target: &'a str,
    /// TLS toward the database, unless disabled for the target.
    pub upstream_tls: Option<&'a UpstreamTls>,
    /// Whether `LOAD DATA LOCAL INFILE` is allowed (the target's `local_infile`).
    pub local_infile: bool,
    /// The kernel-attested identity of the local process, when the target allows it and the
    /// process's user is mapped (`[[local_identities]]`).
    pub kernel_identity: Option<Identity>,
    /// How long the whole login may take (`limits.login_timeout`).
    pub timeout: Duration,
    /// The session, for log lines.
    pub session_id: uuid::Uuid,
    /// Identity locks (`tollgate sessions kill --lock`): a locked identity is refused.
    pub locks: &'a crate::control::LiveSessions,
}

/// When the login must be over, and the limit that set it (for messages).
#[derive(Debug, Clone, Copy)]
pub(super) struct Deadline {
    at: Instant,
    limit: Duration,
}

impl Deadline {
    fn after(limit: Duration) -> Self {
        Self {
            at: Instant::now() + limit,
            limit,
        }
    }

    /// Runs `step`, or fails with [`LoginError::Timeout`] once the deadline has passed.
    async fn bound<T>(
        self,
        step: impl Future<Output = Result<T, LoginError>>,
    ) -> Result<T, LoginError> {
        tokio::time::timeout_at(self.at, step)
            .await
            .unwrap_or(Err(LoginError::Timeout(self.limit)))
    }
}

/// TLS toward one target's database.
pub struct UpstreamTls {
    /// The connector (verifies the certificate unless configured not to).
    pub connector: tokio_rustls::TlsConnector,
    /// Whether a database without TLS is refused.
    pub required: bool,
    /// Name the certificate must carry.
    pub server_name: rustls::pki_types::ServerName<'static>,
}

/// Runs both logins within `setup.timeout`; a client still waiting when it runs out gets
/// ERR 1159.
pub async fn login(
    client: TcpStream,
    server: TcpStream,
    setup: LoginSetup<'_>,
) -> Result<Terminated<'_>, LoginError> {
    let deadline = Deadline::after(setup.timeout);
    let mut server = Leg::new(UpstreamStream::Plain(server));
    let mut client = Leg::new(ClientStream::Plain(client));
    server.reset_sequence();
    client.reset_sequence();

    let (greeting, offered) = greet(&mut client, &mut server, &setup, deadline).await?;
    let (mut client, login, identity) = client_login(client, &setup, deadline).await?;
    refuse_locked(&mut client, &setup, &login, &identity).await?;
    let grant = apply_policy(&mut client, &setup, &login, &identity).await?;

    let compression = Algorithm::negotiate(login.capabilities, offered, login.zstd_level);
    let requested = login.capabilities
        & offered
        & !(CapabilityFlags::CLIENT_SSL
            | CapabilityFlags::CLIENT_COMPRESS
            | CapabilityFlags::CLIENT_ZSTD_COMPRESSION_ALGORITHM)
            .bits();
    // What the database sees of the client: its requests, and its connection attributes with
    // the gateway's added, so the database's session list shows who is behind the connection.
    let attributes = Attributes::for_database(
        login.attributes.as_ref(),
        &login.user,
        &setup.session_id.to_string(),
    );
    let upstream_view = handshake::ClientLogin {
        attributes: Some(attributes.clone()),
        ..login.clone()
    };
    let database = async {
        database_login(
            server,
            &greeting,
            &upstream_view,
            requested,
            &setup,
            grant.credential,
        )
        .await
        .map_err(LoginError::Upstream)
    };
    let server = match deadline.bound(database).await {
        Ok(server) => server,
        Err(error @ LoginError::Timeout(_)) => {
            tell_timeout(&mut client, &error).await;
            return Err(error);
        }
        Err(error) => {
            let detail = match &error {
                LoginError::Upstream(detail) => detail.clone(),
                other => other.to_string(),
            };
            refuse(
                &mut client,
                &format!(
                    "Tollgate could not log in to target '{}': {detail}",
                    setup.target
                ),
            )
            .await;
            return Err(error);
        }
    };
    client
        .write_packet(&handshake::ok_packet(greeting.status))
        .await?;
    client.flush().await?;
    if let Some(algorithm) = compression {
        // The OK above is the last uncompressed packet.
        client.compress(algorithm)?;
        tracing::info!(
            session_id = %setup.session_id,
            user = login.user,
            target_name = setup.target,
            compression = %algorithm,
            level = algorithm.level(),
            "client leg compressed"
        );
    }
    Ok(Terminated {
        client,
        server,
        deprecate_eof: requested & CapabilityFlags::CLIENT_DEPRECATE_EOF.bits() != 0,
        reauthentication: Reauthentication {
            identities: setup.identities,
            policy: setup.policy,
            nonce: greeting.nonce,
            plugin: greeting.auth_plugin.clone(),
            client_capabilities: login.capabilities & offered,
            charset: login.charset,
            attributes: (greeting.capabilities & CapabilityFlags::CLIENT_CONNECT_ATTRS.bits() != 0)
                .then_some(attributes),
            session_id: setup.session_id,
        },
        user: login.user,
        identity,
        grant,
        database: login.database,
        local_infile: setup.local_infile,
        client_attributes: login.attributes,
        kernel_identity: setup.kernel_identity.clone(),
    })
}

/// Refuses an identity an operator locked (`tollgate sessions kill --lock`), with 1045.
async fn refuse_locked(
    client: &mut Leg<ClientStream>,
    setup: &LoginSetup<'_>,
    login: &handshake::ClientLogin,
    identity: &Identity,
) -> Result<(), LoginError> {
    let Some(lock) = setup.locks.locked(&identity.name) else {
        return Ok(());
    };
    let reason = lock.describe();
    let message = format!(
        "Access denied for user '{}' (Tollgate: {reason})",
        login.user
    );
    send_err(
        client,
        &ErrPacket::new(1045, message).with_sql_state(*b"28000"),
    )
    .await;
    Err(LoginError::Refused {
        user: login.user.clone(),
        reason,
        denied: None,
    })
}

/// The policy's decision at login; a refusal is told to the client (1045, or 1044 for the
/// initial database).
async fn apply_policy<'p>(
    client: &mut Leg<ClientStream>,
    setup: &LoginSetup<'p>,
    login: &handshake::ClientLogin,
    identity: &Identity,
) -> Result<Grant<'p>, LoginError> {
    match decide(setup.policy, identity, login.database.as_deref()) {
        Ok(grant) => Ok(grant),
        Err(denied) => {
            let (code, state) = denied.code();
            let message = format!(
                "Access denied for user '{}' (Tollgate: {denied})",
                login.user
            );
            send_err(client, &ErrPacket::new(code, message).with_sql_state(state)).await;
            Err(LoginError::Refused {
                user: login.user.clone(),
                reason: denied.to_string(),
                denied: Some(denied),
            })
        }
    }
}

/// The policy's decision for `identity`, and for the initial database it asked for.
pub(super) fn decide<'p>(
    policy: &'p TargetPolicy,
    identity: &Identity,
    database: Option<&str>,
) -> Result<Grant<'p>, Denied> {
    let grant = policy.decide(identity)?;
    if let Some(database) = database {
        grant.check_database(identity, database)?;
    }
    Ok(grant)
}

/// Reads the database's greeting and greets the client with the database's version and
/// capabilities (edited), the gateway's own nonce and `caching_sha2_password`; returns the
/// database's greeting and the capabilities offered to the client.
async fn greet(
    client: &mut Leg<ClientStream>,
    server: &mut Leg<UpstreamStream>,
    setup: &LoginSetup<'_>,
    deadline: Deadline,
) -> Result<(ServerGreeting, u32), LoginError> {
    let greeting_bytes = match deadline.bound(read(server)).await {
        Ok(greeting) => greeting,
        Err(error) => {
            tell_timeout(client, &error).await;
            return Err(error);
        }
    };
    if greeting_bytes.first() == Some(&0xff) {
        client.write_packet(&greeting_bytes).await?;
        client.flush().await?;
        return Err(LoginError::Upstream(
            "the database refused the connection".into(),
        ));
    }
    let greeting = handshake::parse_greeting(&greeting_bytes).ok_or_else(|| {
        LoginError::Upstream("the greeting is not a protocol-10 handshake".into())
    })?;
    // Compression (zlib, zstd) is offered on the client's leg only, where the gateway
    // terminates it; the database's leg stays uncompressed (usually local to the gateway).
    let offered = (greeting.capabilities & !stripped(setup.local_infile).bits())
        | CapabilityFlags::CLIENT_SSL.bits()
        | CapabilityFlags::CLIENT_COMPRESS.bits()
        | CapabilityFlags::CLIENT_ZSTD_COMPRESSION_ALGORITHM.bits()
        | CapabilityFlags::CLIENT_PLUGIN_AUTH.bits()
        | CapabilityFlags::CLIENT_SECURE_CONNECTION.bits();
    let nonce = handshake::new_nonce();
    client
        .write_packet(&handshake::build_greeting(&greeting, offered, &nonce))
        .await?;
    client.flush().await?;

    Ok((greeting, offered))
}

/// The client's half: TLS upgrade, handshake response, password through
/// `caching_sha2_password` full authentication, checked against the identity table.
async fn client_login(
    mut client: Leg<ClientStream>,
    setup: &LoginSetup<'_>,
    deadline: Deadline,
) -> Result<(Leg<ClientStream>, handshake::ClientLogin, Identity), LoginError> {
    let mut response = read_client(&mut client, Some(deadline)).await?;
    if packets::requests_tls(&response) {
        // Mid-handshake there is no way to tell the client anything.
        client = deadline.bound(upgrade(client, setup.tls)).await?;
        response = read_client(&mut client, Some(deadline)).await?;
    }
    let login = handshake::parse_client_login(&response).ok_or_else(|| LoginError::Refused {
        user: String::new(),
        reason: "unsupported handshake (a protocol 4.1 client is required)".into(),
        denied: None,
    })?;
    // An empty answer from a password plugin means no password at all: a mapped local process
    // then logs in as its kernel identity (nothing secret travels, so TLS is not needed);
    // anyone else is refused now rather than asked for a password it does not have.
    let no_password = matches!(
        login.auth_plugin.as_deref(),
        None | Some(
            "caching_sha2_password"
                | "mysql_native_password"
                | "mysql_clear_password"
                | "sha256_password"
        )
    ) && handshake::auth_response(&response).is_some_and(|data| data.is_empty());
    if no_password {
        if let Some(identity) = &setup.kernel_identity {
            return Ok((client, login, identity.clone()));
        }
        let message = format!(
            "Access denied for user '{}' (Tollgate: no password given, and no kernel identity \
             for this connection)",
            login.user
        );
        refuse(&mut client, &message).await;
        return Err(LoginError::Refused {
            user: login.user,
            reason: "no password given".into(),
            denied: None,
        });
    }
    if !client.stream_mut().is_tls() {
        refuse(
            &mut client,
            "Tollgate: log in over TLS (the gateway checks your password itself and never asks \
             for it over an unencrypted connection)",
        )
        .await;
        return Err(LoginError::Refused {
            user: login.user,
            reason: "no TLS".into(),
            denied: None,
        });
    }
    let password = if login.auth_plugin.as_deref() == Some("mysql_clear_password") {
        // The client sent its password in clear text already (inside TLS, checked above).
        let mut password = handshake::auth_response(&response).unwrap_or_default();
        if password.last() == Some(&0) {
            password.pop();
        }
        password
    } else {
        client_password(&mut client, login.auth_plugin.as_deref(), Some(deadline)).await?
    };
    let identity = match setup.identities.authenticate(&login.user, password).await {
        Ok(identity) => identity,
        Err(error) => {
            let message = format!(
                "Access denied for user '{}' (Tollgate: {error})",
                login.user
            );
            refuse(&mut client, &message).await;
            return Err(LoginError::Refused {
                user: login.user,
                reason: error.to_string(),
                denied: None,
            });
        }
    };

    Ok((client, login, identity))
}

async fn read<S>(leg: &mut Leg<S>) -> Result<Vec<u8>, LoginError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    leg.read_packet()
        .await?
        .ok_or_else(|| LoginError::Io("connection closed during the login".into()))
}

/// The client's next packet; once `deadline` passes, the client gets ERR 1159 instead.
async fn read_client(
    client: &mut Leg<ClientStream>,
    deadline: Option<Deadline>,
) -> Result<Vec<u8>, LoginError> {
    let Some(deadline) = deadline else {
        return read(client).await;
    };
    let result = deadline.bound(read(client)).await;
    if let Err(error) = &result {
        tell_timeout(client, error).await;
    }
    result
}

/// Sends ERR 1159 (08S01) when `error` is a timeout.
async fn tell_timeout(client: &mut Leg<ClientStream>, error: &LoginError) {
    if let LoginError::Timeout(_) = error {
        let packet = ErrPacket::new(1159, format!("Tollgate: {error}")).with_sql_state(*b"08S01");
        send_err(client, &packet).await;
    }
}

/// Turns the client's leg into TLS, keeping its sequence ids and any bytes already read.
async fn upgrade(
    client: Leg<ClientStream>,
    tls: &TlsAcceptor,
) -> Result<Leg<ClientStream>, LoginError> {
    let (bytes_read, bytes_written) = (client.bytes_read, client.bytes_written);
    let (stream, codec, leftover) = client.into_parts();
    let ClientStream::Plain(tcp) = stream else {
        return Err(LoginError::Refused {
            user: String::new(),
            reason: "TLS requested twice".into(),
            denied: None,
        });
    };
    let tls_stream = tls
        .accept(Prefixed::new(leftover, tcp))
        .await
        .map_err(|e| LoginError::Refused {
            user: String::new(),
            reason: format!("TLS handshake failed: {e}"),
            denied: None,
        })?;
    Ok(Leg::from_parts(
        ClientStream::Tls(Box::new(tls_stream)),
        codec,
        bytes_read,
        bytes_written,
    ))
}

/// Gets the client's password in clear text (inside TLS) through `caching_sha2_password`:
/// an auth switch for clients that started with another plugin, then "perform full
/// authentication". Also used for `COM_CHANGE_USER`.
pub(super) async fn client_password(
    client: &mut Leg<ClientStream>,
    plugin: Option<&str>,
    deadline: Option<Deadline>,
) -> Result<Vec<u8>, LoginError> {
    if plugin != Some("caching_sha2_password") {
        client
            .write_packet(&handshake::auth_switch(
                "caching_sha2_password",
                &handshake::new_nonce(),
            ))
            .await?;
        client.flush().await?;
        // The scramble: useless to a gateway that stores argon2 hashes.
        read_client(client, deadline).await?;
    }
    client
        .write_packet(&handshake::PERFORM_FULL_AUTHENTICATION)
        .await?;
    client.flush().await?;
    let mut password = read_client(client, deadline).await?;
    if password.last() == Some(&0) {
        password.pop();
    }
    Ok(password)
}

/// The database's half: TLS when the target wants it, then the gateway's own login.
async fn database_login(
    server: Leg<UpstreamStream>,
    greeting: &ServerGreeting,
    login: &handshake::ClientLogin,
    requested: u32,
    setup: &LoginSetup<'_>,
    credential: &UpstreamCredential,
) -> Result<Leg<UpstreamStream>, String> {
    let (mut server, tls) =
        secure_upstream(server, greeting, login, requested, setup.upstream_tls).await?;
    if !tls && setup.upstream_tls.is_some() {
        tracing::warn!(
            session_id = %setup.session_id,
            target_name = setup.target,
            "the database does not offer TLS; the gateway's login goes unencrypted"
        );
    }
    let requested = if tls {
        requested | CapabilityFlags::CLIENT_SSL.bits()
    } else {
        requested
    };
    upstream_login(&mut server, greeting, requested, login, credential).await?;
    Ok(server)
}

/// Upgrades the database leg to TLS when the target wants it and the database offers it;
/// returns the leg and whether it is TLS. Fails when TLS is required but not possible.
async fn secure_upstream(
    server: Leg<UpstreamStream>,
    greeting: &ServerGreeting,
    login: &handshake::ClientLogin,
    requested: u32,
    tls: Option<&UpstreamTls>,
) -> Result<(Leg<UpstreamStream>, bool), String> {
    let Some(tls) = tls else {
        return Ok((server, false));
    };
    if greeting.capabilities & CapabilityFlags::CLIENT_SSL.bits() == 0 {
        if tls.required {
            return Err(
                "the target requires TLS (targets.tls.mode) but the database does not offer it"
                    .into(),
            );
        }
        return Ok((server, false));
    }
    let mut server = server;
    // The SSLRequest carries the same capabilities as the handshake response that follows
    // inside TLS (the server may take them from either; the database name's flag included).
    let request = handshake::build_upstream_login(
        requested | CapabilityFlags::CLIENT_SSL.bits(),
        greeting,
        login,
        "",
        &[],
        login.database.as_deref(),
        "",
    );
    let io = |e: CodecError| e.to_string();
    server
        .write_packet(request.get(..32).unwrap_or_default())
        .await
        .map_err(io)?;
    server.flush().await.map_err(io)?;
    let (bytes_read, bytes_written) = (server.bytes_read, server.bytes_written);
    let (stream, codec, leftover) = server.into_parts();
    let UpstreamStream::Plain(tcp) = stream else {
        return Err("TLS started twice".into());
    };
    let stream = tls
        .connector
        .connect(tls.server_name.clone(), Prefixed::new(leftover, tcp))
        .await
        .map_err(|e| format!("TLS to the database failed: {e}"))?;
    Ok((
        Leg::from_parts(
            UpstreamStream::Tls(Box::new(stream)),
            codec,
            bytes_read,
            bytes_written,
        ),
        true,
    ))
}

/// Logs in to the database with the gateway's credential.
async fn upstream_login(
    server: &mut Leg<UpstreamStream>,
    greeting: &ServerGreeting,
    capabilities: u32,
    login: &handshake::ClientLogin,
    credential: &UpstreamCredential,
) -> Result<(), String> {
    let plugin = &greeting.auth_plugin;
    let answer =
        handshake::scramble(plugin, &greeting.nonce, credential.password()).unwrap_or_default();
    let response = handshake::build_upstream_login(
        capabilities,
        greeting,
        login,
        &credential.user,
        &answer,
        login.database.as_deref(),
        plugin,
    );
    server
        .write_packet(&response)
        .await
        .map_err(|e| e.to_string())?;
    server.flush().await.map_err(|e| e.to_string())?;
    let end = upstream_authentication(server, &greeting.nonce, credential).await?;
    if end.first() == Some(&0xff) {
        return Err(packets::parse_err(&end).map_or_else(
            || "refused".to_owned(),
            |e| format!("{} {}", e.code, e.message),
        ));
    }
    Ok(())
}

/// Follows the database's side of an authentication exchange the gateway started with its own
/// credential (a handshake response or `COM_CHANGE_USER`), answering auth switches
/// (`mysql_native_password`, `caching_sha2_password`, `client_ed25519`), the
/// `caching_sha2_password` fast and full paths (the password in clear text inside TLS, else
/// encrypted with the server's RSA key). Returns the database's final OK or ERR packet; `Err`
/// when the exchange itself broke.
pub(super) async fn upstream_authentication(
    server: &mut Leg<UpstreamStream>,
    challenge: &[u8],
    credential: &UpstreamCredential,
) -> Result<Vec<u8>, String> {
    let io = |e: CodecError| e.to_string();
    let mut challenge = challenge.to_vec();
    loop {
        let packet = server
            .read_packet()
            .await
            .map_err(io)?
            .ok_or("the database closed the connection during the login")?;
        match packet.first() {
            Some(0x00 | 0xff) => return Ok(packet),
            Some(0xfe) => {
                let mut r = packets::Reader::new(packet.get(1..).unwrap_or_default());
                let plugin =
                    String::from_utf8_lossy(r.nul_bytes().unwrap_or_default()).into_owned();
                challenge = r.rest().to_vec();
                let answer = handshake::scramble(&plugin, &challenge, credential.password())
                    .ok_or_else(|| {
                        format!(
                            "the database asks for auth plugin {plugin}, which the gateway \
                             does not support"
                        )
                    })?;
                server.write_packet(&answer).await.map_err(io)?;
                server.flush().await.map_err(io)?;
            }
            Some(0x01) if packet.get(1) == Some(&0x03) => {}
            Some(0x01) if packet.get(1) == Some(&0x04) => {
                if server.stream_mut().is_tls() {
                    // Full authentication inside TLS: the password in clear text.
                    let mut secret = zeroize::Zeroizing::new(credential.password().to_vec());
                    secret.push(0);
                    server.write_packet(&secret).await.map_err(io)?;
                } else {
                    // Full authentication without TLS: ask for the server's RSA key.
                    server.write_packet(&[0x02]).await.map_err(io)?;
                }
                server.flush().await.map_err(io)?;
            }
            Some(0x01) => {
                // The server's public key: send the password encrypted with it.
                let key = packet.get(1..).unwrap_or_default();
                let nonce = challenge
                    .get(..NONCE_LEN)
                    .ok_or("the database's nonce is too short for caching_sha2_password")?;
                let mut secret = zeroize::Zeroizing::new(credential.password().to_vec());
                secret.push(0);
                for (i, byte) in secret.iter_mut().enumerate() {
                    *byte ^= nonce[i % NONCE_LEN];
                }
                let encrypted = mysql_common::crypto::encrypt(&secret, key)
                    .map_err(|e| format!("encrypting the password with the server's key: {e}"))?;
                server.write_packet(&encrypted).await.map_err(io)?;
                server.flush().await.map_err(io)?;
            }
            _ => return Err("unexpected packet during the login".into()),
        }
    }
}

/// Sends ERR 1045 (28000) to the client.
async fn refuse(client: &mut Leg<ClientStream>, message: &str) {
    send_err(
        client,
        &ErrPacket::new(1045, message).with_sql_state(*b"28000"),
    )
    .await;
}

/// Sends `packet` to the client as the next packet of the login exchange.
async fn send_err(client: &mut Leg<ClientStream>, packet: &ErrPacket) {
    if client.write_packet(&packet.payload(true)).await.is_ok() {
        let _ = client.flush().await;
    }
}
