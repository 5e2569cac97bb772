//! What applying a sync response did (or, in a dry run, would do), and its one rendering
//! as text that the CLI and the console share.

/// One entitlement of one VA whose purchased quantity the response changes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LicenseChange {
    pub virtual_account: String,
    pub tag: String,
    pub name: String,
    pub before: i64,
    pub after: i64,
    /// "added", "removed", "expired" (found ended when the response was applied),
    /// "transferred in" or "transferred out" (moved between virtual accounts at the cloud).
    pub change: String,
}

/// A record the cloud refused; it stays pending and is sent again.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rejected {
    pub pi: String,
    pub record: String,
    pub reason: String,
}

/// What importing a response did (or, with `dry_run`, would do).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImportOutcome {
    /// "applied", "already-applied" or "dry-run".
    pub status: String,
    pub response_id: String,
    pub request_id: String,
    pub sequence: u64,
    pub acknowledged_change: u64,
    pub acknowledged_event: u64,
    pub virtual_accounts_added: Vec<String>,
    pub license_changes: Vec<LicenseChange>,
    pub license_lines: u64,
    pub rejected: Vec<Rejected>,
    /// The cloud's answers to export-controlled requests and returns.
    pub export_answers: Vec<crate::export::AnswerOutcome>,
    pub next_sync_due: String,
    /// Until when the satellite's new certificate, received with this response, is valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_renewed_until: Option<String>,
    /// The fingerprint of a new cloud CA this response made the satellite pin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud_ca_pinned: Option<String>,
    pub message: String,
}

impl ImportOutcome {
    /// Each license change as a line, for the CLI (the console shows them as a table:
    /// [`crate::report::license_changes_table`]).
    pub fn change_lines(&self) -> Vec<String> {
        self.license_changes
            .iter()
            .map(|c| {
                format!(
                    "{} {} in {}: {} -> {} ({})",
                    c.change, c.name, c.virtual_account, c.before, c.after, c.tag
                )
            })
            .collect()
    }

    /// Everything else it did, one sentence each, as the CLI and the console show it:
    /// virtual accounts added, records the cloud refused, answers to export requests and
    /// the next deadline.
    pub fn notes(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .virtual_accounts_added
            .iter()
            .map(|v| format!("Virtual account added: {v}"))
            .collect();
        out.extend(self.rejected.iter().map(|r| {
            format!(
                "Refused by the cloud, sent again at the next sync: {} {}: {}",
                r.pi, r.record, r.reason
            )
        }));
        out.extend(
            self.export_answers
                .iter()
                .filter(|a| a.result != "ignored")
                .map(|a| {
                    format!(
                        "Export {} {}: {} x {} for {}{}",
                        a.result,
                        a.request_id,
                        a.count,
                        a.tag,
                        a.pi,
                        a.reason
                            .as_deref()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
                    )
                }),
        );
        if let Some(fp) = &self.cloud_ca_pinned {
            out.push(format!(
                "The cloud rolled its CA over: {fp} is pinned; the one before stays trusted \
                 until it expires."
            ));
        }
        if let Some(until) = &self.certificate_renewed_until {
            out.push(format!(
                "New satellite certificate from the cloud, valid until {until}."
            ));
        }
        // Said once: the message of an applied response already gives the date.
        if self.status != "already-applied"
            && !self.next_sync_due.is_empty()
            && !self.message.contains(&self.next_sync_due)
        {
            out.push(format!("Next sync due by {}.", self.next_sync_due));
        }
        out
    }

    /// The whole outcome as text: the message, then each change and note indented.
    pub fn text(&self) -> String {
        let mut s = self.message.clone();
        for line in self.change_lines().iter().chain(&self.notes()) {
            s.push_str("\n  ");
            s.push_str(line);
        }
        s
    }
}
