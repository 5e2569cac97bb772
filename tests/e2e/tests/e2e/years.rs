//! Years of service (issue 20): the satellite's certificate renews through sync, by file and
//! over the network, and a response lost on the way costs nothing.

use crate::common::*;
use satellite_e2e::harness::{self, dump_sqlite};

fn p(path: &std::path::Path) -> &str {
    path.to_str().unwrap()
}

/// `satellite sync now` against the cloud's HTTPS server as it is now (started for the
/// call, its log in `logs`): the command's JSON answer.
fn sync_over_network(site: &Site, logs: &std::path::Path) -> serde_json::Value {
    let (server, port) = site.cloud.serve(logs, &[]);
    let mut c = satellite(&site.dir);
    c.env("SATELLITE_CLOUD_URL", format!("https://localhost:{port}"))
        .args(["sync", "now", "--json"]);
    let out = harness::run(&mut c).ok().json();
    drop(server);
    out
}

fn status(site: &Site) -> serde_json::Value {
    site.sat(&["status", "--json"]).ok().json()
}

fn event_kinds(site: &Site) -> Vec<String> {
    site.sat(&["event", "list", "--json"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn the_satellites_certificate_renews_through_sync_and_a_lost_response_costs_nothing() {
    let t = tempfile::tempdir().unwrap();
    let site = Site::new(t.path());
    let first_until = status(&site)["certificate_expires_at"]
        .as_str()
        .unwrap()
        .to_string();

    // 480 days of syncs every 80 days: two thirds of its 730 days are not gone yet, so no
    // request asks for a new certificate.
    site.advance_synced(480);
    let (req, resp) = site.files("day-490");
    site.sat(&["clock", "advance", "10d"]).ok();
    site.cloud.run(&["clock", "advance", "10d"]).ok();
    let st = site.sat(&["sync", "status", "--json"]).ok().json();
    assert_eq!(st["certificate_renewal_due"], true, "{st}");

    // Day 490: the request asks; its response is lost on the way.
    let out = site
        .sat(&["sync", "export", "--out", p(&req), "--json"])
        .ok()
        .json();
    assert_eq!(out["renewal_requested"], true, "{out}");
    site.cloud.process(&req, &resp);
    assert_eq!(
        status(&site)["certificate_expires_at"],
        first_until.as_str()
    );

    // The next sync asks again and brings the certificate; the satellite switches to it.
    let applied = site.round_trip("renewed");
    let until = applied["certificate_renewed_until"]
        .as_str()
        .unwrap_or_else(|| panic!("no certificate in {applied}"))
        .to_string();
    assert!(until > first_until, "{until} after {first_until}");
    assert_eq!(status(&site)["certificate_expires_at"], until.as_str());
    assert!(event_kinds(&site).contains(&"satellite_certificate_renewed".to_string()));
    let st = site.sat(&["sync", "status", "--json"]).ok().json();
    assert_eq!(st["certificate_renewal_due"], false, "{st}");
    assert!(!site
        .dir
        .join("data/keys/satellite-renewal.key.pem")
        .exists());

    // The new key signs from now on, and the cloud takes it; past the old certificate's
    // end (day 730) syncs by file and over the network go on.
    site.advance_synced(260);
    let out = sync_over_network(&site, t.path());
    assert_eq!(out["response"]["status"], "applied", "{out}");
    let st = status(&site);
    assert_eq!(st["state"], "registered", "{st}");
    assert!(!st["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a.as_str().unwrap_or_default().contains("Certificate")));
}

const DNA: &str = "regid.example.dna-advantage"; // 50 in Lab

/// The active alerts' types.
fn alert_types(site: &Site) -> Vec<String> {
    status(site)["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn the_cloud_removes_a_satellite_and_its_next_sync_by_file_or_network_says_so() {
    let t = tempfile::tempdir().unwrap();

    // By file.
    let site = Site::new(&t.path().join("file"));
    let token = site.token("Lab", &[]);
    let mut d = Dev::register(&site, &token, "SN-R");
    d.authorize(&site, DNA, 2);
    site.round_trip("before");
    site.cloud.run(&["satellite", "remove", "site"]).ok();
    let out = site.round_trip("removed");
    assert_eq!(out["status"], "removed", "{out}");
    assert!(
        out["message"]
            .as_str()
            .unwrap()
            .contains("removed by the cloud's operator"),
        "{out}"
    );
    let st = status(&site);
    assert_eq!(st["state"], "removed", "{st}");
    assert!(alert_types(&site).contains(&"Satellite Unregistered and Removed".to_string()));
    assert!(event_kinds(&site).contains(&"satellite_removed_by_cloud".to_string()));
    // Devices are refused as after 90 days; the store keeps what it had.
    let r = d.signed(
        &site,
        "/api/v1/devices/authorize",
        serde_json::json!({"nonce": "n", "entitlements": [{"tag": DNA, "count": 1}]}),
    );
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["error"]["code"], "satellite_removed");
    // The cloud released its licenses.
    let usage = site.cloud.run(&["usage", "--json"]).ok().json();
    assert!(
        usage
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["in_use"].as_i64().unwrap_or(0) == 0),
        "{usage}"
    );

    // Over the network.
    let site = Site::new(&t.path().join("network"));
    site.cloud.run(&["satellite", "remove", "site"]).ok();
    let out = sync_over_network(&site, &t.path().join("network"));
    assert_eq!(out["response"]["status"], "removed", "{out}");
    assert_eq!(status(&site)["state"], "removed");
    assert!(event_kinds(&site).contains(&"satellite_removed_by_cloud".to_string()));
}

/// The pool of `tag` in `va` as the satellite lists it: (purchased, in use).
fn pool(site: &Site, va: &str, tag: &str) -> (i64, i64) {
    let (purchased, in_use, _) = site.pool(va, tag);
    (purchased, in_use)
}

#[test]
fn licenses_transferred_and_virtual_accounts_added_at_the_cloud_reach_the_satellite() {
    let t = tempfile::tempdir().unwrap();
    let site = Site::new(t.path());
    let token = site.token("Lab", &[]);
    let mut d = Dev::register(&site, &token, "SN-X");
    d.authorize(&site, DNA, 30);
    site.round_trip("before");
    let before = site.sat(&["event", "list", "--json"]).ok().json();

    // Refused beyond the balance (50 purchased, 30 in use): nothing moves.
    let out = site.cloud.run(&[
        "license", "transfer", "--from", "Lab", "--to", "Ops", "--tag", DNA, "--count", "21",
    ]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("balance is 20"), "{}", out.stderr);
    site.cloud
        .run(&[
            "license", "transfer", "--from", "Lab", "--to", "Ops", "--tag", DNA, "--count", "20",
        ])
        .ok();
    // A virtual account the satellite did not serve joins it.
    site.cloud
        .add_license("Spare", "regid.example.spare", "Spare", "7", &[]);
    site.cloud
        .run(&["satellite", "add-va", "site", "Spare"])
        .ok();
    let out = site.cloud.run(&["satellite", "add-va", "site", "Spare"]);
    assert_ne!(out.code, 0, "added twice: {out:?}");

    let applied = site.round_trip("after");
    assert_eq!(
        applied["virtual_accounts_added"],
        serde_json::json!(["Spare"]),
        "{applied}"
    );
    assert_eq!(pool(&site, "Lab", DNA), (30, 30));
    assert_eq!(pool(&site, "Ops", DNA), (20, 0));
    assert_eq!(pool(&site, "Spare", "regid.example.spare"), (7, 0));
    let events = site.sat(&["event", "list", "--json"]).ok().json();
    let new: Vec<&serde_json::Value> = events
        .as_array()
        .unwrap()
        .iter()
        .skip(before.as_array().unwrap().len())
        .collect();
    let transferred: Vec<&str> = new
        .iter()
        .filter(|e| e["type"] == "licenses_transferred")
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        transferred,
        vec![
            "20 DNA Advantage licenses were transferred from the Virtual Account \"Lab\" to the \
             Virtual Account \"Ops\"."
        ]
    );
    assert!(new.iter().any(|e| e["type"] == "virtual_account_added"));
    assert!(
        !new.iter().any(|e| e["type"] == "licenses_removed"),
        "a transfer is not a removal: {new:?}"
    );
    // The satellite serves the moved licenses: a device of Ops may use them.
    let ops = site.token("Ops", &[]);
    let mut o = Dev::register(&site, &ops, "SN-O");
    o.authorize(&site, DNA, 5);
    assert_eq!(pool(&site, "Ops", DNA), (20, 5));
}

#[test]
fn the_clouds_ca_rolls_over_and_each_satellite_pins_the_new_one_at_its_next_sync() {
    let t = tempfile::tempdir().unwrap();
    let site = Site::new(t.path());
    let old = site.cloud.fingerprint();
    let new = site
        .cloud
        .run(&["ca", "rotate"])
        .ok()
        .stdout
        .trim()
        .to_string();
    assert_ne!(old, new);
    assert_eq!(site.cloud.fingerprint(), new);

    // The next response, signed under the new CA and cross-signed by the old one that the
    // satellite pins, is accepted, and the satellite pins the new CA.
    let out = site.round_trip("rolled");
    assert_eq!(out["status"], "applied", "{out}");
    assert_eq!(out["cloud_ca_pinned"], new.as_str(), "{out}");
    assert!(event_kinds(&site).contains(&"cloud_ca_rolled_over".to_string()));
    // Announced again: nothing more to pin.
    let again = site.round_trip("again");
    assert!(again.get("cloud_ca_pinned").is_none(), "{again}");

    // Over the network, TLS now goes through the new CA.
    let out = sync_over_network(&site, t.path());
    assert_eq!(out["response"]["status"], "applied", "{out}");

    // The certificate renewed later is issued by the new CA and accepted.
    site.advance_synced(490);
    let st = status(&site);
    assert!(
        st["certificate_expires_at"].as_str().unwrap() > "2028",
        "renewed under the new CA: {st}"
    );
    assert!(event_kinds(&site).contains(&"satellite_certificate_renewed".to_string()));
}

#[test]
fn a_satellite_that_missed_the_rollover_still_reaches_the_cloud_over_the_network() {
    let t = tempfile::tempdir().unwrap();
    let site = Site::new(t.path());
    let new = site
        .cloud
        .run(&["ca", "rotate"])
        .ok()
        .stdout
        .trim()
        .to_string();
    // Its first contact after the rollover is over the network: TLS and the response chain
    // to the old CA through the cross-certificate.
    let out = sync_over_network(&site, t.path());
    assert_eq!(out["response"]["cloud_ca_pinned"], new.as_str(), "{out}");
}

/// The product instance ids of a device-sim state file.
fn pis_of(state: &std::path::Path) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(state).unwrap()).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|d| d["pi_id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Five years on the manual clocks, in ten-day steps: devices tick as real ones do, the
/// satellite syncs every 60 days (by file and over the network in turn), and the cloud
/// changes along the way. At the end both ends agree and nothing healthy was ever reported
/// as failing.
#[test]
fn five_years_of_service() {
    const HSEC: &str = "regid.example.hsec";
    const TERM: &str = "regid.example.term";
    let t = tempfile::tempdir().unwrap();
    let site = Site::new(t.path());
    // A term license that ends in the second year.
    let end = {
        let now = site
            .cloud
            .run(&["clock", "show"])
            .ok()
            .stdout
            .trim()
            .to_string();
        let year: i32 = now[..4].parse().unwrap();
        format!("{}-01-01", year + 2)
    };
    site.cloud
        .add_license("Lab", TERM, "Term", "4", &["--kind", "term", "--end", &end]);
    site.round_trip("start");

    let fleet = site.dir.join("fleet.json");
    let silent = site.dir.join("silent.json");
    let guarded = site.dir.join("guarded.json");
    let token = site.token("Lab", &[]);
    let dna = format!("{DNA}:2");
    for (state, n, ents) in [
        (&fleet, "3", dna.as_str()),
        (&silent, "1", "regid.example.dna-advantage:1"),
    ] {
        let out = site.sim(&[
            "run",
            "--token",
            &token,
            "--devices",
            n,
            "--state",
            p(state),
            "--entitlement",
            ents,
        ]);
        assert_eq!(out["authorized"], n.parse::<i64>().unwrap(), "{out}");
    }
    let xtoken = site.token("Ops", &["--export-controlled"]);
    let out = site.sim(&[
        "run",
        "--token",
        &xtoken,
        "--devices",
        "1",
        "--state",
        p(&guarded),
        "--no-authorize",
    ]);
    assert_eq!(out["registered"], 1, "{out}");
    let healthy: Vec<String> = pis_of(&fleet).into_iter().chain(pis_of(&guarded)).collect();
    let quiet = pis_of(&silent).remove(0);

    let mut syncs = 0;
    let sync = |n: i32| {
        if n % 2 == 0 {
            let out = site.round_trip(&format!("sync-{n}"));
            assert_eq!(out["status"], "applied", "{out}");
        } else {
            // The cloud's server as it is now (after a CA rollover, under its new CA).
            let logs = t.path().join(format!("cloud-{n}"));
            std::fs::create_dir_all(&logs).unwrap();
            let out = sync_over_network(&site, &logs);
            assert_eq!(out["response"]["status"], "applied", "{out}");
        }
    };
    let tick = |state: &std::path::Path, ents: &str| {
        let mut args = vec!["tick", "--state", p(state)];
        if !ents.is_empty() {
            args.extend(["--entitlement", ents]);
        }
        let out = site.sim(&args);
        assert_eq!(out["retry_later"], 0, "{out}");
        out
    };
    let mut day = 0;
    while day < 5 * 365 {
        day += 10;
        site.sat(&["clock", "advance", "10d"]).ok();
        site.cloud.run(&["clock", "advance", "10d"]).ok();
        tick(&fleet, &dna);
        let asked = if (500..700).contains(&day) {
            format!("{HSEC}:1")
        } else {
            String::new()
        };
        tick(&guarded, &asked);
        site.sat(&["alert", "check"]).ok();
        match day {
            100 => site
                .cloud
                .add_license("Lab", "regid.example.new", "New", "10", &[]),
            200 => {
                site.cloud
                    .run(&[
                        "license", "transfer", "--from", "Lab", "--to", "Ops", "--tag", DNA,
                        "--count", "5",
                    ])
                    .ok();
            }
            300 => {
                site.cloud
                    .add_license("Spare", "regid.example.spare", "Spare", "3", &[]);
                site.cloud
                    .run(&["satellite", "add-va", "site", "Spare"])
                    .ok();
            }
            400 => {
                site.cloud.run(&["ca", "rotate"]).ok();
            }
            500 => {
                let out = site.sim(&[
                    "export",
                    "request",
                    "--state",
                    p(&guarded),
                    "--tag",
                    HSEC,
                    "--count",
                    "1",
                ]);
                assert_eq!(out["export_queued"], 1, "{out}");
            }
            700 => {
                let out = site.sim(&["export", "return", "--state", p(&guarded), "--tag", HSEC]);
                assert_eq!(out["export_queued"], 1, "{out}");
            }
            _ => {}
        }
        if day % 60 == 0 {
            syncs += 1;
            sync(syncs);
        }
    }
    syncs += 1;
    sync(syncs);

    // Still registered, the log intact, certificates renewed twice, the CA rolled over.
    let st = status(&site);
    assert_eq!(st["state"], "registered", "{st}");
    site.sat(&["event", "verify"]).ok();
    let events = site.sat(&["event", "list", "--json"]).ok().json();
    let events = events.as_array().unwrap();
    let count = |kind: &str| events.iter().filter(|e| e["type"] == kind).count();
    assert!(
        count("satellite_certificate_renewed") >= 2,
        "renewals: {}",
        count("satellite_certificate_renewed")
    );
    assert_eq!(count("cloud_ca_rolled_over"), 1);
    assert_eq!(count("licenses_transferred"), 1);
    assert_eq!(count("virtual_account_added"), 1);
    assert!(count("licenses_expired") >= 1, "the term license ended");
    assert!(count("export_authorization_success") >= 1);
    assert!(count("export_authorization_released") >= 1);
    // The silent device went after a year; no healthy device was ever said to be failing.
    let removed: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "pi_removed_inactive")
        .map(|e| e["product_instance"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(removed, vec![quiet.as_str()]);
    let failing: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "pi_failed_to_connect" || e["type"] == "pi_failed_to_renew")
        .map(|e| e["product_instance"].as_str().unwrap_or_default())
        .collect();
    assert!(
        failing.iter().all(|pi| !healthy.iter().any(|h| h == pi)),
        "a healthy device was reported failing: {failing:?}"
    );

    // Pools and usage agree exactly at both ends.
    let ours = site.sat(&["license", "list", "--json"]).ok().json();
    let cloud = site.cloud.run(&["usage", "--json"]).ok().json();
    for row in cloud.as_array().unwrap() {
        let mine = ours
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["virtual_account"] == row["va"] && r["tag"] == row["tag"])
            .unwrap_or_else(|| panic!("{row} is not at the satellite: {ours}"));
        assert_eq!(
            (&mine["purchased"], &mine["in_use"]),
            (&row["purchased"], &row["in_use"]),
            "{} {}",
            row["va"],
            row["tag"]
        );
    }
}

#[test]
fn registered_again_the_satellite_serves_exactly_the_new_authorizations_virtual_accounts() {
    let t = tempfile::tempdir().unwrap();
    let site = Site::new(t.path());
    let ops = site.token("Ops", &[]);
    let mut d = Dev::register(&site, &ops, "SN-OPS");
    d.authorize(&site, "regid.example.hsec", 0);
    site.cloud.run(&["satellite", "remove", "site"]).ok();
    site.round_trip("removed");
    assert_eq!(status(&site)["state"], "removed");

    // Registered again with Lab only.
    site.register_again(&["Lab"]);
    let st = status(&site);
    let vas: Vec<&str> = st["virtual_accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vas, vec!["Lab"], "{st}");
    let licenses = site.sat(&["license", "list", "--json"]).ok().json();
    assert!(
        licenses
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["virtual_account"] == "Lab"),
        "{licenses}"
    );
    // A token of Ops stops working, with a clear refusal; it cannot be made any more.
    let before = dump_sqlite(&sat_db(&site.dir));
    let key = sync_format::pki::new_p256_key().unwrap();
    let r = site
        .sat
        .https
        .post_json(
            "/api/v1/devices/register",
            &register_body(&ops, "P", "SN-NEW", &key),
        )
        .unwrap();
    assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["error"]["code"], "token_va_not_served");
    assert_eq!(
        dump_sqlite(&sat_db(&site.dir)),
        before,
        "refused: nothing stored"
    );
    let out = site.sat(&["token", "create", "--va", "Ops", "--days", "3"]);
    assert_eq!(out.code, 2, "{out:?}");
    // Its device is shown as belonging to a virtual account the satellite no longer serves.
    let devices = site.sat(&["device", "list", "--json"]).ok().json();
    let mine = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["pi_id"] == d.pi_id.as_str())
        .unwrap_or_else(|| panic!("{devices}"));
    assert_eq!(mine["virtual_account"], "Ops (no longer served)", "{mine}");
}

#[test]
fn a_renewed_certificate_for_another_key_is_refused_and_changes_nothing() {
    use openssl::pkey::PKey;
    use openssl::x509::X509;
    use sync_format::pki::{self, CertRole, CertSpec, SignerRole};
    let t = tempfile::tempdir().unwrap();
    let site = Site::new(t.path());
    site.advance_synced(480);
    site.sat(&["clock", "advance", "10d"]).ok();
    site.cloud.run(&["clock", "advance", "10d"]).ok();
    let (req, resp) = site.files("renewal");
    let out = site
        .sat(&["sync", "export", "--out", p(&req), "--json"])
        .ok()
        .json();
    assert_eq!(out["renewal_requested"], true, "{out}");
    site.cloud.process(&req, &resp);

    // The cloud's own keys (the test holds its data directory) make a response whose new
    // certificate certifies another key than the one the satellite asked for.
    let cloud_dir = t.path().join("cloud");
    let read = |name: &str| std::fs::read(cloud_dir.join(name)).unwrap();
    let ca = X509::from_pem(&read("ca.crt.pem")).unwrap();
    let ca_key = PKey::private_key_from_pem(&read("ca.key.pem")).unwrap();
    let signer_key = PKey::private_key_from_pem(&read("signer.key.pem")).unwrap();
    let signer = X509::from_pem(&read("signer.crt.pem")).unwrap();
    let me = status(&site)["satellite_id"].as_str().unwrap().to_string();
    let stranger = pki::new_p256_key().unwrap();
    let now = satellite::clock::system_now();
    let other = pki::issue(
        &ca,
        &ca_key,
        &stranger,
        &CertSpec {
            common_name: "satellite site",
            organization: "Acme",
            role: CertRole::Bundle(SignerRole::Satellite, &me),
            now,
            days: 730,
        },
    )
    .unwrap();
    let pem = String::from_utf8(other.to_pem().unwrap()).unwrap();
    let forged = resign(
        &std::fs::read(&resp).unwrap(),
        &signer_key,
        &[signer, ca],
        &|v| {
            v["satellite_certificate_pem"] = serde_json::Value::String(pem.clone());
        },
    );
    let forged_path = site.dir.join("forged.zip");
    std::fs::write(&forged_path, forged).unwrap();

    let before = dump_sqlite(&sat_db(&site.dir));
    let out = site.sat(&["sync", "import", p(&forged_path)]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("certifies another key than this satellite's"),
        "{}",
        out.stderr
    );
    assert_eq!(dump_sqlite(&sat_db(&site.dir)), before, "nothing changed");
    // The genuine response still applies.
    let ok = site
        .sat(&["sync", "import", p(&resp), "--json"])
        .ok()
        .json();
    assert!(ok["certificate_renewed_until"].is_string(), "{ok}");
}
