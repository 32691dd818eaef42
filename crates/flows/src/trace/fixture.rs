//! A flow shaped as the reference system's order saga, and the map of the services that run
//! it, for the diagnosis's tests: this crate cannot see the reference system's declarations.

use std::time::Duration;

use crate::map::FlowMap;
use crate::{Compensation, Deadline, End, Flow, Outcome, Runs, Step};

const fn step(on: &'static str, service: &'static str, emits: &'static [&'static str]) -> Step {
    Step { on, service, emits }
}

const fn undo(
    service: &'static str,
    undoes: &'static str,
    emits: &'static [&'static str],
) -> Compensation {
    Compensation {
        service,
        on: "order.cancelled",
        undoes,
        emits,
    }
}

pub(super) static ORDER_FLOW: Flow = Flow {
    name: "order",
    summary: "An order is reserved, charged and shipped, or cancelled with each step undone.",
    starts_with: "order.created",
    key: "order_id",
    steps: &[
        step(
            "order.created",
            "inventory",
            &["inventory.reserved", "inventory.rejected"],
        ),
        step(
            "inventory.reserved",
            "payments",
            &["payment.captured", "payment.declined"],
        ),
        step(
            "payment.captured",
            "shipping",
            &["shipment.scheduled", "shipment.failed"],
        ),
        step("shipment.scheduled", "orders", &["order.confirmed"]),
        step("inventory.rejected", "orders", &["order.cancelled"]),
        step("payment.declined", "orders", &["order.cancelled"]),
        step("shipment.failed", "orders", &["order.cancelled"]),
    ],
    ends: &[
        End {
            event: "order.confirmed",
            outcome: Outcome::Success,
        },
        End {
            event: "order.cancelled",
            outcome: Outcome::Failure,
        },
    ],
    compensations: &[
        undo("inventory", "order.created", &["inventory.released"]),
        undo("payments", "inventory.reserved", &["payment.refunded"]),
        undo("shipping", "payment.captured", &["shipment.cancelled"]),
    ],
    deadline: Deadline {
        owner: "orders",
        default: Duration::from_secs(120),
        setting: "ORDER_SAGA_TIMEOUT",
        timer: "order.deadline-passed",
        ends_with: "order.cancelled",
    },
    runs: Runs {
        service: "orders",
        query: "SELECT id, status, status = 'pending' AS running, reason, detail, created_at, \
                finished_at FROM orders",
    },
    agreements: &[],
};

/// Who emits and handles the flow's events, each consumer with three retry tiers.
pub(super) fn order_map() -> FlowMap {
    let tiers = || {
        [1, 10, 60]
            .into_iter()
            .map(Duration::from_secs)
            .collect::<Vec<_>>()
    };
    let types = |types: &[&str]| types.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>();
    FlowMap::default()
        .emits(
            "orders",
            &[
                "order.created",
                "order.confirmed",
                "order.cancelled",
                "order.deadline-passed",
            ],
        )
        .emits(
            "inventory",
            &[
                "inventory.reserved",
                "inventory.rejected",
                "inventory.released",
            ],
        )
        .emits(
            "payments",
            &["payment.captured", "payment.declined", "payment.refunded"],
        )
        .emits(
            "shipping",
            &[
                "shipment.scheduled",
                "shipment.failed",
                "shipment.cancelled",
            ],
        )
        .consumes(
            "orders",
            types(&[
                "shipment.scheduled",
                "inventory.rejected",
                "payment.declined",
                "shipment.failed",
                "order.deadline-passed",
            ]),
            tiers(),
        )
        .consumes(
            "inventory",
            types(&["order.created", "order.cancelled"]),
            tiers(),
        )
        .consumes(
            "payments",
            types(&["inventory.reserved", "order.cancelled"]),
            tiers(),
        )
        .consumes(
            "shipping",
            types(&["payment.captured", "order.cancelled"]),
            tiers(),
        )
}
