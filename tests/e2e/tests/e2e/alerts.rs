//! Alerts, the event log, reports and CSV exports, end to end: the real satellite and mock
//! cloud, the clock moved by `satellite clock advance`, never by sleeping.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{csr_pem, register_body, Dev, Site};
use satellite_e2e::harness::free_port;

const DNA: &str = "regid.example.dna-advantage";
const SEC: &str = "regid.example.sec";
const TERM: &str = "regid.example.term";

fn alerts(site: &Site, state: &str) -> Vec<Value> {
    site.sat(&["alert", "list", "--state", state, "--json"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .clone()
}

fn of_type<'a>(all: &'a [Value], kind: &str) -> Vec<&'a Value> {
    all.iter().filter(|a| a["type"] == kind).collect()
}

/// Waits (bounded) until the running server's scheduler has done what `done` looks for.
fn wait_for(site: &Site, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = alerts(site, "all");
        if done(&all) {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "the scheduler did not {what} within 30 s: {all:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The satellite's time, as Unix seconds.
fn sat_now(site: &Site) -> i64 {
    site.sat(&["clock", "show", "--json"]).ok().json()["unix"]
        .as_i64()
        .unwrap()
}

/// YYYY-MM-DD of a Unix time (UTC).
fn date_of(unix: i64) -> String {
    satellite::clock::format(unix)[..10].to_string()
}

/// Adds at the cloud a term license of 3 in Lab named `name` that ends `days` days from
/// the satellite's now; returns its end date.
fn add_term_license(site: &Site, days: i64, name: &str) -> String {
    let end = date_of(sat_now(site) + days * 86_400);
    site.cloud.add_license(
        "Lab",
        TERM,
        name,
        "3",
        &["--kind", "term", "--start", "2026-01-01", "--end", &end],
    );
    end
}

#[test]
fn the_scheduler_raises_and_ends_the_timer_alerts_as_the_clock_moves() {
    let t = tempfile::tempdir().unwrap();
    let mut site = Site::new(t.path());
    // The server's scheduler evaluates the timers every second.
    site.restart_with(&[("SATELLITE_SYNC_TICK_SECONDS", "1")]);
    let end = add_term_license(&site, 45, "Term 45");
    site.round_trip("term");
    let token = site.token("Lab", &[]);
    let mut quiet = Dev::register(&site, &token, "SN-QUIET");
    quiet.authorize(&site, DNA, 2);
    assert_eq!(site.pool("Lab", DNA).1, 2);

    // Day 31 (synced, so the satellite stays registered): the device has not been heard of
    // for 31 days, the term license ends in 14.
    site.advance_synced(31);
    let all = wait_for(&site, "raise Failed to Connect", |a| {
        !of_type(a, "Product Instance Failed to Connect").is_empty()
    });
    let fc = of_type(&all, "Product Instance Failed to Connect")[0].clone();
    assert_eq!(fc["severity"], "minor");
    assert_eq!(fc["source"], quiet.pi_id.as_str());
    assert_eq!(fc["virtual_account"], "Lab");
    assert_eq!(
        fc["message"],
        "The Product Instance \"PID:TEST-PID SN:SN-QUIET\" in the Virtual Account \"Lab\" is \
         not connected for its renewal period and the product instance may run in a degraded \
         state if it does not connect within the next 59 days. If the product is not going to \
         connect, you can remove it to immediately release the license it is consuming."
    );
    let expiring = of_type(&all, "Licenses Expiring");
    let current: Vec<_> = expiring.iter().filter(|a| a["state"] == "active").collect();
    assert_eq!(current.len(), 1, "{expiring:#?}");
    assert_eq!(current[0]["severity"], "minor");
    assert_eq!(
        current[0]["message"],
        format!(
            "3 Term 45 licenses in the virtual account \"Lab\" are set to expire in 14 days on \
             {end}."
        )
    );
    assert!(current[0]["action_due"].as_str().unwrap().starts_with(&end));
    // The 60- and 30-day warnings came before and were dismissed by the newer one.
    assert!(expiring
        .iter()
        .filter(|a| a["state"] == "dismissed")
        .all(|a| a["dismissed_by"] == "system"));

    // The operator: remind later for the device, dismiss for the license.
    let id = fc["id"].to_string();
    let r = site
        .sat(&["alert", "remind-later", &id, "--json"])
        .ok()
        .json();
    assert_eq!(r["state"], "snoozed");
    let exp_id = current[0]["id"].to_string();
    site.sat(&["alert", "dismiss", &exp_id]).ok();
    assert!(
        alerts(&site, "active").is_empty(),
        "{:#?}",
        alerts(&site, "active")
    );
    let again = site.sat(&["alert", "dismiss", &exp_id]);
    assert_eq!(again.code, 2, "{again:?}");
    assert!(again.stderr.contains("dismissed already"), "{again:?}");

    // Day 61: the 60-day warning replaces the snoozed one.
    site.advance_synced(30);
    let all = wait_for(&site, "raise the 60-day warning", |a| {
        of_type(a, "Product Instance Failed to Connect").len() == 2
    });
    let fcs = of_type(&all, "Product Instance Failed to Connect");
    assert_eq!(fcs.len(), 2);
    let active: Vec<_> = fcs.iter().filter(|a| a["state"] == "active").collect();
    assert_eq!(active.len(), 1, "{fcs:#?}");
    assert!(active[0]["message"]
        .as_str()
        .unwrap()
        .contains("within the next 29 days"));
    // The term license ended on day 45: its Expired alert is recorded dismissed, as its
    // warning was (seed 001), and the event says so with the seed's text.
    let expired = of_type(&all, "Licenses Expired");
    assert_eq!(expired.len(), 1, "{all:#?}");
    assert_eq!(expired[0]["state"], "dismissed");
    let ev = site
        .sat(&["event", "list", "--type", "licenses_expired", "--json"])
        .ok()
        .json();
    assert_eq!(
        ev[0]["message"],
        "3 \"Term 45\" licenses expired and were removed from the Virtual Account \"Lab\"."
    );

    // Day 91: Failed to Renew, major; the licenses are released.
    site.advance_synced(30);
    let all = wait_for(&site, "raise Failed to Renew", |a| {
        !of_type(a, "Product Instance Failed to Renew").is_empty()
    });
    let fr = of_type(&all, "Product Instance Failed to Renew")[0];
    assert_eq!(fr["severity"], "major");
    assert_eq!(
        fr["message"],
        "The product instance \"PID:TEST-PID SN:SN-QUIET\" in the Virtual Account \"Lab\" \
         failed to connect during its renewal period and may be running in a degraded state. \
         The licenses it was consuming have been released for use by other product instances."
    );
    assert_eq!(site.pool("Lab", DNA).1, 0);
    assert_eq!(active_of(&site, "Product Instance Failed to Connect"), 0);

    // It connects again: authorized again, and the alert clears itself.
    quiet.authorize(&site, DNA, 2);
    assert_eq!(site.pool("Lab", DNA).1, 2);
    wait_for(&site, "clear Failed to Renew", |a| {
        of_type(a, "Product Instance Failed to Renew")
            .iter()
            .all(|x| x["state"] == "cleared")
    });
}

fn active_of(site: &Site, kind: &str) -> usize {
    of_type(&alerts(site, "active"), kind).len()
}

/// A device registered with a display name of its own.
fn named_device(site: &Site, token: &str, sn: &str, name: &str) -> Dev {
    let key = sync_format::pki::new_p256_key().unwrap();
    let mut body = register_body(token, "TEST-PID", sn, &key);
    body["name"] = name.into();
    Dev::register_with(site, &body, key)
}

/// A JSON value as the CSV writes it: strings as they are, lists joined by "; ".
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join("; "),
        other => other.to_string(),
    }
}

type Column = (&'static str, fn(&Value) -> String);

/// Runs a command with --csv and with --json, reads the CSV back with a CSV parser and
/// checks it holds the same rows, column by column.
fn same_rows(site: &Site, args: &[&str], columns: &[Column]) -> String {
    let mut csv_args = args.to_vec();
    csv_args.push("--csv");
    let raw = site.sat(&csv_args).ok().stdout;
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let json = site.sat(&json_args).ok().json();
    let rows = json.as_array().unwrap();
    assert!(!rows.is_empty(), "{args:?} has no rows");

    // RFC 4180: CRLF line ends, a header row.
    assert!(raw.ends_with("\r\n"), "{raw:?}");
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(raw.as_bytes());
    let headers: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let records: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    assert_eq!(records.len(), rows.len(), "{args:?}\n{raw}");
    for (name, _) in columns {
        assert!(
            headers.iter().any(|h| h == name),
            "{args:?}: no column {name:?} in {headers:?}"
        );
    }
    for (rec, row) in records.iter().zip(rows) {
        assert_eq!(rec.len(), headers.len());
        for (name, get) in columns {
            let i = headers.iter().position(|h| h == name).unwrap();
            assert_eq!(rec[i], get(row), "{args:?}: column {name:?} of {row}");
        }
    }
    raw
}

#[test]
fn csv_exports_read_back_as_the_same_rows_with_commas_quotes_and_non_ascii() {
    let t = tempfile::tempdir().unwrap();
    let site = Site::new(t.path());
    let token = site.token("Lab", &["--description", "Rollout, \"wave 1\" – Zürich"]);
    let odd = "Router \"Nord\", Zürich 東京";
    let mut a = named_device(&site, &token, "SN-A", odd);
    a.authorize(&site, DNA, 2);
    // Past the pool of `Security, "Plus"` (5): Insufficient Licenses, a major alert.
    a.authorize(&site, SEC, 6);
    let mut b = Dev::register(&site, &token, "SN-B");
    b.authorize(&site, DNA, 1);

    let licenses: &[Column] = &[
        ("Virtual Account", |r| cell(&r["virtual_account"])),
        ("License", |r| cell(&r["license"])),
        ("Tag", |r| cell(&r["tag"])),
        ("Billing", |r| cell(&r["billing"])),
        ("Purchased", |r| cell(&r["purchased"])),
        ("In Use", |r| cell(&r["in_use"])),
        ("Balance", |r| cell(&r["balance"])),
        ("Alerts", |r| cell(&r["alerts"])),
    ];
    let raw = same_rows(&site, &["license", "list"], licenses);
    assert!(raw.contains("\"Security, \"\"Plus\"\"\""), "{raw}");
    assert!(raw.contains("Insufficient Licenses (major)"), "{raw}");
    same_rows(
        &site,
        &["report", "licenses", "--va", "Lab", "--license", SEC],
        licenses,
    );
    let report = site
        .sat(&[
            "report",
            "licenses",
            "--va",
            "Lab",
            "--license",
            SEC,
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(report.as_array().unwrap().len(), 1);
    assert_eq!(report[0]["balance"], -1);

    let devices: &[Column] = &[
        ("Name", |r| cell(&r["name"])),
        ("Product Type", |r| cell(&r["product_type"])),
        ("Serial Number", |r| cell(&r["serial_number"])),
        ("Virtual Account", |r| cell(&r["virtual_account"])),
        ("State", |r| cell(&r["state"])),
        ("Last Contact", |r| cell(&r["last_contact"])),
        ("PI ID", |r| cell(&r["pi_id"])),
        ("Licenses", |r| cell(&r["licenses"])),
    ];
    let raw = same_rows(&site, &["device", "list"], devices);
    assert!(
        raw.contains("\"Router \"\"Nord\"\", Zürich 東京\""),
        "{raw}"
    );
    same_rows(
        &site,
        &[
            "report",
            "devices",
            "--va",
            "Lab",
            "--product-type",
            "TEST-PID",
        ],
        devices,
    );

    let events: &[Column] = &[
        ("ID", |r| cell(&r["id"])),
        ("Time", |r| cell(&r["time"])),
        ("User", |r| cell(&r["user"])),
        ("Type", |r| cell(&r["type"])),
        ("Virtual Account", |r| cell(&r["virtual_account"])),
        ("Product Instance", |r| cell(&r["product_instance"])),
        ("License", |r| cell(&r["license"])),
        ("Message", |r| cell(&r["message"])),
    ];
    let raw = same_rows(&site, &["event", "list"], events);
    assert!(raw.contains("Zürich 東京"), "{raw}");
    // The event log of one device, of one license.
    same_rows(&site, &["event", "list", "--pi", &a.pi_id], events);
    let sec = same_rows(&site, &["event", "list", "--license", SEC], events);
    assert!(sec.contains("reported a shortage of 1"), "{sec}");

    let alerts_cols: &[Column] = &[
        ("ID", |r| cell(&r["id"])),
        ("Severity", |r| cell(&r["severity"])),
        ("Type", |r| cell(&r["type"])),
        ("Virtual Account", |r| cell(&r["virtual_account"])),
        ("Message", |r| cell(&r["message"])),
    ];
    let raw = same_rows(&site, &["alert", "list", "--state", "all"], alerts_cols);
    assert!(
        raw.contains(
            "The Virtual Account \"\"Lab\"\" has a shortage of Security, \"\"Plus\"\" licenses."
        ),
        "{raw}"
    );

    // Bad arguments: a clear error, exit 2.
    let bad = site.sat(&["report", "licenses", "--va", "Nowhere"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(
        bad.stderr.contains("no virtual account named \"Nowhere\""),
        "{bad:?}"
    );
    let bad = site.sat(&["event", "list", "--since", "yesterday-ish"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    let bad = site.sat(&["alert", "list", "--json", "--csv"]);
    assert_eq!(bad.code, 2, "{bad:?}");
}

/// The events appended since `after`, oldest first.
fn events_after(site: &Site, after: i64) -> Vec<Value> {
    site.sat(&["event", "list", "--json"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["id"].as_i64().unwrap() > after)
        .cloned()
        .collect()
}

/// Checks that the events since `last` include, for each (kind, text), one of that kind
/// whose message contains the text, and moves `last` past them.
fn expect_all(site: &Site, last: &mut i64, change: &str, wanted: &[(&str, &str)]) {
    let new = events_after(site, *last);
    for (kind, text) in wanted {
        assert!(
            new.iter()
                .any(|e| e["type"] == *kind && e["message"].as_str().unwrap().contains(text)),
            "{change}: no {kind} event containing {text:?} among {new:#?}"
        );
    }
    if let Some(e) = new.last() {
        *last = e["id"].as_i64().unwrap();
    }
}

fn expect(site: &Site, last: &mut i64, change: &str, kind: &str, text: &str) {
    expect_all(site, last, change, &[(kind, text)]);
}

#[test]
fn every_state_change_leaves_an_event_and_the_chain_holds() {
    let t = tempfile::tempdir().unwrap();
    let site = Site::new(t.path());
    let mut last = 0;
    expect(&site, &mut last, "registration", "satellite_registered", "");

    // Tokens.
    let token = site.token("Lab", &[]);
    expect(&site, &mut last, "token create", "token_created", "Lab");
    site.token("Lab", &[]);
    let listed = site.sat(&["token", "list", "--json"]).ok().json();
    let spare_id = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].to_string())
        .max()
        .unwrap();
    site.sat(&["token", "revoke", &spare_id]).ok();
    expect(&site, &mut last, "token revoke", "token_revoked", "");
    site.sat(&["token", "remove", &spare_id]).ok();
    expect(&site, &mut last, "token remove", "token_removed", "");

    // Devices.
    let mut d = Dev::register(&site, &token, "SN-E");
    expect(
        &site,
        &mut last,
        "device registers",
        "pi_new",
        "connected and was added to the Virtual Account \"Lab\"",
    );
    d.authorize(&site, DNA, 2);
    expect(
        &site,
        &mut last,
        "device asks",
        "pi_requested_license",
        "requested 2 \"DNA Advantage\"",
    );
    d.authorize(&site, SEC, 6);
    expect(
        &site,
        &mut last,
        "pool exceeded",
        "insufficient_licenses",
        "reported a shortage of 1",
    );
    let key = sync_format::pki::new_p256_key().unwrap();
    let r = d.signed(
        &site,
        "/api/v1/devices/renew",
        serde_json::json!({ "csr_pem": csr_pem(&key) }),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    d.key = key;
    expect(
        &site,
        &mut last,
        "identity renewed",
        "pi_renewed_certificate",
        "successfully renewed its identity certificate",
    );
    let mut gone = Dev::register(&site, &token, "SN-GONE");
    site.sat(&["device", "transfer", &gone.pi_id, "--va", "Ops"])
        .ok();
    expect(
        &site,
        &mut last,
        "device transfer",
        "pi_transferred",
        "from the Virtual Account \"Lab\" to the Virtual Account \"Ops\"",
    );
    let r = gone.signed(&site, "/api/v1/devices/deregister", serde_json::json!({}));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    expect(
        &site,
        &mut last,
        "device deregisters",
        "pi_removed",
        "was removed",
    );
    let other = Dev::register(&site, &token, "SN-RM");
    last = events_after(&site, last).last().unwrap()["id"]
        .as_i64()
        .unwrap();
    site.sat(&["device", "remove", &other.pi_id]).ok();
    expect(
        &site,
        &mut last,
        "operator removes",
        "pi_removed",
        "was removed",
    );

    // Export-controlled: asked, granted by the cloud, returned.
    let xtoken = site.token("Ops", &["--export-controlled"]);
    let mut x = Dev::register(&site, &xtoken, "SN-X");
    last = events_after(&site, last).last().unwrap()["id"]
        .as_i64()
        .unwrap();
    let r = x.signed(
        &site,
        "/api/v1/devices/export/request",
        serde_json::json!({ "tag": "regid.example.hsec", "count": 1 }),
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    expect(
        &site,
        &mut last,
        "export request",
        "pi_requested_license",
        "HSECK9",
    );

    // A license added at the cloud, a sync by files.
    add_term_license(&site, 40, "Term 40");
    site.round_trip("first");
    expect_all(
        &site,
        &mut last,
        "sync by files",
        &[
            (
                "export_authorization_success",
                "Export restricted licenses were assigned",
            ),
            (
                "licenses_added",
                "3 new Term 40 licenses were added to the Virtual Account \"Lab\".",
            ),
            (
                "satellite_synchronized_file",
                "synchronized with the cloud by file",
            ),
        ],
    );
    let r = x.signed(
        &site,
        "/api/v1/devices/export/return",
        serde_json::json!({ "tag": "regid.example.hsec" }),
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    site.round_trip("second");
    expect(
        &site,
        &mut last,
        "export return",
        "export_authorization_released",
        "released back",
    );
    // The cloud, holding every event the syncs carried, finds the chain whole.
    let chain = site
        .cloud
        .run(&["satellite", "events", "site", "--json"])
        .ok()
        .json();
    assert_eq!(chain["breaks"], serde_json::json!([]), "{chain}");
    // (up to the last request: the events of applying its response travel next time)
    assert!(chain["events"].as_i64().unwrap() > 15, "{chain}");

    // A network sync that fails.
    let mut c = crate::common::satellite(&site.dir);
    c.env(
        "SATELLITE_CLOUD_URL",
        format!("https://localhost:{}", free_port()),
    )
    .args(["sync", "now"]);
    assert_eq!(satellite_e2e::harness::run(&mut c).code, 1);
    expect(
        &site,
        &mut last,
        "sync fails",
        "satellite_sync_failed",
        "failed",
    );

    // A refused action changes nothing and logs nothing.
    let active = alerts(&site, "active");
    let insufficient = of_type(&active, "Insufficient Licenses");
    assert_eq!(
        site.sat(&["alert", "dismiss", &insufficient[0]["id"].to_string()])
            .code,
        2,
        "Insufficient Licenses cannot be dismissed"
    );
    assert!(events_after(&site, last).is_empty());

    // The timers: the device goes quiet, the term license ends, the satellite stops syncing.
    d.authorize(&site, DNA, 2);
    last = events_after(&site, last)
        .last()
        .map_or(last, |e| e["id"].as_i64().unwrap());
    site.sat(&["clock", "advance", "31d"]).ok();
    site.sat(&["alert", "check"]).ok();
    expect(
        &site,
        &mut last,
        "device silent 30 days",
        "pi_failed_to_connect",
        "failed to connect for its renewal period",
    );
    let fc = of_type(
        &alerts(&site, "active"),
        "Product Instance Failed to Connect",
    )[0]["id"]
        .to_string();
    site.sat(&["alert", "dismiss", &fc]).ok();
    expect(
        &site,
        &mut last,
        "alert dismissed",
        "alert_action",
        "was dismissed",
    );
    site.sat(&["clock", "advance", "35d"]).ok();
    site.sat(&["alert", "check"]).ok();
    expect_all(
        &site,
        &mut last,
        "day 66: the term license ended, no sync for 66 days",
        &[
            ("licenses_expired", "3 \"Term 40\" licenses expired"),
            (
                "satellite_sync_overdue",
                "not synchronized within the expected time period",
            ),
        ],
    );
    site.sat(&["clock", "advance", "25d"]).ok();
    site.sat(&["alert", "check"]).ok();
    expect_all(
        &site,
        &mut last,
        "day 91: no sync for 90 days, the device silent for 91",
        &[
            ("satellite_removed", "failed to synchronize in 90 days"),
            ("pi_failed_to_renew", "have been released"),
        ],
    );

    // Every event is chained to the one before it.
    let v = site.sat(&["event", "verify", "--json"]).ok().json();
    assert_eq!(v["broken_at"], Value::Null, "{v}");
    assert!(v["events"].as_u64().unwrap() > 20, "{v}");
}

#[test]
fn a_tampered_event_log_is_found_by_verify_and_by_the_cloud() {
    let t = tempfile::tempdir().unwrap();
    let site = Site::new(t.path());
    let token = site.token("Lab", &[]);
    let mut d = Dev::register(&site, &token, "SN-T");
    d.authorize(&site, DNA, 2);
    site.round_trip("clean");
    let chain = site
        .cloud
        .run(&["satellite", "events", "site", "--json"])
        .ok()
        .json();
    assert_eq!(chain["breaks"].as_array().unwrap().len(), 0, "{chain}");
    let ok = site.sat(&["event", "verify"]).ok();
    assert!(ok.stdout.contains("chain intact"), "{ok:?}");

    // Someone with the database file edits an event past the append-only triggers.
    let db = crate::common::sat_db(&site.dir);
    satellite_e2e::harness::exec_sql(
        &db,
        "DROP TRIGGER events_append_only_update; \
         UPDATE events SET message = 'nothing happened' WHERE kind = 'pi_requested_license';",
    );
    let bad = site.sat(&["event", "verify"]);
    assert_eq!(bad.code, 3, "{bad:?}");
    assert!(
        bad.stderr.contains("hash chain is broken at event"),
        "{bad:?}"
    );
    assert!(
        bad.stderr.contains("changed after it was written"),
        "{bad:?}"
    );

    // The cloud sees it at the next full sync.
    let breaks = full_sync_breaks(&site, "full");
    assert!(
        breaks
            .iter()
            .any(|r| r.contains("edited after it was written")),
        "{breaks:?}"
    );

    // A forger who also recomputes every hash from the edited event on fools `event
    // verify`, but not the cloud, which holds the hashes it was sent before.
    let rows = satellite_e2e::harness::query_strings(
        &db,
        "SELECT json_object('id', id, 'at', at, 'kind', kind, 'va', va_name, 'pi', pi_uuid, \
         'license', license_tag, 'message', message, 'actor', actor, 'prev_hash', prev_hash, \
         'hash', hash) AS v FROM events ORDER BY id",
    );
    let mut prev = String::new();
    let mut sql = String::new();
    for r in rows {
        let mut e: sync_format::payload::EventRecord = serde_json::from_str(&r).unwrap();
        e.prev_hash = prev.clone();
        e.hash = e.expected_hash();
        sql.push_str(&format!(
            "UPDATE events SET prev_hash = '{}', hash = '{}' WHERE id = {};",
            e.prev_hash, e.hash, e.id
        ));
        prev = e.hash;
    }
    satellite_e2e::harness::exec_sql(&db, &sql);
    let fooled = site.sat(&["event", "verify"]).ok();
    assert!(fooled.stdout.contains("chain intact"), "{fooled:?}");
    let breaks = full_sync_breaks(&site, "forged");
    assert!(
        breaks.iter().any(|r| r.contains("differs from the event")),
        "{breaks:?}"
    );
}

/// A full sync by files, processed by the cloud; the chain breaks the cloud holds.
fn full_sync_breaks(site: &Site, name: &str) -> Vec<String> {
    let (req, resp) = site.files(name);
    site.sat(&["sync", "export", "--full", "--out", req.to_str().unwrap()])
        .ok();
    site.cloud.process(&req, &resp);
    site.cloud
        .run(&["satellite", "events", "site", "--json"])
        .ok()
        .json()["breaks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["reason"].as_str().unwrap().to_string())
        .collect()
}
