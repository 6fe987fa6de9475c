//! Mosquitto enforcement for Sigil.
//!
//! Mosquitto 2.x with its dynamic-security plugin, and a listener with `require_certificate` and
//! `use_identity_as_username`, authenticates each device by its Sigil certificate (username = the
//! certificate's CN = the device id). Sigil then decides, with its Cedar policies, which devices
//! get a dynamic-security client and which topics their role allows, and keeps the plugin's
//! configuration in step over `$CONTROL/dynamic-security/v1`.
//!
//! Facts about Mosquitto 2.0 this design rests on (each is exercised by the integration test):
//! - with certificate identity as the username, the plugin is not asked to authenticate, so a
//!   *disabled* client can still connect and publish; a device Sigil distrusts is therefore
//!   *deleted* (which also disconnects it), leaving an unknown user whose every publish and
//!   subscribe is denied;
//! - ACL patterns (`%u`) are not expanded by the 2.0 plugin, so each device has its own role;
//! - the broker re-reads its `crlfile` on SIGHUP, which refuses a revoked certificate at the
//!   TLS handshake.
//!
//! [`dynsec`] is the pure command model and reconciliation plan; [`client`] sends it.

pub mod client;
pub mod dynsec;
mod error;
pub mod observe;

pub use client::{ControlClient, ControlConfig};
pub use dynsec::{Acl, AclType, BrokerMirror, Command, DeviceGrant, Response};
pub use error::MosquittoError;
pub use observe::{LogEvent, Observed, Observer, parse_log_line};
