//! The deployment files under deploy/ and the Dockerfile, checked without a cluster, a Docker
//! daemon or systemd: every Kubernetes manifest parses and has what the API server requires
//! (apiVersion, kind, metadata.name, selectors that match the pod labels, containers with a name
//! and an image, probes and monitors that name ports which exist, volumes that exist), the pods'
//! termination grace covers sluice's drain as its mounted config sets it, every sluice config
//! shipped passes sluice's own validation, and the Dockerfile and systemd units have the shape
//! deploy/README.md promises.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice::Config;
use sluice::shutdown::LAST_CALL;
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One YAML document and the file it came from.
struct Doc {
    file: String,
    yaml: Yaml,
}

impl Doc {
    fn kind(&self) -> &str {
        self.yaml["kind"].as_str().unwrap_or("")
    }
    fn name(&self) -> &str {
        self.yaml["metadata"]["name"].as_str().unwrap_or("")
    }
    fn at(&self) -> String {
        format!("{} {}/{}", self.file, self.kind(), self.name())
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read deploy dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

/// Every document of every YAML file under deploy/.
fn manifests() -> Vec<Doc> {
    let mut files = Vec::new();
    yaml_files(&root().join("deploy"), &mut files);
    files.sort();
    assert!(!files.is_empty(), "no YAML under deploy/");
    let mut docs = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("read manifest");
        let file = path
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let parsed =
            YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{file}: not YAML: {e}"));
        assert!(!parsed.is_empty(), "{file}: no document");
        for yaml in parsed {
            docs.push(Doc {
                file: file.clone(),
                yaml,
            });
        }
    }
    docs
}

/// A string map (labels, matchLabels, selector); panics unless every key and value is a string.
fn string_map(y: &Yaml, what: &str) -> BTreeMap<String, String> {
    let Some(hash) = y.as_hash() else {
        panic!("{what}: not a map: {y:?}");
    };
    hash.iter()
        .map(|(k, v)| {
            let (Some(k), Some(v)) = (k.as_str(), v.as_str()) else {
                panic!("{what}: keys and values must be strings (quote \"true\"): {k:?}: {v:?}");
            };
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn is_subset(small: &BTreeMap<String, String>, big: &BTreeMap<String, String>) -> bool {
    small.iter().all(|(k, v)| big.get(k) == Some(v))
}

/// RFC 1123 subdomain (object names), or label (container and port names) when `max` is 63.
fn dns_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && (max > 63 || !name.contains('.'))
}

fn list(y: &Yaml) -> &[Yaml] {
    y.as_vec().map(Vec::as_slice).unwrap_or(&[])
}

/// The pod template of a Deployment, seen as what the other checks need.
struct Pod<'a> {
    doc: &'a Doc,
    labels: BTreeMap<String, String>,
    /// Port names of every container, init containers included.
    port_names: BTreeSet<String>,
}

const KNOWN_KINDS: [(&str, &str); 6] = [
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
];

#[test]
fn every_manifest_has_what_kubernetes_requires() {
    let docs = manifests();
    let mut names = BTreeSet::new();
    for d in &docs {
        let at = d.at();
        let api = d.yaml["apiVersion"]
            .as_str()
            .unwrap_or_else(|| panic!("{at}: apiVersion"));
        assert!(
            KNOWN_KINDS.contains(&(api, d.kind())),
            "{at}: {api} {} is not a kind this test knows; teach it the kind's required fields",
            d.kind()
        );
        assert!(
            dns_name(d.name(), 253),
            "{at}: metadata.name {:?}",
            d.name()
        );
        assert!(
            names.insert((d.kind().to_owned(), d.name().to_owned())),
            "{at}: a second {} named {}",
            d.kind(),
            d.name()
        );
        if !d.yaml["metadata"]["labels"].is_badvalue() {
            string_map(
                &d.yaml["metadata"]["labels"],
                &format!("{at}: metadata.labels"),
            );
        }
    }

    let configs = config_maps(&docs);
    let pods: Vec<Pod<'_>> = docs
        .iter()
        .filter(|d| d.kind() == "Deployment")
        .map(|d| check_deployment(d, &configs))
        .collect();
    assert!(pods.len() >= 3, "sidecar, native sidecar and standalone");

    let mut services = Vec::new();
    for d in docs.iter().filter(|d| d.kind() == "Service") {
        services.push(check_service(d, &pods));
    }
    for d in docs.iter().filter(|d| d.kind() == "PodMonitor") {
        let at = d.at();
        let selector = string_map(&d.yaml["spec"]["selector"]["matchLabels"], &at);
        let matched: Vec<&Pod<'_>> = pods
            .iter()
            .filter(|p| is_subset(&selector, &p.labels))
            .collect();
        assert!(!matched.is_empty(), "{at}: selects no pod template here");
        let endpoints = list(&d.yaml["spec"]["podMetricsEndpoints"]);
        assert!(!endpoints.is_empty(), "{at}: podMetricsEndpoints");
        for e in endpoints {
            let port = e["port"]
                .as_str()
                .unwrap_or_else(|| panic!("{at}: endpoint port name"));
            for p in &matched {
                assert!(
                    p.port_names.contains(port),
                    "{at}: {} has no port {port}",
                    p.doc.at()
                );
            }
        }
    }
    for d in docs.iter().filter(|d| d.kind() == "ServiceMonitor") {
        let at = d.at();
        let selector = string_map(&d.yaml["spec"]["selector"]["matchLabels"], &at);
        let matched: Vec<&(BTreeMap<String, String>, BTreeSet<String>)> = services
            .iter()
            .filter(|(labels, _)| is_subset(&selector, labels))
            .collect();
        assert!(!matched.is_empty(), "{at}: selects no Service here");
        let endpoints = list(&d.yaml["spec"]["endpoints"]);
        assert!(!endpoints.is_empty(), "{at}: endpoints");
        for e in endpoints {
            let port = e["port"]
                .as_str()
                .unwrap_or_else(|| panic!("{at}: endpoint port name"));
            assert!(
                matched.iter().all(|(_, ports)| ports.contains(port)),
                "{at}: no Service port {port}"
            );
        }
    }
}

/// name → the sluice config in it, for every ConfigMap (and Secret's stringData) that holds a
/// `*.toml`; each must pass sluice's validation.
fn config_maps(docs: &[Doc]) -> BTreeMap<String, Config> {
    let mut out = BTreeMap::new();
    for d in docs
        .iter()
        .filter(|d| d.kind() == "ConfigMap" || d.kind() == "Secret")
    {
        let at = d.at();
        let data = match d.kind() {
            "ConfigMap" => &d.yaml["data"],
            _ => &d.yaml["stringData"],
        };
        let data = string_map(data, &format!("{at}: data"));
        assert!(!data.is_empty(), "{at}: no data");
        for (key, text) in data {
            if key.ends_with(".toml") {
                let config = Config::from_toml(&text)
                    .unwrap_or_else(|e| panic!("{at}: {key} is not a valid sluice config: {e}"));
                assert!(
                    out.insert(d.name().to_owned(), config).is_none(),
                    "{at}: one sluice config per object"
                );
            }
        }
    }
    out
}

fn check_deployment<'a>(d: &'a Doc, configs: &BTreeMap<String, Config>) -> Pod<'a> {
    let at = d.at();
    let spec = &d.yaml["spec"];
    let template = &spec["template"];
    let selector = string_map(
        &spec["selector"]["matchLabels"],
        &format!("{at}: spec.selector.matchLabels"),
    );
    let labels = string_map(
        &template["metadata"]["labels"],
        &format!("{at}: template labels"),
    );
    assert!(!selector.is_empty(), "{at}: empty selector");
    assert!(
        is_subset(&selector, &labels),
        "{at}: selector {selector:?} does not match the template's labels {labels:?}"
    );
    let pod = &template["spec"];
    let containers = list(&pod["containers"]);
    assert!(!containers.is_empty(), "{at}: no containers");
    let inits = list(&pod["initContainers"]);

    let volumes: BTreeMap<String, &Yaml> = list(&pod["volumes"])
        .iter()
        .map(|v| {
            (
                v["name"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{at}: volume name"))
                    .to_owned(),
                v,
            )
        })
        .collect();
    let mut container_names = BTreeSet::new();
    let mut port_names = BTreeSet::new();
    let mut sluices = 0;
    for (c, init) in containers
        .iter()
        .map(|c| (c, false))
        .chain(inits.iter().map(|c| (c, true)))
    {
        let name = c["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{at}: a container without a name"));
        let at = format!("{at} container {name}");
        assert!(dns_name(name, 63), "{at}: name");
        assert!(
            container_names.insert(name.to_owned()),
            "{at}: two containers named so"
        );
        let image = c["image"].as_str().unwrap_or("");
        assert!(!image.is_empty(), "{at}: image");
        if init && !c["restartPolicy"].is_badvalue() {
            assert_eq!(
                c["restartPolicy"].as_str(),
                Some("Always"),
                "{at}: a sidecar init container"
            );
        }
        // Ports: numbers in range, names short and unique in the pod.
        let mut ports: BTreeMap<String, i64> = BTreeMap::new();
        for p in list(&c["ports"]) {
            let number = p["containerPort"]
                .as_i64()
                .unwrap_or_else(|| panic!("{at}: containerPort"));
            assert!(
                (1..=65535).contains(&number),
                "{at}: containerPort {number}"
            );
            if let Some(pn) = p["name"].as_str() {
                assert!(
                    dns_name(pn, 15),
                    "{at}: port name {pn:?} (at most 15 characters)"
                );
                assert!(
                    port_names.insert(pn.to_owned()),
                    "{at}: port name {pn} twice in the pod"
                );
                ports.insert(pn.to_owned(), number);
            }
        }
        // Probes name a port of this container.
        let mut probes = BTreeMap::new();
        for kind in ["readinessProbe", "livenessProbe", "startupProbe"] {
            let probe = &c[kind];
            if probe.is_badvalue() {
                continue;
            }
            let http = &probe["httpGet"];
            assert!(
                !http.is_badvalue(),
                "{at}: {kind}: only httpGet probes here"
            );
            let path = http["path"]
                .as_str()
                .unwrap_or_else(|| panic!("{at}: {kind}.httpGet.path"));
            assert!(path.starts_with('/'), "{at}: {kind} path {path}");
            let port = match &http["port"] {
                Yaml::String(n) => *ports.get(n).unwrap_or_else(|| {
                    panic!("{at}: {kind} names port {n}, which the container lacks")
                }),
                Yaml::Integer(n) => {
                    assert!(
                        ports.values().any(|p| p == n),
                        "{at}: {kind} port {n} is not a containerPort"
                    );
                    *n
                }
                other => panic!("{at}: {kind}.httpGet.port {other:?}"),
            };
            probes.insert(kind, (path.to_owned(), port));
        }
        // Mounts name volumes of the pod.
        let mut config_volume = None;
        for m in list(&c["volumeMounts"]) {
            let v = m["name"]
                .as_str()
                .unwrap_or_else(|| panic!("{at}: volumeMount name"));
            let volume = volumes
                .get(v)
                .unwrap_or_else(|| panic!("{at}: mounts {v}, which the pod lacks"));
            assert!(
                m["mountPath"].as_str().is_some_and(|p| p.starts_with('/')),
                "{at}: mountPath"
            );
            if m["mountPath"].as_str() == Some("/etc/sluice") {
                config_volume = Some(*volume);
            }
        }
        if image.contains("sluice") {
            sluices += 1;
            check_sluice_container(&at, d, c, init, &probes, &ports, config_volume, configs);
        }
    }
    assert!(sluices == 1, "{at}: one sluice container per pod");
    for (name, v) in &volumes {
        if let Some(cm) = v["configMap"]["name"].as_str() {
            assert!(
                configs.contains_key(cm),
                "{at}: volume {name} uses ConfigMap {cm}, defined nowhere under deploy/"
            );
        }
    }
    Pod {
        doc: d,
        labels,
        port_names,
    }
}

/// The sluice container: probes on /readyz and /healthz at the config's metrics port, the
/// client port where the config listens, and a termination grace that covers the drain.
#[allow(clippy::too_many_arguments)]
fn check_sluice_container(
    at: &str,
    d: &Doc,
    c: &Yaml,
    native_sidecar: bool,
    probes: &BTreeMap<&str, (String, i64)>,
    ports: &BTreeMap<String, i64>,
    config_volume: Option<&Yaml>,
    configs: &BTreeMap<String, Config>,
) {
    let volume = config_volume.unwrap_or_else(|| panic!("{at}: nothing mounted at /etc/sluice"));
    let cm = volume["configMap"]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("{at}: config volume is not a ConfigMap"));
    let config = configs
        .get(cm)
        .unwrap_or_else(|| panic!("{at}: mounts ConfigMap {cm}, defined nowhere under deploy/"));
    let args: Vec<&str> = list(&c["args"]).iter().filter_map(Yaml::as_str).collect();
    assert_eq!(args, ["--config", "/etc/sluice/sluice.toml"], "{at}: args");
    let metrics = config
        .metrics_addr()
        .unwrap_or_else(|| panic!("{at}: {cm} has no metrics_listen for the probes"))
        .port();
    assert_eq!(
        probes.get("readinessProbe"),
        Some(&("/readyz".to_owned(), i64::from(metrics))),
        "{at}: readiness on /readyz"
    );
    assert_eq!(
        probes.get("livenessProbe"),
        Some(&("/healthz".to_owned(), i64::from(metrics))),
        "{at}: liveness on /healthz"
    );
    if let Some(p) = ports.get("postgres") {
        assert_eq!(
            *p,
            i64::from(config.listen_addr().port()),
            "{at}: port postgres vs listen in {cm}"
        );
    }
    // The drain: preStop sleep, then SIGTERM, then shutdown_timeout + LAST_CALL at most.
    let pre_stop = &c["lifecycle"]["preStop"];
    let sleep = if native_sidecar {
        Duration::ZERO
    } else {
        let cmd: Vec<&str> = list(&pre_stop["exec"]["command"])
            .iter()
            .filter_map(Yaml::as_str)
            .collect();
        assert_eq!(
            cmd.first(),
            Some(&"/bin/sleep"),
            "{at}: preStop sleeps (Debian slim has /bin/sleep)"
        );
        Duration::from_secs(cmd[1].parse().expect("preStop sleep seconds"))
    };
    let grace = d.yaml["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_i64()
        .unwrap_or_else(|| panic!("{at}: terminationGracePeriodSeconds"));
    let drain = sleep + config.pooler.shutdown_timeout + LAST_CALL;
    assert!(
        Duration::from_secs(grace as u64) > drain,
        "{at}: terminationGracePeriodSeconds {grace} must exceed preStop {sleep:?} + shutdown_timeout {:?} + {LAST_CALL:?}",
        config.pooler.shutdown_timeout
    );
    // And not by a wide margin: a grace far beyond the drain is a stale number.
    assert!(
        Duration::from_secs(grace as u64) <= drain + Duration::from_secs(15),
        "{at}: terminationGracePeriodSeconds {grace} is far beyond the drain {drain:?}"
    );
    let sc = &c["securityContext"];
    assert_eq!(
        sc["allowPrivilegeEscalation"].as_bool(),
        Some(false),
        "{at}: allowPrivilegeEscalation"
    );
    assert_eq!(
        sc["readOnlyRootFilesystem"].as_bool(),
        Some(true),
        "{at}: readOnlyRootFilesystem"
    );
    assert_eq!(
        sc["runAsUser"].as_i64(),
        Some(DOCKER_UID),
        "{at}: runAsUser matches the image's user"
    );
}

/// A Service: selector matching a pod template, ports whose targetPort names exist there.
/// Returns its labels and port names for the ServiceMonitors.
fn check_service(d: &Doc, pods: &[Pod<'_>]) -> (BTreeMap<String, String>, BTreeSet<String>) {
    let at = d.at();
    let selector = string_map(&d.yaml["spec"]["selector"], &format!("{at}: spec.selector"));
    assert!(!selector.is_empty(), "{at}: a Service without a selector");
    let matched: Vec<&Pod<'_>> = pods
        .iter()
        .filter(|p| is_subset(&selector, &p.labels))
        .collect();
    assert!(!matched.is_empty(), "{at}: selects no pod template here");
    let mut names = BTreeSet::new();
    let ports = list(&d.yaml["spec"]["ports"]);
    assert!(!ports.is_empty(), "{at}: no ports");
    for p in ports {
        let port = p["port"].as_i64().unwrap_or_else(|| panic!("{at}: port"));
        assert!((1..=65535).contains(&port), "{at}: port {port}");
        let name = p["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{at}: ports need names when there are several"));
        assert!(
            names.insert(name.to_owned()),
            "{at}: port name {name} twice"
        );
        if let Some(target) = p["targetPort"].as_str() {
            for pod in &matched {
                assert!(
                    pod.port_names.contains(target),
                    "{at}: targetPort {target} missing in {}",
                    pod.doc.at()
                );
            }
        }
    }
    let labels = string_map(&d.yaml["metadata"]["labels"], &at);
    (labels, names)
}

/// The uid the Dockerfile's runtime stage runs as.
const DOCKER_UID: i64 = 10001;

/// Dockerfile instructions, continuation lines joined, comments dropped: (INSTRUCTION, rest).
fn dockerfile() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (instr, rest) = current.split_once(' ').unwrap_or((&current, ""));
        out.push((instr.to_ascii_uppercase(), rest.trim().to_owned()));
        current.clear();
    }
    out
}

#[test]
fn dockerfile_is_multi_stage_non_root_with_a_healthcheck() {
    let instrs = dockerfile();
    let stages: Vec<usize> = instrs
        .iter()
        .enumerate()
        .filter(|(_, (i, _))| i == "FROM")
        .map(|(n, _)| n)
        .collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let build_from = &instrs[stages[0]].1;
    assert!(
        build_from.starts_with("rust:") && build_from.ends_with(" AS build"),
        "{build_from}"
    );
    let runtime_from = &instrs[stages[1]].1;
    assert!(
        runtime_from.starts_with("debian:") && runtime_from.ends_with("-slim"),
        "{runtime_from}"
    );
    // The two stages are the same Debian release, so the binary's glibc is there at run time.
    let release = |from: &str| {
        from.split(['-', ':', ' '])
            .find(|p| ["bookworm", "trixie", "bullseye"].contains(p))
            .map(str::to_owned)
    };
    assert_eq!(
        release(build_from),
        release(runtime_from),
        "same Debian release in both stages"
    );

    let runtime = &instrs[stages[1]..];
    let get = |name: &str| -> Vec<&str> {
        runtime
            .iter()
            .filter(|(i, _)| i == name)
            .map(|(_, r)| r.as_str())
            .collect()
    };

    let users = get("USER");
    assert_eq!(users.len(), 1, "one USER in the runtime stage");
    let user = users[0].split(':').next().unwrap();
    assert!(user != "root" && user != "0", "runs as {user}");
    assert_eq!(user, DOCKER_UID.to_string(), "numeric, for runAsNonRoot");
    assert!(
        get("RUN")
            .iter()
            .any(|r| r.contains("useradd") && r.contains(&format!("--uid {DOCKER_UID}"))),
        "the user exists in the image"
    );

    let health = get("HEALTHCHECK");
    assert_eq!(health.len(), 1);
    assert!(
        health[0].contains("CMD [\"/usr/local/bin/sluice\"")
            && health[0].contains("\"healthcheck\"]"),
        "{}",
        health[0]
    );
    assert_eq!(get("STOPSIGNAL"), ["SIGTERM"]);
    assert_eq!(get("ENTRYPOINT"), ["[\"/usr/local/bin/sluice\"]"]);
    assert_eq!(get("CMD"), ["[\"--config\", \"/etc/sluice/sluice.toml\"]"]);

    // The binary comes from the build stage; the default config from the repository, and it
    // is a valid config whose ports the image exposes and the health check asks.
    let copies = get("COPY");
    assert!(
        copies.contains(&"--from=build /out/sluice /usr/local/bin/sluice"),
        "{copies:?}"
    );
    assert!(instrs[..stages[1]].iter().any(|(i, r)| i == "RUN"
        && r.contains("cargo build --release --locked --bin sluice")
        && r.contains("/out/sluice")));
    assert!(
        copies.contains(&"deploy/docker/sluice.toml /etc/sluice/sluice.toml"),
        "{copies:?}"
    );
    let config = Config::load(&root().join("deploy/docker/sluice.toml"))
        .expect("the image's config is valid");
    let exposed: BTreeSet<u16> = get("EXPOSE")
        .iter()
        .flat_map(|e| e.split_whitespace())
        .map(|p| p.parse().expect("port"))
        .collect();
    let metrics = config
        .metrics_addr()
        .expect("metrics_listen for the HEALTHCHECK");
    assert!(
        metrics.ip().is_unspecified() && config.listen_addr().ip().is_unspecified(),
        "reachable from outside the container"
    );
    assert_eq!(
        exposed,
        BTreeSet::from([config.listen_addr().port(), metrics.port()])
    );
    assert_eq!(
        sluice::healthcheck::default_url(&config).as_deref(),
        Some(format!("http://127.0.0.1:{}/healthz", metrics.port()).as_str())
    );

    // Every file the build copies from the context exists and is not in .dockerignore.
    let ignored: Vec<String> = std::fs::read_to_string(root().join(".dockerignore"))
        .expect(".dockerignore keeps target/ out of the context")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    assert!(ignored.iter().any(|l| l == "target"), "{ignored:?}");
    for (i, rest) in &instrs {
        if i != "COPY" || rest.starts_with("--from") {
            continue;
        }
        let parts: Vec<&str> = rest.split_whitespace().collect();
        for src in &parts[..parts.len() - 1] {
            assert!(root().join(src).exists(), "COPY {src}: no such file");
            let top = src.split('/').next().unwrap();
            assert!(
                !ignored.iter().any(|l| l == top),
                "COPY {src}, but .dockerignore drops {top}"
            );
        }
    }
}

/// A systemd unit as (section, key) → values in order.
fn unit(path: &str) -> BTreeMap<(String, String), Vec<String>> {
    let text = std::fs::read_to_string(root().join(path)).expect("unit file");
    let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_owned();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{path}: {line:?}"));
        assert!(!section.is_empty(), "{path}: {k} outside a section");
        out.entry((section.clone(), k.to_owned()))
            .or_default()
            .push(v.to_owned());
    }
    out
}

#[test]
fn systemd_units_notify_reload_and_outlast_the_drain() {
    let plain = unit("deploy/systemd/sluice.service");
    let template = unit("deploy/systemd/sluice@.service");
    let get = |u: &BTreeMap<(String, String), Vec<String>>, s: &str, k: &str| -> Vec<String> {
        u.get(&(s.to_owned(), k.to_owned()))
            .cloned()
            .unwrap_or_default()
    };
    for u in [&plain, &template] {
        assert_eq!(get(u, "Service", "Type"), ["notify"]);
        assert_eq!(get(u, "Service", "ExecReload"), ["/bin/kill -HUP $MAINPID"]);
        assert_eq!(get(u, "Service", "KillSignal"), ["SIGTERM"]);
        assert_eq!(
            get(u, "Service", "ExecStart"),
            ["/usr/local/bin/sluice --config /etc/sluice/sluice.toml"]
        );
        let stop = humantime::parse_duration(&get(u, "Service", "TimeoutStopSec")[0])
            .expect("TimeoutStopSec");
        let default_drain = sluice::config::PoolerConfig::default().shutdown_timeout + LAST_CALL;
        assert!(
            stop > default_drain,
            "TimeoutStopSec {stop:?} <= the default drain {default_drain:?}"
        );
        // sd_notify needs AF_UNIX; a sandbox that forbids it would leave the unit "activating".
        assert!(
            get(u, "Service", "RestrictAddressFamilies")[0]
                .split(' ')
                .any(|f| f == "AF_UNIX")
        );
        assert_eq!(get(u, "Service", "NoNewPrivileges"), ["yes"]);
        assert_eq!(get(u, "Service", "ProtectSystem"), ["strict"]);
        assert!(!get(u, "Service", "User").is_empty());
    }
    // The template is the plain unit but for its description.
    let strip =
        |u: &BTreeMap<(String, String), Vec<String>>| -> BTreeMap<(String, String), Vec<String>> {
            u.iter()
                .filter(|((_, k), _)| k != "Description")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
    assert_eq!(
        strip(&plain),
        strip(&template),
        "sluice.service and sluice@.service drifted apart"
    );
}
