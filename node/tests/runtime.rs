//! Task modules on the wasmtime runtime: the example modules of `tasks/`
//! (built by scripts/build-tasks.sh, which scripts/test.sh runs first) and
//! modules that must be refused.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_node::runtime::{
    Fence, FenceError, FencingToken, HttpAccess, HttpGrant, ModuleError, RuntimeLimits, SecretSource, TaskContext,
    TaskEngine, TickError, TickFence,
};

fn example(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tasks/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the example modules with scripts/build-tasks.sh",
            path.display()
        )
    })
}

fn engine(limits: RuntimeLimits) -> Arc<TaskEngine> {
    TaskEngine::new(
        RuntimeLimits {
            max_instances: 8,
            ..limits
        },
        None,
    )
    .expect("engine")
}

/// An engine that caches compiled code on disk, for the Python examples: a
/// 19 MB component (it embeds CPython) is compiled once per build of these
/// tests, and loaded from the cache by every other test and engine.
fn cached_engine(limits: RuntimeLimits) -> Arc<TaskEngine> {
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("runtime-wasm-cache");
    TaskEngine::new(
        RuntimeLimits {
            max_instances: 8,
            ..limits
        },
        Some(&cache),
    )
    .expect("engine")
}

/// Loads example `name`, one loader at a time: tests run side by side, and
/// the first to load a Python example compiles it while the others wait to
/// read it from the cache.
fn load(engine: &TaskEngine, name: &str) -> Arc<baton_node::runtime::CompiledModule> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    engine.load(&example(name)).unwrap()
}

/// The two webwatch examples, Rust's and Python's: their states are alike,
/// byte for byte.
const WEBWATCHES: [&str; 2] = ["webwatch", "webwatch_py"];

fn task(name: &str, config: &str) -> TaskContext {
    TaskContext {
        name: name.into(),
        config: config.as_bytes().to_vec(),
        ..TaskContext::default()
    }
}

/// A counter's count: decimal text (or the 8 bytes earlier builds wrote).
fn count(state: &[u8]) -> u64 {
    match std::str::from_utf8(state).ok().and_then(|s| s.parse().ok()) {
        Some(n) => n,
        None => u64::from_le_bytes(state.try_into().expect("a counter state")),
    }
}

#[test]
fn counter_counts_its_ticks_from_an_empty_state() {
    let engine = engine(RuntimeLimits::default());
    let counter = engine.load(&example("counter")).unwrap();
    assert!(!counter.migrates);
    let mut state = Vec::new();
    for expected in 1..=5 {
        let outcome = engine.tick(&counter, task("c", ""), &state).unwrap();
        assert_eq!(outcome.state, expected.to_string().as_bytes(), "decimal text");
        assert_eq!(outcome.next_in_ms, None);
        state = outcome.state;
    }
}

#[test]
fn nothing_but_the_state_carries_over_from_one_tick_to_the_next() {
    // Instance slots are reused, and their memory reset in place: each tick
    // must still start from the module's own image. Past 4 MiB, what a tick
    // grew is handed back to the kernel instead; both are covered.
    let engine = engine(RuntimeLimits::default());
    let faulty = engine.load(&example("faulty")).unwrap();
    let mut state = Vec::new();
    for allocate_mib in [0, 6, 0, 1, 6] {
        for _ in 0..10 {
            let config = format!(r#"{{"remember": true, "allocate_mib": {allocate_mib}}}"#);
            let outcome = engine.tick(&faulty, task("f", &config), &state).unwrap();
            state = outcome.state;
        }
    }
    assert_eq!(count(&state), 50);
}

#[test]
fn greeter_follows_its_json_config_and_refuses_a_bad_one() {
    let engine = engine(RuntimeLimits::default());
    let greeter = engine.load(&example("greeter")).unwrap();
    let outcome = engine
        .tick(&greeter, task("g", r#"{"name": "ops", "every_ms": 250}"#), b"")
        .unwrap();
    let state: serde_json::Value = serde_json::from_slice(&outcome.state).unwrap();
    assert_eq!(state["greetings"], 1);
    assert_eq!(state["last"], "hello, ops (#1)");
    assert_eq!(outcome.next_in_ms, Some(250));
    let err = engine.tick(&greeter, task("g", "not json"), b"").unwrap_err();
    assert!(
        matches!(&err, TickError::Failed(m) if m.contains("config must be JSON")),
        "{err}"
    );
}

#[test]
fn a_trap_fails_the_tick_and_the_engine_keeps_serving() {
    let engine = engine(RuntimeLimits::default());
    let faulty = engine.load(&example("faulty")).unwrap();
    let err = engine.tick(&faulty, task("f", r#"{"trap": true}"#), b"").unwrap_err();
    assert!(matches!(err, TickError::Trapped(_)), "{err}");
    let err = engine.tick(&faulty, task("f", r#"{"fail": true}"#), b"").unwrap_err();
    assert!(
        matches!(&err, TickError::Failed(m) if m.contains("as configured")),
        "{err}"
    );
    // Every third tick traps; the others count.
    let three = engine.tick(&faulty, task("f", r#"{"trap_every": 3}"#), &2u64.to_le_bytes());
    assert!(matches!(three, Err(TickError::Trapped(_))));
    let four = engine
        .tick(&faulty, task("f", r#"{"trap_every": 3}"#), &3u64.to_le_bytes())
        .unwrap();
    assert_eq!(count(&four.state), 4);
    let counter = engine.load(&example("counter")).unwrap();
    assert_eq!(count(&engine.tick(&counter, task("c", ""), b"").unwrap().state), 1);
}

#[test]
fn an_endless_tick_is_interrupted_at_its_budget() {
    let budget = Duration::from_millis(200);
    let engine = engine(RuntimeLimits {
        tick_budget: budget,
        ..Default::default()
    });
    let faulty = engine.load(&example("faulty")).unwrap();
    let started = Instant::now();
    let err = engine.tick(&faulty, task("f", r#"{"spin": true}"#), b"").unwrap_err();
    assert_eq!(err, TickError::OverBudget(budget));
    assert!(started.elapsed() >= budget, "interrupted before its budget");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_task_that_allocates_past_its_memory_limit_fails_alone() {
    let engine = engine(RuntimeLimits {
        memory_bytes: 32 * 1024 * 1024,
        ..Default::default()
    });
    let faulty = engine.load(&example("faulty")).unwrap();
    let small = engine.tick(&faulty, task("f", r#"{"allocate_mib": 4}"#), b"").unwrap();
    assert_eq!(count(&small.state), 1);
    let err = engine
        .tick(&faulty, task("f", r#"{"allocate_mib": 64}"#), b"")
        .unwrap_err();
    assert!(matches!(err, TickError::Trapped(_)), "{err}");
    let after = engine.tick(&faulty, task("f", r#"{"allocate_mib": 4}"#), b"").unwrap();
    assert_eq!(count(&after.state), 1);
}

#[test]
fn modules_that_are_not_task_components_are_refused() {
    let engine = engine(RuntimeLimits {
        max_module_bytes: 200_000,
        ..Default::default()
    });
    assert_eq!(engine.load(b"#!/bin/sh\necho hi\n").unwrap_err(), ModuleError::NotWasm);
    let core = wat::parse_str("(module (func (export \"tick\")))").unwrap();
    assert_eq!(engine.load(&core).unwrap_err(), ModuleError::CoreModule);
    let empty_component = wat::parse_str("(component)").unwrap();
    let err = engine.load(&empty_component).unwrap_err();
    assert!(matches!(err, ModuleError::WrongInterface(_)), "{err}");
    let mut truncated = example("counter");
    truncated.truncate(truncated.len() / 2);
    assert!(matches!(engine.load(&truncated).unwrap_err(), ModuleError::Invalid(_)));
    let big = vec![0u8; 200_001];
    assert_eq!(
        engine.load(&big).unwrap_err(),
        ModuleError::TooLarge {
            size: 200_001,
            limit: 200_000
        }
    );
}

#[test]
fn workers_asking_for_a_stored_module_at_once_read_and_compile_it_once() {
    use std::sync::Barrier;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let engine = engine(RuntimeLimits::default());
    let bytes = example("counter");
    let hash = baton_node::runtime::content_hash(&bytes);
    let reads = AtomicUsize::new(0);
    let read = || {
        reads.fetch_add(1, Ordering::SeqCst);
        Some(bytes.clone())
    };
    let together = Barrier::new(16);
    let loaded: Vec<_> = std::thread::scope(|scope| {
        let askers: Vec<_> = (0..16)
            .map(|_| {
                scope.spawn(|| {
                    together.wait();
                    engine.load_stored(&hash, read).unwrap().unwrap()
                })
            })
            .collect();
        askers.into_iter().map(|a| a.join().unwrap()).collect()
    });
    assert_eq!(reads.load(Ordering::SeqCst), 1, "one read for 16 askers");
    assert!(loaded.iter().all(|m| Arc::ptr_eq(m, &loaded[0])), "one compiled module");

    // Bytes this node does not have yet; bytes that are not the module asked for.
    let other = "0".repeat(64);
    assert!(engine.load_stored(&other, || None).is_none());
    let err = engine.load_stored(&other, || Some(bytes.clone())).unwrap().unwrap_err();
    assert_eq!(
        err,
        ModuleError::Damaged {
            expected: other.clone(),
            actual: hash
        }
    );
    assert!(engine.loaded(&other).is_none());
}

#[test]
fn workers_polling_for_a_module_not_yet_stored_read_one_at_a_time() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    // Each worker of a module not fetched yet asks again and again; the
    // bytes are read under one lock per module, never by two at once.
    let engine = engine(RuntimeLimits::default());
    let hash = "1".repeat(64);
    let (reading, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let read = || {
        let now = reading.fetch_add(1, Ordering::SeqCst) + 1;
        most.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(1));
        reading.fetch_sub(1, Ordering::SeqCst);
        None
    };
    std::thread::scope(|scope| {
        for _ in 0..16 {
            scope.spawn(|| {
                for _ in 0..50 {
                    assert!(engine.load_stored(&hash, read).is_none());
                }
            });
        }
    });
    assert_eq!(most.load(Ordering::SeqCst), 1, "two read at once");
}

#[test]
fn a_module_that_imports_wasi_http_is_known_as_one() {
    let engine = engine(RuntimeLimits::default());
    assert!(engine.load(&example("webwatch")).unwrap().imports_http);
    assert!(!engine.load(&example("counter")).unwrap().imports_http);
    assert!(!engine.load(&example("witnessed")).unwrap().imports_http);
}

#[test]
fn a_module_that_imports_the_secrets_interface_is_known_as_one() {
    // A Rust module imports only what it calls: one that reads no secret
    // runs on nodes that have no secrets interface (before 0.10.0).
    let engine = cached_engine(RuntimeLimits::default());
    assert!(load(&engine, "webwatch").imports_secrets);
    assert!(!load(&engine, "counter").imports_secrets);
    // componentize-py imports the whole world, used or not: every Python
    // module built with this release's SDK needs cluster version 11.
    assert!(load(&engine, "webwatch_py").imports_secrets);
    assert!(load(&engine, "counter_py").imports_secrets);
}

#[test]
fn modules_are_compiled_by_threads_of_lower_priority_than_the_nodes() {
    /// Field 19 of a thread's stat (after the command's parenthesis, the
    /// 17th); None for a thread gone meanwhile.
    fn nice(stat: &str) -> Option<i32> {
        let rest = stat.get(stat.rfind(')')? + 2..)?;
        rest.split(' ').nth(16)?.parse().ok()
    }
    let own = nice(&std::fs::read_to_string("/proc/thread-self/stat").unwrap()).unwrap();
    let engine = engine(RuntimeLimits::default());
    engine.load(&example("greeter")).unwrap();
    // rayon's pool, where wasmtime compiles, lives on after the compile
    // (the short-lived `baton-compile` threads of other tests do not).
    let mut pool = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = entry.unwrap().path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(dir.join("stat")).ok();
        if name.starts_with("baton-compile-")
            && let Some(n) = stat.as_deref().and_then(nice)
        {
            pool.push((name.trim().to_string(), n));
        }
    }
    assert!(!pool.is_empty(), "no compile threads");
    let lowered = (own + 10).min(19);
    assert!(
        pool.iter().all(|(_, n)| *n == lowered),
        "the test runs at {own}: {pool:?}"
    );
    let after = nice(&std::fs::read_to_string("/proc/thread-self/stat").unwrap()).unwrap();
    assert_eq!(after, own, "the test's own thread was lowered");
}

#[test]
fn a_module_is_compiled_once_per_content_hash() {
    let engine = engine(RuntimeLimits::default());
    let bytes = example("counter");
    let first = engine.load(&bytes).unwrap();
    let second = engine.load(&bytes).unwrap();
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(first.hash.len(), 64);
    assert_ne!(first.hash, engine.load(&example("faulty")).unwrap().hash);
}

#[test]
fn a_task_reaches_only_the_network_addresses_it_was_granted() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        // Answers every connection that reaches it; counts them.
        let mut answered = 0;
        listener.set_nonblocking(false).unwrap();
        for stream in listener.incoming().take(1) {
            let mut stream = stream.unwrap();
            let mut ping = [0u8; 4];
            stream.read_exact(&mut ping).unwrap();
            stream.write_all(b"pong").unwrap();
            answered += 1;
        }
        answered
    });
    let engine = engine(RuntimeLimits::default());
    let probe = engine.load(&example("netprobe")).unwrap();

    let no_grant = engine.tick(&probe, task("p", &addr), b"").unwrap_err();
    assert!(
        matches!(&no_grant, TickError::Failed(m) if m.contains("not among the task's network grants")),
        "{no_grant}"
    );
    let other = TaskContext {
        allow_net: vec!["127.0.0.1:1".into()],
        ..task("p", &addr)
    };
    assert!(
        engine.tick(&probe, other, b"").is_err(),
        "a grant for another address let it through"
    );

    let granted = TaskContext {
        allow_net: vec![addr.clone()],
        ..task("p", &addr)
    };
    let outcome = engine.tick(&probe, granted, b"").unwrap();
    assert_eq!(outcome.state, b"pong");
    assert_eq!(server.join().unwrap(), 1, "only the granted tick connected");
}

#[test]
fn a_state_over_the_cap_fails_the_tick_naming_the_task_and_the_cap() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // Answers with 1,000 bytes, then 1,001: one state at the cap, one over.
    let server = std::thread::spawn(move || {
        for (size, stream) in [1_000, 1_001].into_iter().zip(listener.incoming()) {
            let mut stream = stream.unwrap();
            stream.read_exact(&mut [0u8; 4]).unwrap();
            stream.write_all(&vec![b'x'; size]).unwrap();
        }
    });
    let engine = engine(RuntimeLimits {
        max_state_bytes: 1_000,
        ..RuntimeLimits::default()
    });
    let probe = engine.load(&example("netprobe")).unwrap();
    let granted = || TaskContext {
        allow_net: vec![addr.clone()],
        ..task("poller-7", &addr)
    };
    let at_cap = engine.tick(&probe, granted(), b"").unwrap();
    assert_eq!(at_cap.state.len(), 1_000, "a state at the cap is kept");
    let over = engine.tick(&probe, granted(), b"").unwrap_err();
    assert_eq!(
        over,
        TickError::StateTooLarge {
            task: "poller-7".into(),
            size: 1_001,
            limit: 1_000
        }
    );
    let message = over.to_string();
    assert!(
        message.contains("poller-7") && message.contains("1000 bytes") && message.contains("max_state_bytes"),
        "{message}"
    );
    server.join().unwrap();
}

#[test]
fn counter_v2_migrates_states_up_and_down_and_v1_does_not_migrate() {
    let engine = engine(RuntimeLimits::default());
    let v1 = engine.load(&example("counter")).unwrap();
    let v2 = engine.load(&example("counter_v2")).unwrap();
    assert!(v2.migrates && !v1.migrates);
    // Up: version 1's count becomes version 2's text, in the tick's instance
    // (and so does the 8-byte form of earlier builds of version 1).
    let outcome = engine.tick_migrated(&v2, task("c", ""), 1, 2, b"41").unwrap();
    assert_eq!(outcome.state, b"counter-v2:42");
    let outcome = engine
        .tick_migrated(&v2, task("c", ""), 1, 2, &41u64.to_le_bytes())
        .unwrap();
    assert_eq!(outcome.state, b"counter-v2:42");
    // Down: version 2 writes its state back in version 1's format.
    let down = engine.migrate(&v2, task("c", ""), 2, 1, b"counter-v2:42").unwrap();
    assert_eq!(down, b"42");
    assert_eq!(count(&engine.tick(&v1, task("c", ""), &down).unwrap().state), 43);
    assert_eq!(engine.can_downgrade(&v2, 2, 1), Ok(true));
    // A module without migrate keeps one format: states pass unchanged.
    assert_eq!(engine.migrate(&v1, task("c", ""), 2, 1, b"as is").unwrap(), b"as is");
    assert_eq!(engine.can_downgrade(&v1, 2, 1), Ok(true));
    // A state it cannot read fails the tick and says why.
    let err = engine.tick_migrated(&v2, task("c", ""), 1, 2, b"garbage").unwrap_err();
    assert!(
        err.to_string().contains("migrating the state from version 1 to 2"),
        "{err}"
    );
}

#[test]
fn the_python_counter_migrates_the_rust_counters_states_up_and_back_down() {
    let engine = cached_engine(RuntimeLimits::default());
    let python = load(&engine, "counter_py");
    let rust = load(&engine, "counter");
    assert!(python.migrates);
    assert!(python.imports_http, "built against a world that imports wasi:http");
    let outcome = engine.tick(&python, task("c", ""), b"").unwrap();
    assert_eq!(outcome.state, br#"{"count":1}"#);
    let outcome = engine.tick(&python, task("c", ""), &outcome.state).unwrap();
    assert_eq!(outcome.state, br#"{"count":2}"#);
    // Up from each Rust counter's format, in the tick's instance.
    for rust_state in [&b"41"[..], &41u64.to_le_bytes(), b"counter-v2:41"] {
        let outcome = engine.tick_migrated(&python, task("c", ""), 1, 2, rust_state).unwrap();
        assert_eq!(outcome.state, br#"{"count":42}"#, "from {rust_state:?}");
    }
    // Down: back to the Rust counter's decimal text, which it goes on from.
    let down = engine
        .migrate(&python, task("c", ""), 2, 1, br#"{"count":42}"#)
        .unwrap();
    assert_eq!(down, b"42");
    assert_eq!(count(&engine.tick(&rust, task("c", ""), &down).unwrap().state), 43);
    assert_eq!(engine.can_downgrade(&python, 2, 1), Ok(true));
    // A state it cannot read fails the migration, with the SDK's message.
    let err = engine
        .tick_migrated(&python, task("c", ""), 1, 2, b"garbage")
        .unwrap_err();
    assert!(
        err.to_string().contains("migrating the state from version 1 to 2")
            && err
                .to_string()
                .contains("expected a count as decimal text or 8 bytes, got 7 bytes"),
        "{err}"
    );
}

#[test]
fn a_python_exception_fails_the_tick_with_its_type_message_and_line() {
    let engine = cached_engine(RuntimeLimits::default());
    let python = load(&engine, "counter_py");
    // int(b"x") raises a ValueError that the example does not catch: the
    // SDK turns it into a failed tick (not a trap), saying where.
    let err = engine.tick(&python, task("c", ""), b"counter-v2:x").unwrap_err();
    assert!(
        matches!(&err, TickError::Failed(m) if m.starts_with("tick raised ValueError: invalid literal for int()")
            && m.contains("app.py line")),
        "{err}"
    );
    // The engine goes on serving the module.
    assert_eq!(
        engine.tick(&python, task("c", ""), b"7").unwrap().state,
        br#"{"count":8}"#
    );
}

#[test]
fn the_broken_counter_v3_traps_on_its_first_tick() {
    let engine = engine(RuntimeLimits::default());
    let v3 = engine.load(&example("counter_v3_broken")).unwrap();
    let err = engine.tick(&v3, task("c", ""), b"counter-v2:42").unwrap_err();
    assert!(matches!(err, TickError::Trapped(_)), "{err}");
}

/// A fence that lets a tick run until `until`, and refuses after `calls`
/// questions (counting the one before the start).
struct TestFence {
    until: Instant,
    calls: std::sync::atomic::AtomicU32,
    refuse_after: u32,
}

impl TestFence {
    fn fence(until: Instant, refuse_after: u32) -> Fence {
        Fence::new(Arc::new(TestFence {
            until,
            calls: Default::default(),
            refuse_after,
        }))
    }
}

impl TickFence for TestFence {
    fn permit(&self, now: Instant) -> Result<Instant, FenceError> {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if n >= self.refuse_after {
            return Err(FenceError::NotOwner { epoch: 3 });
        }
        match now < self.until {
            true => Ok(self.until),
            false => Err(FenceError::LeaseEnded),
        }
    }
}

/// Ticks `task` on `module` under a lease that ends `after` from now, and
/// checks that the tick ends as fenced within `slack` of the lease's end.
fn stopped_at_lease_end(
    engine: &TaskEngine,
    module: &baton_node::runtime::CompiledModule,
    task: TaskContext,
    after: Duration,
    slack: Duration,
) {
    let lease_end = Instant::now() + after;
    let fenced = TaskContext {
        fence: TestFence::fence(lease_end, u32::MAX),
        ..task
    };
    let err = engine.tick(module, fenced, b"").unwrap_err();
    assert_eq!(err, TickError::Fenced(FenceError::LeaseEnded));
    let late = Instant::now().saturating_duration_since(lease_end);
    assert!(late < slack, "ran {late:?} past the lease");
}

#[test]
fn a_tick_is_interrupted_when_its_lease_ends_long_before_its_budget() {
    let engine = engine(RuntimeLimits {
        tick_budget: Duration::from_secs(5),
        ..Default::default()
    });
    let faulty = engine.load(&example("faulty")).unwrap();
    let spinning = task("f", r#"{"spin": true}"#);
    stopped_at_lease_end(
        &engine,
        &faulty,
        spinning,
        Duration::from_millis(150),
        Duration::from_millis(100),
    );
}

#[test]
fn a_sleeping_tick_ends_at_its_budget_and_a_short_sleep_is_kept() {
    // A sleep waits in wasi:io/poll, where no guest code runs to meet the
    // epoch checks: the wait itself must end at the budget.
    let budget = Duration::from_millis(300);
    let engine = engine(RuntimeLimits {
        tick_budget: budget,
        ..Default::default()
    });
    let faulty = engine.load(&example("faulty")).unwrap();
    let started = Instant::now();
    let err = engine
        .tick(&faulty, task("f", r#"{"sleep_ms": 60000}"#), b"")
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err, TickError::OverBudget(budget));
    assert!(took >= budget, "ended before its budget: {took:?}");
    assert!(took < budget + Duration::from_secs(2), "slept {took:?}");
    // A sleep within the budget sleeps its time, and the tick counts.
    let started = Instant::now();
    let outcome = engine.tick(&faulty, task("f", r#"{"sleep_ms": 100}"#), b"").unwrap();
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(count(&outcome.state), 1);
}

#[test]
fn a_tick_sleeping_when_its_turn_ends_is_stopped_as_fenced() {
    let engine = engine(RuntimeLimits {
        tick_budget: Duration::from_secs(30),
        ..Default::default()
    });
    let faulty = engine.load(&example("faulty")).unwrap();
    // The lease ends while the tick sleeps.
    let sleeping = task("f", r#"{"sleep_ms": 60000}"#);
    stopped_at_lease_end(
        &engine,
        &faulty,
        sleeping,
        Duration::from_millis(200),
        Duration::from_millis(500),
    );
    // The task moves to another owner while the tick sleeps.
    let moved = TaskContext {
        fence: TestFence::fence(Instant::now() + Duration::from_secs(60), 3),
        ..task("f", r#"{"sleep_ms": 60000}"#)
    };
    let started = Instant::now();
    let err = engine.tick(&faulty, moved, b"").unwrap_err();
    assert_eq!(err, TickError::Fenced(FenceError::NotOwner { epoch: 3 }));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "slept {:?}",
        started.elapsed()
    );
}

#[test]
fn a_tick_whose_fence_refuses_does_not_start() {
    let engine = engine(RuntimeLimits::default());
    let counter = engine.load(&example("counter")).unwrap();
    let refused = TaskContext {
        fence: TestFence::fence(Instant::now() + Duration::from_secs(5), 0),
        ..task("c", "")
    };
    let err = engine.tick(&counter, refused, b"").unwrap_err();
    assert_eq!(err, TickError::Fenced(FenceError::NotOwner { epoch: 3 }));
}

#[test]
fn a_host_call_with_an_effect_is_refused_once_the_fence_closes() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let engine = engine(RuntimeLimits::default());
    let probe = engine.load(&example("netprobe")).unwrap();
    // The fence holds at the start and refuses from the next question on.
    let task = TaskContext {
        allow_net: vec![addr.clone()],
        fence: TestFence::fence(Instant::now() + Duration::from_secs(5), 1),
        ..task("p", &addr)
    };
    let err = engine.tick(&probe, task, b"").unwrap_err();
    assert!(
        matches!(&err, TickError::Failed(m) if m.contains("not sent") && m.contains("no longer owns"))
            || err == TickError::Fenced(FenceError::NotOwner { epoch: 3 }),
        "{err}"
    );
    assert!(listener.accept().is_err(), "the refused call connected all the same");
}

#[test]
fn a_task_whose_peer_never_answers_fails_at_its_deadline() {
    // Accepts (the kernel does) and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let budget = Duration::from_millis(300);
    let engine = engine(RuntimeLimits {
        tick_budget: budget,
        ..Default::default()
    });
    let probe = engine.load(&example("netprobe")).unwrap();
    let granted = TaskContext {
        allow_net: vec![addr.clone()],
        ..task("p", &addr)
    };
    let started = Instant::now();
    let err = engine.tick(&probe, granted, b"").unwrap_err();
    let took = started.elapsed();
    // The call gives up at the deadline; the guest is then interrupted as
    // soon as it runs again, or returns the call's error first.
    assert!(
        matches!(&err, TickError::Failed(m) if m.contains("deadline")) || err == TickError::OverBudget(budget),
        "{err}"
    );
    assert!(took >= budget - Duration::from_millis(20), "gave up after {took:?}");
    assert!(took < budget + Duration::from_millis(500), "held {took:?}");
    drop(listener);
}

#[test]
fn the_witnessed_module_tells_the_witness_its_task_node_and_fencing_token() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = String::new();
        stream.read_to_string(&mut request).unwrap();
        stream.write_all(b"ok").unwrap();
        request
    });
    let engine = engine(RuntimeLimits::default());
    let witnessed = engine.load(&example("witnessed")).unwrap();
    let task = TaskContext {
        allow_net: vec![addr.clone()],
        node: 7,
        token: FencingToken { epoch: 3, tick: 9 },
        ..task("w-1", &addr)
    };
    let outcome = engine.tick(&witnessed, task, &8u64.to_le_bytes()).unwrap();
    assert_eq!(count(&outcome.state), 9);
    assert_eq!(server.join().unwrap(), "task=w-1 node=7 epoch=3 tick=9");
}

/// An HTTPS server on loopback with a certificate for `localhost` from a CA
/// made here: it answers every request with `body` (or, to a request with
/// a body, the body's length), and counts the connections it accepted,
/// the requests it read whole, and the bytes of their bodies.
struct HttpsServer {
    port: u16,
    ca_pem: String,
    requests: Arc<std::sync::atomic::AtomicUsize>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    body_bytes: Arc<std::sync::atomic::AtomicUsize>,
    /// The `authorization` header of each request read whole, if it had one.
    authorizations: Arc<std::sync::Mutex<Vec<String>>>,
}

impl HttpsServer {
    fn start(body: Vec<u8>) -> HttpsServer {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        baton_node::tls::install_crypto_provider();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(
                    vec![CertificateDer::from(cert.der().to_vec())],
                    PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
                )
                .unwrap(),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let body_bytes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let authorizations = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (counted, connections, received) = (requests.clone(), accepted.clone(), body_bytes.clone());
        let authorized = authorizations.clone();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            use std::sync::atomic::Ordering::SeqCst;
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { continue };
                connections.fetch_add(1, SeqCst);
                let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                    continue;
                };
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let original = String::from_utf8_lossy(&request[..end]).into_owned();
                let head = original.to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(0);
                let mut sent = request[end + 4..].to_vec();
                while sent.len() < length {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => sent.extend_from_slice(&buf[..n]),
                    }
                }
                if sent.len() < length {
                    continue;
                }
                counted.fetch_add(1, SeqCst);
                received.fetch_add(sent.len(), SeqCst);
                let authorization = original.lines().find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("authorization")
                        .then(|| value.trim().to_string())
                });
                authorized.lock().unwrap().extend(authorization);
                let answer = match length {
                    0 => body.clone(),
                    n => n.to_string().into_bytes(),
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    answer.len()
                );
                let _ = tls.write_all(head.as_bytes());
                let _ = tls.write_all(&answer);
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        });
        HttpsServer {
            port,
            ca_pem: ca.pem(),
            requests,
            accepted,
            body_bytes,
            authorizations,
        }
    }

    fn url(&self) -> String {
        format!("https://localhost:{}/feed?page=1", self.port)
    }

    fn grant(&self) -> baton_node::runtime::HttpGrant {
        baton_node::runtime::HttpGrant::parse(&format!("https://localhost:{}", self.port)).unwrap()
    }

    fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn access(&self) -> HttpAccess {
        HttpAccess::granted(vec![self.grant()])
            .with_ca(self.ca_pem.as_bytes())
            .unwrap()
    }
}

/// A plain-HTTP server on loopback that answers every request with a head
/// promising a 1,000-byte body, sends four bytes of it, and then nothing.
fn stalling_server() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut held = Vec::new();
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { continue };
            let mut buf = [0u8; 4096];
            let _ = tcp.read(&mut buf);
            let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nsome");
            held.push(tcp);
        }
    });
    addr
}

/// Access to `http://{addr}` only.
fn plain_http(addr: std::net::SocketAddr) -> HttpAccess {
    HttpAccess::granted(vec![HttpGrant::parse(&format!("http://{addr}")).unwrap()])
}

fn watching(url: &str, http: HttpAccess) -> TaskContext {
    TaskContext {
        http,
        ..task("w", &format!(r#"{{"url": "{url}"}}"#))
    }
}

#[test]
fn a_task_polls_a_granted_https_server_that_its_ca_vouches_for() {
    let engine = cached_engine(RuntimeLimits::default());
    let mut states = Vec::new();
    for name in WEBWATCHES {
        let server = HttpsServer::start(b"first body".to_vec());
        let webwatch = load(&engine, name);
        let access = HttpAccess::granted(vec![server.grant()])
            .with_ca(server.ca_pem.as_bytes())
            .unwrap();
        let mut state = Vec::new();
        for _ in 0..2 {
            let outcome = engine
                .tick(&webwatch, watching(&server.url(), access.clone()), &state)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            state = outcome.state;
        }
        let seen: serde_json::Value = serde_json::from_slice(&state).unwrap();
        assert_eq!(seen["polls"], 2, "{name}: {seen}");
        assert_eq!(seen["changes"], 1, "{name}: the same body twice: {seen}");
        assert_eq!(seen["status"], 200, "{name}");
        assert_eq!(seen["bytes"], 10, "{name}");
        assert_eq!(server.requests(), 2, "{name}");

        // Without the task's CA, the system's roots do not vouch for it.
        let untrusted = HttpAccess::granted(vec![server.grant()]);
        let err = engine
            .tick(&webwatch, watching(&server.url(), untrusted), b"")
            .unwrap_err();
        assert!(
            matches!(&err, TickError::Failed(m) if m.contains("certificate is not trusted")),
            "{name}: {err}"
        );
        assert_eq!(server.requests(), 2, "{name}: a request went to an untrusted server");
        states.push(state);
    }
    assert_eq!(
        String::from_utf8_lossy(&states[0]),
        String::from_utf8_lossy(&states[1]),
        "Rust's and Python's webwatch keep one state format"
    );
}

/// Secrets of fixed values, as the node's source gives the sealed ones.
struct GivenSecrets(Vec<(&'static str, &'static [u8])>);

impl SecretSource for GivenSecrets {
    fn get(&self, name: &str) -> Result<Vec<u8>, String> {
        let found = self.0.iter().find(|(n, _)| *n == name);
        found
            .map(|(_, v)| v.to_vec())
            .ok_or_else(|| format!("the task has no secret named {name}"))
    }
}

#[test]
fn a_task_sends_its_secret_as_a_bearer_token_and_a_missing_one_fails_its_tick() {
    let engine = cached_engine(RuntimeLimits::default());
    let secrets: Arc<dyn SecretSource> = Arc::new(GivenSecrets(vec![("API_TOKEN", b"s3cret-t0ken")]));
    for name in WEBWATCHES {
        let server = HttpsServer::start(b"feed".to_vec());
        let webwatch = load(&engine, name);
        let bearing = |secret: &str| TaskContext {
            http: server.access(),
            secrets: Some(secrets.clone()),
            ..task(
                "w",
                &format!(r#"{{"url": "{}", "bearer_secret": "{secret}"}}"#, server.url()),
            )
        };
        let outcome = engine
            .tick(&webwatch, bearing("API_TOKEN"), b"")
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let seen: serde_json::Value = serde_json::from_slice(&outcome.state).unwrap();
        assert_eq!(seen["status"], 200, "{name}: {seen}");
        assert_eq!(
            *server.authorizations.lock().unwrap(),
            ["Bearer s3cret-t0ken"],
            "{name}"
        );
        // Its state keeps what it read, not the secret.
        assert!(!String::from_utf8_lossy(&outcome.state).contains("s3cret"), "{name}");

        let err = engine.tick(&webwatch, bearing("OTHER"), b"").unwrap_err();
        assert!(
            matches!(&err, TickError::Failed(m) if m.contains("no secret named OTHER")),
            "{name}: {err}"
        );
        assert_eq!(server.requests(), 1, "{name}: a request without its secret was sent");
        // A task given no secrets at all is told so.
        let bare = TaskContext {
            secrets: None,
            ..bearing("API_TOKEN")
        };
        let err = engine.tick(&webwatch, bare, b"").unwrap_err();
        assert!(
            matches!(&err, TickError::Failed(m) if m.contains("has no secrets")),
            "{name}: {err}"
        );
    }
}

#[test]
fn a_server_not_granted_is_refused_with_nothing_sent() {
    let engine = cached_engine(RuntimeLimits::default());
    for name in WEBWATCHES {
        refused_with_nothing_sent(&engine, &load(&engine, name));
    }
}

fn refused_with_nothing_sent(engine: &TaskEngine, webwatch: &baton_node::runtime::CompiledModule) {
    let server = HttpsServer::start(b"body".to_vec());
    let other_port = HttpGrant::parse(&format!("https://localhost:{}", server.port + 1)).unwrap();
    let plain = HttpGrant::parse(&format!("http://localhost:{}", server.port)).unwrap();
    let other_host = HttpGrant::parse(&format!("https://127.0.0.1:{}", server.port)).unwrap();
    for grants in [vec![], vec![other_port], vec![plain], vec![other_host]] {
        let access = HttpAccess::granted(grants.clone())
            .with_ca(server.ca_pem.as_bytes())
            .unwrap();
        let err = engine.tick(webwatch, watching(&server.url(), access), b"").unwrap_err();
        assert!(
            matches!(&err, TickError::Failed(m) if m.contains("not granted this server")),
            "{grants:?}: {err}"
        );
    }
    assert_eq!(server.accepted(), 0, "a refused request connected");
}

#[test]
fn a_task_posts_a_body_larger_than_a_write_and_the_server_reads_it_whole() {
    let engine = cached_engine(RuntimeLimits::default());
    for name in WEBWATCHES {
        let server = HttpsServer::start(Vec::new());
        let webwatch = load(&engine, name);
        let text = "x".repeat(10_000);
        let posting = TaskContext {
            http: server.access(),
            ..task("w", &format!(r#"{{"url": "{}", "post": "{text}"}}"#, server.url()))
        };
        let outcome = engine.tick(&webwatch, posting, b"").unwrap();
        let seen: serde_json::Value = serde_json::from_slice(&outcome.state).unwrap();
        assert_eq!(seen["status"], 200, "{name}: {seen}");
        // The server answers with the length it read.
        assert_eq!(seen["bytes"], 5, "{name}: {seen}");
        assert_eq!(
            server.body_bytes.load(std::sync::atomic::Ordering::SeqCst),
            10_000,
            "{name}"
        );
    }
}

#[test]
fn a_tick_may_make_only_so_many_requests() {
    // Only Baton's own outgoing handler counts them: this also shows that
    // it, and not wasmtime-wasi-http's, answers the guest's calls.
    let server = HttpsServer::start(b"ok".to_vec());
    let engine = engine(RuntimeLimits {
        tick_budget: Duration::from_secs(20),
        ..Default::default()
    });
    let faulty = engine.load(&example("faulty")).unwrap();
    let asking = |times: u32| TaskContext {
        http: server.access(),
        ..task("f", &format!(r#"{{"get": "{}", "times": {times}}}"#, server.url()))
    };
    engine.tick(&faulty, asking(64), b"").unwrap();
    assert_eq!(server.requests(), 64);
    let err = engine.tick(&faulty, asking(65), b"").unwrap_err();
    assert!(
        matches!(&err, TickError::Failed(m) if m.contains("too many requests in one tick")),
        "{err}"
    );
    assert_eq!(server.requests(), 128, "the 65th request was sent");
}

#[test]
fn a_response_whose_body_never_comes_fails_the_tick_at_its_deadline() {
    let addr = stalling_server();
    let budget = Duration::from_millis(400);
    let engine = engine(RuntimeLimits {
        tick_budget: budget,
        ..Default::default()
    });
    let webwatch = engine.load(&example("webwatch")).unwrap();
    let access = plain_http(addr);
    let started = Instant::now();
    let err = engine
        .tick(&webwatch, watching(&format!("http://{addr}/"), access), b"")
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(&err, TickError::Failed(_)) || err == TickError::OverBudget(budget),
        "{err}"
    );
    assert!(took < budget + Duration::from_secs(1), "held {took:?}");
}

#[test]
fn a_blocking_read_of_a_body_that_never_comes_ends_at_the_budget() {
    // blocking-read waits in the host itself: it too ends with the budget,
    // as an interrupted tick (not a failed read).
    let addr = stalling_server();
    let budget = Duration::from_millis(400);
    let engine = engine(RuntimeLimits {
        tick_budget: budget,
        ..Default::default()
    });
    let faulty = engine.load(&example("faulty")).unwrap();
    let reading = TaskContext {
        http: plain_http(addr),
        ..task("f", &format!(r#"{{"blocking_get": "{addr}"}}"#))
    };
    let started = Instant::now();
    let err = engine.tick(&faulty, reading, b"").unwrap_err();
    assert_eq!(err, TickError::OverBudget(budget));
    assert!(
        started.elapsed() < budget + Duration::from_secs(1),
        "held {:?}",
        started.elapsed()
    );
}

#[test]
fn an_http_server_that_never_answers_fails_the_tick_at_its_deadline() {
    // Accepts (the kernel does) and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let budget = Duration::from_millis(300);
    let engine = cached_engine(RuntimeLimits {
        tick_budget: budget,
        ..Default::default()
    });
    for name in WEBWATCHES {
        let webwatch = load(&engine, name);
        let access = plain_http(addr);
        let started = Instant::now();
        let err = engine
            .tick(&webwatch, watching(&format!("http://{addr}/"), access), b"")
            .unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(&err, TickError::Failed(m) if m.contains("deadline")) || err == TickError::OverBudget(budget),
            "{name}: {err}"
        );
        assert!(
            took >= budget - Duration::from_millis(20),
            "{name} gave up after {took:?}"
        );
        assert!(took < budget + Duration::from_secs(1), "{name} held {took:?}");
    }
    drop(listener);
}

#[test]
fn a_response_body_over_the_cap_fails_the_request() {
    let server = HttpsServer::start(vec![b'x'; 5000]);
    let engine = cached_engine(RuntimeLimits::default());
    for name in WEBWATCHES {
        let webwatch = load(&engine, name);
        let access = HttpAccess {
            max_response_bytes: 1000,
            ..HttpAccess::granted(vec![server.grant()])
                .with_ca(server.ca_pem.as_bytes())
                .unwrap()
        };
        let err = engine
            .tick(&webwatch, watching(&server.url(), access), b"")
            .unwrap_err();
        assert!(
            matches!(&err, TickError::Failed(m) if m.contains("body size exceeds limit: 1000 bytes")),
            "{name}: {err}"
        );
    }
}

#[test]
fn a_request_whose_lease_ends_meanwhile_ends_the_tick_as_fenced() {
    let engine = cached_engine(RuntimeLimits {
        tick_budget: Duration::from_secs(30),
        ..Default::default()
    });
    for name in WEBWATCHES {
        fenced_mid_request(&engine, &load(&engine, name));
    }
}

fn fenced_mid_request(engine: &TaskEngine, webwatch: &baton_node::runtime::CompiledModule) {
    // Accepts and never answers: the request waits, and the lease ends.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let access = plain_http(addr);
    let waiting = watching(&format!("http://{addr}/"), access.clone());
    stopped_at_lease_end(
        engine,
        webwatch,
        waiting,
        // Time for a Python module's instance and request on a loaded
        // machine: the request must be under way when the lease ends.
        Duration::from_millis(1_000),
        Duration::from_millis(500),
    );
    // A fence already closed at the call: the tick ends there, and nothing
    // connects.
    // The request above reached the server (the kernel accepted it) before
    // the lease ended: the tick was cut off mid-request, not refused at the
    // call.
    listener.set_nonblocking(true).unwrap();
    let mut reached = 0;
    while listener.accept().is_ok() {
        reached += 1;
    }
    assert!(
        reached >= 1,
        "the request never connected: the lease ended before it was made"
    );
    let task = TaskContext {
        fence: TestFence::fence(Instant::now() + Duration::from_secs(30), 1),
        ..watching(&format!("http://{addr}/"), access)
    };
    let err = engine.tick(webwatch, task, b"").unwrap_err();
    assert_eq!(err, TickError::Fenced(FenceError::NotOwner { epoch: 3 }));
    assert!(listener.accept().is_err(), "the refused request connected all the same");
}
