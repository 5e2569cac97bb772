//! Devices: tokens, registration, authorization and compliance through the real device API,
//! driven by `device-sim` and by hand; every refusal leaving the store as it was.

use crate::common::{post_signed, register_body, Dev, Site};
use satellite_e2e::harness::dump_sqlite;

const DNA: &str = "regid.example.dna-advantage"; // 50 in Lab

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn a_hundred_devices_authorized_while_the_pool_lasts_then_released() {
    let t = tmp();
    let site = Site::new(t.path());
    let token = site.token("Lab", &["--description", "rollout"]);
    let ent = format!("{DNA}:1");
    let first = t.path().join("first.json");
    let second = t.path().join("second.json");

    // 50 devices take the whole pool; 50 more are out of compliance.
    let a = site.sim(&[
        "run",
        "--token",
        &token,
        "--devices",
        "50",
        "--entitlement",
        &ent,
        "--state",
        first.to_str().unwrap(),
    ]);
    assert_eq!(
        (a["registered"].as_i64(), a["authorized"].as_i64()),
        (Some(50), Some(50)),
        "{a}"
    );
    let b = site.sim(&[
        "run",
        "--token",
        &token,
        "--devices",
        "50",
        "--entitlement",
        &ent,
        "--state",
        second.to_str().unwrap(),
    ]);
    assert_eq!(b["registered"], 50, "{b}");
    assert_eq!(b["out_of_compliance"], 50, "{b}");
    assert_eq!(b["authorized"], 0, "{b}");
    assert_eq!(site.pool("Lab", DNA), (50, 100, -50));
    let st = site.sat(&["status", "--json"]).ok().json();
    assert!(
        st["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "Insufficient Licenses"),
        "{st}"
    );
    assert_eq!(st["counts"]["product_instances"], 100);
    let tokens = site.sat(&["token", "list", "--json"]).ok().json();
    assert_eq!(tokens[0]["uses"], 100);

    // Asking again changes nothing while the pool is short: the first 50 keep theirs.
    let again = site.sim(&[
        "authorize",
        "--state",
        first.to_str().unwrap(),
        "--entitlement",
        &ent,
    ]);
    assert_eq!(again["authorized"], 50, "{again}");
    let again = site.sim(&[
        "authorize",
        "--state",
        second.to_str().unwrap(),
        "--entitlement",
        &ent,
    ]);
    assert_eq!(again["out_of_compliance"], 50, "{again}");
    assert_eq!(site.pool("Lab", DNA), (50, 100, -50));

    // The first 50 deregister: their licenses are released at once, and the others are
    // authorized at their next request; the shortage alert clears itself.
    let d = site.sim(&["deregister", "--state", first.to_str().unwrap()]);
    assert_eq!(d["deregistered"], 50, "{d}");
    assert_eq!(site.pool("Lab", DNA), (50, 50, 0));
    let now_ok = site.sim(&[
        "authorize",
        "--state",
        second.to_str().unwrap(),
        "--entitlement",
        &ent,
    ]);
    assert_eq!(now_ok["authorized"], 50, "{now_ok}");
    let st = site.sat(&["status", "--json"]).ok().json();
    assert!(st["alerts"].as_array().unwrap().is_empty(), "{st}");
    assert_eq!(st["counts"]["product_instances"], 50);

    // An entitlement the VA has no license for is NOT_FOUND.
    let nf = site.sim(&[
        "authorize",
        "--state",
        second.to_str().unwrap(),
        "--entitlement",
        "regid.example.unknown:1",
    ]);
    assert_eq!(nf["not_found"], 50, "{nf}");
    assert_eq!(
        site.pool("Lab", DNA),
        (50, 0, 50),
        "leaving an entitlement out releases it"
    );
}

#[test]
fn devices_are_listed_shown_transferred_and_removed_by_operators() {
    let t = tmp();
    let site = Site::new(t.path());
    let token = site.token("Lab", &[]);
    let mut d = Dev::register(&site, &token, "SN-OP-1");
    let a = d.authorize(&site, DNA, 3);
    assert_eq!(a["entitlements"][0]["status"], "AUTHORIZED");
    assert_eq!(site.pool("Lab", DNA), (50, 3, 47));

    let list = site
        .sat(&["device", "list", "--va", "Lab", "--json"])
        .ok()
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["pi_id"], d.pi_id.as_str());
    let shown = site
        .sat(&["device", "show", "TEST-PID:SN-OP-1", "--json"])
        .ok()
        .json();
    assert_eq!(shown["licenses"][0]["count"], 3);

    // Transfer: licenses do not follow.
    let moved = site
        .sat(&["device", "transfer", &d.pi_id, "--va", "Ops", "--json"])
        .ok()
        .json();
    assert_eq!(moved["virtual_account"], "Ops");
    assert!(moved["licenses"].as_array().unwrap().is_empty());
    assert_eq!(site.pool("Lab", DNA), (50, 0, 50));
    let a = d.authorize(&site, DNA, 3);
    assert_eq!(
        a["entitlements"][0]["status"], "NOT_FOUND",
        "Ops has no DNA licenses"
    );

    // Re-registering with a token of another VA moves the device back (signed by the
    // device's current key: its identity belongs to it).
    let lab_again = site.token("Lab", &[]);
    let key = sync_format::pki::new_p256_key().unwrap();
    let r = post_signed(
        &site,
        "/api/v1/devices/register",
        &register_body(&lab_again, "TEST-PID", "SN-OP-1", &key),
        &d.key,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["moved_from"], "Ops");
    assert_eq!(
        r.json()["pi_id"],
        d.pi_id.as_str(),
        "the same product instance"
    );

    let removed = site
        .sat(&["device", "remove", &d.pi_id, "--json"])
        .ok()
        .json();
    assert_eq!(removed["state"], "removed");
    assert_eq!(
        site.sat(&["device", "list", "--status", "active", "--json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let out = site.sat(&["device", "remove", &d.pi_id]);
    assert_eq!(out.code, 2);
}

#[test]
fn bad_tokens_and_bad_requests_are_refused_and_store_nothing() {
    let t = tmp();
    let site = Site::new(t.path());
    let db = site.dir.join("data/satellite.db");
    let https = &site.sat.https;

    // Token ids count from 1 in the order they are made.
    let revoked = site.token("Lab", &[]);
    site.sat(&["token", "revoke", "1"]).ok();
    let once = site.token("Lab", &["--max-uses", "1"]);
    let removed = site.token("Lab", &[]);
    site.sat(&["token", "revoke", "3"]).ok();
    site.sat(&["token", "remove", "3"]).ok();
    let good = site.token("Lab", &[]);
    Dev::register(&site, &once, "SN-ONCE");

    let key = sync_format::pki::new_p256_key().unwrap();
    let cases: Vec<(&str, serde_json::Value, u16, &str)> = vec![
        (
            "revoked token",
            register_body(&revoked, "P", "S1", &key),
            401,
            "revoked",
        ),
        (
            "used-up token",
            register_body(&once, "P", "S2", &key),
            401,
            "maximum number",
        ),
        (
            "removed token",
            register_body(&removed, "P", "S3", &key),
            401,
            "unknown registration token",
        ),
        (
            "unknown token",
            register_body("bm90LWEtdG9rZW4", "P", "S4", &key),
            401,
            "unknown registration token",
        ),
        (
            "malformed UDI",
            register_body(&good, "P", "bad serial!", &key),
            400,
            "udi.sn",
        ),
        (
            "empty PID",
            register_body(&good, "", "S5", &key),
            400,
            "udi.pid",
        ),
        (
            "malformed CSR",
            serde_json::json!({ "token": good, "udi": { "pid": "P", "sn": "S6" }, "csr_pem": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n" }),
            400,
            "certificate signing request",
        ),
        (
            "unknown field",
            serde_json::json!({ "token": good, "udi": { "pid": "P", "sn": "S7" }, "csr_pem": "x", "admin": true }),
            400,
            "unknown field",
        ),
    ];
    let before = dump_sqlite(&db);
    for (what, body, status, needle) in &cases {
        let r = https.post_json("/api/v1/devices/register", body).unwrap();
        let text = String::from_utf8_lossy(&r.body).to_string();
        assert_eq!(r.status, *status, "{what}: {text}");
        assert!(text.contains(needle), "{what}: {text}");
    }
    // Not JSON; oversized.
    let r = https
        .request("POST", "/api/v1/devices/register", Some(b"{not json"))
        .unwrap();
    assert_eq!(r.status, 400);
    let big = vec![b'x'; 2 * 1024 * 1024];
    let r = https
        .request("POST", "/api/v1/devices/register", Some(&big))
        .unwrap();
    assert_eq!(r.status, 413);
    assert_eq!(dump_sqlite(&db), before, "refusals store nothing");

    // An expired token.
    site.sat(&["clock", "advance", "31d"]).ok();
    let r = https
        .post_json(
            "/api/v1/devices/register",
            &register_body(&good, "P", "S8", &key),
        )
        .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "token_expired");

    // Token rules at creation: 1..365 days, export-controlled only if the account allows.
    let out = site.sat(&["token", "create", "--va", "Lab", "--days", "366"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("1 to 365"), "{}", out.stderr);
    let out = site.sat(&["token", "create", "--va", "Nope", "--days", "3"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("Lab, Ops"), "{}", out.stderr);
    let out = site.sat(&["token", "remove", "4"]);
    assert_eq!(out.code, 2, "only revoked tokens are removed");
    assert!(out.stderr.contains("revoke it first"), "{}", out.stderr);
}

#[test]
fn signed_requests_only_by_the_device_and_never_replayed() {
    let t = tmp();
    let site = Site::new(t.path());
    let token = site.token("Lab", &[]);
    let mut a = Dev::register(&site, &token, "SN-A");
    let b = Dev::register(&site, &token, "SN-B");
    let db = site.dir.join("data/satellite.db");
    let before = dump_sqlite(&db);

    // A request for device A signed with device B's key.
    let r = a.signed_with(
        &site,
        "/api/v1/devices/authorize",
        serde_json::json!({"nonce": "x", "entitlements": [{"tag": DNA, "count": 1}]}),
        &b.key,
    );
    assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["error"]["code"], "bad_signature");
    // No signature at all.
    let r = site
        .sat
        .https
        .post_json(
            "/api/v1/devices/authorize",
            &serde_json::json!({"pi_id": a.pi_id, "counter": 99, "nonce": "x", "entitlements": []}),
        )
        .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "signature_missing");
    assert_eq!(dump_sqlite(&db), before, "refused requests change nothing");
    // A replayed counter.
    a.counter = 0;
    let ok = a.authorize(&site, DNA, 1);
    assert_eq!(ok["entitlements"][0]["status"], "AUTHORIZED");
    a.counter = 0;
    let r = a.signed(
        &site,
        "/api/v1/devices/authorize",
        serde_json::json!({"nonce": "x", "entitlements": [{"tag": DNA, "count": 5}]}),
    );
    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        site.pool("Lab", DNA),
        (50, 1, 49),
        "the replay changed nothing"
    );
}

/// A token is only good on the satellite that made it: an unregistered satellite (which
/// cannot make tokens) refuses another satellite's token as unknown, and stores nothing.
#[test]
fn an_unregistered_satellite_registers_no_device() {
    let t = tmp();
    let site = Site::new(&t.path().join("registered"));
    let token = site.token("Lab", &[]);
    let other_dir = t.path().join("unregistered");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = crate::common::start_satellite(&other_dir);
    let before = dump_sqlite(&other_dir.join("data/satellite.db"));
    let key = sync_format::pki::new_p256_key().unwrap();
    let r = other
        .https
        .post_json(
            "/api/v1/devices/register",
            &register_body(&token, "P", "S", &key),
        )
        .unwrap();
    assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["error"]["code"], "token_unknown");
    assert_eq!(dump_sqlite(&other_dir.join("data/satellite.db")), before);
}

#[test]
fn identity_and_authorization_timers_follow_the_clock() {
    let t = tmp();
    let site = Site::new(t.path());
    let token = site.token("Lab", &[]);
    let mut d = Dev::register(&site, &token, "SN-T");
    let a = d.authorize(&site, DNA, 1);
    let issued = chrono_secs(a["issued_at"].as_str().unwrap());
    assert_eq!(
        chrono_secs(a["not_after"].as_str().unwrap()) - issued,
        90 * 86_400
    );
    assert_eq!(
        chrono_secs(a["renew_after"].as_str().unwrap()) - issued,
        30 * 86_400
    );

    // Six months on (the satellite syncing as it must), the device renews its identity for
    // another year.
    site.advance_synced(200);
    let key = d.key.clone();
    let r = d.signed(
        &site,
        "/api/v1/devices/renew",
        serde_json::json!({ "csr_pem": crate::common::csr_pem(&key) }),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let renewed = r.json();
    let status = site.sat(&["status", "--json"]).ok().json();
    let now = chrono_secs(status["now"].as_str().unwrap());
    let not_after = chrono_secs(renewed["not_after"].as_str().unwrap());
    assert!((not_after - now - 365 * 86_400).abs() < 60, "{renewed}");

    // Another device that never renews: after a year its identity is refused.
    let mut stale = Dev::register(&site, &site.token("Lab", &[]), "SN-STALE");
    site.advance_synced(366);
    let r = stale.signed(
        &site,
        "/api/v1/devices/authorize",
        serde_json::json!({"nonce": "x", "entitlements": []}),
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "identity_expired");
    // The renewed one is still good (renewed 166 days before... no: 366 days passed since).
    let r = d.signed(
        &site,
        "/api/v1/devices/authorize",
        serde_json::json!({"nonce": "x", "entitlements": []}),
    );
    assert_eq!(
        r.status, 401,
        "a year after its renewal, without another, it expires too"
    );
}

fn chrono_secs(s: &str) -> i64 {
    satellite::clock::parse_time(s).unwrap()
}
