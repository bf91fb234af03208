//! The CPU time processes used, from Linux's `/proc`: what a phase of load
//! cost the servers and the client on the machine's cores, beside what it
//! did. On a shared machine whose disk and neighbours move commits/s by 2x
//! from one hour to the next, CPU per commit moves less: a disk that stalls
//! makes the processes wait, not work. It still moves with the machine
//! (16 % between two runs half an hour apart on 2026-12-07), so compare
//! builds in the same run.

use std::io;
use std::time::Duration;

/// The kernel's unit for a process's CPU times in `/proc/PID/stat`
/// (`USER_HZ`), which is 100 on every Linux the tests run on.
const TICKS_PER_SECOND: u64 = 100;

/// User plus system CPU time used so far by process `pid`, all its threads.
pub fn process_cpu(pid: u32) -> io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ticks = cpu_ticks(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("/proc/{pid}/stat: {stat:?}")))?;
    Ok(Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND))
}

/// utime + stime from a `/proc/PID/stat` line: its 14th and 15th fields,
/// counted after the command name, which is in parentheses and may itself
/// hold spaces and parentheses.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The CPU time a set of processes and this process use from now on.
pub struct CpuMeter {
    servers: Vec<(u32, Duration)>,
    client: Duration,
}

/// What a [`CpuMeter`] counted.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuUsed {
    /// The servers' processes together.
    pub servers: Duration,
    /// This process: the load's clients.
    pub client: Duration,
}

impl CpuMeter {
    /// Starts counting for the processes `servers` (the cluster's nodes) and
    /// for this process.
    pub fn start(servers: &[u32]) -> io::Result<CpuMeter> {
        let servers = servers
            .iter()
            .map(|pid| Ok((*pid, process_cpu(*pid)?)))
            .collect::<io::Result<_>>()?;
        Ok(CpuMeter {
            servers,
            client: process_cpu(std::process::id())?,
        })
    }

    /// What each side has used since [`CpuMeter::start`].
    pub fn used(&self) -> io::Result<CpuUsed> {
        let mut servers = Duration::ZERO;
        for (pid, before) in &self.servers {
            servers += process_cpu(*pid)?.saturating_sub(*before);
        }
        Ok(CpuUsed {
            servers,
            client: process_cpu(std::process::id())?.saturating_sub(self.client),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_times_are_read_after_a_command_name_with_spaces_and_parentheses() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt
        // majflt cmajflt utime stime cutime cstime ...
        let stat = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 1201 0 0 0 250 37 0 0 20 0 3 0";
        assert_eq!(cpu_ticks(stat), Some(287));
        assert_eq!(cpu_ticks("4242 (truncated) S 1 2"), None);
    }

    #[test]
    fn this_process_is_measured_as_it_works() {
        let meter = CpuMeter::start(&[]).unwrap();
        let started = std::time::Instant::now();
        let mut spun = 0u64;
        while started.elapsed() < Duration::from_millis(300) {
            spun = std::hint::black_box(spun.wrapping_add(1));
        }
        let used = meter.used().unwrap();
        // 300 ms of spinning on one thread, counted in 10 ms ticks; the
        // machine may have taken some of the time for others.
        assert!(used.client >= Duration::from_millis(50), "{used:?}");
        assert_eq!(used.servers, Duration::ZERO);
    }
}
