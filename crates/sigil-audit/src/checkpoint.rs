//! Signed checkpoints: a C2SP `tlog-checkpoint` body (origin, tree size, root hash) in a C2SP
//! `signed-note`, signed with the log's Ed25519 key.
//!
//! Parsing, formatting and verification use `signed_note` and `tlog_tiles` (ports of Go's
//! reference `sumdb/note` and `sumdb/tlog`). Signing uses aws-lc-rs, the same crypto provider
//! as the CA, so the log key is stored like the CA keys (encrypted PKCS#8).

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use signed_note::{Note, Signer, StandardVerifier, VerifierList};
use tlog_tiles::Checkpoint;

use crate::{AuditError, Hash};

/// Signature type byte for Ed25519 in signed notes.
const ALG_ED25519: u8 = 0x01;

/// The log's signing key. Its name is the checkpoint origin, fixed for the life of the log.
pub struct LogKey {
    name: String,
    key_id: u32,
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogKey")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl LogKey {
    /// A fresh Ed25519 key as PKCS#8 DER (to be sealed by the caller).
    pub fn generate_pkcs8() -> Result<Vec<u8>, AuditError> {
        let doc = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
            .map_err(|e| AuditError::Key(e.to_string()))?;
        Ok(doc.as_ref().to_vec())
    }

    /// Load an Ed25519 PKCS#8 key (v1 or v2) for the log named `origin`.
    pub fn from_pkcs8(origin: &str, pkcs8_der: &[u8]) -> Result<Self, AuditError> {
        if !signed_note::is_key_name_valid(origin) {
            return Err(AuditError::Key(format!(
                "`{origin}` is not a valid log name (non-empty, no spaces, no `+`)"
            )));
        }
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8_der)
            .map_err(|e| AuditError::Key(format!("not an Ed25519 PKCS#8 key: {e}")))?;
        let public = [&[ALG_ED25519], pair.public_key().as_ref()].concat();
        Ok(Self {
            key_id: signed_note::key_id(origin, &public),
            name: origin.to_owned(),
            pair,
        })
    }

    /// The log's origin line and key name.
    pub fn origin(&self) -> &str {
        &self.name
    }

    /// The public verifier key in the signed-note text form, `<name>+<id hex>+<base64(0x01 ||
    /// key)>`, which is what a user pins to verify exports offline.
    pub fn verifier_key(&self) -> String {
        let public = [&[ALG_ED25519], self.pair.public_key().as_ref()].concat();
        format!("{}+{:08x}+{}", self.name, self.key_id, B64.encode(public))
    }

    /// Sign `text` (which must end in a newline) as a signed note.
    pub fn sign_note(&self, text: &str) -> Result<String, AuditError> {
        let mut note =
            Note::new(text.as_bytes(), &[]).map_err(|e| AuditError::Signature(e.to_string()))?;
        note.add_sigs(&[self])
            .map_err(|e| AuditError::Signature(e.to_string()))?;
        String::from_utf8(note.to_bytes()).map_err(|e| AuditError::Signature(e.to_string()))
    }

    /// A signed checkpoint for the tree of `size` leaves with root `root`.
    pub fn sign_checkpoint(&self, size: u64, root: Hash) -> Result<SignedCheckpoint, AuditError> {
        let body = Checkpoint::new(&self.name, size, root, "")
            .map_err(|e| AuditError::Checkpoint(e.to_string()))?;
        let text = String::from_utf8(body.to_bytes())
            .map_err(|e| AuditError::Checkpoint(e.to_string()))?;
        Ok(SignedCheckpoint {
            origin: self.name.clone(),
            size,
            root,
            note: self.sign_note(&text)?,
        })
    }
}

impl Signer for LogKey {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.key_id
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(self.pair.sign(msg).as_ref().to_vec())
    }
}

/// A checkpoint whose signature has been checked (or that this process signed).
#[derive(Debug, Clone, PartialEq)]
pub struct SignedCheckpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// The whole signed note, exactly as served.
    pub note: String,
}

/// Verifies notes and checkpoints signed by one log key.
///
/// Holds the key as text: `signed_note`'s verifier list is neither `Send` nor `Sync`, and
/// building one per call costs a key parse, far below a signature check.
#[derive(Debug, Clone)]
pub struct LogVerifier {
    name: String,
    verifier_key: String,
}

impl LogVerifier {
    /// From the verifier key text (see [`LogKey::verifier_key`]).
    pub fn new(verifier_key: &str) -> Result<Self, AuditError> {
        let verifier = StandardVerifier::new(verifier_key.trim())
            .map_err(|e| AuditError::Key(format!("invalid log verifier key: {e}")))?;
        let name = signed_note::Verifier::name(&verifier).to_owned();
        Ok(Self {
            name,
            verifier_key: verifier_key.trim().to_owned(),
        })
    }

    pub fn origin(&self) -> &str {
        &self.name
    }

    /// The verifier key text this was built from.
    pub fn verifier_key(&self) -> &str {
        &self.verifier_key
    }

    /// The text of `note` if this key signed it. Signatures by other keys are ignored, as the
    /// signed-note specification requires; a bad signature by this key rejects the note.
    pub fn open_note(&self, note: &[u8]) -> Result<String, AuditError> {
        let parsed = Note::from_bytes(note)
            .map_err(|e| AuditError::Signature(format!("malformed signed note: {e}")))?;
        let verifier = StandardVerifier::new(&self.verifier_key)
            .map_err(|e| AuditError::Key(format!("invalid log verifier key: {e}")))?;
        let verifiers = VerifierList::new(vec![Box::new(verifier)]);
        parsed.verify(&verifiers).map_err(|e| {
            AuditError::Signature(format!("not signed by log key `{}`: {e}", self.name))
        })?;
        String::from_utf8(parsed.text().to_vec()).map_err(|e| AuditError::Signature(e.to_string()))
    }

    /// Verify and parse a signed checkpoint. Its origin must be this log's.
    pub fn open_checkpoint(&self, note: &[u8]) -> Result<SignedCheckpoint, AuditError> {
        let text = self.open_note(note)?;
        let body = Checkpoint::from_bytes(text.as_bytes())
            .map_err(|e| AuditError::Checkpoint(e.to_string()))?;
        if body.origin() != self.name {
            return Err(AuditError::Checkpoint(format!(
                "checkpoint is for log `{}`, expected `{}`",
                body.origin(),
                self.name
            )));
        }
        Ok(SignedCheckpoint {
            origin: body.origin().to_owned(),
            size: body.size(),
            root: *body.hash(),
            note: String::from_utf8_lossy(note).into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// PKCS#8 v1 wrapping of a raw Ed25519 seed (RFC 8410).
    pub(crate) fn pkcs8_from_seed(seed: &[u8]) -> Vec<u8> {
        let mut der = hex::decode("302e020100300506032b657004220420").unwrap();
        der.extend_from_slice(seed);
        der
    }

    /// The signed-note vector of Go's reference implementation (`x/mod/sumdb/note`), quoted
    /// by the C2SP specification's implementations: known key, known text, known bytes.
    #[test]
    fn signed_note_reference_vector_byte_for_byte() {
        let skey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
        let seed = B64
            .decode(skey.splitn(5, '+').nth(4).unwrap())
            .unwrap()
            .split_off(1);
        let key = LogKey::from_pkcs8("PeterNeumann", &pkcs8_from_seed(&seed)).unwrap();
        assert_eq!(
            key.verifier_key(),
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        );
        let text = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
        let want = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n\
                    \n\
                    \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
        assert_eq!(key.sign_note(text).unwrap(), want);
        let verifier = LogVerifier::new(&key.verifier_key()).unwrap();
        assert_eq!(verifier.open_note(want.as_bytes()).unwrap(), text);
    }

    /// The example of the C2SP signed-note specification verifies with its published key.
    #[test]
    fn c2sp_signed_note_example_verifies() {
        let verifier = LogVerifier::new(
            "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        )
        .unwrap();
        let note = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
        assert_eq!(
            verifier.open_note(note.as_bytes()).unwrap(),
            "This is an example message.\n"
        );
        let altered = note.replace("example message", "exemple message");
        assert!(verifier.open_note(altered.as_bytes()).is_err());
    }

    /// The C2SP tlog-checkpoint example: its body parses to (origin, size, root) and formats
    /// back to the same bytes; its signature line carries the key ID prefix.
    #[test]
    fn c2sp_checkpoint_example_format() {
        let body =
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let parsed = Checkpoint::from_bytes(body.as_bytes()).unwrap();
        assert_eq!(parsed.origin(), "example.com/behind-the-sofa");
        assert_eq!(parsed.size(), 20852163);
        assert_eq!(
            parsed.hash().to_string(),
            "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
        );
        assert_eq!(parsed.to_bytes(), body.as_bytes());
        let note = format!(
            "{body}\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
        );
        let n = Note::from_bytes(note.as_bytes()).unwrap();
        assert_eq!(n.text(), body.as_bytes());
        assert_eq!(n.to_bytes(), note.as_bytes());
        // Leading zeros, a missing final newline and an empty extension line are all refused.
        for bad in [
            "example.com/x\n020852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
            "example.com/x\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=",
            "example.com/x\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n",
            "\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
            "example.com/x\n1\nnot-base64\n",
        ] {
            assert!(Checkpoint::from_bytes(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    /// A checkpoint written by hand from the two specifications, with the RFC 8032 test key 1:
    /// every byte of the note is fixed (Ed25519 is deterministic).
    #[test]
    fn sigil_checkpoint_byte_for_byte() {
        let seed = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap();
        let key = LogKey::from_pkcs8("sigil.example/audit", &pkcs8_from_seed(&seed)).unwrap();
        let root = Hash(
            hex::decode("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")
                .unwrap()
                .try_into()
                .unwrap(),
        );
        let signed = key.sign_checkpoint(8, root).unwrap();
        // key ID = SHA-256("sigil.example/audit" || 0x0A || 0x01 || public key)[:4]
        let public =
            hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
                .unwrap();
        let mut preimage = b"sigil.example/audit\n\x01".to_vec();
        preimage.extend_from_slice(&public);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &preimage);
        let key_id = &digest.as_ref()[..4];
        let body = "sigil.example/audit\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n";
        let signature = &B64
            .decode(signed.note.rsplit(' ').next().unwrap().trim_end())
            .unwrap();
        assert_eq!(&signature[..4], key_id);
        let sig_line = format!("\u{2014} sigil.example/audit {}\n", B64.encode(signature));
        assert_eq!(signed.note, format!("{body}\n{sig_line}"));
        // The signature is RFC 8032 Ed25519 over exactly the body.
        aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, &public)
            .verify(body.as_bytes(), &signature[4..])
            .unwrap();
        let verifier = LogVerifier::new(&key.verifier_key()).unwrap();
        assert_eq!(
            verifier.open_checkpoint(signed.note.as_bytes()).unwrap(),
            signed
        );
    }

    #[test]
    fn checkpoints_of_other_logs_or_keys_are_refused() {
        let a = LogKey::from_pkcs8("a.example/log", &LogKey::generate_pkcs8().unwrap()).unwrap();
        let b = LogKey::from_pkcs8("a.example/log", &LogKey::generate_pkcs8().unwrap()).unwrap();
        let note = a.sign_checkpoint(3, tlog_tiles::EMPTY_HASH).unwrap().note;
        assert!(
            LogVerifier::new(&b.verifier_key())
                .unwrap()
                .open_checkpoint(note.as_bytes())
                .is_err()
        );
        let c = LogKey::from_pkcs8("c.example/log", &LogKey::generate_pkcs8().unwrap()).unwrap();
        let text = "a.example/log\n3\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n";
        let forged = c.sign_note(text).unwrap();
        assert!(
            LogVerifier::new(&c.verifier_key())
                .unwrap()
                .open_checkpoint(forged.as_bytes())
                .is_err()
        );
        assert!(LogKey::from_pkcs8("has space", &LogKey::generate_pkcs8().unwrap()).is_err());
    }

    proptest! {
        #[test]
        fn note_parser_never_panics(text in "\\PC{0,300}") {
            let v = LogVerifier::new("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k").unwrap();
            let _ = v.open_checkpoint(text.as_bytes());
            let _ = Checkpoint::from_bytes(text.as_bytes());
        }
    }
}
