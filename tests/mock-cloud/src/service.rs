//! What the mock cloud does: seed accounts, virtual accounts and licenses; turn a satellite's
//! registration request into an authorization ("New satellite"), by file or over HTTPS.

use std::io::Cursor;

use diesel::prelude::*;
use openssl::pkey::PKey;
use serde::Serialize;
use sync_format::manifest::{BundleKind, Header, ANY_RECEIVER};
use sync_format::payload::{
    Account, LicenseKind, LicenseLine, RegistrationAuthorization, RegistrationRequest,
    VirtualAccount,
};
use sync_format::pki::{self, CertRole, CertSpec, SignerRole, Trust};
use sync_format::{BundleWriter, ReadOptions};

use super::schema::{accounts, licenses, satellite_vas, satellites, virtual_accounts};
use super::{Cloud, CloudError, Result};
use satellite::clock::{format as fmt_time, DAY};

/// Days between syncs the cloud expects.
pub const SYNC_INTERVAL_DAYS: i64 = 30;
/// How long a satellite's certificate lasts (a sync renews it once a third is left).
pub const SATELLITE_CERT_DAYS: u32 = 730;
/// Demo licenses last this long unless an end is given.
pub const DEMO_DAYS: i64 = 60;

// ---- seeding ---------------------------------------------------------------------------

pub fn account_create(cloud: &Cloud, name: &str, export_controlled: bool) -> Result<()> {
    let name = non_empty("account name", name)?;
    let now = cloud.now()?;
    diesel::insert_into(accounts::table)
        .values((
            accounts::name.eq(name),
            accounts::export_controlled.eq(export_controlled),
            accounts::created_at.eq(now),
        ))
        .execute(&mut cloud.conn()?)
        .map_err(|e| unique(e, format!("the account {name:?} exists already")))?;
    Ok(())
}

pub fn va_create(cloud: &Cloud, account: &str, va: &str, description: &str) -> Result<()> {
    let va = non_empty("virtual account name", va)?;
    let mut c = cloud.conn()?;
    let account_id: i64 = accounts::table
        .select(accounts::id)
        .filter(accounts::name.eq(account))
        .first(&mut c)
        .optional()?
        .ok_or_else(|| CloudError::NotFound(format!("no account {account:?}")))?;
    diesel::insert_into(virtual_accounts::table)
        .values((
            virtual_accounts::account_id.eq(account_id),
            virtual_accounts::name.eq(va),
            virtual_accounts::description.eq(description),
            virtual_accounts::created_at.eq(cloud.now()?),
        ))
        .execute(&mut c)
        .map_err(|e| unique(e, format!("the virtual account {va:?} exists already")))?;
    Ok(())
}

/// A license pool line to add.
#[derive(Debug, Clone)]
pub struct NewLicense {
    pub va: String,
    pub tag: String,
    pub name: String,
    pub description: String,
    pub kind: LicenseKind,
    pub count: i64,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub restricted: bool,
}

/// Adds the license lines of a CSV text (see `mock-cloud license import`) in one
/// transaction; a bad line names its number and adds nothing.
pub fn license_import(cloud: &Cloud, csv: &str) -> Result<usize> {
    const HEADER: &str = "va,tag,name,kind,count,start,end,restricted";
    let mut lines = csv.lines();
    if lines.next().map(str::trim) != Some(HEADER) {
        return Err(CloudError::Invalid(format!(
            "the first line must be the header {HEADER}"
        )));
    }
    let mut parsed = Vec::new();
    for (i, line) in lines.enumerate() {
        let n = i + 2;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: String| CloudError::Invalid(format!("line {n}: {why}"));
        if line.contains('"') {
            return Err(bad("quotes are not supported".into()));
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != 8 {
            return Err(bad(format!("expected 8 fields, found {}", f.len())));
        }
        let time = |s: &str| -> Result<Option<i64>> {
            if s.is_empty() {
                return Ok(None);
            }
            satellite::clock::parse_time(s)
                .map(Some)
                .map_err(|e| bad(e.to_string()))
        };
        parsed.push(NewLicense {
            va: f[0].to_string(),
            tag: f[1].to_string(),
            name: f[2].to_string(),
            description: String::new(),
            kind: LicenseKind::parse(f[3])
                .ok_or_else(|| bad(format!("unknown kind {:?}", f[3])))?,
            count: f[4]
                .parse()
                .map_err(|_| bad(format!("count {:?} is not a number", f[4])))?,
            start: time(f[5])?,
            end: time(f[6])?,
            restricted: match f[7] {
                "true" => true,
                "false" | "" => false,
                other => return Err(bad(format!("restricted {other:?}: true or false"))),
            },
        });
    }
    let now = cloud.now()?;
    let mut c = cloud.conn()?;
    c.immediate_transaction(|c| {
        for l in &parsed {
            insert_license(c, now, l)?;
        }
        Ok(parsed.len())
    })
}

pub fn license_add(cloud: &Cloud, l: &NewLicense) -> Result<()> {
    insert_license(&mut *cloud.conn()?, cloud.now()?, l)
}

fn insert_license(c: &mut SqliteConnection, now: i64, l: &NewLicense) -> Result<()> {
    non_empty("tag", &l.tag)?;
    non_empty("name", &l.name)?;
    let max = satellite::compliance::MAX_QUANTITY;
    if !(0..=max).contains(&l.count) {
        return Err(CloudError::Invalid(format!(
            "--count must be 0 to {max}, got {}",
            l.count
        )));
    }
    let (start, end) = match l.kind {
        LicenseKind::Demo => {
            let start = l.start.unwrap_or(now);
            (Some(start), Some(l.end.unwrap_or(start + DEMO_DAYS * DAY)))
        }
        LicenseKind::Term if l.end.is_none() => {
            return Err(CloudError::Invalid(
                "a term license needs --end DATE".into(),
            ))
        }
        _ => (l.start, l.end),
    };
    if let (Some(s), Some(e)) = (start, end) {
        if e <= s {
            return Err(CloudError::Invalid("--end must be after --start".into()));
        }
    }
    let va_id = va_id(c, &l.va)?;
    diesel::insert_into(licenses::table)
        .values((
            licenses::va_id.eq(va_id),
            licenses::tag.eq(&l.tag),
            licenses::name.eq(&l.name),
            licenses::description.eq(&l.description),
            licenses::kind.eq(l.kind.as_str()),
            licenses::quantity.eq(l.count),
            licenses::start_at.eq(start),
            licenses::end_at.eq(end),
            licenses::restricted.eq(l.restricted),
            licenses::created_at.eq(now),
        ))
        .execute(c)?;
    Ok(())
}

pub(crate) fn non_empty<'a>(what: &str, v: &'a str) -> Result<&'a str> {
    let v = v.trim();
    if v.is_empty() || v.len() > 200 {
        return Err(CloudError::Invalid(format!(
            "{what} must be 1 to 200 characters"
        )));
    }
    Ok(v)
}

fn unique(e: diesel::result::Error, msg: String) -> CloudError {
    match e {
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        ) => CloudError::Conflict(msg),
        other => other.into(),
    }
}

pub(crate) fn va_id(c: &mut SqliteConnection, va: &str) -> Result<i64> {
    virtual_accounts::table
        .select(virtual_accounts::id)
        .filter(virtual_accounts::name.eq(va))
        .first(c)
        .optional()?
        .ok_or_else(|| CloudError::NotFound(format!("no virtual account {va:?}")))
}

/// The pools of the given VAs as bundles carry them: every line not ended by `now`
/// (expired licenses are removed from the VA).
pub fn pools(c: &mut SqliteConnection, va_ids: &[i64], now: i64) -> Result<Vec<VirtualAccount>> {
    let vas: Vec<(i64, String, String)> = virtual_accounts::table
        .select((
            virtual_accounts::id,
            virtual_accounts::name,
            virtual_accounts::description,
        ))
        .filter(virtual_accounts::id.eq_any(va_ids))
        .order(virtual_accounts::name)
        .load(c)?;
    let mut out = Vec::new();
    for (id, name, description) in vas {
        type Line = (
            String,
            String,
            String,
            String,
            i64,
            Option<i64>,
            Option<i64>,
            bool,
        );
        let lines: Vec<Line> = licenses::table
            .select((
                licenses::tag,
                licenses::name,
                licenses::description,
                licenses::kind,
                licenses::quantity,
                licenses::start_at,
                licenses::end_at,
                licenses::restricted,
            ))
            .filter(licenses::va_id.eq(id))
            .filter(licenses::end_at.is_null().or(licenses::end_at.gt(now)))
            .order(licenses::id)
            .load(c)?;
        out.push(VirtualAccount {
            name,
            description,
            licenses: lines
                .into_iter()
                .map(
                    |(tag, name, description, kind, quantity, start, end, restricted)| {
                        LicenseLine {
                            tag,
                            name,
                            description,
                            kind: LicenseKind::parse(&kind).unwrap_or(LicenseKind::Perpetual),
                            quantity,
                            start,
                            end,
                            restricted,
                        }
                    },
                )
                .collect(),
        });
    }
    Ok(out)
}

/// License lines, optionally of one VA, for `mock-cloud license list`.
#[derive(Debug, Serialize)]
pub struct LicenseListing {
    pub va: String,
    pub tag: String,
    pub name: String,
    pub kind: String,
    pub quantity: i64,
    pub restricted: bool,
}

pub fn license_list(cloud: &Cloud, va: Option<&str>) -> Result<Vec<LicenseListing>> {
    let mut c = cloud.conn()?;
    let mut q = licenses::table
        .inner_join(virtual_accounts::table)
        .select((
            virtual_accounts::name,
            licenses::tag,
            licenses::name,
            licenses::kind,
            licenses::quantity,
            licenses::restricted,
        ))
        .order((virtual_accounts::name, licenses::id))
        .into_boxed();
    if let Some(va) = va {
        q = q.filter(virtual_accounts::name.eq(va.to_string()));
    }
    let rows: Vec<(String, String, String, String, i64, bool)> = q.load(&mut c)?;
    Ok(rows
        .into_iter()
        .map(
            |(va, tag, name, kind, quantity, restricted)| LicenseListing {
                va,
                tag,
                name,
                kind,
                quantity,
                restricted,
            },
        )
        .collect())
}

// ---- satellites --------------------------------------------------------------------------

/// A satellite as `mock-cloud satellite list` shows it.
#[derive(Debug, Serialize)]
pub struct SatelliteListing {
    pub name: String,
    pub satellite_id: String,
    pub request_id: String,
    pub state: String,
    pub hostname: String,
    pub version: String,
    pub account: Option<String>,
    pub virtual_accounts: Vec<String>,
    pub created_at: String,
    pub authorized_at: Option<String>,
    pub last_sync_at: Option<String>,
}

pub fn satellite_list(cloud: &Cloud) -> Result<Vec<SatelliteListing>> {
    let mut c = cloud.conn()?;
    type Row = (
        i64,
        String,
        String,
        String,
        String,
        String,
        String,
        Option<i64>,
        i64,
        Option<i64>,
        Option<i64>,
    );
    let rows: Vec<Row> = satellites::table
        .select((
            satellites::id,
            satellites::name,
            satellites::satellite_id,
            satellites::request_id,
            satellites::state,
            satellites::hostname,
            satellites::software_version,
            satellites::account_id,
            satellites::created_at,
            satellites::authorized_at,
            satellites::last_sync_at,
        ))
        .order(satellites::id)
        .load(&mut c)?;
    let mut out = Vec::new();
    for (id, name, sid, rid, state, hostname, version, account_id, created, authorized, synced) in
        rows
    {
        let account = match account_id {
            Some(a) => accounts::table
                .select(accounts::name)
                .find(a)
                .first(&mut c)
                .optional()?,
            None => None,
        };
        let vas: Vec<String> = satellite_vas::table
            .inner_join(virtual_accounts::table)
            .select(virtual_accounts::name)
            .filter(satellite_vas::satellite_row.eq(id))
            .order(virtual_accounts::name)
            .load(&mut c)?;
        out.push(SatelliteListing {
            name,
            satellite_id: sid,
            request_id: rid,
            state,
            hostname,
            version,
            account,
            virtual_accounts: vas,
            created_at: fmt_time(created),
            authorized_at: authorized.map(fmt_time),
            last_sync_at: synced.map(fmt_time),
        });
    }
    Ok(out)
}

/// A verified registration request.
#[derive(Debug, Clone)]
pub struct Request {
    pub request_id: String,
    pub payload: RegistrationRequest,
}

/// Verifies a registration request bundle and checks it is new.
pub fn receive_request(cloud: &Cloud, c: &mut SqliteConnection, bytes: &[u8]) -> Result<Request> {
    let now = cloud.now()?;
    let opts = ReadOptions::new(
        BundleKind::RegistrationRequest,
        Trust::SelfSigned,
        None,
        now,
    );
    let mut b = sync_format::open(Cursor::new(bytes), &opts)?;
    let m = b.manifest().clone();
    if m.receiver != ANY_RECEIVER && m.receiver != cloud.cloud_id {
        return Err(sync_format::Error::WrongReceiver {
            expected: cloud.cloud_id.clone(),
            found: m.receiver,
        }
        .into());
    }
    let payload: RegistrationRequest = b.payload()?;
    if payload.satellite_id != m.sender {
        return Err(CloudError::Invalid(
            "the request's payload names another satellite than its sender".into(),
        ));
    }
    let key = PKey::public_key_from_pem(payload.public_key_pem.as_bytes())
        .map_err(|e| CloudError::Invalid(format!("the request's public key is not valid: {e}")))?;
    if !b.signer().public_key()?.public_eq(&key) || !pki::is_p256(&key) {
        return Err(CloudError::Invalid(
            "the request is not signed by the key it asks to certify".into(),
        ));
    }
    let seen: Option<(String, String, i64)> = satellites::table
        .select((satellites::name, satellites::state, satellites::created_at))
        .filter(satellites::request_id.eq(&m.bundle_id))
        .first(c)
        .optional()?;
    if let Some((name, state, at)) = seen {
        return Err(CloudError::Conflict(format!(
            "registration request {} was already uploaded at {} (satellite {name:?}, {state}); \
             nothing changed. To register again, make a new request on the satellite",
            m.bundle_id,
            fmt_time(at)
        )));
    }
    let active: Option<String> = satellites::table
        .select(satellites::name)
        .filter(satellites::satellite_id.eq(&payload.satellite_id))
        .filter(satellites::state.eq("authorized"))
        .first(c)
        .optional()?;
    if let Some(name) = active {
        return Err(CloudError::Conflict(format!(
            "satellite {} is already registered as {name:?}; it can register again only \
             after it has been removed",
            payload.satellite_id
        )));
    }
    Ok(Request {
        request_id: m.bundle_id,
        payload,
    })
}

/// Inserts a satellite row for `req` in `state`; returns its row id.
fn insert_satellite(
    c: &mut SqliteConnection,
    req: &Request,
    name: &str,
    state: &str,
    now: i64,
) -> Result<i64> {
    let p = &req.payload;
    diesel::insert_into(satellites::table)
        .values((
            satellites::satellite_id.eq(&p.satellite_id),
            satellites::request_id.eq(&req.request_id),
            satellites::name.eq(name),
            satellites::hostname.eq(&p.hostname),
            satellites::software_version.eq(&p.software_version),
            satellites::public_key_pem.eq(&p.public_key_pem),
            satellites::state.eq(state),
            satellites::created_at.eq(now),
        ))
        .execute(c)?;
    Ok(satellites::table
        .select(satellites::id)
        .filter(satellites::request_id.eq(&req.request_id))
        .first(c)?)
}

/// Authorizes satellite row `row` for `vas`: issues its certificate, records the VAs and
/// returns the authorization bundle. Call inside a transaction.
fn authorize_row(
    cloud: &Cloud,
    c: &mut SqliteConnection,
    row: i64,
    name: &str,
    vas: &[String],
) -> Result<Vec<u8>> {
    let now = cloud.now()?;
    if vas.is_empty() {
        return Err(CloudError::Invalid(
            "name at least one virtual account (--va)".into(),
        ));
    }
    let (satellite_id, request_id, public_key_pem): (String, String, String) = satellites::table
        .select((
            satellites::satellite_id,
            satellites::request_id,
            satellites::public_key_pem,
        ))
        .find(row)
        .first(c)?;
    let mut va_ids = Vec::new();
    let mut account_id = None;
    for va in vas {
        let (id, acc): (i64, i64) = virtual_accounts::table
            .select((virtual_accounts::id, virtual_accounts::account_id))
            .filter(virtual_accounts::name.eq(va))
            .first(c)
            .optional()?
            .ok_or_else(|| CloudError::NotFound(format!("no virtual account {va:?}")))?;
        if account_id.is_some_and(|a| a != acc) {
            return Err(CloudError::Invalid(
                "the virtual accounts of a satellite must belong to one smart account".into(),
            ));
        }
        account_id = Some(acc);
        let taken: Option<String> = satellite_vas::table
            .inner_join(satellites::table)
            .select(satellites::name)
            .filter(satellite_vas::va_id.eq(id))
            .filter(satellites::state.eq("authorized"))
            .filter(satellites::satellite_id.ne(&satellite_id))
            .first(c)
            .optional()?;
        if let Some(other) = taken {
            return Err(CloudError::Conflict(format!(
                "the virtual account {va:?} already belongs to the satellite {other:?}"
            )));
        }
        va_ids.push(id);
    }
    let account_id = account_id.ok_or_else(|| CloudError::Internal("no account".into()))?;
    let (account_name, export_controlled): (String, bool) = accounts::table
        .select((accounts::name, accounts::export_controlled))
        .find(account_id)
        .first(c)?;

    let key = PKey::public_key_from_pem(public_key_pem.as_bytes())?;
    let cert = pki::issue(
        &cloud.ca_cert,
        cloud.ca_key(),
        &key,
        &CertSpec {
            common_name: &format!("satellite {name}"),
            organization: &account_name,
            role: CertRole::Bundle(SignerRole::Satellite, &satellite_id),
            now,
            days: SATELLITE_CERT_DAYS,
        },
    )?;
    let cert_pem =
        String::from_utf8(cert.to_pem()?).map_err(|e| CloudError::Internal(e.to_string()))?;
    let ca_pem = String::from_utf8(cloud.ca_cert.to_pem()?)
        .map_err(|e| CloudError::Internal(e.to_string()))?;
    let payload = RegistrationAuthorization {
        payload_version: 1,
        satellite_id: satellite_id.clone(),
        satellite_name: name.to_string(),
        satellite_certificate_pem: cert_pem.clone(),
        cloud_id: cloud.cloud_id.clone(),
        cloud_ca_pem: ca_pem,
        account: Account {
            name: account_name,
            export_controlled_allowed: export_controlled,
        },
        virtual_accounts: pools(c, &va_ids, now)?,
        next_sync_due: now + SYNC_INTERVAL_DAYS * DAY,
    };
    let header = Header {
        kind: BundleKind::RegistrationAuthorization,
        bundle_id: uuid::Uuid::new_v4().to_string(),
        sender: cloud.cloud_id.clone(),
        receiver: satellite_id,
        sequence: 1,
        created_at: now,
        not_after: now + SYNC_INTERVAL_DAYS * DAY,
        in_reply_to: Some(request_id),
    };
    let mut w = BundleWriter::new(Cursor::new(Vec::new()), header)?;
    w.payload(&payload)?;
    let bytes = w.finish(cloud.signer())?.0.into_inner();

    diesel::update(satellites::table.find(row))
        .set((
            satellites::state.eq("authorized"),
            satellites::name.eq(name),
            satellites::account_id.eq(account_id),
            satellites::certificate_pem.eq(&cert_pem),
            satellites::authorization.eq(&bytes),
            satellites::authorized_at.eq(now),
        ))
        .execute(c)?;
    for id in va_ids {
        diesel::insert_or_ignore_into(satellite_vas::table)
            .values((
                satellite_vas::satellite_row.eq(row),
                satellite_vas::va_id.eq(id),
            ))
            .execute(c)?;
    }
    Ok(bytes)
}

/// "New satellite" by file: verifies the request and returns the authorization bundle.
/// `write` stores the file before the transaction commits, so a failed write changes nothing.
pub fn authorize_file(
    cloud: &Cloud,
    request: &[u8],
    name: &str,
    vas: &[String],
    write: impl FnOnce(&[u8]) -> Result<()>,
) -> Result<String> {
    let name = non_empty("satellite name", name)?.to_string();
    let now = cloud.now()?;
    let mut c = cloud.conn()?;
    c.immediate_transaction(|c| {
        let req = receive_request(cloud, c, request)?;
        let row = insert_satellite(c, &req, &name, "pending", now)?;
        let bytes = authorize_row(cloud, c, row, &name, vas)?;
        write(&bytes)?;
        Ok(req.payload.satellite_id)
    })
}

/// What the network registration endpoint answers.
#[derive(Debug)]
pub enum NetworkAnswer {
    Authorized(Vec<u8>),
    Pending {
        satellite_id: String,
        request_id: String,
    },
}

/// A request posted over HTTPS: authorized at once for `auto_vas`, or held for
/// `mock-cloud satellite approve`.
pub fn register_network(
    cloud: &Cloud,
    request: &[u8],
    auto_vas: &[String],
) -> Result<NetworkAnswer> {
    let now = cloud.now()?;
    let mut c = cloud.conn()?;
    c.immediate_transaction(|c| {
        let req = receive_request(cloud, c, request)?;
        let name = req.payload.name.clone();
        let row = insert_satellite(c, &req, &name, "pending", now)?;
        if auto_vas.is_empty() {
            tracing::info!(satellite = %req.payload.satellite_id, "registration request held for approval");
            return Ok(NetworkAnswer::Pending {
                satellite_id: req.payload.satellite_id,
                request_id: req.request_id,
            });
        }
        Ok(NetworkAnswer::Authorized(authorize_row(cloud, c, row, &name, auto_vas)?))
    })
}

/// Finds a satellite row by satellite id, request id or name (newest first).
pub(crate) fn find_row(c: &mut SqliteConnection, who: &str, state: Option<&str>) -> Result<i64> {
    let mut q = satellites::table
        .select(satellites::id)
        .filter(
            satellites::satellite_id
                .eq(who)
                .or(satellites::request_id.eq(who))
                .or(satellites::name.eq(who)),
        )
        .order(satellites::id.desc())
        .into_boxed();
    if let Some(s) = state {
        q = q.filter(satellites::state.eq(s.to_string()));
    }
    q.first(c).optional()?.ok_or_else(|| {
        CloudError::NotFound(format!(
            "no {}satellite {who:?} (give its id, request id or name)",
            state.map(|s| format!("{s} ")).unwrap_or_default()
        ))
    })
}

/// Approves a held network request.
pub fn approve(cloud: &Cloud, who: &str, vas: &[String], name: Option<&str>) -> Result<String> {
    let mut c = cloud.conn()?;
    c.immediate_transaction(|c| {
        let row = find_row(c, who, Some("pending"))?;
        let current: String = satellites::table
            .select(satellites::name)
            .find(row)
            .first(c)?;
        let name = name.map(str::to_string).unwrap_or(current);
        authorize_row(cloud, c, row, &name, vas)?;
        Ok(name)
    })
}

/// The authorization bundle of a satellite, for the operator to download again.
pub fn authorization(cloud: &Cloud, who: &str) -> Result<Vec<u8>> {
    let mut c = cloud.conn()?;
    let row = find_row(&mut c, who, Some("authorized"))?;
    let bytes: Option<Vec<u8>> = satellites::table
        .select(satellites::authorization)
        .find(row)
        .first(&mut c)?;
    bytes.ok_or_else(|| CloudError::NotFound(format!("satellite {who:?} has no authorization")))
}

/// The state of a network registration request: the authorization once approved.
pub fn poll(cloud: &Cloud, satellite_id: &str, request_id: &str) -> Result<NetworkAnswer> {
    let mut c = cloud.conn()?;
    let row: Option<(String, Option<Vec<u8>>)> = satellites::table
        .select((satellites::state, satellites::authorization))
        .filter(satellites::satellite_id.eq(satellite_id))
        .filter(satellites::request_id.eq(request_id))
        .first(&mut c)
        .optional()?;
    match row {
        Some((state, _)) if state == "pending" => Ok(NetworkAnswer::Pending {
            satellite_id: satellite_id.to_string(),
            request_id: request_id.to_string(),
        }),
        Some((state, Some(bytes))) if state == "authorized" => Ok(NetworkAnswer::Authorized(bytes)),
        _ => Err(CloudError::NotFound(format!(
            "no registration request {request_id} of satellite {satellite_id}"
        ))),
    }
}

/// What the cloud holds of a satellite's event log: how many events, the head of the chain,
/// and where it was found broken.
#[derive(Debug, Serialize)]
pub struct EventChain {
    pub satellite: String,
    pub events: i64,
    pub last_event_id: Option<i64>,
    pub head: Option<String>,
    pub breaks: Vec<ChainBreak>,
}

#[derive(Debug, Serialize)]
pub struct ChainBreak {
    pub event_id: i64,
    pub reason: String,
    pub detected_at: String,
}

pub fn event_chain(cloud: &Cloud, who: &str) -> Result<EventChain> {
    use super::schema::{event_chain_breaks as b, satellite_events as e};
    let mut c = cloud.conn()?;
    let row = find_row(&mut c, who, None)?;
    let events: i64 = e::table
        .filter(e::satellite_row.eq(row))
        .count()
        .get_result(&mut c)?;
    let last: Option<(i64, String)> = e::table
        .select((e::event_id, e::hash))
        .filter(e::satellite_row.eq(row))
        .order(e::event_id.desc())
        .first(&mut c)
        .optional()?;
    let breaks = b::table
        .select((b::event_id, b::reason, b::detected_at))
        .filter(b::satellite_row.eq(row))
        .order(b::id)
        .load::<(i64, String, i64)>(&mut c)?
        .into_iter()
        .map(|(event_id, reason, at)| ChainBreak {
            event_id,
            reason,
            detected_at: fmt_time(at),
        })
        .collect();
    Ok(EventChain {
        satellite: who.to_string(),
        events,
        last_event_id: last.as_ref().map(|l| l.0),
        head: last.map(|l| l.1),
        breaks,
    })
}
