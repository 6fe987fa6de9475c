//! Following the server's rollouts: the device asks for its assignment over mTLS, installs it
//! with every check of [`super::update`] (the server's say-so never bypasses TUF, and only an
//! assignment the operator declared a rollback may install an older version), and reports
//! each step and the outcome.

use serde_json::json;

use super::{InstallOptions, Installed, UpdateOptions, device_client, install, update_reporting};
use crate::client::EstClient;
use crate::error::AgentError;
use crate::state::StateDir;

/// Sends one rollout's reports for this device.
pub(crate) struct Reporter {
    client: EstClient,
    rollout: String,
}

impl Reporter {
    /// A progress step: worth telling, never worth stopping for (the outcome is what counts,
    /// and the server takes a repeated or late step as a no-op).
    pub(crate) async fn progress(&self, status: &str) {
        if let Err(e) = self.report(status, None, None).await {
            tracing::warn!(error = %e, status, "progress report not delivered");
        }
    }

    pub(crate) async fn report(
        &self,
        status: &str,
        reason: Option<&str>,
        version: Option<&str>,
    ) -> Result<(), AgentError> {
        let body = json!({"rollout_id": self.rollout, "status": status, "reason": reason, "version": version});
        self.client
            .post_json("/api/v1/device/update-reports", &body)
            .await
    }
}

/// What following the assignment came to.
#[derive(Debug)]
pub enum Followed {
    /// No update is assigned to this device.
    Nothing,
    /// The assigned release is installed (now, or already) and reported.
    Installed(Installed),
    /// The update was refused or failed, and reported so; nothing new is installed.
    Refused(AgentError),
}

/// Ask for this device's assignment and carry it out. Errors are those that kept the outcome
/// from being decided or reported (the server unreachable): retry later.
pub async fn follow_assignment(
    state: &StateDir,
    install_options: &InstallOptions,
) -> Result<Followed, AgentError> {
    let client = device_client(state)?;
    let Some(answer) = client
        .get_optional_json("/api/v1/device/assignment")
        .await?
    else {
        return Ok(Followed::Nothing);
    };
    let (Some(rollout), Some(target)) = (answer["rollout_id"].as_str(), answer["target"].as_str())
    else {
        return Err(AgentError::BadAnswer(
            "assignment answer lacks a field".into(),
        ));
    };
    let reporter = Reporter {
        client,
        rollout: rollout.to_owned(),
    };
    // Installed before the outcome could be reported (a crash, a lost answer): report it.
    if let Some(current) = install::installed(install_options).await?
        && current.target == target
    {
        reporter
            .report("installed", None, current.version.as_deref())
            .await?;
        return Ok(Followed::Installed(current));
    }
    reporter.progress("downloading").await;
    let options = UpdateOptions {
        target: target.to_owned(),
        install: install_options.clone(),
        allow_downgrade: answer["rollback"].as_bool() == Some(true),
    };
    match update_reporting(state, &options, Some(&reporter)).await {
        Ok(installed) => {
            let version = installed
                .version
                .clone()
                .unwrap_or_else(|| target.to_owned());
            reporter.report("installed", None, Some(&version)).await?;
            Ok(Followed::Installed(installed))
        }
        Err(e) if e.is_transient() => Err(e),
        Err(e) => {
            let status = match e {
                AgentError::UpdateRefused { .. }
                | AgentError::NoSuchTarget(_)
                | AgentError::Downgrade { .. } => "rejected",
                _ => "failed",
            };
            let reason = format!("{} (exit {}): {e}", e.kind(), e.exit_code());
            let reason: String = reason.chars().take(500).collect();
            reporter.report(status, Some(&reason), None).await?;
            Ok(Followed::Refused(e))
        }
    }
}
