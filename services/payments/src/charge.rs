//! On `inventory.reserved`: charge the order's total against the user's credit
//! (`payment.captured`), or decline it (`payment.declined`). At most one payment per order,
//! whatever is redelivered or reordered.
//!
//! The credit limit is a balance: captured minus refunded across all of the user's orders
//! may not exceed it. Each charge is decided under the user's key, so two charges of one
//! user are never decided at the same time, in any replica.

use conveyor::{EventHandler, EventMeta, HandlerContext, HandlerError};
use events_schema::inventory::InventoryReservedV1;
use events_schema::payments::{DeclineReason, PaymentCapturedV1, PaymentDeclinedV1};
use sqlx::PgConnection;
use uuid::Uuid;

pub(crate) struct Charge;

impl EventHandler for Charge {
    type Event = InventoryReservedV1;

    /// The order, like its cancellation; and the user, so that one user's charges are
    /// decided one at a time against one balance.
    fn keys(&self, reserved: &InventoryReservedV1, _meta: &EventMeta) -> Vec<String> {
        let mut keys = vec![order_saga::order_key(reserved.order_id)];
        keys.extend(reserved.user_id.map(|user_id| format!("user:{user_id}")));
        keys
    }

    async fn handle(
        &self,
        reserved: InventoryReservedV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        let order_id = reserved.order_id;
        let (Some(user_id), Some(amount), Some(currency)) =
            (reserved.user_id, reserved.total_cents, reserved.currency)
        else {
            return Err(HandlerError::permanent(anyhow::anyhow!(
                "inventory.reserved for order {order_id} carries no user_id, total_cents and currency to charge"
            )));
        };
        let Some(account) = read_account(ctx.tx(), order_id, user_id).await? else {
            // Charged or declined already, or cancelled before the charge: nothing to do.
            return Ok(());
        };
        let charge = Amount {
            cents: amount,
            currency: &currency,
        };
        let decline = match decide(&charge, &account) {
            Decision::Capture => None,
            Decision::Decline(reason) => Some(reason),
            Decision::CopyBehind => {
                // The order passed the orders service's own copy, so this one is behind.
                return Err(HandlerError::transient(anyhow::anyhow!(
                    "user {user_id} is not in the payments copy of users yet"
                )));
            }
        };
        let payment_id = record(ctx.tx(), order_id, user_id, &charge, decline).await?;
        match decline {
            None => {
                let captured = PaymentCapturedV1 {
                    order_id,
                    payment_id,
                    user_id,
                    amount_cents: amount,
                    currency,
                };
                ctx.emit(order_id, &captured).await
            }
            Some(reason) => {
                let declined = PaymentDeclinedV1 {
                    order_id,
                    user_id,
                    amount_cents: amount,
                    currency,
                    reason,
                };
                ctx.emit(order_id, &declined).await
            }
        }
    }
}

/// An amount to charge.
#[derive(Debug, Clone, Copy)]
struct Amount<'a> {
    cents: i64,
    currency: &'a str,
}

/// What payments knows of the user when a charge comes.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
struct Account {
    /// Whether the cached copy has the user at all.
    known: bool,
    active: bool,
    credit_limit_cents: Option<i64>,
    currency: Option<String>,
    /// Captured and not refunded, across the user's orders, less what returns gave back.
    outstanding_cents: i64,
}

#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Capture,
    Decline(DeclineReason),
    /// The copy of users does not know the user (or its limit) yet: retry later.
    CopyBehind,
}

fn decide(charge: &Amount<'_>, account: &Account) -> Decision {
    if !account.known {
        return Decision::CopyBehind;
    }
    if !account.active {
        return Decision::Decline(DeclineReason::UserDeactivated);
    }
    let (Some(limit), Some(currency)) = (account.credit_limit_cents, account.currency.as_deref())
    else {
        return Decision::CopyBehind;
    };
    let within_limit = account
        .outstanding_cents
        .checked_add(charge.cents)
        .is_some_and(|balance| balance <= limit);
    if currency == charge.currency && within_limit {
        Decision::Capture
    } else {
        Decision::Decline(DeclineReason::CreditLimitExceeded)
    }
}

/// The user's account as a charge sees it, in one round trip; `None` when this service
/// settled the order already (charged, declined, or saw it cancelled).
async fn read_account(
    tx: &mut PgConnection,
    order_id: Uuid,
    user_id: Uuid,
) -> Result<Option<Account>, sqlx::Error> {
    const ACCOUNT_UNLESS_SETTLED: &str = concat!(
        "SELECT users_cache.user_id IS NOT NULL AS known, coalesce(users_cache.active, false) AS active,
                users_cache.credit_limit_cents, users_cache.currency,
                (SELECT coalesce(sum(amount_cents - returned_cents), 0)::bigint FROM payments
                 WHERE user_id = $2 AND status = 'captured') AS outstanding_cents
         FROM (SELECT 1) AS one LEFT JOIN users_cache ON users_cache.user_id = $2
         WHERE NOT (",
        order_saga::settled_condition!("EXISTS (SELECT 1 FROM payments WHERE order_id = $1)"),
        ")"
    );
    sqlx::query_as(ACCOUNT_UNLESS_SETTLED)
        .bind(order_id)
        .bind(user_id)
        .fetch_optional(tx)
        .await
}

/// Stores the payment, captured or declined; returns its id.
async fn record(
    tx: &mut PgConnection,
    order_id: Uuid,
    user_id: Uuid,
    charge: &Amount<'_>,
    decline: Option<DeclineReason>,
) -> Result<Uuid, sqlx::Error> {
    let payment_id = Uuid::now_v7();
    let status = if decline.is_some() {
        "declined"
    } else {
        "captured"
    };
    sqlx::query(
        "INSERT INTO payments (id, order_id, user_id, amount_cents, currency, status, reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(payment_id)
    .bind(order_id)
    .bind(user_id)
    .bind(charge.cents)
    .bind(charge.currency)
    .bind(status)
    .bind(decline.map(events_schema::wire_name))
    .execute(tx)
    .await?;
    Ok(payment_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(limit: i64, outstanding: i64) -> Account {
        Account {
            known: true,
            active: true,
            credit_limit_cents: Some(limit),
            currency: Some("EUR".into()),
            outstanding_cents: outstanding,
        }
    }

    fn eur(cents: i64) -> Amount<'static> {
        Amount {
            cents,
            currency: "EUR",
        }
    }

    #[test]
    fn a_charge_within_the_remaining_balance_is_captured() {
        assert_eq!(decide(&eur(400), &account(1000, 600)), Decision::Capture);
    }

    #[test]
    fn the_limit_is_a_balance_across_orders_not_a_cap_per_order() {
        // Each order alone fits; together with what is outstanding, this one does not.
        assert_eq!(
            decide(&eur(999), &account(1000, 999)),
            Decision::Decline(DeclineReason::CreditLimitExceeded)
        );
    }

    #[test]
    fn another_currency_or_an_overflowing_sum_is_declined_never_wrapped() {
        let pounds = Amount {
            cents: 1,
            currency: "GBP",
        };
        assert_eq!(
            decide(&pounds, &account(1000, 0)),
            Decision::Decline(DeclineReason::CreditLimitExceeded)
        );
        assert_eq!(
            decide(&eur(i64::MAX), &account(i64::MAX, 1)),
            Decision::Decline(DeclineReason::CreditLimitExceeded)
        );
    }

    #[test]
    fn an_unknown_user_waits_for_the_copy_and_a_deactivated_one_is_declined() {
        assert_eq!(decide(&eur(1), &Account::default()), Decision::CopyBehind);
        let gone = Account {
            active: false,
            ..account(1000, 0)
        };
        assert_eq!(
            decide(&eur(1), &gone),
            Decision::Decline(DeclineReason::UserDeactivated)
        );
    }
}
