//! HTML for the console: escaping, the page frame and small building blocks. Every value
//! that reaches a page goes through [`esc`]; nothing is loaded from outside the satellite.

use std::fmt::Write as _;

use actix_web::http::StatusCode;
use actix_web::HttpResponse;

use crate::operators::{Principal, Role, Via};
use crate::report::Table;

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A message shown above a page's content.
pub enum Flash {
    Ok(String),
    Error(String),
}

/// The hidden CSRF field every form of a session carries.
pub fn csrf_field(who: &Principal) -> String {
    match &who.via {
        Via::Session { csrf, .. } => {
            format!(r#"<input type="hidden" name="csrf" value="{}">"#, esc(csrf))
        }
        Via::ApiToken(_) => String::new(),
    }
}

/// A form that posts to `action` with one button (and the CSRF field).
pub fn button(who: &Principal, action: &str, label: &str, class: &str) -> String {
    format!(
        r#"<form method="post" action="{}" class="inline">{}<button type="submit" class="{}">{}</button></form>"#,
        esc(action),
        csrf_field(who),
        esc(class),
        esc(label)
    )
}

/// A report table, each cell escaped; `extra` adds a last cell per row (already HTML).
pub fn table(t: &Table, id: &str, extra: Option<&dyn Fn(usize) -> String>) -> String {
    if t.rows.is_empty() {
        return r#"<p class="empty">Nothing to show.</p>"#.to_string();
    }
    let mut s = format!(r#"<table id="{}"><thead><tr>"#, esc(id));
    for h in &t.headers {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    if extra.is_some() {
        s.push_str("<th></th>");
    }
    s.push_str("</tr></thead><tbody>");
    for (i, row) in t.rows.iter().enumerate() {
        s.push_str("<tr>");
        for cell in row {
            let _ = write!(s, "<td>{}</td>", esc(cell));
        }
        if let Some(f) = extra {
            let _ = write!(s, "<td class=\"actions\">{}</td>", f(i));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
    s
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
    body: &str,
) -> HttpResponse {
    let mut s = String::with_capacity(body.len() + 2048);
    let _ = write!(
        s,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{} · satellite</title><link rel="stylesheet" href="/console/style.css"></head><body><header><span class="brand">satellite</span>"#,
        esc(title)
    );
    if let Some(who) = who {
        s.push_str("<nav>");
        for (href, label, role) in NAV {
            if who.role >= *role {
                let _ = write!(s, r#"<a href="{href}">{label}</a>"#);
            }
        }
        let _ = write!(
            s,
            r#"</nav><a class="who" id="who" href="/console/account">{} ({})</a>{}"#,
            esc(&who.username),
            who.role,
            button(who, "/console/logout", "Log out", "link")
        );
    }
    let _ = write!(s, "</header><main><h1>{}</h1>", esc(title));
    match flash {
        Some(Flash::Ok(m)) => {
            let _ = write!(s, r#"<p class="flash ok" id="flash">{}</p>"#, esc(&m));
        }
        Some(Flash::Error(m)) => {
            let _ = write!(
                s,
                r#"<p class="flash error" id="flash" role="alert">{}</p>"#,
                esc(&m)
            );
        }
        None => {}
    }
    s.push_str(body);
    s.push_str("</main></body></html>");
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(s)
}

pub const STYLE: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d2733;background:#f4f6f8}
header{display:flex;flex-wrap:wrap;align-items:center;gap:1em;background:#17324d;color:#fff;padding:.6em 1.2em}
header a{color:#d6e6f5;text-decoration:none;margin-right:.9em}header a:hover{color:#fff;text-decoration:underline}
.brand{font-weight:700;letter-spacing:.04em;margin-right:1em}.who{margin-left:auto;font-size:.9em}
main{padding:1em 1.6em;max-width:86em}h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;background:#fff;width:100%;margin:.5em 0 1em;font-size:.9em}
th,td{border:1px solid #d5dbe1;padding:.35em .55em;text-align:left;vertical-align:top}th{background:#e9eef3}
.flash{padding:.6em 1em;border-radius:4px}.ok{background:#e3f4e6;border:1px solid #8cc79a}
.error{background:#fbe5e5;border:1px solid #e09b9b}.empty{color:#66717d}
form.inline{display:inline}form.box{background:#fff;border:1px solid #d5dbe1;padding:1em;margin:.8em 0;max-width:40em}
label{display:block;margin:.4em 0 .15em}input[type=text],input[type=password],input[type=number],select{padding:.35em;min-width:18em}
button{padding:.35em .9em;margin:.2em .2em .2em 0;cursor:pointer;background:#1f5f99;color:#fff;border:0;border-radius:3px}
button.danger{background:#a33}button.link{background:none;color:#d6e6f5;text-decoration:underline;padding:0}
.cards{display:flex;flex-wrap:wrap;gap:1em}.card{background:#fff;border:1px solid #d5dbe1;padding:.8em 1.2em;min-width:12em}
.card .n{font-size:1.6em;font-weight:700}.major{color:#a33}.minor{color:#8a6100}
code.secret{display:block;background:#fff;border:1px dashed #1f5f99;padding:.6em;word-break:break-all}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<script>"a" & 'b'</script>"#),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
        let mut t = Table::new(&["Name"]);
        t.push(vec!["<b>x</b>".into()]);
        assert!(table(&t, "t", None).contains("&lt;b&gt;x&lt;/b&gt;"));
    }
}
