//! Replaying dead letters gently from the console: a confirmation page (with a dry run that
//! counts what would go), the start, and each replay's page with its progress, live, and
//! pause, resume and cancel. Every action is a POST from the console's page with the
//! session's CSRF token, and leaves its record in the audit log.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use conveyor::dead_letter::{BATCH_SIZES, Control, DeadLetterQueue};
use futures_util::Stream;
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

use super::layout::{self, count};
use crate::AppState;
use crate::filters::FilterQuery;
use crate::jobs::{self, JobState, JobView, NewReplay};
use crate::session::{self, CSRF_FIELD, Operator};

/// The rate a replay page offers first, in letters per second.
const DEFAULT_RATE: f64 = 5.0;
/// The highest rate a replay may ask for.
const MAX_RATE: f64 = 10_000.0;
/// The lowest: one letter every ten seconds.
const MIN_RATE: f64 = 0.1;
/// How often a replay's page is sent its progress.
const EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Deserialize)]
pub(crate) struct ConfirmQuery {
    #[serde(default)]
    dry_run: Option<String>,
    #[serde(default)]
    rate: Option<String>,
    #[serde(flatten)]
    filters: FilterQuery,
}

#[derive(Debug, Deserialize)]
pub(crate) struct StartForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    rate: Option<String>,
    #[serde(flatten)]
    filters: FilterQuery,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ActionForm {
    #[serde(default)]
    csrf: Option<String>,
}

/// The rate asked for: a number of letters per second from [`MIN_RATE`] to [`MAX_RATE`].
fn parse_rate(text: Option<&str>) -> Result<f64, String> {
    let text = text.map(str::trim).filter(|text| !text.is_empty());
    let Some(text) = text else {
        return Ok(DEFAULT_RATE);
    };
    match text.parse::<f64>() {
        Ok(rate) if (MIN_RATE..=MAX_RATE).contains(&rate) => Ok(rate),
        _ => Err(format!(
            "rate {text:?} is not a number of letters per second from {MIN_RATE} to {MAX_RATE}"
        )),
    }
}

pub(crate) async fn confirm(
    State(state): State<Arc<AppState>>,
    operator: Operator,
    Path(service): Path<String>,
    Query(query): Query<ConfirmQuery>,
) -> Response {
    if !system::ServiceName::all().any(|known| known.as_str() == service) {
        return layout::refusal(
            StatusCode::NOT_FOUND,
            "No such service",
            "Replays are of a service of the system's dead letters.",
        );
    }
    let filter = query.filters.to_filter();
    let rate = parse_rate(query.rate.as_deref());
    let dry_run = match (&filter, query.dry_run.is_some()) {
        (Ok(filter), true) => Some(count_matching(&state, &service, filter).await),
        _ => None,
    };
    let problem = filter.as_ref().err().or(rate.as_ref().err()).cloned();
    let body = html! {
        h1 { "Replay dead letters of " a href=(format!("/dead-letters/{service}")) { (service) } }
        p { "The letters these filters pick go back to " code { (state.names.service_queue(&service)) }
            ", so only " (service) "'s consumer sees them again, gently: in batches of "
            (BATCH_SIZES.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")) ", …, one letter per flow in a batch. "
            "Each batch is followed until every letter is handled or back in the dead-letter queue; "
            "the replay stops by itself as soon as one fails again." }
        (filters_summary(&query.filters))
        @if let Some(problem) = &problem {
            p.problem role="alert" id="replay-problem" { (problem) }
        }
        @match &dry_run {
            Some(Ok((matching, total))) => p #dry-run-result {
                "Dry run: " strong { (count(*matching)) } " of the " (count(*total)) " dead letters match; nothing was sent."
            },
            Some(Err(error)) => p.problem role="alert" { "The dry run could not read the queue: " (error) },
            None => {},
        }
        form.replay method="get" action=(format!("/dead-letters/{service}/replay")) {
            (hidden_filters(&query.filters))
            input type="hidden" name="rate" value=(query.rate.clone().unwrap_or_default());
            button type="submit" name="dry_run" value="1" { "Dry run" }
        }
        @if problem.is_none() {
            form.replay method="post" action=(format!("/dead-letters/{service}/replay")) {
                (hidden_filters(&query.filters))
                input type="hidden" name=(CSRF_FIELD) value=(operator.csrf);
                label { "Letters per second at most " input #replay-rate type="number" name="rate" min=(MIN_RATE) step="any" max=(MAX_RATE) value=(rate.clone().unwrap_or(DEFAULT_RATE)); }
                button #confirm-replay type="submit" { "Replay gently" }
            }
        }
    };
    let mut response = layout::page("Replay", "/dead-letters", &operator, body);
    if problem.is_some() {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    response
}

/// Letters matching `filter`, and letters read, from a scan that gives every letter back.
pub(crate) async fn count_matching(
    state: &AppState,
    service: &str,
    filter: &conveyor::dead_letter::Filter,
) -> Result<(u64, u64), String> {
    let queue = DeadLetterQueue::open(&state.amqp, &state.names, service)
        .await
        .map_err(|error| error.to_string())?;
    let mut matching = 0;
    let summary = queue
        .scan(|letter| {
            if filter.matches(&letter) {
                matching += 1;
            }
        })
        .await
        .map_err(|error| error.to_string())?;
    Ok((matching, summary.read))
}

pub(crate) fn filters_summary(filters: &FilterQuery) -> Markup {
    let query = filters.to_query();
    html! {
        p.filters-summary {
            @if query.is_empty() { "Every dead letter of the queue." }
            @else { "Filters: " code { (query.trim_start_matches('&').replace('&', " · ")) } }
        }
    }
}

pub(crate) fn hidden_filters(filters: &FilterQuery) -> Markup {
    html! {
        @for (name, value) in filters.set() {
            input type="hidden" name=(name) value=(value);
        }
    }
}

pub(crate) async fn start(
    State(state): State<Arc<AppState>>,
    operator: Operator,
    headers: HeaderMap,
    Path(service): Path<String>,
    Form(form): Form<StartForm>,
) -> Response {
    if let Err(refusal) = session::acting_form(&headers, &operator, form.csrf.as_deref()) {
        return refusal.into_response();
    }
    let rate = match (parse_rate(form.rate.as_deref()), form.filters.to_filter()) {
        (Ok(rate), Ok(_)) => rate,
        (Err(problem), _) | (_, Err(problem)) => {
            return layout::refusal(StatusCode::BAD_REQUEST, "Not replayed", &problem);
        }
    };
    let replay = NewReplay {
        service,
        filters: form.filters,
        rate: Some(rate),
        operator: operator_name(&operator),
    };
    match jobs::start(&state, replay).await {
        Ok(run_id) => Redirect::to(&format!("/replays/{run_id}")).into_response(),
        Err(error) => layout::refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not replayed",
            &format!("the audit log could not be written, so nothing was sent: {error}"),
        ),
    }
}

/// How the audit log names an operator of the console.
pub(crate) fn operator_name(operator: &Operator) -> String {
    format!("{} (console)", operator.subject)
}

pub(crate) async fn list(State(state): State<Arc<AppState>>, operator: Operator) -> Response {
    let views = state.jobs.views();
    let body = html! {
        h1 { "Replays" }
        p.hint { "The gentle replays this console runs or ran since it started; every one is in the " a href="/audit" { "audit log" } "." }
        @if views.is_empty() { p { "None yet: start one from a service's dead letters." } }
        @else {
            table.replays {
                thead { tr { th { "Started" } th { "Service" } th { "By" } th { "Sent" } th { "Handled" } th { "Came back" } th { "State" } } }
                tbody {
                    @for view in &views {
                        tr {
                            td { a href=(format!("/replays/{}", view.run_id)) { (view.started_at.format("%Y-%m-%d %H:%M:%S")) } }
                            td { (view.service) } td { (view.started_by) }
                            td { (count(view.progress.sent)) } td { (count(view.progress.handled)) }
                            td { (count(view.progress.came_back)) } td { (state_text(&view.state)) }
                        }
                    }
                }
            }
        }
    };
    layout::page("Replays", "/replays", &operator, body)
}

pub(crate) async fn show(
    State(state): State<Arc<AppState>>,
    operator: Operator,
    Path(run_id): Path<Uuid>,
) -> Response {
    let Some(view) = state.jobs.view(run_id) else {
        let body = html! {
            h1 { "No such replay here" }
            p { "This console runs no replay " code { (run_id) } ". Another console may run it; the " a href="/audit" { "audit log" } " has them all." }
        };
        let mut response = layout::page("Replay", "/replays", &operator, body);
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    };
    let body = html! {
        h1 { "Replay of " (view.service) "'s dead letters" }
        (filters_summary(&view.filters))
        p { "Started by " (view.started_by) " at " (view.started_at.format("%Y-%m-%d %H:%M:%S")) " UTC, at most "
            (view.rate.map_or_else(|| "any number of".to_owned(), |rate| rate.to_string())) " letters per second." }
        div #replay-status data-replay-source=(format!("/live/replays/{run_id}")) { (status(&view)) }
        (actions(&view, &operator))
    };
    layout::page("Replay", "/replays", &operator, body)
}

fn state_text(state: &JobState) -> String {
    match state {
        JobState::Running => "running".to_owned(),
        JobState::Paused => "paused".to_owned(),
        JobState::HeldElsewhere => "waiting: another console runs it".to_owned(),
        JobState::Ended(outcome) => outcome.clone(),
        JobState::Failed(error) => format!("failed: {error}"),
    }
}

/// The replay's figures and state: the fragment its page refreshes.
pub(crate) fn status(view: &JobView) -> Markup {
    let progress = &view.progress;
    let ended = matches!(view.state, JobState::Ended(_) | JobState::Failed(_));
    html! {
        p.replay-state data-state=(if ended { "ended" } else { "running" }) { strong { (state_text(&view.state)) } }
        dl.replay-figures {
            dt { "Batches sent" } dd data-figure="batches" { (count(progress.batches)) }
            dt { "Next batch" } dd { (count(progress.batch_size)) " letters" }
            dt { "Letters sent" } dd data-figure="sent" { (count(progress.sent)) }
            dt { "Handled" } dd data-figure="handled" { (count(progress.handled)) }
            dt { "Came back" } dd data-figure="came_back" { (count(progress.came_back)) }
            dt { "In flight" } dd data-figure="in_flight" { (count(progress.in_flight)) }
        }
    }
}

fn actions(view: &JobView, operator: &Operator) -> Markup {
    let form = |action: &str, label: &str| {
        html! {
            form.action method="post" action=(format!("/replays/{}/{action}", view.run_id)) {
                input type="hidden" name=(CSRF_FIELD) value=(operator.csrf);
                button type="submit" id=(format!("{action}-replay")) { (label) }
            }
        }
    };
    html! {
        div.actions {
            @match view.state {
                JobState::Running | JobState::HeldElsewhere => { (form("pause", "Pause")) (form("cancel", "Cancel")) },
                JobState::Paused => { (form("resume", "Resume")) (form("cancel", "Cancel")) },
                _ => { a href=(format!("/dead-letters/{}", view.service)) { "Back to " (view.service) "'s dead letters" } },
            }
        }
    }
}

pub(crate) async fn act(
    State(state): State<Arc<AppState>>,
    operator: Operator,
    headers: HeaderMap,
    Path((run_id, action)): Path<(Uuid, String)>,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Err(refusal) = session::acting_form(&headers, &operator, form.csrf.as_deref()) {
        return refusal.into_response();
    }
    let wanted = match action.as_str() {
        "pause" => Control::Pause,
        "resume" => Control::Run,
        "cancel" => Control::Cancel,
        _ => {
            return layout::refusal(
                StatusCode::NOT_FOUND,
                "No such action",
                "A replay can be paused, resumed or cancelled.",
            );
        }
    };
    match jobs::control(&state, run_id, wanted, &operator_name(&operator)).await {
        Ok(()) => Redirect::to(&format!("/replays/{run_id}")).into_response(),
        Err(problem) => layout::refusal(StatusCode::CONFLICT, "Not done", &problem),
    }
}

/// The replay's status fragment every half second until it ends.
pub(crate) async fn live(
    State(state): State<Arc<AppState>>,
    _operator: Operator,
    Path(run_id): Path<Uuid>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = futures_util::stream::unfold(Some(state), move |state| async move {
        let state = state?;
        if state.shutdown.sleep(EVERY).await {
            return None;
        }
        let view = state.jobs.view(run_id)?;
        let ended = matches!(view.state, JobState::Ended(_) | JobState::Failed(_));
        let event = Event::default()
            .event(if ended { "ended" } else { "progress" })
            .data(status(&view).into_string());
        Some((Ok(event), (!ended).then_some(state)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
