//! `sigil rollout`: staged rollouts of a release to a product's devices.

use anyhow::{Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::cli::ClientArgs;
use crate::client::ApiClient;
use crate::commands::print;

const ROLLOUT_COLUMNS: &[(&str, &str)] = &[
    ("id", "ID"),
    ("release", "RELEASE"),
    ("state", "STATE"),
    ("current_group", "GROUP"),
    ("devices", "DEVICES"),
    ("reason", "REASON"),
];

const GROUP_COLUMNS: &[(&str, &str)] = &[
    ("share", "SHARE"),
    ("reach", "REACH"),
    ("assigned", "ASSIGNED"),
    ("in_flight", "IN FLIGHT"),
    ("installed", "INSTALLED"),
    ("failed", "FAILED"),
    ("rejected", "REJECTED"),
    ("timed_out", "TIMED OUT"),
];

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Roll a published release out to a product's devices, group by group.
    Create {
        #[arg(long)]
        product: String,
        /// The release's version.
        #[arg(long)]
        release: String,
        /// Which devices: `all`, or comma-separated `site=S`, `tag=T`, `state=S` (repeatable),
        /// `device=ID` (repeatable). Default: every provisioned or active device.
        #[arg(long, default_value = "all")]
        devices: String,
        /// Cumulative shares of the matching devices, e.g. `1%,10%,50%,100%`.
        #[arg(long, default_value = "100%")]
        groups: String,
        /// A group advances when this share of it installed.
        #[arg(long, default_value = "95%")]
        success_threshold: String,
        /// The rollout halts when failures, rejections or timeouts (each apart) reach this share.
        #[arg(long, default_value = "5%")]
        error_threshold: String,
        /// Reports of one failure kind needed before its share is judged.
        #[arg(long, default_value_t = 3)]
        min_sample: u32,
        /// Wait for `sigil rollout approve` between groups.
        #[arg(long)]
        approval: bool,
        /// Daily maintenance window in UTC, `HH:MM-HH:MM`.
        #[arg(long)]
        window: Option<String>,
        /// New assignments per minute at most, e.g. `100/min` or `100`.
        #[arg(long)]
        rate: Option<String>,
        /// Seconds a device may take to report an outcome before it counts as timed out.
        #[arg(long, default_value_t = 3600)]
        timeout_seconds: u64,
        /// Ship a release older than the product's newest (needs rollout.rollback and a
        /// second factor).
        #[arg(long)]
        rollback: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A product's rollouts.
    List {
        #[arg(long)]
        product: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A rollout and its group progress.
    Show {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stop assigning devices (those under way finish).
    Pause(ActionArgs),
    /// Continue a paused or halted rollout.
    Resume(ActionArgs),
    /// Let a rollout that waits for approval go on to its next group.
    Approve(ActionArgs),
    /// End a rollout for good; devices not started yet are no longer told to update.
    Stop(ActionArgs),
    /// Assign again the devices that failed, rejected the update or timed out.
    RetryFailed(ActionArgs),
}

#[derive(Debug, clap::Args)]
pub struct ActionArgs {
    id: String,
    /// Why (kept in the rollout's reason and the audit log).
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

/// `site=S,tag=T,state=active,device=ID` into the API's selector.
fn selector(text: &str) -> Result<Value> {
    let mut selector = json!({"states": [], "devices": []});
    if text.trim() == "all" {
        return Ok(selector);
    }
    for part in text.split(',') {
        let Some((key, value)) = part.split_once('=') else {
            bail!("--devices: `{part}` is not KEY=VALUE (site, tag, state, device)");
        };
        let value = value.trim();
        match key.trim() {
            "site" | "tag" => selector[key.trim()] = json!(value),
            "state" => push(&mut selector["states"], value),
            "device" => push(&mut selector["devices"], value),
            other => bail!("--devices: unknown key `{other}` (site, tag, state, device)"),
        }
    }
    Ok(selector)
}

fn push(list: &mut Value, value: &str) {
    if let Some(items) = list.as_array_mut() {
        items.push(json!(value));
    }
}

/// `100/min` or `100`.
fn rate(text: &str) -> Result<u32> {
    let number = text.trim().trim_end_matches("/min").trim();
    match number.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("--rate: `{text}` is not N/min with N at least 1"),
    }
}

fn print_rollout(client: &ClientArgs, rollout: &Value) -> Result<()> {
    print(client, rollout, ROLLOUT_COLUMNS, false)?;
    if !client.json {
        print(
            client,
            &json!({"items": rollout["groups"]}),
            GROUP_COLUMNS,
            true,
        )?;
    }
    Ok(())
}

pub async fn rollout(cmd: RolloutCommand) -> Result<()> {
    match cmd {
        RolloutCommand::Create {
            product,
            release,
            devices,
            groups,
            success_threshold,
            error_threshold,
            min_sample,
            approval,
            window,
            rate: per_minute,
            timeout_seconds,
            rollback,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let groups: Vec<&str> = groups.split(',').map(str::trim).collect();
            let body = json!({
                "release": release, "devices": selector(&devices)?, "groups": groups,
                "success_threshold": success_threshold, "error_threshold": error_threshold,
                "min_sample": min_sample, "approval": approval, "window": window,
                "rate_per_minute": per_minute.as_deref().map(rate).transpose()?,
                "timeout_seconds": timeout_seconds, "rollback": rollback,
            });
            let created = api
                .post(&format!("/api/v1/products/{product}/rollouts"), &body)
                .await?;
            print_rollout(&client, &created)
        }
        RolloutCommand::List { product, client } => {
            let api = ApiClient::from_args(&client)?;
            let list = api
                .get(&format!("/api/v1/products/{product}/rollouts"))
                .await?;
            print(&client, &list, ROLLOUT_COLUMNS, true)
        }
        RolloutCommand::Show { id, client } => {
            let api = ApiClient::from_args(&client)?;
            let rollout = api.get(&format!("/api/v1/rollouts/{id}")).await?;
            print_rollout(&client, &rollout)
        }
        RolloutCommand::Pause(a) => act(a, "pause").await,
        RolloutCommand::Resume(a) => act(a, "resume").await,
        RolloutCommand::Approve(a) => act(a, "approve").await,
        RolloutCommand::Stop(a) => act(a, "stop").await,
        RolloutCommand::RetryFailed(a) => act(a, "retry-failed").await,
    }
}

async fn act(args: ActionArgs, action: &str) -> Result<()> {
    let api = ApiClient::from_args(&args.client)?;
    let rollout = api
        .post(
            &format!("/api/v1/rollouts/{}/actions", args.id),
            &json!({"action": action, "reason": args.reason}),
        )
        .await?;
    print_rollout(&args.client, &rollout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_selectors_and_rates_parse_or_say_why() {
        assert_eq!(
            selector("site=plant-1,tag=edge,state=active,device=a,device=b").unwrap(),
            json!({"site": "plant-1", "tag": "edge", "states": ["active"], "devices": ["a", "b"]})
        );
        assert_eq!(
            selector("all").unwrap(),
            json!({"states": [], "devices": []})
        );
        assert!(
            selector("color=red")
                .unwrap_err()
                .to_string()
                .contains("unknown key")
        );
        assert!(
            selector("site")
                .unwrap_err()
                .to_string()
                .contains("KEY=VALUE")
        );
        assert_eq!(rate("100/min").unwrap(), 100);
        assert_eq!(rate("7").unwrap(), 7);
        assert!(rate("0/min").is_err());
        assert!(rate("fast").is_err());
    }
}
