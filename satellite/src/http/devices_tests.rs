//! The device API in process, through the real app factory (no TLS, no processes): every
//! route's answer and every refusal code, in milliseconds. The end-to-end tests drive the
//! same routes through the real binary.

use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::App;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use serde_json::{json, Value};

use crate::config::Config;
use crate::http::AppState;

const TAG: &str = "tag";

struct Site {
    _dir: tempfile::TempDir,
    state: AppState,
    _writer: crate::db::writer::WriterThread,
    token: String,
}

/// A registered satellite with 10 of `TAG` in "Lab" and a token for it (export-controlled
/// when asked), served by the app factory.
fn site(export_controlled: bool, registered: bool) -> Site {
    let (store, dir, token, _, _) = crate::devices::tests::site_with(
        &[("Lab", crate::devices::tests::ten_of_tag())],
        export_controlled,
    );
    if !registered {
        use diesel::RunQueryDsl;
        diesel::sql_query("UPDATE satellite SET state = 'unregistered'")
            .execute(&mut *store.conn().unwrap())
            .unwrap();
    }
    let mut config = Config::load_from(None, &[]).unwrap();
    config.storage.data_dir = store.data_dir().to_path_buf();
    config.console.listen = String::new();
    let clock = crate::clock::from_config(false, &store);
    let (writer, thread) = crate::db::writer::Writer::start(&store).unwrap();
    let state = AppState::new(std::sync::Arc::new(config), store, clock, writer).unwrap();
    Site {
        _dir: dir,
        state,
        _writer: thread,
        token,
    }
}

fn csr(key: &PKey<Private>, md: MessageDigest) -> String {
    let mut b = openssl::x509::X509Req::builder().unwrap();
    b.set_pubkey(key).unwrap();
    b.sign(key, md).unwrap();
    String::from_utf8(b.build().to_pem().unwrap()).unwrap()
}

fn sign(key: &PKey<Private>, body: &[u8]) -> String {
    let mut s = openssl::sign::Signer::new(MessageDigest::sha256(), key).unwrap();
    s.update(body).unwrap();
    openssl::base64::encode_block(&s.sign_to_vec().unwrap())
}

/// The request POSTing `body` to `path`, signed by `key` if given.
fn post_req(path: &str, body: &Value, key: Option<&PKey<Private>>) -> TestRequest {
    let bytes = body.to_string().into_bytes();
    let mut req = TestRequest::post()
        .uri(path)
        .insert_header(("content-type", "application/json"));
    if let Some(k) = key {
        req = req.insert_header((super::SIGNATURE_HEADER, sign(k, &bytes)));
    }
    req.set_payload(bytes)
}

/// Sends it through `app`: the status and the JSON answer.
async fn answer(resp: actix_web::dev::ServiceResponse) -> (u16, Value) {
    let status = resp.status().as_u16();
    let body = test::read_body(resp).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

macro_rules! post {
    ($app:expr, $path:expr, $body:expr, $key:expr) => {
        answer(test::call_service($app, post_req($path, $body, $key).to_request()).await).await
    };
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[test]
fn every_device_route_and_refusal() {
    actix_web::rt::System::new().block_on(every_device_route_and_refusal_async());
}

async fn every_device_route_and_refusal_async() {
    let s = site(false, true);
    let app =
        test::init_service(App::new().configure(crate::http::configure(s.state.clone()))).await;
    let key = sync_format::pki::new_p256_key().unwrap();
    let register = |token: &str, sn: &str, csr_pem: String| json!({ "token": token, "udi": { "pid": "P", "sn": sn }, "csr_pem": csr_pem });

    // Register: refusals first, then the device.
    let reg = "/api/v1/devices/register";
    let good = register(&s.token, "SN-1", csr(&key, MessageDigest::sha256()));
    let mut unknown_field = good.clone();
    unknown_field["extra"] = 1.into();
    let mut bad_udi = good.clone();
    bad_udi["udi"]["sn"] = "".into();
    for (what, body, status, c) in [
        ("unknown field", unknown_field, 400, "invalid"),
        ("empty serial", bad_udi, 400, "invalid"),
        (
            "not a CSR",
            register(&s.token, "SN-1", "junk".into()),
            400,
            "bad_csr",
        ),
        (
            "a SHA-1 CSR",
            register(&s.token, "SN-1", csr(&key, MessageDigest::sha1())),
            400,
            "weak_csr",
        ),
        (
            "a forged token",
            register(
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                "SN-1",
                csr(&key, MessageDigest::sha256()),
            ),
            401,
            "token_unknown",
        ),
    ] {
        let (st, v) = post!(&app, reg, &body, None);
        assert_eq!((st, code(&v)), (status, c), "{what}: {v}");
    }
    let (st, v) = post!(&app, reg, &good, None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["export_controlled"], false, "an ordinary token: {v}");
    let pi = v["pi_id"].as_str().unwrap().to_string();
    // Its PID:SN again with another key and no signature of its own: refused.
    let thief = sync_format::pki::new_p256_key().unwrap();
    let body = register(&s.token, "SN-1", csr(&thief, MessageDigest::sha256()));
    let (st, v) = post!(&app, reg, &body, None);
    assert_eq!((st, code(&v)), (401, "reregister_needs_key"), "{v}");

    // Authorize: signed, counted.
    let auth = "/api/v1/devices/authorize";
    let ask = |counter: i64, count: i64| {
        json!({ "pi_id": pi, "counter": counter, "nonce": "n-1",
                "entitlements": [{ "tag": TAG, "count": count }] })
    };
    let (st, v) = post!(&app, auth, &ask(1, 1), None);
    assert_eq!((st, code(&v)), (401, "signature_missing"), "unsigned: {v}");
    let (st, v) = post!(&app, auth, &ask(1, 1), Some(&thief));
    assert_eq!((st, code(&v)), (401, "bad_signature"), "another key: {v}");
    let (st, v) = post!(&app, auth, &ask(1, 2_000_000), Some(&key));
    assert_eq!(
        (st, code(&v)),
        (400, "count_out_of_range"),
        "count out of range: {v}"
    );
    let (st, v) = post!(&app, auth, &ask(i64::MAX, 1), Some(&key));
    assert_eq!(
        (st, code(&v)),
        (400, "counter_too_far"),
        "counter jump: {v}"
    );
    let (st, v) = post!(&app, auth, &ask(1, 3), Some(&key));
    assert_eq!(st, 200, "{v}");
    let (st, v) = post!(&app, auth, &ask(1, 3), Some(&key));
    assert_eq!((st, code(&v)), (409, "replayed"), "replayed: {v}");

    // Renew: a new identity for a new key.
    let next = sync_format::pki::new_p256_key().unwrap();
    let body = json!({ "pi_id": pi, "counter": 2, "csr_pem": csr(&next, MessageDigest::sha256()) });
    let (st, v) = post!(&app, "/api/v1/devices/renew", &body, Some(&key));
    assert_eq!(st, 200, "{v}");

    // Export-controlled: a device of an ordinary token may not ask; nothing to return.
    let body = json!({ "pi_id": pi, "counter": 3, "tag": TAG, "count": 1 });
    let (st, v) = post!(&app, "/api/v1/devices/export/request", &body, Some(&next));
    assert_eq!((st, code(&v)), (403, "export_not_allowed"), "{v}");
    let body = json!({ "pi_id": pi, "counter": 4, "tag": TAG });
    let (st, v) = post!(&app, "/api/v1/devices/export/return", &body, Some(&next));
    assert_eq!(
        (st, code(&v)),
        (404, "nothing_to_return"),
        "nothing held: {v}"
    );

    // Deregister: then the device is gone.
    let body = json!({ "pi_id": pi, "counter": 5 });
    let (st, v) = post!(&app, "/api/v1/devices/deregister", &body, Some(&next));
    assert_eq!(st, 200, "{v}");
    let (st, v) = post!(&app, auth, &ask(6, 1), Some(&next));
    assert_eq!((st, code(&v)), (401, "device_removed"), "removed: {v}");

    // The CA, health, and an unknown route.
    let resp = test::call_service(
        &app,
        TestRequest::get().uri("/api/v1/devices/ca").to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let pem = test::read_body(resp).await;
    assert!(pem.starts_with(b"-----BEGIN CERTIFICATE-----"));
    let resp = test::call_service(&app, TestRequest::get().uri("/healthz").to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = test::call_service(
        &app,
        TestRequest::get().uri("/api/v1/devices/nope").to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[test]
fn an_unregistered_satellite_registers_no_device() {
    actix_web::rt::System::new().block_on(async {
        let s = site(false, false);
        let app =
            test::init_service(App::new().configure(crate::http::configure(s.state.clone()))).await;
        let key = sync_format::pki::new_p256_key().unwrap();
        let body = json!({ "token": s.token, "udi": { "pid": "P", "sn": "SN-U" },
                           "csr_pem": csr(&key, MessageDigest::sha256()) });
        let (st, v) = post!(&app, "/api/v1/devices/register", &body, None);
        assert_eq!((st, code(&v)), (409, "not_registered"), "{v}");
    });
}
