//! The product API.

use events_schema::money::MAX_PRICE_CENTS;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use conveyor::Outbox;
use events_schema::products::{ProductCreatedV1, ProductUpdatedV1};
use platform::openapi::{Api, CURRENCY, NOT_BLANK, Operation, Param, SKU};
use platform::routes::{Routes, Verb};
use platform::{ApiError, ApiResult, Caller, JsonBody, Scope, input};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::PgPool;

/// The columns a `Product` reads, named rather than `*`: a statement prepared with `*` fails
/// ("cached plan must not change result type") on every pooled connection once a later
/// release, rolling out beside this one, adds a column to the table.
macro_rules! product_columns {
    () => {
        "sku, name, price_cents, currency, stock, reserved, version"
    };
}

pub(crate) struct AppState {
    pub(crate) pool: PgPool,
    pub(crate) outbox: Outbox,
}

type AppResult = ApiResult<(StatusCode, Json<Value>)>;

/// Each handler against its row of [`crate::ROUTES`], which says who may call it.
pub(crate) fn routes(state: Arc<AppState>) -> Routes {
    Routes::new(crate::ROUTES)
        .with_state(state)
        .on(Verb::Post, "/products", create)
        .on(Verb::Get, "/products/{sku}", show)
        .on(Verb::Patch, "/products/{sku}", change)
        .on(Verb::Put, "/products/{sku}/stock", set_stock)
        .on(Verb::Post, "/products/republish", republish)
        .on(Verb::Get, "/reservations/{order_id}", reservation)
        .done()
}

/// What the product API takes and answers, each against its row of [`crate::ROUTES`], for
/// the service's OpenAPI document.
pub(crate) fn api(described: Api) -> Api {
    described
        .on(Verb::Post, "/products", creating())
        .on(Verb::Get, "/products/{sku}", showing())
        .on(Verb::Patch, "/products/{sku}", changing())
        .on(Verb::Put, "/products/{sku}/stock", setting_stock())
        .on(Verb::Post, "/products/republish", republishing())
        .on(Verb::Get, "/reservations/{order_id}", reservation_api())
}

fn product_sku() -> Param {
    Param::sku("sku", "The product's SKU.")
}

fn creating() -> Operation {
    Operation::new("Adds a product to the catalogue")
        .json_body::<NewProduct>()
        .reply::<ProductView>(StatusCode::CREATED, "The product.")
        .refusal(StatusCode::CONFLICT, "A product has this SKU already.")
        .refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            "A field breaks its rule (each one is named).",
        )
}

fn showing() -> Operation {
    Operation::new("A product, with its stock, reserved and available units")
        .param(product_sku())
        .reply::<ProductView>(StatusCode::OK, "The product.")
        .refusal(StatusCode::NOT_FOUND, "No such product.")
}

fn changing() -> Operation {
    Operation::new("Changes a product's name or price")
        .param(product_sku())
        .json_body::<ProductChange>()
        .reply::<ProductView>(StatusCode::OK, "The product, changed.")
        .refusal(StatusCode::NOT_FOUND, "No such product.")
        .refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            "A blank or too long name, or a price out of range.",
        )
}

fn setting_stock() -> Operation {
    Operation::new("Sets a product's stock")
        .param(product_sku())
        .json_body::<Stock>()
        .reply::<ProductView>(StatusCode::OK, "The product, with its new stock.")
        .refusal(StatusCode::NOT_FOUND, "No such product.")
        .refusal(
            StatusCode::CONFLICT,
            "The stock would go below what is reserved.",
        )
        .refusal(StatusCode::UNPROCESSABLE_ENTITY, "A negative stock.")
}

fn republishing() -> Operation {
    Operation::new("Publishes every product's current state again, for cached copies")
        .reply_object(StatusCode::OK, "`republished`: how many products.")
}

fn reservation_api() -> Operation {
    Operation::new("The stock an order reserved")
        .param(Param::uuid("order_id", "The order's id."))
        .reply_object(StatusCode::OK, "`order_id`, `status` and `items`.")
        .refusal(StatusCode::NOT_FOUND, "No reservation for this order.")
}

#[derive(Debug, sqlx::FromRow)]
struct Product {
    sku: String,
    name: String,
    price_cents: i64,
    currency: String,
    stock: i32,
    reserved: i32,
    version: i64,
}

/// A product as the API answers it, and the schema of that answer.
#[derive(Debug, Serialize, JsonSchema)]
struct ProductView {
    sku: String,
    name: String,
    /// The price of one unit, in the currency's minor unit (cents).
    price_cents: i64,
    /// An ISO 4217 code, like `EUR`.
    currency: String,
    /// Units in stock, reserved ones included.
    stock: i32,
    /// Units reserved for pending orders.
    reserved: i32,
    /// `stock` minus `reserved`.
    available: i32,
    /// Grows by one with each change of the name or price.
    version: i64,
}

impl Product {
    fn to_json(&self) -> Value {
        let view = ProductView {
            sku: self.sku.clone(),
            name: self.name.clone(),
            price_cents: self.price_cents,
            currency: self.currency.clone(),
            stock: self.stock,
            reserved: self.reserved,
            available: self.stock - self.reserved,
            version: self.version,
        };
        // Texts and integers always serialize.
        serde_json::to_value(view).unwrap_or_default()
    }

    /// The `product.updated` that tells a cached copy what this product is now.
    fn current_state(&self) -> conveyor::Envelope {
        let updated = ProductUpdatedV1 {
            sku: self.sku.clone(),
            name: self.name.clone(),
            price_cents: self.price_cents,
            currency: self.currency.clone(),
            version: self.version,
        };
        events_schema::envelope(crate::SERVICE, &updated).with_subject(self.sku.clone())
    }
}

/// What is wrong with a product's name, if anything: a control character, more than
/// [`input::MAX_NAME_CHARS`] characters, or nothing but spaces.
fn name_problem(name: &str) -> Option<String> {
    match input::check_text("name", name, input::MAX_NAME_CHARS) {
        Err(error) => Some(error.to_string()),
        Ok(()) if name.trim().is_empty() => Some("name is empty".to_owned()),
        Ok(()) => None,
    }
}

/// The SKU a path names; one that cannot be a SKU names no product (404).
fn path_sku(sku: &str) -> ApiResult<&str> {
    input::path_text("sku", sku, input::MAX_SKU_CHARS)
}

/// A product to add.
#[derive(Debug, Deserialize, JsonSchema)]
struct NewProduct {
    #[schemars(length(max = input::MAX_SKU_CHARS))]
    #[schemars(regex(pattern = SKU))]
    sku: String,
    #[schemars(length(max = input::MAX_NAME_CHARS))]
    #[schemars(regex(pattern = NOT_BLANK))]
    name: String,
    /// The price of one unit, in the currency's minor unit (cents).
    #[schemars(range(min = 0, max = MAX_PRICE_CENTS))]
    price_cents: i64,
    /// An ISO 4217 code, like `EUR`.
    #[serde(default = "default_currency")]
    #[schemars(regex(pattern = CURRENCY))]
    currency: String,
    /// Units in stock.
    #[schemars(range(min = 0, max = i32::MAX))]
    stock: i32,
}

fn default_currency() -> String {
    "EUR".to_owned()
}

async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    JsonBody(new): JsonBody<NewProduct>,
) -> AppResult {
    caller.require(Scope::INVENTORY_WRITE)?;
    let mut problems: Vec<String> = input::check_sku("sku", &new.sku)
        .err()
        .map(|error| error.to_string())
        .into_iter()
        .collect();
    problems.extend(name_problem(&new.name));
    if !(0..=MAX_PRICE_CENTS).contains(&new.price_cents) {
        problems.push(format!(
            "price_cents {} is not between 0 and {MAX_PRICE_CENTS}",
            new.price_cents
        ));
    }
    if new.stock < 0 {
        problems.push("stock must not be negative".to_owned());
    }
    if new.currency.len() != 3 || !new.currency.chars().all(|c| c.is_ascii_uppercase()) {
        problems.push(format!(
            "currency {} is not an ISO 4217 code like EUR",
            input::shown(&new.currency)
        ));
    }
    if !problems.is_empty() {
        return Err(ApiError::unprocessable(problems.join("; ")));
    }
    let mut tx = state.pool.begin().await?;
    let product = sqlx::query_as::<_, Product>(
        concat!(
            "INSERT INTO products (sku, name, price_cents, currency, stock, version) VALUES ($1, $2, $3, $4, $5, 1)
             ON CONFLICT (sku) DO NOTHING RETURNING ",
            product_columns!()
        ),
    )
    .bind(&new.sku)
    .bind(&new.name)
    .bind(new.price_cents)
    .bind(&new.currency)
    .bind(new.stock)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::conflict(format!("product {} already exists", new.sku)))?;
    let created = ProductCreatedV1 {
        sku: product.sku.clone(),
        name: product.name.clone(),
        price_cents: product.price_cents,
        currency: product.currency.clone(),
        version: product.version,
    };
    let event = events_schema::envelope(crate::SERVICE, &created).with_subject(product.sku.clone());
    state.outbox.add(&mut tx, &event).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(product.to_json())))
}

async fn show(State(state): State<Arc<AppState>>, Path(sku): Path<String>) -> AppResult {
    path_sku(&sku)?;
    let product = sqlx::query_as::<_, Product>(concat!(
        "SELECT ",
        product_columns!(),
        " FROM products WHERE sku = $1"
    ))
    .bind(&sku)
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no product {sku}")))?;
    Ok((StatusCode::OK, Json(product.to_json())))
}

/// What changes of a product: each field left out stays as it is.
#[derive(Debug, Deserialize, JsonSchema)]
struct ProductChange {
    #[schemars(length(max = input::MAX_NAME_CHARS))]
    #[schemars(regex(pattern = NOT_BLANK))]
    name: Option<String>,
    /// The price of one unit, in the currency's minor unit (cents).
    #[schemars(range(min = 0, max = MAX_PRICE_CENTS))]
    price_cents: Option<i64>,
}

async fn change(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(sku): Path<String>,
    JsonBody(change): JsonBody<ProductChange>,
) -> AppResult {
    caller.require(Scope::INVENTORY_WRITE)?;
    path_sku(&sku)?;
    if let Some(problem) = change.name.as_deref().and_then(name_problem) {
        return Err(ApiError::unprocessable(problem));
    }
    if let Some(price_cents) = change
        .price_cents
        .filter(|p| !(0..=MAX_PRICE_CENTS).contains(p))
    {
        return Err(ApiError::unprocessable(format!(
            "price_cents {price_cents} is not between 0 and {MAX_PRICE_CENTS}"
        )));
    }
    let mut tx = state.pool.begin().await?;
    let product = sqlx::query_as::<_, Product>(concat!(
        "UPDATE products SET name = COALESCE($2, name), price_cents = COALESCE($3, price_cents),
         version = version + 1 WHERE sku = $1 RETURNING ",
        product_columns!()
    ))
    .bind(&sku)
    .bind(change.name)
    .bind(change.price_cents)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no product {sku}")))?;
    state.outbox.add(&mut tx, &product.current_state()).await?;
    tx.commit().await?;
    Ok((StatusCode::OK, Json(product.to_json())))
}

/// A product's new stock.
#[derive(Debug, Deserialize, JsonSchema)]
struct Stock {
    /// Units in stock, reserved ones included: at least what is reserved.
    #[schemars(range(min = 0, max = i32::MAX))]
    stock: i32,
}

async fn set_stock(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(sku): Path<String>,
    JsonBody(body): JsonBody<Stock>,
) -> AppResult {
    caller.require(Scope::INVENTORY_WRITE)?;
    path_sku(&sku)?;
    if body.stock < 0 {
        return Err(ApiError::unprocessable(format!(
            "stock {} is negative",
            body.stock
        )));
    }
    let product = sqlx::query_as::<_, Product>(concat!(
        "UPDATE products SET stock = $2 WHERE sku = $1 AND $2 >= reserved RETURNING ",
        product_columns!()
    ))
    .bind(&sku)
    .bind(body.stock)
    .fetch_optional(&state.pool)
    .await?;
    match product {
        Some(product) => Ok((StatusCode::OK, Json(product.to_json()))),
        None => {
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM products WHERE sku = $1)")
                    .bind(&sku)
                    .fetch_one(&state.pool)
                    .await?;
            if exists {
                Err(ApiError::conflict(format!(
                    "stock of {sku} cannot go below what is reserved"
                )))
            } else {
                Err(ApiError::not_found(format!("no product {sku}")))
            }
        }
    }
}

async fn reservation(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(order_id): Path<String>,
) -> AppResult {
    caller.require(Scope::INVENTORY_WRITE)?;
    let order_id = platform::parse_uuid(&order_id, "order")?;
    let row: Option<(String, sqlx::types::Json<Value>)> =
        sqlx::query_as("SELECT status, items FROM reservations WHERE order_id = $1")
            .bind(order_id)
            .fetch_optional(&state.pool)
            .await?;
    let (status, items) =
        row.ok_or_else(|| ApiError::not_found(format!("no reservation for order {order_id}")))?;
    Ok((
        StatusCode::OK,
        Json(json!({ "order_id": order_id, "status": status, "items": items.0 })),
    ))
}

/// Publishes every product's current state again (`product.updated`), so a service whose
/// cached copy is empty or damaged can rebuild it; current copies ignore the repeats. An
/// operator's act, as `/users/republish` is: an admin's, not a producing system's
/// (`inventory:write` creates and changes products, it does not replay the catalogue).
async fn republish(State(state): State<Arc<AppState>>, caller: Caller) -> AppResult {
    caller.require(Scope::ADMIN)?;
    let republished = platform::republish(
        &state.pool,
        &state.outbox,
        concat!(
            "SELECT ",
            product_columns!(),
            " FROM products WHERE $1::text IS NULL OR sku > $1 ORDER BY sku LIMIT $2"
        ),
        |product: &Product| product.sku.clone(),
        |product: &Product| vec![product.current_state()],
    )
    .await?;
    Ok((StatusCode::OK, Json(json!({ "republished": republished }))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_router_serves_its_route_table_and_nothing_else() {
        let state = Arc::new(AppState {
            pool: platform::routes::probe_pool().unwrap(),
            outbox: Outbox::new(),
        });
        platform::routes::assert_serves(routes(state).finish(), crate::ROUTES).await;
    }
}
