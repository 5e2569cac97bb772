//! A small W3C WebDriver client for the browser tests: Debian's `chromedriver` driving
//! headless `chromium`, over plain HTTP on loopback. Only the commands the tests use.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{free_port, Server};

/// The key of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Whether the browser and its driver are installed (`.ci/run` installs them).
pub fn available() -> bool {
    Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists()
}

/// A running chromedriver with one headless browser session. Both end when dropped.
pub struct Browser {
    _driver: Server,
    port: u16,
    session: String,
    pub downloads: PathBuf,
}

fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> std::io::Result<Value> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        tcp,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    // Read the head, then exactly Content-Length bytes: chromedriver may keep the
    // connection open.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            match len {
                Some(len) if raw.len() >= end + 4 + len => {
                    raw.truncate(end + 4 + len);
                    break;
                }
                _ => {}
            }
        }
        let n = tcp.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let r = crate::harness::parse_response(&raw)?;
    serde_json::from_slice(&r.body).map_err(|e| bad(&e.to_string()))
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless session that accepts the
    /// satellite's self-signed certificate and saves downloads in `downloads`.
    pub fn start(work: &Path) -> Browser {
        let downloads = work.join("downloads");
        std::fs::create_dir_all(&downloads).unwrap();
        let port = free_port();
        let mut driver = Server::start(
            "chromedriver",
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1"),
            &work.join("chromedriver.log"),
        );
        let start = Instant::now();
        loop {
            if let Ok(v) = http(port, "GET", "/status", None) {
                if v["value"]["ready"] == true {
                    break;
                }
            }
            assert!(driver.running(), "chromedriver exited:\n{}", driver.log());
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "chromedriver not ready in 30 s:\n{}",
                driver.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000",
                         "--no-first-run", "--no-default-browser-check",
                         format!("--user-data-dir={}", work.join("profile").display())],
                "prefs": {
                    "download.default_directory": downloads.display().to_string(),
                    "download.prompt_for_download": false
                }
            }
        }}});
        let v = http(port, "POST", "/session", Some(&caps)).expect("new session");
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}\n{}", driver.log()))
            .to_string();
        let b = Browser {
            _driver: driver,
            port,
            session,
            downloads,
        };
        // Headless Chromium saves downloads only where it is told to.
        b.cmd(
            "POST",
            "/goog/cdp/execute",
            json!({"cmd": "Browser.setDownloadBehavior", "params": {
                "behavior": "allow", "downloadPath": b.downloads.display().to_string()}}),
        );
        b
    }

    fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let full = format!("/session/{}{path}", self.session);
        let body = (method == "POST").then_some(&body);
        let v =
            http(self.port, method, &full, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        if v["value"]["error"].is_string() {
            panic!("{method} {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url }));
    }

    pub fn url(&self) -> String {
        self.cmd("GET", "/url", Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The page's HTML.
    pub fn source(&self) -> String {
        self.cmd("GET", "/source", Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The element matching a CSS selector, if any.
    pub fn find(&self, css: &str) -> Option<String> {
        let full = format!("/session/{}/element", self.session);
        let v = http(
            self.port,
            "POST",
            &full,
            Some(&json!({"using": "css selector", "value": css})),
        )
        .ok()?;
        v["value"][ELEMENT].as_str().map(str::to_string)
    }

    /// Waits (at most 15 s) until `ready` holds: a click that submits a form returns
    /// before the next page is there.
    pub fn wait_for(&self, what: &str, ready: impl Fn(&Browser) -> bool) {
        let start = Instant::now();
        while !ready(self) {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "waited 15 s for {what} on {}:\n{}",
                self.url(),
                self.source()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The element matching `css`, waiting for it to appear.
    fn must(&self, css: &str) -> String {
        self.wait_for(css, |b| b.find(css).is_some());
        self.find(css).unwrap_or_default()
    }

    pub fn fill(&self, css: &str, text: &str) {
        let e = self.must(css);
        self.cmd("POST", &format!("/element/{e}/clear"), json!({}));
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            json!({ "text": text }),
        );
    }

    /// Chooses a file in an `<input type=file>`.
    pub fn attach(&self, css: &str, file: &Path) {
        let e = self.must(css);
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            json!({ "text": file.display().to_string() }),
        );
    }

    pub fn click(&self, css: &str) {
        let e = self.must(css);
        self.cmd("POST", &format!("/element/{e}/click"), json!({}));
    }

    pub fn text(&self, css: &str) -> String {
        let e = self.must(css);
        self.cmd("GET", &format!("/element/{e}/text"), Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Saves a PNG screenshot of the page.
    pub fn screenshot(&self, to: &Path) {
        let b64 = self.cmd("GET", "/screenshot", Value::Null);
        let png = openssl::base64::decode_block(b64.as_str().unwrap_or_default())
            .expect("screenshot base64");
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(to, png).unwrap();
    }

    /// Waits (at most 30 s) for a finished download whose name ends with `suffix`.
    pub fn wait_download(&self, suffix: &str) -> PathBuf {
        let start = Instant::now();
        loop {
            let found = std::fs::read_dir(&self.downloads)
                .unwrap()
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with(suffix));
            if let Some(p) = found {
                return p;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no download ending in {suffix} within 30 s in {}",
                self.downloads.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
    }
}
