//! The data directory: CA material, the embedded database and the bootstrap admin token.
//!
//! ```text
//! DIR/                 0700
//!   ca/root.crt        public, PEM
//!   ca/issuing.crt     public, PEM (written last: its presence means "initialised")
//!   ca/root.key        0600, PKCS#8 encrypted under the CA passphrase
//!   ca/issuing.key     0600, PKCS#8 encrypted under the CA passphrase
//!   ca-passphrase      0600, only when SIGIL_CA_PASSPHRASE was not set (development setting)
//!   sigil.db           SQLite (when no --database-url is given)
//!   admin.token        0600, bootstrap admin API token (only its hash is in the database)
//!   audit/log.key      0600, the audit log's Ed25519 key, PKCS#8 encrypted under the CA passphrase
//!   audit/log.pub      public verifier key (`<origin>+<key id>+<base64 key>`)
//!   audit/checkpoint   the newest checkpoint the log signed; kept outside the database so that
//!                      rewriting the database cannot make the log forget what it signed
//! ```

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use time::OffsetDateTime;

use sigil_audit::LogKey;
use sigil_ca::{CaHierarchy, CaNames, IssuingCa, KeyAlgorithm, open_private_key, seal_private_key};

use crate::AuthorityError;

/// Environment variable holding the CA key passphrase in production.
pub const PASSPHRASE_ENV: &str = "SIGIL_CA_PASSPHRASE";
/// Shortest passphrase accepted from the environment.
const MIN_PASSPHRASE_LEN: usize = 16;

#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

/// Where the CA passphrase came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassphraseSource {
    Environment,
    /// Generated into `DIR/ca-passphrase`: fine for development, not for production.
    File,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn root_cert_path(&self) -> PathBuf {
        self.root.join("ca/root.crt")
    }
    pub fn issuing_cert_path(&self) -> PathBuf {
        self.root.join("ca/issuing.crt")
    }
    fn root_key_path(&self) -> PathBuf {
        self.root.join("ca/root.key")
    }
    fn issuing_key_path(&self) -> PathBuf {
        self.root.join("ca/issuing.key")
    }
    fn passphrase_path(&self) -> PathBuf {
        self.root.join("ca-passphrase")
    }
    pub fn admin_token_path(&self) -> PathBuf {
        self.root.join("admin.token")
    }
    pub fn sqlite_path(&self) -> PathBuf {
        self.root.join("sigil.db")
    }
    pub fn default_database_url(&self) -> String {
        format!("sqlite://{}", self.sqlite_path().display())
    }

    pub fn is_initialised(&self) -> bool {
        self.issuing_cert_path().exists()
    }

    /// Create the CA hierarchy. Refuses to overwrite an initialised directory.
    pub fn initialise(
        &self,
        algorithm: KeyAlgorithm,
        names: &CaNames,
        now: OffsetDateTime,
    ) -> Result<PassphraseSource, AuthorityError> {
        if self.is_initialised() {
            return Err(AuthorityError::AlreadyInitialised(self.root.clone()));
        }
        create_private_dir(&self.root)?;
        fs::create_dir_all(self.root.join("ca")).map_err(|e| io_err(&self.root.join("ca"), e))?;
        let (passphrase, source) = self.passphrase_for_init()?;
        let h = CaHierarchy::generate(algorithm, names, now)?;
        write_file(
            &self.root_key_path(),
            seal_private_key(h.root_key.serialized_der(), &passphrase)?.as_bytes(),
            0o600,
        )?;
        write_file(
            &self.issuing_key_path(),
            seal_private_key(h.issuing_key.serialized_der(), &passphrase)?.as_bytes(),
            0o600,
        )?;
        write_file(&self.root_cert_path(), h.root_cert_pem.as_bytes(), 0o644)?;
        // Last: the issuing certificate marks the directory as initialised.
        write_file(
            &self.issuing_cert_path(),
            h.issuing_cert_pem.as_bytes(),
            0o644,
        )?;
        tracing::info!(dir = %self.root.display(), %algorithm, "created CA hierarchy");
        Ok(source)
    }

    /// Decrypt and load the issuing CA.
    pub fn load_issuing_ca(&self) -> Result<IssuingCa, AuthorityError> {
        let passphrase = self.passphrase_for_load()?;
        let key_pem = read_text(&self.issuing_key_path())?;
        let key = open_private_key(&key_pem, &passphrase)?;
        let cert = read_text(&self.issuing_cert_path())?;
        let root = read_text(&self.root_cert_path())?;
        Ok(IssuingCa::load(&cert, key, &root)?)
    }

    fn passphrase_for_init(&self) -> Result<(Vec<u8>, PassphraseSource), AuthorityError> {
        if let Some(p) = env_passphrase()? {
            return Ok((p, PassphraseSource::Environment));
        }
        let path = self.passphrase_path();
        if path.exists() {
            return Ok((read_passphrase_file(&path)?, PassphraseSource::File));
        }
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| AuthorityError::Random)?;
        let passphrase = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        write_file(&path, format!("{passphrase}\n").as_bytes(), 0o600)?;
        tracing::warn!(
            "DEVELOPMENT SETTING: {PASSPHRASE_ENV} is not set, so the CA key passphrase was generated into {} \
             next to the keys it protects. For production, set {PASSPHRASE_ENV} from a secret store and delete that file.",
            path.display()
        );
        Ok((passphrase.into_bytes(), PassphraseSource::File))
    }

    fn passphrase_for_load(&self) -> Result<Vec<u8>, AuthorityError> {
        if let Some(p) = env_passphrase()? {
            return Ok(p);
        }
        let path = self.passphrase_path();
        if path.exists() {
            tracing::warn!(
                "DEVELOPMENT SETTING: CA key passphrase read from {}; set {PASSPHRASE_ENV} in production",
                path.display()
            );
            return read_passphrase_file(&path);
        }
        Err(AuthorityError::NoPassphrase)
    }

    /// The key that seals operator secrets (TOTP seeds) in the database, derived from the CA
    /// passphrase (HKDF-SHA256): they are as well protected at rest as the CA keys, with no
    /// extra file to keep.
    pub fn operator_secrets_key(&self) -> Result<[u8; 32], AuthorityError> {
        self.derived_key(b"sigil/operator-secrets/v1")
    }

    /// The key that seals the update repositories' online signing keys (timestamp, snapshot,
    /// and root or targets where they are kept online) in the database. A key of its own, so
    /// neither kind of sealed value opens as the other.
    pub fn update_keys_key(&self) -> Result<[u8; 32], AuthorityError> {
        self.derived_key(b"sigil/update-signing-keys/v1")
    }

    /// The key that authenticates metrics envelopes on the bus between collectors and
    /// detectors: every instance sharing the CA passphrase holds it, nobody else.
    pub fn metrics_bus_key(&self) -> Result<[u8; 32], AuthorityError> {
        self.derived_key(b"sigil/metrics-bus/v1")
    }

    /// Where uploaded artefacts are kept, by SHA-256.
    pub fn artefacts_dir(&self) -> PathBuf {
        self.root.join("artefacts")
    }

    fn derived_key(&self, label: &[u8]) -> Result<[u8; 32], AuthorityError> {
        use aws_lc_rs::hkdf;
        let passphrase = self.passphrase_for_load()?;
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"sigil data directory").extract(&passphrase);
        let mut key = [0u8; 32];
        prk.expand(&[label], hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut key))
            .map_err(|_| AuthorityError::Random)?;
        Ok(key)
    }

    pub fn log_key_path(&self) -> PathBuf {
        self.root.join("audit/log.key")
    }
    pub fn log_pub_path(&self) -> PathBuf {
        self.root.join("audit/log.pub")
    }
    pub fn checkpoint_path(&self) -> PathBuf {
        self.root.join("audit/checkpoint")
    }

    /// Load the audit log key, creating it (named `origin`) on first use. Returns the key and
    /// whether it was created now. The origin of an existing key is the one it was created with.
    pub fn load_or_create_log_key(&self, origin: &str) -> Result<(LogKey, bool), AuthorityError> {
        let passphrase = self.passphrase_for_load()?;
        let key_path = self.log_key_path();
        if key_path.exists() {
            let verifier_key = read_text(&self.log_pub_path())?;
            let name = verifier_key.trim().split('+').next().unwrap_or_default();
            let pkcs8 = open_private_key(&read_text(&key_path)?, &passphrase)?;
            let key = LogKey::from_pkcs8(name, pkcs8.serialized_der())
                .map_err(|e| AuthorityError::Config(format!("{}: {e}", key_path.display())))?;
            if key.verifier_key() != verifier_key.trim() {
                return Err(AuthorityError::Config(format!(
                    "{} does not match {}",
                    self.log_pub_path().display(),
                    key_path.display()
                )));
            }
            return Ok((key, false));
        }
        let dir = self.root.join("audit");
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let pkcs8 = LogKey::generate_pkcs8().map_err(|e| AuthorityError::Config(e.to_string()))?;
        let key = LogKey::from_pkcs8(origin, &pkcs8)
            .map_err(|e| AuthorityError::Config(format!("audit log origin: {e}")))?;
        write_file(
            &key_path,
            seal_private_key(&pkcs8, &passphrase)?.as_bytes(),
            0o600,
        )?;
        write_file(
            &self.log_pub_path(),
            format!("{}\n", key.verifier_key()).as_bytes(),
            0o644,
        )?;
        tracing::info!(origin, "created audit log key");
        Ok((key, true))
    }

    /// The newest checkpoint written by [`Self::write_checkpoint`], if any.
    pub fn read_checkpoint(&self) -> Result<Option<String>, AuthorityError> {
        let path = self.checkpoint_path();
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some(read_text(&path)?))
    }

    pub fn write_checkpoint(&self, note: &str) -> Result<(), AuthorityError> {
        write_file(&self.checkpoint_path(), note.as_bytes(), 0o644)
    }

    /// Write the bootstrap admin token (0600), replacing any earlier file.
    pub fn write_admin_token(&self, token: &str) -> Result<(), AuthorityError> {
        write_file(
            &self.admin_token_path(),
            format!("{token}\n").as_bytes(),
            0o600,
        )
    }
}

fn env_passphrase() -> Result<Option<Vec<u8>>, AuthorityError> {
    match std::env::var(PASSPHRASE_ENV) {
        Ok(p) if p.is_empty() => Ok(None),
        Ok(p) if p.len() < MIN_PASSPHRASE_LEN => {
            Err(AuthorityError::WeakPassphrase(MIN_PASSPHRASE_LEN))
        }
        Ok(p) => Ok(Some(p.into_bytes())),
        Err(_) => Ok(None),
    }
}

fn read_passphrase_file(path: &Path) -> Result<Vec<u8>, AuthorityError> {
    let meta = fs::metadata(path).map_err(|e| io_err(path, e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        // Fail closed: a passphrase others can read protects nothing.
        return Err(AuthorityError::InsecurePermissions(path.to_owned()));
    }
    Ok(read_text(path)?.trim().as_bytes().to_vec())
}

fn read_text(path: &Path) -> Result<String, AuthorityError> {
    fs::read_to_string(path).map_err(|e| io_err(path, e))
}

pub(crate) fn create_private_dir(path: &Path) -> Result<(), AuthorityError> {
    if !path.exists() {
        fs::create_dir_all(path).map_err(|e| io_err(path, e))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))
            .map_err(|e| io_err(path, e))?;
    }
    Ok(())
}

/// Create an empty file with mode 0600 if it does not exist yet.
pub(crate) fn create_private_file(path: &Path) -> Result<(), AuthorityError> {
    if !path.exists() {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| io_err(path, e))?;
    }
    Ok(())
}

/// Write atomically: temp file with the final mode from the start, fsync, rename, fsync the dir.
pub fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), AuthorityError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| io_err(&tmp, e))?;
    file.write_all(contents).map_err(|e| io_err(&tmp, e))?;
    file.sync_all().map_err(|e| io_err(&tmp, e))?;
    drop(file);
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(|e| io_err(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn io_err(path: &Path, e: std::io::Error) -> AuthorityError {
    AuthorityError::Io {
        path: path.to_owned(),
        source: e,
    }
}
