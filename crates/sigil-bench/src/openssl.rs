//! The standard tool as the baseline: `openssl x509 -req` issuing the same kind of certificate.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// `openssl x509 -req` signing a CSR with an ECDSA P-256 CA, one process per certificate, as a
/// script-based CA would.
pub(crate) fn openssl_rate(dir: &std::path::Path, secs: Duration) -> Result<f64> {
    use std::process::Command;
    let run = |args: &[&str]| -> Result<()> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()?;
        if !out.status.success() {
            bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-subj",
        "/CN=bench CA",
        "-out",
        "ca.crt",
        "-days",
        "30",
    ])?;
    run(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "d.key",
        "-subj",
        "/CN=d",
        "-out",
        "d.csr",
    ])?;
    std::fs::write(
        dir.join("ext.cnf"),
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nbasicConstraints=critical,CA:FALSE\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    )?;
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed() < secs {
        run(&[
            "x509",
            "-req",
            "-in",
            "d.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "365",
            "-extfile",
            "ext.cnf",
            "-out",
            "d.crt",
        ])?;
        n += 1;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}
