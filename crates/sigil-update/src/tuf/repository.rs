//! A product repository's documents: building, signing, threshold checks, names.

use std::collections::{BTreeMap, BTreeSet};

use aws_lc_rs::digest::{SHA256, digest};
use time::OffsetDateTime;

use super::keys::{PublicKey, Signer};
use super::metadata::{
    Envelope, MetaFile, Metadata, Role, RoleKeys, Root, SPEC_VERSION, Signature, Snapshot,
    TargetFile, Targets, Timestamp, canonical_json,
};
use crate::UpdateError;

/// The keys and threshold of each of the four roles, for a new root.
pub struct RoleAssignment<'a> {
    pub role: Role,
    pub keys: Vec<&'a PublicKey>,
    pub threshold: u32,
}

/// A root document. Every role must be assigned, with a threshold between 1 and its number
/// of distinct keys (a threshold of 0 would let unsigned metadata through).
pub fn root(
    version: u64,
    expires: OffsetDateTime,
    roles: &[RoleAssignment<'_>],
) -> Result<Root, UpdateError> {
    let mut keys = BTreeMap::new();
    let mut assigned = BTreeMap::new();
    let mut owner: BTreeMap<String, Role> = BTreeMap::new();
    for assignment in roles {
        for key in &assignment.keys {
            key.check()?;
            // One key, one role: a timestamp key must never be able to sign targets.
            if let Some(other) = owner.insert(key.keyval.public.clone(), assignment.role)
                && other != assignment.role
            {
                return Err(UpdateError::Metadata(format!(
                    "key {} is assigned to both {} and {}",
                    key.key_id(),
                    other.as_str(),
                    assignment.role.as_str()
                )));
            }
        }
        let ids: BTreeSet<String> = assignment.keys.iter().map(|k| k.key_id()).collect();
        let threshold = assignment.threshold;
        if threshold == 0 || threshold as usize > ids.len() {
            return Err(UpdateError::Metadata(format!(
                "{} threshold {threshold} must be between 1 and its {} distinct key(s)",
                assignment.role.as_str(),
                ids.len()
            )));
        }
        for key in &assignment.keys {
            keys.insert(key.key_id(), (*key).clone());
        }
        let previous = assigned.insert(
            assignment.role,
            RoleKeys {
                keyids: ids.into_iter().collect(),
                threshold,
            },
        );
        if previous.is_some() {
            return Err(UpdateError::Metadata(format!(
                "{} assigned twice",
                assignment.role.as_str()
            )));
        }
    }
    if let Some(missing) = Role::ALL.iter().find(|r| !assigned.contains_key(r)) {
        return Err(UpdateError::Metadata(format!(
            "root assigns no keys to {}",
            missing.as_str()
        )));
    }
    Ok(Root {
        kind: Role::Root,
        spec_version: SPEC_VERSION.into(),
        version,
        expires,
        consistent_snapshot: true,
        keys,
        roles: assigned,
    })
}

pub fn targets(
    version: u64,
    expires: OffsetDateTime,
    targets: BTreeMap<String, TargetFile>,
) -> Targets {
    Targets {
        kind: Role::Targets,
        spec_version: SPEC_VERSION.into(),
        version,
        expires,
        targets,
    }
}

/// Length and SHA-256 of a metadata file, as snapshot and timestamp record it.
fn meta_file(version: u64, bytes: &[u8]) -> MetaFile {
    MetaFile {
        version,
        length: Some(bytes.len() as u64),
        hashes: Some(BTreeMap::from([(
            "sha256".to_owned(),
            hex::encode(digest(&SHA256, bytes)),
        )])),
    }
}

/// Snapshot over the targets file `targets_bytes` (of version `targets_version`).
pub fn snapshot(
    version: u64,
    expires: OffsetDateTime,
    targets_version: u64,
    targets_bytes: &[u8],
) -> Snapshot {
    Snapshot {
        kind: Role::Snapshot,
        spec_version: SPEC_VERSION.into(),
        version,
        expires,
        meta: BTreeMap::from([(
            "targets.json".to_owned(),
            meta_file(targets_version, targets_bytes),
        )]),
    }
}

/// Timestamp over the snapshot file `snapshot_bytes`.
pub fn timestamp(
    version: u64,
    expires: OffsetDateTime,
    snapshot_version: u64,
    snapshot_bytes: &[u8],
) -> Timestamp {
    Timestamp {
        kind: Role::Timestamp,
        spec_version: SPEC_VERSION.into(),
        version,
        expires,
        meta: BTreeMap::from([(
            "snapshot.json".to_owned(),
            meta_file(snapshot_version, snapshot_bytes),
        )]),
    }
}

/// A target's entry: its length, SHA-256 and Sigil's description (`custom`).
pub fn target_file(content_sha256: &str, length: u64, custom: serde_json::Value) -> TargetFile {
    TargetFile {
        length,
        hashes: BTreeMap::from([("sha256".to_owned(), content_sha256.to_owned())]),
        custom: Some(custom),
    }
}

/// Sign `document` with each signer (none is allowed: a document awaiting offline signatures).
pub fn sign<T: Metadata + Clone>(
    document: &T,
    signers: &[&dyn Signer],
) -> Result<Envelope<T>, UpdateError> {
    let message = canonical_json(document);
    let mut signatures = Vec::with_capacity(signers.len());
    for signer in signers {
        signatures.push(Signature {
            keyid: signer.key_id(),
            sig: hex::encode(signer.sign(&message)?),
        });
    }
    Ok(Envelope {
        signed: document.clone(),
        signatures,
    })
}

/// The number of distinct keys of `role` (as `root` assigns them) whose signature on
/// `envelope` verifies; an error unless that reaches the role's threshold.
pub fn verify<T: Metadata>(
    root: &Root,
    role: Role,
    envelope: &Envelope<T>,
) -> Result<usize, UpdateError> {
    verify_message(
        root,
        role,
        &canonical_json(&envelope.signed),
        &envelope.signatures,
    )
}

/// [`verify`] over a document's canonical bytes already at hand.
pub fn verify_message(
    root: &Root,
    role: Role,
    message: &[u8],
    signatures: &[Signature],
) -> Result<usize, UpdateError> {
    let assigned = root.roles.get(&role).ok_or_else(|| {
        UpdateError::Metadata(format!("root assigns no keys to {}", role.as_str()))
    })?;
    let mut valid = BTreeSet::new();
    for signature in signatures {
        if !assigned.keyids.contains(&signature.keyid) || valid.contains(&signature.keyid) {
            continue;
        }
        let Some(key) = root.keys.get(&signature.keyid) else {
            continue;
        };
        let Ok(sig) = hex::decode(&signature.sig) else {
            continue;
        };
        if key.verifies(message, &sig) {
            valid.insert(signature.keyid.clone());
        }
    }
    if assigned.threshold == 0 || valid.len() < assigned.threshold as usize {
        return Err(UpdateError::Threshold {
            role: role.as_str(),
            valid: valid.len(),
            threshold: assigned.threshold,
        });
    }
    Ok(valid.len())
}

/// Sign `document` and check the signatures reach its role's threshold under `root`; the file
/// as served. The canonical bytes are made once: they are what is signed, what is checked, and
/// (inside `{"signatures": [...], "signed": ...}`, itself canonical JSON) what is served.
pub fn sign_checked<T: Metadata>(
    root: &Root,
    document: &T,
    signers: &[&dyn Signer],
) -> Result<Vec<u8>, UpdateError> {
    let message = canonical_json(document);
    let mut signatures = Vec::with_capacity(signers.len());
    for signer in signers {
        signatures.push(Signature {
            keyid: signer.key_id(),
            sig: hex::encode(signer.sign(&message)?),
        });
    }
    verify_message(root, T::ROLE, &message, &signatures)?;
    let mut out = Vec::with_capacity(message.len() + 160 * signatures.len() + 32);
    out.extend_from_slice(b"{\"signatures\":");
    out.extend_from_slice(&canonical_json(&signatures));
    out.extend_from_slice(b",\"signed\":");
    out.extend_from_slice(&message);
    out.push(b'}');
    Ok(out)
}

/// Add one offline signer's signature to `envelope`, refusing a signature that does not
/// verify, or by a key `root` does not assign to `role`. A second signature by the same key
/// replaces the first.
pub fn add_signature<T: Metadata>(
    root: &Root,
    role: Role,
    envelope: &mut Envelope<T>,
    signature: Signature,
) -> Result<(), UpdateError> {
    let assigned = root.roles.get(&role).map(|r| &r.keyids);
    let key = root
        .keys
        .get(&signature.keyid)
        .filter(|_| assigned.is_some_and(|ids| ids.contains(&signature.keyid)))
        .ok_or_else(|| UpdateError::NotRoleKey {
            role: role.as_str(),
            keyid: signature.keyid.clone(),
        })?;
    let sig = hex::decode(&signature.sig).map_err(|_| UpdateError::BadSignature {
        role: role.as_str(),
        keyid: signature.keyid.clone(),
    })?;
    if !key.verifies(&canonical_json(&envelope.signed), &sig) {
        return Err(UpdateError::BadSignature {
            role: role.as_str(),
            keyid: signature.keyid,
        });
    }
    envelope.signatures.retain(|s| s.keyid != signature.keyid);
    envelope.signatures.push(signature);
    Ok(())
}

/// A new root must be signed by a threshold of the trusted root's root keys and a threshold
/// of its own (TUF 5.3.4: cross-signing), and be exactly the next version.
pub fn verify_root_successor(trusted: &Root, next: &Envelope<Root>) -> Result<(), UpdateError> {
    if next.signed.version != trusted.version + 1 {
        return Err(UpdateError::Metadata(format!(
            "root version {} does not follow {}",
            next.signed.version, trusted.version
        )));
    }
    verify(trusted, Role::Root, next)?;
    verify(&next.signed, Role::Root, next)?;
    Ok(())
}

/// A metadata file a client may ask for, by its consistent-snapshot name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataFile {
    /// `N.root.json`
    Root(u64),
    /// `root.json`: the newest root, for a first look by hand.
    LatestRoot,
    /// `timestamp.json`
    Timestamp,
    /// `N.snapshot.json`
    Snapshot(u64),
    /// `N.targets.json`
    Targets(u64),
}

impl MetadataFile {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "root.json" => return Some(Self::LatestRoot),
            "timestamp.json" => return Some(Self::Timestamp),
            _ => {}
        }
        let (version, rest) = name.split_once('.')?;
        if version.is_empty() || version.len() > 19 || !version.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let version: u64 = version.parse().ok()?;
        match rest {
            "root.json" => Some(Self::Root(version)),
            "snapshot.json" => Some(Self::Snapshot(version)),
            "targets.json" => Some(Self::Targets(version)),
            _ => None,
        }
    }
}

/// A target's path in the repository: ASCII letters, digits, `.`, `_`, `-`, `+` (semver build
/// metadata) and `/` between
/// segments; no empty, `.` or `..` segment (no path traversal on any client), at most 200
/// bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TargetName(String);

impl TargetName {
    pub fn new(name: &str) -> Result<Self, UpdateError> {
        let refuse = |reason| UpdateError::InvalidTargetName {
            name: name.chars().take(80).collect(),
            reason,
        };
        if name.is_empty() || name.len() > 200 {
            return Err(refuse("must be 1 to 200 bytes"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+' | b'/'))
        {
            return Err(refuse("only letters, digits, '.', '_', '-', '+' and '/'"));
        }
        if name
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..")
        {
            return Err(refuse("no empty, '.' or '..' path segment"));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Where a consistent-snapshot repository serves it: the hash prefixed to the file name
    /// (`dir/HASH.name`).
    pub fn consistent_path(&self, sha256: &str) -> String {
        match self.0.rsplit_once('/') {
            Some((dir, file)) => format!("{dir}/{sha256}.{file}"),
            None => format!("{sha256}.{}", self.0),
        }
    }

    /// The hash and the target name a request path names: the specification's form
    /// (`dir/HASH.name`, what python-tuf asks for) or the hash before the whole name
    /// (`HASH.dir/name`, what tough asks for). Either names one target unambiguously.
    pub fn from_consistent_path(path: &str) -> Option<(String, Self)> {
        let (dir, file) = match path.rsplit_once('/') {
            Some((dir, file)) => (Some(dir), file),
            None => (None, path),
        };
        let spec = file
            .split_once('.')
            .filter(|(hash, _)| is_sha256_hex(hash))
            .and_then(|(hash, name)| {
                let full = match dir {
                    Some(dir) => format!("{dir}/{name}"),
                    None => name.to_owned(),
                };
                Some((hash.to_owned(), Self::new(&full).ok()?))
            });
        spec.or_else(|| {
            let (hash, name) = path.split_once('.')?;
            is_sha256_hex(hash).then_some(())?;
            Some((hash.to_owned(), Self::new(name).ok()?))
        })
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
#[path = "repository_tests.rs"]
mod tests;
