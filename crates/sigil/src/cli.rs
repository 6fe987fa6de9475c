//! Command-line definitions. Each flag is defined once, here; help text comes from it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "sigil",
    version,
    about = "IoT device identity and compliance platform"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a data directory with a new two-tier CA hierarchy.
    Init(InitArgs),
    /// Run the server (initialising the data directory on first start).
    Serve(Box<ServeArgs>),
    /// Manage products.
    #[command(subcommand)]
    Product(ProductCommand),
    /// Manage devices and their lifecycle.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Issue and inspect device certificates.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Read, checkpoint, export and verify the tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Export and verify evidence bundles for auditors.
    #[command(subcommand)]
    Evidence(EvidenceCommand),
    /// Check access policies (Cedar) offline; apply, list and roll back the server's.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Compliance posture reports for auditors.
    #[command(subcommand)]
    Compliance(ComplianceCommand),
    /// Software releases and each product's signed update channel (TUF).
    #[command(subcommand)]
    Release(crate::release::ReleaseCommand),
    /// Staged rollouts of a release to a product's devices.
    #[command(subcommand)]
    Rollout(crate::rollout::RolloutCommand),
    /// Vulnerability feeds: OSV records and archives, the KEV catalogue, EPSS scores.
    #[command(subcommand)]
    Vulndb(crate::vuln::VulndbCommand),
    /// Product SBOMs (CycloneDX, SPDX) in and out.
    #[command(subcommand)]
    Sbom(crate::vuln::SbomCommand),
    /// Vulnerability findings per product, component and firmware version.
    #[command(subcommand)]
    Vuln(crate::vuln::VulnCommand),
    /// VEX statements (OpenVEX, CycloneDX VEX, CSAF): a vulnerability's status in a component.
    #[command(subcommand)]
    Vex(crate::vuln::VexCommand),
    /// CRA Article 14 cases: actively exploited vulnerabilities, their three reporting
    /// deadlines, drafts of the reports, and what was submitted.
    #[command(subcommand)]
    Case(crate::cases::CaseCommand),
    /// Sites and the country each is in (reports name the member states devices are in).
    #[command(subcommand)]
    Site(crate::cases::SiteCommand),
    /// Coordinated vulnerability disclosure: each product's security.txt policy, and the
    /// reports received (acknowledged, accepted as advisories, rejected).
    #[command(subcommand)]
    Disclosure(crate::disclosure::DisclosureCommand),
    /// Behaviour monitoring: the detector's status, security profiles, quarantine.
    #[command(subcommand)]
    Monitor(crate::monitor::MonitorCommand),
    /// Alarms the detector raised: list, explain, decide.
    #[command(subcommand)]
    Alarm(crate::monitor::AlarmCommand),
    /// Log in as a person (password and TOTP code): the CLI keeps the session, so no
    /// long-lived token is needed on this machine.
    Login(crate::session::LoginArgs),
    /// End the session `sigil login` opened.
    Logout {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Manage operator accounts (people).
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// Manage scoped, expiring API tokens (automation).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Host administration, run on the server's machine with the server stopped.
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Recover a lost administrator: revoke any live bootstrap token and write a new one to
    /// DATA_DIR/admin.token (mode 0600), recorded in the audit log as `admin.recovered`. The
    /// server must be stopped (this takes the same lock). Revoke the token again once an
    /// administrator account exists.
    Recover {
        #[arg(long, default_value = "./sigil-data", env = "SIGIL_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long, env = "SIGIL_DATABASE_URL")]
        database_url: Option<String>,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ComplianceCommand {
    /// Write the fleet's posture against a framework: `html` (self-contained, for auditors),
    /// `json` (the API's report with the attestations), `csv` (one row per requirement and
    /// check) or `oscal` (NIST OSCAL assessment-results, plus the catalogue as a
    /// component-definition written beside it as `<out stem>.component-definition.json`).
    Report {
        /// etsi-en-303-645, nistir-8259, nist-sp-800-213a, eu-cra or eo-14028.
        #[arg(long)]
        framework: String,
        #[arg(long, default_value = "html")]
        format: String,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Create an account. The password is read from SIGIL_OPERATOR_PASSWORD or standard input;
    /// the TOTP seed (always given to admin and security-officer) is printed once.
    Create {
        #[arg(long)]
        username: String,
        /// admin, security-officer, provisioner, operator, auditor or broker.
        #[arg(long)]
        role: String,
        /// Give a role that does not require it a TOTP second factor too.
        #[arg(long)]
        totp: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List accounts.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: String,
        /// inventory, enrollment, audit, broker, trust or * (repeatable).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Lifetime in days.
        #[arg(long, default_value_t = 90)]
        days: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a token at once.
    Revoke {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a Cedar policy file against Sigil's schema.
    Validate { file: PathBuf },
    /// Run every `*.json` test suite in DIR against a policy file (default: Sigil's defaults).
    Test {
        dir: PathBuf,
        #[arg(long)]
        policies: Option<PathBuf>,
    },
    /// Print Sigil's schema or default policies.
    Show {
        /// `schema` or `defaults`.
        what: String,
    },
    /// Apply a policy file on the server as a new version (validated, audited).
    Apply {
        file: PathBuf,
        /// Why (kept with the version and in the audit log).
        #[arg(long)]
        comment: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Restore an earlier version (0: the built-in defaults), as a new version.
    Rollback {
        version: i64,
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The server's policy versions, newest first.
    Versions {
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Args)]
pub struct InitArgs {
    #[arg(long, default_value = "./sigil-data", env = "SIGIL_DATA_DIR")]
    pub data_dir: PathBuf,
    /// CA key algorithm: ecdsa-p256, ecdsa-p384, ed25519 or rsa-3072.
    #[arg(long, default_value = "ecdsa-p256")]
    pub algorithm: String,
    /// Organisation name in the CA certificates.
    #[arg(long, default_value = "Sigil")]
    pub organization: String,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long, default_value = "./sigil-data", env = "SIGIL_DATA_DIR")]
    pub data_dir: PathBuf,
    /// HTTPS API listener.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Plain-HTTP public PKI listener (CA certificates, CRL, OCSP, audit checkpoints).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub pki_listen: SocketAddr,
    /// Database URL (`postgres://...` or `sqlite://PATH`); default: SQLite in the data directory.
    #[arg(long, env = "SIGIL_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Base URL that certificates point relying parties to for OCSP, CRL and caIssuers.
    #[arg(long)]
    pub pki_base_url: Option<String>,
    /// Extra DNS name for the API certificate (repeatable).
    #[arg(long = "tls-name")]
    pub tls_names: Vec<String>,
    /// Name device identities `spiffe://<DOMAIN>/device/<id>` instead of `urn:sigil:device:<id>`.
    #[arg(long)]
    pub trust_domain: Option<String>,
    /// CA key algorithm if the CA is created on this start.
    #[arg(long, default_value = "ecdsa-p256")]
    pub algorithm: String,
    /// Who signs OCSP responses: `delegated` (a short-lived responder certificate with
    /// id-kp-OCSPSigning and ocsp-nocheck, key in memory only) or `issuing-ca`.
    #[arg(long, default_value = "delegated")]
    pub ocsp_signer: String,
    /// Revoke a certificate this many seconds after re-enrolment replaced it (reason
    /// superseded). Default: it stays valid until it expires.
    #[arg(long)]
    pub superseded_overlap_seconds: Option<u32>,
    /// Certificate profile for first enrolments over EST (see `GET /api/v1/profiles`).
    #[arg(long, default_value = "device")]
    pub enrollment_profile: String,
    /// Keep this Mosquitto broker's dynamic security in step (`HOST:PORT` of a TLS listener
    /// where a dynamic-security admin user may log in).
    #[arg(long)]
    pub mosquitto: Option<String>,
    /// CA certificate(s), PEM, that the broker's TLS certificate chains to.
    #[arg(long, requires = "mosquitto")]
    pub mosquitto_ca: Option<PathBuf>,
    /// Dynamic-security user Sigil logs in as.
    #[arg(long, default_value = "sigil", requires = "mosquitto")]
    pub mosquitto_user: String,
    /// File holding that user's password (read once at start; keep it 0600).
    #[arg(long, requires = "mosquitto")]
    pub mosquitto_password_file: Option<PathBuf>,
    /// Write each new CRL here (PEM), for the broker's `crlfile`.
    #[arg(long, requires = "mosquitto")]
    pub mosquitto_crl_file: Option<PathBuf>,
    /// Carry device metrics on this NATS server's JetStream (`nats://HOST:PORT`): a durable
    /// stream that several Sigil instances share. Without it, metrics stay in process.
    #[arg(long)]
    pub nats: Option<String>,
    /// The JetStream stream (and subject prefix `sigil.metrics.<device>`) to use.
    #[arg(long, default_value = "SIGIL_METRICS", requires = "nats")]
    pub nats_stream: String,
    /// POST a JSON alert here when a compliance requirement gets worse (https; http only to a
    /// loopback address).
    #[arg(long)]
    pub compliance_webhook: Option<String>,
    /// Fetch and import this vulnerability feed on a schedule (repeat): an OSV archive or
    /// record, CISA's KEV catalogue, FIRST's EPSS scores (gzip'd or not); https, or http to a
    /// loopback mirror.
    #[arg(long = "vuln-feed")]
    pub vuln_feeds: Vec<String>,
    /// Minutes between refreshes of the feeds (1 to 10080).
    #[arg(long, default_value_t = 360, value_parser = clap::value_parser!(u64).range(1..=10080))]
    pub vuln_feed_interval: u64,
    /// Minutes between full compliance evaluations, each kept in the history (1 to 1440;
    /// results are updated on every event in between).
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=1440))]
    pub compliance_interval: u64,
    /// The broker's `pid_file`: Sigil sends it SIGHUP after each CRL so it re-reads the file.
    #[arg(long, requires = "mosquitto_crl_file")]
    pub mosquitto_pid_file: Option<PathBuf>,
    /// Hours each CRL is valid (nextUpdate; 2 to 2160). A broker checking the CRL refuses every
    /// device once it has passed, so this is how long Sigil may be down before devices are cut
    /// off; a revocation still reaches the broker at once while Sigil runs.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(2..=2160))]
    pub crl_validity_hours: u32,
    /// Largest artefact (firmware image, SBOM) an upload may be, in MiB (1 to 65536).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub max_artefact_mib: u64,
    /// Hours each update timestamp is valid (1 to 168, not beyond the snapshot's 7 days).
    /// Devices refuse an expired one (freeze protection), so this is how long Sigil may be
    /// down before devices stop accepting updates; it is re-signed at half its life.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..=168))]
    pub update_timestamp_hours: u64,
    /// Failed authentications from one address recorded one by one per minute; past that they
    /// are answered 429 and summarised in one audit entry per address and minute.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub failed_auth_limit: u64,
}

/// How the CLI reaches a running server.
#[derive(Debug, Args, Clone)]
pub struct ClientArgs {
    /// API base URL.
    #[arg(long, env = "SIGIL_SERVER", global = true)]
    pub server: Option<String>,
    /// API token (default: the session `sigil login` keeps for this server, else
    /// DATA_DIR/admin.token).
    #[arg(long, env = "SIGIL_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) that the server's TLS certificate chains to (default: DATA_DIR/ca/root.crt).
    #[arg(long, env = "SIGIL_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
    /// Local data directory to find the token and CA file in.
    #[arg(
        long,
        env = "SIGIL_DATA_DIR",
        global = true,
        default_value = "./sigil-data"
    )]
    pub data_dir: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ProductCommand {
    /// Register a product.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        manufacturer: String,
        /// Last day of declared security support, YYYY-MM-DD.
        #[arg(long)]
        support_end: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List products.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Declare what the product's maker commits to, for compliance (replaces the previous
    /// declaration; every version is in the audit log).
    Declare {
        product: String,
        /// A firmware version that is current (repeatable); releases published through Sigil
        /// take its place.
        #[arg(long = "current-firmware", required = true)]
        current_firmware: Vec<String>,
        /// A service a device may expose, `tcp/PORT` or `udp/PORT` (repeatable).
        #[arg(long = "service")]
        services: Vec<String>,
        /// The SBOM of a firmware version, `VERSION=REFERENCE` (repeatable).
        #[arg(long = "sbom")]
        sboms: Vec<String>,
        /// Days a device may go without a security release once it is published.
        #[arg(long)]
        remediation_days: Option<u32>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show what the product's maker declared.
    Declaration {
        product: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Register a device.
    Create {
        #[arg(long)]
        product: String,
        #[arg(long = "serial")]
        serial_number: String,
        #[arg(long)]
        hardware_id: Option<String>,
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        site: Option<String>,
        /// Tag (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        #[arg(long = "firmware")]
        firmware_version: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List devices: filtered, searched, sorted, a page at a time.
    List {
        #[command(flatten)]
        view: crate::device::ViewArgs,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        after: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change a device's owner, site, tags or hardware id (audited with before and after).
    Edit(crate::device::EditArgs),
    /// Register devices from a CSV file: all of them, or with any problem none.
    Import(crate::device::ImportArgs),
    /// Write a filtered view of the inventory as CSV.
    Export(crate::device::ExportArgs),
    /// A device's firmware and the rollouts it is part of, newest first.
    Updates {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one device.
    Show {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Put a provisioned device into service.
    Activate {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Suspend an active device.
    Suspend {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Resume a suspended device.
    Resume {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Retire a device (terminal); its certificates are revoked (cessationOfOperation).
    Retire {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create a one-time EST enrolment token for a device (printed once).
    Token {
        id: String,
        /// Lifetime in seconds (60 to 2592000).
        #[arg(long, default_value_t = 86_400)]
        ttl: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke every valid certificate of a device; the CRL is re-signed at once.
    Revoke {
        id: String,
        /// RFC 5280 reason: key-compromise, affiliation-changed, superseded,
        /// cessation-of-operation, privilege-withdrawn or unspecified.
        #[arg(long, default_value = "unspecified")]
        reason: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Issue a device certificate from a PEM CSR.
    Issue {
        #[arg(long)]
        device: String,
        /// CSR file (PEM), e.g. from `openssl req -new`.
        #[arg(long)]
        csr: PathBuf,
        #[arg(long)]
        profile: Option<String>,
        /// Write the certificate here (PEM) instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write the CA chain here (PEM).
        #[arg(long)]
        chain_out: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Issue a TLS server certificate (serverAuth) for one of the deployment's services, such
    /// as the MQTT broker devices connect to, from a PEM CSR made where its key lives.
    IssueService {
        /// DNS name (repeatable; the first is the subject CN).
        #[arg(long)]
        dns: Vec<String>,
        /// IP address (repeatable).
        #[arg(long)]
        ip: Vec<String>,
        #[arg(long)]
        csr: PathBuf,
        /// Validity in days (1 to 398).
        #[arg(long, default_value_t = 90)]
        days: u32,
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write the CA chain here (PEM).
        #[arg(long)]
        chain_out: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List certificates.
    List {
        #[arg(long)]
        device: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one certificate.
    Show {
        serial: String,
        /// Print only the PEM certificate.
        #[arg(long)]
        pem: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Certificates another CA issued to a device, tracked for expiry and never trusted.
    #[command(subcommand)]
    Foreign(crate::foreign::ForeignCommand),
}

/// Filters shared by `audit tail` and `audit search`.
#[derive(Debug, Args)]
pub struct AuditFilter {
    /// Entries at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Entries before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// Actor id: an API token id, a device id, or a system component.
    #[arg(long)]
    pub actor: Option<String>,
    /// Entries about this device.
    #[arg(long)]
    pub device: Option<String>,
    /// Exact action (`device.created`) or a prefix ending in `.` (`device.`).
    #[arg(long)]
    pub action: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Show the newest entries, oldest first; with --follow, keep printing new ones.
    Tail {
        #[arg(long, short = 'n', default_value_t = 20)]
        limit: u32,
        #[arg(long, short = 'f')]
        follow: bool,
        #[command(flatten)]
        filter: AuditFilter,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Search the log, oldest first.
    Search {
        #[command(flatten)]
        filter: AuditFilter,
        /// Entries after this sequence number (paging).
        #[arg(long)]
        after: Option<u64>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print the newest signed checkpoint (or sign a fresh one with --sign). Keep it: it is what
    /// `audit verify --checkpoint` checks a later export against.
    Checkpoint {
        #[arg(long)]
        sign: bool,
        /// Write the checkpoint here instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Download the whole log with its signed checkpoints, for `sigil audit verify`.
    Export {
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Verify an export offline: every checkpoint signature, every entry, every signed root, and
    /// consistency with a checkpoint you kept. Exits non-zero naming the first broken entry.
    Verify {
        /// The export file.
        file: PathBuf,
        /// The log's verifier key (`<origin>+<id>+<key>`), or a file holding it. Pin it out of
        /// band: the server's own copy is only as trustworthy as the server.
        #[arg(long)]
        log_key: String,
        /// A checkpoint (signed note) you saved earlier, e.g. with `audit checkpoint --out`.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Write an evidence bundle (tar) for a period: audit entries with inclusion proofs, the
    /// checkpoint, CA certificates and an inventory snapshot, under a signed manifest.
    Export {
        /// Start of the period (RFC 3339); default: the beginning of the log.
        #[arg(long)]
        since: Option<String>,
        /// End of the period (RFC 3339, exclusive); default: now.
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Verify a bundle offline with the log's verifier key.
    Verify {
        file: PathBuf,
        /// The log's verifier key, or a file holding it.
        #[arg(long)]
        log_key: String,
        #[arg(long)]
        json: bool,
    },
}
