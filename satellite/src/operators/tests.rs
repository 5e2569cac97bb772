use super::*;

/// A login as the console does it: the password checked, then the session opened.
fn login(conn: &mut SqliteConnection, user: &str, password: &str, now: i64) -> Result<Session> {
    let row = authenticate(conn, user, password)?;
    open_session(conn, &row, now)
}

fn store() -> (tempfile::TempDir, crate::db::Store) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::config::Config::load_from(None, &[]).unwrap();
    let mut storage = cfg.storage.clone();
    storage.data_dir = dir.path().join("data");
    let (store, _) = crate::db::Store::open(&storage).unwrap();
    (dir, store)
}

#[test]
fn roles_are_ordered_and_parsed() {
    assert!(Role::Admin > Role::Operator && Role::Operator > Role::Auditor);
    assert_eq!(Role::parse("operator").unwrap(), Role::Operator);
    assert!(Role::parse("root")
        .unwrap_err()
        .to_string()
        .contains("auditor"));
}

#[test]
fn bootstrap_once_then_login_sessions_and_tokens() {
    let (_d, store) = store();
    let conn = &mut *store.conn().unwrap();
    let b = bootstrap(conn, "", 100).unwrap().unwrap();
    let pw = b.generated.unwrap();
    assert_eq!(pw.len(), 20);
    assert!(
        bootstrap(conn, "", 100).unwrap().is_none(),
        "only at first start"
    );

    let err = login(conn, "admin", "wrong password", 100).unwrap_err();
    assert!(matches!(err, Error::Unauthorized(_)));
    let err2 = login(conn, "nobody", "wrong password", 100).unwrap_err();
    assert_eq!(
        err.to_string(),
        err2.to_string(),
        "no hint which one was wrong"
    );

    let s = login(conn, "admin", &pw, 100).unwrap();
    assert_eq!(s.principal.role, Role::Admin);
    assert!(by_session(conn, &s.secret, 101).unwrap().is_some());
    assert!(by_session(conn, &s.secret, 100 + SESSION_SECONDS)
        .unwrap()
        .is_none());
    assert!(by_session(conn, "forged", 101).unwrap().is_none());

    add(
        conn,
        "audit",
        Role::Auditor,
        "auditor-password",
        100,
        "cli:x",
    )
    .unwrap();
    let t = create_api_token(conn, "audit", "reports", Some(1), 100, "cli:x").unwrap();
    let p = by_api_token(conn, &t.token, 200).unwrap().unwrap();
    assert_eq!((p.username.as_str(), p.role), ("audit", Role::Auditor));
    assert!(p.require(Role::Operator).is_err());
    assert!(
        by_api_token(conn, &t.token, 100 + 86_400)
            .unwrap()
            .is_none(),
        "expired"
    );
    revoke_api_token(conn, t.info.id, None, 300, "cli:x").unwrap();
    assert!(
        by_api_token(conn, &t.token, 300).unwrap().is_none(),
        "revoked"
    );

    assert!(matches!(
        change_own_password(conn, "admin", "wrong one!!", "x-long-enough", 400, "t"),
        Err(Error::Invalid(_))
    ));
    // A new password ends sessions; the last admin cannot be removed.
    passwd(conn, "admin", "another-password", 400, "cli:x").unwrap();
    assert!(by_session(conn, &s.secret, 401).unwrap().is_none());
    assert!(matches!(
        remove(conn, "admin", 400, "cli:x").unwrap_err(),
        Error::Conflict(_)
    ));
    remove(conn, "audit", 400, "cli:x").unwrap();
    assert!(list(conn).unwrap().iter().all(|o| o.username == "admin"));
}

#[test]
fn configured_password_or_hash() {
    let (_d, store) = store();
    let conn = &mut *store.conn().unwrap();
    assert!(bootstrap(conn, "short", 1).is_err());
    assert_eq!(db::count(conn).unwrap(), 0, "nothing stored on a refusal");
    let hash = hash_password("configured-secret").unwrap();
    assert!(bootstrap(conn, &hash, 1)
        .unwrap()
        .unwrap()
        .generated
        .is_none());
    assert!(login(conn, "admin", "configured-secret", 2).is_ok());
}

#[test]
fn attempts_lock_out_for_the_window() {
    let l = LoginLimiter::default();
    let keys = vec!["user:admin".to_string(), "ip:1".to_string()];
    for _ in 0..MAX_FAILURES {
        l.attempt(&keys, 10).unwrap();
    }
    let e = l.attempt(&keys, 11).unwrap_err();
    assert!(e.to_string().contains("try again in 299 s"), "{e}");
    l.attempt(&keys, 10 + LOCKOUT_SECONDS).unwrap();
    assert!(l.attempt(&["user:other".to_string()], 11).is_ok());
}

#[test]
fn attempts_at_once_never_check_more_than_the_limit() {
    let l = std::sync::Arc::new(LoginLimiter::default());
    let keys = vec!["user:admin".to_string(), "ip:1".to_string()];
    let passed: u32 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..40)
            .map(|_| {
                let (l, keys) = (l.clone(), keys.clone());
                s.spawn(move || u32::from(l.attempt(&keys, 10).is_ok()))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(passed, MAX_FAILURES);
    // A success gives the address its attempt back and clears the account.
    l.succeeded(&keys);
    l.attempt(&["user:admin".to_string()], 10).unwrap();
    l.attempt(&["ip:1".to_string()], 10).unwrap();
    assert!(l.attempt(&["ip:1".to_string()], 10).is_err());
}
