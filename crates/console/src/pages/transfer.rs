//! Moving the letters a filter picks to another queue (a parking lot, say) and purging them,
//! from the console: a confirmation page with a dry run first, then the transfer itself,
//! which runs on after the answer, as `conveyor dlq move|purge` would, each copy confirmed
//! before its letter is removed. Its start and end are in the audit log.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use conveyor::dead_letter::audit::{self, AuditRecord, AuditStatus};
use conveyor::dead_letter::{DeadLetterQueue, Destination, TransferOptions, transfer};
use maud::html;
use serde::Deserialize;

use super::layout::{self, count};
use super::replay::{count_matching, filters_summary, hidden_filters, operator_name};
use crate::AppState;
use crate::filters::FilterQuery;
use crate::session::{self, CSRF_FIELD, Operator};

#[derive(Debug, Deserialize)]
pub(crate) struct TransferQuery {
    #[serde(default)]
    dry_run: Option<String>,
    /// The queue to move to (a move only).
    #[serde(default)]
    to: Option<String>,
    /// The service's name typed again (a purge only).
    #[serde(default)]
    confirm: Option<String>,
    #[serde(default)]
    csrf: Option<String>,
    #[serde(flatten)]
    filters: FilterQuery,
}

/// `move` or `purge`, from the path; a move only to a queue of the operator's own (a parking
/// lot), never one the system uses.
fn destination(
    names: &conveyor::Names,
    action: &str,
    to: Option<&str>,
) -> Result<Destination, String> {
    match action {
        "move" => match to.map(str::trim).filter(|to| !to.is_empty()) {
            Some(queue) if crate::broker::is_system_queue(names, queue) => Err(format!(
                "to: {queue} is a queue the system uses; move to a parking-lot queue of your own (a replay sends letters back to their service)"
            )),
            Some(queue) => Ok(Destination::Queue(queue.to_owned())),
            None => Err("to: name the queue to move the letters to (it must exist)".to_owned()),
        },
        "purge" => Ok(Destination::Purge),
        _ => Err(format!("{action} is neither move nor purge")),
    }
}

/// A 404 unless the path names a service of the roster and `move` or `purge`.
fn unknown(service: &str, action: &str) -> Option<Response> {
    let service_known = system::ServiceName::all().any(|known| known.as_str() == service);
    if service_known && matches!(action, "move" | "purge") {
        None
    } else {
        Some(layout::refusal(
            StatusCode::NOT_FOUND,
            "No such page",
            "Dead letters are moved or purged at /dead-letters/SERVICE/move or /purge, for a service of the system.",
        ))
    }
}

pub(crate) async fn confirm(
    State(state): State<Arc<AppState>>,
    operator: Operator,
    Path((service, action)): Path<(String, String)>,
    Query(query): Query<TransferQuery>,
) -> Response {
    if let Some(not_found) = unknown(&service, &action) {
        return not_found;
    }
    let wanted = destination(&state.names, &action, query.to.as_deref());
    let filter = query.filters.to_filter();
    let problem = wanted.as_ref().err().or(filter.as_ref().err()).cloned();
    let dry_run = match (&filter, query.dry_run.is_some()) {
        (Ok(filter), true) => Some(count_matching(&state, &service, filter).await),
        _ => None,
    };
    let verb = if action == "move" { "Move" } else { "Purge" };
    let body = html! {
        h1 { (verb) " dead letters of " a href=(format!("/dead-letters/{service}")) { (service) } }
        @if action == "purge" {
            p { "The letters these filters pick are deleted for good. Type " strong { (service) } " to confirm." }
        } @else {
            p { "The letters these filters pick go to the queue named below, which must exist; each copy is confirmed before its letter leaves " (state.names.dead_letter_queue(&service)) "." }
        }
        (filters_summary(&query.filters))
        @if let Some(problem) = &problem { p.problem role="alert" id="transfer-problem" { (problem) } }
        @match &dry_run {
            Some(Ok((matching, total))) => p #dry-run-result { "Dry run: " strong { (count(*matching)) } " of the " (count(*total)) " dead letters match; nothing was changed." },
            Some(Err(error)) => p.problem role="alert" { "The dry run could not read the queue: " (error) },
            None => {},
        }
        form method="get" action=(format!("/dead-letters/{service}/{action}")) {
            (hidden_filters(&query.filters))
            @if let Some(to) = &query.to { input type="hidden" name="to" value=(to); }
            button type="submit" name="dry_run" value="1" { "Dry run" }
        }
        form method="post" action=(format!("/dead-letters/{service}/{action}")) {
            (hidden_filters(&query.filters))
            input type="hidden" name=(CSRF_FIELD) value=(operator.csrf);
            @if action == "move" {
                label { "To the queue " input #transfer-to type="text" name="to" required value=[query.to.as_deref()]; }
            } @else {
                label { "Service name " input #transfer-confirm type="text" name="confirm" required autocomplete="off"; }
            }
            button #confirm-transfer type="submit" { (verb) }
        }
    };
    layout::page(verb, "/dead-letters", &operator, body)
}

pub(crate) async fn start(
    State(state): State<Arc<AppState>>,
    operator: Operator,
    headers: HeaderMap,
    Path((service, action)): Path<(String, String)>,
    Form(form): Form<TransferQuery>,
) -> Response {
    if let Err(refusal) = session::acting_form(&headers, &operator, form.csrf.as_deref()) {
        return refusal.into_response();
    }
    if let Some(not_found) = unknown(&service, &action) {
        return not_found;
    }
    let checked = destination(&state.names, &action, form.to.as_deref()).and_then(|destination| {
        if destination == Destination::Purge
            && form.confirm.as_deref().map(str::trim) != Some(service.as_str())
        {
            return Err(format!("confirm: type {service} to purge its letters"));
        }
        Ok((destination, form.filters.to_filter()?))
    });
    let (destination, filter) = match checked {
        Ok(checked) => checked,
        Err(problem) => {
            return layout::refusal(StatusCode::BAD_REQUEST, "Nothing was done", &problem);
        }
    };
    // Checked before the audit log hears of it, as the CLI does: a mistyped queue leaves
    // no record.
    let destination_problem = async {
        let queue = DeadLetterQueue::open(&state.amqp, &state.names, &service).await?;
        let checked = queue.check_destination(&destination).await;
        queue.release().await;
        checked
    }
    .await;
    if let Err(error) = destination_problem {
        return layout::refusal(
            StatusCode::BAD_REQUEST,
            "Nothing was done",
            &error.to_string(),
        );
    }
    let options = TransferOptions {
        filter,
        destination: destination.clone(),
        rate: None,
        limit: None,
        window: TransferOptions::DEFAULT_WINDOW,
        run_id: uuid::Uuid::now_v7(),
        one_per_flow: false,
        keep_ids: false,
        stop_on_came_back: false,
        stop: None,
    };
    let target = match &destination {
        Destination::Queue(queue) => queue.clone(),
        _ => "(deleted)".to_owned(),
    };
    let record = AuditRecord {
        filters: options.filter.to_json(),
        run_id: Some(options.run_id),
        ..AuditRecord::new(
            AuditStatus::Started,
            &action,
            &service,
            target,
            operator_name(&operator),
        )
    };
    if let Err(error) = audit::append(&state.amqp, &state.names, &record).await {
        return layout::refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "Nothing was done",
            &format!("the audit log could not be written, so nothing moved: {error}"),
        );
    }
    tokio::spawn(run(state.clone(), service, options, record));
    Redirect::to("/audit").into_response()
}

/// The transfer, then its end record.
async fn run(
    state: Arc<AppState>,
    service: String,
    options: TransferOptions,
    mut record: AuditRecord,
) {
    let outcome = transfer(&state.amqp, &state.names, &service, &options, |_| {}).await;
    record.end_transfer(&outcome);
    if let Err(error) = audit::append(&state.amqp, &state.names, &record).await {
        tracing::warn!(
            service,
            "the end of a {} could not be written in the audit log: {error}",
            record.command
        );
    }
}
