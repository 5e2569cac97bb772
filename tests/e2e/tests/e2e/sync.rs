//! Synchronization end to end: the satellite, the mock cloud and devices as processes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

use crate::common::{register_by_files, sat, sat_db, satellite, Dev, MockCloud, Site};
use satellite_e2e::harness::dump_sqlite;

const DNA: &str = "regid.example.dna-advantage";

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn cloud_usage(cloud: &MockCloud, va: &str, tag: &str) -> (i64, i64) {
    let rows = cloud.run(&["usage", "--json"]).ok().json();
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["va"] == va && r["tag"] == tag)
        .map(|r| {
            (
                r["purchased"].as_i64().unwrap(),
                r["in_use"].as_i64().unwrap(),
            )
        })
        .unwrap_or((0, 0))
}

fn has_license(site: &Site, tag: &str) -> bool {
    let s = site.sat(&["status", "--json"]).ok().json();
    s["virtual_accounts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|va| va["licenses"].as_array().unwrap().iter())
        .any(|l| l["tag"] == tag)
}

fn alerts(dir: &Path) -> Vec<String> {
    sat(dir, &["sync", "status", "--json"]).ok();
    sat(dir, &["status", "--json"]).ok().json()["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

fn advance_both(site: &Site, by: &str) {
    site.sat(&["clock", "advance", by]).ok();
    site.cloud.run(&["clock", "advance", by]).ok();
}

#[test]
fn manual_round_trip_carries_usage_up_and_licenses_down() {
    let t = tempfile::tempdir().unwrap();
    let site = Site::new(t.path());
    let token = site.token("Lab", &[]);
    let mut devs: Vec<Dev> = (0..3)
        .map(|i| Dev::register(&site, &token, &format!("SN-{i}")))
        .collect();
    for d in &mut devs {
        d.authorize(&site, DNA, 2);
    }

    // Usage at the satellite appears at the cloud.
    let r = site.round_trip("first");
    assert_eq!(r["status"], "applied", "{r}");
    assert_eq!(cloud_usage(&site.cloud, "Lab", DNA), (50, 6));
    let pis = site.cloud.run(&["pi", "list", "--json"]).ok().json();
    assert_eq!(pis.as_array().unwrap().len(), 3, "{pis}");

    // Incremental: nothing changed, nothing sent; one device changes, one is sent.
    let (req, _) = site.files("quiet");
    let out = site
        .sat(&["sync", "export", "--out", p(&req), "--json"])
        .ok()
        .json();
    assert_eq!(out["product_instances"], 0, "{out}");
    devs[0].authorize(&site, DNA, 5);
    let out = site
        .sat(&["sync", "export", "--out", p(&req), "--json"])
        .ok()
        .json();
    assert_eq!(out["product_instances"], 1, "{out}");
    assert_eq!(out["usage"], 1, "{out}");
    let full = site
        .sat(&["sync", "export", "--full", "--out", p(&req), "--json"])
        .ok()
        .json();
    assert_eq!(full["product_instances"], 3, "{full}");

    // Licenses added at the cloud appear after a sync; a dry run shows them first and
    // changes nothing.
    site.cloud
        .add_license("Ops", "regid.example.new", "New One", "7", &[]);
    let end = satellite::clock::format(satellite::clock::system_now() + 10 * 86_400);
    site.cloud.add_license(
        "Lab",
        "regid.example.short",
        "Short",
        "4",
        &["--kind", "term", "--end", &end],
    );
    let (req, resp) = site.files("second");
    site.sat(&["sync", "export", "--out", p(&req)]).ok();
    site.cloud
        .run(&["sync", "process", p(&req), "--out", p(&resp)])
        .ok();
    assert_eq!(cloud_usage(&site.cloud, "Lab", DNA), (50, 9));
    let db = sat_db(&site.dir);
    let before = dump_sqlite(&db);
    let dry = site
        .sat(&["sync", "import", p(&resp), "--dry-run", "--json"])
        .ok()
        .json();
    assert_eq!(dry["status"], "dry-run");
    let changes = dry["license_changes"].as_array().unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c["tag"] == "regid.example.new" && c["after"] == 7 && c["change"] == "added"),
        "{dry}"
    );
    assert_eq!(dump_sqlite(&db), before, "a dry run changes nothing");
    assert!(!has_license(&site, "regid.example.new"));
    let applied = site
        .sat(&["sync", "import", p(&resp), "--json"])
        .ok()
        .json();
    assert_eq!(applied["status"], "applied");
    assert!(has_license(&site, "regid.example.new"));
    assert!(has_license(&site, "regid.example.short"));

    // The same response again: a no-op that says so.
    let before = dump_sqlite(&db);
    let again = site.sat(&["sync", "import", p(&resp)]).ok();
    assert!(again.stdout.contains("already applied"), "{again:?}");
    assert_eq!(dump_sqlite(&db), before);

    // A license expiring at the cloud disappears after the next sync.
    advance_both(&site, "11d");
    let r = site.round_trip("third");
    assert!(!has_license(&site, "regid.example.short"), "{r}");
    let expired = r["license_changes"].as_array().unwrap();
    assert!(
        expired
            .iter()
            .any(|c| c["tag"] == "regid.example.short" && c["change"] == "expired"),
        "{r}"
    );
}

#[test]
fn refused_responses_leave_the_store_unchanged() {
    let t = tempfile::tempdir().unwrap();
    let site = Site::new(t.path());
    let db = sat_db(&site.dir);

    // Two requests answered out of order: the older answer is refused after the newer.
    let (req1, resp1) = site.files("one");
    let (req2, resp2) = site.files("two");
    site.sat(&["sync", "export", "--out", p(&req1)]).ok();
    site.sat(&["sync", "export", "--out", p(&req2)]).ok();
    site.cloud
        .run(&["sync", "process", p(&req1), "--out", p(&resp1)])
        .ok();
    site.cloud
        .run(&["sync", "process", p(&req2), "--out", p(&resp2)])
        .ok();
    site.sat(&["sync", "import", p(&resp2)]).ok();

    // Another satellite of the same cloud, with its own response.
    let other = t.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    register_by_files(&other, &site.cloud, "other", &["Spare"]);
    let (osync, oresp) = (other.join("s.zip"), other.join("r.zip"));
    sat(&other, &["sync", "export", "--out", p(&osync)]).ok();
    site.cloud
        .run(&["sync", "process", p(&osync), "--out", p(&oresp)])
        .ok();

    // A tampered copy of a good response, and a truncated one.
    let (req3, resp3) = site.files("three");
    site.sat(&["sync", "export", "--out", p(&req3)]).ok();
    site.cloud
        .run(&["sync", "process", p(&req3), "--out", p(&resp3)])
        .ok();
    let mut bytes = std::fs::read(&resp3).unwrap();
    let tampered = site.dir.join("tampered.zip");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&tampered, &bytes).unwrap();
    let truncated = site.dir.join("truncated.zip");
    std::fs::write(&truncated, &bytes[..mid]).unwrap();

    let before = dump_sqlite(&db);
    for (file, why) in [
        (&resp1, "older than the last one applied"),
        (&oresp, "addressed to"),
        (&tampered, ""),
        (&truncated, ""),
    ] {
        let out = site.sat(&["sync", "import", p(file)]);
        assert_eq!(out.code, 2, "{file:?} must be refused: {out:?}");
        assert!(out.stderr.contains(why), "{file:?}: {}", out.stderr);
        assert_eq!(dump_sqlite(&db), before, "{file:?} changed the store");
    }

    // An expired response (31 days in transit): refused once the timers have run.
    site.sat(&["clock", "advance", "31d"]).ok();
    site.sat(&["sync", "status"]).ok();
    let before = dump_sqlite(&db);
    let out = site.sat(&["sync", "import", p(&resp3)]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("expired"), "{}", out.stderr);
    assert_eq!(dump_sqlite(&db), before);
}

#[test]
fn records_the_cloud_refuses_stay_pending_until_accepted() {
    let t = tempfile::tempdir().unwrap();
    let site = Site::new(t.path());
    let token = site.token("Lab", &[]);
    let mut a = Dev::register(&site, &token, "SN-A");
    let mut b = Dev::register(&site, &token, "SN-B");
    a.authorize(&site, DNA, 1);
    b.authorize(&site, DNA, 1);
    // The cloud already has SN-B, registered directly.
    site.cloud
        .run(&[
            "pi", "add", "--va", "Ops", "--pid", "TEST-PID", "--sn", "SN-B",
        ])
        .ok();
    let r = site.round_trip("first");
    let rejected = r["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 1, "{r}");
    assert_eq!(rejected[0]["pi"], b.pi_id.as_str());
    assert!(
        rejected[0]["reason"]
            .as_str()
            .unwrap()
            .contains("already registered directly"),
        "{r}"
    );
    let st = site.sat(&["sync", "status", "--json"]).ok().json();
    assert_eq!(st["rejected"].as_array().unwrap().len(), 1, "{st}");
    assert_eq!(cloud_usage(&site.cloud, "Lab", DNA), (50, 1));

    // Nothing changed on the satellite, yet the refused device is sent again; once the
    // cloud lets it go, it is accepted.
    site.cloud
        .run(&["pi", "remove", "--pid", "TEST-PID", "--sn", "SN-B"])
        .ok();
    let (req, _) = site.files("peek");
    let out = site
        .sat(&["sync", "export", "--out", p(&req), "--json"])
        .ok()
        .json();
    assert_eq!(out["resent_rejected"], 1, "{out}");
    let r = site.round_trip("second");
    assert_eq!(r["rejected"].as_array().unwrap().len(), 0, "{r}");
    assert_eq!(cloud_usage(&site.cloud, "Lab", DNA), (50, 2));
    let st = site.sat(&["sync", "status", "--json"]).ok().json();
    assert_eq!(st["rejected"].as_array().unwrap().len(), 0, "{st}");
}

#[test]
fn network_sync_and_the_failure_alert() {
    let t = tempfile::tempdir().unwrap();
    let site = Site::new(t.path());
    let token = site.token("Lab", &[]);
    let mut d = Dev::register(&site, &token, "SN-N");
    d.authorize(&site, DNA, 3);
    let (server, port) = site.cloud.serve(t.path(), &[]);
    let url = format!("https://localhost:{port}");
    let now = |extra: &[&str]| {
        let mut c = satellite(&site.dir);
        c.env("SATELLITE_CLOUD_URL", &url)
            .env("SATELLITE_SYNC_FAILURE_ALERT_AFTER", "2")
            .args(["sync", "now", "--json"])
            .args(extra);
        satellite_e2e::harness::run(&mut c)
    };
    let out = now(&[]).ok().json();
    assert_eq!(out["response"]["status"], "applied", "{out}");
    assert_eq!(out["request"]["product_instances"], 1);
    assert_eq!(cloud_usage(&site.cloud, "Lab", DNA), (50, 3));
    let st = site.sat(&["sync", "status", "--json"]).ok().json();
    assert_eq!(st["last_sync_mode"], "network", "{st}");

    // The cloud goes away: failures are counted, the alert comes after two.
    drop(server);
    let first = now(&[]);
    assert_eq!(first.code, 1, "{first:?}");
    assert!(first.stderr.contains("cannot reach the cloud"), "{first:?}");
    assert!(!alerts(&site.dir).contains(&"Synchronization Failed".to_string()));
    assert_eq!(now(&[]).code, 1);
    assert!(alerts(&site.dir).contains(&"Synchronization Failed".to_string()));
    let st = site.sat(&["sync", "status", "--json"]).ok().json();
    assert_eq!(st["failures"], 2, "{st}");

    // Back: a full resync succeeds and clears the alert.
    let again = t.path().join("again");
    std::fs::create_dir_all(&again).unwrap();
    let (_server, port) = site.cloud.serve(&again, &[]);
    let url2 = format!("https://localhost:{port}");
    let mut c = satellite(&site.dir);
    c.env("SATELLITE_CLOUD_URL", &url2)
        .args(["sync", "now", "--full", "--json"]);
    let out = satellite_e2e::harness::run(&mut c).ok().json();
    assert_eq!(out["request"]["full"], true);
    assert!(!alerts(&site.dir).contains(&"Synchronization Failed".to_string()));
}

#[test]
fn thirty_sixty_six_ninety_days_then_removal_and_registration_again() {
    let t = tempfile::tempdir().unwrap();
    let site = Site::new(t.path());
    let token = site.token("Lab", &[]);
    let mut d = Dev::register(&site, &token, "SN-T");
    d.authorize(&site, DNA, 4);
    site.round_trip("first");
    assert_eq!(cloud_usage(&site.cloud, "Lab", DNA), (50, 4));

    advance_both(&site, "30d");
    assert_eq!(alerts(&site.dir), vec!["Upcoming Sync Deadline (30 Day)"]);
    advance_both(&site, "36d");
    assert_eq!(alerts(&site.dir), vec!["Synchronization Overdue"]);
    let st = site.sat(&["sync", "status", "--json"]).ok().json();
    assert_eq!(st["days_left_before_removal"], 24, "{st}");

    // Setting the clock back does not buy time.
    let shown = site.sat(&["clock", "show"]).ok().stdout;
    let now = satellite::clock::parse_time(shown.split_whitespace().next().unwrap()).unwrap();
    let back = satellite::clock::format(now - 20 * 86_400);
    site.sat(&["clock", "set", &back]).ok();
    let st = site.sat(&["sync", "status", "--json"]).ok().json();
    assert_eq!(st["clock_behind"], true, "{st}");
    assert_eq!(st["days_left_before_removal"], 24, "{st}");
    site.sat(&["clock", "advance", "20d"]).ok();

    advance_both(&site, "24d");
    let a = alerts(&site.dir);
    assert!(
        a.contains(&"Satellite Unregistered and Removed".to_string()),
        "{a:?}"
    );
    assert_eq!(
        site.sat(&["status", "--json"]).ok().json()["state"],
        "removed"
    );
    // Devices are refused as by a lost authority; sync is refused; data is kept.
    let r = d.signed(
        &site,
        "/api/v1/devices/authorize",
        serde_json::json!({ "nonce": "n", "entitlements": [{ "tag": DNA, "count": 1 }] }),
    );
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["error"]["code"], "satellite_removed");
    let (req, _) = site.files("late");
    let out = site.sat(&["sync", "export", "--out", p(&req)]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("removed"), "{}", out.stderr);
    let devices = site.sat(&["device", "list", "--json"]).ok().json();
    assert_eq!(devices.as_array().unwrap().len(), 1);
    // The cloud applies the same rule and releases the devices' licenses.
    let sats = site.cloud.run(&["satellite", "list", "--json"]).ok().json();
    assert_eq!(sats[0]["state"], "removed", "{sats}");
    assert_eq!(cloud_usage(&site.cloud, "Lab", DNA), (50, 0));

    // Registered again: service is back and the next sync sends everything.
    site.register_again(&["Lab", "Ops"]);
    assert!(alerts(&site.dir).is_empty());
    d.authorize(&site, DNA, 4);
    let r = site.round_trip("after");
    assert_eq!(r["status"], "applied");
    assert_eq!(cloud_usage(&site.cloud, "Lab", DNA), (50, 4));
}

#[test]
fn sigkill_while_applying_a_large_response_leaves_old_or_new_never_a_mix() {
    let t = tempfile::tempdir().unwrap();
    let site = Site::new(t.path());
    let mut csv = String::from("va,tag,name,kind,count,start,end,restricted\n");
    for i in 0..60_000 {
        csv.push_str(&format!(
            "Lab,regid.bulk.{i},Bulk {i},perpetual,1,,,false\n"
        ));
    }
    let csv_path = t.path().join("bulk.csv");
    std::fs::write(&csv_path, csv).unwrap();
    site.cloud.run(&["license", "import", p(&csv_path)]).ok();
    let (req, resp) = site.files("big");
    site.sat(&["sync", "export", "--out", p(&req)]).ok();
    site.cloud
        .run(&["sync", "process", p(&req), "--out", p(&resp)])
        .ok();
    let db = sat_db(&site.dir);
    let lines = |db: &Path| -> usize {
        dump_sqlite(db)
            .split("== ")
            .find(|s| s.starts_with("licenses\n"))
            .map(|s| s.lines().count() - 1)
            .unwrap()
    };
    let old = lines(&db);

    // Killed as soon as it reports progress (inside the transaction).
    let mut child = satellite(&site.dir)
        .args(["sync", "import", p(&resp)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut killed = false;
    for line in BufReader::new(stderr).lines().take(1000) {
        let line = line.unwrap_or_default();
        if line.contains("license lines: ") {
            // SAFETY: kill(2) on our own child.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGKILL);
            }
            killed = true;
            break;
        }
    }
    let _ = child.wait();
    assert!(killed, "the import reported no progress");
    let after_kill = lines(&db);
    assert!(
        after_kill == old || after_kill == 60_003,
        "a mix: {after_kill} lines (old {old})"
    );
    // The sync can be redone.
    let out = site
        .sat(&["sync", "import", p(&resp), "--json"])
        .ok()
        .json();
    assert!(
        out["status"] == "applied" || out["status"] == "already-applied",
        "{out}"
    );
    assert_eq!(lines(&db), 60_003);
    // The running server still serves.
    assert_eq!(site.sat.https.get("/readyz").unwrap().status, 200);
}
