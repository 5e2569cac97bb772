//! What the single database writer spends per device registration and per authorization,
//! without HTTP, TLS or the simulator: the writer's own ceiling.
//!
//!     cargo run --release -p satellite --example writer_costs -- 20000
//!
//! A fresh store in a temporary directory (WAL, the configured `synchronous`), a registered
//! satellite with one VA and a pool of N/2, one token. The registrations are prepared (CSR
//! checked, certificate issued) before the clock starts, then committed in batches of 512 the
//! way the server's writer commits them (one transaction per batch, one savepoint per write).
//! Written to find where a registration's writer time goes (see BENCHMARKS.md).

use std::time::Instant;

use diesel::connection::Connection;
use diesel::prelude::*;
use openssl::hash::MessageDigest;

use satellite::clock::{Clock, SystemClock};
use satellite::config::Config;
use satellite::devices::{self, AuthorizationRequest, RegisterRequest, Udi};

type Res<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const BATCH: usize = 512;

fn main() -> Res<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20_000);
    let dir = tempfile::tempdir()?;
    let mut cfg = Config::load_from(None, &[])?;
    cfg.storage.data_dir = dir.path().join("data");
    let (store, _) = satellite::db::Store::open(&cfg.storage)?;
    satellite::identity::ensure(&store, &cfg, &SystemClock)?;
    let mut c = store.conn()?;
    diesel::sql_query("UPDATE satellite SET state = 'registered', account_name = 'Bench'")
        .execute(&mut *c)?;
    let line = sync_format::payload::LicenseLine {
        tag: "regid.bench".into(),
        name: "Bench".into(),
        description: String::new(),
        kind: sync_format::payload::LicenseKind::Perpetual,
        quantity: (n / 2) as i64,
        start: None,
        end: None,
        restricted: false,
    };
    let va = sync_format::payload::VirtualAccount {
        name: "Site".into(),
        description: String::new(),
        licenses: vec![line],
    };
    satellite::db::pools::replace(&mut c, 0, &[va])?;
    let key = satellite::identity::token_key(store.data_dir())?;
    let ca = satellite::identity::device_ca(store.data_dir())?;
    let now = SystemClock.now();
    let (token, _) = satellite::tokens::create(
        &mut c,
        &key,
        now,
        &satellite::tokens::NewToken {
            va: "Site".into(),
            days: 30,
            max_uses: None,
            export_controlled: false,
            description: String::new(),
            created_by: "bench".into(),
        },
    )?;

    eprintln!("preparing {n} registrations (keys, CSRs, certificates; not timed)...");
    let dkey = sync_format::pki::new_p256_key()?;
    let mut b = openssl::x509::X509Req::builder()?;
    b.set_pubkey(&dkey)?;
    b.sign(&dkey, MessageDigest::sha256())?;
    let csr_pem = String::from_utf8(b.build().to_pem()?)?;
    let mut prepared = Vec::with_capacity(n);
    for i in 0..n {
        let req = RegisterRequest {
            token: token.clone(),
            udi: Udi {
                pid: "BENCH".into(),
                sn: format!("SN{i:07}"),
                uuid: None,
                host_id: None,
                mac: None,
            },
            csr_pem: csr_pem.clone(),
            name: None,
        };
        prepared.push(devices::prepare(&req, &ca, now)?);
    }

    // Registrations, the way the writer commits them.
    let start = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for chunk in prepared.chunks(BATCH) {
        c.immediate_transaction::<_, satellite::error::Error, _>(|c| {
            for p in chunk {
                let r = c.transaction(|c| devices::commit_registration(c, &key, &token, p, now))?;
                ids.push(r.pi_id);
            }
            Ok(())
        })?;
    }
    let reg = start.elapsed();

    // Authorizations: every device asks for one license.
    let start = Instant::now();
    for (chunk_no, chunk) in ids.chunks(BATCH).enumerate() {
        c.immediate_transaction::<_, satellite::error::Error, _>(|c| {
            for (i, id) in chunk.iter().enumerate() {
                let req = AuthorizationRequest {
                    pi_id: id.clone(),
                    counter: 1,
                    nonce: format!("n{chunk_no}x{i}"),
                    entitlements: vec![satellite::compliance::Entitlement {
                        tag: "regid.bench".into(),
                        count: 1,
                    }],
                };
                c.transaction(|c| devices::authorize(c, &req, now))?;
            }
            Ok(())
        })?;
    }
    let auth = start.elapsed();

    let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!("writer, {n} devices, batches of {BATCH}:");
    println!(
        "  registration   {:>7.1} us each = {:>8.0}/s",
        per(reg),
        n as f64 / reg.as_secs_f64()
    );
    println!(
        "  authorization  {:>7.1} us each = {:>8.0}/s",
        per(auth),
        n as f64 / auth.as_secs_f64()
    );
    Ok(())
}
