//! The RFC 6962 / RFC 9162 Merkle tree over stored hashes.
//!
//! Storage follows Go's `sumdb/tlog` (ported to Rust as `tlog_tiles`): every complete subtree's
//! hash is stored once, at a dense index ([`stored_hash_index`]), about two hashes per entry.
//! Appending entry `n` needs at most log2(n) earlier hashes (the "frontier": the roots of the
//! complete subtrees covering `[0, n)`); a root, an inclusion proof or a consistency proof
//! needs O(log n) of them. The storage layer reads hashes asynchronously, so every operation
//! here is split in two: first the indexes it needs, then the computation over those hashes.

use std::cell::RefCell;
use std::collections::HashMap;

pub use tlog_tiles::{EMPTY_HASH, Hash, node_hash, record_hash, stored_hash_index};
use tlog_tiles::{HashReader, sub_tree_index};

use crate::AuditError;

/// Longest proof accepted for checking: a tree of 2^64 leaves needs 64 hashes for an inclusion
/// proof and at most about twice that for consistency.
const MAX_PROOF_LEN: usize = 130;

/// The leaf hash of one canonical entry: SHA-256(0x00 || entry).
pub fn leaf_hash(canonical_entry: &str) -> Hash {
    record_hash(canonical_entry.as_bytes())
}

/// Where the leaf hash of entry `seq` is stored.
pub fn leaf_index(seq: u64) -> u64 {
    stored_hash_index(0, seq)
}

/// Hashes by stored index, as read from storage.
pub type Hashes = HashMap<u64, Hash>;

struct MapReader<'a>(&'a Hashes);

impl HashReader for MapReader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|i| {
                self.0
                    .get(i)
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

/// Answers with placeholders and remembers what was asked: the indexes an operation needs do
/// not depend on the hash values, so a dry run lists them.
#[derive(Default)]
struct IndexRecorder(RefCell<Vec<u64>>);

impl HashReader for IndexRecorder {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        self.0.borrow_mut().extend_from_slice(indexes);
        Ok(vec![EMPTY_HASH; indexes.len()])
    }
}

fn tree_error(e: tlog_tiles::Error) -> AuditError {
    AuditError::Tree(e.to_string())
}

/// The stored indexes an append at tree size `size` may read.
pub fn frontier_indexes(size: u64) -> Vec<u64> {
    if size == 0 {
        return Vec::new();
    }
    sub_tree_index(0, size, Vec::new())
}

/// Append `leaves` to a tree of size `start`. `known` must hold the hashes at
/// [`frontier_indexes`]`(start)`; it gains every new hash. Returns the new stored hashes, in
/// index order, ready to be written.
pub fn append(
    start: u64,
    leaves: &[Hash],
    known: &mut Hashes,
) -> Result<Vec<(u64, Hash)>, AuditError> {
    let mut written = Vec::with_capacity(leaves.len() * 2);
    for (offset, leaf) in leaves.iter().enumerate() {
        let n = start + offset as u64;
        let hashes = tlog_tiles::stored_hashes_for_record_hash(n, *leaf, &MapReader(known))
            .map_err(tree_error)?;
        let base = stored_hash_index(0, n);
        for (i, h) in hashes.into_iter().enumerate() {
            known.insert(base + i as u64, h);
            written.push((base + i as u64, h));
        }
    }
    Ok(written)
}

/// The stored indexes [`root`] reads.
pub fn root_indexes(size: u64) -> Vec<u64> {
    frontier_indexes(size)
}

/// The root hash of the tree of `size` leaves.
pub fn root(size: u64, hashes: &Hashes) -> Result<Hash, AuditError> {
    tlog_tiles::tree_hash(size, &MapReader(hashes)).map_err(tree_error)
}

/// The stored indexes [`inclusion_proof`] reads.
pub fn inclusion_proof_indexes(seq: u64, size: u64) -> Result<Vec<u64>, AuditError> {
    let recorder = IndexRecorder::default();
    tlog_tiles::prove_record(size, seq, &recorder).map_err(tree_error)?;
    Ok(recorder.0.into_inner())
}

/// The audit path proving entry `seq` is in the tree of `size` leaves (RFC 9162 §2.1.3).
pub fn inclusion_proof(seq: u64, size: u64, hashes: &Hashes) -> Result<Vec<Hash>, AuditError> {
    tlog_tiles::prove_record(size, seq, &MapReader(hashes)).map_err(tree_error)
}

/// The stored indexes [`consistency_proof`] reads.
pub fn consistency_proof_indexes(from: u64, to: u64) -> Result<Vec<u64>, AuditError> {
    if from == 0 && to > 0 {
        return Ok(Vec::new());
    }
    let recorder = IndexRecorder::default();
    tlog_tiles::prove_tree(to, from, &recorder).map_err(tree_error)?;
    Ok(recorder.0.into_inner())
}

/// The proof that the tree of `to` leaves extends the tree of `from` leaves (RFC 9162 §2.1.4).
/// Every tree extends the empty one, with an empty proof.
pub fn consistency_proof(from: u64, to: u64, hashes: &Hashes) -> Result<Vec<Hash>, AuditError> {
    if from == 0 && to > 0 {
        return Ok(Vec::new());
    }
    tlog_tiles::prove_tree(to, from, &MapReader(hashes)).map_err(tree_error)
}

/// Check that `leaf` is entry `seq` of the tree of `size` leaves with root `root`.
pub fn verify_inclusion(
    proof: &[Hash],
    size: u64,
    root: Hash,
    seq: u64,
    leaf: Hash,
) -> Result<(), AuditError> {
    if seq >= size {
        return Err(AuditError::Proof(format!(
            "entry {seq} is outside a tree of {size} entries"
        )));
    }
    if proof.len() > MAX_PROOF_LEN {
        return Err(AuditError::Proof("proof too long".into()));
    }
    tlog_tiles::check_record(&proof.to_vec(), size, root, seq, leaf).map_err(|_| {
        AuditError::Proof(format!(
            "entry {seq} is not in the tree of size {size} with root {root}"
        ))
    })
}

/// Check that the tree (`to`, `to_root`) extends the tree (`from`, `from_root`).
pub fn verify_consistency(
    proof: &[Hash],
    from: u64,
    from_root: Hash,
    to: u64,
    to_root: Hash,
) -> Result<(), AuditError> {
    let inconsistent = || {
        AuditError::Proof(format!(
            "the tree of size {to} (root {to_root}) does not extend the tree of size {from} (root {from_root})"
        ))
    };
    if from > to {
        return Err(AuditError::Proof(format!(
            "size {to} is smaller than the earlier size {from}: the log shrank"
        )));
    }
    if proof.len() > MAX_PROOF_LEN {
        return Err(AuditError::Proof("proof too long".into()));
    }
    if from == 0 {
        return if proof.is_empty() && from_root == EMPTY_HASH {
            Ok(())
        } else {
            Err(inconsistent())
        };
    }
    tlog_tiles::check_tree(&proof.to_vec(), to, to_root, from, from_root)
        .map_err(|_| inconsistent())
}

/// The right edge of a tree, for computing roots while streaming leaves through in order, in
/// O(log n) memory. (The stored-hash functions above need random access to every hash; an
/// offline verifier reading a multi-gigabyte export should not.)
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    size: u64,
    /// Roots of the complete subtrees covering `[0, size)`, largest (leftmost) first.
    peaks: Vec<Hash>,
}

impl Frontier {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        // Each trailing one bit of the old size is a complete subtree the new leaf completes.
        let mut n = self.size;
        while n & 1 == 1 {
            if let Some(left) = self.peaks.pop() {
                hash = node_hash(left, hash);
            }
            n >>= 1;
        }
        self.peaks.push(hash);
        self.size += 1;
    }

    /// The RFC 6962 root of the leaves pushed so far.
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(mut hash) = peaks.next().copied() else {
            return EMPTY_HASH;
        };
        for left in peaks {
            hash = node_hash(*left, hash);
        }
        hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(hex_str: &str) -> Hash {
        let bytes = hex::decode(hex_str).unwrap();
        Hash(bytes.try_into().unwrap())
    }

    /// The Certificate Transparency reference leaves and the root of every prefix (the RFC 6962
    /// test vectors of the CT reference implementation).
    const CT_LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const CT_ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn ct_tree() -> (Vec<Hash>, Hashes) {
        let leaves: Vec<Hash> = CT_LEAVES
            .iter()
            .map(|l| record_hash(&hex::decode(l).unwrap()))
            .collect();
        let mut known = Hashes::new();
        append(0, &leaves, &mut known).unwrap();
        (leaves, known)
    }

    #[test]
    fn rfc6962_reference_roots() {
        let (leaves, known) = ct_tree();
        let mut frontier = Frontier::default();
        assert_eq!(frontier.root(), h(CT_ROOTS[0]));
        for size in 1..=8u64 {
            assert_eq!(
                root(size, &known).unwrap(),
                h(CT_ROOTS[size as usize]),
                "size {size}"
            );
            frontier.push(leaves[size as usize - 1]);
            assert_eq!(
                frontier.root(),
                h(CT_ROOTS[size as usize]),
                "frontier size {size}"
            );
        }
    }

    #[test]
    fn rfc6962_reference_proofs() {
        let (leaves, known) = ct_tree();
        let root8 = h(CT_ROOTS[8]);
        let cases: [(u64, [&str; 3]); 2] = [
            (
                0,
                [
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                [
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
        ];
        for (seq, want) in cases {
            let proof = inclusion_proof(seq, 8, &known).unwrap();
            assert_eq!(proof, want.map(h).to_vec(), "entry {seq}");
            verify_inclusion(&proof, 8, root8, seq, leaves[seq as usize]).unwrap();
        }
        let consistency = consistency_proof(2, 8, &known).unwrap();
        assert_eq!(
            consistency,
            vec![
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ]
        );
        verify_consistency(&consistency, 2, h(CT_ROOTS[2]), 8, root8).unwrap();
        assert!(verify_consistency(&consistency, 2, h(CT_ROOTS[3]), 8, root8).is_err());
        assert!(verify_consistency(&[], 0, EMPTY_HASH, 8, root8).is_ok());
        assert!(verify_consistency(&[], 8, root8, 2, h(CT_ROOTS[2])).is_err());
    }

    #[test]
    fn index_dry_runs_list_exactly_what_is_read() {
        let (_, known) = ct_tree();
        for size in 1..=8u64 {
            for seq in 0..size {
                let need: Hashes = inclusion_proof_indexes(seq, size)
                    .unwrap()
                    .into_iter()
                    .map(|i| (i, known[&i]))
                    .collect();
                assert_eq!(
                    inclusion_proof(seq, size, &need).unwrap(),
                    inclusion_proof(seq, size, &known).unwrap()
                );
            }
            for from in 0..=size {
                let need: Hashes = consistency_proof_indexes(from, size)
                    .unwrap()
                    .into_iter()
                    .map(|i| (i, known[&i]))
                    .collect();
                assert_eq!(
                    consistency_proof(from, size, &need).unwrap(),
                    consistency_proof(from, size, &known).unwrap()
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Appending in batches of any sizes, reading only the frontier, gives the same tree as
        /// the streaming frontier; every inclusion and consistency proof verifies, and a proof
        /// for a different leaf or size does not.
        #[test]
        fn batched_appends_and_proofs(batches in proptest::collection::vec(1usize..20, 1..8), probe in any::<u64>()) {
            let mut store = Hashes::new();
            let mut frontier = Frontier::default();
            let mut roots = vec![EMPTY_HASH];
            let mut leaves = Vec::new();
            for batch in batches {
                let start = frontier.size();
                let mut known: Hashes = frontier_indexes(start).into_iter().map(|i| (i, store[&i])).collect();
                let new: Vec<Hash> = (0..batch).map(|i| record_hash(format!("{}", start + i as u64).as_bytes())).collect();
                for (i, hash) in append(start, &new, &mut known).unwrap() {
                    prop_assert!(store.insert(i, hash).is_none(), "index {} written twice", i);
                }
                for leaf in new {
                    frontier.push(leaf);
                    leaves.push(leaf);
                    roots.push(frontier.root());
                }
            }
            let size = frontier.size();
            for s in 1..=size {
                prop_assert_eq!(root(s, &store).unwrap(), roots[s as usize]);
            }
            let seq = probe % size;
            let proof = inclusion_proof(seq, size, &store).unwrap();
            prop_assert!(verify_inclusion(&proof, size, roots[size as usize], seq, leaves[seq as usize]).is_ok());
            let other = (seq + 1) % size;
            if other != seq {
                prop_assert!(verify_inclusion(&proof, size, roots[size as usize], other, leaves[seq as usize]).is_err());
                prop_assert!(verify_inclusion(&proof, size, roots[size as usize], seq, leaves[other as usize]).is_err());
            }
            let from = probe % (size + 1);
            let proof = consistency_proof(from, size, &store).unwrap();
            prop_assert!(verify_consistency(&proof, from, roots[from as usize], size, roots[size as usize]).is_ok());
            if from > 0 && from < size {
                prop_assert!(verify_consistency(&proof, from, roots[from as usize + 1], size, roots[size as usize]).is_err());
            }
        }

        /// Arbitrary proofs and sizes never panic the checkers.
        #[test]
        fn checkers_never_panic(proof in proptest::collection::vec(any::<[u8; 32]>(), 0..70),
                                a in any::<u64>(), b in any::<u64>(), x in any::<[u8; 32]>()) {
            let proof: Vec<Hash> = proof.into_iter().map(Hash).collect();
            let _ = verify_inclusion(&proof, a, Hash(x), b, Hash(x));
            let _ = verify_consistency(&proof, a, Hash(x), b, Hash(x));
        }
    }
}
