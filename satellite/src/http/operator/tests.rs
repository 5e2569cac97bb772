//! The operator routes through the real app factory: every route refuses anonymous and
//! under-privileged callers, sessions need their CSRF token, logins are limited.

use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::App;

use super::*;
use crate::config::Config;
use crate::db::Store;

struct Fixture {
    _dir: tempfile::TempDir,
    state: AppState,
    _writer: crate::db::writer::WriterThread,
    /// API tokens of an auditor, an operator and an admin.
    tokens: Vec<(Role, String)>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        (
            "SATELLITE_STORAGE_DATA_DIR".to_string(),
            dir.path().join("data").display().to_string(),
        ),
        ("SATELLITE_CONSOLE_LISTEN".to_string(), String::new()),
    ];
    let config = Config::load_from(None, &env).unwrap();
    let (store, _) = Store::open(&config.storage).unwrap();
    let clock = crate::clock::from_config(false, &store);
    crate::identity::ensure(&store, &config, clock.as_ref()).unwrap();
    let (writer, thread) = crate::db::writer::Writer::start(&store).unwrap();
    let now = clock.now();
    let mut tokens = Vec::new();
    {
        let conn = &mut *store.conn().unwrap();
        for role in Role::ALL {
            let name = format!("the-{role}");
            operators::add(conn, &name, role, "a long password", now, "test").unwrap();
            let t = operators::create_api_token(conn, &name, "", None, now, "test").unwrap();
            tokens.push((role, t.token));
        }
    }
    let state = AppState::new(std::sync::Arc::new(config), store, clock, writer).unwrap();
    Fixture {
        _dir: dir,
        state,
        _writer: thread,
        tokens,
    }
}

/// A concrete path for a route pattern.
fn concrete(path: &str) -> String {
    // Ids nobody has: a route let through must not revoke the tokens the test calls with.
    path.replace("{id}", "999999").replace("{name}", "nobody")
}

fn location(resp: &actix_web::dev::ServiceResponse) -> String {
    resp.headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

#[test]
fn every_operator_route_refuses_anonymous_and_underprivileged_callers() {
    actix_web::rt::System::new()
        .block_on(every_operator_route_refuses_anonymous_and_underprivileged_callers_async());
}

async fn every_operator_route_refuses_anonymous_and_underprivileged_callers_async() {
    let f = fixture();
    let app =
        test::init_service(App::new().configure(crate::http::configure(f.state.clone()))).await;
    let all = routes();
    assert!(all.len() > 50, "{} routes", all.len());

    // Only these are open, and only because a login page must be reachable.
    let open: Vec<String> = all
        .iter()
        .filter(|r| r.role.is_none())
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        open,
        [
            "GET /console/style.css",
            "GET /console/login",
            "POST /console/login"
        ]
    );

    // The auditor is read-only: whatever changes state needs an operator, except logging
    // out and the caller's own API tokens; accounts and registration need an admin.
    for r in &all {
        let what = format!("{} {}", r.method, r.path);
        let own = r.path.ends_with("/logout")
            || r.path.contains("api-tokens")
            || r.path.ends_with("/password")
                && (r.path.contains("/me/") || r.path.contains("/account/"));
        if r.method != Method::GET && r.role.is_some() && !own {
            assert!(r.role >= Some(Role::Operator), "{what}");
        }
        if r.path.contains("/users") || r.path.contains("/registration/") {
            assert!(
                r.role == Some(Role::Admin)
                    || r.method == Method::GET && r.path.ends_with("registration"),
                "{what}"
            );
        }
    }

    for r in all.iter().filter(|r| r.role.is_some()) {
        let needed = r.role.unwrap_or(Role::Admin);
        let path = concrete(r.path);
        let what = format!("{} {}", r.method, r.path);

        // Anonymous.
        let resp = test::call_service(
            &app,
            TestRequest::default()
                .method(r.method.clone())
                .uri(&path)
                .to_request(),
        )
        .await;
        match r.kind {
            Kind::Api => assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{what}"),
            Kind::Page => {
                assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{what}");
                assert!(location(&resp).starts_with("/console/login"), "{what}");
            }
        }

        // A forged session cookie and a made-up API token are anonymous too.
        for (k, v) in [
            ("cookie", format!("{SESSION_COOKIE}=forged")),
            ("authorization", "Bearer satop_0000".to_string()),
        ] {
            let resp = test::call_service(
                &app,
                TestRequest::default()
                    .method(r.method.clone())
                    .uri(&path)
                    .insert_header((k, v))
                    .to_request(),
            )
            .await;
            assert!(
                matches!(
                    resp.status(),
                    StatusCode::UNAUTHORIZED | StatusCode::SEE_OTHER
                ),
                "{what} with a forged {k}: {}",
                resp.status()
            );
        }

        // Each role: refused below the route's role, let through at or above it.
        for (role, token) in &f.tokens {
            let resp = test::call_service(
                &app,
                TestRequest::default()
                    .method(r.method.clone())
                    .uri(&path)
                    .insert_header(("authorization", format!("Bearer {token}")))
                    .to_request(),
            )
            .await;
            if *role < needed {
                assert_eq!(
                    resp.status(),
                    StatusCode::FORBIDDEN,
                    "{what} as {role}: {}",
                    location(&resp)
                );
            } else {
                assert!(
                    !matches!(
                        resp.status(),
                        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                    ),
                    "{what} as {role}: {}",
                    resp.status()
                );
            }
        }
    }
}

#[test]
fn browser_session_cookie_csrf_and_login_limit() {
    actix_web::rt::System::new().block_on(browser_session_cookie_csrf_and_login_limit_async());
}

async fn browser_session_cookie_csrf_and_login_limit_async() {
    let f = fixture();
    let app =
        test::init_service(App::new().configure(crate::http::configure(f.state.clone()))).await;
    let login = |pw: &str| {
        TestRequest::post()
            .uri("/console/login")
            .peer_addr("127.0.0.1:5000".parse().unwrap())
            .insert_header(("content-type", "application/x-www-form-urlencoded"))
            .set_payload(format!(
                "username=the-operator&password={}&next=%2Fconsole%2Ftokens",
                pw.replace(' ', "+")
            ))
            .to_request()
    };
    let resp = test::call_service(&app, login("a long password")).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), "/console/tokens");
    let cookie = resp
        .response()
        .cookies()
        .find(|c| c.name() == SESSION_COOKIE)
        .unwrap()
        .into_owned();
    assert!(cookie.name().starts_with("__Host-"));
    assert_eq!(cookie.path(), Some("/"));
    assert_eq!(cookie.domain(), None);
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(
        cookie.same_site(),
        Some(actix_web::cookie::SameSite::Strict)
    );

    // A filter the pages do not offer is refused with the reason, as the API refuses it.
    for (uri, said) in [
        (
            "/console/devices?status=gone",
            "unknown product instance status",
        ),
        ("/console/alerts?state=gone", "unknown alert state"),
    ] {
        let resp = test::call_service(
            &app,
            TestRequest::get()
                .uri(uri)
                .cookie(cookie.clone())
                .to_request(),
        )
        .await;
        let page = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
        assert!(
            page.contains(r#"class="flash error""#) && page.contains(said),
            "{uri}: {page}"
        );
    }

    // The page carries the session's CSRF token in its forms.
    let resp = test::call_service(
        &app,
        TestRequest::get()
            .uri("/console/tokens")
            .cookie(cookie.clone())
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let csp = resp.headers().get(header::CONTENT_SECURITY_POLICY).unwrap();
    assert!(csp.to_str().unwrap().contains("default-src 'self'"));
    let hsts = resp
        .headers()
        .get(header::STRICT_TRANSPORT_SECURITY)
        .unwrap();
    assert_eq!(hsts.to_str().unwrap(), "max-age=31536000");
    let page = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    let at = page.find(r#"name="csrf" value=""#).unwrap() + r#"name="csrf" value=""#.len();
    let csrf = &page[at..at + page[at..].find('"').unwrap()];

    // A form without the token, or with another, is refused and changes nothing.
    let tokens_before = crate::tokens::list(&mut f.state.store.conn().unwrap(), 0)
        .unwrap()
        .len();
    for body in [
        "virtual_account=x&days=30".to_string(),
        "csrf=0123&virtual_account=x&days=30".to_string(),
    ] {
        let resp = test::call_service(
            &app,
            TestRequest::post()
                .uri("/console/tokens")
                .cookie(cookie.clone())
                .insert_header(("content-type", "application/x-www-form-urlencoded"))
                .set_payload(body)
                .to_request(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    }
    // The API with a session needs the token in a header.
    let resp = test::call_service(
        &app,
        TestRequest::post()
            .uri("/api/v1/operator/alerts/check")
            .cookie(cookie.clone())
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = test::call_service(
        &app,
        TestRequest::post()
            .uri("/api/v1/operator/alerts/check")
            .cookie(cookie.clone())
            .insert_header((CSRF_HEADER, csrf))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        crate::tokens::list(&mut f.state.store.conn().unwrap(), 0)
            .unwrap()
            .len(),
        tokens_before
    );

    // Log out: the cookie opens nothing any more.
    let resp = test::call_service(
        &app,
        TestRequest::post()
            .uri("/console/logout")
            .cookie(cookie.clone())
            .insert_header(("content-type", "application/x-www-form-urlencoded"))
            .set_payload(format!("csrf={csrf}"))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let resp = test::call_service(
        &app,
        TestRequest::get()
            .uri("/console/")
            .cookie(cookie.clone())
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);

    // A login posted from another site is refused.
    let mut cross = login("a long password");
    cross.headers_mut().insert(
        header::HeaderName::from_static("sec-fetch-site"),
        HeaderValue::from_static("cross-site"),
    );
    let resp = test::call_service(&app, cross).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    // Five failures lock the account out, even for the right password.
    for _ in 0..operators::MAX_FAILURES {
        let resp = test::call_service(&app, login("wrong password")).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    let resp = test::call_service(&app, login("a long password")).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let page = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    assert!(page.contains("too many failed logins"), "{page}");

    // A login body beyond the cap of open routes is refused, whoever sends it.
    let big = TestRequest::post()
        .uri("/console/login")
        .peer_addr("127.0.0.2:5000".parse().unwrap())
        .insert_header(("content-type", "application/x-www-form-urlencoded"))
        .set_payload(vec![b'a'; super::OPEN_BODY_LIMIT + 1])
        .to_request();
    let resp = test::call_service(&app, big).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[test]
fn login_never_redirects_off_the_console() {
    actix_web::rt::System::new().block_on(login_never_redirects_off_the_console_async());
}

async fn login_never_redirects_off_the_console_async() {
    for bad in [
        "https://evil.example/",
        "//evil.example/x",
        "/console/\\evil",
        "/other",
    ] {
        assert_eq!(
            console::login_url(bad),
            "/console/login?next=%2Fconsole%2F",
            "{bad}"
        );
    }
}

/// `docs/operator-api.openapi.yaml` lists exactly the API routes, with their roles.
#[test]
fn the_openapi_file_lists_every_api_route_with_its_role() {
    let doc = include_str!("../../../../docs/operator-api.openapi.yaml");
    let mut documented = Vec::new();
    let (mut path, mut method) = (String::new(), String::new());
    for line in doc.lines() {
        if let Some(p) = line.strip_prefix("  /").and_then(|p| p.strip_suffix(':')) {
            path = format!("/api/v1/operator/{p}");
        } else if let Some(m) = line
            .strip_prefix("    ")
            .and_then(|m| m.strip_suffix(':'))
            .filter(|m| ["get", "post", "delete", "put", "patch"].contains(m))
        {
            method = m.to_ascii_uppercase();
        } else if let Some(role) = line.strip_prefix("      x-role: ") {
            documented.push(format!("{method} {path} {role}"));
        }
    }
    let mut served: Vec<String> = routes()
        .into_iter()
        .filter(|r| r.kind == Kind::Api)
        .map(|r| {
            let role = r.role.map(|r| r.to_string()).unwrap_or_default();
            format!("{} {} {role}", r.method, r.path)
        })
        .collect();
    documented.sort();
    served.sort();
    assert_eq!(documented, served);
}

/// Errors actix makes itself (an unknown route, a path or query parameter that does not
/// parse, a body over the limit) are the documented JSON, as the handlers' are.
#[test]
fn every_error_answer_is_the_documented_json() {
    actix_web::rt::System::new().block_on(every_error_answer_is_the_documented_json_async());
}

async fn every_error_answer_is_the_documented_json_async() {
    let f = fixture();
    let app = test::init_service(
        App::new()
            .wrap(
                actix_web::middleware::ErrorHandlers::new()
                    .default_handler(crate::http::errors::as_json),
            )
            .configure(crate::http::configure(f.state.clone())),
    )
    .await;
    let admin = f
        .tokens
        .iter()
        .find(|(r, _)| *r == Role::Admin)
        .map(|(_, t)| format!("Bearer {t}"))
        .unwrap();
    for (method, uri, status, code) in [
        ("GET", "/no/such/route", 404, "not_found"),
        ("GET", "/api/v1/devices/register", 404, "not_found"),
        ("GET", "/api/v1/operator/tokens/abc", 400, "invalid"),
        ("GET", "/api/v1/operator/events?limit=many", 400, "invalid"),
    ] {
        let req = TestRequest::default()
            .method(method.parse().unwrap())
            .uri(uri)
            .insert_header(("authorization", admin.as_str()))
            .to_request();
        let resp = test::call_service(&app, req).await;
        assert_eq!(resp.status().as_u16(), status, "{method} {uri}");
        let body: crate::http::errors::ErrorBody =
            serde_json::from_slice(&test::read_body(resp).await).unwrap_or_else(|e| {
                panic!("{method} {uri}: not the documented JSON: {e}");
            });
        assert_eq!(
            body.error.code, code,
            "{method} {uri}: {}",
            body.error.message
        );
        assert!(!body.error.message.is_empty());
    }
    // A raw body over the device listener's limit: actix's own 413, as the documented JSON.
    let req = TestRequest::post()
        .uri("/api/v1/devices/authorize")
        .set_payload(vec![b' '; 2 * 1024 * 1024])
        .to_request();
    let resp = test::call_service(&app, req).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: crate::http::errors::ErrorBody =
        serde_json::from_slice(&test::read_body(resp).await).unwrap();
    assert_eq!(body.error.code, "too_large", "{}", body.error.message);
}
