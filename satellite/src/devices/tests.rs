use super::*;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::guards::counter_ceiling;
use diesel::connection::InstrumentationEvent;
use std::sync::{Arc, Mutex};

/// 10 perpetual licenses of "tag".
pub(crate) fn ten_of_tag() -> sync_format::payload::LicenseLine {
    sync_format::payload::LicenseLine {
        tag: "tag".into(),
        name: "License".into(),
        description: String::new(),
        kind: sync_format::payload::LicenseKind::Perpetual,
        quantity: 10,
        start: None,
        end: None,
        restricted: false,
    }
}

/// A registered satellite with VA "Lab" holding 10 of "tag", a token, and its key.
fn site() -> (
    crate::db::Store,
    tempfile::TempDir,
    String,
    TokenKey,
    DeviceCa,
) {
    site_with(&[("Lab", ten_of_tag())], false)
}

/// A registered satellite with these (VA, license line)s and a token for the first VA.
pub(crate) fn site_with(
    lines: &[(&str, sync_format::payload::LicenseLine)],
    export_controlled: bool,
) -> (
    crate::db::Store,
    tempfile::TempDir,
    String,
    TokenKey,
    DeviceCa,
) {
    let (store, dir) = crate::db::testing::store();
    let mut cfg = Config::load_from(None, &[]).unwrap();
    cfg.storage.data_dir = store.data_dir().to_path_buf();
    crate::identity::ensure(&store, &cfg, &SystemClock).unwrap();
    let mut c = store.conn().unwrap();
    diesel::sql_query("UPDATE satellite SET state = 'registered', account_name = 'Acme'")
        .execute(&mut c)
        .unwrap();
    let mut vas: Vec<sync_format::payload::VirtualAccount> = Vec::new();
    for (va, line) in lines {
        match vas.iter_mut().find(|v| v.name == *va) {
            Some(v) => v.licenses.push(line.clone()),
            None => vas.push(sync_format::payload::VirtualAccount {
                name: va.to_string(),
                description: String::new(),
                licenses: vec![line.clone()],
            }),
        }
    }
    pools::replace(&mut c, 0, &vas).unwrap();
    let key = crate::identity::token_key(store.data_dir()).unwrap();
    let now = SystemClock.now();
    if export_controlled {
        diesel::sql_query("UPDATE satellite SET export_controlled_allowed = 1")
            .execute(&mut c)
            .unwrap();
    }
    let new = tokens::NewToken {
        va: lines[0].0.into(),
        days: 30,
        max_uses: None,
        export_controlled,
        description: String::new(),
        created_by: "t".into(),
    };
    let (token, _) = tokens::create(&mut c, &key, now, &new).unwrap();
    let ca = crate::identity::device_ca(store.data_dir()).unwrap();
    (store, dir, token, key, ca)
}

pub(crate) fn register(
    c: &mut SqliteConnection,
    key: &TokenKey,
    ca: &DeviceCa,
    token: &str,
    sn: &str,
) -> String {
    let dkey = sync_format::pki::new_p256_key().unwrap();
    let mut b = openssl::x509::X509Req::builder().unwrap();
    b.set_pubkey(&dkey).unwrap();
    b.sign(&dkey, MessageDigest::sha256()).unwrap();
    let req = RegisterRequest {
        token: token.into(),
        udi: Udi {
            pid: "P".into(),
            sn: sn.into(),
            uuid: None,
            host_id: None,
            mac: None,
        },
        csr_pem: String::from_utf8(b.build().to_pem().unwrap()).unwrap(),
        name: None,
    };
    let now = SystemClock.now();
    let p = prepare(&req, ca, now).unwrap();
    c.transaction(|c| commit_registration(c, key, token, &p, now))
        .unwrap()
        .pi_id
}

fn csr_with(key: &PKey<openssl::pkey::Private>, md: MessageDigest) -> String {
    let mut b = openssl::x509::X509Req::builder().unwrap();
    b.set_pubkey(key).unwrap();
    b.sign(key, md).unwrap();
    String::from_utf8(b.build().to_pem().unwrap()).unwrap()
}

#[test]
fn csrs_signed_with_sha1_or_md5_are_refused() {
    let ec = sync_format::pki::new_p256_key().unwrap();
    let rsa = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
    for (key, md) in [
        (&ec, MessageDigest::sha256()),
        (&ec, MessageDigest::sha384()),
        (&rsa, MessageDigest::sha256()),
        (&rsa, MessageDigest::sha512()),
    ] {
        csr_key(&csr_with(key, md)).unwrap();
    }
    for (key, md) in [
        (&ec, MessageDigest::sha1()),
        (&rsa, MessageDigest::sha1()),
        (&rsa, MessageDigest::md5()),
    ] {
        let e = csr_key(&csr_with(key, md)).unwrap_err();
        assert!(e.to_string().contains("SHA-1 and MD5 are refused"), "{e}");
    }
}

#[test]
fn an_active_device_registers_again_only_with_its_key_or_an_operators_permission() {
    let (store, _dir, token, key, ca) = site();
    let mut c = store.conn().unwrap();
    let now = SystemClock.now();
    let request = |k: &PKey<openssl::pkey::Private>| RegisterRequest {
        token: token.clone(),
        udi: Udi {
            pid: "P".into(),
            sn: "SN-K".into(),
            uuid: None,
            host_id: None,
            mac: None,
        },
        csr_pem: csr_with(k, MessageDigest::sha256()),
        name: None,
    };
    let sign = |k: &PKey<openssl::pkey::Private>, body: &[u8]| {
        let mut s = openssl::sign::Signer::new(MessageDigest::sha256(), k).unwrap();
        s.update(body).unwrap();
        KeyProof {
            body: body.to_vec(),
            signature: s.sign_to_vec().unwrap(),
        }
    };
    let mut register = |k: &PKey<openssl::pkey::Private>, proof: Option<KeyProof>| {
        let mut p = prepare(&request(k), &ca, now).unwrap();
        p.proof = proof;
        c.transaction(|c| commit_registration(c, &key, &token, &p, now))
    };
    let k1 = sync_format::pki::new_p256_key().unwrap();
    let pi = register(&k1, None).unwrap().pi_id;

    // Someone with a token but not the key: refused, with or without a signature of
    // their own; the device keeps its key.
    let k2 = sync_format::pki::new_p256_key().unwrap();
    for proof in [None, Some(sign(&k2, b"body"))] {
        let e = register(&k2, proof).unwrap_err();
        assert!(matches!(e, Error::Unauthorized(_)), "{e}");
        assert!(
            e.to_string().contains("signature of its current key"),
            "{e}"
        );
    }
    let stored = |c: &mut SqliteConnection| db::by_uuid(c, &pi).unwrap().unwrap().public_key;
    let mut c2 = store.conn().unwrap();
    let before = stored(&mut c2);

    // The device itself, signing with its current key, moves to a new key.
    register(&k2, Some(sign(&k1, b"body"))).unwrap();
    assert_ne!(stored(&mut c2), before);

    // Lost key: an operator lets it through once.
    let k3 = sync_format::pki::new_p256_key().unwrap();
    assert!(register(&k3, None).is_err());
    allow_reregister(&mut c2, "P:SN-K", 1, now, "cli:op").unwrap();
    register(&k3, None).unwrap();
    assert!(register(&sync_format::pki::new_p256_key().unwrap(), None).is_err());
    assert!(allow_reregister(&mut c2, "P:SN-K", 0, now, "cli:op").is_err());
}

#[test]
fn a_counter_cannot_jump_where_no_request_could_follow() {
    let (store, _dir, token, key, ca) = site();
    let mut c = store.conn().unwrap();
    let pi = register(&mut c, &key, &ca, &token, "SN-C");
    let now = SystemClock.now();
    let e = fresh(&mut c, &pi, i64::MAX, now).unwrap_err();
    assert!(e.to_string().contains("jumps too far ahead"), "{e}");
    // Nothing was recorded: a sane counter still passes, and so does a timestamp in ms.
    fresh(&mut c, &pi, 1, now).unwrap();
    fresh(&mut c, &pi, now * 1000, now).unwrap();
    assert!(fresh(&mut c, &pi, counter_ceiling(now * 1000, now) + 1, now).is_err());
    fresh(&mut c, &pi, counter_ceiling(now * 1000, now), now).unwrap();
}

/// The statements of the writer's hot paths are prepared once and then served from the
/// connection's statement cache: SQLite compiling SQL on every write was the largest
/// cost of the writer (see BENCHMARKS.md).
#[test]
fn hot_path_statements_come_from_the_statement_cache() {
    let (store, _dir, token, key, ca) = site();
    // A connection of its own, so everything it prepares is seen.
    let mut c = SqliteConnection::establish(&store.db_path().to_string_lossy()).unwrap();
    let events: Arc<Mutex<Vec<(bool, String)>>> = Arc::default();
    let sink = events.clone();
    c.set_instrumentation(move |e: InstrumentationEvent<'_>| {
        let entry = match e {
            InstrumentationEvent::StartQuery { query, .. } => (false, format!("{query}")),
            InstrumentationEvent::CacheQuery { sql, .. } => (true, sql.to_string()),
            _ => return,
        };
        let sql = entry
            .1
            .split(" -- binds")
            .next()
            .unwrap_or_default()
            .to_string();
        sink.lock().unwrap().push((entry.0, sql));
    });
    let pi = register(&mut c, &key, &ca, &token, "SN1");
    let mut run = |counter: i64| {
        let req = AuthorizationRequest {
            pi_id: pi.clone(),
            counter,
            nonce: "n".into(),
            entitlements: vec![Entitlement {
                tag: "tag".into(),
                count: 1,
            }],
        };
        let a = c
            .transaction(|c| authorize(c, &req, SystemClock.now()))
            .unwrap();
        assert_eq!(a.entitlements[0].status, compliance::AUTHORIZED);
    };
    run(1);
    // Keep what round 1 put in the cache; forget its queries.
    events.lock().unwrap().retain(|e| e.0);
    run(2);
    let ev = events.lock().unwrap();
    let cached: std::collections::HashSet<&str> =
        ev.iter().filter(|e| e.0).map(|e| e.1.as_str()).collect();
    let uncached: std::collections::BTreeSet<&str> = ev
        .iter()
        .filter(|e| !e.0 && !cached.contains(e.1.as_str()) && !e.1.contains("SAVEPOINT"))
        .map(|e| e.1.as_str())
        .collect();
    let writes: Vec<&&str> = uncached
        .iter()
        .filter(|s| !matches!(**s, "BEGIN" | "COMMIT"))
        .collect();
    // A device asking again for what it has: only its contact is written.
    assert!(
        writes
            .iter()
            .all(|s| s.starts_with("UPDATE `product_instances` SET `last_contact_at`")),
        "statements compiled on every call: {writes:#?}"
    );
}
