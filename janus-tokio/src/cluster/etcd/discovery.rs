//! Discovery: keep a `watch` channel of one service's backends, for one colour, up to date.
//!
//! The loop is list-then-watch: `GET /microservices/<service>/ --prefix` gives the whole set and a
//! revision, `WATCH` from revision + 1 gives every change after it, in order. On a canceled watch
//! (compaction), a closed stream or any error, the loop starts over with a fresh client after a
//! jittered backoff, so nothing between two revisions is missed. Callers never wait on etcd: they
//! read the latest snapshot from the channel.
//!
//! **Colour filter** (spec §4.3): an instance is kept only when its metadata `color` equals the
//! requested colour, exactly as the Go node filter compares strings. An instance without a colour
//! therefore only serves the empty colour; it is *not* a wildcard, because a Go gateway would not
//! send it that traffic either. Published specs carry `color: Some(<requested colour>)`.
//! Requesting [`ANY_COLOR`] keeps every instance, each with its own colour, so the gateway can
//! route every session to the backends of *its* colour, as the Go gateway filters per request.
//!
//! **Address**: the first `grpc://host:port` endpoint (query and path dropped, as kratos'
//! endpoint parser does); an instance without one is ignored. **Weight**: metadata `weight` if it
//! parses as a positive integer, else 1.
//!
//! **Empty-set policy** (ours, not the Go gateway's): if etcd reports zero instances while we
//! publish some, the last non-empty set stays published for a hold-down period
//! ([`DEFAULT_EMPTY_HOLD_DOWN`]) and the empty set is applied only if it persists that long. A
//! registry that lost its keys (wiped, restored from an old snapshot, mass lease expiry after a
//! long etcd pause) must not black-hole all traffic at once; a service really scaled to zero is
//! still seen as gone after the hold-down. An unreachable etcd changes nothing: the last set stays.

use std::{collections::BTreeMap, time::Duration};

use etcd_client::{EventType, GetOptions, KeyValue, WatchOptions};
use tokio::{sync::watch, time::Instant};

use super::{Backoff, EtcdConfig, EtcdError, NAMESPACE, ServiceInstance, bounded, connect};
use janus_core::route::Backend;

/// How long an all-empty registry view is ignored while we still have backends.
pub const DEFAULT_EMPTY_HOLD_DOWN: Duration = Duration::from_secs(30);

/// Tuning for [`discover_with`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DiscoveryOptions {
    /// See the empty-set policy in the module docs. Default [`DEFAULT_EMPTY_HOLD_DOWN`].
    pub empty_hold_down: Duration,
}

impl Default for DiscoveryOptions {
    fn default() -> Self {
        Self {
            empty_hold_down: DEFAULT_EMPTY_HOLD_DOWN,
        }
    }
}

impl DiscoveryOptions {
    /// Sets [`Self::empty_hold_down`].
    pub fn with_empty_hold_down(mut self, hold_down: Duration) -> Self {
        self.empty_hold_down = hold_down;
        self
    }
}

/// Watches `/microservices/<service>/` and publishes the backends of `service` whose colour is
/// `color` into `out` until `shutdown` resolves (or every receiver is gone). See the module docs
/// for the filter, the retry loop and the empty-set policy.
pub async fn discover(
    cfg: EtcdConfig,
    service: String,
    color: String,
    out: watch::Sender<Vec<Backend>>,
    shutdown: impl Future<Output = ()>,
) {
    discover_with(
        cfg,
        service,
        color,
        DiscoveryOptions::default(),
        out,
        shutdown,
    )
    .await;
}

/// [`discover`] with explicit [`DiscoveryOptions`].
pub async fn discover_with(
    cfg: EtcdConfig,
    service: String,
    color: String,
    opts: DiscoveryOptions,
    out: watch::Sender<Vec<Backend>>,
    shutdown: impl Future<Output = ()>,
) {
    let prefix = format!("{NAMESPACE}/{service}/");
    let mut view = View {
        color,
        instances: BTreeMap::new(),
        publisher: Publisher {
            out,
            hold_down: opts.empty_hold_down,
            empty_since: None,
        },
    };
    let mut backoff = Backoff::new();
    // A second handle, so the loop can wait for all receivers to go while `view` is borrowed.
    let receivers = view.publisher.out.clone();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            () = receivers.closed() => return,
            err = follow(&cfg, &prefix, &mut view, &mut backoff) => {
                cfg.health.up.store(false, std::sync::atomic::Ordering::Relaxed);
                cfg.health.watch_errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(service, error = %err, "etcd discovery interrupted; re-listing");
            }
        }
        // A hold-down that ends while etcd is unreachable is settled by the next list.
        let delay = backoff.next_delay();
        tokio::select! {
            () = &mut shutdown => return,
            () = receivers.closed() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// One list-then-watch session; only returns on failure.
async fn follow(
    cfg: &EtcdConfig,
    prefix: &str,
    view: &mut View,
    backoff: &mut Backoff,
) -> EtcdError {
    let mut client = match connect(cfg).await {
        Ok(c) => c,
        Err(e) => return e,
    };
    let listed = bounded(
        "get",
        cfg.dial_timeout,
        client.get(prefix, Some(GetOptions::new().with_prefix())),
    )
    .await;
    let listed = match listed {
        Ok(r) => r,
        Err(e) => return e,
    };
    let revision = listed.header().map_or(0, |h| h.revision());
    view.instances.clear();
    for kv in listed.kvs() {
        view.put(kv);
    }
    view.publish();
    cfg.health
        .up
        .store(true, std::sync::atomic::Ordering::Relaxed);

    let opts = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1);
    let mut stream =
        match bounded("watch", cfg.dial_timeout, client.watch(prefix, Some(opts))).await {
            Ok(s) => s,
            Err(e) => return e,
        };
    backoff.reset();
    loop {
        tokio::select! {
            msg = stream.message() => {
                let resp = match msg {
                    Ok(Some(resp)) => resp,
                    Ok(None) => return EtcdError::WatchEnded,
                    Err(source) => return EtcdError::Request { op: "watch", source },
                };
                if resp.canceled() {
                    return EtcdError::WatchCanceled {
                        compact_revision: resp.compact_revision(),
                        reason: resp.cancel_reason().to_owned(),
                    };
                }
                for event in resp.events() {
                    match (event.event_type(), event.kv()) {
                        (EventType::Put, Some(kv)) => view.put(kv),
                        (EventType::Delete, Some(kv)) => {
                            view.instances.remove(kv.key());
                        }
                        _ => {}
                    }
                }
                if !resp.events().is_empty() {
                    view.publish();
                }
            }
            () = view.publisher.hold_down_expired() => view.publish(),
        }
    }
}

/// What etcd holds for the service, filtered, keyed by registry key.
struct View {
    color: String,
    /// `None`: the key exists but does not serve us (other colour, no gRPC endpoint, bad JSON).
    instances: BTreeMap<Vec<u8>, Option<Backend>>,
    publisher: Publisher,
}

impl View {
    fn put(&mut self, kv: &KeyValue) {
        let spec = match serde_json::from_slice::<ServiceInstance>(kv.value()) {
            Ok(inst) => backend_of(&inst, &self.color),
            Err(err) => {
                tracing::warn!(key = %String::from_utf8_lossy(kv.key()), error = %err, "ignoring registry value that is not a kratos ServiceInstance");
                None
            }
        };
        self.instances.insert(kv.key().to_vec(), spec);
    }

    fn publish(&mut self) {
        let mut set: Vec<Backend> = self.instances.values().flatten().cloned().collect();
        set.sort_by(|a, b| a.addr.cmp(&b.addr));
        set.dedup_by(|a, b| a.addr == b.addr);
        self.publisher.offer(set, Instant::now());
    }
}

/// The requested colour that keeps instances of every colour (each published with its own).
pub const ANY_COLOR: &str = "*";

/// The backend an instance offers to traffic of `color` (or of its own colour, for
/// [`ANY_COLOR`]), if any.
fn backend_of(inst: &ServiceInstance, color: &str) -> Option<Backend> {
    let inst_color = inst.metadata.get("color").map_or("", String::as_str);
    let color = if color == ANY_COLOR {
        inst_color
    } else {
        color
    };
    if inst_color != color {
        return None;
    }
    let addr = inst.endpoints.iter().find_map(|e| grpc_addr(e))?;
    let weight = inst
        .metadata
        .get("weight")
        .and_then(|w| w.trim().parse::<u32>().ok())
        .filter(|w| *w > 0)
        .unwrap_or(1);
    Some(Backend {
        addr,
        weight,
        color: Some(color.to_owned()),
    })
}

/// `grpc://host:port[/path][?query]` → `host:port`.
fn grpc_addr(endpoint: &str) -> Option<String> {
    let rest = endpoint.strip_prefix("grpc://")?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = rest.get(..end)?;
    (!authority.is_empty()).then(|| authority.to_owned())
}

/// Publishes snapshots, applying the empty-set hold-down.
struct Publisher {
    out: watch::Sender<Vec<Backend>>,
    hold_down: Duration,
    /// When etcd first reported an empty set while we were publishing a non-empty one.
    empty_since: Option<Instant>,
}

impl Publisher {
    fn offer(&mut self, set: Vec<Backend>, now: Instant) {
        if set.is_empty() && !self.out.borrow().is_empty() {
            let since = *self.empty_since.get_or_insert_with(|| {
                tracing::warn!("etcd reports no instances; keeping the last set during hold-down");
                now
            });
            if now.saturating_duration_since(since) < self.hold_down {
                return;
            }
            tracing::warn!("no instances for the whole hold-down; publishing the empty set");
        }
        if !set.is_empty() {
            self.empty_since = None;
        }
        self.out.send_if_modified(|cur| {
            if *cur == set {
                false
            } else {
                *cur = set;
                true
            }
        });
        if self.out.borrow().is_empty() {
            self.empty_since = None;
        }
    }

    /// Resolves when a running hold-down ends; pending forever otherwise.
    async fn hold_down_expired(&self) {
        match self.empty_since {
            Some(since) => tokio::time::sleep_until(since + self.hold_down).await,
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(color: Option<&str>, endpoints: &[&str], weight: Option<&str>) -> ServiceInstance {
        let mut metadata = BTreeMap::new();
        if let Some(c) = color {
            metadata.insert("color".to_owned(), c.to_owned());
        }
        if let Some(w) = weight {
            metadata.insert("weight".to_owned(), w.to_owned());
        }
        ServiceInstance {
            id: "x".into(),
            name: "roma.player.service".into(),
            version: String::new(),
            metadata,
            endpoints: endpoints.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn any_colour_keeps_every_instance_with_its_own_colour() {
        let blue = backend_of(
            &inst(Some("blue"), &["grpc://10.0.0.1:9102"], None),
            ANY_COLOR,
        )
        .unwrap();
        assert_eq!(blue.color.as_deref(), Some("blue"));
        let plain = backend_of(&inst(None, &["grpc://10.0.0.2:9102"], None), ANY_COLOR).unwrap();
        assert_eq!(
            plain.color.as_deref(),
            Some(""),
            "no colour serves only the empty colour, as in Go"
        );
        assert!(backend_of(&inst(Some("blue"), &["grpc://10.0.0.1:9102"], None), "red").is_none());
    }

    #[test]
    fn takes_the_grpc_endpoint_and_filters_by_colour() {
        let i = inst(
            Some("blue"),
            &[
                "http://10.0.0.1:8100",
                "grpc://10.0.0.1:9102?isSecure=false",
            ],
            None,
        );
        let spec = backend_of(&i, "blue");
        assert_eq!(
            spec,
            Some(Backend {
                addr: "10.0.0.1:9102".into(),
                weight: 1,
                color: Some("blue".into())
            })
        );
        assert_eq!(backend_of(&i, "green"), None);
        assert_eq!(backend_of(&inst(None, &["grpc://a:1"], None), "blue"), None);
        assert!(backend_of(&inst(None, &["grpc://a:1"], None), "").is_some());
        assert_eq!(
            backend_of(&inst(Some("blue"), &["http://a:1"], None), "blue"),
            None
        );
    }

    #[test]
    fn weight_from_metadata() {
        let w = |m| backend_of(&inst(Some("c"), &["grpc://a:1"], m), "c").map(|s| s.weight);
        assert_eq!(w(Some("7")), Some(7));
        assert_eq!(w(Some("0")), Some(1));
        assert_eq!(w(Some("x")), Some(1));
    }

    #[test]
    fn empty_set_is_held_down() {
        let (tx, rx) = watch::channel(Vec::new());
        let mut p = Publisher {
            out: tx,
            hold_down: Duration::from_secs(30),
            empty_since: None,
        };
        let one = vec![Backend {
            addr: "a:1".into(),
            weight: 1,
            color: None,
        }];
        let t0 = Instant::now();
        p.offer(one.clone(), t0);
        assert_eq!(*rx.borrow(), one);
        p.offer(Vec::new(), t0 + Duration::from_secs(1));
        assert_eq!(*rx.borrow(), one, "held");
        p.offer(one.clone(), t0 + Duration::from_secs(2));
        p.offer(Vec::new(), t0 + Duration::from_secs(3));
        p.offer(Vec::new(), t0 + Duration::from_secs(32));
        assert_eq!(
            *rx.borrow(),
            one,
            "hold-down restarted when instances came back"
        );
        p.offer(Vec::new(), t0 + Duration::from_secs(33));
        assert!(rx.borrow().is_empty(), "empty after the whole hold-down");
        p.offer(Vec::new(), t0 + Duration::from_secs(34));
        assert!(p.empty_since.is_none());
    }
}
