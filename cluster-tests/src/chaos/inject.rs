//! How each fault is made, measured and healed.

use std::time::Duration;

use super::{
    Chaos, Fault, HOLD_MS, Injected, MID_TICK_HOLD, ROLLOUT_SETTINGS, SLOW_HOLD, WITNESS_HOLD, WITNESS_PERIOD_MS,
    now_ms,
};
use crate::task_api::release_signed;
use crate::{example_module, padded};

impl Chaos {
    /// `docker kill` of `victim`; once its tasks tick elsewhere, `docker
    /// start` on its volume.
    pub(super) async fn kill_and_start_again(&mut self, victim: u64) -> Injected {
        let lost = vec![victim];
        let owned = self.owned_by(&lost).await;
        let started = now_ms();
        self.cluster.kill(victim);
        let moved = self.await_moved(&owned, &lost, started).await;
        self.cluster.start_again(victim);
        Injected::moved(started, lost, moved)
    }

    /// Cuts `lost` off from the other nodes (both ways); once their tasks
    /// tick elsewhere and `HOLD_MS` has passed, heals. Also returns the
    /// span the cut lasted.
    pub(super) async fn cut_off_and_heal(&mut self, lost: Vec<u64>) -> (Injected, (u64, u64)) {
        let owned = self.owned_by(&lost).await;
        let started = now_ms();
        self.cluster.partition(&lost);
        let moved = self.await_moved(&owned, &lost, started).await;
        self.hold(started, HOLD_MS).await;
        self.cluster.heal();
        (Injected::moved(started, lost, moved), (started, now_ms()))
    }

    /// Injects `fault`, measures how long the lost node's tasks took to
    /// tick elsewhere, and heals the fault (restarts, unpauses, flushes the
    /// rules, frees the disk).
    pub(super) async fn inject(&mut self, fault: Fault, leader: u64, followers: &[u64]) -> Injected {
        match fault {
            Fault::KillFollower | Fault::KillLeader | Fault::RolloutDuringKill => {
                let victim = match fault {
                    Fault::KillLeader => leader,
                    _ => self.pick(followers),
                };
                let rollout = match fault {
                    Fault::RolloutDuringKill => Some(self.release().await),
                    _ => None,
                };
                self.kill_and_start_again(victim).await.with_rollout(rollout)
            }
            Fault::LargeStates => {
                let large = self.add_large_states().await;
                let killed = self.kill_and_start_again(leader).await;
                let kept_on = self.remove_large_states(&large, killed.started).await;
                Injected {
                    note: Some(large.note),
                    broken: kept_on.err(),
                    ..killed
                }
            }
            Fault::Pause | Fault::PauseMidTick => {
                let mid_tick = fault == Fault::PauseMidTick;
                let lost = match mid_tick {
                    true => vec![self.witnessed_owner(followers).await],
                    false => vec![self.pick(followers)],
                };
                let owned = self.owned_by(&lost).await;
                let note = match mid_tick {
                    true => {
                        self.witness.set_hold(MID_TICK_HOLD);
                        Some(self.await_call_in_flight(lost[0]).await)
                    }
                    false => None,
                };
                let started = now_ms();
                self.cluster.pause(lost[0]);
                let moved = self.await_moved(&owned, &lost, started).await;
                self.hold(started, 2 * self.lease_ms).await;
                self.cluster.unpause(lost[0]);
                self.witness.set_hold(WITNESS_HOLD);
                Injected {
                    note,
                    extra_ms: match mid_tick {
                        true => MID_TICK_HOLD.as_millis() as u64,
                        false => 0,
                    },
                    ..Injected::moved(started, lost, moved)
                }
            }
            Fault::DiskLost => {
                let victim = self.pick(followers);
                let lost = vec![victim];
                let owned = self.owned_by(&lost).await;
                let started = now_ms();
                self.cluster.kill(victim);
                let moved = self.await_moved(&owned, &lost, started).await;
                self.cluster.wipe_data(victim);
                self.cluster.start_again(victim);
                let replaced = self.replace_lost(victim).await;
                Injected {
                    note: Some(format!(
                        "node {victim}: lost-data until `nodes replace`, then caught up"
                    )),
                    broken: replaced.err(),
                    ..Injected::moved(started, lost, moved)
                }
            }
            Fault::Stop => {
                let victim = self.pick(followers);
                let lost = vec![victim];
                let owned = self.owned_by(&lost).await;
                let started = now_ms();
                self.cluster.stop(victim, 15);
                let code = self.cluster.exit_code(victim);
                let moved = self.await_moved(&owned, &lost, started).await;
                self.cluster.start_again(victim);
                Injected {
                    broken: (code != 0).then(|| format!("node {victim} exited {code} on SIGTERM, not 0")),
                    ..Injected::moved(started, lost, moved)
                }
            }
            Fault::Remove => {
                let victim = self.witnessed_owner(followers).await;
                let lost = vec![victim];
                let owned = self.owned_by(&lost).await;
                let started = now_ms();
                let removed = self.remove(victim).await;
                let moved = self.await_moved(&owned, &lost, started).await;
                let added = self.add_back(victim).await;
                Injected {
                    note: Some(format!(
                        "node {victim}, {} of its tasks witnessed",
                        self.witnessed_among(&owned)
                    )),
                    broken: removed.err().or(added.err()),
                    ..Injected::moved(started, lost, moved)
                }
            }
            Fault::ForcedHandOff => {
                let victim = self.witnessed_owner(followers).await;
                let lost = vec![victim];
                let owned = self.owned_and_ticking_on(victim).await;
                self.cluster.stall_hand_offs(victim, true);
                let started = now_ms();
                let drained = self.drain(victim, true).await;
                let moved = self.await_moved(&owned, &lost, started).await;
                let forced = self.forced_hand_offs(started);
                self.cluster.stall_hand_offs(victim, false);
                let undrained = self.drain(victim, false).await;
                let broken = match (drained.and(undrained), forced) {
                    (Err(e), _) => Some(e),
                    (Ok(()), 0) if !owned.is_empty() => Some(format!(
                        "no hand-off was forced: node {victim}'s {} tasks moved some other way",
                        owned.len()
                    )),
                    _ => None,
                };
                Injected {
                    note: Some(format!(
                        "node {victim}: {forced} hand-off(s) forced, {} of its tasks witnessed",
                        self.witnessed_among(&owned)
                    )),
                    extra_ms: self.patience_ms,
                    broken,
                    ..Injected::moved(started, lost, moved)
                }
            }
            Fault::SlowDownstreamCutOff => {
                let lost = vec![self.witnessed_owner(followers).await];
                self.witness.set_hold(SLOW_HOLD);
                // Every witnessed tick now waits on the slow downstream.
                tokio::time::sleep(SLOW_HOLD + Duration::from_millis(WITNESS_PERIOD_MS)).await;
                let (injected, _) = self.cut_off_and_heal(lost).await;
                self.witness.set_hold(WITNESS_HOLD);
                Injected {
                    extra_ms: SLOW_HOLD.as_millis() as u64,
                    ..injected
                }
            }
            Fault::IsolateFollower
            | Fault::RejectFollower
            | Fault::IsolateLeader
            | Fault::Split
            | Fault::OneWay
            | Fault::RolloutDuringPartition => {
                let lost = match fault {
                    Fault::IsolateLeader => vec![leader],
                    Fault::Split if self.options.nodes >= 5 => vec![leader, self.pick(followers)],
                    Fault::Split => vec![leader],
                    _ => vec![self.pick(followers)],
                };
                let rollout = match fault {
                    Fault::RolloutDuringPartition => Some(self.release().await),
                    _ => None,
                };
                let owned = self.owned_by(&lost).await;
                let started = now_ms();
                match fault {
                    Fault::OneWay => self.cluster.drop_inbound(lost[0]),
                    Fault::RejectFollower => self.cluster.partition_rejecting(&lost),
                    _ => self.cluster.partition(&lost),
                }
                let moved = self.await_moved(&owned, &lost, started).await;
                self.hold(started, HOLD_MS).await;
                self.cluster.heal();
                Injected::moved(started, lost, moved).with_rollout(rollout)
            }
            Fault::PacketLoss | Fault::Delay => {
                let started = now_ms();
                match fault {
                    Fault::Delay => self.cluster.delay(10),
                    _ => self.cluster.lose_packets(0.1),
                }
                self.hold(started, HOLD_MS + 2_000).await;
                self.cluster.heal();
                Injected {
                    started,
                    ..Injected::default()
                }
            }
            Fault::UpgradeDuringKill | Fault::UpgradeDuringPartition => self.upgrade_during(fault).await,
            Fault::RevertWithTicksInFlight => {
                self.releases += 1;
                let component = example_module("witnessed_v2_broken");
                let component = padded(&component, component.len() + 64, self.options.seed ^ self.releases);
                let started = now_ms();
                let version = release_signed(
                    &self.client,
                    &self.cluster.signing_key(),
                    "witnessed",
                    component,
                    ROLLOUT_SETTINGS,
                )
                .await;
                let broken = match self.await_rollout_end("witnessed", version).await {
                    Ok(view) if view.state == "reverted" => None,
                    Ok(view) => Some(format!(
                        "the broken witnessed version {version} ended {}, not reverted",
                        view.state
                    )),
                    Err(e) => Some(e),
                };
                Injected {
                    started,
                    note: Some(format!("witnessed version {version}, broken, reverted by its gate")),
                    broken,
                    ..Injected::default()
                }
            }
            Fault::FullDisk => {
                let victim = self.options.nodes;
                let lost = vec![victim];
                let owned = self.owned_by(&lost).await;
                let started = now_ms();
                self.cluster.fill_disk(victim);
                // A node whose next write finds no room stops; failover
                // counts from its stop (its log says when), as for any lost
                // node. One whose database file still has free pages (redb
                // reuses them) writes on: then its tasks must keep ticking.
                let injected = match self.await_fail_stop(victim).await {
                    Ok(Some(stopped_at)) => {
                        let moved = self.await_moved(&owned, &lost, stopped_at).await;
                        Injected::moved(started, lost, moved)
                    }
                    Ok(None) => Injected {
                        started,
                        note: Some(format!("node {victim} wrote on: its database file had room")),
                        ..Injected::default()
                    },
                    Err(e) => Injected {
                        started,
                        lost,
                        broken: Some(e),
                        ..Injected::default()
                    },
                };
                self.cluster.free_disk(victim);
                if !self.cluster.is_running(victim) {
                    self.cluster.start_again(victim);
                }
                injected
            }
        }
    }
}
