//! CSRs for tests and benchmarks: made in-process (many distinct keys, fast) or by `openssl req`
//! (an independent implementation), and PEM of them.

use std::path::Path;
use std::process::Command;

/// A CSR (DER) for a fresh P-256 key made in-process.
pub fn fresh_csr_der() -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .der()
        .to_vec()
}

/// A CSR (PEM) for a fresh P-256 key made in-process.
pub fn fresh_csr_pem() -> String {
    csr_pem(&fresh_csr_der())
}

/// A CSR's DER as PEM (64-column base64, LF).
pub fn csr_pem(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE REQUEST", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// A certificate's DER as PEM (Sigil's one encoder).
pub use sigil_ca::certificate_pem;

/// Run `openssl` with `args` in `dir`; panics with its stderr if it fails.
pub fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl on PATH");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `openssl req` CSR for a new key made with `newkey_args`; returns the CSR PEM.
pub fn openssl_csr(dir: &Path, name: &str, newkey_args: &[&str]) -> String {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let mut args = vec!["req", "-new"];
    args.extend_from_slice(newkey_args);
    args.extend_from_slice(&[
        "-nodes",
        "-keyout",
        &key,
        "-subj",
        "/CN=chosen-by-the-device/O=Evil",
        "-out",
        &csr,
    ]);
    openssl(dir, &args);
    std::fs::read_to_string(dir.join(csr)).unwrap()
}

/// `openssl req` CSR for a new P-256 key.
pub fn p256_csr(dir: &Path, name: &str) -> String {
    openssl_csr(
        dir,
        name,
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    )
}
