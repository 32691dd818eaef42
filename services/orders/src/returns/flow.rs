//! The return flow, declared: orders starts and ends it, shipping books and collects the
//! carrier's pickup; once it has closed, inventory restocks and payments refunds.

use std::time::Duration;

use flows::{Agreement, Compensation, Deadline, End, Flow, Outcome, Runs, Step};

/// Lines of a confirmed order sent back: a pickup booked and collected, the return closed,
/// its lines restocked and refunded; or cancelled with the pickup undone.
///
/// The restock and the refund follow the close rather than preceding it: a refund cannot be
/// taken back, nor can stock sold again meanwhile, so both move only once the run can no
/// longer fail, and nobody but shipping has anything to undo.
// ANCHOR: declaration
pub static RETURN_FLOW: Flow = Flow {
    name: "return",
    summary: "Lines of a confirmed order are collected, restocked and refunded, or the return is cancelled with each step undone.",
    starts_with: "return.requested",
    key: "return_id",
    steps: &[
        Step {
            on: "return.requested",
            service: "shipping",
            emits: &["pickup.booked", "pickup.failed"],
        },
        // The carrier collects the parcel at the booked time.
        Step {
            on: "pickup.booked",
            service: "shipping",
            emits: &["return.received"],
        },
        Step {
            on: "return.received",
            service: "orders",
            emits: &["return.closed"],
        },
        Step {
            on: "pickup.failed",
            service: "orders",
            emits: &["return.cancelled"],
        },
        Step {
            on: "return.closed",
            service: "inventory",
            emits: &["inventory.restocked"],
        },
        Step {
            on: "return.closed",
            service: "payments",
            emits: &["payment.return-refunded"],
        },
    ],
    ends: &[
        End {
            event: "return.closed",
            outcome: Outcome::Success,
        },
        // Also the customer's cancellation and the deadline's.
        End {
            event: "return.cancelled",
            outcome: Outcome::Failure,
        },
    ],
    // A parcel collected before the cancellation is sent back, and its pickup cancelled.
    compensations: &[Compensation {
        service: "shipping",
        on: "return.cancelled",
        undoes: "return.requested",
        emits: &["pickup.cancelled"],
    }],
    deadline: Deadline {
        owner: "orders",
        default: Duration::from_secs(600),
        setting: "RETURN_TIMEOUT",
        timer: "return.deadline-passed",
        ends_with: "return.cancelled",
    },
    runs: Runs {
        service: "orders",
        query: "SELECT id, status, status = 'pending' AS running, reason, detail, created_at, \
                finished_at FROM returns",
    },
    // A closed return is refunded, restocked and collected; any other holds nothing.
    agreements: &[
        Agreement {
            name: "refund",
            expects: "SELECT id, CASE WHEN status = 'closed' THEN \
                      to_jsonb(refund_cents || ' ' || currency) END FROM returns",
            service: "payments",
            holds: "SELECT return_id AS id, to_jsonb(amount_cents || ' ' || currency) \
                    FROM return_refunds",
        },
        Agreement {
            name: "restock",
            expects: "SELECT id, CASE WHEN status = 'closed' THEN (SELECT jsonb_object_agg(\
                      line->>'sku', (line->>'quantity')::int) FROM jsonb_array_elements(lines) \
                      AS line) END FROM returns",
            service: "inventory",
            holds: "SELECT return_id AS id, (SELECT jsonb_object_agg(item->>'sku', \
                    (item->>'quantity')::int) FROM jsonb_array_elements(items) AS item) \
                    FROM restocks",
        },
        Agreement {
            name: "pickup",
            expects: "SELECT id, CASE WHEN status = 'closed' THEN to_jsonb('collecting'::text) \
                      END FROM returns",
            service: "shipping",
            holds: "SELECT return_id AS id, to_jsonb(status) FROM pickups \
                    WHERE status <> 'cancelled'",
        },
    ],
};
// ANCHOR_END: declaration
