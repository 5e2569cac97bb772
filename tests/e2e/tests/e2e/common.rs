//! Starting a satellite for a test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use satellite_e2e::harness::{self, bin, free_port, Https, Output, Server};

/// The `satellite` command for a data directory under `dir`, with the manual clock on.
pub fn satellite(dir: &Path) -> Command {
    let mut c = Command::new(bin("satellite"));
    c.current_dir(dir)
        .env_remove("RUST_LOG")
        .env("SATELLITE_TESTING_MANUAL_CLOCK", "true")
        // Timers run at start and when a test asks (`sync status`), not while it compares
        // store dumps.
        .env("SATELLITE_SYNC_TICK_SECONDS", "3600")
        .arg("--data-dir")
        .arg(dir.join("data"));
    c
}

/// Runs `satellite ARGS...` in `dir` to completion.
pub fn sat(dir: &Path, args: &[&str]) -> Output {
    harness::run(satellite(dir).args(args))
}

/// A running `satellite serve` on a free loopback port.
pub struct RunningSatellite {
    pub server: Server,
    pub https: Https,
    /// The operator console's own listener.
    pub console: Https,
    pub data_dir: PathBuf,
}

/// The password of the first admin of a test's satellite.
pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";

pub fn start_satellite(dir: &Path) -> RunningSatellite {
    start_satellite_env(dir, &[])
}

/// `satellite serve` with extra environment variables.
pub fn start_satellite_env(dir: &Path, env: &[(&str, &str)]) -> RunningSatellite {
    let port = free_port();
    let console_port = free_port();
    let mut cmd = satellite(dir);
    cmd.env("SATELLITE_SERVER_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "SATELLITE_CONSOLE_LISTEN",
            format!("127.0.0.1:{console_port}"),
        )
        .env("SATELLITE_CONSOLE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .envs(env.iter().copied())
        .arg("serve");
    let mut server = Server::start("satellite", &mut cmd, &dir.join("satellite.log"));
    let data_dir = dir.join("data");
    let cert = data_dir.join("tls/server.crt.pem");
    harness::wait_file(&cert, Duration::from_secs(30), &mut server);
    // The certificate is written before the listener binds; give the file a moment to
    // be complete by retrying the read until it parses.
    let pem = wait_pem(&cert);
    let https = Https::new(port, &pem);
    harness::wait_http_ok(&https, "/readyz", Duration::from_secs(30), &mut server);
    let console = Https::new(console_port, &pem);
    RunningSatellite {
        server,
        https,
        console,
        data_dir,
    }
}

fn wait_pem(path: &Path) -> Vec<u8> {
    for _ in 0..100 {
        if let Ok(pem) = std::fs::read(path) {
            if openssl::x509::X509::from_pem(&pem).is_ok() {
                return pem;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{} is not a certificate", path.display());
}

/// A mock cloud's data directory and command line.
pub struct MockCloud {
    pub dir: PathBuf,
}

impl MockCloud {
    pub fn new(dir: &Path) -> MockCloud {
        MockCloud {
            dir: dir.to_path_buf(),
        }
    }

    /// `mock-cloud sync process REQUEST --out RESPONSE`: the cloud answers a sync request file.
    pub fn process(&self, request: &Path, response: &Path) {
        self.run(&[
            "sync",
            "process",
            request.to_str().unwrap(),
            "--out",
            response.to_str().unwrap(),
        ])
        .ok();
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(bin("mock-cloud"));
        c.env_remove("RUST_LOG")
            .env("MOCK_CLOUD_TESTING_MANUAL_CLOCK", "true")
            .arg("--data-dir")
            .arg(&self.dir);
        c
    }

    /// Runs `mock-cloud ARGS...` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        harness::run(self.command().args(args))
    }

    /// `mock-cloud license add --va VA --tag TAG --name NAME --count COUNT EXTRA...`, which must
    /// succeed.
    pub fn add_license(&self, va: &str, tag: &str, name: &str, count: &str, extra: &[&str]) {
        let mut args = vec![
            "license", "add", "--va", va, "--tag", tag, "--name", name, "--count", count,
        ];
        args.extend_from_slice(extra);
        self.run(&args).ok();
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt.pem")
    }

    /// The CA's fingerprint as `mock-cloud ca --fingerprint` prints it (`SHA256:…`).
    pub fn fingerprint(&self) -> String {
        self.run(&["ca", "--fingerprint"])
            .ok()
            .stdout
            .trim()
            .to_string()
    }

    pub fn db(&self) -> PathBuf {
        self.dir.join("mock-cloud.db")
    }

    /// An account "Acme" (export-controlled allowed) with VAs Lab, Ops and Spare and a few
    /// license lines.
    pub fn seed(&self) {
        self.run(&["account", "create", "Acme", "--export-controlled"])
            .ok();
        for va in ["Lab", "Ops", "Spare"] {
            self.run(&["va", "create", "Acme", va]).ok();
        }
        self.add_license(
            "Lab",
            "regid.example.dna-advantage",
            "DNA Advantage",
            "50",
            &[],
        );
        self.add_license(
            "Lab",
            "regid.example.sec",
            "Security, \"Plus\"",
            "5",
            &[
                "--kind",
                "term",
                "--start",
                "2026-01-01",
                "--end",
                "2030-01-01",
            ],
        );
        self.add_license(
            "Ops",
            "regid.example.hsec",
            "HSECK9",
            "2",
            &["--restricted"],
        );
    }

    /// `mock-cloud serve` on a free loopback port.
    pub fn serve(&self, log_dir: &Path, extra: &[&str]) -> (Server, u16) {
        let port = free_port();
        let mut cmd = self.command();
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(extra);
        let mut server = Server::start("mock-cloud", &mut cmd, &log_dir.join("mock-cloud.log"));
        let ca = self.ca();
        harness::wait_file(&ca, Duration::from_secs(30), &mut server);
        let https = Https::new(port, &wait_pem(&ca));
        harness::wait_http_ok(&https, "/healthz", Duration::from_secs(30), &mut server);
        (server, port)
    }
}

/// `satellite status --json` of the satellite in `dir`.
pub fn status(dir: &Path) -> serde_json::Value {
    sat(dir, &["status", "--json"]).ok().json()
}

/// The satellite's database in `dir`.
pub fn sat_db(dir: &Path) -> PathBuf {
    dir.join("data/satellite.db")
}

/// Registers the satellite in `dir` with `cloud` by files, for `vas`, vouching for the
/// cloud's CA by its fingerprint (as an operator copies it from `mock-cloud ca`). Returns
/// the authorization file.
pub fn register_by_files(dir: &Path, cloud: &MockCloud, name: &str, vas: &[&str]) -> PathBuf {
    let req = dir.join("request.zip");
    let auth = dir.join("authorization.zip");
    sat(dir, &["register", "export", "--out", req.to_str().unwrap()]).ok();
    let mut args = vec![
        "satellite",
        "authorize",
        req.to_str().unwrap(),
        "--name",
        name,
        "--out",
        auth.to_str().unwrap(),
    ];
    for va in vas {
        args.extend(["--va", va]);
    }
    cloud.run(&args).ok();
    import_authorization(dir, cloud, &auth).ok();
    auth
}

/// `satellite register import AUTH --cloud-ca-fingerprint FP` in `dir`, with the fingerprint of
/// `cloud`'s CA.
pub fn import_authorization(dir: &Path, cloud: &MockCloud, auth: &Path) -> Output {
    let fingerprint = cloud.fingerprint();
    sat(
        dir,
        &[
            "register",
            "import",
            auth.to_str().unwrap(),
            "--cloud-ca-fingerprint",
            &fingerprint,
        ],
    )
}

/// A registered satellite with the seeded cloud's VAs Lab and Ops, serving on loopback.
pub struct Site {
    pub dir: PathBuf,
    pub sat: RunningSatellite,
    pub cloud: MockCloud,
}

impl Site {
    pub fn new(dir: &Path) -> Site {
        let cloud = MockCloud::new(&dir.join("cloud"));
        cloud.seed();
        let s = dir.join("sat");
        std::fs::create_dir_all(&s).unwrap();
        register_by_files(&s, &cloud, "site", &["Lab", "Ops"]);
        let running = start_satellite(&s);
        Site {
            dir: s,
            sat: running,
            cloud,
        }
    }

    pub fn sat(&self, args: &[&str]) -> Output {
        sat(&self.dir, args)
    }

    /// Stops the server (SIGTERM) and starts it again with extra environment variables.
    pub fn restart_with(&mut self, env: &[(&str, &str)]) {
        self.sat.server.signal(libc::SIGTERM);
        assert!(self.sat.server.wait_exit(Duration::from_secs(30)).is_some());
        self.sat = start_satellite_env(&self.dir, env);
    }

    /// A token for `va` (extra flags allowed).
    pub fn token(&self, va: &str, extra: &[&str]) -> String {
        let mut args = vec!["token", "create", "--va", va, "--days", "30", "--json"];
        args.extend_from_slice(extra);
        self.sat(&args).ok().json()["token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Moves the satellite's and the cloud's clocks `days` forward in steps of at most 80
    /// days, syncing by files after each, so the satellite is never 90 days without a sync.
    pub fn advance_synced(&self, days: i64) {
        let mut left = days;
        let mut n = 0;
        while left > 0 {
            let step = left.min(80);
            left -= step;
            n += 1;
            let by = format!("{step}d");
            self.sat(&["clock", "advance", &by]).ok();
            self.cloud.run(&["clock", "advance", &by]).ok();
            self.round_trip(&format!("advance-{n}"));
        }
    }

    /// Registers the satellite again by files (after a removal), with `vas` from the cloud
    /// (the CA pinned at the first registration vouches for the authorization).
    pub fn register_again(&self, vas: &[&str]) {
        let (reg, auth) = (self.dir.join("again.zip"), self.dir.join("again-auth.zip"));
        self.sat(&["register", "export", "--out", reg.to_str().unwrap()])
            .ok();
        let mut args = vec![
            "satellite",
            "authorize",
            reg.to_str().unwrap(),
            "--name",
            "site",
            "--out",
            auth.to_str().unwrap(),
        ];
        for va in vas {
            args.extend(["--va", va]);
        }
        self.cloud.run(&args).ok();
        self.sat(&["register", "import", auth.to_str().unwrap()])
            .ok();
    }

    /// Where a sync named `name` keeps its request and response files.
    pub fn files(&self, name: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{name}-request.zip")),
            self.dir.join(format!("{name}-response.zip")),
        )
    }

    /// A sync by files: export, process at the cloud, import; the import's JSON answer.
    pub fn round_trip(&self, name: &str) -> serde_json::Value {
        let (req, resp) = self.files(name);
        self.sat(&["sync", "export", "--out", req.to_str().unwrap()])
            .ok();
        self.cloud.process(&req, &resp);
        self.sat(&["sync", "import", resp.to_str().unwrap(), "--json"])
            .ok()
            .json()
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.sat.https.port)
    }

    pub fn cert(&self) -> PathBuf {
        self.sat.data_dir.join("tls/server.crt.pem")
    }

    /// `Authorization: Bearer ...` with a new API token of the first admin.
    pub fn admin_bearer(&self) -> String {
        let token = self
            .sat(&["user", "api-token", "create", "admin"])
            .ok()
            .stdout;
        format!("Bearer {}", token.trim())
    }

    /// `device-sim run` of `n` new devices registered with `token`, each asking for
    /// `entitlement` (TAG:COUNT): its JSON summary.
    pub fn run_devices(&self, token: &str, n: usize, entitlement: &str) -> serde_json::Value {
        let n = n.to_string();
        self.sim(&[
            "run",
            "--token",
            token,
            "--devices",
            &n,
            "--entitlement",
            entitlement,
        ])
    }

    /// `device-sim ARGS...` against this satellite, JSON summary.
    pub fn sim(&self, args: &[&str]) -> serde_json::Value {
        let out = harness::run(Command::new(bin("device-sim")).args(args).args([
            "--satellite",
            &self.url(),
            "--ca",
            self.cert().to_str().unwrap(),
            "--json",
        ]));
        assert!(out.code == 0 || out.code == 1, "device-sim failed: {out:?}");
        out.json()
    }

    /// `satellite license list --json`, as (va, tag) -> (purchased, in use, balance).
    pub fn pool(&self, va: &str, tag: &str) -> (i64, i64, i64) {
        let list = self.sat(&["license", "list", "--json"]).ok().json();
        let row = list
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["virtual_account"] == va && r["tag"] == tag)
            .unwrap_or_else(|| panic!("no pool {va}/{tag} in {list}"));
        (
            row["purchased"].as_i64().unwrap(),
            row["in_use"].as_i64().unwrap(),
            row["balance"].as_i64().unwrap(),
        )
    }
}

/// Posts `body` to the device API with `X-Satellite-Signature` made by `key` over its bytes.
pub fn post_signed(
    site: &Site,
    path: &str,
    body: &serde_json::Value,
    key: &openssl::pkey::PKey<openssl::pkey::Private>,
) -> harness::Response {
    let bytes = body.to_string().into_bytes();
    let mut s = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), key).unwrap();
    s.update(&bytes).unwrap();
    let sig = openssl::base64::encode_block(&s.sign_to_vec().unwrap());
    site.sat
        .https
        .request_with(
            "POST",
            path,
            Some(&bytes),
            &[("X-Satellite-Signature", &sig)],
        )
        .unwrap()
}

/// A device driven by hand, for precise requests.
pub struct Dev {
    pub key: openssl::pkey::PKey<openssl::pkey::Private>,
    pub pi_id: String,
    pub counter: i64,
    pub ca_pem: String,
}

pub fn csr_pem(key: &openssl::pkey::PKey<openssl::pkey::Private>) -> String {
    let mut b = openssl::x509::X509Req::builder().unwrap();
    b.set_pubkey(key).unwrap();
    b.sign(key, openssl::hash::MessageDigest::sha256()).unwrap();
    String::from_utf8(b.build().to_pem().unwrap()).unwrap()
}

pub fn register_body(
    token: &str,
    pid: &str,
    sn: &str,
    key: &openssl::pkey::PKey<openssl::pkey::Private>,
) -> serde_json::Value {
    serde_json::json!({ "token": token, "udi": { "pid": pid, "sn": sn }, "csr_pem": csr_pem(key) })
}

impl Dev {
    /// Registers a new device; panics unless it succeeds.
    pub fn register(site: &Site, token: &str, sn: &str) -> Dev {
        let key = sync_format::pki::new_p256_key().unwrap();
        let body = register_body(token, "TEST-PID", sn, &key);
        Dev::register_with(site, &body, key)
    }

    /// Registers with this body (made for `key`); panics unless it succeeds.
    pub fn register_with(
        site: &Site,
        body: &serde_json::Value,
        key: openssl::pkey::PKey<openssl::pkey::Private>,
    ) -> Dev {
        let r = site
            .sat
            .https
            .post_json("/api/v1/devices/register", body)
            .unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        Dev {
            key,
            pi_id: v["pi_id"].as_str().unwrap().to_string(),
            counter: 0,
            ca_pem: v["ca_certificate_pem"].as_str().unwrap().to_string(),
        }
    }

    /// A signed request, signed with `key` (normally the device's own).
    pub fn signed_with(
        &mut self,
        site: &Site,
        path: &str,
        mut body: serde_json::Value,
        key: &openssl::pkey::PKey<openssl::pkey::Private>,
    ) -> harness::Response {
        self.counter += 1;
        body["pi_id"] = self.pi_id.clone().into();
        body["counter"] = self.counter.into();
        post_signed(site, path, &body, key)
    }

    pub fn signed(
        &mut self,
        site: &Site,
        path: &str,
        body: serde_json::Value,
    ) -> harness::Response {
        let key = self.key.clone();
        self.signed_with(site, path, body, &key)
    }

    /// Asks for `tag` x `count`; returns the verified authorization.
    pub fn authorize(&mut self, site: &Site, tag: &str, count: i64) -> serde_json::Value {
        let r = self.signed(
            site,
            "/api/v1/devices/authorize",
            serde_json::json!({ "nonce": "n-42", "entitlements": [{ "tag": tag, "count": count }] }),
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        // The answer is signed by the device CA and carries our nonce.
        let payload = openssl::base64::decode_block(v["payload"].as_str().unwrap()).unwrap();
        let sig = openssl::base64::decode_block(v["signature"].as_str().unwrap()).unwrap();
        let ca = openssl::x509::X509::from_pem(self.ca_pem.as_bytes()).unwrap();
        let ca_key = ca.public_key().unwrap();
        let mut ver =
            openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &ca_key).unwrap();
        ver.update(&payload).unwrap();
        assert!(ver.verify(&sig).unwrap(), "authorization signature");
        let a: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(a["nonce"], "n-42");
        a
    }
}

/// A bundle signed again by `key` (with `chain`), its payload changed by `edit`: a forgery
/// made with keys the test holds.
pub fn resign(
    bundle: &[u8],
    key: &openssl::pkey::PKey<openssl::pkey::Private>,
    chain: &[openssl::x509::X509],
    edit: &dyn Fn(&mut serde_json::Value),
) -> Vec<u8> {
    use std::io::{Cursor, Read};
    use sync_format::manifest::{BundleKind, Header};
    use sync_format::BundleWriter;
    let mut zip = zip::ZipArchive::new(Cursor::new(bundle)).unwrap();
    let mut entry = |name: &str| {
        let mut out = Vec::new();
        zip.by_name(name).unwrap().read_to_end(&mut out).unwrap();
        out
    };
    let m: serde_json::Value = serde_json::from_slice(&entry("manifest.json")).unwrap();
    let s = |k: &str| m[k].as_str().unwrap().to_string();
    let header = Header {
        kind: BundleKind::parse(&s("kind")).unwrap(),
        bundle_id: s("bundle_id"),
        sender: s("sender"),
        receiver: s("receiver"),
        sequence: m["sequence"].as_u64().unwrap(),
        created_at: m["created_at"].as_i64().unwrap(),
        not_after: m["not_after"].as_i64().unwrap(),
        in_reply_to: m["in_reply_to"].as_str().map(str::to_string),
    };
    let names: Vec<String> = m["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    let mut w = BundleWriter::new(Cursor::new(Vec::new()), header).unwrap();
    for name in names {
        let bytes = entry(&name);
        if name == "payload.json" {
            let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            edit(&mut v);
            w.payload(&v).unwrap();
            continue;
        }
        let mut n = w.ndjson(&name).unwrap();
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            n.write(&serde_json::from_slice::<serde_json::Value>(line).unwrap())
                .unwrap();
        }
        n.finish();
    }
    let signer = sync_format::pki::Signer::new(key.clone(), chain.to_vec()).unwrap();
    w.finish(&signer).unwrap().0.into_inner()
}
