//! `SIGHUP`: reload the policy and credentials without dropping live sessions.
//!
//! The configuration file is read again; when it is valid and changes nothing that needs a
//! restart (listeners, interception, the recording store and signing key, the targets' names, addresses and
//! ports — the eBPF programs know targets by position), new sessions get the new identities,
//! OIDC issuers, accounts (credentials loaded again: files, variables and commands), allow
//! rules, TLS settings and limits. Live sessions keep what they started with. A bad file is
//! rejected with a log line saying why, and the old configuration stays.

use std::{path::Path, sync::Arc};

use parking_lot::RwLock;

use crate::{config::Config, session::SessionContext};

/// The session context new connections get; replaced as a whole on reload.
#[derive(Debug, Clone)]
pub struct LiveContext(Arc<RwLock<SessionContext>>);

impl LiveContext {
    /// Starts with `ctx`.
    #[must_use]
    pub fn new(ctx: SessionContext) -> Self {
        Self(Arc::new(RwLock::new(ctx)))
    }

    /// The context for a new session.
    #[must_use]
    pub fn current(&self) -> SessionContext {
        self.0.read().clone()
    }

    /// Reads `path` again and, when it can be applied without a restart, makes it the
    /// configuration of new sessions. Returns why not otherwise (the old one stays).
    pub fn reload(&self, path: &Path) -> Result<(), String> {
        let config = Config::load(path).map_err(|e| e.to_string())?;
        let current = self.current();
        needs_no_restart(&current.config, &config)?;
        let logins = crate::server::login_context(&config).map_err(|e| e.to_string())?;
        let mut ctx = current;
        ctx.config = Arc::new(config);
        ctx.logins = logins;
        *self.0.write() = ctx;
        Ok(())
    }
}

/// Fails when `new` changes something only a restart can apply.
fn needs_no_restart(old: &Config, new: &Config) -> Result<(), String> {
    let addresses = |c: &Config| {
        c.listener
            .addresses
            .iter()
            .map(|a| *a.get_ref())
            .collect::<Vec<_>>()
    };
    if addresses(old) != addresses(new) {
        return Err("listener.addresses changed: restart the gateway to apply".into());
    }
    if old.interception.mode != new.interception.mode
        || old.interception.cgroup != new.interception.cgroup
    {
        return Err("interception changed: restart the gateway to apply".into());
    }
    if old.recording.store != new.recording.store {
        return Err("recording.store changed: restart the gateway to apply".into());
    }
    if old.recording.signing_key != new.recording.signing_key {
        return Err("recording.signing_key changed: restart the gateway to apply".into());
    }
    if old.admin != new.admin {
        return Err("[admin] changed: restart the gateway to apply".into());
    }
    let targets = |c: &Config| {
        c.targets
            .iter()
            .map(|t| {
                (
                    t.name.get_ref().clone(),
                    t.address,
                    *t.port.get_ref(),
                    t.upstream.as_ref().map(|u| u.get_ref().clone()),
                )
            })
            .collect::<Vec<_>>()
    };
    if targets(old) != targets(new) {
        return Err(
            "the targets' names, addresses, ports or upstreams changed: restart the gateway to \
             apply"
                .into(),
        );
    }
    Ok(())
}

/// Reloads on every `SIGHUP` until the process stops; each outcome is one log line.
pub async fn on_sighup(live: LiveContext, path: std::path::PathBuf) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot install the SIGHUP handler; configuration reload is off");
        return;
    };
    while hangups.recv().await.is_some() {
        let path_for_load = path.clone();
        let live_for_load = live.clone();
        // Loading may run a password command and read files: off the async threads.
        let outcome =
            tokio::task::spawn_blocking(move || live_for_load.reload(&path_for_load)).await;
        match outcome {
            Ok(Ok(())) => tracing::info!(
                config = %path.display(),
                "configuration reloaded; new sessions use it, live sessions keep theirs"
            ),
            Ok(Err(reason)) => tracing::error!(
                config = %path.display(),
                "configuration reload rejected, keeping the running one: {reason}"
            ),
            Err(error) => tracing::error!(%error, "configuration reload failed"),
        }
    }
}
