//! Guardrails on risky statements: what each statement of a command is, and which of its
//! risks a rule may act on.
//!
//! [`classify`] splits the SQL text of a command into its statements and names the risks of
//! each: `DELETE`/`UPDATE` without a `WHERE` (or with one that is always true), `DROP`,
//! `TRUNCATE`, `ALTER`, `RENAME`, privilege changes, `LOAD DATA`, `SELECT ... INTO OUTFILE`,
//! `SET` of session or global variables that turn safety off, and statements that cannot be
//! parsed. MySQL executes the contents of `/*! ... */` (and MariaDB of `/*M! ... */`)
//! comments, so they are read as SQL; other comments, casing and whitespace change nothing.
//!
//! Classification works on tokens (sqlparser's MySQL tokenizer), so keywords inside strings,
//! identifiers and comments are never mistaken for statements, and on sqlparser's syntax tree
//! where it parses, for the conditions of `WHERE`.

pub mod rate;

use serde::{Deserialize, Serialize};
use sqlparser::{
    ast::{BinaryOperator, Expr, Statement, UnaryOperator, Value},
    dialect::MySqlDialect,
    keywords::Keyword,
    parser::Parser,
    tokenizer::{Token, Tokenizer},
};

/// A risk a statement carries.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    /// `DELETE` without `WHERE`, or with one that is always true.
    DeleteWithoutWhere,
    /// `UPDATE` without `WHERE`, or with one that is always true.
    UpdateWithoutWhere,
    /// `DROP` of a table, database, view, index, routine...
    Drop,
    /// `TRUNCATE`.
    Truncate,
    /// `ALTER` of a table, database, view...
    Alter,
    /// `RENAME TABLE`.
    Rename,
    /// `GRANT`, `REVOKE`, `CREATE`/`ALTER`/`DROP`/`RENAME USER`, roles, `SET PASSWORD`.
    Privileges,
    /// `LOAD DATA` / `LOAD XML`.
    LoadData,
    /// `SELECT ... INTO OUTFILE | DUMPFILE`.
    IntoOutfile,
    /// `SET GLOBAL`/`PERSIST`, or a session variable that turns a safety off (binary log,
    /// foreign keys, safe updates, SQL mode...).
    DangerousSet,
    /// The statement could not be parsed; treated as risky unless configured otherwise.
    Unparsed,
}

impl Risk {
    /// Every risk, in order.
    pub const ALL: [Self; 11] = [
        Self::DeleteWithoutWhere,
        Self::UpdateWithoutWhere,
        Self::Drop,
        Self::Truncate,
        Self::Alter,
        Self::Rename,
        Self::Privileges,
        Self::LoadData,
        Self::IntoOutfile,
        Self::DangerousSet,
        Self::Unparsed,
    ];

    /// Its name in configuration and recordings (`delete_without_where`...).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::DeleteWithoutWhere => "delete_without_where",
            Self::UpdateWithoutWhere => "update_without_where",
            Self::Drop => "drop",
            Self::Truncate => "truncate",
            Self::Alter => "alter",
            Self::Rename => "rename",
            Self::Privileges => "privileges",
            Self::LoadData => "load_data",
            Self::IntoOutfile => "into_outfile",
            Self::DangerousSet => "dangerous_set",
            Self::Unparsed => "unparsed",
        }
    }
}

/// One statement of a command, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// Its first keyword, upper-cased (`SELECT`, `DELETE`, ...); empty for an empty statement.
    pub verb: String,
    /// Its risks, sorted, without repeats.
    pub risks: Vec<Risk>,
    /// The tables it names (read, written, dropped...), as written; `None` when it did not
    /// parse, so which tables it touches is unknown.
    pub tables: Option<Vec<TableName>>,
}

/// A table as a statement names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TableName {
    /// The database, when the statement gives it (`shop.orders`).
    pub database: Option<String>,
    /// The table.
    pub table: String,
}

impl TableName {
    fn of(name: &sqlparser::ast::ObjectName) -> Option<Self> {
        let parts: Vec<&str> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident().map(|i| i.value.as_str()))
            .collect();
        match parts.as_slice() {
            [table] => Some(Self {
                database: None,
                table: (*table).to_owned(),
            }),
            [.., database, table] => Some(Self {
                database: Some((*database).to_owned()),
                table: (*table).to_owned(),
            }),
            [] => None,
        }
    }
}

/// What a guardrail does with a statement that has one of its risks.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum GuardAction {
    /// Let it run unmarked, whatever other rules say of the same statement (an exception,
    /// e.g. `DROP` of scratch tables).
    Allow,
    /// Let it run, and mark it in the recording.
    Flag,
    /// Hold it until someone in the approvers group approves it (just-in-time approval).
    Approve,
    /// Refuse it with an error naming the rule; it never reaches the database.
    Block,
}

/// `[[guardrails]]`: what to do with statements that carry some risks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailConfig {
    /// The rule's name, in errors and recordings.
    pub name: String,
    /// The risks it acts on.
    #[serde(default)]
    pub risks: Vec<Risk>,
    /// What it does.
    pub action: GuardAction,
    /// Identities in any of these groups are held to it (`*`: everyone, the default; sessions
    /// whose login the gateway relays have no groups and match only `*`).
    #[serde(default = "everyone")]
    pub groups: Vec<String>,
    /// Identities in any of these groups are exempt (e.g. `dba`).
    #[serde(default)]
    pub exempt_groups: Vec<String>,
    /// Only on these targets (by name); all when empty.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Statements starting with these keywords (`DELETE`, `SELECT`...) match too, whatever
    /// their risks.
    #[serde(default)]
    pub verbs: Vec<String>,
    /// Only statements that name one of these tables: `table`, `db.table`, `db.*` or
    /// `*.table` (unqualified names are in the session's current database). A statement that
    /// does not parse matches (which tables it touches is unknown).
    #[serde(default)]
    pub tables: Vec<String>,
    /// Only statements that name a table in one of these databases (unqualified names are in
    /// the session's current database); a statement that does not parse matches.
    #[serde(default)]
    pub databases: Vec<String>,
    /// Only during these hours, UTC: `"09:00-17:00"` (a window past midnight, e.g.
    /// `"22:00-06:00"`, wraps).
    #[serde(default)]
    pub hours: Option<String>,
    /// Only on these days, UTC: `mon`, `tue`, ... `sun`.
    #[serde(default)]
    pub days: Vec<String>,
}

fn everyone() -> Vec<String> {
    vec!["*".into()]
}

impl GuardrailConfig {
    /// What is wrong with the rule, if anything (for the configuration loader).
    #[must_use]
    pub fn problem(&self) -> Option<String> {
        if self.risks.is_empty() && self.verbs.is_empty() {
            return Some("give risks, verbs or both".into());
        }
        if let Some(hours) = &self.hours
            && parse_hours(hours).is_none()
        {
            return Some(format!(
                "hours {hours:?} is not a window like \"09:00-17:00\""
            ));
        }
        self.days
            .iter()
            .find(|d| weekday(d).is_none())
            .map(|d| format!("days: {d:?} is not one of mon, tue, wed, thu, fri, sat, sun"))
    }

    /// Whether the rule is in force at `now` (its hours and days).
    fn in_force(&self, now: time::OffsetDateTime) -> bool {
        let now = now.to_offset(time::UtcOffset::UTC);
        let day_ok =
            self.days.is_empty() || self.days.iter().any(|d| weekday(d) == Some(now.weekday()));
        let hour_ok = self
            .hours
            .as_deref()
            .and_then(parse_hours)
            .is_none_or(|(from, to)| {
                let minute = u16::from(now.hour()) * 60 + u16::from(now.minute());
                if from <= to {
                    (from..to).contains(&minute)
                } else {
                    minute >= from || minute < to
                }
            });
        day_ok && hour_ok
    }

    /// Whether one statement is one the rule acts on: one of its risks or verbs, on its
    /// tables and databases.
    fn matches(&self, statement: &Classified, database: Option<&str>) -> bool {
        let risky = self.risks.iter().any(|r| statement.risks.contains(r))
            || self
                .verbs
                .iter()
                .any(|v| v.eq_ignore_ascii_case(&statement.verb));
        if !risky {
            return false;
        }
        if self.tables.is_empty() && self.databases.is_empty() {
            return true;
        }
        let Some(tables) = &statement.tables else {
            return true;
        };
        tables.iter().any(|t| {
            let db = t.database.as_deref().or(database);
            let db_ok = self.databases.is_empty()
                || db.is_some_and(|db| self.databases.iter().any(|d| d.eq_ignore_ascii_case(db)));
            let table_ok = self.tables.is_empty()
                || self
                    .tables
                    .iter()
                    .any(|pattern| table_matches(pattern, db, &t.table));
            db_ok && table_ok
        })
    }

    fn applies(&self, target: &str, groups: &[String]) -> bool {
        applies(
            &self.targets,
            &self.groups,
            &self.exempt_groups,
            target,
            groups,
        )
    }
}

/// `"HH:MM-HH:MM"` as minutes of the day.
fn parse_hours(text: &str) -> Option<(u16, u16)> {
    let minutes = |hm: &str| {
        let (h, m) = hm.trim().split_once(':')?;
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
    };
    let (from, to) = text.split_once('-')?;
    Some((minutes(from)?, minutes(to)?))
}

fn weekday(name: &str) -> Option<time::Weekday> {
    use time::Weekday::{Friday, Monday, Saturday, Sunday, Thursday, Tuesday, Wednesday};
    Some(match name.to_ascii_lowercase().get(..3)? {
        "mon" => Monday,
        "tue" => Tuesday,
        "wed" => Wednesday,
        "thu" => Thursday,
        "fri" => Friday,
        "sat" => Saturday,
        "sun" => Sunday,
        _ => return None,
    })
}

/// Whether `pattern` (`table`, `db.table`, `db.*`, `*.table`, any case) names `table` in
/// `database` (a bare table pattern matches in any database).
fn table_matches(pattern: &str, database: Option<&str>, table: &str) -> bool {
    let same = |p: &str, v: &str| p == "*" || p.eq_ignore_ascii_case(v);
    match pattern.split_once('.') {
        Some((db, t)) => database.is_some_and(|d| same(db, d)) && same(t, table),
        None => same(pattern, table),
    }
}

/// Whether a rule for `targets` (all when empty), held by `held` groups (`*`: everyone) but
/// not `exempt` ones, applies to an identity in `groups` on `target`.
fn applies(
    targets: &[String],
    held: &[String],
    exempt: &[String],
    target: &str,
    groups: &[String],
) -> bool {
    let member = |list: &[String]| {
        list.iter()
            .any(|g| g == "*" || groups.iter().any(|have| have == g))
    };
    (targets.is_empty() || targets.iter().any(|t| t == target))
        && member(held)
        && !exempt.iter().any(|g| groups.iter().any(|have| have == g))
}

/// What a session's guardrails need: its target's name, the rules, and the gateway's rate
/// buckets.
#[derive(Debug, Clone, Copy)]
pub struct Guards<'a> {
    /// The session's target.
    pub target: &'a str,
    /// `[[guardrails]]`.
    pub guardrails: &'a [GuardrailConfig],
    /// `[[rate_limits]]`.
    pub rate_limits: &'a [rate::RateLimitConfig],
    /// The rate buckets, shared by the gateway's sessions (none: no rate limits).
    pub limiter: Option<&'a rate::RateLimiter>,
}

impl Guards<'_> {
    /// No guardrails at all.
    pub const NONE: Guards<'static> = Guards {
        target: "",
        guardrails: &[],
        rate_limits: &[],
        limiter: None,
    };
}

/// What the guardrails decided for a command: recorded with its statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GuardDecision {
    /// The strongest action of the rules that matched.
    pub action: GuardAction,
    /// The rule that decided (the first with that action).
    pub rule: String,
    /// The risks found in the command's statements.
    pub risks: Vec<Risk>,
}

impl GuardDecision {
    /// Whether the command must not run.
    #[must_use]
    pub fn blocks(&self) -> bool {
        self.action == GuardAction::Block
    }

    /// Whether the command waits for an approval before it may run.
    #[must_use]
    pub fn needs_approval(&self) -> bool {
        self.action == GuardAction::Approve
    }

    /// The error a blocked command gets.
    #[must_use]
    pub fn message(&self) -> String {
        let risks: Vec<&str> = self.risks.iter().map(|r| r.name()).collect();
        let what = if self.needs_approval() {
            "needs an approval under"
        } else {
            "blocked by"
        };
        format!(
            "Tollgate: statement {what} guardrail '{}' ({})",
            self.rule,
            risks.join(", ")
        )
    }
}

/// The guardrails' decision on `sql` for an identity in `groups` on `target`; `None` when no
/// rule applies to any of its risks (or there are no rules: nothing is classified then).
#[must_use]
pub fn decide(
    rules: &[GuardrailConfig],
    target: &str,
    groups: &[String],
    sql: &str,
) -> Option<GuardDecision> {
    decide_at(
        rules,
        target,
        groups,
        None,
        time::OffsetDateTime::now_utc(),
        sql,
    )
}

/// [`decide`], for a session whose current database is `database`, at `now`.
#[must_use]
pub fn decide_at(
    rules: &[GuardrailConfig],
    target: &str,
    groups: &[String],
    database: Option<&str>,
    now: time::OffsetDateTime,
    sql: &str,
) -> Option<GuardDecision> {
    let rules: Vec<&GuardrailConfig> = rules
        .iter()
        .filter(|r| r.applies(target, groups) && r.in_force(now))
        .collect();
    if rules.is_empty() {
        return None;
    }
    let statements = classify(sql);
    let mut risks: Vec<Risk> = statements.iter().flat_map(|c| c.risks.clone()).collect();
    risks.sort_unstable();
    risks.dedup();
    // Each statement's decision: none when an `allow` rule matches it, else its strongest
    // rule's; a statement that does not parse and no rule speaks of is flagged. The command's
    // is the strongest of its statements'.
    let mut decided: Option<(GuardAction, String)> = None;
    for statement in &statements {
        let matched: Vec<&&GuardrailConfig> = rules
            .iter()
            .filter(|r| r.matches(statement, database))
            .collect();
        if matched.iter().any(|r| r.action == GuardAction::Allow) {
            continue;
        }
        let this = match matched.iter().map(|r| r.action).max() {
            Some(action) => matched
                .iter()
                .find(|r| r.action == action)
                .map(|r| (action, r.name.clone())),
            None if statement.risks.contains(&Risk::Unparsed) => {
                Some((GuardAction::Flag, DEFAULT_UNPARSED_RULE.to_owned()))
            }
            None => None,
        };
        if let Some(this) = this
            && decided.as_ref().is_none_or(|(action, _)| this.0 > *action)
        {
            decided = Some(this);
        }
    }
    decided.map(|(action, rule)| GuardDecision {
        action,
        rule,
        risks,
    })
}

/// The rule name recorded when a statement that does not parse is flagged because no rule
/// says what to do with it (an `allow` rule for `unparsed` turns this off; a `block` rule
/// blocks instead).
pub const DEFAULT_UNPARSED_RULE: &str = "default: unparsed";

/// Session variables whose change turns a safety off.
const DANGEROUS_VARIABLES: &[&str] = &[
    "sql_log_bin",
    "foreign_key_checks",
    "unique_checks",
    "sql_safe_updates",
    "sql_mode",
    "general_log",
    "slow_query_log",
    "sql_notes",
    "wsrep_on",
    "autocommit",
    "innodb_flush_log_at_trx_commit",
    "max_statement_time",
    "max_execution_time",
];

/// Classifies every statement of `sql` (a `COM_QUERY` text, or a prepared statement's).
#[must_use]
pub fn classify(sql: &str) -> Vec<Classified> {
    let text = expose_executable_comments(sql);
    let dialect = MySqlDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, &text).tokenize() else {
        // Not even tokens (an unterminated string or comment): nothing can be said about it.
        return vec![Classified {
            verb: String::new(),
            risks: vec![Risk::Unparsed],
            tables: None,
        }];
    };
    let pieces = split_statements(&tokens);
    let parsed = Parser::parse_sql(&dialect, &text).ok();
    // The syntax tree is used only when it has exactly the statements the tokens show.
    let parsed = parsed.filter(|statements| statements.len() == pieces.len());
    pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| classify_one(piece, parsed.as_ref().and_then(|p| p.get(i))))
        .collect()
}

/// The meaningful tokens of each statement (whitespace and comments dropped, empty statements
/// between `;;` dropped, at least one statement).
fn split_statements(tokens: &[Token]) -> Vec<Vec<&Token>> {
    let mut statements = vec![Vec::new()];
    for token in tokens {
        match token {
            Token::Whitespace(_) | Token::EOF => {}
            Token::SemiColon => statements.push(Vec::new()),
            other => {
                if let Some(last) = statements.last_mut() {
                    last.push(other);
                }
            }
        }
    }
    let mut statements: Vec<_> = statements.into_iter().filter(|s| !s.is_empty()).collect();
    if statements.is_empty() {
        statements.push(Vec::new());
    }
    statements
}

fn keyword(token: &Token) -> Option<Keyword> {
    match token {
        Token::Word(word) if word.quote_style.is_none() => Some(word.keyword),
        _ => None,
    }
}

fn word_is(token: &Token, text: &str) -> bool {
    matches!(token, Token::Word(word) if word.quote_style.is_none() && word.value.eq_ignore_ascii_case(text))
}

fn classify_one(tokens: &[&Token], parsed: Option<&Statement>) -> Classified {
    let verb = match tokens.first() {
        Some(Token::Word(word)) => word.value.to_ascii_uppercase(),
        _ => String::new(),
    };
    let mut risks = Vec::new();
    let first = tokens.first().and_then(|t| keyword(t));
    let second = tokens.get(1).and_then(|t| keyword(t));
    match first {
        Some(Keyword::DELETE)
            if parsed.map_or_else(|| !has_word(tokens, "WHERE"), delete_unbounded) =>
        {
            risks.push(Risk::DeleteWithoutWhere);
        }
        Some(Keyword::UPDATE)
            if parsed.map_or_else(|| !has_word(tokens, "WHERE"), update_unbounded) =>
        {
            risks.push(Risk::UpdateWithoutWhere);
        }
        Some(Keyword::DROP) => risks.push(if is_user_or_role(second) {
            Risk::Privileges
        } else {
            Risk::Drop
        }),
        Some(Keyword::TRUNCATE) => risks.push(Risk::Truncate),
        Some(Keyword::ALTER) => risks.push(if is_user_or_role(second) {
            Risk::Privileges
        } else {
            Risk::Alter
        }),
        Some(Keyword::RENAME) => risks.push(if is_user_or_role(second) {
            Risk::Privileges
        } else {
            Risk::Rename
        }),
        Some(Keyword::GRANT | Keyword::REVOKE) => risks.push(Risk::Privileges),
        Some(Keyword::CREATE) if is_user_or_role(second) => risks.push(Risk::Privileges),
        Some(Keyword::LOAD) => risks.push(Risk::LoadData),
        Some(Keyword::SET) => {
            if second == Some(Keyword::PASSWORD)
                || tokens.get(1).is_some_and(|t| word_is(t, "ROLE"))
            {
                risks.push(Risk::Privileges);
            } else if dangerous_set(tokens) {
                risks.push(Risk::DangerousSet);
            }
        }
        _ => {}
    }
    if into_outfile(tokens) {
        risks.push(Risk::IntoOutfile);
    }
    if parsed.is_none() && !tokens.is_empty() {
        risks.push(Risk::Unparsed);
    }
    risks.sort_unstable();
    risks.dedup();
    Classified {
        verb,
        risks,
        tables: parsed.map(tables_of),
    }
}

/// Every table `statement` names, sorted, without repeats.
fn tables_of(statement: &Statement) -> Vec<TableName> {
    let mut tables = Vec::new();
    let _ = sqlparser::ast::visit_relations(statement, |name| {
        tables.extend(TableName::of(name));
        std::ops::ControlFlow::<()>::Continue(())
    });
    // `DROP TABLE|VIEW` names are not relations to the visitor.
    if let Statement::Drop {
        object_type: sqlparser::ast::ObjectType::Table | sqlparser::ast::ObjectType::View,
        names,
        ..
    } = statement
    {
        tables.extend(names.iter().filter_map(TableName::of));
    }
    tables.sort();
    tables.dedup();
    tables
}

fn is_user_or_role(keyword: Option<Keyword>) -> bool {
    matches!(keyword, Some(Keyword::USER | Keyword::ROLE))
}

fn has_word(tokens: &[&Token], text: &str) -> bool {
    tokens.iter().any(|t| word_is(t, text))
}

/// `INTO OUTFILE` / `INTO DUMPFILE` anywhere in the statement.
fn into_outfile(tokens: &[&Token]) -> bool {
    tokens.windows(2).any(|pair| {
        keyword(pair[0]) == Some(Keyword::INTO)
            && (word_is(pair[1], "OUTFILE") || word_is(pair[1], "DUMPFILE"))
    })
}

/// `SET GLOBAL`/`PERSIST`/`@@global.`, or a dangerous variable among those set.
fn dangerous_set(tokens: &[&Token]) -> bool {
    tokens.iter().skip(1).any(|token| match token {
        Token::Word(word) if word.quote_style.is_none() || word.quote_style == Some('`') => {
            let name = word.value.to_ascii_lowercase();
            let name = name.trim_start_matches('@');
            let name = name
                .strip_prefix("session.")
                .or_else(|| name.strip_prefix("local."))
                .unwrap_or(name);
            name == "global"
                || name == "persist"
                || name == "persist_only"
                || name.starts_with("global.")
                || name.starts_with("persist.")
                || DANGEROUS_VARIABLES.contains(&name)
        }
        _ => false,
    })
}

fn delete_unbounded(statement: &Statement) -> bool {
    match statement {
        Statement::Delete(delete) => delete.selection.as_ref().is_none_or(always_true),
        _ => false,
    }
}

fn update_unbounded(statement: &Statement) -> bool {
    match statement {
        Statement::Update { selection, .. } => selection.as_ref().is_none_or(always_true),
        _ => false,
    }
}

/// Whether a condition holds for every row whatever the row holds (`1`, `TRUE`, `1=1`,
/// `'a'='a'`, `id=id`, `x OR 1=1`, `NOT FALSE`, ...). Conservative: `false` unless sure.
fn always_true(expr: &Expr) -> bool {
    match expr {
        Expr::Nested(inner) | Expr::IsTrue(inner) => always_true(inner),
        Expr::Value(value) => match &value.value {
            Value::Boolean(b) => *b,
            Value::Number(n, _) => n.parse::<f64>().is_ok_and(|n| n != 0.0),
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => {
                s.trim().parse::<f64>().is_ok_and(|n| n != 0.0)
            }
            _ => false,
        },
        Expr::BinaryOp { left, op, right } => match op {
            BinaryOperator::Or => always_true(left) || always_true(right),
            BinaryOperator::And => always_true(left) && always_true(right),
            BinaryOperator::Eq
            | BinaryOperator::GtEq
            | BinaryOperator::LtEq
            | BinaryOperator::Spaceship => same_constant_or_column(left, right),
            BinaryOperator::NotEq | BinaryOperator::Gt | BinaryOperator::Lt => {
                distinct_constants(left, right)
            }
            _ => false,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => always_false(expr),
        Expr::IsNotNull(inner) => {
            matches!(inner.as_ref(), Expr::Value(v) if v.value != Value::Null)
        }
        Expr::IsNull(inner) => matches!(inner.as_ref(), Expr::Value(v) if v.value == Value::Null),
        _ => false,
    }
}

fn always_false(expr: &Expr) -> bool {
    match expr {
        Expr::Nested(inner) => always_false(inner),
        Expr::Value(value) => match &value.value {
            Value::Boolean(b) => !*b,
            Value::Number(n, _) => n.parse::<f64>().is_ok_and(|n| n == 0.0),
            _ => false,
        },
        Expr::BinaryOp {
            left,
            op: BinaryOperator::NotEq,
            right,
        } => {
            same_constant_or_column(left, right)
                && !matches!(
                    left.as_ref(),
                    Expr::Identifier(_) | Expr::CompoundIdentifier(_)
                )
        }
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => always_true(expr),
        _ => false,
    }
}

/// Both sides the same literal, or the same column (`id = id` holds for every non-NULL id,
/// which an agent means as "every row").
fn same_constant_or_column(left: &Expr, right: &Expr) -> bool {
    match (strip(left), strip(right)) {
        (Expr::Value(a), Expr::Value(b)) => a.value == b.value && a.value != Value::Null,
        (a @ (Expr::Identifier(_) | Expr::CompoundIdentifier(_)), b) => a == b,
        _ => false,
    }
}

fn distinct_constants(left: &Expr, right: &Expr) -> bool {
    match (strip(left), strip(right)) {
        (Expr::Value(a), Expr::Value(b)) => {
            a.value != b.value && a.value != Value::Null && b.value != Value::Null
        }
        _ => false,
    }
}

fn strip(expr: &Expr) -> &Expr {
    match expr {
        Expr::Nested(inner) => strip(inner),
        other => other,
    }
}

/// The text with MySQL's executable comments opened: `/*!50000 DROP TABLE t */` becomes
/// `          DROP TABLE t   `, as the server runs it (whatever the version number; the
/// same for MariaDB's `/*M!...*/`). Quotes and ordinary comments are left as they are. The
/// result has the same length, so positions still match.
#[must_use]
pub fn expose_executable_comments(sql: &str) -> String {
    let bytes = sql.as_bytes();
    let mut out = bytes.to_vec();
    let mut i = 0;
    let mut open_executable = 0_usize;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    if bytes[i] == b'\\' && quote != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let marker = match (bytes.get(i + 2), bytes.get(i + 3)) {
                    (Some(b'!'), _) => Some(3),
                    (Some(b'M'), Some(b'!')) => Some(4),
                    _ => None,
                };
                if let Some(len) = marker {
                    let mut end = i + len;
                    while end < bytes.len() && end < i + len + 6 && bytes[end].is_ascii_digit() {
                        end += 1;
                    }
                    out[i..end].fill(b' ');
                    open_executable += 1;
                    i = end;
                } else {
                    // An ordinary comment: skip to its end.
                    let close = sql[i + 2..]
                        .find("*/")
                        .map_or(bytes.len(), |p| i + 2 + p + 2);
                    i = close;
                }
            }
            b'*' if open_executable > 0 && bytes.get(i + 1) == Some(&b'/') => {
                out[i] = b' ';
                out[i + 1] = b' ';
                open_executable -= 1;
                i += 2;
            }
            _ => i += 1,
        }
    }
    // Only ASCII bytes were replaced, by ASCII spaces: still UTF-8.
    String::from_utf8(out).unwrap_or_else(|_| sql.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn risks(sql: &str) -> Vec<Vec<Risk>> {
        classify(sql).into_iter().map(|c| c.risks).collect()
    }

    fn one(sql: &str) -> Vec<Risk> {
        let mut all = risks(sql);
        assert_eq!(all.len(), 1, "{sql}: {all:?}");
        all.remove(0)
    }

    #[test]
    fn unbounded_deletes_and_updates_are_caught_bounded_ones_are_not() {
        use Risk::*;
        assert_eq!(one("DELETE FROM orders"), [DeleteWithoutWhere]);
        assert_eq!(one("delete from orders where 1=1"), [DeleteWithoutWhere]);
        assert_eq!(one("DELETE FROM orders WHERE TRUE"), [DeleteWithoutWhere]);
        assert_eq!(
            one("DELETE FROM orders WHERE id = id"),
            [DeleteWithoutWhere]
        );
        assert_eq!(
            one("DELETE FROM orders WHERE id = 3 OR 'a' = 'a'"),
            [DeleteWithoutWhere]
        );
        assert_eq!(one("DELETE FROM orders WHERE NOT 0"), [DeleteWithoutWhere]);
        assert_eq!(one("DELETE FROM orders WHERE 2 > 1"), [DeleteWithoutWhere]);
        assert_eq!(one("DELETE FROM orders WHERE id = 3"), []);
        assert_eq!(one("DELETE FROM orders WHERE id = 3 AND 1=1"), []);
        assert_eq!(one("UPDATE t SET a = 1"), [UpdateWithoutWhere]);
        assert_eq!(one("UPDATE t SET a = 1 WHERE (1)"), [UpdateWithoutWhere]);
        assert_eq!(one("UPDATE t SET a = 1 WHERE b = 2"), []);
        assert_eq!(one("SELECT * FROM t"), []);
    }

    #[test]
    fn comments_casing_and_versioned_comments_do_not_hide_a_statement() {
        use Risk::*;
        assert_eq!(one("/*!50000 DROP */ TABLE t"), [Drop]);
        assert_eq!(one("/*!DROP TABLE t*/"), [Drop]);
        assert_eq!(one("/*M!100100 TRUNCATE t */"), [Truncate]);
        assert_eq!(one("/* hi */ dRoP   TABLE\n t -- bye"), [Drop]);
        assert_eq!(one("# note\nDELETE FROM t"), [DeleteWithoutWhere]);
        assert_eq!(one("SELECT 'DROP TABLE t' AS `DROP`"), []);
        assert_eq!(one("SELECT 1 /* DROP TABLE t */"), []);
        assert_eq!(one("SELECT '/*!DROP TABLE t*/'"), []);
    }

    #[test]
    fn every_statement_of_a_multi_statement_is_classified() {
        use Risk::*;
        assert_eq!(
            risks("SELECT 1; DROP TABLE t;; UPDATE t SET a=1 WHERE id=2; DELETE FROM t"),
            vec![vec![], vec![Drop], vec![], vec![DeleteWithoutWhere]]
        );
    }

    #[test]
    fn privileges_files_and_variables() {
        use Risk::*;
        assert!(one("GRANT ALL ON *.* TO 'x'@'%'").contains(&Privileges));
        assert!(one("REVOKE SELECT ON db.* FROM 'x'").contains(&Privileges));
        assert!(one("CREATE USER 'x' IDENTIFIED BY 'y'").contains(&Privileges));
        assert!(one("DROP USER 'x'").contains(&Privileges));
        assert!(one("ALTER USER 'x' IDENTIFIED BY 'z'").contains(&Privileges));
        assert!(one("SET PASSWORD FOR 'x' = PASSWORD('y')").contains(&Privileges));
        assert!(one("LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t").contains(&LoadData));
        assert!(one("SELECT * FROM t INTO OUTFILE '/tmp/x'").contains(&IntoOutfile));
        assert!(one("SELECT * INTO DUMPFILE '/tmp/x' FROM t").contains(&IntoOutfile));
        assert_eq!(one("SET sql_log_bin = 0"), [DangerousSet]);
        assert_eq!(one("SET SESSION foreign_key_checks = 0"), [DangerousSet]);
        assert_eq!(one("SET @@session.sql_safe_updates = 0"), [DangerousSet]);
        assert_eq!(one("SET GLOBAL max_connections = 1"), [DangerousSet]);
        assert_eq!(one("SET @@global.read_only = 0"), [DangerousSet]);
        assert_eq!(one("SET NAMES utf8mb4"), []);
        assert_eq!(one("SET @x = 1"), []);
        assert_eq!(one("ALTER TABLE t ADD COLUMN c INT"), [Alter]);
        assert_eq!(one("RENAME TABLE a TO b"), [Rename]);
        assert_eq!(one("CREATE TABLE t (id INT)"), []);
    }

    #[test]
    fn what_does_not_parse_is_unparsed() {
        assert_eq!(one("SELEC * FROM t"), [Risk::Unparsed]);
        assert_eq!(one("SELECT 'unterminated"), [Risk::Unparsed]);
        assert!(one("DROP TABLEZ t").contains(&Risk::Drop));
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_classified_without_panicking(sql in "\\PC{0,200}") {
            let classified = classify(&sql);
            proptest::prop_assert!(!classified.is_empty());
            proptest::prop_assert_eq!(expose_executable_comments(&sql).len(), sql.len());
        }
    }

    #[test]
    fn the_strongest_matching_rule_decides_and_exempt_groups_are_left_alone() {
        let rules: Vec<GuardrailConfig> =
            toml::from_str::<std::collections::BTreeMap<String, Vec<GuardrailConfig>>>(
                r#"
            [[guardrails]]
            name = "flag-ddl"
            risks = ["drop", "truncate", "alter"]
            action = "flag"
            [[guardrails]]
            name = "no-unbounded-writes"
            risks = ["delete_without_where", "update_without_where", "truncate"]
            action = "block"
            exempt_groups = ["dba"]
            [[guardrails]]
            name = "prod-only"
            risks = ["drop"]
            action = "block"
            targets = ["prod"]
            "#,
            )
            .expect("rules")
            .remove("guardrails")
            .expect("guardrails");
        let agents = ["agents".to_owned()];
        let dba = ["dba".to_owned()];
        let block = decide(&rules, "db", &agents, "DELETE FROM t").expect("decided");
        assert!(block.blocks());
        assert_eq!(block.rule, "no-unbounded-writes");
        assert_eq!(
            block.message(),
            "Tollgate: statement blocked by guardrail 'no-unbounded-writes' (delete_without_where)"
        );
        assert_eq!(decide(&rules, "db", &dba, "DELETE FROM t"), None);
        let flag = decide(&rules, "db", &dba, "TRUNCATE t").expect("flagged");
        assert_eq!(
            (flag.action, flag.rule.as_str()),
            (GuardAction::Flag, "flag-ddl")
        );
        assert!(
            decide(&rules, "db", &agents, "TRUNCATE t")
                .expect("blocked")
                .blocks()
        );
        assert_eq!(
            decide(&rules, "db", &agents, "DROP TABLE t").map(|d| d.action),
            Some(GuardAction::Flag)
        );
        assert_eq!(
            decide(&rules, "prod", &agents, "DROP TABLE t").map(|d| d.action),
            Some(GuardAction::Block)
        );
        assert_eq!(decide(&rules, "db", &agents, "SELECT 1"), None);
        assert_eq!(decide(&[], "db", &agents, "DROP TABLE t"), None);
    }

    fn rules(text: &str) -> Vec<GuardrailConfig> {
        let mut parsed: std::collections::BTreeMap<String, Vec<GuardrailConfig>> =
            toml::from_str(text).expect("rules");
        parsed.remove("guardrails").expect("guardrails")
    }

    #[test]
    fn tables_databases_verbs_and_hours_narrow_a_rule() {
        let rules = rules(
            r#"
            [[guardrails]]
            name = "customers-readers"
            verbs = ["select"]
            tables = ["shop.customers", "*.cards"]
            action = "flag"
            [[guardrails]]
            name = "billing-writes"
            risks = ["update_without_where"]
            verbs = ["delete"]
            databases = ["billing"]
            action = "block"
            [[guardrails]]
            name = "night-ddl"
            risks = ["drop"]
            hours = "22:00-06:00"
            action = "block"
            "#,
        );
        let at = |h: u8| {
            time::OffsetDateTime::UNIX_EPOCH
                .replace_hour(h)
                .expect("hour")
        };
        let noon = at(12);
        let decide = |db: Option<&str>, now, sql: &str| {
            decide_at(&rules, "db", &[], db, now, sql).map(|d| (d.action, d.rule))
        };
        let flag = Some((GuardAction::Flag, "customers-readers".to_owned()));
        assert_eq!(decide(None, noon, "SELECT * FROM shop.customers"), flag);
        assert_eq!(
            decide(Some("shop"), noon, "select email from customers c join x"),
            flag
        );
        assert_eq!(decide(Some("other"), noon, "SELECT * FROM customers"), None);
        assert_eq!(decide(Some("x"), noon, "SELECT * FROM pay.cards"), flag);
        assert_eq!(decide(Some("shop"), noon, "SELECT * FROM orders"), None);
        assert_eq!(
            decide(Some("shop"), noon, "SELECT * FROM orders WHERE"),
            flag,
            "unparsed"
        );
        let block = Some((GuardAction::Block, "billing-writes".to_owned()));
        assert_eq!(
            decide(Some("billing"), noon, "DELETE FROM inv WHERE id = 1"),
            block
        );
        assert_eq!(decide(None, noon, "UPDATE billing.inv SET a = 1"), block);
        assert_eq!(
            decide(None, noon, "UPDATE billing.inv SET a = 1 WHERE id = 2"),
            None
        );
        assert_eq!(
            decide(Some("shop"), noon, "DELETE FROM inv WHERE id = 1"),
            None
        );
        let night = Some((GuardAction::Block, "night-ddl".to_owned()));
        assert_eq!(decide(None, at(23), "DROP TABLE t"), night);
        assert_eq!(decide(None, at(3), "DROP TABLE t"), night);
        assert_eq!(decide(None, noon, "DROP TABLE t"), None);
    }

    #[test]
    fn allow_rules_make_exceptions_per_statement_and_unparsed_is_flagged_by_default() {
        let rules = rules(
            r#"
            [[guardrails]]
            name = "no-drop"
            risks = ["drop"]
            action = "block"
            [[guardrails]]
            name = "scratch"
            risks = ["drop"]
            tables = ["scratch.*"]
            action = "allow"
            "#,
        );
        let decide = |sql: &str| {
            decide_at(
                &rules,
                "db",
                &[],
                None,
                time::OffsetDateTime::UNIX_EPOCH,
                sql,
            )
            .map(|d| (d.action, d.rule))
        };
        assert_eq!(decide("DROP TABLE scratch.t"), None);
        assert_eq!(
            decide("DROP TABLE scratch.t; DROP TABLE shop.orders"),
            Some((GuardAction::Block, "no-drop".to_owned())),
            "an allowed statement does not allow its neighbours"
        );
        assert_eq!(
            decide("SELECT * FROM t WHERE"),
            Some((GuardAction::Flag, DEFAULT_UNPARSED_RULE.to_owned()))
        );
        assert_eq!(decide("SELECT * FROM t"), None);
        let quiet = rules_with_unparsed_allowed();
        assert_eq!(
            decide_at(
                &quiet,
                "db",
                &[],
                None,
                time::OffsetDateTime::UNIX_EPOCH,
                "SELEC 1"
            ),
            None
        );
    }

    fn rules_with_unparsed_allowed() -> Vec<GuardrailConfig> {
        rules(
            r#"
            [[guardrails]]
            name = "quiet"
            risks = ["unparsed"]
            action = "allow"
            "#,
        )
    }

    #[test]
    fn bad_rules_are_reported() {
        let problem = |text: &str| rules(text)[0].problem();
        assert!(problem("[[guardrails]]\nname = \"x\"\naction = \"flag\"").is_some());
        assert!(
            problem("[[guardrails]]\nname = \"x\"\nrisks = [\"drop\"]\naction = \"flag\"\nhours = \"9-5\"")
                .is_some()
        );
        assert!(
            problem("[[guardrails]]\nname = \"x\"\nrisks = [\"drop\"]\naction = \"flag\"\ndays = [\"someday\"]")
                .is_some()
        );
        assert_eq!(
            problem(
                "[[guardrails]]\nname = \"x\"\nverbs = [\"drop\"]\naction = \"flag\"\nhours = \"09:00-17:30\"\ndays = [\"Mon\", \"friday\"]"
            ),
            None
        );
    }

    #[test]
    fn exposing_executable_comments_keeps_positions() {
        let sql = "SELECT 1 /*!40101 , 2 */ FROM t";
        let exposed = expose_executable_comments(sql);
        assert_eq!(exposed.len(), sql.len());
        assert_eq!(exposed, "SELECT 1          , 2    FROM t");
    }
}
