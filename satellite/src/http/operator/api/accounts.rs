//! Operator accounts and API tokens over the operator API (admins manage accounts; every
//! operator manages their own API tokens).

use super::*;

pub(super) async fn users_list(state: web::Data<AppState>) -> Result<HttpResponse> {
    Ok(json(&db(&state, operators::list).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewUserBody {
    username: String,
    role: String,
    password: String,
}

pub(super) async fn user_add(
    state: web::Data<AppState>,
    Caller(who): Caller,
    body: Json<NewUserBody>,
) -> Result<HttpResponse> {
    let b = body.into_inner();
    let role = Role::parse(&b.role)?;
    let v = act(&state, &who, move |c, now, actor| {
        operators::add(c, &b.username, role, &b.password, now, actor)
    })
    .await?;
    Ok(HttpResponse::Created().json(v))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PasswordBody {
    password: String,
}

pub(super) async fn user_passwd(
    state: web::Data<AppState>,
    Caller(who): Caller,
    name: Path<String>,
    body: Json<PasswordBody>,
) -> Result<HttpResponse> {
    let name = name.into_inner();
    let pw = body.into_inner().password;
    Ok(json(
        &act(&state, &who, move |c, now, actor| {
            operators::passwd(c, &name, &pw, now, actor)
        })
        .await?,
    ))
}

pub(super) async fn user_remove(
    state: web::Data<AppState>,
    Caller(who): Caller,
    name: Path<String>,
) -> Result<HttpResponse> {
    let name = name.into_inner();
    act(&state, &who, move |c, now, actor| {
        operators::remove(c, &name, now, actor)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

pub(super) async fn api_tokens_list(
    state: web::Data<AppState>,
    Caller(who): Caller,
) -> Result<HttpResponse> {
    let (of, now) = (token_scope(&who), state.clock.now());
    Ok(json(
        &db(&state, move |c| operators::list_api_tokens(c, of, now)).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewApiTokenBody {
    #[serde(default)]
    description: String,
    days: Option<u32>,
}

pub(super) async fn api_token_create(
    state: web::Data<AppState>,
    Caller(who): Caller,
    body: Json<NewApiTokenBody>,
) -> Result<HttpResponse> {
    let b = body.into_inner();
    let name = who.username.clone();
    let t = act(&state, &who, move |c, now, actor| {
        operators::create_api_token(c, &name, &b.description, b.days, now, actor)
    })
    .await?;
    Ok(HttpResponse::Created().json(t))
}

pub(super) async fn api_token_revoke(
    state: web::Data<AppState>,
    Caller(who): Caller,
    id: Path<i64>,
) -> Result<HttpResponse> {
    let (id, of) = (id.into_inner(), token_scope(&who));
    act(&state, &who, move |c, now, actor| {
        operators::revoke_api_token(c, id, of, now, actor)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
