//! The order saga, declared: what starts it, each service's step and answers, how it ends,
//! what each participant undoes when it fails, and its deadline.

use std::time::Duration;

use flows::{Compensation, Deadline, End, Flow, Outcome, Runs, Step};

/// An order placed, reserved, charged and shipped, or cancelled with every step undone.
pub static ORDER_FLOW: Flow = Flow {
    name: "order",
    summary: "An order is reserved, charged and shipped, or cancelled with each step undone.",
    starts_with: "order.created",
    key: "order_id",
    steps: &[
        Step {
            on: "order.created",
            service: "inventory",
            emits: &["inventory.reserved", "inventory.rejected"],
        },
        Step {
            on: "inventory.reserved",
            service: "payments",
            emits: &["payment.captured", "payment.declined"],
        },
        Step {
            on: "payment.captured",
            service: "shipping",
            emits: &["shipment.scheduled", "shipment.failed"],
        },
        Step {
            on: "shipment.scheduled",
            service: "orders",
            emits: &["order.confirmed"],
        },
        Step {
            on: "inventory.rejected",
            service: "orders",
            emits: &["order.cancelled"],
        },
        Step {
            on: "payment.declined",
            service: "orders",
            emits: &["order.cancelled"],
        },
        Step {
            on: "shipment.failed",
            service: "orders",
            emits: &["order.cancelled"],
        },
    ],
    ends: &[
        End {
            event: "order.confirmed",
            outcome: Outcome::Success,
        },
        // Also the customer's cancellation and the deadline's.
        End {
            event: "order.cancelled",
            outcome: Outcome::Failure,
        },
    ],
    compensations: &[
        Compensation {
            service: "inventory",
            on: "order.cancelled",
            undoes: "order.created",
            emits: &["inventory.released"],
        },
        Compensation {
            service: "payments",
            on: "order.cancelled",
            undoes: "inventory.reserved",
            emits: &["payment.refunded"],
        },
        Compensation {
            service: "shipping",
            on: "order.cancelled",
            undoes: "payment.captured",
            emits: &["shipment.cancelled"],
        },
    ],
    deadline: Deadline {
        owner: "orders",
        default: Duration::from_secs(120),
        setting: "ORDER_SAGA_TIMEOUT",
        timer: "order.deadline-passed",
        ends_with: "order.cancelled",
    },
    // Orders' own table, through the columns it names: `status = 'pending'` and `id` are
    // what its indexes serve.
    runs: Runs {
        service: "orders",
        query: "SELECT id, status, status = 'pending' AS running, reason, detail, created_at, \
                finished_at FROM orders",
    },
};
