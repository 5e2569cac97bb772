//! Writes and reads a sync request of N product instances (default 1,000,000) through a
//! file, and prints time, bundle size and peak memory of each phase.
//!
//!     cargo bench -p sync-format --bench bundle_million [-- N]
//!
//! Peak memory is the process's peak resident set (VmHWM), reset between phases through
//! /proc/self/clear_refs.

use std::fs::{File, OpenOptions};
use std::time::Instant;

use sync_format::manifest::{BundleKind, Header};
use sync_format::payload::{PiOp, PiRecord, SyncCounts, SyncRequest, UsageRecord};
use sync_format::pki::{self, CertRole, CertSpec, Signer};
use sync_format::{open, BufferedFile, BundleWriter, ReadOptions, Trust};

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let now = 1_800_000_000;
    let spec = |cn, role| CertSpec {
        common_name: cn,
        organization: "bench",
        role,
        now,
        days: 30,
    };
    let ca_key = pki::new_p256_key().unwrap();
    let ca = pki::self_signed(&ca_key, &spec("ca", CertRole::Ca)).unwrap();
    let key = pki::new_p256_key().unwrap();
    let role = CertRole::Bundle(pki::SignerRole::Satellite, "sat");
    let cert = pki::issue(&ca, &ca_key, &key, &spec("sat", role)).unwrap();
    let signer = Signer::new(key, vec![cert]).unwrap();
    let dir = std::env::temp_dir().join(format!("bundle-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sync-request.zip");

    // Write.
    reset_peak();
    let base_rss = peak_rss_kib();
    let t = Instant::now();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let h = Header {
        kind: BundleKind::SyncRequest,
        bundle_id: "bench".into(),
        sender: "sat".into(),
        receiver: "cloud".into(),
        sequence: 1,
        created_at: now,
        not_after: now + 86_400,
        in_reply_to: None,
    };
    let mut w = BundleWriter::new(BufferedFile::new(file), h).unwrap();
    w.payload(&SyncRequest {
        payload_version: 1,
        satellite_id: "sat".into(),
        full: true,
        from_change: 0,
        to_change: n,
        from_event: 0,
        to_event: 0,
        counts: SyncCounts {
            product_instances: n,
            usage: n,
            ..SyncCounts::default()
        },
        renewal_csr_pem: None,
    })
    .unwrap();
    let mut pis = w.ndjson("product_instances.ndjson").unwrap();
    for i in 0..n {
        pis.write(&PiRecord {
            change: i + 1,
            op: PiOp::Upsert,
            pi: format!("6f1c2a4e-0000-4000-8000-{i:012}"),
            va: format!("VA-{}", i % 20),
            pid: "ISR4431/K9".into(),
            sn: format!("FOC{i:08}"),
            name: format!("router-{i}.site.example"),
            registered_at: now - (i as i64 % 86_400),
            last_contact_at: now,
        })
        .unwrap();
    }
    pis.finish();
    let mut usage = w.ndjson("usage.ndjson").unwrap();
    for i in 0..n {
        usage
            .write(&UsageRecord {
                pi: format!("6f1c2a4e-0000-4000-8000-{i:012}"),
                va: format!("VA-{}", i % 20),
                tag: "regid.2017-03.com.example.DNA_Advantage".into(),
                count: 1,
            })
            .unwrap();
    }
    usage.finish();
    w.finish(&signer).unwrap();
    let write_secs = t.elapsed().as_secs_f64();
    let write_peak = peak_rss_kib();
    let size = std::fs::metadata(&path).unwrap().len();

    // Read: open (every check, every digest), then stream every record.
    reset_peak();
    let t = Instant::now();
    let trust = [ca];
    let mut opts = ReadOptions::new(
        BundleKind::SyncRequest,
        Trust::Anchors(&trust),
        Some("cloud"),
        now,
    );
    opts.max_clock_skew = 300;
    let mut b = open(File::open(&path).unwrap(), &opts).unwrap();
    let verify_secs = t.elapsed().as_secs_f64();
    let _: SyncRequest = b.payload().unwrap();
    let mut count = 0u64;
    for r in b.ndjson::<PiRecord>("product_instances.ndjson").unwrap() {
        r.unwrap();
        count += 1;
    }
    for r in b.ndjson::<UsageRecord>("usage.ndjson").unwrap() {
        r.unwrap();
        count += 1;
    }
    assert_eq!(count, 2 * n);
    let read_secs = t.elapsed().as_secs_f64();
    let read_peak = peak_rss_kib();
    std::fs::remove_dir_all(&dir).ok();

    println!("sync request: {n} product instances + {n} usage records");
    println!(
        "  bundle size            {:.1} MiB ({size} bytes)",
        size as f64 / 1048576.0
    );
    println!(
        "  write                  {write_secs:.2} s, peak RSS {:.1} MiB (baseline {:.1} MiB)",
        write_peak as f64 / 1024.0,
        base_rss as f64 / 1024.0
    );
    println!("  open + verify          {verify_secs:.2} s");
    println!(
        "  open + verify + read   {read_secs:.2} s, peak RSS {:.1} MiB",
        read_peak as f64 / 1024.0
    );
}
