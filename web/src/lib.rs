//! The Berth dashboard: askama templates, static assets and its routes.
