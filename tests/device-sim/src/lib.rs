//! The device simulator (`device-sim`): many devices registering with a satellite,
//! asking for authorizations, renewing and deregistering, through the real device API over
//! HTTPS; prints a summary with counts, errors by kind, rates and latency percentiles.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use futures_util::stream::{self, StreamExt};
use openssl::ec::EcKey;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::{X509NameBuilder, X509Req, X509};
use serde::{Deserialize, Serialize};

#[derive(Debug, Parser)]
#[command(
    name = "device-sim",
    version,
    about = "Simulates devices of a site against a satellite's device API: registration with a \
             token, authorization requests, identity renewal and deregistration, and prints a \
             summary (counts, errors by kind, rates per second, latency percentiles)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register N new devices with a token, then ask for their authorizations.
    Run(RunArgs),
    /// Ask again for the authorizations of the devices saved in a state file.
    Authorize(SavedArgs),
    /// Renew the identity certificates of the saved devices.
    Renew(SavedArgs),
    /// Deregister the saved devices (their licenses are released; the returns of
    /// restricted ones are queued for the next sync).
    Deregister(SavedArgs),
    /// Act, for each saved device, as a real device does at the satellite's current time
    /// (read from its `/healthz`): renew the identity certificate when it is six months old,
    /// ask for the authorization again when the last one is 30 days old, and retry a call
    /// that failed a day later. Reports what each did; devices with nothing due stay quiet.
    Tick(SavedArgs),
    /// Export-controlled licenses of the saved devices (registered with an
    /// export-controlled token): `request` a restricted license, or `return` it. The
    /// satellite queues it for its next sync and answers "pending"; the cloud's answer comes
    /// with a later `authorize`.
    Export(ExportArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportAction {
    Request,
    Return,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// request or return.
    #[arg(value_enum)]
    pub action: ExportAction,
    #[command(flatten)]
    pub saved: SavedArgs,
    /// The restricted entitlement tag.
    #[arg(long)]
    pub tag: String,
    /// How many (for a request).
    #[arg(long, default_value_t = 1)]
    pub count: i64,
}

#[derive(Debug, Args)]
pub struct Common {
    /// The satellite's base URL, e.g. https://localhost:8443.
    #[arg(long)]
    pub satellite: String,
    /// CA certificate (PEM) to verify the satellite with (default: the system's roots).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Entitlements each device uses, as TAG:COUNT (repeatable).
    #[arg(long = "entitlement", value_name = "TAG:COUNT")]
    pub entitlements: Vec<String>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: Common,
    /// The registration token (it may begin with "-").
    #[arg(long, allow_hyphen_values = true)]
    pub token: String,
    /// How many devices.
    #[arg(long)]
    pub devices: usize,
    /// Product id of the devices.
    #[arg(long, default_value = "SIM-ROUTER")]
    pub pid: String,
    /// Serial number prefix (default: random, so runs do not collide).
    #[arg(long)]
    pub sn_prefix: Option<String>,
    /// Save the devices (ids, keys, counters) here for later `authorize`, `renew`, `deregister`.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Skip the authorization phase.
    #[arg(long)]
    pub no_authorize: bool,
    /// Deregister every device at the end.
    #[arg(long)]
    pub deregister: bool,
}

#[derive(Debug, Args)]
pub struct SavedArgs {
    #[command(flatten)]
    pub common: Common,
    /// The state file written by `run --state`.
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
}

/// One simulated device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Device {
    pub pid: String,
    pub sn: String,
    pub key_pem: String,
    pub pi_id: Option<String>,
    pub counter: i64,
    pub ca_pem: Option<String>,
    /// Satellite time of the last authorization `tick` got (Unix seconds).
    #[serde(default)]
    pub authorized_at: Option<i64>,
    /// Satellite time of the identity certificate `tick` last got or first saw.
    #[serde(default)]
    pub identity_at: Option<i64>,
    /// After a failed call: not before this satellite time.
    #[serde(default)]
    pub retry_at: Option<i64>,
    /// The key, parsed once.
    #[serde(skip)]
    pub ec: Option<EcKey<Private>>,
}

/// The outcome of one phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Phase {
    pub requests: usize,
    pub ok: usize,
    pub errors: BTreeMap<String, usize>,
    pub seconds: f64,
    pub per_second: f64,
    pub latency_ms: Latency,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// The summary printed at the end.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub devices: usize,
    pub registered: usize,
    pub authorized: usize,
    pub out_of_compliance: usize,
    pub not_found: usize,
    /// Devices told to ask for a restricted entitlement through `export request`.
    pub export_restricted: usize,
    pub renewed: usize,
    pub deregistered: usize,
    /// Export requests or returns the satellite queued (answered "pending").
    pub export_queued: usize,
    /// Restricted licenses in the verified authorization answers, by status (PENDING,
    /// GRANTED, DENIED, RETURN_PENDING).
    pub restricted: BTreeMap<String, usize>,
    /// The satellite's answers to export requests or returns, per device.
    pub export_answers: Vec<serde_json::Value>,
    /// `tick`: the satellite's time it acted at, and the devices with nothing due.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tick_at: Option<String>,
    pub idle: usize,
    /// `tick`: devices whose call failed, to be retried later.
    pub retry_later: usize,
    pub phases: BTreeMap<String, Phase>,
}

fn parse_entitlements(list: &[String]) -> Result<Vec<(String, i64)>, String> {
    list.iter()
        .map(|e| {
            let (tag, count) = e
                .rsplit_once(':')
                .ok_or_else(|| format!("--entitlement {e:?}: expected TAG:COUNT"))?;
            let count = count
                .parse::<i64>()
                .map_err(|_| format!("--entitlement {e:?}: COUNT must be a number"))?;
            Ok((tag.to_string(), count))
        })
        .collect()
}

fn new_key() -> PKey<Private> {
    sync_format::pki::new_p256_key().expect("key generation")
}

fn csr(key: &PKey<Private>, cn: &str) -> String {
    let mut b = X509Req::builder().expect("csr");
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", cn).expect("cn");
    b.set_subject_name(&name.build()).expect("subject");
    b.set_pubkey(key).expect("pubkey");
    b.sign(key, MessageDigest::sha256()).expect("sign");
    String::from_utf8(b.build().to_pem().expect("pem")).expect("utf8")
}

fn sign(key: &EcKey<Private>, body: &[u8]) -> String {
    openssl::base64::encode_block(&satellite::crypto::sign_p256(key, body).expect("sign"))
}

/// Makes `n` devices with keys, in parallel over the machine's cores.
fn make_devices(n: usize, pid: &str, prefix: &str) -> Vec<Device> {
    let threads = std::thread::available_parallelism().map_or(2, |t| t.get());
    let chunk = n.div_ceil(threads).max(1);
    let mut out = Vec::with_capacity(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .step_by(chunk)
            .map(|start| {
                s.spawn(move || {
                    (start..(start + chunk).min(n))
                        .map(|i| {
                            let key = new_key();
                            Device {
                                pid: pid.to_string(),
                                sn: format!("{prefix}{i:08}"),
                                key_pem: String::from_utf8(
                                    key.private_key_to_pem_pkcs8().expect("pem"),
                                )
                                .expect("utf8"),
                                pi_id: None,
                                counter: 0,
                                ca_pem: None,
                                authorized_at: None,
                                identity_at: None,
                                retry_at: None,
                                ec: Some(key.ec_key().expect("ec key")),
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            out.extend(h.join().expect("key thread"));
        }
    });
    out
}

fn client(common: &Common) -> Result<awc::Client, String> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
    match &common.ca {
        Some(ca) => b
            .set_ca_file(ca)
            .map_err(|e| format!("--ca {}: {e}", ca.display()))?,
        None => b.set_default_verify_paths().map_err(|e| e.to_string())?,
    }
    b.set_verify(SslVerifyMode::PEER);
    let connector = awc::Connector::new()
        .openssl(b.build())
        .limit(common.concurrency.max(1))
        .timeout(Duration::from_secs(30));
    Ok(awc::Client::builder()
        .connector(connector)
        .timeout(Duration::from_secs(120))
        .finish())
}

/// What one request gave: Ok(body) or an error kind.
type Outcome = Result<serde_json::Value, String>;

async fn post(
    client: &awc::Client,
    url: &str,
    body: Vec<u8>,
    signature: Option<String>,
) -> Outcome {
    let mut req = client
        .post(url)
        .insert_header(("content-type", "application/json"));
    if let Some(sig) = signature {
        req = req.insert_header(("X-Satellite-Signature", sig));
    }
    let mut resp = req
        .send_body(body)
        .await
        .map_err(|e| format!("transport: {e}"))?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let bytes = resp
        .body()
        .limit(4 * 1024 * 1024)
        .await
        .map_err(|e| format!("transport: {e}"))?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    if status == 200 || status == 202 {
        Ok(value)
    } else {
        let code = value
            .pointer("/error/code")
            .and_then(|c| c.as_str())
            .unwrap_or("error");
        match retry_after {
            Some(n) => Err(format!("{status} {code} retry-after={n}")),
            None => Err(format!("{status} {code}")),
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs `work` for every device with `concurrency` in flight; records the phase.
async fn phase<F, Fut>(devices: &mut [Device], concurrency: usize, work: F) -> (Phase, Vec<Outcome>)
where
    F: Fn(usize, Device) -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    let started = Instant::now();
    let work = Rc::new(work);
    let jobs = devices.iter().cloned().enumerate().map(|(i, d)| {
        let work = work.clone();
        async move {
            let t = Instant::now();
            let out = work(i, d).await;
            (i, out, t.elapsed().as_secs_f64() * 1000.0)
        }
    });
    let mut results: Vec<(usize, Outcome, f64)> = stream::iter(jobs)
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let seconds = started.elapsed().as_secs_f64();
    results.sort_by_key(|r| r.0);
    let mut lat: Vec<f64> = results.iter().map(|r| r.2).collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let mut p = Phase {
        requests: results.len(),
        seconds,
        latency_ms: Latency {
            p50: percentile(&lat, 0.50),
            p90: percentile(&lat, 0.90),
            p99: percentile(&lat, 0.99),
            max: lat.last().copied().unwrap_or(0.0),
        },
        ..Phase::default()
    };
    for r in &results {
        match &r.1 {
            Ok(_) => p.ok += 1,
            Err(kind) => *p.errors.entry(kind.clone()).or_default() += 1,
        }
    }
    p.per_second = if seconds > 0.0 {
        p.ok as f64 / seconds
    } else {
        0.0
    };
    (p, results.into_iter().map(|r| r.1).collect())
}

fn key_of(d: &Device) -> EcKey<Private> {
    match &d.ec {
        Some(k) => k.clone(),
        None => PKey::private_key_from_pem(d.key_pem.as_bytes())
            .and_then(|k| k.ec_key())
            .expect("device key"),
    }
}

fn pkey_of(d: &Device) -> PKey<Private> {
    PKey::from_ec_key(key_of(d)).expect("device key")
}

async fn register_all(
    client: &awc::Client,
    base: &str,
    token: &str,
    devices: &mut [Device],
    concurrency: usize,
    summary: &mut Summary,
) {
    let url = format!("{base}/api/v1/devices/register");
    // The requests (with their CSRs) are made before the clock starts, like the keys: a real
    // device makes its CSR on its own hardware, not on the cores this simulator shares with
    // the satellite it measures.
    let bodies: Vec<Vec<u8>> = devices
        .iter()
        .map(|d| {
            serde_json::json!({
                "token": token,
                "udi": { "pid": d.pid, "sn": d.sn },
                "csr_pem": csr(&pkey_of(d), &format!("{}:{}", d.pid, d.sn)),
            })
            .to_string()
            .into_bytes()
        })
        .collect();
    let (p, outcomes) = phase(devices, concurrency, |i, _| {
        let url = url.clone();
        let body = bodies[i].clone();
        async move { post(client, &url, body, None).await }
    })
    .await;
    for (d, o) in devices.iter_mut().zip(outcomes) {
        if let Ok(v) = o {
            d.pi_id = v["pi_id"].as_str().map(str::to_string);
            d.ca_pem = v["ca_certificate_pem"].as_str().map(str::to_string);
            summary.registered += 1;
        }
    }
    summary.phases.insert("register".into(), p);
}

/// The public key of a device CA, read once per PEM (as a device reads its CA once, not
/// for every answer).
fn ca_key(pem: &str) -> Result<PKey<openssl::pkey::Public>, String> {
    type Keys = std::sync::Mutex<std::collections::HashMap<String, PKey<openssl::pkey::Public>>>;
    static KEYS: std::sync::OnceLock<Keys> = std::sync::OnceLock::new();
    let keys = KEYS.get_or_init(Default::default);
    if let Some(k) = keys.lock().ok().and_then(|m| m.get(pem).cloned()) {
        return Ok(k);
    }
    let key = X509::from_pem(pem.as_bytes())
        .and_then(|ca| ca.public_key())
        .map_err(|_| "no_ca".to_string())?;
    if let Ok(mut m) = keys.lock() {
        m.insert(pem.to_string(), key.clone());
    }
    Ok(key)
}

/// Checks a signed authorization against the device CA and the nonce sent; returns the
/// statuses of its entitlements and of its restricted licenses.
fn verify_answer(
    v: &serde_json::Value,
    ca_pem: Option<&str>,
    nonce: &str,
) -> Result<(Vec<String>, Vec<String>), String> {
    let payload = openssl::base64::decode_block(v["payload"].as_str().unwrap_or_default())
        .map_err(|_| "bad_payload".to_string())?;
    let sig = openssl::base64::decode_block(v["signature"].as_str().unwrap_or_default())
        .map_err(|_| "bad_signature".to_string())?;
    let key = ca_key(ca_pem.unwrap_or_default())?;
    let mut ver =
        openssl::sign::Verifier::new(MessageDigest::sha256(), &key).map_err(|e| e.to_string())?;
    ver.update(&payload).map_err(|e| e.to_string())?;
    if !ver.verify(&sig).unwrap_or(false) {
        return Err("bad_signature".into());
    }
    let a: serde_json::Value =
        serde_json::from_slice(&payload).map_err(|_| "bad_payload".to_string())?;
    if a["nonce"] != nonce {
        return Err("wrong_nonce".into());
    }
    let statuses = |key: &str| -> Vec<String> {
        a[key]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|e| e["status"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok((statuses("entitlements"), statuses("restricted")))
}

/// A signed request of a saved device: bumps its counter.
fn signed_body(d: &mut Device, mut body: serde_json::Value) -> (Vec<u8>, String) {
    d.counter += 1;
    body["pi_id"] = serde_json::Value::String(d.pi_id.clone().unwrap_or_default());
    body["counter"] = serde_json::Value::from(d.counter);
    let bytes = body.to_string().into_bytes();
    let sig = sign(&key_of(d), &bytes);
    (bytes, sig)
}

async fn authorize_all(
    client: &awc::Client,
    base: &str,
    devices: &mut [Device],
    ents: &[(String, i64)],
    concurrency: usize,
    summary: &mut Summary,
) -> Vec<Result<(), Option<i64>>> {
    let url = format!("{base}/api/v1/devices/authorize");
    let registered: Vec<usize> = (0..devices.len())
        .filter(|&i| devices[i].pi_id.is_some())
        .collect();
    let mut bodies = Vec::new();
    for &i in &registered {
        let mut nonce = [0u8; 12];
        openssl::rand::rand_bytes(&mut nonce).expect("rand");
        let nonce = hex::encode(nonce);
        let entitlements: Vec<_> = ents
            .iter()
            .map(|(t, c)| serde_json::json!({"tag": t, "count": c}))
            .collect();
        let (b, s) = signed_body(
            &mut devices[i],
            serde_json::json!({"nonce": nonce, "entitlements": entitlements}),
        );
        bodies.push((b, s, nonce));
    }
    let mut subset: Vec<Device> = registered.iter().map(|&i| devices[i].clone()).collect();
    let bodies = Rc::new(bodies);
    let (p, outcomes) = phase(&mut subset, concurrency, |k, d| {
        let url = url.clone();
        let bodies = bodies.clone();
        async move {
            let (b, s, nonce) = &bodies[k];
            let v = post(client, &url, b.clone(), Some(s.clone())).await?;
            let (statuses, restricted) = verify_answer(&v, d.ca_pem.as_deref(), nonce)?;
            Ok(serde_json::json!({"entitlements": statuses, "restricted": restricted}))
        }
    })
    .await;
    for o in outcomes.iter().flatten() {
        let list = |key: &str| -> Vec<String> {
            o[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        for r in list("restricted") {
            *summary.restricted.entry(r).or_default() += 1;
        }
        let statuses = list("entitlements");
        let statuses: Vec<&str> = statuses.iter().map(String::as_str).collect();
        if statuses.contains(&"NOT_FOUND") {
            summary.not_found += 1;
        } else if statuses.contains(&"EXPORT_RESTRICTED") {
            summary.export_restricted += 1;
        } else if statuses.contains(&"OUT_OF_COMPLIANCE") {
            summary.out_of_compliance += 1;
        } else {
            summary.authorized += 1;
        }
    }
    summary.phases.insert("authorize".into(), p);
    outcomes.iter().map(answered).collect()
}

/// Whether a call was answered; if not, the `Retry-After` the satellite asked for.
fn answered(o: &Outcome) -> Result<(), Option<i64>> {
    match o {
        Ok(_) => Ok(()),
        Err(e) => Err(e
            .split_once("retry-after=")
            .and_then(|(_, n)| n.trim().parse().ok())),
    }
}

/// Posts one pre-signed body per device to `url`, `concurrency` at a time.
async fn post_signed(
    client: &awc::Client,
    url: &str,
    devices: &mut [Device],
    bodies: Vec<(Vec<u8>, String)>,
    concurrency: usize,
) -> (Phase, Vec<Outcome>) {
    let bodies = Rc::new(bodies);
    phase(devices, concurrency, |k, _| {
        let bodies = bodies.clone();
        async move { post(client, url, bodies[k].0.clone(), Some(bodies[k].1.clone())).await }
    })
    .await
}

async fn renew_all(
    client: &awc::Client,
    base: &str,
    devices: &mut [Device],
    concurrency: usize,
    summary: &mut Summary,
) -> Vec<Result<(), Option<i64>>> {
    let bodies = devices
        .iter_mut()
        .map(|d| {
            let c = csr(&pkey_of(d), &format!("{}:{}", d.pid, d.sn));
            signed_body(d, serde_json::json!({ "csr_pem": c }))
        })
        .collect();
    let (p, outcomes) = post_signed(
        client,
        &format!("{base}/api/v1/devices/renew"),
        devices,
        bodies,
        concurrency,
    )
    .await;
    summary.renewed = p.ok;
    summary.phases.insert("renew".into(), p);
    outcomes.iter().map(answered).collect()
}

async fn deregister_all(
    client: &awc::Client,
    base: &str,
    devices: &mut [Device],
    concurrency: usize,
    summary: &mut Summary,
) {
    let bodies = devices
        .iter_mut()
        .map(|d| signed_body(d, serde_json::json!({})))
        .collect();
    let (p, _) = post_signed(
        client,
        &format!("{base}/api/v1/devices/deregister"),
        devices,
        bodies,
        concurrency,
    )
    .await;
    summary.deregistered = p.ok;
    summary.phases.insert("deregister".into(), p);
}

/// What an `export` run asks: the action, the tag and the count.
#[derive(Debug, Clone)]
struct ExportAsk {
    action: ExportAction,
    tag: String,
    count: i64,
}

async fn export_all(
    client: &awc::Client,
    base: &str,
    devices: &mut [Device],
    ask: &ExportAsk,
    concurrency: usize,
    summary: &mut Summary,
) {
    let (path, body) = match ask.action {
        ExportAction::Request => (
            "request",
            serde_json::json!({ "tag": ask.tag, "count": ask.count }),
        ),
        ExportAction::Return => ("return", serde_json::json!({ "tag": ask.tag })),
    };
    let bodies = devices
        .iter_mut()
        .map(|d| signed_body(d, body.clone()))
        .collect();
    let (p, outcomes) = post_signed(
        client,
        &format!("{base}/api/v1/devices/export/{path}"),
        devices,
        bodies,
        concurrency,
    )
    .await;
    for (d, o) in devices.iter().zip(outcomes) {
        match o {
            Ok(v) => {
                summary.export_queued += 1;
                summary.export_answers.push(v);
            }
            Err(kind) => summary
                .export_answers
                .push(serde_json::json!({ "pi_id": d.pi_id, "error": kind })),
        }
    }
    summary.phases.insert(format!("export-{path}"), p);
}

fn save(path: &Path, devices: &[Device]) -> Result<(), String> {
    let text = serde_json::to_vec(devices).map_err(|e| e.to_string())?;
    satellite::datadir::write_private(path, &text).map_err(|e| e.to_string())
}

fn load(path: &Path) -> Result<Vec<Device>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn print(summary: &Summary, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(summary).unwrap_or_default()
        );
        return;
    }
    println!(
        "devices {}: registered {}, authorized {}, out of compliance {}, not found {}, renewed {}, deregistered {}",
        summary.devices, summary.registered, summary.authorized, summary.out_of_compliance, summary.not_found, summary.renewed, summary.deregistered
    );
    if !summary.restricted.is_empty() {
        let parts: Vec<String> = summary
            .restricted
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        println!("restricted licenses: {}", parts.join(", "));
    }
    for a in &summary.export_answers {
        match a.get("error") {
            Some(e) => println!("  export {}: error {}", a["pi_id"], e),
            None => println!(
                "  export {} {} of {} x {}: {}",
                a["direction"].as_str().unwrap_or(""),
                a["request_id"].as_str().unwrap_or(""),
                a["count"],
                a["tag"].as_str().unwrap_or(""),
                a["status"].as_str().unwrap_or("")
            ),
        }
    }
    for (name, p) in &summary.phases {
        println!(
            "  {name:<10} {:>7} ok of {:>7} in {:>7.2} s = {:>8.0}/s   latency ms p50 {:.1} p90 {:.1} p99 {:.1} max {:.1}",
            p.ok, p.requests, p.seconds, p.per_second, p.latency_ms.p50, p.latency_ms.p90, p.latency_ms.p99, p.latency_ms.max
        );
        for (kind, n) in &p.errors {
            println!("             error {kind}: {n}");
        }
    }
}

/// Runs a command line; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    match run_inner(cli) {
        Ok(summary_had_errors) => i32::from(summary_had_errors),
        Err(e) => {
            eprintln!("device-sim: error: {e}");
            2
        }
    }
}

fn run_inner(cli: Cli) -> Result<bool, String> {
    let system = actix_web::rt::System::new();
    let (summary, json) = match cli.command {
        Command::Run(a) => {
            let ents = parse_entitlements(&a.common.entitlements)?;
            let prefix = a.sn_prefix.clone().unwrap_or_else(|| {
                let mut r = [0u8; 3];
                let _ = openssl::rand::rand_bytes(&mut r);
                format!("S{}", hex::encode(r).to_uppercase())
            });
            let mut devices = make_devices(a.devices, &a.pid, &prefix);
            let client = client(&a.common)?;
            let base = a.common.satellite.trim_end_matches('/').to_string();
            let mut summary = Summary {
                devices: a.devices,
                ..Summary::default()
            };
            system.block_on(async {
                register_all(
                    &client,
                    &base,
                    &a.token,
                    &mut devices,
                    a.common.concurrency,
                    &mut summary,
                )
                .await;
                if !a.no_authorize {
                    authorize_all(
                        &client,
                        &base,
                        &mut devices,
                        &ents,
                        a.common.concurrency,
                        &mut summary,
                    )
                    .await;
                }
                if a.deregister {
                    let mut reg: Vec<Device> = devices
                        .iter()
                        .filter(|d| d.pi_id.is_some())
                        .cloned()
                        .collect();
                    deregister_all(&client, &base, &mut reg, a.common.concurrency, &mut summary)
                        .await;
                }
            });
            if let Some(path) = &a.state {
                save(path, &devices)?;
            }
            (summary, a.common.json)
        }
        Command::Authorize(a) => saved(&system, a, Op::Authorize)?,
        Command::Renew(a) => saved(&system, a, Op::Renew)?,
        Command::Tick(a) => tick(&system, a)?,
        Command::Deregister(a) => saved(&system, a, Op::Deregister)?,
        Command::Export(a) => {
            if a.action == ExportAction::Request && !(1..=1_000_000).contains(&a.count) {
                return Err(format!("--count must be 1 to 1000000, not {}", a.count));
            }
            let ask = ExportAsk {
                action: a.action,
                tag: a.tag,
                count: a.count,
            };
            saved(&system, a.saved, Op::Export(ask))?
        }
    };
    print(&summary, json);
    Ok(summary.phases.values().any(|p| !p.errors.is_empty()))
}

#[derive(Debug, Clone)]
enum Op {
    Authorize,
    Renew,
    Deregister,
    Export(ExportAsk),
}

/// A device asks for its authorization again after this long (seed 002: every 30 days).
pub const AUTHORIZE_EVERY: i64 = 30 * 86_400;
/// A device renews its identity certificate after this long (seed 003: every six months).
pub const RENEW_IDENTITY_EVERY: i64 = 182 * 86_400;
/// A failed call is tried again after this long, unless the satellite said how long
/// (`Retry-After`).
pub const RETRY_AFTER: i64 = 86_400;

/// The satellite's time, from its `/healthz` (its manual clock in tests).
async fn satellite_time(client: &awc::Client, base: &str) -> Result<i64, String> {
    let mut resp = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .map_err(|e| format!("transport: {e}"))?;
    let v: serde_json::Value = resp
        .json()
        .await
        .map_err(|e| format!("the satellite's /healthz is not JSON: {e}"))?;
    let t = v["time"]
        .as_str()
        .ok_or_else(|| "the satellite's /healthz does not say its time".to_string())?;
    satellite::clock::parse_time(t).map_err(|e| e.to_string())
}

/// After a call made for the devices `picked` of `all` (their copies `some`, answered `ok`):
/// counters kept, `done` on each answered device, the others noted in `failed` with the
/// wait the satellite asked for.
fn settle(
    all: &mut [Device],
    picked: &[usize],
    some: &[Device],
    ok: &[Result<(), Option<i64>>],
    failed: &mut std::collections::HashMap<usize, Option<i64>>,
    done: impl Fn(&mut Device),
) {
    for (k, &i) in picked.iter().enumerate() {
        all[i].counter = some[k].counter;
        match ok[k] {
            Ok(()) => done(&mut all[i]),
            Err(wait) => {
                failed.insert(i, wait);
            }
        }
    }
}

/// `tick`: what each saved device would do now, done.
fn tick(system: &actix_web::rt::SystemRunner, a: SavedArgs) -> Result<(Summary, bool), String> {
    let ents = parse_entitlements(&a.common.entitlements)?;
    let mut all = load(&a.state)?;
    for d in &mut all {
        d.ec = Some(key_of(d));
    }
    let client = client(&a.common)?;
    let base = a.common.satellite.trim_end_matches('/').to_string();
    let registered = all.iter().filter(|d| d.pi_id.is_some()).count();
    let mut summary = Summary {
        devices: all.len(),
        registered,
        ..Summary::default()
    };
    system.block_on(async {
        let now = satellite_time(&client, &base).await?;
        summary.tick_at = Some(satellite::clock::format(now));
        let waiting = |d: &Device| d.pi_id.is_none() || d.retry_at.is_some_and(|t| t > now);
        // A device first seen here got its identity at about this time.
        for d in all.iter_mut().filter(|d| d.identity_at.is_none()) {
            d.identity_at = Some(now);
        }
        let renew: Vec<usize> = (0..all.len())
            .filter(|&i| {
                !waiting(&all[i])
                    && all[i]
                        .identity_at
                        .is_some_and(|t| now - t >= RENEW_IDENTITY_EVERY)
            })
            .collect();
        // Devices whose call failed, with the wait the satellite asked for (if it did).
        let mut failed: std::collections::HashMap<usize, Option<i64>> = Default::default();
        if !renew.is_empty() {
            let mut some: Vec<Device> = renew.iter().map(|&i| all[i].clone()).collect();
            let ok = renew_all(
                &client,
                &base,
                &mut some,
                a.common.concurrency,
                &mut summary,
            )
            .await;
            settle(&mut all, &renew, &some, &ok, &mut failed, |d| {
                d.identity_at = Some(now)
            });
        }
        let authorize: Vec<usize> = (0..all.len())
            .filter(|&i| {
                !waiting(&all[i])
                    && !failed.contains_key(&i)
                    && all[i]
                        .authorized_at
                        .is_none_or(|t| now - t >= AUTHORIZE_EVERY)
            })
            .collect();
        if !authorize.is_empty() {
            let mut some: Vec<Device> = authorize.iter().map(|&i| all[i].clone()).collect();
            let ok = authorize_all(
                &client,
                &base,
                &mut some,
                &ents,
                a.common.concurrency,
                &mut summary,
            )
            .await;
            settle(&mut all, &authorize, &some, &ok, &mut failed, |d| {
                d.authorized_at = Some(now)
            });
        }
        for (i, d) in all.iter_mut().enumerate() {
            if let Some(wait) = failed.get(&i) {
                // As long as the satellite asked (Retry-After), else a day.
                d.retry_at = Some(now + wait.unwrap_or(RETRY_AFTER));
            } else if d.retry_at.is_some_and(|t| t <= now) {
                d.retry_at = None;
            }
        }
        summary.retry_later = failed.len();
        summary.idle = (0..all.len())
            .filter(|i| !renew.contains(i) && !authorize.contains(i))
            .count();
        Ok::<(), String>(())
    })?;
    save(&a.state, &all)?;
    Ok((summary, a.common.json))
}

/// Runs one phase for the devices of a state file, and saves their counters back.
fn saved(
    system: &actix_web::rt::SystemRunner,
    a: SavedArgs,
    op: Op,
) -> Result<(Summary, bool), String> {
    let ents = parse_entitlements(&a.common.entitlements)?;
    let mut all = load(&a.state)?;
    for d in &mut all {
        d.ec = Some(key_of(d));
    }
    let client = client(&a.common)?;
    let base = a.common.satellite.trim_end_matches('/').to_string();
    let mut devices: Vec<Device> = all.iter().filter(|d| d.pi_id.is_some()).cloned().collect();
    let mut summary = Summary {
        devices: devices.len(),
        registered: devices.len(),
        ..Summary::default()
    };
    system.block_on(async {
        match op {
            Op::Authorize => {
                authorize_all(
                    &client,
                    &base,
                    &mut devices,
                    &ents,
                    a.common.concurrency,
                    &mut summary,
                )
                .await;
            }
            Op::Renew => {
                renew_all(
                    &client,
                    &base,
                    &mut devices,
                    a.common.concurrency,
                    &mut summary,
                )
                .await;
            }
            Op::Deregister => {
                deregister_all(
                    &client,
                    &base,
                    &mut devices,
                    a.common.concurrency,
                    &mut summary,
                )
                .await
            }
            Op::Export(ask) => {
                export_all(
                    &client,
                    &base,
                    &mut devices,
                    &ask,
                    a.common.concurrency,
                    &mut summary,
                )
                .await
            }
        }
    });
    // Counters moved on: keep them, so the next run is not taken for a replay.
    for d in &devices {
        if let Some(slot) = all.iter_mut().find(|x| x.pi_id == d.pi_id) {
            slot.counter = d.counter;
        }
    }
    save(&a.state, &all)?;
    Ok((summary, a.common.json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_may_begin_with_a_hyphen() {
        // Tokens are base64url: one in 64 begins with "-".
        let cli = Cli::try_parse_from([
            "device-sim",
            "run",
            "--satellite",
            "https://localhost:8443",
            "--token",
            "-u9KXk7abc",
            "--devices",
            "1",
        ])
        .unwrap();
        let Command::Run(a) = cli.command else {
            panic!("not run")
        };
        assert_eq!(a.token, "-u9KXk7abc");
    }
}
