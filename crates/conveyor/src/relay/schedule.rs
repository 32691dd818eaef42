//! The leading relay's scheduler: it moves scheduled events that are due into the outbox,
//! from where the reader sends them with the same confirms and parking rules as any row. The
//! move is one statement (delete from the schedule, insert into the outbox), so a crash
//! leaves each event in one place or the other, never in neither.
//!
//! It runs only beside a pipeline with an open broker channel: time in which it does not
//! run is time nobody watched. The shared clock row records each watch; a gap longer than
//! [`OUTAGE`] is added to the clock's unwatched time, which moves every deadline
//! (`Outbox::add_after`) on by it, so deadlines count only time in which the service could
//! have sent and received. One row changes, however many deadlines wait.

use std::time::{Duration, Instant};

use sqlx::PgConnection;

use super::{OutboxRelay, RelayError};
use crate::backoff::Backoff;
use crate::publisher::ConfirmChannel;
use crate::shutdown::Shutdown;

/// The longest the scheduler sleeps while events are scheduled: one scheduled meanwhile
/// for sooner than the next it knows of is sent at most this late.
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// The shortest sleep between two passes that found nothing to move.
const LEAST_WAIT: Duration = Duration::from_millis(10);

/// How often the clock row is written while watching. Writing it is what tells the next
/// leader, or this one after a reconnect, that time was watched.
const CLOCK_EVERY: Duration = Duration::from_secs(1);

/// A gap between two watches longer than this, or than three poll intervals (an idle
/// scheduler looks once per poll interval), is an outage, not a slow tick.
const OUTAGE: Duration = Duration::from_secs(3);

/// What one pass found.
enum Pass {
    /// A full batch moved: more may be due.
    More,
    /// Nothing more is due; the next event is due in this long, if any is scheduled.
    Idle(Option<Duration>),
}

/// Moves due events until `stop` fires or the pipeline it serves ends (`pipeline_ended`).
///
/// # Errors
/// [`RelayError::ChannelClosed`] once the pipeline's channel is closed (the broker went
/// away): the pipeline ends and opens a new session, and the time until it does is not
/// watched. An idle reader would not notice it before its next publish.
pub(super) async fn run(
    relay: &OutboxRelay,
    channel: &ConfirmChannel,
    stop: &Shutdown,
    pipeline_ended: &Shutdown,
) -> Result<(), RelayError> {
    let mut backoff = Backoff::default();
    let mut clock_written: Option<Instant> = None;
    while !stop.is_fired() && !pipeline_ended.is_fired() {
        if !channel.channel().status().connected() {
            return Err(RelayError::ChannelClosed);
        }
        let wait = match pass(relay, &mut clock_written).await {
            Ok(Pass::More) => Duration::ZERO,
            Ok(Pass::Idle(next)) => {
                backoff.reset();
                // With nothing scheduled, a look per poll interval is enough (an event
                // scheduled meanwhile is late by that at most); otherwise not less than a
                // moment: an overdue row that another transaction holds (a cancel under
                // way) would otherwise be asked for in a busy loop.
                next.map_or(relay.options.poll_interval, |next| {
                    next.clamp(LEAST_WAIT, CHECK_EVERY)
                })
            }
            Err(error) => {
                tracing::warn!(%error, "Could not move due scheduled events to the outbox; retrying.");
                backoff.next_delay()
            }
        };
        tokio::select! {
            _ = pipeline_ended.sleep(wait) => {}
            () = stop.fired() => {}
        }
    }
    Ok(())
}

/// One transaction: the clock (when it is time), then the due events.
async fn pass(
    relay: &OutboxRelay,
    clock_written: &mut Option<Instant>,
) -> Result<Pass, sqlx::Error> {
    let mut tx = relay.pool.begin().await?;
    // No flush to disk awaited: a pass lost in a database crash leaves its events in the
    // schedule, to be moved again (and a repeat is dropped by consumers' inboxes), and its
    // watch counts as a short gap.
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    let clock_due = clock_written.is_none_or(|at| at.elapsed() >= CLOCK_EVERY);
    let unwatched = if clock_due {
        watch(&mut tx, OUTAGE.max(relay.options.poll_interval * 3)).await?
    } else {
        sqlx::query_scalar(
            "SELECT extract(epoch FROM unwatched)::float8 FROM conveyor.schedule_clock WHERE id = 1",
        )
            .fetch_optional(&mut *tx)
            .await?
            .unwrap_or(0.0)
    };
    let limit = relay.options.batch_size;
    let moved = move_due(&mut tx, limit, unwatched).await?;
    let next = if moved < limit {
        Some(next_due(&mut tx, unwatched).await?)
    } else {
        None
    };
    tx.commit().await?;
    if clock_due {
        *clock_written = Some(Instant::now());
    }
    if moved > 0 {
        tracing::debug!(count = moved, "Moved due scheduled events to the outbox.");
    }
    Ok(next.map_or(Pass::More, Pass::Idle))
}

/// Records this watch; a gap since the last one longer than `outage` is added to the
/// time nobody watched, which moves every deadline on by it at once. Answers the time
/// nobody watched, in seconds.
///
/// The gap is taken in seconds and added as seconds: a difference of timestamps longer than a
/// day is counted in calendar days, which are 23 or 25 hours across a change of daylight
/// saving time.
async fn watch(tx: &mut PgConnection, outage: Duration) -> Result<f64, sqlx::Error> {
    let watched: Option<(f64, f64)> = sqlx::query_as(
        "WITH last AS (
             SELECT extract(epoch FROM clock_timestamp() - ticked_at)::float8 AS gap
             FROM conveyor.schedule_clock WHERE id = 1 FOR UPDATE)
         UPDATE conveyor.schedule_clock AS clock SET ticked_at = clock_timestamp(),
             unwatched = clock.unwatched
                 + make_interval(secs => CASE WHEN last.gap > $1 THEN last.gap ELSE 0 END)
         FROM last WHERE clock.id = 1
         RETURNING last.gap, extract(epoch FROM clock.unwatched)::float8",
    )
    .bind(outage.as_secs_f64())
    .fetch_optional(&mut *tx)
    .await?;
    let Some((gap, unwatched)) = watched else {
        // The row is gone (removed by hand, a partial restore): the clock starts again.
        sqlx::query(
            "INSERT INTO conveyor.schedule_clock (id, ticked_at, unwatched)
             VALUES (1, clock_timestamp(), interval '0') ON CONFLICT (id) DO NOTHING",
        )
        .execute(&mut *tx)
        .await?;
        return Ok(0.0);
    };
    if gap > outage.as_secs_f64() {
        tracing::warn!(
            gap_seconds = gap,
            "Nobody sent this service's scheduled events for a while (its relays down, or the broker away): pending deadlines move on by that time."
        );
    }
    Ok(unwatched)
}

/// Moves up to `limit` due calendar times and as many due deadlines into the outbox, the
/// earliest first; replicas' cancels and schedules are never blocked for long (only the
/// rows moved are locked). Deadlines are due on the watched clock: `unwatched` seconds
/// behind the wall clock.
///
/// Every lookup is an index range scan: "due" is the transaction's `now()`, a stable value
/// the index can seek to, where `clock_timestamp()` would be a filter over every row
/// scheduled for later; and the ids go through an array so the delete finds them by key
/// rather than by a hash join over the whole table.
async fn move_due(tx: &mut PgConnection, limit: i64, unwatched: f64) -> Result<i64, sqlx::Error> {
    let moved = sqlx::query(
        "WITH calendar AS (
             SELECT id FROM conveyor.scheduled
             WHERE NOT counts_watched_time_only AND due_at <= now()
             ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED),
         deadline AS (
             SELECT id FROM conveyor.scheduled
             WHERE counts_watched_time_only AND due_at <= now() - make_interval(secs => $2)
             ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED),
         due AS (
             DELETE FROM conveyor.scheduled WHERE id = ANY(ARRAY(
                 SELECT id FROM calendar UNION ALL SELECT id FROM deadline))
             RETURNING event_id, event_type, payload, trace,
                 CASE WHEN counts_watched_time_only THEN due_at + make_interval(secs => $2)
                      ELSE due_at END AS deliver_at)
         INSERT INTO conveyor.outbox (event_id, event_type, payload, trace)
         SELECT event_id, event_type, payload, trace FROM due ORDER BY deliver_at",
    )
    .bind(limit)
    .bind(unwatched)
    .execute(&mut *tx)
    .await?;
    Ok(i64::try_from(moved.rows_affected()).unwrap_or(i64::MAX))
}

/// How long until the next scheduled event is due, 0 when one is overdue; `None` when
/// nothing is scheduled.
async fn next_due(tx: &mut PgConnection, unwatched: f64) -> Result<Option<Duration>, sqlx::Error> {
    let seconds: Option<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM least(
             (SELECT min(due_at) FROM conveyor.scheduled WHERE NOT counts_watched_time_only),
             (SELECT min(due_at) FROM conveyor.scheduled WHERE counts_watched_time_only)
                 + make_interval(secs => $1)) - clock_timestamp())::float8",
    )
    .bind(unwatched)
    .fetch_one(tx)
    .await?;
    Ok(seconds.map(|seconds| Duration::from_secs_f64(seconds.max(0.0))))
}
