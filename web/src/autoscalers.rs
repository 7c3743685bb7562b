//! Autoscalers (HorizontalPodAutoscalers): what each scales, between which
//! bounds, its replicas now and wanted, and each metric it follows against
//! its target (`cpu 45% / 70%`).

use actix_web::{HttpResponse, web};
use askama::Template;
use berth_api::objects::Kind;
use serde_json::Value;

use crate::page::{self, Chrome, PageError, Viewer};
use crate::view;

/// Mounts `/t/{tenant}/autoscalers`.
pub fn configure(config: &mut web::ServiceConfig) {
    config.route("/t/{tenant}/autoscalers", web::get().to(list));
}

/// One metric against its target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricRow {
    /// `cpu` or `memory`.
    pub name: String,
    /// The value seen, as written (`45%`, `120Mi`); empty when none yet.
    pub current: String,
    /// The target, as written (`70%`, `200Mi`).
    pub target: String,
    /// For a utilization target, the meter: (current, target) in percent.
    pub utilization: Option<(i64, i64)>,
    /// Whether the value is above its target.
    pub above: bool,
}

impl MetricRow {
    /// The meter's maximum: twice the target, or the value when it is
    /// higher still.
    pub fn meter_max(&self) -> i64 {
        self.utilization
            .map_or(100, |(current, target)| (2 * target).max(current).max(1))
    }
}

/// The metrics of an autoscaler with what its status last saw of each.
pub fn metrics(hpa: &Value) -> Vec<MetricRow> {
    let current = hpa
        .pointer("/status/currentMetrics")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    hpa.pointer("/spec/metrics")
        .and_then(Value::as_array)
        .map(|specs| {
            specs
                .iter()
                .filter_map(|spec| {
                    let name = view::text(spec, "/resource/name");
                    if name.is_empty() {
                        return None;
                    }
                    let seen = current
                        .iter()
                        .find(|c| view::text(c, "/resource/name") == name);
                    let target_percent = spec
                        .pointer("/resource/target/averageUtilization")
                        .and_then(Value::as_i64);
                    Some(match target_percent {
                        Some(target) => {
                            let now = seen.and_then(|c| {
                                c.pointer("/resource/current/averageUtilization")
                                    .and_then(Value::as_i64)
                            });
                            MetricRow {
                                name,
                                current: now.map(|n| format!("{n}%")).unwrap_or_default(),
                                target: format!("{target}%"),
                                utilization: now.map(|n| (n, target)),
                                above: now.is_some_and(|n| n > target),
                            }
                        }
                        None => MetricRow {
                            name,
                            current: seen
                                .map(|c| view::text(c, "/resource/current/averageValue"))
                                .unwrap_or_default(),
                            target: view::text(spec, "/resource/target/averageValue"),
                            utilization: None,
                            above: false,
                        },
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One autoscaler.
struct AutoscalerRow {
    name: String,
    target_kind: String,
    target_name: String,
    min: i64,
    max: i64,
    current: String,
    /// The replicas it wants; `None` before it has reported anything.
    desired: Option<i64>,
    metrics: Vec<MetricRow>,
    /// What keeps it from scaling, if anything (a False condition's
    /// message, or that it is held at a bound).
    note: String,
    tone: &'static str,
    last_scale: String,
    age: String,
}

fn autoscaler_row(hpa: &Value) -> AutoscalerRow {
    let min = hpa
        .pointer("/spec/minReplicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let conditions = view::conditions(hpa);
    let failing = conditions
        .iter()
        .find(|c| c.status == "False" && c.kind != "ScalingLimited");
    let limited = conditions
        .iter()
        .find(|c| c.kind == "ScalingLimited" && c.status == "True");
    let explain = |c: &view::Condition| {
        if c.message.is_empty() {
            c.reason.clone()
        } else {
            c.message.clone()
        }
    };
    let (note, tone) = match (failing, limited) {
        (Some(c), _) => (explain(c), "bad"),
        (None, Some(c)) => (explain(c), "warn"),
        (None, None) => (String::new(), "ok"),
    };
    let current = hpa
        .pointer("/status/currentReplicas")
        .and_then(Value::as_i64)
        .map(|n| n.to_string())
        .unwrap_or_default();
    AutoscalerRow {
        name: view::name(hpa),
        target_kind: view::text(hpa, "/spec/scaleTargetRef/kind"),
        target_name: view::text(hpa, "/spec/scaleTargetRef/name"),
        min,
        max: view::number(hpa, "/spec/maxReplicas"),
        current,
        desired: hpa
            .pointer("/status/desiredReplicas")
            .and_then(Value::as_i64),
        metrics: metrics(hpa),
        note,
        tone,
        last_scale: view::age_since(
            &view::text(hpa, "/status/lastScaleTime"),
            chrono::Utc::now(),
        ),
        age: view::age(hpa),
    }
}

#[derive(Template)]
#[template(path = "autoscalers.html")]
struct ListPage {
    chrome: Chrome,
    live: String,
    rv: i64,
    rows: Vec<AutoscalerRow>,
}

async fn list(viewer: Viewer, tenant: web::Path<String>) -> Result<HttpResponse, PageError> {
    let tenant = tenant.into_inner();
    viewer.open(&tenant)?;
    let t = Some(tenant.as_str());
    let (items, rv) = viewer.list(Kind::HorizontalPodAutoscaler, t).await?;
    let mut rows: Vec<AutoscalerRow> = items.iter().map(autoscaler_row).collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    page::render(&ListPage {
        chrome: viewer
            .chrome(t, "autoscalers", format!("{tenant} · Autoscalers"))
            .await?,
        live: format!(
            "/live?tenant={tenant}&kinds={}",
            Kind::HorizontalPodAutoscaler.plural()
        ),
        rv,
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_cpu_target_reads_as_current_against_target_percent() {
        let hpa = json!({
            "spec": {"maxReplicas": 5, "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}},
                {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "200Mi"}}}
            ]},
            "status": {"desiredReplicas": 2, "currentMetrics": [
                {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 95}}}
            ]}
        });
        let rows = metrics(&hpa);
        assert_eq!(rows[0].current, "95%");
        assert_eq!(rows[0].target, "70%");
        assert_eq!(rows[0].utilization, Some((95, 70)));
        assert!(rows[0].above);
        assert_eq!(rows[0].meter_max(), 140);
        assert_eq!(rows[1].current, "");
        assert_eq!(rows[1].target, "200Mi");
        assert_eq!(rows[1].utilization, None);
    }

    #[test]
    fn an_autoscaler_that_cannot_read_its_metrics_says_why() {
        let hpa = json!({
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 4},
            "status": {"desiredReplicas": 1, "conditions": [
                {"type": "AbleToScale", "status": "True"},
                {"type": "ScalingActive", "status": "False", "reason": "FailedGetResourceMetric",
                 "message": "no metrics for pods of web yet"}
            ]}
        });
        let row = autoscaler_row(&hpa);
        assert_eq!(row.min, 1);
        assert_eq!(row.tone, "bad");
        assert_eq!(row.note, "no metrics for pods of web yet");
    }
}
