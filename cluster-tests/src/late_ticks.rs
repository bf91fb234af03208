//! Late ticks, second by second, as each node's own `/metrics` tells them:
//! the benchmarks read `baton_tick_lateness_seconds` (how long after its
//! due time a tick started, on its owner) and
//! `baton_tick_commit_lateness_seconds` (how long after it a tick's commit
//! was applied, on every node: the leader's is `status`'s figure) from every
//! node once a second, so that a stall shows when it came and on which
//! nodes, not only in a quantile over the whole window. Beside them they
//! read how far each node's applied index trails the index it knows
//! committed, and how many due ticks its fence held back, and why: a node
//! that has not applied as far as its last lease renewal said starts no
//! tick (see `docs/plans/issue-15-leader-catch-up.md`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::http::get;

/// A lateness histogram read, and the three bounds counted past (bucket
/// bounds of the histogram, in ms and as `/metrics` writes them). A node's
/// p99 is within a bound when at most 1 % of its ticks are past it.
#[derive(Debug, Clone, Copy)]
pub struct Histogram {
    metric: &'static str,
    pub bounds: [(u64, &'static str); 3],
}

/// Tick starts, on their owner: past 32, 64 and 128 ms.
pub const STARTS: Histogram = Histogram {
    metric: "baton_tick_lateness_seconds_bucket",
    bounds: [(32, "0.032"), (64, "0.064"), (128, "0.128")],
};

/// Tick commits, applied on each node: past 50 ms (the scale goal), 100 ms
/// and 250 ms.
pub const COMMITS: Histogram = Histogram {
    metric: "baton_tick_commit_lateness_seconds_bucket",
    bounds: [(50, "0.05"), (100, "0.1"), (250, "0.25")],
};

/// A node's ticks by how late they were: every one, and those later than
/// each of a [`Histogram`]'s bounds, summed over the histogram's labels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Late {
    pub all: u64,
    pub later_than: [u64; 3],
}

impl Late {
    /// The ticks `histogram` counts in a `/metrics` text, or None if it
    /// holds no such histogram.
    pub fn parse(metrics: &str, histogram: Histogram) -> Option<Late> {
        let mut buckets: BTreeMap<&str, f64> = BTreeMap::new();
        for line in metrics.lines().filter(|l| l.starts_with(histogram.metric)) {
            // The `le` label, wherever it is among the labels (not the
            // end of another label's name, such as `module`).
            let labels = line.split_once('{')?.1.split_once('}')?.0;
            let le = labels.split(',').find_map(|label| label.strip_prefix("le=\""))?;
            let le = le.strip_suffix('"')?;
            let count: f64 = line.rsplit(' ').next()?.parse().ok()?;
            *buckets.entry(le).or_default() += count;
        }
        let all = *buckets.get("+Inf")? as u64;
        let mut later_than = [0; 3];
        for (slot, (_, le)) in later_than.iter_mut().zip(histogram.bounds) {
            *slot = all.saturating_sub(*buckets.get(le)? as u64);
        }
        Some(Late { all, later_than })
    }

    fn since(self, before: Late) -> Late {
        Late {
            all: self.all.saturating_sub(before.all),
            later_than: [0, 1, 2].map(|i| self.later_than[i].saturating_sub(before.later_than[i])),
        }
    }

    /// Each bound's share of the ticks, as the tables write it.
    fn shares(&self) -> String {
        let shares: Vec<String> = self
            .later_than
            .iter()
            .map(|n| format!("{:.2} %", 100.0 * *n as f64 / self.all.max(1) as f64))
            .collect();
        format!("{} of {}", shares.join(" / "), self.all)
    }
}

/// One histogram read from every node over a window: each node's first and
/// last reading.
#[derive(Debug)]
struct Readings {
    histogram: Histogram,
    first: BTreeMap<u64, Late>,
    last: BTreeMap<u64, Late>,
}

impl Readings {
    fn new(histogram: Histogram) -> Readings {
        Readings {
            histogram,
            first: BTreeMap::new(),
            last: BTreeMap::new(),
        }
    }

    /// Takes node `id`'s reading of `metrics`: how many of its ticks since
    /// its last reading were past the last bound, if it had one.
    fn read(&mut self, id: u64, metrics: &str) -> Option<u64> {
        let now = Late::parse(metrics, self.histogram)?;
        self.first.entry(id).or_insert(now);
        let before = self.last.insert(id, now)?;
        Some(now.since(before).later_than[2])
    }

    /// Each node's ticks from its first reading to its last.
    fn over_window(&self) -> BTreeMap<u64, Late> {
        self.last
            .iter()
            .map(|(id, now)| (*id, now.since(self.first[id])))
            .collect()
    }
}

/// How many entries a node's applied index trails the index it knows
/// committed, from its `/metrics` text; None if either is missing.
pub fn apply_gap(metrics: &str) -> Option<u64> {
    let committed = sample(metrics, "baton_raft_commit_index")?;
    let applied = sample(metrics, "baton_raft_last_applied_index")?;
    Some((committed - applied).max(0.0) as u64)
}

/// The value of one series (its name, and its labels as `/metrics` writes
/// them) in a `/metrics` text; None if it is missing.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// How many due ticks a node's fence has held back, by why
/// (`baton_ticks_held_back_total`); None if the node does not count them
/// (an older release).
pub fn held_back(metrics: &str) -> Option<HeldBack> {
    let count = |reason: &str| sample(metrics, &format!("baton_ticks_held_back_total{{reason=\"{reason}\"}}"));
    Some(HeldBack {
        catching_up: count("catching_up")? as u64,
        lease_ended: count("lease_ended")? as u64,
    })
}

/// Due ticks a node's fence held back: it had yet to apply the log as far
/// as its last renewal said, or its lease had ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeldBack {
    pub catching_up: u64,
    pub lease_ended: u64,
}

impl HeldBack {
    fn since(self, before: HeldBack) -> HeldBack {
        HeldBack {
            catching_up: self.catching_up.saturating_sub(before.catching_up),
            lease_ended: self.lease_ended.saturating_sub(before.lease_ended),
        }
    }
}

/// A node in a stalled second: its starts more than 128 ms late then, how
/// many entries its apply trailed its commit index at that reading, and the
/// due ticks its fence held back in that second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stalled {
    pub late: u64,
    pub gap: Option<u64>,
    pub held_back: Option<HeldBack>,
}

/// What the nodes told over a window.
#[derive(Debug, Default)]
pub struct LateTicks {
    /// Each node's tick starts over the window (from its first reading to
    /// its last).
    pub by_node: BTreeMap<u64, Late>,
    /// Each node's tick commits over the window, as it applied them.
    pub commits_by_node: BTreeMap<u64, Late>,
    /// The seconds read, and those in which some node started a tick more
    /// than 128 ms late, with how many such starts each node had then and
    /// how far its apply trailed its commit index at that reading.
    pub seconds: u64,
    pub stalls: Vec<(u64, BTreeMap<u64, Stalled>)>,
    /// The seconds in which some node applied tick commits more than 250
    /// ms late, with how many each node applied then.
    pub commit_stalls: Vec<(u64, BTreeMap<u64, u64>)>,
    /// The most entries each node's apply trailed its commit index, at a
    /// reading each second.
    pub widest_gap: BTreeMap<u64, u64>,
    /// The due ticks each node's fence held back over the window.
    pub held_back: BTreeMap<u64, HeldBack>,
}

impl LateTicks {
    /// Reads every node's `/metrics` (`(id, HOST:PORT)`) once a second for
    /// `window`. A node that does not answer is left out of that second.
    pub async fn read(nodes: &[(u64, String)], window: Duration) -> LateTicks {
        let started = Instant::now();
        let mut starts = Readings::new(STARTS);
        let mut commits = Readings::new(COMMITS);
        let mut held_first: BTreeMap<u64, HeldBack> = BTreeMap::new();
        let mut held_last: BTreeMap<u64, HeldBack> = BTreeMap::new();
        let mut late = LateTicks::default();
        let mut second = tokio::time::interval(Duration::from_secs(1));
        second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while started.elapsed() < window {
            second.tick().await;
            let mut stalled = BTreeMap::new();
            let mut late_commits = BTreeMap::new();
            for (id, addr) in nodes {
                let Ok(answer) = get(addr, "/metrics", Duration::from_secs(2)).await else {
                    continue;
                };
                let gap = apply_gap(&answer.body);
                if let Some(gap) = gap {
                    let widest = late.widest_gap.entry(*id).or_default();
                    *widest = (*widest).max(gap);
                }
                let held = held_back(&answer.body);
                let held_now = held.and_then(|h| Some(h.since(held_last.insert(*id, h)?)));
                if let Some(h) = held {
                    held_first.entry(*id).or_insert(h);
                }
                if let Some(n) = commits.read(*id, &answer.body).filter(|n| *n > 0) {
                    late_commits.insert(*id, n);
                }
                if let Some(n) = starts.read(*id, &answer.body).filter(|n| *n > 0) {
                    let held_back = held_now;
                    stalled.insert(
                        *id,
                        Stalled {
                            late: n,
                            gap,
                            held_back,
                        },
                    );
                }
            }
            if started.elapsed() > Duration::from_secs(1) {
                late.seconds += 1;
                let at = started.elapsed().as_secs();
                if !stalled.is_empty() {
                    late.stalls.push((at, stalled));
                }
                if !late_commits.is_empty() {
                    late.commit_stalls.push((at, late_commits));
                }
            }
        }
        late.by_node = starts.over_window();
        late.commits_by_node = commits.over_window();
        late.held_back = held_last
            .iter()
            .map(|(id, now)| (*id, now.since(held_first[id])))
            .collect();
        late
    }

    /// The benchmark's table rows.
    pub fn rows(&self) -> Vec<String> {
        let bounds = |h: Histogram| -> String {
            let ms: Vec<String> = h.bounds.iter().map(|(ms, _)| ms.to_string()).collect();
            ms.join(" / ")
        };
        let each_node = |by_node: &BTreeMap<u64, Late>| -> String {
            let nodes: Vec<String> = by_node
                .iter()
                .map(|(id, l)| format!("node {id}: {}", l.shares()))
                .collect();
            nodes.join("; ")
        };
        let listed = |seconds: Vec<String>| match seconds.is_empty() {
            true => String::new(),
            false => format!(" ({})", seconds.join("; ")),
        };
        let stalls: Vec<String> = self
            .stalls
            .iter()
            .map(|(at, nodes)| {
                let nodes: Vec<String> = nodes
                    .iter()
                    .map(|(id, stalled)| {
                        let mut said = format!("{} on node {id}", stalled.late);
                        if let Some(gap) = stalled.gap {
                            said += &format!(", its apply {gap} entries behind");
                        }
                        if let Some(held) = stalled.held_back {
                            said += &format!(", {} ticks held back catching up", held.catching_up);
                        }
                        said
                    })
                    .collect();
                format!("{at} s: {}", nodes.join(", "))
            })
            .collect();
        let commit_stalls: Vec<String> = self
            .commit_stalls
            .iter()
            .map(|(at, nodes)| {
                let nodes: Vec<String> = nodes.iter().map(|(id, n)| format!("{n} on node {id}")).collect();
                format!("{at} s: {}", nodes.join(", "))
            })
            .collect();
        let gaps: Vec<String> = self
            .widest_gap
            .iter()
            .map(|(id, gap)| format!("node {id}: {gap}"))
            .collect();
        let held: Vec<String> = self
            .held_back
            .iter()
            .map(|(id, h)| format!("node {id}: {} / {}", h.catching_up, h.lease_ended))
            .collect();
        let mut rows = vec![
            format!(
                "| tick starts more than {} ms late, each node (its /metrics, read every second) | {} |",
                bounds(STARTS),
                each_node(&self.by_node)
            ),
            format!(
                "| seconds in which some node started ticks more than {} ms late | {} of {}{} |",
                STARTS.bounds[2].0,
                self.stalls.len(),
                self.seconds,
                listed(stalls)
            ),
        ];
        if !self.commits_by_node.is_empty() {
            rows.push(format!(
                "| tick commits applied more than {} ms late, each node (the leader's is status's figure) | {} |",
                bounds(COMMITS),
                each_node(&self.commits_by_node)
            ));
            rows.push(format!(
                "| seconds in which some node applied tick commits more than {} ms late | {} of {}{} |",
                COMMITS.bounds[2].0,
                self.commit_stalls.len(),
                self.seconds,
                listed(commit_stalls)
            ));
        }
        rows.push(format!(
            "| the most entries a node's apply trailed its commit index (read every second) | {} |",
            gaps.join("; ")
        ));
        if !held.is_empty() {
            rows.push(format!(
                "| due ticks each node's fence held back: catching up / lease ended | {} |",
                held.join("; ")
            ));
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_are_summed_over_labels_and_counted_past_each_bound() {
        let text = "\
# TYPE baton_tick_lateness_seconds histogram
baton_tick_lateness_seconds_bucket{le=\"0.032\",module=\"a\"} 90
baton_tick_lateness_seconds_bucket{le=\"0.064\",module=\"a\"} 95
baton_tick_lateness_seconds_bucket{le=\"0.128\",module=\"a\"} 99
baton_tick_lateness_seconds_bucket{le=\"+Inf\",module=\"a\"} 100
baton_tick_lateness_seconds_bucket{module=\"b\",le=\"0.032\"} 8
baton_tick_lateness_seconds_bucket{module=\"b\",le=\"0.064\"} 10
baton_tick_lateness_seconds_bucket{module=\"b\",le=\"0.128\"} 10
baton_tick_lateness_seconds_bucket{module=\"b\",le=\"+Inf\"} 12
baton_tick_lateness_seconds_count{module=\"a\"} 100
baton_tick_duration_seconds_bucket{le=\"+Inf\",module=\"a\"} 100
";
        let starts = Late::parse(text, STARTS).unwrap();
        assert_eq!(
            starts,
            Late {
                all: 112,
                later_than: [14, 7, 3]
            }
        );
        assert_eq!(Late::parse("baton_up 1\n", STARTS), None);
        assert_eq!(Late::parse(text, COMMITS), None, "another histogram");
        let raft = "baton_raft_commit_index 120\nbaton_raft_commit_index_x 1\nbaton_raft_last_applied_index 45\n";
        assert_eq!(apply_gap(raft), Some(75));
        assert_eq!(apply_gap("baton_raft_commit_index 120\n"), None);
        let held = "baton_ticks_held_back_total{reason=\"catching_up\"} 17\n\
                    baton_ticks_held_back_total{reason=\"lease_ended\"} 2\n\
                    baton_ticks_held_back_total{reason=\"stopping\"} 0\n";
        let read = held_back(held).unwrap();
        assert_eq!(
            read,
            HeldBack {
                catching_up: 17,
                lease_ended: 2
            }
        );
        assert_eq!(held_back(raft), None, "a release that does not count them");
        assert_eq!(
            read.since(HeldBack {
                catching_up: 10,
                lease_ended: 2
            }),
            HeldBack {
                catching_up: 7,
                lease_ended: 0
            }
        );
        let commits = "\
baton_tick_commit_lateness_seconds_bucket{le=\"0.032\"} 80
baton_tick_commit_lateness_seconds_bucket{le=\"0.05\"} 97
baton_tick_commit_lateness_seconds_bucket{le=\"0.1\"} 99
baton_tick_commit_lateness_seconds_bucket{le=\"0.25\"} 100
baton_tick_commit_lateness_seconds_bucket{le=\"+Inf\"} 100
";
        let read = Late::parse(commits, COMMITS).unwrap();
        assert_eq!(
            read,
            Late {
                all: 100,
                later_than: [3, 1, 0]
            }
        );
        assert_eq!(read.shares(), "3.00 % / 1.00 % / 0.00 % of 100");
        // Read twice, a node's second reading tells its ticks past the last
        // bound since the first; the window runs from its first to its last.
        let mut readings = Readings::new(COMMITS);
        assert_eq!(readings.read(1, commits), None, "no reading before it");
        let worse = commits
            .replace("le=\"0.25\"} 100", "le=\"0.25\"} 104")
            .replace("} 100\n", "} 110\n");
        assert_eq!(readings.read(1, &worse), Some(6));
        assert_eq!(readings.read(2, "baton_up 1\n"), None);
        assert_eq!(
            readings.over_window(),
            BTreeMap::from([(
                1,
                Late {
                    all: 10,
                    later_than: [10, 10, 6]
                }
            )])
        );
        let later = Late {
            all: 150,
            later_than: [20, 9, 3],
        };
        assert_eq!(
            later.since(starts),
            Late {
                all: 38,
                later_than: [6, 2, 0]
            }
        );
    }
}
