//! Who may use a target, and as which of its database accounts: the `[[targets.allow]]` rules.
//!
//! Deny by default: the rules of a target are tried in order, the first that matches the
//! identity (by group, `"*"` for anyone authenticated, or by name) decides the account the
//! gateway logs in with, the databases the session may use and how long it may last; an
//! identity no rule matches is refused, with a message that says why. Every decision is
//! logged and recorded with the login.

use std::{collections::HashMap, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{
    auth::{CredentialError, UpstreamCredential},
    config::{AllowRule, TargetConfig},
    identity::Identity,
};

/// A target's accounts (credentials loaded) and rules.
#[derive(Debug)]
pub struct TargetPolicy {
    target: String,
    accounts: HashMap<String, UpstreamCredential>,
    rules: Vec<AllowRule>,
}

/// What a matching rule grants.
#[derive(Debug, Clone, Copy)]
pub struct Grant<'p> {
    /// The rule's position in the target's `allow` list.
    pub rule: usize,
    /// The account's name.
    pub account: &'p str,
    /// The account's credential.
    pub credential: &'p UpstreamCredential,
    /// Databases the session may use (any when `None`).
    pub databases: Option<&'p [String]>,
    /// Longest the session may last.
    pub max_session: Option<Duration>,
    target: &'p str,
}

/// Why the policy refused; the `Display` text is what the client reads (after "Tollgate: ").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No rule matches the identity.
    #[error("{who} may not use target '{target}'")]
    NoRule {
        /// The identity and its groups, in words.
        who: String,
        /// The target.
        target: String,
    },
    /// The rule that matched does not allow this database.
    #[error("database '{database}' is not allowed for {who} on target '{target}'")]
    Database {
        /// The database asked for.
        database: String,
        /// The identity, in words.
        who: String,
        /// The target.
        target: String,
    },
}

impl Denied {
    /// The MySQL error code for the client: 1045 for the login, 1044 for a database.
    #[must_use]
    pub fn code(&self) -> (u16, [u8; 5]) {
        match self {
            Self::NoRule { .. } => (1045, *b"28000"),
            Self::Database { .. } => (1044, *b"42000"),
        }
    }
}

/// A policy decision as recorded with the login (and logged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Decision {
    /// Whether the identity may use the target.
    pub allowed: bool,
    /// The rule that decided (index in the target's `allow` list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<usize>,
    /// The account the gateway logs in with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Decision {
    /// The decision for a grant.
    #[must_use]
    pub fn allowed(grant: &Grant<'_>) -> Self {
        Self {
            allowed: true,
            rule: Some(grant.rule),
            account: Some(grant.account.to_owned()),
            reason: None,
        }
    }

    /// The decision for a refusal.
    #[must_use]
    pub fn denied(denied: &Denied) -> Self {
        Self {
            allowed: false,
            rule: None,
            account: None,
            reason: Some(denied.to_string()),
        }
    }
}

impl TargetPolicy {
    /// Loads the credentials of a target's accounts; `None` for a target whose logins are
    /// relayed (no account).
    pub fn load(target: &TargetConfig) -> Result<Option<Self>, CredentialError> {
        if !target.terminates() {
            return Ok(None);
        }
        let name = target.name.get_ref();
        let accounts = target
            .all_accounts()
            .map(|(account, login)| {
                UpstreamCredential::load(name, login).map(|c| (account.to_owned(), c))
            })
            .collect::<Result<HashMap<_, _>, _>>()?;
        Ok(Some(Self {
            target: name.clone(),
            accounts,
            rules: target.allow.clone(),
        }))
    }

    /// The target's name.
    #[must_use]
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The first rule that matches `identity`, and what it grants.
    pub fn decide(&self, identity: &Identity) -> Result<Grant<'_>, Denied> {
        let matches = |rule: &AllowRule| {
            rule.groups
                .iter()
                .any(|g| g == "*" || identity.groups.iter().any(|have| have == g))
                || rule
                    .users
                    .iter()
                    .any(|u| *u == identity.name || *u == identity.subject)
        };
        let (index, rule) = self
            .rules
            .iter()
            .enumerate()
            .find(|(_, rule)| matches(rule))
            .ok_or_else(|| Denied::NoRule {
                who: who(identity),
                target: self.target.clone(),
            })?;
        // Validation guarantees the account exists.
        let (account, credential) =
            self.accounts
                .get_key_value(&rule.account)
                .ok_or_else(|| Denied::NoRule {
                    who: who(identity),
                    target: self.target.clone(),
                })?;
        Ok(Grant {
            rule: index,
            account,
            credential,
            databases: rule.databases.as_deref(),
            max_session: rule.max_session,
            target: &self.target,
        })
    }
}

impl Grant<'_> {
    /// Whether the session may use `database`.
    pub fn check_database(&self, identity: &Identity, database: &str) -> Result<(), Denied> {
        match self.databases {
            Some(allowed) if !allowed.iter().any(|d| d == database) => Err(Denied::Database {
                database: database.to_owned(),
                who: who(identity),
                target: self.target.to_owned(),
            }),
            _ => Ok(()),
        }
    }
}

/// "alice (groups devs, ops)" / "alice (no groups)".
fn who(identity: &Identity) -> String {
    if identity.groups.is_empty() {
        format!("{} (no groups)", identity.name)
    } else {
        format!("{} (groups {})", identity.name, identity.groups.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentitySource;

    fn policy(rules: &str) -> TargetPolicy {
        let text = format!(
            r#"
[listener]
addresses = ["127.0.0.1:15306"]
[[targets]]
name = "orders"
address = "198.18.0.10"
port = 3306
[targets.login]
user = "app"
password_command = ["printf", "pw"]
[targets.accounts.readonly]
user = "ro"
password_command = ["printf", "ro-pw"]
{rules}
"#
        );
        let config =
            crate::config::Config::parse(&text, std::path::Path::new("t.toml")).expect("config");
        TargetPolicy::load(&config.targets[0])
            .expect("credentials")
            .expect("terminating target")
    }

    fn identity(name: &str, groups: &[&str]) -> Identity {
        Identity {
            source: IdentitySource::Password,
            subject: name.into(),
            name: name.into(),
            issuer: None,
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    #[test]
    fn the_first_matching_rule_decides_and_nobody_else_gets_in() {
        let policy = policy(
            r#"
[[targets.allow]]
groups = ["readers"]
account = "readonly"
databases = ["orders"]
max_session = "1h"
[[targets.allow]]
groups = ["dba"]
[[targets.allow]]
users = ["carol"]
account = "readonly"
"#,
        );
        let reader = identity("alice", &["devs", "readers"]);
        let grant = policy.decide(&reader).expect("reader");
        assert_eq!((grant.rule, grant.account), (0, "readonly"));
        assert_eq!(grant.credential.user, "ro");
        assert_eq!(grant.credential.password(), b"ro-pw");
        assert_eq!(grant.max_session, Some(Duration::from_hours(1)));
        assert!(grant.check_database(&reader, "orders").is_ok());
        let denied = grant
            .check_database(&reader, "mysql")
            .expect_err("other db");
        assert_eq!(
            denied.to_string(),
            "database 'mysql' is not allowed for alice (groups devs, readers) on target 'orders'"
        );
        assert_eq!(denied.code().0, 1044);

        let dba = policy.decide(&identity("bob", &["dba"])).expect("dba");
        assert_eq!((dba.rule, dba.account), (1, "default"));
        assert!(
            dba.check_database(&identity("bob", &["dba"]), "mysql")
                .is_ok()
        );
        assert_eq!(
            policy.decide(&identity("carol", &[])).expect("carol").rule,
            2
        );
        let denied = policy
            .decide(&identity("mallory", &["devs"]))
            .expect_err("no rule");
        assert_eq!(
            denied.to_string(),
            "mallory (groups devs) may not use target 'orders'"
        );
        assert!(!Decision::denied(&denied).allowed);
    }

    #[test]
    fn a_star_rule_admits_every_identity() {
        let policy = policy("[[targets.allow]]\ngroups = [\"*\"]\n");
        assert!(policy.decide(&identity("anyone", &[])).is_ok());
    }
}
