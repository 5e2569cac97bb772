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
    pub data_dir: PathBuf,
}

pub fn start_satellite(dir: &Path) -> RunningSatellite {
    let port = free_port();
    let mut cmd = satellite(dir);
    cmd.env("SATELLITE_SERVER_LISTEN", format!("127.0.0.1:{port}"))
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
    RunningSatellite {
        server,
        https,
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

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt.pem")
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
        self.run(&[
            "license",
            "add",
            "--va",
            "Lab",
            "--tag",
            "regid.example.dna-advantage",
            "--name",
            "DNA Advantage",
            "--count",
            "50",
        ])
        .ok();
        self.run(&[
            "license",
            "add",
            "--va",
            "Lab",
            "--tag",
            "regid.example.sec",
            "--name",
            "Security, \"Plus\"",
            "--count",
            "5",
            "--kind",
            "term",
            "--start",
            "2026-01-01",
            "--end",
            "2030-01-01",
        ])
        .ok();
        self.run(&[
            "license",
            "add",
            "--va",
            "Ops",
            "--tag",
            "regid.example.hsec",
            "--name",
            "HSECK9",
            "--count",
            "2",
            "--restricted",
        ])
        .ok();
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
