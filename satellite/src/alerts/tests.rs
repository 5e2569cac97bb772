use super::*;
use crate::clock::{Clock, SystemClock};
use crate::devices::tests::{register, site_with};
use sync_format::payload::{LicenseKind, LicenseLine};

fn line(tag: &str, qty: i64, kind: LicenseKind, end: Option<i64>) -> LicenseLine {
    LicenseLine {
        tag: tag.into(),
        name: format!("{tag} License"),
        description: String::new(),
        kind,
        quantity: qty,
        start: None,
        end,
        restricted: false,
    }
}

fn shown(c: &mut SqliteConnection, now: i64, state: &str) -> Vec<(String, String, String)> {
    let f = Filter {
        state: Some(state.into()),
        ..Default::default()
    };
    list(c, &f, now)
        .unwrap()
        .into_iter()
        .map(|a| (a.kind.to_string(), a.severity.to_string(), a.message))
        .collect()
}

fn event_kinds(c: &mut SqliteConnection) -> Vec<String> {
    crate::db::events::list(c, &Default::default())
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

#[test]
fn licenses_expiring_warns_at_each_period_and_a_new_warning_dismisses_the_last() {
    let t0 = SystemClock.now();
    let end = t0 + 100 * DAY;
    let (store, _d, _t, _k, _ca) = site_with(
        &[
            ("Lab", line("term", 5, LicenseKind::Term, Some(end))),
            ("Lab", line("perm", 5, LicenseKind::Perpetual, None)),
        ],
        false,
    );
    let c = &mut *store.conn().unwrap();
    // 100 days out: nothing yet.
    assert!(evaluate(c, t0).unwrap().raised.is_empty());
    let mut seen = Vec::new();
    for days_left in [90, 89, 60, 30, 14, 7, 3, 2, 1] {
        let now = end - days_left * DAY;
        let out = evaluate(c, now).unwrap();
        let active = shown(c, now, "active");
        assert_eq!(active.len(), 1, "{days_left}: {active:?}");
        let (kind, sev, msg) = &active[0];
        assert_eq!(
            (kind.as_str(), sev.as_str()),
            (AlertKind::LicensesExpiring.as_str(), "minor")
        );
        let date = clock::format(end)[..10].to_string();
        let when = if days_left == 1 {
            "1 day".to_string()
        } else {
            format!("{days_left} days")
        };
        if out.raised.is_empty() {
            // 89 and 2 days: inside the 90- and 3-day periods already warned about.
            assert!([89, 2].contains(&days_left), "{days_left}");
        } else {
            assert_eq!(
                msg,
                &format!(
                    "5 term License licenses in the virtual account \"Lab\" are set to \
                     expire in {when} on {date}."
                )
            );
            seen.push(days_left);
        }
    }
    assert_eq!(seen, EXPIRY_WARNINGS.to_vec());
    // Each earlier warning was dismissed by the next one, by the system.
    let dismissed = list(
        c,
        &Filter {
            state: Some("dismissed".into()),
            ..Default::default()
        },
        end,
    )
    .unwrap();
    assert_eq!(dismissed.len(), 6);
    assert!(dismissed
        .iter()
        .all(|a| a.dismissed_by.as_deref() == Some("system")));

    // It ends: Licenses Expired, the event with the seed's text, and the pool shrinks.
    let out = evaluate(c, end).unwrap();
    assert_eq!(out.expired.len(), 1);
    assert_eq!(
        shown(c, end, "active"),
        vec![(
            AlertKind::LicensesExpired.to_string(),
            "minor".to_string(),
            format!(
                "5 term License licenses in the virtual account \"Lab\" expired on {}.",
                &clock::format(end)[..10]
            )
        )]
    );
    let ev = crate::db::events::list(
        c,
        &crate::db::events::Filter {
            kind: Some("licenses_expired".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(
        ev[0].message,
        "5 \"term License\" licenses expired and were removed from the Virtual Account \"Lab\"."
    );
    // Idempotent.
    let again = evaluate(c, end + DAY).unwrap();
    assert!(again.raised.is_empty() && again.expired.is_empty());
    assert_eq!(
        event_kinds(c)
            .iter()
            .filter(|k| *k == "licenses_expired")
            .count(),
        1
    );
}

#[test]
fn remind_later_hides_a_warning_until_the_next_period_and_dismiss_carries_to_expired() {
    let t0 = SystemClock.now();
    let end = t0 + 40 * DAY;
    let (store, _d, _t, _k, _ca) = site_with(
        &[
            ("Lab", line("a", 2, LicenseKind::Term, Some(end))),
            ("Lab", line("b", 3, LicenseKind::Demo, Some(end))),
        ],
        false,
    );
    let c = &mut *store.conn().unwrap();
    let now = end - 30 * DAY;
    evaluate(c, now).unwrap();
    let active = list(c, &Filter::default(), now).unwrap();
    assert_eq!(active.len(), 2);
    let a = active.iter().find(|v| v.source == "a").unwrap().id;
    let b = active.iter().find(|v| v.source == "b").unwrap().id;
    assert!(active
        .iter()
        .all(|v| v.actions == vec!["dismiss", "remind-later"]));

    // "a": remind later, hidden until the 14-day warning.
    let v = remind_later(c, a, now, "cli:ops").unwrap();
    assert_eq!(v.state, "snoozed");
    assert_eq!(v.remind_at, Some(clock::format(end - 14 * DAY)));
    assert_eq!(list(c, &Filter::default(), now).unwrap().len(), 1);
    assert_eq!(shown(c, now, "snoozed").len(), 1);
    // "b": dismissed by the operator.
    dismiss(c, b, now, "cli:ops").unwrap();
    let err = dismiss(c, b, now, "cli:ops").unwrap_err();
    assert!(err.to_string().contains("dismissed already"), "{err}");
    assert!(list(c, &Filter::default(), now).unwrap().is_empty());

    // Nothing comes back inside the period; at 14 days both warn again.
    evaluate(c, now + 10 * DAY).unwrap();
    let l = list(c, &Filter::default(), now + 10 * DAY).unwrap();
    assert!(l.is_empty(), "{l:?}");
    let at14 = end - 14 * DAY;
    evaluate(c, at14).unwrap();
    assert_eq!(list(c, &Filter::default(), at14).unwrap().len(), 2);

    // "b" dismissed again at 1 day: its Expired alert is recorded already dismissed
    // (seed 001: shown only if the Expiring warning was not dismissed).
    let at1 = end - DAY;
    evaluate(c, at1).unwrap();
    let b1 = list(c, &Filter::default(), at1)
        .unwrap()
        .into_iter()
        .find(|v| v.source == "b")
        .unwrap();
    dismiss(c, b1.id, at1, "cli:ops").unwrap();
    evaluate(c, end + 10).unwrap();
    let shown_now = shown(c, end + 10, "active");
    assert_eq!(shown_now.len(), 1, "{shown_now:?}");
    assert!(shown_now[0].2.starts_with("2 a License"), "{shown_now:?}");
    let all = list(
        c,
        &Filter {
            state: Some("all".into()),
            kind: Some(AlertKind::LicensesExpired),
            ..Default::default()
        },
        end + 10,
    )
    .unwrap();
    assert_eq!(all.len(), 2);
    let b_expired = all.iter().find(|v| v.source == "b").unwrap();
    assert_eq!(b_expired.state, "dismissed");
    assert_eq!(b_expired.dismissed_by.as_deref(), Some("cli:ops"));
    // Operator actions are events with the operator's name.
    let actions = crate::db::events::list(
        c,
        &crate::db::events::Filter {
            kind: Some("alert_action".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(actions.len(), 3);
    assert!(actions.iter().all(|e| e.actor == "cli:ops"));
}

#[test]
fn alerts_that_clear_themselves_cannot_be_dismissed_nor_reminded() {
    let (store, _d, _t, _k, _ca) = site_with(
        &[("Lab", line("p", 1, LicenseKind::Perpetual, None))],
        false,
    );
    let c = &mut *store.conn().unwrap();
    let now = SystemClock.now();
    db::raise(
        c,
        now,
        &NewAlert {
            kind: AlertKind::InsufficientLicenses,
            source_type: "license",
            source_id: Some("Lab/p"),
            va_id: None,
            message: "short".into(),
            action_due_at: None,
        },
    )
    .unwrap();
    let a = list(c, &Filter::default(), now).unwrap();
    assert!(a[0].actions.is_empty());
    let e = dismiss(c, a[0].id, now, "x").unwrap_err();
    assert!(e.to_string().contains("compliant again"), "{e}");
    let e = remind_later(c, a[0].id, now, "x").unwrap_err();
    assert!(e.to_string().contains("no next warning period"), "{e}");
    assert!(dismiss(c, 999, now, "x")
        .unwrap_err()
        .to_string()
        .contains("no alert"));
    // Nothing was written by the refusals.
    assert_eq!(list(c, &Filter::default(), now).unwrap()[0].state, "active");
    assert!(event_kinds(c).iter().all(|k| k != "alert_action"));
    assert!(Severity::parse_named("severity", "huge")
        .unwrap_err()
        .to_string()
        .contains("use major, minor or informational"));
}

#[test]
fn silent_devices_warn_after_30_and_60_days_lose_their_licenses_at_90_and_go_after_a_year() {
    let (store, _d, token, key, ca) = site_with(
        &[("Lab", line("tag", 10, LicenseKind::Perpetual, None))],
        false,
    );
    let c = &mut *store.conn().unwrap();
    let quiet = register(c, &key, &ca, &token, "SN-Q");
    let busy = register(c, &key, &ca, &token, "SN-B");
    let t0 = SystemClock.now();
    for pi in [&quiet, &busy] {
        diesel::sql_query(format!(
            "INSERT INTO license_usage (pi_id, tag, count, requested_at, status) \
             SELECT id, 'tag', 3, {t0}, 'AUTHORIZED' FROM product_instances WHERE uuid = '{pi}'"
        ))
        .execute(c)
        .unwrap();
    }
    crate::compliance::recompute_all(c, t0).unwrap();
    let contact = |c: &mut SqliteConnection, pi: &str, at: i64| {
        diesel::sql_query(format!(
            "UPDATE product_instances SET last_contact_at = {at} WHERE uuid = '{pi}'"
        ))
        .execute(c)
        .unwrap();
    };
    let in_use = |c: &mut SqliteConnection| crate::db::devices::totals(c, 1, "tag").unwrap().0;
    assert_eq!(in_use(c), 6);
    // Both last heard from at t0 exactly (registration may fall a second before it).
    contact(c, &quiet, t0);
    contact(c, &busy, t0);

    evaluate(c, t0 + 29 * DAY).unwrap();
    assert!(list(c, &Filter::default(), t0 + 29 * DAY)
        .unwrap()
        .is_empty());
    contact(c, &busy, t0 + 29 * DAY);

    // Thirty days and some hours (renewing late the same day) is healthy: no warning.
    evaluate(c, t0 + 30 * DAY + 20 * 3600).unwrap();
    assert!(list(c, &Filter::default(), t0 + 30 * DAY + 20 * 3600)
        .unwrap()
        .is_empty());
    // More than that: the first warning.
    let at30 = t0 + 31 * DAY;
    evaluate(c, at30).unwrap();
    let a = list(c, &Filter::default(), at30).unwrap();
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        (a[0].kind.as_str(), a[0].severity.as_str()),
        (AlertKind::PiFailedToConnect.as_str(), "minor")
    );
    assert_eq!(a[0].source, quiet);
    assert_eq!(a[0].action_due, Some(clock::format(t0 + 90 * DAY)));
    assert!(a[0].message.starts_with("The Product Instance \"PID:P SN:SN-Q\" in the Virtual Account \"Lab\" is not connected for its renewal period"), "{}", a[0].message);
    assert!(
        a[0].message.contains("within the next 59 days"),
        "{}",
        a[0].message
    );
    assert_eq!(
        event_kinds(c)
            .iter()
            .filter(|k| *k == "pi_failed_to_connect")
            .count(),
        1
    );

    // Remind later: hidden until the 60-day warning, which replaces it.
    let v = remind_later(c, a[0].id, at30, "cli:ops").unwrap();
    assert_eq!(v.remind_at, Some(clock::format(t0 + 61 * DAY)));
    let at60 = t0 + 61 * DAY;
    contact(c, &busy, at60 - DAY);
    evaluate(c, at60).unwrap();
    let a = list(c, &Filter::default(), at60).unwrap();
    assert_eq!(a.len(), 1);
    assert!(
        a[0].message.contains("within the next 29 days"),
        "{}",
        a[0].message
    );
    assert_eq!(
        event_kinds(c)
            .iter()
            .filter(|k| *k == "pi_failed_to_connect")
            .count(),
        1
    );
    assert_eq!(in_use(c), 6);

    // 90 days: Failed to Renew, major; its licenses are released, the other device's stay.
    let at90 = t0 + 90 * DAY;
    contact(c, &busy, at90 - DAY);
    let out = evaluate(c, at90).unwrap();
    assert_eq!(out.released, vec![quiet.clone()]);
    let a = list(c, &Filter::default(), at90).unwrap();
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        (a[0].kind.as_str(), a[0].severity.as_str()),
        (AlertKind::PiFailedToRenew.as_str(), "major")
    );
    assert_eq!(
        a[0].message,
        "The product instance \"PID:P SN:SN-Q\" in the Virtual Account \"Lab\" failed to connect \
         during its renewal period and may be running in a degraded state. The licenses it \
         was consuming have been released for use by other product instances."
    );
    assert_eq!(in_use(c), 3);
    assert!(evaluate(c, at90 + DAY).unwrap().raised.is_empty());

    // It connects again: its alert clears at the next evaluation.
    contact(c, &quiet, at90 + 2 * DAY);
    let out = evaluate(c, at90 + 2 * DAY).unwrap();
    assert_eq!(out.cleared, 1);
    assert!(list(c, &Filter::default(), at90 + 2 * DAY)
        .unwrap()
        .is_empty());

    // A year without contact: removed automatically, its licenses released, its alerts gone.
    let year = at90 + 2 * DAY + 365 * DAY;
    contact(c, &busy, year - DAY);
    let out = evaluate(c, year).unwrap();
    assert_eq!(out.removed, vec![quiet.clone()]);
    assert_eq!(
        crate::db::devices::by_uuid(c, &quiet)
            .unwrap()
            .unwrap()
            .state,
        PiState::Removed
    );
    assert_eq!(in_use(c), 3, "only the busy device's licenses remain");
    assert!(list(c, &Filter::default(), year)
        .unwrap()
        .iter()
        .all(|a| a.source != quiet));
    assert!(event_kinds(c).contains(&"pi_removed_inactive".to_string()));
}

#[test]
fn a_silent_device_holding_restricted_licenses_keeps_them_and_the_alert_says_so() {
    let (store, _d, token, key, ca) = site_with(
        &[("Lab", line("tag", 10, LicenseKind::Perpetual, None))],
        true,
    );
    let c = &mut *store.conn().unwrap();
    let pi = register(c, &key, &ca, &token, "SN-X");
    let t0 = SystemClock.now();
    diesel::sql_query(format!(
        "INSERT INTO export_requests (request_uuid, pi_id, tag, count, direction, state, \
         created_at, updated_at) SELECT 'r1', id, 'crypto', 1, 'request', 'delivered', {t0}, \
         {t0} FROM product_instances WHERE uuid = '{pi}'"
    ))
    .execute(c)
    .unwrap();
    // Silent for a month: the export-restricted Failed to Connect, major.
    evaluate(c, t0 + 32 * DAY).unwrap();
    let a = list(c, &Filter::default(), t0 + 32 * DAY).unwrap();
    assert_eq!(
        a.iter()
            .map(|a| (a.kind, a.severity.as_str()))
            .collect::<Vec<_>>(),
        vec![(AlertKind::PiFailedToConnectRestricted, "major")]
    );
    assert!(a[0].message.contains("restricted encryption technology"));
    evaluate(c, t0 + 91 * DAY).unwrap();
    let a = list(c, &Filter::default(), t0 + 91 * DAY).unwrap();
    assert_eq!(a.len(), 1);
    assert!(
        a[0].message.contains(
            "It is using licenses which enable restricted encryption technology, and those \
             licenses have not been released."
        ),
        "{}",
        a[0].message
    );
    // The restricted license is still held.
    assert_eq!(crate::db::export::held_by(c, 1, "crypto").unwrap(), 1);
}
