//! Deterministic simulation: clients, the gateway's core sessions and backends on virtual time,
//! with seeded faults, and the gateway's promises checked after every step.
//!
//! Faults: bytes split and delayed anywhere on each connection (TCP keeps their order), replies
//! reordered across tunnels (a backend serialises only within a tunnel, like roma's actors),
//! backend restarts (every tunnel of the service fails), route-table outages (new tunnels fail to
//! open, as when Redis is down), connection resets, a second login of the same player, pushes and
//! broadcasts at any moment, time jumps that fire heartbeats and deadlines.
//!
//! Invariants, after every step: no reply reaches the wrong session or answers a request twice; no
//! push reaches the wrong uid; indices are strictly increasing; buffers stay within their caps.
//! At the end, with faults stopped and everything delivered, every request a still-open session
//! sent has exactly one outcome: nothing was lost.
//!
//! `cargo test -p janus-core --test sim` runs `JANUS_SIM_SEEDS` seeds (default 48);
//! `JANUS_SIM_SEED=1234 cargo test -p janus-core --test sim -- --nocapture` replays one seed,
//! which is what a failure message tells you to run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use janus_core::{
    CloseReason, Time,
    client::{ClientEvent, ClientSession, Outgoing},
    config::ServerConfig,
    login::Logins,
    route::{TunnelKey, TunnelKind},
    session::{ConnectionContext, Event, PushPacket, Session, TunnelId, TunnelMessage},
    system,
    testing::{test_client_config, test_server_config, test_token},
};
use janus_proto::broadcaster::service::push::v1::PushBody;
use rand_chacha::{
    ChaCha8Rng,
    rand_core::{RngCore, SeedableRng},
};

const PLAYERS: i64 = 6;
const ROOMS: [i64; 3] = [0, 9_001, 9_002];
const STEPS: usize = 600;
const BUDGET: usize = 256 * 1024;

struct Rng(ChaCha8Rng);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0.next_u64() % n.max(1)
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// What a request expects back.
#[derive(Debug)]
struct Request {
    tag: Bytes,
    answered: bool,
}

/// One client connection and the gateway session serving it.
struct Conn {
    id: u64,
    uid: i64,
    client: ClientSession,
    server: Session,
    server_closed: bool,
    /// Bytes in flight, in order, each with the time it lands.
    to_server: VecDeque<(Time, Bytes)>,
    to_client: VecDeque<(Time, Bytes)>,
    /// The session's tunnels: id → key.
    tunnels: HashMap<TunnelId, TunnelKey>,
    /// Tunnels this side (the adapter) ended: forwards the session had already queued for them
    /// are dropped, as an adapter drops them (the session answered their requests).
    ended: std::collections::HashSet<TunnelId>,
    requests: BTreeMap<i32, Request>,
    last_index: i32,
}

/// A backend request waiting on a tunnel: (due, connection, tunnel, request).
type Queued = (Time, u64, TunnelId, TunnelMessage);

struct World {
    rng: Rng,
    now: Time,
    config: Arc<ServerConfig>,
    conns: Vec<Conn>,
    next_conn: u64,
    token_serial: u64,
    logins: Logins<u64>,
    /// Per (connection, tunnel): requests in arrival order (a tunnel's replies keep that order).
    backend: BTreeMap<(u64, TunnelId), VecDeque<Queued>>,
    /// New tunnels fail while this is in the future (the route table is down).
    outage_until: Time,
    push_serial: u64,
    faults: bool,
    log: Vec<String>,
}

fn tag(uid: i64, conn: u64, index: i32) -> Bytes {
    Bytes::from(format!("req:{uid}:{conn}:{index}"))
}

impl World {
    fn new(seed: u64) -> World {
        let mut config = test_server_config(true);
        config.session.outbound_budget = BUDGET;
        config.session.max_tunnels = 3;
        World {
            rng: Rng(ChaCha8Rng::seed_from_u64(seed)),
            now: Time::from_unix_secs(1_700_000_000),
            config: Arc::new(config),
            conns: Vec::new(),
            next_conn: 1,
            token_serial: 1,
            logins: Logins::default(),
            backend: BTreeMap::new(),
            outage_until: Time::EPOCH,
            push_serial: 1,
            faults: true,
            log: Vec::new(),
        }
    }

    fn connect(&mut self, uid: i64) {
        let id = self.next_conn;
        self.next_conn += 1;
        self.token_serial += 1;
        let mut cfg = test_client_config(true, test_token(uid, self.now, self.token_serial));
        cfg.request_timeout = Some(Duration::from_secs(30));
        cfg.heartbeat_interval = Some(Duration::from_secs(8));
        let mut seed = [0u8; 32];
        self.rng.0.fill_bytes(&mut seed);
        let client = ClientSession::new(&cfg, self.now, seed);
        self.rng.0.fill_bytes(&mut seed);
        let context = ConnectionContext {
            peer: std::net::SocketAddr::from(([10, 0, 0, 1], 40_000 + id as u16)),
            gateway: "10.0.0.2:9100".into(),
            worker_id: id << 4,
        };
        let server = Session::new(Arc::clone(&self.config), context, self.now, seed);
        self.conns.push(Conn {
            id,
            uid,
            client,
            server,
            server_closed: false,
            to_server: VecDeque::new(),
            to_client: VecDeque::new(),
            tunnels: HashMap::new(),
            ended: std::collections::HashSet::new(),
            requests: BTreeMap::new(),
            last_index: 0,
        });
        self.log.push(format!("connect uid {uid} as conn {id}"));
    }

    fn conn_mut(&mut self, id: u64) -> Option<&mut Conn> {
        self.conns.iter_mut().find(|c| c.id == id)
    }

    fn delay(&mut self) -> Duration {
        Duration::from_millis(self.rng.below(30))
    }

    /// Moves what each side queued onto the wire, split at random points.
    fn transmit(&mut self) {
        for i in 0..self.conns.len() {
            let mut pieces = Vec::new();
            if let Some(bytes) = self.conns[i].client.poll_transmit() {
                pieces.push((true, bytes));
            }
            if let Some(bytes) = self.conns[i].server.poll_transmit() {
                pieces.push((false, bytes));
            }
            for (up, bytes) in pieces {
                let mut rest = bytes;
                while !rest.is_empty() {
                    let cut = 1 + self.rng.below(rest.len() as u64) as usize;
                    let piece = rest.split_to(cut.min(rest.len()));
                    let at = self.now + self.delay();
                    let conn = &mut self.conns[i];
                    let queue = if up {
                        &mut conn.to_server
                    } else {
                        &mut conn.to_client
                    };
                    // In order: a piece never lands before the one queued ahead of it.
                    let at = queue.back().map_or(at, |(t, _)| at.max(*t));
                    queue.push_back((at, piece));
                }
            }
        }
    }

    /// Delivers every piece whose time has come, then handles what it caused.
    fn deliver(&mut self) {
        for i in 0..self.conns.len() {
            let now = self.now;
            let conn = &mut self.conns[i];
            while conn.to_server.front().is_some_and(|(t, _)| *t <= now) {
                let (_, bytes) = conn.to_server.pop_front().unwrap();
                conn.server.handle_bytes(now, &bytes);
            }
            while conn.to_client.front().is_some_and(|(t, _)| *t <= now) {
                let (_, bytes) = conn.to_client.pop_front().unwrap();
                conn.client.handle_bytes(now, &bytes);
            }
        }
        self.events();
    }

    /// Carries out the sessions' events, as an adapter would, and checks the clients' events.
    fn events(&mut self) {
        for i in 0..self.conns.len() {
            loop {
                let Some(event) = self.conns[i].server.poll_event() else {
                    break;
                };
                let id = self.conns[i].id;
                match event {
                    Event::Authenticated(identity) => {
                        assert_eq!(identity.uid, self.conns[i].uid);
                        if let Some(old) = self.logins.login(identity.uid, id, id) {
                            self.log.push(format!("conn {id} replaces conn {old}"));
                            let now = self.now;
                            if let Some(old) = self.conn_mut(old) {
                                old.server.close(now, CloseReason::ConflictingLogin);
                            }
                        }
                    }
                    Event::OpenTunnel(open) => {
                        let conn = &mut self.conns[i];
                        assert!(
                            conn.tunnels.insert(open.id, open.key).is_none(),
                            "id reused"
                        );
                        if open.key.kind == TunnelKind::PLAYER {
                            assert_eq!(open.key.oid, conn.uid, "a player tunnel is the player's");
                        }
                        if self.now < self.outage_until {
                            // The route table is down: the tunnel cannot be placed.
                            conn.tunnels.remove(&open.id);
                            conn.ended.insert(open.id);
                            conn.server.handle_tunnel_closed(self.now, open.id);
                        }
                    }
                    Event::Forward { tunnel, message } => {
                        if self.conns[i].ended.contains(&tunnel) {
                            continue;
                        }
                        assert!(
                            self.conns[i].tunnels.contains_key(&tunnel),
                            "forward on a tunnel never opened"
                        );
                        let due = self.now + Duration::from_millis(self.rng.below(40));
                        let queue = self.backend.entry((id, tunnel)).or_default();
                        let due = queue.back().map_or(due, |q| due.max(q.0));
                        queue.push_back((due, id, tunnel, message));
                    }
                    Event::CloseTunnel(tunnel) => {
                        assert!(self.conns[i].tunnels.remove(&tunnel).is_some());
                        self.backend.remove(&(id, tunnel));
                    }
                    Event::Closed(reason) => {
                        let conn = &mut self.conns[i];
                        conn.server_closed = true;
                        conn.tunnels.clear();
                        self.backend.retain(|(c, _), _| *c != id);
                        self.logins.logout(conn.uid, id);
                        self.log.push(format!("conn {id} closed: {reason}"));
                    }
                    _ => {}
                }
            }
            self.client_events(i);
        }
    }

    fn client_events(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        while let Some(event) = conn.client.poll_event() {
            match event {
                ClientEvent::Packet(p) if p.index != 0 => {
                    let request = conn.requests.get_mut(&p.index).unwrap_or_else(|| {
                        panic!("conn {}: reply to unknown index {}", conn.id, p.index)
                    });
                    assert!(
                        !request.answered,
                        "conn {}: index {} answered twice",
                        conn.id, p.index
                    );
                    assert_eq!(
                        p.data, request.tag,
                        "conn {}: someone else's reply",
                        conn.id
                    );
                    request.answered = true;
                }
                ClientEvent::Packet(p) => {
                    let text = String::from_utf8_lossy(&p.data).into_owned();
                    if let Some(rest) = text.strip_prefix("push:") {
                        let uid: i64 = rest.split(':').next().unwrap().parse().unwrap();
                        assert_eq!(
                            uid, conn.uid,
                            "a push for uid {uid} reached uid {}",
                            conn.uid
                        );
                    } else {
                        assert!(text.starts_with("bcast:"), "unexpected push {text}");
                    }
                }
                ClientEvent::RequestFailed { index, .. }
                | ClientEvent::RequestTimeout { index, .. } => {
                    if let Some(request) = conn.requests.get_mut(&index) {
                        assert!(
                            !request.answered,
                            "conn {}: index {index} settled twice",
                            conn.id
                        );
                        request.answered = true;
                    }
                    // else: one of the client's own heartbeats.
                }
                _ => {}
            }
        }
    }

    /// The backend answers the oldest due request of some tunnels, in any order across tunnels.
    fn backend_step(&mut self) {
        let keys: Vec<(u64, TunnelId)> = self.backend.keys().copied().collect();
        for key in keys {
            if !self.rng.chance(600) {
                continue;
            }
            let Some(queue) = self.backend.get_mut(&key) else {
                continue;
            };
            if queue.front().is_none_or(|q| q.0 > self.now) {
                continue;
            }
            let (_, conn_id, tunnel, request) = queue.pop_front().unwrap();
            let data = if request.module == system::SYSTEM_MODULE {
                system::heartbeat_reply(self.now.unix_secs(), 1)
            } else {
                request.data.clone()
            };
            let reply = TunnelMessage { data, ..request };
            let now = self.now;
            if let Some(conn) = self.conn_mut(conn_id) {
                conn.server.handle_tunnel(now, tunnel, reply);
            }
        }
    }

    fn push(&mut self) {
        let uid = 1 + self.rng.below(PLAYERS as u64) as i64;
        let serial = self.push_serial;
        self.push_serial += 1;
        let body = PushBody {
            data: Bytes::from(format!("push:{uid}:{serial}")),
            r#mod: 3,
            seq: 2,
            ..Default::default()
        };
        let push = PushPacket::encode(&body, &self.config).unwrap();
        if let Some(&conn_id) = self.logins.get(uid) {
            let now = self.now;
            if let Some(conn) = self.conn_mut(conn_id) {
                conn.server.push(now, &push);
            }
        }
    }

    fn broadcast(&mut self) {
        let body = PushBody {
            data: Bytes::from(format!("bcast:{}", self.push_serial)),
            r#mod: 3,
            seq: 2,
            ..Default::default()
        };
        self.push_serial += 1;
        let push = PushPacket::encode(&body, &self.config).unwrap();
        let now = self.now;
        for conn in &mut self.conns {
            conn.server.push(now, &push);
        }
    }

    fn send_request(&mut self) {
        if self.conns.is_empty() {
            return;
        }
        let i = self.rng.below(self.conns.len() as u64) as usize;
        let room = ROOMS[self.rng.below(ROOMS.len() as u64) as usize];
        let module = if self.rng.chance(300) { 6 } else { 3 };
        let now = self.now;
        let conn = &mut self.conns[i];
        if !conn.client.is_established() || conn.client.is_closed() {
            return;
        }
        let next = conn.last_index + 1;
        let out = Outgoing {
            module,
            seq: 1,
            obj: if module == 6 { room } else { 0 },
            data: tag(conn.uid, conn.id, next),
            ..Default::default()
        };
        let index = conn.client.send(now, out).unwrap();
        assert!(index > conn.last_index, "indices strictly increase");
        // The client's own heartbeats take indices too, so `index` may be past `next`; the tag
        // is what the reply must carry.
        conn.requests.insert(
            index,
            Request {
                tag: tag(conn.uid, conn.id, next),
                answered: false,
            },
        );
        conn.last_index = index;
    }

    fn fault(&mut self) {
        match self.rng.below(5) {
            0 => {
                // A backend restart: every tunnel of one service ends.
                let kind = if self.rng.chance(500) {
                    TunnelKind::PLAYER
                } else {
                    TunnelKind::ROOM
                };
                self.log.push(format!("backend {kind:?} restarts"));
                let now = self.now;
                for conn in &mut self.conns {
                    let dead: Vec<TunnelId> = conn
                        .tunnels
                        .iter()
                        .filter(|(_, k)| k.kind == kind)
                        .map(|(id, _)| *id)
                        .collect();
                    for id in dead {
                        conn.tunnels.remove(&id);
                        conn.ended.insert(id);
                        conn.server.handle_tunnel_closed(now, id);
                        self.backend.remove(&(conn.id, id));
                    }
                }
            }
            1 => {
                self.outage_until = self.now + Duration::from_millis(200 + self.rng.below(500));
                self.log.push("route table outage".into());
            }
            2 if !self.conns.is_empty() => {
                // A connection reset: the player reconnects with a fresh token.
                let i = self.rng.below(self.conns.len() as u64) as usize;
                let uid = self.conns[i].uid;
                let now = self.now;
                self.conns[i].server.close(now, CloseReason::PeerClosed);
                self.conns[i].client.close();
                self.log.push(format!("conn {} reset", self.conns[i].id));
                self.connect(uid);
            }
            3 => {
                // The same player logs in again without closing the first connection.
                let uid = 1 + self.rng.below(PLAYERS as u64) as i64;
                self.connect(uid);
            }
            _ => {}
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now = self.now + by;
        let now = self.now;
        for conn in &mut self.conns {
            if conn.server.poll_timeout().is_some_and(|t| t <= now) {
                conn.server.handle_timeout(now);
            }
            if conn.client.poll_timeout().is_some_and(|t| t <= now) {
                conn.client.handle_timeout(now);
            }
        }
    }

    fn check(&self) {
        for conn in &self.conns {
            assert!(
                conn.server.pending_transmit() <= BUDGET + 20_000,
                "conn {}: {} bytes buffered",
                conn.id,
                conn.server.pending_transmit()
            );
            assert!(conn.tunnels.len() <= 3, "more tunnels than allowed");
            assert!(conn.client.pending_requests() <= 1024);
        }
    }

    fn step(&mut self) {
        match self.rng.below(100) {
            0..=34 => self.send_request(),
            35..=39 => self.push(),
            40 => self.broadcast(),
            41..=42 if self.faults => self.fault(),
            _ => {}
        }
        self.transmit();
        self.deliver();
        self.backend_step();
        self.transmit();
        self.events();
        let by = Duration::from_millis(self.rng.below(25));
        self.advance(by);
        self.events();
        self.check();
    }

    /// No more faults or new requests; everything in flight lands.
    fn settle(&mut self) {
        self.faults = false;
        self.outage_until = Time::EPOCH;
        for _ in 0..2_000 {
            self.transmit();
            self.deliver();
            self.backend_step();
            self.transmit();
            self.events();
            self.advance(Duration::from_millis(10));
            self.events();
            self.check();
            let quiet = self.backend.values().all(VecDeque::is_empty)
                && self
                    .conns
                    .iter()
                    .all(|c| c.to_server.is_empty() && c.to_client.is_empty());
            if quiet {
                break;
            }
        }
    }
}

fn run(seed: u64) {
    let mut world = World::new(seed);
    for uid in 1..=PLAYERS {
        world.connect(uid);
    }
    for _ in 0..STEPS {
        world.step();
    }
    world.settle();
    // Every request of a session still open, and of a client that still thinks it is connected,
    // got exactly one outcome.
    for conn in &world.conns {
        if conn.server_closed || conn.client.is_closed() {
            continue;
        }
        for (index, request) in &conn.requests {
            assert!(
                request.answered,
                "conn {} (uid {}): request {index} was never answered",
                conn.id, conn.uid
            );
        }
    }
}

#[test]
fn seeded_simulations_keep_every_promise() {
    let seeds: Vec<u64> = match std::env::var("JANUS_SIM_SEED") {
        Ok(one) => vec![one.parse().expect("JANUS_SIM_SEED is a number")],
        Err(_) => {
            let n: u64 = std::env::var("JANUS_SIM_SEEDS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(48);
            (1..=n).collect()
        }
    };
    for seed in seeds {
        let result = std::panic::catch_unwind(|| run(seed));
        if let Err(e) = result {
            let why = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!(
                "seed {seed} failed: {why}\nreplay: JANUS_SIM_SEED={seed} cargo test -p janus-core --test sim -- --nocapture"
            );
        }
    }
}
