//! The compensation guard every participant of a flow needs, whatever the flow: answers
//! arrive late and out of order, so a service remembers the runs it saw fail, in a table of
//! its own. A step that arrives after the failure is skipped; a step taken before it is
//! undone, once. The runtime serializes events that share a run's key, so a step and the
//! failure of one run never run at the same time, in any replica.
//!
//! A step's own guard is one query: [`settled_condition!`] (took the step already, or saw
//! the run fail) inside the step's statement, or [`settled_query!`] and [`is_settled`].

use conveyor::{Event, EventHandler, EventMeta, HandlerContext, HandlerError};
use sqlx::PgConnection;
use uuid::Uuid;

/// The key every event of one run is serialized on: the run's id.
pub fn run_key(run_id: Uuid) -> String {
    run_id.to_string()
}

/// Where a service remembers the runs of one flow that failed: its own table, with the
/// run's id as the primary key.
#[derive(Debug, Clone, Copy)]
pub struct FailedRuns {
    pub table: &'static str,
    pub column: &'static str,
}

impl FailedRuns {
    /// Records that `run_id` failed; harmless when it already was.
    ///
    /// # Errors
    /// The database's error.
    pub async fn remember(&self, tx: &mut PgConnection, run_id: Uuid) -> Result<(), sqlx::Error> {
        let Self { table, column } = self;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} ({column}) VALUES ($1) ON CONFLICT DO NOTHING"
        )))
        .bind(run_id)
        .execute(tx)
        .await
        .map(drop)
    }
}

/// The condition a step's guard checks, to embed in a query of the step's own: the step for
/// run `$1` is settled because this service took it already (`$acted`, an SQL condition on
/// `$1`) or saw the run fail (a row in `$table`, keyed by `$column`).
#[macro_export]
macro_rules! settled_condition {
    ($table:literal, $column:literal, $acted:literal) => {
        concat!(
            "(",
            $acted,
            ") OR EXISTS (SELECT 1 FROM ",
            $table,
            " WHERE ",
            $column,
            " = $1)"
        )
    };
}

/// [`settled_condition!`] as a query of its own, for [`is_settled`]. One round trip.
#[macro_export]
macro_rules! settled_query {
    ($table:literal, $column:literal, $acted:literal) => {
        concat!(
            "SELECT ",
            $crate::settled_condition!($table, $column, $acted)
        )
    };
}

/// Runs a [`settled_query!`] for `run_id`: `true` when the step must not be taken (again).
///
/// # Errors
/// The database's error.
pub async fn is_settled(
    tx: &mut PgConnection,
    run_id: Uuid,
    settled_query: &'static str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(settled_query)
        .bind(run_id)
        .fetch_one(tx)
        .await
}

/// How one service undoes its step of a flow when a run fails.
pub trait Compensate: Send + Sync + 'static {
    /// The event that ends a run as a failure (`order.cancelled`).
    type Failure: Event;
    /// The event announcing the undo (`inventory.released`, `payment.refunded`, …).
    type Undone: Event;

    /// Where this service remembers the runs it saw fail, which its steps' guards read.
    const FAILED_RUNS: FailedRuns;

    /// The run `failure` ends.
    fn run_id(failure: &Self::Failure) -> Uuid;

    /// Keys the undo needs beside the run's: those of shared rows it changes, the same ones
    /// the step takes (inventory's products), so an undo and another run's step never lock
    /// those rows crosswise.
    fn extra_keys(&self, failure: &Self::Failure) -> Vec<String> {
        let _ = failure;
        Vec::new()
    }

    /// Undoes the step taken for `run_id` in `ctx`'s transaction, if one was taken and is
    /// not undone yet, and returns the event that says so; `None` when there was nothing to
    /// undo.
    fn undo(
        &self,
        ctx: &mut HandlerContext<'_>,
        run_id: Uuid,
    ) -> impl Future<Output = Result<Option<Self::Undone>, HandlerError>> + Send;
}

/// On a run's failure: remember it, so a late step is skipped, then undo the step if it was
/// taken and announce it.
pub struct UndoOnFailure<C>(pub C);

impl<C: Compensate> EventHandler for UndoOnFailure<C> {
    type Event = C::Failure;

    /// The run: the same key as the step it undoes.
    fn keys(&self, failure: &C::Failure, _meta: &EventMeta) -> Vec<String> {
        let mut keys = vec![run_key(C::run_id(failure))];
        keys.extend(self.0.extra_keys(failure));
        keys
    }

    async fn handle(
        &self,
        failure: C::Failure,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        let run_id = C::run_id(&failure);
        C::FAILED_RUNS.remember(ctx.tx(), run_id).await?;
        match self.0.undo(ctx, run_id).await? {
            Some(undone) => ctx.emit(run_id, &undone).await,
            None => Ok(()),
        }
    }
}
