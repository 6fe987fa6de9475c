//! A device's security posture as its agent reports it: what ETSI EN 303 645 and the CRA ask an
//! operator to know about each device (no universal default passwords, minimal exposed
//! services, debug interfaces closed, secure boot, timely updates, an SBOM for the firmware).
//!
//! Every field the platform cannot tell is `None` ("unknown"), never guessed.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Longest text field, and most entries in a list.
pub const MAX_POSTURE_TEXT: usize = 256;
pub const MAX_POSTURE_ITEMS: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Posture {
    pub firmware_version: Option<String>,
    /// Secure boot as the platform reports it (`Some(true)`: enforced).
    pub secure_boot: Option<bool>,
    /// Boot identifier / measured boot summary, as reported.
    pub boot_state: Option<String>,
    /// A default or universal password is still set.
    pub default_password: Option<bool>,
    #[serde(default)]
    pub listening_services: Vec<ListeningService>,
    /// Enabled debug interfaces (e.g. `jtag`, `uart-console`, `adb`, `debugfs`).
    #[serde(default)]
    pub debug_interfaces: Vec<String>,
    /// When the firmware was last updated.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_update: Option<OffsetDateTime>,
    /// Reference to the running firmware's SBOM (URI or digest).
    pub sbom_ref: Option<String>,
    /// What the agent's update installer holds in the running slot: the release it verified
    /// against the product's TUF repository before installing it. `None`: the device runs
    /// firmware Sigil's updates did not install (a factory image, or no installer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed_release: Option<InstalledRelease>,
}

/// The running slot's release, as the agent recorded it when it installed a verified target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstalledRelease {
    /// The TUF target's name.
    pub target: String,
    pub version: Option<String>,
    /// SHA-256 of the target as installed, hex.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListeningService {
    /// `tcp` or `udp`.
    pub protocol: String,
    pub port: u16,
    pub address: Option<String>,
    pub process: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostureError {
    #[error("posture report is not valid JSON of the expected shape: {0}")]
    Shape(String),
    #[error("posture field {field}: {why}")]
    Field { field: &'static str, why: String },
}

fn text(field: &'static str, value: &Option<String>) -> Result<(), PostureError> {
    match value {
        Some(v) if v.is_empty() || v.chars().count() > MAX_POSTURE_TEXT => {
            Err(PostureError::Field {
                field,
                why: format!("1 to {MAX_POSTURE_TEXT} characters"),
            })
        }
        Some(v) if v.chars().any(char::is_control) => Err(PostureError::Field {
            field,
            why: "control characters are not allowed".into(),
        }),
        _ => Ok(()),
    }
}

impl Posture {
    /// Parse and validate a report body.
    pub fn parse(json: &[u8]) -> Result<Self, PostureError> {
        let p: Posture =
            serde_json::from_slice(json).map_err(|e| PostureError::Shape(e.to_string()))?;
        p.validate()?;
        Ok(p)
    }

    pub fn validate(&self) -> Result<(), PostureError> {
        text("firmware_version", &self.firmware_version)?;
        text("boot_state", &self.boot_state)?;
        text("sbom_ref", &self.sbom_ref)?;
        if self.listening_services.len() > MAX_POSTURE_ITEMS {
            return Err(PostureError::Field {
                field: "listening_services",
                why: format!("at most {MAX_POSTURE_ITEMS}"),
            });
        }
        if self.debug_interfaces.len() > MAX_POSTURE_ITEMS {
            return Err(PostureError::Field {
                field: "debug_interfaces",
                why: format!("at most {MAX_POSTURE_ITEMS}"),
            });
        }
        for s in &self.listening_services {
            if s.protocol != "tcp" && s.protocol != "udp" {
                return Err(PostureError::Field {
                    field: "listening_services.protocol",
                    why: "tcp or udp".into(),
                });
            }
            if s.port == 0 {
                return Err(PostureError::Field {
                    field: "listening_services.port",
                    why: "1 to 65535".into(),
                });
            }
            text("listening_services.address", &s.address)?;
            text("listening_services.process", &s.process)?;
        }
        for d in &self.debug_interfaces {
            text("debug_interfaces", &Some(d.clone()))?;
        }
        if let Some(r) = &self.installed_release {
            text("installed_release.target", &Some(r.target.clone()))?;
            text("installed_release.version", &r.version)?;
            if r.sha256.len() != 64 || !r.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(PostureError::Field {
                    field: "installed_release.sha256",
                    why: "64 hex digits".into(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_full_report_parses_and_bad_ones_say_why() {
        let ok = br#"{"firmware_version":"2.1.0","secure_boot":true,"boot_state":"measured","default_password":false,
            "listening_services":[{"protocol":"tcp","port":22,"address":"0.0.0.0","process":"sshd"}],
            "debug_interfaces":["uart-console"],"last_update":"2026-11-01T00:00:00Z","sbom_ref":"sha256:ab"}"#;
        let p = Posture::parse(ok).unwrap();
        assert_eq!(p.listening_services[0].port, 22);
        assert_eq!(Posture::parse(b"{}").unwrap().firmware_version, None);
        let e = Posture::parse(br#"{"listening_services":[{"protocol":"sctp","port":1}]}"#)
            .unwrap_err();
        assert!(e.to_string().contains("tcp or udp"), "{e}");
        let e = Posture::parse(br#"{"firmware":"x"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let e = Posture::parse(br#"{"sbom_ref":""}"#).unwrap_err();
        assert!(e.to_string().contains("sbom_ref"), "{e}");
        let release = |sha: &str| {
            format!(
                r#"{{"installed_release":{{"target":"fw.bin","version":"2.0.0","sha256":"{sha}"}}}}"#
            )
        };
        let p = Posture::parse(release(&"ab".repeat(32)).as_bytes()).unwrap();
        assert_eq!(
            p.installed_release.unwrap().version.as_deref(),
            Some("2.0.0")
        );
        let e = Posture::parse(release("abc").as_bytes()).unwrap_err();
        assert!(e.to_string().contains("installed_release.sha256"), "{e}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Posture::parse(&bytes);
        }
    }
}
