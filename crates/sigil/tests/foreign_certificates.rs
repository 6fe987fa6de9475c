//! Certificates another CA issued (made here by openssl, as an old fleet CA would) imported
//! for the inventory and expiry tracking, with the README's commands: marked foreign, listed
//! with their expiry, audited, and never trusted (the API listener's mTLS still refuses them).
//! Bad bundles are refused whole and change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use serde_json::Value;

use common::{Db, TestServer, enrolled_device, json as json_out, openssl, s_client, sigil};

fn refused(out: std::process::Output, words: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(words),
        "{words:?} not in: {err}"
    );
}

/// The TLS handshake was refused for the client certificate (the server's alert: unknown CA,
/// or certificate unknown), and no request got through.
fn refused_handshake(out: &str) -> bool {
    !out.contains("HTTP/1.1 200")
        && (out.contains("alert unknown ca") || out.contains("alert certificate unknown"))
}

async fn foreign_certificates_are_tracked_never_trusted(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    let dir = s.dir.path();
    let product = s.create_product("Meter").await;
    let device = s.create_device(&product, "M-1").await;
    common::old_fleet_certificate(&s, "meter-1", "45");
    // Not trusted before the import...
    let before = s_client(&s, "meter-1.crt", "meter-1.key");
    assert!(refused_handshake(&before), "{before}");

    // The README's commands.
    let imported = json_out(sigil(
        &s,
        &[
            "cert",
            "foreign",
            "import",
            "--device",
            &device,
            "meter-1.crt",
            "--json",
        ],
    ));
    assert_eq!(imported["added"].as_array().unwrap().len(), 1, "{imported}");
    let again = json_out(sigil(
        &s,
        &[
            "cert",
            "foreign",
            "import",
            "--device",
            &device,
            "meter-1.crt",
            "--json",
        ],
    ));
    assert_eq!(again["already"], imported["added"], "{again}");
    let list = json_out(sigil(
        &s,
        &["cert", "foreign", "list", "--device", &device, "--json"],
    ));
    let [cert]: [Value; 1] = list["items"]
        .as_array()
        .unwrap()
        .clone()
        .try_into()
        .unwrap();
    assert_eq!(cert["trusted"], false);
    assert_eq!(cert["validity"], "valid");
    assert!(
        cert["subject"].as_str().unwrap().contains("meter-1"),
        "{cert}"
    );
    assert!(
        cert["issuer"].as_str().unwrap().contains("Old Fleet CA"),
        "{cert}"
    );
    // The expiry is openssl's own reading of the file.
    let end = openssl(
        dir,
        &[
            "x509",
            "-in",
            "meter-1.crt",
            "-noout",
            "-enddate",
            "-dateopt",
            "iso_8601",
        ],
    );
    let end = end.trim().trim_start_matches("notAfter=").replace(' ', "T");
    assert_eq!(cert["not_after"].as_str().unwrap(), end, "{cert}");
    let fingerprint = openssl(
        dir,
        &[
            "x509",
            "-in",
            "meter-1.crt",
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
    );
    let fingerprint = fingerprint
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_lowercase();
    assert_eq!(cert["sha256"], fingerprint);
    let (_, entries) = s
        .get("/api/v1/audit/entries?action=certificate.foreign-imported")
        .await;
    let entry = &entries["items"][0];
    assert_eq!(entry["subject"], format!("device:{device}"), "{entries}");
    assert_eq!(entry["details"]["trusted"], false);

    // An expired one is tracked as expired; the fleet's summary counts both by expiry.
    let old_ca = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = rcgen::Issuer::from_params(&ca_params, &old_ca);
    let mut leaf = rcgen::CertificateParams::new(vec!["meter-0".to_owned()]).unwrap();
    leaf.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(400);
    leaf.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(35);
    let expired = leaf
        .signed_by(&rcgen::KeyPair::generate().unwrap(), &issuer)
        .unwrap();
    std::fs::write(dir.join("meter-0.crt"), expired.pem()).unwrap();
    common::ok(sigil(
        &s,
        &[
            "cert",
            "foreign",
            "import",
            "--device",
            &device,
            "meter-0.crt",
        ],
    ));
    let list = json_out(sigil(
        &s,
        &["cert", "foreign", "list", "--device", &device, "--json"],
    ));
    assert_eq!(
        list["items"][0]["validity"], "expired",
        "soonest first: {list}"
    );
    let (_, summary) = s.get("/api/v1/inventory/summary").await;
    let windows: Vec<(i64, i64)> = summary["expiring"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["days"].as_i64().unwrap(),
                w["foreign_certificates"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(windows, [(7, 0), (30, 0), (90, 1)], "{summary}");
    assert_eq!(summary["foreign_expired"], 1, "{summary}");

    // ...nor after it: the import is a record, not trust.
    let after = s_client(&s, "meter-1.crt", "meter-1.key");
    assert!(refused_handshake(&after), "{after}");

    // Bad bundles change nothing.
    let rows = s.count("foreign_certificates").await;
    let (sigil_device, _) = enrolled_device(&s, &product, "M-2").await;
    std::fs::write(
        dir.join("junk.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let both = format!(
        "{}{}",
        std::fs::read_to_string(dir.join("meter-1.crt")).unwrap(),
        std::fs::read_to_string(dir.join("oldca.crt")).unwrap()
    );
    std::fs::write(dir.join("with-ca.pem"), both).unwrap();
    // A retired device holds no identity to track.
    let (st, retired) = s
        .post(
            &format!("/api/v1/devices/{sigil_device}/retire"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(st, 200, "{retired}");
    for (file, target, words) in [
        ("meter-1.crt", sigil_device.as_str(), "is retired"),
        ("oldca.crt", device.as_str(), "a CA certificate"),
        (
            "with-ca.pem",
            device.as_str(),
            "certificate 2: a CA certificate",
        ),
        (
            "M-2.crt",
            device.as_str(),
            "issued by (or in the name of) this Sigil",
        ),
        ("junk.pem", device.as_str(), "not an X.509 certificate"),
        ("meter-1.key", device.as_str(), "a PRIVATE KEY block"),
        (
            "meter-1.crt",
            "0190f1a8-7a3c-7cc4-8f00-000000000001",
            "not found",
        ),
    ] {
        refused(
            sigil(&s, &["cert", "foreign", "import", "--device", target, file]),
            words,
        );
    }
    assert_eq!(s.count("foreign_certificates").await, rows);
    let (_, refusals) = s
        .get("/api/v1/audit/entries?action=certificate.foreign-import")
        .await;
    assert!(
        !refusals["items"].as_array().unwrap().is_empty(),
        "refusals are audited"
    );

    // Removal, audited; the other certificate stays.
    common::ok(sigil(
        &s,
        &[
            "cert",
            "foreign",
            "remove",
            "--device",
            &device,
            &fingerprint,
        ],
    ));
    let list = json_out(sigil(
        &s,
        &["cert", "foreign", "list", "--device", &device, "--json"],
    ));
    let left: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["sha256"].as_str().unwrap())
        .collect();
    assert_eq!(left.len(), 1, "only the expired one is left: {list}");
    assert_ne!(left[0], fingerprint);
    let (_, removed) = s
        .get("/api/v1/audit/entries?action=certificate.foreign-removed")
        .await;
    assert_eq!(
        removed["items"][0]["details"]["sha256"],
        fingerprint.as_str()
    );
    refused(
        sigil(
            &s,
            &[
                "cert",
                "foreign",
                "remove",
                "--device",
                &device,
                &fingerprint,
            ],
        ),
        "not found",
    );
}
sigil_testkit::both_backends!(foreign_certificates_are_tracked_never_trusted);
