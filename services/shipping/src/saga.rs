//! Scheduling and cancelling shipments, keyed by order: at most one shipment per order.

use std::collections::BTreeSet;
use std::sync::Arc;

use conveyor::{EventHandler, HandlerContext, HandlerError};
use events_schema::EventData;
use events_schema::orders::OrderCancelledV1;
use events_schema::payments::PaymentCapturedV1;
use events_schema::shipping::{
    ShipmentCancelledV1, ShipmentFailedV1, ShipmentFailure, ShipmentScheduledV1,
};
use events_schema::users::Address;
use uuid::Uuid;

/// On `payment.captured`: ship to the user's cached address, if its country is served.
pub(crate) struct Schedule {
    pub(crate) countries: Arc<BTreeSet<String>>,
}

type CachedAddress = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

impl EventHandler for Schedule {
    type Event = PaymentCapturedV1;

    fn event_type(&self) -> &'static str {
        PaymentCapturedV1::TYPE
    }

    async fn handle(
        &self,
        payment: PaymentCapturedV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        let order_id = payment.order_id;
        let tx = ctx.tx();
        let settled: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM shipments WHERE order_id = $1)
                 OR EXISTS (SELECT 1 FROM failed_orders WHERE order_id = $1)
                 OR EXISTS (SELECT 1 FROM cancelled_orders WHERE order_id = $1)",
        )
        .bind(order_id)
        .fetch_one(&mut *tx)
        .await?;
        if settled {
            return Ok(());
        }
        let cached: Option<CachedAddress> = sqlx::query_as(
            "SELECT line1, city, postal_code, country FROM users_cache WHERE user_id = $1",
        )
        .bind(payment.user_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((Some(line1), Some(city), Some(postal_code), Some(country))) = cached else {
            // Payments charged, so the user exists: this copy is behind. Retry.
            return Err(HandlerError::transient(anyhow::anyhow!(
                "user {} has no address in the shipping copy of users yet",
                payment.user_id
            )));
        };
        if !self.countries.contains(&country) {
            sqlx::query(
                "INSERT INTO failed_orders (order_id, reason) VALUES ($1, 'undeliverable-country')",
            )
            .bind(order_id)
            .execute(&mut *tx)
            .await?;
            let failed = ShipmentFailedV1 {
                order_id,
                reason: ShipmentFailure::UndeliverableCountry,
                country: Some(country),
            };
            return events_schema::emit(ctx, order_id, &failed).await;
        }
        let shipment_id = Uuid::now_v7();
        sqlx::query("INSERT INTO shipments (id, order_id, user_id, country, status) VALUES ($1, $2, $3, $4, 'scheduled')")
            .bind(shipment_id)
            .bind(order_id)
            .bind(payment.user_id)
            .bind(&country)
            .execute(&mut *tx)
            .await?;
        let scheduled = ShipmentScheduledV1 {
            order_id,
            shipment_id,
            user_id: payment.user_id,
            address: Address {
                line1,
                city,
                postal_code,
                country,
            },
        };
        events_schema::emit(ctx, order_id, &scheduled).await
    }
}

/// On `order.cancelled`: cancel a scheduled shipment, and remember the cancellation so a
/// late `payment.captured` ships nothing.
pub(crate) struct Cancel;

impl EventHandler for Cancel {
    type Event = OrderCancelledV1;

    fn event_type(&self) -> &'static str {
        OrderCancelledV1::TYPE
    }

    async fn handle(
        &self,
        cancelled: OrderCancelledV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        let tx = ctx.tx();
        sqlx::query("INSERT INTO cancelled_orders (order_id) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(cancelled.order_id)
            .execute(&mut *tx)
            .await?;
        let shipment: Option<Uuid> = sqlx::query_scalar(
            "UPDATE shipments SET status = 'cancelled', updated_at = now()
             WHERE order_id = $1 AND status = 'scheduled' RETURNING id",
        )
        .bind(cancelled.order_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(shipment_id) = shipment else {
            return Ok(());
        };
        let event = ShipmentCancelledV1 {
            order_id: cancelled.order_id,
            shipment_id,
        };
        events_schema::emit(ctx, cancelled.order_id, &event).await
    }
}
