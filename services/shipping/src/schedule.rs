//! On `payment.captured`: schedule a shipment to the user's cached address
//! (`shipment.scheduled`), or fail the order when its country is not served
//! (`shipment.failed`). Keyed by order: at most one shipment per order.

use std::collections::BTreeSet;
use std::sync::Arc;

use conveyor::{EventHandler, EventMeta, HandlerContext, HandlerError};
use events_schema::payments::PaymentCapturedV1;
use events_schema::shipping::{ShipmentFailedV1, ShipmentFailure, ShipmentScheduledV1};
use events_schema::users::Address;
use uuid::Uuid;

/// On `payment.captured`: ship to the user's cached address, if its country is served.
/// Whether the user is still active does not matter here: orders and payments refuse a
/// deactivated user at their steps, so an order that was paid for is shipped.
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

    fn keys(&self, payment: &PaymentCapturedV1, _meta: &EventMeta) -> Vec<String> {
        vec![order_saga::order_key(payment.order_id)]
    }

    async fn handle(
        &self,
        payment: PaymentCapturedV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        let order_id = payment.order_id;
        let tx = ctx.tx();
        // The address, unless this service settled the order already: one round trip.
        const ADDRESS_UNLESS_SETTLED: &str = concat!(
            "SELECT line1, city, postal_code, country
             FROM (SELECT 1) AS one LEFT JOIN users_cache ON users_cache.user_id = $2
             WHERE NOT (",
            order_saga::settled_condition!(
                "EXISTS (SELECT 1 FROM shipments WHERE order_id = $1)
                 OR EXISTS (SELECT 1 FROM failed_orders WHERE order_id = $1)"
            ),
            ")"
        );
        let cached: Option<CachedAddress> = sqlx::query_as(ADDRESS_UNLESS_SETTLED)
            .bind(order_id)
            .bind(payment.user_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(cached) = cached else {
            // Shipped or failed already, or cancelled before it got here.
            return Ok(());
        };
        let (Some(line1), Some(city), Some(postal_code), Some(country)) = cached else {
            // Payments charged, so the user exists: this cached copy is behind. Retry.
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
            return ctx.emit(order_id, &failed).await;
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
        ctx.emit(order_id, &scheduled).await
    }
}
