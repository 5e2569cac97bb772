//! What a sync carries for export-controlled licenses: the requests and returns waiting for the
//! cloud, and the cloud's answers applied.

use super::*;

/// What applying one answer of the cloud did.
#[derive(Debug, Clone, Serialize)]
pub struct AnswerOutcome {
    pub request_id: String,
    pub pi: String,
    pub tag: String,
    pub count: i64,
    /// "granted", "denied", "returned", or "ignored" (already answered, or unknown here).
    pub result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn licenses_text(count: i64, name: &str, kind: &str) -> String {
    format!("{count} \"{name}\" {kind}")
}

/// Applies one answer of a sync response (inside the import's transaction).
pub fn apply_answer(
    conn: &mut SqliteConnection,
    a: &ExportAnswer,
    at: i64,
) -> Result<AnswerOutcome> {
    let mut out = AnswerOutcome {
        request_id: a.id.clone(),
        pi: a.pi.clone(),
        tag: a.tag.clone(),
        count: a.count,
        result: "ignored".into(),
        reason: a.reason.clone(),
    };
    let Some(row) = db::by_uuid(conn, &a.id)? else {
        tracing::warn!(request = %a.id, "the cloud answered an export request this satellite does not know");
        return Ok(out);
    };
    if !row.state.waits() {
        return Ok(out);
    }
    let pi = dbdevices::by_id(conn, row.pi_id)?;
    if pi.uuid != a.pi || row.tag != a.tag {
        return Err(Error::invalid(format!(
            "the response answers export request {} for {} {:?}, but it was made for {} {:?}",
            a.id, a.pi, a.tag, pi.uuid, row.tag
        )));
    }
    let va = pools::va_name(conn, pi.va_id)?;
    let name = a.license_name.as_str();
    let kind = a.license_kind.as_str();
    let licenses = licenses_text(row.count, name, kind);
    match (row.direction.as_str(), a.status) {
        ("request", ExportStatus::Granted) => {
            db::answer(conn, row.id, ExportState::Granted, None, (name, kind), at)?;
            compliance::recompute(conn, pi.va_id, &row.tag, at)?;
            alerts::clear_source(
                conn,
                at,
                AlertKind::RestrictedNotAvailable,
                &alert_source(&pi, &row.tag),
            )?;
            events::append(
                conn,
                at,
                &events::NewEvent {
                    kind: EventKind::ExportSuccess,
                    va_name: Some(&va),
                    pi_uuid: Some(&pi.uuid),
                    license_tag: Some(&row.tag),
                    message: format!(
                        "Export restricted licenses were assigned to product instance \"{}\" in \
                         Virtual Account \"{va}\". Licenses: {licenses} licenses.",
                        pi.name
                    ),
                    actor: "system",
                },
            )?;
            if pi.state != PiState::Active {
                // Granted after the device left: give it straight back.
                let held = db::by_id(conn, row.id)?;
                queue_return(conn, &held, at)?;
            }
            out.result = "granted".into();
        }
        ("request", ExportStatus::Denied) => {
            let reason = a.reason.clone().unwrap_or_else(|| "no reason given".into());
            db::answer(
                conn,
                row.id,
                ExportState::Denied,
                Some(&reason),
                (name, kind),
                at,
            )?;
            let code = a.reason_code.as_deref().unwrap_or("");
            let not_available = matches!(code, "not_available" | "unknown_tag");
            let message = if not_available {
                format!(
                    "Restricted License Not Available \u{2013} The product instance \"{}\" in \
                     Virtual Account \"{va}\" has requested export restricted licenses that are \
                     not available. You must add these licenses to this Virtual Account or \
                     transfer the product instance to a Virtual Account that contains these \
                     licenses. Licenses: {licenses}.",
                    pi.name
                )
            } else {
                format!(
                    "Export authorization failed for the product instance \"{}\" in Virtual \
                     Account \"{va}\": {reason}. Licenses: {licenses}.",
                    pi.name
                )
            };
            events::append(
                conn,
                at,
                &events::NewEvent {
                    kind: EventKind::ExportFailure,
                    va_name: Some(&va),
                    pi_uuid: Some(&pi.uuid),
                    license_tag: Some(&row.tag),
                    message,
                    actor: "system",
                },
            )?;
            if not_available {
                alerts::raise(
                    conn,
                    at,
                    &alerts::NewAlert {
                        kind: AlertKind::RestrictedNotAvailable,
                        source_type: "pi",
                        source_id: Some(&alert_source(&pi, &row.tag)),
                        va_id: Some(pi.va_id),
                        message: format!(
                            "The product instance {} has requested license {name} which enables \
                             restricted encryption technology. This license is not available \
                             within the virtual account {va}.",
                            pi.name
                        ),
                        action_due_at: None,
                    },
                )?;
            }
            out.result = "denied".into();
            out.reason = Some(reason);
        }
        ("return", ExportStatus::Returned) => {
            db::answer(conn, row.id, ExportState::Returned, None, (name, kind), at)?;
            if let Some(of) = row.return_of {
                db::set_state(conn, of, ExportState::Returned, at)?;
            }
            compliance::recompute(conn, pi.va_id, &row.tag, at)?;
            events::append(
                conn,
                at,
                &events::NewEvent {
                    kind: EventKind::ExportReleased,
                    va_name: Some(&va),
                    pi_uuid: Some(&pi.uuid),
                    license_tag: Some(&row.tag),
                    message: format!(
                        "Export restricted licenses were removed from product instance \"{}\" in \
                         Virtual Account \"{va}\" and released back to the inventory for use by \
                         other product instances. Licenses: {licenses}.",
                        pi.name
                    ),
                    actor: "system",
                },
            )?;
            out.result = "returned".into();
        }
        ("return", ExportStatus::Denied) => {
            // The cloud kept the license: it stays held here too, and the operator sees why.
            let reason = a.reason.clone().unwrap_or_else(|| "no reason given".into());
            db::answer(
                conn,
                row.id,
                ExportState::Denied,
                Some(&reason),
                (name, kind),
                at,
            )?;
            // Seed 001, "Product Instance Failed to Connect", export-restricted licenses: the
            // device went, its restricted license did not come back.
            alerts::raise(
                conn,
                at,
                &alerts::NewAlert {
                    kind: AlertKind::PiFailedToConnectRestricted,
                    source_type: "pi",
                    source_id: Some(&alert_source(&pi, &row.tag)),
                    va_id: Some(pi.va_id),
                    message: format!(
                        "The product instance \"{}\" in the Virtual Account \"{va}\" failed to \
                         connect. It is using licenses which enable restricted encryption \
                         technology, and those licenses have not been released. The \
                         non-restricted licenses it was consuming have been released for use by \
                         other product instances. (The cloud refused the return: {reason}.)",
                        pi.name
                    ),
                    action_due_at: None,
                },
            )?;
            out.result = "denied".into();
            out.reason = Some(reason);
        }
        (dir, status) => {
            return Err(Error::invalid(format!(
                "the response answers export {dir} {} with {status:?}, which does not fit",
                a.id
            )))
        }
    }
    Ok(out)
}

fn alert_source(pi: &PiRow, tag: &str) -> String {
    format!("{}/{tag}", pi.uuid)
}
