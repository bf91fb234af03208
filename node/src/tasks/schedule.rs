//! When a task's ticks are due: interval and cron schedules, no overlap, and
//! the catch-up policy after downtime. Pure functions of times in ms since
//! the Unix epoch.

use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::state::tasks::{CatchUp, Schedule};

/// Parses a cron expression (seconds first: `sec min hour day month weekday`,
/// an optional year last), with a message that says what is wrong.
pub fn parse_cron(expr: &str) -> Result<cron::Schedule, String> {
    cron::Schedule::from_str(expr).map_err(|e| {
        format!(
            "{expr:?} is not a cron expression ({e}); write `sec min hour day month weekday`, like \"0 */5 * * * *\""
        )
    })
}

fn cron_after(expr: &str, after_ms: u64) -> u64 {
    let Ok(schedule) = parse_cron(expr) else {
        return u64::MAX;
    };
    let Some(after) = DateTime::<Utc>::from_timestamp_millis(after_ms as i64) else {
        return u64::MAX;
    };
    schedule
        .after(&after)
        .next()
        .map_or(u64::MAX, |t| t.timestamp_millis() as u64)
}

/// The first slot of `every`, counted from `anchor`, that is at or after `now`.
fn next_slot(anchor: u64, every: u64, now: u64) -> u64 {
    if now <= anchor {
        return anchor;
    }
    let every = every.max(1);
    anchor + (now - anchor).div_ceil(every) * every
}

/// When the tick after one that was due at `due` and finished at `now` is
/// due. A tick never overlaps the previous one: slots that passed while it
/// ran are skipped. `next_in` is the module's own request, if it made one.
pub fn next_due(schedule: &Schedule, due: u64, now: u64, next_in: Option<u64>) -> u64 {
    if let Some(delay) = next_in {
        return now.saturating_add(delay);
    }
    match schedule {
        Schedule::EveryMs(every) => next_slot(due + every, *every, now),
        Schedule::Cron(expr) => cron_after(expr, due.max(now)),
    }
}

/// When a task's next tick is due as a node takes it over, given the time
/// recorded with its last commit (0: never ran).
pub fn first_due(schedule: &Schedule, catch_up: CatchUp, recorded: u64, now: u64) -> u64 {
    if recorded == 0 {
        return now;
    }
    if recorded >= now {
        return recorded;
    }
    match (catch_up, schedule) {
        (CatchUp::RunOnce, _) => now,
        (CatchUp::Skip, Schedule::EveryMs(every)) => next_slot(recorded, *every, now),
        (CatchUp::Skip, Schedule::Cron(expr)) => cron_after(expr, now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY: Schedule = Schedule::EveryMs(1000);

    #[test]
    fn an_interval_keeps_its_grid() {
        assert_eq!(next_due(&EVERY, 10_000, 10_050, None), 11_000);
    }

    #[test]
    fn a_tick_that_overruns_its_period_is_not_overlapped() {
        // Due at 10 s, finished at 12.5 s: the 11 s and 12 s slots are skipped.
        assert_eq!(next_due(&EVERY, 10_000, 12_500, None), 13_000);
    }

    #[test]
    fn the_module_may_ask_for_its_next_time() {
        assert_eq!(next_due(&EVERY, 10_000, 10_050, Some(250)), 10_300);
    }

    #[test]
    fn a_new_task_runs_at_once_and_a_future_time_is_kept() {
        assert_eq!(first_due(&EVERY, CatchUp::Skip, 0, 5_000), 5_000);
        assert_eq!(first_due(&EVERY, CatchUp::RunOnce, 9_000, 5_000), 9_000);
    }

    #[test]
    fn after_downtime_run_once_runs_at_once_and_skip_waits_for_the_next_slot() {
        assert_eq!(first_due(&EVERY, CatchUp::RunOnce, 10_000, 13_400), 13_400);
        assert_eq!(first_due(&EVERY, CatchUp::Skip, 10_000, 13_400), 14_000);
    }

    #[test]
    fn cron_schedules_fire_at_their_times() {
        let every_minute = Schedule::Cron("0 * * * * *".into());
        // 2026-01-01T00:00:30Z -> 00:01:00Z.
        let t = 1_767_225_630_000;
        assert_eq!(next_due(&every_minute, t, t, None), 1_767_225_660_000);
        assert_eq!(
            first_due(&every_minute, CatchUp::Skip, t - 120_000, t),
            1_767_225_660_000
        );
        assert!(
            parse_cron("every tuesday")
                .unwrap_err()
                .contains("not a cron expression")
        );
    }
}
