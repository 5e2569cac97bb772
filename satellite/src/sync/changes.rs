//! What a sync response changed in the license pools, told with seed 001's event texts: lines
//! added or removed, licenses transferred between two virtual accounts, virtual accounts
//! added.

use diesel::SqliteConnection;

use super::outcome::{ImportOutcome, LicenseChange};
use crate::catalogue::EventKind;
use crate::db::events;
use crate::error::Result;

/// Quantity not yet ended per (VA, tag), with the license's name.
pub(super) type Totals = std::collections::BTreeMap<(String, String), (String, i64)>;

/// Logs and reports the changes from `before` to `after` (and the virtual accounts the
/// outcome says were added). In the transaction that applies the response.
pub(super) fn log(
    conn: &mut SqliteConnection,
    at: i64,
    before: &Totals,
    after: &Totals,
    outcome: &mut ImportOutcome,
) -> Result<()> {
    // What changed, with the seeds' event texts. A tag that left one virtual account and
    // joined another by the same count in one response was transferred between them.
    let keys: std::collections::BTreeSet<_> = before.keys().chain(after.keys()).cloned().collect();
    let mut changed: Vec<Moved> = Vec::new();
    for key in keys {
        let (name_b, qty_b) = before.get(&key).cloned().unwrap_or_default();
        let (name_a, qty_a) = after.get(&key).cloned().unwrap_or_default();
        if qty_a != qty_b {
            let name = if name_a.is_empty() { name_b } else { name_a };
            changed.push(Moved {
                va: key.0,
                tag: key.1,
                name,
                before: qty_b,
                after: qty_a,
                transfer: None,
            });
        }
    }
    pair_transfers(&mut changed);
    for c in changed {
        let delta = c.after - c.before;
        let (kind, change, message) = match &c.transfer {
            Some(from) if delta > 0 => (
                EventKind::LicensesTransferred,
                "transferred in",
                Some(format!(
                    "{delta} {} licenses were transferred from the Virtual Account \"{from}\" \
                     to the Virtual Account \"{}\".",
                    c.name, c.va
                )),
            ),
            // The other half of a transfer: one event says it, at the receiving end.
            Some(_) => (EventKind::LicensesTransferred, "transferred out", None),
            None if delta > 0 => (
                EventKind::LicensesAdded,
                "added",
                Some(format!(
                    "{delta} new {} licenses were added to the Virtual Account \"{}\".",
                    c.name, c.va
                )),
            ),
            None => (
                EventKind::LicensesRemoved,
                "removed",
                Some(format!(
                    "{} \"{}\" licenses were removed from the Virtual Account \"{}\".",
                    -delta, c.name, c.va
                )),
            ),
        };
        if let Some(message) = message {
            events::append(
                conn,
                at,
                &events::NewEvent {
                    va_name: Some(&c.va),
                    license_tag: Some(&c.tag),
                    message,
                    actor: "system",
                    ..events::NewEvent::of(kind)
                },
            )?;
        }
        outcome.license_changes.push(LicenseChange {
            virtual_account: c.va,
            tag: c.tag,
            name: c.name,
            before: c.before,
            after: c.after,
            change: change.into(),
        });
    }
    for va in &outcome.virtual_accounts_added {
        events::append(
            conn,
            at,
            &events::NewEvent {
                va_name: Some(va),
                message: format!("The Virtual Account \"{va}\" was added to this satellite."),
                actor: "system",
                ..events::NewEvent::of(EventKind::VirtualAccountAdded)
            },
        )?;
    }
    Ok(())
}

/// A license pool of one virtual account and tag that a response changed.
struct Moved {
    va: String,
    tag: String,
    name: String,
    before: i64,
    after: i64,
    /// When it is half of a transfer: the other virtual account.
    transfer: Option<String>,
}

/// Pairs decreases and increases of one tag by the same count in two virtual accounts:
/// licenses transferred between them at the cloud.
fn pair_transfers(changed: &mut [Moved]) {
    for i in 0..changed.len() {
        if changed[i].transfer.is_some() || changed[i].after >= changed[i].before {
            continue;
        }
        let out = changed[i].before - changed[i].after;
        let partner = (0..changed.len()).find(|&j| {
            let c = &changed[j];
            c.transfer.is_none() && c.tag == changed[i].tag && c.after - c.before == out
        });
        if let Some(j) = partner {
            changed[j].transfer = Some(changed[i].va.clone());
            changed[i].transfer = Some(changed[j].va.clone());
        }
    }
}
