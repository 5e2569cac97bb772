//! Operator accounts (admins only): the list, adding one, setting a password, removing.

use actix_web::web::{self, Path};
use actix_web::HttpResponse;
use maud::html;

use super::frame::{self, button, csrf_field, Flash};
use super::{after, ok_page};
use crate::error::Result;
use crate::http::operator::{act, db, Caller, FormData};
use crate::http::AppState;
use crate::operators::{self, Principal, Role};
use crate::report;

async fn render(state: &AppState, who: &Principal, flash: Option<Flash>) -> Result<HttpResponse> {
    let list = db(state, operators::list).await?;
    let actions = |i: usize| {
        let u = &list[i];
        html! {
            form method="post" action=(format!("/console/users/{}/password", u.username)) class="inline" {
                (csrf_field(who))
                input type="password" name="password" placeholder="new password"
                    aria-label=(format!("new password for {}", u.username));
                button type="submit" { "Set password" }
            }
            (button(who, &format!("/console/users/{}/remove", u.username), "Remove", "danger"))
        }
    };
    let body = html! {
        (frame::table(&report::users_table(&list), "users", Some(&actions)))
        h2 { "Add an account" }
        form method="post" action="/console/users" class="box" id="user-form" {
            (csrf_field(who))
            label for="u-name" { "User name" }
            input type="text" id="u-name" name="username" required;
            label for="u-role" { "Role" }
            select id="u-role" name="role" {
                option value="auditor" { "auditor: reads everything" }
                option value="operator" { "operator: also tokens, devices, alerts, sync" }
                option value="admin" { "admin: also accounts and registration" }
            }
            label for="u-password" {
                "Password (" (operators::MIN_PASSWORD) " characters or more)"
            }
            input type="password" id="u-password" name="password" required;
            p { button type="submit" id="add-user" { "Add" } }
        }
    };
    Ok(ok_page("Users", who, flash, body))
}

pub(super) async fn page(state: web::Data<AppState>, Caller(who): Caller) -> Result<HttpResponse> {
    render(&state, &who, None).await
}

pub(super) async fn add(
    state: web::Data<AppState>,
    Caller(who): Caller,
    form: FormData,
) -> Result<HttpResponse> {
    let r = async {
        let name = form.required("username")?.to_string();
        let role = Role::parse(form.required("role")?)?;
        let pw = form.field("password").unwrap_or("").to_string();
        let v = act(&state, &who, move |c, now, actor| {
            operators::add(c, &name, role, &pw, now, actor)
        })
        .await?;
        Ok(format!(
            "Account {} added with the role {}.",
            v.username, v.role
        ))
    }
    .await;
    after(r, |f| render(&state, &who, f)).await
}

pub(super) async fn passwd(
    state: web::Data<AppState>,
    Caller(who): Caller,
    name: Path<String>,
    form: FormData,
) -> Result<HttpResponse> {
    let name = name.into_inner();
    let pw = form.field("password").unwrap_or("").to_string();
    let r = act(&state, &who, move |c, now, actor| {
        operators::passwd(c, &name, &pw, now, actor)
    })
    .await
    .map(|v| {
        format!(
            "The password of {} was changed; its sessions ended.",
            v.username
        )
    });
    after(r, |f| render(&state, &who, f)).await
}

pub(super) async fn remove(
    state: web::Data<AppState>,
    Caller(who): Caller,
    name: Path<String>,
) -> Result<HttpResponse> {
    let name = name.into_inner();
    let shown = name.clone();
    let r = act(&state, &who, move |c, now, actor| {
        operators::remove(c, &name, now, actor)
    })
    .await
    .map(|()| format!("Account {shown} removed."));
    after(r, |f| render(&state, &who, f)).await
}
