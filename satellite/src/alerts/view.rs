//! The operator's view of alerts and their actions on them: list (seed 001's order), dismiss,
//! remind later.

use super::*;

/// An alert as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    pub id: i64,
    #[serde(rename = "type")]
    pub kind: AlertKind,
    pub severity: Severity,
    /// account, va, pi, license or satellite.
    pub source_type: String,
    /// The license tag, the PI id, "VA/tag" (empty for the satellite).
    pub source: String,
    pub virtual_account: Option<String>,
    pub message: String,
    pub action_due: Option<String>,
    /// active, snoozed (remind later), dismissed or cleared.
    pub state: String,
    pub remind_at: Option<String>,
    pub dismissed_by: Option<String>,
    pub created: String,
    pub updated: String,
    /// What the operator may do with it: "dismiss", "remind-later".
    pub actions: Vec<&'static str>,
}

/// The state an operator sees at `now`: an active alert hidden by "remind later" is
/// snoozed until its time.
fn shown_state(a: &AlertRow, now: i64) -> &str {
    if a.state == "active" && a.remind_at.is_some_and(|t| t > now) {
        "snoozed"
    } else {
        &a.state
    }
}

fn view(a: AlertRow, va_names: &HashMap<i64, String>, now: i64) -> AlertView {
    let state = shown_state(&a, now).to_string();
    let mut actions = Vec::new();
    if a.state == "active" {
        if a.kind.not_dismissable().is_none() {
            actions.push("dismiss");
        }
        if remind_until(&a).is_some() && state == "active" {
            actions.push("remind-later");
        }
    }
    AlertView {
        id: a.id,
        virtual_account: a.va_id.and_then(|v| va_names.get(&v).cloned()),
        source: a.source_id.unwrap_or_default(),
        source_type: a.source_type,
        severity: a.severity,
        message: a.message,
        action_due: a.action_due_at.map(clock::format),
        state,
        remind_at: a.remind_at.filter(|t| *t > now).map(clock::format),
        dismissed_by: a.dismissed_by,
        created: clock::format(a.created_at),
        updated: clock::format(a.updated_at),
        kind: a.kind,
        actions,
    }
}

/// Which alerts to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub va: Option<String>,
    pub severity: Option<Severity>,
    /// active (the default: not snoozed), snoozed, dismissed, cleared, or all.
    pub state: Option<String>,
    pub kind: Option<AlertKind>,
}

pub const STATES: [&str; 5] = ["active", "snoozed", "dismissed", "cleared", "all"];

/// Alerts, in seed 001's default order: by severity, then action due (none last).
pub fn list(conn: &mut SqliteConnection, f: &Filter, now: i64) -> Result<Vec<AlertView>> {
    let want = f.state.clone().unwrap_or_else(|| "active".into());
    if !STATES.contains(&want.as_str()) {
        return Err(Error::invalid(format!(
            "unknown alert state {want:?}: use active, snoozed, dismissed, cleared or all"
        )));
    }
    let va_names: HashMap<i64, String> = pools::va_names(conn)?.into_iter().collect();
    let va_id = match &f.va {
        Some(name) => Some(
            va_names
                .iter()
                .find(|(_, n)| *n == name)
                .map(|(id, _)| *id)
                .ok_or_else(|| {
                    Error::NotFound(format!("no virtual account named {name:?}").into())
                })?,
        ),
        None => None,
    };
    let rows = db::list(
        conn,
        &db::Filter {
            va_id,
            severity: f.severity,
            states: match want.as_str() {
                "all" => vec![],
                "snoozed" => vec!["active".into()],
                s => vec![s.to_string()],
            },
            kind: f.kind,
        },
    )?;
    let mut out: Vec<AlertView> = rows
        .into_iter()
        .map(|a| view(a, &va_names, now))
        .filter(|v| want == "all" || v.state == want)
        .collect();
    out.sort_by(|a, b| {
        (a.severity, a.action_due.is_none(), &a.action_due, b.id).cmp(&(
            b.severity,
            b.action_due.is_none(),
            &b.action_due,
            a.id,
        ))
    });
    Ok(out)
}

fn get(conn: &mut SqliteConnection, id: i64) -> Result<AlertRow> {
    db::by_id(conn, id)?.ok_or_else(|| Error::NotFound(format!("no alert with id {id}").into()))
}

fn require_active(a: &AlertRow, what: &str) -> Result<()> {
    if a.state != "active" {
        return Err(Error::State(
            format!(
                "alert {} ({}) is {} already; only an active alert can be {what}",
                a.id, a.kind, a.state
            )
            .into(),
        ));
    }
    Ok(())
}

fn action_event(
    conn: &mut SqliteConnection,
    now: i64,
    a: &AlertRow,
    message: String,
    actor: &str,
) -> Result<()> {
    let va = match a.va_id {
        Some(id) => Some(pools::va_name(conn, id)?),
        None => None,
    };
    events::append(
        conn,
        now,
        &events::NewEvent {
            kind: EventKind::AlertAction,
            va_name: va.as_deref(),
            pi_uuid: (a.source_type == "pi")
                .then_some(a.source_id.as_deref())
                .flatten(),
            license_tag: (a.source_type == "license")
                .then_some(a.source_id.as_deref())
                .flatten(),
            message,
            actor,
        },
    )
}

/// Dismisses an active alert (refused for the alerts that clear themselves).
pub fn dismiss(conn: &mut SqliteConnection, id: i64, now: i64, actor: &str) -> Result<AlertView> {
    let a = get(conn, id)?;
    require_active(&a, "dismissed")?;
    if let Some(why) = a.kind.not_dismissable() {
        return Err(Error::State(
            format!("alert {id} ({}) cannot be dismissed: {why}", a.kind).into(),
        ));
    }
    db::end(conn, id, now, "dismissed", Some(actor))?;
    action_event(
        conn,
        now,
        &a,
        format!("The alert \"{}\" was dismissed: {}", a.kind, a.message),
        actor,
    )?;
    let names = va_names_of(conn, &a)?;
    Ok(view(get(conn, id)?, &names, now))
}

/// Until when "remind later" hides an alert: the start of its next warning period.
fn remind_until(a: &AlertRow) -> Option<i64> {
    let due = a.action_due_at?;
    let period: i64 = a.period.as_deref()?.strip_suffix('d')?.parse().ok()?;
    match a.kind {
        // Days before the end: the next, smaller period starts that many days before it.
        AlertKind::LicensesExpiring => Some(
            EXPIRY_WARNINGS
                .iter()
                .find(|p| **p < period)
                .map_or(due, |next| due - next * DAY),
        ),
        // Days since contact: the next period, or the release at 90 days.
        AlertKind::PiFailedToConnect | AlertKind::PiFailedToConnectRestricted => {
            let contact = due - RENEW_AFTER_DAYS * DAY;
            Some(
                CONNECT_WARNINGS
                    .iter()
                    .find(|p| **p > period)
                    .map_or(due, |next| contact + next * DAY + CONNECT_GRACE),
            )
        }
        _ => None,
    }
}

/// Hides an active warning until its next warning period (seed 001's "remind later").
pub fn remind_later(
    conn: &mut SqliteConnection,
    id: i64,
    now: i64,
    actor: &str,
) -> Result<AlertView> {
    let a = get(conn, id)?;
    require_active(&a, "reminded later")?;
    let Some(until) = remind_until(&a) else {
        return Err(Error::State(
            format!(
                "alert {id} ({}) has no next warning period to be reminded at: only Licenses \
             Expiring and Product Instance Failed to Connect can be reminded later{}",
                a.kind,
                if a.kind.not_dismissable().is_none() {
                    "; dismiss it instead"
                } else {
                    ""
                }
            )
            .into(),
        ));
    };
    db::snooze(conn, id, now, until)?;
    action_event(
        conn,
        now,
        &a,
        format!(
            "The alert \"{}\" is hidden until {}: {}",
            a.kind,
            clock::format(until),
            a.message
        ),
        actor,
    )?;
    let names = va_names_of(conn, &a)?;
    Ok(view(get(conn, id)?, &names, now))
}

fn va_names_of(conn: &mut SqliteConnection, a: &AlertRow) -> Result<HashMap<i64, String>> {
    Ok(match a.va_id {
        Some(id) => HashMap::from([(id, pools::va_name(conn, id)?)]),
        None => HashMap::new(),
    })
}
