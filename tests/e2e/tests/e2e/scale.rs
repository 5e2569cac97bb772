//! One writer: every device request is answered while the satellite applies sync responses
//! (from the CLI, while the server runs, and uploaded through the operator API), while an
//! operator acts and while the timers run.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::common::Site;
use satellite_e2e::harness::{self, bin};

const DNA: &str = "regid.example.dna-advantage"; // 50 in Lab

#[test]
fn every_device_is_answered_while_the_satellite_syncs_and_is_operated() {
    let t = tempfile::tempdir().unwrap();
    let site = Site::new(t.path());
    let token = site.token("Lab", &[]);
    let state = t.path().join("devices.json");
    let ent = format!("{DNA}:1");
    let first = site.sim(&[
        "run",
        "--token",
        &token,
        "--devices",
        "40",
        "--entitlement",
        &ent,
        "--state",
        state.to_str().unwrap(),
    ]);
    assert_eq!(first["authorized"], 40, "{first}");
    let bearer = site.admin_bearer();

    // The devices ask for their authorizations again and again meanwhile (bounded).
    let stop = Arc::new(AtomicBool::new(false));
    let looper = {
        let (stop, url, ca, ent) = (stop.clone(), site.url(), site.cert(), ent.clone());
        std::thread::spawn(move || {
            let mut rounds = Vec::new();
            for _ in 0..1_000 {
                rounds.push(harness::run(Command::new(bin("device-sim")).args([
                    "authorize",
                    "--state",
                    state.to_str().unwrap(),
                    "--entitlement",
                    &ent,
                    "--satellite",
                    &url,
                    "--ca",
                    ca.to_str().unwrap(),
                    "--json",
                ])));
                if stop.load(Ordering::Acquire) && rounds.len() >= 3 {
                    break;
                }
            }
            rounds
        })
    };

    // Syncs by file from the CLI while the server runs, each growing the pool at the cloud.
    for i in 0..3 {
        site.cloud
            .add_license("Lab", DNA, "DNA Advantage", "5", &[]);
        let out = site.round_trip(&format!("cli-{i}"));
        assert_eq!(out["status"], "applied", "{out}");
    }
    // A sync file uploaded through the operator API.
    site.cloud
        .add_license("Lab", DNA, "DNA Advantage", "5", &[]);
    let api = &site.sat.console;
    let call = |method: &str, path: &str, body: Option<&[u8]>| {
        api.request_with(
            method,
            &format!("/api/v1/operator{path}"),
            body,
            &[("Authorization", &bearer)],
        )
        .unwrap()
    };
    let file = call("POST", "/sync/export", None);
    assert_eq!(file.status, 200);
    let (req, resp) = site.files("api");
    std::fs::write(&req, &file.body).unwrap();
    site.cloud.process(&req, &resp);
    let r = call("POST", "/sync/import", Some(&std::fs::read(&resp).unwrap()));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["status"], "applied");
    // Operator actions and the timers, through the API and the CLI.
    let made = call(
        "POST",
        "/tokens",
        Some(br#"{"virtual_account": "Lab", "days": 7}"#),
    );
    assert_eq!(made.status, 201, "{}", String::from_utf8_lossy(&made.body));
    let id = made.json()["id"].as_i64().unwrap();
    let revoked = call("POST", &format!("/tokens/{id}/revoke"), None);
    assert_eq!(revoked.status, 200);
    assert_eq!(call("POST", "/alerts/check", None).status, 200);
    site.sat(&["alert", "check"]).ok();
    site.sat(&["token", "create", "--va", "Ops", "--days", "3"])
        .ok();

    stop.store(true, Ordering::Release);
    let rounds = looper.join().unwrap();
    assert!(rounds.len() >= 3);
    for (n, r) in rounds.iter().enumerate() {
        assert_eq!(r.code, 0, "authorization round {n} had errors: {r:?}");
        assert_eq!(r.json()["authorized"], 40, "round {n}: {}", r.stdout);
    }

    // The pools add up: four syncs brought 4 x 5 more; the 40 devices use 40.
    assert_eq!(site.pool("Lab", DNA), (70, 40, 30));
    site.sat(&["event", "verify"]).ok();
}

/// Long lists come a page at a time: `device list --limit --offset --sort` with a summary
/// line by state, the operator API's `limit`/`offset`/`sort` with the total in
/// `X-Total-Count`, and the whole list streamed as JSON or CSV (one header row) across
/// pages of 5,000.
#[test]
fn device_lists_page_sort_and_stream() {
    let t = tempfile::tempdir().unwrap();
    let site = Site::new(t.path());
    let token = site.token("Lab", &[]);
    let sim = site.sim(&["run", "--token", &token, "--devices", "12"]);
    assert_eq!(sim["registered"], 12, "{sim}");
    // 6,000 more by SQL, so the streamed list spans two pages of 5,000.
    harness::exec_sql(
        &crate::common::sat_db(&site.dir),
        "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 6000)
         INSERT INTO product_instances (uuid, va_id, pid, sn, name, public_key, registered_at,
             last_contact_at)
         SELECT printf('00000000-0000-4000-8000-%012d', i), 1, 'BULK', printf('B%06d', i),
             printf('bulk-%04d', i), 'p256:00', 1, 1 FROM k;",
    );

    let page = site
        .sat(&[
            "device", "list", "--limit", "3", "--offset", "2", "--sort", "serial", "--json",
        ])
        .ok()
        .json();
    let serials: Vec<&str> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["serial_number"].as_str().unwrap())
        .collect();
    assert_eq!(serials, ["B000003", "B000004", "B000005"]);
    let text = site.sat(&["device", "list", "--limit", "2"]).ok().stdout;
    assert!(
        text.trim_end()
            .ends_with("2 shown of 6012 product instances: 6012 active, 0 removed"),
        "{text}"
    );
    let all = site.sat(&["device", "list", "--json"]).ok().json();
    assert_eq!(all.as_array().unwrap().len(), 6012);
    let csv = site.sat(&["device", "list", "--csv"]).ok().stdout;
    assert_eq!(
        csv.lines().count(),
        6013,
        "one header row, then every device"
    );
    assert_eq!(csv.matches("Name,Product Type").count(), 1);

    let bearer = site.admin_bearer();
    let get = |path: &str| {
        site.sat
            .console
            .request_with(
                "GET",
                &format!("/api/v1/operator{path}"),
                None,
                &[("Authorization", &bearer)],
            )
            .unwrap()
    };
    let r = get("/devices?limit=5&offset=6000&sort=registered");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json().as_array().unwrap().len(), 5);
    let total = r.headers.iter().find(|(k, _)| k == "x-total-count");
    assert_eq!(total.map(|(_, v)| v.as_str()), Some("6012"));
    let r = get("/devices?format=csv");
    let body = String::from_utf8_lossy(&r.body).to_string();
    assert_eq!(body.lines().count(), 6013);
    assert_eq!(get("/devices").json().as_array().unwrap().len(), 6012);
    assert_eq!(get("/devices?sort=sideways").status, 400);
    assert_eq!(get("/devices?limit=0").status, 400);

    // The event log likewise: 12 registrations and more, a page or all of it, streamed.
    let total = site.sat(&["event", "list", "--json"]).ok().json();
    let n = total.as_array().unwrap().len();
    assert!(n >= 12, "{total}");
    let page = site
        .sat(&["event", "list", "--limit", "2", "--offset", "1", "--json"])
        .ok()
        .json();
    let ids = |v: &serde_json::Value| -> Vec<i64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_i64().unwrap())
            .collect()
    };
    let all_ids = ids(&total);
    assert_eq!(
        ids(&page),
        all_ids[n - 3..n - 1],
        "the two before the newest"
    );
    let text = site.sat(&["event", "list", "--limit", "1"]).ok().stdout;
    assert!(
        text.trim_end().ends_with(&format!("1 shown of {n} events")),
        "{text}"
    );
    let r = get("/events?limit=2&offset=1");
    assert_eq!(ids(&r.json()), all_ids[n - 3..n - 1]);
    let total_header = r.headers.iter().find(|(k, _)| k == "x-total-count");
    assert_eq!(total_header.map(|(_, v)| v.clone()), Some(n.to_string()));
    let csv = String::from_utf8_lossy(&get("/events?format=csv").body).to_string();
    assert!(csv.starts_with("ID,Time,"), "{csv}");
}

/// A response that changes many license lines is staged beside the live lines in short
/// writes and swapped in at the end; one that changes a few is written at once. Either
/// way the pools come out as the cloud has them, devices keep their answers, and the same
/// response again changes nothing.
#[test]
fn many_license_lines_are_staged_and_swapped_in() {
    let t = tempfile::tempdir().unwrap();
    let site = Site::new(t.path());
    let token = site.token("Lab", &[]);
    let ent = format!("{DNA}:1");
    let sim = site.run_devices(&token, 3, &ent);
    assert_eq!(sim["authorized"], 3, "{sim}");
    let lines = |site: &Site| {
        harness::query_strings(
            &crate::common::sat_db(&site.dir),
            "SELECT count(*) || '' AS v FROM licenses",
        )[0]
        .parse::<i64>()
        .unwrap()
    };
    let before = lines(&site);

    // 12,000 more lines at the cloud, over 100 tags of Lab: staged.
    harness::exec_sql(
        &site.cloud.db(),
        "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 12000)
         INSERT INTO licenses (va_id, tag, name, description, kind, quantity, created_at)
         SELECT (SELECT id FROM virtual_accounts WHERE name = 'Lab'),
             printf('regid.example.bulk-%d', i % 100), printf('Bulk %d', i % 100), '',
             'perpetual', 1, 0 FROM k;",
    );
    let out = site.round_trip("staged");
    assert_eq!(out["status"], "applied", "{out}");
    assert_eq!(lines(&site), before + 12_000);
    assert_eq!(site.pool("Lab", "regid.example.bulk-7"), (120, 0, 120));
    assert_eq!(site.pool("Lab", DNA), (50, 3, 47));
    let tables = harness::query_strings(
        &crate::common::sat_db(&site.dir),
        "SELECT name AS v FROM sqlite_master WHERE name LIKE 'licenses_stage_%'",
    );
    assert!(tables.is_empty(), "a staging table was left: {tables:?}");

    // The same lines again: nothing to write. Then a few changed: written at once.
    let again = site.round_trip("unchanged");
    assert_eq!(
        again["license_changes"].as_array().unwrap().len(),
        0,
        "{again}"
    );
    // 50 more devices: 47 fit, 3 are out of compliance until the pool grows by 5.
    let more = site.run_devices(&token, 50, &ent);
    assert_eq!(more["out_of_compliance"], 3, "{more}");
    let out_of_compliance = |site: &Site| {
        site.sat(&["device", "list", "--json"])
            .ok()
            .stdout
            .matches("OUT_OF_COMPLIANCE")
            .count()
    };
    assert_eq!(out_of_compliance(&site), 3);
    site.cloud
        .add_license("Lab", DNA, "DNA Advantage", "5", &[]);
    site.round_trip("small");
    assert_eq!(site.pool("Lab", DNA), (55, 53, 2));
    assert_eq!(out_of_compliance(&site), 0, "the pool grew: all 53 fit");

    // Most of the bulk removed at the cloud: staged again, the other way.
    harness::exec_sql(
        &site.cloud.db(),
        "DELETE FROM licenses WHERE tag LIKE 'regid.example.bulk-%' AND tag <> 'regid.example.bulk-7'",
    );
    site.round_trip("shrunk");
    assert_eq!(lines(&site), before + 1 + 120);
    assert_eq!(site.pool("Lab", "regid.example.bulk-7"), (120, 0, 120));
    let st = site.sat(&["status", "--json"]).ok().json();
    assert_eq!(st["state"], "registered", "{st}");

    // The devices are answered as before, against the swapped-in table.
    let again = site.run_devices(&token, 1, &ent);
    assert_eq!(again["authorized"], 1, "{again}");
    assert_eq!(site.pool("Lab", DNA), (55, 54, 1));
    site.sat(&["event", "verify"]).ok();
}
