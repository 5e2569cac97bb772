//! Running as a service: systemd notifications, backups taken while devices register and
//! their restore, and the upgrade of a database of the first released schema.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use crate::common::{sat, sat_db, start_satellite_env, Site};
use satellite_e2e::harness::{dump_sqlite, query_strings};

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The next notification on `sock` that starts with `prefix` (bounded: 100 datagrams or
/// the socket's timeout).
fn next_notification(sock: &UnixDatagram, prefix: &str) -> String {
    let mut buf = [0u8; 512];
    for _ in 0..100 {
        let n = sock
            .recv(&mut buf)
            .expect("a notification before the timeout");
        let msg = String::from_utf8_lossy(&buf[..n]).to_string();
        if msg.starts_with(prefix) {
            return msg;
        }
    }
    panic!("no {prefix} notification");
}

#[test]
fn notifies_systemd_ready_watchdog_and_stopping() {
    let t = tempfile::tempdir().unwrap();
    let sock_path = t.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut running = start_satellite_env(
        t.path(),
        &[
            ("NOTIFY_SOCKET", p(&sock_path)),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    // start_satellite returned after /readyz answered 200; READY=1 came with it.
    let ready = next_notification(&sock, "READY=1");
    assert!(ready.contains("STATUS=serving"), "{ready}");
    next_notification(&sock, "WATCHDOG=1");
    running.server.signal(libc::SIGTERM);
    let stopping = next_notification(&sock, "STOPPING=1");
    assert!(stopping.contains("STATUS=stopping"), "{stopping}");
    let status = running
        .server
        .wait_exit(Duration::from_secs(60))
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");
}

#[test]
fn backup_while_devices_register_restores_elsewhere_and_refuses_a_foreign_one() {
    let t = tempfile::tempdir().unwrap();
    let site = Site::new(t.path());
    let token = site.token("Lab", &[]);
    let backup = t.path().join("backup.zip");
    std::thread::scope(|s| {
        let rollout = s.spawn(|| {
            site.sim(&[
                "run",
                "--token",
                &token,
                "--devices",
                "1500",
                "--entitlement",
                "regid.example.dna-advantage:1",
            ])
        });
        // Backups while the rollout runs (bounded; the last one is kept).
        for _ in 0..3 {
            site.sat(&["backup", "--out", p(&backup)]).ok();
        }
        let out = rollout.join().unwrap();
        assert_eq!(out["registered"], 1500, "{out}");
    });
    let b = site
        .sat(&["backup", "--out", p(&t.path().join("after.zip")), "--json"])
        .ok()
        .json();
    assert_eq!(b["manifest"]["counts"]["product_instances"], 1500, "{b}");

    // Not into the running satellite's data directory.
    let busy = site.sat(&["restore", p(&backup)]);
    assert_eq!(busy.code, 2, "{busy:?}");
    assert!(busy.stderr.contains("running"), "{busy:?}");

    // Elsewhere: the copy is one consistent moment, whatever it caught of the rollout.
    let other = t.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let r = sat(&other, &["restore", p(&backup), "--json"]).ok().json();
    let pis = r["counts"]["product_instances"].as_i64().unwrap();
    let devices = sat(&other, &["device", "list", "--json"]).ok().json();
    assert_eq!(devices.as_array().unwrap().len() as i64, pis);
    let usage = query_strings(
        &sat_db(&other),
        "SELECT CAST(COUNT(*) AS TEXT) AS v FROM license_usage",
    );
    let in_use = query_strings(
        &sat_db(&other),
        "SELECT CAST(in_use AS TEXT) AS v FROM pool_usage WHERE tag = 'regid.example.dna-advantage'",
    );
    assert_eq!(
        in_use.first().map(String::as_str).unwrap_or("0"),
        usage[0],
        "pool totals match the usage rows in the copy"
    );
    assert_eq!(
        sat(&other, &["status", "--json"]).ok().json()["satellite_id"],
        r["satellite_id"]
    );

    // A backup of another satellite is refused and changes nothing; --force replaces.
    let foreign = t.path().join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    sat(&foreign, &["status"]).ok();
    let before = dump_sqlite(&sat_db(&foreign));
    let refused = sat(&foreign, &["restore", p(&backup)]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("refusing to replace another satellite"),
        "{refused:?}"
    );
    assert_eq!(dump_sqlite(&sat_db(&foreign)), before);
    sat(&foreign, &["restore", p(&backup), "--force"]).ok();
    assert_eq!(
        sat(&foreign, &["status", "--json"]).ok().json()["satellite_id"],
        r["satellite_id"]
    );

    // Not a backup, or a damaged one: refused.
    let junk = t.path().join("junk.zip");
    std::fs::write(&junk, b"not a backup").unwrap();
    let bad = sat(&other, &["restore", p(&junk)]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("not a usable backup"), "{bad:?}");
}

#[test]
fn a_database_of_the_first_schema_upgrades_without_loss() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/satellite-schema-1.db");
    std::fs::copy(&fixture, data.join("satellite.db")).unwrap();

    let m = sat(t.path(), &["migrate"]).ok();
    assert!(m.stdout.contains("20261124000002"), "{m:?}");
    let st = sat(t.path(), &["status", "--json"]).ok().json();
    assert_eq!(st["satellite_id"], "11111111-2222-3333-4444-555555555555");
    assert_eq!(st["state"], "registered", "{st}");
    let devices = sat(t.path(), &["device", "list", "--json"]).ok().json();
    let names: Vec<&str> = devices
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["router one", "router, \"two\"", "router três"]);
    let pools = sat(t.path(), &["license", "list", "--json"]).ok().json();
    let row = |va: &str, tag: &str| {
        pools
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["virtual_account"] == va && r["tag"] == tag)
            .map(|r| (r["purchased"].clone(), r["in_use"].clone()))
            .unwrap_or_else(|| panic!("no {va}/{tag} in {pools}"))
    };
    assert_eq!(row("Lab", "regid.example.dna"), (50.into(), 5.into()));
    assert_eq!(row("Lab", "regid.example.sec"), (5.into(), 1.into()));
    assert_eq!(
        row("Ops, \"north\"", "regid.example.hsec"),
        (2.into(), 0.into())
    );
    let tokens = sat(t.path(), &["token", "list", "--json"]).ok().json();
    assert_eq!(tokens[0]["uses"], 3, "{tokens}");
    // The events and their hash chain came through intact.
    let rows = query_strings(
        &sat_db(t.path()),
        "SELECT at || char(31) || kind || char(31) || va_name || char(31) || pi_uuid || \
         char(31) || message || char(31) || prev_hash || char(31) || hash AS v FROM events \
         ORDER BY id",
    );
    assert_eq!(rows.len(), 2);
    let mut prev = String::new();
    for r in &rows {
        let f: Vec<&str> = r.split('\u{1f}').collect();
        let kind = satellite::catalogue::EventKind::parse(f[1]).expect("a known event kind");
        let e = satellite::db::events::NewEvent {
            va_name: Some(f[2]),
            pi_uuid: Some(f[3]),
            message: f[4].to_string(),
            actor: "system",
            ..satellite::db::events::NewEvent::of(kind)
        };
        assert_eq!(f[5], prev);
        let expected = satellite::db::events::hash(&prev, f[0].parse().unwrap(), &e);
        assert_eq!(f[6], expected, "event chain of {r}");
        prev = expected;
    }
    // And it works on: the next sync sends every device (nothing was acknowledged yet).
    let sync = sat(t.path(), &["sync", "status", "--json"]).ok().json();
    assert_eq!(sync["state"], "registered", "{sync}");
}

fn count_devices(dir: &Path) -> i64 {
    query_strings(
        &sat_db(dir),
        "SELECT CAST(COUNT(*) AS TEXT) AS v FROM product_instances",
    )[0]
    .parse()
    .unwrap()
}

#[test]
fn sigterm_during_a_rollout_keeps_every_acknowledged_registration() {
    let t = tempfile::tempdir().unwrap();
    let mut site = Site::new(t.path());
    let token = site.token("Lab", &[]);
    let (url, cert) = (site.url(), site.cert());
    let dir = site.dir.clone();
    let rollout = std::thread::spawn(move || {
        let out = satellite_e2e::harness::run(
            std::process::Command::new(satellite_e2e::harness::bin("device-sim")).args([
                "run",
                "--token",
                &token,
                "--devices",
                "4000",
                "--concurrency",
                "16",
                "--no-authorize",
                "--satellite",
                &url,
                "--ca",
                p(&cert),
                "--json",
            ]),
        );
        out.json()
    });
    // Stop the server part-way through (bounded wait for the first registrations).
    let mut seen = 0;
    for _ in 0..400 {
        seen = count_devices(&dir);
        if seen >= 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(seen >= 200, "the rollout did not start");
    site.sat.server.signal(libc::SIGTERM);
    let exit = site.sat.server.wait_exit(Duration::from_secs(60));
    let out = rollout.join().unwrap();
    let exit = exit.expect("exits after SIGTERM");
    assert!(exit.success(), "{exit:?}\n{}", site.sat.server.log());
    let acknowledged = out["registered"].as_i64().unwrap();
    assert!(
        acknowledged < 4000,
        "SIGTERM came too late to test anything: {out}"
    );
    // Every registration a device was told about is stored; at most the requests in flight
    // when the connection closed are stored without their answer reaching the device.
    let stored = count_devices(&dir);
    assert!(
        stored >= acknowledged && stored <= acknowledged + 16,
        "stored {stored}, acknowledged {acknowledged}: {out}"
    );
    // A restart picks up where it was.
    site.sat = crate::common::start_satellite(&site.dir);
    assert_eq!(count_devices(&dir), stored);
    let token = site.token("Lab", &[]);
    let more = site.sim(&[
        "run",
        "--token",
        &token,
        "--devices",
        "10",
        "--no-authorize",
    ]);
    assert_eq!(more["registered"], 10, "{more}");
    assert_eq!(count_devices(&dir), stored + 10);
}
