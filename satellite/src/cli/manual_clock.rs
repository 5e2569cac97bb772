//! `satellite clock`: the manual test clock.

use super::*;

#[derive(Debug, Subcommand)]
pub enum ClockCommand {
    /// Print the satellite's current time (and the offset from the system clock).
    Show {
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Set the clock to a time: RFC 3339 (2027-01-31T12:00:00Z) or a date (2027-01-31).
    Set {
        /// The time to set.
        time: String,
    },
    /// Move the clock forward, e.g. `90d`, `12h`, `30m`, `1d12h`.
    Advance {
        /// How far: a number and a unit (s, m, h, d, w).
        duration: String,
    },
}

pub(super) fn clock_command(config: Config, cmd: ClockCommand) -> Result<()> {
    if !config.testing.manual_clock {
        return Err(Error::ManualClockDisabled);
    }
    // Parse before touching the store, so a typo changes nothing.
    enum Op {
        Show(bool),
        Set(i64),
        Advance(i64),
    }
    let op = match cmd {
        ClockCommand::Show { json } => Op::Show(json),
        ClockCommand::Set { time } => Op::Set(clock::parse_time(&time)?),
        ClockCommand::Advance { duration } => Op::Advance(clock::parse_duration(&duration)?),
    };
    let ctx = Context::open(config)?;
    let manual = ManualClock::new(ctx.store.clone());
    let now = match op {
        Op::Show(json) => {
            let now = manual.now();
            if json {
                let v = serde_json::json!({
                    "now": clock::format(now),
                    "unix": now,
                    "offset_seconds": manual.current_offset(),
                });
                println!("{}", to_json(&v)?);
                return Ok(());
            }
            now
        }
        Op::Set(at) => manual.set(at)?,
        Op::Advance(secs) => manual.advance(secs)?,
    };
    println!(
        "{} (offset from system clock: {}s)",
        clock::format(now),
        manual.current_offset()
    );
    Ok(())
}
