//! The overview: each service's queues (instances consuming, consumer lag, events in
//! flight, retry tiers, dead letters) and outbox (backlog, oldest unsent event, parked rows),
//! each flow's runs in flight and stuck, and the events published per type in the last
//! minute, refreshed live over `/live/queues`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use maud::{Markup, html};

use super::layout::{self, count};
use crate::AppState;
use crate::broker::{self, ServiceQueues};
use crate::figures::{self, DatabaseFigures};
use crate::session::Operator;

pub(crate) async fn page(State(state): State<Arc<AppState>>, operator: Operator) -> Response {
    let (queues, databases) = tokio::join!(
        broker::service_queues(&state.management, &state.names),
        figures::read(&state)
    );
    let body = match queues {
        Ok(services) => {
            html! { (table(&services, &databases)) (flows_table(&databases)) (per_minute(&databases)) }
        }
        Err(error) => layout::unavailable("The broker's queues", &error),
    };
    let body = html! {
        (body)
        @for problem in &databases.problems { p.problem { (problem) } }
    };
    let body = html! {
        h1 { "Overview" }
        p.hint { "From the broker's own counts (nothing is read to count); refreshed every few seconds while this page is open." }
        (body)
        p { "Prometheus raises an alert for parked outbox rows, a stale outbox, dead letters, consumer lag, an open circuit breaker, unrouted events and stuck flows; "
            a href="/runbooks" { "each alert's runbook" } " says what it means and what to do." }
    };
    layout::page("Overview", "/", &operator, body)
}

fn table(services: &BTreeMap<String, ServiceQueues>, databases: &DatabaseFigures) -> Markup {
    let roster: Vec<&str> = system::ServiceName::all()
        .map(system::ServiceName::as_str)
        .collect();
    // The roster's services first, in its order, then any other service the broker knows.
    let others = services
        .keys()
        .filter(|name| !roster.contains(&name.as_str()));
    let names: Vec<&str> = roster
        .iter()
        .copied()
        .chain(others.map(String::as_str))
        .collect();
    let empty = ServiceQueues::default();
    html! {
        table.figures data-live-source="/live/queues" {
            thead { tr {
                th scope="col" { "Service" }
                th scope="col" title="Consumers on its events queue" { "Instances" }
                th scope="col" title="Events waiting in its queue: its consumer lag" { "Waiting" }
                th scope="col" title="Delivered, not yet settled" { "In flight" }
                th scope="col" title="Waiting in its retry tiers" { "Retrying" }
                th scope="col" { "Dead letters" }
                th scope="col" title="Events committed, not yet published" { "Outbox" }
                th scope="col" title="Seconds the oldest unsent event has waited" { "Oldest unsent (s)" }
                th scope="col" title="Events the broker will never take as they are" { "Parked" }
            } }
            tbody {
                @for name in names {
                    @let figures = services.get(name).unwrap_or(&empty);
                    @let outbox = databases.outboxes.get(name).cloned().unwrap_or_default();
                    tr data-service=(name) {
                        th scope="row" { (name) }
                        td data-live=(format!("{name}.consumers")) { (count(figures.consumers)) }
                        td data-live=(format!("{name}.waiting")) { (count(figures.waiting)) }
                        td data-live=(format!("{name}.in_flight")) { (count(figures.in_flight)) }
                        td data-live=(format!("{name}.retrying")) { (count(figures.retrying.values().sum())) }
                        td {
                            @if figures.has_dead_letter_queue {
                                a href=(format!("/dead-letters/{name}")) data-live=(format!("{name}.dead_letters")) {
                                    (count(figures.dead_letters))
                                }
                            } @else {
                                span.none title="No dead-letter queue: the service has not started on this broker" { "–" }
                            }
                        }
                        td data-live=(format!("{name}.outbox_backlog")) { (count(u64::try_from(outbox.backlog).unwrap_or_default())) }
                        td data-live=(format!("{name}.outbox_oldest_seconds")) { (outbox.oldest_seconds.round()) }
                        td data-live=(format!("{name}.outbox_parked")) { (count(u64::try_from(outbox.parked).unwrap_or_default())) }
                    }
                }
            }
        }
    }
}

fn flows_table(databases: &DatabaseFigures) -> Markup {
    html! {
        h2 { "Flows" }
        table.figures.flows {
            thead { tr {
                th scope="col" { "Flow" }
                th scope="col" { "In flight" }
                th scope="col" title=(format!("Going for longer than {} s", figures::STUCK_AFTER.as_secs())) { "Stuck" }
            } }
            tbody {
                @for (flow, runs) in &databases.flows {
                    tr data-flow=(flow) {
                        th scope="row" { (flow) }
                        td data-live=(format!("flow.{flow}.in_flight")) { (runs.in_flight) }
                        td { a href="/flows" data-live=(format!("flow.{flow}.stuck")) { (runs.stuck) } }
                    }
                }
            }
        }
    }
}

fn per_minute(databases: &DatabaseFigures) -> Markup {
    html! {
        h2 { "Events in the last minute" }
        @if databases.per_minute.is_empty() {
            p { "None published." }
        } @else {
            table.figures.per-minute {
                thead { tr { th scope="col" { "Type" } th scope="col" { "Published" } } }
                tbody {
                    @for (event_type, published) in &databases.per_minute {
                        tr { th scope="row" { (event_type) } td data-live=(format!("type.{event_type}")) { (published) } }
                    }
                }
            }
        }
    }
}
