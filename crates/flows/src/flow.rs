//! A flow's declaration: plain constants, so a service crate declares its flows as statics.

use std::time::Duration;

/// A choreographed flow: no coordinator runs it; each service answers the events it handles,
/// and this says which, so tooling can follow one run of it across services.
#[derive(Debug, Clone, Copy)]
pub struct Flow {
    /// `order`: names the flow in commands (`conveyor flow diagram order`).
    pub name: &'static str,
    /// One sentence: what one run of it does.
    pub summary: &'static str,
    /// The event that starts a run.
    pub starts_with: &'static str,
    /// What ties a run's events together: each carries the run's id as its subject, and as
    /// this field of its data.
    pub key: &'static str,
    pub steps: &'static [Step],
    /// The events that end a run, each with how.
    pub ends: &'static [End],
    /// What each participant undoes when a run fails after its step.
    pub compensations: &'static [Compensation],
    pub deadline: Deadline,
    pub runs: Runs,
    /// What each participant's records must hold of a finished run, checked by
    /// `conveyor flow reconcile`.
    pub agreements: &'static [Agreement],
}

/// One step: `service` handles `on` and answers with one of `emits`.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub on: &'static str,
    pub service: &'static str,
    pub emits: &'static [&'static str],
}

/// An event that ends a run.
#[derive(Debug, Clone, Copy)]
pub struct End {
    pub event: &'static str,
    pub outcome: Outcome,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

/// What `service` owes when a run fails: on the failure event `on`, it undoes the step it
/// took on `undoes` (nothing, if it never took it), answering with `emits` when it undid
/// something.
#[derive(Debug, Clone, Copy)]
pub struct Compensation {
    pub service: &'static str,
    pub on: &'static str,
    pub undoes: &'static str,
    pub emits: &'static [&'static str],
}

/// How long a run may take before `owner` ends it with `ends_with`; the time while the
/// broker is unreachable does not count.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    pub owner: &'static str,
    pub default: Duration,
    /// The owner's setting that changes it.
    pub setting: &'static str,
    /// The event the owner schedules when a run starts (`Outbox::add_after`, so only watched
    /// time counts), takes back when the run ends, and handles when it comes: a run still
    /// going then ends with `ends_with`.
    pub timer: &'static str,
    pub ends_with: &'static str,
}

/// Where a flow's runs are kept, so tooling can find one by its id, tell whether it is still
/// going, and list those that have waited long: a query the keeping service declares over
/// its own database (its tables stay its own; the query is the interface).
#[derive(Debug, Clone, Copy)]
pub struct Runs {
    /// The service whose database keeps each run (the one that starts it, usually).
    pub service: &'static str,
    /// A `SELECT` over that database, one row per run, with these columns: `id` (uuid: the
    /// correlation id of the run's events), `status` (text: the keeper's own word for where
    /// the run is), `running` (boolean), `reason` and `detail` (text: why and how it failed,
    /// or null), `created_at` and `finished_at` (timestamptz, null while running). Tooling
    /// wraps it in a filter on those columns (`id = $1`, `running AND created_at < …`), which
    /// Postgres takes into the query, so the keeper's own indexes serve.
    pub query: &'static str,
}

/// What one participant's records must hold of each finished run, as the keeper sees it:
/// two queries, each a `SELECT` with the columns `id` (uuid: the run) and a jsonb value,
/// one row per run at most; a run without a row holds null (nothing). Tooling wraps each in
/// `id = ANY($1)`, which Postgres takes into the query, so the services' indexes serve.
#[derive(Debug, Clone, Copy)]
pub struct Agreement {
    /// What is compared, in a word (`refund`, `restock`).
    pub name: &'static str,
    /// Over the keeper's database: what the participant should hold of each run.
    pub expects: &'static str,
    /// The participant.
    pub service: &'static str,
    /// Over the participant's database: what it holds of each run.
    pub holds: &'static str,
}

impl Flow {
    /// The services that take a step or owe a compensation: a service that only listens to
    /// the flow's events is none of them, and owes nothing.
    pub fn participants(&self) -> Vec<&'static str> {
        let mut services: Vec<&'static str> = Vec::new();
        let named = self
            .steps
            .iter()
            .map(|step| step.service)
            .chain(self.compensations.iter().map(|owed| owed.service));
        for service in named {
            if !services.contains(&service) {
                services.push(service);
            }
        }
        services
    }

    /// How `event` ends a run, if it does.
    pub fn outcome_of(&self, event: &str) -> Option<Outcome> {
        self.ends
            .iter()
            .find(|end| end.event == event)
            .map(|end| end.outcome)
    }
}
