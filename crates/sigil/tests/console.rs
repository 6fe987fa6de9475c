//! The web console in a real browser: Debian's Chromium, driven over WebDriver (chromedriver,
//! thirtyfour), against the real server over real TLS. The browser trusts exactly the server's
//! TLS key (its SPKI hash pinned), not any certificate. Each page is checked for its real
//! data, for WCAG 2.1 A/AA violations with axe-core, and saved as a screenshot under
//! `target/test-artefacts/console/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use thirtyfour::prelude::*;

use common::operators::{audit, create_operator, password, totp_code};
use common::{Db, TestServer, enrolled_device, openssl_ocsp};

/// A headless Chromium session through its own chromedriver.
struct Browser {
    driver: WebDriver,
    chromedriver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn open(s: &TestServer) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let chromedriver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian chromium-driver) is installed");
        let profile = tempfile::tempdir().unwrap();
        let mut caps = DesiredCapabilities::chrome();
        caps.set_binary("/usr/bin/chromium").unwrap();
        for arg in [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--window-size=1280,900".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
            // Trust this server's key and nothing else (honoured with a user data dir).
            format!("--ignore-certificate-errors-spki-list={}", server_spki(s)),
        ] {
            caps.add_arg(&arg).unwrap();
        }
        let url = format!("http://127.0.0.1:{port}");
        let mut last = None;
        for _ in 0..50 {
            match WebDriver::new(&url, caps.clone()).await {
                Ok(driver) => {
                    return Self {
                        driver,
                        chromedriver,
                        _profile: profile,
                    };
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("chromedriver did not start: {last:?}");
    }

    async fn close(mut self) {
        let _ = self.driver.clone().quit().await;
        let _ = self.chromedriver.kill();
        let _ = self.chromedriver.wait();
    }
}

/// Base64 SHA-256 of the API listener's public key, as Chromium's SPKI allow-list wants it.
fn server_spki(s: &TestServer) -> String {
    let port = s.api.rsplit(':').next().unwrap();
    let script = format!(
        "openssl s_client -connect 127.0.0.1:{port} -servername localhost </dev/null 2>/dev/null \
         | openssl x509 -pubkey -noout | openssl pkey -pubin -outform der \
         | openssl dgst -sha256 -binary | base64"
    );
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    let spki = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(spki.len(), 44, "an SPKI hash: {spki:?}");
    spki
}

fn artefacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artefacts/console");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// axe-core's WCAG 2.1 A and AA rules over the page now shown; panics listing any violation.
async fn assert_accessible(driver: &WebDriver, page: &str) {
    let axe = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tools/console/node_modules/axe-core/axe.min.js");
    let axe = std::fs::read_to_string(&axe)
        .unwrap_or_else(|e| panic!("{}: {e} (npm ci --prefix tools/console)", axe.display()));
    let script = format!(
        "{axe}\nreturn axe.run(document, {{runOnly: {{type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}}}})\
         .then(r => ({{passes: r.passes.length, violations: r.violations.map(v => v.id + ': ' + v.help + ' @ ' + v.nodes.map(n => n.target.join(' ')).join(', '))}}));"
    );
    let result = driver.execute(&script, vec![]).await.unwrap();
    let result = result.json();
    let violations: Vec<String> = serde_json::from_value(result["violations"].clone()).unwrap();
    assert!(
        violations.is_empty(),
        "{page}: WCAG violations: {violations:#?}"
    );
    // The rules ran: a page this size passes dozens of them.
    assert!(result["passes"].as_u64().unwrap() > 10, "{page}: {result}");
}

/// Check the page, then keep its screenshot as a test artefact.
async fn check_page(driver: &WebDriver, name: &str) {
    assert_accessible(driver, name).await;
    driver
        .screenshot(&artefacts().join(format!("{name}.png")))
        .await
        .unwrap();
}

async fn body_text(driver: &WebDriver) -> String {
    let text = driver
        .execute("return document.body.innerText;", vec![])
        .await
        .unwrap();
    text.json().as_str().unwrap_or_default().to_owned()
}

/// Press Tab until the focused element's text is `label` (at most 60 presses), then Enter:
/// the action is reachable by keyboard alone.
async fn keyboard_activate(driver: &WebDriver, label: &str) {
    for _ in 0..60 {
        let focused = driver.active_element().await.unwrap();
        if focused.text().await.unwrap_or_default().trim() == label {
            focused.send_keys(Key::Enter).await.unwrap();
            return;
        }
        focused.send_keys(Key::Tab).await.unwrap();
    }
    panic!("`{label}` is not reachable with the Tab key");
}

async fn log_in(driver: &WebDriver, s: &TestServer, username: &str, totp: Option<&str>) {
    driver.goto(format!("{}/ui", s.api)).await.unwrap();
    // Not logged in: the console sends the person to its login page, and back afterwards.
    let url = driver.current_url().await.unwrap();
    assert_eq!(url.path(), "/ui/login", "{url}");
    type_into(driver, "username", username).await;
    type_into(driver, "password", &password(username)).await;
    if let Some(code) = totp {
        driver
            .find(By::Id("totp"))
            .await
            .unwrap()
            .send_keys(code)
            .await
            .unwrap();
    }
    driver
        .find(By::Css("form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(driver, "h1", "Overview").await;
}

/// Put the keyboard focus at the start of the page's main content.
async fn focus_main(driver: &WebDriver) {
    driver
        .find(By::Css("main"))
        .await
        .unwrap()
        .focus()
        .await
        .unwrap();
}

/// Type `text` into the field with id `id`.
async fn type_into(driver: &WebDriver, id: &str, text: &str) {
    driver
        .find(By::Id(id))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

/// Wait (up to 15 s) until an element matching `css` holds `text`: asked of the document as it
/// is each time, so a page still navigating away is never read half-gone.
async fn wait_for(driver: &WebDriver, css: &str, text: &str) {
    let script = "return Array.from(document.querySelectorAll(arguments[0])).some(e => e.textContent.includes(arguments[1]));";
    for _ in 0..150 {
        if let Ok(found) = driver.execute(script, vec![json!(css), json!(text)]).await
            && found.json() == &json!(true)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no `{css}` with `{text}` in: {}", body_text(driver).await);
}

/// A device's own report of a port scan raises a critical alarm that quarantines it: the
/// alarms page lists it with the detector's state, the alarm's page explains it and takes the
/// decision, and the device's page shows the quarantine and releases it (second factor).
async fn an_alarm_is_handled(driver: &WebDriver, s: &TestServer, product: &str) {
    let (device, _) = enrolled_device(s, product, "gw-0009").await;
    let endpoints: Vec<String> = (1..=60).map(|p| format!("10.0.0.9:{p}")).collect();
    let answer = common::metrics_report(s, "gw-0009", &json!({"destination_endpoints": endpoints}));
    assert!(answer.ends_with(" 202"), "{answer}");
    driver.goto(format!("{}/ui/alarms", s.api)).await.unwrap();
    for _ in 0..150 {
        if body_text(driver).await.contains("port-scan") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        driver.refresh().await.unwrap();
    }
    wait_for(driver, "table.list", "port-scan").await;
    let text = body_text(driver).await;
    assert!(
        text.contains("running on the in-process bus") && text.contains("critical"),
        "{text}"
    );
    check_page(driver, "alarms").await;
    driver
        .find(By::Css("table.list tbody tr td a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(driver, "h1", "Alarm: port-scan").await;
    let text = body_text(driver).await;
    assert!(
        text.contains("destination_endpoints distinct over 60 s is 60, above the bound 50")
            && text.contains("Why it was raised"),
        "{text}"
    );
    check_page(driver, "alarm").await;
    type_into(driver, "d-note", "isolating the gateway").await;
    keyboard_activate(driver, "Record the decision").await;
    wait_for(driver, "p.done", "Decision recorded.").await;
    wait_for(driver, "section", "Decided acknowledged by").await;

    driver
        .goto(format!("{}/ui/devices/{device}", s.api))
        .await
        .unwrap();
    wait_for(driver, "p.quarantined", "Quarantined").await;
    focus_main(driver).await;
    keyboard_activate(driver, "Release from quarantine").await;
    wait_for(driver, "h1", "Release from quarantine: device gw-0009?").await;
    check_page(driver, "confirm-release").await;
    type_into(driver, "reason", "reflashed").await;
    keyboard_activate(driver, "Release from quarantine device gw-0009").await;
    wait_for(driver, "p.done", "Done: release from quarantine.").await;
    wait_for(driver, "section", "Not quarantined.").await;
    let (_, state) = s.get(&format!("/api/v1/devices/{device}/monitoring")).await;
    assert!(state["quarantined_since"].is_null(), "{state}");
    let (_, alarm) = s.get(&format!("/api/v1/alarms?device={device}")).await;
    assert_eq!(alarm["items"][0]["note"], "isolating the gateway");
}

/// A certificate from an old fleet CA (made by openssl) recorded from the device page: listed
/// with its expiry, marked never trusted.
async fn record_foreign(driver: &WebDriver, s: &TestServer, device: &str) {
    let dir = s.dir.path();
    common::old_fleet_certificate(s, "old-gw", "20");
    type_into(
        driver,
        "foreign-file",
        dir.join("old-gw.crt").to_str().unwrap(),
    )
    .await;
    driver
        .find(By::XPath("//button[text()='Record them']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(driver, "main", "Certificates recorded").await;
    wait_for(
        driver,
        "section[aria-labelledby=foreign-h] table",
        "Old Fleet CA",
    )
    .await;
    let (_, list) = s
        .get(&format!("/api/v1/devices/{device}/foreign-certificates"))
        .await;
    assert_eq!(list["items"][0]["trusted"], false, "{list}");
    check_page(driver, "device-foreign").await;
}

/// From the product page: a rollout of a new release started from the form, then paused with
/// a reason; the API's rollout and the audit log say so.
async fn start_and_pause_a_rollout(driver: &WebDriver, s: &TestServer, product: &str) {
    enrolled_device(s, product, "gw-0003").await;
    let image = s.dir.path().join("fw-1.1.0.bin");
    std::fs::write(&image, b"firmware 1.1.0").unwrap();
    common::ok(common::sigil(
        s,
        &[
            "release",
            "upload",
            "--product",
            product,
            "--version",
            "1.1.0",
            "--file",
            image.to_str().unwrap(),
            "--name",
            "firmware.bin",
        ],
    ));
    driver.refresh().await.unwrap();
    wait_for(driver, "h3", "Start a rollout").await;
    let groups = driver.find(By::Id("groups")).await.unwrap();
    groups.clear().await.unwrap();
    groups.send_keys("50, 100").await.unwrap();
    driver
        .find(By::XPath("//button[text()='Start the rollout']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(driver, "button", "Pause: release 1.1.0").await;
    check_page(driver, "product-rollout").await;
    let (_, rollouts) = s.get(&format!("/api/v1/products/{product}/rollouts")).await;
    let id = rollouts["items"][0]["id"].as_str().unwrap().to_owned();
    driver
        .find(By::Id(format!("reason-{id}")))
        .await
        .unwrap()
        .send_keys("maintenance window at the plant")
        .await
        .unwrap();
    driver
        .find(By::XPath("//button[text()='Pause: release 1.1.0']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(driver, "button", "Resume: release 1.1.0").await;
    let (_, rollout) = s.get(&format!("/api/v1/rollouts/{id}")).await;
    assert_eq!(rollout["state"], "paused", "{rollout}");
    let (_, paused) = s.get("/api/v1/audit/entries?action=rollout.paused").await;
    // The device's page shows its part in the rollout.
    let (_, devices) = s.get("/api/v1/devices?q=gw-0003").await;
    let gw3 = devices["items"][0]["id"].as_str().unwrap().to_owned();
    let (_, updates) = s.get(&format!("/api/v1/devices/{gw3}/updates")).await;
    assert_eq!(updates["items"][0]["release_version"], "1.1.0", "{updates}");
    assert_eq!(updates["items"][0]["rollout_state"], "paused", "{updates}");
    driver
        .goto(format!("{}/ui/devices/{gw3}", s.api))
        .await
        .unwrap();
    wait_for(driver, "section[aria-labelledby=updates-h] table", "paused").await;
    driver.back().await.unwrap();
    let reason = paused["items"][0]["details"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("paused by ") && reason.ends_with(": maintenance window at the plant"),
        "{paused}"
    );
}

/// At a tablet's width (768 px) every page fits: nothing makes the page itself scroll
/// sideways (wide tables scroll inside their own box). A screenshot of each is kept.
async fn reads_on_a_tablet(driver: &WebDriver, s: &TestServer, device: &str) {
    driver.set_window_rect(0, 0, 768, 1024).await.unwrap();
    for (name, path) in [
        ("overview", "/ui".to_owned()),
        ("devices", "/ui/devices".to_owned()),
        ("device", format!("/ui/devices/{device}")),
        ("products", "/ui/products".to_owned()),
        ("compliance", "/ui/compliance/eu-cra".to_owned()),
        ("audit", "/ui/audit".to_owned()),
        ("access", "/ui/access".to_owned()),
    ] {
        driver.goto(format!("{}{path}", s.api)).await.unwrap();
        let widths = driver
            .execute(
                "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];",
                vec![],
            )
            .await
            .unwrap();
        let widths: (u64, u64) = serde_json::from_value(widths.json().clone()).unwrap();
        assert!(
            widths.0 <= widths.1,
            "{path} scrolls sideways at 768 px: {widths:?}"
        );
        driver
            .screenshot(&artefacts().join(format!("tablet-{name}.png")))
            .await
            .unwrap();
    }
    driver.set_window_rect(0, 0, 1280, 900).await.unwrap();
}

/// A table's column header sorts it in the page, both ways, from the keyboard too.
async fn sorts_in_the_page(driver: &WebDriver) {
    let titles = || async {
        let cells = driver
            .execute(
                "return Array.from(document.querySelectorAll('main table tbody tr td:first-child')).map(c => c.innerText.trim());",
                vec![],
            )
            .await
            .unwrap();
        serde_json::from_value::<Vec<String>>(cells.json().clone()).unwrap()
    };
    let before = titles().await;
    assert!(before.len() >= 5, "{before:?}");
    let mut ascending = before.clone();
    ascending.sort_by_key(|t| t.to_lowercase());
    let button = driver
        .find(By::XPath("//th/button[normalize-space()='Framework']"))
        .await
        .unwrap();
    button.send_keys(Key::Enter).await.unwrap();
    assert_eq!(titles().await, ascending);
    driver
        .find(By::Css("th[aria-sort=ascending] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let mut descending = ascending.clone();
    descending.reverse();
    assert_eq!(titles().await, descending);
    driver
        .find(By::Css("th[aria-sort=descending]"))
        .await
        .unwrap();
    check_page(driver, "compliance-sorted").await;
}

/// The serial numbers in the device table, top to bottom.
async fn listed_serials(driver: &WebDriver) -> Vec<String> {
    let cells = driver
        .execute(
            "return Array.from(document.querySelectorAll('table.list tbody tr td:first-child')).map(c => c.innerText);",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(cells.json().clone()).unwrap()
}

/// The device list searched from the keyboard, sorted by its column headers both ways, and
/// filtered by compliance status.
async fn search_and_sort(driver: &WebDriver, s: &TestServer) {
    driver.goto(format!("{}/ui/devices", s.api)).await.unwrap();
    let search = driver.find(By::Id("f-q")).await.unwrap();
    search.send_keys("SN-100").await.unwrap();
    search.send_keys(Key::Enter).await.unwrap();
    for _ in 0..50 {
        if listed_serials(driver).await.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut serials = listed_serials(driver).await;
    serials.sort();
    assert_eq!(serials, ["SN-1001", "SN-1002", "SN-1003"]);
    let header = |sort: &'static str| async move {
        driver
            .find(By::Css(format!("th[aria-sort={sort}] a")))
            .await
            .unwrap()
    };
    driver
        .find(By::LinkText("Serial number"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    header("ascending").await;
    assert_eq!(
        listed_serials(driver).await,
        ["SN-1001", "SN-1002", "SN-1003"]
    );
    header("ascending").await.click().await.unwrap();
    header("descending").await;
    assert_eq!(
        listed_serials(driver).await,
        ["SN-1003", "SN-1002", "SN-1001"]
    );
    check_page(driver, "devices-sorted").await;
    // Failing any framework: the search and the order are kept.
    let choice = driver
        .find(By::Css("#f-compliance option[value=fail]"))
        .await
        .unwrap();
    choice.click().await.unwrap();
    driver
        .find(By::Css("form.filters button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    for _ in 0..50 {
        if driver
            .current_url()
            .await
            .unwrap()
            .as_str()
            .contains("compliance=fail")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = driver.current_url().await.unwrap();
    assert!(
        url.as_str().contains("compliance=fail") && url.as_str().contains("q=SN-100"),
        "{url}"
    );
    let (_, api) = s
        .get("/api/v1/devices?q=SN-100&compliance=fail&sort=-serial")
        .await;
    let expected: Vec<&str> = api["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["serial_number"].as_str().unwrap())
        .collect();
    assert_eq!(listed_serials(driver).await, expected);
    check_page(driver, "devices-failing").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_security_officer_runs_the_fleet_and_an_auditor_only_reads_it() {
    let Some(s) = TestServer::start(Db::Sqlite).await else {
        return;
    };
    let product = s.create_product("Gateway").await;
    let (device, _) = enrolled_device(&s, &product, "gw-0001").await;
    // A spreadsheet import brought markup into a field: it must show as text.
    let hostile = "<script>document.title='owned'</script><img src=x onerror=alert(1)>";
    let (st, other) = s
        .post(
            "/api/v1/devices",
            json!({"product_id": product, "serial_number": "gw-0002", "owner": hostile, "site": "plant-1", "tags": ["line-a"]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{other}");
    // An SBOM from a real generator and a published advisory: the overview counts the open
    // finding (jinja2 3.1.2, GHSA-h5c8-rqwp-cp95).
    common::upload_python_sbom(&s, &product, "2.0.0", ("JSON", "1.6"));
    let advisory = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../sigil-vuln/tests/fixtures/osv/GHSA-h5c8-rqwp-cp95.json");
    common::ok(common::sigil(
        &s,
        &["vulndb", "import", advisory.to_str().unwrap()],
    ));
    // Two compliance runs: the overview draws each framework's trend from its history.
    for _ in 0..2 {
        let (st, run) = s
            .post("/api/v1/compliance/eu-cra/evaluate", json!({}))
            .await;
        assert_eq!(st, StatusCode::OK, "{run}");
    }
    let officer = create_operator(&s, "olga", "security-officer").await;
    let seed = officer["totp_secret"].as_str().unwrap().to_owned();
    create_operator(&s, "avery", "auditor").await;

    let browser = Browser::open(&s).await;
    let driver = &browser.driver;
    log_in(driver, &s, "olga", Some(&totp_code(&seed, 0))).await;

    // Overview: the fleet by state, expiring certificates, compliance with its trend chart.
    let text = body_text(driver).await;
    assert!(text.contains("2 devices in 1 products"), "{text}");
    assert!(
        text.contains("olga (security-officer, second factor)"),
        "{text}"
    );
    wait_for(
        driver,
        "section[aria-labelledby=findings-h] table",
        "Gateway",
    )
    .await;
    let chart = driver.find(By::Css("svg.trend polyline")).await.unwrap();
    assert!(chart.attr("points").await.unwrap().unwrap().contains(' '));
    check_page(driver, "overview").await;

    // Devices: the list, filtered by site, and the hostile owner shown as text.
    driver
        .goto(format!("{}/ui/devices?site=plant-1", s.api))
        .await
        .unwrap();
    let rows = driver
        .find_all(By::Css("table.list tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "only the plant-1 device");
    let owner_cell = rows[0].find_all(By::Tag("td")).await.unwrap()[3]
        .text()
        .await
        .unwrap();
    assert_eq!(owner_cell, hostile, "markup in a field is text, not markup");
    assert_ne!(driver.title().await.unwrap(), "owned");
    assert!(
        driver
            .source()
            .await
            .unwrap()
            .contains("&lt;script&gt;document.title=")
    );
    check_page(driver, "devices").await;

    // The device page: identity, certificate, compliance, audit trail.
    driver
        .goto(format!("{}/ui/devices/{device}", s.api))
        .await
        .unwrap();
    let text = body_text(driver).await;
    for expected in [
        "Identity",
        "urn:",
        "Certificates",
        "Compliance",
        "Audit trail",
        "certificate.issued",
    ] {
        assert!(
            text.contains(expected),
            "`{expected}` on the device page: {text}"
        );
    }
    check_page(driver, "device").await;

    // Revoke it from its page with the keyboard alone; the confirmation names the consequence.
    focus_main(driver).await;
    keyboard_activate(driver, "Revoke certificates").await;
    wait_for(driver, "h1", "Revoke certificates: device gw-0001?").await;
    let text = body_text(driver).await;
    assert!(
        text.contains("OCSP and the CRL say so") && text.contains("cannot be undone"),
        "{text}"
    );
    check_page(driver, "confirm-revoke").await;
    type_into(driver, "reason", "Key compromise").await;
    keyboard_activate(driver, "Revoke certificates device gw-0001").await;
    wait_for(driver, "p.done", "Done: revoke certificates.").await;
    let answer = openssl_ocsp(&s, &["-cert", "gw-0001.crt"]);
    assert!(answer.contains("gw-0001.crt: revoked"), "{answer}");
    assert!(answer.contains("Reason: keyCompromise"), "{answer}");

    // The revocation in the audit log, its inclusion proof checked in the browser against a
    // signed checkpoint (WebCrypto, not the server's code); a changed entry fails the check.
    let (st, _) = s.post("/api/v1/audit/checkpoint", json!({})).await;
    assert_eq!(st, StatusCode::OK);
    driver
        .goto(format!("{}/ui/audit?action=certificate.revoked", s.api))
        .await
        .unwrap();
    check_page(driver, "audit").await;
    // A long download shows its progress, then what it received.
    driver
        .find(By::PartialLinkText("Export an evidence bundle"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(driver, "[data-progress-status]", "Done:").await;
    let status = driver
        .find(By::Css("[data-progress-status] a"))
        .await
        .unwrap();
    assert!(status.text().await.unwrap().contains(".tar"));
    let link = driver
        .find(By::Css("table.list tbody tr td a"))
        .await
        .unwrap();
    link.click().await.unwrap();
    wait_for(driver, "[data-result]", "Verified in your browser").await;
    check_page(driver, "audit-entry").await;
    driver
        .execute(
            "const box = document.querySelector('[data-inclusion-proof]'); \
             box.dataset.entry = box.dataset.entry.replace('keyCompromise', 'unspecified'); \
             box.querySelector('[data-check-again]').click();",
            vec![],
        )
        .await
        .unwrap();
    wait_for(
        driver,
        "[data-result]",
        "Not verified: the entry's bytes do not hash",
    )
    .await;

    an_alarm_is_handled(driver, &s, &product).await;

    // Products: the list, and a product's page with its sections.
    driver.goto(format!("{}/ui/products", s.api)).await.unwrap();
    check_page(driver, "products").await;
    driver
        .find(By::LinkText("Gateway"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(driver, "h1", "Gateway").await;
    let text = body_text(driver).await;
    for expected in [
        "Declaration",
        "Manufacturer CAs",
        "Releases",
        "Rollouts",
        "Vulnerability findings",
    ] {
        assert!(
            text.contains(expected),
            "`{expected}` on the product page: {text}"
        );
    }
    check_page(driver, "product").await;
    start_and_pause_a_rollout(driver, &s, &product).await;

    // Compliance: the frameworks, one framework's requirements with the failing devices, an
    // attestation recorded with its document, and reports downloaded in each format.
    driver
        .goto(format!("{}/ui/compliance", s.api))
        .await
        .unwrap();
    check_page(driver, "compliance").await;
    sorts_in_the_page(driver).await;
    driver
        .find(By::PartialLinkText("Cyber Resilience"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(driver, "h2", "Requirements").await;
    check_page(driver, "compliance-framework").await;
    let text = body_text(driver).await;
    assert!(
        text.contains("Failing or undecided, with evidence"),
        "{text}"
    );
    let document = s.dir.path().join("disclosure-policy.txt");
    std::fs::write(
        &document,
        "Our coordinated vulnerability disclosure policy.",
    )
    .unwrap();
    type_into(driver, "attested_by", "Ada Lovelace, CISO").await;
    type_into(driver, "statement", "The policy is published and followed.").await;
    type_into(driver, "document", document.to_str().unwrap()).await;
    // A date input takes the digits of its locale's order; set it as a person's picker would.
    driver
        .execute(
            "document.getElementById('expires').value = '2027-06-30';",
            vec![],
        )
        .await
        .unwrap();
    driver
        .find(By::Css("form.edit button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(driver, "p.done", "Attestation recorded.").await;
    let (_, attestations) = s.get("/api/v1/compliance/attestations").await;
    assert_eq!(
        attestations[0]["attested_by"], "Ada Lovelace, CISO",
        "{attestations}"
    );
    assert_eq!(attestations[0]["document_name"], "disclosure-policy.txt");
    let recorded = audit(&s, "compliance.attested").await;
    assert!(!recorded.is_empty(), "the attestation is in the audit log");
    for (format, expected) in [
        ("oscal", "assessment-results"),
        ("html", "<!DOCTYPE html>"),
        ("csv", "requirement"),
    ] {
        let got = driver
            .execute(
                "return fetch(arguments[0]).then(r => r.text());",
                vec![json!(format!("/ui/compliance/eu-cra/report/{format}"))],
            )
            .await
            .unwrap();
        let got = got.json().as_str().unwrap_or_default().to_owned();
        assert!(
            got.contains(expected),
            "{format}: {}",
            &got[..got.len().min(300)]
        );
    }

    // Access: a decision explained, a version compared with the policy in force, and a
    // rollback (a trust change, allowed to this second-factor session).
    let (_, policy) = s.get("/api/v1/policy").await;
    let extra = "\n@id(\"auditors-read-posture\")\npermit (principal in Sigil::Role::\"auditor\", action == Sigil::Action::\"posture.read\", resource);\n";
    let text = format!("{}{extra}", policy["text"].as_str().unwrap());
    let (st, applied) = s
        .post(
            "/api/v1/policy",
            json!({"text": text, "comment": "auditors read posture"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{applied}");
    driver
        .goto(format!(
            "{}/ui/access?role=auditor&action=certificate.revoke&kind=certificate",
            s.api
        ))
        .await
        .unwrap();
    wait_for(driver, "p.explained", "Decision: deny").await;
    check_page(driver, "access").await;
    driver
        .find(By::LinkText(
            "Compare the defaults with the policy in force",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(driver, "pre.diff", "+ @id(\"auditors-read-posture\")").await;
    check_page(driver, "access-version").await;
    let here = driver.current_url().await.unwrap();
    reads_on_a_tablet(driver, &s, &device).await;
    driver.goto(here.as_str()).await.unwrap();
    type_into(driver, "rollback-comment", "back to the defaults").await;
    driver
        .find(By::Css("section.confirm button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(driver, "p.done", "The new policy is in force.").await;
    let (_, now) = s.get("/api/v1/policy").await;
    assert_eq!(now["version"], 2, "{now}");
    assert!(
        !now["policies"]
            .as_array()
            .unwrap()
            .contains(&json!("auditors-read-posture"))
    );

    // Log out (a plain form), then in as the auditor.
    driver
        .find(By::Css("form.inline button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(driver, "h1", "Log in to Sigil").await;
    log_in(driver, &s, "avery", None).await;
    driver
        .goto(format!(
            "{}/ui/devices/{}",
            s.api,
            other["id"].as_str().unwrap()
        ))
        .await
        .unwrap();
    assert!(
        driver
            .find_all(By::Css(".device-actions a, .device-actions button"))
            .await
            .unwrap()
            .is_empty(),
        "an auditor sees no action controls"
    );
    check_page(driver, "device-auditor").await;
    // A forged action from the auditor's own session, CSRF header and all: the API refuses it
    // by policy and audits the refusal.
    let forged = driver
        .execute(
            "return fetch(arguments[0], {method: 'POST', headers: {'x-sigil-csrf': '1', 'hx-request': 'true'}, body: ''}).then(r => r.status);",
            vec![json!(format!("/ui/devices/{}/suspend", other["id"].as_str().unwrap()))],
        )
        .await
        .unwrap();
    assert_eq!(forged.json(), &json!(403));
    let (_, state) = s
        .get(&format!(
            "/api/v1/devices/{}",
            other["id"].as_str().unwrap()
        ))
        .await;
    assert_ne!(state["state"], "suspended");
    let denied = audit(&s, "access.denied").await;
    assert!(
        denied
            .iter()
            .any(|e| e["subject"] == "api:POST /api/v1/devices/{id}/suspend"
                && e["details"]["role"] == "auditor"),
        "{denied:#?}"
    );

    // An operator edits the device's site and tags from its page; the API records both values.
    create_operator(&s, "omar", "operator").await;
    driver
        .find(By::Css("form.inline button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(driver, "h1", "Log in to Sigil").await;
    log_in(driver, &s, "omar", None).await;
    let other_id = other["id"].as_str().unwrap();
    driver
        .goto(format!("{}/ui/devices/{other_id}", s.api))
        .await
        .unwrap();
    record_foreign(driver, &s, other_id).await;
    driver
        .find(By::LinkText("Edit owner, site and tags"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(driver, "h1", "Edit device gw-0002").await;
    check_page(driver, "device-edit").await;
    let site = driver.find(By::Id("site")).await.unwrap();
    site.clear().await.unwrap();
    site.send_keys("plant-2").await.unwrap();
    let tags = driver.find(By::Id("tags")).await.unwrap();
    tags.clear().await.unwrap();
    tags.send_keys("line-b, spare").await.unwrap();
    driver
        .find(By::Css("form.edit button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(driver, "p.done", "Changes saved.").await;
    let (_, edited) = s.get(&format!("/api/v1/devices/{other_id}")).await;
    assert_eq!(edited["site"], "plant-2");
    assert_eq!(edited["tags"], json!(["line-b", "spare"]));
    assert_eq!(edited["owner"], hostile, "an untouched field is kept");
    let updated = audit(&s, "device.updated").await;
    assert_eq!(
        updated[0]["details"]["before"]["site"], "plant-1",
        "{updated:#?}"
    );
    assert_eq!(updated[0]["details"]["after"]["site"], "plant-2");
    assert_eq!(
        updated[0]["details"]["after"]["tags"],
        json!(["line-b", "spare"])
    );

    // The README's example sheet through the import page: checked, then imported whole.
    s.create_product("Thermostat T1").await;
    driver.goto(format!("{}/ui/devices", s.api)).await.unwrap();
    driver
        .find(By::LinkText("Import devices from a spreadsheet"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(driver, "h1", "Import devices from a spreadsheet").await;
    check_page(driver, "device-import").await;
    let sheet = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/devices.csv");
    let sheet = sheet.canonicalize().unwrap();
    type_into(driver, "file", sheet.to_str().unwrap()).await;
    driver
        .find(By::Css("button[value=check]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(driver, "#result h2", "3 devices would be registered").await;
    check_page(driver, "device-import-checked").await;
    assert_eq!(
        s.get("/api/v1/devices?tag=line-7").await.1["items"],
        json!([]),
        "a check writes nothing"
    );
    driver
        .find(By::Css("button[value=import]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(driver, "#result h2", "Imported: 3 devices registered").await;
    let (_, line7) = s.get("/api/v1/devices?tag=line-7").await;
    assert_eq!(line7["items"][0]["owner"], "Maintenance, night shift");
    search_and_sort(driver, &s).await;
    // The filtered view as CSV, with the person's session.
    let csv = driver
        .execute(
            "return fetch('/ui/devices/export.csv?site=plant-1').then(r => r.text());",
            vec![],
        )
        .await
        .unwrap();
    let csv = csv.json().as_str().unwrap().to_owned();
    assert!(csv.starts_with("id,product,serial_number,"), "{csv}");
    assert_eq!(
        csv.lines().count(),
        3,
        "header and the two plant-1 devices: {csv}"
    );
    browser.close().await;
    s.shutdown().await;
}

/// Every console answer carries the security headers, whatever it is: page, redirect, file,
/// error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_console_response_carries_the_security_headers() {
    let Some(s) = TestServer::start(Db::Sqlite).await else {
        return;
    };
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .add_root_certificate(
            reqwest::Certificate::from_pem(
                &std::fs::read(s.data_dir().join("ca/root.crt")).unwrap(),
            )
            .unwrap(),
        )
        .build()
        .unwrap();
    for (path, status) in [
        ("/ui/login", StatusCode::OK),
        ("/ui", StatusCode::SEE_OTHER),
        ("/ui/devices", StatusCode::SEE_OTHER),
        ("/ui/assets/console.css", StatusCode::OK),
        ("/ui/assets/htmx-2.0.11.min.js", StatusCode::OK),
        ("/ui/no-such-page", StatusCode::NOT_FOUND),
    ] {
        let r = no_redirects
            .get(format!("{}{path}", s.api))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{path}");
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{path}: {csp}"
        );
        assert!(
            csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
    }
    // Logged-out visits go to the login page without counting as failed authentications
    // (which would fill the audit log and, past the limit, lock visitors out).
    assert!(audit(&s, "auth.failed").await.is_empty());
    // A login form posted from another site is refused before the password is checked.
    let r = no_redirects
        .post(format!("{}/ui/login", s.api))
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=admin&password=x&next=%2Fui")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // No page has an inline script or style attribute for the CSP to have to allow.
    let login = no_redirects
        .get(format!("{}/ui/login", s.api))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !login.contains("<script>") && !login.contains(" style="),
        "{login}"
    );
    s.shutdown().await;
}

/// `sigil device edit` as the README runs it: the fields named change, the others stay, each
/// change is audited with before and after, and what may not be edited is refused unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_are_edited_from_the_cli_as_the_readme_shows() {
    let Some(s) = TestServer::start(Db::Sqlite).await else {
        return;
    };
    let product = s.create_product("Thermostat").await;
    let device = s.create_device(&product, "SN-0001").await;
    let edited = common::json(common::sigil(
        &s,
        &[
            "device",
            "edit",
            &device,
            "--owner",
            "Line 3 maintenance",
            "--site",
            "plant-2",
            "--tag",
            "line-3",
            "--tag",
            "spare",
            "--json",
        ],
    ));
    assert_eq!(edited["owner"], "Line 3 maintenance");
    assert_eq!(edited["site"], "plant-2");
    assert_eq!(edited["tags"], json!(["line-3", "spare"]));
    let cleared = common::json(common::sigil(
        &s,
        &["device", "edit", &device, "--clear", "owner", "--json"],
    ));
    assert!(cleared["owner"].is_null());
    assert_eq!(cleared["site"], "plant-2", "a field not named is kept");
    let updates = audit(&s, "device.updated").await;
    assert_eq!(updates.len(), 2);
    assert_eq!(
        updates[0]["details"]["before"]["owner"],
        "Line 3 maintenance"
    );
    assert!(updates[0]["details"]["after"]["owner"].is_null());
    assert!(updates[1]["details"]["before"]["site"].is_null());

    // Refused, and nothing changes: a field that identifies the device, a bad tag, nothing.
    let out = common::sigil(
        &s,
        &["device", "edit", &device, "--clear", "site", "--site", "x"],
    );
    assert!(!out.status.success());
    for (patch, expected) in [
        (
            json!({"serial_number": "SN-9"}),
            "`serial_number` cannot be edited",
        ),
        (json!({"state": "active"}), "`state` cannot be edited"),
        (json!({"tags": ["no spaces"]}), "tag `no spaces` is invalid"),
        (json!({}), "the change is empty"),
    ] {
        let r = s
            .http
            .patch(format!("{}/api/v1/devices/{device}", s.api))
            .bearer_auth(&s.token)
            .header("content-type", "application/merge-patch+json")
            .body(patch.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{patch}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(
            body["detail"].as_str().unwrap().contains(expected),
            "{patch}: {body}"
        );
    }
    let (_, now) = s.get(&format!("/api/v1/devices/{device}")).await;
    assert_eq!(now["serial_number"], "SN-0001");
    assert_eq!(now["site"], "plant-2");
    assert_eq!(
        audit(&s, "device.updated").await.len(),
        2,
        "refusals change nothing"
    );
    s.shutdown().await;
}
