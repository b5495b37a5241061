//! Placement, colour filtering, live set changes and the breaker, with an in-memory route table.

use super::*;

fn spec(addr: &str, weight: u32, color: Option<&str>) -> Backend {
    Backend {
        addr: addr.into(),
        weight,
        color: color.map(Into::into),
    }
}

#[tokio::test]
async fn placement_is_sticky_and_colour_filtered() {
    let mut specs = BTreeMap::new();
    specs.insert(
        "player".to_owned(),
        vec![
            spec("127.0.0.1:1", 1, None),
            spec("127.0.0.1:2", 1, Some("blue")),
            spec("127.0.0.1:3", 2, Some("red")),
        ],
    );
    let b = Backends::new(&specs, Duration::from_secs(60), Duration::from_secs(1)).unwrap();
    let first = b
        .pick("player", "red", 7, OidRule::SessionUid)
        .await
        .unwrap()
        .addr
        .clone();
    for _ in 0..10 {
        assert_eq!(
            b.pick("player", "red", 7, OidRule::SessionUid)
                .await
                .unwrap()
                .addr
                .clone(),
            first,
            "sticky"
        );
    }
    let mut blue = std::collections::HashSet::new();
    for oid in 0..20 {
        blue.insert(
            b.pick("player", "blue", oid, OidRule::SessionUid)
                .await
                .unwrap()
                .addr
                .clone(),
        );
    }
    assert!(
        !blue.contains("127.0.0.1:3"),
        "red-only backend never serves blue"
    );
    assert_eq!(blue.len(), 2);
    assert!(matches!(
        b.pick("room", "red", 1, OidRule::Object).await,
        Err(PickError::UnknownKind(_))
    ));
    assert_eq!(
        b.route_key("player", "local", 10001),
        "r_roma.player.service_{local}_{10001}"
    );
}

#[tokio::test]
async fn a_live_change_keeps_surviving_backends_and_their_sticky_oids() {
    let mut specs = BTreeMap::new();
    specs.insert(
        "room".to_owned(),
        vec![spec("127.0.0.1:1", 1, None), spec("127.0.0.1:2", 1, None)],
    );
    let b = Backends::new(&specs, Duration::from_secs(60), Duration::from_secs(1)).unwrap();
    let mut placed = BTreeMap::new();
    for oid in 0..10 {
        placed.insert(
            oid,
            b.pick("room", "c", oid, OidRule::Object)
                .await
                .unwrap()
                .addr
                .clone(),
        );
    }
    // backend 2 goes away, backend 3 arrives
    b.set(
        "room",
        &[spec("127.0.0.1:1", 1, None), spec("127.0.0.1:3", 1, None)],
    )
    .unwrap();
    for (oid, addr) in &placed {
        let now = b.pick("room", "c", *oid, OidRule::Object).await;
        if addr == "127.0.0.1:1" {
            assert_eq!(
                &now.unwrap().addr.clone(),
                addr,
                "oids on a surviving backend stay"
            );
        } else {
            // its sticky entry names a backend that is gone: SETNX loses to the stale entry,
            // which is no candidate -> the spec's error until the entry expires
            assert!(now.is_err());
        }
    }
    let fresh = b
        .pick("room", "c", 999, OidRule::Object)
        .await
        .unwrap()
        .addr
        .clone();
    assert!(fresh == "127.0.0.1:1" || fresh == "127.0.0.1:3");
}

#[tokio::test]
async fn a_dead_backend_loses_its_players_but_keeps_its_rooms() {
    let mut specs = BTreeMap::new();
    let two = vec![spec("127.0.0.1:1", 1, None), spec("127.0.0.1:2", 1, None)];
    specs.insert("player".to_owned(), two.clone());
    specs.insert("room".to_owned(), two);
    let b = Backends::new(&specs, Duration::from_secs(60), Duration::from_secs(1)).unwrap();
    let player = b.pick("player", "c", 7, OidRule::SessionUid).await.unwrap();
    let dead = player.addr.clone();
    // a room placed on the same backend
    let mut room_oid = 0;
    while b
        .pick("room", "c", room_oid, OidRule::Object)
        .await
        .unwrap()
        .addr
        .clone()
        != dead
    {
        room_oid += 1;
    }
    // opening tunnels to it keeps failing: its breaker opens
    for _ in 0..janus_core::route::DEFAULT_FAILURE_THRESHOLD {
        let mut p = b.pick("player", "c", 7, OidRule::SessionUid).await.unwrap();
        assert_eq!(p.addr, dead);
        b.report(&mut p, false);
    }
    let moved = b.pick("player", "c", 7, OidRule::SessionUid).await.unwrap();
    assert_ne!(moved.addr, dead, "the player is re-placed at once");
    assert_eq!(
        b.pick("player", "c", 7, OidRule::SessionUid)
            .await
            .unwrap()
            .addr
            .clone(),
        moved.addr,
        "and sticks there"
    );
    // the room keeps its entry (other gateways may still reach that backend) until it expires
    assert!(matches!(
        b.pick("room", "c", room_oid, OidRule::Object).await,
        Err(PickError::Route(
            RouteError::StoredBackendUnavailable { .. }
        ))
    ));
}
