//! The heart's two slots: the *permanent* binary it boots, and a *trial*
//! binary started once, kept only if it is made permanent before its
//! deadline. Plain data and rules; the heart's store writes it to disk
//! (`slots.json`) and the launcher drives it.
//!
//! The rules, after Erlang's `heart` and tableflip:
//! - A trial runs once. If its process exits for any reason before it is
//!   made permanent, or its deadline passes, the heart reverts: the trial is
//!   dropped with the reason, and the permanent binary boots again.
//! - A heart that starts and finds a trial in its record reverts it too: it
//!   cannot know how the trial fared while it was down, and the permanent
//!   binary is the one known to run.
//! - Without a permanent binary, the heart boots its installed one (its
//!   `--node-binary`).

use serde::{Deserialize, Serialize};

/// The format of `slots.json` this release writes and reads.
pub const SLOTS_FORMAT: u32 = 1;

/// A node binary in the heart's store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinaryId {
    /// sha256 of the file, lowercase hex.
    pub hash: String,
    /// The version its signer gave it.
    pub version: String,
}

impl std::fmt::Display for BinaryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.version, short(&self.hash))
    }
}

/// The first 12 digits of a hash, for messages.
pub fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// A binary on trial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trial {
    pub binary: BinaryId,
    /// When it must have been made permanent, in ms since the Unix epoch.
    pub deadline_unix_ms: u64,
}

/// A trial the heart gave up on, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revert {
    pub binary: BinaryId,
    pub reason: String,
    pub at_unix_ms: u64,
}

/// The heart's record of its binaries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slots {
    /// The record's format ([`SLOTS_FORMAT`]).
    pub format: u32,
    pub permanent: Option<BinaryId>,
    pub trial: Option<Trial>,
    pub last_revert: Option<Revert>,
}

impl Default for Slots {
    fn default() -> Self {
        Slots {
            format: SLOTS_FORMAT,
            permanent: None,
            trial: None,
            last_revert: None,
        }
    }
}

/// Which binary the node process should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// The heart's `--node-binary`.
    Installed,
    /// The permanent binary of the store.
    Permanent(BinaryId),
    /// The binary on trial.
    Trial(BinaryId),
}

impl Boot {
    /// The hash it runs, or "installed".
    pub fn label(&self) -> &str {
        match self {
            Boot::Installed => "installed",
            Boot::Permanent(b) | Boot::Trial(b) => &b.hash,
        }
    }
}

/// Why a change to the slots was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    #[error("{0} is already the permanent binary; there is nothing to try")]
    AlreadyPermanent(BinaryId),
    #[error("{0} is on trial; make it permanent or let it revert before trying another binary")]
    TrialPending(BinaryId),
    #[error("no binary is on trial")]
    NoTrial,
    #[error("the binary on trial is {trial}, not {asked}")]
    OtherTrial { trial: BinaryId, asked: String },
}

impl Slots {
    /// What to boot now.
    pub fn boot(&self) -> Boot {
        match (&self.trial, &self.permanent) {
            (Some(trial), _) => Boot::Trial(trial.binary.clone()),
            (None, Some(permanent)) => Boot::Permanent(permanent.clone()),
            (None, None) => Boot::Installed,
        }
    }

    /// Puts `binary` on trial until `deadline_unix_ms`. Asking again for the
    /// binary already on trial changes nothing.
    pub fn begin_trial(&mut self, binary: BinaryId, deadline_unix_ms: u64) -> Result<bool, SlotError> {
        if let Some(trial) = &self.trial {
            return match trial.binary.hash == binary.hash {
                true => Ok(false),
                false => Err(SlotError::TrialPending(trial.binary.clone())),
            };
        }
        if let Some(permanent) = self.permanent.as_ref().filter(|p| p.hash == binary.hash) {
            return Err(SlotError::AlreadyPermanent(permanent.clone()));
        }
        self.trial = Some(Trial {
            binary,
            deadline_unix_ms,
        });
        Ok(true)
    }

    /// Makes the trial of `hash` permanent. Asking for the binary already
    /// permanent (with no trial) changes nothing: a caller whose answer was
    /// lost may ask again.
    pub fn make_permanent(&mut self, hash: &str) -> Result<bool, SlotError> {
        match &self.trial {
            Some(trial) if trial.binary.hash == hash => {
                self.permanent = self.trial.take().map(|t| t.binary);
                Ok(true)
            }
            Some(trial) => Err(SlotError::OtherTrial {
                trial: trial.binary.clone(),
                asked: hash.to_string(),
            }),
            None if self.permanent.as_ref().is_some_and(|p| p.hash == hash) => Ok(false),
            None => Err(SlotError::NoTrial),
        }
    }

    /// Drops the trial, if any, for `reason`; the permanent binary boots
    /// next. Returns the revert.
    pub fn revert(&mut self, reason: String, now_unix_ms: u64) -> Option<Revert> {
        let trial = self.trial.take()?;
        let revert = Revert {
            binary: trial.binary,
            reason,
            at_unix_ms: now_unix_ms,
        };
        self.last_revert = Some(revert.clone());
        Some(revert)
    }

    /// What a heart does with its record as it starts: a trial it finds
    /// was interrupted, so it is reverted.
    pub fn recover(&mut self, now_unix_ms: u64) -> Option<Revert> {
        let reason = "the heart restarted during the trial; the permanent binary is the one known to run";
        self.revert(reason.into(), now_unix_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary(hash: &str) -> BinaryId {
        BinaryId {
            hash: hash.into(),
            version: format!("v-{hash}"),
        }
    }

    #[test]
    fn a_fresh_heart_boots_its_installed_binary() {
        assert_eq!(Slots::default().boot(), Boot::Installed);
        assert_eq!(Slots::default().boot().label(), "installed");
    }

    #[test]
    fn a_trial_boots_until_it_is_made_permanent_and_then_stays() {
        let mut slots = Slots::default();
        assert_eq!(slots.begin_trial(binary("a"), 100), Ok(true));
        assert_eq!(slots.boot(), Boot::Trial(binary("a")));
        assert_eq!(slots.trial.as_ref().map(|t| t.deadline_unix_ms), Some(100));
        assert_eq!(slots.begin_trial(binary("a"), 200), Ok(false), "asked again");
        assert_eq!(slots.trial.as_ref().map(|t| t.deadline_unix_ms), Some(100));
        assert_eq!(slots.make_permanent("a"), Ok(true));
        assert_eq!(slots.boot(), Boot::Permanent(binary("a")));
        assert_eq!(slots.make_permanent("a"), Ok(false), "asked again");
        assert_eq!(slots.trial.as_ref().map(|t| t.deadline_unix_ms), None);
        assert_eq!(
            slots.begin_trial(binary("a"), 100),
            Err(SlotError::AlreadyPermanent(binary("a")))
        );
    }

    #[test]
    fn a_reverted_trial_boots_the_permanent_binary_and_says_why() {
        let mut slots = Slots::default();
        slots.begin_trial(binary("a"), 100).unwrap();
        slots.make_permanent("a").unwrap();
        slots.begin_trial(binary("b"), 100).unwrap();
        let revert = slots.revert("exit status 1".into(), 50).unwrap();
        assert_eq!(revert.binary, binary("b"));
        assert_eq!(slots.boot(), Boot::Permanent(binary("a")));
        assert_eq!(slots.last_revert.as_ref().unwrap().reason, "exit status 1");
        assert_eq!(slots.revert("again".into(), 60), None, "nothing left to revert");
        assert_eq!(slots.make_permanent("b"), Err(SlotError::NoTrial));
    }

    #[test]
    fn one_trial_at_a_time_and_only_the_trial_becomes_permanent() {
        let mut slots = Slots::default();
        slots.begin_trial(binary("a"), 100).unwrap();
        assert_eq!(
            slots.begin_trial(binary("b"), 100),
            Err(SlotError::TrialPending(binary("a")))
        );
        assert!(matches!(slots.make_permanent("b"), Err(SlotError::OtherTrial { .. })));
        assert_eq!(slots.boot(), Boot::Trial(binary("a")));
    }

    #[test]
    fn a_heart_that_restarts_mid_trial_reverts_it() {
        let mut slots = Slots::default();
        slots.begin_trial(binary("a"), 100).unwrap();
        let revert = slots.recover(10).unwrap();
        assert!(revert.reason.contains("restarted"), "{revert:?}");
        assert_eq!(slots.boot(), Boot::Installed);
        assert_eq!(slots.recover(20), None);
    }

    /// `slots.json` as this release writes it: a later release must read it.
    #[test]
    fn the_record_is_pinned() {
        let mut slots = Slots::default();
        slots.begin_trial(binary("a"), 100).unwrap();
        slots.make_permanent("a").unwrap();
        slots.begin_trial(binary("b"), 200).unwrap();
        slots.revert("exit status 1".into(), 150);
        slots.begin_trial(binary("c"), 300).unwrap();
        let pinned = r#"{"format":1,"permanent":{"hash":"a","version":"v-a"},"trial":{"binary":{"hash":"c","version":"v-c"},"deadline_unix_ms":300},"last_revert":{"binary":{"hash":"b","version":"v-b"},"reason":"exit status 1","at_unix_ms":150}}"#;
        assert_eq!(serde_json::to_string(&slots).unwrap(), pinned);
        assert_eq!(serde_json::from_str::<Slots>(pinned).unwrap(), slots);
    }
}
