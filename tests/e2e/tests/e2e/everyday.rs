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
    let sim = site.sim(&[
        "run",
        "--token",
        &token,
        "--devices",
        "1",
        "--entitlement",
        &format!("{DNA}:1"),
    ]);
    assert_eq!(sim["registered"], 1, "{sim}");
    let (req, resp) = site.files("plural");
    let mut out = String::new();
    let mut run = |args: &[&str]| out.push_str(&site.sat(args).ok().stdout);
    run(&["sync", "export", "--out", req.to_str().unwrap()]);
    site.cloud.process(&req, &resp);
    run(&["sync", "import", resp.to_str().unwrap(), "--dry-run"]);
    run(&["sync", "import", resp.to_str().unwrap()]);
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
