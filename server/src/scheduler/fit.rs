//! The scheduler's decision, with no I/O: which nodes a pod fits on
//! (filters), which of those is best (scores), and, when none fits, the
//! reasons counted the way users read them:
//! `0/5 nodes are available: 3 Insufficient cpu, 2 node(s) didn't match node selector.`
//!
//! A [`NodeState`] is the scheduler's in-memory view of one node: what it
//! offers and what the pods bound to it already ask for. The driver keeps
//! these up to date from its watches and never re-lists per pod.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use berth_api::labels::Selector;
use berth_api::objects::meta::ConditionStatus;
use berth_api::objects::pod::{Protocol, TaintEffect, TolerationOperator};
use berth_api::objects::{Node, Pod};
use berth_api::quantity::Quantity;

/// CPU in millicores, memory in bytes, and a pod count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// Millicores.
    pub cpu_milli: i64,
    /// Bytes.
    pub memory: i64,
    /// Pods.
    pub pods: i64,
}

impl Resources {
    fn add(&mut self, other: &Resources) {
        self.cpu_milli += other.cpu_milli;
        self.memory += other.memory;
        self.pods += other.pods;
    }

    fn sub(&mut self, other: &Resources) {
        self.cpu_milli -= other.cpu_milli;
        self.memory -= other.memory;
        self.pods -= other.pods;
    }
}

/// A taint as the scheduler compares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeTaint {
    /// Key.
    pub key: String,
    /// Value (empty when none).
    pub value: String,
    /// Effect.
    pub effect: TaintEffect,
}

/// A pod already bound to a node, as far as scheduling cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundPod {
    /// Its tenant (anti-affinity only looks within a tenant).
    pub tenant: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// The uid of the workload that owns it, if any.
    pub owner: Option<String>,
    /// What it asks for.
    pub requests: Resources,
    /// Host ports it holds, as (protocol, port).
    pub host_ports: Vec<(String, i32)>,
}

/// One node as the scheduler sees it.
#[derive(Clone, Debug, Default)]
pub struct NodeState {
    /// The node's name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its taints.
    pub taints: Vec<NodeTaint>,
    /// Whether it reports Ready.
    pub ready: bool,
    /// Whether an operator cordoned it.
    pub unschedulable: bool,
    /// What it offers.
    pub allocatable: Resources,
    /// What the pods bound to it ask for, in all.
    pub requested: Resources,
    /// The pods bound to it, by `tenant/name`.
    pub pods: HashMap<String, BoundPod>,
    /// How many of its pods each owner has there.
    pub owner_counts: HashMap<String, i64>,
}

impl NodeState {
    /// A node's state from its object, with no pods yet.
    pub fn from_node(node: &Node) -> NodeState {
        let status = node.status.clone().unwrap_or_default();
        let ready = status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == ConditionStatus::True);
        NodeState {
            name: node.metadata.name.clone(),
            labels: node.metadata.labels.clone(),
            taints: node
                .spec
                .taints
                .iter()
                .filter_map(|t| {
                    t.effect.map(|effect| NodeTaint {
                        key: t.key.clone(),
                        value: t.value.clone().unwrap_or_default(),
                        effect,
                    })
                })
                .collect(),
            ready,
            unschedulable: node.spec.unschedulable.unwrap_or(false),
            allocatable: resources_of(&status.allocatable),
            requested: Resources::default(),
            pods: HashMap::new(),
            owner_counts: HashMap::new(),
        }
    }

    /// Counts a pod as bound here (replacing an earlier entry of it).
    pub fn add_pod(&mut self, key: String, pod: BoundPod) {
        self.remove_pod(&key);
        self.requested.add(&pod.requests);
        if let Some(owner) = &pod.owner {
            *self.owner_counts.entry(owner.clone()).or_default() += 1;
        }
        self.pods.insert(key, pod);
    }

    /// Forgets a pod bound here.
    pub fn remove_pod(&mut self, key: &str) {
        if let Some(pod) = self.pods.remove(key) {
            self.requested.sub(&pod.requests);
            if let Some(owner) = &pod.owner
                && let Some(count) = self.owner_counts.get_mut(owner)
            {
                *count -= 1;
                if *count <= 0 {
                    self.owner_counts.remove(owner);
                }
            }
        }
    }
}

/// `cpu`, `memory` and `pods` of a quantity map; unparseable values count 0.
pub fn resources_of(map: &BTreeMap<String, String>) -> Resources {
    let parse = |name: &str| map.get(name).and_then(|q| Quantity::parse(q).ok());
    Resources {
        cpu_milli: parse("cpu").map_or(0, |q| q.milli_value() as i64),
        memory: parse("memory").map_or(0, |q| q.value() as i64),
        pods: parse("pods").map_or(0, |q| q.value() as i64),
    }
}

/// The taint a node under memory pressure carries (set by the node
/// lifecycle controller).
pub const MEMORY_PRESSURE_TAINT: &str = "node.kubernetes.io/memory-pressure";

/// What Kubernetes lets a pod tolerate without asking: a pod that asks for
/// or limits CPU or memory (QoS class Guaranteed or Burstable) tolerates
/// memory pressure, so only BestEffort pods are kept off a node short of
/// memory.
fn implied_tolerations(pod: &Pod) -> Option<Tolerating> {
    let best_effort = pod
        .spec
        .containers
        .iter()
        .chain(&pod.spec.init_containers)
        .filter_map(|container| container.resources.as_ref())
        .all(|resources| {
            ["cpu", "memory"].iter().all(|name| {
                !resources.requests.contains_key(*name) && !resources.limits.contains_key(*name)
            })
        });
    (!best_effort).then(|| Tolerating {
        key: Some(MEMORY_PRESSURE_TAINT.into()),
        exists: true,
        value: None,
        effect: Some(TaintEffect::NoSchedule),
    })
}

/// One term of required node affinity: (key, operator, values) expressions
/// that must all hold.
pub type AffinityTerm = Vec<(String, String, Vec<String>)>;

/// A toleration as the scheduler compares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tolerating {
    /// The taint key; `None` with `exists` tolerates every taint.
    pub key: Option<String>,
    /// Operator `Exists` (else `Equal`).
    pub exists: bool,
    /// The value, for `Equal`.
    pub value: Option<String>,
    /// The effect; `None` tolerates every effect.
    pub effect: Option<TaintEffect>,
}

/// What a pod demands of a node.
#[derive(Clone, Debug)]
pub struct PodDemand {
    /// The pod's tenant.
    pub tenant: String,
    /// The pod's labels.
    pub labels: BTreeMap<String, String>,
    /// Its owner's uid, for spreading.
    pub owner: Option<String>,
    /// Summed container requests (init containers: the largest), plus one pod.
    pub requests: Resources,
    /// `spec.nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
    /// Required node affinity: any term may match; within a term, every
    /// (key, operator, values) expression.
    pub affinity_terms: Vec<AffinityTerm>,
    /// Tolerations.
    pub tolerations: Vec<Tolerating>,
    /// Host ports asked for, as (protocol, port).
    pub host_ports: Vec<(String, i32)>,
    /// Required anti-affinity on the node's hostname: no pod there may match.
    pub anti_affinity: Vec<Selector>,
    /// The claims (Volumes) the pod mounts, by name.
    pub claims: Vec<String>,
    /// Claims whose data is on a node already: the pod goes there.
    pub claim_nodes: BTreeMap<String, String>,
    /// Claims that do not exist: the pod fits nowhere until they do.
    pub missing_claims: Vec<String>,
}

impl PodDemand {
    /// What `pod` in `tenant` demands.
    pub fn of(tenant: &str, pod: &Pod) -> PodDemand {
        let spec = &pod.spec;
        let mut requests = Resources {
            pods: 1,
            ..Resources::default()
        };
        for container in &spec.containers {
            if let Some(resources) = &container.resources {
                let r = resources_of(&resources.requests);
                requests.cpu_milli += r.cpu_milli;
                requests.memory += r.memory;
            }
        }
        // Init containers run one at a time, before the others.
        for container in &spec.init_containers {
            if let Some(resources) = &container.resources {
                let r = resources_of(&resources.requests);
                requests.cpu_milli = requests.cpu_milli.max(r.cpu_milli);
                requests.memory = requests.memory.max(r.memory);
            }
        }
        let affinity = spec.affinity.as_ref();
        let affinity_terms = affinity
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| {
                n.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|selector| {
                selector
                    .node_selector_terms
                    .iter()
                    .map(|term| {
                        term.match_expressions
                            .iter()
                            .map(|e| (e.key.clone(), e.operator.clone(), e.values.clone()))
                            .collect()
                    })
                    .collect()
            })
            .unwrap_or_default();
        let anti_affinity = affinity
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .map(|anti| {
                anti.required_during_scheduling_ignored_during_execution
                    .iter()
                    .filter(|term| term.topology_key == "kubernetes.io/hostname")
                    .filter_map(|term| term.label_selector.as_ref())
                    .filter_map(|selector| selector.to_selector().ok())
                    .collect()
            })
            .unwrap_or_default();
        PodDemand {
            tenant: tenant.to_owned(),
            labels: pod.metadata.labels.clone(),
            owner: pod.metadata.controller().map(|o| o.uid.clone()),
            requests,
            node_selector: spec.node_selector.clone(),
            affinity_terms,
            tolerations: spec
                .tolerations
                .iter()
                .map(|t| Tolerating {
                    key: t.key.clone(),
                    exists: t.operator == Some(TolerationOperator::Exists),
                    value: t.value.clone(),
                    effect: t.effect,
                })
                .chain(implied_tolerations(pod))
                .collect(),
            host_ports: host_ports(pod),
            anti_affinity,
            claims: claim_names(pod),
            claim_nodes: BTreeMap::new(),
            missing_claims: Vec::new(),
        }
    }

    /// Takes in where the pod's claims are: `lookup` answers `None` for a
    /// claim that does not exist, `Some(None)` for one not on a node yet,
    /// and `Some(Some(node))` for one held by `node`.
    pub fn resolve_claims(&mut self, lookup: impl Fn(&str) -> Option<Option<String>>) {
        self.claim_nodes.clear();
        self.missing_claims.clear();
        for claim in &self.claims {
            match lookup(claim) {
                None => self.missing_claims.push(claim.clone()),
                Some(Some(node)) => {
                    self.claim_nodes.insert(claim.clone(), node);
                }
                Some(None) => {}
            }
        }
    }
}

/// The claims a pod mounts (`persistentVolumeClaim.claimName`), each once.
pub fn claim_names(pod: &Pod) -> Vec<String> {
    let names: BTreeSet<String> = pod
        .spec
        .volumes
        .iter()
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|claim| claim.claim_name.clone())
        .collect();
    names.into_iter().collect()
}

/// The host ports a pod holds, as (protocol, port).
pub fn host_ports(pod: &Pod) -> Vec<(String, i32)> {
    pod.spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter())
        .filter_map(|p| {
            p.host_port.filter(|port| *port > 0).map(|port| {
                (
                    match p.protocol.unwrap_or_default() {
                        Protocol::Tcp => "TCP",
                        Protocol::Udp => "UDP",
                        Protocol::Sctp => "SCTP",
                    }
                    .to_owned(),
                    port,
                )
            })
        })
        .collect()
}

/// Why a node was filtered out, in Kubernetes' words.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Misfit {
    /// Not Ready.
    NotReady,
    /// Cordoned.
    Unschedulable,
    /// `spec.nodeSelector` or required node affinity does not match.
    Selector,
    /// A taint the pod does not tolerate.
    Taint(String),
    /// Not enough CPU left.
    Cpu,
    /// Not enough memory left.
    Memory,
    /// No pod slots left.
    Pods,
    /// A host port is taken.
    HostPort,
    /// A pod it must not share a node with is there.
    AntiAffinity,
    /// A claim the pod mounts has its data on another node.
    VolumeNode,
}

impl Misfit {
    /// The reason as users read it.
    pub fn reason(&self) -> String {
        match self {
            Misfit::NotReady => "node(s) were not ready".into(),
            Misfit::Unschedulable => "node(s) were unschedulable".into(),
            Misfit::Selector => "node(s) didn't match node selector".into(),
            Misfit::Taint(taint) => format!("node(s) had untolerated taint {{{taint}}}"),
            Misfit::Cpu => "Insufficient cpu".into(),
            Misfit::Memory => "Insufficient memory".into(),
            Misfit::Pods => "Too many pods".into(),
            Misfit::HostPort => "node(s) didn't have free ports for the requested pod ports".into(),
            Misfit::AntiAffinity => "node(s) didn't match pod anti-affinity rules".into(),
            Misfit::VolumeNode => "node(s) had volume node affinity conflict".into(),
        }
    }
}

/// Every reason `node` cannot take `pod` (none: it fits).
pub fn misfits(pod: &PodDemand, node: &NodeState) -> Vec<Misfit> {
    let mut found = Vec::new();
    if !node.ready {
        found.push(Misfit::NotReady);
    }
    if node.unschedulable {
        found.push(Misfit::Unschedulable);
    }
    let selector_matches = pod
        .node_selector
        .iter()
        .all(|(k, v)| node.labels.get(k) == Some(v));
    let affinity_matches = pod.affinity_terms.is_empty()
        || pod.affinity_terms.iter().any(|term| {
            term.iter()
                .all(|(k, op, values)| expression_matches(&node.labels, k, op, values))
        });
    if !selector_matches || !affinity_matches {
        found.push(Misfit::Selector);
    }
    for taint in &node.taints {
        if taint.effect == TaintEffect::PreferNoSchedule {
            continue;
        }
        if !pod.tolerations.iter().any(|t| tolerates(t, taint)) {
            found.push(Misfit::Taint(format!("{}: {}", taint.key, taint.value)));
            break;
        }
    }
    let free = |offered: i64, used: i64| offered - used;
    if pod.requests.cpu_milli > 0
        && pod.requests.cpu_milli > free(node.allocatable.cpu_milli, node.requested.cpu_milli)
    {
        found.push(Misfit::Cpu);
    }
    if pod.requests.memory > 0
        && pod.requests.memory > free(node.allocatable.memory, node.requested.memory)
    {
        found.push(Misfit::Memory);
    }
    if node.requested.pods + 1 > node.allocatable.pods {
        found.push(Misfit::Pods);
    }
    if pod.host_ports.iter().any(|wanted| {
        node.pods
            .values()
            .any(|bound| bound.host_ports.contains(wanted))
    }) {
        found.push(Misfit::HostPort);
    }
    if pod.anti_affinity.iter().any(|selector| {
        node.pods
            .values()
            .any(|bound| bound.tenant == pod.tenant && selector.matches(&bound.labels))
    }) {
        found.push(Misfit::AntiAffinity);
    }
    if pod
        .claim_nodes
        .values()
        .any(|held_by| *held_by != node.name)
    {
        found.push(Misfit::VolumeNode);
    }
    found
}

fn expression_matches(
    labels: &BTreeMap<String, String>,
    key: &str,
    operator: &str,
    values: &[String],
) -> bool {
    let value = labels.get(key);
    match operator {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|v| v.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if operator == "Gt" {
                have > bound
            } else {
                have < bound
            }
        }
        _ => false,
    }
}

fn tolerates(toleration: &Tolerating, taint: &NodeTaint) -> bool {
    if toleration.effect.is_some_and(|e| e != taint.effect) {
        return false;
    }
    match &toleration.key {
        // An empty key with Exists tolerates everything.
        None => toleration.exists,
        Some(key) if key != &taint.key => false,
        Some(_) if toleration.exists => true,
        Some(_) => toleration.value.as_deref().unwrap_or_default() == taint.value,
    }
}

/// How good a fitting node is, 0–200: room left after placing the pod
/// (least allocated, CPU and memory averaged), plus how few of the pod's
/// siblings are there already (spread).
pub fn score(pod: &PodDemand, node: &NodeState, max_siblings: i64) -> i64 {
    let room = |offered: i64, used: i64, wanted: i64| {
        if offered <= 0 {
            return 0;
        }
        ((offered - used - wanted).max(0) * 100) / offered
    };
    let least_allocated = (room(
        node.allocatable.cpu_milli,
        node.requested.cpu_milli,
        pod.requests.cpu_milli,
    ) + room(
        node.allocatable.memory,
        node.requested.memory,
        pod.requests.memory,
    )) / 2;
    let siblings = pod
        .owner
        .as_ref()
        .and_then(|owner| node.owner_counts.get(owner))
        .copied()
        .unwrap_or(0);
    let spread = if max_siblings <= 0 {
        100
    } else {
        100 - (siblings * 100) / (max_siblings + 1)
    };
    least_allocated + spread
}

/// Why a pod fits nowhere: how many nodes were looked at, and how many
/// failed for each reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unschedulable {
    /// Nodes considered.
    pub nodes: usize,
    /// Reason → how many nodes it ruled out.
    pub reasons: BTreeMap<String, usize>,
    /// Why no node was looked at, when that is the pod's own matter (a
    /// claim that does not exist).
    pub unresolvable: Option<String>,
}

impl std::fmt::Display for Unschedulable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(reason) = &self.unresolvable {
            return write!(f, "0/{} nodes are available: {reason}.", self.nodes);
        }
        let mut reasons: Vec<(&String, &usize)> = self.reasons.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let listed: Vec<String> = reasons
            .iter()
            .map(|(reason, count)| format!("{count} {reason}"))
            .collect();
        if listed.is_empty() {
            write!(f, "0/{} nodes are available.", self.nodes)
        } else {
            write!(
                f,
                "0/{} nodes are available: {}.",
                self.nodes,
                listed.join(", ")
            )
        }
    }
}

/// How many fitting nodes are enough to choose among in a cluster of
/// `nodes`, as Kubernetes' adaptive `percentageOfNodesToScore` has it: all
/// up to 100 nodes; beyond, 50% less 1% per 125 nodes (at least 5%), and
/// never fewer than 100. Filtering and scoring every node of a large
/// cluster for every pod buys little.
pub fn enough_fitting(nodes: usize) -> usize {
    if nodes <= 100 {
        return nodes.max(1);
    }
    let percent = 50usize.saturating_sub(nodes / 125).max(5);
    (nodes * percent / 100).max(100)
}

/// The best node for `pod` among the first `enough` that fit in `nodes`
/// (all of them, when fewer fit), or why there is none. Ties go to the node
/// that comes first by name, so the choice is deterministic.
pub fn choose<'a>(
    pod: &PodDemand,
    nodes: impl IntoIterator<Item = &'a NodeState>,
    enough: usize,
) -> Result<String, Unschedulable> {
    if let Some(claim) = pod.missing_claims.first() {
        return Err(Unschedulable {
            nodes: nodes.into_iter().count(),
            reasons: BTreeMap::new(),
            unresolvable: Some(format!("persistentvolumeclaim \"{claim}\" not found")),
        });
    }
    let mut fitting = Vec::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut considered = 0;
    for node in nodes {
        considered += 1;
        let found = misfits(pod, node);
        if found.is_empty() {
            fitting.push(node);
            if fitting.len() >= enough {
                break;
            }
        } else {
            let unique: BTreeSet<String> = found.iter().map(Misfit::reason).collect();
            for reason in unique {
                *reasons.entry(reason).or_default() += 1;
            }
        }
    }
    let max_siblings = pod
        .owner
        .as_ref()
        .map(|owner| {
            fitting
                .iter()
                .filter_map(|n| n.owner_counts.get(owner))
                .copied()
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    fitting
        .into_iter()
        .map(|node| (score(pod, node, max_siblings), node))
        .max_by(|(a_score, a), (b_score, b)| a_score.cmp(b_score).then(b.name.cmp(&a.name)))
        .map(|(_, node)| node.name.clone())
        .ok_or(Unschedulable {
            nodes: considered,
            reasons,
            unresolvable: None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cpu_milli: i64, memory_gi: i64) -> NodeState {
        NodeState {
            name: name.into(),
            ready: true,
            allocatable: Resources {
                cpu_milli,
                memory: memory_gi << 30,
                pods: 110,
            },
            ..NodeState::default()
        }
    }

    fn demand(cpu_milli: i64, owner: Option<&str>) -> PodDemand {
        PodDemand {
            tenant: "acme".into(),
            labels: BTreeMap::from([("app".to_owned(), "web".to_owned())]),
            owner: owner.map(str::to_owned),
            requests: Resources {
                cpu_milli,
                memory: 64 << 20,
                pods: 1,
            },
            node_selector: BTreeMap::new(),
            affinity_terms: vec![],
            tolerations: vec![],
            host_ports: vec![],
            anti_affinity: vec![],
            claims: vec![],
            claim_nodes: BTreeMap::new(),
            missing_claims: vec![],
        }
    }

    fn bound(owner: &str, cpu_milli: i64) -> BoundPod {
        BoundPod {
            tenant: "acme".into(),
            labels: BTreeMap::from([("app".to_owned(), "web".to_owned())]),
            owner: Some(owner.into()),
            requests: Resources {
                cpu_milli,
                memory: 64 << 20,
                pods: 1,
            },
            host_ports: vec![("TCP".into(), 8080)],
        }
    }

    #[test]
    fn the_unschedulable_message_counts_each_reason_most_common_first() {
        let mut nodes: Vec<NodeState> = (0..3)
            .map(|i| node(&format!("small-{i}"), 100, 4))
            .collect();
        for i in 0..2 {
            let mut labelled = node(&format!("big-{i}"), 8000, 16);
            labelled.labels.insert("disk".into(), "hdd".into());
            nodes.push(labelled);
        }
        let mut pod = demand(500, None);
        pod.node_selector.insert("disk".into(), "hdd".into());
        for small in nodes.iter_mut().take(3) {
            small.labels.insert("disk".into(), "hdd".into());
        }
        nodes[3].labels.insert("disk".into(), "ssd".into());
        nodes[4].labels.insert("disk".into(), "ssd".into());
        let error = choose(&pod, &nodes, usize::MAX).unwrap_err();
        assert_eq!(
            error.to_string(),
            "0/5 nodes are available: 3 Insufficient cpu, 2 node(s) didn't match node selector."
        );
    }

    #[test]
    fn large_clusters_score_a_share_of_their_fitting_nodes() {
        assert_eq!(enough_fitting(3), 3);
        assert_eq!(enough_fitting(100), 100);
        assert_eq!(enough_fitting(1000), 420);
        assert_eq!(enough_fitting(5000), 500);
        assert_eq!(enough_fitting(200), 100);
        let nodes: Vec<NodeState> = (0..10).map(|i| node(&format!("n{i}"), 1000, 4)).collect();
        // With two enough, the choice is among the first two that fit.
        let chosen = choose(&demand(100, None), &nodes[4..], 2).unwrap();
        assert!(["n4", "n5"].contains(&chosen.as_str()), "{chosen}");
    }

    #[test]
    fn the_least_allocated_node_wins_and_siblings_spread() {
        let mut busy = node("a-busy", 4000, 16);
        busy.add_pod("acme/x".into(), bound("other", 3000));
        let idle = node("b-idle", 4000, 16);
        assert_eq!(
            choose(&demand(500, None), [&busy, &idle], usize::MAX).unwrap(),
            "b-idle"
        );
        // Two equally loaded nodes; one already has a sibling.
        let mut with_sibling = node("a", 4000, 16);
        with_sibling.add_pod("acme/s".into(), bound("rs-1", 100));
        let mut with_stranger = node("b", 4000, 16);
        with_stranger.add_pod("acme/t".into(), bound("rs-2", 100));
        assert_eq!(
            choose(
                &demand(100, Some("rs-1")),
                [&with_sibling, &with_stranger],
                usize::MAX
            )
            .unwrap(),
            "b"
        );
    }

    #[test]
    fn taints_need_tolerations_and_host_ports_do_not_collide() {
        let mut tainted = node("tainted", 4000, 16);
        tainted.taints.push(NodeTaint {
            key: "dedicated".into(),
            value: "gpu".into(),
            effect: TaintEffect::NoSchedule,
        });
        let pod = demand(100, None);
        assert_eq!(
            misfits(&pod, &tainted),
            [Misfit::Taint("dedicated: gpu".into())]
        );
        let mut tolerant = pod.clone();
        tolerant.tolerations.push(Tolerating {
            key: Some("dedicated".into()),
            exists: false,
            value: Some("gpu".into()),
            effect: Some(TaintEffect::NoSchedule),
        });
        assert!(misfits(&tolerant, &tainted).is_empty());
        let mut everything = pod.clone();
        everything.tolerations.push(Tolerating {
            key: None,
            exists: true,
            value: None,
            effect: None,
        });
        assert!(misfits(&everything, &tainted).is_empty());

        let mut taken = node("taken", 4000, 16);
        taken.add_pod("acme/p".into(), bound("rs", 100));
        let mut wants_port = pod.clone();
        wants_port.host_ports.push(("TCP".into(), 8080));
        assert_eq!(misfits(&wants_port, &taken), [Misfit::HostPort]);
        wants_port.host_ports = vec![("UDP".into(), 8080)];
        assert!(misfits(&wants_port, &taken).is_empty());
    }

    #[test]
    fn required_affinity_anti_affinity_readiness_and_cordons_filter() {
        let mut zoned = node("zoned", 4000, 16);
        zoned.labels.insert("zone".into(), "a".into());
        let mut pod = demand(100, None);
        pod.affinity_terms = vec![vec![("zone".into(), "In".into(), vec!["b".into()])]];
        assert_eq!(misfits(&pod, &zoned), [Misfit::Selector]);
        pod.affinity_terms
            .push(vec![("zone".into(), "Exists".into(), vec![])]);
        assert!(misfits(&pod, &zoned).is_empty(), "any term may match");

        let mut occupied = node("occupied", 4000, 16);
        occupied.add_pod("acme/w".into(), bound("rs", 100));
        let mut lonely = demand(100, None);
        lonely.anti_affinity = vec![Selector::parse("app=web").unwrap()];
        assert_eq!(misfits(&lonely, &occupied), [Misfit::AntiAffinity]);

        let mut down = node("down", 4000, 16);
        down.ready = false;
        down.unschedulable = true;
        assert_eq!(
            misfits(&demand(100, None), &down),
            [Misfit::NotReady, Misfit::Unschedulable]
        );
    }

    #[test]
    fn removing_a_pod_gives_its_resources_back() {
        let mut n = node("n", 1000, 1);
        n.add_pod("acme/a".into(), bound("rs", 800));
        assert_eq!(misfits(&demand(500, None), &n), [Misfit::Cpu]);
        n.add_pod("acme/a".into(), bound("rs", 800));
        assert_eq!(n.requested.cpu_milli, 800, "re-adding replaces");
        n.remove_pod("acme/a");
        assert!(misfits(&demand(500, None), &n).is_empty());
        assert!(n.owner_counts.is_empty());
    }

    #[test]
    fn a_pod_goes_where_its_claims_hold_their_data_and_waits_for_a_missing_claim() {
        let nodes: Vec<NodeState> = ["a", "b", "c"].iter().map(|n| node(n, 4000, 16)).collect();
        let mut pod = demand(100, None);
        pod.claims = vec!["data".into(), "logs".into()];
        // Neither claim is on a node yet: any node does.
        pod.resolve_claims(|_| Some(None));
        assert!(pod.claim_nodes.is_empty());
        assert_eq!(choose(&pod, &nodes, usize::MAX).unwrap(), "a");

        pod.resolve_claims(|claim| Some((claim == "data").then(|| "b".to_owned())));
        assert_eq!(choose(&pod, &nodes, usize::MAX).unwrap(), "b");
        assert_eq!(misfits(&pod, &nodes[0]), [Misfit::VolumeNode]);

        // Two claims held by two nodes: nowhere.
        pod.resolve_claims(|claim| Some(Some(if claim == "data" { "a" } else { "c" }.to_owned())));
        assert_eq!(
            choose(&pod, &nodes, usize::MAX).unwrap_err().to_string(),
            "0/3 nodes are available: 3 node(s) had volume node affinity conflict."
        );

        pod.resolve_claims(|claim| (claim != "logs").then_some(None));
        assert_eq!(pod.missing_claims, ["logs"]);
        assert_eq!(
            choose(&pod, &nodes, usize::MAX).unwrap_err().to_string(),
            "0/3 nodes are available: persistentvolumeclaim \"logs\" not found."
        );
    }

    #[test]
    fn a_pods_claims_are_read_from_its_volumes_once_each() {
        use berth_api::objects::pod::{PersistentVolumeClaimVolumeSource, PodVolume};
        let claim = |volume: &str, claim: &str| PodVolume {
            name: volume.into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.into(),
                read_only: None,
            }),
            ..PodVolume::default()
        };
        let mut pod = Pod::default();
        pod.spec.volumes = vec![
            claim("one", "data"),
            PodVolume {
                name: "scratch".into(),
                ..PodVolume::default()
            },
            claim("two", "data"),
            claim("three", "archive"),
        ];
        assert_eq!(claim_names(&pod), ["archive", "data"]);
        assert_eq!(PodDemand::of("acme", &pod).claims, ["archive", "data"]);
    }

    #[test]
    fn only_best_effort_pods_are_kept_off_a_node_under_memory_pressure() {
        let mut pressed = node("pressed", 4000, 16);
        pressed.taints.push(NodeTaint {
            key: MEMORY_PRESSURE_TAINT.into(),
            value: String::new(),
            effect: TaintEffect::NoSchedule,
        });
        let pod_with = |resources: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p"},
                "spec": {"containers": [
                    {"name": "a", "image": "busybox"},
                    {"name": "b", "image": "busybox", "resources": resources},
                ]},
            }))
            .expect("a pod")
        };
        let best_effort = PodDemand::of("acme", &pod_with(serde_json::json!({})));
        assert_eq!(
            misfits(&best_effort, &pressed),
            [Misfit::Taint(format!("{MEMORY_PRESSURE_TAINT}: "))]
        );
        assert_eq!(
            Misfit::Taint(format!("{MEMORY_PRESSURE_TAINT}: ")).reason(),
            "node(s) had untolerated taint {node.kubernetes.io/memory-pressure: }"
        );
        let burstable = PodDemand::of(
            "acme",
            &pod_with(serde_json::json!({"limits": {"memory": "64Mi"}})),
        );
        assert!(misfits(&burstable, &pressed).is_empty());
        // Any other NoSchedule taint still repels it.
        pressed.taints[0].key = "node.kubernetes.io/disk-pressure".into();
        assert!(!misfits(&burstable, &pressed).is_empty());
    }
}
