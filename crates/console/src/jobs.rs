//! Gentle replays the console runs. A replay's state is its audit records, on the broker: a
//! start, pauses and resumes, an end. So a replay survives a page reload (the page asks
//! here) and a console restart: at start, a console resumes every gentle replay whose start
//! has no end, paused if its last record is a pause. Only one process runs a replay at a
//! time: the replay's own exclusive queue refuses a second (see `gentle_replay`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use conveyor::dead_letter::audit::{self, AuditRecord, AuditStatus};
use conveyor::dead_letter::{Control, DeadLetterError, GentleEnd, GentleOptions, GentleProgress};
use tokio::sync::watch;
use uuid::Uuid;

use crate::AppState;
use crate::filters::FilterQuery;

/// The audit records read at start to find replays to resume.
const RECORDS_READ_AT_START: usize = 10_000;
/// How long a replay another process holds is waited for before trying to take it again.
const HELD_ELSEWHERE_RETRY: Duration = Duration::from_secs(10);
/// The mode audit records of gentle replays carry.
pub(crate) const GENTLE: &str = "gentle";

/// Where a replay stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JobState {
    Running,
    Paused,
    /// Another process runs it now (another console, say); this one waits to take over.
    HeldElsewhere,
    /// Ended: the outcome in words.
    Ended(String),
    /// Stopped on an error; letters not sent stay in the dead-letter queue.
    Failed(String),
}

/// A replay as its page shows it.
#[derive(Debug, Clone)]
pub(crate) struct JobView {
    pub(crate) run_id: Uuid,
    pub(crate) service: String,
    pub(crate) filters: FilterQuery,
    pub(crate) rate: Option<f64>,
    pub(crate) started_by: String,
    pub(crate) started_at: DateTime<Utc>,
    pub(crate) progress: GentleProgress,
    pub(crate) state: JobState,
    /// Who cancelled it, once someone has.
    pub(crate) cancelled_by: Option<String>,
}

struct Job {
    view: Mutex<JobView>,
    control: watch::Sender<Control>,
    /// Held while an operator's pause, resume or cancel is written and applied, so two sent
    /// at once are recorded in the order they take effect.
    acting: tokio::sync::Mutex<()>,
}

/// The replays this console knows of, running or ended since it started.
#[derive(Default)]
pub(crate) struct Jobs {
    jobs: Mutex<HashMap<Uuid, Arc<Job>>>,
}

/// What a replay is asked to do.
pub(crate) struct NewReplay {
    pub(crate) service: String,
    pub(crate) filters: FilterQuery,
    pub(crate) rate: Option<f64>,
    pub(crate) operator: String,
}

impl Jobs {
    /// The replay's view, if this console knows it.
    pub(crate) fn view(&self, run_id: Uuid) -> Option<JobView> {
        let job = self.lock().get(&run_id).cloned()?;
        Some(lock(&job.view).clone())
    }

    /// Every replay known, the newest first.
    pub(crate) fn views(&self) -> Vec<JobView> {
        let jobs: Vec<Arc<Job>> = self.lock().values().cloned().collect();
        let mut views: Vec<JobView> = jobs.iter().map(|job| lock(&job.view).clone()).collect();
        views.sort_by_key(|view| std::cmp::Reverse(view.started_at));
        views
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<Job>>> {
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn insert(&self, view: JobView, control: Control) -> Arc<Job> {
        let job = Arc::new(Job {
            view: Mutex::new(view.clone()),
            control: watch::channel(control).0,
            acting: tokio::sync::Mutex::new(()),
        });
        self.lock().insert(view.run_id, job.clone());
        job
    }

    fn job(&self, run_id: Uuid) -> Option<Arc<Job>> {
        self.lock().get(&run_id).cloned()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Starts a gentle replay: its start record first, so nothing moves unaudited.
///
/// # Errors
/// When the audit log cannot be written (nothing was sent then).
pub(crate) async fn start(
    state: &Arc<AppState>,
    replay: NewReplay,
) -> Result<Uuid, DeadLetterError> {
    let view = JobView {
        run_id: Uuid::now_v7(),
        service: replay.service,
        filters: replay.filters,
        rate: replay.rate,
        started_by: replay.operator,
        started_at: Utc::now(),
        progress: GentleProgress::default(),
        state: JobState::Running,
        cancelled_by: None,
    };
    let mut record = record_of(&view, AuditStatus::Started, &view.started_by);
    record.target = state.names.service_queue(&view.service);
    (record.done, record.came_back) = (None, None);
    audit::append(&state.amqp, &state.names, &record).await?;
    let run_id = view.run_id;
    let job = state.jobs.insert(view, Control::Run);
    tokio::spawn(run(state.clone(), job, record));
    Ok(run_id)
}

/// Pauses, resumes or cancels a replay, writing the pause or resume in the audit log.
///
/// # Errors
/// When this console runs no such replay, or the audit log cannot be written.
pub(crate) async fn control(
    state: &Arc<AppState>,
    run_id: Uuid,
    wanted: Control,
    operator: &str,
) -> Result<(), String> {
    let job = state
        .jobs
        .job(run_id)
        .ok_or_else(|| format!("this console runs no replay {run_id}"))?;
    let _acting = job.acting.lock().await;
    let view = lock(&job.view).clone();
    if matches!(view.state, JobState::Ended(_) | JobState::Failed(_)) {
        return Err("this replay has ended".to_owned());
    }
    // A cancel is the replay's end, written now, so that no console resumes it even if this
    // one stops before the batch under way ends.
    let status = match wanted {
        Control::Pause => AuditStatus::Paused,
        Control::Run => AuditStatus::Resumed,
        Control::Cancel => AuditStatus::Finished,
    };
    {
        let mut record = record_of(&view, status, operator);
        record.target = state.names.service_queue(&view.service);
        if wanted == Control::Cancel {
            record.outcome = Some(format!("cancelled by {operator}"));
        }
        audit::append(&state.amqp, &state.names, &record)
            .await
            .map_err(|error| {
                format!("the audit log could not be written, so nothing changed: {error}")
            })?;
    }
    {
        let mut view = lock(&job.view);
        view.state = match wanted {
            Control::Pause => JobState::Paused,
            Control::Run => JobState::Running,
            Control::Cancel => JobState::Ended(format!("cancelled by {operator}")),
        };
        if wanted == Control::Cancel {
            view.cancelled_by = Some(operator.to_owned());
        }
    }
    job.control.send_replace(wanted);
    Ok(())
}

/// A record of `view` as it stands, by `operator` (the target left for the caller).
fn record_of(view: &JobView, status: AuditStatus, operator: &str) -> AuditRecord {
    AuditRecord {
        filters: view
            .filters
            .to_filter()
            .map(|filter| filter.to_json())
            .unwrap_or_default(),
        run_id: Some(view.run_id),
        rate_per_second: view.rate,
        done: Some(view.progress.sent),
        came_back: Some(view.progress.came_back),
        mode: Some(GENTLE.to_owned()),
        ..AuditRecord::new(
            status,
            "replay",
            &view.service,
            String::new(),
            operator.to_owned(),
        )
    }
}

/// Why a replay's run stopped short of an end.
enum Stop {
    /// Another process runs it.
    HeldElsewhere,
    /// The console is stopping: no end record, so the next console resumes it.
    ConsoleStopping,
    /// An error, for the end record.
    Failed(String),
}

/// A task stopped when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs a replay to its end and writes the end record.
async fn run(state: Arc<AppState>, job: Arc<Job>, started: AuditRecord) {
    let stopping = state.shutdown.clone();
    let cancelled_on_stop = job.clone();
    // Gone with this run, however it returns, so no task outlives its replay.
    let _cancel_on_stop = AbortOnDrop(tokio::spawn(async move {
        stopping.fired().await;
        cancelled_on_stop.control.send_replace(Control::Cancel);
    }));
    let outcome = loop {
        match replay(&state, &job).await {
            Err(Stop::HeldElsewhere) => {
                lock(&job.view).state = JobState::HeldElsewhere;
                if state.shutdown.sleep(HELD_ELSEWHERE_RETRY).await {
                    return;
                }
                // The other console may have ended, paused or resumed it meanwhile: the
                // audit log says which, before this one takes it up.
                if !take_up_from_the_log(&state, &job).await {
                    return;
                }
            }
            Err(Stop::ConsoleStopping) => return,
            other => break other,
        }
    };
    if let Some(by) = lock(&job.view).cancelled_by.clone() {
        // Its end was written when it was cancelled.
        lock(&job.view).state = JobState::Ended(format!("cancelled by {by}"));
        return;
    }
    let mut record = started;
    record.at = Utc::now();
    let view = lock(&job.view).clone();
    record.done = Some(view.progress.sent);
    record.came_back = Some(view.progress.came_back);
    let ended = match outcome {
        Ok(end) => {
            let told = end.describe();
            record.status = AuditStatus::Finished;
            record.outcome = Some(told.clone());
            JobState::Ended(told)
        }
        Err(stop) => {
            let error = match stop {
                Stop::Failed(error) => error,
                _ => "stopped".to_owned(),
            };
            record.status = AuditStatus::Failed;
            record.error = Some(error.clone());
            JobState::Failed(error)
        }
    };
    if let Err(error) = audit::append(&state.amqp, &state.names, &record).await {
        tracing::warn!(run_id = %view.run_id, "the end of a replay could not be written in the audit log: {error}");
    }
    lock(&job.view).state = ended;
}

async fn replay(state: &Arc<AppState>, job: &Arc<Job>) -> Result<GentleEnd, Stop> {
    let view = lock(&job.view).clone();
    let filter = view.filters.to_filter().map_err(Stop::Failed)?;
    let inbox = state.database(&view.service).map_err(Stop::Failed)?;
    let options = GentleOptions {
        filter,
        rate: view.rate,
        run_id: view.run_id,
        consumer: view.service.clone(),
    };
    let report = conveyor::dead_letter::gentle_replay(
        &state.amqp,
        &state.names,
        &view.service,
        &inbox,
        &options,
        job.control.subscribe(),
        |progress| lock(&job.view).progress = progress.clone(),
    )
    .await;
    let own_queue = state.names.replay_watch_queue(&view.run_id.to_string());
    match report {
        // Ended by an operator's cancel, its end is written; else the next console goes on.
        _ if state.shutdown.is_fired() && lock(&job.view).cancelled_by.is_none() => {
            Err(Stop::ConsoleStopping)
        }
        Ok(report) => Ok(report.end),
        Err(DeadLetterError::HeldElsewhere { queue, .. }) if queue == own_queue => {
            Err(Stop::HeldElsewhere)
        }
        Err(error) => Err(Stop::Failed(error.to_string())),
    }
}

/// Takes `job`'s state from its newest audit record: `false` when it has ended (another
/// console ended it), else paused or running as the record says.
async fn take_up_from_the_log(state: &AppState, job: &Job) -> bool {
    let run_id = lock(&job.view).run_id;
    let Ok(log) = audit::read(&state.amqp, &state.names, RECORDS_READ_AT_START).await else {
        // Unreadable now: wait as before, and ask again next time.
        return true;
    };
    let last = log
        .records
        .into_iter()
        .rfind(|record| record.run_id == Some(run_id));
    match last {
        Some(record) if record.status.is_end() => {
            let told = record
                .outcome
                .or(record.error)
                .unwrap_or_else(|| "ended by another console".to_owned());
            lock(&job.view).state = JobState::Ended(told);
            false
        }
        Some(record) if record.status == AuditStatus::Paused => {
            lock(&job.view).state = JobState::Paused;
            job.control.send_replace(Control::Pause);
            true
        }
        _ => {
            lock(&job.view).state = JobState::Running;
            job.control.send_replace(Control::Run);
            true
        }
    }
}

/// Resumes every gentle replay whose start has no end in the audit log (paused where its
/// last record is a pause): what a console stopped or killed mid-replay left.
pub(crate) async fn resume_unfinished(state: Arc<AppState>) {
    let log = match audit::read(&state.amqp, &state.names, RECORDS_READ_AT_START).await {
        Ok(log) => log,
        Err(error) => {
            tracing::warn!("the audit log could not be read, so no replay was resumed: {error}");
            return;
        }
    };
    let mut runs: BTreeMap<Uuid, Vec<AuditRecord>> = BTreeMap::new();
    for record in log.records {
        if record.mode.as_deref() == Some(GENTLE)
            && let Some(run_id) = record.run_id
        {
            runs.entry(run_id).or_default().push(record);
        }
    }
    for (run_id, records) in runs {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            continue;
        };
        if first.status != AuditStatus::Started || last.status.is_end() {
            continue;
        }
        let paused = last.status == AuditStatus::Paused;
        let view = JobView {
            run_id,
            service: first.service.clone(),
            filters: serde_json::from_value(first.filters.clone()).unwrap_or_default(),
            rate: first.rate_per_second,
            started_by: first.operator.clone(),
            started_at: first.at,
            progress: GentleProgress::default(),
            state: if paused {
                JobState::Paused
            } else {
                JobState::Running
            },
            cancelled_by: None,
        };
        tracing::info!(%run_id, service = %view.service, paused, "resuming a gentle replay");
        let control = if paused { Control::Pause } else { Control::Run };
        let job = state.jobs.insert(view, control);
        tokio::spawn(run(state.clone(), job, first.clone()));
    }
}
