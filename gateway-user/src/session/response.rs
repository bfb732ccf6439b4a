//! Following the database's response to one command, packet by packet, while forwarding it:
//! result sets (text and binary, several per command), prepared-statement metadata, fetched
//! rows, field lists and single OK/ERR replies. What is learnt becomes the statement's
//! [`Outcome`], recorded as a `statement` event: counts, and (through [`Capture`]) the column
//! definitions and first rows of each result set.
//!
//! Rows pass one phase on their way to the client, [`Relay::mask_row`], where masking
//! rewrites values (`[[masking]]`, [`crate::mask`]; column definitions are edited where masked
//! values need it): the row it returns is both forwarded and recorded, so the recording only
//! ever holds what the client received.

use std::time::Duration;

use time::OffsetDateTime;

use super::{
    capture::{Capture, MAX_RECORDED_COLUMNS, RowCaps},
    prepared::{BoundParams, PreparedStatements},
    relay::{Relay, RelayError, command_name},
};
use crate::{
    protocol::packets::{self, ErrInfo, OkInfo},
    recording::{LocalInfile, StatementError, StatementEvent},
};

/// SQL text recorded per statement at most, in bytes.
const MAX_RECORDED_SQL: usize = 64 * 1024;

/// What the database answered to one command.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Result sets returned.
    pub result_sets: u32,
    /// Column names of the result sets, in order.
    pub columns: Vec<String>,
    /// Total columns (may exceed the names kept).
    pub column_count: u64,
    /// Rows returned.
    pub rows: u64,
    /// Rows changed.
    pub affected_rows: u64,
    /// Last insert id, when the statement set one.
    pub last_insert_id: Option<u64>,
    /// Warnings.
    pub warnings: u64,
    /// The error, if the command failed.
    pub error: Option<ErrInfo>,
    /// Statement id, for `COM_STMT_PREPARE`.
    pub statement_id: Option<u32>,
    /// Parameters the statement takes, for `COM_STMT_PREPARE`.
    pub params: u16,
    /// True when a `COM_STMT_EXECUTE` opened a cursor (its rows come with `COM_STMT_FETCH`).
    pub cursor: bool,
    /// The client file sent for `LOAD DATA LOCAL INFILE`.
    pub local_infile: Option<LocalInfile>,
    /// Column definitions and rows as recorded.
    pub capture: Capture,
    /// Masking of the response (`[[masking]]`): the current result set's plan and the cells
    /// masked.
    pub mask: crate::mask::StatementMask,
}

impl Outcome {
    fn ok(&mut self, info: OkInfo) {
        self.affected_rows += info.affected_rows;
        if info.last_insert_id != 0 {
            self.last_insert_id = Some(info.last_insert_id);
        }
        self.warnings += u64::from(info.warnings);
    }

    /// Records an ERR from the database.
    pub fn error(&mut self, error: ErrInfo) {
        self.error = Some(error);
    }

    /// Records an ERR the gateway sent instead of forwarding the command.
    pub fn refused(&mut self, code: u16, message: &str) {
        self.error = Some(ErrInfo {
            code,
            sql_state: None,
            message: message.to_owned(),
        });
    }
}

/// A command being followed: what was asked, and (filled in as it streams) what came back.
#[derive(Debug)]
pub struct StatementRecord {
    command: u8,
    sql: Option<String>,
    statement_id: Option<u32>,
    database: Option<String>,
    params: BoundParams,
    seq: u64,
    started_at: Option<OffsetDateTime>,
    duration: Duration,
    /// The response as it was followed.
    pub outcome: Outcome,
    /// What the guardrails decided, if any applied.
    pub guard: Option<crate::guard::GuardDecision>,
    /// The rate limit the statement ran into, if any.
    pub rate_limit: Option<crate::guard::rate::RateLimitHit>,
}

impl StatementRecord {
    /// Reads what is recordable of a command packet: SQL text for queries and prepares, the
    /// statement id (and the SQL it was prepared from) for statement commands, the bound
    /// parameters of executes. Long data and executes update what `prepared` remembers, as
    /// they do on the server. `database` is the session's current database, `caps` bound
    /// the rows recorded.
    #[must_use]
    pub fn new(
        command: u8,
        packet: &[u8],
        prepared: &mut PreparedStatements,
        database: Option<String>,
        caps: RowCaps,
    ) -> Self {
        let body = packet.get(1..).unwrap_or_default();
        let text = || Some(truncated_text(body));
        let statement = || {
            packets::Reader::new(body)
                .u32()
                .map(|id| prepared.resolve(id))
        };
        let binary = matches!(command, 0x17 | 0x1c);
        let mut outcome = Outcome {
            capture: Capture::new(caps, binary),
            ..Outcome::default()
        };
        let mut params = BoundParams::default();
        let (sql, statement_id) = match command {
            // query, prepare: the SQL; init_db, field_list: the database or table name.
            0x03 | 0x16 | 0x02 | 0x04 => (text(), None),
            0x17 | 0x18 | 0x19 | 0x1a | 0x1c => {
                let id = statement();
                match command {
                    0x17 => params = prepared.execute(packet),
                    0x18 => prepared.long_data(packet),
                    0x1c => outcome
                        .capture
                        .fetched(id.and_then(|id| prepared.columns(id))),
                    _ => {}
                }
                let sql = id.and_then(|id| prepared.sql(id)).map(str::to_owned);
                (sql, id)
            }
            _ => (None, None),
        };
        Self {
            command,
            sql,
            statement_id,
            database,
            params,
            seq: 0,
            started_at: None,
            duration: Duration::ZERO,
            outcome,
            guard: None,
            rate_limit: None,
        }
    }

    /// Stamps the record once the response is complete.
    pub fn finish(&mut self, seq: u64, started_at: OffsetDateTime, duration: Duration) {
        self.seq = seq;
        self.started_at = Some(started_at);
        self.duration = duration;
    }

    /// The recorded event.
    #[must_use]
    pub fn into_event(self) -> StatementEvent {
        let outcome = self.outcome;
        let started_at = self.started_at.unwrap_or_else(OffsetDateTime::now_utc);
        let started_at_ns = u64::try_from(started_at.unix_timestamp_nanos()).unwrap_or(0);
        let duration_ns = u64::try_from(self.duration.as_nanos()).unwrap_or(u64::MAX);
        StatementEvent {
            seq: self.seq,
            command: command_name(self.command).to_owned(),
            sql: self.sql,
            statement_id: self.statement_id.or(outcome.statement_id),
            database: self.database,
            started_at,
            started_at_ns,
            ended_at_ns: started_at_ns.saturating_add(duration_ns),
            duration_ns,
            duration_us: u64::try_from(self.duration.as_micros()).unwrap_or(u64::MAX),
            params: self.params.params,
            params_truncated: self.params.truncated,
            result_sets: outcome.result_sets,
            columns: outcome.columns,
            column_count: outcome.column_count,
            result: outcome.capture.result,
            rows: outcome.rows,
            row_bytes: outcome.capture.row_bytes,
            rows_truncated: outcome.capture.rows_truncated,
            affected_rows: outcome.affected_rows,
            last_insert_id: outcome.last_insert_id,
            warnings: outcome.warnings,
            error: outcome.error.map(|e| StatementError {
                code: e.code,
                sql_state: e.sql_state,
                message: e.message,
            }),
            local_infile: outcome.local_infile,
            guard: self.guard,
            masked_cells: outcome.mask.masked_cells,
            rate_limit: self.rate_limit,
        }
    }
}

fn truncated_text(bytes: &[u8]) -> String {
    let cut = bytes.get(..MAX_RECORDED_SQL).unwrap_or(bytes);
    String::from_utf8_lossy(cut).into_owned()
}

impl Relay<'_> {
    /// One or more result sets (`COM_QUERY`, `COM_STMT_EXECUTE`): each is an OK, an ERR, or
    /// column count, column definitions, [EOF], rows, terminator; the status of the OK or
    /// terminator says whether another follows.
    pub(super) async fn result_sets(&mut self, outcome: &mut Outcome) -> Result<(), RelayError> {
        loop {
            let first = self.server_packet().await?;
            self.forward(&first).await?;
            match first.first() {
                Some(0x00) => {
                    let info = packets::parse_ok(&first).unwrap_or_default();
                    outcome.ok(info);
                    if info.more_results() {
                        continue;
                    }
                    return Ok(());
                }
                Some(0xff) => {
                    if let Some(error) = packets::parse_err(&first) {
                        outcome.error(error);
                    }
                    return Ok(());
                }
                Some(0xfb) if self.local_infile => {
                    self.local_infile_upload(&first, outcome).await?;
                    continue;
                }
                Some(0xfb) => {
                    return Err(RelayError::UpstreamProtocol(
                        "LOCAL INFILE requested although it was not negotiated".into(),
                    ));
                }
                _ => {}
            }
            let columns = packets::Reader::new(&first).lenenc().ok_or_else(|| {
                RelayError::UpstreamProtocol("malformed result set header".into())
            })?;
            outcome.result_sets += 1;
            outcome.capture.result_set(columns);
            outcome.mask.result_set();
            self.column_definitions(columns, outcome).await?;
            if !self.deprecate_eof {
                let eof = self.server_packet().await?;
                self.forward(&eof).await?;
                let info = packets::parse_eof(&eof).ok_or_else(|| {
                    RelayError::UpstreamProtocol("expected EOF after column definitions".into())
                })?;
                if info.cursor_exists() {
                    // A cursor was opened: rows come with COM_STMT_FETCH.
                    outcome.cursor = true;
                    if info.more_results() {
                        continue;
                    }
                    return Ok(());
                }
            }
            if !self.rows(outcome).await? {
                return Ok(());
            }
        }
    }

    /// `LOAD DATA LOCAL INFILE`: the database asked (in `request`, already forwarded) for a
    /// client file; the client's packets go to the database until the empty one that ends
    /// the file (sent also when the client refuses). Then the database's OK or ERR follows.
    async fn local_infile_upload(
        &mut self,
        request: &[u8],
        outcome: &mut Outcome,
    ) -> Result<(), RelayError> {
        let file = String::from_utf8_lossy(request.get(1..).unwrap_or_default()).into_owned();
        self.client.flush().await.map_err(RelayError::Downstream)?;
        let mut bytes = 0u64;
        loop {
            let chunk = self.client_packet().await?;
            self.server
                .write_packet(&chunk)
                .await
                .map_err(RelayError::Upstream)?;
            if chunk.is_empty() {
                break;
            }
            bytes += chunk.len() as u64;
        }
        self.server.flush().await.map_err(RelayError::Upstream)?;
        outcome.local_infile = Some(LocalInfile { file, bytes });
        Ok(())
    }

    /// Rows until a terminator (or an ERR); true when another result set follows. Each row
    /// passes [`Self::mask_row`] before it is forwarded and recorded.
    pub(super) async fn rows(&mut self, outcome: &mut Outcome) -> Result<bool, RelayError> {
        loop {
            let row = self.server_packet().await?;
            if row.first() == Some(&0xff) {
                self.forward(&row).await?;
                if let Some(error) = packets::parse_err(&row) {
                    outcome.error(error);
                }
                return Ok(false);
            }
            if packets::is_row_terminator(&row, self.deprecate_eof) {
                self.forward(&row).await?;
                let info = packets::terminator_info(&row, self.deprecate_eof);
                outcome.ok(info);
                return Ok(info.more_results());
            }
            let row = self.mask_row(&mut outcome.mask, row);
            self.forward(&row).await?;
            outcome.rows += 1;
            outcome.capture.row(&row);
        }
    }

    /// The masking phase: runs on every row of every result set, before the row is forwarded
    /// and recorded, with the plan `mask` made from the result set's column definitions;
    /// returns the row the client gets (and the recording keeps), re-encoded when cells were
    /// masked (`crate::mask`).
    fn mask_row(&self, mask: &mut crate::mask::StatementMask, row: Vec<u8>) -> Vec<u8> {
        mask.row(self.masking.masking(), row)
    }

    async fn column_definitions(
        &mut self,
        count: u64,
        outcome: &mut Outcome,
    ) -> Result<(), RelayError> {
        outcome.column_count += count;
        for _ in 0..count {
            let definition = self.server_packet().await?;
            let definition = outcome.mask.definition(self.masking.masking(), definition);
            self.forward(&definition).await?;
            if outcome.columns.len() < MAX_RECORDED_COLUMNS {
                outcome
                    .columns
                    .push(packets::column_name(&definition).unwrap_or_default());
            }
            outcome.capture.column_definition(&definition);
        }
        Ok(())
    }

    /// `COM_STMT_PREPARE`: OK with counts, then parameter and column definitions.
    pub(super) async fn prepare_response(
        &mut self,
        outcome: &mut Outcome,
    ) -> Result<(), RelayError> {
        let first = self.server_packet().await?;
        self.forward(&first).await?;
        if first.first() == Some(&0xff) {
            if let Some(error) = packets::parse_err(&first) {
                outcome.error(error);
            }
            return Ok(());
        }
        let ok = packets::parse_prepare_ok(&first)
            .ok_or_else(|| RelayError::UpstreamProtocol("malformed prepare response".into()))?;
        outcome.statement_id = Some(ok.statement_id);
        outcome.params = ok.params;
        outcome.warnings += u64::from(ok.warnings);
        // The result columns are remembered (for rows fetched from a cursor), not recorded.
        outcome.capture.describe(u64::from(ok.columns));
        outcome.mask.result_set();
        for (count, columns) in [(ok.params, false), (ok.columns, true)] {
            for _ in 0..count {
                let mut definition = self.server_packet().await?;
                if columns {
                    // As the execute's will be: clients may size their buffers by these.
                    definition = outcome.mask.definition(self.masking.masking(), definition);
                }
                self.forward(&definition).await?;
                if columns {
                    outcome.capture.column_definition(&definition);
                }
            }
            if count > 0 && !self.deprecate_eof {
                let eof = self.server_packet().await?;
                self.forward(&eof).await?;
            }
        }
        Ok(())
    }

    /// `COM_FIELD_LIST`: column definitions until a terminator, or an ERR.
    pub(super) async fn field_list(&mut self, outcome: &mut Outcome) -> Result<(), RelayError> {
        loop {
            let packet = self.server_packet().await?;
            self.forward(&packet).await?;
            if packet.first() == Some(&0xff) {
                if let Some(error) = packets::parse_err(&packet) {
                    outcome.error(error);
                }
                return Ok(());
            }
            if packets::is_row_terminator(&packet, self.deprecate_eof) {
                return Ok(());
            }
            outcome.column_count += 1;
        }
    }

    /// A single OK, EOF or ERR reply.
    pub(super) async fn single(&mut self, outcome: &mut Outcome) -> Result<(), RelayError> {
        let packet = self.server_packet().await?;
        self.forward(&packet).await?;
        match packet.first() {
            Some(0xff) => {
                if let Some(error) = packets::parse_err(&packet) {
                    outcome.error(error);
                }
            }
            Some(0x00) => outcome.ok(packets::parse_ok(&packet).unwrap_or_default()),
            _ => {}
        }
        Ok(())
    }
}
