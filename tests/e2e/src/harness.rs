//! Helpers for end-to-end tests: find the real binaries, run them as processes on loopback
//! ports, talk HTTPS to them with certificate verification on, and stop them afterwards.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::X509;

/// A binary of the workspace, built by `cargo build --workspace --bins` before the tests.
/// Refuses (panics, naming the file) a binary older than any source it is built from, so an
/// edit followed by `cargo test` alone can never test a stale binary.
pub fn bin(name: &str) -> PathBuf {
    // The test executable is target/<profile>/deps/<test>-<hash>; binaries are in <profile>.
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile> directory");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} not found: run `cargo build --workspace --bins` before `cargo test --workspace`",
        path.display()
    );
    static CHECKED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut checked = CHECKED.lock().unwrap_or_else(|e| e.into_inner());
    if !checked.iter().any(|c| c == name) {
        refuse_stale(name, &path);
        checked.push(name.to_string());
    }
    path
}

/// The sources a binary of the workspace is built from: the files cargo's dep-info beside
/// it lists (exactly what rustc read for it: sources, embedded migrations, the default
/// configuration; not test-only modules, manifests or the lock file, which may change
/// without the binary being built again). Without dep-info, the source folders it is built
/// from.
fn sources_of(name: &str, binary: &Path) -> Vec<PathBuf> {
    if let Ok(d) = std::fs::read_to_string(binary.with_extension("d")) {
        if let Some((_, deps)) = d.split_once(": ") {
            // Paths are separated by spaces; a space inside a path is escaped as "\ ".
            let deps = deps.lines().next().unwrap_or_default().replace("\\ ", "\0");
            return deps
                .split_whitespace()
                .map(|p| PathBuf::from(p.replace('\0', " ")))
                .collect();
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().unwrap_or(root);
    let mut dirs = vec![
        "satellite/src",
        "sync-format/src",
        "migrations",
        "config/satellite.toml",
    ];
    match name {
        "mock-cloud" => dirs.extend(["tests/mock-cloud/src", "tests/mock-cloud/migrations"]),
        "device-sim" => dirs.push("tests/device-sim/src"),
        _ => {}
    }
    dirs.into_iter().map(|d| root.join(d)).collect()
}

/// The newest file under `paths`, with its modification time.
fn newest(paths: &[PathBuf]) -> Option<(std::time::SystemTime, PathBuf)> {
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    let mut todo: Vec<PathBuf> = paths.to_vec();
    while let Some(p) = todo.pop() {
        let Ok(meta) = std::fs::metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                todo.extend(rd.filter_map(|e| e.ok().map(|e| e.path())));
            }
        } else if let Ok(m) = meta.modified() {
            if best.as_ref().is_none_or(|(t, _)| m > *t) {
                best = Some((m, p));
            }
        }
    }
    best
}

fn refuse_stale(name: &str, path: &Path) {
    let built = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .expect("binary's modification time");
    if let Some((changed, file)) = newest(&sources_of(name, path)) {
        assert!(
            changed <= built,
            "{} is older than {}: it was built from older sources. Run `cargo build \
             --workspace --bins` before `cargo test --workspace` (the README's test command \
             does both)",
            path.display(),
            file.display()
        );
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// The result of a finished command.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Panics with both streams unless the command exited 0.
    pub fn ok(self) -> Output {
        assert_eq!(
            self.code, 0,
            "command failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }
}

/// Runs a command to completion (bounded: 120 s) and collects its output.
pub fn run(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = wait_timeout(&mut child, Duration::from_secs(120)).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("{cmd:?} did not finish within 120 s");
    });
    Output {
        code: status.code().unwrap_or(-1),
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A server process started by a test; killed when dropped, so no test leaves one behind.
pub struct Server {
    pub name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Server {
    /// Starts `cmd` with its stdout and stderr going to `log`.
    pub fn start(name: &str, cmd: &mut Command, log: &Path) -> Server {
        let file = std::fs::File::create(log).expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Server {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal (libc::SIGTERM, SIGINT, SIGKILL).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of our own child process.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Waits (bounded) for the process to exit and returns its status.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let status = wait_timeout(child, limit)?;
        self.child = None;
        Some(status)
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A small blocking HTTPS/1.1 client that verifies the server against one trusted
/// certificate (a CA, or a self-signed server certificate) and the host name `localhost`.
pub struct Https {
    pub port: u16,
    connector: SslConnector,
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header lines as (lower-case name, value).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

impl Https {
    pub fn new(port: u16, trusted_pem: &[u8]) -> Https {
        let mut b = SslConnector::builder(SslMethod::tls_client()).expect("ssl");
        let cert = X509::from_pem(trusted_pem).expect("trusted certificate PEM");
        b.cert_store_mut().add_cert(cert).expect("add cert");
        b.set_verify(SslVerifyMode::PEER);
        Https {
            port,
            connector: b.build(),
        }
    }

    /// A TLS connection to the server from the loopback address `from` (127.0.0.x), so a
    /// test can be several clients.
    pub fn connect_from(
        &self,
        from: std::net::Ipv4Addr,
    ) -> std::io::Result<openssl::ssl::SslStream<TcpStream>> {
        use std::os::fd::FromRawFd;
        // SAFETY: a new socket, owned by the TcpStream made from it (closed on error).
        let tcp = unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let tcp = TcpStream::from_raw_fd(fd);
            let addr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: port.to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(ip).to_be(),
                },
                sin_zero: [0; 8],
            };
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let local = addr(from, 0);
            if libc::bind(fd, std::ptr::addr_of!(local).cast(), len) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let remote = addr(std::net::Ipv4Addr::LOCALHOST, self.port);
            if libc::connect(fd, std::ptr::addr_of!(remote).cast(), len) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            tcp
        };
        tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
        self.connector
            .connect("localhost", tcp)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }

    pub fn get(&self, path: &str) -> std::io::Result<Response> {
        self.request("GET", path, None)
    }

    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> std::io::Result<Response> {
        self.request("POST", path, Some(body.to_string().as_bytes()))
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> std::io::Result<Response> {
        self.request_with(method, path, body, &[])
    }

    /// A request with extra headers.
    pub fn request_with(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Response> {
        let tcp = TcpStream::connect(("127.0.0.1", self.port))?;
        tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut tls = self
            .connector
            .connect("localhost", tcp)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let body = body.unwrap_or_default();
        let mut extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        // JSON unless the caller names another content type.
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            extra.push_str("Content-Type: application/json\r\n");
        }
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Content-Length: {}\r\n{extra}\r\n",
            body.len()
        );
        tls.write_all(head.as_bytes())?;
        tls.write_all(body)?;
        let mut raw = Vec::new();
        match tls.read_to_end(&mut raw) {
            Ok(_) => {}
            // A peer that closes without close_notify still sent a whole response.
            Err(e) if !raw.is_empty() => drop(e),
            Err(e) => return Err(e),
        }
        parse_response(&raw)
    }
}

pub fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    }
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).ok()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Polls `path` until it answers 200, for at most `limit`.
pub fn wait_http_ok(client: &Https, path: &str, limit: Duration, server: &mut Server) {
    let start = Instant::now();
    loop {
        if let Ok(r) = client.get(path) {
            if r.status == 200 {
                return;
            }
        }
        assert!(
            server.running(),
            "{} exited early:\n{}",
            server.name,
            server.log()
        );
        assert!(
            start.elapsed() < limit,
            "{} did not answer {path} within {limit:?}:\n{}",
            server.name,
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (bounded) until `path` exists.
pub fn wait_file(path: &Path, limit: Duration, server: &mut Server) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            server.running(),
            "{} exited early:\n{}",
            server.name,
            server.log()
        );
        assert!(
            start.elapsed() < limit,
            "{} never appeared:\n{}",
            path.display(),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The text values (column `v`) of a query on an open SQLite connection.
fn strings(c: &mut diesel::SqliteConnection, sql: &str) -> Vec<String> {
    use diesel::prelude::*;
    use diesel::sql_types::Text;

    #[derive(QueryableByName)]
    struct One {
        #[diesel(sql_type = Text)]
        v: String,
    }
    diesel::sql_query(sql)
        .load::<One>(c)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .map(|o| o.v)
        .collect()
}

fn open_sqlite(path: &Path) -> diesel::SqliteConnection {
    use diesel::Connection;
    diesel::SqliteConnection::establish(&path.to_string_lossy())
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// The text values of a one-column query (`... AS v`) on a SQLite database, for what no
/// command shows.
pub fn query_strings(path: &Path, sql: &str) -> Vec<String> {
    strings(&mut open_sqlite(path), sql)
}

/// Every row of every table of a SQLite database, as text, to compare a store before and
/// after something that must change nothing.
pub fn dump_sqlite(path: &Path) -> String {
    let mut c = open_sqlite(path);
    let tables = strings(
        &mut c,
        "SELECT name AS v FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' ORDER BY name",
    );
    let mut out = String::new();
    for t in tables {
        let cols = strings(
            &mut c,
            &format!("SELECT name AS v FROM pragma_table_info('{t}') ORDER BY cid"),
        );
        let expr = cols
            .iter()
            .map(|c| format!("quote(\"{c}\")"))
            .collect::<Vec<_>>()
            .join(" || '|' || ");
        let rows = strings(
            &mut c,
            &format!("SELECT {expr} AS v FROM \"{t}\" ORDER BY rowid"),
        );
        out.push_str(&format!("== {t}\n"));
        for r in rows {
            out.push_str(&r);
            out.push('\n');
        }
    }
    out
}

/// Runs SQL statements on a SQLite database, as someone with the file could (tests of
/// tampering).
pub fn exec_sql(path: &Path, sql: &str) {
    use diesel::connection::SimpleConnection;
    open_sqlite(path)
        .batch_execute(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}
