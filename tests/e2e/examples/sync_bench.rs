//! Sync benchmark: a satellite with N devices (each using one entitlement) syncs with the
//! mock cloud, in one process, through files: a full sync, then a 1% incremental one.
//! Prints, per phase, the time, the bundle size and the peak resident memory.
//!
//!     cargo run --release -p satellite-e2e --example sync_bench -- 100000
//!
//! Peak memory is the process's VmHWM, reset before each phase through
//! /proc/self/clear_refs. Devices are inserted with SQL (the device API is measured by
//! tests/e2e/bench/device-rollout.sh); everything after that is the product's own code.

use std::io::Cursor;
use std::time::Instant;

use diesel::connection::SimpleConnection;
use mock_cloud::{service, sync as cloud_sync, Cloud};
use satellite::config::Config;
use satellite::db::Store;

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn phase<T>(name: &str, f: impl FnOnce() -> T) -> T {
    reset_peak();
    let t = Instant::now();
    let out = f();
    println!(
        "  {name:<34} {:>8.2} s   peak RSS {:>7.1} MiB",
        t.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
    out
}

fn main() {
    let n: i64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let dir = std::env::temp_dir().join(format!("sync-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let clock = satellite::clock::SystemClock;
    let now = satellite::clock::system_now();

    // The cloud: one account, one VA, one pool.
    let cloud = Cloud::open(&dir.join("cloud"), false).unwrap();
    service::account_create(&cloud, "Acme", false).unwrap();
    service::va_create(&cloud, "Acme", "Lab", "").unwrap();
    service::license_add(
        &cloud,
        &service::NewLicense {
            va: "Lab".into(),
            tag: "regid.bench.dna".into(),
            name: "DNA".into(),
            description: String::new(),
            kind: sync_format::payload::LicenseKind::Perpetual,
            count: n,
            start: None,
            end: None,
            restricted: false,
        },
    )
    .unwrap();

    // The satellite, registered by file.
    let mut cfg = Config::load_from(None, &[]).unwrap();
    cfg.storage.data_dir = dir.join("sat");
    let (store, _) = Store::open(&cfg.storage).unwrap();
    satellite::identity::ensure(&store, &cfg, &clock).unwrap();
    let (req, _) = satellite::registration::make_request(
        &store,
        &cfg,
        &clock,
        satellite::states::SyncMode::Manual,
        None,
    )
    .unwrap();
    let mut auth = Vec::new();
    service::authorize_file(&cloud, &req, "bench", &["Lab".into()], |b| {
        auth = b.to_vec();
        Ok(())
    })
    .unwrap();
    let ca = sync_format::pki::sha256_of(&cloud.ca_cert).unwrap();
    satellite::registration::import_authorization(&store, &cfg, &clock, &auth, Some(&ca)).unwrap();

    println!("sync of {n} devices (one entitlement each)");
    phase("insert devices (SQL, setup)", || {
        let mut c = store.conn().unwrap();
        c.batch_execute(&format!(
            "BEGIN;
             WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < {n})
             INSERT INTO product_instances (uuid, va_id, pid, sn, name, public_key,
                 registered_at, last_contact_at)
             SELECT printf('6f1c2a4e-0000-4000-8000-%012d', i), 1, 'ISR4431/K9',
                 printf('FOC%08d', i), printf('router-%d.site.example', i), 'p256:00',
                 {now}, {now} FROM k;
             INSERT INTO license_usage (pi_id, tag, count, requested_at, status)
             SELECT id, 'regid.bench.dna', 1, {now}, 'AUTHORIZED' FROM product_instances;
             COMMIT;"
        ))
        .unwrap();
    });

    let run = |label: &str, full: bool| {
        let req_path = dir.join(format!("{label}-request.zip"));
        let resp_path = dir.join(format!("{label}-response.zip"));
        let summary = phase(&format!("{label}: satellite makes request"), || {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&req_path)
                .unwrap();
            let (w, s) = satellite::sync::request::make(
                &store,
                satellite::clock::system_now(),
                satellite::states::SyncMode::Manual,
                full,
                sync_format::BufferedFile::new(f),
                &mut |_| {},
            )
            .unwrap();
            w.into_file().unwrap();
            s
        });
        let req_size = std::fs::metadata(&req_path).unwrap().len();
        let (resp, p) = phase(&format!("{label}: cloud processes"), || {
            cloud_sync::process(&cloud, std::fs::File::open(&req_path).unwrap(), None).unwrap()
        });
        std::fs::write(&resp_path, &resp).unwrap();
        let o = phase(&format!("{label}: satellite applies response"), || {
            satellite::sync::apply::import(
                &store,
                satellite::clock::system_now(),
                Cursor::new(resp.clone()),
                satellite::states::SyncMode::Manual,
                false,
                &mut |_| {},
            )
            .unwrap()
        });
        println!(
            "  {label}: request {} devices, {} usage records: {:.2} MiB; response {:.1} KiB \
             (applied: {}, refused {})",
            summary.product_instances,
            summary.usage,
            req_size as f64 / 1_048_576.0,
            resp.len() as f64 / 1024.0,
            o.status,
            p.rejected
        );
    };
    run("full", true);
    phase("change 1% of the devices' usage", || {
        store
            .conn()
            .unwrap()
            .batch_execute("UPDATE license_usage SET count = 2 WHERE pi_id % 100 = 0;")
            .unwrap();
    });
    run("1% incremental", false);
    let _ = std::fs::remove_dir_all(&dir);
}
