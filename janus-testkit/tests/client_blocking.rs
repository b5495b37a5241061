//! janus-client's blocking API (std threads and sockets) against a real gateway and demo
//! backend, which run on their own runtime in the background.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    thread,
    time::Duration,
};

use janus_client::{
    Config, Disconnect, Endpoint, Event, HeartbeatCode, LogoutCode, Outgoing, Reconnect,
    RequestError, TokenError,
    blocking::{Client, Events, TokenSource},
    keys_from_bytes,
};
use janus_testkit::{
    BackgroundRig, client_cert_seed,
    conformance::{self, ECHO, FAIL, HEARTBEAT_MS, MODULE, PUSH_ME, SEQ, TRANSCRIPT},
    server_cert_key, token,
};

const WAIT: Duration = Duration::from_secs(10);

fn config(endpoint: Endpoint) -> Config {
    let keys = keys_from_bytes(&client_cert_seed(), Some(&server_cert_key())).unwrap();
    let mut config = Config::new(endpoint, Some(keys));
    config.heartbeat_interval = None;
    let mut reconnect = Reconnect::default();
    reconnect.initial_delay = Duration::from_millis(100);
    reconnect.max_delay = Duration::from_millis(400);
    config.reconnect = Some(reconnect);
    config
}

fn tcp(rig: &BackgroundRig) -> Endpoint {
    Endpoint::Tcp(rig.rig().tcp().to_string())
}

fn tokens(uid: i64, calls: Arc<AtomicUsize>) -> impl TokenSource {
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok::<_, TokenError>(token(uid))
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

fn next(events: &Events) -> Event {
    events.recv_timeout(WAIT).expect("an event in time")
}

fn connect(config: Config, uid: i64) -> (Client, Events) {
    let (client, events) = Client::connect(config, tokens(uid, Arc::default())).unwrap();
    assert!(matches!(next(&events), Event::Connected { .. }));
    (client, events)
}

/// The shared scenario, through the blocking API.
fn scenario(endpoint: Endpoint) -> Vec<String> {
    let mut lines = Vec::new();
    lines.push(format!(
        "known answers: {} ok",
        janus_client::known_answers::check().unwrap()
    ));
    let mut config = config(endpoint);
    config.heartbeat_interval = Some(Duration::from_millis(HEARTBEAT_MS));
    let (client, events) =
        Client::connect(config, tokens(conformance::UID, Arc::default())).unwrap();
    if let Event::Connected { .. } = next(&events) {
        lines.push("connected".into());
    }
    let pending = client.send(out(ECHO)).unwrap();
    let index = pending.index();
    let reply = pending.wait().unwrap();
    assert_eq!(reply.index, index);
    lines.push(format!("echo: {}", String::from_utf8_lossy(&reply.data)));
    if let Event::Heartbeat { code, .. } = next(&events) {
        assert_eq!(code, HeartbeatCode::Succeeded);
        lines.push("heartbeat: succeeded".into());
    }
    let reply = client.request(out(PUSH_ME)).unwrap();
    lines.push(format!(
        "push reply: {}",
        String::from_utf8_lossy(&reply.data)
    ));
    loop {
        match next(&events) {
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
    match client.request(out(FAIL)) {
        Err(RequestError::Failed {
            module,
            seq,
            message,
        }) => lines.push(format!(
            "failure: module={module} seq={seq} message={message}"
        )),
        other => panic!("{other:?}"),
    }
    client.close();
    lines
}

#[test]
fn conformance_over_tcp_and_websocket() {
    let rig = BackgroundRig::start().unwrap();
    assert_eq!(scenario(tcp(&rig)), TRANSCRIPT);
    assert_eq!(
        scenario(Endpoint::WebSocket(rig.rig().ws_url())),
        TRANSCRIPT
    );
}

#[test]
fn requests_from_many_threads_each_get_their_own_reply() {
    let rig = BackgroundRig::start().unwrap();
    let (client, _events) = connect(config(Endpoint::WebSocket(rig.rig().ws_url())), 21001);
    let client = Arc::new(client);
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let client = Arc::clone(&client);
            thread::spawn(move || {
                for i in 0..25 {
                    let data = format!("thread {t} req {i}");
                    let reply = client.request(out(&data)).unwrap();
                    assert_eq!(reply.data, data.into_bytes());
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
}

#[test]
fn reconnects_with_a_fresh_token_after_the_gateway_restarts() {
    let mut rig = BackgroundRig::start().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let (client, events) =
        Client::connect(config(tcp(&rig)), tokens(21002, Arc::clone(&calls))).unwrap();
    assert!(matches!(next(&events), Event::Connected { .. }));
    assert_eq!(
        client.request(out("before")).unwrap().data.as_ref(),
        b"before"
    );

    rig.restart_gateway(Duration::from_millis(300)).unwrap();
    match next(&events) {
        Event::Disconnected { reason, retry_in } => {
            // A gateway shutting down drains: its clients are told to wait and come back.
            assert_eq!(reason.logout(), Some(LogoutCode::Waiting), "{reason}");
            assert!(retry_in.is_some());
        }
        other => panic!("{other:?}"),
    }
    loop {
        match next(&events) {
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
        client.request(out("after")).unwrap().data.as_ref(),
        b"after"
    );
    client.close();
    assert!(matches!(
        next(&events),
        Event::Disconnected {
            reason: Disconnect::Closed,
            retry_in: None
        }
    ));
    assert!(events.recv().is_none(), "the stream ends");
}

#[test]
fn a_newer_login_is_not_fought_back_and_close_is_final() {
    let rig = BackgroundRig::start().unwrap();
    let (first, first_events) = connect(config(tcp(&rig)), 21003);
    let pending = first.send(out("in flight")).unwrap();
    let _ = pending.wait();
    let (second, _second_events) = connect(config(tcp(&rig)), 21003);
    match next(&first_events) {
        Event::Disconnected { reason, retry_in } => {
            assert_eq!(reason.logout(), Some(LogoutCode::ConflictingLogin));
            assert_eq!(retry_in, None);
        }
        other => panic!("{other:?}"),
    }
    assert!(first_events.recv().is_none());
    assert!(first.is_closed());
    assert!(matches!(
        first.request(out("x")),
        Err(RequestError::NotConnected | RequestError::Closed)
    ));
    assert_eq!(second.request(out("y")).unwrap().data.as_ref(), b"y");
}
