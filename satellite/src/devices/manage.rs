//! The operators' view of product instances and their actions on them (list, show, remove,
//! transfer to another virtual account).

use super::*;

/// A device as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceView {
    pub pi_id: String,
    pub name: String,
    pub pid: String,
    pub sn: String,
    pub uuid: Option<String>,
    pub host_id: Option<String>,
    pub mac: Option<String>,
    pub virtual_account: String,
    /// False when the satellite no longer serves its virtual account (it was registered
    /// again without it): the device keeps its history but gets no authorization there.
    pub virtual_account_served: bool,
    pub state: PiState,
    pub export_controlled: bool,
    pub registered_at: String,
    pub last_contact_at: String,
    pub identity_not_after: Option<String>,
    pub licenses: Vec<EntitlementStatus>,
    /// Restricted (export-controlled) licenses: pending, held, being returned.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restricted: Vec<crate::export::RestrictedStatus>,
}

/// A product instance as operators see it: its row, VA and licenses.
pub fn view(conn: &mut SqliteConnection, pi: PiRow, va: String) -> Result<DeviceView> {
    let licenses = db::usage_of(conn, pi.id)?
        .into_iter()
        .map(|u| EntitlementStatus {
            tag: u.tag,
            count: u.count,
            status: u.status,
        })
        .collect();
    let restricted = crate::export::of_device(conn, pi.id)?;
    Ok(DeviceView {
        pi_id: pi.uuid,
        name: pi.name,
        pid: pi.pid,
        sn: pi.sn,
        uuid: pi.udi_uuid,
        host_id: pi.host_id,
        mac: pi.mac,
        virtual_account: va,
        virtual_account_served: pools::served(conn, pi.va_id)?,
        state: pi.state,
        export_controlled: pi.export_controlled,
        registered_at: clock::format(pi.registered_at),
        last_contact_at: clock::format(pi.last_contact_at),
        identity_not_after: pi.cert_not_after.map(clock::format),
        licenses,
        restricted,
    })
}

/// One page of the product instances `f` selects.
pub fn list(
    conn: &mut SqliteConnection,
    f: &db::Filter,
    page: db::Page,
) -> Result<Vec<DeviceView>> {
    db::list(conn, f, page)?
        .into_iter()
        .map(|(pi, va)| view(conn, pi, va))
        .collect()
}

/// Finds a device by any form `device list` shows it in: its PI id, its UDI written
/// `PID:SN` or `PID:pid SN:sn`, or its name (when no other device has it).
pub(super) fn find(conn: &mut SqliteConnection, who: &str) -> Result<PiRow> {
    let who = who.trim();
    if let Some(pi) = db::by_uuid(conn, who)? {
        return Ok(pi);
    }
    let udi = who
        .strip_prefix("PID:")
        .and_then(|rest| rest.split_once(" SN:"))
        .or_else(|| who.rsplit_once(':'));
    if let Some((pid, sn)) = udi {
        if let Some(pi) = db::by_udi(conn, pid.trim(), sn.trim())? {
            return Ok(pi);
        }
    }
    let mut named = db::by_name(conn, who, 2)?;
    match named.len() {
        1 => Ok(named.remove(0)),
        0 => Err(Error::NotFound(
            format!("no product instance {who:?} (give its PI id, PID:SN or name)").into(),
        )),
        _ => Err(Error::Conflict(
            format!(
                "more than one product instance is named {who:?}: give its PI id or PID:SN \
                 (`satellite device list --name {who:?}` shows them)"
            )
            .into(),
        )),
    }
}

pub fn show(conn: &mut SqliteConnection, who: &str) -> Result<DeviceView> {
    let pi = find(conn, who)?;
    let va = pools::va_name(conn, pi.va_id)?;
    view(conn, pi, va)
}

/// Removes a device (operator): its licenses are released.
pub fn remove(conn: &mut SqliteConnection, who: &str, now: i64, actor: &str) -> Result<DeviceView> {
    let pi = find(conn, who)?;
    if pi.state != PiState::Active {
        return Err(Error::Conflict(
            format!("product instance {who:?} is already removed").into(),
        ));
    }
    remove_pi(conn, &pi, now, actor)?;
    show(conn, &pi.uuid)
}

/// Removes a product instance not heard from for a year (seed 000: "After one year, the
/// Product Instance is assumed to be no longer valid and it is automatically removed"), its
/// licenses released, with an event. In the timers' transaction.
pub fn remove_inactive(conn: &mut SqliteConnection, pi: &PiRow, va: &str, now: i64) -> Result<()> {
    release_and_mark_removed(conn, pi, now)?;
    events::append(
        conn,
        now,
        &events::NewEvent::about_pi(
            EventKind::PiRemovedInactive,
            va,
            &pi.uuid,
            format!(
                "The product instance \"{}\" in the Virtual Account \"{va}\" did not connect \
                 for a year and was removed automatically; its licenses were released.",
                pi.name
            ),
            "system",
        ),
    )
}

/// Transfers a device to another of the satellite's VAs; its licenses do not follow.
pub fn transfer(
    conn: &mut SqliteConnection,
    who: &str,
    to_va: &str,
    now: i64,
    actor: &str,
) -> Result<DeviceView> {
    let pi = find(conn, who)?;
    if pi.state != PiState::Active {
        return Err(Error::Conflict(
            format!("product instance {who:?} is removed").into(),
        ));
    }
    let to = pools::va_id(conn, to_va)?.ok_or_else(|| {
        Error::NotFound(format!("no virtual account {to_va:?} on this satellite").into())
    })?;
    if to == pi.va_id {
        return Err(Error::Conflict(
            format!("product instance {who:?} is already in {to_va:?}").into(),
        ));
    }
    let from = pools::va_name(conn, pi.va_id)?;
    compliance::release_all(conn, &pi, now)?;
    db::set_va(conn, pi.id, to)?;
    // Restricted licenses go with the device (seed 001); the others stay behind.
    crate::export::moved(conn, pi.id, pi.va_id, to, now)?;
    events::append(
        conn,
        now,
        &events::NewEvent::about_pi(EventKind::PiTransferred, to_va, &pi.uuid, format!(
                "The product instance {} was transferred from the Virtual Account \"{from}\" to the Virtual Account \"{to_va}\".",
                pi.name
            ), actor),
    )?;
    show(conn, &pi.uuid)
}
