//! The heart's binary slots, driven with child programs scripted to exit at
//! start, exit 0, run on without being made permanent, hang through
//! SIGTERM, or run well; and with the real `baton-node`, the heart killed
//! in the middle of a trial. In every case the node ends on a binary that
//! runs, and the heart says why it reverted.

mod support;

use std::time::{Duration, Instant};

use baton_node::modules::signing::{SigningKey, generate, public_key_text};
use baton_proto::SignedBinary;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::heart::{HeartUnderTest, poll, start_heart_with};
use tonic::Code;

/// A heart that trusts `key`, on an installed node that runs on, and stops
/// its node within half a second (plus the heart's 2 s) of SIGTERM.
fn heart_trusting(key: &SigningKey) -> HeartUnderTest {
    let trusted = public_key_text(&key.verifying_key());
    start_heart_with(
        "exec sleep 1000",
        &[],
        &format!("trusted_keys = [\"{trusted}\"]\n\n[timing]\nshutdown_grace_ms = 500\n"),
    )
}

const WITHIN: Duration = Duration::from_secs(20);

async fn reverted_because(heart: &HeartUnderTest, hash: &str) -> String {
    let status = heart
        .await_status("the revert", |s| s.trial.is_none() && s.running_hash == "installed")
        .await;
    assert!(status.permanent.is_none(), "{status:?}");
    assert!(status.last_revert.contains(&hash[..12]), "{status:?}");
    status.last_revert
}

#[tokio::test]
async fn a_trial_that_exits_is_reverted_at_once_whatever_its_code() {
    for (body, how) in [("exit 1", "exit status 1"), ("exit 0", "exit status 0")] {
        let key = generate();
        let heart = heart_trusting(&key);
        heart.await_runs(&["installed"], WITHIN);
        let hash = heart.stage_script("trial", body, &key).await;
        heart.try_binary(&hash, Duration::from_secs(60)).await.unwrap();
        heart.await_runs(&["installed", "trial", "installed"], WITHIN);
        let reason = reverted_because(&heart, &hash).await;
        assert!(
            reason.contains(how) && reason.contains("before it was made permanent"),
            "{reason}"
        );

        // The reverted binary is not run again when the node dies.
        kill(heart.node_pid().unwrap(), Signal::SIGKILL).unwrap();
        heart.await_runs(&["installed", "trial", "installed", "installed"], WITHIN);
    }
}

#[tokio::test]
async fn a_trial_never_made_permanent_is_stopped_at_its_deadline() {
    let key = generate();
    let heart = heart_trusting(&key);
    heart.await_runs(&["installed"], WITHIN);
    let hash = heart.stage_script("trial", "exec sleep 1000", &key).await;
    let tried = Instant::now();
    heart.try_binary(&hash, Duration::from_millis(1500)).await.unwrap();
    let status = heart.await_status("the trial to run", |s| s.running_hash == hash).await;
    assert!(status.trial_ms_left > 0 && status.trial_ms_left <= 1500, "{status:?}");
    heart.await_runs(&["installed", "trial", "installed"], WITHIN);
    assert!(tried.elapsed() >= Duration::from_millis(1500), "reverted early");
    let reason = reverted_because(&heart, &hash).await;
    assert!(reason.contains("without being made permanent"), "{reason}");
}

#[tokio::test]
async fn a_trial_that_hangs_through_sigterm_is_killed_and_reverted() {
    let key = generate();
    let heart = heart_trusting(&key);
    heart.await_runs(&["installed"], WITHIN);
    let hash = heart
        .stage_script("trial", "trap '' TERM\nwhile :; do sleep 0.05; done", &key)
        .await;
    heart.try_binary(&hash, Duration::from_millis(500)).await.unwrap();
    heart.await_runs(&["installed", "trial", "installed"], WITHIN);
    let reason = reverted_because(&heart, &hash).await;
    assert!(reason.contains("without being made permanent"), "{reason}");
}

#[tokio::test]
async fn a_trial_made_permanent_runs_on_and_is_booted_from_then_on() {
    let key = generate();
    let mut heart = heart_trusting(&key);
    heart.await_runs(&["installed"], WITHIN);
    let hash = heart.stage_script("new", "exec sleep 1000", &key).await;
    assert_eq!(
        heart.make_permanent(&hash).await.unwrap_err().code(),
        Code::FailedPrecondition,
        "nothing on trial yet"
    );
    heart.try_binary(&hash, Duration::from_secs(1)).await.unwrap();
    let running = heart.await_status("the trial to run", |s| s.running_hash == hash).await;
    heart.make_permanent(&hash).await.unwrap();
    heart.make_permanent(&hash).await.unwrap(); // asked again: no change
    // Past its deadline the same process runs on, now permanent.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let status = heart.status().await;
    assert_eq!(status.permanent.as_ref().map(|p| p.hash.as_str()), Some(hash.as_str()));
    assert!(status.trial.is_none() && status.last_revert.is_empty(), "{status:?}");
    assert_eq!(status.running_incarnation, running.running_incarnation);
    assert_eq!(heart.runs(), ["installed", "new"]);
    assert_eq!(
        heart
            .try_binary(&hash, Duration::from_secs(1))
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition,
        "already permanent"
    );

    // It is what the heart starts when the node dies, and after the heart
    // itself restarts.
    kill(heart.node_pid().unwrap(), Signal::SIGKILL).unwrap();
    heart.await_runs(&["installed", "new", "new"], WITHIN);
    heart.restart();
    heart.await_runs(&["installed", "new", "new", "new"], WITHIN);
}

#[tokio::test]
async fn bad_binaries_and_requests_are_refused_with_the_reason_and_change_nothing() {
    let key = generate();
    let heart = heart_trusting(&key);
    heart.await_runs(&["installed"], WITHIN);
    let text = b"#!/bin/sh\nexec sleep 1000\n";

    let stranger = heart.stage(text, "1.0", &generate()).await.unwrap_err();
    assert_eq!(stranger.code(), Code::PermissionDenied);
    assert!(stranger.message().contains("does not trust"), "{stranger:?}");

    let hash = baton_node::heart::hash_reader(&mut &text[..]).unwrap();
    let (signer, signature) = baton_node::modules::signing::sign_node_binary(&key, "1.0", &hash);
    let header = SignedBinary {
        hash: hash.clone(),
        version: "1.0".into(),
        signer,
        signature,
        size: text.len() as u64,
    };
    let other_bytes = heart
        .stage_as(header.clone(), b"#!/bin/sh\nexec sleep 2000\n")
        .await
        .unwrap_err();
    assert_eq!(other_bytes.code(), Code::InvalidArgument);
    assert!(other_bytes.message().contains("sha256"), "{other_bytes:?}");
    let relabelled = SignedBinary {
        version: "2.0".into(),
        ..header.clone()
    };
    let relabelled = heart.stage_as(relabelled, text).await.unwrap_err();
    assert_eq!(relabelled.code(), Code::PermissionDenied, "{relabelled:?}");
    let huge = SignedBinary {
        size: baton_node::heart::MAX_BINARY_BYTES + 1,
        ..header.clone()
    };
    assert_eq!(
        heart.stage_as(huge, text).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    let unknown = heart
        .try_binary(&"0".repeat(64), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert!(unknown.message().contains("stage it first"), "{unknown:?}");

    assert!(heart.stage_as(header.clone(), text).await.unwrap(), "stored");
    assert!(!heart.stage_as(header, text).await.unwrap(), "already held");
    let forever = heart.try_binary(&hash, Duration::from_secs(7200)).await.unwrap_err();
    assert_eq!(forever.code(), Code::InvalidArgument);

    let status = heart.status().await;
    assert!(status.trial.is_none() && status.permanent.is_none(), "{status:?}");
    assert_eq!(status.running_hash, "installed");
    assert_eq!(heart.runs(), ["installed"]);
}

#[tokio::test]
async fn a_heart_that_trusts_no_key_runs_only_its_installed_binary() {
    let heart = start_heart_with("exec sleep 1000", &[], "");
    heart.await_runs(&["installed"], WITHIN);
    let refused = heart.stage(b"binary", "1.0", &generate()).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("[heart] trusted_keys"), "{refused:?}");
}

/// The real node under a heart that is killed (SIGKILL) while a trial runs:
/// the node dies with it, and the heart started again reverts the trial and
/// boots the binary known to run.
#[tokio::test]
async fn a_heart_killed_mid_trial_comes_back_on_the_binary_that_runs() {
    let key = generate();
    let trusted = public_key_text(&key.verifying_key());
    let node = std::path::Path::new(env!("CARGO_BIN_EXE_baton-node"));
    let mut heart = support::heart::start_heart_with_binary(node, &format!("trusted_keys = [\"{trusted}\"]\n"));
    let installed = heart
        .await_status("the node to run", |s| s.running_hash == "installed")
        .await;
    let bytes = std::fs::read(node).unwrap();
    let hash = heart.stage(&bytes, "trial", &key).await.unwrap();
    heart.try_binary(&hash, Duration::from_secs(120)).await.unwrap();
    let trial = heart.await_status("the trial to run", |s| s.running_hash == hash).await;
    assert_ne!(trial.running_incarnation, installed.running_incarnation);
    let node_pid = poll(WITHIN, "the trial's pid", || {
        heart.node_pid().filter(|pid| running(*pid))
    });

    heart.kill();
    poll(WITHIN, "the node to die with its heart", || {
        (!running(node_pid)).then_some(())
    });
    heart.respawn();
    let status = heart
        .await_status("the installed binary to run again", |s| s.running_hash == "installed")
        .await;
    assert!(status.trial.is_none(), "{status:?}");
    assert!(status.last_revert.contains("restarted during the trial"), "{status:?}");
    let pid = poll(WITHIN, "the node's pid", || {
        heart.node_pid().filter(|pid| running(*pid))
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(running(pid), "the installed node does not stay up");
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn running(pid: Pid) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}
