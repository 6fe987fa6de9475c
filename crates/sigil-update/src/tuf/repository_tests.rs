#![allow(clippy::unwrap_used)]
use proptest::prelude::*;
use time::macros::datetime;

use super::*;
use crate::tuf::Ed25519Signer;

fn key() -> Ed25519Signer {
    Ed25519Signer::generate().unwrap().0
}

struct Keys {
    root: Ed25519Signer,
    targets: Ed25519Signer,
    snapshot: Ed25519Signer,
    timestamp: Ed25519Signer,
}

fn keys() -> Keys {
    Keys {
        root: key(),
        targets: key(),
        snapshot: key(),
        timestamp: key(),
    }
}

fn root_of(keys: &Keys, version: u64) -> Root {
    root(
        version,
        datetime!(2030-01-01 00:00 UTC),
        &[
            RoleAssignment {
                role: Role::Root,
                keys: vec![keys.root.public_key()],
                threshold: 1,
            },
            RoleAssignment {
                role: Role::Targets,
                keys: vec![keys.targets.public_key()],
                threshold: 1,
            },
            RoleAssignment {
                role: Role::Snapshot,
                keys: vec![keys.snapshot.public_key()],
                threshold: 1,
            },
            RoleAssignment {
                role: Role::Timestamp,
                keys: vec![keys.timestamp.public_key()],
                threshold: 1,
            },
        ],
    )
    .unwrap()
}

#[test]
fn a_repository_chain_verifies_role_by_role() {
    let k = keys();
    let root_doc = root_of(&k, 1);
    let signed_root = sign(&root_doc, &[&k.root]).unwrap();
    assert_eq!(verify(&root_doc, Role::Root, &signed_root).unwrap(), 1);

    let target = target_file(&"ab".repeat(32), 5, serde_json::json!({"version": "1.0.0"}));
    let t = targets(
        1,
        datetime!(2029-01-01 00:00 UTC),
        [("1.0.0/fw.bin".to_owned(), target)].into(),
    );
    let signed_targets = sign(&t, &[&k.targets]).unwrap();
    verify(&root_doc, Role::Targets, &signed_targets).unwrap();
    // The timestamp key cannot sign targets.
    let forged = sign(&t, &[&k.timestamp]).unwrap();
    assert_eq!(
        verify(&root_doc, Role::Targets, &forged).unwrap_err(),
        UpdateError::Threshold {
            role: "targets",
            valid: 0,
            threshold: 1
        }
    );

    let targets_bytes = signed_targets.to_bytes();
    let s = snapshot(1, datetime!(2028-01-01 00:00 UTC), 1, &targets_bytes);
    let meta = &s.meta["targets.json"];
    assert_eq!(meta.length, Some(targets_bytes.len() as u64));
    let signed_snapshot = sign(&s, &[&k.snapshot]).unwrap();
    let ts = timestamp(
        1,
        datetime!(2027-01-02 00:00 UTC),
        1,
        &signed_snapshot.to_bytes(),
    );
    verify(
        &root_doc,
        Role::Timestamp,
        &sign(&ts, &[&k.timestamp]).unwrap(),
    )
    .unwrap();

    // The served form of a checked signature is canonical JSON and parses back the same.
    let served = sign_checked(&root_doc, &t, &[&k.targets]).unwrap();
    let reparsed = Envelope::<Targets>::parse(&served).unwrap();
    assert_eq!(reparsed.signed, t);
    assert_eq!(
        canonical_json(&serde_json::from_slice::<serde_json::Value>(&served).unwrap()),
        served
    );
    verify(&root_doc, Role::Targets, &reparsed).unwrap();
    assert!(
        sign_checked(&root_doc, &t, &[&k.timestamp]).is_err(),
        "a key of another role is caught"
    );
    // A parsed file verifies like the one we built; a changed byte does not.
    let parsed = Envelope::<Targets>::parse(&targets_bytes).unwrap();
    verify(&root_doc, Role::Targets, &parsed).unwrap();
    let mut tampered = parsed.clone();
    tampered
        .signed
        .targets
        .get_mut("1.0.0/fw.bin")
        .unwrap()
        .length = 6;
    assert!(verify(&root_doc, Role::Targets, &tampered).is_err());
    // A document of another role is refused by name.
    let e = Envelope::<Snapshot>::parse(&targets_bytes).unwrap_err();
    assert!(
        e.to_string()
            .contains("expected snapshot metadata, found targets"),
        "{e}"
    );
}

#[test]
fn thresholds_count_distinct_valid_keys() {
    let (a, b, c) = (key(), key(), key());
    let mut k = keys();
    let doc = root(
        1,
        datetime!(2030-01-01 00:00 UTC),
        &[
            RoleAssignment {
                role: Role::Root,
                keys: vec![k.root.public_key()],
                threshold: 1,
            },
            RoleAssignment {
                role: Role::Targets,
                keys: vec![a.public_key(), b.public_key(), c.public_key()],
                threshold: 2,
            },
            RoleAssignment {
                role: Role::Snapshot,
                keys: vec![k.snapshot.public_key()],
                threshold: 1,
            },
            RoleAssignment {
                role: Role::Timestamp,
                keys: vec![k.timestamp.public_key()],
                threshold: 1,
            },
        ],
    )
    .unwrap();
    let t = targets(1, datetime!(2030-01-01 00:00 UTC), BTreeMap::new());
    let mut envelope = sign(&t, &[&a]).unwrap();
    // The same key twice is one signature.
    envelope.signatures.push(envelope.signatures[0].clone());
    assert!(verify(&doc, Role::Targets, &envelope).is_err());
    // An offline signer adds theirs; it counts once it verifies.
    let message = canonical_json(&envelope.signed);
    let by_b = Signature {
        keyid: b.key_id(),
        sig: hex::encode(b.sign(&message).unwrap()),
    };
    add_signature(&doc, Role::Targets, &mut envelope, by_b).unwrap();
    assert_eq!(verify(&doc, Role::Targets, &envelope).unwrap(), 2);
    // A signature over something else, or by a key of another role, is refused.
    let wrong = Signature {
        keyid: c.key_id(),
        sig: hex::encode(c.sign(b"other").unwrap()),
    };
    assert!(matches!(
        add_signature(&doc, Role::Targets, &mut envelope, wrong),
        Err(UpdateError::BadSignature { .. })
    ));
    k.timestamp = key();
    let foreign = Signature {
        keyid: k.timestamp.key_id(),
        sig: hex::encode(k.timestamp.sign(&message).unwrap()),
    };
    assert!(matches!(
        add_signature(&doc, Role::Targets, &mut envelope, foreign),
        Err(UpdateError::NotRoleKey { .. })
    ));
}

#[test]
fn impossible_thresholds_and_missing_roles_are_refused() {
    let k = keys();
    let expires = datetime!(2030-01-01 00:00 UTC);
    let zero = root(
        1,
        expires,
        &[RoleAssignment {
            role: Role::Root,
            keys: vec![k.root.public_key()],
            threshold: 0,
        }],
    );
    assert!(zero.unwrap_err().to_string().contains("threshold 0"));
    // Two copies of one key are one key.
    let dup = root(
        1,
        expires,
        &[RoleAssignment {
            role: Role::Root,
            keys: vec![k.root.public_key(), k.root.public_key()],
            threshold: 2,
        }],
    );
    assert!(dup.is_err());
    let missing = root(
        1,
        expires,
        &[RoleAssignment {
            role: Role::Root,
            keys: vec![k.root.public_key()],
            threshold: 1,
        }],
    );
    assert!(
        missing
            .unwrap_err()
            .to_string()
            .contains("no keys to targets")
    );
}

#[test]
fn a_new_root_needs_both_the_old_and_its_own_root_keys() {
    let old = keys();
    let trusted = root_of(&old, 1);
    let new = keys();
    let next = root_of(&new, 2);
    assert!(verify_root_successor(&trusted, &sign(&next, &[&new.root]).unwrap()).is_err());
    assert!(verify_root_successor(&trusted, &sign(&next, &[&old.root]).unwrap()).is_err());
    verify_root_successor(&trusted, &sign(&next, &[&old.root, &new.root]).unwrap()).unwrap();
    let skipped = root_of(&new, 3);
    let e = verify_root_successor(&trusted, &sign(&skipped, &[&old.root, &new.root]).unwrap());
    assert!(e.unwrap_err().to_string().contains("does not follow"));
}

#[test]
fn metadata_file_names() {
    assert_eq!(
        MetadataFile::parse("timestamp.json"),
        Some(MetadataFile::Timestamp)
    );
    assert_eq!(
        MetadataFile::parse("root.json"),
        Some(MetadataFile::LatestRoot)
    );
    assert_eq!(
        MetadataFile::parse("3.root.json"),
        Some(MetadataFile::Root(3))
    );
    assert_eq!(
        MetadataFile::parse("12.snapshot.json"),
        Some(MetadataFile::Snapshot(12))
    );
    assert_eq!(
        MetadataFile::parse("7.targets.json"),
        Some(MetadataFile::Targets(7))
    );
    for bad in [
        "snapshot.json",
        "x.root.json",
        "-1.root.json",
        "1.timestamp.json",
        "99999999999999999999.root.json",
        "1.root.json.bak",
        "",
    ] {
        assert_eq!(MetadataFile::parse(bad), None, "{bad}");
    }
}

#[test]
fn target_names_refuse_traversal() {
    for good in ["fw.bin", "1.2.3/fw.bin", "a-b_c/d.e/f"] {
        let name = TargetName::new(good).unwrap();
        let path = name.consistent_path(&"0f".repeat(32));
        assert_eq!(
            TargetName::from_consistent_path(&path).unwrap(),
            ("0f".repeat(32), name)
        );
    }
    assert_eq!(
        TargetName::new("1.0/fw.bin").unwrap().consistent_path("ab"),
        "1.0/ab.fw.bin"
    );
    for bad in [
        "",
        "../etc/passwd",
        "a/../b",
        "/abs",
        "a//b",
        "a/",
        "./a",
        "a\\b",
        "a b",
        "é",
        &"a".repeat(201),
    ] {
        assert!(TargetName::new(bad).is_err(), "{bad:?}");
    }
    assert_eq!(TargetName::from_consistent_path("fw.bin"), None);
    assert_eq!(
        TargetName::from_consistent_path(&format!("{}.x", "AB".repeat(32))),
        None
    );
}

proptest! {
    #[test]
    fn parsers_never_panic(s in "\\PC{0,120}", bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = TargetName::new(&s);
        let _ = TargetName::from_consistent_path(&s);
        let _ = MetadataFile::parse(&s);
        let _ = Envelope::<Root>::parse(&bytes);
        let _ = Envelope::<Targets>::parse(s.as_bytes());
        let _ = crate::tuf::PublicKey::from_json(&bytes);
    }

    #[test]
    fn accepted_target_names_have_no_traversal(s in "[a-z./_-]{1,20}") {
        if let Ok(name) = TargetName::new(&s) {
            prop_assert!(!name.as_str().split('/').any(|seg| seg == ".." || seg == "." || seg.is_empty()));
            prop_assert!(!name.as_str().starts_with('/'));
        }
    }
}
