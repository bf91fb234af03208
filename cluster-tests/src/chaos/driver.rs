//! Starting a chaos cluster, running one fault and its checks, and
//! publishing the report.

use std::collections::BTreeSet;
use std::time::Duration;

use baton_node::config::TimingConfig;
use baton_node::runtime::RuntimeLimits;
use baton_node::supervision::forced_handoff_patience;
use batonctl::cmd::modules::signed_deploy;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::{Chaos, ChaosOptions, Fault, NOISE_MS, WITNESS_HOLD, WITNESS_PERIOD_MS, now_ms};
use crate::chaos_report::{FaultRun, Invariant, Report};
use crate::containers::{ContainerCluster, ContainerOptions};
use crate::example_module;
use crate::history::{Expectations, Recorder, collect};
use crate::task_api::{add, every};
use crate::witness::Witness;

impl Chaos {
    /// Starts the containers (the last node on a small disk), deploys the
    /// counter and adds the tasks, and waits until every one ticks.
    pub async fn start(options: ChaosOptions) -> Chaos {
        let timing = TimingConfig::default();
        let cluster = ContainerCluster::start(
            options.nodes,
            ContainerOptions {
                timing: timing.clone(),
                small_disk: Some(options.nodes),
                unsafe_disable_fencing: options.unsafe_disable_fencing,
            },
        );
        let client = cluster.client();
        crate::poll_async(Duration::from_secs(90), "a leader in the containers", || async {
            batonctl::cmd::status::fetch(&client).await.ok()?.leader
        })
        .await;
        let request = signed_deploy("counter".into(), example_module("counter"), &cluster.signing_key());
        client
            .call_with(&request, |mut c, r| async move { c.deploy_module(r).await })
            .await
            .expect("deploy the counter module");
        let names: BTreeSet<String> = (0..options.tasks).map(|i| format!("c{i:02}")).collect();
        for name in &names {
            add(&client, every(name, "counter", options.period_ms, "")).await;
        }
        let witness = Witness::start(&format!("{}:0", cluster.gateway), WITNESS_HOLD)
            .await
            .expect("the witness on the containers' network");
        let request = signed_deploy("witnessed".into(), example_module("witnessed"), &cluster.signing_key());
        client
            .call_with(&request, |mut c, r| async move { c.deploy_module(r).await })
            .await
            .expect("deploy the witnessed module");
        // For the large-states row's tasks.
        let request = signed_deploy("netprobe".into(), example_module("netprobe"), &cluster.signing_key());
        client
            .call_with(&request, |mut c, r| async move { c.deploy_module(r).await })
            .await
            .expect("deploy the netprobe module");
        let addr = witness.addr().to_string();
        let witnessed: BTreeSet<String> = (0..options.witnessed).map(|i| format!("w{i:02}")).collect();
        for name in &witnessed {
            let mut request = every(name, "witnessed", WITNESS_PERIOD_MS, &addr);
            request.allow_net = vec![addr.clone()];
            add(&client, request).await;
        }
        let status = batonctl::cmd::status::fetch(&client).await.expect("status");
        let chaos = Chaos {
            report: Report {
                title: format!(
                    "{}: {} nodes in containers, {} counters every {} ms and {} witnessed tasks every {} ms, \
                     seed {}, {}",
                    options.title,
                    options.nodes,
                    options.tasks,
                    options.period_ms,
                    options.witnessed,
                    WITNESS_PERIOD_MS,
                    options.seed,
                    crate::machine()
                ),
                runs: Vec::new(),
            },
            rng: StdRng::seed_from_u64(options.seed),
            cluster,
            client,
            names,
            witness,
            witnessed,
            witness_seen: (0, 0),
            recorder: Recorder::default(),
            bound_ms: status.failover_bound_ms,
            lease_ms: status.lease_ms,
            patience_ms: forced_handoff_patience(
                Duration::from_millis(status.lease_ms),
                RuntimeLimits::default().tick_budget,
                Duration::from_millis(timing.lease_renew_ms),
            )
            .as_millis() as u64,
            writes: Vec::new(),
            releases: 0,
            options,
        };
        if let Err(e) = chaos.converged(0).await {
            panic!("the cluster did not start: {e}");
        }
        chaos
    }

    /// Runs one fault, heals it, and checks every invariant.
    pub async fn run(&mut self, fault: Fault) -> &FaultRun {
        let key = format!("chaos/{}", self.writes.len());
        self.put(&key).await;
        self.writes.push(key);
        let (leader, followers) = self.roles().await;
        let mut run = FaultRun {
            fault: fault.name().to_string(),
            ..FaultRun::default()
        };
        let injected = self.inject(fault, leader, &followers).await;
        let started = injected.started;
        run.detail = match (injected.note, injected.lost.is_empty()) {
            (Some(note), _) => note,
            (None, true) => "every node".into(),
            (None, false) => injected
                .lost
                .iter()
                .map(|id| match *id == leader {
                    true => format!("node {id} (leader)"),
                    false => format!("node {id}"),
                })
                .collect::<Vec<_>>()
                .join(", "),
        };
        if let Some(broken) = injected.broken {
            run.outcomes.insert(Invariant::Converged, Err(broken));
        }
        let injected_extra_ms = injected.extra_ms;
        let (moved, rollout) = (injected.moved, injected.rollout);
        let healed = now_ms();
        if let Some(version) = rollout {
            run.detail.push_str(&format!(", version {version}"));
            if let Err(e) = self.await_rollout(version).await {
                run.outcomes.insert(Invariant::Converged, Err(e));
            }
        }
        let converged = match self.converged(healed).await {
            Ok(()) => self.settled().await,
            Err(e) => Err(e),
        };
        let converged_at = now_ms();
        run.outcomes.entry(Invariant::Converged).or_insert(converged);
        if let Some(moved) = moved {
            let allowed = self.options.period_ms + self.bound_ms + injected_extra_ms + NOISE_MS;
            let outcome = moved.and_then(|worst| {
                run.failover_ms = Some(worst);
                match worst <= allowed {
                    true => Ok(()),
                    false => Err(format!("a task of the lost node waited {worst} ms (allowed {allowed})")),
                }
            });
            run.outcomes.insert(Invariant::Failover, outcome);
        }
        match collect(&self.client).await {
            Ok(histories) => self.recorder.record(histories),
            Err(e) => {
                run.outcomes
                    .insert(Invariant::History, Err(format!("cannot read the histories: {e}")));
            }
        }
        let expect = Expectations {
            tasks: self.names.union(&self.witnessed).cloned().collect(),
            max_gap_ms: u64::MAX,
            counters: true,
        };
        let history = self.recorder.check(&expect).map(|_| ()).map_err(|v| v.to_string());
        run.outcomes.entry(Invariant::History).or_insert(history);
        let witnessed = self.witness_report();
        let (runs, reruns) = (witnessed.runs, witnessed.reruns);
        run.witnessed = Some((runs - self.witness_seen.0, reruns.saturating_sub(self.witness_seen.1)));
        self.witness_seen = (runs, reruns);
        run.outcomes.insert(
            Invariant::Witness,
            match witnessed.is_clean() {
                true => Ok(()),
                false => Err(witnessed.to_string()),
            },
        );
        run.outcomes.insert(Invariant::OwnedOnce, self.owned_once().await);
        run.outcomes.insert(Invariant::WritesKept, self.writes_kept().await);
        let worst_gap = self.worst_gap(started, converged_at);
        run.worst_gap_ms = worst_gap.as_ref().map(|(gap, _)| *gap);
        let verdict = match run.passed() {
            true => "ok".to_string(),
            false => format!(
                "FAILED: {:?}",
                run.outcomes
                    .values()
                    .filter_map(|o| o.as_ref().err())
                    .collect::<Vec<_>>()
            ),
        };
        eprintln!(
            "chaos: {} ({}): failover {:?} ms, worst gap {:?}, witnessed runs (re-runs) {:?}, {verdict}",
            run.fault, run.detail, run.failover_ms, worst_gap, run.witnessed
        );
        self.report.runs.push(run);
        self.report.runs.last().unwrap()
    }

    /// Prints the report, its faults in the order of `Fault::ALL`, and
    /// writes it to `target/chaos/NAME.md`.
    pub fn publish(&self, name: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../target/chaos/{name}.md"));
        let mut report = self.report.clone();
        report
            .runs
            .sort_by_key(|run| Fault::ALL.iter().position(|f| f.name() == run.fault));
        report.publish(&path);
    }
}
