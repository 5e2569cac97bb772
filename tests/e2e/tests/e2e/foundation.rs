//! The foundation: serve, health, status, configuration errors, data directory errors,
//! the manual clock, clean shutdown.

use std::time::Duration;

use crate::common::{sat, satellite, start_satellite};
use satellite_e2e::harness;

#[test]
fn serve_creates_its_store_answers_health_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start_satellite(dir.path());
    assert!(s.data_dir.join("satellite.db").exists());
    assert!(s.data_dir.join("keys/satellite.key.pem").exists());

    let r = s.https.get("/healthz").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    assert_eq!(s.https.get("/readyz").unwrap().json()["status"], "ready");
    assert_eq!(s.https.get("/no-such-route").unwrap().status, 404);

    // The status command works against the data directory of a running server.
    let st = sat(dir.path(), &["status", "--json"]).ok().json();
    assert_eq!(st["state"], "unregistered");

    s.server.signal(libc::SIGTERM);
    let status = s
        .server
        .wait_exit(Duration::from_secs(30))
        .expect("exits after SIGTERM");
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        s.server.log()
    );
    assert!(s.server.log().contains("stopped"), "{}", s.server.log());
    // The listener is gone.
    assert!(s.https.get("/healthz").is_err());
}

#[test]
fn sigint_stops_cleanly_and_a_restart_reuses_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let first = start_satellite(dir.path());
    let id = sat(dir.path(), &["status", "--json"]).ok().json()["satellite_id"].clone();
    let fingerprint = std::fs::read(first.data_dir.join("tls/server.crt.pem")).unwrap();
    let mut server = first.server;
    server.signal(libc::SIGINT);
    assert!(server.wait_exit(Duration::from_secs(30)).unwrap().success());

    let again = start_satellite(dir.path());
    assert_eq!(
        sat(dir.path(), &["status", "--json"]).ok().json()["satellite_id"],
        id
    );
    assert_eq!(
        std::fs::read(again.data_dir.join("tls/server.crt.pem")).unwrap(),
        fingerprint,
        "the self-made certificate is kept across restarts"
    );
}

#[test]
fn status_of_a_fresh_data_directory_is_unregistered() {
    let dir = tempfile::tempdir().unwrap();
    let st = sat(dir.path(), &["status", "--json"]).ok().json();
    assert_eq!(st["state"], "unregistered");
    assert_eq!(st["counts"]["product_instances"], 0);
    let text = sat(dir.path(), &["status"]).ok().stdout;
    assert!(text.contains("Registration:       unregistered"), "{text}");
}

#[test]
fn bad_configuration_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[server]\nlisten = \"127.0.0.1:1\"\nlisen = \"x\"\n").unwrap();
    let out = sat(dir.path(), &["status", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("server.lisen"), "{}", out.stderr);
    assert!(
        !dir.path().join("data").exists(),
        "nothing is created on a bad config"
    );

    let out = harness::run(
        satellite(dir.path())
            .env("SATELLITE_STORAGE_POOL_SIZE", "lots")
            .args(["status"]),
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("SATELLITE_STORAGE_POOL_SIZE") && out.stderr.contains("\"lots\""),
        "{}",
        out.stderr
    );

    let out = sat(dir.path(), &["status", "--no-such-flag"]);
    assert_eq!(out.code, 2, "usage errors exit 2");
}

#[test]
fn config_precedence_file_then_environment_then_flag() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("s.toml");
    std::fs::write(&cfg, "[storage]\ndata_dir = \"from-file\"\n").unwrap();
    let show = |extra_env: Option<&str>, flag: bool| {
        let mut c = std::process::Command::new(harness::bin("satellite"));
        c.current_dir(dir.path()).env_remove("RUST_LOG").args([
            "configtest",
            "--config",
            cfg.to_str().unwrap(),
        ]);
        if let Some(v) = extra_env {
            c.env("SATELLITE_STORAGE_DATA_DIR", v);
        }
        if flag {
            c.args(["--data-dir", "from-flag"]);
        }
        harness::run(&mut c).ok().stdout
    };
    assert!(show(None, false).contains("data_dir = \"from-file\""));
    assert!(show(Some("from-env"), false).contains("data_dir = \"from-env\""));
    assert!(show(Some("from-env"), true).contains("data_dir = \"from-flag\""));
}

#[test]
fn unwritable_data_directory_is_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file where the data directory's parent should be: fails even for root.
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, b"x").unwrap();
    let out = harness::run(
        std::process::Command::new(harness::bin("satellite"))
            .args(["status", "--data-dir"])
            .arg(blocker.join("data")),
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("data directory"), "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);

    // A read-only directory (only meaningful when not running as root).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        use std::os::unix::fs::PermissionsExt;
        let ro = dir.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o500)).unwrap();
        let out = harness::run(
            std::process::Command::new(harness::bin("satellite"))
                .args(["status", "--data-dir"])
                .arg(&ro),
        );
        assert_eq!(out.code, 1);
        assert!(out.stderr.contains("not writable"), "{}", out.stderr);
    }
}

#[test]
fn manual_clock_is_shared_by_cli_and_server_and_refused_when_off() {
    let dir = tempfile::tempdir().unwrap();
    let _s = start_satellite(dir.path());
    let before = sat(dir.path(), &["clock", "show", "--json"]).ok().json()["unix"]
        .as_i64()
        .unwrap();
    let out = sat(dir.path(), &["clock", "advance", "90d"]).ok();
    assert!(out.stdout.contains("offset"), "{}", out.stdout);
    let after = sat(dir.path(), &["status", "--json"]).ok().json();
    let now = after["now"].as_str().unwrap().to_string();
    let moved = sat(dir.path(), &["clock", "show", "--json"]).ok().json()["unix"]
        .as_i64()
        .unwrap();
    assert!(moved - before >= 90 * 86_400, "{before} -> {moved} ({now})");

    sat(dir.path(), &["clock", "set", "2031-01-01T00:00:00Z"]).ok();
    let st = sat(dir.path(), &["status", "--json"]).ok().json();
    assert!(
        st["now"].as_str().unwrap().starts_with("2031-01-01T00:0"),
        "{st}"
    );

    let bad = sat(dir.path(), &["clock", "advance", "soon"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("invalid duration"), "{}", bad.stderr);

    // With the manual clock off, the command is refused.
    let out = harness::run(
        satellite(dir.path())
            .env("SATELLITE_TESTING_MANUAL_CLOCK", "false")
            .args(["clock", "advance", "1d"]),
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("manual clock is disabled"),
        "{}",
        out.stderr
    );
}

#[test]
fn help_explains_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["serve", "status", "migrate", "configtest", "clock", "sync"] {
        let out = sat(dir.path(), &[sub, "--help"]).ok();
        assert!(
            out.stdout.len() > 80,
            "{sub} --help is too thin: {}",
            out.stdout
        );
    }
    let out = sat(dir.path(), &["migrate"]).ok();
    assert!(out.stdout.contains("applied ") || out.stdout.contains("up to date"));
    let out = sat(dir.path(), &["migrate"]).ok();
    assert!(out.stdout.contains("up to date"), "{}", out.stdout);
}

#[test]
fn a_reader_that_goes_away_ends_a_command_quietly_not_with_a_panic() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    sat(dir.path(), &["migrate"]).ok();
    // `satellite configtest | head -0`: the reader is gone before the command writes.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = satellite(dir.path())
        .arg("configtest")
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(101), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
