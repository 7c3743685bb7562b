//! Changes of ConfigMaps and Secrets, for the agents whose pods use them.
//!
//! The pod watch sends a pod's ConfigMaps and Secrets with each of the
//! pod's events; a ConfigMap that changes while its pods do not would
//! never reach their nodes. One store watch per kind (not one per node)
//! turns each write of a ConfigMap or Secret into a [`ConfigChange`] on a
//! broadcast channel; each `WatchPods` stream then sends its node the pods
//! that reference the object again (as MODIFIED, with the object as it is
//! now), and the agent writes the files of their volumes again.
//!
//! A node whose stream was closed when the object changed hears of it at
//! its next snapshot or at the pod's next change.

use std::time::Duration;

use berth_api::objects::Kind;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::ReferenceKind;
use crate::keys::collection as collection_prefix;
use crate::objects::Objects;

/// How many changes a slow stream may miss before it is told it lagged.
const BUFFER: usize = 1024;

/// How long to wait before watching again after the watch failed.
const RETRY: Duration = Duration::from_secs(1);

/// One ConfigMap or Secret was written or deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigChange {
    /// ConfigMap or Secret.
    pub kind: ReferenceKind,
    /// Its tenant.
    pub tenant: String,
    /// Its name.
    pub name: String,
}

/// The broadcast of ConfigMap and Secret changes; cheap to clone.
#[derive(Clone)]
pub struct ConfigChanges {
    sender: broadcast::Sender<ConfigChange>,
}

impl ConfigChanges {
    /// Follows the store's ConfigMaps and Secrets until `shutdown`.
    pub fn start(objects: Objects, shutdown: CancellationToken) -> ConfigChanges {
        let (sender, _) = broadcast::channel(BUFFER);
        let changes = ConfigChanges { sender };
        tokio::spawn(changes.clone().run(objects, shutdown));
        changes
    }

    /// The changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ConfigChange> {
        self.sender.subscribe()
    }

    async fn run(self, objects: Objects, shutdown: CancellationToken) {
        loop {
            if let Err(error) = self.follow(&objects, &shutdown).await {
                tracing::warn!(%error, "following ConfigMaps and Secrets failed; watching again");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(RETRY) => {}
            }
        }
    }

    /// Sends a change per write until the watch fails or `shutdown`.
    async fn follow(
        &self,
        objects: &Objects,
        shutdown: &CancellationToken,
    ) -> Result<(), crate::objects::ObjectError> {
        let revision = objects.store().current_revision().await?;
        let mut config_maps = objects.watch(Kind::ConfigMap, None, revision).await?;
        let mut secrets = objects.watch(Kind::Secret, None, revision).await?;
        loop {
            let (kind, batch) = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                batch = config_maps.next() => (ReferenceKind::ConfigMap, batch),
                batch = secrets.next() => (ReferenceKind::Secret, batch),
            };
            let events = match batch {
                Some(Ok(events)) => events,
                Some(Err(error)) => return Err(error.into()),
                None => return Ok(()),
            };
            let prefix = collection_prefix(
                match kind {
                    ReferenceKind::ConfigMap => Kind::ConfigMap,
                    ReferenceKind::Secret => Kind::Secret,
                },
                None,
            );
            for event in events {
                let key = String::from_utf8_lossy(&event.kv.key);
                if let Some((tenant, name)) = key
                    .strip_prefix(prefix.as_str())
                    .and_then(|rest| rest.split_once('/'))
                {
                    // Nobody listening is no error.
                    let _ = self.sender.send(ConfigChange {
                        kind,
                        tenant: tenant.to_owned(),
                        name: name.to_owned(),
                    });
                }
            }
        }
    }
}
