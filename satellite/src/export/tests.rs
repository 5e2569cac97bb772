use super::*;
use crate::clock::{Clock, SystemClock};
use crate::db::devices as dbd;
use crate::devices::tests::{register, site_with};
use diesel::Connection;
use sync_format::payload::{LicenseKind, LicenseLine};

const HSEC: &str = "regid.hsec";

fn line(tag: &str, name: &str, qty: i64, restricted: bool) -> LicenseLine {
    LicenseLine {
        tag: tag.into(),
        name: name.into(),
        description: String::new(),
        kind: LicenseKind::Perpetual,
        quantity: qty,
        start: None,
        end: None,
        restricted,
    }
}

struct T {
    store: crate::db::Store,
    _dir: tempfile::TempDir,
    token: String,
    key: crate::identity::TokenKey,
    ca: crate::identity::DeviceCa,
    counter: i64,
}

impl T {
    fn new() -> T {
        let (store, dir, token, key, ca) = site_with(
            &[
                ("Ops", line(HSEC, "HSECK9", 2, true)),
                ("Ops", line("regid.plain", "Plain", 5, false)),
                ("Lab", line(HSEC, "HSECK9", 1, true)),
            ],
            true,
        );
        T {
            store,
            _dir: dir,
            token,
            key,
            ca,
            counter: 0,
        }
    }
    fn conn(&self) -> crate::db::Conn {
        self.store.conn().unwrap()
    }
    fn device(&self, sn: &str) -> String {
        register(&mut self.conn(), &self.key, &self.ca, &self.token, sn)
    }
    fn ask(&mut self, pi: &str, tag: &str, count: i64) -> Result<Queued> {
        self.counter += 1;
        let r = ExportRequest {
            pi_id: pi.into(),
            counter: self.counter,
            tag: tag.into(),
            count,
        };
        r.validate()?;
        let now = SystemClock.now();
        self.conn().transaction(|c| request(c, &r, now))
    }
    fn give_back(&mut self, pi: &str, tag: &str) -> Result<Queued> {
        self.counter += 1;
        let r = ExportReturn {
            pi_id: pi.into(),
            counter: self.counter,
            tag: tag.into(),
        };
        let now = SystemClock.now();
        self.conn().transaction(|c| give_back(c, &r, now))
    }
    fn answer(&self, q: &Queued, status: ExportStatus, code: Option<&str>) -> AnswerOutcome {
        let a = ExportAnswer {
            id: q.request_id.clone(),
            status,
            pi: q.pi_id.clone(),
            tag: q.tag.clone(),
            count: q.count,
            reason_code: code.map(str::to_string),
            reason: code.map(|c| format!("because {c}")),
            license_name: "HSECK9".into(),
            license_kind: "perpetual".into(),
        };
        let now = SystemClock.now();
        self.conn()
            .transaction(|c| apply_answer(c, &a, now))
            .unwrap()
    }
    fn in_use(&self, va: &str, tag: &str) -> i64 {
        let mut c = self.conn();
        let va = pools::va_id(&mut c, va).unwrap().unwrap();
        dbd::totals(&mut c, va, tag).unwrap().0
    }
    fn state(&self, id: &str) -> String {
        db::by_uuid(&mut self.conn(), id)
            .unwrap()
            .unwrap()
            .state
            .to_string()
    }
    fn pi(&self, uuid: &str) -> PiRow {
        dbd::by_uuid(&mut self.conn(), uuid).unwrap().unwrap()
    }
}

#[test]
fn a_request_is_queued_granted_delivered_and_returned() {
    let mut t = T::new();
    let a = t.device("A");
    let q = t.ask(&a, HSEC, 2).unwrap();
    assert_eq!(q.status, "pending");
    assert_eq!(t.state(&q.request_id), "queued");
    // Not consumed before the cloud grants it.
    assert_eq!(t.in_use("Ops", HSEC), 0);
    let again = t.ask(&a, HSEC, 1).unwrap_err();
    assert!(again.to_string().contains("already waiting"), "{again}");

    assert_eq!(t.answer(&q, ExportStatus::Granted, None).result, "granted");
    assert_eq!(t.state(&q.request_id), "granted");
    assert_eq!(t.in_use("Ops", HSEC), 2);
    // The same answer again changes nothing.
    assert_eq!(t.answer(&q, ExportStatus::Granted, None).result, "ignored");
    assert_eq!(t.in_use("Ops", HSEC), 2);

    // The device is told once it connects, and the grant is delivered.
    let pi = t.pi(&a);
    let told = deliver(&mut t.conn(), &pi, SystemClock.now()).unwrap();
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].status, "GRANTED");
    assert_eq!(t.state(&q.request_id), "delivered");

    // A return stays consumed until the cloud acknowledges it.
    let r = t.give_back(&a, HSEC).unwrap();
    assert_eq!(r.direction, ExportDirection::Return);
    assert_eq!(t.in_use("Ops", HSEC), 2);
    let told = deliver(&mut t.conn(), &pi, SystemClock.now()).unwrap();
    assert_eq!(told[0].status, "RETURN_PENDING");
    assert!(t.give_back(&a, HSEC).is_err(), "a second return is refused");
    assert_eq!(
        t.answer(&r, ExportStatus::Returned, None).result,
        "returned"
    );
    assert_eq!(t.in_use("Ops", HSEC), 0);
    assert_eq!(t.state(&q.request_id), "returned");
    assert_eq!(t.state(&r.request_id), "returned");
    assert!(deliver(&mut t.conn(), &pi, SystemClock.now())
        .unwrap()
        .is_empty());
}

#[test]
fn a_denial_raises_the_alert_with_the_seed_text_and_is_told_once() {
    let mut t = T::new();
    let b = t.device("B");
    let q = t.ask(&b, HSEC, 5).unwrap();
    let out = t.answer(&q, ExportStatus::Denied, Some("not_available"));
    assert_eq!(out.result, "denied");
    assert_eq!(t.in_use("Ops", HSEC), 0);
    let pi = t.pi(&b);
    let alerts = crate::db::alerts::active(&mut t.conn()).unwrap();
    let a = alerts
        .iter()
        .find(|a| a.kind == AlertKind::RestrictedNotAvailable)
        .expect("alert");
    assert_eq!(a.severity.as_str(), "informational");
    assert_eq!(
        a.message,
        format!(
            "The product instance {} has requested license HSECK9 which enables restricted \
             encryption technology. This license is not available within the virtual \
             account Ops.",
            pi.name
        )
    );
    let told = deliver(&mut t.conn(), &pi, SystemClock.now()).unwrap();
    assert_eq!(told[0].status, "DENIED");
    assert_eq!(told[0].reason.as_deref(), Some("because not_available"));
    assert!(deliver(&mut t.conn(), &pi, SystemClock.now())
        .unwrap()
        .is_empty());
    // Another reason is reported, without the alert.
    let q2 = t.ask(&b, HSEC, 1).unwrap();
    t.answer(&q2, ExportStatus::Denied, Some("unknown_device"));
    let n = crate::db::alerts::active(&mut t.conn())
        .unwrap()
        .iter()
        .filter(|a| a.kind == AlertKind::RestrictedNotAvailable)
        .count();
    assert_eq!(n, 1);
}

#[test]
fn an_answer_that_does_not_fit_its_request_is_refused() {
    let mut t = T::new();
    let a = t.device("A");
    let q = t.ask(&a, HSEC, 1).unwrap();
    let mut wrong = ExportAnswer {
        id: q.request_id.clone(),
        status: ExportStatus::Granted,
        pi: q.pi_id.clone(),
        tag: "regid.other".into(),
        count: 1,
        reason_code: None,
        reason: None,
        license_name: "Other".into(),
        license_kind: "perpetual".into(),
    };
    let now = SystemClock.now();
    let e = t
        .conn()
        .transaction(|c| apply_answer(c, &wrong, now))
        .unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e}");
    wrong.tag = HSEC.into();
    wrong.status = ExportStatus::Returned;
    assert!(t
        .conn()
        .transaction(|c| apply_answer(c, &wrong, now))
        .is_err());
    assert_eq!(t.state(&q.request_id), "queued");
    assert_eq!(t.in_use("Ops", HSEC), 0);
}

#[test]
fn refusals_store_nothing() {
    let mut t = T::new();
    let a = t.device("A");
    let plain = t.ask(&a, "regid.plain", 1).unwrap_err();
    assert!(matches!(plain, Error::Invalid(_)), "{plain}");
    assert!(plain.to_string().contains("not a restricted"), "{plain}");
    assert!(matches!(t.ask(&a, HSEC, 0), Err(Error::Invalid(_))));
    assert!(matches!(t.ask(&a, "bad tag!", 1), Err(Error::Invalid(_))));
    assert!(matches!(t.give_back(&a, HSEC), Err(Error::NotFound(_))));
    // A device of an ordinary token.
    let now = SystemClock.now();
    let (ordinary, _) = crate::tokens::create(
        &mut t.conn(),
        &t.key,
        now,
        &crate::tokens::NewToken {
            va: "Ops".into(),
            days: 30,
            max_uses: None,
            export_controlled: false,
            description: String::new(),
            created_by: "t".into(),
        },
    )
    .unwrap();
    let o = register(&mut t.conn(), &t.key, &t.ca, &ordinary, "O");
    let e = t.ask(&o, HSEC, 1).unwrap_err();
    assert!(matches!(e, Error::Forbidden(_)), "{e}");
    assert!(db::list(&mut t.conn(), &db::Filter::default())
        .unwrap()
        .is_empty());
}

#[test]
fn restricted_licenses_follow_a_transfer_and_a_removal_queues_their_return() {
    let mut t = T::new();
    let a = t.device("A");
    let q = t.ask(&a, HSEC, 1).unwrap();
    t.answer(&q, ExportStatus::Granted, None);
    assert_eq!(t.in_use("Ops", HSEC), 1);
    let now = SystemClock.now();
    crate::devices::transfer(&mut t.conn(), &a, "Lab", now, "op").unwrap();
    assert_eq!(t.in_use("Ops", HSEC), 0);
    assert_eq!(t.in_use("Lab", HSEC), 1);
    crate::devices::remove(&mut t.conn(), &a, now, "op").unwrap();
    // Still consumed; the return waits for the next sync.
    assert_eq!(t.in_use("Lab", HSEC), 1);
    let waiting = db::waiting(&mut t.conn()).unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].row.direction, ExportDirection::Return);
}

#[test]
fn an_ordinary_authorization_does_not_consume_a_restricted_license() {
    let mut t = T::new();
    let a = t.device("A");
    let pi = t.pi(&a);
    let ask = [compliance::Entitlement {
        tag: HSEC.into(),
        count: 1,
    }];
    let now = SystemClock.now();
    let got = compliance::report_usage(&mut t.conn(), &pi, &ask, now).unwrap();
    assert_eq!(got[0].status, compliance::EXPORT_RESTRICTED);
    assert_eq!(t.in_use("Ops", HSEC), 0);
    let q = t.ask(&a, HSEC, 1).unwrap();
    t.answer(&q, ExportStatus::Granted, None);
    let got = compliance::report_usage(&mut t.conn(), &pi, &ask, now).unwrap();
    assert_eq!(got[0].status, compliance::AUTHORIZED);
    assert_eq!(t.in_use("Ops", HSEC), 1);
}
