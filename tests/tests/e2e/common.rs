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
