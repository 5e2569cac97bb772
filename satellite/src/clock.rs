//! The injectable clock. Every rule that depends on time reads it from a [`Clock`], never
//! from the system directly. Times are UTC seconds since the Unix epoch.
//!
//! In production the clock is the system clock. With `[testing] manual_clock = true` it is
//! the system clock plus an offset kept in the store, so the running server and every CLI
//! command (`satellite clock set|advance`) see the same time and a test can move 90 days
//! forward in a second.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

use crate::db::{self, Store};
use crate::error::{Error, Result};

/// Seconds since the Unix epoch, UTC.
pub type Timestamp = i64;

pub const MINUTE: i64 = 60;
pub const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Timestamp;
    /// Whether this clock can be moved by hand.
    fn is_manual(&self) -> bool {
        false
    }
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        system_now()
    }
}

pub fn system_now() -> Timestamp {
    Utc::now().timestamp()
}

/// System time plus an offset read from the store on every call, so a `satellite clock`
/// command takes effect in a running server at once. If the store cannot be read, the last
/// offset seen is used.
#[derive(Debug)]
pub struct ManualClock {
    store: Store,
    last_offset: AtomicI64,
}

impl ManualClock {
    pub fn new(store: Store) -> Self {
        ManualClock {
            store,
            last_offset: AtomicI64::new(0),
        }
    }

    fn offset(&self) -> i64 {
        let read = self
            .store
            .conn()
            .and_then(|mut conn| db::clock::offset(&mut conn));
        match read {
            Ok(o) => {
                self.last_offset.store(o, Ordering::Relaxed);
                o
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the manual clock's offset; using the last one");
                self.last_offset.load(Ordering::Relaxed)
            }
        }
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: Timestamp) -> Result<Timestamp> {
        let mut conn = self.store.conn()?;
        db::clock::set_offset(&mut conn, at - system_now())?;
        Ok(self.now())
    }

    /// Moves the clock forward by `seconds`.
    pub fn advance(&self, seconds: i64) -> Result<Timestamp> {
        let mut conn = self.store.conn()?;
        db::clock::add_offset(&mut conn, seconds)?;
        Ok(self.now())
    }

    pub fn current_offset(&self) -> i64 {
        self.offset()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        system_now() + self.offset()
    }
    fn is_manual(&self) -> bool {
        true
    }
}

/// The clock the configuration asks for.
pub fn from_config(manual: bool, store: &Store) -> Arc<dyn Clock> {
    if manual {
        tracing::warn!(
            "MANUAL CLOCK ENABLED ([testing] manual_clock = true): time can be moved by hand \
             with `satellite clock`; every timer follows it. Never use this in production."
        );
        Arc::new(ManualClock::new(store.clone()))
    } else {
        Arc::new(SystemClock)
    }
}

/// RFC 3339 in UTC with seconds, e.g. `2026-11-23T13:57:44Z`.
pub fn format(ts: Timestamp) -> String {
    DateTime::<Utc>::from_timestamp(ts, 0)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| format!("@{ts}"))
}

/// Parses an RFC 3339 time (`2027-01-31T12:00:00Z`) or a date (`2027-01-31`, midnight UTC).
pub fn parse_time(s: &str) -> Result<Timestamp> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp());
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc().timestamp());
        }
    }
    Err(Error::invalid(format!(
        "invalid time {s:?}: expected RFC 3339 like 2027-01-31T12:00:00Z or a date like 2027-01-31"
    )))
}

/// Parses a duration such as `90d`, `12h`, `30m`, `45s`, `2w` or `1d12h`.
pub fn parse_duration(s: &str) -> Result<i64> {
    let bad = || {
        Error::invalid(format!(
            "invalid duration {s:?}: expected a number and a unit (s, m, h, d, w), e.g. 90d, 12h or 1d12h"
        ))
    };
    let s = s.trim();
    if s.is_empty() {
        return Err(bad());
    }
    let mut total: i64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => MINUTE,
            'h' => HOUR,
            'd' => DAY,
            'w' => 7 * DAY,
            _ => return Err(bad()),
        };
        let n: i64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    // More than 100 years is a typo, not a test.
    if total > 100 * 365 * DAY {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90d").unwrap(), 90 * DAY);
        assert_eq!(parse_duration("1d12h").unwrap(), DAY + 12 * HOUR);
        assert_eq!(parse_duration("2w").unwrap(), 14 * DAY);
        assert_eq!(parse_duration("45s").unwrap(), 45);
        for bad in [
            "",
            "d",
            "90",
            "90x",
            "-1d",
            "99999999999999999999d",
            "1000000d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_round_trip() {
        let t = parse_time("2027-01-31T12:00:00Z").unwrap();
        assert_eq!(format(t), "2027-01-31T12:00:00Z");
        assert_eq!(
            format(parse_time("2027-01-31").unwrap()),
            "2027-01-31T00:00:00Z"
        );
        assert_eq!(parse_time("2027-01-31T14:00:00+02:00").unwrap(), t);
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn manual_clock_moves_and_is_shared_through_the_store() {
        let (store, _dir) = crate::db::testing::store();
        let a = ManualClock::new(store.clone());
        let b = ManualClock::new(store);
        let before = b.now();
        a.advance(90 * DAY).unwrap();
        let after = b.now();
        assert!(after - before >= 90 * DAY && after - before < 90 * DAY + 60);
        let target = parse_time("2030-06-01").unwrap();
        a.set(target).unwrap();
        assert!((b.now() - target).abs() < 5);
    }
}
