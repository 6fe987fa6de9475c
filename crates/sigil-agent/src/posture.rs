//! Where posture reports come from: the running Linux system, or a file (tests, simulation,
//! platforms whose vendor tooling writes one). Anything a provider cannot tell stays `None`.

use std::path::PathBuf;

use sigil_domain::{ListeningService, Posture};

use crate::error::AgentError;

pub trait PostureProvider: Send + Sync {
    fn collect(&self) -> Result<Posture, AgentError>;
}

/// A JSON posture report in a file, read afresh each time.
pub struct FileProvider(pub PathBuf);

impl PostureProvider for FileProvider {
    fn collect(&self) -> Result<Posture, AgentError> {
        let bytes = std::fs::read(&self.0)
            .map_err(|e| AgentError::Usage(format!("{}: {e}", self.0.display())))?;
        Posture::parse(&bytes).map_err(|e| AgentError::Usage(format!("{}: {e}", self.0.display())))
    }
}

/// What a Linux system says about itself through /proc, /sys and /etc, unprivileged.
pub struct LinuxProvider {
    root: PathBuf,
}

impl Default for LinuxProvider {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/"),
        }
    }
}

impl LinuxProvider {
    /// Read from a different root (a test fixture or a chroot).
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(path.trim_start_matches('/'))).ok()
    }

    fn firmware_version(&self) -> Option<String> {
        let release = self.read("etc/os-release")?;
        let field = |name: &str| {
            release.lines().find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|v| v.strip_prefix('='))
                    .map(|v| v.trim_matches('"').to_owned())
            })
        };
        let id = field("ID").unwrap_or_default();
        field("VERSION_ID").map(|v| {
            if id.is_empty() {
                v
            } else {
                format!("{id} {v}")
            }
        })
    }

    /// UEFI SecureBoot variable: 4 attribute bytes, then 1 = enabled. No EFI: unknown.
    fn secure_boot(&self) -> Option<bool> {
        let path = self
            .root
            .join("sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c");
        std::fs::read(path).ok()?.get(4).map(|b| *b == 1)
    }

    fn listening(&self) -> Vec<ListeningService> {
        let mut out = Vec::new();
        // State 0A is TCP_LISTEN; for UDP, 07 (TCP_CLOSE) is a bound, unconnected socket.
        for (file, protocol, state) in [
            ("proc/net/tcp", "tcp", "0A"),
            ("proc/net/tcp6", "tcp", "0A"),
            ("proc/net/udp", "udp", "07"),
            ("proc/net/udp6", "udp", "07"),
        ] {
            let Some(table) = self.read(file) else {
                continue;
            };
            for line in table.lines().skip(1) {
                let cols: Vec<&str> = line.split_whitespace().collect();
                let (Some(local), Some(st)) = (cols.get(1), cols.get(3)) else {
                    continue;
                };
                if *st != state {
                    continue;
                }
                let Some((addr, port)) = local.rsplit_once(':') else {
                    continue;
                };
                let Ok(port) = u16::from_str_radix(port, 16) else {
                    continue;
                };
                if port == 0 {
                    continue;
                }
                let address = Some(match addr.len() {
                    8 => u32::from_str_radix(addr, 16)
                        .map(|a| std::net::Ipv4Addr::from(u32::from_be(a)).to_string())
                        .unwrap_or_else(|_| addr.to_owned()),
                    _ => addr.to_ascii_lowercase(),
                });
                let service = ListeningService {
                    protocol: protocol.to_owned(),
                    port,
                    address,
                    process: None,
                };
                if !out.contains(&service) {
                    out.push(service);
                }
            }
        }
        out.truncate(sigil_domain::posture::MAX_POSTURE_ITEMS);
        out
    }

    fn debug_interfaces(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.read("proc/mounts").is_some_and(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(2) == Some("debugfs"))
        }) {
            out.push("debugfs".to_owned());
        }
        if self
            .read("sys/module/kgdboc/parameters/kgdboc")
            .is_some_and(|v| !v.trim().is_empty())
        {
            out.push("kgdb".to_owned());
        }
        if self
            .read("proc/cmdline")
            .is_some_and(|c| c.split_whitespace().any(|a| a.starts_with("console=tty")))
        {
            out.push("serial-console".to_owned());
        }
        out
    }

    /// Last package database change: when software was last installed or updated.
    fn last_update(&self) -> Option<time::OffsetDateTime> {
        [
            "var/lib/dpkg/status",
            "var/lib/rpm/rpmdb.sqlite",
            "lib/apk/db/installed",
        ]
        .iter()
        .find_map(|p| std::fs::metadata(self.root.join(p)).ok()?.modified().ok())
        .map(time::OffsetDateTime::from)
        .map(|t| t.replace_nanosecond(0).unwrap_or(t))
    }
}

impl PostureProvider for LinuxProvider {
    fn collect(&self) -> Result<Posture, AgentError> {
        let posture = Posture {
            firmware_version: self.firmware_version(),
            secure_boot: self.secure_boot(),
            boot_state: self
                .read("proc/sys/kernel/random/boot_id")
                .map(|b| format!("boot_id={}", b.trim())),
            // Telling a default password from a chosen one needs the vendor's list; unknown.
            default_password: None,
            listening_services: self.listening(),
            debug_interfaces: self.debug_interfaces(),
            last_update: self.last_update(),
            sbom_ref: self
                .read("etc/sbom-ref")
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty()),
            // The update installer's slot, if the agent manages one (`describe_installed`).
            installed_release: None,
        };
        posture
            .validate()
            .map_err(|e| AgentError::State(format!("collected posture: {e}")))?;
        Ok(posture)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_linux_system_from_its_files() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let write = |p: &str, s: &str| {
            let path = root.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, s).unwrap();
        };
        write("etc/os-release", "ID=debian\nVERSION_ID=\"12\"\n");
        write(
            "proc/net/tcp",
            "  sl  local_address rem_address   st\n   0: 0100007F:1F90 00000000:0000 0A 0\n   1: 0100007F:C350 0100007F:1F90 01 0\n",
        );
        write("proc/mounts", "debugfs /sys/kernel/debug debugfs rw 0 0\n");
        write("proc/sys/kernel/random/boot_id", "abc\n");
        let p = LinuxProvider::with_root(root).collect().unwrap();
        assert_eq!(p.firmware_version.as_deref(), Some("debian 12"));
        assert_eq!(p.listening_services.len(), 1, "only the LISTEN socket");
        assert_eq!(p.listening_services[0].port, 8080);
        assert_eq!(
            p.listening_services[0].address.as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(p.debug_interfaces, ["debugfs"]);
        assert_eq!(p.secure_boot, None, "no EFI: unknown, not false");
        // The real system this runs on yields a valid report too.
        LinuxProvider::default().collect().unwrap();
    }
}
