//! The built-in filters' decisions, hook by hook (end to end over sockets: janus-tokio's tests).

use std::{
    collections::HashSet,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use bytes::Bytes;

use super::*;
use crate::{
    Time,
    filter::{Admit, ClientPacket, DropReason, Filter, PacketVerdict, Refusal, SessionView},
    handshake::Identity,
    limit::RateLimit,
    route::TunnelKind,
    session::ConnectionContext,
};

fn t0() -> Time {
    Time::from_unix_secs(1_700_000_000)
}

fn identity(uid: i64) -> Identity {
    Identity {
        uid,
        sid: 1,
        color: "local".into(),
        status: 1,
        conn_id: 0,
        token_expiry: 0,
    }
}

fn context(ip: &str) -> ConnectionContext {
    ConnectionContext {
        peer: SocketAddr::new(ip.parse().unwrap(), 40000),
        gateway: "10.0.0.1:9100".into(),
        worker_id: 16,
    }
}

fn packet(module: i32, seq: i32, len: usize) -> ClientPacket {
    ClientPacket::new(module, seq, 0, 1, Bytes::from(vec![0u8; len]))
}

fn run<F: Filter>(f: &F, state: &mut F::State, p: &mut ClientPacket, now: Time) -> PacketVerdict {
    let (id, cx) = (identity(1), context("192.0.2.1"));
    f.on_packet(state, &SessionView::new(&id, &cx), p, now)
        .unwrap()
}

fn admitted<F: Filter>(f: &F, uid: i64, ip: &str) -> bool {
    let (id, cx) = (identity(uid), context(ip));
    matches!(
        f.on_handshake(&SessionView::new(&id, &cx), t0()).unwrap(),
        Admit::Accept(_)
    )
}

#[test]
fn networks_parse_and_match() {
    let net: IpNetwork = "198.51.100.0/24".parse().unwrap();
    assert!(net.contains("198.51.100.200".parse().unwrap()));
    assert!(!net.contains("198.51.101.1".parse().unwrap()));
    // A dual-stack socket's mapped address matches the IPv4 network.
    assert!(net.contains("::ffff:198.51.100.9".parse().unwrap()));
    let one: IpNetwork = "203.0.113.7".parse().unwrap();
    assert!(one.contains("203.0.113.7".parse().unwrap()));
    assert!(!one.contains("203.0.113.8".parse().unwrap()));
    let v6: IpNetwork = "2001:db8::/32".parse().unwrap();
    assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
    assert!(!v6.contains("2001:db9::5".parse().unwrap()));
    let all: IpNetwork = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains(IpAddr::from([8, 8, 8, 8])));
    for bad in [
        "",
        "1.2.3.4/33",
        "::/129",
        "1.2.3/8",
        "host/8",
        "1.2.3.4/-1",
    ] {
        assert!(bad.parse::<IpNetwork>().is_err(), "{bad:?}");
    }
}

#[test]
fn ban_refuses_uids_networks_and_feed_entries() {
    let feed = BanFeed::default();
    let ban = Ban::new(
        [7],
        vec!["203.0.113.0/24".parse().unwrap()],
        Some(feed.clone()),
    );
    assert!(admitted(&ban, 1, "192.0.2.1"));
    assert!(!admitted(&ban, 7, "192.0.2.1"));
    assert!(!admitted(&ban, 1, "203.0.113.99"));
    assert!(feed.replace(HashSet::from([1])));
    assert!(!feed.replace(HashSet::from([1])));
    assert!(!admitted(&ban, 1, "192.0.2.1"));
    let (id, cx) = (identity(1), context("192.0.2.1"));
    assert_eq!(
        ban.recheck(&SessionView::new(&id, &cx), t0()),
        Some(Refusal::Banned)
    );
    assert!(feed.replace(HashSet::new()));
    assert!(admitted(&ban, 1, "192.0.2.1"));
    assert_eq!(ban.recheck(&SessionView::new(&id, &cx), t0()), None);
}

#[test]
fn access_allows_and_denies_modules() {
    let only = ModuleAccess::new(vec![1, 5, 5], vec![], Action::Reject);
    let mut p = packet(5, 1, 0);
    assert_eq!(run(&only, &mut (), &mut p, t0()), PacketVerdict::Pass);
    let mut p = packet(6, 1, 0);
    assert_eq!(
        run(&only, &mut (), &mut p, t0()),
        PacketVerdict::reject("module not allowed")
    );
    let deny = ModuleAccess::new(vec![], vec![6], Action::Drop);
    assert_eq!(
        run(&deny, &mut (), &mut packet(6, 1, 0), t0()),
        PacketVerdict::Drop(DropReason::Denied)
    );
    assert_eq!(
        run(&deny, &mut (), &mut packet(7, 1, 0), t0()),
        PacketVerdict::Pass
    );
    let both = ModuleAccess::new(vec![1, 6], vec![6], Action::Close);
    assert_eq!(
        run(&both, &mut (), &mut packet(6, 1, 0), t0()),
        PacketVerdict::Close(Refusal::Silent)
    );
}

#[test]
fn max_payload_applies_per_module_with_a_default() {
    let f = MaxPayload::new(Some(100), vec![(5, 10)], Action::Reject);
    assert_eq!(f.limit(5), Some(10));
    assert_eq!(f.limit(9), Some(100));
    assert_eq!(
        run(&f, &mut (), &mut packet(5, 1, 10), t0()),
        PacketVerdict::Pass
    );
    assert_eq!(
        run(&f, &mut (), &mut packet(5, 1, 11), t0()),
        PacketVerdict::reject("payload too large")
    );
    assert_eq!(
        run(&f, &mut (), &mut packet(9, 1, 100), t0()),
        PacketVerdict::Pass
    );
    let only = MaxPayload::new(None, vec![(5, 10)], Action::Drop);
    assert_eq!(
        run(&only, &mut (), &mut packet(9, 1, 100_000), t0()),
        PacketVerdict::Pass
    );
    assert_eq!(
        run(&only, &mut (), &mut packet(5, 1, 11), t0()),
        PacketVerdict::Drop(DropReason::TooLarge)
    );
}

#[test]
fn rate_limits_meter_their_modules_per_session() {
    let f = ModuleRateLimit::new(vec![RateRule::new(
        vec![5],
        RateLimit {
            per_second: 2,
            burst: 2,
        },
        Action::Drop,
    )]);
    let (id, cx) = (identity(1), context("192.0.2.1"));
    let Admit::Accept(mut state) = f.on_handshake(&SessionView::new(&id, &cx), t0()).unwrap()
    else {
        panic!("refused")
    };
    let now = t0();
    assert_eq!(
        run(&f, &mut state, &mut packet(5, 1, 0), now),
        PacketVerdict::Pass
    );
    assert_eq!(
        run(&f, &mut state, &mut packet(5, 1, 0), now),
        PacketVerdict::Pass
    );
    assert_eq!(
        run(&f, &mut state, &mut packet(5, 1, 0), now),
        PacketVerdict::Drop(DropReason::RateLimited)
    );
    // Other modules are not metered.
    for _ in 0..10 {
        assert_eq!(
            run(&f, &mut state, &mut packet(6, 1, 0), now),
            PacketVerdict::Pass
        );
    }
    // Half a second later one more conforms.
    let later = now + Duration::from_millis(500);
    assert_eq!(
        run(&f, &mut state, &mut packet(5, 1, 0), later),
        PacketVerdict::Pass
    );
    assert_eq!(
        run(&f, &mut state, &mut packet(5, 1, 0), later),
        PacketVerdict::Drop(DropReason::RateLimited)
    );
    // Another session has its own bucket.
    let Admit::Accept(mut other) = f.on_handshake(&SessionView::new(&id, &cx), t0()).unwrap()
    else {
        panic!("refused")
    };
    assert_eq!(
        run(&f, &mut other, &mut packet(5, 1, 0), now),
        PacketVerdict::Pass
    );
}

#[test]
fn route_rules_pick_a_kind_by_module_and_seq() {
    let guild = TunnelKind::ROOM;
    let f = ModuleRoute::new(vec![
        RouteRule::new(9, vec![], guild),
        RouteRule::new(4, vec![2, 3], guild),
    ]);
    assert_eq!(f.kind_for(9, 77), Some(guild));
    assert_eq!(f.kind_for(4, 3), Some(guild));
    assert_eq!(f.kind_for(4, 1), None);
    let mut p = packet(9, 1, 0);
    assert_eq!(run(&f, &mut (), &mut p, t0()), PacketVerdict::Pass);
    assert_eq!((p.route(), p.is_rewritten()), (Some(guild), true));
    let mut p = packet(1, 1, 0);
    run(&f, &mut (), &mut p, t0());
    assert_eq!((p.route(), p.is_rewritten()), (None, false));
}
