//! `[[masking]]` rules as configured, and compiled: column name patterns (globs or regular
//! expressions), `db.table.column` fields (matched against the column definition's original
//! schema, table and column, so an alias does not escape them), content detectors, the style,
//! the exempt groups and targets, and which statement checks apply.

use std::path::PathBuf;

use regex::Regex;
use serde::Deserialize;

use super::{
    detectors::Detector,
    styles::{HashKey, Style},
};

/// `[[masking]]` as written in the configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "each check is one independent switch, named as MaxScale names it"
)]
pub struct MaskRuleConfig {
    /// The rule's name, in errors and logs.
    pub name: String,
    /// Column name globs (`email`, `*_ssn`, `card?no`; case-insensitive), matched against the
    /// original column name and the name the client sees.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Column name regular expressions (case-insensitive), matched like `columns`.
    #[serde(default)]
    pub column_regex: Vec<String>,
    /// `db.table.column` or `table.column`, each part a glob, matched against the original
    /// schema, table and column of the column definition.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Content detectors run on every string value of a result.
    #[serde(default)]
    pub detectors: Vec<Detector>,
    /// How masked values are shown.
    #[serde(default)]
    pub style: Style,
    /// The key of `hash` masks: a file of at least 16 bytes (required for `hash`). Rules
    /// reading the same file hash alike, so joins across them line up.
    #[serde(default)]
    pub hash_key_file: Option<PathBuf>,
    /// Identities in any of these groups see the values unmasked (e.g. `pii-readers`).
    #[serde(default)]
    pub exempt_groups: Vec<String>,
    /// Only on these targets (by name); all when empty.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Refuse statements that apply a function or an operator to a masked column.
    #[serde(default = "yes")]
    pub prevent_function_usage: bool,
    /// Refuse `UNION`/`INTERSECT`/`EXCEPT` statements that read a masked column.
    #[serde(default = "yes")]
    pub check_unions: bool,
    /// Refuse statements whose subqueries read a masked column.
    #[serde(default = "yes")]
    pub check_subqueries: bool,
    /// Refuse statements that put a masked column into a user variable (`@v := email`,
    /// `SELECT email INTO @v`, `SET @v = (SELECT email ...)`).
    #[serde(default = "yes")]
    pub check_user_variables: bool,
    /// Refuse statements that cannot be parsed fully while they mention a masked column or
    /// table.
    #[serde(default = "yes")]
    pub require_fully_parsed: bool,
}

fn yes() -> bool {
    true
}

/// A masking rule ready to use.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "MaskRuleConfig")]
pub struct MaskRule {
    /// The rule's name.
    pub name: String,
    columns: Vec<Regex>,
    fields: Vec<[Option<Regex>; 3]>,
    /// Content detectors.
    pub detectors: Vec<Detector>,
    /// The style.
    pub style: Style,
    /// The key of `hash` masks.
    pub key: Option<HashKey>,
    exempt_groups: Vec<String>,
    targets: Vec<String>,
    /// Which statement checks apply.
    pub checks: Checks,
}

/// The statement checks of a rule (all on by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "each is one independent switch of the configuration"
)]
pub struct Checks {
    /// `prevent_function_usage`.
    pub functions: bool,
    /// `check_unions`.
    pub unions: bool,
    /// `check_subqueries`.
    pub subqueries: bool,
    /// `check_user_variables`.
    pub user_variables: bool,
    /// `require_fully_parsed`.
    pub fully_parsed: bool,
}

/// Why a `[[masking]]` rule cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// A glob or regular expression does not compile.
    #[error("rule '{rule}': bad pattern '{pattern}': {message}")]
    Pattern {
        /// The rule.
        rule: String,
        /// The pattern.
        pattern: String,
        /// What is wrong.
        message: String,
    },
    /// A field is not `db.table.column` or `table.column`.
    #[error("rule '{rule}': field '{field}' must be db.table.column or table.column")]
    Field {
        /// The rule.
        rule: String,
        /// The field.
        field: String,
    },
    /// The rule masks nothing.
    #[error(
        "rule '{0}' masks nothing: set columns, column_regex, fields or detectors (email, card, phone, national_id, iban, api_key)"
    )]
    Empty(String),
    /// The key of a `hash` rule is missing or cannot be read.
    #[error("rule '{rule}': {message}")]
    Key {
        /// The rule.
        rule: String,
        /// What is wrong (never the key).
        message: String,
    },
}

/// A glob (`*`, `?`) as an anchored case-insensitive regular expression.
fn glob(pattern: &str) -> Result<Regex, regex::Error> {
    let mut re = String::from("(?i)^");
    for c in pattern.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => re.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    re.push('$');
    Regex::new(&re)
}

impl TryFrom<MaskRuleConfig> for MaskRule {
    type Error = RuleError;

    fn try_from(config: MaskRuleConfig) -> Result<Self, RuleError> {
        let rule = config.name.clone();
        let bad = |pattern: &str, e: &regex::Error| RuleError::Pattern {
            rule: rule.clone(),
            pattern: pattern.to_owned(),
            message: e.to_string(),
        };
        let mut columns = Vec::new();
        for pattern in &config.columns {
            columns.push(glob(pattern).map_err(|e| bad(pattern, &e))?);
        }
        for pattern in &config.column_regex {
            columns.push(Regex::new(&format!("(?i){pattern}")).map_err(|e| bad(pattern, &e))?);
        }
        let mut fields = Vec::new();
        for field in &config.fields {
            let parts: Vec<&str> = field.split('.').collect();
            let parts: [Option<&str>; 3] = match parts.as_slice() {
                [db, table, column] => [Some(db), Some(table), Some(column)],
                [table, column] => [None, Some(table), Some(column)],
                _ => {
                    return Err(RuleError::Field {
                        rule,
                        field: field.clone(),
                    });
                }
            };
            let mut compiled = [None, None, None];
            for (slot, part) in compiled.iter_mut().zip(parts) {
                if let Some(part) = part {
                    *slot = Some(glob(part).map_err(|e| bad(field, &e))?);
                }
            }
            fields.push(compiled);
        }
        if columns.is_empty() && fields.is_empty() && config.detectors.is_empty() {
            return Err(RuleError::Empty(rule));
        }
        let key = match (&config.hash_key_file, config.style) {
            (Some(path), _) => Some(read_key(&rule, path)?),
            (None, Style::Hash) => {
                return Err(RuleError::Key {
                    rule,
                    message:
                        "style = \"hash\" needs hash_key_file (a file of at least 16 random bytes)"
                            .into(),
                });
            }
            (None, _) => None,
        };
        Ok(Self {
            name: config.name,
            columns,
            fields,
            detectors: config.detectors,
            style: config.style,
            key,
            exempt_groups: config.exempt_groups,
            targets: config.targets,
            checks: Checks {
                functions: config.prevent_function_usage,
                unions: config.check_unions,
                subqueries: config.check_subqueries,
                user_variables: config.check_user_variables,
                fully_parsed: config.require_fully_parsed,
            },
        })
    }
}

/// Reads a `hash_key_file`; the error never shows the key.
fn read_key(rule: &str, path: &std::path::Path) -> Result<HashKey, RuleError> {
    let bytes = std::fs::read(path).map_err(|e| RuleError::Key {
        rule: rule.to_owned(),
        message: format!("cannot read hash_key_file {}: {e}", path.display()),
    })?;
    HashKey::new(bytes).ok_or_else(|| RuleError::Key {
        rule: rule.to_owned(),
        message: format!("hash_key_file {} holds fewer than 16 bytes", path.display()),
    })
}

/// What of a column definition a rule looks at.
#[derive(Debug, Clone, Copy)]
pub struct ColumnName<'a> {
    /// Schema of the original table.
    pub schema: &'a str,
    /// The original table (empty for computed columns).
    pub org_table: &'a str,
    /// The original column (empty for computed columns).
    pub org_name: &'a str,
    /// The name the client sees (alias).
    pub name: &'a str,
}

impl MaskRule {
    /// Whether the rule applies to an identity in `groups` on `target`.
    #[must_use]
    pub fn applies(&self, target: &str, groups: &[String]) -> bool {
        (self.targets.is_empty() || self.targets.iter().any(|t| t == target))
            && !self
                .exempt_groups
                .iter()
                .any(|g| groups.iter().any(|have| have == g))
    }

    /// Whether a result column is masked by this rule's names or fields.
    #[must_use]
    pub fn matches_column(&self, column: ColumnName<'_>) -> bool {
        let named = |name: &str| !name.is_empty() && self.columns.iter().any(|r| r.is_match(name));
        if named(column.org_name) || named(column.name) {
            return true;
        }
        !column.org_name.is_empty()
            && self.fields.iter().any(|[db, table, name]| {
                db.as_ref().is_none_or(|r| r.is_match(column.schema))
                    && table.as_ref().is_some_and(|r| r.is_match(column.org_table))
                    && name.as_ref().is_some_and(|r| r.is_match(column.org_name))
            })
    }

    /// Whether an identifier in a statement names a column this rule masks: by name pattern,
    /// or a field's column whose table (`tables`: the words of the statement) is mentioned.
    #[must_use]
    pub fn matches_reference(&self, column: &str, mentions_table: &dyn Fn(&Regex) -> bool) -> bool {
        self.columns.iter().any(|r| r.is_match(column))
            || self.fields.iter().any(|[_, table, name]| {
                name.as_ref().is_some_and(|r| r.is_match(column))
                    && table.as_ref().is_some_and(mentions_table)
            })
    }

    /// Whether a word of a statement names a table of this rule's fields.
    #[must_use]
    pub fn matches_table(&self, word: &str) -> bool {
        self.fields
            .iter()
            .any(|[_, table, _]| table.as_ref().is_some_and(|r| r.is_match(word)))
    }

    /// Whether the rule masks by name at all (statement checks only concern such rules).
    #[must_use]
    pub fn masks_columns(&self) -> bool {
        !self.columns.is_empty() || !self.fields.is_empty()
    }

    /// Whether the rule has column name patterns (which may match any table's columns).
    #[must_use]
    pub fn has_name_patterns(&self) -> bool {
        !self.columns.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(toml_text: &str) -> Result<MaskRule, String> {
        toml::from_str::<MaskRule>(toml_text).map_err(|e| e.to_string())
    }

    #[test]
    fn names_fields_and_aliases() {
        let r = rule(
            "name = \"pii\"\ncolumns = [\"*ssn\"]\ncolumn_regex = [\"^e-?mail$\"]\nfields = [\"shop.customers.card\", \"orders.note\"]",
        )
        .expect("valid");
        let col = |schema, org_table, org_name, name| ColumnName {
            schema,
            org_table,
            org_name,
            name,
        };
        assert!(r.matches_column(col("shop", "customers", "EMAIL", "e")));
        assert!(r.matches_column(col("shop", "customers", "x", "user_ssn")));
        assert!(
            r.matches_column(col("shop", "customers", "card", "c")),
            "alias"
        );
        assert!(r.matches_column(col("any", "orders", "note", "n")));
        assert!(!r.matches_column(col("other", "customers", "card", "card2")));
        assert!(!r.matches_column(col("shop", "customers", "id", "id")));
        assert!(!r.matches_column(col("", "", "", "CONCAT(card)")));
        assert!(r.checks.functions && r.checks.fully_parsed);
    }

    #[test]
    fn bad_rules_are_refused() {
        assert!(
            rule("name = \"x\"")
                .expect_err("empty")
                .contains("masks nothing")
        );
        assert!(
            rule("name = \"x\"\nfields = [\"a\"]")
                .expect_err("field")
                .contains("db.table.column")
        );
        assert!(
            rule("name = \"x\"\ncolumns = [\"a\"]\nstyle = \"hash\"")
                .expect_err("key")
                .contains("hash_key_file")
        );
        assert!(
            rule("name = \"x\"\ncolumn_regex = [\"(\"]")
                .expect_err("regex")
                .contains("bad pattern")
        );
    }

    #[test]
    fn exempt_groups_and_targets() {
        let r = rule(
            "name = \"x\"\ncolumns = [\"a\"]\nexempt_groups = [\"pii-readers\"]\ntargets = [\"shop\"]",
        )
        .expect("valid");
        assert!(r.applies("shop", &["dev".into()]));
        assert!(!r.applies("shop", &["dev".into(), "pii-readers".into()]));
        assert!(!r.applies("other", &[]));
    }
}
