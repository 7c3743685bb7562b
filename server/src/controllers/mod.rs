//! The controllers: the loops that turn desired state into running pods,
//! run by the elected leader among the server processes.
//!
//! - [`runtime`]: reflectors and caches, the work queue, the `Controller`
//!   that drives a [`runtime::Reconciler`], the injectable clock, metrics.
//! - [`leader`]: leader election through a leased key in the store.
//! - [`fenced`]: every controller write, fenced by the leader's token.
//! - [`replicaset`]: keeps each ReplicaSet's pods.
//! - [`deployment`]: rolls Deployments out through ReplicaSets.
//! - [`nodelifecycle`]: marks silent nodes NotReady and moves their pods.
//! - [`gc`]: deletes (or orphans) what a deleted owner owned.
//! - [`endpoints`]: keeps the EndpointSlices of each Service's pods.
//! - [`servicelb`]: shows Ready nodes' addresses as the ingress of
//!   LoadBalancer Services.
//!
//! [`ControllerManager`] ties them together: it seeks leadership, and for
//! each term it holds, starts the reflectors, the controllers and the
//! scheduler ([`crate::scheduler`]), all fenced by the term's token; when the term
//! ends (shutdown, or leadership lost) it stops them all before anything
//! else happens.

pub mod deployment;
pub mod endpoints;
pub mod fenced;
pub mod gc;
pub mod leader;
pub mod nodelifecycle;
pub mod replicaset;
pub mod runtime;
pub mod servicelb;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use berth_api::objects::meta::ConditionStatus;
use berth_api::objects::{Deployment, EndpointSlice, Kind, Node, Pod, ReplicaSet, Service};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::events::{DEFAULT_EVENT_TTL, EventRecorder};
use crate::objects::Objects;
use crate::scheduler::driver::{Scheduler, SchedulerMetrics};
use crate::store::Store;
use deployment::DeploymentController;
use endpoints::EndpointsController;
use fenced::{Fence, FencedWriter};
use gc::{Collector, GarbageCollector, Graph};
use leader::{ElectionSettings, LeaderElection, TermEnd};
use nodelifecycle::{NodeLifecycleController, NodeLifecycleSettings, node_index_value};
use replicaset::{ReplicaSetController, controller_uid};
use runtime::{
    Cache, Clock, Controller, ControllerMetrics, Informer, Reflector, SystemClock,
    controller_owner_key, own_key,
};
use servicelb::ServiceLbController;

/// How many keys each controller reconciles at once.
const WORKERS: usize = 4;
/// How many ReplicaSets create or delete pods at once: each waits for its
/// writes to commit, and more of them in flight make the store's group
/// commits larger rather than the wait longer.
const REPLICA_SET_WORKERS: usize = 16;

/// How the controllers behave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControllerSettings {
    /// How long the leader's lease lasts.
    pub lease_ttl: Duration,
    /// When nodes turn NotReady and lose their pods.
    pub node_lifecycle: NodeLifecycleSettings,
}

impl ControllerSettings {
    /// The defaults, with a leader lease of `lease_ttl`.
    pub fn with_lease_ttl(lease_ttl: Duration) -> ControllerSettings {
        ControllerSettings {
            lease_ttl,
            node_lifecycle: NodeLifecycleSettings::default(),
        }
    }
}

/// Why the controllers could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// The metrics could not be registered.
    #[error("registering the controller metrics failed: {0}")]
    MetricsRegistrationFailed(#[from] prometheus::Error),
}

/// Runs the controllers while this process is the leader.
pub struct ControllerManager {
    objects: Objects,
    pods: Informer<Pod>,
    election: LeaderElection,
    metrics: ControllerMetrics,
    scheduler_metrics: SchedulerMetrics,
    clock: Arc<dyn Clock>,
    settings: ControllerSettings,
}

impl ControllerManager {
    /// A manager writing through `objects` (fenced by each term), its
    /// metrics registered in `registry`; its controllers and scheduler read
    /// pods from `pods` (see [`start_pod_informer`]), which the process
    /// shares.
    pub fn new(
        objects: Objects,
        pods: Informer<Pod>,
        registry: &prometheus::Registry,
        settings: ControllerSettings,
    ) -> Result<ControllerManager, ManagerError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let identity = format!(
            "{}-{}-{:08x}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "berth".into()),
            std::process::id(),
            rand::random::<u32>()
        );
        Ok(ControllerManager {
            election: LeaderElection::new(
                objects.store().clone(),
                identity,
                ElectionSettings::with_ttl(settings.lease_ttl),
                clock.clone(),
            ),
            objects,
            pods,
            metrics: ControllerMetrics::new(registry)?,
            scheduler_metrics: SchedulerMetrics::new(registry)?,
            clock,
            settings,
        })
    }

    /// Seeks leadership and runs the controllers through each term, until
    /// `shutdown` fires. On shutdown it gives leadership up at once, so a
    /// standby takes over without waiting for the lease to run out.
    pub async fn run(self, shutdown: CancellationToken) {
        let identity = self.election.identity().to_owned();
        loop {
            tracing::info!(%identity, "seeking controller leadership");
            let Some(term) = self.election.acquire(&shutdown).await else {
                break;
            };
            tracing::info!(
                %identity,
                fencing_token = term.fence.create_revision,
                "became the controller leader; starting the controllers"
            );
            let stop = shutdown.child_token();
            let controllers = tokio::spawn(run_controllers(
                self.objects.clone(),
                self.pods.clone(),
                term.fence.clone(),
                self.clock.clone(),
                self.metrics.clone(),
                self.scheduler_metrics.clone(),
                self.settings,
                stop.clone(),
            ));
            let end = self.election.hold(&term, &shutdown).await;
            // Stop acting first: anything in flight is fenced anyway.
            stop.cancel();
            let _ = controllers.await;
            match end {
                TermEnd::Shutdown => {
                    self.election.release(&term).await;
                    tracing::info!("controllers stopped for shutdown; leadership released");
                    break;
                }
                TermEnd::Lost(reason) => {
                    tracing::warn!(%reason, "lost controller leadership; controllers stopped");
                }
            }
        }
    }
}

/// The process's one reflector of pods, running until `shutdown`: every
/// pod is decoded once, and the node API's fan-out, the controllers and
/// the scheduler share it. Its cache is indexed by [`pod_index`].
pub fn start_pod_informer(store: Store, shutdown: CancellationToken) -> Informer<Pod> {
    let reflector = Reflector::new(store, Cache::new(Some(pod_index)));
    let informer = reflector.informer();
    tokio::spawn(reflector.run(shutdown));
    informer
}

/// One term's reflectors and controllers, until `stop` fires.
#[expect(
    clippy::too_many_arguments,
    reason = "one term's parts, each handed on to the controllers it serves"
)]
async fn run_controllers(
    objects: Objects,
    pod_informer: Informer<Pod>,
    fence: Fence,
    clock: Arc<dyn Clock>,
    metrics: ControllerMetrics,
    scheduler_metrics: SchedulerMetrics,
    settings: ControllerSettings,
    stop: CancellationToken,
) {
    let store = objects.store().clone();
    let writer = FencedWriter::new(objects, fence, clock.clone());
    let deployments: Cache<Deployment> = Cache::new(None);
    let replica_sets: Cache<ReplicaSet> = Cache::new(Some(replica_set_index));
    let pods: Cache<Pod> = pod_informer.cache().clone();
    let nodes: Cache<Node> = Cache::new(None);
    let services: Cache<Service> = Cache::new(Some(endpoints::service_index));
    let endpoint_slices: Cache<EndpointSlice> = Cache::new(Some(endpoint_slice_index));
    let mut deployment_reflector = Reflector::new(store.clone(), deployments.clone());
    let mut replica_set_reflector = Reflector::new(store.clone(), replica_sets.clone());
    let mut node_reflector = Reflector::new(store.clone(), nodes.clone());
    let mut service_reflector = Reflector::new(store.clone(), services.clone());
    let mut endpoint_slice_reflector = Reflector::new(store.clone(), endpoint_slices.clone());
    let events = |component: &str| {
        EventRecorder::new(writer.objects().clone(), component, DEFAULT_EVENT_TTL)
    };

    let mut node_lifecycle_controller = Controller::new(
        nodelifecycle::NAME,
        Arc::new(NodeLifecycleController::new(
            nodes.clone(),
            pods.clone(),
            writer.clone(),
            clock.clone(),
            settings.node_lifecycle,
            events("node-controller"),
        )),
        WORKERS,
        &metrics,
    );
    node_lifecycle_controller.watches(&mut node_reflector, own_key);

    let graph = Graph {
        deployments: deployments.clone(),
        replica_sets: replica_sets.clone(),
        pods: pods.clone(),
        services: services.clone(),
        endpoint_slices: endpoint_slices.clone(),
    };
    let collector = Arc::new(GarbageCollector::new(
        graph.clone(),
        writer.clone(),
        store.clone(),
    ));
    let mut gc_deployments = Controller::new(
        gc::name(Kind::Deployment),
        Arc::new(Collector::<Deployment>::new(collector.clone())),
        WORKERS,
        &metrics,
    );
    gc_deployments.watches(
        &mut deployment_reflector,
        gc::needs_collection(graph.clone()),
    );
    gc_deployments.watches(
        &mut replica_set_reflector,
        gc::released_owners::<ReplicaSet>(Kind::Deployment),
    );
    gc_deployments.watches_informer(&pod_informer, gc::released_owners::<Pod>(Kind::Deployment));
    let mut gc_replica_sets = Controller::new(
        gc::name(Kind::ReplicaSet),
        Arc::new(Collector::<ReplicaSet>::new(collector.clone())),
        WORKERS,
        &metrics,
    );
    gc_replica_sets.watches(
        &mut replica_set_reflector,
        gc::needs_collection(graph.clone()),
    );
    gc_replica_sets.watches(
        &mut deployment_reflector,
        gc::dependents_of_deleted::<Deployment, ReplicaSet>(replica_sets.clone()),
    );
    gc_replica_sets.watches_informer(&pod_informer, gc::released_owners::<Pod>(Kind::ReplicaSet));
    let mut gc_endpoint_slices = Controller::new(
        gc::name(Kind::EndpointSlice),
        Arc::new(Collector::<EndpointSlice>::new(collector.clone())),
        WORKERS,
        &metrics,
    );
    gc_endpoint_slices.watches(
        &mut endpoint_slice_reflector,
        gc::needs_collection(graph.clone()),
    );
    gc_endpoint_slices.watches(
        &mut service_reflector,
        gc::dependents_of_deleted::<Service, EndpointSlice>(endpoint_slices.clone()),
    );
    let mut gc_pods = Controller::new(
        gc::name(Kind::Pod),
        Arc::new(Collector::<Pod>::new(collector)),
        WORKERS,
        &metrics,
    );
    gc_pods.watches_informer(&pod_informer, gc::needs_collection(graph));
    gc_pods.watches(
        &mut replica_set_reflector,
        gc::dependents_of_deleted::<ReplicaSet, Pod>(pods.clone()),
    );
    gc_pods.watches(
        &mut deployment_reflector,
        gc::dependents_of_deleted::<Deployment, Pod>(pods.clone()),
    );

    let mut endpoints_controller = Controller::new(
        endpoints::NAME,
        Arc::new(EndpointsController::new(
            services.clone(),
            pods.clone(),
            endpoint_slices,
            writer.clone(),
        )),
        WORKERS,
        &metrics,
    );
    endpoints_controller.watches(&mut service_reflector, own_key);
    endpoints_controller.watches_informer(
        &pod_informer,
        endpoints::selecting_services(services.clone()),
    );
    endpoints_controller.watches(
        &mut endpoint_slice_reflector,
        controller_owner_key(Kind::Service),
    );

    let mut service_lb_controller = Controller::new(
        servicelb::NAME,
        Arc::new(ServiceLbController::new(
            services.clone(),
            nodes.clone(),
            writer.clone(),
        )),
        WORKERS,
        &metrics,
    );
    service_lb_controller.watches(&mut service_reflector, own_key);
    service_lb_controller.watches(&mut node_reflector, servicelb::services_moved_by(services));

    let mut replica_set_controller = Controller::new(
        replicaset::NAME,
        Arc::new(ReplicaSetController::new(
            replica_sets.clone(),
            pods.clone(),
            writer.clone(),
            clock.clone(),
            events("replicaset-controller"),
        )),
        REPLICA_SET_WORKERS,
        &metrics,
    );
    replica_set_controller.watches(&mut replica_set_reflector, own_key);
    replica_set_controller.watches_informer(&pod_informer, controller_owner_key(Kind::ReplicaSet));

    let mut deployment_controller = Controller::new(
        deployment::NAME,
        Arc::new(DeploymentController::new(
            deployments,
            replica_sets,
            pods,
            writer.clone(),
            clock,
            events("deployment-controller"),
        )),
        WORKERS,
        &metrics,
    );
    deployment_controller.watches(&mut deployment_reflector, own_key);
    deployment_controller.watches(
        &mut replica_set_reflector,
        controller_owner_key(Kind::Deployment),
    );

    let mut tasks = JoinSet::new();
    tasks.spawn(run_scheduler(
        writer.objects().clone(),
        pod_informer.clone(),
        scheduler_metrics,
        stop.clone(),
    ));
    tasks.spawn(deployment_reflector.run(stop.clone()));
    tasks.spawn(replica_set_reflector.run(stop.clone()));
    tasks.spawn(node_reflector.run(stop.clone()));
    tasks.spawn(service_reflector.run(stop.clone()));
    tasks.spawn(endpoint_slice_reflector.run(stop.clone()));
    tasks.spawn(endpoints_controller.run(stop.clone()));
    tasks.spawn(service_lb_controller.run(stop.clone()));
    tasks.spawn(gc_endpoint_slices.run(stop.clone()));
    tasks.spawn(node_lifecycle_controller.run(stop.clone()));
    tasks.spawn(gc_deployments.run(stop.clone()));
    tasks.spawn(gc_replica_sets.run(stop.clone()));
    tasks.spawn(gc_pods.run(stop.clone()));
    tasks.spawn(report_nodes(nodes, metrics.clone(), stop.clone()));
    tasks.spawn(replica_set_controller.run(stop.clone()));
    tasks.spawn(deployment_controller.run(stop.clone()));
    while let Some(ended) = tasks.join_next().await {
        if let Err(error) = ended {
            tracing::error!(%error, "a controller task failed; stopping this term's controllers");
            stop.cancel();
        }
    }
}

/// The index values of a ReplicaSet: its controller's uid (what the
/// Deployment controller looks up) and its owners (for the collector).
fn replica_set_index(replica_set: &ReplicaSet) -> Vec<String> {
    let mut values = controller_uid(replica_set);
    values.extend(gc::owner_index_values(replica_set));
    values
}

/// The index values of an EndpointSlice: its owners (the endpoints
/// controller and the collector look them up).
fn endpoint_slice_index(slice: &EndpointSlice) -> Vec<String> {
    gc::owner_index_values(slice).collect()
}

/// The index values of a pod: its controller's uid (what the ReplicaSet
/// controller looks up), its owners (for the collector), its tenant (for
/// the endpoints controller) and `node:{name}` once bound.
fn pod_index(pod: &Pod) -> Vec<String> {
    let mut values = controller_uid(pod);
    values.extend(gc::owner_index_values(pod));
    values.extend(
        pod.metadata
            .tenant
            .as_deref()
            .map(endpoints::tenant_index_value),
    );
    if let Some(node) = &pod.spec.node_name {
        values.push(node_index_value(node));
    }
    values
}

/// Keeps `berth_nodes` (nodes by their Ready status) up to date while this
/// term lasts; clears it when the term ends, as another process then
/// reports.
async fn report_nodes(nodes: Cache<Node>, metrics: ControllerMetrics, stop: CancellationToken) {
    const EVERY: Duration = Duration::from_secs(1);
    tokio::select! {
        _ = stop.cancelled() => return,
        () = nodes.ready() => {}
    }
    loop {
        let mut counts = [0i64; 3];
        for node in nodes.list() {
            let index = match nodelifecycle::ready_status(&node) {
                Some(ConditionStatus::True) => 0,
                Some(ConditionStatus::False) => 1,
                Some(ConditionStatus::Unknown) | None => 2,
            };
            counts[index] += 1;
        }
        for (status, count) in ["True", "False", "Unknown"].into_iter().zip(counts) {
            metrics
                .nodes
                .with_label_values(&["Ready", status])
                .set(count);
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
    metrics.nodes.reset();
}

/// The scheduler for one term: started again after a failure (a watch that
/// ended, a store error), with a pause, until `stop`.
async fn run_scheduler(
    objects: Objects,
    pods: Informer<Pod>,
    metrics: SchedulerMetrics,
    stop: CancellationToken,
) {
    loop {
        let scheduler = Scheduler {
            objects: objects.clone(),
            pods: pods.clone(),
            events: EventRecorder::new(objects.clone(), "scheduler", DEFAULT_EVENT_TTL),
            metrics: metrics.clone(),
        };
        match scheduler.run(stop.clone()).await {
            Ok(()) => return,
            Err(error) => tracing::warn!(%error, "the scheduler stopped; starting it again"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
