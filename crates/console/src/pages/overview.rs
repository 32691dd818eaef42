//! The overview: each service's queues (instances consuming, consumer lag, events in
//! flight, retry tiers, dead letters), refreshed live over `/live/queues`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use maud::{Markup, html};

use super::layout::{self, count};
use crate::AppState;
use crate::broker::{self, ServiceQueues};
use crate::session::Operator;

pub(crate) async fn page(State(state): State<Arc<AppState>>, operator: Operator) -> Response {
    let body = match broker::service_queues(&state.management, &state.names).await {
        Ok(services) => table(&services),
        Err(error) => layout::unavailable("The broker's queues", &error),
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

fn table(services: &BTreeMap<String, ServiceQueues>) -> Markup {
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
            } }
            tbody {
                @for name in names {
                    @let figures = services.get(name).unwrap_or(&empty);
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
                    }
                }
            }
        }
    }
}
