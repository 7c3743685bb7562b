//! The Berth dashboard: server-rendered pages (askama templates) over the
//! domain layer of `berth-server` ([`berth_server::objects::Objects`],
//! [`berth_server::authz::authorize`]), with a small hand-written script
//! that calls the REST API for every change and keeps pages live.
//!
//! - [`page`]: who is looking (the session), the page chrome, and how a
//!   page is answered (security headers, errors, sign-in redirects).
//! - [`assets`]: the stylesheet and the script, served from the binary.
//! - [`session_pages`]: sign in and out.
//! - [`live`]: one server-sent event stream per page, merging the store's
//!   watches of the kinds the page shows.
//! - [`view`]: what pages show of objects: ages, statuses, conditions.
//! - [`diff`]: line diffs between revisions.
//! - [`overview`], [`deployments`]: the pages.
//! - [`pods`]: the pod list and a pod's page (why it is not running, logs, console).
//! - [`services`], [`config`] (ConfigMaps, Secrets, Volumes),
//!   [`autoscalers`], [`events`], [`nodes`] and [`access`] (members, API
//!   tokens, the audit log): the admin pages.

pub mod access;
pub mod assets;
pub mod autoscalers;
pub mod config;
pub mod deployments;
pub mod diff;
pub mod events;
pub mod live;
pub mod nodes;
pub mod overview;
pub mod page;
pub mod pods;
pub mod services;
pub mod session_pages;
pub mod view;

use actix_web::web;

/// Mounts the dashboard.
pub fn configure(config: &mut web::ServiceConfig) {
    assets::configure(config);
    session_pages::configure(config);
    live::configure(config);
    overview::configure(config);
    deployments::configure(config);
    pods::configure(config);
    services::configure(config);
    self::config::configure(config);
    autoscalers::configure(config);
    events::configure(config);
    nodes::configure(config);
    access::configure(config);
}

/// The dashboard's routes, for [`berth_server::http::serve`].
pub fn routes() -> berth_server::http::ExtraRoutes {
    std::sync::Arc::new(configure)
}
