#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::sync::Arc;

use bytes::Bytes;
use janus_config::{Config, ConfigError, CustomFilters};
use janus_core::{
    Time,
    client::{ClientEvent, Outgoing},
    session::Event,
    testing::{Pair, test_client_config, test_server_config, test_token},
};

use super::register;

const YAML: &str = "
filters:
  access: {deny: [6]}
  custom:
    trial:
      uids: {from: 900000, to: 999999}
      modules: [1, 3, 5]
      max_requests: 3
      shop: {module: 5, trial_module: 15}
";

fn t0() -> Time {
    Time::from_unix_secs(1_700_000_000)
}

fn custom() -> CustomFilters {
    let mut custom = CustomFilters::new();
    register(&mut custom);
    custom
}

fn session(uid: i64) -> Pair {
    let config = Config::from_yaml(YAML, &|_| None).unwrap();
    let mut core = test_server_config(true);
    core.filters = config.filter_chain(&custom()).unwrap();
    let mut p = Pair::new(
        Arc::new(core),
        &test_client_config(true, test_token(uid, t0(), 1)),
        t0(),
    );
    p.drive();
    assert!(p.client.is_established());
    p.take_server_events();
    p
}

/// Sends one request; the modules the backend got it as.
fn send(p: &mut Pair, module: i32) -> Vec<i32> {
    p.client
        .send(
            p.now,
            Outgoing {
                module,
                seq: 1,
                data: Bytes::from_static(b"x"),
                ..Default::default()
            },
        )
        .unwrap();
    p.drive();
    p.take_server_events()
        .iter()
        .filter_map(|e| match e {
            Event::Forward { message, .. } => Some(message.module),
            _ => None,
        })
        .collect()
}

#[test]
fn it_is_configured_after_the_built_ins_under_its_name() {
    let config = Config::from_yaml(YAML, &|_| None).unwrap();
    let chain = config.filter_chain(&custom()).unwrap();
    assert_eq!(chain.names().collect::<Vec<_>>(), ["access", "trial"]);
    // Without registering it, the configuration is refused, naming the key.
    match config.filter_chain(&CustomFilters::new()) {
        Err(ConfigError::Invalid { path, .. }) => assert_eq!(path, "filters.custom.trial"),
        other => panic!("{other:?}"),
    }
    // Its own settings are checked.
    let bad = YAML.replace("max_requests: 3", "max_requests: 0");
    let config = Config::from_yaml(&bad, &|_| None).unwrap();
    match config.filter_chain(&custom()) {
        Err(ConfigError::Invalid { path, reason }) => {
            assert_eq!(path, "filters.custom.trial");
            assert!(reason.contains("max_requests"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_trial_account_is_limited_and_redirected() {
    let mut p = session(900_001);
    assert_eq!(send(&mut p, 3), [3]);
    // The shop is the trial shop for them.
    assert_eq!(send(&mut p, 5), [15]);
    // A module outside the trial: an error reply, not counted.
    assert!(send(&mut p, 4).is_empty());
    assert!(p.take_client_events().iter().any(|e| matches!(
        e,
        ClientEvent::RequestFailed { module: 4, message, .. }
            if message == "not available on a trial account"
    )));
    assert_eq!(send(&mut p, 1), [1]);
    // The fourth counted request is over the quota: logged out.
    assert!(send(&mut p, 3).is_empty());
    assert!(p.client.is_closed());
}

#[test]
fn a_full_account_is_untouched() {
    let mut p = session(42);
    for _ in 0..10 {
        assert_eq!(send(&mut p, 5), [5]);
    }
    assert_eq!(send(&mut p, 4), [4]);
}
