//! The console's page frame and small building blocks, as maud templates: every value is
//! escaped by the template engine (`(value)` in a template); nothing is loaded from outside
//! the satellite.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use maud::{html, Markup, DOCTYPE};

use crate::operators::{Principal, Role, Via};
use crate::report::Table;

/// The stylesheet, served at `/console/style.css`.
pub const STYLE: &str = include_str!("style.css");

/// A message shown above a page's content.
pub enum Flash {
    Ok(String),
    Error(String),
}

/// The hidden CSRF field every form of a session carries.
pub fn csrf_field(who: &Principal) -> Markup {
    html! {
        @if let Via::Session { csrf, .. } = &who.via {
            input type="hidden" name="csrf" value=(csrf);
        }
    }
}

/// A form that posts to `action` with one button (and the CSRF field).
pub fn button(who: &Principal, action: &str, label: &str, class: &str) -> Markup {
    html! {
        form method="post" action=(action) class="inline" {
            (csrf_field(who))
            button type="submit" class=(class) { (label) }
        }
    }
}

/// A report table; `actions` adds a last cell per row.
pub fn table(t: &Table, id: &str, actions: Option<&dyn Fn(usize) -> Markup>) -> Markup {
    html! {
        @if t.rows.is_empty() {
            p class="empty" { "Nothing to show." }
        } @else {
            table id=(id) {
                thead { tr {
                    @for h in &t.headers { th { (h) } }
                    @if actions.is_some() { th {} }
                } }
                tbody {
                    @for (i, row) in t.rows.iter().enumerate() {
                        tr {
                            @for cell in row { td { (cell) } }
                            @if let Some(f) = actions { td class="actions" { (f(i)) } }
                        }
                    }
                }
            }
        }
    }
}

/// A two-column table of named values (`id` on the table; an optional `id` per value).
pub fn facts(id: &str, rows: &[(&str, Option<&str>, String)]) -> Markup {
    html! {
        table id=(id) {
            @for (label, cell_id, value) in rows {
                tr { th { (label) } td id=[cell_id] { (value) } }
            }
        }
    }
}

/// The text shown for a value that is not there.
/// Where a long list is: "Page N of M" between links to the pages before and after, each
/// the same list (`path` with the `filters` that have a value) at another `page`.
pub fn pager(
    path: &str,
    filters: &[(&str, &Option<String>)],
    page: i64,
    pages: i64,
    (before, after): (&str, &str),
) -> Markup {
    let link = |n: i64| {
        let mut params = vec![("page", n.to_string())];
        for (k, v) in filters {
            if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                params.push((k, v.clone()));
            }
        }
        format!(
            "{path}?{}",
            serde_urlencoded::to_string(&params).unwrap_or_default()
        )
    };
    html! {
        nav.pager aria-label="pages" {
            @if page > 1 {
                a href=(link(page - 1)) rel="prev" { (before) } " "
            }
            "Page " (page) " of " (pages)
            @if page < pages {
                " " a href=(link(page + 1)) rel="next" { (after) }
            }
        }
    }
}

/// How many pages of `per_page` rows `total` rows take (one at least).
pub fn pages(total: i64, per_page: i64) -> i64 {
    ((total + per_page - 1) / per_page).max(1)
}

pub fn or_dash(v: Option<&str>) -> String {
    v.unwrap_or("—").to_string()
}

const NAV: &[(&str, &str, Role)] = &[
    ("/console/", "Dashboard", Role::Auditor),
    ("/console/accounts", "Virtual accounts", Role::Auditor),
    ("/console/tokens", "Tokens", Role::Auditor),
    ("/console/devices", "Product instances", Role::Auditor),
    ("/console/alerts", "Alerts", Role::Auditor),
    ("/console/events", "Event log", Role::Auditor),
    ("/console/sync", "Sync", Role::Auditor),
    ("/console/registration", "Registration", Role::Auditor),
    ("/console/api-tokens", "API tokens", Role::Auditor),
    ("/console/users", "Users", Role::Admin),
];

/// A whole page: header with navigation (for a logged-in operator), the flash message and
/// the content.
pub fn page(
    status: StatusCode,
    title: &str,
    who: Option<&Principal>,
    flash: Option<Flash>,
    body: Markup,
) -> HttpResponse {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · satellite" }
                link rel="stylesheet" href="/console/style.css";
            }
            body {
                header {
                    span class="brand" { "satellite" }
                    @if let Some(who) = who {
                        nav {
                            @for (href, label, role) in NAV {
                                @if who.role >= *role { a href=(href) { (label) } }
                            }
                        }
                        a class="who" id="who" href="/console/account" {
                            (who.username) " (" (who.role) ")"
                        }
                        (button(who, "/console/logout", "Log out", "link"))
                    }
                }
                main {
                    h1 { (title) }
                    @match flash {
                        Some(Flash::Ok(m)) => p class="flash ok" id="flash" { (m) },
                        Some(Flash::Error(m)) => p class="flash error" id="flash" role="alert" { (m) },
                        None => {},
                    }
                    (body)
                }
            }
        }
    };
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(page.into_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_by_the_templates() {
        let mut t = Table::new(&["Name"]);
        t.push(vec![r#"<script>"a" & 'b'</script>"#.into()]);
        let s = table(&t, "t", None).into_string();
        assert!(
            s.contains("&lt;script&gt;&quot;a&quot; &amp; 'b'&lt;/script&gt;"),
            "{s}"
        );
        let s = facts("f", &[("Name", Some("n"), "<b>x</b>".into())]).into_string();
        assert!(s.contains(r#"<td id="n">&lt;b&gt;x&lt;/b&gt;</td>"#), "{s}");
    }
}
