//! `[admin]`: the admin listener (the web viewer of recorded sessions, and `/metrics` when
//! `[metrics]` has no listener of its own) and who may use it: auditors who sign in through
//! an `[[oidc]]` issuer, and holders of the admin bearer token.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

use super::{Invalid, OidcConfig};

/// `[admin]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Where the admin listener accepts HTTP (plain HTTP: put it on loopback or behind a TLS
    /// proxy that `oidc.public_url` names).
    pub listen: SocketAddr,
    /// The group (in the issuer's groups claim) whose members may read recordings; everyone
    /// else who signs in gets 403.
    #[serde(default)]
    pub auditor_group: Option<String>,
    /// A file (mode 0600) holding the admin bearer token: `Authorization: Bearer <token>`,
    /// or the viewer's "admin token" form. No token login when absent.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// How long a viewer sign-in lasts.
    #[serde(default = "default_session_ttl", with = "humantime_serde")]
    pub session_ttl: Duration,
    /// Sign-in through an `[[oidc]]` issuer (authorization code with PKCE).
    #[serde(default)]
    pub oidc: Option<AdminOidcConfig>,
}

/// `[admin.oidc]`: the viewer as an OpenID Connect client.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminOidcConfig {
    /// The issuer: one of the `[[oidc]]` issuers (whose `groups_claim` and `username_claim`
    /// are used).
    pub issuer: String,
    /// The viewer's client id at the issuer (the ID token's audience).
    pub client_id: String,
    /// A file (mode 0600) holding the client secret; without it the viewer is a public
    /// client (PKCE is used either way).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// The viewer's URL as browsers reach it (e.g. `https://bastion.example:9443`); the
    /// redirect URI registered at the issuer is this followed by `/oidc/callback`.
    pub public_url: String,
    /// Scopes asked for besides `openid`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
}

fn default_session_ttl() -> Duration {
    Duration::from_hours(8)
}

fn default_scopes() -> Vec<String> {
    vec!["email".to_owned(), "groups".to_owned()]
}

impl AdminOidcConfig {
    /// The redirect URI the issuer sends the browser back to.
    #[must_use]
    pub fn redirect_uri(&self) -> String {
        format!("{}/oidc/callback", self.public_url.trim_end_matches('/'))
    }
}

impl AdminConfig {
    /// Cross-field checks: some way to sign in, an auditor group for OIDC, a known issuer.
    pub(super) fn validate(&self, issuers: &[OidcConfig]) -> Result<(), Invalid> {
        if self.token_file.is_none() && self.oidc.is_none() {
            return Err(Invalid::new(
                0,
                "admin",
                "no way to sign in: set token_file, [admin.oidc], or both",
            ));
        }
        if self.session_ttl.is_zero() {
            return Err(Invalid::new(0, "admin.session_ttl", "must be above zero"));
        }
        let Some(oidc) = &self.oidc else {
            return Ok(());
        };
        if self
            .auditor_group
            .as_deref()
            .is_none_or(|g| g.trim().is_empty())
        {
            return Err(Invalid::new(
                0,
                "admin.auditor_group",
                "required with [admin.oidc]: only members of this group may read recordings",
            ));
        }
        if !issuers.iter().any(|i| i.issuer.get_ref() == &oidc.issuer) {
            return Err(Invalid::new(
                0,
                "admin.oidc.issuer",
                format!(
                    "{:?} is not one of the [[oidc]] issuers (their keys verify the ID token)",
                    oidc.issuer
                ),
            ));
        }
        if oidc.client_id.trim().is_empty() {
            return Err(Invalid::new(0, "admin.oidc.client_id", "must not be empty"));
        }
        check_public_url(&oidc.public_url)
            .map_err(|message| Invalid::new(0, "admin.oidc.public_url", message))?;
        Ok(())
    }
}

/// `https`, or `http` to a loopback host (the session cookie would cross the network in the
/// clear otherwise); no query or fragment.
fn check_public_url(text: &str) -> Result<(), String> {
    let url = openidconnect::url::Url::parse(text).map_err(|e| format!("{text:?}: {e}"))?;
    let loopback = match url.host() {
        Some(openidconnect::url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(openidconnect::url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(openidconnect::url::Host::Domain(name)) => name == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(format!(
                "{text:?} must be https (http only on a loopback address): the sign-in and the \
                 session cookie go through it"
            ));
        }
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{text:?} must not have a query or fragment"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Config;

    const BASE: &str = r#"
[listener]
addresses = ["127.0.0.1:15306"]
[recording]
store = "/tmp/tollgate-rec"
[[targets]]
name = "lab"
address = "198.18.0.0/24"
port = 3306
[[oidc]]
issuer = "https://login.example.test"
audiences = ["urn:tollgate:mysql"]
"#;

    fn parse(admin: &str) -> Result<Config, String> {
        Config::parse(&format!("{BASE}{admin}"), Path::new("tollgate.toml"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_viewer_needs_a_way_to_sign_in_and_an_auditor_group() {
        let error = parse("[admin]\nlisten = \"127.0.0.1:9443\"\n").expect_err("no sign-in");
        assert!(error.contains("admin: no way to sign in"), "{error}");
        let oidc = "[admin.oidc]\nissuer = \"https://login.example.test\"\nclient_id = \"viewer\"\n\
                    public_url = \"https://bastion.example.test:9443\"\n";
        let error =
            parse(&format!("[admin]\nlisten = \"127.0.0.1:9443\"\n{oidc}")).expect_err("no group");
        assert!(error.contains("admin.auditor_group: required"), "{error}");
        let good =
            format!("[admin]\nlisten = \"127.0.0.1:9443\"\nauditor_group = \"auditors\"\n{oidc}");
        let config = parse(&good).expect("valid");
        let admin = config.admin.expect("admin");
        assert_eq!(
            admin.oidc.expect("oidc").redirect_uri(),
            "https://bastion.example.test:9443/oidc/callback"
        );
        assert_eq!(admin.session_ttl, std::time::Duration::from_hours(8));
        let error = parse(&good.replace(
            "https://login.example.test\"\nclient",
            "https://other.test\"\nclient",
        ))
        .expect_err("unknown issuer");
        assert!(
            error.contains("admin.oidc.issuer") && error.contains("[[oidc]]"),
            "{error}"
        );
        let error = parse(&good.replace("https://bastion", "http://bastion")).expect_err("http");
        assert!(
            error.contains("admin.oidc.public_url") && error.contains("https"),
            "{error}"
        );
        let loopback = good.replace("https://bastion.example.test", "http://127.0.0.1");
        parse(&loopback).expect("http on loopback");
        parse("[admin]\nlisten = \"127.0.0.1:9443\"\ntoken_file = \"/etc/tollgate/admin-token\"\n")
            .expect("token only");
    }
}
