#![cfg(feature = "etcd")]
//! etcd registration and discovery against a real `etcd` process (3.4, /usr/bin/etcd): the
//! kratos key layout, lease keep-alive and recovery, colour filtering, and behaviour across an
//! etcd stop/restart.
#![allow(
    missing_debug_implementations,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use janus_core::route::Backend;
use std::{
    collections::BTreeMap,
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::Duration,
};

use etcd_client::{Client, GetOptions, PutOptions};
use janus_tokio::cluster::etcd::{
    DiscoveryOptions, EtcdConfig, ServiceInstance, discover_with, register, register_with_ttl,
};
use tokio::{sync::watch, time::Instant};

const WAIT: Duration = Duration::from_secs(10);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One etcd member on free ports with its own data dir; killed on drop.
struct Etcd {
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

impl Etcd {
    async fn start() -> Self {
        let mut etcd = Self {
            dir: tempfile::tempdir().unwrap(),
            client_port: free_port(),
            peer_port: free_port(),
            child: None,
        };
        etcd.spawn().await;
        etcd
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn cfg(&self) -> EtcdConfig {
        EtcdConfig {
            endpoints: vec![self.endpoint()],
            username: String::new(),
            password: String::new(),
            dial_timeout: Duration::from_secs(1),
            ..EtcdConfig::default()
        }
    }

    async fn spawn(&mut self) {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::File::create(self.dir.path().join("etcd.log")).unwrap();
        let child = Command::new("etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("t={peer}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd binary");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        loop {
            let up = tokio::time::timeout(Duration::from_secs(1), async {
                let mut c = Client::connect([self.endpoint()], None).await?;
                c.status().await
            })
            .await;
            if matches!(up, Ok(Ok(_))) {
                return;
            }
            assert!(Instant::now() < deadline, "etcd did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// Restart with an empty data dir: everything registered before is gone.
    async fn restart_wiped(&mut self) {
        self.stop();
        std::fs::remove_dir_all(self.dir.path().join("data")).unwrap();
        self.spawn().await;
    }

    async fn client(&self) -> Client {
        Client::connect([self.endpoint()], None).await.unwrap()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn instance(name: &str, color: &str, grpc: &str) -> ServiceInstance {
    ServiceInstance::new(
        name,
        "",
        BTreeMap::from([
            ("svc".to_owned(), name.to_owned()),
            ("profile".to_owned(), "dev".to_owned()),
            ("ver".to_owned(), String::new()),
            ("color".to_owned(), color.to_owned()),
        ]),
        vec!["http://127.0.0.1:8100".to_owned(), format!("grpc://{grpc}")],
    )
}

/// The key's value and lease, if present.
async fn lookup(c: &mut Client, key: &str) -> Option<(serde_json::Value, i64)> {
    let resp = c.get(key, None).await.ok()?;
    let kv = resp.kvs().first()?;
    Some((serde_json::from_slice(kv.value()).unwrap(), kv.lease()))
}

async fn wait_until<F: AsyncFnMut() -> bool>(what: &str, mut cond: F) -> Duration {
    let start = Instant::now();
    while !cond().await {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

async fn wait_for_set(rx: &mut watch::Receiver<Vec<Backend>>, addrs: &[&str]) -> Duration {
    let start = Instant::now();
    let want: Vec<String> = addrs.iter().map(|a| (*a).to_owned()).collect();
    let got = tokio::time::timeout(
        WAIT,
        rx.wait_for(|set| set.iter().map(|b| b.addr.clone()).collect::<Vec<_>>() == want),
    )
    .await
    .is_ok();
    assert!(
        got,
        "timed out waiting for {want:?}, have {:?}",
        *rx.borrow()
    );
    start.elapsed()
}

fn addrs(rx: &watch::Receiver<Vec<Backend>>) -> Vec<String> {
    rx.borrow().iter().map(|b| b.addr.clone()).collect()
}

#[tokio::test]
async fn register_writes_the_kratos_layout_and_deregister_removes_it() {
    let etcd = Etcd::start().await;
    let inst = instance("janus.gate.interface", "blue", "127.0.0.1:9100");
    let id = inst.id.clone();
    let reg = register(&etcd.cfg(), inst).await.unwrap();
    let key = format!("/microservices/janus.gate.interface/{id}");
    assert_eq!(reg.key(), key);

    let mut c = etcd.client().await;
    let (value, lease) = lookup(&mut c, &key).await.expect("key registered");
    assert_eq!(
        value,
        serde_json::json!({
            "id": id,
            "name": "janus.gate.interface",
            "version": "",
            "metadata": {"svc": "janus.gate.interface", "profile": "dev", "ver": "", "color": "blue"},
            "endpoints": ["http://127.0.0.1:8100", "grpc://127.0.0.1:9100"],
        })
    );
    let ttl = c.lease_time_to_live(lease, None).await.unwrap();
    assert_eq!(ttl.granted_ttl(), 15, "kratos' 15 s lease");

    let started = Instant::now();
    reg.deregister().await.unwrap();
    eprintln!("deregister took {:?}", started.elapsed());
    assert!(lookup(&mut c, &key).await.is_none(), "key deleted");
    let ttl = c.lease_time_to_live(lease, None).await.unwrap();
    assert_eq!(ttl.ttl(), -1, "lease revoked");
}

#[tokio::test]
async fn lease_is_kept_alive_and_replaced_when_lost() {
    let etcd = Etcd::start().await;
    let inst = instance("roma.player.service", "blue", "127.0.0.1:9102");
    let reg = register_with_ttl(&etcd.cfg(), inst, Duration::from_secs(2))
        .await
        .unwrap();
    let key = reg.key().to_owned();
    let mut c = etcd.client().await;

    // Three TTLs later the key is still there, under the same lease.
    let (_, lease) = lookup(&mut c, &key).await.unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (_, still) = lookup(&mut c, &key).await.expect("kept alive past its TTL");
    assert_eq!(still, lease);

    // Someone revokes the lease: the key vanishes and comes back under a new lease.
    c.lease_revoke(lease).await.unwrap();
    assert!(lookup(&mut c, &key).await.is_none());
    let took = wait_until(
        "re-registration",
        async || matches!(lookup(&mut c, &key).await, Some((_, l)) if l != lease),
    )
    .await;
    eprintln!("re-registered {took:?} after the lease was revoked");
    reg.deregister().await.unwrap();
    assert!(lookup(&mut c, &key).await.is_none());
}

#[tokio::test]
async fn registration_comes_back_after_etcd_restarts() {
    let mut etcd = Etcd::start().await;
    let inst = instance("roma.room.service", "blue", "127.0.0.1:9103");
    let reg = register_with_ttl(&etcd.cfg(), inst, Duration::from_secs(2))
        .await
        .unwrap();
    let key = reg.key().to_owned();

    // Same data dir: the key survives, but under a fresh lease we keep alive.
    let (_, lease) = lookup(&mut etcd.client().await, &key).await.unwrap();
    etcd.restart().await;
    let mut c = etcd.client().await;
    let took = wait_until(
        "a new lease after restart",
        async || matches!(lookup(&mut c, &key).await, Some((_, l)) if l != lease),
    )
    .await;
    eprintln!("re-registered {took:?} after etcd restarted");

    // Wiped data dir: the registry lost everything; we put the key back.
    etcd.restart_wiped().await;
    let mut c = etcd.client().await;
    let took = wait_until("the key in a wiped etcd", async || {
        lookup(&mut c, &key).await.is_some()
    })
    .await;
    eprintln!("re-registered {took:?} after etcd restarted empty");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(lookup(&mut c, &key).await.is_some(), "new lease kept alive");
    reg.deregister().await.unwrap();
    assert!(lookup(&mut c, &key).await.is_none());
}

async fn put_instance(c: &mut Client, inst: &ServiceInstance) {
    c.put(inst.key(), serde_json::to_string(inst).unwrap(), None)
        .await
        .unwrap();
}

fn start_discovery(
    etcd: &Etcd,
    hold_down: Duration,
) -> (
    watch::Receiver<Vec<Backend>>,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = watch::channel(Vec::new());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(discover_with(
        etcd.cfg(),
        "roma.player.service".to_owned(),
        "blue".to_owned(),
        DiscoveryOptions::default().with_empty_hold_down(hold_down),
        tx,
        async {
            let _ = stopped.await;
        },
    ));
    (rx, stop, task)
}

#[tokio::test]
async fn discovery_follows_adds_removes_and_filters_by_colour() {
    let etcd = Etcd::start().await;
    let mut c = etcd.client().await;
    let svc = "roma.player.service";
    let a = instance(svc, "blue", "10.0.0.1:9102");
    put_instance(&mut c, &a).await;
    put_instance(&mut c, &instance(svc, "green", "10.0.0.9:9102")).await;
    put_instance(
        &mut c,
        &instance("roma.room.service", "blue", "10.0.0.8:9103"),
    )
    .await;
    let mut colourless = instance(svc, "", "10.0.0.7:9102");
    colourless.metadata.remove("color");
    put_instance(&mut c, &colourless).await;

    let (mut rx, stop, task) = start_discovery(&etcd, Duration::from_secs(2));
    let t = wait_for_set(&mut rx, &["10.0.0.1:9102"]).await;
    eprintln!("initial list seen after {t:?}");
    assert_eq!(rx.borrow()[0].color.as_deref(), Some("blue"));
    assert_eq!(rx.borrow()[0].weight, 1);

    // Added by a real registration, with a weight.
    let mut b = instance(svc, "blue", "10.0.0.2:9102");
    b.metadata.insert("weight".to_owned(), "3".to_owned());
    let reg_b = register(&etcd.cfg(), b).await.unwrap();
    let t = wait_for_set(&mut rx, &["10.0.0.1:9102", "10.0.0.2:9102"]).await;
    eprintln!("added instance seen after {t:?}");
    assert_eq!(rx.borrow()[1].weight, 3);

    // Removed.
    c.delete(a.key(), None).await.unwrap();
    let t = wait_for_set(&mut rx, &["10.0.0.2:9102"]).await;
    eprintln!("removed instance seen after {t:?}");

    // The last one leaves: held for the hold-down, then applied.
    let left = Instant::now();
    reg_b.deregister().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(addrs(&rx), ["10.0.0.2:9102"], "held during the hold-down");
    wait_for_set(&mut rx, &[]).await;
    let held = left.elapsed();
    eprintln!("empty set applied after {held:?} (hold-down 2 s)");
    assert!(held >= Duration::from_secs(2));

    // An empty set is left as soon as an instance appears.
    put_instance(&mut c, &a).await;
    wait_for_set(&mut rx, &["10.0.0.1:9102"]).await;

    stop.send(()).unwrap();
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
}

#[tokio::test]
async fn discovery_keeps_its_set_while_etcd_is_down_and_catches_up_after() {
    let mut etcd = Etcd::start().await;
    let svc = "roma.player.service";
    let a = instance(svc, "blue", "10.0.0.1:9102");
    put_instance(&mut etcd.client().await, &a).await;
    let (mut rx, stop, task) = start_discovery(&etcd, Duration::from_secs(1));
    wait_for_set(&mut rx, &["10.0.0.1:9102"]).await;

    etcd.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        addrs(&rx),
        ["10.0.0.1:9102"],
        "last known set while etcd is down"
    );

    etcd.restart().await;
    let restarted = Instant::now();
    let mut c = etcd.client().await;
    put_instance(&mut c, &instance(svc, "blue", "10.0.0.2:9102")).await;
    c.delete(a.key(), None).await.unwrap();
    wait_for_set(&mut rx, &["10.0.0.2:9102"]).await;
    eprintln!(
        "changes after the restart seen {:?} after it",
        restarted.elapsed()
    );

    // And the re-established watch keeps following.
    c.put(
        "/microservices/roma.player.service/x",
        serde_json::to_string(&instance(svc, "blue", "10.0.0.3:9102")).unwrap(),
        Some(PutOptions::new()),
    )
    .await
    .unwrap();
    wait_for_set(&mut rx, &["10.0.0.2:9102", "10.0.0.3:9102"]).await;
    let all = c
        .get("/microservices/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(all.kvs().len(), 2);

    stop.send(()).unwrap();
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
}

#[tokio::test]
async fn deregister_is_bounded_when_etcd_is_gone() {
    let mut etcd = Etcd::start().await;
    let reg = register(
        &etcd.cfg(),
        instance("janus.gate.interface", "blue", "127.0.0.1:9100"),
    )
    .await
    .unwrap();
    etcd.stop();
    let started = Instant::now();
    assert!(reg.deregister().await.is_err());
    let took = started.elapsed();
    eprintln!("deregister against a dead etcd gave up after {took:?}");
    assert!(took <= Duration::from_millis(3500));
}

mod common;

/// The gateway in cluster mode: registered in etcd, its player backends discovered there (as
/// roma registers them), traffic unaffected by etcd going down, deregistered on shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_registers_discovers_backends_and_rides_out_an_etcd_restart() {
    use janus_tokio::{
        cluster::etcd::{ServiceInstance, register},
        demo::{DemoBackend, DemoConfig},
        gateway::{EtcdSettings, Gateway},
    };

    let mut etcd = Etcd::start().await;
    let demo = DemoBackend::new(DemoConfig::default())
        .spawn_local()
        .await
        .unwrap();
    let metadata = [("color".to_owned(), "local".to_owned())]
        .into_iter()
        .collect();
    let _roma = register(
        &etcd.cfg(),
        ServiceInstance::new(
            "roma.player.service",
            "",
            metadata,
            vec![format!("grpc://{}", demo.addr())],
        ),
    )
    .await
    .unwrap();

    let mut settings = common::settings("127.0.0.1:1".parse().unwrap());
    settings.backends.clear();
    settings.etcd = Some(EtcdSettings {
        endpoints: vec![etcd.endpoint()],
        username: String::new(),
        password: String::new(),
        services: [("player".to_owned(), "roma.player.service".to_owned())]
            .into_iter()
            .collect(),
        name: "janus.gate.interface".into(),
        version: String::new(),
        profile: "dev".into(),
        color: "local".into(),
    });
    let gw = Gateway::start(settings).await.unwrap();
    let prefix = "/microservices/janus.gate.interface/";
    let mut client = etcd.client().await;
    let found = client
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(found.kvs().len(), 1);
    let value = found.kvs()[0].value_str().unwrap().to_owned();
    assert!(
        value.contains(&format!("grpc://{}", gw.endpoint())),
        "{value}"
    );

    // Traffic reaches the discovered backend (discovery may need a moment).
    let mut c = common::TestClient::tcp(gw.addrs().tcp.unwrap(), 40_001).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let index = c.send(3, 1, 0, b"via etcd").await;
        if c.answer(index).await.data() == Some(b"via etcd") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the discovered backend never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A backend of another colour serves the sessions of that colour, and only those.
    let blue_demo = DemoBackend::new(DemoConfig::default())
        .spawn_local()
        .await
        .unwrap();
    let blue_meta = [("color".to_owned(), "blue".to_owned())]
        .into_iter()
        .collect();
    let _blue = register(
        &etcd.cfg(),
        ServiceInstance::new(
            "roma.player.service",
            "",
            blue_meta,
            vec![format!("grpc://{}", blue_demo.addr())],
        ),
    )
    .await
    .unwrap();
    let mut blue = common::TestClient::tcp_color(gw.addrs().tcp.unwrap(), 40_003, "blue").await;
    let deadline = Instant::now() + WAIT;
    loop {
        let index = blue.send(3, 1, 0, b"blue").await;
        if blue.answer(index).await.data() == Some(b"blue") {
            break;
        }
        assert!(Instant::now() < deadline, "the blue backend never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        blue_demo
            .backend()
            .observed()
            .opened
            .iter()
            .all(|o| o.uid == 40_003)
    );
    assert!(
        demo.backend()
            .observed()
            .opened
            .iter()
            .all(|o| o.uid != 40_003)
    );

    let text = gw.metrics().render();
    assert!(text.contains("janus_etcd_up 1"), "{text}");
    assert!(text.contains("janus_etcd_registered 1"), "{text}");

    // etcd down: the session and routing carry on with the last known backends.
    etcd.stop();
    for _ in 0..3 {
        let index = c.send(3, 1, 0, b"etcd down").await;
        assert_eq!(&c.reply(index).await.data[..], b"etcd down");
    }
    let mut other = common::TestClient::tcp(gw.addrs().tcp.unwrap(), 40_002).await;
    let index = other.send(3, 1, 0, b"new tunnel").await;
    assert_eq!(
        &other.reply(index).await.data[..],
        b"new tunnel",
        "new tunnels use the last known set"
    );
    let deadline = Instant::now() + WAIT * 2;
    while !gw.metrics().render().contains("janus_etcd_up 0") {
        assert!(
            Instant::now() < deadline,
            "etcd's outage is not on /metrics"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !gw.metrics()
            .render()
            .contains("janus_etcd_errors_total{op=\"watch\"} 0")
    );
    etcd.restart().await;

    gw.shutdown().await;
    let mut client = etcd.client().await;
    let found = client
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert!(found.kvs().is_empty(), "deregistered on shutdown");
}
