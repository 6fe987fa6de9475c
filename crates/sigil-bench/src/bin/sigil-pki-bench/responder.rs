//! `openssl ocsp -index` run as a responder, the baseline Sigil's OCSP responder is compared with.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::cpu::CpuOf;

/// `openssl ocsp` as a responder; killed on drop.
pub(crate) struct OpensslResponder(Child);

impl OpensslResponder {
    pub(crate) fn cpu(&self) -> CpuOf {
        CpuOf::ProcessGroup(self.0.id())
    }
}

impl Drop for OpensslResponder {
    fn drop(&mut self) {
        // `-multi` forks workers: end the whole process group.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(crate) fn start_openssl_responder(
    dir: &Path,
    port: u16,
    multi: Option<u32>,
) -> Result<OpensslResponder> {
    let port_arg = port.to_string();
    let mut args = vec![
        "ocsp",
        "-index",
        "index.txt",
        "-port",
        &port_arg,
        "-rsigner",
        "issuing.crt",
        "-rkey",
        "issuing.key",
        "-CA",
        "issuing.crt",
        "-nmin",
        "15",
    ];
    let workers = multi.map(|m| m.to_string());
    if let Some(w) = &workers {
        args.extend(["-multi", w]);
    }
    use std::os::unix::process::CommandExt;
    let child = Command::new("openssl")
        .args(&args)
        .process_group(0)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting openssl ocsp")?;
    let responder = OpensslResponder(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    // Wait for the port to be taken. Not by connecting: openssl 3.0's responder spins forever on
    // a connection closed before it sent a request, and serves nobody after it.
    while std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
        ensure!(
            Instant::now() < deadline,
            "openssl ocsp did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(responder)
}
