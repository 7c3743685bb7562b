//! Kubernetes' Pod Security Standards: the levels `privileged`, `baseline`
//! and `restricted`, and the checks a pod (or a workload's pod template)
//! must pass at each, worded as kube-apiserver words them
//! (`violates PodSecurity "baseline:latest": hostPath volumes (volume "docker")`).
//!
//! Pure: the server's admission and the agent's second look both call
//! [`check`], so the two can never disagree on what a level allows.
//!
//! As in Kubernetes, the checks run in a fixed order (baseline checks by
//! their id, then restricted checks by theirs), and three restricted checks
//! replace a baseline one: restricted volume types replace hostPath
//! volumes, restricted capabilities replace baseline capabilities, and the
//! restricted seccomp check replaces the baseline one.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::objects::field::FieldPath;
use crate::objects::meta::ObjectMeta;
use crate::objects::pod::{
    AppArmorProfile, AppArmorProfileType, Container, PodSecurityContext, PodSpec, ProcMountType,
    SeLinuxOptions, SeccompProfile, SeccompProfileType, SecurityContext,
    WindowsSecurityContextOptions,
};
use crate::objects::{Deployment, FieldError, Kind, Pod, ReplicaSet, from_value};

/// How much a tenant's pods may reach of their node.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Unrestricted: host namespaces, host paths, any privilege. For the
    /// platform's own system tenants; only the platform admin sets it.
    Privileged,
    /// Prevents known privilege escalations (the default).
    #[default]
    Baseline,
    /// Hardened: non-root, no privilege escalation, no capabilities but
    /// `NET_BIND_SERVICE`, a seccomp profile.
    Restricted,
}

/// A level name that is none of `privileged`, `baseline`, `restricted`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a Pod Security level: use privileged, baseline or restricted")]
pub struct UnknownLevel(pub String);

impl Level {
    /// Every level, loosest first.
    pub const ALL: [Level; 3] = [Level::Privileged, Level::Baseline, Level::Restricted];

    /// `privileged`, `baseline` or `restricted`.
    pub fn parse(name: &str) -> Result<Level, UnknownLevel> {
        Level::ALL
            .into_iter()
            .find(|level| level.name() == name)
            .ok_or_else(|| UnknownLevel(name.to_owned()))
    }

    /// The level's name.
    pub fn name(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

impl fmt::Display for Level {
    /// As Kubernetes names a level and version: `baseline:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:latest", self.name())
    }
}

/// One failed check: Kubernetes' reason and detail, and the fields that
/// caused it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// What the check is about (`hostPath volumes`).
    pub reason: String,
    /// Which parts of the pod fail it (`volume "docker"`).
    pub detail: String,
    /// The offending fields' paths
    /// (`spec.template.spec.volumes[0].hostPath`).
    pub fields: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.detail)
    }
}

/// Kubernetes' message for a pod that fails `level`:
/// `violates PodSecurity "baseline:latest": hostPath volumes (volume "docker"), …`.
pub fn message(level: Level, violations: &[Violation]) -> String {
    format!("violates {}", summary(level, violations))
}

/// Kubernetes' warning for an object that would fail `level` (its `warn`
/// and `audit` modes): `would violate PodSecurity "restricted:latest": …`.
pub fn warning(level: Level, violations: &[Violation]) -> String {
    format!("would violate {}", summary(level, violations))
}

fn summary(level: Level, violations: &[Violation]) -> String {
    let joined: Vec<String> = violations.iter().map(Violation::to_string).collect();
    format!("PodSecurity \"{level}\": {}", joined.join(", "))
}

/// Checks a pod's metadata and spec against `level`; empty when it passes.
/// `at` is where the pod's `metadata` and `spec` are in the object
/// (`""` for a Pod, `"spec.template"` for a workload's template), for the
/// field paths.
pub fn check(level: Level, metadata: &ObjectMeta, spec: &PodSpec, at: &str) -> Vec<Violation> {
    let base = FieldPath::new(at);
    let pod = PodView {
        metadata,
        spec,
        meta_path: base.child("metadata"),
        spec_path: base.child("spec"),
    };
    let checks: &[fn(&PodView<'_>) -> Option<Violation>] = match level {
        Level::Privileged => &[],
        Level::Baseline => &[
            app_armor_profile,
            capabilities_baseline,
            host_namespaces,
            host_path_volumes,
            host_ports,
            privileged,
            proc_mount,
            se_linux_options,
            seccomp_profile_baseline,
            sysctls,
            windows_host_process,
        ],
        Level::Restricted => &[
            app_armor_profile,
            host_namespaces,
            host_ports,
            privileged,
            proc_mount,
            se_linux_options,
            sysctls,
            windows_host_process,
            allow_privilege_escalation,
            capabilities_restricted,
            restricted_volumes,
            run_as_non_root,
            run_as_user,
            seccomp_profile_restricted,
        ],
    };
    checks.iter().filter_map(|check| check(&pod)).collect()
}

/// The kinds whose objects run pods, and so are checked: Pods, and the
/// pod templates of Deployments and ReplicaSets.
pub const CHECKED_KINDS: [Kind; 3] = [Kind::Pod, Kind::Deployment, Kind::ReplicaSet];

/// Checks a stored or decoded object of `kind` against `level`: a Pod, or
/// the pod template of a Deployment or ReplicaSet (other kinds pass). Field
/// paths are from the object's root. An object that does not read as its
/// kind answers its field errors.
pub fn check_object(
    level: Level,
    kind: Kind,
    object: &serde_json::Value,
) -> Result<Vec<Violation>, Vec<FieldError>> {
    if level == Level::Privileged {
        return Ok(Vec::new());
    }
    Ok(match kind {
        Kind::Pod => {
            let pod: Pod = from_value(object.clone())?;
            check(level, &pod.metadata, &pod.spec, "")
        }
        Kind::Deployment => {
            let deployment: Deployment = from_value(object.clone())?;
            let template = &deployment.spec.template;
            check(level, &template.metadata, &template.spec, "spec.template")
        }
        Kind::ReplicaSet => {
            let replica_set: ReplicaSet = from_value(object.clone())?;
            let template = &replica_set.spec.template;
            check(level, &template.metadata, &template.spec, "spec.template")
        }
        _ => Vec::new(),
    })
}

/// Capabilities a baseline container may add.
const BASELINE_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Sysctls Kubernetes counts as safe: namespaced, and unable to affect
/// other pods or the node.
const SAFE_SYSCTLS: [&str; 12] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ping_group_range",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.tcp_wmem",
];

/// SELinux types a baseline pod may ask for.
const SELINUX_TYPES: [&str; 4] = [
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

/// The annotation prefix of the deprecated per-container AppArmor profile.
pub const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

/// A pod and where its parts are.
struct PodView<'a> {
    metadata: &'a ObjectMeta,
    spec: &'a PodSpec,
    meta_path: FieldPath,
    spec_path: FieldPath,
}

impl PodView<'_> {
    /// Every container with its path, init containers first, as
    /// Kubernetes visits them.
    fn containers(&self) -> impl Iterator<Item = (&Container, FieldPath)> {
        let init = self
            .spec
            .init_containers
            .iter()
            .enumerate()
            .map(|(i, c)| (c, self.spec_path.child("initContainers").index(i)));
        let regular = self
            .spec
            .containers
            .iter()
            .enumerate()
            .map(|(i, c)| (c, self.spec_path.child("containers").index(i)));
        init.chain(regular)
    }

    /// The pod's `securityContext` path.
    fn context_path(&self) -> FieldPath {
        self.spec_path.child("securityContext")
    }
}

/// Names of things that fail a check, with the fields that made them fail.
#[derive(Default)]
struct Offenders {
    names: Vec<String>,
    fields: Vec<String>,
}

impl Offenders {
    fn add(&mut self, name: &str, field: &FieldPath) {
        self.names.push(name.to_owned());
        self.fields.push(field.as_str().to_owned());
    }

    fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// `container "a"` or `containers "a", "b"`.
    fn containers(&self) -> String {
        format!(
            "{} {}",
            pluralize("container", "containers", self.names.len()),
            join_quote(&self.names)
        )
    }
}

fn pluralize<'a>(one: &'a str, many: &'a str, count: usize) -> &'a str {
    if count == 1 { one } else { many }
}

/// `"a", "b"`, as Kubernetes lists names (quoted, not escaped).
fn join_quote<S: AsRef<str>>(items: &[S]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|item| format!("\"{}\"", item.as_ref()))
        .collect();
    quoted.join(", ")
}

fn violation(reason: &str, detail: String, fields: Vec<String>) -> Option<Violation> {
    Some(Violation {
        reason: reason.to_owned(),
        detail,
        fields,
    })
}

/// The containers whose `securityContext` (absent: `None`) `bad` finds
/// fault with, each with the field below `securityContext` at `field`.
fn containers_where(
    pod: &PodView<'_>,
    bad: impl Fn(Option<&SecurityContext>) -> bool,
    field: &[&str],
) -> Offenders {
    let mut containers = Offenders::default();
    for (container, at) in pod.containers() {
        if bad(container.security_context.as_ref()) {
            let at = field
                .iter()
                .fold(at.child("securityContext"), |at, name| at.child(name));
            containers.add(&container.name, &at);
        }
    }
    containers
}

/// Who set a forbidden value, as Kubernetes lists them
/// (`pod and containers "a", "b"`), and the fields they set.
#[derive(Default)]
struct Setters {
    who: Vec<String>,
    fields: Vec<String>,
}

impl Setters {
    /// The pod's `securityContext`, if `bad` finds fault with it, and the
    /// containers' that `bad_container` finds fault with; `field` is the
    /// same below either.
    fn of(
        pod: &PodView<'_>,
        bad: impl Fn(&PodSecurityContext) -> bool,
        bad_container: impl Fn(&SecurityContext) -> bool,
        field: &[&str],
    ) -> Setters {
        let mut setters = Setters::default();
        if pod.spec.security_context.as_ref().is_some_and(bad) {
            let at = field
                .iter()
                .fold(pod.context_path(), |at, name| at.child(name));
            setters.who.push("pod".to_owned());
            setters.fields.push(at.as_str().to_owned());
        }
        setters.add_containers(containers_where(
            pod,
            |context| context.is_some_and(&bad_container),
            field,
        ));
        setters
    }

    fn add_containers(&mut self, containers: Offenders) {
        if !containers.is_empty() {
            self.who.push(containers.containers());
            self.fields.extend(containers.fields);
        }
    }

    fn is_empty(&self) -> bool {
        self.who.is_empty()
    }

    /// `pod and container "a"`.
    fn who(&self) -> String {
        self.who.join(" and ")
    }
}

fn app_armor_profile(pod: &PodView<'_>) -> Option<Violation> {
    let unconfined = |profile: &Option<AppArmorProfile>| {
        profile.as_ref().and_then(|p| p.type_) == Some(AppArmorProfileType::Unconfined)
    };
    let mut setters = Setters::of(
        pod,
        |c| unconfined(&c.app_armor_profile),
        |c| unconfined(&c.app_armor_profile),
        &["appArmorProfile", "type"],
    );
    let mut values = Vec::new();
    if !setters.is_empty() {
        values.push("Unconfined".to_owned());
    }
    let mut annotations: Vec<(String, String)> = pod
        .metadata
        .annotations
        .iter()
        .filter(|(key, value)| {
            key.starts_with(APPARMOR_ANNOTATION_PREFIX)
                && !(value.is_empty()
                    || value.as_str() == "runtime/default"
                    || value.starts_with("localhost/"))
        })
        .map(|(key, value)| {
            let field = pod.meta_path.child("annotations").key(key);
            (format!("{key}=\"{value}\""), field.as_str().to_owned())
        })
        .collect();
    annotations.sort();
    if !annotations.is_empty() {
        let who = pluralize("annotation", "annotations", annotations.len());
        setters.who.push(who.to_owned());
        for (text, field) in annotations {
            values.push(text);
            setters.fields.push(field);
        }
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        pluralize(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            values.len(),
        ),
        format!(
            "{} must not set AppArmor profile type to {}",
            setters.who(),
            join_quote(&values)
        ),
        setters.fields,
    )
}

/// Containers that add capabilities outside `allowed`, and those
/// capabilities.
fn added_capabilities(pod: &PodView<'_>, allowed: &[&str]) -> (Offenders, BTreeSet<String>) {
    let mut containers = Offenders::default();
    let mut forbidden = BTreeSet::new();
    for (container, at) in pod.containers() {
        let Some(capabilities) = container
            .security_context
            .as_ref()
            .and_then(|c| c.capabilities.as_ref())
        else {
            continue;
        };
        let mut bad = false;
        for capability in &capabilities.add {
            if !allowed.contains(&capability.as_str()) {
                bad = true;
                forbidden.insert(capability.clone());
            }
        }
        if bad {
            let at = at
                .child("securityContext")
                .child("capabilities")
                .child("add");
            containers.add(&container.name, &at);
        }
    }
    (containers, forbidden)
}

fn must_not_add(containers: &Offenders, capabilities: &BTreeSet<String>) -> String {
    let capabilities: Vec<&String> = capabilities.iter().collect();
    format!(
        "{} must not include {} in securityContext.capabilities.add",
        containers.containers(),
        join_quote(&capabilities)
    )
}

fn capabilities_baseline(pod: &PodView<'_>) -> Option<Violation> {
    let (containers, capabilities) = added_capabilities(pod, &BASELINE_CAPABILITIES);
    if containers.is_empty() {
        return None;
    }
    let detail = must_not_add(&containers, &capabilities);
    violation("non-default capabilities", detail, containers.fields)
}

fn host_namespaces(pod: &PodView<'_>) -> Option<Violation> {
    let mut set = Vec::new();
    let mut fields = Vec::new();
    for (field, value) in [
        ("hostNetwork", pod.spec.host_network),
        ("hostPID", pod.spec.host_pid),
        ("hostIPC", pod.spec.host_ipc),
    ] {
        if value == Some(true) {
            set.push(format!("{field}=true"));
            fields.push(pod.spec_path.child(field).as_str().to_owned());
        }
    }
    if set.is_empty() {
        return None;
    }
    violation("host namespaces", set.join(", "), fields)
}

/// Volumes with a `hostPath` source, the only source Berth has that
/// Kubernetes' restricted list leaves out.
fn host_path_offenders(pod: &PodView<'_>) -> Offenders {
    let mut volumes = Offenders::default();
    for (i, volume) in pod.spec.volumes.iter().enumerate() {
        if volume.host_path.is_some() {
            let at = pod.spec_path.child("volumes").index(i).child("hostPath");
            volumes.add(&volume.name, &at);
        }
    }
    volumes
}

fn host_path_volumes(pod: &PodView<'_>) -> Option<Violation> {
    let volumes = host_path_offenders(pod);
    if volumes.is_empty() {
        return None;
    }
    let detail = format!(
        "{} {}",
        pluralize("volume", "volumes", volumes.names.len()),
        join_quote(&volumes.names)
    );
    violation("hostPath volumes", detail, volumes.fields)
}

fn host_ports(pod: &PodView<'_>) -> Option<Violation> {
    let mut containers = Offenders::default();
    let mut fields = Vec::new();
    // Kubernetes sorts the ports as text.
    let mut ports = BTreeSet::new();
    for (container, at) in pod.containers() {
        let mut bad = false;
        for (i, port) in container.ports.iter().enumerate() {
            if let Some(host_port) = port.host_port.filter(|p| *p != 0) {
                bad = true;
                ports.insert(host_port.to_string());
                let field = at.child("ports").index(i).child("hostPort");
                fields.push(field.as_str().to_owned());
            }
        }
        if bad {
            containers.names.push(container.name.clone());
        }
    }
    if containers.is_empty() {
        return None;
    }
    let ports: Vec<String> = ports.into_iter().collect();
    let count = containers.names.len();
    let detail = format!(
        "{} {} {} {}",
        containers.containers(),
        pluralize("uses", "use", count),
        pluralize("hostPort", "hostPorts", ports.len()),
        ports.join(", ")
    );
    violation("hostPort", detail, fields)
}

fn privileged(pod: &PodView<'_>) -> Option<Violation> {
    let containers = containers_where(
        pod,
        |c| c.is_some_and(|c| c.privileged == Some(true)),
        &["privileged"],
    );
    if containers.is_empty() {
        return None;
    }
    let detail = format!(
        "{} must not set securityContext.privileged=true",
        containers.containers()
    );
    violation("privileged", detail, containers.fields)
}

fn proc_mount(pod: &PodView<'_>) -> Option<Violation> {
    let containers = containers_where(
        pod,
        |c| c.is_some_and(|c| c.proc_mount == Some(ProcMountType::Unmasked)),
        &["procMount"],
    );
    if containers.is_empty() {
        return None;
    }
    let detail = format!(
        "{} must not set securityContext.procMount to \"Unmasked\"",
        containers.containers()
    );
    violation("procMount", detail, containers.fields)
}

/// What is wrong with one SELinux context, as the checks collect it.
#[derive(Default)]
struct SeLinuxProblems {
    types: BTreeSet<String>,
    user: bool,
    role: bool,
    fields: Vec<String>,
}

impl SeLinuxProblems {
    /// Records what `options` gets wrong; whether it got anything wrong.
    fn inspect(&mut self, options: &SeLinuxOptions, at: &FieldPath) -> bool {
        let mut bad = false;
        let kind = options.type_.as_deref().unwrap_or_default();
        if !kind.is_empty() && !SELINUX_TYPES.contains(&kind) {
            self.types.insert(kind.to_owned());
            self.fields.push(at.child("type").as_str().to_owned());
            bad = true;
        }
        for (field, value, seen) in [
            ("user", &options.user, &mut self.user),
            ("role", &options.role, &mut self.role),
        ] {
            if value.as_deref().is_some_and(|v| !v.is_empty()) {
                *seen = true;
                self.fields.push(at.child(field).as_str().to_owned());
                bad = true;
            }
        }
        bad
    }
}

fn se_linux_options(pod: &PodView<'_>) -> Option<Violation> {
    let mut problems = SeLinuxProblems::default();
    let mut setters = Vec::new();
    if let Some(options) = pod
        .spec
        .security_context
        .as_ref()
        .and_then(|c| c.se_linux_options.as_ref())
        && problems.inspect(options, &pod.context_path().child("seLinuxOptions"))
    {
        setters.push("pod".to_owned());
    }
    let mut containers = Offenders::default();
    for (container, at) in pod.containers() {
        if let Some(options) = container
            .security_context
            .as_ref()
            .and_then(|c| c.se_linux_options.as_ref())
            && problems.inspect(
                options,
                &at.child("securityContext").child("seLinuxOptions"),
            )
        {
            containers.names.push(container.name.clone());
        }
    }
    if !containers.is_empty() {
        setters.push(containers.containers());
    }
    if setters.is_empty() {
        return None;
    }
    let mut data = Vec::new();
    if !problems.types.is_empty() {
        let types: Vec<&String> = problems.types.iter().collect();
        data.push(format!(
            "{} {}",
            pluralize("type", "types", types.len()),
            join_quote(&types)
        ));
    }
    if problems.user {
        data.push("user may not be set".to_owned());
    }
    if problems.role {
        data.push("role may not be set".to_owned());
    }
    let detail = format!(
        "{} set forbidden securityContext.seLinuxOptions: {}",
        setters.join(" and "),
        data.join("; ")
    );
    violation("seLinuxOptions", detail, problems.fields)
}

fn seccomp_profile_baseline(pod: &PodView<'_>) -> Option<Violation> {
    let unconfined = |profile: &Option<SeccompProfile>| {
        profile.as_ref().and_then(|p| p.type_) == Some(SeccompProfileType::Unconfined)
    };
    let setters = Setters::of(
        pod,
        |c| unconfined(&c.seccomp_profile),
        |c| unconfined(&c.seccomp_profile),
        &["seccompProfile", "type"],
    );
    if setters.is_empty() {
        return None;
    }
    let detail = format!(
        "{} must not set securityContext.seccompProfile.type to \"Unconfined\"",
        setters.who()
    );
    violation("seccompProfile", detail, setters.fields)
}

fn container_seccomp(container: &Container) -> Option<SeccompProfileType> {
    container
        .security_context
        .as_ref()
        .and_then(|c| c.seccomp_profile.as_ref())
        .and_then(|p| p.type_)
}

fn sysctls(pod: &PodView<'_>) -> Option<Violation> {
    let mut forbidden = Offenders::default();
    if let Some(context) = &pod.spec.security_context {
        for (i, sysctl) in context.sysctls.iter().enumerate() {
            if !SAFE_SYSCTLS.contains(&sysctl.name.as_str()) {
                let at = pod.context_path().child("sysctls").index(i).child("name");
                forbidden.add(&sysctl.name, &at);
            }
        }
    }
    if forbidden.is_empty() {
        return None;
    }
    violation(
        "forbidden sysctls",
        forbidden.names.join(", "),
        forbidden.fields,
    )
}

fn windows_host_process(pod: &PodView<'_>) -> Option<Violation> {
    let host_process = |options: &Option<WindowsSecurityContextOptions>| {
        options.as_ref().and_then(|w| w.host_process) == Some(true)
    };
    let setters = Setters::of(
        pod,
        |c| host_process(&c.windows_options),
        |c| host_process(&c.windows_options),
        &["windowsOptions", "hostProcess"],
    );
    if setters.is_empty() {
        return None;
    }
    let detail = format!(
        "{} must not set securityContext.windowsOptions.hostProcess=true",
        setters.who()
    );
    violation("hostProcess", detail, setters.fields)
}

fn allow_privilege_escalation(pod: &PodView<'_>) -> Option<Violation> {
    let containers = containers_where(
        pod,
        |c| c.and_then(|c| c.allow_privilege_escalation) != Some(false),
        &["allowPrivilegeEscalation"],
    );
    if containers.is_empty() {
        return None;
    }
    let detail = format!(
        "{} must set securityContext.allowPrivilegeEscalation=false",
        containers.containers()
    );
    violation(
        "allowPrivilegeEscalation != false",
        detail,
        containers.fields,
    )
}

fn capabilities_restricted(pod: &PodView<'_>) -> Option<Violation> {
    let missing_drop_all = containers_where(
        pod,
        |c| {
            !c.and_then(|c| c.capabilities.as_ref())
                .is_some_and(|c| c.drop.iter().any(|name| name == "ALL"))
        },
        &["capabilities", "drop"],
    );
    let (adding, capabilities) = added_capabilities(pod, &["NET_BIND_SERVICE"]);
    let mut details = Vec::new();
    if !missing_drop_all.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            missing_drop_all.containers()
        ));
    }
    if !adding.is_empty() {
        details.push(must_not_add(&adding, &capabilities));
    }
    if details.is_empty() {
        return None;
    }
    let mut fields = missing_drop_all.fields;
    fields.extend(adding.fields);
    violation("unrestricted capabilities", details.join("; "), fields)
}

fn restricted_volumes(pod: &PodView<'_>) -> Option<Violation> {
    let volumes = host_path_offenders(pod);
    if volumes.is_empty() {
        return None;
    }
    let count = volumes.names.len();
    let detail = format!(
        "{} {} {} restricted volume type \"hostPath\"",
        pluralize("volume", "volumes", count),
        join_quote(&volumes.names),
        pluralize("uses", "use", count)
    );
    violation("restricted volume types", detail, volumes.fields)
}

fn run_as_non_root(pod: &PodView<'_>) -> Option<Violation> {
    let pod_setting = pod
        .spec
        .security_context
        .as_ref()
        .and_then(|c| c.run_as_non_root);
    let mut setters = Vec::new();
    let mut fields = Vec::new();
    if pod_setting == Some(false) {
        setters.push("pod".to_owned());
        let at = pod.context_path().child("runAsNonRoot");
        fields.push(at.as_str().to_owned());
    }
    let mut explicitly = Offenders::default();
    let mut implicitly = Offenders::default();
    for (container, at) in pod.containers() {
        let at = at.child("securityContext").child("runAsNonRoot");
        match container
            .security_context
            .as_ref()
            .and_then(|c| c.run_as_non_root)
        {
            Some(true) => {}
            Some(false) => explicitly.add(&container.name, &at),
            None if pod_setting == Some(true) => {}
            None => implicitly.add(&container.name, &at),
        }
    }
    if !explicitly.is_empty() {
        setters.push(explicitly.containers());
        fields.extend(explicitly.fields);
    }
    if !setters.is_empty() {
        let detail = format!(
            "{} must not set securityContext.runAsNonRoot=false",
            setters.join(" and ")
        );
        return violation("runAsNonRoot != true", detail, fields);
    }
    if implicitly.is_empty() {
        return None;
    }
    let detail = format!(
        "pod or {} must set securityContext.runAsNonRoot=true",
        implicitly.containers()
    );
    violation("runAsNonRoot != true", detail, implicitly.fields)
}

fn run_as_user(pod: &PodView<'_>) -> Option<Violation> {
    let setters = Setters::of(
        pod,
        |c| c.run_as_user == Some(0),
        |c| c.run_as_user == Some(0),
        &["runAsUser"],
    );
    if setters.is_empty() {
        return None;
    }
    let detail = format!("{} must not set runAsUser=0", setters.who());
    violation("runAsUser=0", detail, setters.fields)
}

fn seccomp_profile_restricted(pod: &PodView<'_>) -> Option<Violation> {
    let confined = |kind: SeccompProfileType| {
        matches!(
            kind,
            SeccompProfileType::RuntimeDefault | SeccompProfileType::Localhost
        )
    };
    let pod_type = pod
        .spec
        .security_context
        .as_ref()
        .and_then(|c| c.seccomp_profile.as_ref())
        .and_then(|p| p.type_);
    let mut setters = Vec::new();
    let mut values = BTreeSet::new();
    let mut fields = Vec::new();
    let pod_confined = match pod_type {
        Some(kind) if confined(kind) => true,
        Some(kind) => {
            setters.push("pod".to_owned());
            values.insert(format!("{kind:?}"));
            let at = pod.context_path().child("seccompProfile").child("type");
            fields.push(at.as_str().to_owned());
            false
        }
        None => false,
    };
    let mut explicitly = Offenders::default();
    let mut implicitly = Offenders::default();
    for (container, at) in pod.containers() {
        let at = at
            .child("securityContext")
            .child("seccompProfile")
            .child("type");
        match container_seccomp(container) {
            Some(kind) if confined(kind) => {}
            Some(kind) => {
                values.insert(format!("{kind:?}"));
                explicitly.add(&container.name, &at);
            }
            None if pod_confined => {}
            None => implicitly.add(&container.name, &at),
        }
    }
    if !explicitly.is_empty() {
        setters.push(explicitly.containers());
        fields.extend(explicitly.fields);
    }
    if !setters.is_empty() {
        let values: Vec<String> = values.into_iter().collect();
        let detail = format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            setters.join(" and "),
            join_quote(&values)
        );
        return violation("seccompProfile", detail, fields);
    }
    if implicitly.is_empty() {
        return None;
    }
    let detail = format!(
        "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
        implicitly.containers()
    );
    violation("seccompProfile", detail, implicitly.fields)
}
