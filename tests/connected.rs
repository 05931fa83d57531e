//! Verifies the greeting of SPEC §3.1: every upgraded client first gets
//! `{"type":"connected","clientId":"<id>"}`, and the `clientId` is unique
//! within the process: across shards, and across clients that come and go
//! (a closed client's slot is reused, its id is not).

mod common;

use std::collections::HashSet;

use common::{Client, TestEngine};

/// Connects a public client and returns it with its `clientId`.
fn connect_with_id(engine: &TestEngine) -> (Client, String) {
    let mut client = engine.connect("/ws/availability", &[]).expect("upgrade succeeds");
    let hello = client.recv_json();
    let fields = hello.as_object().expect("connected is an object");
    assert_eq!(fields.len(), 2, "type and clientId only: {hello}");
    assert_eq!(hello["type"], "connected", "{hello}");
    let id = hello["clientId"].as_str().expect("clientId is a string");
    assert!(!id.is_empty(), "{hello}");
    (client, id.to_string())
}

fn shard_connections(engine: &TestEngine, shard: u16) -> f64 {
    engine.metric(&format!("fanout_connections{{shard=\"{shard}\",role=\"public\"}}"))
}

#[test]
fn client_ids_are_unique_across_shards_and_over_time() {
    let engine = TestEngine::start(&["--shards", "2"]);
    let mut ids = HashSet::new();
    let mut clients = Vec::new();
    // SO_REUSEPORT spreads connections over the shards by a hash of the
    // client's address: connect until both shards hold some.
    while shard_connections(&engine, 0) == 0.0 || shard_connections(&engine, 1) == 0.0 {
        assert!(clients.len() < 200, "200 connections and one shard still has none");
        let (client, id) = connect_with_id(&engine);
        assert!(ids.insert(id.clone()), "clientId {id} given twice");
        clients.push(client);
    }

    // Half of them leave; their slots are reused by the next ones.
    let open = clients.len() - clients.len() / 2;
    clients.truncate(open);
    engine.wait_metric("fanout_connections", |v| v == open as f64);
    for _ in 0..16 {
        let (client, id) = connect_with_id(&engine);
        assert!(ids.insert(id.clone()), "clientId {id} given twice");
        clients.push(client);
    }
    assert!(shard_connections(&engine, 0) > 0.0 && shard_connections(&engine, 1) > 0.0);
}
