//! Registering a satellite with the mock cloud: by files and over HTTPS, and every refusal
//! leaving both stores as they were.

use std::path::Path;

use crate::common::{
    import_authorization, register_by_files, sat, sat_db, satellite, status, MockCloud,
};
use satellite_e2e::harness::{self, dump_sqlite};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn assert_refused(out: &harness::Output, needle: &str) {
    assert_eq!(out.code, 2, "expected exit 2: {out:?}");
    assert!(
        out.stderr.contains(needle),
        "expected {needle:?} in: {}",
        out.stderr
    );
}

#[test]
fn register_by_files_brings_the_account_vas_and_pools() {
    let t = tmp();
    let cloud = MockCloud::new(&t.path().join("cloud"));
    cloud.seed();
    let s = t.path().join("sat");
    std::fs::create_dir_all(&s).unwrap();

    assert_eq!(status(&s)["state"], "unregistered");
    // By files, Authorization Pending is raised from the export until the import.
    let first = s.join("first-request.zip");
    sat(
        &s,
        &["register", "export", "--out", first.to_str().unwrap()],
    )
    .ok();
    let pending = |st: &serde_json::Value| {
        st["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "Authorization Pending")
    };
    assert!(pending(&status(&s)), "{}", status(&s));
    let auth = register_by_files(&s, &cloud, "site-a", &["Lab", "Ops"]);

    let st = status(&s);
    assert_eq!(st["state"], "registered");
    assert!(!pending(&st), "{st}");
    assert_eq!(st["account"], "Acme");
    assert_eq!(st["export_controlled_allowed"], true);
    let vas = st["virtual_accounts"].as_array().unwrap();
    assert_eq!(vas.len(), 2);
    assert_eq!(vas[0]["name"], "Lab");
    let lab = vas[0]["licenses"].as_array().unwrap();
    assert_eq!(lab.len(), 2);
    let dna = lab
        .iter()
        .find(|l| l["tag"] == "regid.example.dna-advantage")
        .unwrap();
    assert_eq!(dna["quantity"], 50);
    assert_eq!(dna["kind"], "perpetual");
    let sec = lab
        .iter()
        .find(|l| l["tag"] == "regid.example.sec")
        .unwrap();
    assert_eq!(sec["name"], "Security, \"Plus\"");
    assert_eq!(sec["end"], "2030-01-01T00:00:00Z");
    assert_eq!(vas[1]["licenses"][0]["restricted"], true);
    let text = sat(&s, &["status"]).ok().stdout;
    assert!(
        text.contains("Smart account:      Acme") && text.contains("DNA Advantage"),
        "{text}"
    );

    let list = cloud.run(&["satellite", "list", "--json"]).ok().json();
    assert_eq!(list[0]["name"], "site-a");
    assert_eq!(list[0]["state"], "authorized");
    assert_eq!(
        list[0]["virtual_accounts"],
        serde_json::json!(["Lab", "Ops"])
    );
    assert_eq!(list[0]["satellite_id"], st["satellite_id"]);

    // The same authorization again: refused, nothing changes.
    let before = dump_sqlite(&sat_db(&s));
    let out = sat(&s, &["register", "import", auth.to_str().unwrap()]);
    assert_refused(&out, "already imported");
    assert_eq!(dump_sqlite(&sat_db(&s)), before);

    // The same request uploaded to the cloud twice: refused, nothing changes.
    let before = dump_sqlite(&cloud.db());
    let req = s.join("request.zip");
    let again = t.path().join("again.zip");
    let out = cloud.run(&[
        "satellite",
        "authorize",
        req.to_str().unwrap(),
        "--name",
        "x",
        "--va",
        "Spare",
        "--out",
        again.to_str().unwrap(),
    ]);
    assert_refused(&out, "already uploaded");
    assert!(!again.exists());
    assert_eq!(dump_sqlite(&cloud.db()), before);

    // Not a bundle at all.
    let before = dump_sqlite(&sat_db(&s));
    let junk = t.path().join("junk.zip");
    std::fs::write(&junk, b"not a zip").unwrap();
    let out = sat(&s, &["register", "import", junk.to_str().unwrap()]);
    assert_refused(&out, "not a zip");
    assert_eq!(dump_sqlite(&sat_db(&s)), before);
}

#[test]
fn authorizations_for_another_satellite_or_request_or_from_an_unknown_ca_are_refused() {
    let t = tmp();
    let cloud = MockCloud::new(&t.path().join("cloud"));
    cloud.seed();

    // A: a fresh satellite. B: another satellite, authorized by the same cloud.
    let a = t.path().join("a");
    let b = t.path().join("b");
    for d in [&a, &b] {
        std::fs::create_dir_all(d).unwrap();
        sat(d, &["status"]).ok();
    }
    // A copy of A's data directory made before A's request: same satellite, no request.
    let a_copy = t.path().join("a-copy");
    copy_dir(&a, &a_copy);

    sat(
        &a,
        &[
            "register",
            "export",
            "--out",
            a.join("req.zip").to_str().unwrap(),
        ],
    )
    .ok();
    cloud
        .run(&[
            "satellite",
            "authorize",
            a.join("req.zip").to_str().unwrap(),
            "--name",
            "a",
            "--va",
            "Lab",
            "--out",
            a.join("auth.zip").to_str().unwrap(),
        ])
        .ok();
    sat(
        &b,
        &[
            "register",
            "export",
            "--out",
            b.join("req.zip").to_str().unwrap(),
        ],
    )
    .ok();
    cloud
        .run(&[
            "satellite",
            "authorize",
            b.join("req.zip").to_str().unwrap(),
            "--name",
            "b",
            "--va",
            "Ops",
            "--out",
            b.join("auth.zip").to_str().unwrap(),
        ])
        .ok();

    // B's authorization uploaded to A.
    let import = |dir: &Path, auth: &Path| import_authorization(dir, &cloud, auth);
    let before = dump_sqlite(&sat_db(&a));
    let out = import(&a, &b.join("auth.zip"));
    assert_refused(&out, "addressed to");
    assert_eq!(dump_sqlite(&sat_db(&a)), before);

    // A's authorization uploaded to the copy, which never made that request.
    let before = dump_sqlite(&sat_db(&a_copy));
    let out = import(&a_copy, &a.join("auth.zip"));
    assert_refused(&out, "never made");
    assert_eq!(dump_sqlite(&sat_db(&a_copy)), before);

    // A satellite configured to trust this cloud's CA, given an authorization made by
    // another cloud (another CA).
    let other = MockCloud::new(&t.path().join("other-cloud"));
    other.seed();
    let c = t.path().join("c");
    std::fs::create_dir_all(&c).unwrap();
    let with_ca = |args: &[&str]| {
        harness::run(
            satellite(&c)
                .env("SATELLITE_CLOUD_CA_FILE", cloud.ca())
                .args(args),
        )
    };
    with_ca(&[
        "register",
        "export",
        "--out",
        c.join("req.zip").to_str().unwrap(),
    ])
    .ok();
    other
        .run(&[
            "satellite",
            "authorize",
            c.join("req.zip").to_str().unwrap(),
            "--name",
            "c",
            "--va",
            "Lab",
            "--out",
            c.join("auth.zip").to_str().unwrap(),
        ])
        .ok();
    let before = dump_sqlite(&sat_db(&c));
    let out = with_ca(&["register", "import", c.join("auth.zip").to_str().unwrap()]);
    assert_refused(&out, "untrusted");
    assert_eq!(dump_sqlite(&sat_db(&c)), before);

    // And A's own authorization still registers A.
    import(&a, &a.join("auth.zip")).ok();
    assert_eq!(status(&a)["state"], "registered");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

#[test]
fn register_over_the_network_held_then_approved() {
    let t = tmp();
    let cloud = MockCloud::new(&t.path().join("cloud"));
    cloud.seed();
    let (_server, port) = cloud.serve(t.path(), &[]);
    let url = format!("https://localhost:{port}");
    let s = t.path().join("sat");
    std::fs::create_dir_all(&s).unwrap();

    // Without a CA to trust, nothing is sent: TLS verification is never disabled.
    let out = sat(&s, &["register", "network", "--cloud", &url]);
    assert_refused(&out, "no CA to trust");

    // Trusting another CA, the TLS handshake fails.
    let other = MockCloud::new(&t.path().join("other"));
    other.run(&["ca"]).ok();
    let out = sat(
        &s,
        &[
            "register",
            "network",
            "--cloud",
            &url,
            "--ca",
            other.ca().to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("cannot reach the cloud"),
        "{}",
        out.stderr
    );

    // The cloud holds the request: Authorization Pending.
    let ca = cloud.ca();
    let net = |extra: &[&str]| {
        let mut args = vec![
            "register",
            "network",
            "--cloud",
            url.as_str(),
            "--ca",
            ca.to_str().unwrap(),
            "--json",
        ];
        args.extend_from_slice(extra);
        sat(&s, &args).ok().json()
    };
    let first = net(&[]);
    assert_eq!(first["state"], "pending", "{first}");
    let st = status(&s);
    assert_eq!(st["state"], "pending");
    assert!(
        st["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "Authorization Pending"),
        "{st}"
    );
    let list = cloud.run(&["satellite", "list", "--json"]).ok().json();
    assert_eq!(list[0]["state"], "pending");

    // Asking again while held changes nothing at the cloud: the same request is polled.
    assert_eq!(net(&[])["request_id"], first["request_id"]);
    assert_eq!(
        cloud
            .run(&["satellite", "list", "--json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // The operator approves; the next attempt collects the authorization.
    cloud
        .run(&[
            "satellite",
            "approve",
            st["satellite_id"].as_str().unwrap(),
            "--va",
            "Ops",
        ])
        .ok();
    let done = net(&[]);
    assert_eq!(done["account"], "Acme", "{done}");
    let st = status(&s);
    assert_eq!(st["state"], "registered");
    assert!(
        st["alerts"].as_array().unwrap().is_empty(),
        "alert cleared: {st}"
    );
    assert_eq!(st["virtual_accounts"][0]["name"], "Ops");
    assert_eq!(st["virtual_accounts"][0]["licenses"][0]["quantity"], 2);

    // Registered: pinned CA, and a second registration is refused.
    let out = sat(&s, &["register", "network", "--cloud", &url]);
    assert_refused(&out, "already registered");

    // A request posted twice: held the first time, refused with its reason the second,
    // and the cloud's store unchanged by the refusal.
    let fresh = t.path().join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    let req = fresh.join("req.zip");
    sat(
        &fresh,
        &["register", "export", "--out", req.to_str().unwrap()],
    )
    .ok();
    let https = harness::Https::new(port, &std::fs::read(cloud.ca()).unwrap());
    let body = std::fs::read(&req).unwrap();
    let first = https
        .request("POST", "/api/v1/satellites/register", Some(&body))
        .unwrap();
    assert_eq!(
        first.status,
        202,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let before = dump_sqlite(&cloud.db());
    let second = https
        .request("POST", "/api/v1/satellites/register", Some(&body))
        .unwrap();
    assert_eq!(second.status, 409);
    assert!(String::from_utf8_lossy(&second.body).contains("already uploaded"));
    assert_eq!(dump_sqlite(&cloud.db()), before);
}

#[test]
fn register_over_the_network_auto_approved() {
    let t = tmp();
    let cloud = MockCloud::new(&t.path().join("cloud"));
    cloud.seed();
    let (mut server, port) = cloud.serve(t.path(), &["--auto-approve-va", "Lab"]);
    let s = t.path().join("sat");
    std::fs::create_dir_all(&s).unwrap();
    let out = harness::run(
        satellite(&s)
            .env("SATELLITE_CLOUD_URL", format!("https://localhost:{port}"))
            .env("SATELLITE_CLOUD_CA_FILE", cloud.ca())
            .args(["register", "network"]),
    )
    .ok();
    assert!(
        out.stdout
            .contains("registered with the smart account \"Acme\""),
        "{}",
        out.stdout
    );
    let st = status(&s);
    assert_eq!(st["state"], "registered");
    assert_eq!(
        st["virtual_accounts"][0]["licenses"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let https = harness::Https::new(port, &std::fs::read(cloud.ca()).unwrap());
    let junk = https
        .request("POST", "/api/v1/satellites/register", Some(b"junk"))
        .unwrap();
    assert_eq!(junk.status, 422);

    server.signal(libc::SIGTERM);
    assert!(server
        .wait_exit(std::time::Duration::from_secs(30))
        .unwrap()
        .success());
}
