//! Orders' steps in a return: close it once the carrier has the parcel (`return.received`),
//! or cancel it when no pickup could be booked (`pickup.failed`) or
//! its deadline passed (`return.deadline-passed`). An answer for a return that already ended
//! changes nothing here: the services that acted compensate on `return.cancelled`.

use conveyor::{Event, EventHandler, HandlerContext, HandlerError};
use events_schema::pickups::PickupFailedV1;
use events_schema::returns::{ReturnCancelReason, ReturnDeadlinePassedV1, ReturnReceivedV1};
use uuid::Uuid;

use super::store;

/// On `return.received`: the return closes (`return.closed`), which inventory restocks and
/// payments refunds.
pub(crate) struct Received;

impl EventHandler for Received {
    type Event = ReturnReceivedV1;

    async fn handle(
        &self,
        received: ReturnReceivedV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        let return_id = received.return_id;
        // ANCHOR: end
        let Some(closed) = store::close(ctx.tx(), return_id).await? else {
            return Ok(());
        };
        let seconds = closed.seconds();
        ctx.after_commit(move || store::record_end(flows::Outcome::Success, "", seconds));
        ctx.cancel_scheduled::<ReturnDeadlinePassedV1>(return_id)
            .await?;
        ctx.emit(return_id, &closed.event).await
        // ANCHOR_END: end
    }
}

/// On `pickup.failed`: the return is cancelled as `pickup-failed`.
pub(crate) struct PickupFailed;

impl EventHandler for PickupFailed {
    type Event = PickupFailedV1;

    async fn handle(
        &self,
        failed: PickupFailedV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        let reason = events_schema::wire_name(failed.reason);
        let detail = match failed.country {
            Some(country) => format!("no pickup: {reason} ({country})"),
            None => format!("no pickup: {reason}"),
        };
        cancel(
            ctx,
            failed.return_id,
            ReturnCancelReason::PickupFailed,
            detail,
        )
        .await
    }
}

/// On `return.deadline-passed`: a return still pending is cancelled as `deadline-passed`.
pub(crate) struct DeadlinePassed;

impl EventHandler for DeadlinePassed {
    type Event = ReturnDeadlinePassedV1;

    async fn handle(
        &self,
        passed: ReturnDeadlinePassedV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        let timeout = std::time::Duration::from_millis(passed.timeout_ms);
        let detail = format!("no answer within {timeout:?}");
        cancel(
            ctx,
            passed.return_id,
            ReturnCancelReason::DeadlinePassed,
            detail,
        )
        .await
    }
}

async fn cancel(
    ctx: &mut HandlerContext<'_>,
    return_id: Uuid,
    reason: ReturnCancelReason,
    detail: String,
) -> Result<(), HandlerError> {
    let Some(cancelled) = store::cancel(ctx.tx(), return_id, reason, detail).await? else {
        return Ok(());
    };
    let seconds = cancelled.seconds();
    let reason = events_schema::wire_name(reason);
    ctx.after_commit(move || store::record_end(flows::Outcome::Failure, &reason, seconds));
    // When the deadline ended it, its event is the one being handled: out of the schedule.
    if ctx.event().event_type != ReturnDeadlinePassedV1::TYPE {
        ctx.cancel_scheduled::<ReturnDeadlinePassedV1>(return_id)
            .await?;
    }
    ctx.emit(return_id, &cancelled.event).await
}
