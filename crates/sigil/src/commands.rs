//! What each subcommand does.

use anyhow::{Context, Result};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::{Value, json};

use sigil_ca::{CaNames, KeyAlgorithm};
use sigil_server::MosquittoSettings;
use sigil_server::{DataDir, PassphraseSource, ServerConfig};

use crate::cli::{
    AdminCommand, CertCommand, Cli, ClientArgs, Command, DeviceCommand, InitArgs, OperatorCommand,
    ProductCommand, ServeArgs, TokenCommand,
};
use crate::client::ApiClient;

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init(args) => init(args),
        Command::Serve(args) => serve(*args).await,
        Command::Product(cmd) => product(cmd).await,
        Command::Device(cmd) => device(cmd).await,
        Command::Cert(cmd) => cert(cmd).await,
        Command::Audit(cmd) => crate::audit::audit(cmd).await,
        Command::Evidence(cmd) => crate::audit::evidence(cmd).await,
        Command::Policy(cmd) => crate::policy::policy(cmd).await,
        Command::Compliance(cmd) => crate::compliance::compliance(cmd).await,
        Command::Release(cmd) => crate::release::release(cmd).await,
        Command::Rollout(cmd) => crate::rollout::rollout(cmd).await,
        Command::Vulndb(cmd) => crate::vuln::vulndb(cmd).await,
        Command::Sbom(cmd) => crate::vuln::sbom(cmd).await,
        Command::Vuln(cmd) => crate::vuln::vuln(cmd).await,
        Command::Vex(cmd) => crate::vuln::vex(cmd).await,
        Command::Case(cmd) => crate::cases::case(cmd).await,
        Command::Site(cmd) => crate::cases::site(cmd).await,
        Command::Disclosure(cmd) => crate::disclosure::disclosure(cmd).await,
        Command::Monitor(cmd) => crate::monitor::monitor(cmd).await,
        Command::Alarm(cmd) => crate::monitor::alarm(cmd).await,
        Command::Login(args) => crate::session::login(args).await,
        Command::Logout { client } => crate::session::logout(client).await,
        Command::Operator(cmd) => operator(cmd).await,
        Command::Token(cmd) => token(cmd).await,
        Command::Admin(AdminCommand::Recover {
            data_dir,
            database_url,
            reason,
        }) => {
            let dir = DataDir::new(&data_dir);
            sigil_server::recovery::recover_admin_token(
                &dir,
                database_url.as_deref(),
                &reason,
                time::OffsetDateTime::now_utc(),
            )
            .await?;
            println!(
                "Wrote a new admin API token to {} (mode 0600); the recovery is in the audit log. Revoke it once an administrator account exists.",
                dir.admin_token_path().display()
            );
            Ok(())
        }
    }
}

async fn operator(cmd: OperatorCommand) -> Result<()> {
    match cmd {
        OperatorCommand::Create {
            username,
            role,
            totp,
            client,
        } => {
            // Never on the command line, where other users could read it.
            let password = match std::env::var("SIGIL_OPERATOR_PASSWORD") {
                Ok(p) => p,
                Err(_) => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .context("reading the password from standard input")?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            let api = ApiClient::from_args(&client)?;
            let created = api
                .post(
                    "/api/v1/operators",
                    &json!({"username": username, "role": role, "password": password, "totp": totp}),
                )
                .await?;
            print_record(&client, &created)
        }
        OperatorCommand::List { client } => {
            let api = ApiClient::from_args(&client)?;
            let list = api.get("/api/v1/operators").await?;
            print(
                &client,
                &list,
                &[
                    ("id", "ID"),
                    ("username", "USERNAME"),
                    ("role", "ROLE"),
                    ("totp", "TOTP"),
                    ("locked_until", "LOCKED UNTIL"),
                ],
                true,
            )
        }
    }
}

async fn token(cmd: TokenCommand) -> Result<()> {
    match cmd {
        TokenCommand::Create {
            name,
            role,
            scopes,
            days,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let created = api
                .post(
                    "/api/v1/tokens",
                    &json!({"name": name, "role": role, "scopes": scopes,
                            "expires_in_seconds": days.saturating_mul(86_400)}),
                )
                .await?;
            print_record(&client, &created)
        }
        TokenCommand::List { client } => {
            let api = ApiClient::from_args(&client)?;
            let list = api.get("/api/v1/tokens").await?;
            print(
                &client,
                &list,
                &[
                    ("id", "ID"),
                    ("name", "NAME"),
                    ("role", "ROLE"),
                    ("scopes", "SCOPES"),
                    ("expires_at", "EXPIRES"),
                    ("revoked_at", "REVOKED"),
                ],
                true,
            )
        }
        TokenCommand::Revoke { id, client } => {
            let api = ApiClient::from_args(&client)?;
            api.post(&format!("/api/v1/tokens/{id}/revoke"), &json!({}))
                .await?;
            println!("revoked token {id}");
            Ok(())
        }
    }
}

fn init(args: InitArgs) -> Result<()> {
    let algorithm: KeyAlgorithm = args.algorithm.parse()?;
    let dir = DataDir::new(&args.data_dir);
    let names = CaNames {
        organization: args.organization.clone(),
        root_common_name: format!("{} Root CA", args.organization),
        issuing_common_name: format!("{} Issuing CA", args.organization),
    };
    let source = dir.initialise(algorithm, &names, time::OffsetDateTime::now_utc())?;
    println!(
        "Created {algorithm} CA hierarchy in {}",
        dir.root().display()
    );
    println!("  root CA:    {}", dir.root_cert_path().display());
    println!("  issuing CA: {}", dir.issuing_cert_path().display());
    if source == PassphraseSource::File {
        eprintln!(
            "WARNING: SIGIL_CA_PASSPHRASE was not set; the CA key passphrase was generated into {}/ca-passphrase.",
            dir.root().display()
        );
        eprintln!(
            "WARNING: this is a development setting. In production set SIGIL_CA_PASSPHRASE from a secret store."
        );
    }
    Ok(())
}

fn mosquitto_settings(target: &str, args: &ServeArgs) -> Result<MosquittoSettings> {
    let (host, port) = target
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        .filter(|(h, _)| !h.is_empty())
        .ok_or_else(|| anyhow::anyhow!("--mosquitto: expected HOST:PORT, got `{target}`"))?;
    let ca = args.mosquitto_ca.clone().ok_or_else(|| {
        anyhow::anyhow!("--mosquitto needs --mosquitto-ca (the connection is TLS only)")
    })?;
    let password_file = args
        .mosquitto_password_file
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("--mosquitto needs --mosquitto-password-file"))?;
    let password = std::fs::read_to_string(password_file)
        .with_context(|| format!("reading {}", password_file.display()))?
        .trim_end_matches(['\r', '\n'])
        .to_owned();
    let mut settings = MosquittoSettings::new(host, port, ca);
    settings.username = args.mosquitto_user.clone();
    settings.password = password;
    settings.crl_file = args.mosquitto_crl_file.clone();
    settings.pid_file = args.mosquitto_pid_file.clone();
    Ok(settings)
}

async fn serve(args: ServeArgs) -> Result<()> {
    let mut config = ServerConfig::new(&args.data_dir);
    if let Some(target) = &args.mosquitto {
        config.mosquitto = Some(mosquitto_settings(target, &args)?);
    }
    if let Some(url) = &args.nats {
        let mut nats = sigil_nats::QueueConfig::new(url);
        nats.stream = args.nats_stream.clone();
        config.nats = Some(nats);
    }
    config.compliance_webhook = args.compliance_webhook.clone();
    config.vuln_feeds = args.vuln_feeds.clone();
    config.vuln_feed_interval = std::time::Duration::from_secs(args.vuln_feed_interval * 60);
    config.compliance_interval = Some(std::time::Duration::from_secs(
        args.compliance_interval * 60,
    ));
    config.database_url = args.database_url;
    config.listen = args.listen;
    config.pki_listen = args.pki_listen;
    config.pki_base_url = args.pki_base_url;
    config.tls_names = args.tls_names;
    config.trust_domain = args.trust_domain;
    config.algorithm = args.algorithm.parse()?;
    config.ocsp_signing = args.ocsp_signer.parse()?;
    config.enrollment_profile = args.enrollment_profile;
    config.crl_validity = time::Duration::hours(i64::from(args.crl_validity_hours));
    config.updates.max_artefact_bytes = args.max_artefact_mib << 20;
    config.updates.timestamp_expiry =
        std::time::Duration::from_secs(args.update_timestamp_hours * 3600);
    config.failures_per_window = args.failed_auth_limit;
    config.superseded_overlap = args
        .superseded_overlap_seconds
        .map(|s| time::Duration::seconds(i64::from(s)));
    let handle = sigil_server::start(config, sigil_server::system_clock()).await?;
    if handle.new_admin_token.is_some() {
        eprintln!(
            "Admin API token written to {}/admin.token (mode 0600).",
            args.data_dir.display()
        );
    }
    eprintln!(
        "API:  https://{}/api/v1   (CA: {}/ca/root.crt)",
        handle.api_addr,
        args.data_dir.display()
    );
    eprintln!("PKI:  http://{}/ca/root.crt", handle.pki_addr);
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {
            eprintln!("shutting down");
            handle.shutdown().await;
        }
        _ = terminate() => {
            eprintln!("shutting down");
            handle.shutdown().await;
        }
    }
    Ok(())
}

async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending::<()>().await,
    }
}

async fn product(cmd: ProductCommand) -> Result<()> {
    match cmd {
        ProductCommand::Create {
            name,
            manufacturer,
            support_end,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let p = api.post("/api/v1/products", &json!({"name": name, "manufacturer": manufacturer, "support_end": support_end})).await?;
            print(
                &client,
                &p,
                &[
                    ("id", "ID"),
                    ("name", "NAME"),
                    ("manufacturer", "MANUFACTURER"),
                    ("support_end", "SUPPORT END"),
                ],
                false,
            )
        }
        ProductCommand::Declare {
            product,
            current_firmware,
            services,
            sboms,
            remediation_days,
            client,
        } => {
            let mut by_version = serde_json::Map::new();
            for sbom in &sboms {
                let (version, reference) = sbom
                    .split_once('=')
                    .with_context(|| format!("--sbom {sbom}: expected VERSION=REFERENCE"))?;
                by_version.insert(version.to_owned(), Value::String(reference.to_owned()));
            }
            let mut body = json!({"current_firmware": current_firmware,
                                  "allowed_services": services, "sboms": by_version});
            if let Some(days) = remediation_days {
                body["remediation_days"] = json!(days);
            }
            let api = ApiClient::from_args(&client)?;
            let declared = api
                .put(&format!("/api/v1/products/{product}/declaration"), &body)
                .await?;
            print_record(&client, &declared)
        }
        ProductCommand::Declaration { product, client } => {
            let api = ApiClient::from_args(&client)?;
            let declared = api
                .get(&format!("/api/v1/products/{product}/declaration"))
                .await?;
            print_record(&client, &declared)
        }
        ProductCommand::List { client } => {
            let api = ApiClient::from_args(&client)?;
            let list = api.get("/api/v1/products").await?;
            print(
                &client,
                &list,
                &[
                    ("id", "ID"),
                    ("name", "NAME"),
                    ("manufacturer", "MANUFACTURER"),
                    ("support_end", "SUPPORT END"),
                ],
                true,
            )
        }
    }
}

const DEVICE_COLUMNS: &[(&str, &str)] = &[
    ("id", "ID"),
    ("serial_number", "SERIAL"),
    ("state", "STATE"),
    ("product_id", "PRODUCT"),
    ("site", "SITE"),
    ("tags", "TAGS"),
];

async fn device(cmd: DeviceCommand) -> Result<()> {
    match cmd {
        DeviceCommand::Create {
            product,
            serial_number,
            hardware_id,
            owner,
            site,
            tags,
            firmware_version,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let body = json!({
                "product_id": product, "serial_number": serial_number, "hardware_id": hardware_id,
                "owner": owner, "site": site, "tags": tags, "firmware_version": firmware_version,
            });
            let d = api.post("/api/v1/devices", &body).await?;
            print(&client, &d, DEVICE_COLUMNS, false)
        }
        DeviceCommand::List {
            view,
            limit,
            after,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let mut query = view.query();
            query.push(format!("limit={limit}"));
            if let Some(after) = after {
                query.push(format!("after={}", urlencode(&after)));
            }
            let list = api
                .get(&format!("/api/v1/devices?{}", query.join("&")))
                .await?;
            print(&client, &list, DEVICE_COLUMNS, true)?;
            if let (false, Some(next)) =
                (client.json, list.get("next_cursor").and_then(Value::as_str))
            {
                eprintln!("more: --after {next}");
            }
            Ok(())
        }
        DeviceCommand::Updates { id, client } => crate::device::updates(&id, &client).await,
        DeviceCommand::Show { id, client } => {
            let api = ApiClient::from_args(&client)?;
            let d = api
                .get(&format!("/api/v1/devices/{}", urlencode(&id)))
                .await?;
            print_record(&client, &d)
        }
        DeviceCommand::Edit(args) => crate::device::edit(args).await,
        DeviceCommand::Import(args) => crate::device::import(args).await,
        DeviceCommand::Export(args) => crate::device::export(args).await,
        DeviceCommand::Activate { id, client } => transition(&id, "activate", &client).await,
        DeviceCommand::Suspend { id, client } => transition(&id, "suspend", &client).await,
        DeviceCommand::Resume { id, client } => transition(&id, "resume", &client).await,
        DeviceCommand::Retire { id, client } => transition(&id, "retire", &client).await,
        DeviceCommand::Token { id, ttl, client } => {
            let api = ApiClient::from_args(&client)?;
            let t = api
                .post(
                    &format!("/api/v1/devices/{}/enrollment-tokens", urlencode(&id)),
                    &json!({ "ttl_seconds": ttl }),
                )
                .await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&t)?);
            } else {
                println!("{}", t["token"].as_str().unwrap_or_default());
                eprintln!(
                    "one-time EST enrolment token for device {id}, valid until {}",
                    t["expires_at"].as_str().unwrap_or_default()
                );
            }
            Ok(())
        }
        DeviceCommand::Revoke { id, reason, client } => {
            let api = ApiClient::from_args(&client)?;
            let r = api
                .post(
                    &format!("/api/v1/devices/{}/revoke", urlencode(&id)),
                    &json!({ "reason": reason }),
                )
                .await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                let serials: Vec<&str> = r["revoked"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                println!(
                    "revoked {} certificate(s) of device {id} ({}): {}",
                    serials.len(),
                    r["reason"].as_str().unwrap_or_default(),
                    serials.join(", ")
                );
                match r["crl_number"].as_u64() {
                    Some(n) => println!("published CRL number {n}"),
                    None => eprintln!(
                        "warning: the CRL could not be re-signed yet; the server retries within a minute"
                    ),
                }
            }
            Ok(())
        }
    }
}

async fn transition(id: &str, action: &str, client: &ClientArgs) -> Result<()> {
    let api = ApiClient::from_args(client)?;
    let d = api
        .post(
            &format!("/api/v1/devices/{}/{action}", urlencode(id)),
            &json!({}),
        )
        .await?;
    print(client, &d, DEVICE_COLUMNS, false)
}

const CERT_COLUMNS: &[(&str, &str)] = &[
    ("serial", "SERIAL"),
    ("device_id", "DEVICE"),
    ("status", "STATUS"),
    ("profile", "PROFILE"),
    ("not_after", "NOT AFTER"),
];

/// Write an issued certificate (and its chain) where asked, or print it.
fn write_issued(
    issued: &Value,
    out: Option<&std::path::Path>,
    chain_out: Option<&std::path::Path>,
    json: bool,
) -> Result<()> {
    let field = |name: &str| issued.get(name).and_then(Value::as_str).unwrap_or_default();
    if let Some(path) = chain_out {
        std::fs::write(path, field("chain"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    match out {
        Some(path) => {
            std::fs::write(path, field("certificate"))
                .with_context(|| format!("writing {}", path.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(issued)?);
            } else {
                println!(
                    "issued certificate {} -> {}",
                    field("serial"),
                    path.display()
                );
            }
        }
        None if json => println!("{}", serde_json::to_string_pretty(issued)?),
        None => print!("{}", field("certificate")),
    }
    Ok(())
}

async fn cert(cmd: CertCommand) -> Result<()> {
    match cmd {
        CertCommand::Issue {
            device,
            csr,
            profile,
            out,
            chain_out,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let csr_pem = std::fs::read_to_string(&csr)
                .with_context(|| format!("reading CSR {}", csr.display()))?;
            let mut body = json!({ "csr": csr_pem });
            if let Some(p) = profile {
                body["profile"] = json!(p);
            }
            let issued = api
                .post(
                    &format!("/api/v1/devices/{}/certificates", urlencode(&device)),
                    &body,
                )
                .await?;
            write_issued(&issued, out.as_deref(), chain_out.as_deref(), client.json)
        }
        CertCommand::IssueService {
            dns,
            ip,
            csr,
            days,
            out,
            chain_out,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let csr_pem = std::fs::read_to_string(&csr)
                .with_context(|| format!("reading CSR {}", csr.display()))?;
            let body = json!({"csr": csr_pem, "dns_names": dns, "ip_addresses": ip, "validity_days": days});
            let issued = api.post("/api/v1/services/certificates", &body).await?;
            write_issued(&issued, out.as_deref(), chain_out.as_deref(), client.json)
        }
        CertCommand::Foreign(cmd) => crate::foreign::foreign(cmd).await,
        CertCommand::List {
            device,
            limit,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let mut path = format!("/api/v1/certificates?limit={limit}");
            if let Some(d) = device {
                path.push_str(&format!("&device={}", urlencode(&d)));
            }
            let list = api.get(&path).await?;
            print(&client, &list, CERT_COLUMNS, true)
        }
        CertCommand::Show {
            serial,
            pem,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let c = api
                .get(&format!("/api/v1/certificates/{}", urlencode(&serial)))
                .await?;
            if pem {
                print!(
                    "{}",
                    c.get("certificate")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                );
                Ok(())
            } else {
                print_record(&client, &c)
            }
        }
    }
}

/// Print an object or a list of objects (`{"items": [...]}`) as a table, or as JSON.
pub(crate) fn print(
    client: &ClientArgs,
    value: &Value,
    columns: &[(&str, &str)],
    is_list: bool,
) -> Result<()> {
    if client.json {
        println!("{}", serde_json::to_string_pretty(value)?);
        return Ok(());
    }
    let rows: Vec<&Value> = if is_list {
        value
            .get("items")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default()
    } else {
        vec![value]
    };
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(columns.iter().map(|(_, h)| *h));
    for row in rows {
        table.add_row(columns.iter().map(|(k, _)| cell(row.get(*k))));
    }
    println!("{table}");
    Ok(())
}

pub(crate) fn print_record(client: &ClientArgs, value: &Value) -> Result<()> {
    if client.json {
        println!("{}", serde_json::to_string_pretty(value)?);
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    if let Some(obj) = value.as_object() {
        for (k, v) in obj {
            if k == "certificate" {
                continue;
            }
            table.add_row(vec![k.clone(), cell(Some(v))]);
        }
    }
    println!("{table}");
    Ok(())
}

pub(crate) fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| cell(Some(x)))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

/// Percent-encode a path or query component (RFC 3986 unreserved characters pass through).
pub(crate) fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
