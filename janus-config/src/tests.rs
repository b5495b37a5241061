use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use janus_core::{
    Time,
    client::{ClientConfig, ClientEvent},
    config::SessionConfig,
    handshake::ClientKeys,
    limit::AdmissionConfig,
    route::TunnelKind,
    session::Event,
    testing::Pair,
    token::TokenKey,
};
use janus_proto::gate::intra::v1::AuthToken;

use super::{
    BackendEntry, BalancerName, Config, ConfigError, LOCAL_YAML, OidRuleName, keygen,
    load_certificate_key, load_client_signing_key, parse_duration, secrets,
};

fn no_env(_: &str) -> Option<String> {
    None
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

fn parse(yaml: &str) -> Result<Config, ConfigError> {
    Config::from_yaml(yaml, &no_env)
}

fn invalid_at(result: Result<Config, ConfigError>) -> (String, String) {
    match result {
        Err(ConfigError::Invalid { path, reason }) => (path, reason),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

fn dev_file(name: &str) -> String {
    std::fs::read_to_string(configs_dir().join("dev").join(name)).unwrap()
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// 2030-01-01, inside every committed certificate's validity.
const Y2030: u64 = 1_893_456_000;

/// A local config with one line replaced (a quick way to break one thing).
fn local_with(from: &str, to: &str) -> Config {
    assert!(LOCAL_YAML.contains(from), "{from}");
    parse(&LOCAL_YAML.replace(from, to)).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Defaults and key names

#[test]
fn defaults_match_upstream_and_core() {
    let c = Config::default();
    assert_eq!(parse("").unwrap(), c);
    assert_eq!(parse("# nothing\n").unwrap(), c);
    assert_eq!(parse("{}").unwrap(), c);

    assert_eq!(c.label.service, "janus.gate.interface");
    assert_eq!(c.label.profile, "dev");
    assert_eq!(c.label.color, "local");
    assert_eq!(c.label.zone, 0);
    assert!(c.label.encrypted);
    assert_eq!(c.label.language, "en");
    assert_eq!(c.server.tcp.as_ref().unwrap().addr, "0.0.0.0:7001");
    let ws = c.server.ws.as_ref().unwrap();
    assert_eq!(
        (ws.addr.as_str(), ws.path.as_str()),
        ("0.0.0.0:7002", "/ws")
    );
    assert!(ws.allowed_origins.is_empty());
    assert_eq!(c.server.http.addr, "0.0.0.0:8100");
    assert_eq!(c.server.http.timeout, Duration::from_millis(500));
    assert_eq!(c.server.grpc.addr, "0.0.0.0:9100");
    assert_eq!(c.server.grpc.timeout, Duration::from_millis(500));
    assert_eq!(c.server.grpc.advertise, None);
    assert_eq!((c.compress.weak, c.compress.strong), (10240, 1_024_000));
    assert_eq!(
        c.data.gateway_route_table_alive_duration,
        Duration::from_secs(600)
    );
    assert_eq!(
        c.data.app_route_table_alive_duration,
        Duration::from_secs(600)
    );
    assert!(c.data.redis.is_none() && c.etcd.is_none() && c.demo.is_none());
    assert!(c.backends.is_empty());
    assert_eq!(c.limits.shutdown_grace, Duration::from_secs(10));
    assert_eq!(
        c.limits.replay_cache,
        janus_core::replay::DEFAULT_REPLAY_CAPACITY
    );
    assert_eq!(
        (c.log.level.as_str(), c.log.r#type.as_str()),
        ("info", "zap")
    );

    // The limits are the core's defaults, whatever they are.
    let core = SessionConfig::default();
    let session = c.session_config().unwrap();
    assert_eq!(session.max_frame_len, core.max_frame_len);
    assert_eq!(session.handshake_timeout, core.handshake_timeout);
    assert_eq!(session.idle_timeout, core.idle_timeout);
    assert_eq!(session.max_timestamp_skew, core.max_timestamp_skew);
    assert_eq!(session.compress_threshold, core.compress_threshold);
    assert_eq!(session.compress_strong, core.compress_strong);
    assert_eq!(session.max_inflated_len, core.max_inflated_len);
    assert_eq!(session.outbound_budget, core.outbound_budget);
    assert_eq!(session.rate_limit, core.rate_limit);
    assert_eq!(session.max_tunnels, core.max_tunnels);
    assert_eq!(session.max_pending, core.max_pending);
    assert_eq!(session.drain_timeout, core.drain_timeout);
    assert_eq!(session.check_index, core.check_index);
    assert_eq!(c.admission_config(), AdmissionConfig::default());

    // Routing is upstream's: module 6 → room, the rest → player.
    let table = c.route_table().unwrap();
    assert_eq!(table.kind_for_module(6), TunnelKind::ROOM);
    assert_eq!(table.kind_for_module(1), TunnelKind::PLAYER);
    assert_eq!(table.kind_for_module(999), TunnelKind::PLAYER);
}

#[test]
fn an_upstream_configuration_loads() {
    // spec §6.3: config.yaml + registry.yaml + secret.yaml's keys (under `secret:`).
    let yaml = r#"
label:
  service: ${SERVICE:janus.gate.interface}
  profile: ${PROFILE:DEV}
  color: ${COLOR:local}
  node: ${NODE}
  encrypted: true
  language: ${LANGUAGE:en}
trace:
  endpoint: http://localhost:14268/api/traces
server:
  tcp:
    addr: 0.0.0.0:7001
  ws:
    addr: 0.0.0.0:7002
    path: /ws
  kcp:
    addr: 0.0.0.0:7003
  http:
    network: tcp
    addr: 0.0.0.0:8100
    timeout: 0.5s
  grpc:
    network: tcp
    addr: 0.0.0.0:9100
    timeout: 0.5s
  health: ""
data:
  redis:
    addr: localhost:6379
    password: ${REDIS_PASSWORD}
    dial_timeout: 2s
    read_timeout: 0.5s
    write_timeout: 0.5s
  gateway_route_table_alive_duration: 600s
  app_route_table_alive_duration: 600s
log:
  type: zap
  level: debug
compress:
  weak: 10240
  strong: 1024000
etcd:
  endpoints: [localhost:2379]
  username: ${ETCD_USERNAME}
  password: ${ETCD_PASSWORD}
secret:
  account_aes_key: ${ACCOUNT_AES_KEY}
  server_cert_version: 1
  server_cert_private_key: ${SERVER_CERT_PRIVATE_KEY}
  client_cert_version: 1
  client_cert: ${CLIENT_CERT}
"#;
    let key = dev_file("token.key");
    let (server_key, client_cert) = (dev_file("server.key.pem"), dev_file("client.cert.pem"));
    let env = env_of(&[
        ("NODE", "gate-7"),
        ("REDIS_PASSWORD", ""),
        ("ETCD_USERNAME", "root"),
        ("ETCD_PASSWORD", "123456"),
        ("ACCOUNT_AES_KEY", key.trim()),
        ("SERVER_CERT_PRIVATE_KEY", &server_key),
        ("CLIENT_CERT", &client_cert),
    ]);
    let c = Config::from_yaml(yaml, &env).unwrap();
    assert_eq!(c.label.profile, "DEV");
    assert_eq!(c.label.node, "gate-7");
    assert_eq!(c.server.kcp.as_ref().unwrap().addr, "0.0.0.0:7003");
    assert_eq!(c.server.http.network, "tcp");
    assert_eq!(c.server.health.as_deref(), Some(""));
    let redis = c.data.redis.as_ref().unwrap();
    assert_eq!(
        (redis.addr.as_str(), redis.password.as_str()),
        ("localhost:6379", "")
    );
    assert_eq!(redis.dial_timeout, Duration::from_secs(2));
    let etcd = c.etcd.as_ref().unwrap();
    assert_eq!(etcd.endpoints, ["localhost:2379"]);
    // "123456" stays text: string fields never reinterpret substituted values.
    assert_eq!(etcd.password, "123456");
    assert_eq!(c.secret.client_cert, client_cert);
    assert_eq!(c.log.level, "debug");
    c.validate_at(at(Y2030)).unwrap();
    let warnings = c.warnings();
    assert!(
        warnings.iter().any(|w| w.starts_with("server.kcp")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.starts_with("trace.endpoint")),
        "{warnings:?}"
    );
}

#[test]
fn unknown_keys_are_refused_with_their_path() {
    let (path, reason) = invalid_at(parse("server:\n  tcp:\n    adr: 1.2.3.4:5\n"));
    assert_eq!(path, "server.tcp.adr");
    assert!(
        reason.contains("unknown field `adr`, expected `addr`"),
        "{reason}"
    );

    let (path, reason) = invalid_at(parse("lable: {}\n"));
    assert_eq!(path, "lable");
    assert!(reason.contains("unknown field `lable`"), "{reason}");

    let (path, _) = invalid_at(parse("limits:\n  session:\n    idle_timout: 5s\n"));
    assert_eq!(path, "limits.session.idle_timout");

    let (path, _) = invalid_at(parse(
        "backends:\n  player:\n    - 10.0.0.1:9000\n    - {addr: 10.0.0.2:9000, wieght: 2}\n",
    ));
    assert_eq!(path, "backends.player[1].wieght");

    let err = parse("server:\n  tcp:\n    adr: x\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "server.tcp.adr: unknown field `adr`, expected `addr` or `proxy_protocol`"
    );
}

#[test]
fn wrong_types_name_the_key() {
    let (path, reason) = invalid_at(parse("label:\n  zone: north\n"));
    assert_eq!(path, "label.zone");
    assert!(reason.contains("north"), "{reason}");
    let (path, _) = invalid_at(parse("label:\n  encrypted: maybe\n"));
    assert_eq!(path, "label.encrypted");
    let (path, _) = invalid_at(parse("compress:\n  weak: -1\n"));
    assert_eq!(path, "compress.weak");
    let (path, _) = invalid_at(parse("- a\n- b\n"));
    assert_eq!(path, "(document)");
}

#[test]
fn yaml_syntax_errors_carry_the_position() {
    match parse("label:\n  service: [unclosed\n") {
        Err(ConfigError::Yaml {
            line: Some(line), ..
        }) => assert!(line >= 2, "{line}"),
        other => panic!("{other:?}"),
    }
    let err = parse("a: 1\na: 2\n").unwrap_err();
    assert!(matches!(err, ConfigError::Yaml { .. }), "{err:?}");
}

#[test]
fn load_reports_the_file() {
    let err = Config::load(Path::new("/nonexistent/janus.yaml")).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }));
    assert!(
        err.to_string().starts_with("/nonexistent/janus.yaml: "),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Placeholders

#[test]
fn placeholders_take_the_environment_then_the_default() {
    let yaml = "label:\n  node: ${NODE:fallback}\n  color: pre-${COLOR}-post\n";
    let c = Config::from_yaml(yaml, &env_of(&[("COLOR", "blue")])).unwrap();
    assert_eq!(c.label.node, "fallback");
    assert_eq!(c.label.color, "pre-blue-post");
    let c = Config::from_yaml(yaml, &env_of(&[("COLOR", "x"), ("NODE", "n1")])).unwrap();
    assert_eq!(c.label.node, "n1");
    // Set but empty counts as set.
    let c = Config::from_yaml(yaml, &env_of(&[("COLOR", ""), ("NODE", "")])).unwrap();
    assert_eq!(
        (c.label.node.as_str(), c.label.color.as_str()),
        ("", "pre--post")
    );
}

#[test]
fn a_missing_variable_names_itself_and_the_key() {
    let err = parse("backends:\n  room:\n    - ${ROOM_BACKEND}\n").unwrap_err();
    match &err {
        ConfigError::Placeholder { name, path } => {
            assert_eq!(name, "ROOM_BACKEND");
            assert_eq!(path, "backends.room[0]");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("ROOM_BACKEND"), "{err}");
    assert!(err.to_string().starts_with("backends.room[0]: "), "{err}");
}

#[test]
fn placeholders_become_numbers_and_booleans_where_the_key_wants_them() {
    let yaml = "label:\n  zone: ${ZONE:0}\n  encrypted: ${ENC:true}\n  version: ${VERSION:1.10}\n\
                limits:\n  session:\n    check_index: ${CHECK:false}\n    max_tunnels: ${TUNNELS}\n";
    let c = Config::from_yaml(yaml, &env_of(&[("TUNNELS", "4")])).unwrap();
    assert_eq!(c.label.zone, 0);
    assert!(c.label.encrypted);
    assert_eq!(
        c.label.version, "1.10",
        "strings keep the text, not a float"
    );
    assert!(!c.limits.session.check_index);
    assert_eq!(c.limits.session.max_tunnels, 4);

    let c = Config::from_yaml(
        yaml,
        &env_of(&[("ZONE", "7"), ("ENC", "false"), ("TUNNELS", "1")]),
    )
    .unwrap();
    assert_eq!(c.label.zone, 7);
    assert!(!c.label.encrypted);

    let (path, reason) = invalid_at(Config::from_yaml(
        yaml,
        &env_of(&[("ZONE", "seven"), ("TUNNELS", "1")]),
    ));
    assert_eq!(path, "label.zone");
    assert!(reason.contains("seven"), "{reason}");
}

#[test]
fn defaults_may_contain_colons_and_newlines() {
    let yaml = "data:\n  redis:\n    addr: ${REDIS_ADDR:127.0.0.1:6379}\n\
                server:\n  grpc:\n    advertise: ${HOST:gate.internal}:${PORT:9100}\n";
    let c = parse(yaml).unwrap();
    assert_eq!(c.data.redis.unwrap().addr, "127.0.0.1:6379");
    assert_eq!(
        c.server.grpc.advertise.as_deref(),
        Some("gate.internal:9100")
    );

    let yaml = "label:\n  node: |\n    ${N:line one\n    line: two}\n";
    assert_eq!(parse(yaml).unwrap().label.node, "line one\nline: two\n");
}

#[test]
fn values_from_the_environment_cannot_change_the_document() {
    // A PEM (newlines), or text that looks like YAML, arrives verbatim.
    let pem = dev_file("client.cert.pem");
    let yaml = "secret:\n  client_cert: ${CLIENT_CERT}\n  account_aes_key: ${KEY}\n";
    let c = Config::from_yaml(
        yaml,
        &env_of(&[("CLIENT_CERT", &pem), ("KEY", "a: b\n- [c] # d")]),
    )
    .unwrap();
    assert_eq!(c.secret.client_cert, pem);
    assert_eq!(c.secret.account_aes_key, "a: b\n- [c] # d");
}

#[test]
fn placeholder_syntax_errors_and_escapes() {
    let c = parse("label:\n  node: cost $5, literal $${HOME}\n").unwrap();
    assert_eq!(c.label.node, "cost $5, literal ${HOME}");
    for bad in ["${}", "${1ABC}", "${NAME", "${NAME:default", "${NA-ME}"] {
        let yaml = format!("label:\n  node: \"{bad}\"\n");
        let (path, reason) = invalid_at(parse(&yaml));
        assert_eq!(path, "label.node", "{bad}");
        assert!(reason.contains("malformed placeholder"), "{bad}: {reason}");
    }
    // Keys are not substituted.
    let (path, _) = invalid_at(parse("label:\n  ${KEY:node}: x\n"));
    assert_eq!(path, "label.${KEY:node}");
}

// ---------------------------------------------------------------------------------------------
// Durations

#[test]
fn durations_are_go_style() {
    let ms = Duration::from_millis;
    for (text, want) in [
        ("600s", Duration::from_secs(600)),
        ("0.5s", ms(500)),
        ("100ms", ms(100)),
        ("2m", Duration::from_secs(120)),
        ("1h", Duration::from_secs(3600)),
        ("1m30s", Duration::from_secs(90)),
        ("1h2m3.5s", ms(3_723_500)),
        ("1.5h", Duration::from_secs(5400)),
        (".25s", ms(250)),
        ("250us", Duration::from_micros(250)),
        ("250µs", Duration::from_micros(250)),
        ("7ns", Duration::from_nanos(7)),
        ("0", Duration::ZERO),
        ("0s", Duration::ZERO),
        ("+3s", Duration::from_secs(3)),
        (
            "0.3333333333333333333333s",
            Duration::from_nanos(333_333_333),
        ),
    ] {
        assert_eq!(parse_duration(text), Ok(want), "{text}");
    }
    for bad in [
        "",
        "5",
        "-1s",
        "1d",
        "s",
        "1.2.3s",
        "1 s",
        "ms5",
        "99999999999999999999h",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
    }
    assert_eq!(
        super::format_duration(Duration::from_secs(90)),
        "1m30s".to_owned()
    );
    for d in [
        ms(500),
        Duration::from_secs(3723),
        Duration::ZERO,
        Duration::from_nanos(7),
    ] {
        assert_eq!(parse_duration(&super::format_duration(d)), Ok(d));
    }
}

#[test]
fn duration_fields_explain_a_missing_unit() {
    let (path, reason) = invalid_at(parse("server:\n  http:\n    timeout: 5\n"));
    assert_eq!(path, "server.http.timeout");
    assert!(reason.contains("needs a unit"), "{reason}");
    let (path, reason) = invalid_at(parse("limits:\n  shutdown_grace: 10 days\n"));
    assert_eq!(path, "limits.shutdown_grace");
    assert!(reason.contains("unknown unit"), "{reason}");
    let c = parse("limits:\n  session:\n    idle_timeout: 1m30s\n    drain_timeout: 0\n").unwrap();
    assert_eq!(c.limits.session.idle_timeout, Duration::from_secs(90));
    assert_eq!(c.limits.session.drain_timeout, Duration::ZERO);
}

// ---------------------------------------------------------------------------------------------
// Backends and routes

#[test]
fn backend_entries_are_addresses_or_mappings() {
    let yaml = r#"
backends:
  player:
    - 10.0.0.1:9000
    - {addr: "player-2.internal:9000", weight: 3}
    - addr: "[::1]:9000"
      weight: 0
      color: canary
"#;
    let c = parse(yaml).unwrap();
    let player = &c.backends["player"];
    assert_eq!(
        player,
        &[
            BackendEntry {
                addr: "10.0.0.1:9000".into(),
                weight: 1,
                color: None
            },
            BackendEntry {
                addr: "player-2.internal:9000".into(),
                weight: 3,
                color: None
            },
            BackendEntry {
                addr: "[::1]:9000".into(),
                weight: 0,
                color: Some("canary".into())
            },
        ]
    );
    let core: janus_core::route::Backend = (&player[2]).into();
    assert!(core.serves("canary") && !core.serves("blue"));

    let (path, reason) = invalid_at(parse("backends:\n  player:\n    - {weight: 2}\n"));
    assert_eq!(path, "backends.player[0]");
    assert!(reason.contains("missing field `addr`"), "{reason}");
    let (path, _) = invalid_at(parse("backends:\n  player:\n    - 9000\n"));
    assert_eq!(path, "backends.player[0]");
}

#[test]
fn backends_must_name_known_kinds_and_dialable_addresses() {
    let base = LOCAL_YAML.replace(
        "backends:\n  player: [\"127.0.0.1:17102\"]\n  room: [\"127.0.0.1:17102\"]\n",
        "",
    );
    let check = |extra: &str| {
        Config::from_yaml(&format!("{base}\n{extra}"), &no_env)
            .unwrap()
            .validate_at(at(Y2030))
    };
    check("backends:\n  player: [\"player.internal:9000\", \"10.0.0.1:9000\"]\n").unwrap();
    check("routes:\n  kinds: {team: object}\nbackends:\n  team: [\"t:1\"]\n").unwrap();

    let expect = |extra: &str, path: &str, needle: &str| match check(extra) {
        Err(ConfigError::Invalid { path: p, reason }) => {
            assert_eq!(p, path, "{extra}");
            assert!(reason.contains(needle), "{extra}: {reason}");
        }
        other => panic!("{extra}: {other:?}"),
    };
    expect(
        "backends:\n  team: [\"t:1\"]\n",
        "backends.team",
        "unknown tunnel kind",
    );
    expect(
        "backends:\n  player: [\"p\"]\n",
        "backends.player[0].addr",
        "host:port",
    );
    expect(
        "backends:\n  player: [\"p:0\"]\n",
        "backends.player[0].addr",
        "port",
    );
    expect(
        "backends:\n  player: [\"p:http\"]\n",
        "backends.player[0].addr",
        "port",
    );
    expect(
        "backends:\n  player: [\"http://p:1\"]\n",
        "backends.player[0].addr",
        "scheme",
    );
    expect(
        "backends:\n  player: [\"p:1\", \"p:1\"]\n",
        "backends.player",
        "listed twice",
    );
    expect(
        "backends:\n  player: [{addr: \"p:1\", color: \"\"}]\n",
        "backends.player[0].color",
        "empty",
    );
}

#[test]
fn routes_add_kinds_and_move_modules() {
    let yaml = "routes:\n  kinds:\n    team: object\n    guild: player\n  modules:\n    7: team\n    6: player\n    8: guild\n";
    let c = parse(yaml).unwrap();
    assert_eq!(c.routes.kinds["team"], OidRuleName::Object);
    let table = c.route_table().unwrap();
    let team = table.kind_by_name("team").unwrap();
    assert_eq!(table.kind_for_module(7), team);
    assert_eq!(table.oid_rule(team), janus_core::route::OidRule::Object);
    assert_eq!(table.kind_for_module(6), TunnelKind::PLAYER);
    let guild = table.kind_by_name("guild").unwrap();
    assert_eq!(
        table.oid_rule(guild),
        janus_core::route::OidRule::SessionUid
    );

    let c = parse("routes:\n  modules:\n    7: nowhere\n").unwrap();
    match c.route_table() {
        Err(ConfigError::Invalid { path, reason }) => {
            assert_eq!(path, "routes.modules.7");
            assert!(
                reason.contains("nowhere") && reason.contains("player, room"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    let c = parse("routes:\n  kinds:\n    room: object\n").unwrap();
    assert!(
        c.route_table().is_err(),
        "a built-in kind cannot be redefined"
    );
    let c = parse("routes:\n  kinds:\n    Team: object\n").unwrap();
    assert!(c.route_table().is_err(), "kind names are lowercase");
    let (path, _) = invalid_at(parse("routes:\n  kinds:\n    team: room\n"));
    assert_eq!(path, "routes.kinds.team");
}

#[test]
fn balancer_breaker_and_server_timeouts_are_settings() {
    let c = parse("").unwrap();
    assert_eq!(c.routes.balancer, BalancerName::Wrr);
    assert_eq!(
        janus_core::route::BreakerConfig::from(c.routes.breaker),
        janus_core::route::BreakerConfig::default()
    );
    let yaml = "routes:\n  balancer: least_loaded\n  breaker:\n    failure_threshold: 2\n    cool_down: 1s\n    max_cool_down: 1m\n    probe_timeout: 5s\nserver:\n  grpc:\n    timeout: 2s\n  http:\n    timeout: 3s\n";
    let c = parse(yaml).unwrap();
    assert_eq!(c.routes.balancer, BalancerName::LeastLoaded);
    let b = janus_core::route::BreakerConfig::from(c.routes.breaker);
    assert_eq!(
        (
            b.failure_threshold,
            b.cool_down,
            b.max_cool_down,
            b.probe_timeout
        ),
        (
            2,
            Duration::from_secs(1),
            Duration::from_secs(60),
            Duration::from_secs(5)
        )
    );
    assert_eq!(c.server.grpc.timeout, Duration::from_secs(2));
    assert_eq!(c.server.http.timeout, Duration::from_secs(3));

    let (path, _) = invalid_at(parse("routes:\n  balancer: random\n"));
    assert_eq!(path, "routes.balancer");
    let mut c = local_with("", "");
    c.routes.breaker.failure_threshold = 0;
    c.routes.breaker.max_cool_down = Duration::from_secs(1);
    let err = c.validate_at(at(Y2030)).unwrap_err().to_string();
    assert!(
        err.contains("routes.breaker.failure_threshold")
            && err.contains("routes.breaker.max_cool_down"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Secrets

const EC_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgY720eunDXroyWfRc
eDFU7KHkUg6tF0HvsHVT3vqRCuShRANCAASUG8zu5mwTmH7hg334M0mw5hoIcLCg
cGCCJlXK4uHOEnvmzv7p27wB8JWq3PzXIVRJzWJYO223aSR7tNzF0Vja
-----END PRIVATE KEY-----
";

/// `openssl req -x509` with a P-256 key, valid 2026-11-23 .. 2126-10-30.
const EC_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBcDCCARegAwIBAgIUOznRvJb5wVFYFo8YD2kqgVRtuEYwCgYIKoZIzj0EAwIw
DTELMAkGA1UEAwwCZWMwIBcNMjYxMTIzMjAwOTI5WhgPMjEyNjEwMzAyMDA5Mjla
MA0xCzAJBgNVBAMMAmVjMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAElBvM7uZs
E5h+4YN9+DNJsOYaCHCwoHBggiZVyuLhzhJ75s7+6du8AfCVqtz81yFUSc1iWDtt
t2kke7TcxdFY2qNTMFEwHQYDVR0OBBYEFFRaxmyknnv5npuej8c/E7YpEAkzMB8G
A1UdIwQYMBaAFFRaxmyknnv5npuej8c/E7YpEAkzMA8GA1UdEwEB/wQFMAMBAf8w
CgYIKoZIzj0EAwIDRwAwRAIgRV8IBGukSXxSxTED5ZSZKc4Yc6DUBtcOjg4Ht7Dd
DNwCIChBq+YFtT7G1WUOoYt8L9CoGz9bvvRyg8EssnQH/4MT
-----END CERTIFICATE-----
";

/// `openssl genpkey -algorithm X25519`: PKCS#8, right shape, wrong algorithm.
const X25519_KEY: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VuBCIEILDT5a96EN5dn/iUelVCdSsbQlL5He55WFHLbswQdN1Z
-----END PRIVATE KEY-----
";

fn secret_reason(result: Result<impl std::fmt::Debug, ConfigError>) -> (String, String) {
    match result {
        Err(ConfigError::Secret { which, reason }) => (which, reason),
        other => panic!("expected a Secret error, got {other:?}"),
    }
}

#[test]
fn private_keys_must_be_pkcs8_ed25519() {
    let which = "secret.server_cert_private_key";
    let key = secrets::parse_private_key(which, &dev_file("server.key.pem")).unwrap();
    // Text around the block is ignored, as Go's pem.Decode does.
    let padded = format!("# server key\n\n{}\ntrailing\n", dev_file("server.key.pem"));
    assert_eq!(
        secrets::parse_private_key(which, &padded)
            .unwrap()
            .verifying_key(),
        key.verifying_key()
    );

    for (pem, needle) in [
        ("", "is empty"),
        ("   \n", "is empty"),
        ("MC4CAQAwBQYDK2VwBCIEIJKENYHPCiLhWMaJiy", "is not PEM"),
        (EC_KEY, "ECDSA"),
        (X25519_KEY, "X25519"),
        (EC_CERT, "a certificate where a private key belongs"),
        (
            "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
            "malformed PEM",
        ),
        (
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "not a PKCS#8 private key",
        ),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
            "OpenSSH",
        ),
    ] {
        let (w, reason) = secret_reason(secrets::parse_private_key(which, pem));
        assert_eq!(w, which);
        assert!(reason.contains(needle), "{pem:?}: {reason}");
    }
    let (w, reason) = secret_reason(load_client_signing_key(EC_KEY));
    assert_eq!(w, "client key");
    assert!(reason.contains("expected Ed25519"), "{reason}");
}

#[test]
fn certificates_must_carry_ed25519_keys() {
    let which = "secret.client_cert";
    let now = at(Y2030);
    let client_cert = dev_file("client.cert.pem");
    let key = secrets::parse_certificate_key(which, &client_cert, now).unwrap();
    let client = load_client_signing_key(&dev_file("client.key.pem")).unwrap();
    assert_eq!(key, client.verifying_key());

    for (pem, needle) in [
        ("", "is empty"),
        (EC_CERT, "ECDSA"),
        (EC_KEY, "a private key where a certificate belongs"),
        (
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "not an X.509 certificate",
        ),
    ] {
        let (w, reason) = secret_reason(secrets::parse_certificate_key(which, pem, now));
        assert_eq!(w, which);
        assert!(reason.contains(needle), "{pem:?}: {reason}");
    }
}

#[test]
fn a_certificate_outside_its_validity_period_is_refused() {
    let key = janus_core::crypto::SigningKey::from_seed(&[5; 32]);
    let cert = keygen::self_signed_certificate(
        &key,
        "janus-client",
        (at(1_600_000_000), at(1_700_000_000)),
        &[1],
    )
    .unwrap();
    let which = "secret.client_cert";
    assert_eq!(
        secrets::parse_certificate_key(which, &cert, at(1_650_000_000)).unwrap(),
        key.verifying_key()
    );
    let (_, reason) = secret_reason(secrets::parse_certificate_key(
        which,
        &cert,
        at(1_700_000_001),
    ));
    assert!(
        reason.contains("expired") && reason.contains("2023-11-14"),
        "{reason}"
    );
    let (_, reason) = secret_reason(secrets::parse_certificate_key(
        which,
        &cert,
        at(1_599_999_999),
    ));
    assert!(
        reason.contains("not valid yet") && reason.contains("2020-09-13"),
        "{reason}"
    );

    // Through the configuration: validate and core_config both refuse it.
    let mut c = parse(LOCAL_YAML).unwrap();
    c.secret.client_cert = cert;
    let (which, reason) = secret_reason(c.validate().map(|()| 0));
    assert_eq!(which, "secret.client_cert");
    assert!(reason.contains("expired"), "{reason}");
    assert!(c.core_config().is_err());
    // Unencrypted, the certificate is not needed, but a bad one is still reported.
    c.label.encrypted = false;
    assert!(c.validate().is_err());
    c.secret.client_cert.clear();
    c.validate().unwrap();
    assert!(c.core_config().unwrap().credentials.is_none());
}

#[test]
fn the_token_key_is_the_raw_text() {
    for len in [16, 24, 32] {
        let mut c = Config::default();
        c.secret.account_aes_key = "k".repeat(len);
        c.token_key().unwrap();
    }
    let mut c = Config::default();
    let (which, reason) = secret_reason(c.token_key());
    assert_eq!(which, "secret.account_aes_key");
    assert!(reason.contains("is empty"), "{reason}");
    c.secret.account_aes_key = "0123456789abcdef0123456789abcde".into();
    let (_, reason) = secret_reason(c.token_key());
    assert!(reason.contains("is 31 bytes"), "{reason}");
}

#[test]
fn debug_output_redacts_secrets() {
    let c = parse(LOCAL_YAML).unwrap();
    let shown = format!("{c:?}");
    assert!(!shown.contains(&c.secret.account_aes_key), "{shown}");
    assert!(!shown.contains("MC4CAQAwBQYDK2Vw"), "{shown}");
    let redis = super::Redis {
        password: "hunter2".into(),
        ..Default::default()
    };
    assert!(!format!("{redis:?}").contains("hunter2"));
}

// ---------------------------------------------------------------------------------------------
// core_config

fn dev_token(uid: i64, now: Time) -> String {
    let key = TokenKey::new(dev_file("token.key").trim().as_bytes()).unwrap();
    let token = AuthToken {
        rand: "a1b2c3d4".into(),
        color: "local".into(),
        account_id: uid,
        server_id: 3,
        timeout: now.unix_secs() + 600,
        status: 1,
        ..Default::default()
    };
    key.seal(&token, [9; 12])
}

#[test]
fn core_config_round_trip_with_the_dev_secrets() {
    let c = parse(LOCAL_YAML).unwrap();
    let core = c.core_config().unwrap();

    // A token sealed with the dev key (as the account service would) opens.
    let now = Time::from_unix_secs(1_700_000_000);
    let opened = core.token_key.open(&dev_token(42, now)).unwrap();
    assert_eq!(opened.account_id, 42);

    // The server key pairs with the key clients verify with, and the client certificate with
    // the key embedded in clients.
    let creds = core.credentials.as_ref().unwrap();
    assert_eq!(
        creds.server_key.verifying_key(),
        c.server_verifying_key().unwrap()
    );
    assert_eq!(
        c.server_verifying_key().unwrap(),
        load_certificate_key(&dev_file("server.cert.pem")).unwrap()
    );

    // A full handshake: a client with the dev client key against the configured credentials.
    let keys = ClientKeys {
        client_cert: load_client_signing_key(&dev_file("client.key.pem")).unwrap(),
        server_cert: Some(c.server_verifying_key().unwrap()),
    };
    let client = ClientConfig::new(Some(keys), dev_token(42, now));
    let mut pair = Pair::new(Arc::new(core), &client, now);
    pair.drive();
    assert!(pair.client.is_established(), "{:?}", pair.client_events);
    assert!(
        pair.client_events
            .iter()
            .any(|e| matches!(e, ClientEvent::Established { .. })),
        "{:?}",
        pair.client_events
    );
    match pair.server_events.first() {
        Some(Event::Authenticated(identity)) => {
            assert_eq!((identity.uid, identity.sid), (42, 3));
            assert_eq!(identity.color, "local");
        }
        other => panic!("{other:?}"),
    }

    // A client holding some other key is refused.
    let stranger = ClientKeys {
        client_cert: janus_core::crypto::SigningKey::from_seed(&[1; 32]),
        server_cert: None,
    };
    let client = ClientConfig::new(Some(stranger), dev_token(43, now));
    let mut pair = Pair::new(Arc::new(c.core_config().unwrap()), &client, now);
    pair.drive();
    assert!(!pair.client.is_established());
}

#[test]
fn core_config_carries_limits_compression_and_routes() {
    // local.yaml minus its own `limits:` section (the last one), replaced below.
    let local = LOCAL_YAML.split("\nlimits:").next().unwrap_or(LOCAL_YAML);
    let yaml = format!(
        "{local}\ncompress:\n  weak: 100\n  strong: 5000\nlimits:\n  replay_cache: 10\n  \
         session:\n    max_frame_len: 4096\n    idle_timeout: 2m\n    check_index: false\n    \
         rate_limit: {{per_second: 20, burst: 40}}\n  admission:\n    max_handshakes: 7\n\
         routes:\n  kinds: {{team: object}}\n  modules: {{7: team}}\n"
    )
    .replace("compress:\n  weak: 10240\n  strong: 1024000\n", "");
    let c = parse(&yaml).unwrap();
    let core = c.core_config().unwrap();
    assert_eq!(core.session.compress_threshold, 100);
    assert_eq!(core.session.compress_strong, 5000);
    assert_eq!(core.session.max_frame_len, 4096);
    assert_eq!(core.session.idle_timeout, Duration::from_secs(120));
    assert!(!core.session.check_index);
    assert_eq!(
        core.session.rate_limit,
        Some(janus_core::limit::RateLimit {
            per_second: 20,
            burst: 40
        })
    );
    assert_eq!(c.admission_config().max_handshakes, 7);
    let team = core.routes.kind_by_name("team").unwrap();
    assert_eq!(core.routes.kind_for_module(7), team);

    let c = parse(&yaml.replace("per_second: 20", "per_second: 0")).unwrap();
    let (path, reason) = match c.core_config() {
        Err(ConfigError::Invalid { path, reason }) => (path, reason),
        other => panic!("{other:?}"),
    };
    assert_eq!(path, "limits.session.rate_limit");
    assert!(reason.contains("per_second"), "{reason}");
}

// ---------------------------------------------------------------------------------------------
// validate

#[test]
fn validate_lists_every_problem() {
    let mut c = parse(LOCAL_YAML).unwrap();
    c.validate_at(at(Y2030)).unwrap();
    c.server.ws.as_mut().unwrap().path = "ws".into();
    c.server.http.addr = "localhost:8100".into();
    c.server.grpc.timeout = Duration::ZERO;
    c.data.app_route_table_alive_duration = Duration::ZERO;
    c.limits.session.max_tunnels = 0;
    c.secret.account_aes_key = "short".into();
    let err = c.validate_at(at(Y2030)).unwrap_err();
    let ConfigError::Several(problems) = &err else {
        panic!("{err:?}")
    };
    let text = err.to_string();
    assert_eq!(problems.len(), 6, "{text}");
    for needle in [
        "server.ws.path: \"ws\" must start with '/'",
        "server.http.addr: \"localhost:8100\" is not an ip:port address",
        "server.grpc.timeout: must be longer than 0",
        "data.app_route_table_alive_duration: must be longer than 0",
        "limits.session.max_tunnels: must be at least 1",
        "secret.account_aes_key: is 5 bytes",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[test]
fn validate_checks_listeners_origins_and_limits() {
    let one = |c: &Config| match c.validate_at(at(Y2030)) {
        Err(ConfigError::Invalid { path, reason }) => (path, reason),
        other => panic!("{other:?}"),
    };
    let (path, reason) = one(&local_with("addr: 127.0.0.1:9100", "addr: 0.0.0.0:7001"));
    assert_eq!(path, "server.grpc.addr");
    assert!(reason.contains("server.tcp.addr"), "{reason}");
    let (path, _) = one(&local_with(
        "allowed_origins: []",
        "allowed_origins: [\"https://a.example/\"]",
    ));
    assert_eq!(path, "server.ws.allowed_origins[0]");
    local_with(
        "allowed_origins: []",
        "allowed_origins: [\"https://a.example:8443\", \"*\"]",
    )
    .validate_at(at(Y2030))
    .unwrap();
    let (path, _) = one(&local_with("push_interval: 10s", "push_interval: 0s"));
    assert_eq!(path, "demo.push_interval");
    let (path, _) = one(&local_with("level: ${LOG_LEVEL:info}", "level: \"info,[\""));
    assert_eq!(path, "log.level");

    let mut c = parse(LOCAL_YAML).unwrap();
    c.server.tcp = None;
    c.server.ws = None;
    assert_eq!(one(&c).0, "server");
    let mut c = parse(LOCAL_YAML).unwrap();
    c.limits.session.outbound_budget = 1000;
    assert_eq!(one(&c).0, "limits.session.outbound_budget");
    let mut c = parse(LOCAL_YAML).unwrap();
    c.limits.session.max_frame_len = 10;
    assert_eq!(one(&c).0, "limits.session.max_frame_len");
    let mut c = parse(LOCAL_YAML).unwrap();
    c.etcd = Some(super::Etcd {
        endpoints: vec![],
        ..Default::default()
    });
    assert_eq!(one(&c).0, "etcd.endpoints");
    let mut c = parse(LOCAL_YAML).unwrap();
    c.limits.session.rate_limit = Some(super::RateLimitConfig {
        per_second: 5,
        burst: 0,
    });
    assert_eq!(one(&c).0, "limits.session.rate_limit");
}

#[test]
fn warnings_point_at_kinds_without_backends() {
    let c = local_with("  room: [\"127.0.0.1:17102\"]\n", "");
    let warnings = c.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("backends.room"), "{warnings:?}");
    assert!(parse(LOCAL_YAML).unwrap().warnings().is_empty());
}

// ---------------------------------------------------------------------------------------------
// configs/

/// The environment `configs/gateway.example.yaml` documents, with the dev secrets.
fn example_env() -> impl Fn(&str) -> Option<String> {
    let key = dev_file("token.key").trim().to_owned();
    let server_key = dev_file("server.key.pem");
    let client_cert = dev_file("client.cert.pem");
    move |name| match name {
        "ACCOUNT_AES_KEY" => Some(key.clone()),
        "SERVER_CERT_PRIVATE_KEY" => Some(server_key.clone()),
        "CLIENT_CERT" => Some(client_cert.clone()),
        "REDIS_PASSWORD" | "ETCD_USERNAME" | "ETCD_PASSWORD" => Some(String::new()),
        _ => None,
    }
}

#[test]
fn every_file_in_configs_is_valid() {
    let mut files = Vec::new();
    let mut dirs = vec![configs_dir()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    let env = example_env();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let config =
            Config::from_yaml(&text, &env).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        config
            .validate()
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        config
            .core_config()
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
    // Without the environment the example names what is missing.
    let example = std::fs::read_to_string(configs_dir().join("gateway.example.yaml")).unwrap();
    match Config::from_yaml(&example, &no_env) {
        Err(ConfigError::Placeholder { name, .. }) => assert!(
            name.ends_with("PASSWORD") || name.starts_with("ACCOUNT"),
            "{name}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_local_config_is_compiled_in_and_uses_the_dev_secrets() {
    let on_disk = std::fs::read_to_string(configs_dir().join("local.yaml")).unwrap();
    assert_eq!(LOCAL_YAML, on_disk);
    let c = parse(LOCAL_YAML).unwrap();
    assert_eq!(c.secret.account_aes_key, dev_file("token.key").trim());
    assert_eq!(c.secret.server_cert_private_key, dev_file("server.key.pem"));
    assert_eq!(c.secret.client_cert, dev_file("client.cert.pem"));
    assert_eq!(c.server.tcp.as_ref().unwrap().addr, "127.0.0.1:7001");
    assert_eq!(c.demo.as_ref().unwrap().addr, "127.0.0.1:17102");
    assert_eq!(c.backends["player"][0].addr, "127.0.0.1:17102");
    assert_eq!(c.backends["room"][0].addr, "127.0.0.1:17102");
    assert!(c.label.encrypted);
    // The environment overrides the dev values.
    let c = Config::from_yaml(
        LOCAL_YAML,
        &env_of(&[("ACCOUNT_AES_KEY", "x"), ("ENCRYPTED", "false")]),
    )
    .unwrap();
    assert_eq!(c.secret.account_aes_key, "x");
    assert!(!c.label.encrypted);
    // The dev secret.yaml is the same material.
    let secret = parse(&dev_file("secret.yaml")).unwrap().secret;
    let local = parse(LOCAL_YAML).unwrap().secret;
    assert_eq!(secret.account_aes_key, local.account_aes_key);
    assert_eq!(
        secret.server_cert_private_key,
        local.server_cert_private_key
    );
    assert_eq!(secret.client_cert, local.client_cert);
}

// ---------------------------------------------------------------------------------------------
// keygen

#[test]
fn keygen_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("new/secrets");
    let generated = keygen::generate(&dir).unwrap();
    assert_eq!(generated.files.len(), 6);
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();

    let token_key = read("token.key");
    let token_key = token_key.trim_end();
    assert_eq!(token_key.len(), 32);
    assert!(
        token_key.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{token_key}"
    );
    TokenKey::new(token_key.as_bytes()).unwrap();

    assert!(read("server.key.pem").starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let server = secrets::parse_private_key("server", &read("server.key.pem")).unwrap();
    let server_cert = load_certificate_key(&read("server.cert.pem")).unwrap();
    assert_eq!(server.verifying_key(), server_cert);
    assert_eq!(server_cert.to_bytes(), generated.server_public_key);
    let client = load_client_signing_key(&read("client.key.pem")).unwrap();
    let client_cert = load_certificate_key(&read("client.cert.pem")).unwrap();
    assert_eq!(client.verifying_key(), client_cert);
    assert_eq!(client_cert.to_bytes(), generated.client_public_key);
    assert_ne!(server_cert, client_cert);
    let sig = server.sign(b"x25519 public key");
    server_cert.verify(b"x25519 public key", &sig).unwrap();
    assert!(client_cert.verify(b"x25519 public key", &sig).is_err());

    // Go writes PKCS#8 v1 without the public key: 48 bytes of DER.
    let pem = read("client.key.pem");
    let (_, der) = x509_cert::der::pem::decode_vec(pem.as_bytes()).unwrap();
    assert_eq!(der.len(), 48);

    // secret.yaml is a working `secret:` section.
    let c = parse(&read("secret.yaml")).unwrap();
    assert_eq!(c.secret.account_aes_key, token_key);
    let core = c.core_config().unwrap();
    let creds = core.credentials.unwrap();
    assert_eq!(creds.client_cert, client_cert);
    assert_eq!(creds.server_key.verifying_key(), server_cert);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |name: &str| {
            std::fs::metadata(dir.join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        for private in [
            "token.key",
            "server.key.pem",
            "client.key.pem",
            "secret.yaml",
        ] {
            assert_eq!(mode(private), 0o600, "{private}");
        }
    }

    // Never overwrites, and writes nothing when it refuses.
    let before = read("server.key.pem");
    let err = keygen::generate(&dir).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists),
        "{err:?}"
    );
    assert_eq!(read("server.key.pem"), before);
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("secret.yaml"), "mine").unwrap();
    assert!(keygen::generate(&other).is_err());
    assert!(!other.join("token.key").exists());

    // Two runs make different keys.
    let again = keygen::generate(&tmp.path().join("again")).unwrap();
    assert_ne!(again.server_public_key, generated.server_public_key);
    assert!(generated.to_string().contains("secret.yaml"));
}

#[test]
fn generated_certificates_are_well_formed() {
    let key = janus_core::crypto::SigningKey::from_seed(&[3; 32]);
    let pem = keygen::self_signed_certificate(
        &key,
        "janus-server",
        (at(1_700_000_000), at(1_700_000_000 + 10 * 365 * 86_400)),
        &[0x40, 1, 2, 3],
    )
    .unwrap();
    use x509_cert::der::{Decode as _, Encode as _};
    let (_, der) = x509_cert::der::pem::decode_vec(pem.as_bytes()).unwrap();
    let cert = x509_cert::Certificate::from_der(&der).unwrap();
    let tbs = &cert.tbs_certificate;
    assert_eq!(tbs.subject.to_string(), "CN=janus-server");
    assert_eq!(tbs.issuer, tbs.subject);
    assert_eq!(tbs.serial_number.as_bytes(), &[0x40, 1, 2, 3]);
    assert_eq!(cert.signature_algorithm.oid, secrets::ED25519_OID);
    assert!(cert.signature_algorithm.parameters.is_none());
    // Self-signed: the signature verifies with the certified key over the TBS DER.
    let signature = cert.signature.as_bytes().unwrap();
    key.verifying_key()
        .verify(&tbs.to_der().unwrap(), signature)
        .unwrap();
    assert!(matches!(
        tbs.validity.not_before,
        x509_cert::time::Time::UtcTime(_)
    ));
}

// ---------------------------------------------------------------------------------------------
// relay and edge

#[test]
fn the_hub_and_edge_configs_pair_up() {
    let env = example_env();
    let hub_text = std::fs::read_to_string(configs_dir().join("hub.local.yaml")).unwrap();
    let hub = Config::from_yaml(&hub_text, &env).unwrap();
    hub.validate().unwrap();
    let hub_link = hub.hub_link_config("127.0.0.1:9100").unwrap().unwrap();
    let edge_text = std::fs::read_to_string(configs_dir().join("edge.local.yaml")).unwrap();
    let edge = Config::from_yaml(&edge_text, &env).unwrap();
    edge.validate_edge().unwrap();
    let (edge_link, hubs) = edge.edge_link_config().unwrap();
    assert_eq!(hubs, vec!["127.0.0.1:7100".to_owned()]);
    assert!(hub_link.peers.contains(&edge_link.key.verifying_key()));
    assert!(edge_link.peers.contains(&hub_link.key.verifying_key()));
    // The gateway's own config is not an edge config.
    assert!(parse(LOCAL_YAML).unwrap().validate_edge().is_err());
}

#[test]
fn relay_keys_read_pem_and_base64_and_name_their_key_when_bad() {
    let pem = dev_file("server.key.pem");
    let from_pem = crate::parse_relay_private_key("k", &pem).unwrap();
    let cert = dev_file("server.cert.pem");
    assert_eq!(
        crate::parse_relay_public_key("k", &cert).unwrap(),
        from_pem.verifying_key()
    );
    let b64 = "S0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0s=";
    let key = crate::parse_relay_private_key("k", b64).unwrap();
    assert_eq!(
        key.verifying_key(),
        janus_core::crypto::SigningKey::from_seed(&[0x4b; 32]).verifying_key()
    );
    let bad =
        parse("relay:\n  addr: 127.0.0.1:7100\n  private_key: nope\n  edge_keys: [\"AAAA\"]\n")
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
    assert!(bad.contains("relay.private_key"), "{bad}");
    let bad = parse("relay:\n  private_key: S0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0s=\n  link:\n    session_window: 2048\n")
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        bad.contains("relay.edge_keys")
            && bad.contains("relay.link.session_window")
            && !bad.contains("relay.link.max_frame_len"),
        "{bad}"
    );
}

// ---------------------------------------------------------------------------------------------
// Redis topologies: standalone, cluster, sentinel

#[test]
fn redis_cluster_and_sentinel_are_settings_with_their_rules() {
    let check = |redis: &str| {
        let yaml = LOCAL_YAML.replace("data:\n", &format!("data:\n  redis:\n{redis}"));
        Config::from_yaml(&yaml, &no_env)
            .unwrap()
            .validate_at(at(Y2030))
    };
    let cluster = "    addr: 10.0.0.1:6379\n    cluster: true\n    \
                   cluster_seeds: [\"10.0.0.2:6379\", \"redis-2.internal:6379\"]\n";
    check(cluster).unwrap();
    let sentinel = "    password: data-pass\n    sentinel:\n      master_name: janus\n      \
                    addrs: [\"10.0.0.5:26379\", \"10.0.0.6:26379\"]\n      password: s-pass\n";
    check(sentinel).unwrap();
    let yaml = LOCAL_YAML.replace("data:\n", &format!("data:\n  redis:\n{sentinel}"));
    let c = parse(&yaml).unwrap();
    let s = c.data.redis.as_ref().unwrap().sentinel.as_ref().unwrap();
    assert_eq!(s.master_name, "janus");
    assert_eq!(s.addrs, ["10.0.0.5:26379", "10.0.0.6:26379"]);
    let shown = format!("{c:?}\n{}", c.redacted_yaml());
    assert!(
        !shown.contains("s-pass") && !shown.contains("data-pass"),
        "{shown}"
    );

    let expect = |redis: &str, path: &str, needle: &str| {
        let problems = match check(redis) {
            Err(ConfigError::Several(all)) => all,
            Err(one) => vec![one],
            Ok(()) => panic!("{redis}: accepted"),
        };
        assert!(
            problems.iter().any(|p| matches!(p,
                ConfigError::Invalid { path: p, reason } if p == path && reason.contains(needle))),
            "{redis}: {problems:?}"
        );
    };
    expect(
        "    cluster_seeds: [\"10.0.0.2:6379\"]\n",
        "data.redis.cluster_seeds",
        "cluster: true",
    );
    expect(
        "    cluster: true\n    cluster_seeds: [\"nope\"]\n",
        "data.redis.cluster_seeds[0]",
        "host:port",
    );
    expect(
        "    cluster: true\n    sentinel: {master_name: m, addrs: [\"s:26379\"]}\n",
        "data.redis.sentinel",
        "cannot be combined",
    );
    expect(
        "    sentinel: {master_name: \"\", addrs: [\"s:26379\"]}\n",
        "data.redis.sentinel.master_name",
        "empty",
    );
    expect(
        "    sentinel: {master_name: m, addrs: []}\n",
        "data.redis.sentinel.addrs",
        "empty",
    );
    expect(
        "    sentinel: {master_name: m, addrs: [\"s\"]}\n",
        "data.redis.sentinel.addrs[0]",
        "host:port",
    );
    let (path, reason) = invalid_at(parse(
        &LOCAL_YAML.replace("data:\n", "data:\n  redis:\n    sentinel: {master: m}\n"),
    ));
    assert_eq!(path, "data.redis.sentinel.master", "{reason}");
}

#[test]
fn the_backend_pool_is_sized_by_limits() {
    let c = parse(&LOCAL_YAML.replace(
        "limits:\n",
        "limits:\n  backend_pool: {min_connections: 2, max_connections: 32}\n",
    ))
    .unwrap();
    assert_eq!(
        (
            c.limits.backend_pool.min_connections,
            c.limits.backend_pool.max_connections
        ),
        (2, 32)
    );
    c.validate_at(at(Y2030)).unwrap();
    assert_eq!(Config::default().limits.backend_pool.max_connections, 64);
    for (pool, path) in [
        (
            "{min_connections: 0}",
            "limits.backend_pool.min_connections",
        ),
        (
            "{min_connections: 8, max_connections: 4}",
            "limits.backend_pool.max_connections",
        ),
    ] {
        let c =
            parse(&LOCAL_YAML.replace("limits:\n", &format!("limits:\n  backend_pool: {pool}\n")))
                .unwrap();
        let (p, _) = invalid_at(c.validate_at(at(Y2030)).map(|()| c.clone()));
        assert_eq!(p, path);
    }
}

#[test]
fn session_resume_is_off_unless_enabled_and_takes_its_key_from_the_secret() {
    let c = parse("{}").unwrap();
    let core = c.session_config().unwrap();
    assert!(!core.resume.enabled(), "off by default");
    assert!(c.resume_key().unwrap().is_none());

    let c = parse(
        "limits:\n  session:\n    resume:\n      enabled: true\n      window: 45s\n      \
         max_buffered_bytes: 1000\n      max_buffered_packets: 10\n\
         secret:\n  resume_key: 0123456789abcdef-resume\n",
    )
    .unwrap();
    let core = c.session_config().unwrap();
    assert_eq!(core.resume.window, Duration::from_secs(45));
    assert_eq!(
        (
            core.resume.max_buffered_bytes,
            core.resume.max_buffered_packets
        ),
        (1000, 10)
    );
    assert!(c.resume_key().unwrap().is_some());

    let c = parse("limits:\n  session:\n    resume:\n      enabled: true\n").unwrap();
    assert_eq!(
        c.session_config().unwrap().resume.window,
        Duration::from_secs(30)
    );
    assert!(
        c.resume_key().unwrap().is_none(),
        "the gateway makes a random one"
    );

    let c = parse(
        "limits:\n  session:\n    resume:\n      enabled: true\nsecret:\n  resume_key: short\n",
    )
    .unwrap();
    let err = c.resume_key().unwrap_err().to_string();
    assert!(err.contains("secret.resume_key"), "{err}");
    let c =
        parse("limits:\n  session:\n    resume:\n      enabled: true\n      window: 0s\n").unwrap();
    let err = c.session_config().unwrap_err().to_string();
    assert!(err.contains("limits.session.resume.window"), "{err}");
    assert!(
        parse("limits:\n  session:\n    resume:\n      windw: 1s\n").is_err(),
        "unknown keys are refused"
    );
}
