//! The dead-letter pages: every service's count from the broker, one service's queue with
//! its filters, its letters (headers and body, escaped), and its groups by failure
//! fingerprint from a scan (streamed by `scan`, or whole in one answer without JavaScript).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use conveyor::dead_letter::{DeadLetter, DeadLetterQueue, Group, Groups};
use maud::{Markup, html};

use super::layout::{self, count};
use crate::AppState;
use crate::broker::{self, ServiceQueues};
use crate::filters::FilterQuery;
use crate::session::Operator;

/// Groups shown at most; the rest are counted in the summary.
pub(crate) const GROUPS_SHOWN: usize = 100;
/// Letters shown at most on the letters page.
const LETTERS_SHOWN: usize = 20;

pub(crate) async fn list(State(state): State<Arc<AppState>>, operator: Operator) -> Response {
    let body = match broker::service_queues(&state.management, &state.names).await {
        Ok(services) => queues_table(&services),
        Err(error) => layout::unavailable("The broker's queues", &error),
    };
    let body = html! {
        h1 { "Dead letters" }
        p.hint { "Counts from the broker, refreshed live; nothing is read to count them." }
        (body)
    };
    layout::page("Dead letters", "/dead-letters", &operator, body)
}

fn queues_table(services: &BTreeMap<String, ServiceQueues>) -> Markup {
    html! {
        table.figures data-live-source="/live/queues" {
            thead { tr {
                th scope="col" { "Service" }
                th scope="col" { "Dead letters" }
                th scope="col" title="Held now by a reader: another operator's command or scan" { "Held by a reader" }
            } }
            tbody {
                @for (name, figures) in services.iter().filter(|(_, f)| f.has_dead_letter_queue) {
                    tr data-service=(name) {
                        th scope="row" { a href=(format!("/dead-letters/{name}")) { (name) } }
                        td data-live=(format!("{name}.dead_letters")) { (count(figures.dead_letters)) }
                        td { (count(figures.dead_letters_held)) }
                    }
                }
            }
        }
    }
}

/// A service's page: its count, the filters, and the ways to look (groups, letters).
pub(crate) async fn service(
    State(state): State<Arc<AppState>>,
    operator: Operator,
    Path(service): Path<String>,
    Query(filters): Query<FilterQuery>,
) -> Response {
    let services = match broker::service_queues(&state.management, &state.names).await {
        Ok(services) => services,
        Err(error) => {
            let body = layout::unavailable("The broker's queues", &error);
            return layout::page(&service, "/dead-letters", &operator, body);
        }
    };
    let Some(figures) = services.get(&service).filter(|f| f.has_dead_letter_queue) else {
        return unknown_service(&operator, &service);
    };
    let problem = filters.to_filter().err();
    let body = html! {
        h1 { "Dead letters of " (service) }
        p.count {
            strong data-live=(format!("{service}.dead_letters")) data-live-source="/live/queues" { (count(figures.dead_letters)) }
            " in " code { (state.names.dead_letter_queue(&service)) }
        }
        (filter_form(&service, &filters, problem.as_deref()))
        section #scan data-scan-source=(format!("/dead-letters/{service}/scan?live=1{}", filters.to_query())) {
            h2 { "Groups" }
            p.hint { "A scan reads the whole queue and gives every letter back in its order; one reader at a time, as for " code { "conveyor dlq" } "." }
            p {
                a.button #start-scan href=(format!("/dead-letters/{service}/scan?{}", filters.to_query().trim_start_matches('&'))) { "Scan into groups" }
                " "
                button #cancel-scan type="button" hidden { "Cancel" }
            }
            div #scan-result aria-live="polite" {}
        }
        p {
            a href=(format!("/dead-letters/{service}/letters?{}", filters.to_query().trim_start_matches('&'))) { "Show the first " (LETTERS_SHOWN) " matching letters" }
            " · "
            a #replay-matching href=(format!("/dead-letters/{service}/replay?{}", filters.to_query().trim_start_matches('&'))) { "Replay the matching letters…" }
            " · "
            a #move-matching href=(format!("/dead-letters/{service}/move?{}", filters.to_query().trim_start_matches('&'))) { "Move them…" }
            " · "
            a #purge-matching href=(format!("/dead-letters/{service}/purge?{}", filters.to_query().trim_start_matches('&'))) { "Purge them…" }
        }
    };
    layout::page(&service, "/dead-letters", &operator, body)
}

fn unknown_service(operator: &Operator, service: &str) -> Response {
    let body = html! {
        h1 { "No dead-letter queue for " (service) }
        p { "A service's queues exist once it has started on this broker. " a href="/dead-letters" { "The services that have one" } "." }
    };
    let mut response = layout::page(service, "/dead-letters", operator, body);
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

fn filter_form(service: &str, filters: &FilterQuery, problem: Option<&str>) -> Markup {
    let field = |name: &'static str,
                 label: &'static str,
                 value: &Option<String>,
                 hint: &'static str| {
        html! {
            label { (label) input type="text" name=(name) value=[value.as_deref()] placeholder=(hint); }
        }
    };
    html! {
        form.filters method="get" action=(format!("/dead-letters/{service}")) {
            fieldset {
                legend { "Filters (all must hold)" }
                (field("type", "Event type", &filters.event_type, "order.* or #.cancelled"))
                (field("error_kind", "Error kind", &filters.error_kind, "schema, permanent, …"))
                (field("error_contains", "Error contains", &filters.error_contains, "text"))
                (field("correlation_id", "Correlation id", &filters.correlation_id, "the flow's id"))
                (field("id", "Event id", &filters.id, "one event"))
                (field("group", "Group", &filters.group, "fingerprint"))
                button type="submit" { "Apply" }
            }
            @if let Some(problem) = problem {
                p.problem role="alert" id="filter-problem" { (problem) }
            }
        }
    }
}

/// The groups of a whole scan, in one answer (the page's fallback without JavaScript).
pub(crate) async fn groups_whole(
    state: &AppState,
    operator: &Operator,
    service: &str,
    filters: &FilterQuery,
) -> Response {
    let filter = match filters.to_filter() {
        Ok(filter) => filter,
        Err(problem) => return bad_filter(operator, service, &problem),
    };
    let mut groups = Groups::default();
    let scanned = async {
        let queue = DeadLetterQueue::open(&state.amqp, &state.names, service).await?;
        queue
            .scan(|letter| {
                if filter.matches(&letter) {
                    groups.add(&letter);
                }
            })
            .await
    }
    .await;
    let body = match scanned {
        Ok(summary) => html! {
            h1 { "Groups of " (service) }
            (groups_table(service, &groups.largest(GROUPS_SHOWN), &groups, summary.read, summary.waiting, true))
        },
        Err(error) => html! {
            h1 { "Groups of " (service) }
            div.problem role="alert" { (error.to_string()) }
        },
    };
    layout::page(service, "/dead-letters", operator, body)
}

fn bad_filter(operator: &Operator, service: &str, problem: &str) -> Response {
    let body = html! {
        h1 { "Dead letters of " (service) }
        p.problem role="alert" id="filter-problem" { (problem) }
        p { a href=(format!("/dead-letters/{service}")) { "Back without filters" } }
    };
    let mut response = layout::page(service, "/dead-letters", operator, body);
    *response.status_mut() = StatusCode::BAD_REQUEST;
    response
}

/// The groups table with the scan's progress: `read` of `waiting` letters so far.
pub(crate) fn groups_table(
    service: &str,
    shown: &[Group],
    groups: &Groups,
    read: u64,
    waiting: u64,
    finished: bool,
) -> Markup {
    let state = if finished { "done" } else { "scanning" };
    html! {
        p.progress data-scan-state=(state) {
            @if finished { "Scanned " } @else { "Scanning: " }
            span.read { (count(read)) } " of " (count(waiting)) " letters, "
            span.matching { (count(groups.letters())) } " matching"
            @if groups.ungrouped() > 0 {
                ", " (count(groups.ungrouped())) " of kinds past the groups kept (narrow with a filter)"
            }
        }
        @if shown.is_empty() && finished {
            p { "No dead letter matches." }
        } @else {
            table.groups {
                thead { tr {
                    th scope="col" { "Letters" } th scope="col" { "Kind" } th scope="col" { "Type" }
                    th scope="col" { "Error (ids and numbers masked)" } th scope="col" { "First" }
                    th scope="col" { "Last" } th scope="col" { "Sample" }
                } }
                tbody {
                    @for group in shown {
                        tr data-group=(group.fingerprint.id) {
                            td.count { (count(group.count)) }
                            td { (group.fingerprint.error_kind) }
                            td { (group.fingerprint.event_type) }
                            td.error { (group.fingerprint.masked_error) }
                            td { (time(group.first)) }
                            td { (time(group.last)) }
                            td {
                                @if let Some(id) = &group.sample_id {
                                    a href=(format!("/dead-letters/{service}/letters?id={}", system::management::percent_encode(id))) { "one letter" }
                                }
                                " · "
                                a href=(format!("/dead-letters/{service}?group={}", group.fingerprint.id)) { "filter" }
                                " · "
                                a.replay href=(format!("/dead-letters/{service}/replay?group={}", group.fingerprint.id)) { "replay…" }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn time(at: Option<chrono::DateTime<chrono::Utc>>) -> String {
    at.map_or_else(
        || "–".to_owned(),
        |at| at.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

/// The first matching letters, whole: reading stops once they are found.
pub(crate) async fn letters(
    State(state): State<Arc<AppState>>,
    operator: Operator,
    Path(service): Path<String>,
    Query(filters): Query<FilterQuery>,
) -> Response {
    let filter = match filters.to_filter() {
        Ok(filter) => filter,
        Err(problem) => return bad_filter(&operator, &service, &problem),
    };
    let mut shown: Vec<DeadLetter> = Vec::new();
    let read = async {
        let queue = DeadLetterQueue::open(&state.amqp, &state.names, &service).await?;
        queue
            .scan_while(|letter| {
                if filter.matches(&letter) {
                    shown.push(letter);
                }
                if shown.len() >= LETTERS_SHOWN {
                    std::ops::ControlFlow::Break(())
                } else {
                    std::ops::ControlFlow::Continue(())
                }
            })
            .await
    }
    .await;
    let body = html! {
        h1 { "Dead letters of " a href=(format!("/dead-letters/{service}")) { (service) } }
        @match read {
            Ok(_) if shown.is_empty() => p { "No dead letter matches." },
            Ok(_) => {
                p.hint { "The first " (shown.len()) " matching letters, in queue order." }
                @for letter in &shown { (letter_view(&service, letter)) }
            },
            Err(error) => div.problem role="alert" { (error.to_string()) },
        }
    };
    layout::page(&service, "/dead-letters", &operator, body)
}

fn letter_view(service: &str, letter: &DeadLetter) -> Markup {
    let text = |value: &Option<String>| value.clone().unwrap_or_else(|| "–".to_owned());
    html! {
        article.letter {
            dl {
                dt { "Event id" } dd.id { (text(&letter.id)) }
                dt { "Type" } dd { (text(&letter.event_type)) }
                dt { "Error kind" } dd { (text(&letter.error_kind)) }
                dt { "Error" } dd.error { (text(&letter.error)) }
                dt { "Attempts" } dd { (letter.attempts.map_or_else(|| "–".to_owned(), |n| n.to_string())) }
                dt { "Failed at" } dd { (letter.failed_at.map_or_else(|| "–".to_owned(), |at| at.to_rfc3339())) }
                dt { "Correlation id" } dd { (text(&letter.correlation_id)) }
                dt { "First routed as" } dd { (text(&letter.original_routing_key)) }
                dt { "Replayed" } dd { (letter.replay_count) " times" }
                dt { "Fingerprint" } dd { (conveyor::dead_letter::fingerprint(letter).id) }
            }
            pre.body { (letter.body_pretty()) }
            @if let Some(id) = &letter.id {
                p { a.edit href=(format!("/dead-letters/{service}/letters/{}/edit", system::management::percent_encode(id))) { "Edit and retry…" } }
            }
        }
    }
}
