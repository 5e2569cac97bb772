//! The operator's everyday at the command line: what the CLI prints reads as English (counts
//! agree with their nouns), and every command explains itself.

use crate::common::Site;

const DNA: &str = "regid.example.dna-advantage";

/// Nouns the CLI counts; after a count of 1 each must be singular.
const NOUNS: &[&str] = &[
    "product instances",
    "usage records",
    "events",
    "license lines",
    "license changes",
    "licenses",
    "records",
    "tokens",
    "alerts",
    "export answers",
    "export requests",
    "requests and returns",
];

/// The places in `text` where a count of 1 comes with a plural noun, or a noun is hedged
/// with "(s)".
fn bad_plurals(text: &str) -> Vec<String> {
    let mut bad = Vec::new();
    for line in text.lines() {
        if line.contains("(s)") {
            bad.push(line.to_string());
        }
        for noun in NOUNS {
            let one = format!("1 {noun}");
            for (i, _) in line.match_indices(&one) {
                let before = line[..i].chars().last();
                if before.is_none_or(|c| !c.is_ascii_digit()) {
                    bad.push(line.to_string());
                }
            }
        }
    }
    bad
}

#[test]
fn the_clis_counts_agree_with_their_nouns() {
    assert_eq!(bad_plurals("1 product instances"), ["1 product instances"]);
    assert!(bad_plurals("11 product instances; 1 event; 21 events").is_empty());

    let t = tempfile::tempdir().unwrap();
    let site = Site::new(t.path());
    let token = site.token("Lab", &[]);
    let sim = site.run_devices(&token, 1, &format!("{DNA}:1"));
    assert_eq!(sim["registered"], 1, "{sim}");
    let (req, resp) = site.files("plural");
    let mut out = String::new();
    let mut run = |args: &[&str]| {
        let said = site.sat(args).ok().stdout;
        out.push_str(&said);
        said
    };
    run(&["sync", "export", "--out", req.to_str().unwrap()]);
    site.cloud.process(&req, &resp);
    run(&["sync", "import", resp.to_str().unwrap(), "--dry-run"]);
    let import = run(&["sync", "import", resp.to_str().unwrap()]);
    run(&["status"]);
    run(&["sync", "status"]);
    run(&["device", "list"]);
    run(&["license", "list"]);
    run(&["alert", "list", "--state", "all"]);
    run(&["event", "list", "--limit", "1"]);
    run(&["token", "list"]);
    run(&["export", "list"]);
    let backup = t.path().join("backup.zip");
    run(&["backup", "--out", backup.to_str().unwrap()]);
    // The next sync's date said once (it was printed twice).
    assert_eq!(
        import.to_lowercase().matches("next sync due by").count(),
        1,
        "{import}"
    );
    let bad = bad_plurals(&out);
    assert!(bad.is_empty(), "wrong plurals: {bad:#?}\n\n{out}");
    assert!(out.contains("1 product instance"), "{out}");
}

/// `device show` takes a product instance in every form `device list` shows it; the CLI
/// prints its shell completions and writes its manual pages.
#[test]
fn device_show_takes_what_device_list_shows_and_the_cli_documents_itself() {
    let t = tempfile::tempdir().unwrap();
    let site = Site::new(t.path());
    let token = site.token("Lab", &[]);
    site.sim(&["run", "--token", &token, "--devices", "2"]);
    let list = site.sat(&["device", "list", "--json"]).ok().json();
    let d = &list[0];
    let pi = d["pi_id"].as_str().unwrap();
    let udi = format!(
        "{}:{}",
        d["product_type"].as_str().unwrap(),
        d["serial_number"].as_str().unwrap()
    );
    for form in [pi, d["name"].as_str().unwrap(), udi.as_str()] {
        let shown = site.sat(&["device", "show", form, "--json"]).ok().json();
        assert_eq!(shown["pi_id"], pi, "device show {form}");
    }
    let out = crate::common::sat(&site.dir, &["device", "show", "no-such-router"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("PI id, PID:SN or name"),
        "{}",
        out.stderr
    );

    let bash = site.sat(&["completions", "bash"]).ok().stdout;
    assert!(
        bash.contains("_satellite") && bash.contains("sync"),
        "{bash}"
    );
    let zsh = site.sat(&["completions", "zsh"]).ok().stdout;
    assert!(zsh.contains("#compdef satellite"), "{zsh}");
    let man = t.path().join("man");
    let said = site
        .sat(&["man", "--out", man.to_str().unwrap()])
        .ok()
        .stdout;
    assert!(said.starts_with("wrote "), "{said}");
    for page in ["satellite.1", "satellite-sync.1", "satellite-sync-import.1"] {
        let text = std::fs::read_to_string(man.join(page)).unwrap();
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page}: {text}"
        );
    }
    let one = site.sat(&["man"]).ok().stdout;
    assert!(one.contains(".TH satellite"), "{one}");
}

/// Under systemd (JOURNAL_STREAM set) every log line starts with its syslog priority, so
/// `journalctl -p warning` filters; with `[log] format = "json"` the first start's
/// generated admin password is a field of one JSON line, not a block of text in the stream.
#[test]
fn logs_carry_journal_priorities_and_the_first_password_as_a_json_field() {
    use crate::common::start_satellite_env;
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("journal");
    std::fs::create_dir_all(&dir).unwrap();
    let mut running = start_satellite_env(&dir, &[("JOURNAL_STREAM", "8:12345")]);
    running.server.signal(libc::SIGTERM);
    assert!(running
        .server
        .wait_exit(std::time::Duration::from_secs(30))
        .is_some());
    let log = running.server.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for l in &lines {
        let p = l.get(..3).unwrap_or("");
        assert!(
            ["<3>", "<4>", "<6>", "<7>"].contains(&p),
            "a line without its priority: {l:?}\n{log}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<6>") && l.contains("ready")),
        "{log}"
    );
    assert!(lines.iter().any(|l| l.starts_with("<4>")), "{log}");

    let dir = t.path().join("json");
    std::fs::create_dir_all(&dir).unwrap();
    let mut running = start_satellite_env(
        &dir,
        &[
            ("SATELLITE_LOG_FORMAT", "json"),
            ("SATELLITE_CONSOLE_ADMIN_PASSWORD", ""),
        ],
    );
    running.server.signal(libc::SIGTERM);
    assert!(running
        .server
        .wait_exit(std::time::Duration::from_secs(30))
        .is_some());
    let log = running.server.log();
    let mut password = None;
    for l in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{log}"));
        if let Some(p) = v["fields"]["password"].as_str() {
            password = Some(p.to_string());
        }
    }
    let password = password.unwrap_or_else(|| panic!("no password field:\n{log}"));
    assert!(password.len() >= 12, "{password}");
}

/// `/metrics` answers a Prometheus scrape with what `status`, `sync status` and `license
/// list` say, and the device requests it served; anonymous scrapes are refused unless
/// `[metrics] public = true`.
#[test]
fn metrics_are_what_the_cli_shows() {
    let t = tempfile::tempdir().unwrap();
    let mut site = Site::new(t.path());
    let token = site.token("Lab", &[]);
    let sim = site.run_devices(&token, 3, &format!("{DNA}:1"));
    assert_eq!(sim["authorized"], 3, "{sim}");
    let bearer = site.admin_bearer();
    let anonymous = site.sat.console.get("/metrics").unwrap();
    assert_eq!(anonymous.status, 401);
    let r = site
        .sat
        .console
        .request_with("GET", "/metrics", None, &[("Authorization", &bearer)])
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let text = String::from_utf8(r.body).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let s = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"));
        match s.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name}: {other:?}"),
        }
    };
    let (purchased, in_use, balance) = site.pool("Lab", DNA);
    let pool = [("virtual_account", "Lab"), ("entitlement", DNA)];
    assert_eq!(
        value("satellite_licenses_purchased", &pool),
        purchased as f64
    );
    assert_eq!(value("satellite_licenses_in_use", &pool), in_use as f64);
    assert_eq!(value("satellite_licenses_balance", &pool), balance as f64);
    assert_eq!(
        value("satellite_product_instances", &[("state", "active")]),
        3.0
    );
    let sync = site.sat(&["sync", "status", "--json"]).ok().json();
    assert_eq!(
        value("satellite_days_until_removal", &[]),
        sync["days_left_before_removal"].as_f64().unwrap()
    );
    assert_eq!(value("satellite_state", &[("state", "registered")]), 1.0);
    let registered = value(
        "satellite_device_request_duration_seconds_count",
        &[("route", "/api/v1/devices/register"), ("status", "200")],
    );
    assert_eq!(registered, 3.0, "{text}");
    assert_eq!(value("satellite_writer_queue", &[]), 0.0);

    site.restart_with(&[("SATELLITE_METRICS_PUBLIC", "true")]);
    assert_eq!(site.sat.console.get("/metrics").unwrap().status, 200);
}
