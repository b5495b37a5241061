//! One simulated client: mint a token, connect, handshake, and then either close and repeat
//! (handshake storm) or exchange packets until the run ends (echo).

use std::{collections::VecDeque, sync::Arc, time::Duration};

use bytes::{Bytes, BytesMut};
use janus_core::{
    Time,
    client::{ClientConfig, ClientEvent, ClientSession, Outgoing},
    handshake::ClientKeys,
    system::{self, HEARTBEAT_SEQ, SYSTEM_MODULE},
    token::TokenKey,
};
use janus_proto::gate::intra::v1::AuthToken;
use rand_core::{OsRng, RngCore as _};
use tokio::time::{Instant, sleep_until, timeout_at};

use crate::clock;

use super::{
    link::{Endpoint, Link},
    options::{BenchOptions, Mode, Target},
    stats::{ClientStats, ConnectionGauge, Failure, Live, micros},
};

/// Token lifetime, as the account service issues them (spec §2.1).
const TOKEN_LIFETIME_SECS: i64 = 600;
/// `AuthToken.status` = `ONLINE_STATUS_GATE`; backends refuse anything else.
const STATUS_GATE: i32 = 1;
/// `AuthToken.server_id`.
const TOKEN_SERVER_ID: i64 = 1;
/// `AuthToken.rand` is 8 random alphanumerics, as the account service makes it.
const TOKEN_RAND_LEN: usize = 8;
const ALPHANUMERIC: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Pause after a failed handshake-storm attempt, so a dead server costs errors, not a busy loop.
const FAILURE_PAUSE: Duration = Duration::from_millis(10);
/// First and largest pause before an echo client reconnects.
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(1);
/// Most open-loop requests sent in one turn when a client has fallen behind its schedule.
const MAX_BURST: usize = 1024;
/// Longest open-loop interval (a tiny `rate` is "almost never", not an overflow).
const MAX_INTERVAL: Duration = Duration::from_secs(3600);

/// What every client task reads: the resolved endpoint, the workload, the keys, the schedule.
#[derive(Debug)]
pub(crate) struct Shared {
    pub endpoint: Endpoint,
    pub mode: Mode,
    pub clients: u32,
    interval: Option<Duration>,
    module: i32,
    seq: i32,
    payload: Bytes,
    pub timeout: Duration,
    uid_base: i64,
    color: String,
    token_key: TokenKey,
    keys: Option<ClientKeys>,
    pub live: Live,
    ramp: Duration,
    pub start: Instant,
    pub ramp_end: Instant,
    /// Requests due from here on are measured (the end of the ramp plus the warm-up).
    pub measure_from: Instant,
    pub deadline: Instant,
    pub drain_end: Instant,
}

impl Shared {
    /// Resolves the target once and fixes the schedule; the run starts now.
    pub async fn new(opts: &BenchOptions) -> anyhow::Result<Self> {
        let endpoint = resolve(&opts.target).await?;
        let token_key =
            TokenKey::new(&opts.token_key).map_err(|e| anyhow::anyhow!("bad token key: {e}"))?;
        let mut probe = [0u8; 1];
        OsRng
            .try_fill_bytes(&mut probe)
            .map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
        let interval = (opts.rate > 0.0).then(|| {
            Duration::try_from_secs_f64(1.0 / opts.rate)
                .unwrap_or(MAX_INTERVAL)
                .min(MAX_INTERVAL)
        });
        let start = Instant::now();
        let deadline = start + opts.duration;
        Ok(Self {
            endpoint,
            mode: opts.mode,
            clients: opts.clients,
            interval,
            module: opts.module,
            seq: opts.seq,
            payload: Bytes::from(vec![0x5a; opts.payload]),
            timeout: opts.timeout,
            uid_base: opts.uid_base,
            color: opts.color.clone(),
            token_key,
            keys: opts.encrypted.then(|| ClientKeys {
                client_cert: opts.client_key.clone(),
                server_cert: opts.server_key,
            }),
            live: Live::default(),
            ramp: opts.ramp,
            start,
            ramp_end: (start + opts.ramp).min(deadline),
            measure_from: (start + opts.ramp + opts.warmup).min(deadline),
            deadline,
            drain_end: deadline + opts.drain,
        })
    }

    /// A fresh token for `uid`, sealed as the account service seals it.
    fn mint_token(&self, uid: i64, now: Time, random: &[u8; 20]) -> String {
        let (rand, nonce) = random.split_at(TOKEN_RAND_LEN);
        let rand = rand
            .iter()
            .map(|b| {
                let i = usize::from(*b) % ALPHANUMERIC.len();
                char::from(ALPHANUMERIC.get(i).copied().unwrap_or(b'x'))
            })
            .collect();
        let token = AuthToken {
            rand,
            color: self.color.clone(),
            account_id: uid,
            server_id: TOKEN_SERVER_ID,
            timeout: now.unix_secs() + TOKEN_LIFETIME_SECS,
            status: STATUS_GATE,
            ..Default::default()
        };
        let mut n = [0u8; 12];
        n.iter_mut().zip(nonce).for_each(|(d, s)| *d = *s);
        self.token_key.seal(&token, n)
    }

    /// Echo requests that are heartbeats (module 1, seq 2) carry a real `CSHeartbeat`.
    fn request_data(&self) -> Bytes {
        if self.module == SYSTEM_MODULE && self.seq == HEARTBEAT_SEQ {
            system::heartbeat_body(clock::now().unix_secs())
        } else {
            self.payload.clone()
        }
    }

    /// Records a request's latency if it was due inside the measured window.
    fn answered(&self, stats: &mut ClientStats, due: Instant) {
        if due >= self.measure_from {
            stats.request_us.saturating_record(micros(due.elapsed()));
        }
        Live::add(&self.live.replies, 1);
    }

    fn failed(&self, stats: &mut ClientStats, failure: Failure) {
        Live::add(&self.live.errors, 1);
        stats.count(failure);
    }
}

async fn resolve(target: &Target) -> anyhow::Result<Endpoint> {
    let (host_port, ws_url) = match target {
        Target::Tcp(addr) => (addr.clone(), None),
        Target::WebSocket(url) => {
            let uri: tokio_tungstenite::tungstenite::http::Uri = url
                .parse()
                .map_err(|e| anyhow::anyhow!("bad WebSocket URL {url:?}: {e}"))?;
            anyhow::ensure!(
                uri.scheme_str() == Some("ws"),
                "only ws:// URLs are supported, got {url:?}"
            );
            let host = uri
                .host()
                .ok_or_else(|| anyhow::anyhow!("no host in {url:?}"))?;
            let port = uri.port_u16().unwrap_or(80);
            (format!("{host}:{port}"), Some(url.clone()))
        }
    };
    let addr = tokio::net::lookup_host(&host_port)
        .await
        .map_err(|e| anyhow::anyhow!("cannot resolve {host_port:?}: {e}"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{host_port:?} resolves to no address"))?;
    Ok(Endpoint { addr, ws_url })
}

/// One client task: waits for its turn in the ramp, runs the workload, returns what it measured.
pub(crate) async fn run_client(
    shared: Arc<Shared>,
    index: u32,
    mut stats: ClientStats,
) -> ClientStats {
    let offset = shared
        .ramp
        .checked_mul(index)
        .and_then(|d| d.checked_div(shared.clients))
        .unwrap_or_default();
    sleep_until((shared.start + offset).min(shared.deadline)).await;
    match shared.mode {
        Mode::Handshake => handshake_storm(&shared, index, &mut stats).await,
        Mode::Echo => echo_client(&shared, index, &mut stats).await,
        Mode::Idle => idle_client(&shared, index, &mut stats).await,
        Mode::Broadcast => broadcast_client(&shared, index, &mut stats).await,
        Mode::IdleFrames => plain_idle_client(&shared, &mut stats).await,
        Mode::Frames => frames_client(&shared, &mut stats).await,
    }
    stats
}

async fn handshake_storm(shared: &Shared, index: u32, stats: &mut ClientStats) {
    let mut generation: i64 = 0;
    while Instant::now() < shared.deadline {
        // A new account per connection: no login ever conflicts with one still being torn down.
        let uid = shared
            .uid_base
            .saturating_add(generation.saturating_mul(i64::from(shared.clients)))
            .saturating_add(i64::from(index));
        match open(shared, uid, stats).await {
            Ok(conn) => conn.link.close().await,
            Err(failure) => {
                shared.failed(stats, failure);
                sleep_until((Instant::now() + FAILURE_PAUSE).min(shared.deadline)).await;
            }
        }
        generation += 1;
    }
}

async fn echo_client(shared: &Shared, index: u32, stats: &mut ClientStats) {
    let uid = shared.uid_base.saturating_add(i64::from(index));
    let mut backoff = RECONNECT_MIN;
    while Instant::now() < shared.deadline {
        match open(shared, uid, stats).await {
            Ok(conn) => {
                backoff = RECONNECT_MIN;
                let mut echo = Echo {
                    shared,
                    conn,
                    inflight: VecDeque::new(),
                };
                match echo.run(stats).await {
                    Ok(()) => {
                        stats.unanswered += echo.inflight.len() as u64;
                        echo.conn.link.close().await;
                        return;
                    }
                    Err(failure) => {
                        stats.count_n(Failure::RequestLost, echo.inflight.len() as u64);
                        shared.failed(stats, failure);
                    }
                }
            }
            Err(failure) => shared.failed(stats, failure),
        }
        sleep_until((Instant::now() + backoff).min(shared.deadline)).await;
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
}

/// Connects once and stays silent until the run ends, reading whatever the gateway sends.
async fn idle_client(shared: &Shared, index: u32, stats: &mut ClientStats) {
    let uid = shared.uid_base.saturating_add(i64::from(index));
    match open(shared, uid, stats).await {
        Ok(mut conn) => {
            let mut closed_early = false;
            while Instant::now() < shared.deadline {
                match timeout_at(
                    shared.deadline,
                    conn.link.read_into(&mut conn.rx, &shared.live),
                )
                .await
                {
                    Err(_) => break,
                    Ok(Ok(true)) => conn.rx.clear(),
                    Ok(Ok(false)) | Ok(Err(_)) => {
                        closed_early = true;
                        break;
                    }
                }
            }
            if closed_early {
                stats.count(Failure::ClosedByServer);
            }
            conn.link.close().await;
        }
        Err(failure) => shared.failed(stats, failure),
    }
}

/// Connects (no handshake) and stays silent until the run ends.
async fn plain_idle_client(shared: &Shared, stats: &mut ClientStats) {
    let started = Instant::now();
    let deadline = (started + shared.timeout).min(shared.drain_end);
    let mut link = match Link::connect(&shared.endpoint, deadline).await {
        Ok(link) => link,
        Err(failure) => return shared.failed(stats, failure),
    };
    let _open = ConnectionGauge::up(&shared.live.connections);
    stats
        .handshake_us
        .saturating_record(micros(started.elapsed()));
    Live::add(&shared.live.handshakes, 1);
    let mut rx = BytesMut::new();
    loop {
        match timeout_at(shared.deadline, link.read_into(&mut rx, &shared.live)).await {
            Err(_) => break,
            Ok(Ok(true)) => rx.clear(),
            Ok(Ok(false)) | Ok(Err(_)) => {
                stats.count(Failure::ClosedByServer);
                break;
            }
        }
    }
    link.close().await;
}

/// Connects once and counts every frame the gateway sends until the run ends (pushes: the
/// session asks for nothing), without decrypting them.
async fn broadcast_client(shared: &Shared, index: u32, stats: &mut ClientStats) {
    let uid = shared.uid_base.saturating_add(i64::from(index));
    let mut conn = match open(shared, uid, stats).await {
        Ok(conn) => conn,
        Err(failure) => return shared.failed(stats, failure),
    };
    let mut rx = BytesMut::new();
    loop {
        match timeout_at(shared.drain_end, conn.link.read_into(&mut rx, &shared.live)).await {
            Err(_) => break,
            Ok(Ok(true)) => {}
            Ok(Ok(false)) | Ok(Err(_)) => {
                if Instant::now() < shared.deadline {
                    stats.count(Failure::ClosedByServer);
                }
                break;
            }
        }
        let mut frames = 0;
        while let Some(len) = janus_core::frame::frame_len(&rx) {
            bytes::Buf::advance(&mut rx, len);
            frames += 1;
        }
        Live::add(&shared.live.pushes, frames);
    }
    conn.link.close().await;
}

/// Plain frames over one connection (no handshake, no encryption), each expected back as it
/// was sent; latency from when a frame was due to when its echo arrived.
async fn frames_client(shared: &Shared, stats: &mut ClientStats) {
    let started = Instant::now();
    let deadline = (started + shared.timeout).min(shared.drain_end);
    let mut link = match Link::connect(&shared.endpoint, deadline).await {
        Ok(link) => link,
        Err(failure) => return shared.failed(stats, failure),
    };
    let _open = ConnectionGauge::up(&shared.live.connections);
    // A connection is this mode's handshake.
    stats
        .handshake_us
        .saturating_record(micros(started.elapsed()));
    Live::add(&shared.live.handshakes, 1);
    let mut one = BytesMut::new();
    let body = if shared.payload.is_empty() {
        Bytes::from_static(&[0])
    } else {
        shared.payload.clone()
    };
    if janus_core::frame::encode(&body, &mut one).is_err() {
        return;
    }
    let one = one.freeze();
    let mut rx = BytesMut::new();
    let mut inflight: VecDeque<Instant> = VecDeque::new();
    let mut next_due = Instant::now();
    loop {
        let now = Instant::now();
        let sending = now < shared.deadline;
        if sending {
            let mut out = BytesMut::new();
            match shared.interval {
                None if inflight.is_empty() => {
                    out.extend_from_slice(&one);
                    inflight.push_back(now);
                }
                None => {}
                Some(interval) => {
                    let mut burst = 0;
                    while next_due <= now && burst < MAX_BURST {
                        out.extend_from_slice(&one);
                        inflight.push_back(next_due);
                        next_due += interval;
                        burst += 1;
                    }
                }
            }
            if !out.is_empty() {
                let frames = (out.len() / one.len()) as u64;
                if let Err(failure) = link
                    .write(out.freeze(), &shared.live, now + shared.timeout)
                    .await
                {
                    stats.count_n(Failure::RequestLost, inflight.len() as u64);
                    return shared.failed(stats, failure);
                }
                Live::add(&shared.live.requests, frames);
            }
        }
        if !sending && (inflight.is_empty() || now >= shared.drain_end) {
            break;
        }
        let mut wake = if sending {
            shared.deadline
        } else {
            shared.drain_end
        };
        if sending && shared.interval.is_some() {
            wake = wake.min(next_due);
        }
        let read = tokio::select! {
            read = link.read_into(&mut rx, &shared.live) => Some(read),
            () = sleep_until(wake) => None,
        };
        match read {
            None | Some(Ok(true)) => {}
            Some(Ok(false)) => {
                shared.failed(stats, Failure::ClosedByServer);
                break;
            }
            Some(Err(failure)) => {
                shared.failed(stats, failure);
                break;
            }
        }
        while let Some(len) = janus_core::frame::frame_len(&rx) {
            bytes::Buf::advance(&mut rx, len);
            if let Some(due) = inflight.pop_front() {
                shared.answered(stats, due);
            }
        }
    }
    stats.unanswered += inflight.len() as u64;
    link.close().await;
}

/// A TCP echo server (every byte back as it came, so every frame comes back whole): the backend
/// behind HAProxy when the bench measures a plain TCP proxy (`janus-bench --echo-server ADDR`).
pub async fn echo_server(addr: String) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("janus-bench: echo server on {}", listener.local_addr()?);
    loop {
        let (mut stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let (mut rd, mut wr) = stream.split();
            let _ = tokio::io::copy(&mut rd, &mut wr).await;
        });
    }
}

/// An established connection.
#[derive(Debug)]
struct Conn<'a> {
    link: Link,
    session: ClientSession,
    rx: BytesMut,
    /// Counts this connection as open until it is dropped.
    _open: ConnectionGauge<'a>,
}

/// Connects and handshakes as `uid`, recording the handshake latency on success.
async fn open<'a>(
    shared: &'a Shared,
    uid: i64,
    stats: &mut ClientStats,
) -> Result<Conn<'a>, Failure> {
    let started = Instant::now();
    let deadline = (started + shared.timeout).min(shared.drain_end);
    let mut random = [0u8; 20 + 32];
    OsRng
        .try_fill_bytes(&mut random)
        .map_err(|_| Failure::Entropy)?;
    let (token_random, seed) = random.split_at(20);
    let token_random: [u8; 20] = token_random.try_into().map_err(|_| Failure::Entropy)?;
    let seed: [u8; 32] = seed.try_into().map_err(|_| Failure::Entropy)?;

    let now = clock::now();
    let token = shared.mint_token(uid, now, &token_random);
    let mut config = ClientConfig::new(shared.keys.clone(), token);
    // The bench keeps its own clock: it never calls handle_timeout, times requests from when
    // they were due (not sent), and every mode measures only the traffic it makes itself. The
    // client's own heartbeats and request tracking would only add work and packets.
    config.heartbeat_interval = None;
    config.request_timeout = None;
    let mut link = Link::connect(&shared.endpoint, deadline).await?;
    let open = ConnectionGauge::up(&shared.live.connections);
    let mut session = ClientSession::new(&config, clock::now(), seed);
    let mut rx = BytesMut::new();
    if let Some(hello) = session.poll_transmit() {
        link.write(hello, &shared.live, deadline).await?;
    }
    loop {
        match timeout_at(deadline, link.read_into(&mut rx, &shared.live)).await {
            Err(_) => return Err(Failure::HandshakeTimeout),
            Ok(Err(failure)) => return Err(failure),
            Ok(Ok(false)) => return Err(Failure::HandshakeClosed),
            Ok(Ok(true)) => {}
        }
        if !rx.is_empty() {
            session.handle_bytes(clock::now(), &rx);
            rx.clear();
        }
        // Stop at Established: packets behind it stay queued for the echo loop.
        while let Some(event) = session.poll_event() {
            match event {
                ClientEvent::Established { .. } => {
                    stats
                        .handshake_us
                        .saturating_record(micros(started.elapsed()));
                    Live::add(&shared.live.handshakes, 1);
                    return Ok(Conn {
                        link,
                        session,
                        rx,
                        _open: open,
                    });
                }
                ClientEvent::Closed(error) => return Err(Failure::from_client_error(error)),
                _ => {}
            }
        }
    }
}

/// The echo workload on one established connection.
#[derive(Debug)]
struct Echo<'a> {
    shared: &'a Shared,
    conn: Conn<'a>,
    /// Requests awaiting a reply: index and the time the request was due, oldest first.
    inflight: VecDeque<(i32, Instant)>,
}

impl Echo<'_> {
    /// Runs until the drain ends (`Ok`) or the connection fails.
    async fn run(&mut self, stats: &mut ClientStats) -> Result<(), Failure> {
        let shared = self.shared;
        let mut next_due = Instant::now();
        loop {
            self.handle_events(stats)?;
            let now = Instant::now();
            let sending = now < shared.deadline;
            if sending {
                match shared.interval {
                    None if self.inflight.is_empty() => self.send(now)?,
                    None => {}
                    Some(interval) => {
                        let mut burst = 0;
                        while next_due <= now && burst < MAX_BURST {
                            self.send(next_due)?;
                            next_due += interval;
                            burst += 1;
                        }
                    }
                }
            }
            if let Some(bytes) = self.conn.session.poll_transmit() {
                let deadline = now + shared.timeout;
                self.conn.link.write(bytes, &shared.live, deadline).await?;
            }
            while let Some(&(_, due)) = self.inflight.front() {
                if due + shared.timeout > now {
                    break;
                }
                self.inflight.pop_front();
                shared.failed(stats, Failure::RequestTimeout);
            }
            if !sending && (self.inflight.is_empty() || now >= shared.drain_end) {
                return Ok(());
            }

            let mut wake = if sending {
                shared.deadline
            } else {
                shared.drain_end
            };
            if sending && shared.interval.is_some() {
                wake = wake.min(next_due);
            }
            if let Some(&(_, due)) = self.inflight.front() {
                wake = wake.min(due + shared.timeout);
            }
            let read = tokio::select! {
                read = self.conn.link.read_into(&mut self.conn.rx, &shared.live) => Some(read),
                () = sleep_until(wake) => None,
            };
            match read {
                None | Some(Ok(true)) => {}
                Some(Ok(false)) => {
                    // Whatever arrived with the close (late replies) still counts; a logout
                    // ends the session in handle_events, as Failure::Logout.
                    self.handle_events(stats)?;
                    return Err(Failure::ClosedByServer);
                }
                Some(Err(failure)) => return Err(failure),
            }
            if !self.conn.rx.is_empty() {
                self.conn.session.handle_bytes(clock::now(), &self.conn.rx);
                self.conn.rx.clear();
            }
        }
    }

    fn send(&mut self, due: Instant) -> Result<(), Failure> {
        let out = Outgoing {
            module: self.shared.module,
            seq: self.shared.seq,
            data: self.shared.request_data(),
            ..Default::default()
        };
        let index = self
            .conn
            .session
            .send(clock::now(), out)
            .map_err(Failure::from_client_error)?;
        self.inflight.push_back((index, due));
        Live::add(&self.shared.live.requests, 1);
        Ok(())
    }

    fn handle_events(&mut self, stats: &mut ClientStats) -> Result<(), Failure> {
        let shared = self.shared;
        while let Some(event) = self.conn.session.poll_event() {
            match event {
                ClientEvent::Packet(packet) if packet.index == 0 => {
                    Live::add(&shared.live.pushes, 1);
                }
                ClientEvent::Packet(packet) => self.answered(packet.index, true, stats),
                ClientEvent::RequestFailed { index, .. } => self.answered(index, false, stats),
                // A logout is a push too; the Closed(LoggedOut) right behind it ends the run as
                // Failure::Logout.
                ClientEvent::Logout(_) => Live::add(&shared.live.pushes, 1),
                ClientEvent::Closed(error) => return Err(Failure::from_client_error(error)),
                _ => {}
            }
        }
        Ok(())
    }

    /// The request at `index` was answered: with its reply (`ok`) or `SCServerUnexpectedErr`.
    fn answered(&mut self, index: i32, ok: bool, stats: &mut ClientStats) {
        let Some(pos) = self.inflight.iter().position(|(i, _)| *i == index) else {
            stats.late_replies += 1;
            return;
        };
        let Some((_, due)) = self.inflight.remove(pos) else {
            return;
        };
        if !ok {
            self.shared.failed(stats, Failure::ServerUnexpectedErr);
            return;
        }
        self.shared.answered(stats, due);
    }
}
