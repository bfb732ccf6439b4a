//! `COM_CHANGE_USER` after a login the gateway terminated: the client proves the new identity
//! to the gateway exactly as at login (inside TLS, against the identity table), and the
//! gateway re-authenticates its *own* account on the database with a `COM_CHANGE_USER` of its
//! own, which resets the database session (transaction, temporary tables, variables, prepared
//! statements) and switches the default database and character set as the client asked. The
//! client's credential never reaches the database.
//!
//! As on MariaDB and MySQL, a failed attempt leaves the session as it was (still the previous
//! identity), and after [`MAX_FAILED_REAUTHENTICATIONS`] failures further attempts on the
//! connection are refused outright, against password guessing.

use super::{relay::Relay, relay::RelayError, response::Outcome, terminate};
use crate::{
    identity::{Authenticator, Identity},
    policy::{Decision, Grant, TargetPolicy},
    protocol::{attributes::Attributes, change_user, handshake, packets},
    recording::{EventKind, LoginEvent, RecordedEvent},
};

/// Failed `COM_CHANGE_USER` attempts allowed per connection.
pub const MAX_FAILED_REAUTHENTICATIONS: u8 = 3;

impl Relay<'_> {
    /// Handles one `COM_CHANGE_USER` (the whole packet in `command`), answering the client and
    /// recording the outcome; `Err` only when a leg broke.
    pub(super) async fn change_user(
        &mut self,
        command: &[u8],
        outcome: &mut Outcome,
    ) -> Result<(), RelayError> {
        let Some(reauth) = self.reauthentication.as_ref() else {
            return Err(RelayError::Reauthentication(
                "no terminated login to re-authenticate against".into(),
            ));
        };
        let (identities, policy) = (reauth.identities, reauth.policy);
        let (nonce, plugin) = (reauth.nonce, reauth.plugin.clone());
        let charset = u16::from(reauth.charset);
        let session = reauth.session_id.to_string();
        let attributes = reauth.attributes.clone();
        if self.failed_reauthentications >= MAX_FAILED_REAUTHENTICATIONS {
            let message = "Tollgate: too many failed COM_CHANGE_USER attempts on this connection";
            self.refuse_client(1047, *b"08S01", message).await?;
            outcome.refused(1047, message);
            return Ok(());
        }
        let Some(request) = change_user::parse(command, reauth.client_capabilities) else {
            let message = "Tollgate: malformed COM_CHANGE_USER packet";
            self.refuse_client(1047, *b"08S01", message).await?;
            outcome.refused(1047, message);
            return Ok(());
        };

        let Some((identity, grant)) = self
            .reauthenticate_client(&request, identities, policy, outcome)
            .await?
        else {
            return Ok(());
        };
        let credential = grant.credential;

        // The database's half, with the gateway's own account.
        let answer =
            handshake::scramble(&plugin, &nonce, credential.password()).unwrap_or_default();
        let packet = change_user::build(
            &credential.user,
            &answer,
            request.database.as_deref(),
            request.charset.unwrap_or(charset),
            &plugin,
            attributes
                .map(|a| Attributes::for_database(Some(&a), &request.user, &session).encode())
                .as_deref(),
        );
        self.server.reset_sequence();
        self.server
            .write_packet(&packet)
            .await
            .map_err(RelayError::Upstream)?;
        self.server.flush().await.map_err(RelayError::Upstream)?;
        let end = terminate::upstream_authentication(&mut self.server, &nonce, credential)
            .await
            .map_err(RelayError::UpstreamProtocol)?;
        self.forward(&end).await?;
        let refused = packets::parse_err(&end);
        let error = refused
            .as_ref()
            .map(|e| (e.code, format!("database: {}", e.message)));
        if let Some(refused) = refused {
            outcome.error(refused);
        } else {
            self.grant = Some(grant);
            self.identity = Some(identity.clone());
        }
        let decision = Decision::allowed(&grant);
        self.record_change(
            &request,
            Some(&credential.user),
            Some(identity),
            Some(decision),
            error,
        )
        .await;
        Ok(())
    }

    /// The client's half of a change of user: the new identity proved inside TLS, and the
    /// policy's decision for it. `None` when refused (the client has been told, the attempt
    /// recorded).
    async fn reauthenticate_client<'p>(
        &mut self,
        request: &change_user::ChangeUser,
        identities: &Authenticator,
        policy: &'p TargetPolicy,
        outcome: &mut Outcome,
    ) -> Result<Option<(Identity, Grant<'p>)>, RelayError> {
        // The client's half, inside TLS as at login, but always through an auth switch with a
        // fresh nonce: the client's own answer in the request was computed against the login's
        // nonce, and some clients (libmysqlclient) send none and wait for one.
        let password = terminate::client_password(&mut self.client, None, None)
            .await
            .map_err(|e| RelayError::Reauthentication(e.to_string()))?;
        let identity = match identities.authenticate(&request.user, password).await {
            Ok(identity) => identity,
            Err(error) => {
                self.failed_reauthentications += 1;
                let message = format!(
                    "Access denied for user '{}' (Tollgate: {error})",
                    request.user
                );
                self.refuse_client(1045, *b"28000", &message).await?;
                outcome.refused(1045, &message);
                self.record_change(request, None, None, None, Some((1045, message)))
                    .await;
                return Ok(None);
            }
        };
        // The policy decides again for the new identity (it may get another account).
        let grant = match terminate::decide(policy, &identity, request.database.as_deref()) {
            Ok(grant) => grant,
            Err(denied) => {
                let (code, state) = denied.code();
                let message = format!(
                    "Access denied for user '{}' (Tollgate: {denied})",
                    request.user
                );
                self.refuse_client(code, state, &message).await?;
                outcome.refused(code, &message);
                let decision = Decision::denied(&denied);
                self.record_change(
                    request,
                    None,
                    Some(identity),
                    Some(decision),
                    Some((code, message)),
                )
                .await;
                return Ok(None);
            }
        };
        Ok(Some((identity, grant)))
    }

    /// Records the attempt as a `session.login` event (the new identity, or why not).
    async fn record_change(
        &self,
        request: &change_user::ChangeUser,
        upstream_user: Option<&str>,
        identity: Option<crate::identity::Identity>,
        policy: Option<Decision>,
        refused: Option<(u16, String)>,
    ) {
        tracing::info!(
            session_id = %self.session_id,
            user = %request.user,
            database = request.database.as_deref(),
            accepted = refused.is_none(),
            "change user"
        );
        self.recorder
            .record(RecordedEvent::now(
                self.session_id,
                EventKind::Login(LoginEvent {
                    user: request.user.clone(),
                    upstream_user: upstream_user.map(str::to_owned),
                    database: request.database.clone(),
                    accepted: refused.is_none(),
                    error_code: refused.as_ref().map(|r| r.0),
                    error_message: refused.map(|r| r.1),
                    client_attributes: None,
                    identity,
                    policy,
                    kernel_identity: None,
                }),
            ))
            .await;
    }
}
