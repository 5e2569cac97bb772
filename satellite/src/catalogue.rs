//! The catalogue of what the satellite tells its operators: every alert (its type as seed
//! 001 names it, its severity, whether an operator may dismiss it) and every event kind of
//! the log (with seed 001's text, the blanks in angle brackets). docs/alerts-and-events.md
//! lists exactly these; a test below holds the two together.
//!
//! A leaf: it imports nothing of the crate but the vocabulary macro, so `db` can store
//! these types.

use crate::states::text_enum;

text_enum! {
    /// The severity of an alert, most urgent first.
    Severity {
        Major => "major",
        Minor => "minor",
        Informational => "informational",
    }
}

text_enum! {
    /// The type of an alert, by the name seed 001 gives it (which is also its column text).
    AlertKind {
        InsufficientLicenses => "Insufficient Licenses",
        LicensesExpiring => "Licenses Expiring",
        LicensesExpired => "Licenses Expired",
        PiFailedToConnect => "Product Instance Failed to Connect",
        PiFailedToRenew => "Product Instance Failed to Renew",
        PiFailedToConnectRestricted => "Product Instance Failed to Connect (Export Restricted)",
        RestrictedNotAvailable => "Restricted License Not Available",
        SyncUpcoming => "Upcoming Sync Deadline (30 Day)",
        SyncOverdue => "Synchronization Overdue",
        SatelliteRemoved => "Satellite Unregistered and Removed",
        SyncFailed => "Synchronization Failed",
        AuthorizationPending => "Authorization Pending",
        ClockBackwards => "System Clock Moved Backwards",
        CertificateExpiring => "Satellite Certificate Expiring",
        CertificateExpiringSoon => "Satellite Certificate Expiring (14 Day)",
    }
}

impl AlertKind {
    pub fn severity(self) -> Severity {
        use AlertKind::*;
        match self {
            InsufficientLicenses
            | PiFailedToRenew
            | PiFailedToConnectRestricted
            | SyncOverdue
            | SatelliteRemoved
            | SyncFailed
            | ClockBackwards
            | CertificateExpiringSoon => Severity::Major,
            LicensesExpiring | LicensesExpired | PiFailedToConnect | SyncUpcoming
            | CertificateExpiring => Severity::Minor,
            RestrictedNotAvailable | AuthorizationPending => Severity::Informational,
        }
    }

    /// Why an operator cannot dismiss it, if they cannot: it ends with its condition.
    pub fn not_dismissable(self) -> Option<&'static str> {
        use AlertKind::*;
        match self {
            InsufficientLicenses => Some(
                "it clears itself when the virtual account is compliant again (seed 001: it \
                 cannot be dismissed by hand)",
            ),
            SyncUpcoming | SyncOverdue | SatelliteRemoved => {
                Some("it clears itself at the next successful synchronization")
            }
            CertificateExpiring | CertificateExpiringSoon => {
                Some("it clears itself when a sync brings the renewed certificate")
            }
            AuthorizationPending => {
                Some("it clears itself when the authorization file is imported")
            }
            _ => None,
        }
    }
}

/// The event kinds: `$variant => "kind", "seed 001's text"`.
macro_rules! events {
    ($($(#[$vmeta:meta])* $variant:ident => $text:literal, $seed:literal;)+) => {
        text_enum! {
            /// The kind of an event in the log.
            EventKind {
                $($(#[$vmeta])* $variant => $text),+
            }
        }

        impl EventKind {
            /// The event's message as seed 001 writes it, the blanks in angle brackets.
            pub fn seed_text(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $seed),+
                }
            }
        }
    };
}

events! {
    LicensesAdded => "licenses_added",
        "<n> new <license> licenses were added to the Virtual Account \"<VA>\".";
    LicensesRemoved => "licenses_removed",
        "<n> \"<license>\" licenses were removed from the Virtual Account \"<VA>\".";
    LicensesExpired => "licenses_expired",
        "<n> \"<license>\" licenses expired and were removed from the Virtual Account \"<VA>\".";
    LicensesTransferred => "licenses_transferred",
        "<n> <license> licenses were transferred from the Virtual Account \"<from>\" to the Virtual Account \"<to>\".";
    VirtualAccountAdded => "virtual_account_added",
        "The Virtual Account \"<VA>\" was added to this satellite.";
    InsufficientLicenses => "insufficient_licenses",
        "The Virtual Account \"<VA>\" reported a shortage of <n> <license> licenses.";
    PiNew => "pi_new",
        "The product instance <name> connected and was added to the Virtual Account \"<VA>\".";
    PiTransferred => "pi_transferred",
        "The product instance <name> was transferred from the Virtual Account \"<from>\" to the Virtual Account \"<to>\".";
    PiReregisterAllowed => "pi_reregister_allowed",
        "The product instance <name> may register again without its current key until <time>.";
    PiRemoved => "pi_removed",
        "The product instance \"<name>\" was removed from Smart Software Manager.";
    PiRemovedInactive => "pi_removed_inactive",
        "The product instance \"<name>\" in the Virtual Account \"<VA>\" did not connect for a year and was removed automatically; its licenses were released.";
    PiRequestedLicense => "pi_requested_license",
        "The product instance <name> in the Virtual Account \"<VA>\" requested <n> \"<license>\".";
    PiRenewedCertificate => "pi_renewed_certificate",
        "The product instance <name> in the Virtual Account \"<VA>\" connected and successfully renewed its identity certificate.";
    PiFailedToConnect => "pi_failed_to_connect",
        "The product instance <name> in the Virtual Account \"<VA>\" failed to connect for its renewal period.";
    PiFailedToRenew => "pi_failed_to_renew",
        "The product instance \"<name>\" in the Virtual Account \"<VA>\" failed to connect during its renewal period and may be running in a degraded state. The licenses it was consuming have been released for use by other product instances.";
    ExportSuccess => "export_authorization_success",
        "Export restricted licenses were assigned to product instance \"<name>\" in Virtual Account \"<VA>\". Licenses: <licenses> licenses.";
    ExportFailure => "export_authorization_failure",
        "Export authorization failed for the product instance \"<name>\" in Virtual Account \"<VA>\": <reason>. Licenses: <licenses>.";
    ExportReleased => "export_authorization_released",
        "Export restricted licenses were removed from product instance \"<name>\" in Virtual Account \"<VA>\" and released back to the inventory for use by other product instances. Licenses: <licenses>.";
    TokenCreated => "token_created",
        "A product instance registration token (<hint>...) was created for the Virtual Account \"<VA>\", valid until <time>.";
    TokenRevoked => "token_revoked",
        "The product instance registration token (<hint>...) of the Virtual Account \"<VA>\" was revoked.";
    TokenRemoved => "token_removed",
        "The revoked product instance registration token (<hint>...) of the Virtual Account \"<VA>\" was removed.";
    OperatorAccount => "operator_account",
        "<what an administrator did to an operator account or API token>.";
    AlertAction => "alert_action",
        "The alert \"<type>\" was dismissed: <message> (or: is hidden until <time>: <message>)";
    SatelliteRegistered => "satellite_registered",
        "The satellite \"<name>\" was registered to the Smart Account \"<account>\" with the Virtual Accounts <VAs>.";
    SatelliteRemoved => "satellite_removed",
        "The satellite \"<name>\" failed to synchronize in 90 days and has been removed. Its data is kept; register it again to restore service.";
    SatelliteRemovedByCloud => "satellite_removed_by_cloud",
        "The satellite \"<name>\" was removed by the cloud at <time>: <reason>. Its data is kept; register it again to restore service.";
    SatelliteSyncOverdue => "satellite_sync_overdue",
        "Satellite has not synchronized within the expected time period.";
    SatelliteSynchronizedFile => "satellite_synchronized_file",
        "The satellite \"<name>\" synchronized with the cloud by file: <n> license lines, <n> records refused by the cloud.";
    SatelliteSynchronizedNetwork => "satellite_synchronized_network",
        "The satellite \"<name>\" synchronized with the cloud via network: <n> license lines, <n> records refused by the cloud.";
    CloudCaRolledOver => "cloud_ca_rolled_over",
        "The cloud's CA <fingerprint> is pinned in place of <fingerprint>, which stays trusted until it expires at <time>.";
    SatelliteCertificateRenewed => "satellite_certificate_renewed",
        "The satellite \"<name>\" received a new certificate from the cloud, valid until <time>.";
    SatelliteSyncFailed => "satellite_sync_failed",
        "Synchronization with the cloud failed (attempt <n> in a row): <reason>. The next attempt is at <time>.";
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rows of the first table under `heading` in the docs: first cell, second cell.
    fn table_after(doc: &str, heading: &str) -> Vec<(String, String)> {
        let start = doc.find(heading).expect("heading in the docs");
        doc[start..]
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
            .map(|l| {
                let cells: Vec<&str> = l.trim_matches('|').split(" | ").collect();
                (
                    cells[0].trim().trim_matches('`').to_string(),
                    cells.get(1).unwrap_or(&"").trim().to_string(),
                )
            })
            .collect()
    }

    const DOC: &str = include_str!("../../docs/alerts-and-events.md");

    #[test]
    fn the_docs_list_exactly_the_catalogues_alerts_with_their_severity() {
        let documented = table_after(DOC, "## Alerts");
        let catalogue: Vec<(String, String)> = AlertKind::ALL
            .iter()
            .map(|k| (k.as_str().to_string(), k.severity().to_string()))
            .collect();
        assert_eq!(documented, catalogue);
    }

    #[test]
    fn the_docs_list_exactly_the_catalogues_events_with_their_seed_text() {
        let documented = table_after(DOC, "## The event log");
        let catalogue: Vec<(String, String)> = EventKind::ALL
            .iter()
            .map(|k| (k.as_str().to_string(), format!("`{}`", k.seed_text())))
            .collect();
        assert_eq!(documented, catalogue);
    }

    #[test]
    fn kinds_read_back_from_their_text() {
        for &k in AlertKind::ALL {
            assert_eq!(AlertKind::parse(k.as_str()), Some(k));
        }
        for &k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
            assert!(!k.seed_text().is_empty());
        }
        assert_eq!(Severity::choices(), "major, minor or informational");
    }
}
