//! The flows pages: each flow's runs that have been going too long, with the step each one
//! waits on and why (`conveyor flow stuck`), and one run's timeline (`conveyor flow trace`),
//! from the services' own records, the broker and their `/readyz`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use flows::trace::{Finding, StuckReport, Trace};
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

use super::layout::{self, count};
use crate::AppState;
use crate::session::Operator;

/// Runs diagnosed per flow at most, the oldest first.
const DIAGNOSED: i64 = 50;

#[derive(Debug, Deserialize)]
pub(crate) struct StuckQuery {
    /// Seconds a run must have been going.
    #[serde(default)]
    older_than: Option<u64>,
}

pub(crate) async fn stuck(
    State(state): State<Arc<AppState>>,
    operator: Operator,
    Query(query): Query<StuckQuery>,
) -> Response {
    let older_than = query
        .older_than
        .map_or(crate::figures::STUCK_AFTER, Duration::from_secs);
    let reports = reports(&state, older_than).await;
    let body = html! {
        h1 { "Stuck flows" }
        p.hint { "Runs going for longer than " (older_than.as_secs()) " s, with the step each one waits on and why, from the services' own records." }
        @match reports {
            Ok(reports) => { @for report in &reports { (report_section(report)) } },
            Err(problem) => div.problem role="alert" { (problem) },
        }
    };
    layout::page("Flows", "/flows", &operator, body)
}

/// Every flow's stuck report.
///
/// # Errors
/// The reason, when a source or a keeper's database cannot be read.
pub(crate) async fn reports(
    state: &AppState,
    older_than: Duration,
) -> Result<Vec<StuckReport>, String> {
    let sources = state.flow_sources()?;
    let map = system::flow_map(&state.names).map_err(|error| format!("{error:#}"))?;
    let mut reports = Vec::new();
    for flow in system::all_flows() {
        let report = flows::trace::stuck(&sources, &map, flow, older_than, DIAGNOSED)
            .await
            .map_err(|error| error.to_string())?;
        reports.push(report);
    }
    Ok(reports)
}

fn report_section(report: &StuckReport) -> Markup {
    html! {
        section.flow data-flow=(report.flow) {
            h2 { (report.flow) ": " span.stuck-count { (count(u64::try_from(report.running).unwrap_or_default())) } " stuck" }
            @if report.runs.is_empty() {
                p { "None." }
            } @else {
                table.stuck {
                    thead { tr { th { "Run" } th { "Since" } th { "Waits on" } th { "Why" } th { "To resume it" } } }
                    tbody {
                        @for trace in &report.runs {
                            tr data-run=(trace.run.id) {
                                td { a href=(format!("/flows/{}/{}", report.flow, trace.run.id)) { (trace.run.id) } }
                                td { (trace.run.created_at.format("%H:%M:%S")) }
                                td.waits-on {
                                    @if let Some(waiting) = &trace.waiting {
                                        (waiting.service) " to " (waiting.action) " " (waiting.event_type)
                                    } @else { "–" }
                                }
                                td { @for finding in &trace.diagnosis { p { (finding.message) } } }
                                td { (resume_action(trace)) }
                            }
                        }
                    }
                }
            }
            @for parked in &report.parked {
                p.problem { (parked.service) "'s outbox holds parked events: the broker will never take them as they are (" code { "conveyor outbox parked" } ")." }
            }
        }
    }
}

/// What resumes a run, from its first finding: a replay of its dead letters, the service
/// that is down, or the trace to read.
fn resume_action(trace: &Trace) -> Markup {
    let finding: Option<&Finding> = trace.diagnosis.first();
    let service = finding.and_then(|finding| finding.service);
    html! {
        @match (finding.map(|finding| finding.rule), service) {
            (Some("dead-letter"), Some(service)) => a.resume href=(format!("/dead-letters/{service}?correlation_id={}", trace.run.id)) { "its dead letters in " (service) },
            (Some("not-ready" | "no-consumer"), Some(service)) => span.resume { "start " (service) " again" },
            _ => a href=(format!("/flows/{}/{}", trace.flow, trace.run.id)) { "read its timeline" },
        }
    }
}

pub(crate) async fn timeline(
    State(state): State<Arc<AppState>>,
    operator: Operator,
    Path((flow, id)): Path<(String, Uuid)>,
) -> Response {
    let found = async {
        let flow = system::flow_named(&flow).map_err(|error| format!("{error:#}"))?;
        let sources = state.flow_sources()?;
        let map = system::flow_map(&state.names).map_err(|error| format!("{error:#}"))?;
        flows::trace::trace(&sources, &map, flow, id)
            .await
            .map_err(|error| error.to_string())
    }
    .await;
    let (status, body) = match found {
        Ok(Some(trace)) => (StatusCode::OK, trace_view(&trace, &Observers::of(&state))),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            html! { h1 { "No such run" } p { "The flow " (flow) " has no run " code { (id) } "." } },
        ),
        Err(problem) => (
            StatusCode::NOT_FOUND,
            html! { h1 { "Not read" } p.problem role="alert" { (problem) } },
        ),
    };
    let mut response = layout::page("Flow", "/flows", &operator, body);
    *response.status_mut() = status;
    response
}

/// Where a step's log lines and trace can be looked at, when the console knows.
struct Observers<'a> {
    logs: Option<&'a str>,
    traces: Option<&'a str>,
}

impl<'a> Observers<'a> {
    fn of(state: &'a AppState) -> Self {
        Self {
            logs: state.logs_url.as_deref(),
            traces: state.traces_url.as_deref(),
        }
    }

    /// Grafana's Explore on Loki: the lines `service` wrote while handling `event`.
    fn logs_of(&self, service: &str, event: Uuid) -> Option<String> {
        let base = self.logs?;
        let left = serde_json::json!({
            "datasource": "loki",
            "queries": [{ "refId": "A", "expr": format!("{{service=\"{service}\"}} |= \"{event}\"") }],
            "range": { "from": "now-24h", "to": "now" },
        });
        Some(format!(
            "{base}/explore?left={}",
            system::management::percent_encode(&left.to_string())
        ))
    }

    /// Jaeger's search: the spans of `service` that handled `event`.
    fn trace_of(&self, service: &str, event: Uuid) -> Option<String> {
        let base = self.traces?;
        let tags = serde_json::json!({ "event_id": event.to_string() }).to_string();
        Some(format!(
            "{base}/search?service={}&tags={}",
            system::management::percent_encode(service),
            system::management::percent_encode(&tags)
        ))
    }
}

fn observed(observers: &Observers<'_>, service: &str, event: Uuid) -> Markup {
    html! {
        @if let Some(url) = observers.logs_of(service, event) { " · " a.logs href=(url) { "logs" } }
        @if let Some(url) = observers.trace_of(service, event) { " · " a.trace href=(url) { "trace" } }
    }
}

fn trace_view(trace: &Trace, observers: &Observers<'_>) -> Markup {
    let run = &trace.run;
    html! {
        h1 { (trace.flow) " " code { (run.id) } }
        p.run-status { strong { (run.status) } @if let Some(reason) = &run.reason { " (" (reason) ")" }
            " · created " (run.created_at.format("%Y-%m-%d %H:%M:%S%.3f"))
            @if let Some(at) = run.finished_at { " · finished " (at.format("%H:%M:%S%.3f")) }
            @else if let Some(at) = run.deadline_at { " · deadline " (at.format("%H:%M:%S%.3f")) } }
        @if let Some(waiting) = &trace.waiting {
            p.waiting { "Waits on " (waiting.service) " to " (waiting.action) " " (waiting.event_type) " since " (waiting.since.format("%H:%M:%S%.3f")) "." }
        }
        @for finding in &trace.diagnosis { p.finding { (finding.message) } }
        @if !trace.diagnosis.is_empty() { p { (resume_action(trace)) } }
        table.timeline {
            thead { tr { th { "Time" } th { "Event" } th { "From" } th { "To" } th { "Outcome" } } }
            tbody {
                @for event in &trace.events {
                    @if event.handlers.is_empty() {
                        tr { td { (event.created_at.format("%H:%M:%S%.3f")) } td { (event.event_type) } td { (event.emitted_by) } td { "–" } td { "end of its path" (event.publication()) } }
                    }
                    @for handling in &event.handlers {
                        tr { td { (event.created_at.format("%H:%M:%S%.3f")) } td { (event.event_type) } td { (event.emitted_by) } td { (handling.service) } td { (handling.outcome.describe()) (event.publication()) (observed(observers, handling.service, event.id)) } }
                    }
                }
            }
        }
        @for note in &trace.notes { p.note { (note) } }
    }
}
