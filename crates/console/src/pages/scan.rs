//! A scan of one dead-letter queue into groups, streamed to the page as it goes: the
//! groups so far as an HTML fragment every few hundred milliseconds, then the whole. Closing
//! the page (or its Cancel) ends the stream, which stops the scan; every letter read goes back
//! to the queue in its order either way. Without `live`, the answer is the whole page once
//! the scan ends, for a browser without JavaScript.

use std::convert::Infallible;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use conveyor::dead_letter::{DeadLetterQueue, Filter, Groups};
use futures_util::Stream;
use serde::Deserialize;
use tokio::task::JoinHandle;

use super::dead_letters::{GROUPS_SHOWN, groups_table, groups_whole};
use crate::AppState;
use crate::filters::FilterQuery;
use crate::session::Operator;

/// How often the page is sent the groups so far.
const EVERY: Duration = Duration::from_millis(300);

#[derive(Debug, Deserialize)]
pub(crate) struct ScanQuery {
    #[serde(default)]
    live: Option<String>,
    #[serde(flatten)]
    filters: FilterQuery,
}

pub(crate) async fn scan(
    State(state): State<Arc<AppState>>,
    operator: Operator,
    Path(service): Path<String>,
    Query(query): Query<ScanQuery>,
) -> Response {
    if query.live.is_none() {
        return groups_whole(&state, &operator, &service, &query.filters).await;
    }
    let filter = match query.filters.to_filter() {
        Ok(filter) => filter,
        Err(problem) => return problem_stream(problem).into_response(),
    };
    live(state, service, filter).into_response()
}

/// What a running scan has found so far.
#[derive(Default)]
struct Progress {
    groups: Groups,
    read: u64,
    waiting: u64,
}

/// A scan in its own task; dropping it (the page went away) stops the scan.
struct RunningScan {
    progress: Arc<Mutex<Progress>>,
    cancelled: Arc<AtomicBool>,
    task: Option<JoinHandle<Result<(), String>>>,
    service: String,
}

impl Drop for RunningScan {
    fn drop(&mut self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }
}

fn start(state: &Arc<AppState>, service: String, filter: Filter) -> RunningScan {
    let progress = Arc::new(Mutex::new(Progress::default()));
    let cancelled = Arc::new(AtomicBool::new(false));
    let (state, shared, stop, name) = (
        state.clone(),
        progress.clone(),
        cancelled.clone(),
        service.clone(),
    );
    let task = tokio::spawn(async move {
        let queue = DeadLetterQueue::open(&state.amqp, &state.names, &name)
            .await
            .map_err(|error| error.to_string())?;
        lock(&shared).waiting = queue.waiting();
        queue
            .scan_while(|letter| {
                let mut progress = lock(&shared);
                progress.read += 1;
                if filter.matches(&letter) {
                    progress.groups.add(&letter);
                }
                if stop.load(Ordering::Relaxed) || state.shutdown.is_fired() {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .await
            .map(drop)
            .map_err(|error| error.to_string())
    });
    RunningScan {
        progress,
        cancelled,
        task: Some(task),
        service,
    }
}

fn lock(progress: &Mutex<Progress>) -> std::sync::MutexGuard<'_, Progress> {
    progress
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn live(
    state: Arc<AppState>,
    service: String,
    filter: Filter,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let running = start(&state, service, filter);
    let stream = futures_util::stream::unfold(Some(running), |running| async move {
        let mut running = running?;
        tokio::time::sleep(EVERY).await;
        let finished = running.task.as_ref().is_none_or(JoinHandle::is_finished);
        if !finished {
            let event = fragment(&running, "progress", false);
            return Some((Ok(event), Some(running)));
        }
        let outcome = match running.task.take() {
            Some(task) => task.await.unwrap_or_else(|error| Err(error.to_string())),
            None => Ok(()),
        };
        let event = match outcome {
            Ok(()) => fragment(&running, "done", true),
            Err(problem) => Event::default().event("problem").data(problem),
        };
        Some((Ok(event), None))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

fn fragment(running: &RunningScan, name: &str, finished: bool) -> Event {
    let progress = lock(&running.progress);
    let shown = progress.groups.largest(GROUPS_SHOWN);
    let markup = groups_table(
        &running.service,
        &shown,
        &progress.groups,
        progress.read,
        progress.waiting,
        finished,
    );
    Event::default().event(name).data(markup.into_string())
}

fn problem_stream(problem: String) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let event = Event::default().event("problem").data(problem);
    Sse::new(futures_util::stream::iter([Ok(event)]))
}
