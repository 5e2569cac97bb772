//! Export-controlled (restricted) licenses end to end: devices (`device-sim`) ask the
//! satellite, the request travels in a sync (files or network) to the mock cloud, which
//! grants or denies; returns travel the same way.

use std::path::{Path, PathBuf};

use crate::common::{sat_db, satellite, start_satellite, Site};
use satellite_e2e::harness::{self, query_strings};

const HSEC: &str = "regid.example.hsec";

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// One device registered through `device-sim` with `token`, saved in `NAME.json`.
fn device(site: &Site, token: &str, name: &str) -> PathBuf {
    let state = site.dir.join(format!("{name}.json"));
    let out = site.sim(&[
        "run",
        "--token",
        token,
        "--devices",
        "1",
        "--no-authorize",
        "--sn-prefix",
        name,
        "--state",
        p(&state),
    ]);
    assert_eq!(out["registered"], 1, "{out}");
    state
}

fn pi_of(state: &Path) -> String {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(state).unwrap()).unwrap();
    v[0]["pi_id"].as_str().unwrap().to_string()
}

/// `device-sim export ACTION`: the satellite's answer (or the error) for the one device.
fn export(site: &Site, state: &Path, action: &str, count: i64) -> serde_json::Value {
    let out = site.sim(&[
        "export",
        action,
        "--state",
        p(state),
        "--tag",
        HSEC,
        "--count",
        &count.to_string(),
    ]);
    out["export_answers"][0].clone()
}

/// `device-sim authorize` asking for `count` of the restricted tag: the summary.
fn authorize(site: &Site, state: &Path, count: i64) -> serde_json::Value {
    site.sim(&[
        "authorize",
        "--state",
        p(state),
        "--entitlement",
        &format!("{HSEC}:{count}"),
    ])
}

fn export_state(site: &Site, request_id: &str) -> serde_json::Value {
    site.sat(&["export", "show", request_id, "--json"])
        .ok()
        .json()
}

fn cloud_in_use(site: &Site, va: &str) -> i64 {
    let rows = site.cloud.run(&["usage", "--json"]).ok().json();
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["va"] == va && r["tag"] == HSEC)
        .map_or(0, |r| r["in_use"].as_i64().unwrap())
}

fn events_of(site: &Site, kind: &str) -> Vec<String> {
    query_strings(
        &sat_db(&site.dir),
        &format!("SELECT message AS v FROM events WHERE kind = '{kind}' ORDER BY id"),
    )
}

fn alert_messages(site: &Site, kind: &str) -> Vec<String> {
    query_strings(
        &sat_db(&site.dir),
        &format!(
            "SELECT message AS v FROM alerts WHERE kind = '{kind}' AND state = 'active' \
             ORDER BY id"
        ),
    )
}

fn name_of(site: &Site, pi: &str) -> String {
    site.sat(&["device", "show", pi, "--json"]).ok().json()["name"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn restricted_licenses_by_file_sync_granted_denied_returned() {
    let t = tempfile::tempdir().unwrap();
    let site = Site::new(t.path());
    // A non-restricted license in the same VA, known to the satellite after a sync.
    site.cloud
        .add_license("Ops", "regid.example.plain", "Plain", "5", &[]);
    site.round_trip("plain");
    let token = site.token("Ops", &["--export-controlled"]);
    let ordinary = site.token("Ops", &[]);
    let a = device(&site, &token, "A");
    let b = device(&site, &token, "B");
    let o = device(&site, &ordinary, "O");

    // Refused at once, nothing queued: an ordinary device; a tag that is not restricted.
    let refused = export(&site, &o, "request", 1);
    assert_eq!(refused["error"], "403 export_not_allowed", "{refused}");
    let plain = site.sim(&[
        "export",
        "request",
        "--state",
        p(&a),
        "--tag",
        "regid.example.plain",
    ]);
    assert_eq!(
        plain["export_answers"][0]["error"], "400 invalid",
        "{plain}"
    );
    let none = site.sat(&["export", "list", "--json"]).ok().json();
    assert_eq!(none.as_array().unwrap().len(), 0, "{none}");

    // A asks for both HSECK9 licenses of Ops, B for one more: both pending.
    let qa = export(&site, &a, "request", 2);
    assert_eq!(qa["status"], "pending", "{qa}");
    let qa = qa["request_id"].as_str().unwrap().to_string();
    let qb = export(&site, &b, "request", 1);
    assert_eq!(qb["status"], "pending", "{qb}");
    let qb = qb["request_id"].as_str().unwrap().to_string();
    assert_eq!(export_state(&site, &qa)["state"], "queued");
    let before = authorize(&site, &a, 2);
    assert_eq!(before["restricted"]["PENDING"], 1, "{before}");
    assert_eq!(before["export_restricted"], 1, "{before}");
    // Not consumed before the cloud agrees.
    assert_eq!(site.pool("Ops", HSEC), (2, 0, 2));

    let r = site.round_trip("first");
    let answers = r["export_answers"].as_array().unwrap();
    let result = |id: &str| {
        answers
            .iter()
            .find(|x| x["request_id"] == id)
            .unwrap_or_else(|| panic!("no answer for {id} in {r}"))["result"]
            .clone()
    };
    assert_eq!(result(&qa), "granted", "{r}");
    assert_eq!(result(&qb), "denied", "{r}");
    let sent = export_state(&site, &qa);
    assert_eq!(sent["state"], "granted", "{sent}");
    assert!(sent["sent_in"].is_string(), "{sent}");
    let denied = export_state(&site, &qb);
    assert_eq!(denied["state"], "denied");
    assert!(
        denied["reason"].as_str().unwrap().contains("0 available"),
        "{denied}"
    );
    assert_eq!(site.pool("Ops", HSEC), (2, 2, 0));
    assert_eq!(cloud_in_use(&site, "Ops"), 2);
    // B's Restricted License Not Available alert shows on its row of the product instances.
    let devices = site.sat(&["device", "list", "--json"]).ok().json();
    let row_b = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["pi_id"] == pi_of(&b).as_str())
        .unwrap_or_else(|| panic!("{devices}"))
        .clone();
    assert!(
        row_b["alerts"].as_array().unwrap().iter().any(|a| a
            .as_str()
            .unwrap_or_default()
            .starts_with("Restricted License Not Available")),
        "{row_b}"
    );

    // The grant reaches A signed in its next authorization; B hears of its denial once.
    let got = authorize(&site, &a, 2);
    assert_eq!(got["restricted"]["GRANTED"], 1, "{got}");
    assert_eq!(got["authorized"], 1, "{got}");
    assert_eq!(export_state(&site, &qa)["state"], "delivered");
    let told = authorize(&site, &b, 1);
    assert_eq!(told["restricted"]["DENIED"], 1, "{told}");
    assert_eq!(told["export_restricted"], 1, "{told}");
    let again = authorize(&site, &b, 1);
    assert!(again["restricted"].get("DENIED").is_none(), "{again}");

    // The seeds' alert and events.
    let (name_a, name_b) = (name_of(&site, &pi_of(&a)), name_of(&site, &pi_of(&b)));
    assert_eq!(
        alert_messages(&site, "Restricted License Not Available"),
        vec![format!(
            "The product instance {name_b} has requested license HSECK9 which enables \
             restricted encryption technology. This license is not available within the \
             virtual account Ops."
        )]
    );
    assert_eq!(
        events_of(&site, "export_authorization_success"),
        vec![format!(
            "Export restricted licenses were assigned to product instance \"{name_a}\" in \
             Virtual Account \"Ops\". Licenses: 2 \"HSECK9\" perpetual licenses."
        )]
    );
    assert_eq!(
        events_of(&site, "export_authorization_failure"),
        vec![format!(
            "Restricted License Not Available \u{2013} The product instance \"{name_b}\" in \
             Virtual Account \"Ops\" has requested export restricted licenses that are not \
             available. You must add these licenses to this Virtual Account or transfer the \
             product instance to a Virtual Account that contains these licenses. Licenses: 1 \
             \"HSECK9\" perpetual."
        )]
    );

    // A gives its licenses back: consumed until the cloud acknowledges at the next sync.
    let ret = export(&site, &a, "return", 0);
    assert_eq!(ret["status"], "pending", "{ret}");
    assert_eq!(ret["direction"], "return", "{ret}");
    let pending = authorize(&site, &a, 0);
    assert_eq!(pending["restricted"]["RETURN_PENDING"], 1, "{pending}");
    assert_eq!(site.pool("Ops", HSEC), (2, 2, 0));
    assert_eq!(cloud_in_use(&site, "Ops"), 2);
    let r = site.round_trip("return");
    assert_eq!(r["export_answers"][0]["result"], "returned", "{r}");
    assert_eq!(site.pool("Ops", HSEC), (2, 0, 2));
    assert_eq!(cloud_in_use(&site, "Ops"), 0);
    assert_eq!(export_state(&site, &qa)["state"], "returned");
    assert_eq!(
        events_of(&site, "export_authorization_released"),
        vec![format!(
            "Export restricted licenses were removed from product instance \"{name_a}\" in \
             Virtual Account \"Ops\" and released back to the inventory for use by other \
             product instances. Licenses: 2 \"HSECK9\" perpetual."
        )]
    );
    let cloud = site.cloud.run(&["export", "list", "--json"]).ok().json();
    let lock = cloud
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["request_id"] == qa.as_str())
        .unwrap()["lock"]
        .clone();
    assert_eq!(lock, "released", "{cloud}");

    // B asks again and now gets it; its deregistration queues the return, which the next
    // sync completes.
    let qb2 = export(&site, &b, "request", 1);
    let qb2 = qb2["request_id"].as_str().unwrap().to_string();
    let r = site.round_trip("second");
    assert_eq!(r["export_answers"][0]["result"], "granted", "{r}");
    assert!(alert_messages(&site, "Restricted License Not Available").is_empty());
    assert_eq!(site.pool("Ops", HSEC), (2, 1, 1));
    let gone = site.sim(&["deregister", "--state", p(&b)]);
    assert_eq!(gone["deregistered"], 1, "{gone}");
    assert_eq!(site.pool("Ops", HSEC), (2, 1, 1));
    assert_eq!(cloud_in_use(&site, "Ops"), 1);
    let waiting = site
        .sat(&["export", "list", "--state", "queued", "--json"])
        .ok()
        .json();
    assert_eq!(waiting[0]["direction"], "return", "{waiting}");
    assert_eq!(waiting[0]["returns"], qb2.as_str(), "{waiting}");
    site.round_trip("third");
    assert_eq!(site.pool("Ops", HSEC), (2, 0, 2));
    assert_eq!(cloud_in_use(&site, "Ops"), 0);
}

#[test]
fn restricted_licenses_by_network_sync_survive_restart_and_half_failed_syncs() {
    let t = tempfile::tempdir().unwrap();
    let mut site = Site::new(t.path());
    let token = site.token("Ops", &["--export-controlled"]);
    let a = device(&site, &token, "A");
    let q = export(&site, &a, "request", 1);
    let q = q["request_id"].as_str().unwrap().to_string();

    // A restart keeps the queue.
    site.sat.server.signal(libc::SIGTERM);
    assert!(site
        .sat
        .server
        .wait_exit(std::time::Duration::from_secs(30))
        .is_some());
    site.sat = start_satellite(&site.dir);
    assert_eq!(export_state(&site, &q)["state"], "queued");

    // A sync that fails half-way: the cloud grants, but its response never comes back.
    let lost = site.dir.join("lost-request.zip");
    let lost_resp = site.dir.join("lost-response.zip");
    site.sat(&["sync", "export", "--out", p(&lost)]).ok();
    site.cloud
        .run(&["sync", "process", p(&lost), "--out", p(&lost_resp)])
        .ok();
    assert_eq!(export_state(&site, &q)["state"], "sent");
    assert_eq!(cloud_in_use(&site, "Ops"), 1);

    // And a network sync with the cloud away: still waiting, nothing lost.
    let sync_now = |url: &str| {
        let mut c = satellite(&site.dir);
        c.env("SATELLITE_CLOUD_URL", url)
            .args(["sync", "now", "--json"]);
        harness::run(&mut c)
    };
    let away = sync_now(&format!("https://localhost:{}", harness::free_port()));
    assert_eq!(away.code, 1, "{away:?}");
    assert_eq!(export_state(&site, &q)["state"], "sent");

    // The cloud back: the request goes again, the cloud gives the same grant, one lock.
    let (_cloud, port) = site.cloud.serve(t.path(), &[]);
    let url = format!("https://localhost:{port}");
    let out = sync_now(&url).ok().json();
    assert_eq!(out["request"]["export_requests"], 1, "{out}");
    assert_eq!(
        out["response"]["export_answers"][0]["result"], "granted",
        "{out}"
    );
    assert_eq!(cloud_in_use(&site, "Ops"), 1);
    let cloud = site.cloud.run(&["export", "list", "--json"]).ok().json();
    assert_eq!(cloud.as_array().unwrap().len(), 1, "{cloud}");
    assert_eq!(site.pool("Ops", HSEC), (2, 1, 1));
    let got = authorize(&site, &a, 1);
    assert_eq!(got["restricted"]["GRANTED"], 1, "{got}");

    // The same answer applied again (the lost response, late) changes nothing.
    let late = site.sat(&["sync", "import", p(&lost_resp)]);
    assert_eq!(late.code, 2, "{late:?}");
    assert_eq!(site.pool("Ops", HSEC), (2, 1, 1));

    // A second device asks for more than is left: denied over the network too.
    let b = device(&site, &token, "B");
    export(&site, &b, "request", 2);
    let out = sync_now(&url).ok().json();
    assert_eq!(
        out["response"]["export_answers"][0]["result"], "denied",
        "{out}"
    );
    assert_eq!(
        alert_messages(&site, "Restricted License Not Available").len(),
        1
    );

    // Moving A to Lab takes its restricted license along, at the satellite and the cloud.
    site.cloud
        .add_license("Lab", HSEC, "HSECK9", "1", &["--restricted"]);
    sync_now(&url).ok();
    site.sat(&["device", "transfer", &pi_of(&a), "--va", "Lab"])
        .ok();
    assert_eq!(site.pool("Ops", HSEC), (2, 0, 2));
    assert_eq!(site.pool("Lab", HSEC), (1, 1, 0));
    sync_now(&url).ok();
    assert_eq!(cloud_in_use(&site, "Ops"), 0);
    assert_eq!(cloud_in_use(&site, "Lab"), 1);

    // The return over the network releases it at the cloud.
    export(&site, &a, "return", 0);
    let out = sync_now(&url).ok().json();
    assert_eq!(
        out["response"]["export_answers"][0]["result"], "returned",
        "{out}"
    );
    assert_eq!(cloud_in_use(&site, "Lab"), 0);
    assert_eq!(site.pool("Lab", HSEC), (1, 0, 1));
}
