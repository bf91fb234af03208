//! The receiving end of streamed AppendEntries (`Raft.StreamAppendEntries`)
//! with a real follower: a node of an in-process cluster, its Raft service
//! served over gRPC on loopback, sent appends as its leader would.

mod support;

use std::sync::Arc;
use std::time::Duration;

use baton_node::api::RaftService;
use baton_node::codec::raft::{append_entries_to, append_reply_from};
use baton_node::raft::Refusals;
use baton_node::types::typ::{AppendEntriesRequest, AppendEntriesResponse};
use baton_proto::RaftRequest;
use baton_proto::raft_client::RaftClient;
use baton_proto::raft_server::RaftServer;
use futures::StreamExt;
use support::cluster::{InProcessCluster, poll};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_answers_each_streamed_append_in_order_and_refuses_a_malformed_one_after_those_before() {
    let cluster = InProcessCluster::start(3).await;
    let leader = cluster.leader(&[1, 2, 3]).await;
    cluster.put_via_leader(&[1, 2, 3], "before", "1").await;
    let follower = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    let node = &cluster.nodes[&follower];
    let leader_metrics = baton_node::types::metrics(&cluster.nodes[&leader].raft);
    // The follower holds what the leader has applied.
    let held = poll(Duration::from_secs(20), "the follower to hold the write", || {
        let metrics = baton_node::types::metrics(&node.raft);
        (metrics.last_applied == leader_metrics.last_applied).then_some(metrics.last_applied)
    })
    .await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = RaftService::new(node.raft.clone(), node.storage.clone(), Arc::new(Refusals::default()));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(RaftServer::new(service))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();

    // What the leader would send: its vote, and the entries the follower
    // already holds (an append that only moves the commit).
    let append = AppendEntriesRequest {
        vote: leader_metrics.vote,
        prev_log_id: held,
        leader_commit: held,
        entries: vec![],
    };
    let typed = RaftRequest {
        append_entries: Some(append_entries_to(&append)),
        ..Default::default()
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let mut request = tonic::Request::new(UnboundedReceiverStream::new(rx));
    request
        .metadata_mut()
        .insert(baton_proto::TARGET_STORAGE_HEADER, node.storage.id.parse().unwrap());
    // Two appends go before the stream is even open: they are pipelined.
    tx.send(typed.clone()).unwrap();
    tx.send(typed.clone()).unwrap();
    let mut answers = RaftClient::new(channel)
        .stream_append_entries(request)
        .await
        .expect("the stream opens")
        .into_inner();
    for n in 1..=2 {
        let answer = tokio::time::timeout(Duration::from_secs(20), answers.message())
            .await
            .unwrap_or_else(|_| panic!("append {n} answered"))
            .expect("answered, not refused")
            .expect("the stream goes on");
        let answer = append_reply_from(answer.append_entries.expect("typed answer")).unwrap();
        assert_eq!(answer, AppendEntriesResponse::PartialSuccess(held), "append {n}");
    }

    // A malformed request, behind one more good one: the good one is
    // answered, then the call fails, naming what was wrong.
    let mut malformed = typed.clone();
    malformed.append_entries.as_mut().unwrap().vote = None;
    tx.send(typed.clone()).unwrap();
    tx.send(malformed).unwrap();
    let answer = answers.message().await.expect("answered").expect("the stream goes on");
    assert!(answer.append_entries.is_some());
    let refused = answers.message().await.expect_err("the malformed append is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused}");
    assert!(refused.message().contains("AppendEntries.vote"), "{refused}");

    // JSON is refused too: a streamed append is typed.
    let (tx, rx) = mpsc::unbounded_channel();
    let mut request = tonic::Request::new(UnboundedReceiverStream::new(rx));
    request
        .metadata_mut()
        .insert(baton_proto::TARGET_STORAGE_HEADER, node.storage.id.parse().unwrap());
    tx.send(RaftRequest {
        payload: serde_json::to_vec(&append).unwrap(),
        ..Default::default()
    })
    .unwrap();
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let mut answers = RaftClient::new(channel)
        .stream_append_entries(request)
        .await
        .expect("the stream opens")
        .into_inner();
    let refused = answers.message().await.expect_err("a JSON append is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused}");
    assert!(refused.message().contains("typed"), "{refused}");
    drop(tx);
    assert!(answers.next().await.is_none());
}
