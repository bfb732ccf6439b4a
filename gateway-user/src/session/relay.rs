//! The MySQL-aware relay: every packet of both legs is framed, checked and followed, so the
//! gateway knows each command and its outcome while bytes flow through unchanged (apart from
//! the capability edits below).
//!
//! Seams for later stages: [`Relay::command_phase`] sees each command before it goes upstream;
//! the response readers in [`super::response`] see each column definition and row as it
//! streams back.
//!
//! Capability edits, so that every response can be followed without buffering: the greeting
//! never offers TLS or compression (the protocol engine terminates both later), query
//! attributes, optional metadata, or MariaDB's progress reports, bulk execution and metadata
//! caching; `LOCAL INFILE` is taken out of the client's request unless the target allows it
//! (`local_infile`).

pub(super) mod approval;

use mysql_common::constants::CapabilityFlags;
use tokio::net::TcpStream;
use tokio::time::Instant;
use uuid::Uuid;

use super::{
    capture::RowCaps,
    prepared::PreparedStatements,
    response::{Outcome, StatementRecord},
    stream::{ClientStream, UpstreamStream},
    terminate::{Reauthentication, Terminated},
};
use crate::{
    identity::Identity,
    policy::Grant,
    protocol::{
        ErrPacket,
        codec::{CodecError, Leg, MAX_PACKET},
        compression::CompressionError,
        error_code,
        packets::{self, ErrInfo},
    },
    recording::{EventKind, LoginEvent, RecordedEvent, Recorder},
};

/// Capabilities the gateway never lets a client and the database negotiate (see module doc);
/// `LOCAL INFILE` among them unless the target allows it.
pub(super) fn stripped_capabilities(local_infile: bool) -> CapabilityFlags {
    let stripped = CapabilityFlags::CLIENT_SSL
        | CapabilityFlags::CLIENT_COMPRESS
        | CapabilityFlags::CLIENT_ZSTD_COMPRESSION_ALGORITHM
        | CapabilityFlags::CLIENT_LOCAL_FILES
        | CapabilityFlags::CLIENT_QUERY_ATTRIBUTES
        | CapabilityFlags::CLIENT_OPTIONAL_RESULTSET_METADATA
        | CapabilityFlags::CLIENT_PROGRESS_OBSOLETE;
    if local_infile {
        stripped - CapabilityFlags::CLIENT_LOCAL_FILES
    } else {
        stripped
    }
}

/// Command bytes.
mod com {
    pub const QUIT: u8 = 0x01;
    pub const INIT_DB: u8 = 0x02;
    pub const QUERY: u8 = 0x03;
    pub const FIELD_LIST: u8 = 0x04;
    pub const STATISTICS: u8 = 0x09;
    pub const PROCESS_INFO: u8 = 0x0a;
    pub const CHANGE_USER: u8 = 0x11;
    pub const BINLOG_DUMP: u8 = 0x12;
    pub const TABLE_DUMP: u8 = 0x13;
    pub const REGISTER_SLAVE: u8 = 0x15;
    pub const STMT_PREPARE: u8 = 0x16;
    pub const STMT_EXECUTE: u8 = 0x17;
    pub const STMT_SEND_LONG_DATA: u8 = 0x18;
    pub const STMT_CLOSE: u8 = 0x19;
    pub const STMT_RESET: u8 = 0x1a;
    pub const STMT_FETCH: u8 = 0x1c;
    pub const BINLOG_DUMP_GTID: u8 = 0x1e;
    pub const RESET_CONNECTION: u8 = 0x1f;
}

/// How long the gateway waits, after a client's `COM_QUIT`, for the client to close first.
const QUIT_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// The name recorded for a command byte.
#[must_use]
pub fn command_name(command: u8) -> &'static str {
    match command {
        0x00 => "sleep",
        com::QUIT => "quit",
        com::INIT_DB => "init_db",
        com::QUERY => "query",
        com::FIELD_LIST => "field_list",
        0x05 => "create_db",
        0x06 => "drop_db",
        0x07 => "refresh",
        0x08 => "shutdown",
        com::STATISTICS => "statistics",
        com::PROCESS_INFO => "process_info",
        0x0c => "process_kill",
        0x0d => "debug",
        0x0e => "ping",
        com::CHANGE_USER => "change_user",
        com::BINLOG_DUMP => "binlog_dump",
        com::TABLE_DUMP => "table_dump",
        com::REGISTER_SLAVE => "register_slave",
        com::STMT_PREPARE => "stmt_prepare",
        com::STMT_EXECUTE => "stmt_execute",
        com::STMT_SEND_LONG_DATA => "stmt_send_long_data",
        com::STMT_CLOSE => "stmt_close",
        com::STMT_RESET => "stmt_reset",
        0x1b => "set_option",
        com::STMT_FETCH => "stmt_fetch",
        com::BINLOG_DUMP_GTID => "binlog_dump_gtid",
        com::RESET_CONNECTION => "reset_connection",
        _ => "unknown",
    }
}

/// How a relayed session ended.
#[derive(Debug)]
pub enum RelayEnd {
    /// The client quit or closed.
    Closed,
    /// The database refused the login.
    LoginRefused(ErrInfo),
    /// A leg broke the protocol or failed; `detail` says which and how.
    Failed {
        /// What happened, naming the side.
        detail: String,
    },
}

/// Why the relay stopped early; decides what the client is told.
#[derive(Debug, thiserror::Error)]
pub(super) enum RelayError {
    /// The client's side failed or misbehaved.
    #[error("client: {0}")]
    Downstream(CodecError),
    /// The database's side failed.
    #[error("database: {0}")]
    Upstream(CodecError),
    /// The database closed the connection mid-exchange.
    #[error("database closed the connection")]
    UpstreamClosed,
    /// The client closed the connection mid-exchange.
    #[error("client closed the connection")]
    DownstreamClosed,
    /// The database sent something the protocol does not allow here.
    #[error("database protocol error: {0}")]
    UpstreamProtocol(String),
    /// The session reached the policy's `max_session`.
    #[error("the session reached its maximum length ({0:?}, max_session of its allow rule)")]
    SessionLimit(std::time::Duration),
    /// The login did not finish in time (`limits.login_timeout`).
    #[error("the login did not finish within {0:?} (limits.login_timeout)")]
    LoginTimeout(std::time::Duration),
    /// The client broke off re-authenticating (`COM_CHANGE_USER`).
    #[error("client re-authentication failed: {0}")]
    Reauthentication(String),
    /// An operator ended the session (`tollgate sessions kill`).
    #[error("session {0}")]
    Killed(String),
}

/// Both legs of one session and what the relay tracks about them.
pub struct Relay<'r> {
    pub(super) client: Leg<ClientStream>,
    pub(super) server: Leg<UpstreamStream>,
    /// True when both legs agreed on `CLIENT_DEPRECATE_EOF` (OK packets end row streams).
    pub(super) deprecate_eof: bool,
    pub(super) recorder: Recorder,
    pub(super) session_id: Uuid,
    statements: u64,
    /// What the recording needs of prepared statements (SQL text, parameter types, long data,
    /// result columns), by statement id.
    prepared: PreparedStatements,
    /// The session's current database (the login's, then each successful `COM_INIT_DB`,
    /// `USE` or `COM_CHANGE_USER`), recorded with every statement.
    database: Option<String>,
    /// How many rows of each statement's response are recorded.
    pub(super) row_caps: RowCaps,
    /// True when the gateway already terminated the login (no handshake to relay).
    logged_in: bool,
    /// For a terminated login: what `COM_CHANGE_USER` needs.
    pub(super) reauthentication: Option<Reauthentication<'r>>,
    /// Failed `COM_CHANGE_USER` attempts so far.
    pub(super) failed_reauthentications: u8,
    /// Whether `LOAD DATA LOCAL INFILE` is allowed (the target's `local_infile`).
    pub(super) local_infile: bool,
    /// What the policy granted (terminated logins): the databases the session may use and how
    /// long it may last.
    pub(super) grant: Option<Grant<'r>>,
    /// The identity the client proved (terminated logins).
    pub(super) identity: Option<Identity>,
    /// When the session started, for `max_session`.
    pub(super) started: Instant,
    /// Whether the client waits for the response to a command.
    client_waits: ClientWaits,
    /// The guardrails and rate limits of the session's target.
    pub(super) guards: crate::guard::Guards<'r>,
    /// Just-in-time approvals: what holding a statement needs, and decisions to record.
    pub(super) approval: approval::Holding,
    /// Masking of result sets (`[[masking]]`) and the plans of open cursors.
    pub(super) masking: crate::mask::SessionMasking<'r>,
}

/// What the client waits for; decides the sequence id of an error the gateway tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientWaits {
    /// Nothing: it is idle, or its command was answered.
    Nothing,
    /// The response to its command, as a packet with the next sequence id.
    Response,
}

/// How much of each result the recorder keeps (`[recording] max_rows_per_statement`,
/// `max_row_bytes_per_statement`).
fn row_caps(recorder: &Recorder) -> RowCaps {
    let (max_rows, max_bytes) = recorder.row_caps();
    RowCaps {
        max_rows,
        max_bytes,
    }
}

impl<'r> Relay<'r> {
    /// Wraps the two connected sockets.
    pub fn new(client: TcpStream, server: TcpStream, recorder: Recorder, session_id: Uuid) -> Self {
        let row_caps = row_caps(&recorder);
        Self {
            client: Leg::new(ClientStream::Plain(client)),
            server: Leg::new(UpstreamStream::Plain(server)),
            deprecate_eof: false,
            recorder,
            session_id,
            statements: 0,
            prepared: PreparedStatements::default(),
            database: None,
            row_caps,
            logged_in: false,
            reauthentication: None,
            failed_reauthentications: 0,
            local_infile: false,
            grant: None,
            identity: None,
            started: Instant::now(),
            client_waits: ClientWaits::Nothing,
            guards: crate::guard::Guards::NONE,
            approval: approval::Holding::default(),
            masking: crate::mask::SessionMasking::default(),
        }
    }

    /// Continues a session whose login the gateway terminated: only commands are left.
    pub fn after_login(login: Terminated<'r>, recorder: Recorder, session_id: Uuid) -> Self {
        let row_caps = row_caps(&recorder);
        Self {
            client: login.client,
            server: login.server,
            deprecate_eof: login.deprecate_eof,
            recorder,
            session_id,
            statements: 0,
            prepared: PreparedStatements::default(),
            database: login.database,
            row_caps,
            logged_in: true,
            reauthentication: Some(login.reauthentication),
            failed_reauthentications: 0,
            local_infile: login.local_infile,
            grant: Some(login.grant),
            identity: Some(login.identity),
            started: Instant::now(),
            client_waits: ClientWaits::Nothing,
            guards: crate::guard::Guards::NONE,
            approval: approval::Holding::default(),
            masking: crate::mask::SessionMasking::default(),
        }
    }

    /// Bytes read from the client and from the database so far.
    #[must_use]
    pub fn bytes(&self) -> (u64, u64) {
        (self.client.bytes_read, self.server.bytes_read)
    }

    /// Commands the client sent after logging in (`statement` events), so far.
    #[must_use]
    pub fn statements(&self) -> u64 {
        self.statements
    }

    /// Runs the handshake and then the command phase until the session ends.
    pub async fn run(&mut self, login_timeout: std::time::Duration) -> RelayEnd {
        let handshake = if self.logged_in {
            Ok(None)
        } else {
            tokio::time::timeout(login_timeout, self.handshake())
                .await
                .unwrap_or(Err(RelayError::LoginTimeout(login_timeout)))
        };
        let result = match handshake {
            Ok(None) => self.command_phase().await.map(|()| RelayEnd::Closed),
            Ok(Some(refused)) => Ok(RelayEnd::LoginRefused(refused)),
            Err(error) => Err(error),
        };
        let _ = self.client.flush().await;
        match result {
            Ok(end) => end,
            Err(RelayError::DownstreamClosed) => RelayEnd::Closed,
            Err(error) => {
                self.tell_client(&error).await;
                RelayEnd::Failed {
                    detail: error.to_string(),
                }
            }
        }
    }

    /// The identity the client proved (terminated logins).
    #[must_use]
    pub fn identity_name(&self) -> Option<&str> {
        self.identity.as_ref().map(|i| i.name.as_str())
    }

    /// Tells the client an operator ended the session (`detail`: by whom and why). A client
    /// waiting for a response gets the error as that response, so it shows the message; an
    /// idle one gets it unsolicited (sequence id 0), as MySQL 8 tells of its own disconnects.
    pub async fn tell_killed(&mut self, detail: &str) {
        let error = RelayError::Killed(detail.to_owned());
        if self.client_waits == ClientWaits::Response
            && let Some(packet) = Self::err_packet(&error)
            && self
                .client
                .write_packet(&packet.payload(true))
                .await
                .is_ok()
        {
            let _ = self.client.flush().await;
            return;
        }
        self.tell_client(&error).await;
        let _ = self.client.flush().await;
    }

    /// The one place a relay failure becomes what the client reads (nothing for a client that
    /// is gone or broke off).
    fn err_packet(error: &RelayError) -> Option<ErrPacket> {
        Some(match error {
            RelayError::Downstream(
                CodecError::OutOfSync | CodecError::Compression(CompressionError::OutOfSync { .. }),
            ) => ErrPacket::new(1156, "Tollgate: got packets out of order from the client")
                .with_sql_state(*b"08S01"),
            RelayError::Downstream(CodecError::Compression(e)) => ErrPacket::new(
                1157,
                format!("Tollgate: could not uncompress a packet from the client: {e}"),
            )
            .with_sql_state(*b"08S01"),
            RelayError::Downstream(CodecError::TooLarge) => ErrPacket::new(
                1153,
                format!("Tollgate: got a packet bigger than {MAX_PACKET} bytes from the client"),
            )
            .with_sql_state(*b"08S01"),
            RelayError::Downstream(_)
            | RelayError::DownstreamClosed
            | RelayError::Reauthentication(_) => return None,
            RelayError::LoginTimeout(_) => {
                ErrPacket::new(1159, format!("Tollgate: {error}")).with_sql_state(*b"08S01")
            }
            // As MySQL 8 does for wait_timeout: an unsolicited error, then the connection closes.
            RelayError::SessionLimit(_) => {
                ErrPacket::new(4031, format!("Tollgate: {error}")).with_sql_state(*b"HY000")
            }
            // ER_CONNECTION_KILLED, as the server's own KILL says it.
            RelayError::Killed(_) => {
                ErrPacket::new(1927, format!("Tollgate: {error}")).with_sql_state(*b"70100")
            }
            RelayError::Upstream(_)
            | RelayError::UpstreamClosed
            | RelayError::UpstreamProtocol(_) => ErrPacket::new(
                1158,
                format!("Tollgate: lost the database connection: {error}"),
            )
            .with_sql_state(*b"08S01"),
        })
    }

    /// Tells the client why the relay stopped.
    async fn tell_client(&mut self, error: &RelayError) {
        let Some(packet) = Self::err_packet(error) else {
            return;
        };
        // The sequence id of a packet sent while the protocol is broken cannot be trusted
        // anyway, and clients report the error text either way: sequence id 0, framed as the
        // leg is (compressed legs need a frame around it).
        if self.client.compression().is_some() {
            self.client.reset_sequence();
            if self
                .client
                .write_packet(&packet.payload(true))
                .await
                .is_ok()
            {
                let _ = self.client.flush().await;
            }
        } else {
            let bytes = packet.encode(0, true);
            let _ = tokio::io::AsyncWriteExt::write_all(self.client.stream_mut(), &bytes).await;
        }
    }

    /// Greeting, handshake response and authentication, relayed. `Some(err)` when the database
    /// refused the login.
    async fn handshake(&mut self) -> Result<Option<ErrInfo>, RelayError> {
        self.server.reset_sequence();
        self.client.reset_sequence();
        let mut greeting = self.server_packet().await?;
        if greeting.first() == Some(&0xff) {
            // The database refused us before the handshake (too many connections, host
            // blocked): pass its error on.
            self.forward(&greeting).await?;
            let mut reader = packets::Reader::new(&greeting);
            reader.u8();
            let code = reader.u16().unwrap_or(0);
            return Ok(Some(ErrInfo {
                code,
                sql_state: None,
                message: String::from_utf8_lossy(reader.rest()).into_owned(),
            }));
        }
        let offered =
            packets::edit_greeting(&mut greeting, stripped_capabilities(self.local_infile))
                .ok_or_else(|| {
                    RelayError::UpstreamProtocol(
                        "the greeting is not a protocol-10 handshake".into(),
                    )
                })?;
        self.forward(&greeting).await?;
        self.client.flush().await.map_err(RelayError::Downstream)?;

        let mut response = self.client_packet().await?;
        if packets::requests_tls(&response) {
            self.refuse_client(
                1043,
                *b"08S01",
                "Tollgate: TLS toward the gateway is not available yet; connect without TLS",
            )
            .await?;
            return Err(RelayError::DownstreamClosed);
        }
        let Some(login) = packets::edit_handshake_response(
            &mut response,
            stripped_capabilities(self.local_infile),
        ) else {
            self.refuse_client(
                1043,
                *b"08S01",
                "Tollgate: unsupported handshake (a protocol 4.1 client is required)",
            )
            .await?;
            return Err(RelayError::DownstreamClosed);
        };
        self.deprecate_eof = offered.capabilities
            & login.capabilities
            & CapabilityFlags::CLIENT_DEPRECATE_EOF.bits()
            != 0;
        self.server
            .write_packet(&response)
            .await
            .map_err(RelayError::Upstream)?;
        self.server.flush().await.map_err(RelayError::Upstream)?;
        let refused = self.authentication().await?;
        if refused.is_none() {
            self.database.clone_from(&login.database);
        }
        tracing::info!(
            session_id = %self.session_id,
            user = %login.user,
            database = login.database.as_deref(),
            accepted = refused.is_none(),
            "login"
        );
        self.recorder
            .record(RecordedEvent::now(
                self.session_id,
                EventKind::Login(LoginEvent {
                    user: login.user,
                    upstream_user: None,
                    database: login.database,
                    accepted: refused.is_none(),
                    error_code: refused.as_ref().map(|e| e.code),
                    error_message: refused.as_ref().map(|e| e.message.clone()),
                    client_attributes: None,
                    policy: None,
                    identity: None,
                    kernel_identity: None,
                }),
            ))
            .await;
        Ok(refused)
    }

    /// Relays an authentication exchange (after the handshake response or `COM_CHANGE_USER`)
    /// until the database says OK or ERR.
    async fn authentication(&mut self) -> Result<Option<ErrInfo>, RelayError> {
        loop {
            let packet = self.server_packet().await?;
            self.forward(&packet).await?;
            match packet.first() {
                Some(0x00) => return Ok(None),
                Some(0xff) => {
                    return Ok(Some(packets::parse_err(&packet).unwrap_or(ErrInfo {
                        code: 0,
                        sql_state: None,
                        message: String::new(),
                    })));
                }
                // caching_sha2_password fast authentication succeeded: OK follows.
                Some(0x01) if packet.get(1) == Some(&0x03) => {}
                // Auth switch, more auth data (full authentication, a public key): the client
                // answers.
                Some(0xfe | 0x01) => {
                    self.client.flush().await.map_err(RelayError::Downstream)?;
                    let answer = self.client_packet().await?;
                    self.server
                        .write_packet(&answer)
                        .await
                        .map_err(RelayError::Upstream)?;
                    self.server.flush().await.map_err(RelayError::Upstream)?;
                }
                _ => {
                    return Err(RelayError::UpstreamProtocol(
                        "unexpected packet during authentication".into(),
                    ));
                }
            }
        }
    }

    /// For a fail-closed target while events cannot be recorded: the error a command that
    /// runs SQL gets instead (commands without a response, such as `COM_STMT_CLOSE`, and
    /// `COM_PING` still go through).
    fn unrecordable(&self, kind: u8) -> Option<&'static str> {
        match kind {
            com::QUERY
            | com::STMT_PREPARE
            | com::STMT_EXECUTE
            | com::STMT_FETCH
            | com::INIT_DB
            | com::FIELD_LIST => self.recorder.refusal(),
            _ => None,
        }
    }

    /// Masking of a command (`[[masking]]`): sets up the masking of its response and returns
    /// the statement checks' refusal, if any.
    fn masking_setup(&self, kind: u8, command: &[u8], outcome: &mut Outcome) -> Option<String> {
        let groups = self
            .identity
            .as_ref()
            .map_or(&[][..], |i| i.groups.as_slice());
        outcome.mask = self.masking.statement(kind, command, groups);
        self.masking
            .refusal(kind, command, groups)
            .map(|refusal| refusal.message())
    }

    /// What the guardrails decide for a command with SQL text (queries and prepares).
    fn guardrails_decide(&self, kind: u8, command: &[u8]) -> Option<crate::guard::GuardDecision> {
        let rules = self.guards.guardrails;
        if rules.is_empty() || !matches!(kind, com::QUERY | com::STMT_PREPARE) {
            return None;
        }
        let sql = String::from_utf8_lossy(command.get(1..).unwrap_or_default());
        crate::guard::decide_at(
            rules,
            self.guards.target,
            self.rate_subject().groups,
            self.database.as_deref(),
            time::OffsetDateTime::now_utc(),
            &sql,
        )
    }

    /// Who the session's statements count as, for rate limits.
    fn rate_subject(&self) -> crate::guard::rate::Subject<'_> {
        crate::guard::rate::Subject {
            identity: self.identity.as_ref().map(|i| i.name.as_str()),
            groups: self
                .identity
                .as_ref()
                .map_or(&[][..], |i| i.groups.as_slice()),
            target: self.guards.target,
        }
    }

    /// Passes a statement (`COM_QUERY`, `COM_STMT_EXECUTE`) through the rate limits: waits
    /// when it must; the limit it ran into, if any (`refused` when it may not run).
    async fn rate_admit(&self, kind: u8) -> Option<crate::guard::rate::RateLimitHit> {
        use crate::guard::rate::Admission;
        let limiter = self.guards.limiter?;
        if self.guards.rate_limits.is_empty() || !matches!(kind, com::QUERY | com::STMT_EXECUTE) {
            return None;
        }
        match limiter.admit(self.guards.rate_limits, self.rate_subject()) {
            Admission::Go => None,
            Admission::Wait(wait, hit) => {
                tracing::info!(session_id = %self.session_id, rule = %hit.rule, key = %hit.key,
                    waited_ms = hit.waited_ms, "statement delayed by a rate limit");
                tokio::time::sleep(wait).await;
                Some(hit)
            }
            Admission::Refuse(hit) => {
                tracing::warn!(session_id = %self.session_id, rule = %hit.rule, key = %hit.key,
                    "statement refused by a rate limit");
                Some(hit)
            }
        }
    }

    /// Charges the rows a statement returned to the rate limits.
    fn rate_count_rows(&self, rows: u64) {
        if let Some(limiter) = self.guards.limiter {
            limiter.count_rows(self.guards.rate_limits, self.rate_subject(), rows);
        }
    }

    /// The client's next command, once the last response is flushed; `None` when it closed.
    async fn next_command(&mut self) -> Result<Option<Vec<u8>>, RelayError> {
        self.client.flush().await.map_err(RelayError::Downstream)?;
        self.client.reset_sequence();
        let next = match self.session_deadline() {
            Some(deadline) => tokio::select! {
                next = self.client.read_packet() => next,
                () = tokio::time::sleep_until(deadline) => {
                    return Err(RelayError::SessionLimit(self.session_limit()));
                }
            },
            None => self.client.read_packet().await,
        };
        next.map_err(RelayError::Downstream)
    }

    /// The gateway's own checks on a command before it may go to the database, recorded in
    /// `record`: the recorder's health, guardrails (a block, or a hold for approval), masking's
    /// statement checks, rate limits. The first refusal, as the error to send, if any.
    async fn gateway_checks(
        &mut self,
        kind: u8,
        command: &[u8],
        record: &mut StatementRecord,
    ) -> Result<Option<(u16, [u8; 5], String)>, RelayError> {
        if let Some(message) = self.unrecordable(kind) {
            return Ok(Some((
                error_code::RECORDING_UNAVAILABLE,
                *b"HY000",
                message.to_owned(),
            )));
        }
        self.record_late_decisions().await;
        record.guard = self.guardrails_decide(kind, command);
        if let Some(guard) = record.guard.as_ref().filter(|guard| guard.blocks()) {
            return Ok(Some((
                error_code::GUARDRAIL_BLOCKED,
                *b"42000",
                guard.message(),
            )));
        }
        // Masking's refusal before any hold: an approver is never asked about a statement
        // that would be refused anyway.
        if let Some(message) = self.masking_setup(kind, command, &mut record.outcome) {
            return Ok(Some((error_code::MASKING_REFUSED, *b"42000", message)));
        }
        // A hold for approval that did not end in one.
        if let Some(message) = self.hold_if_needed(command, record.guard.as_ref()).await? {
            return Ok(Some((error_code::GUARDRAIL_BLOCKED, *b"42000", message)));
        }
        record.rate_limit = self.rate_admit(kind).await;
        Ok(record
            .rate_limit
            .as_ref()
            .filter(|hit| hit.refused)
            .map(|hit| (error_code::RATE_LIMITED, *b"42000", hit.message())))
    }

    /// Commands until the client quits.
    async fn command_phase(&mut self) -> Result<(), RelayError> {
        loop {
            let Some(command) = self.next_command().await? else {
                return Ok(());
            };
            self.client_waits = ClientWaits::Response;
            let Some(&kind) = command.first() else {
                self.refuse_client(1047, *b"08S01", "Tollgate: empty command packet")
                    .await?;
                continue;
            };
            if kind == com::QUIT {
                self.server.reset_sequence();
                let _ = self.server.write_packet(&command).await;
                let _ = self.server.flush().await;
                // Let the client close first, so the TIME-WAIT state stays on its side: under
                // connection churn a bastion would otherwise hold thousands of steered flows
                // in TIME-WAIT. Bounded: a client that keeps the socket open is closed after
                // QUIT_LINGER.
                let _ = tokio::time::timeout(QUIT_LINGER, self.next_command()).await;
                return Ok(());
            }
            let started = time::OffsetDateTime::now_utc();
            let clock = tokio::time::Instant::now();
            let mut record = StatementRecord::new(
                kind,
                &command,
                &mut self.prepared,
                self.database.clone(),
                self.row_caps,
            );
            let refusal = self.gateway_checks(kind, &command, &mut record).await?;
            match kind {
                _ if let Some((code, state, message)) = refusal => {
                    self.refuse_client(code, state, &message).await?;
                    record.outcome.refused(code, &message);
                }
                com::BINLOG_DUMP
                | com::BINLOG_DUMP_GTID
                | com::REGISTER_SLAVE
                | com::TABLE_DUMP => {
                    let message =
                        "Tollgate: replication commands are not allowed through the gateway";
                    self.refuse_client(1227, *b"42000", message).await?;
                    record.outcome.refused(1227, message);
                }
                // The gateway terminated the login: the client proves the new identity to the
                // gateway, which re-authenticates its own account on the database.
                com::CHANGE_USER if self.logged_in => {
                    self.prepared.clear();
                    self.change_user(&command, &mut record.outcome).await?;
                }
                com::INIT_DB | com::QUERY if self.database_refused(kind, &command).is_some() => {
                    let (code, state, message) =
                        self.database_refused(kind, &command).unwrap_or_default();
                    self.refuse_client(code, state, &message).await?;
                    record.outcome.refused(code, &message);
                }
                0x00 | 0x20.. => {
                    let message = "Tollgate: unknown or unsupported command";
                    self.refuse_client(1047, *b"08S01", message).await?;
                    record.outcome.refused(1047, message);
                }
                _ => {
                    self.server.reset_sequence();
                    self.server
                        .write_packet(&command)
                        .await
                        .map_err(RelayError::Upstream)?;
                    self.server.flush().await.map_err(RelayError::Upstream)?;
                    self.response(kind, &mut record.outcome).await?;
                }
            }
            self.client_waits = ClientWaits::Nothing;
            self.rate_count_rows(record.outcome.rows);
            self.remember_prepared(kind, &command, &record.outcome);
            self.track_database(kind, &command, &record.outcome);
            self.statements += 1;
            record.finish(self.statements, started, clock.elapsed());
            self.recorder
                .record(RecordedEvent::now(
                    self.session_id,
                    EventKind::Statement(record.into_event()),
                ))
                .await;
        }
    }

    /// Reads (and forwards) the database's whole response to one command.
    async fn response(&mut self, kind: u8, outcome: &mut Outcome) -> Result<(), RelayError> {
        match kind {
            com::QUERY | com::STMT_EXECUTE | com::PROCESS_INFO => self.result_sets(outcome).await,
            com::STMT_PREPARE => self.prepare_response(outcome).await,
            com::STMT_FETCH => self.rows(outcome).await.map(|_| ()),
            com::FIELD_LIST => self.field_list(outcome).await,
            com::STMT_SEND_LONG_DATA | com::STMT_CLOSE => Ok(()),
            com::CHANGE_USER => {
                self.prepared.clear();
                if let Some(refused) = self.authentication().await? {
                    outcome.error(refused);
                }
                Ok(())
            }
            com::STATISTICS => {
                let packet = self.server_packet().await?;
                self.forward(&packet).await
            }
            _ => self.single(outcome).await,
        }
    }

    /// When the session must end (the policy's `max_session`).
    fn session_deadline(&self) -> Option<Instant> {
        self.grant
            .and_then(|g| g.max_session)
            .map(|limit| self.started + limit)
    }

    fn session_limit(&self) -> std::time::Duration {
        self.grant.and_then(|g| g.max_session).unwrap_or_default()
    }

    /// The error for a `COM_INIT_DB` or a `USE` to a database the policy does not allow this
    /// session (`None` when allowed).
    fn database_refused(&self, kind: u8, command: &[u8]) -> Option<(u16, [u8; 5], String)> {
        let (grant, identity) = (self.grant.as_ref()?, self.identity.as_ref()?);
        grant.databases?;
        let body = command.get(1..).unwrap_or_default();
        let databases = if kind == com::INIT_DB {
            vec![String::from_utf8_lossy(body).into_owned()]
        } else {
            super::use_statement::used_databases(body)
        };
        databases.iter().find_map(|database| {
            grant
                .check_database(identity, database)
                .err()
                .map(|denied| {
                    let (code, state) = denied.code();
                    (code, state, format!("Tollgate: {denied}"))
                })
        })
    }

    /// Tracks prepared statements, so executes are recorded with their SQL text and
    /// parameters, and fetched rows with their columns.
    fn remember_prepared(&mut self, kind: u8, command: &[u8], outcome: &Outcome) {
        let statement = || {
            packets::Reader::new(command.get(1..).unwrap_or_default())
                .u32()
                .map(|id| self.prepared.resolve(id))
        };
        match kind {
            com::STMT_PREPARE => {
                if let Some(id) = outcome.statement_id {
                    let columns = (outcome.capture.columns(), outcome.capture.column_count());
                    let sql = command.get(1..).unwrap_or_default();
                    self.prepared.prepared(id, sql, outcome.params, columns);
                }
            }
            com::STMT_EXECUTE if outcome.cursor => {
                if let Some(id) = statement() {
                    let capture = &outcome.capture;
                    self.prepared
                        .cursor(id, capture.columns(), capture.column_count());
                    self.masking.cursor(id, &outcome.mask);
                }
            }
            com::STMT_CLOSE => {
                if let Some(id) = statement() {
                    self.prepared.close(id);
                    self.masking.close(Some(id));
                }
            }
            com::STMT_RESET => {
                if let Some(id) = statement() {
                    self.prepared.reset(id);
                }
            }
            com::RESET_CONNECTION => {
                self.prepared.clear();
                self.masking.close(None);
            }
            _ => {}
        }
    }

    /// Follows the session's current database: a successful `COM_INIT_DB`, `USE` (the last
    /// of a multi-statement query; a failed query changes nothing, although a `USE` before
    /// its failing statement did switch), or `COM_CHANGE_USER` (which sets the database it
    /// names, or none).
    fn track_database(&mut self, kind: u8, command: &[u8], outcome: &Outcome) {
        if outcome.error.is_some() {
            return;
        }
        let body = command.get(1..).unwrap_or_default();
        match kind {
            com::INIT_DB => self.database = Some(String::from_utf8_lossy(body).into_owned()),
            com::QUERY => {
                if let Some(database) = super::use_statement::used_databases(body).pop() {
                    self.database = Some(database);
                }
            }
            com::CHANGE_USER => {
                let capabilities = self
                    .reauthentication
                    .as_ref()
                    .map_or(CapabilityFlags::CLIENT_SECURE_CONNECTION.bits(), |r| {
                        r.client_capabilities
                    });
                self.database = crate::protocol::change_user::parse(command, capabilities)
                    .and_then(|request| request.database);
            }
            _ => {}
        }
    }

    /// Sends an ERR to the client (sequence id after its command) and keeps the session.
    pub(super) async fn refuse_client(
        &mut self,
        code: u16,
        sql_state: [u8; 5],
        message: &str,
    ) -> Result<(), RelayError> {
        let packet = ErrPacket::new(code, message).with_sql_state(sql_state);
        self.client
            .write_packet(&packet.payload(true))
            .await
            .map_err(RelayError::Downstream)?;
        self.client.flush().await.map_err(RelayError::Downstream)
    }

    /// The next packet from the database; flushes what is queued for the client before
    /// waiting on the socket, so responses stream out in batches without stalling.
    pub(super) async fn server_packet(&mut self) -> Result<Vec<u8>, RelayError> {
        loop {
            if let Some(packet) = self.server.try_packet().map_err(RelayError::Upstream)? {
                return Ok(packet);
            }
            self.client.flush().await.map_err(RelayError::Downstream)?;
            if !self.server.fill().await.map_err(RelayError::Upstream)? {
                return Err(RelayError::UpstreamClosed);
            }
        }
    }

    /// The next packet from the client, mid-exchange.
    pub(super) async fn client_packet(&mut self) -> Result<Vec<u8>, RelayError> {
        match self.client.read_packet().await {
            Ok(Some(packet)) => Ok(packet),
            Ok(None) => Err(RelayError::DownstreamClosed),
            Err(error) => Err(RelayError::Downstream(error)),
        }
    }

    /// Queues a database packet for the client.
    pub(super) async fn forward(&mut self, packet: &[u8]) -> Result<(), RelayError> {
        self.client
            .write_packet(packet)
            .await
            .map_err(RelayError::Downstream)
    }
}
