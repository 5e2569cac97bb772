use super::*;
use crate::clock::SystemClock;
use openssl::pkey::{PKey, Private};
use sync_format::payload::{Account, VirtualAccount};
use sync_format::pki::SignerRole;

struct FakeCloud {
    ca: X509,
    ca_key: PKey<Private>,
    signer: Signer,
}

fn spec<'a>(cn: &'a str, role: CertRole<'a>) -> CertSpec<'a> {
    CertSpec {
        common_name: cn,
        organization: "test",
        role,
        now: clock::system_now(),
        days: 30,
    }
}

fn fake_cloud() -> FakeCloud {
    let ca_key = pki::new_p256_key().unwrap();
    let ca = pki::self_signed(&ca_key, &spec("ca", CertRole::Ca)).unwrap();
    let key = pki::new_p256_key().unwrap();
    let cert = pki::issue(
        &ca,
        &ca_key,
        &key,
        &spec("signer", CertRole::Bundle(SignerRole::Cloud, "cloud-x")),
    )
    .unwrap();
    let signer = Signer::new(key, vec![cert, ca.clone()]).unwrap();
    FakeCloud { ca, ca_key, signer }
}

/// An authorization answering `request_id`, signed by `signer_of`, naming `named` as
/// the cloud CA and carrying a satellite certificate issued by `named`.
fn authorization(
    store: &Store,
    request_id: &str,
    signer_of: &FakeCloud,
    named: &FakeCloud,
) -> Vec<u8> {
    let me = identity::get(&mut store.conn().unwrap()).unwrap().unwrap();
    let key = crate::identity::signing_key(store.data_dir()).unwrap();
    let cert = pki::issue(
        &named.ca,
        &named.ca_key,
        &key,
        &spec(
            "sat",
            CertRole::Bundle(SignerRole::Satellite, &me.satellite_id),
        ),
    )
    .unwrap();
    let now = clock::system_now();
    let mut w = BundleWriter::new(
        Cursor::new(Vec::new()),
        Header {
            kind: BundleKind::RegistrationAuthorization,
            bundle_id: "auth-1".into(),
            sender: "cloud-x".into(),
            receiver: me.satellite_id.clone(),
            sequence: 1,
            created_at: now,
            not_after: now + DAY,
            in_reply_to: Some(request_id.to_string()),
        },
    )
    .unwrap();
    w.payload(&RegistrationAuthorization {
        payload_version: 1,
        satellite_id: me.satellite_id,
        satellite_name: "s".into(),
        satellite_certificate_pem: String::from_utf8(cert.to_pem().unwrap()).unwrap(),
        cloud_id: "cloud-x".into(),
        cloud_ca_pem: String::from_utf8(named.ca.to_pem().unwrap()).unwrap(),
        account: Account {
            name: "Acme".into(),
            export_controlled_allowed: false,
        },
        virtual_accounts: vec![VirtualAccount {
            name: "Lab".into(),
            description: String::new(),
            licenses: vec![],
        }],
        next_sync_due: now + 30 * DAY,
    })
    .unwrap();
    w.finish(&signer_of.signer).unwrap().0.into_inner()
}

#[test]
fn first_registration_trusts_only_the_ca_that_signed_and_is_named() {
    let (store, _dir) = crate::db::testing::store();
    let mut cfg = Config::load_from(None, &[]).unwrap();
    cfg.storage.data_dir = store.data_dir().to_path_buf();
    crate::identity::ensure(&store, &cfg, &SystemClock).unwrap();
    let (_, request_id) = make_request(&store, &cfg, &SystemClock, SyncMode::Manual, None).unwrap();
    let (a, b) = (fake_cloud(), fake_cloud());

    let fp = |c: &FakeCloud| pki::sha256_of(&c.ca).unwrap();
    let unregistered = || {
        let me = identity::get(&mut store.conn().unwrap()).unwrap().unwrap();
        assert_eq!(me.state, crate::states::SatelliteState::Unregistered);
        assert!(me.cloud_ca_pem.is_none());
    };

    // No fingerprint given, or B's: refused, naming A's fingerprint; nothing changes.
    let good = authorization(&store, &request_id, &a, &a);
    for given in [None, Some(fp(&b))] {
        let err =
            import_authorization(&store, &cfg, &SystemClock, &good, given.as_ref()).unwrap_err();
        assert_eq!(err.code(), "unpinned_ca");
        assert_eq!(err.exit_code(), 2);
        let found = pki::sha256_fingerprint(&a.ca).unwrap();
        assert!(err.to_string().contains(&found), "{err}");
        assert!(err.to_string().contains("--cloud-ca-fingerprint"), "{err}");
        unregistered();
    }

    // Signed under A (whose fingerprint is given), but naming B as the cloud CA: refused.
    let bad = authorization(&store, &request_id, &a, &b);
    let err = import_authorization(&store, &cfg, &SystemClock, &bad, Some(&fp(&a))).unwrap_err();
    assert!(err.to_string().contains("was signed under"), "{err}");
    unregistered();

    // Signed under A, naming A, A's fingerprint given: registered, and A is pinned.
    let r = import_authorization(&store, &cfg, &SystemClock, &good, Some(&fp(&a))).unwrap();
    assert_eq!(r.account, "Acme");
    let me = identity::get(&mut store.conn().unwrap()).unwrap().unwrap();
    assert_eq!(me.state, crate::states::SatelliteState::Registered);
    assert_eq!(
        me.cloud_ca_pem.unwrap().as_bytes(),
        a.ca.to_pem().unwrap().as_slice()
    );
}
