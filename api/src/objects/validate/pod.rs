//! Pods and pod templates: containers, ports, resources, probes, env,
//! volumes and scheduling constraints.

use std::collections::{BTreeMap, BTreeSet};

use super::security_context;
use super::{
    NameRule, PORT_NAME_RULE, collect, is_port_name, label_map, non_negative, object_meta,
    port_number, port_reference, positive, quantity,
};
use crate::labels;
use crate::objects::field::{FieldError, FieldPath, Problems};
use crate::objects::pod::{
    Affinity, Container, EnvVar, KeyToPath, NodeSelectorTerm, Pod, PodAffinity, PodSpec, PodVolume,
    Probe, RestartPolicy, Toleration, TolerationOperator,
};

/// A Pod.
pub fn pod(pod: &Pod) -> Vec<FieldError> {
    collect(|problems| {
        object_meta(&pod.metadata, NameRule::Subdomain, problems);
        pod_spec(&pod.spec, &FieldPath::new("spec"), false, problems);
    })
}

/// A pod spec; `in_template` for the templates of Deployments and
/// ReplicaSets, whose pods must always restart (a controller replaces them,
/// it does not wait for them to finish).
pub(crate) fn pod_spec(
    spec: &PodSpec,
    path: &FieldPath,
    in_template: bool,
    problems: &mut Problems,
) {
    if spec.containers.is_empty() {
        problems.add(
            &path.child("containers"),
            "at least one container is required",
        );
    }
    let volume_names = volumes(&spec.volumes, &path.child("volumes"), problems);
    let mut container_names = BTreeSet::new();
    for (field, list) in [
        ("containers", &spec.containers),
        ("initContainers", &spec.init_containers),
    ] {
        for (i, c) in list.iter().enumerate() {
            let at = path.child(field).index(i);
            if !c.name.is_empty() && !container_names.insert(c.name.as_str()) {
                problems.add(
                    &at.child("name"),
                    format!("{:?} is used by another container of the pod", c.name),
                );
            }
            container(c, &at, &volume_names, field == "containers", problems);
        }
    }
    if in_template && spec.restart_policy != Some(RestartPolicy::Always) {
        problems.add(
            &path.child("restartPolicy"),
            "must be Always in the pod template of a Deployment or ReplicaSet",
        );
    }
    non_negative(
        spec.termination_grace_period_seconds,
        &path.child("terminationGracePeriodSeconds"),
        problems,
    );
    label_map(&spec.node_selector, &path.child("nodeSelector"), problems);
    if let Some(node_name) = &spec.node_name {
        problems.check(
            labels::is_dns_subdomain(node_name),
            &path.child("nodeName"),
            "must be a node's name (a DNS subdomain)",
        );
    }
    if let Some(affinity) = &spec.affinity {
        self::affinity(affinity, &path.child("affinity"), problems);
    }
    for (i, toleration) in spec.tolerations.iter().enumerate() {
        self::toleration(toleration, &path.child("tolerations").index(i), problems);
    }
    for (i, secret) in spec.image_pull_secrets.iter().enumerate() {
        problems.check(
            !secret.name.is_empty(),
            &path.child("imagePullSecrets").index(i).child("name"),
            "required",
        );
    }
    if let Some(context) = &spec.security_context {
        security_context::pod_security_context(context, &path.child("securityContext"), problems);
    }
}

/// The pod's volumes; answers the names declared, for `volumeMounts`.
fn volumes<'a>(
    volumes: &'a [PodVolume],
    path: &FieldPath,
    problems: &mut Problems,
) -> BTreeSet<&'a str> {
    let mut names = BTreeSet::new();
    for (i, volume) in volumes.iter().enumerate() {
        let at = path.index(i);
        if volume.name.is_empty() {
            problems.add(&at.child("name"), "required");
        } else if !labels::is_dns_label(&volume.name) {
            problems.add(
                &at.child("name"),
                "must be a DNS label: at most 63 lower-case letters, digits or '-', starting and ending with a letter or digit",
            );
        } else if !names.insert(volume.name.as_str()) {
            problems.add(
                &at.child("name"),
                format!("{:?} is used by another volume of the pod", volume.name),
            );
        }
        let sources = [
            volume.config_map.is_some(),
            volume.secret.is_some(),
            volume.persistent_volume_claim.is_some(),
            volume.empty_dir.is_some(),
            volume.host_path.is_some(),
        ];
        match sources.iter().filter(|set| **set).count() {
            1 => {}
            0 => problems.add(
                &at,
                "needs a source: one of configMap, secret, persistentVolumeClaim, emptyDir or hostPath",
            ),
            _ => problems.add(&at, "may have only one source"),
        }
        if let Some(source) = &volume.config_map {
            let at = at.child("configMap");
            problems.check(!source.name.is_empty(), &at.child("name"), "required");
            projected_files(&source.items, source.default_mode, &at, problems);
        }
        if let Some(source) = &volume.secret {
            let at = at.child("secret");
            problems.check(
                !source.secret_name.is_empty(),
                &at.child("secretName"),
                "required",
            );
            projected_files(&source.items, source.default_mode, &at, problems);
        }
        if let Some(source) = &volume.persistent_volume_claim {
            problems.check(
                !source.claim_name.is_empty(),
                &at.child("persistentVolumeClaim").child("claimName"),
                "required",
            );
        }
        if let Some(source) = &volume.host_path {
            problems.check(
                source.path.starts_with('/'),
                &at.child("hostPath").child("path"),
                "must be an absolute path",
            );
        }
        if let Some(limit) = volume
            .empty_dir
            .as_ref()
            .and_then(|e| e.size_limit.as_ref())
        {
            quantity(limit, &at.child("emptyDir").child("sizeLimit"), problems);
        }
    }
    names
}

/// A ConfigMap or Secret volume's `items` and `defaultMode`: each key
/// named, each path relative, without `..` and not starting with `..`
/// (the agent's own names), each mode within 0–0777.
fn projected_files(
    items: &[KeyToPath],
    default_mode: Option<i32>,
    path: &FieldPath,
    problems: &mut Problems,
) {
    let mode_ok = |mode: Option<i32>| mode.is_none_or(|m| (0..=0o777).contains(&m));
    problems.check(
        mode_ok(default_mode),
        &path.child("defaultMode"),
        "must be a file mode between 0 and 0777 (511)",
    );
    for (i, item) in items.iter().enumerate() {
        let at = path.child("items").index(i);
        problems.check(!item.key.is_empty(), &at.child("key"), "required");
        let relative = !item.path.is_empty()
            && !item.path.starts_with('/')
            && !item.path.starts_with("..")
            && !item
                .path
                .split('/')
                .any(|part| part == ".." || part.is_empty());
        problems.check(
            relative,
            &at.child("path"),
            "must be a relative path without '..' that does not start with '..'",
        );
        problems.check(
            mode_ok(item.mode),
            &at.child("mode"),
            "must be a file mode between 0 and 0777 (511)",
        );
    }
}

fn container(
    c: &Container,
    path: &FieldPath,
    volume_names: &BTreeSet<&str>,
    regular: bool,
    problems: &mut Problems,
) {
    if c.name.is_empty() {
        problems.add(&path.child("name"), "required");
    } else if !labels::is_dns_label(&c.name) {
        problems.add(
            &path.child("name"),
            "must be a DNS label: at most 63 lower-case letters, digits or '-', starting and ending with a letter or digit",
        );
    }
    if c.image.trim().is_empty() {
        problems.add(&path.child("image"), "required");
    } else if c.image.chars().any(char::is_whitespace) {
        problems.add(&path.child("image"), "must not contain whitespace");
    }
    let mut port_names = BTreeSet::new();
    for (i, port) in c.ports.iter().enumerate() {
        let at = path.child("ports").index(i);
        port_number(port.container_port, &at.child("containerPort"), problems);
        // 0 is Kubernetes' "no host port".
        if let Some(host_port) = port.host_port.filter(|port| *port != 0) {
            port_number(host_port, &at.child("hostPort"), problems);
        }
        if let Some(name) = &port.name {
            if !is_port_name(name) {
                problems.add(
                    &at.child("name"),
                    format!("{name:?} is not a port name {PORT_NAME_RULE}"),
                );
            } else if !port_names.insert(name.as_str()) {
                problems.add(
                    &at.child("name"),
                    format!("{name:?} names another port of the container"),
                );
            }
        }
        if let Some(ip) = &port.host_ip {
            problems.check(
                ip.parse::<std::net::IpAddr>().is_ok(),
                &at.child("hostIP"),
                format!("{ip:?} is not an IP address"),
            );
        }
    }
    if let Some(resources) = &c.resources {
        let at = path.child("resources");
        let requests = resource_list(&resources.requests, &at.child("requests"), problems);
        let limits = resource_list(&resources.limits, &at.child("limits"), problems);
        for (name, request) in &requests {
            if let Some(limit) = limits.get(name)
                && request > limit
            {
                problems.add(
                    &at.child("requests").key(name),
                    format!(
                        "must be less than or equal to the {name} limit ({} > {})",
                        request, limit
                    ),
                );
            }
        }
    }
    for (field, probe, needs_single_success) in [
        ("livenessProbe", &c.liveness_probe, true),
        ("readinessProbe", &c.readiness_probe, false),
        ("startupProbe", &c.startup_probe, true),
    ] {
        let Some(probe) = probe else { continue };
        let at = path.child(field);
        if !regular {
            problems.add(&at, "init containers may not have probes");
            continue;
        }
        self::probe(probe, &at, needs_single_success, problems);
    }
    for (i, env) in c.env.iter().enumerate() {
        env_var(env, &path.child("env").index(i), problems);
    }
    for (i, source) in c.env_from.iter().enumerate() {
        let at = path.child("envFrom").index(i);
        match (&source.config_map_ref, &source.secret_ref) {
            (Some(r), None) => problems.check(
                !r.name.is_empty(),
                &at.child("configMapRef").child("name"),
                "required",
            ),
            (None, Some(r)) => problems.check(
                !r.name.is_empty(),
                &at.child("secretRef").child("name"),
                "required",
            ),
            (None, None) => problems.add(&at, "needs one of configMapRef or secretRef"),
            (Some(_), Some(_)) => {
                problems.add(&at, "may have only one of configMapRef or secretRef")
            }
        }
        if let Some(prefix) = &source.prefix {
            problems.check(
                is_env_var_name(prefix),
                &at.child("prefix"),
                format!("{prefix:?} {ENV_NAME_RULE}"),
            );
        }
    }
    if let Some(context) = &c.security_context {
        security_context::security_context(context, &path.child("securityContext"), problems);
    }
    let mut mount_paths = BTreeSet::new();
    for (i, mount) in c.volume_mounts.iter().enumerate() {
        let at = path.child("volumeMounts").index(i);
        if mount.name.is_empty() {
            problems.add(&at.child("name"), "required");
        } else if !volume_names.contains(mount.name.as_str()) {
            problems.add(
                &at.child("name"),
                format!("{:?} is not a volume of the pod", mount.name),
            );
        }
        if mount.mount_path.is_empty() {
            problems.add(&at.child("mountPath"), "required");
        } else if !mount_paths.insert(mount.mount_path.as_str()) {
            problems.add(
                &at.child("mountPath"),
                format!("{:?} is mounted more than once", mount.mount_path),
            );
        }
        if let Some(sub_path) = &mount.sub_path {
            problems.check(
                !sub_path.starts_with('/') && !sub_path.split('/').any(|part| part == ".."),
                &at.child("subPath"),
                "must be a relative path without '..'",
            );
        }
    }
}

/// Resource names Kubernetes knows without a domain prefix.
const STANDARD_RESOURCES: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];

/// A map of requests or limits; answers the quantities that parse.
fn resource_list(
    list: &BTreeMap<String, String>,
    path: &FieldPath,
    problems: &mut Problems,
) -> BTreeMap<String, crate::quantity::Quantity> {
    let mut parsed = BTreeMap::new();
    for (name, text) in list {
        let at = path.key(name);
        let known = STANDARD_RESOURCES.contains(&name.as_str())
            || name.starts_with("hugepages-")
            || (name.contains('/') && labels::validate_key(name).is_ok());
        if !known {
            problems.add(
                &at,
                format!(
                    "unknown resource {name:?}: use cpu, memory, ephemeral-storage, or a name with a domain such as example.com/gpu"
                ),
            );
        }
        if let Some(q) = quantity(text, &at, problems) {
            if q.nano_value() < 0 {
                problems.add(&at, "must not be negative");
            } else {
                parsed.insert(name.clone(), q);
            }
        }
    }
    parsed
}

fn probe(probe: &Probe, path: &FieldPath, needs_single_success: bool, problems: &mut Problems) {
    let handlers = [
        probe.http_get.is_some(),
        probe.tcp_socket.is_some(),
        probe.exec.is_some(),
    ];
    match handlers.iter().filter(|set| **set).count() {
        1 => {}
        0 => problems.add(path, "needs a handler: one of httpGet, tcpSocket or exec"),
        _ => problems.add(
            path,
            "may have only one handler of httpGet, tcpSocket and exec",
        ),
    }
    if let Some(http) = &probe.http_get {
        let at = path.child("httpGet");
        port_reference(&http.port, &at.child("port"), problems);
        if let Some(scheme) = &http.scheme {
            problems.check(
                matches!(scheme.as_str(), "HTTP" | "HTTPS"),
                &at.child("scheme"),
                format!("{scheme:?} is not a scheme: use HTTP or HTTPS"),
            );
        }
        if let Some(p) = &http.path {
            problems.check(
                p.is_empty() || p.starts_with('/'),
                &at.child("path"),
                "must start with '/'",
            );
        }
        for (i, header) in http.http_headers.iter().enumerate() {
            problems.check(
                !header.name.is_empty(),
                &at.child("httpHeaders").index(i).child("name"),
                "required",
            );
        }
    }
    if let Some(tcp) = &probe.tcp_socket {
        port_reference(&tcp.port, &path.child("tcpSocket").child("port"), problems);
    }
    if let Some(exec) = &probe.exec {
        problems.check(
            !exec.command.is_empty(),
            &path.child("exec").child("command"),
            "required",
        );
    }
    non_negative(
        probe.initial_delay_seconds,
        &path.child("initialDelaySeconds"),
        problems,
    );
    positive(probe.period_seconds, &path.child("periodSeconds"), problems);
    positive(
        probe.timeout_seconds,
        &path.child("timeoutSeconds"),
        problems,
    );
    positive(
        probe.success_threshold,
        &path.child("successThreshold"),
        problems,
    );
    positive(
        probe.failure_threshold,
        &path.child("failureThreshold"),
        problems,
    );
    if needs_single_success && probe.success_threshold.is_some_and(|n| n != 1) {
        problems.add(
            &path.child("successThreshold"),
            "must be 1 for liveness and startup probes",
        );
    }
    let grace = path.child("terminationGracePeriodSeconds");
    if needs_single_success {
        positive(probe.termination_grace_period_seconds, &grace, problems);
    } else if probe.termination_grace_period_seconds.is_some() {
        problems.add(&grace, "must not be set for readiness probes");
    }
}

/// What [`is_env_var_name`] accepts, for messages.
const ENV_NAME_RULE: &str = "is not a valid environment variable name: letters, digits, '_', '-' or '.', not starting with a digit";

/// As Kubernetes: `[-._a-zA-Z][-._a-zA-Z0-9]*`.
fn is_env_var_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
    bytes
        .next()
        .is_some_and(|first| allowed(first) && !first.is_ascii_digit())
        && bytes.all(allowed)
}

fn env_var(env: &EnvVar, path: &FieldPath, problems: &mut Problems) {
    if env.name.is_empty() {
        problems.add(&path.child("name"), "required");
    } else if !is_env_var_name(&env.name) {
        problems.add(
            &path.child("name"),
            format!("{:?} {ENV_NAME_RULE}", env.name),
        );
    }
    let Some(source) = &env.value_from else {
        return;
    };
    let at = path.child("valueFrom");
    if env.value.as_deref().is_some_and(|v| !v.is_empty()) {
        problems.add(&at, "may not be given together with value");
    }
    let count = [
        source.secret_key_ref.is_some(),
        source.config_map_key_ref.is_some(),
        source.field_ref.is_some(),
    ]
    .iter()
    .filter(|set| **set)
    .count();
    match count {
        1 => {}
        0 => problems.add(
            &at,
            "needs a source: one of secretKeyRef, configMapKeyRef or fieldRef",
        ),
        _ => problems.add(&at, "may have only one source"),
    }
    for (field, reference) in [
        ("secretKeyRef", &source.secret_key_ref),
        ("configMapKeyRef", &source.config_map_key_ref),
    ] {
        if let Some(reference) = reference {
            let at = at.child(field);
            problems.check(!reference.name.is_empty(), &at.child("name"), "required");
            problems.check(!reference.key.is_empty(), &at.child("key"), "required");
        }
    }
    if let Some(field_ref) = &source.field_ref {
        problems.check(
            !field_ref.field_path.is_empty(),
            &at.child("fieldRef").child("fieldPath"),
            "required",
        );
    }
}

fn toleration(toleration: &Toleration, path: &FieldPath, problems: &mut Problems) {
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty()
        && let Err(reason) = labels::validate_key(key)
    {
        problems.add(&path.child("key"), reason);
    }
    match toleration.operator.unwrap_or_default() {
        TolerationOperator::Exists => problems.check(
            toleration.value.as_deref().unwrap_or("").is_empty(),
            &path.child("value"),
            "must be empty when operator is Exists",
        ),
        TolerationOperator::Equal => {
            problems.check(
                !key.is_empty(),
                &path.child("operator"),
                "must be Exists when key is empty",
            );
            if let Some(value) = &toleration.value
                && let Err(reason) = labels::validate_value(value)
            {
                problems.add(&path.child("value"), reason);
            }
        }
    }
    if toleration.toleration_seconds.is_some() {
        problems.check(
            toleration.effect == Some(crate::objects::pod::TaintEffect::NoExecute),
            &path.child("effect"),
            "must be NoExecute when tolerationSeconds is set",
        );
    }
}

fn affinity(affinity: &Affinity, path: &FieldPath, problems: &mut Problems) {
    if let Some(node) = &affinity.node_affinity {
        let at = path.child("nodeAffinity");
        if let Some(required) = &node.required_during_scheduling_ignored_during_execution {
            let terms = at
                .child("requiredDuringSchedulingIgnoredDuringExecution")
                .child("nodeSelectorTerms");
            problems.check(
                !required.node_selector_terms.is_empty(),
                &terms,
                "at least one term is required",
            );
            for (i, term) in required.node_selector_terms.iter().enumerate() {
                node_selector_term(term, &terms.index(i), problems);
            }
        }
        for (i, preferred) in node
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .enumerate()
        {
            let at = at
                .child("preferredDuringSchedulingIgnoredDuringExecution")
                .index(i);
            weight(preferred.weight, &at.child("weight"), problems);
            node_selector_term(&preferred.preference, &at.child("preference"), problems);
        }
    }
    for (field, pod_affinity) in [
        ("podAffinity", &affinity.pod_affinity),
        ("podAntiAffinity", &affinity.pod_anti_affinity),
    ] {
        if let Some(pod_affinity) = pod_affinity {
            self::pod_affinity(pod_affinity, &path.child(field), problems);
        }
    }
}

fn weight(weight: i32, path: &FieldPath, problems: &mut Problems) {
    problems.check(
        (1..=100).contains(&weight),
        path,
        format!("{weight} must be between 1 and 100"),
    );
}

fn node_selector_term(term: &NodeSelectorTerm, path: &FieldPath, problems: &mut Problems) {
    for (field, requirements) in [
        ("matchExpressions", &term.match_expressions),
        ("matchFields", &term.match_fields),
    ] {
        for (i, requirement) in requirements.iter().enumerate() {
            let at = path.child(field).index(i);
            if field == "matchFields" {
                problems.check(
                    requirement.key == "metadata.name",
                    &at.child("key"),
                    "only metadata.name is supported",
                );
            } else if let Err(reason) = labels::validate_key(&requirement.key) {
                problems.add(&at.child("key"), reason);
            }
            let values = requirement.values.len();
            let reason = match requirement.operator.as_str() {
                "In" | "NotIn" if values == 0 => Some("needs at least one value"),
                "Exists" | "DoesNotExist" if values > 0 => Some("takes no values"),
                "Gt" | "Lt" if values != 1 || requirement.values[0].parse::<i64>().is_err() => {
                    Some("needs exactly one integer value")
                }
                "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => None,
                _ => {
                    problems.add(
                        &at.child("operator"),
                        format!(
                            "{:?} is not an operator: use In, NotIn, Exists, DoesNotExist, Gt or Lt",
                            requirement.operator
                        ),
                    );
                    None
                }
            };
            if let Some(reason) = reason {
                problems.add(&at.child("values"), reason);
            }
        }
    }
}

fn pod_affinity(affinity: &PodAffinity, path: &FieldPath, problems: &mut Problems) {
    let required = path.child("requiredDuringSchedulingIgnoredDuringExecution");
    for (i, term) in affinity
        .required_during_scheduling_ignored_during_execution
        .iter()
        .enumerate()
    {
        pod_affinity_term(term, &required.index(i), problems);
    }
    let preferred = path.child("preferredDuringSchedulingIgnoredDuringExecution");
    for (i, weighted) in affinity
        .preferred_during_scheduling_ignored_during_execution
        .iter()
        .enumerate()
    {
        let at = preferred.index(i);
        weight(weighted.weight, &at.child("weight"), problems);
        pod_affinity_term(
            &weighted.pod_affinity_term,
            &at.child("podAffinityTerm"),
            problems,
        );
    }
}

fn pod_affinity_term(
    term: &crate::objects::pod::PodAffinityTerm,
    path: &FieldPath,
    problems: &mut Problems,
) {
    if term.topology_key.is_empty() {
        problems.add(&path.child("topologyKey"), "required");
    } else if let Err(reason) = labels::validate_key(&term.topology_key) {
        problems.add(&path.child("topologyKey"), reason);
    }
    if let Some(selector) = &term.label_selector
        && let Err(error) = selector.to_selector()
    {
        problems.add(&path.child("labelSelector"), error.reason);
    }
}
