//! What the agent's update tests share: releases made through the real API.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use serde_json::json;

use sigil_testkit::TestServer;

/// Upload `content` and release it as `version` of `product` (target `VERSION/fw.bin`); the
/// artefact's SHA-256.
pub async fn release(s: &TestServer, product: &str, version: &str, content: &[u8]) -> String {
    let r = s
        .http
        .post(format!("{}/api/v1/artefacts", s.api))
        .bearer_auth(&s.token)
        .header("content-type", "application/octet-stream")
        .body(content.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let sha = r.json::<serde_json::Value>().await.unwrap()["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let (st, body) = s
        .post(
            &format!("/api/v1/products/{product}/releases"),
            json!({"version": version, "artefact_sha256": sha, "file_name": "fw.bin"}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    sha
}
