//! The hub alone: a relay client driven by hand with janus-core's `Link` over a real socket
//! (the edge's side of the protocol), in front of the demo backend.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use common::{Rig, WAIT};
use janus_core::{
    CloseReason,
    crypto::SigningKey,
    handshake::Identity,
    relay::{Link, LinkCloseReason, LinkConfig, LinkEvent, Outgoing, Role, SessionInfo},
    session::{TunnelId, TunnelMessage},
};
use janus_tokio::gateway::RelaySettings;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

const EDGE_SEED: [u8; 32] = [0xe1; 32];
const HUB_SEED: [u8; 32] = [0x4b; 32];

async fn hub_rig() -> Rig {
    Rig::start_with(|s| {
        let link = LinkConfig::new(
            Role::Hub,
            String::new(),
            SigningKey::from_seed(&HUB_SEED),
            vec![SigningKey::from_seed(&EDGE_SEED).verifying_key()],
        );
        s.relay = Some(RelaySettings {
            addr: "127.0.0.1:0".parse().unwrap(),
            link,
            max_links: 8,
        });
    })
    .await
}

/// A hand-driven edge end of a link.
struct FakeEdge {
    stream: TcpStream,
    link: Link,
}

impl FakeEdge {
    async fn connect(rig: &Rig, seed: [u8; 32]) -> FakeEdge {
        let stream = TcpStream::connect(rig.gateway.addrs().relay.unwrap())
            .await
            .unwrap();
        let config = LinkConfig::new(
            Role::Edge,
            "test-edge".into(),
            SigningKey::from_seed(&seed),
            vec![SigningKey::from_seed(&HUB_SEED).verifying_key()],
        );
        let link = Link::new(Arc::new(config), common::now(), [3; 32]);
        FakeEdge { stream, link }
    }

    /// Writes what is queued, then reads until an event comes (or the link ends).
    async fn next_event(&mut self) -> Option<LinkEvent> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(b) = self.link.poll_transmit() {
                self.stream.write_all(&b).await.unwrap();
            }
            if let Some(e) = self.link.poll_event() {
                return Some(e);
            }
            let mut buf = vec![0u8; 65536];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    self.link.close(common::now(), LinkCloseReason::PeerClosed);
                }
                Ok(Ok(n)) => self.link.handle_bytes(common::now(), &buf[..n]),
                Err(_) => return None,
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_session_reaches_the_backend_and_counts_as_a_connection() {
    let rig = hub_rig().await;
    let mut edge = FakeEdge::connect(&rig, EDGE_SEED).await;
    assert!(
        matches!(edge.next_event().await, Some(LinkEvent::Established(p)) if p.node == rig.gateway.endpoint())
    );
    let info = SessionInfo {
        session: 1,
        identity: Identity {
            uid: 31_001,
            sid: 1,
            color: "local".into(),
            status: 1,
            conn_id: 0,
            token_expiry: 0,
        },
        client_addr: "10.1.2.3:4567".parse().unwrap(),
        worker_id: 16,
    };
    let now = common::now();
    edge.link
        .send(now, 1, Outgoing::Open(Box::new(info)))
        .unwrap();
    edge.link
        .send(
            now,
            1,
            Outgoing::TunnelOpen {
                tunnel: TunnelId::from_relay(1),
                kind: "player".into(),
                oid: 31_001,
            },
        )
        .unwrap();
    let request = TunnelMessage {
        data: Bytes::from_static(b"through the hub"),
        obj: 31_001,
        module: 3,
        seq: 1,
        index: 1,
        ..Default::default()
    };
    edge.link
        .send(
            now,
            1,
            Outgoing::Data {
                tunnel: TunnelId::from_relay(1),
                message: request,
            },
        )
        .unwrap();
    let reply = match edge.next_event().await.expect("a reply") {
        LinkEvent::Data { message, .. } => message,
        other => panic!("{other:?}"),
    };
    assert_eq!((&reply.data[..], reply.index), (&b"through the hub"[..], 1));
    assert_eq!(rig.gateway.sessions(), 1);
    let seen = rig.demo.backend().observed();
    let opened = seen.opened.iter().find(|o| o.uid == 31_001).unwrap();
    assert_eq!(opened.metadata.client_ip.as_deref(), Some("10.1.2.3:4567"));
    let referer = format!("{}#16", rig.gateway.endpoint());
    assert_eq!(opened.metadata.referer.as_deref(), Some(referer.as_str()));
    // The edge closes the session: the hub forgets it.
    edge.link
        .send(
            common::now(),
            1,
            Outgoing::SessionClose(CloseReason::PeerClosed),
        )
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_millis(300), edge.next_event()).await;
    assert_eq!(rig.gateway.sessions(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_client_with_a_wrong_key_is_refused_and_counted() {
    let rig = hub_rig().await;
    let mut intruder = FakeEdge::connect(&rig, [0x66; 32]).await;
    assert_eq!(
        intruder.next_event().await,
        Some(LinkEvent::Closed(LinkCloseReason::PeerGoodbye))
    );
    assert_eq!(intruder.link.peer_goodbye(), Some("unknown_key"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        rig.gateway
            .metrics()
            .relay
            .refused(LinkCloseReason::UnknownKey),
        1
    );
    // Garbage is refused too.
    let mut raw = TcpStream::connect(rig.gateway.addrs().relay.unwrap())
        .await
        .unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(WAIT, raw.read_to_end(&mut sink)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        rig.gateway
            .metrics()
            .relay
            .refused(LinkCloseReason::MalformedFrame),
        1
    );
    assert_eq!(rig.gateway.sessions(), 0);
}
