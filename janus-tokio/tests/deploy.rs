//! The deployment files (issue 13): the Dockerfile and the Kubernetes manifests under deploy/k8s
//! are parsed and checked against each other and against the gateway's own configuration, so
//! a port, probe path, drain duration or secret name cannot drift from what the gateway does.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{collections::BTreeSet, path::PathBuf, time::Duration};

use janus_tokio::config::Config;
use serde_yaml::Value;

/// Memory per session the manifests must budget: 5.7 KiB resident per idle authenticated session
/// measured with `scripts/scale-50k.sh` (README, "Running N gateways"), doubled for kernel
/// socket buffers (charged to the pod's memory cgroup) and busy sessions' queues.
const MEASURED_SESSION_BYTES: u64 = 12 * 1024;
/// The gateway's memory before any session (runtime, tables, buffers), rounded up.
const BASE_BYTES: u64 = 64 * 1024 * 1024;

fn repo(path: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

/// Every document of every manifest, by kind.
fn manifests() -> Vec<Value> {
    let mut docs = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("deploy/k8s"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value =
                Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            if value.is_null() {
                continue;
            }
            for key in ["apiVersion", "kind"] {
                assert!(value[key].is_string(), "{}: no {key}", file.display());
            }
            assert!(
                value["metadata"]["name"].is_string(),
                "{}: no metadata.name",
                file.display()
            );
            docs.push(value);
        }
    }
    docs
}

use serde::Deserialize as _;

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

/// A Kubernetes quantity (`768Mi`, `2Gi`, `500M`) in bytes.
fn bytes(quantity: &str) -> u64 {
    let units = [
        ("Ki", 1u64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("k", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ];
    for (suffix, scale) in units {
        if let Some(n) = quantity.strip_suffix(suffix) {
            return n.parse::<u64>().unwrap() * scale;
        }
    }
    quantity.parse().unwrap()
}

/// The gateway configuration in the ConfigMap, with every `${NAME}` the Deployment provides
/// given a plausible value (anything else must have a default in the file).
fn gateway_config(docs: &[Value], env_names: &BTreeSet<String>) -> Config {
    let text = str_of(&one(docs, "ConfigMap")["data"]["janus.yaml"]);
    let dev = |name: &str| std::fs::read_to_string(repo(&format!("configs/dev/{name}"))).unwrap();
    let env = |name: &str| -> Option<String> {
        if !env_names.contains(name) {
            return None;
        }
        Some(match name {
            "POD_IP" => "10.1.2.3".into(),
            "ACCOUNT_AES_KEY" => dev("token.key").trim().to_owned(),
            "SERVER_CERT_PRIVATE_KEY" => dev("server.key.pem"),
            "CLIENT_CERT" => dev("client.cert.pem"),
            _ => format!("value-of-{name}"),
        })
    };
    let config = Config::from_yaml(text, &env).unwrap_or_else(|e| panic!("janus.yaml: {e}"));
    config
        .validate()
        .unwrap_or_else(|e| panic!("janus.yaml: {e}"));
    config
}

#[test]
fn the_kubernetes_manifests_agree_with_the_gateway_and_each_other() {
    let docs = manifests();
    let deployment = one(&docs, "Deployment");
    let pod = &deployment["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    assert_eq!(&deployment["spec"]["selector"]["matchLabels"], labels);
    let containers = pod["spec"]["containers"].as_sequence().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];

    // The environment: every ${NAME} without a default in janus.yaml is provided, secrets from
    // the one Secret.
    let env: BTreeSet<String> = c["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| str_of(&e["name"]).to_owned())
        .collect();
    for e in c["env"].as_sequence().unwrap() {
        if let Some(secret) = e["valueFrom"]["secretKeyRef"].as_mapping() {
            assert_eq!(secret[&Value::from("name")], "janus-secrets", "{e:?}");
        }
    }
    let config = gateway_config(&docs, &env);

    // Ports: what the gateway listens on is what the pod declares.
    let ports: Vec<(String, u64)> = c["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| {
            (
                str_of(&p["name"]).to_owned(),
                p["containerPort"].as_u64().unwrap(),
            )
        })
        .collect();
    let port_of = |name: &str| {
        ports
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no port {name}"))
            .1
    };
    let listen_port = |addr: &str| -> u64 { addr.rsplit_once(':').unwrap().1.parse().unwrap() };
    assert_eq!(
        port_of("tcp"),
        listen_port(&config.server.tcp.as_ref().unwrap().addr)
    );
    assert_eq!(
        port_of("ws"),
        listen_port(&config.server.ws.as_ref().unwrap().addr)
    );
    assert_eq!(port_of("admin"), listen_port(&config.server.http.addr));
    assert_eq!(port_of("grpc"), listen_port(&config.server.grpc.addr));
    assert!(
        config.server.grpc.advertise.as_deref() == Some("10.1.2.3:9100"),
        "the push service is advertised on the pod IP: {:?}",
        config.server.grpc.advertise
    );

    // Probes: readiness on /readyz (503 from the start of a drain), liveness on /healthz.
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(c[probe]["httpGet"]["port"], "admin", "{probe}");
    }

    // preStop: `janus drain` with the mounted config, waiting no longer than the pod may take.
    let hook: Vec<&str> = c["lifecycle"]["preStop"]["exec"]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(str_of)
        .collect();
    assert_eq!(&hook[..2], ["/usr/local/bin/janus", "drain"], "{hook:?}");
    let config_path = hook[hook.iter().position(|a| *a == "--config").unwrap() + 1];
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(str_of)
        .collect();
    assert_eq!(args, ["--config", config_path]);
    let wait = janus_tokio::config::parse_duration(
        hook[hook.iter().position(|a| *a == "--wait").unwrap() + 1],
    )
    .unwrap();
    let grace = Duration::from_secs(
        pod["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap(),
    );
    let drain = config.limits.drain_window + config.limits.shutdown_grace;
    assert!(
        grace > drain,
        "grace {grace:?} must cover the drain {drain:?}"
    );
    assert!(wait >= drain && wait < grace, "hook wait {wait:?}");
    let mount = &c["volumeMounts"][0];
    assert!(config_path.starts_with(str_of(&mount["mountPath"])));
    let volume = &pod["spec"]["volumes"][0];
    assert_eq!(volume["name"], mount["name"]);
    assert_eq!(
        volume["configMap"]["name"],
        one(&docs, "ConfigMap")["metadata"]["name"]
    );

    // Memory: requests cover the sessions the pod admits at the measured cost per session.
    let sessions = config.limits.admission.max_connections as u64;
    let request = bytes(str_of(&c["resources"]["requests"]["memory"]));
    let limit = bytes(str_of(&c["resources"]["limits"]["memory"]));
    let needed = BASE_BYTES + sessions * MEASURED_SESSION_BYTES;
    assert!(
        request >= needed && request <= needed * 2,
        "memory request {request} for {sessions} sessions (needs {needed})"
    );
    assert!(limit >= request);

    // The Service sends client ports to ready pods only; the PDB lets one drain at a time.
    let service = one(&docs, "Service");
    assert_eq!(&service["spec"]["selector"], labels);
    for p in service["spec"]["ports"].as_sequence().unwrap() {
        let target = str_of(&p["targetPort"]);
        assert!(
            ["tcp", "ws"].contains(&target),
            "only client ports are public: {target}"
        );
        assert_eq!(p["port"].as_u64().unwrap(), port_of(target));
    }
    let pdb = one(&docs, "PodDisruptionBudget");
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], labels);
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
}

#[test]
fn the_dockerfile_builds_in_one_stage_and_runs_the_binary_in_a_small_one() {
    let text = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let stages: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(stages.len(), 2, "{stages:?}");
    assert!(stages[0].contains(" AS build"), "{}", stages[0]);
    assert!(
        stages[1].contains("distroless") || stages[1].contains("-slim"),
        "a small runtime image: {}",
        stages[1]
    );
    let build = lines
        .iter()
        .find(|l| l.contains("cargo build"))
        .expect("a cargo build step");
    for flag in ["--release", "--locked", "--bin janus", "etcd"] {
        assert!(build.contains(flag), "{flag} in {build}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("COPY --from=build") && l.contains("/usr/local/bin/janus")),
        "the runtime stage gets only the binary"
    );
    assert!(lines.contains(&r#"ENTRYPOINT ["/usr/local/bin/janus"]"#));
    let user = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER");
    let name = user.split(':').next().unwrap();
    assert!(name != "root" && name != "0", "runs as {user}");
    // The image's default config path is the one the manifests mount.
    let cmd = lines.iter().find(|l| l.starts_with("CMD ")).unwrap();
    assert!(cmd.contains("/etc/janus/janus.yaml"), "{cmd}");
    // Its exposed ports are the Deployment's.
    let exposed: BTreeSet<u64> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(|l| l.split_whitespace().map(|p| p.parse().unwrap()))
        .collect();
    let docs = manifests();
    let declared: BTreeSet<u64> =
        one(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| p["containerPort"].as_u64().unwrap())
            .collect();
    assert_eq!(exposed, declared);
    // The build context leaves out what would bloat or leak into it.
    let ignore = std::fs::read_to_string(repo(".dockerignore")).unwrap();
    for entry in ["target", ".git"] {
        assert!(ignore.lines().any(|l| l.trim() == entry), "{entry}");
    }
}
