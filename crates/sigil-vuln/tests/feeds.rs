//! The vulnerability feeds: OSV archives (and the zip bombs one could be), the CISA KEV
//! catalogue and FIRST's EPSS scores; bad input refused with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;

use proptest::prelude::*;
use serde_json::json;

use sigil_vuln::archive::{MAX_GUNZIPPED_BYTES, gunzip, is_gzip, read_osv_archive};
use sigil_vuln::epss::EpssScores;
use sigil_vuln::kev::KevCatalogue;

fn zip_of(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in entries {
        zip.start_file(*name, options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    out.into_inner()
}

fn osv(id: &str) -> Vec<u8> {
    json!({"id": id, "modified": "2026-01-01T00:00:00Z",
           "affected": [{"package": {"ecosystem": "PyPI", "name": "p"},
                         "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}]})
    .to_string()
    .into_bytes()
}

#[test]
fn an_osv_archive_is_read_record_by_record() {
    let archive = zip_of(&[
        ("PYSEC-1.json", osv("PYSEC-1")),
        ("README.txt", b"not a record".to_vec()),
        ("GHSA-2.json", osv("GHSA-2")),
    ]);
    let mut ids = Vec::new();
    let stats = read_osv_archive(&archive, |r| {
        ids.push(r.id);
        Ok(())
    })
    .unwrap();
    assert_eq!(ids, ["PYSEC-1", "GHSA-2"]);
    assert_eq!((stats.records, stats.skipped), (2, 1));
}

#[test]
fn bombs_and_bad_archives_are_refused() {
    // 64 MiB of zeros deflates to about 64 KiB: refused as soon as it passes the record limit.
    let bomb = zip_of(&[("BOMB.json", vec![b' '; 64 * 1024 * 1024])]);
    assert!(bomb.len() < 1024 * 1024, "{}", bomb.len());
    let e = read_osv_archive(&bomb, |_| Ok(())).unwrap_err().to_string();
    assert!(e.contains("BOMB.json inflates past"), "{e}");

    let broken = zip_of(&[
        ("OK.json", osv("OK-1")),
        ("BAD.json", b"{\"id\": 3}".to_vec()),
    ]);
    let mut seen = 0;
    let e = read_osv_archive(&broken, |_| {
        seen += 1;
        Ok(())
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("BAD.json") && e.contains("line 1"), "{e}");
    assert_eq!(
        seen, 1,
        "records before the bad one were handed over: the caller must not keep them"
    );

    let e = read_osv_archive(b"PK\x03\x04 not really", |_| Ok(()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a zip archive"), "{e}");
}

#[test]
fn the_kev_catalogue() {
    let feed = json!({
        "title": "CISA Catalog of Known Exploited Vulnerabilities", "catalogVersion": "2026.12.01",
        "dateReleased": "2026-12-01T17:00:00.000Z", "count": 1,
        "vulnerabilities": [{"cveID": "CVE-2021-44228", "vendorProject": "Apache", "product": "Log4j2",
            "vulnerabilityName": "Apache Log4j2 Remote Code Execution Vulnerability",
            "dateAdded": "2021-12-10", "shortDescription": "...", "requiredAction": "Apply updates",
            "dueDate": "2021-12-24", "knownRansomwareCampaignUse": "Known", "notes": "", "cwes": ["CWE-20"]}]
    });
    let kev = KevCatalogue::parse(feed.to_string().as_bytes()).unwrap();
    assert_eq!(kev.vulnerabilities[0].cve_id, "CVE-2021-44228");
    assert_eq!(
        kev.vulnerabilities[0].due_date.as_deref(),
        Some("2021-12-24")
    );
    let mut bad = feed.clone();
    bad["vulnerabilities"][0]["cveID"] = json!("CVE-21-1");
    let e = KevCatalogue::parse(bad.to_string().as_bytes())
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a CVE id"), "{e}");
    let mut bad = feed;
    bad["vulnerabilities"][0]["dateAdded"] = json!("10/12/2021");
    let e = KevCatalogue::parse(bad.to_string().as_bytes())
        .unwrap_err()
        .to_string();
    assert!(e.contains("YYYY-MM-DD"), "{e}");
}

#[test]
fn epss_scores() {
    let csv = "#model_version:v2025.03.14,score_date:2026-12-01T12:55:00Z\ncve,epss,percentile\nCVE-2021-44228,0.94358,0.99961\nCVE-2024-22195,0.00123,0.41\n";
    let scores = EpssScores::parse(csv.as_bytes()).unwrap();
    assert_eq!(scores.model_version.as_deref(), Some("v2025.03.14"));
    assert_eq!(scores.scores.len(), 2);
    assert_eq!(scores.scores[0].0, "CVE-2021-44228");
    for (bad, words) in [
        ("cve,score\n", "header"),
        ("cve,epss,percentile\nCVE-2021-1,2.0,0.5\n", "line 2"),
        ("cve,epss,percentile\nnot-a-cve,0.1,0.5\n", "not a CVE id"),
        ("cve,epss,percentile\nCVE-2021-1234,0.1\n", "three columns"),
        ("", "no `cve,epss,percentile` header"),
    ] {
        let e = EpssScores::parse(bad.as_bytes()).unwrap_err().to_string();
        assert!(e.contains(words), "{bad:?}: {e}");
    }
}

proptest! {
    #[test]
    fn any_bytes_are_read_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = KevCatalogue::parse(&bytes);
        let _ = EpssScores::parse(&bytes);
        let _ = read_osv_archive(&bytes, |_| Ok(()));
        let mut gz = vec![0x1f, 0x8b];
        gz.extend(&bytes);
        let _ = gunzip(&gz);
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn gzipped_feeds_are_inflated_within_a_bound() {
    let csv = b"cve,epss,percentile\nCVE-2024-22195,0.00191,0.55\n";
    let gz = gzip(csv);
    assert!(is_gzip(&gz) && !is_gzip(csv));
    assert_eq!(gunzip(&gz).unwrap(), csv);
    // A bomb: a quarter of a megabyte that would inflate past the bound.
    let zeros = vec![0u8; usize::try_from(MAX_GUNZIPPED_BYTES).unwrap() + 1];
    let bomb = gzip(&zeros);
    drop(zeros);
    assert!(bomb.len() < 1024 * 1024, "{}", bomb.len());
    let e = gunzip(&bomb).unwrap_err().to_string();
    assert!(e.contains("inflates past"), "{e}");
    // Cut short, or not gzip after its magic bytes.
    assert!(gunzip(&gz[..gz.len() - 4]).is_err());
    assert!(
        gunzip(&[0x1f, 0x8b, 0, 0])
            .unwrap_err()
            .to_string()
            .contains("not a gzip file")
    );
}
