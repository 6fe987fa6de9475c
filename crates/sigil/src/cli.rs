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
    Serve(ServeArgs),
    /// Manage products.
    #[command(subcommand)]
    Product(ProductCommand),
    /// Manage devices and their lifecycle.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Issue and inspect device certificates.
    #[command(subcommand)]
    Cert(CertCommand),
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
    /// Plain-HTTP public PKI listener (CA certificates, later CRL and OCSP).
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
}

/// How the CLI reaches a running server.
#[derive(Debug, Args, Clone)]
pub struct ClientArgs {
    /// API base URL.
    #[arg(long, env = "SIGIL_SERVER", global = true)]
    pub server: Option<String>,
    /// API token (default: DATA_DIR/admin.token).
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
    /// List devices.
    List {
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        product: Option<String>,
        #[arg(long)]
        tag: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        after: Option<String>,
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
    /// Retire a device (terminal).
    Retire {
        id: String,
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
}
