//! Statement checks, as the masking filter of MariaDB's `MaxScale` makes them: masking rewrites the
//! values of columns the result describes as masked, so a statement that hides a masked
//! column's values behind something else is refused before it reaches the database:
//!
//! - `prevent_function_usage`: a function or an operator applied to a masked column
//!   (`CONCAT(email)`, `LEFT(ssn, 3)`, `email || ''`, `ssn + 0`, `CASE WHEN ssn ...`), in the
//!   select list or anywhere else in a statement that reads (`WHERE LEFT(ssn, 1) = '1'`);
//! - `check_unions`: a `UNION`/`INTERSECT`/`EXCEPT` that reads a masked column, or `*` of a
//!   table with masked columns (a union's result columns lose their original table);
//! - `check_subqueries`: a subquery (derived table, scalar, `IN`, `EXISTS`) that reads a masked
//!   column or `*` of such a table;
//! - `check_user_variables`: a statement that assigns user variables (`@v := email`,
//!   `SELECT email INTO @v`, `SET @v = (SELECT email ...)`) and reads a masked column;
//! - `require_fully_parsed`: a statement sqlparser's MySQL dialect cannot parse while it
//!   mentions a masked column or a table with masked fields.
//!
//! The checks read sqlparser's MySQL tokens (executable comments `/*! */` exposed as SQL, as
//! [`crate::guard`] does), so strings, comments, quoting and casing change nothing; the
//! syntax tree decides "fully parsed". Statements that do not read (no `SELECT`, e.g.
//! `UPDATE ... SET email = LOWER(email)`) are only checked for user variables and parsing.
//! Column references are resolved by name: an unqualified `email` is masked when a field
//! rule's column is `email` and its table is named anywhere in the statement (a join with an
//! unmasked table that has an `email` column is refused too, conservatively).

use sqlparser::{
    dialect::MySqlDialect,
    keywords::Keyword,
    parser::Parser,
    tokenizer::{Token, Tokenizer, Word},
};

use super::rules::MaskRule;

/// A statement check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// `prevent_function_usage`.
    Function,
    /// `check_unions`.
    Union,
    /// `check_subqueries`.
    Subquery,
    /// `check_user_variables`.
    UserVariable,
    /// `require_fully_parsed`.
    Unparsed,
}

impl Check {
    /// The configuration switch that turns it off.
    #[must_use]
    pub fn setting(self) -> &'static str {
        match self {
            Self::Function => "prevent_function_usage",
            Self::Union => "check_unions",
            Self::Subquery => "check_subqueries",
            Self::UserVariable => "check_user_variables",
            Self::Unparsed => "require_fully_parsed",
        }
    }

    fn enabled(self, rule: &MaskRule) -> bool {
        let c = rule.checks;
        match self {
            Self::Function => c.functions,
            Self::Union => c.unions,
            Self::Subquery => c.subqueries,
            Self::UserVariable => c.user_variables,
            Self::Unparsed => c.fully_parsed,
        }
    }
}

/// Why a statement is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The rule whose check refused it.
    pub rule: String,
    /// The check.
    pub check: Check,
    /// The masked column (or `*`) concerned, when one is known.
    pub column: Option<String>,
}

impl Refusal {
    /// The error the client gets.
    #[must_use]
    pub fn message(&self) -> String {
        let column = self.column.as_deref().unwrap_or("?");
        let what = match self.check {
            Check::Function => {
                format!("it applies a function or an operator to the masked column '{column}'")
            }
            Check::Union => format!("it reads the masked column '{column}' in a UNION"),
            Check::Subquery => format!("it reads the masked column '{column}' in a subquery"),
            Check::UserVariable => {
                format!("it puts the masked column '{column}' into a user variable")
            }
            Check::Unparsed => "it cannot be fully parsed and masking rules apply to it".to_owned(),
        };
        format!(
            "Tollgate: statement refused by masking rule '{}': {what} ({} = false turns this check off)",
            self.rule,
            self.check.setting()
        )
    }
}

/// The first check `sql` fails under `rules` (those that apply to the session), if any.
#[must_use]
pub fn check(rules: &[&MaskRule], sql: &str) -> Option<Refusal> {
    let rules: Vec<&MaskRule> = rules
        .iter()
        .copied()
        .filter(|r| r.masks_columns())
        .collect();
    if rules.is_empty() {
        return None;
    }
    let text = crate::guard::expose_executable_comments(sql);
    let dialect = MySqlDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, &text).tokenize() else {
        // Not even tokens: what it reads cannot be known.
        return refuse(&rules, Check::Unparsed, None);
    };
    let parsed = Parser::parse_sql(&dialect, &text).is_ok();
    let mut statement = Vec::new();
    for token in tokens {
        match token {
            Token::Whitespace(_) => {}
            Token::SemiColon | Token::EOF => {
                if let Some(refusal) = check_statement(&rules, &statement, parsed) {
                    return Some(refusal);
                }
                statement.clear();
            }
            other => statement.push(other),
        }
    }
    check_statement(&rules, &statement, parsed)
}

/// The first rule among `candidates` with `check` on, as a refusal.
fn refuse(candidates: &[&MaskRule], check: Check, column: Option<&str>) -> Option<Refusal> {
    candidates
        .iter()
        .find(|r| check.enabled(r))
        .map(|r| Refusal {
            rule: r.name.clone(),
            check,
            column: column.map(str::to_owned),
        })
}

fn word(token: &Token) -> Option<&Word> {
    match token {
        Token::Word(w) => Some(w),
        _ => None,
    }
}

fn is_keyword(token: Option<&Token>, keywords: &[Keyword]) -> bool {
    token
        .and_then(word)
        .is_some_and(|w| w.quote_style.is_none() && keywords.contains(&w.keyword))
}

/// Keywords before `(` that do not make it a function call.
const NOT_FUNCTIONS: &[Keyword] = &[
    Keyword::IN,
    Keyword::EXISTS,
    Keyword::ANY,
    Keyword::ALL,
    Keyword::SOME,
    Keyword::VALUES,
    Keyword::VALUE,
    Keyword::ON,
    Keyword::USING,
    Keyword::AS,
    Keyword::AND,
    Keyword::OR,
    Keyword::NOT,
    Keyword::XOR,
    Keyword::FROM,
    Keyword::WHERE,
    Keyword::SELECT,
    Keyword::INTO,
    Keyword::JOIN,
    Keyword::BY,
    Keyword::WITH,
    Keyword::UNION,
    Keyword::EXCEPT,
    Keyword::INTERSECT,
    Keyword::HAVING,
    Keyword::SET,
    Keyword::TABLE,
    Keyword::LATERAL,
    Keyword::DISTINCT,
    Keyword::INDEX,
    Keyword::KEY,
    Keyword::PARTITION,
];

/// Keywords before a word that make it a table name or an alias, not a column.
const NAMES_FOLLOW: &[Keyword] = &[
    Keyword::AS,
    Keyword::FROM,
    Keyword::JOIN,
    Keyword::INTO,
    Keyword::UPDATE,
    Keyword::TABLE,
    Keyword::USE,
    Keyword::DATABASE,
];

/// Operators and keywords that, next to a column, compute a new value from it.
fn is_operator(token: Option<&Token>) -> bool {
    match token {
        Some(
            Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::Mod
            | Token::StringConcat
            | Token::Ampersand
            | Token::Pipe
            | Token::Caret
            | Token::ShiftLeft
            | Token::ShiftRight
            | Token::Tilde
            | Token::ExclamationMark
            | Token::DoubleColon,
        ) => true,
        other => is_keyword(
            other,
            &[
                Keyword::DIV,
                Keyword::MOD,
                Keyword::CASE,
                Keyword::WHEN,
                Keyword::THEN,
                Keyword::ELSE,
                Keyword::BINARY,
                Keyword::COLLATE,
                Keyword::INTERVAL,
            ],
        ),
    }
}

/// A reference to a masked column (or `*` of a masked table) in a statement.
struct Reference<'t> {
    /// Position in the statement's tokens.
    at: usize,
    /// The column's name, or `*`.
    column: &'t str,
    /// The rules that mask it.
    rules: Vec<&'t MaskRule>,
    wildcard: bool,
}

/// The masked references of a statement's tokens.
fn references<'t>(rules: &[&'t MaskRule], tokens: &'t [Token]) -> Vec<Reference<'t>> {
    let words: Vec<&str> = tokens
        .iter()
        .filter_map(word)
        .map(|w| w.value.as_str())
        .collect();
    let mentions = |re: &regex::Regex| words.iter().any(|w| re.is_match(w));
    let mut found = Vec::new();
    for (at, token) in tokens.iter().enumerate() {
        let before = at.checked_sub(1).and_then(|i| tokens.get(i));
        match token {
            Token::Word(w) => {
                let next = tokens.get(at + 1);
                if w.value.starts_with('@')
                    || matches!(next, Some(Token::LParen | Token::Period))
                    || is_keyword(before, NAMES_FOLLOW)
                {
                    continue;
                }
                let matched: Vec<&MaskRule> = rules
                    .iter()
                    .copied()
                    .filter(|r| r.matches_reference(&w.value, &mentions))
                    .collect();
                if !matched.is_empty() {
                    found.push(Reference {
                        at,
                        column: &w.value,
                        rules: matched,
                        wildcard: false,
                    });
                }
            }
            Token::Mul
                if matches!(before, Some(Token::Comma | Token::Period))
                    || is_keyword(before, &[Keyword::SELECT, Keyword::DISTINCT, Keyword::ALL]) =>
            {
                let matched: Vec<&MaskRule> = rules
                    .iter()
                    .copied()
                    .filter(|r| r.has_name_patterns() || words.iter().any(|w| r.matches_table(w)))
                    .collect();
                if !matched.is_empty() {
                    found.push(Reference {
                        at,
                        column: "*",
                        rules: matched,
                        wildcard: true,
                    });
                }
            }
            _ => {}
        }
    }
    found
}

/// For each token: whether it is inside a function call's parentheses, and inside a
/// subquery's.
fn nesting(tokens: &[Token]) -> Vec<(bool, bool)> {
    let mut stack: Vec<(bool, bool)> = Vec::new();
    let mut out = Vec::with_capacity(tokens.len());
    for (at, token) in tokens.iter().enumerate() {
        match token {
            Token::LParen => {
                let before = at.checked_sub(1).and_then(|i| tokens.get(i));
                let two_before = at.checked_sub(2).and_then(|i| tokens.get(i));
                let function = before.and_then(word).is_some_and(|w| {
                    !(w.value.starts_with('@')
                        || w.quote_style.is_none() && NOT_FUNCTIONS.contains(&w.keyword))
                }) && !is_keyword(
                    two_before,
                    &[Keyword::INTO, Keyword::TABLE, Keyword::ON, Keyword::JOIN],
                );
                let subquery = is_keyword(
                    tokens.get(at + 1),
                    &[
                        Keyword::SELECT,
                        Keyword::WITH,
                        Keyword::VALUES,
                        Keyword::TABLE,
                    ],
                ) || matches!(tokens.get(at + 1), Some(Token::LParen))
                    && is_keyword(tokens.get(at + 2), &[Keyword::SELECT, Keyword::WITH]);
                stack.push((function, subquery));
                out.push(inside(&stack));
            }
            Token::RParen => {
                out.push(inside(&stack));
                stack.pop();
            }
            _ => out.push(inside(&stack)),
        }
    }
    out
}

fn inside(stack: &[(bool, bool)]) -> (bool, bool) {
    (stack.iter().any(|(f, _)| *f), stack.iter().any(|(_, s)| *s))
}

fn check_statement(rules: &[&MaskRule], tokens: &[Token], parsed: bool) -> Option<Refusal> {
    let found = references(rules, tokens);
    let first = found.first()?;
    if !parsed && let Some(refusal) = refuse(&first.rules, Check::Unparsed, Some(first.column)) {
        return Some(refusal);
    }
    let reads = tokens
        .iter()
        .any(|t| is_keyword(Some(t), &[Keyword::SELECT]));
    let assigns = tokens.iter().enumerate().any(|(i, t)| {
        matches!(t, Token::Assignment)
            || is_user_variable(t)
                && (is_keyword(
                    i.checked_sub(1).and_then(|p| tokens.get(p)),
                    &[Keyword::INTO],
                ) || is_keyword(tokens.first(), &[Keyword::SET]))
    });
    if assigns
        && let Some(r) = found
            .iter()
            .find_map(|r| refuse(&r.rules, Check::UserVariable, Some(r.column)))
    {
        return Some(r);
    }
    if !reads {
        return None;
    }
    let levels = nesting(tokens);
    let union = tokens.iter().any(|t| {
        is_keyword(
            Some(t),
            &[Keyword::UNION, Keyword::INTERSECT, Keyword::EXCEPT],
        )
    });
    for reference in &found {
        let (in_function, in_subquery) = levels.get(reference.at).copied().unwrap_or_default();
        let column = Some(reference.column);
        if !reference.wildcard {
            let mut start = reference.at;
            // `t.email`, `db.t.email`: the operator is before the qualifier.
            while start >= 2 && matches!(tokens.get(start - 1), Some(Token::Period)) {
                start -= 2;
            }
            let before = start.checked_sub(1).and_then(|i| tokens.get(i));
            let operator = is_operator(before) || is_operator(tokens.get(reference.at + 1));
            if (in_function || operator)
                && let Some(r) = refuse(&reference.rules, Check::Function, column)
            {
                return Some(r);
            }
        }
        if in_subquery && let Some(r) = refuse(&reference.rules, Check::Subquery, column) {
            return Some(r);
        }
        if union && let Some(r) = refuse(&reference.rules, Check::Union, column) {
            return Some(r);
        }
    }
    None
}

fn is_user_variable(token: &Token) -> bool {
    word(token).is_some_and(|w| w.value.starts_with('@') && !w.value.starts_with("@@"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Vec<MaskRule> {
        #[derive(serde::Deserialize)]
        struct File {
            masking: Vec<MaskRule>,
        }
        toml::from_str::<File>(text).expect("valid").masking
    }

    fn verdict(rules: &[MaskRule], sql: &str) -> Option<Check> {
        let refs: Vec<&MaskRule> = rules.iter().collect();
        check(&refs, sql).map(|r| r.check)
    }

    const PII: &str = "[[masking]]\nname = \"pii\"\nfields = [\"shop.customers.email\", \"customers.ssn\"]\ncolumns = [\"card_number\"]\n";

    #[test]
    fn plain_reads_pass() {
        let r = rules(PII);
        for sql in [
            "SELECT email, ssn FROM customers",
            "SELECT email AS e FROM shop.customers WHERE id = 1",
            "SELECT c.email FROM customers c WHERE c.email = 'x@y.io'",
            "select `email` from customers order by id",
            "SELECT COUNT(*) FROM customers",
            "SELECT * FROM customers",
            "SELECT email FROM orders",
            "SELECT LENGTH(name) FROM customers",
            "INSERT INTO customers (email, ssn) VALUES ('a@b.io', '123-45-6789')",
            "UPDATE customers SET email = LOWER(email) WHERE id = 1",
            "SELECT 'CONCAT(email)' FROM customers",
            "SELECT 1; SELECT email FROM customers",
        ] {
            assert_eq!(verdict(&r, sql), None, "{sql}");
        }
    }

    #[test]
    fn bypasses_are_refused() {
        let r = rules(PII);
        for (sql, expected) in [
            ("SELECT CONCAT(email) FROM customers", Check::Function),
            (
                "SELECT concat('', c.email) AS x FROM customers c",
                Check::Function,
            ),
            ("SELECT HEX(email) FROM customers", Check::Function),
            ("SELECT GROUP_CONCAT(ssn) FROM customers", Check::Function),
            (
                "SELECT JSON_OBJECT('e', email) FROM customers",
                Check::Function,
            ),
            ("SELECT email || '' FROM customers", Check::Function),
            ("SELECT ssn + 0 FROM customers", Check::Function),
            (
                "SELECT CAST(card_number AS CHAR) FROM payments",
                Check::Function,
            ),
            (
                "SELECT id FROM customers WHERE LEFT(ssn, 1) = '1'",
                Check::Function,
            ),
            (
                "SELECT CASE WHEN email LIKE 'a%' THEN 1 END FROM customers",
                Check::Function,
            ),
            (
                "SELECT /*!50000 HEX(email) */ FROM customers",
                Check::Function,
            ),
            ("SELECT email FROM customers UNION SELECT 'x'", Check::Union),
            (
                "SELECT * FROM customers UNION ALL SELECT * FROM customers",
                Check::Union,
            ),
            (
                "SELECT e FROM (SELECT email AS e FROM customers) t",
                Check::Subquery,
            ),
            ("SELECT * FROM (SELECT * FROM customers) t", Check::Subquery),
            (
                "SELECT id FROM orders WHERE x IN (SELECT ssn FROM customers)",
                Check::Subquery,
            ),
            ("SELECT @a := email FROM customers", Check::UserVariable),
            (
                "SELECT email INTO @a FROM customers LIMIT 1",
                Check::UserVariable,
            ),
            (
                "SET @a = (SELECT email FROM customers LIMIT 1)",
                Check::UserVariable,
            ),
            ("SELECT email FROM customers WHERE ((", Check::Unparsed),
            (
                "SELECT email FROM customers WHERE 'unterminated",
                Check::Unparsed,
            ),
        ] {
            assert_eq!(verdict(&r, sql), Some(expected), "{sql}");
        }
    }

    #[test]
    fn checks_can_be_turned_off_and_messages_name_them() {
        let r = rules(&format!(
            "{PII}prevent_function_usage = false\ncheck_unions = false\n"
        ));
        assert_eq!(verdict(&r, "SELECT HEX(email) FROM customers"), None);
        assert_eq!(
            verdict(&r, "SELECT email FROM customers UNION SELECT 'x'"),
            None
        );
        let refs: Vec<&MaskRule> = r.iter().collect();
        let refusal = check(&refs, "SELECT @a := email FROM customers").expect("refused");
        assert_eq!(
            refusal.message(),
            "Tollgate: statement refused by masking rule 'pii': it puts the masked column 'email' into a user variable (check_user_variables = false turns this check off)"
        );
        let detectors_only = rules("[[masking]]\nname = \"d\"\ndetectors = [\"email\"]\n");
        assert_eq!(verdict(&detectors_only, "SELECT HEX(email) FROM t"), None);
    }
}
