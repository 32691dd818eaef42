//! The order saga, declared: what starts it, each service's step and answers, how it ends,
//! what each participant undoes when it fails, and its deadline.

use std::time::Duration;

use flows::{Agreement, Compensation, Deadline, End, Flow, Outcome, Runs, Step};

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
    // A confirmed order holds its total captured, its lines reserved and a shipment; a
    // cancelled one nothing (declined, refunded, released or cancelled).
    agreements: &[
        Agreement {
            name: "payment",
            expects: "SELECT id, CASE WHEN status = 'confirmed' THEN \
                      to_jsonb(total_cents || ' ' || currency) END FROM orders",
            service: "payments",
            holds: "SELECT order_id AS id, CASE WHEN status = 'captured' THEN \
                    to_jsonb(amount_cents || ' ' || currency) END FROM payments",
        },
        Agreement {
            name: "stock",
            expects: "SELECT id, CASE WHEN status = 'confirmed' THEN (SELECT jsonb_object_agg(\
                      sku, quantity) FROM (SELECT line->>'sku' AS sku, sum((line->>'quantity')::int) \
                      AS quantity FROM jsonb_array_elements(items) AS line GROUP BY 1) AS lines) \
                      END FROM orders",
            service: "inventory",
            holds: "SELECT order_id AS id, CASE WHEN status = 'reserved' THEN (SELECT \
                    jsonb_object_agg(item->>'sku', (item->>'quantity')::int) FROM \
                    jsonb_array_elements(items) AS item) END FROM reservations",
        },
        Agreement {
            name: "shipment",
            expects: "SELECT id, CASE WHEN status = 'confirmed' THEN to_jsonb('scheduled'::text) \
                      END FROM orders",
            service: "shipping",
            holds: "SELECT order_id AS id, to_jsonb(status) FROM shipments \
                    WHERE status = 'scheduled'",
        },
    ],
};
