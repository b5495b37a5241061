//! `filters`: parsing, validation with key paths, the chain it builds, custom filters.

use std::sync::Arc;

use bytes::Bytes;
use janus_core::{
    Time,
    client::{ClientEvent, Outgoing},
    filter::{Admit, Filter, FilterChain, FilterError, Hooks, SessionView},
    route::TunnelKey,
    session::Event,
    testing::{Pair, test_client_config, test_server_config, test_token},
};
use serde_yaml::Value;

use super::{Config, ConfigError, CustomFilters};

const FULL: &str = r#"
routes:
  kinds: {guild: object}
backends:
  guild: ["127.0.0.1:17999"]
filters:
  ban:
    uids: [666]
    networks: ["203.0.113.0/24", "2001:db8::/32"]
  access:
    allow: [1, 2, 5, 9]
    action: reject
  max_payload:
    default: 4096
    modules: {5: 4}
    action: drop
  rate_limit:
    - {modules: [2], per_second: 1, burst: 1}
  route:
    - {module: 9, kind: guild}
"#;

fn parse(yaml: &str) -> Result<Config, ConfigError> {
    Config::from_yaml(yaml, &|_| None)
}

fn invalid_at(e: ConfigError) -> (String, String) {
    match e {
        ConfigError::Invalid { path, reason } => (path, reason),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn t0() -> Time {
    Time::from_unix_secs(1_700_000_000)
}

/// A session of `uid` with the chain and the routes of `yaml` (the dev secrets of the test
/// config).
fn pair(yaml: &Config, uid: i64) -> Pair {
    let mut config = test_server_config(true);
    config.filters = yaml.filter_chain(&CustomFilters::new()).unwrap();
    config.routes = yaml.route_table().unwrap();
    let mut p = Pair::new(
        Arc::new(config),
        &test_client_config(true, test_token(uid, t0(), 1)),
        t0(),
    );
    p.drive();
    p.take_server_events();
    p
}

fn send(p: &mut Pair, module: i32, data: &'static [u8]) -> Vec<Event> {
    p.client
        .send(
            p.now,
            Outgoing {
                module,
                seq: 1,
                obj: 77,
                data: Bytes::from_static(data),
                ..Default::default()
            },
        )
        .unwrap();
    p.drive();
    p.take_server_events()
}

#[test]
fn the_full_example_builds_every_built_in_in_order_and_decides() {
    let config = parse(FULL).unwrap();
    let chain = config.filter_chain(&CustomFilters::new()).unwrap();
    assert_eq!(
        chain.names().collect::<Vec<_>>(),
        ["ban", "access", "max_payload", "rate_limit", "route"]
    );
    // `validate` checks the same sections (the secrets of an empty file are its own problem).
    let problems = config.validate().unwrap_err().to_string();
    assert!(!problems.contains("filters"), "{problems}");

    let mut p = pair(&config, 10001);
    assert!(p.client.is_established());
    // Module 6 is not allowed: an error reply.
    assert!(send(&mut p, 6, b"x").is_empty());
    assert!(p.take_client_events().iter().any(|e| matches!(
        e,
        ClientEvent::RequestFailed { module: 6, message, .. } if message == "module not allowed"
    )));
    // Module 5 over 4 bytes: dropped, nothing answered.
    assert!(send(&mut p, 5, b"12345").is_empty());
    assert!(p.take_client_events().is_empty());
    // Module 9 goes to the guild kind, whose oid is the packet's obj.
    let events = send(&mut p, 9, b"g");
    let guild = TunnelKey {
        kind: config.route_table().unwrap().kind_by_name("guild").unwrap(),
        oid: 77,
    };
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::OpenTunnel(open) if open.key == guild)),
        "{events:?}"
    );
    // Module 2: one per second.
    assert_eq!(send(&mut p, 2, b"a").len(), 2);
    assert!(send(&mut p, 2, b"a").is_empty());

    // A banned uid never gets a session.
    let p = pair(&config, 666);
    assert!(!p.client.is_established());
}

#[test]
fn mistakes_name_their_key() {
    let cases = [
        (
            "filters: {ban: {networks: [\"10.0.0.0/8\", \"10.0.0.0/99\"]}}",
            "filters.ban.networks[1]",
        ),
        (
            "filters: {rate_limit: [{per_second: 0, burst: 1}]}",
            "filters.rate_limit[0]",
        ),
        (
            "filters: {route: [{module: 9, kind: guild}]}",
            "filters.route[0].kind",
        ),
    ];
    for (yaml, key) in cases {
        let config = parse(yaml).unwrap();
        let (path, reason) = invalid_at(config.filter_chain(&CustomFilters::new()).unwrap_err());
        assert_eq!(path, key, "{reason}");
        assert!(config.validate().unwrap_err().to_string().contains(key));
    }
    let (path, reason) = invalid_at(parse("filters: {access: {alow: [1]}}").unwrap_err());
    assert_eq!(path, "filters.access.alow");
    assert!(reason.contains("unknown field"), "{reason}");
    let (path, _) = invalid_at(parse("filters: {access: {action: maybe}}").unwrap_err());
    assert_eq!(path, "filters.access.action");
}

#[test]
fn an_allow_list_without_module_1_is_warned_about() {
    let config = parse("filters: {access: {allow: [5]}}").unwrap();
    assert!(
        config
            .warnings()
            .iter()
            .any(|w| w.starts_with("filters.access.allow"))
    );
    let config = parse("filters: {access: {allow: [1, 5]}}").unwrap();
    assert!(!config.warnings().iter().any(|w| w.starts_with("filters")));
}

#[derive(Debug)]
struct Tagged(String);

impl Filter for Tagged {
    type State = ();
    fn name(&self) -> &str {
        &self.0
    }
    fn hooks(&self) -> Hooks {
        Hooks::NONE
    }
    fn on_handshake(&self, _: &SessionView<'_>, _: Time) -> Result<Admit<()>, FilterError> {
        Ok(Admit::Accept(()))
    }
}

fn make_tagged(settings: &Value, chain: &mut FilterChain) -> Result<(), String> {
    let name = settings
        .get("name")
        .and_then(Value::as_str)
        .ok_or("`name` (a string) is required")?;
    chain
        .push(Tagged(name.to_owned()))
        .map_err(|e| e.to_string())
}

#[test]
fn custom_filters_are_built_by_their_registered_maker_after_the_built_ins() {
    let yaml = "filters: {access: {deny: [6]}, custom: {tagged: {name: audit}}}";
    let config = parse(yaml).unwrap();
    let (path, reason) = invalid_at(config.filter_chain(&CustomFilters::new()).unwrap_err());
    assert_eq!(path, "filters.custom.tagged");
    assert!(reason.contains("compiled in: none"), "{reason}");
    // The plain core config knows no custom filter either.
    assert!(config.core_config().is_err());

    let mut custom = CustomFilters::new();
    custom.register("tagged", make_tagged);
    let chain = config.filter_chain(&custom).unwrap();
    assert_eq!(chain.names().collect::<Vec<_>>(), ["access", "audit"]);

    let config = parse("filters: {custom: {tagged: {}}}").unwrap();
    let (path, reason) = invalid_at(config.filter_chain(&custom).unwrap_err());
    assert_eq!(path, "filters.custom.tagged");
    assert!(reason.contains("`name`"), "{reason}");
}

#[test]
fn no_filters_section_is_an_empty_chain_and_is_not_written_back() {
    let config = parse("").unwrap();
    assert!(
        config
            .filter_chain(&CustomFilters::new())
            .unwrap()
            .is_empty()
    );
    assert!(!config.redacted_yaml().contains("filters"));
    let config = parse(FULL).unwrap();
    assert!(config.redacted_yaml().contains("filters:"));
}
