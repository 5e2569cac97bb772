//! The operator console in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, installed by `.ci/run`), and the operator API over the console's own
//! HTTPS listener.

use std::path::{Path, PathBuf};

use satellite_e2e::harness::{bin, dump_sqlite};
use satellite_e2e::webdriver::{self, Browser};

use crate::common::{
    register_by_files, sat, sat_db, start_satellite, start_satellite_env, MockCloud, Site,
    ADMIN_PASSWORD,
};

/// Where screenshots go: `target/screenshots/`, kept as CI artifacts.
fn screenshots() -> PathBuf {
    bin("satellite")
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .join("screenshots")
}

/// The satellite's store, without the clock's high-water mark (which follows real time).
fn store(dir: &Path) -> String {
    let dump = dump_sqlite(&sat_db(dir));
    let mut out = String::new();
    let mut skip = false;
    for line in dump.lines() {
        if line.starts_with("== ") {
            skip = line == "== clock_state";
        }
        if !skip {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn console_url(site: &Site, path: &str) -> String {
    format!("https://localhost:{}{path}", site.sat.console.port)
}

fn log_in(b: &Browser, site: &Site, user: &str, password: &str) {
    b.goto(&console_url(site, "/console/login"));
    b.fill("#username", user);
    b.fill("#password", password);
    b.click("#login-button");
    b.wait_for("the dashboard", |b| b.url().ends_with("/console/"));
}

fn log_out(b: &Browser) {
    b.click("header form button");
    b.wait_for("the login page", |b| b.url().contains("/console/login"));
}

/// A sync response made by the cloud for another satellite.
fn response_for_another_satellite(site: &Site, work: &Path) -> PathBuf {
    let other = work.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let p = |name: &str| other.join(name).display().to_string();
    register_by_files(&other, &site.cloud, "other", &["Spare"]);
    sat(&other, &["sync", "export", "--out", &p("sync.zip")]).ok();
    site.cloud
        .process(&other.join("sync.zip"), &other.join("resp.zip"));
    other.join("resp.zip")
}

/// The count of a license line in the console's Virtual accounts page, as shown.
fn purchased_on_page(b: &Browser, site: &Site, va: &str, license: &str) -> String {
    b.goto(&console_url(site, "/console/accounts"));
    let src = b.source();
    let table = src
        .split(&format!(r#"<table id="va-{va}">"#))
        .nth(1)
        .unwrap_or_else(|| panic!("no table of {va}:\n{src}"));
    let row = table
        .split("<tr>")
        .find(|r| r.contains(&format!("<td>{license}</td>")))
        .unwrap_or_else(|| panic!("no row {license} in {va}:\n{table}"));
    // Columns: virtual account, license, tag, billing, purchased, ...
    row.split("<td>")
        .nth(5)
        .and_then(|c| c.split("</td>").next())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn operator_console_in_a_real_browser() {
    if !webdriver::available() {
        panic!(
            "{} or {} is missing: install Debian's chromium and chromium-driver (.ci/run does)",
            webdriver::CHROMIUM,
            webdriver::CHROMEDRIVER
        );
    }
    let t = tempfile::tempdir().unwrap();
    let site = Site::new(t.path());
    let audit = sat(
        &site.dir,
        &["user", "add", "audit", "--role", "auditor", "--json"],
    )
    .ok()
    .json();
    let audit_pw = audit["password"].as_str().unwrap().to_string();
    let b = Browser::start(t.path());

    // Logged out: every page sends the browser to the login page, which keeps where it was
    // going.
    b.goto(&console_url(&site, "/console/sync"));
    assert!(
        b.url().contains("/console/login?next=%2Fconsole%2Fsync"),
        "{}",
        b.url()
    );
    b.fill("#username", "admin");
    b.fill("#password", "not the password");
    b.click("#login-button");
    assert!(b.text("#flash").contains("wrong user name or password"));

    log_in(&b, &site, "admin", ADMIN_PASSWORD);
    assert!(
        b.text("#registration").contains("registered"),
        "{}",
        b.source()
    );
    assert!(
        b.text("#days-left").contains("90"),
        "{}",
        b.text("#days-left")
    );
    b.screenshot(&screenshots().join("dashboard.png"));

    // A token made in the browser registers a device.
    b.goto(&console_url(&site, "/console/tokens"));
    b.fill("#description", "rack 4, made in the browser");
    b.fill("#days", "7");
    b.click("#create-token");
    let token = b.text("#new-token");
    assert!(token.len() > 30, "{token}");
    assert!(b.source().contains("rack 4, made in the browser"));
    let sim = site.sim(&["run", "--token", &token, "--devices", "1"]);
    assert_eq!(sim["registered"].as_i64(), Some(1), "{sim}");

    // The sync file, downloaded by the browser, goes to the cloud, which adds licenses.
    b.goto(&console_url(&site, "/console/sync"));
    b.click("#download-sync-file");
    let request = b.wait_download(".zip");
    assert_eq!(&std::fs::read(&request).unwrap()[..2], b"PK");
    site.cloud.add_license(
        "Lab",
        "regid.example.dna-advantage",
        "DNA Advantage",
        "25",
        &[],
    );
    let response = t.path().join("response.zip");
    site.cloud.process(&request, &response);
    assert_eq!(purchased_on_page(&b, &site, "Lab", "DNA Advantage"), "50");

    // Bad uploads show their error on the page and change nothing.
    let junk = t.path().join("not-a-bundle.zip");
    std::fs::write(&junk, "this is not a zip file").unwrap();
    let mut tampered = std::fs::read(&response).unwrap();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0x5a;
    let tampered_path = t.path().join("tampered.zip");
    std::fs::write(&tampered_path, &tampered).unwrap();
    let foreign = response_for_another_satellite(&site, t.path());
    let before = store(&site.dir);
    for (file, what) in [
        (&junk, "not a bundle"),
        (&tampered_path, "tampered"),
        (&foreign, "for another satellite"),
    ] {
        b.goto(&console_url(&site, "/console/sync"));
        b.attach("#response", file);
        b.click("#preview-response");
        let flash = b.text("#flash");
        assert!(
            b.find(".flash.error").is_some() && flash.contains("bundle refused"),
            "{what}: {flash}"
        );
        assert!(b.find("#apply-form").is_none(), "{what}: no Apply");
    }
    assert_eq!(
        store(&site.dir),
        before,
        "refused uploads changed the store"
    );

    // The real response: a preview first, which changes nothing, then apply.
    b.goto(&console_url(&site, "/console/sync"));
    b.attach("#response", &response);
    b.click("#preview-response");
    let preview = b.text("#license-changes");
    assert!(
        preview.contains("DNA Advantage") && preview.contains("75"),
        "{preview}"
    );
    b.screenshot(&screenshots().join("sync.png"));
    assert_eq!(store(&site.dir), before, "a preview changes nothing");
    b.click("#apply-response");
    b.wait_for("the outcome", |b| b.find("#apply-form").is_none());
    assert!(b.text("#flash").contains("applied"), "{}", b.text("#flash"));
    assert_eq!(purchased_on_page(&b, &site, "Lab", "DNA Advantage"), "75");

    // The auditor reads but cannot act, and is refused what only an admin may see.
    log_out(&b);
    log_in(&b, &site, "audit", &audit_pw);
    b.goto(&console_url(&site, "/console/tokens"));
    assert!(b.source().contains("rack 4, made in the browser"));
    assert!(
        b.find("#token-form").is_none(),
        "no create form for an auditor"
    );
    assert!(
        b.find("#tokens form").is_none(),
        "no revoke buttons for an auditor"
    );
    b.goto(&console_url(&site, "/console/sync"));
    assert!(b.find("#sync-upload-form").is_none());
    b.goto(&console_url(&site, "/console/users"));
    assert!(
        b.text("#flash").contains("has the role auditor"),
        "{}",
        b.source()
    );
    b.goto(&console_url(&site, "/console/tokens/1"));
    assert!(b.text("#flash").contains("needs the role operator"));

    // Logged out again: refused.
    log_out(&b);
    b.goto(&console_url(&site, "/console/accounts"));
    assert!(b.url().contains("/console/login"), "{}", b.url());
    drop(b);
    site.sat.server.signal(libc::SIGTERM);
}

/// The operator API on the console's listener: bearer tokens, roles, CSV, files; the device
/// listener does not serve it.
#[test]
fn operator_api_over_https() {
    let t = tempfile::tempdir().unwrap();
    let site = Site::new(t.path());
    let token = |user: &str, role: &str| {
        sat(&site.dir, &["user", "add", user, "--role", role]).ok();
        sat(&site.dir, &["user", "api-token", "create", user])
            .ok()
            .stdout
            .trim()
            .to_string()
    };
    let (op, audit) = (token("op", "operator"), token("audit", "auditor"));
    let api = &site.sat.console;
    let call = |method: &str, path: &str, who: &str, body: Option<&str>| {
        let auth = format!("Bearer {who}");
        api.request_with(
            method,
            &format!("/api/v1/operator{path}"),
            body.map(str::as_bytes),
            &[("Authorization", &auth)],
        )
        .unwrap()
    };

    // The device listener has no operator routes when the console has its own.
    let r = site
        .sat
        .https
        .request_with(
            "GET",
            "/api/v1/operator/me",
            None,
            &[("Authorization", &format!("Bearer {op}"))],
        )
        .unwrap();
    assert_eq!(r.status, 404);

    // Anonymous and forged callers are refused on every declared route of the real server.
    for route in satellite::http::operator::routes() {
        let Some(_) = route.role else { continue };
        let path = route
            .path
            .replace("{id}", "999999")
            .replace("{name}", "nobody");
        let r = api.request(route.method.as_str(), &path, None).unwrap();
        let expected = if path.starts_with("/api/") { 401 } else { 303 };
        assert_eq!(r.status, expected, "{} {path}", route.method);
    }

    assert_eq!(call("GET", "/me", &audit, None).json()["role"], "auditor");
    let r = call(
        "POST",
        "/me/password",
        &audit,
        Some(r#"{"current_password":"not it at all","new_password":"something-long"}"#),
    );
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("current password is wrong"));
    let body = r#"{"virtual_account":"Lab","days":30,"description":"from a script"}"#;
    let r = call("POST", "/tokens", &audit, Some(body));
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    let r = call("POST", "/tokens", &op, Some(body));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let made = r.json();
    assert!(made["token"].as_str().unwrap().len() > 30);
    let listed = call("GET", "/tokens", &audit, None).json();
    assert_eq!(listed[0]["description"], "from a script", "{listed}");

    // Malformed and unknown input: a clear 400, nothing stored.
    let before = store(&site.dir);
    for bad in [
        r#"{"virtual_account":"Lab","days":400}"#,
        r#"{"virtual_account":"Nowhere","days":30}"#,
        r#"{"virtual_account":"Lab","days":30,"colour":"red"}"#,
        "not json",
    ] {
        let r = call("POST", "/tokens", &op, Some(bad));
        assert!(matches!(r.status, 400 | 404), "{bad}: {}", r.status);
        assert!(r.json()["error"]["message"].as_str().unwrap().len() > 5);
    }
    let r = call("POST", "/sync/import", &op, Some("PK not a bundle"));
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(store(&site.dir), before);

    // Reports as CSV, the sync file and its response, as the CLI has them.
    let csv = call("GET", "/licenses?format=csv", &audit, None);
    assert!(String::from_utf8_lossy(&csv.body).starts_with("Virtual Account,"));
    let file = call("POST", "/sync/export", &op, None);
    assert_eq!(file.status, 200);
    let req = t.path().join("api-request.zip");
    let resp = t.path().join("api-response.zip");
    std::fs::write(&req, &file.body).unwrap();
    site.cloud.process(&req, &resp);
    let bytes = std::fs::read(&resp).unwrap();
    let r = api
        .request_with(
            "POST",
            "/api/v1/operator/sync/import",
            Some(&bytes),
            &[("Authorization", &format!("Bearer {op}"))],
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["status"], "applied");

    // What the API did is in the event log, under the account's name.
    let events = call("GET", "/events?type=token_created", &audit, None).json();
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["user"] == "api:op"),
        "{events}"
    );
}

/// Registration by files and a network sync, both through the operator API of a running
/// satellite.
#[test]
fn registration_and_network_sync_through_the_operator_api() {
    let t = tempfile::tempdir().unwrap();
    let cloud = MockCloud::new(&t.path().join("cloud"));
    cloud.seed();
    let dir = t.path().join("sat");
    std::fs::create_dir_all(&dir).unwrap();
    let mut running = start_satellite(&dir);
    let admin = sat(&dir, &["user", "api-token", "create", "admin"])
        .ok()
        .stdout
        .trim()
        .to_string();
    let auth = format!("Bearer {admin}");
    let call =
        |r: &crate::common::RunningSatellite, method: &str, path: &str, body: Option<&[u8]>| {
            r.console
                .request_with(
                    method,
                    &format!("/api/v1/operator{path}"),
                    body,
                    &[("Authorization", &auth)],
                )
                .unwrap()
        };

    // Not an authorization file: refused with the reason, nothing stored. (A first call
    // notes the token's use, which is not what is compared.)
    assert_eq!(call(&running, "GET", "/me", None).json()["role"], "admin");
    let before = store(&dir);
    let r = call(
        &running,
        "POST",
        "/registration/import",
        Some(b"PK\x03\x04 junk"),
    );
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("bundle refused"));
    assert_eq!(store(&dir), before);

    let r = call(&running, "POST", "/registration/export", None);
    assert_eq!(r.status, 200);
    let (req, granted) = (t.path().join("req.zip"), t.path().join("auth.zip"));
    std::fs::write(&req, &r.body).unwrap();
    cloud
        .run(&[
            "satellite",
            "authorize",
            req.to_str().unwrap(),
            "--name",
            "api-site",
            "--va",
            "Lab",
            "--out",
            granted.to_str().unwrap(),
        ])
        .ok();
    // Without the cloud CA's fingerprint: refused, naming the fingerprint found.
    let before = store(&dir);
    let granted = std::fs::read(&granted).unwrap();
    let r = call(&running, "POST", "/registration/import", Some(&granted));
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["error"]["code"], "unpinned_ca");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&cloud.fingerprint()));
    assert_eq!(store(&dir), before);
    let r = call(
        &running,
        "POST",
        &format!(
            "/registration/import?cloud_ca_fingerprint={}",
            cloud.fingerprint()
        ),
        Some(&granted),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["account"], "Acme");
    assert_eq!(
        call(&running, "GET", "/status", None).json()["state"],
        "registered"
    );

    // A network sync asked through the API, with the cloud up.
    let (_cloud_server, port) = cloud.serve(t.path(), &[]);
    running.server.signal(libc::SIGTERM);
    assert!(running
        .server
        .wait_exit(std::time::Duration::from_secs(30))
        .is_some());
    let url = format!("https://localhost:{port}");
    let running = start_satellite_env(&dir, &[("SATELLITE_CLOUD_URL", &url)]);
    let r = call(&running, "POST", "/sync/now", None);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["response"]["status"], "applied", "{}", r.json());
    let st = call(&running, "GET", "/sync/status", None).json();
    assert_eq!(st["last_sync_mode"], "network", "{st}");
}
