//! `baton-supervision-bench`: how fast tasks resume elsewhere when a node is
//! lost, on a 3-node cluster of release `baton-node` processes on loopback.
//!
//! - crash: kill -9 of a node (its host stays up: the fast path);
//! - freeze: SIGSTOP of a node (only its lease can tell), at the default
//!   lease and at a 500 ms lease;
//! - drain: the hand-off gap of every moved task;
//! - reassign: one write that gives 10,000 tasks of a dead node a new owner.
//!
//! Beside the counters, `--witnessed` tasks (30) call a witness service
//! that holds each call 150 ms and records when each run began and ended;
//! after each kind of loss the witness's checker reports how many runs
//! overlapped another run of their task (the goal is none), how many
//! fencing tokens went back, and how many ticks ran again (at-least-once
//! side effects).
//!
//! For every moved counter it reports the time from the loss to its first tick
//! committed on another node, and how late that tick was against the task's
//! schedule (a task whose next tick was not yet due when its node died is
//! not late until that time). Prints Markdown tables.
//!
//! Run from the repository root: `scripts/bench-supervision.sh`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use baton_cluster_tests::task_api::{
    add, await_handed_off, await_ticking_elsewhere, deploy, every, history, now_ms, set_drained, start_witnessed,
    tasks, witness_report,
};
use baton_cluster_tests::witness::Witness;
use baton_cluster_tests::witness_check::WitnessReport;
use baton_cluster_tests::{TestCluster, machine, poll_async, quantile};
use baton_node::config::TimingConfig;
use baton_proto::{ListNodesRequest, TaskInfo};
use batonctl::ClusterClient;
use clap::Parser;

#[derive(Parser)]
#[command(about = "Benchmarks task failover, drain and reassignment on a local Baton cluster")]
struct Args {
    /// Counter tasks on the cluster.
    #[arg(long, default_value_t = 200)]
    tasks: usize,
    /// Their period.
    #[arg(long, default_value_t = 250)]
    period_ms: u64,
    /// Nodes killed (and restarted) in the crash phase.
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// Leaders killed (and restarted) in the crash phase.
    #[arg(long, default_value_t = 10)]
    leader_kills: usize,
    /// Nodes frozen (and thawed) in each freeze phase.
    #[arg(long, default_value_t = 20)]
    freezes: usize,
    /// Drains (and undrains) in the drain phase.
    #[arg(long, default_value_t = 5)]
    drains: usize,
    /// Witnessed tasks (every 300 ms) beside the counters.
    #[arg(long, default_value_t = 30)]
    witnessed: usize,
    /// Tasks reassigned in one write in the last phase.
    #[arg(long, default_value_t = 10_000)]
    reassign: usize,
}

/// Quiet time after the cluster is whole again, before the next loss.
const SETTLE: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, PartialEq)]
enum Loss {
    Kill,
    KillLeader,
    Freeze,
}

/// One moved task: from the loss to its first tick elsewhere, and how late
/// that tick was against its schedule.
#[derive(Default)]
struct Moves {
    to_first_tick: Vec<u64>,
    late: Vec<u64>,
    /// Per loss: until the last moved task ticked elsewhere.
    to_all: Vec<u64>,
}

/// What the witness saw during one kind of loss.
struct Witnessed {
    what: String,
    losses: usize,
    runs: usize,
    overlaps: usize,
    backwards: usize,
    reruns: usize,
    reruns_after_move: usize,
}

/// How often a witnessed task ticks, and how long the witness holds a call.
const WITNESSED_PERIOD_MS: u64 = 300;
const WITNESS_HOLD: Duration = Duration::from_millis(150);

struct Bench {
    cluster: TestCluster,
    witness: Witness,
    witnessed: std::collections::BTreeSet<String>,
    /// The witness's report at the end of the last phase.
    seen: WitnessReport,
    tasks: usize,
    period_ms: u64,
    lease_ms: u64,
    round: usize,
}

impl Bench {
    async fn start(timing: TimingConfig, tasks: usize, period_ms: u64, witnessed: usize) -> Bench {
        let lease_ms = timing.lease_ms;
        let cluster = TestCluster::start_with(3, timing).await;
        let client = cluster.client();
        deploy(&cluster, &client, "counter").await;
        for i in 0..tasks {
            add(&client, every(&format!("c{i:04}"), "counter", period_ms, "")).await;
        }
        let witness = Witness::start("127.0.0.1:0", WITNESS_HOLD)
            .await
            .expect("start the witness");
        let witnessed = start_witnessed(&cluster, &client, &witness, witnessed, WITNESSED_PERIOD_MS).await;
        let bench = Bench {
            cluster,
            witness,
            witnessed,
            seen: WitnessReport::default(),
            tasks,
            period_ms,
            lease_ms,
            round: 0,
        };
        bench.await_spread(&client).await;
        bench
    }

    /// A client for every node but `skip` (a frozen node would stall calls).
    fn client_without(&self, skip: u64) -> ClusterClient {
        let others: Vec<String> = self
            .cluster
            .local
            .nodes
            .values()
            .filter(|n| n.id != skip)
            .map(|n| n.addr.clone())
            .collect();
        self.cluster.client_for(&others)
    }

    /// Waits until every node is up and owns its share of the tasks.
    async fn await_spread(&self, client: &ClusterClient) {
        self.cluster.wait_for_all_up(Duration::from_secs(60)).await;
        let share = self.tasks / 3 - 1;
        poll_async(Duration::from_secs(60), "tasks spread over every node", || async {
            let all = tasks(client).await;
            let mut per: BTreeMap<u64, usize> = BTreeMap::new();
            for t in &all {
                *per.entry(t.owner).or_default() += 1;
            }
            (per.len() == 3 && per.values().all(|n| *n >= share) && all.iter().all(|t| t.tick > 0)).then_some(())
        })
        .await;
        // Let a node that just came back finish catching up before the next loss.
        tokio::time::sleep(SETTLE).await;
    }

    /// The follower to lose next (alternating).
    async fn victim(&mut self) -> u64 {
        let leader = self.cluster.wait_for_leader(Duration::from_secs(30)).await;
        let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
        self.round += 1;
        followers[self.round % followers.len()]
    }

    /// Loses a node, measures its tasks' moves, and brings it back.
    async fn lose(&mut self, how: Loss, moves: &mut Moves) {
        let victim = match how {
            Loss::KillLeader => self.cluster.wait_for_leader(Duration::from_secs(30)).await,
            _ => self.victim().await,
        };
        let client = self.client_without(victim);
        let before: Vec<TaskInfo> = tasks(&client)
            .await
            .into_iter()
            .filter(|t| t.owner == victim && !self.witnessed.contains(&t.name))
            .collect();
        let lost_at = now_ms();
        match how {
            Loss::Kill | Loss::KillLeader => self.cluster.kill9(victim),
            Loss::Freeze => self.cluster.freeze(victim),
        }
        let names: Vec<&str> = before.iter().map(|t| t.name.as_str()).collect();
        await_ticking_elsewhere(&client, &names, victim, lost_at).await;
        let mut worst = 0;
        for task in &before {
            let ticks = history(&client, &task.name).await;
            let first = ticks
                .iter()
                .find(|t| t.node != victim && t.committed_at_ms > lost_at)
                .expect("a tick elsewhere");
            // Ticks the lost node committed after the snapshot moved the schedule on.
            let later = ticks.iter().filter(|t| t.node == victim && t.tick > task.tick).count() as u64;
            let due = task.next_due_ms + later * self.period_ms;
            let to_first = first.committed_at_ms - lost_at;
            moves.to_first_tick.push(to_first);
            moves.late.push(first.committed_at_ms.saturating_sub(due.max(lost_at)));
            worst = worst.max(to_first);
        }
        moves.to_all.push(worst);
        let what = match how {
            Loss::Kill => "killed",
            Loss::KillLeader => "killed leader",
            Loss::Freeze => "froze",
        };
        eprintln!(
            "{what} node {victim}: {} tasks, all ticking elsewhere after {worst} ms",
            before.len()
        );
        match how {
            Loss::Kill | Loss::KillLeader => self.cluster.restart(victim),
            Loss::Freeze => self.cluster.thaw(victim),
        }
        self.await_spread(&client).await;
    }

    /// Drains a follower; returns, per moved task, the time between its last
    /// tick on the drained node and its first elsewhere.
    async fn drain_gaps(&mut self) -> Vec<u64> {
        let victim = self.victim().await;
        let client = self.cluster.client();
        let moved: Vec<TaskInfo> = tasks(&client).await.into_iter().filter(|t| t.owner == victim).collect();
        let drained_at = now_ms();
        set_drained(&client, victim, true).await;
        poll_async(Duration::from_secs(30), "the drained node to own nothing", || async {
            tasks(&client).await.iter().all(|t| t.owner != victim).then_some(())
        })
        .await;
        let names: Vec<&str> = moved.iter().map(|t| t.name.as_str()).collect();
        await_handed_off(&client, &names, victim, drained_at).await;
        let mut gaps = Vec::new();
        for task in &moved {
            let ticks = history(&client, &task.name).await;
            for w in ticks.windows(2) {
                if w[0].node == victim && w[1].node != victim && w[1].committed_at_ms > drained_at {
                    gaps.push(w[1].committed_at_ms - w[0].committed_at_ms);
                }
            }
        }
        set_drained(&client, victim, false).await;
        self.await_spread(&client).await;
        gaps
    }
}

impl Bench {
    /// What the witness saw since the last call, as `losses` losses of kind
    /// `what`.
    async fn witnessed(&mut self, what: &str, losses: usize) -> Witnessed {
        let report = witness_report(&self.cluster.client(), &self.witness, &self.witnessed).await;
        let seen = std::mem::replace(&mut self.seen, report.clone());
        Witnessed {
            what: what.to_string(),
            losses,
            runs: report.runs - seen.runs,
            overlaps: report.overlaps.len() - seen.overlaps.len(),
            backwards: report.backwards.len() - seen.backwards.len(),
            reruns: report.reruns - seen.reruns,
            reruns_after_move: report.reruns_after_move - seen.reruns_after_move,
        }
    }
}

async fn owned_by(client: &ClusterClient, id: u64) -> u64 {
    let reply = client
        .call(|mut c| async move { c.list_nodes(ListNodesRequest {}).await })
        .await
        .expect("list nodes");
    reply.members.iter().find(|m| m.id == id).map_or(0, |m| m.tasks)
}

/// One write reassigning `n` tasks of a dead node: the leader and one
/// follower are drained so the other follower holds every task, that one is
/// killed, and undraining the leader lets it take them all at once. Returns
/// the time from the undrain call to the leader owning all `n`, and the
/// write as the leader logged it.
async fn reassign(n: usize) -> (Duration, String) {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let (other, follower) = match leader {
        1 => (2, 3),
        2 => (1, 3),
        _ => (1, 2),
    };
    let client = cluster.client();
    deploy(&cluster, &client, "counter").await;
    let hour = 3_600_000;
    let mut adds = tokio::task::JoinSet::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(n.div_ceil(16)) {
        let (client, chunk) = (cluster.client(), chunk.to_vec());
        adds.spawn(async move {
            for i in chunk {
                add(&client, every(&format!("r{i:05}"), "counter", hour, "")).await;
            }
        });
    }
    adds.join_all().await;
    set_drained(&client, leader, true).await;
    set_drained(&client, other, true).await;
    poll_async(Duration::from_secs(120), "every task on the follower", || async {
        (owned_by(&client, follower).await == n as u64).then_some(())
    })
    .await;
    cluster.kill9(follower);
    cluster.wait_for_state(follower, "down", Duration::from_secs(10)).await;
    let started = Instant::now();
    set_drained(&client, leader, false).await;
    poll_async(Duration::from_secs(30), "the leader to own every task", || async {
        (owned_by(&client, leader).await == n as u64).then_some(())
    })
    .await;
    let took = started.elapsed();
    let log = std::fs::read_to_string(cluster.local.nodes[&leader].log_path()).unwrap_or_default();
    let write = log
        .lines()
        .rev()
        .find(|l| l.contains(&format!("reassigned {n} task(s)")))
        .and_then(|l| l.rsplit("in one write of ").next())
        .unwrap_or("(not logged)")
        .to_string();
    (took, write)
}

fn row(what: &str, values: &[u64], lease_ms: u64) -> String {
    let (p50, p99, max) = (quantile(values, 0.5), quantile(values, 0.99), quantile(values, 1.0));
    let ratio = |v: u64| v as f64 / lease_ms as f64;
    format!(
        "| {what} | {} | {p50} ms | {p99} ms | {max} ms | {:.2} / {:.2} / {:.2} |",
        values.len(),
        ratio(p50),
        ratio(p99),
        ratio(max)
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    baton_node::tls::install_crypto_provider();
    let mut tables = Vec::new();
    let header = "| loss | samples | p50 | p99 | max | / lease (p50 / p99 / max) |\n|---|---|---|---|---|---|";

    let timing = TimingConfig::default();
    let mut bench = Bench::start(timing.clone(), args.tasks, args.period_ms, args.witnessed).await;
    let lease = bench.lease_ms;
    let mut witnessed = Vec::new();
    let mut crash = Moves::default();
    for _ in 0..args.kills {
        bench.lose(Loss::Kill, &mut crash).await;
    }
    witnessed.push(bench.witnessed("kill -9 of a follower", args.kills).await);
    let mut leader_crash = Moves::default();
    for _ in 0..args.leader_kills {
        bench.lose(Loss::KillLeader, &mut leader_crash).await;
    }
    witnessed.push(bench.witnessed("kill -9 of the leader", args.leader_kills).await);
    let mut freeze = Moves::default();
    for _ in 0..args.freezes {
        bench.lose(Loss::Freeze, &mut freeze).await;
    }
    witnessed.push(
        bench
            .witnessed(&format!("SIGSTOP (lease {lease} ms)"), args.freezes)
            .await,
    );
    let mut gaps = Vec::new();
    for _ in 0..args.drains {
        gaps.extend(bench.drain_gaps().await);
    }
    witnessed.push(bench.witnessed("drain", args.drains).await);
    drop(bench);

    let short = TimingConfig {
        lease_ms: 500,
        ..TimingConfig::default()
    };
    let mut bench = Bench::start(short, args.tasks, args.period_ms, args.witnessed).await;
    let mut freeze_short = Moves::default();
    for _ in 0..args.freezes {
        bench.lose(Loss::Freeze, &mut freeze_short).await;
    }
    witnessed.push(bench.witnessed("SIGSTOP (lease 500 ms)", args.freezes).await);
    drop(bench);
    let (reassign_took, reassign_write) = reassign(args.reassign).await;

    println!(
        "Machine: {}; {} counter tasks every {} ms and {} witnessed tasks every {WITNESSED_PERIOD_MS} ms \
         on 3 nodes; lease renewal every {} ms\n",
        machine(),
        args.tasks,
        args.period_ms,
        args.witnessed,
        timing.lease_renew_ms
    );
    let losses: [(String, &Moves, u64); 4] = [
        (format!("kill -9 of a follower (lease {lease} ms)"), &crash, lease),
        (
            format!("kill -9 of the leader (lease {lease} ms)"),
            &leader_crash,
            lease,
        ),
        (format!("SIGSTOP (lease {lease} ms)"), &freeze, lease),
        ("SIGSTOP (lease 500 ms)".to_string(), &freeze_short, 500),
    ];
    let table = |title: &str, pick: fn(&Moves) -> &Vec<u64>| {
        let rows: Vec<String> = losses
            .iter()
            .map(|(what, moves, lease)| row(what, pick(moves), *lease))
            .collect();
        format!("{title}:\n\n{header}\n{}", rows.join("\n"))
    };
    tables.push(table(
        "Loss to the first tick committed on another node, per moved task",
        |m| &m.to_first_tick,
    ));
    tables.push(table("How late that tick was against the task's schedule", |m| &m.late));
    tables.push(table("Loss to every moved task ticking elsewhere, per loss", |m| {
        &m.to_all
    }));
    tables.push(format!(
        "Drain hand-off: last tick on the drained node to the first elsewhere (period {} ms):\n\n\
         | hand-offs | p50 | p99 | max |\n|---|---|---|---|\n| {} | {} ms | {} ms | {} ms |",
        args.period_ms,
        gaps.len(),
        quantile(&gaps, 0.5),
        quantile(&gaps, 0.99),
        quantile(&gaps, 1.0)
    ));
    tables.push(format!(
        "Reassigning {} tasks of a dead node: undrain call to the new owner holding all of them {:.1} ms; \
         the leader's one write took {}",
        args.reassign,
        reassign_took.as_secs_f64() * 1e3,
        reassign_write.trim()
    ));
    let rows: Vec<String> = witnessed
        .iter()
        .map(|w| {
            format!(
                "| {} | {} | {} | {} | {} | {} ({}) |",
                w.what, w.losses, w.runs, w.overlaps, w.backwards, w.reruns, w.reruns_after_move
            )
        })
        .collect();
    tables.push(format!(
        "What the witness saw (each call held {} ms), per kind of loss:\n\n\
         | loss | losses | witnessed runs | overlapping runs | tokens backwards | re-runs (after a move) |\n\
         |---|---|---|---|---|---|\n{}",
        WITNESS_HOLD.as_millis(),
        rows.join("\n")
    ));
    println!("{}", tables.join("\n\n"));
}
