//! janus-client's async API against a real gateway and demo backend.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use janus_client::{
    Config, Disconnect, Endpoint, Event, HeartbeatCode, LogoutCode, Outgoing, Reconnect,
    RequestError, TokenError, keys_from_bytes,
    tokio::{Client, Events},
};
use janus_testkit::{
    CutProxy, Rig, client_cert_seed,
    conformance::{self, ECHO, FAIL, HEARTBEAT_MS, MODULE, PUSH_ME, SEQ, TRANSCRIPT},
    server_cert_key, token,
};

const WAIT: Duration = Duration::from_secs(10);

fn config(endpoint: Endpoint) -> Config {
    let keys = keys_from_bytes(&client_cert_seed(), Some(&server_cert_key())).unwrap();
    let mut config = Config::new(endpoint, Some(keys));
    config.heartbeat_interval = None;
    config.reconnect = Some(fast_reconnect());
    config
}

fn fast_reconnect() -> Reconnect {
    let mut r = Reconnect::default();
    r.initial_delay = Duration::from_millis(100);
    r.max_delay = Duration::from_millis(400);
    r
}

fn tcp(rig: &Rig) -> Endpoint {
    Endpoint::Tcp(rig.tcp().to_string())
}

/// A token source that counts its calls.
fn tokens(uid: i64, calls: Arc<AtomicUsize>) -> impl janus_client::tokio::TokenSource {
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, TokenError>(token(uid)) }
    }
}

fn out(data: &str) -> Outgoing {
    Outgoing {
        module: MODULE,
        seq: SEQ,
        data: data.as_bytes().to_vec().into(),
        ..Default::default()
    }
}

async fn next(events: &mut Events) -> Event {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("an event in time")
        .expect("the client is open")
}

async fn connect(config: Config, uid: i64) -> (Client, Events) {
    let (client, mut events) = Client::connect(config, tokens(uid, Arc::default()))
        .await
        .unwrap();
    assert!(matches!(next(&mut events).await, Event::Connected { .. }));
    (client, events)
}

/// The shared scenario, through the async API.
async fn scenario(endpoint: Endpoint) -> Vec<String> {
    let mut lines = Vec::new();
    lines.push(format!(
        "known answers: {} ok",
        janus_client::known_answers::check().unwrap()
    ));
    let mut config = config(endpoint);
    config.heartbeat_interval = Some(Duration::from_millis(HEARTBEAT_MS));
    let (client, mut events) = Client::connect(config, tokens(conformance::UID, Arc::default()))
        .await
        .unwrap();
    if let Event::Connected { .. } = next(&mut events).await {
        lines.push("connected".into());
    }
    let pending = client.send(out(ECHO)).await.unwrap();
    let index = pending.index();
    let reply = pending.await.unwrap();
    assert_eq!(reply.index, index);
    lines.push(format!("echo: {}", String::from_utf8_lossy(&reply.data)));
    if let Event::Heartbeat { code, .. } = next(&mut events).await {
        assert_eq!(code, HeartbeatCode::Succeeded);
        lines.push("heartbeat: succeeded".into());
    }
    let reply = client.request(out(PUSH_ME)).await.unwrap();
    lines.push(format!(
        "push reply: {}",
        String::from_utf8_lossy(&reply.data)
    ));
    loop {
        match next(&mut events).await {
            Event::Push(p) => {
                lines.push(format!(
                    "push: module={} seq={} data={}",
                    p.r#mod,
                    p.seq,
                    String::from_utf8_lossy(&p.data)
                ));
                break;
            }
            Event::Heartbeat { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    match client.request(out(FAIL)).await {
        Err(RequestError::Failed {
            module,
            seq,
            message,
        }) => lines.push(format!(
            "failure: module={module} seq={seq} message={message}"
        )),
        other => panic!("{other:?}"),
    }
    client.close().await;
    lines
}

#[tokio::test]
async fn conformance_over_tcp_and_websocket() {
    let rig = Rig::start().await.unwrap();
    assert_eq!(scenario(tcp(&rig)).await, TRANSCRIPT);
    assert_eq!(
        scenario(Endpoint::WebSocket(rig.ws_url())).await,
        TRANSCRIPT
    );
    rig.stop().await;
}

#[tokio::test]
async fn websocket_sends_the_configured_origin() {
    let rig = Rig::start().await.unwrap();
    let mut config = config(Endpoint::WebSocket(rig.ws_url()));
    config.origin = Some("https://game.example".into());
    let (client, _events) = connect(config, 20002).await;
    let reply = client.request(out("over ws")).await.unwrap();
    assert_eq!(reply.data.as_ref(), b"over ws");
    rig.stop().await;
}

#[tokio::test]
async fn concurrent_requests_each_get_their_own_reply() {
    let rig = Rig::start().await.unwrap();
    let (client, _events) = connect(config(tcp(&rig)), 20003).await;
    let mut pending = Vec::new();
    for i in 0..50 {
        pending.push((i, client.send(out(&format!("req {i}"))).await.unwrap()));
    }
    for (i, p) in pending.into_iter().rev() {
        let index = p.index();
        let reply = p.await.unwrap();
        assert_eq!(reply.index, index);
        assert_eq!(reply.data, format!("req {i}").into_bytes());
    }
    rig.stop().await;
}

#[tokio::test]
async fn reconnects_with_a_fresh_token_after_the_gateway_restarts() {
    let mut rig = Rig::start().await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let (client, mut events) =
        Client::connect(config(tcp(&rig)), tokens(20004, Arc::clone(&calls)))
            .await
            .unwrap();
    assert!(matches!(next(&mut events).await, Event::Connected { .. }));
    assert_eq!(
        client.request(out("before")).await.unwrap().data.as_ref(),
        b"before"
    );

    rig.restart_gateway(Duration::from_millis(300))
        .await
        .unwrap();
    match next(&mut events).await {
        Event::Disconnected { reason, retry_in } => {
            // A gateway shutting down drains: its clients are told to wait and come back.
            assert_eq!(reason.logout(), Some(LogoutCode::Waiting), "{reason}");
            assert!(retry_in.is_some());
        }
        other => panic!("{other:?}"),
    }
    // Attempts while the gateway is down fail and back off; then it is back.
    loop {
        match next(&mut events).await {
            Event::Connected { .. } => break,
            Event::Disconnected { retry_in, .. } => assert!(retry_in.is_some()),
            other => panic!("{other:?}"),
        }
    }
    assert!(
        calls.load(Ordering::SeqCst) >= 2,
        "a fresh token per connection"
    );
    assert_eq!(
        client.request(out("after")).await.unwrap().data.as_ref(),
        b"after"
    );
    assert_eq!(rig.sessions(), 1);
    client.close().await;
    assert!(matches!(
        next(&mut events).await,
        Event::Disconnected {
            reason: Disconnect::Closed,
            retry_in: None
        }
    ));
    assert!(events.recv().await.is_none(), "the stream ends");
    assert_eq!(
        client.request(out("closed")).await,
        Err(RequestError::Closed)
    );
    rig.stop().await;
}

#[tokio::test]
async fn reconnects_after_the_network_cuts_the_connection() {
    let rig = Rig::start().await.unwrap();
    let proxy = CutProxy::start(rig.tcp()).await.unwrap();
    let (client, mut events) =
        connect(config(Endpoint::Tcp(proxy.addr().to_string())), 20006).await;
    assert_eq!(
        client.request(out("before")).await.unwrap().data.as_ref(),
        b"before"
    );
    let in_flight = client.send(out("push-me")).await.unwrap();
    proxy.cut();
    // The request either got its reply before the cut, or ends without one.
    match in_flight.await {
        Ok(reply) => assert_eq!(reply.data.as_ref(), b"push-me"),
        Err(e) => assert_eq!(e, RequestError::ConnectionClosed),
    }
    loop {
        match next(&mut events).await {
            Event::Disconnected { reason, retry_in } => {
                assert!(matches!(reason, Disconnect::Transport(_)), "{reason}");
                assert!(retry_in.is_some());
                break;
            }
            Event::Push(_) => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(next(&mut events).await, Event::Connected { .. }));
    assert_eq!(
        client.request(out("after")).await.unwrap().data.as_ref(),
        b"after"
    );
    rig.stop().await;
}

#[tokio::test]
async fn a_newer_login_is_not_fought_back() {
    let rig = Rig::start().await.unwrap();
    let (first, mut first_events) = connect(config(tcp(&rig)), 20005).await;
    let (second, _second_events) = connect(config(tcp(&rig)), 20005).await;
    match next(&mut first_events).await {
        Event::Disconnected { reason, retry_in } => {
            assert_eq!(reason.logout(), Some(LogoutCode::ConflictingLogin));
            assert_eq!(retry_in, None, "reconnecting would kick the newer login");
        }
        other => panic!("{other:?}"),
    }
    assert!(first_events.recv().await.is_none());
    assert_eq!(first.request(out("x")).await, Err(RequestError::Closed));
    assert_eq!(second.request(out("y")).await.unwrap().data.as_ref(), b"y");
    rig.stop().await;
}

#[tokio::test]
async fn the_first_connection_reports_its_failure() {
    let rig = Rig::start().await.unwrap();
    // A token the gateway cannot open: refused, not retried by connect.
    let bad = || async { Ok::<_, TokenError>(String::from("not a token")) };
    let err = Client::connect(config(tcp(&rig)), bad).await.unwrap_err();
    assert!(matches!(err, Disconnect::Session(_)), "{err}");
    let failing = || async { Err::<String, TokenError>("account service down".into()) };
    let err = Client::connect(config(tcp(&rig)), failing)
        .await
        .unwrap_err();
    assert_eq!(err, Disconnect::Token("account service down".into()));
    rig.stop().await;
    let unreachable = Client::connect(
        config(Endpoint::Tcp("127.0.0.1:1".into())),
        tokens(1, Arc::default()),
    )
    .await
    .unwrap_err();
    assert!(matches!(unreachable, Disconnect::Transport(_)));
}

#[tokio::test]
async fn resumes_after_a_cut_with_requests_in_flight_and_pushes_missed() {
    let rig = Rig::start_resumable(Duration::from_secs(30)).await.unwrap();
    let proxy = CutProxy::start(rig.tcp()).await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let (client, mut events) = Client::connect(
        config(Endpoint::Tcp(proxy.addr().to_string())),
        tokens(20_007, Arc::clone(&calls)),
    )
    .await
    .unwrap();
    assert!(matches!(next(&mut events).await, Event::Connected { .. }));
    assert_eq!(
        client.request(out("before")).await.unwrap().data.as_ref(),
        b"before"
    );
    // Slow replies, the last one followed by a push, are on their way when the network cuts.
    let first = client.send(out("delay:300")).await.unwrap();
    let second = client.send(out("push-me")).await.unwrap();
    proxy.cut();
    match next(&mut events).await {
        Event::Disconnected { reason, retry_in } => {
            assert!(matches!(reason, Disconnect::Transport(_)), "{reason}");
            assert!(retry_in.is_some());
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(next(&mut events).await, Event::Resumed { .. }),
        "the reconnect resumed the session"
    );
    // Each request in flight got its reply, once; the push came too, after it.
    assert_eq!(first.await.unwrap().data.as_ref(), b"delay:300");
    assert_eq!(second.await.unwrap().data.as_ref(), b"push-me");
    match next(&mut events).await {
        Event::Push(p) => assert_eq!(p.data.as_ref(), b"pushed"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        client.request(out("after")).await.unwrap().data.as_ref(),
        b"after"
    );
    assert_eq!(rig.sessions(), 1, "one session throughout");
    client.close().await;
    rig.stop().await;
}
