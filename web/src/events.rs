//! `/t/{tenant}/events`: every event of the tenant, newest first, filtered
//! on the server by the involved object's kind and name, the type and free
//! text, from the page's GET form.

use actix_web::{HttpResponse, web};
use askama::Template;
use berth_api::objects::Kind;

use crate::page::{self, Chrome, PageError, Viewer};
use crate::view::{self, EventRow};

/// Mounts `/t/{tenant}/events`.
pub fn configure(config: &mut web::ServiceConfig) {
    config.route("/t/{tenant}/events", web::get().to(list));
}

/// Which events to show; every field empty shows all.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct EventFilter {
    /// The involved object's kind (`Pod`).
    pub kind: String,
    /// The involved object's name, or a part of it.
    pub name: String,
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Text anywhere in the reason, the object or the message (any case).
    pub q: String,
}

impl EventFilter {
    /// Whether `event` passes.
    pub fn admits(&self, event: &EventRow) -> bool {
        let kind = self.kind.trim();
        let name = self.name.trim();
        let text = self.q.trim().to_lowercase();
        (kind.is_empty() || event.object_kind == kind)
            && (name.is_empty() || event.object_name.contains(name))
            && (self.type_.is_empty() || event.kind == self.type_)
            && (text.is_empty()
                || [&event.reason, &event.object, &event.message]
                    .iter()
                    .any(|field| field.to_lowercase().contains(&text)))
    }

    /// Whether anything is filtered.
    pub fn active(&self) -> bool {
        !(self.kind.trim().is_empty()
            && self.name.trim().is_empty()
            && self.type_.is_empty()
            && self.q.trim().is_empty())
    }
}

#[derive(Template)]
#[template(path = "events.html")]
struct EventsPage {
    chrome: Chrome,
    live: String,
    rv: i64,
    filter: EventFilter,
    /// The kinds the tenant's events concern, for the form.
    kinds: Vec<String>,
    events: Vec<EventRow>,
    total: usize,
}

async fn list(
    viewer: Viewer,
    tenant: web::Path<String>,
    filter: web::Query<EventFilter>,
) -> Result<HttpResponse, PageError> {
    let tenant = tenant.into_inner();
    let filter = filter.into_inner();
    viewer.open(&tenant)?;
    let t = Some(tenant.as_str());
    let (events, rv) = viewer.list(Kind::Event, t).await?;
    let rows = view::event_rows(&events);
    let mut kinds: Vec<String> = rows.iter().map(|e| e.object_kind.clone()).collect();
    kinds.extend(
        [Kind::Deployment, Kind::ReplicaSet, Kind::Pod, Kind::Service]
            .iter()
            .map(|k| k.name().to_owned()),
    );
    if !filter.kind.trim().is_empty() {
        kinds.push(filter.kind.trim().to_owned());
    }
    kinds.sort();
    kinds.dedup();
    kinds.retain(|k| !k.is_empty());
    let total = rows.len();
    let events: Vec<EventRow> = rows.into_iter().filter(|e| filter.admits(e)).collect();
    page::render(&EventsPage {
        chrome: viewer
            .chrome(t, "events", format!("{tenant} · Events"))
            .await?,
        live: format!("/live?tenant={tenant}&kinds=events"),
        rv,
        filter,
        kinds,
        events,
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rows() -> Vec<EventRow> {
        view::event_rows(&[
            json!({"type": "Normal", "reason": "Scheduled", "message": "Assigned web-1 to n1",
                   "involvedObject": {"kind": "Pod", "name": "web-1"}, "lastTimestamp": "2026-01-01T00:00:01Z"}),
            json!({"type": "Warning", "reason": "BackOff", "message": "Back-off restarting failed container",
                   "involvedObject": {"kind": "Pod", "name": "web-2"}, "lastTimestamp": "2026-01-01T00:00:03Z"}),
            json!({"type": "Normal", "reason": "ScalingReplicaSet", "message": "Scaled up to 2",
                   "involvedObject": {"kind": "Deployment", "name": "web"}, "lastTimestamp": "2026-01-01T00:00:02Z"}),
        ])
    }

    fn shown(filter: &EventFilter) -> Vec<String> {
        rows()
            .into_iter()
            .filter(|e| filter.admits(e))
            .map(|e| e.reason)
            .collect()
    }

    #[test]
    fn without_a_filter_every_event_shows_newest_first() {
        let filter = EventFilter::default();
        assert!(!filter.active());
        assert_eq!(
            shown(&filter),
            ["BackOff", "ScalingReplicaSet", "Scheduled"]
        );
    }

    #[test]
    fn the_filter_narrows_by_kind_name_type_and_text() {
        let by_kind = EventFilter {
            kind: "Pod".into(),
            ..Default::default()
        };
        assert_eq!(shown(&by_kind), ["BackOff", "Scheduled"]);
        let by_name = EventFilter {
            kind: "Pod".into(),
            name: "web-1".into(),
            ..Default::default()
        };
        assert_eq!(shown(&by_name), ["Scheduled"]);
        let warnings = EventFilter {
            type_: "Warning".into(),
            ..Default::default()
        };
        assert_eq!(shown(&warnings), ["BackOff"]);
        let text = EventFilter {
            q: "scaled UP".into(),
            ..Default::default()
        };
        assert!(text.active());
        assert_eq!(shown(&text), ["ScalingReplicaSet"]);
    }
}
