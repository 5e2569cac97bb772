//! Only the cloud speaks for the cloud. Genuine bundles from the mock cloud, signed again by
//! every other key a site or an attacker can hold (the satellite's own, another satellite's,
//! the satellite's device CA, a device's, and a self-made CA with the cloud's names), are
//! refused by `register import`, `sync import`, the operator API's upload (the console's
//! path) and a network sync, with a message that says why and the store unchanged.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod};
use openssl::x509::X509;
use satellite_e2e::harness::{self, dump_sqlite, query_strings};
use sync_format::pki::{self, CertRole, CertSpec, SignerRole};

use crate::common::{
    import_authorization, register_by_files, sat, sat_db, satellite, Dev, MockCloud, Site,
};

/// A key and the chain it signs under, with what each kind of reader must answer.
struct Forger {
    what: &'static str,
    key: PKey<Private>,
    chain: Vec<X509>,
    /// The refusal of a first registration (the cloud CA vouched for by its fingerprint).
    at_registration: &'static str,
    /// The refusal of a sync response (the cloud CA pinned).
    at_sync: &'static str,
}

const WRONG_ROLE: &str = "may be signed only by the cloud's bundle signer";

fn pem_file(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn key_of(data: &Path, name: &str) -> PKey<Private> {
    PKey::private_key_from_pem(&pem_file(&data.join("keys").join(name))).unwrap()
}

/// The satellite's cloud-issued certificate, from its store.
fn satellite_cert(dir: &Path) -> X509 {
    let pem = query_strings(&sat_db(dir), "SELECT certificate_pem AS v FROM satellite");
    X509::from_pem(pem[0].as_bytes()).unwrap()
}

/// Everyone who is not the cloud's bundle signer, for the satellite in `site_dir`.
fn forgers(site_dir: &Path, other_dir: &Path, cloud: &MockCloud, dev: &Dev) -> Vec<Forger> {
    let cloud_ca = X509::from_pem(&pem_file(&cloud.ca())).unwrap();
    let data = site_dir.join("data");
    let device_ca = X509::from_pem(&pem_file(&data.join("keys/device-ca.crt.pem"))).unwrap();
    let device_ca_key = key_of(&data, "device-ca.key.pem");
    // The device's own key under a certificate its satellite's device CA issues (as the
    // satellite does at registration), and a self-made CA named like the cloud's issuing a
    // cloud signer for the cloud's very id.
    let cloud_id =
        query_strings(&sat_db(site_dir), "SELECT cloud_id AS v FROM satellite")[0].clone();
    let spec = |cn: &'static str, role| CertSpec {
        common_name: cn,
        organization: "mock cloud",
        role,
        now: satellite::clock::system_now(),
        days: 30,
    };
    let device_cert = pki::issue(
        &device_ca,
        &device_ca_key,
        &dev.key,
        &spec("TEST-PID:SN-F", CertRole::Signer),
    )
    .unwrap();
    let rogue_key = pki::new_p256_key().unwrap();
    let rogue_ca = pki::self_signed(&rogue_key, &spec("Mock Cloud Root CA", CertRole::Ca)).unwrap();
    let rogue_signer_key = pki::new_p256_key().unwrap();
    let rogue_signer = pki::issue(
        &rogue_ca,
        &rogue_key,
        &rogue_signer_key,
        &spec(
            "Mock Cloud bundle signer",
            CertRole::Bundle(SignerRole::Cloud, &cloud_id),
        ),
    )
    .unwrap();
    vec![
        Forger {
            what: "the satellite's own key",
            key: key_of(&data, "satellite.key.pem"),
            chain: vec![satellite_cert(site_dir), cloud_ca.clone()],
            at_registration: WRONG_ROLE,
            at_sync: WRONG_ROLE,
        },
        Forger {
            what: "another satellite's key",
            key: key_of(&other_dir.join("data"), "satellite.key.pem"),
            chain: vec![satellite_cert(other_dir), cloud_ca],
            at_registration: WRONG_ROLE,
            at_sync: WRONG_ROLE,
        },
        Forger {
            what: "the device CA",
            key: device_ca_key,
            chain: vec![device_ca.clone()],
            at_registration: "carries no CA certificate",
            at_sync: "untrusted certificate",
        },
        Forger {
            what: "a device's key",
            key: dev.key.clone(),
            chain: vec![device_cert, device_ca],
            at_registration: "does not trust yet",
            at_sync: "untrusted certificate",
        },
        Forger {
            what: "a self-made CA with the cloud's names",
            key: rogue_signer_key,
            chain: vec![rogue_signer, rogue_ca],
            at_registration: "does not trust yet",
            at_sync: "untrusted certificate",
        },
    ]
}

/// `bundle` signed again by the forger `f`, otherwise as it was.
fn resign(bundle: &[u8], f: &Forger) -> Vec<u8> {
    crate::common::resign(bundle, &f.key, &f.chain, &|_| {})
}

/// `text` as the console's pages escape it.
fn html_escaped(text: &str) -> String {
    // As the console's template engine (maud) escapes text: these four, quotes and
    // apostrophes in element text left as they are.
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The console, logged in as the first admin, as a browser drives it.
struct Console<'a> {
    https: &'a harness::Https,
    cookie: String,
    csrf: String,
}

impl<'a> Console<'a> {
    fn log_in(https: &'a harness::Https) -> Console<'a> {
        let body = format!(
            "username=admin&password={}&next=%2Fconsole%2Fsync",
            crate::common::ADMIN_PASSWORD
        );
        let r = https
            .request_with(
                "POST",
                "/console/login",
                Some(body.as_bytes()),
                &[("Content-Type", "application/x-www-form-urlencoded")],
            )
            .unwrap();
        assert_eq!(r.status, 303, "{}", String::from_utf8_lossy(&r.body));
        let cookie = r
            .headers
            .iter()
            .find(|(k, _)| k == "set-cookie")
            .map(|(_, v)| v.split(';').next().unwrap().to_string())
            .unwrap();
        let page = https
            .request_with("GET", "/console/sync", None, &[("Cookie", &cookie)])
            .unwrap();
        let page = String::from_utf8_lossy(&page.body).into_owned();
        let at = page.find(r#"name="csrf" value=""#).unwrap() + r#"name="csrf" value=""#.len();
        let csrf = page[at..at + page[at..].find('"').unwrap()].to_string();
        Console {
            https,
            cookie,
            csrf,
        }
    }

    /// Uploads `bytes` as the sync response file of the console's sync page; the page.
    fn upload(&self, bytes: &[u8]) -> String {
        let boundary = "----satellite-test-boundary";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"response\"; \
             filename=\"response.zip\"\r\nContent-Type: application/zip\r\n\r\n",
            self.csrf
        )
        .into_bytes();
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let ct = format!("multipart/form-data; boundary={boundary}");
        let r = self
            .https
            .request_with(
                "POST",
                "/console/sync/preview",
                Some(&body),
                &[("Cookie", &self.cookie), ("Content-Type", &ct)],
            )
            .unwrap();
        String::from_utf8_lossy(&r.body).into_owned()
    }
}

fn refused(out: &harness::Output, needle: &str, what: &str) {
    assert_eq!(out.code, 2, "{what}: expected exit 2: {out:?}");
    assert!(
        out.stderr.contains("bundle refused") && out.stderr.contains(needle),
        "{what}: expected {needle:?} in: {}",
        out.stderr
    );
}

/// An HTTPS server on loopback that answers every request with `body` (a zip), with the key
/// and certificate of `cloud`'s own TLS endpoint: someone who took over the cloud's address
/// and TLS key, to show the bundle's signer is checked whatever the channel. It serves at
/// most `limit` connections and stops when dropped.
struct Impostor {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Impostor {
    fn start(cloud: &MockCloud, body: Vec<u8>, limit: usize) -> Impostor {
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
        b.set_private_key_file(cloud.dir.join("tls.key.pem"), SslFiletype::PEM)
            .unwrap();
        b.set_certificate_chain_file(cloud.dir.join("tls.crt.pem"))
            .unwrap();
        let acceptor = b.build();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming().take(limit) {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(tcp) = conn else { continue };
                let _ = tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)));
                let Ok(mut tls) = acceptor.accept(tcp) else {
                    continue;
                };
                // Read the request head and its body, then answer.
                let mut raw = Vec::new();
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n) = tls.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    raw.extend_from_slice(&buf[..n]);
                    if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if raw.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/zip\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n",
                    body.len()
                );
                let _ = tls.write_all(head.as_bytes());
                let _ = tls.write_all(&body);
                let _ = tls.shutdown();
            }
        });
        Impostor {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn bundles_signed_by_anyone_but_the_clouds_signer_are_refused_everywhere() {
    let t = tempfile::tempdir().unwrap();
    let site = Site::new(t.path());
    let token = site.token("Lab", &[]);
    let dev = Dev::register(&site, &token, "SN-F");
    // Another satellite of the same cloud (registered: its certificate chains to the CA).
    let other = t.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    register_by_files(&other, &site.cloud, "other", &["Spare"]);
    let forgers = forgers(&site.dir, &other, &site.cloud, &dev);

    // ---- a first registration: a fresh satellite and its genuine authorization.
    let fresh = t.path().join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    site.cloud.run(&["va", "create", "Acme", "Fresh"]).ok();
    let req = fresh.join("request.zip");
    let auth = fresh.join("authorization.zip");
    sat(
        &fresh,
        &["register", "export", "--out", req.to_str().unwrap()],
    )
    .ok();
    site.cloud
        .run(&[
            "satellite",
            "authorize",
            req.to_str().unwrap(),
            "--name",
            "fresh",
            "--va",
            "Fresh",
            "--out",
            auth.to_str().unwrap(),
        ])
        .ok();
    let fingerprint = site.cloud.fingerprint();
    let genuine = std::fs::read(&auth).unwrap();
    let forged = fresh.join("forged.zip");
    for f in &forgers {
        std::fs::write(&forged, resign(&genuine, f)).unwrap();
        let before = dump_sqlite(&sat_db(&fresh));
        let out = import_authorization(&fresh, &site.cloud, &forged);
        refused(&out, f.at_registration, f.what);
        assert_eq!(dump_sqlite(&sat_db(&fresh)), before, "{}", f.what);
    }
    // Without the fingerprint, the genuine authorization is refused too, naming it.
    let out = sat(&fresh, &["register", "import", auth.to_str().unwrap()]);
    refused(&out, &fingerprint, "no fingerprint");
    assert!(out.stderr.contains("--cloud-ca-fingerprint"), "{out:?}");
    // The genuine one, vouched for, registers.
    import_authorization(&fresh, &site.cloud, &auth).ok();

    // ---- sync responses: by file, through the operator API (the console's upload calls the
    // same import), and over the network.
    let (request, response) = site.files("forged");
    site.sat(&["sync", "export", "--out", request.to_str().unwrap()])
        .ok();
    site.cloud.process(&request, &response);
    let genuine = std::fs::read(&response).unwrap();
    let admin = site
        .sat(&["user", "api-token", "create", "admin"])
        .ok()
        .stdout
        .trim()
        .to_string();
    let bearer = format!("Bearer {admin}");
    // A first call notes the token's use, which is not what is compared.
    site.sat
        .console
        .request_with(
            "GET",
            "/api/v1/operator/me",
            None,
            &[("Authorization", &bearer)],
        )
        .unwrap();
    let forged = site.dir.join("resigned.zip");
    for f in &forgers {
        let bytes = resign(&genuine, f);
        std::fs::write(&forged, &bytes).unwrap();
        let before = dump_sqlite(&sat_db(&site.dir));
        let out = site.sat(&["sync", "import", forged.to_str().unwrap()]);
        refused(&out, f.at_sync, f.what);
        let r = site
            .sat
            .console
            .request_with(
                "POST",
                "/api/v1/operator/sync/import",
                Some(&bytes),
                &[("Authorization", &bearer)],
            )
            .unwrap();
        assert_eq!(
            r.status,
            422,
            "{}: {}",
            f.what,
            String::from_utf8_lossy(&r.body)
        );
        let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains(f.at_sync), "{}: {msg}", f.what);
        assert_eq!(dump_sqlite(&sat_db(&site.dir)), before, "{}", f.what);
    }

    // The console's own upload (a browser's multipart form, with a session and its CSRF
    // token): refused on the page with the reason, nothing kept to apply.
    let console = Console::log_in(&site.sat.console);
    for f in &forgers {
        let before = dump_sqlite(&sat_db(&site.dir));
        let page = console.upload(&resign(&genuine, f));
        assert!(
            page.contains("bundle refused") && page.contains(&html_escaped(f.at_sync)),
            "{}: {page}",
            f.what
        );
        assert!(!page.contains("id=\"apply-response\""), "{}", f.what);
        assert_eq!(dump_sqlite(&sat_db(&site.dir)), before, "{}", f.what);
    }
    // And the genuine response previews there (then is applied below, by file).
    assert!(console.upload(&genuine).contains("id=\"apply-response\""));

    // Over the network, from an impostor at the cloud's address with the cloud's TLS key.
    let (server, _) = site.cloud.serve(t.path(), &[]);
    drop(server);
    let before = site.sat(&["license", "list", "--json"]).ok().stdout;
    let last = |dir: &Path| {
        query_strings(
            &sat_db(dir),
            "SELECT COALESCE(CAST(last_sync_at AS TEXT), '') AS v FROM satellite",
        )
    };
    let last_before = last(&site.dir);
    for f in &forgers {
        let impostor = Impostor::start(&site.cloud, resign(&genuine, f), 4);
        let mut c = satellite(&site.dir);
        c.env(
            "SATELLITE_CLOUD_URL",
            format!("https://localhost:{}", impostor.port),
        )
        .args(["sync", "now"]);
        let out = harness::run(&mut c);
        assert_ne!(out.code, 0, "{}: {out:?}", f.what);
        assert!(out.stderr.contains(f.at_sync), "{}: {out:?}", f.what);
        drop(impostor);
    }
    assert_eq!(site.sat(&["license", "list", "--json"]).ok().stdout, before);
    assert_eq!(last(&site.dir), last_before);

    // And the genuine response applies.
    let out = site
        .sat(&["sync", "import", response.to_str().unwrap()])
        .ok();
    assert!(out.stdout.contains("applied"), "{out:?}");
}

/// Posts a login form to the console; the answer's status.
fn post_login(console: &harness::Https, user: &str, password: &str) -> u16 {
    let body = format!("username={user}&password={password}&next=%2Fconsole%2F");
    console
        .request_with(
            "POST",
            "/console/login",
            Some(body.as_bytes()),
            &[("Content-Type", "application/x-www-form-urlencoded")],
        )
        .unwrap()
        .status
}

#[test]
fn password_attempts_at_once_check_at_most_the_limit() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("sat");
    std::fs::create_dir_all(&dir).unwrap();
    let running = crate::common::start_satellite(&dir);
    let console = &running.console;

    // 40 logins at once with wrong passwords: at most 5 passwords are checked (401), every
    // other attempt is refused before its check (429).
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..40)
            .map(|i| s.spawn(move || post_login(console, "admin", &format!("wrong-{i}"))))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(checked, 5, "passwords checked: {statuses:?}");
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        40 - checked,
        "{statuses:?}"
    );
    // Even the right password is refused now.
    assert_eq!(
        post_login(console, "admin", crate::common::ADMIN_PASSWORD),
        429
    );

    // Changing one's own password is limited the same way (per account and address, counted
    // apart from logins).
    let token = sat(&dir, &["user", "api-token", "create", "admin"])
        .ok()
        .stdout
        .trim()
        .to_string();
    let bearer = format!("Bearer {token}");
    let change = |current: &str| {
        let body = serde_json::json!({
            "current_password": current, "new_password": "a-new-password-for-tests"
        });
        console
            .request_with(
                "POST",
                "/api/v1/operator/me/password",
                Some(body.to_string().as_bytes()),
                &[("Authorization", &bearer)],
            )
            .unwrap()
            .status
    };
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..40)
            .map(|i| s.spawn(move || change(&format!("wrong-{i}"))))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let checked = statuses.iter().filter(|s| **s == 400).count();
    assert_eq!(checked, 5, "passwords checked: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 35);
    assert_eq!(change(crate::common::ADMIN_PASSWORD), 429);
}

/// License counts from the cloud are checked, never wrapped: the cloud refuses a line beyond
/// the maximum, and the satellite refuses lines that add up beyond it, whole, with the store
/// unchanged.
#[test]
fn license_counts_that_would_wrap_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let site = Site::new(t.path());
    let out = site.cloud.run(&[
        "license",
        "add",
        "--va",
        "Lab",
        "--tag",
        "regid.example.huge",
        "--name",
        "Huge",
        "--count",
        &i64::MAX.to_string(),
    ]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--count must be 0 to"), "{out:?}");
    let max = satellite::compliance::MAX_QUANTITY.to_string();
    for _ in 0..2 {
        site.cloud
            .add_license("Lab", "regid.example.huge", "Huge", &max, &[]);
    }
    let (request, response) = site.files("huge");
    site.sat(&["sync", "export", "--out", request.to_str().unwrap()])
        .ok();
    site.cloud.process(&request, &response);
    let before = dump_sqlite(&sat_db(&site.dir));
    let out = site.sat(&["sync", "import", response.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("add up to more than") && out.stderr.contains("regid.example.huge"),
        "{out:?}"
    );
    assert_eq!(dump_sqlite(&sat_db(&site.dir)), before);
}

/// A device's identity belongs to its key: a token holder (of any VA) cannot take over an
/// active PID:SN; the real device moves VAs by signing with its key; an operator lets a
/// device that lost its key through.
#[test]
fn a_token_holder_cannot_take_over_a_device() {
    let t = tempfile::tempdir().unwrap();
    let site = Site::new(t.path());
    let lab = site.token("Lab", &[]);
    let ops = site.token("Ops", &[]);
    let mut d = Dev::register(&site, &lab, "SN-T");
    let dna = "regid.example.dna-advantage";
    d.authorize(&site, dna, 3);
    let path = "/api/v1/devices/register";

    // Someone else, with valid tokens of either VA and a key of their own.
    let thief = sync_format::pki::new_p256_key().unwrap();
    let before = dump_sqlite(&sat_db(&site.dir));
    for token in [&lab, &ops] {
        let body = crate::common::register_body(token, "TEST-PID", "SN-T", &thief);
        let r = site.sat.https.post_json(path, &body).unwrap();
        assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("signature of its current key"),
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        let r = crate::common::post_signed(&site, path, &body, &thief);
        assert_eq!(r.status, 401);
    }
    assert_eq!(dump_sqlite(&sat_db(&site.dir)), before);
    // The real device is not locked out and keeps its licenses.
    let a = d.authorize(&site, dna, 3);
    assert_eq!(a["entitlements"][0]["status"], "AUTHORIZED", "{a}");
    assert_eq!(site.pool("Lab", dna).1, 3);

    // The device lost its key: an operator lets it through, once.
    let out = site
        .sat(&[
            "device",
            "allow-reregister",
            "TEST-PID:SN-T",
            "--hours",
            "2",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(out["pi_id"], d.pi_id.as_str());
    let fresh = sync_format::pki::new_p256_key().unwrap();
    let body = crate::common::register_body(&lab, "TEST-PID", "SN-T", &fresh);
    let r = site.sat.https.post_json(path, &body).unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json()["pi_id"],
        d.pi_id.as_str(),
        "the same product instance"
    );
    let body = crate::common::register_body(&lab, "TEST-PID", "SN-T", &thief);
    assert_eq!(site.sat.https.post_json(path, &body).unwrap().status, 401);
    let events = site.sat(&["event", "list", "--json"]).ok().json();
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "pi_reregister_allowed"),
        "{events}"
    );
}

/// `backup --encrypt` seals the backup with a passphrase; `restore` needs it, refuses a wrong
/// one, and restores with the right one.
#[test]
fn an_encrypted_backup_restores_only_with_its_passphrase() {
    let t = tempfile::tempdir().unwrap();
    let site = Site::new(t.path());
    let file = t.path().join("backup.enc");
    let f = file.to_str().unwrap();
    let out = site.sat(&["backup", "--out", f, "--encrypt"]);
    assert_eq!(out.code, 2, "no passphrase: {out:?}");
    let pass = "a passphrase for the tests";
    let mut c = satellite(&site.dir);
    c.env("SATELLITE_BACKUP_PASSPHRASE", pass)
        .args(["backup", "--out", f, "--encrypt", "--json"]);
    let b = harness::run(&mut c).ok().json();
    assert_eq!(b["encrypted"], true, "{b}");

    let other = t.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let out = sat(&other, &["restore", f]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("is encrypted"), "{out:?}");
    let wrong = t.path().join("wrong.txt");
    std::fs::write(&wrong, "not the passphrase at all\n").unwrap();
    let out = sat(
        &other,
        &["restore", f, "--passphrase-file", wrong.to_str().unwrap()],
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("passphrase is wrong"), "{out:?}");
    assert!(!sat_db(&other).exists());
    let right = t.path().join("right.txt");
    std::fs::write(&right, format!("{pass}\n")).unwrap();
    let r = sat(
        &other,
        &[
            "restore",
            f,
            "--passphrase-file",
            right.to_str().unwrap(),
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(
        sat(&other, &["status", "--json"]).ok().json()["satellite_id"],
        r["satellite_id"]
    );
}

/// Reads an HTTP answer from a connection (until the peer closes or the head and body are in).
fn answer_of<S: Read>(s: &mut S) -> (u16, String) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
        if let Ok(r) = harness::parse_response(&raw) {
            let len = r.body.len();
            let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
            let want = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if want.is_some_and(|w| len >= w) {
                return (r.status, String::from_utf8_lossy(&r.body).into_owned());
            }
        }
    }
    harness::parse_response(&raw)
        .map(|r| (r.status, String::from_utf8_lossy(&r.body).into_owned()))
        .unwrap_or((0, String::new()))
}

/// One client cannot take the server: beyond its connection cap its requests get 429 (and
/// other clients are served), and a body it trickles is cut off at the deadline, which frees
/// its connections. A bounded load on loopback: 40 connections from one address.
#[test]
fn one_client_cannot_hold_the_server() {
    use std::net::Ipv4Addr;
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("sat");
    std::fs::create_dir_all(&dir).unwrap();
    let running = crate::common::start_satellite_env(
        &dir,
        &[
            ("SATELLITE_SERVER_MAX_CONNECTIONS_PER_CLIENT", "8"),
            ("SATELLITE_SERVER_BODY_TIMEOUT_SECONDS", "2"),
        ],
    );
    let https = &running.https;
    let (a, b) = (Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2));
    // Each connection starts a registration whose body never comes.
    let head = "POST /api/v1/devices/register HTTP/1.1\r\nHost: localhost\r\n\
                Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"tok";
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..40 {
        let mut c = https.connect_from(a).unwrap();
        c.write_all(head.as_bytes()).unwrap();
        held.push(c);
    }
    // Beyond the first 8, each is answered at once with 429 and closed.
    for c in held.iter_mut().skip(8) {
        let (status, body) = answer_of(c);
        assert_eq!(status, 429, "{body}");
        assert!(body.contains("too many connections"), "{body}");
        refused += 1;
    }
    assert_eq!(refused, 32);
    held.truncate(8);
    // Another client is served meanwhile.
    let mut other = https.connect_from(b).unwrap();
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(answer_of(&mut other).0, 200);
    // The trickled bodies are cut off at the deadline, with the reason.
    for c in held.iter_mut() {
        let (status, body) = answer_of(c);
        assert_eq!(status, 408, "{body}");
        assert!(body.contains("not sent within 2 s"), "{body}");
    }
    drop(held);
    // Its connections closed, the first client is served again.
    let mut again = https.connect_from(a).unwrap();
    again
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(answer_of(&mut again).0, 200);
}

/// The small refusals of the issue, on the real binary: a CSR signed with SHA-1, a counter
/// pushed to `i64::MAX` (the device keeps working), the documented JSON for an unknown route
/// and a bad path parameter, HSTS on the console; a device-chosen name that a spreadsheet
/// would run is neutralised in CSV.
#[test]
fn small_refusals_on_the_real_binary() {
    let t = tempfile::tempdir().unwrap();
    let site = Site::new(t.path());
    let token = site.token("Lab", &[]);
    let path = "/api/v1/devices/register";

    // SHA-1 CSR.
    let key = sync_format::pki::new_p256_key().unwrap();
    let mut b = openssl::x509::X509Req::builder().unwrap();
    b.set_pubkey(&key).unwrap();
    b.sign(&key, openssl::hash::MessageDigest::sha1()).unwrap();
    let mut body = crate::common::register_body(&token, "TEST-PID", "SN-SHA1", &key);
    body["csr_pem"] = String::from_utf8(b.build().to_pem().unwrap())
        .unwrap()
        .into();
    let r = site.sat.https.post_json(path, &body).unwrap();
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("SHA-1 and MD5 are refused"));

    // A formula for a name; a counter at i64::MAX.
    let key = sync_format::pki::new_p256_key().unwrap();
    let mut body = crate::common::register_body(&token, "TEST-PID", "SN-CSV", &key);
    body["name"] = "=HYPERLINK(\"http://evil.example\",\"x\")".into();
    let mut d = Dev::register_with(&site, &body, key);
    let jump = serde_json::json!({
        "pi_id": d.pi_id, "counter": i64::MAX, "nonce": "n",
        "entitlements": [{ "tag": "regid.example.dna-advantage", "count": 1 }]
    });
    let r = crate::common::post_signed(&site, "/api/v1/devices/authorize", &jump, &d.key);
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("jumps too far ahead"));
    let a = d.authorize(&site, "regid.example.dna-advantage", 1);
    assert_eq!(a["entitlements"][0]["status"], "AUTHORIZED", "{a}");
    let csv = site.sat(&["report", "devices", "--csv"]).ok().stdout;
    assert!(csv.contains("'=HYPERLINK("), "{csv}");
    assert!(
        !csv.contains(",=HYPERLINK(") && !csv.contains("\"=HYPERLINK("),
        "{csv}"
    );

    // Errors actix makes are the documented JSON; the console sends HSTS.
    for (uri, status, code) in [
        ("/no/such/route", 404, "not_found"),
        ("/api/v1/devices/nope", 404, "not_found"),
    ] {
        let r = site.sat.https.get(uri).unwrap();
        assert_eq!(r.status, status);
        assert_eq!(r.json()["error"]["code"], code);
    }
    let r = site.sat.console.get("/console/login").unwrap();
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| k == "strict-transport-security" && v.starts_with("max-age=")),
        "{:?}",
        r.headers
    );
}

/// A backup whose database was edited and its digest recomputed is refused, and so is one
/// signed again by another key; the store stays as it was.
#[test]
fn a_tampered_backup_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let site = Site::new(t.path());
    let backup = t.path().join("backup.zip");
    site.sat(&["backup", "--out", backup.to_str().unwrap()])
        .ok();
    // Restored into a stopped copy of the satellite: the genuine one first.
    let other = t.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    sat(&other, &["restore", backup.to_str().unwrap()]).ok();

    let mut z = zip::ZipArchive::new(std::fs::File::open(&backup).unwrap()).unwrap();
    let mut entries: Vec<(String, Vec<u8>)> = (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut b = Vec::new();
            f.read_to_end(&mut b).unwrap();
            (String::from_utf8_lossy(f.name_raw()).into_owned(), b)
        })
        .collect();
    let find = |e: &[(String, Vec<u8>)], n: &str| e.iter().position(|(k, _)| k == n).unwrap();
    let (db, m) = (
        find(&entries, "satellite.db"),
        find(&entries, "backup.json"),
    );
    entries[db].1.extend_from_slice(b"\0edited");
    let mut manifest: serde_json::Value = serde_json::from_slice(&entries[m].1).unwrap();
    manifest["entries"]["satellite.db"] = hex::encode(openssl::sha::sha256(&entries[db].1)).into();
    entries[m].1 = serde_json::to_vec_pretty(&manifest).unwrap();
    let write = |entries: &[(String, Vec<u8>)]| {
        let path = t.path().join("tampered.zip");
        let mut w = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        for (n, b) in entries {
            w.start_file(n.as_str(), zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(b).unwrap();
        }
        w.finish().unwrap();
        path
    };
    let before = dump_sqlite(&sat_db(&other));
    let out = sat(&other, &["restore", write(&entries).to_str().unwrap()]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("signature does not verify"), "{out:?}");
    assert_eq!(dump_sqlite(&sat_db(&other)), before);

    // Signed again by another key: refused over the satellite it claims to be.
    let rogue = sync_format::pki::new_p256_key().unwrap();
    let mut s = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &rogue).unwrap();
    s.update(&entries[m].1).unwrap();
    let sig = find(&entries, "backup.sig");
    entries[sig].1 = s.sign_to_vec().unwrap();
    let out = sat(&other, &["restore", write(&entries).to_str().unwrap()]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("signed by another key"), "{out:?}");
    assert_eq!(dump_sqlite(&sat_db(&other)), before);
}
