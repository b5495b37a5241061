//! Tests of backend choice and sticky placement (table and breaker test themselves in place).

use std::collections::HashMap;

use proptest::prelude::*;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use super::*;
use crate::Time;

fn backend(addr: &str, weight: u32, color: Option<&str>) -> Backend {
    Backend {
        addr: addr.to_owned(),
        weight,
        color: color.map(str::to_owned),
    }
}

fn set(backends: &[(&str, u32)]) -> BackendSet {
    BackendSet::new(backends.iter().map(|&(a, w)| backend(a, w, None)).collect()).unwrap()
}

/// Backends `b0`, `b1`, ... with these weights and colours.
fn numbered<'a>(backends: impl IntoIterator<Item = (u32, Option<&'a str>)>) -> BackendSet {
    let backends = backends.into_iter().enumerate();
    BackendSet::new(
        backends
            .map(|(i, (w, c))| backend(&format!("b{i}"), w, c))
            .collect(),
    )
    .unwrap()
}

fn addrs(set: &BackendSet, picks: impl IntoIterator<Item = usize>) -> String {
    picks
        .into_iter()
        .map(|i| set.get(i).unwrap().addr.as_str())
        .collect()
}

#[test]
fn backend_set_rejects_ambiguous_snapshots() {
    let dup = BackendSet::new(vec![
        backend("a:1", 1, None),
        backend("a:1", 2, Some("red")),
    ]);
    assert_eq!(
        dup,
        Err(BackendSetError::DuplicateAddress { addr: "a:1".into() })
    );
    let empty = BackendSet::new(vec![backend("a:1", 1, None), backend("", 1, None)]);
    assert_eq!(empty, Err(BackendSetError::EmptyAddress { index: 1 }));
}

#[test]
fn colour_filter_keeps_matching_and_colourless_backends() {
    let set = BackendSet::new(vec![
        backend("red:1", 1, Some("red")),
        backend("any:1", 1, None),
        backend("blue:1", 1, Some("blue")),
    ])
    .unwrap();
    assert_eq!(set.candidates_for("red").indices(), [0, 1]);
    assert_eq!(set.candidates_for("blue").indices(), [1, 2]);
    assert_eq!(set.candidates_for("green").indices(), [1]);
    let mut red = set.candidates_for("red");
    red.retain(|i, _| i != 1);
    assert_eq!(red.indices(), [0]);
    assert_eq!(red.position("red:1"), Some(0));
    assert_eq!(red.position("any:1"), None, "filtered out");
    assert_eq!(red.position("blue:1"), None, "other colour");
}

#[test]
fn smooth_wrr_matches_the_nginx_sequence() {
    let set = set(&[("a", 5), ("b", 1), ("c", 1)]);
    let mut wrr = SmoothWrr::new(&set);
    let candidates = set.candidates_for("local");
    let picks: Vec<usize> = (0..14).map(|_| wrr.pick(&candidates).unwrap()).collect();
    assert_eq!(addrs(&set, picks), "aabacaaaabacaa");
}

#[test]
fn smooth_wrr_never_picks_weight_zero() {
    let set = set(&[("drain", 0), ("a", 1), ("b", 2)]);
    let mut wrr = SmoothWrr::new(&set);
    let candidates = set.candidates_for("local");
    let picks: Vec<usize> = (0..30).map(|_| wrr.pick(&candidates).unwrap()).collect();
    assert!(!picks.contains(&0));
    assert_eq!(picks.iter().filter(|&&i| i == 2).count(), 20);

    let drained = self::set(&[("x", 0), ("y", 0)]);
    assert_eq!(
        SmoothWrr::new(&drained).pick(&drained.candidates_for("local")),
        None
    );
    let empty = BackendSet::default();
    assert_eq!(
        SmoothWrr::default().pick(&empty.candidates_for("local")),
        None
    );
}

#[test]
fn smooth_wrr_rebuild_keeps_surviving_addresses() {
    let old = set(&[("a", 5), ("b", 1), ("c", 1)]);
    let mut wrr = SmoothWrr::new(&old);
    for _ in 0..2 {
        wrr.pick(&old.candidates_for("local"));
    }
    // Current weights are now a=-4, b=2, c=2. b leaves, d arrives, a and c move.
    let new = set(&[("c", 1), ("d", 1), ("a", 5)]);
    wrr.rebuild(&old, &new);
    // c: 2+1=3, d: 0+1=1, a: -4+5=1 → c.
    assert_eq!(addrs(&new, wrr.pick(&new.candidates_for("local"))), "c");

    // A set that changed size without a rebuild starts over instead of misattributing state
    // (by position, a would get -4 and c 2, and c would win).
    let mut stale = SmoothWrr::new(&old);
    for _ in 0..2 {
        stale.pick(&old.candidates_for("local"));
    }
    let smaller = set(&[("a", 5), ("c", 1)]);
    assert_eq!(
        addrs(&smaller, stale.pick(&smaller.candidates_for("local"))),
        "a"
    );
}

/// Upstream's `weightSelect` (fabrica-kit `router/balancer/balancer.go`), transcribed: float
/// weights, current weights in one map by address that no pick ever prunes.
struct UpstreamWrr(HashMap<String, f64>);

impl UpstreamWrr {
    fn pick<'a>(&mut self, nodes: &[&'a Backend]) -> &'a str {
        let (mut total, mut selected, mut select_weight) = (0.0, None::<&Backend>, 0.0);
        for node in nodes {
            let weight = f64::from(node.weight);
            total += weight;
            let cwt = self.0.entry(node.addr.clone()).or_default();
            *cwt += weight;
            if selected.is_none() || select_weight < *cwt {
                select_weight = *cwt;
                selected = Some(node);
            }
        }
        let selected = selected.unwrap();
        self.0.insert(selected.addr.clone(), select_weight - total);
        &selected.addr
    }
}

proptest! {
    /// Same picks as upstream for any positive weights, with colour filters changing between picks
    /// (upstream shares one current-weight map across colours).
    #[test]
    fn smooth_wrr_matches_upstream(
        nodes in proptest::collection::vec((1u32..50, proptest::option::of(0usize..3)), 1..8),
        colours in proptest::collection::vec(0usize..3, 1..200),
    ) {
        const COLOURS: [&str; 3] = ["red", "blue", "green"];
        let set = numbered(nodes.iter().map(|&(w, c)| (w, c.map(|c| COLOURS[c]))));
        let mut ours = SmoothWrr::new(&set);
        let mut upstream = UpstreamWrr(HashMap::new());
        for colour in colours {
            let candidates = set.candidates_for(COLOURS[colour]);
            let nodes: Vec<&Backend> = candidates.iter().map(|(_, b)| b).collect();
            let picked = ours.pick(&candidates);
            if nodes.is_empty() {
                prop_assert_eq!(picked, None);
            } else {
                let picked = set.get(picked.unwrap()).unwrap();
                prop_assert_eq!(picked.addr.as_str(), upstream.pick(&nodes));
            }
        }
    }

    /// Over one period (the total weight) each backend is chosen exactly its weight's times.
    #[test]
    fn smooth_wrr_is_exact_over_a_period(
        weights in proptest::collection::vec(0u32..20, 1..8),
        periods in 1usize..4,
    ) {
        let set = numbered(weights.iter().map(|&w| (w, None)));
        let total: usize = weights.iter().map(|&w| w as usize).sum();
        let mut wrr = SmoothWrr::new(&set);
        let candidates = set.candidates_for("local");
        let mut counts = vec![0usize; weights.len()];
        for _ in 0..total * periods {
            counts[wrr.pick(&candidates).unwrap()] += 1;
        }
        let expected: Vec<usize> = weights.iter().map(|&w| w as usize * periods).collect();
        prop_assert_eq!(counts, expected);
    }

    /// Whatever the picker and the stored value, a placement is a candidate, and a stored candidate
    /// is always kept.
    #[test]
    fn placement_is_always_a_candidate(
        keep in proptest::collection::vec(any::<bool>(), 1..6),
        stored in proptest::option::of(0usize..8),
        pick in proptest::option::of(0usize..8),
    ) {
        let set = numbered(keep.iter().map(|_| (1, None)));
        let mut candidates = set.candidates_for("local");
        candidates.retain(|i, _| keep[i]);
        let stored_addr = stored.map(|i| format!("b{i}"));
        match place(stored_addr.as_deref(), &candidates, |_| pick) {
            Ok(Placement::Sticky(i)) => {
                prop_assert_eq!(Some(i), stored.filter(|&s| candidates.contains(s)))
            }
            Ok(Placement::New(i)) => {
                prop_assert!(candidates.contains(i));
                prop_assert!(!stored.is_some_and(|s| candidates.contains(s)));
            }
            Err(RouteError::NoBackend { color }) => {
                prop_assert_eq!(color, "local");
                prop_assert!(!pick.is_some_and(|p| candidates.contains(p)));
            }
            Err(other) => prop_assert!(false, "unexpected {other:?}"),
        }
    }
}

#[test]
fn power_of_two_choices_takes_the_less_loaded() {
    let loads = [7, 3, 3, 9];
    assert_eq!(power_of_two_choices(&loads, 0, 1), Some(1));
    assert_eq!(power_of_two_choices(&loads, 3, 0), Some(0));
    assert_eq!(
        power_of_two_choices(&loads, 1, 2),
        Some(1),
        "tie goes to the first draw"
    );
    assert_eq!(power_of_two_choices(&loads, 2, 1), Some(2));
    assert_eq!(
        power_of_two_choices(&loads, 9, 3),
        Some(3),
        "out of range is not a choice"
    );
    assert_eq!(power_of_two_choices(&loads, 0, 9), Some(0));
    assert_eq!(power_of_two_choices(&loads, 8, 9), None);
}

#[test]
fn pick_less_loaded_draws_two_distinct_weighted_candidates() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let set = set(&[("drain", 0), ("busy", 1), ("idle", 1)]);
    let candidates = set.candidates_for("local");
    // Two weighted candidates: both are always drawn, so the idle one always wins.
    for _ in 0..100 {
        assert_eq!(
            pick_less_loaded(&candidates, &[0, 50, 1], &mut rng),
            Some(2)
        );
    }
    let mut one = set.candidates_for("local");
    one.retain(|i, _| i != 2);
    assert_eq!(
        pick_less_loaded(&one, &[0, 50], &mut rng),
        Some(1),
        "weight 0 is never chosen"
    );
    one.retain(|i, _| i == 0);
    assert_eq!(pick_less_loaded(&one, &[], &mut rng), None);
}

#[test]
fn pick_less_loaded_spreads_over_equal_loads() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let set = set(&[("a", 1), ("b", 1), ("c", 1), ("d", 1)]);
    let candidates = set.candidates_for("local");
    let mut counts = [0u32; 4];
    for _ in 0..4000 {
        counts[pick_less_loaded(&candidates, &[5; 4], &mut rng).unwrap()] += 1;
    }
    assert!(
        counts.iter().all(|&c| (800..1200).contains(&c)),
        "{counts:?}"
    );
}

#[test]
fn settle_follows_the_setnx_outcome() {
    let set = set(&[("a", 1), ("b", 1), ("c", 1)]);
    let mut candidates = set.candidates_for("local");
    candidates.retain(|i, _| i != 2);
    assert_eq!(settle(0, true, None, &candidates), Ok(0));
    assert_eq!(
        settle(0, false, Some("b"), &candidates),
        Ok(1),
        "the winner's choice"
    );
    assert_eq!(
        settle(0, false, Some("c"), &candidates),
        Err(RouteError::StoredBackendUnavailable { addr: "c".into() })
    );
    assert_eq!(
        settle(0, false, Some("gone:1"), &candidates),
        Err(RouteError::StoredBackendUnavailable {
            addr: "gone:1".into()
        })
    );
    assert_eq!(
        settle(0, false, None, &candidates),
        Err(RouteError::PlacementRace)
    );
}

#[test]
fn route_write_overwrites_only_open_player_entries() {
    let open = Some(BreakerState::Open {
        until: Time::from_unix_secs(10),
    });
    let half = Some(BreakerState::HalfOpen { probing: true });
    let closed = Some(BreakerState::Closed);
    assert_eq!(
        route_write(Some("a"), open, OidRule::SessionUid),
        RouteWrite::Overwrite
    );
    assert_eq!(
        route_write(Some("a"), open, OidRule::Object),
        RouteWrite::SetIfAbsent
    );
    for state in [half, closed, None] {
        assert_eq!(
            route_write(Some("a"), state, OidRule::SessionUid),
            RouteWrite::SetIfAbsent
        );
    }
    assert_eq!(
        route_write(None, open, OidRule::SessionUid),
        RouteWrite::SetIfAbsent
    );
}

/// A gateway's view of one service: the set, its round-robin and a breaker per backend.
struct Gateway {
    set: BackendSet,
    wrr: SmoothWrr,
    breakers: Vec<CircuitBreaker>,
}

impl Gateway {
    fn new(set: BackendSet) -> Self {
        let breakers = vec![CircuitBreaker::default(); set.len()];
        Gateway {
            wrr: SmoothWrr::new(&set),
            set,
            breakers,
        }
    }

    /// The whole adapter loop against a shared in-memory route table.
    fn open(
        &mut self,
        redis: &mut HashMap<i64, String>,
        oid: i64,
        rule: OidRule,
        now: Time,
    ) -> Result<String, RouteError> {
        let mut candidates = self.set.candidates_for("local");
        let breakers = &self.breakers;
        candidates.retain(|i, _| breakers[i].allows(now));
        let stored = redis.get(&oid).cloned();
        let wrr = &mut self.wrr;
        let chosen = match place(stored.as_deref(), &candidates, |c| wrr.pick(c))? {
            Placement::Sticky(i) => i,
            Placement::New(i) => {
                let stored_state = stored
                    .as_deref()
                    .and_then(|a| self.set.position(a))
                    .map(|s| self.breakers[s].state(now));
                let addr = self.set.get(i).unwrap().addr.clone();
                let won = match route_write(stored.as_deref(), stored_state, rule) {
                    RouteWrite::Overwrite => {
                        redis.insert(oid, addr);
                        true
                    }
                    RouteWrite::SetIfAbsent => match redis.get(&oid) {
                        Some(_) => false,
                        None => {
                            redis.insert(oid, addr);
                            true
                        }
                    },
                };
                settle(i, won, redis.get(&oid).map(String::as_str), &candidates)?
            }
        };
        Ok(self.set.get(chosen).unwrap().addr.clone())
    }
}

#[test]
fn gateways_agree_through_the_route_table() {
    let backends = set(&[("a", 1), ("b", 1), ("c", 1)]);
    let (mut g1, mut g2) = (Gateway::new(backends.clone()), Gateway::new(backends));
    let mut redis = HashMap::new();
    let now = Time::from_unix_secs(1_700_000_000);
    // g2's round-robin is ahead, so on its own it would choose differently.
    g2.open(&mut HashMap::new(), 1, OidRule::SessionUid, now)
        .unwrap();
    let first = g1.open(&mut redis, 42, OidRule::SessionUid, now).unwrap();
    assert_eq!(
        g2.open(&mut redis, 42, OidRule::SessionUid, now).unwrap(),
        first
    );
}

#[test]
fn dead_backend_entry_is_replaced_for_players_but_not_rooms() {
    let backends = set(&[("a", 1), ("b", 1)]);
    let mut gateway = Gateway::new(backends);
    let now = Time::from_unix_secs(1_700_000_000);
    let mut redis = HashMap::from([(7, "a".to_owned()), (8, "a".to_owned())]);
    // "a" died: five failed dials open its breaker.
    for _ in 0..DEFAULT_FAILURE_THRESHOLD {
        let permit = gateway.breakers[0].try_acquire(now).unwrap();
        gateway.breakers[0].on_failure(permit, now);
    }
    assert_eq!(
        gateway
            .open(&mut redis, 7, OidRule::SessionUid, now)
            .unwrap(),
        "b"
    );
    assert_eq!(redis[&7], "b");
    assert_eq!(
        gateway.open(&mut redis, 8, OidRule::Object, now),
        Err(RouteError::StoredBackendUnavailable { addr: "a".into() })
    );
    assert_eq!(redis[&8], "a");
    // "b" dies too: no backend at all.
    gateway.breakers[1] = CircuitBreaker::new(BreakerConfig {
        failure_threshold: 1,
        ..Default::default()
    });
    let permit = gateway.breakers[1].try_acquire(now).unwrap();
    gateway.breakers[1].on_failure(permit, now);
    assert_eq!(
        gateway.open(&mut redis, 9, OidRule::SessionUid, now),
        Err(RouteError::NoBackend {
            color: "local".into()
        })
    );
}
