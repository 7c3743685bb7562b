//! The scheduler: picks a node for every pod that has none and binds it by
//! writing `spec.nodeName` under optimistic concurrency.
//!
//! - [`fit`]: the decision itself, pure: filters (Ready, cordons, node
//!   selector and required affinity, taints, CPU/memory/pod room, host
//!   ports, anti-affinity on the hostname), scores (least allocated, spread
//!   of one owner's pods) and the counted reasons when nothing fits.
//! - [`driver`]: the loop: watches, the in-memory view, concurrent bindings,
//!   `FailedScheduling` events and metrics.

pub mod driver;
pub mod fit;
