//! What a heart knows of the processes it started: which incarnation runs,
//! which have exited and how, and how long to wait before the next start.
//! Plain data and rules, driven by the launcher.

use std::collections::VecDeque;
use std::time::Duration;

/// Exits remembered; older ones are forgotten (the heart then cannot vouch
/// for them, which only costs a caller the lease).
const EXITS_KEPT: usize = 64;

/// What the heart can say of one incarnation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Started by this heart and reaped: `how` it ended.
    Exited(String),
    /// Started by this heart and still running.
    Running,
    /// Not started by this heart (or forgotten): it cannot vouch.
    Unknown,
}

/// The incarnations this heart started.
#[derive(Debug, Default)]
pub struct Ledger {
    running: Option<String>,
    exited: VecDeque<(String, String)>,
}

impl Ledger {
    /// The process of `incarnation` was started.
    pub fn started(&mut self, incarnation: &str) {
        self.running = Some(incarnation.to_string());
    }

    /// The running process of `incarnation` was reaped; it ended `how`.
    pub fn exited(&mut self, incarnation: &str, how: String) {
        if self.running.as_deref() == Some(incarnation) {
            self.running = None;
        }
        if self.exited.len() >= EXITS_KEPT {
            self.exited.pop_front();
        }
        self.exited.push_back((incarnation.to_string(), how));
    }

    /// The heart lost track of the running process of `incarnation` (waiting
    /// on it failed): it can no longer vouch for it either way.
    pub fn lost(&mut self, incarnation: &str) {
        if self.running.as_deref() == Some(incarnation) {
            self.running = None;
        }
    }

    /// What this heart can say of `incarnation`.
    pub fn fate(&self, incarnation: &str) -> Fate {
        if let Some((_, how)) = self.exited.iter().find(|(i, _)| i == incarnation) {
            return Fate::Exited(how.clone());
        }
        match self.running.as_deref() == Some(incarnation) {
            true => Fate::Running,
            false => Fate::Unknown,
        }
    }
}

/// Restart backoff: the first restart after `MIN`, doubling after each
/// process that died young, at most `MAX`; a process that ran for `STABLE`
/// resets it.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub const MIN: Duration = Duration::from_millis(100);
    pub const MAX: Duration = Duration::from_secs(5);
    pub const STABLE: Duration = Duration::from_secs(10);

    pub fn new() -> Self {
        Backoff { next: Self::MIN }
    }

    /// How long to wait before starting again a process that ran for `ran`.
    pub fn after_exit(&mut self, ran: Duration) -> Duration {
        if ran >= Self::STABLE {
            self.next = Self::MIN;
        }
        let wait = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        wait
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_reaped_incarnation_of_this_heart_is_exited() {
        let mut ledger = Ledger::default();
        assert_eq!(ledger.fate("a"), Fate::Unknown);
        ledger.started("a");
        assert_eq!(ledger.fate("a"), Fate::Running);
        assert_eq!(ledger.fate("b"), Fate::Unknown);
        ledger.exited("a", "signal 9".into());
        assert_eq!(ledger.fate("a"), Fate::Exited("signal 9".into()));
        ledger.started("b");
        assert_eq!(ledger.fate("a"), Fate::Exited("signal 9".into()));
        assert_eq!(ledger.fate("b"), Fate::Running);
    }

    #[test]
    fn a_process_the_heart_lost_track_of_is_unknown_not_exited() {
        let mut ledger = Ledger::default();
        ledger.started("a");
        ledger.lost("a");
        assert_eq!(ledger.fate("a"), Fate::Unknown);
    }

    #[test]
    fn old_exits_are_forgotten_and_then_unknown() {
        let mut ledger = Ledger::default();
        for i in 0..=EXITS_KEPT {
            ledger.started(&i.to_string());
            ledger.exited(&i.to_string(), "exit status 1".into());
        }
        assert_eq!(ledger.fate("0"), Fate::Unknown);
        assert_eq!(ledger.fate("1"), Fate::Exited("exit status 1".into()));
    }

    #[test]
    fn backoff_doubles_for_young_deaths_and_resets_after_a_stable_run() {
        let mut backoff = Backoff::new();
        let young = Duration::from_millis(50);
        assert_eq!(backoff.after_exit(young), Duration::from_millis(100));
        assert_eq!(backoff.after_exit(young), Duration::from_millis(200));
        assert_eq!(backoff.after_exit(young), Duration::from_millis(400));
        for _ in 0..10 {
            backoff.after_exit(young);
        }
        assert_eq!(backoff.after_exit(young), Backoff::MAX);
        assert_eq!(backoff.after_exit(Backoff::STABLE), Backoff::MIN);
    }
}
