//! Ticks the tasks this node owns: one worker per (task, epoch). A worker
//! waits until its tick is due, runs it on a blocking thread, and commits
//! the new state through the leader; a rejected commit (a new epoch, a new
//! owner) ends it. Failed ticks are retried with backoff until the restart
//! intensity is exceeded, and then the task is marked failed.
//!
//! Every tick runs under a fence (`fence.rs`): it starts only with half a
//! lease left, once this node has applied the log as far as its last
//! renewal said and while its state machine shows it as the owner; it is
//! interrupted when the lease ends, and every host call with an outside
//! effect checks the fence again. A task being handed off is released
//! between ticks, or moves with the commit of the tick in flight.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::task::{AbortHandle, JoinHandle, JoinSet};

use super::commit::commit_tick;
use super::fence::{HeldSlot, OwnerFence};
use super::forwarder::propose_on_leader;
use super::log_rate::LogRate;
use super::module_loads::{Look, ModuleLoads};
use super::restarts::{RestartTracker, Verdict};
use super::schedule::{first_due, next_due};
use super::secret_source::TaskSecrets;
use crate::api::NodeContext;
use crate::metrics::TickOutcome;
use crate::runtime::{
    CompiledModule, Fence, FenceError, FencingToken, HttpAccess, SecretSource, Slot, TaskContext, TickError,
};
use crate::state::task_changes::{Cursor, Since};
use crate::state::tasks::{TaskRecord, TaskStatus, TickCommit};
use crate::types::{Command, ModuleVersion, NodeId, now_ms};

/// How often the runner looks at every task it owns, as a safety net: in
/// between it looks only at the tasks whose placement changed (the state
/// machine keeps their names), each time it applies entries, and at those
/// whose worker ended.
const FULL_SCAN_INTERVAL: Duration = Duration::from_secs(5);

/// How long a worker waits before it tries again a release the leader did
/// not confirm (or, on purpose in tests, a stuck hand-off).
const RETRY_PAUSE: Duration = Duration::from_millis(10);

/// The longest a worker held back by its fence waits for the next renewal
/// before it looks again.
const FENCED_WAIT: Duration = Duration::from_millis(250);

/// How long a worker whose module does not load waits before it gives up
/// (and the runner starts another).
const LOAD_RETRY: Duration = Duration::from_secs(5);

/// The least time between two scans: under load the state machine applies
/// hundreds of entries a second, and one scan covers them all.
const MIN_SCAN_GAP: Duration = Duration::from_millis(5);

/// The runner's log lines about ticks held back by the fence and resumed:
/// one per node and second, with how many tasks (see `log_rate`).
#[derive(Default)]
struct FenceLogs {
    held_back: LogRate,
    resumed: LogRate,
}

/// A running worker: the epoch it ticks at, and how to stop or wake it.
struct Worker {
    epoch: u64,
    handle: AbortHandle,
    /// Woken when its task starts being handed off or is asked for a tick
    /// now.
    wake: Arc<Notify>,
    /// The last full scan that found its task still owned at its epoch.
    seen: u64,
}

/// Starts the runner; abort the handle to stop it and its workers.
pub fn spawn_runner(context: Arc<NodeContext>) -> JoinHandle<()> {
    tokio::spawn(async move {
        // Dropping the set (when this task is aborted) aborts every worker,
        // and dropping the companion its watch.
        let mut running = JoinSet::new();
        let _announcer = Companion(tokio::spawn(announce_catch_up(context.clone())));
        let mut workers: HashMap<String, Worker> = HashMap::new();
        let mut names_by_id: HashMap<tokio::task::Id, String> = HashMap::new();
        let mut interval = tokio::time::interval(FULL_SCAN_INTERVAL);
        let mut changes = context.state_machine.subscribe();
        let mut cursor = Cursor::START;
        let mut scan = 0u64;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let slots = Arc::new(Semaphore::new(cores));
        let loads = Arc::new(ModuleLoads::default());
        let logs = Arc::new(FenceLogs::default());
        // Whether the size of a worker has been logged.
        let mut sized = false;
        loop {
            // Workers that ended (their module did not load, say) are
            // looked at again: the task may still be this node's.
            let mut ended = Vec::new();
            let mut note_ended = |joined: Result<(tokio::task::Id, ()), tokio::task::JoinError>| {
                let id = joined.map_or_else(|e| e.id(), |(id, ())| id);
                ended.extend(names_by_id.remove(&id));
            };
            let full = tokio::select! {
                _ = interval.tick() => true,
                _ = changes.changed() => false,
                Some(joined) = running.join_next_with_id(), if !running.is_empty() => {
                    note_ended(joined);
                    false
                }
            };
            while let Some(joined) = running.try_join_next_with_id() {
                note_ended(joined);
            }
            scan += 1;
            // What to start, stop and wake; nothing is copied for tasks
            // that did not change.
            let (moves, at) = context.state_machine.read(|s| {
                let log = s.tasks.index().changes();
                let since = if full { Since::Everything } else { log.since(cursor) };
                let moves = match since {
                    Since::Everything => {
                        let mine = s.tasks.index().running_on(Some(context.id)).map(|name| &s.tasks[name]);
                        full_scan(mine, &mut workers, scan)
                    }
                    Since::Changed(names) => {
                        let names: BTreeSet<&str> = names.into_iter().chain(ended.iter().map(String::as_str)).collect();
                        let changed = names.into_iter().map(|name| (name, s.tasks.get(name)));
                        changed_scan(changed, context.id, &workers)
                    }
                };
                (moves, log.cursor())
            });
            cursor = at;
            for name in &moves.wake {
                if let Some(worker) = workers.get(name.as_str()) {
                    worker.wake.notify_one();
                }
            }
            for name in &moves.stop {
                if let Some(worker) = workers.remove(name.as_str()) {
                    worker.handle.abort();
                    names_by_id.remove(&worker.handle.id());
                }
                // A removed task's lines go with it: one added again under
                // its name starts with none.
                if context.state_machine.read(|s| s.tasks.get(name).is_none()) {
                    context.engine.logs().forget(name);
                }
            }
            for (name, epoch) in moves.start {
                let wake = Arc::new(Notify::new());
                let worker = work(
                    context.clone(),
                    name.clone(),
                    epoch,
                    wake.clone(),
                    slots.clone(),
                    loads.clone(),
                    logs.clone(),
                );
                if !sized {
                    // What each task costs its owner for as long as it owns it.
                    tracing::debug!("a task's worker takes {} bytes", std::mem::size_of_val(&worker));
                    sized = true;
                }
                let handle = running.spawn(worker);
                names_by_id.insert(handle.id(), name.clone());
                let worker = Worker {
                    epoch,
                    handle,
                    wake,
                    seen: scan,
                };
                if let Some(old) = workers.insert(name, worker) {
                    old.handle.abort();
                    names_by_id.remove(&old.handle.id());
                }
            }
            tokio::time::sleep(MIN_SCAN_GAP).await;
        }
    })
}

/// What a scan found: workers to start (task, epoch), to stop, and to wake
/// (their task is being handed off, or asked for a tick now).
#[derive(Debug, Default, PartialEq, Eq)]
struct Moves {
    start: Vec<(String, u64)>,
    stop: Vec<String>,
    wake: Vec<String>,
}

/// Whether a task's worker must look at it before its due time: it is
/// being handed off, or a tick was asked for now.
fn wakes(task: &TaskRecord) -> bool {
    task.handoff_to.is_some() || task.run_requested_ms.is_some()
}

/// Whether a worker at `epoch` serves `task` as this node owns it now.
fn serves(worker: &Worker, task: &TaskRecord) -> bool {
    worker.epoch == task.epoch && !worker.handle.is_finished()
}

/// A look at every task this node owns and runs (`mine`): workers for the
/// new ones, and every worker not seen (marked with `scan`) stops.
fn full_scan<'a>(
    mine: impl Iterator<Item = &'a TaskRecord>,
    workers: &mut HashMap<String, Worker>,
    scan: u64,
) -> Moves {
    let mut moves = Moves::default();
    for task in mine {
        match workers.get_mut(&task.spec.name) {
            Some(worker) if serves(worker, task) => {
                worker.seen = scan;
                if wakes(task) {
                    moves.wake.push(task.spec.name.clone());
                }
            }
            _ => moves.start.push((task.spec.name.clone(), task.epoch)),
        }
    }
    let unseen = workers.iter().filter(|(_, w)| w.seen != scan);
    moves.stop = unseen.map(|(name, _)| name.clone()).collect();
    moves.stop.sort();
    moves
}

/// A look at the tasks whose placement changed (a task removed is None).
fn changed_scan<'a>(
    changed: impl Iterator<Item = (&'a str, Option<&'a TaskRecord>)>,
    me: NodeId,
    workers: &HashMap<String, Worker>,
) -> Moves {
    let mut moves = Moves::default();
    for (name, task) in changed {
        let mine = task.filter(|t| t.owner == Some(me) && t.status == TaskStatus::Running);
        match (mine, workers.get(name)) {
            (Some(task), Some(worker)) if serves(worker, task) => {
                if wakes(task) {
                    moves.wake.push(name.to_string());
                }
            }
            (Some(task), _) => moves.start.push((name.to_string(), task.epoch)),
            (None, Some(_)) => moves.stop.push(name.to_string()),
            (None, None) => {}
        }
    }
    moves
}

/// Ticks task `name` for as long as this node owns it at `epoch`.
async fn work(
    context: Arc<NodeContext>,
    name: String,
    epoch: u64,
    wake: Arc<Notify>,
    slots: Arc<Semaphore>,
    loads: Arc<ModuleLoads>,
    logs: Arc<FenceLogs>,
) {
    if !Box::pin(caught_up(&context, &name, epoch)).await {
        return;
    }
    let Some(record) = context
        .state_machine
        .read(|s| s.tasks.get(&name).filter(|t| t.epoch == epoch).cloned())
    else {
        return;
    };
    let spec = Arc::new(record.spec);
    let (mut tick, mut state, mut state_version) = (record.tick, record.state, record.state_version);
    let mut due = first_due(&spec.schedule, spec.catch_up, record.next_due_ms, now_ms());
    let mut restarts = RestartTracker::default();
    let fence = Arc::new(OwnerFence::new(context.clone(), &name, epoch));
    let counted = context.metrics.module(&spec.module);
    // What the task may reach over HTTP, built once: a CA's TLS config is
    // not free. `tasks add` checked the spec by the same rule, so this fails
    // only on a spec written around it; the task then reaches nothing.
    let http = HttpAccess::of_task(&spec.allow_http, &spec.http_ca).unwrap_or_else(|why| {
        tracing::error!(task = %name, "its HTTP grants cannot be used, so it may call no server: {why}");
        HttpAccess::default()
    });
    let secrets: Arc<dyn SecretSource> = Arc::new(TaskSecrets {
        state_machine: context.state_machine.clone(),
        keys: context.secret_keys.clone(),
        spec: spec.clone(),
        node: context.id,
    });
    // The module version this worker runs, compiled.
    let mut running: Option<(ModuleVersion, Arc<CompiledModule>)> = None;
    // The last request for a tick now that a tick of this worker served (its
    // commit may not be applied here yet).
    let mut served_request: Option<u64> = None;
    loop {
        let Some(request) = await_turn(&context, &fence, &name, epoch, due, &wake, &logs, &mut served_request).await
        else {
            return;
        };
        // Before its due time only when a tick was asked for now: the
        // schedule then goes on as it was.
        let early = now_ms() < due;
        // The version this node runs now: a hot swap takes effect here,
        // between ticks, never in the middle of one. Copied only when it is
        // not the one running.
        let running_hash = running.as_ref().map(|(r, _)| r.hash.as_str());
        // A task removed and added again under its name with another
        // module, config or grants, placed here at the epoch this worker
        // ticks at, is another task: this worker ends, and the runner
        // starts one for it.
        let Some(newer) = context.state_machine.read(|s| {
            s.tasks.get(&name).filter(|t| t.spec.same_task_as(&spec))?;
            let release = s.version_for(&spec.module, context.id)?;
            Some((running_hash != Some(release.hash.as_str())).then(|| release.clone()))
        }) else {
            return;
        };
        // Whether time may have passed since `await_turn` let the tick start.
        let mut waited = false;
        if let Some(release) = newer {
            waited = true;
            let Some(compiled) = Box::pin(load_module(&context, &loads, &release.hash)).await else {
                return;
            };
            if let Some((old, _)) = &running {
                tracing::debug!(task = %name, "switching from version {} to {}", old.version, release.version);
                // Failures of the version left behind (say, a broken
                // release just reverted) do not count against this one.
                restarts = RestartTracker::default();
            }
            running = Some((release, compiled));
        }
        let (version, compiled) = running
            .as_ref()
            .map(|(r, c)| (r.version, c.clone()))
            .expect("loaded above");
        // A state another version wrote is converted by the newer module:
        // this one when going up (in the tick's own instance), the one that
        // wrote it when going back down.
        let migration = match migration_for(state_version, version, &state) {
            Some((from, to)) if to > from => Some((from, to, None)),
            Some((from, to)) => {
                let newer = context
                    .state_machine
                    .read(|s| s.module_version(&spec.module, from).map(|m| m.hash.clone()));
                let Some(newer) = newer else {
                    tracing::error!(task = %name, "its state was written by version {from}, which this cluster has no record of");
                    return;
                };
                let Some(module) = Box::pin(load_module(&context, &loads, &newer)).await else {
                    return;
                };
                waited = true;
                Some((from, to, Some(module)))
            }
            None => None,
        };
        // Ticks run on blocking threads, as many at once as there are
        // cores: a burst of due tasks must not crowd out the threads that
        // answer Raft and renew the lease. A tick waiting on the network
        // gives its slot up meanwhile.
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                waited = true;
                slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("tick slots are never closed")
            }
        };
        // Waiting for the slot or a module took time, and the node may have
        // been paused meanwhile: look again, just before the start. (The
        // engine looks once more as it makes the instance.)
        if waited && let Err(e) = fence.permit_start(std::time::Instant::now()) {
            tracing::debug!(task = %name, "not starting tick {}: {e}", tick + 1);
            drop(permit);
            held_back(&context, &None, &e);
            fenced_wait(&context, &e, &wake).await;
            continue;
        }
        let slot = Arc::new(HeldSlot::new(slots.clone(), permit));
        let in_flight = context.supervision.tick_in_flight();
        let engine = context.engine.clone();
        let (compiled_for_tick, input) = (compiled.clone(), state.clone());
        let task = TaskContext {
            name: name.clone(),
            config: spec.config.clone(),
            allow_net: spec.allow_net.clone(),
            node: context.id,
            token: FencingToken { epoch, tick: tick + 1 },
            fence: Fence::new(fence.clone()),
            slot: Slot::new(slot.clone()),
            http: http.clone(),
            secrets: Some(secrets.clone()),
        };
        let (started, lateness) = (std::time::Instant::now(), now_ms().saturating_sub(due));
        let result = tokio::task::spawn_blocking(move || {
            let outcome = match migration {
                Some((from, to, None)) => engine.tick_migrated(&compiled_for_tick, task, from, to, &input),
                Some((from, to, Some(newer))) => engine
                    .migrate(&newer, task.clone(), from, to, &input)
                    .and_then(|state| engine.tick(&compiled_for_tick, task, &state)),
                None => engine.tick(&compiled_for_tick, task, &input),
            };
            slot.free();
            drop(in_flight);
            outcome
        })
        .await;
        counted.tick(
            TickOutcome::of(result.as_ref().ok()),
            started.elapsed(),
            Duration::from_millis(lateness),
        );
        if let Ok(outcome) = &result
            && !matches!(outcome, Err(TickError::Fenced(_)))
        {
            context.tick_health.record(&spec.module, version, outcome.is_ok());
        }
        let outcome = match result {
            Ok(Ok(outcome)) => outcome,
            // This node's turn ended during the tick: not the module's
            // fault, and nothing to commit. The loop finds out whether the
            // turn comes back (the lease renewed) or is over (moved).
            Ok(Err(TickError::Fenced(e))) => {
                tracing::info!(task = %name, "tick {} stopped: {e}", tick + 1);
                continue;
            }
            Ok(Err(e)) => {
                tracing::warn!(task = %name, "tick {} (version {}) failed: {e}", tick + 1, version);
                // A tick asked for now ran and failed: the request is
                // served, and the schedule goes on (no retry ahead of it).
                served_request = request.or(served_request);
                match restarts.record_failure(now_ms(), &spec.restart) {
                    Verdict::Retry { after_ms } => {
                        if !early {
                            due = now_ms() + after_ms;
                        }
                        continue;
                    }
                    Verdict::GiveUp { failures } => {
                        let reason = format!(
                            "{failures} failed ticks within {} ms (limit {}); last: {e}",
                            spec.restart.window_ms, spec.restart.max_restarts
                        );
                        tracing::error!(task = %name, "marking the task failed: {reason}");
                        let failed = Command::MarkTaskFailed {
                            name,
                            epoch,
                            reason,
                            version,
                        };
                        let _ = Box::pin(propose_on_leader(&context, failed)).await;
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::error!(task = %name, "tick thread failed: {e}");
                return;
            }
        };
        let now = now_ms();
        let next = match early {
            true => next_due(&spec.schedule, due, now, outcome.next_in_ms).min(due),
            false => next_due(&spec.schedule, due, now, outcome.next_in_ms),
        };
        let commit = TickCommit {
            task: name.clone(),
            epoch,
            tick: tick + 1,
            node: context.id,
            state: outcome.state,
            next_due_ms: next,
            committed_at_ms: now,
            version,
        };
        // Whether the task is still this worker's is the next turn's question.
        if !Box::pin(commit_tick(&context, &commit)).await {
            return;
        }
        served_request = request.or(served_request);
        (tick, state, due, state_version) = (commit.tick, commit.state, next, version);
    }
}

/// The migration a state needs before version `running` may read it: (from,
/// to). None for an empty state (a new task), a state from before versions
/// were recorded (0), or one this version wrote.
fn migration_for(state_version: u32, running: u32, state: &[u8]) -> Option<(u32, u32)> {
    (!state.is_empty() && state_version != 0 && state_version != running).then_some((state_version, running))
}

/// The request for a tick now that the next tick serves: the one the task
/// holds, unless a tick of this worker served it already (and its commit,
/// which ends the request, is not applied here yet).
fn unserved(requested: Option<u64>, served: Option<u64>) -> Option<u64> {
    requested.filter(|at| served != Some(*at))
}

/// Waits until the task's tick is due, or was asked for now (a request not
/// `served`), and this node's lease runs: then the request the tick serves,
/// if any. None when the task is no longer this worker's: its epoch moved
/// on, or it was being handed off and this node released it.
#[allow(clippy::too_many_arguments)]
async fn await_turn(
    context: &NodeContext,
    fence: &OwnerFence,
    name: &str,
    epoch: u64,
    mut due: u64,
    wake: &Notify,
    logs: &FenceLogs,
    served: &mut Option<u64>,
) -> Option<Option<u64>> {
    // Why the fence last held the tick back, and whether that was said.
    let mut fenced: Option<FenceError> = None;
    let mut warned = false;
    // Whether to look at the task before the fence does: at first, and
    // after anything but a quiet sleep until the due time. (A hand-off
    // begun meanwhile wakes the worker; any other change of owner stops
    // it, and the fence refuses a tick that is no longer this node's.)
    let mut look = true;
    // The request for a tick now that the tick about to start serves.
    let mut taking: Option<u64> = None;
    loop {
        let look_was = look;
        let looked = match look {
            true => context.state_machine.read(|s| {
                let task = s
                    .tasks
                    .get(name)
                    .filter(|t| t.epoch == epoch && t.owner == Some(context.id))?;
                Some((task.handoff_to, task.run_requested_ms))
            }),
            false => Some((None, None)),
        };
        look = true;
        let (handoff, requested) = looked?;
        if look_was && requested.is_none() {
            // The served request's end is applied: a later one, even with
            // the same time, is new.
            *served = None;
        }
        if let Some(at) = unserved(requested, *served) {
            taking = Some(at);
            due = due.min(now_ms());
        }
        let stalled = || (context.testing.stall_hand_offs_file.as_deref()).is_some_and(|f| f.exists());
        if handoff.is_some() && stalled() {
            // A stuck worker, on purpose: the leader forces the hand-off.
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        }
        if handoff.is_some() {
            let release = Command::YieldTask {
                name: name.to_string(),
                epoch,
                node: context.id,
            };
            match Box::pin(propose_on_leader(context, release)).await {
                Ok(_) => return None,
                Err(e) => {
                    tracing::debug!(task = %name, "release not confirmed ({e}); retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            }
        }
        let wait = due.saturating_sub(now_ms());
        if wait == 0 {
            match fence.permit_start(std::time::Instant::now()) {
                Ok(_) => {
                    if warned {
                        match logs.resumed.count(now_ms()) {
                            Some(n) => tracing::info!(task = %name, "lease renewed; {n} task(s) ticking again"),
                            None => tracing::debug!(task = %name, "lease renewed; ticking again"),
                        }
                    }
                    return Some(taking);
                }
                // Read once caught up: the task has moved on for good (an
                // epoch never comes back).
                Err(FenceError::NotOwner { .. }) => return None,
                // A follower a few entries behind its last renewal's index
                // is the common case under load, and over in milliseconds.
                Err(e @ FenceError::CatchingUp { .. }) => {
                    tracing::debug!(task = %name, "not ticking yet: {e}");
                    held_back(context, &fenced, &e);
                    fenced = Some(e);
                }
                Err(e) => {
                    held_back(context, &fenced, &e);
                    if !warned {
                        // One line per second for the whole node: every
                        // task meets the same cause at once.
                        match logs.held_back.count(now_ms()) {
                            Some(n) => tracing::warn!(
                                task = %name,
                                "not ticking {n} task(s) (this one among them): {e} (cut off from the leader?)"
                            ),
                            None => tracing::debug!(task = %name, "not ticking: {e}"),
                        }
                        warned = true;
                    }
                    fenced = Some(e);
                }
            }
        }
        match (wait, &fenced) {
            (0, Some(e)) => fenced_wait(context, e, wake).await,
            (ms, _) => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(ms)) => look = false,
                    _ = wake.notified() => {}
                }
            }
        }
    }
}

/// Counts a due tick the fence holds back for `now`, unless it held the
/// tick back for the same reason when it last looked. (A task no longer
/// this node's is not held back: its worker ends.)
fn held_back(context: &NodeContext, before: &Option<FenceError>, now: &FenceError) {
    let moved_on = matches!(now, FenceError::NotOwner { .. });
    if !moved_on && before.as_ref().map(FenceError::reason) != Some(now.reason()) {
        context.metrics.held_back(now.reason());
    }
}

/// Waits after the fence held a tick back with `why`: a node applying the
/// log up to its last renewal's index waits until it has (one node-wide
/// signal, [`announce_catch_up`]); any other cause (the lease ran out) lasts
/// until a renewal at the earliest, so it waits for one. Either way no
/// longer than [`FENCED_WAIT`], nor past a wake of the worker.
async fn fenced_wait(context: &NodeContext, why: &FenceError, wake: &Notify) {
    let lease = &context.supervision.lease;
    match why {
        FenceError::CatchingUp { .. } => {
            let mut caught_up = std::pin::pin!(lease.caught_up());
            caught_up.as_mut().enable();
            // Applied since the fence looked? Then the signal has gone by.
            if context.state_machine.last_applied_index() >= lease.required_index() {
                return;
            }
            tokio::select! {
                _ = caught_up => {}
                _ = tokio::time::sleep(FENCED_WAIT) => {}
                _ = wake.notified() => {}
            }
        }
        _ => {
            tokio::select! {
                _ = lease.next_renewal() => {}
                _ = tokio::time::sleep(FENCED_WAIT) => {}
                _ = wake.notified() => {}
            }
        }
    }
}

/// Tells the lease each index this node applies, so that the workers held
/// back to catch up wake together once it is far enough
/// ([`LocalLease::caught_up`](crate::supervision::LocalLease::caught_up)),
/// rather than each polling. Runs as long as the runner.
async fn announce_catch_up(context: Arc<NodeContext>) {
    let mut applied = context.state_machine.subscribe();
    loop {
        let index = *applied.borrow_and_update();
        context.supervision.lease.applied(index);
        if applied.changed().await.is_err() {
            return;
        }
    }
}

/// A task that lives as long as its owner: aborted when this is dropped.
struct Companion(JoinHandle<()>);

impl Drop for Companion {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Waits until this node holds a lease and has applied what the leader had
/// committed when it granted it: a node that just restarted reads a stale
/// state machine, and must not tick tasks that have since moved. False when
/// the task turns out not to be this worker's.
async fn caught_up(context: &NodeContext, name: &str, epoch: u64) -> bool {
    loop {
        if !still_owned(context, name, epoch) {
            return false;
        }
        let applied = context.state_machine.last_applied_index();
        match context
            .supervision
            .lease
            .permit_start(std::time::Instant::now(), applied)
        {
            Ok(_) => return true,
            Err(e) => fenced_wait(context, &e, &Notify::new()).await,
        }
    }
}

/// Whether this node still owns task `name` at `epoch`.
fn still_owned(context: &NodeContext, name: &str, epoch: u64) -> bool {
    context.state_machine.read(|s| {
        s.tasks
            .get(name)
            .is_some_and(|t| t.epoch == epoch && t.owner == Some(context.id))
    })
}

/// The compiled module with content hash `hash`, once this node has its
/// bytes. However many workers ask at once, one at a time looks for it on a
/// blocking thread (see [`super::module_loads`]).
async fn load_module(context: &NodeContext, loads: &ModuleLoads, hash: &str) -> Option<Arc<CompiledModule>> {
    if let Some(module) = context.engine.loaded(hash) {
        return Some(module);
    }
    let (store, engine, owned) = (context.modules.clone(), context.engine.clone(), hash.to_string());
    let look = move || match store.compiled(&engine, &owned) {
        Some(Ok(module)) => Look::Loaded(module),
        Some(Err(e)) => Look::Failed(e.to_string()),
        // The fetcher has not brought the bytes yet.
        None => Look::Missing,
    };
    match loads.load(hash, || context.engine.loaded(hash), look).await {
        Ok(module) => Some(module),
        Err(e) => {
            // Stay a while before giving up, so the runner does not start
            // a new worker (and a new compilation) at every scan.
            tracing::error!("module {hash} does not load on this node: {e}; trying again in {LOAD_RETRY:?}");
            tokio::time::sleep(LOAD_RETRY).await;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_request_is_served_once_by_this_worker_until_its_end_is_applied() {
        // None asked; one asked; the same one after this worker's tick
        // served it (its commit not yet applied here); a later one.
        assert_eq!(unserved(None, None), None);
        assert_eq!(unserved(Some(5), None), Some(5));
        assert_eq!(unserved(Some(5), Some(5)), None);
        assert_eq!(unserved(Some(9), Some(5)), Some(9));
    }

    use super::*;
    use crate::state::tasks::{Assignment, TaskSpec, TaskTable};

    /// Tasks a, b, c, d owned by node 1 at epoch 1 except d (node 2).
    fn table() -> TaskTable {
        let mut table = TaskTable::default();
        for (name, owner) in [("a", 1), ("b", 1), ("c", 1), ("d", 2)] {
            table.add(TaskSpec::counter_every_second(name));
            table.assign(&[Assignment {
                task: name.into(),
                owner: Some(owner),
                expected_epoch: 0,
            }]);
        }
        table
    }

    fn worker(running: &mut JoinSet<()>, epoch: u64) -> Worker {
        Worker {
            epoch,
            handle: running.spawn(std::future::pending()),
            wake: Arc::new(Notify::new()),
            seen: 0,
        }
    }

    #[tokio::test]
    async fn a_full_scan_starts_stops_and_wakes_workers() {
        let mut table = table();
        table.hand_off(&[Assignment {
            task: "b".into(),
            owner: Some(2),
            expected_epoch: 1,
        }]);
        table.set_status("c", TaskStatus::Paused);
        let mut running = JoinSet::new();
        let mut workers = HashMap::from([
            ("b".to_string(), worker(&mut running, 1)),
            ("c".to_string(), worker(&mut running, 1)),
            ("x".to_string(), worker(&mut running, 1)),
        ]);
        let mine = table.index().running_on(Some(1)).map(|name| &table[name]);
        let moves = full_scan(mine, &mut workers, 7);
        assert_eq!(
            moves,
            Moves {
                start: vec![("a".into(), 1)],
                stop: vec!["c".into(), "x".into()],
                wake: vec!["b".into()],
            }
        );
        assert_eq!(workers["b"].seen, 7);
    }

    #[tokio::test]
    async fn a_scan_of_what_changed_looks_at_those_tasks_only() {
        let mut table = table();
        let mut running = JoinSet::new();
        let workers = HashMap::from([
            ("a".to_string(), worker(&mut running, 1)),
            ("b".to_string(), worker(&mut running, 1)),
        ]);
        let cursor = table.index().changes().cursor();
        // a moves away; b is paused and resumed (a new epoch); c is new
        // to this node; d is not this node's; e is removed and unknown.
        table.assign(&[Assignment {
            task: "a".into(),
            owner: Some(2),
            expected_epoch: 1,
        }]);
        table.set_status("b", TaskStatus::Paused);
        table.set_status("b", TaskStatus::Running);
        table.add(TaskSpec::counter_every_second("e"));
        table.remove("e");
        let Since::Changed(names) = table.index().changes().since(cursor) else {
            panic!("the log keeps these");
        };
        let names: BTreeSet<&str> = names.into_iter().chain(["c", "d"]).collect();
        let moves = changed_scan(names.into_iter().map(|n| (n, table.get(n))), 1, &workers);
        assert_eq!(
            moves,
            Moves {
                start: vec![("b".into(), 3), ("c".into(), 1)],
                stop: vec!["a".into()],
                wake: vec![],
            }
        );
    }

    #[test]
    fn a_state_is_migrated_only_when_another_version_wrote_it() {
        assert_eq!(migration_for(1, 2, b"x"), Some((1, 2)));
        assert_eq!(migration_for(3, 2, b"x"), Some((3, 2)));
        assert_eq!(migration_for(2, 2, b"x"), None);
        assert_eq!(migration_for(1, 2, b""), None);
        assert_eq!(migration_for(0, 2, b"x"), None);
    }
}
