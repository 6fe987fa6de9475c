//! The four roles' documents and their signed envelope (TUF 1.0, section 4).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::keys::PublicKey;
use crate::UpdateError;

/// The specification version Sigil writes. Clients accept any 1.x.
pub const SPEC_VERSION: &str = "1.0.31";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Root,
    Targets,
    Snapshot,
    Timestamp,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Root, Role::Targets, Role::Snapshot, Role::Timestamp];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Root => "root",
            Self::Targets => "targets",
            Self::Snapshot => "snapshot",
            Self::Timestamp => "timestamp",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

/// `expires`: UTC, whole seconds, `Z` (the form python-tuf and tough both require).
mod expiry {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use time::OffsetDateTime;
    use time::format_description::FormatItem;
    use time::macros::format_description;

    const FORMAT: &[FormatItem<'_>] =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        let utc = t.to_offset(time::UtcOffset::UTC);
        s.serialize_str(&utc.format(FORMAT).map_err(serde::ser::Error::custom)?)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let text = String::deserialize(d)?;
        time::PrimitiveDateTime::parse(&text, FORMAT)
            .map(|t| t.assume_utc())
            .map_err(|e| D::Error::custom(format!("expires `{text}`: {e}")))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleKeys {
    pub keyids: Vec<String>,
    pub threshold: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Root {
    #[serde(rename = "_type")]
    pub kind: Role,
    pub spec_version: String,
    pub version: u64,
    #[serde(with = "expiry")]
    pub expires: OffsetDateTime,
    pub consistent_snapshot: bool,
    pub keys: BTreeMap<String, PublicKey>,
    pub roles: BTreeMap<Role, RoleKeys>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetFile {
    pub length: u64,
    pub hashes: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Targets {
    #[serde(rename = "_type")]
    pub kind: Role,
    pub spec_version: String,
    pub version: u64,
    #[serde(with = "expiry")]
    pub expires: OffsetDateTime,
    pub targets: BTreeMap<String, TargetFile>,
}

/// What snapshot says of targets, and timestamp of snapshot: the version, and (so a client
/// bounds and checks the download) its length and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaFile {
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashes: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    #[serde(rename = "_type")]
    pub kind: Role,
    pub spec_version: String,
    pub version: u64,
    #[serde(with = "expiry")]
    pub expires: OffsetDateTime,
    pub meta: BTreeMap<String, MetaFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timestamp {
    #[serde(rename = "_type")]
    pub kind: Role,
    pub spec_version: String,
    pub version: u64,
    #[serde(with = "expiry")]
    pub expires: OffsetDateTime,
    pub meta: BTreeMap<String, MetaFile>,
}

/// What every role's document has.
pub trait Metadata: Serialize + DeserializeOwned {
    const ROLE: Role;
    fn kind(&self) -> Role;
    fn version(&self) -> u64;
    fn expires(&self) -> OffsetDateTime;
}

macro_rules! metadata {
    ($t:ty, $role:expr) => {
        impl Metadata for $t {
            const ROLE: Role = $role;
            fn kind(&self) -> Role {
                self.kind
            }
            fn version(&self) -> u64 {
                self.version
            }
            fn expires(&self) -> OffsetDateTime {
                self.expires
            }
        }
    };
}
metadata!(Root, Role::Root);
metadata!(Targets, Role::Targets);
metadata!(Snapshot, Role::Snapshot);
metadata!(Timestamp, Role::Timestamp);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    pub keyid: String,
    pub sig: String,
}

/// `{"signed": ..., "signatures": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub signed: T,
    pub signatures: Vec<Signature>,
}

impl<T: Metadata> Envelope<T> {
    /// Parse a signed document of role `T`, refusing one that claims another role.
    pub fn parse(bytes: &[u8]) -> Result<Self, UpdateError> {
        let role = T::ROLE.as_str();
        // The role first, so a file of another role is named as such, not as a missing field.
        let raw: Envelope<serde_json::Value> = serde_json::from_slice(bytes)
            .map_err(|e| UpdateError::Metadata(format!("not {role} metadata: {e}")))?;
        let found = raw
            .signed
            .get("_type")
            .and_then(|t| t.as_str())
            .unwrap_or("no _type");
        if found != role {
            return Err(UpdateError::Metadata(format!(
                "expected {role} metadata, found {}",
                found.chars().take(32).collect::<String>()
            )));
        }
        let signed = T::deserialize(raw.signed)
            .map_err(|e| UpdateError::Metadata(format!("not {role} metadata: {e}")))?;
        Ok(Self {
            signed,
            signatures: raw.signatures,
        })
    }

    /// The file's bytes as served.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising these types cannot fail: string keys, no floats, no foreign maps.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// OLPC canonical JSON of `value`: the bytes a TUF signature covers.
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    let mut serializer =
        serde_json::Serializer::with_formatter(&mut out, olpc_cjson::CanonicalFormatter::new());
    // Our metadata types hold only strings, integers, booleans, maps and lists, which the
    // canonical formatter always accepts; an error would leave `out` empty, which no
    // signature verifies.
    if value.serialize(&mut serializer).is_err() {
        out.clear();
    }
    out
}
