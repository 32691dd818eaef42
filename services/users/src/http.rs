//! The users API.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use conveyor::Outbox;
use events_schema::money::MAX_TOTAL_CENTS;
use events_schema::users::Address;
use platform::openapi::{Api, COUNTRY, CURRENCY, EMAIL, NOT_BLANK, NUL_FREE, Operation, Param};
use platform::routes::{Routes, Verb};
use platform::{ApiError, ApiResult, Caller, JsonBody, Scope, input, parse_uuid};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::passwords::{MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS};
use crate::user::{User, UserView, problems};

/// The columns a `User` reads, named rather than `*`: a statement prepared with `*` fails
/// ("cached plan must not change result type") on every pooled connection once a later
/// release, rolling out beside this one, adds a column to the table.
macro_rules! user_columns {
    () => {
        "id, email, name, line1, city, postal_code, country, credit_limit_cents, currency, status, version"
    };
}

pub(crate) struct AppState {
    pub(crate) pool: PgPool,
    pub(crate) outbox: Outbox,
}

type AppResult = ApiResult<(StatusCode, Json<Value>)>;

/// The users API's handlers, each against its row of [`crate::ROUTES`], which says who may
/// call it (signing up is open to anyone; an admin may register users too).
pub(crate) fn routes(routes: Routes, state: Arc<AppState>) -> Routes {
    routes
        .with_state(state)
        .on(Verb::Post, "/users", register)
        .on(Verb::Get, "/users/{id}", show)
        .on(Verb::Patch, "/users/{id}", change)
        .on(Verb::Post, "/users/{id}/deactivate", deactivate)
        .on(Verb::Post, "/users/republish", republish)
        .done()
}

/// What the users API takes and answers, each against its row of [`crate::ROUTES`], for
/// the service's OpenAPI document.
pub(crate) fn api(described: Api) -> Api {
    described
        .on(Verb::Post, "/users", registering())
        .on(Verb::Get, "/users/{id}", showing())
        .on(Verb::Patch, "/users/{id}", changing())
        .on(Verb::Post, "/users/{id}/deactivate", deactivating())
        .on(Verb::Post, "/users/republish", republishing())
}

fn user_id() -> Param {
    Param::uuid("id", "The user's id.")
}

fn registering() -> Operation {
    Operation::new("Signs a user up, or registers one as an admin")
        .describe(
            "Open to anyone. An admin may also set `credit_limit_cents` and leave out the password; a user who signs up starts with a credit limit of 0.",
        )
        .json_body::<NewUser>()
        .reply::<UserView>(StatusCode::CREATED, "The user, registered.")
        .refusal(
            StatusCode::FORBIDDEN,
            "Someone other than an admin set a credit limit.",
        )
        .refusal(
            StatusCode::CONFLICT,
            "A user, an admin or a client already signs in with this email.",
        )
        .refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            "A field breaks its rule (each one is named), or the password is missing.",
        )
}

fn showing() -> Operation {
    Operation::new("A user: the caller's own, or any for an admin")
        .param(user_id())
        .reply::<UserView>(StatusCode::OK, "The user.")
        .refusal(StatusCode::NOT_FOUND, "No such user, or someone else's.")
}

fn changing() -> Operation {
    Operation::new("Changes a user (its credit limit and operator grant only as an admin)")
        .param(user_id())
        .json_body::<UserChange>()
        .reply::<UserView>(StatusCode::OK, "The user, changed.")
        .refusal(
            StatusCode::FORBIDDEN,
            "Someone other than an admin changed a credit limit or the operator grant.",
        )
        .refusal(StatusCode::NOT_FOUND, "No such user, or someone else's.")
        .refusal(
            StatusCode::CONFLICT,
            "The user is deactivated, or another account signs in with this email.",
        )
        .refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            "A field breaks its rule (each one is named).",
        )
}

fn deactivating() -> Operation {
    Operation::new("Deactivates a user (again is fine)")
        .param(user_id())
        .reply::<UserView>(StatusCode::OK, "The user, deactivated.")
        .refusal(StatusCode::NOT_FOUND, "No such user, or someone else's.")
}

fn republishing() -> Operation {
    Operation::new("Publishes every user's current state again, for cached copies")
        .reply_object(StatusCode::OK, "`republished`: how many users.")
}

/// A user signing up, or registered by an admin.
#[derive(Debug, Deserialize, JsonSchema)]
struct NewUser {
    /// The login, trimmed: one `@` with a dot after it.
    #[schemars(length(max = input::MAX_EMAIL_CHARS))]
    #[schemars(regex(pattern = EMAIL))]
    email: String,
    #[schemars(length(max = input::MAX_NAME_CHARS))]
    #[schemars(regex(pattern = NOT_BLANK))]
    name: String,
    address: PostalAddress,
    /// Only an admin sets a credit limit; a user who signs up starts with none (0).
    #[schemars(range(min = 0, max = MAX_TOTAL_CENTS))]
    credit_limit_cents: Option<i64>,
    /// Needed to sign in; an admin may register a user without one. At most 1,024 bytes
    /// of UTF-8, which `maxLength` (in characters) only bounds.
    #[schemars(length(min = MIN_PASSWORD_CHARS, max = MAX_PASSWORD_BYTES))]
    #[schemars(regex(pattern = NUL_FREE))]
    password: Option<String>,
    /// An ISO 4217 code, like `EUR`.
    #[serde(default = "default_currency")]
    #[schemars(regex(pattern = CURRENCY))]
    currency: String,
}

/// A postal address as the API takes it: the event's [`Address`], with the API's rules.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct PostalAddress {
    #[schemars(length(max = input::MAX_ADDRESS_LINE_CHARS))]
    #[schemars(regex(pattern = NOT_BLANK))]
    line1: String,
    #[schemars(length(max = input::MAX_CITY_CHARS))]
    #[schemars(regex(pattern = NOT_BLANK))]
    city: String,
    #[schemars(length(max = input::MAX_POSTAL_CODE_CHARS))]
    #[schemars(regex(pattern = NOT_BLANK))]
    postal_code: String,
    /// An ISO 3166-1 alpha-2 code, like `FR`.
    #[schemars(regex(pattern = COUNTRY))]
    country: String,
}

impl From<PostalAddress> for Address {
    fn from(address: PostalAddress) -> Self {
        Self {
            line1: address.line1,
            city: address.city,
            postal_code: address.postal_code,
            country: address.country,
        }
    }
}

fn default_currency() -> String {
    "EUR".to_owned()
}

async fn register(
    State(state): State<Arc<AppState>>,
    caller: Option<Caller>,
    JsonBody(new): JsonBody<NewUser>,
) -> AppResult {
    let is_admin = caller.as_ref().is_some_and(Caller::is_admin);
    if new.credit_limit_cents.is_some() && !is_admin {
        return Err(ApiError::forbidden(
            "only an admin sets a credit limit: sign up without credit_limit_cents",
        ));
    }
    let credit_limit_cents = new.credit_limit_cents.unwrap_or(0);
    // The email is stored, checked and signed in with trimmed.
    let email = new.email.trim().to_owned();
    let address = Address::from(new.address);
    let mut problems = problems(
        &email,
        &new.name,
        &address,
        credit_limit_cents,
        &new.currency,
    );
    match &new.password {
        Some(password) => problems.extend(crate::passwords::problem(password)),
        None if !is_admin => problems.push("password is missing".to_owned()),
        None => {}
    }
    if !problems.is_empty() {
        return Err(ApiError::unprocessable(problems.join("; ")));
    }
    let user = User {
        id: Uuid::now_v7(),
        email,
        name: new.name,
        line1: address.line1,
        city: address.city,
        postal_code: address.postal_code,
        country: address.country,
        credit_limit_cents,
        currency: new.currency,
        status: "active".to_owned(),
        version: 1,
    };
    let mut tx = state.pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO users (id, email, name, line1, city, postal_code, country, credit_limit_cents, currency, version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (email) DO NOTHING",
    )
    .bind(user.id)
    .bind(&user.email)
    .bind(&user.name)
    .bind(&user.line1)
    .bind(&user.city)
    .bind(&user.postal_code)
    .bind(&user.country)
    .bind(user.credit_limit_cents)
    .bind(&user.currency)
    .bind(user.version)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(ApiError::conflict(format!(
            "a user with email {} already exists",
            user.email
        )));
    }
    if let Some(password) = new.password {
        let hash = crate::passwords::hash(password).await?;
        add_credentials(&mut tx, &user, &hash).await?;
    }
    let event = events_schema::envelope(crate::SERVICE, &user.registered())
        .with_subject(user.id.to_string());
    state.outbox.add(&mut tx, &event).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(user.to_json())))
}

async fn load(pool: &PgPool, id: Uuid) -> ApiResult<User> {
    sqlx::query_as::<_, User>(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no user {id}")))
}

/// The user a request names, when the caller may act for them; anyone else's is answered
/// as no user (whether it exists is not the caller's to know).
fn own_user(caller: &Caller, id: &str) -> ApiResult<Uuid> {
    let id = parse_uuid(id, "user")?;
    if caller.may_act_for(id) {
        Ok(id)
    } else {
        Err(ApiError::not_found(format!("no user {id}")))
    }
}

async fn show(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> AppResult {
    let user = load(&state.pool, own_user(&caller, &id)?).await?;
    Ok((StatusCode::OK, Json(user.to_json())))
}

/// What changes of a user: each field left out stays as it is.
#[derive(Debug, Deserialize, JsonSchema)]
struct UserChange {
    /// The login, trimmed: one `@` with a dot after it.
    #[schemars(length(max = input::MAX_EMAIL_CHARS))]
    #[schemars(regex(pattern = EMAIL))]
    email: Option<String>,
    #[schemars(length(max = input::MAX_NAME_CHARS))]
    #[schemars(regex(pattern = NOT_BLANK))]
    name: Option<String>,
    address: Option<PostalAddress>,
    /// Only an admin changes a credit limit.
    #[schemars(range(min = 0, max = MAX_TOTAL_CENTS))]
    credit_limit_cents: Option<i64>,
    /// Only an admin grants (`true`) or revokes (`false`) the `operator` scope: reading and
    /// acting on dead letters and flows in the operators' console, nothing else. It reaches
    /// the user's next token; the console asks `GET /auth/grants` on each page, so a
    /// revocation takes effect there at once, not when the session's token expires.
    operator: Option<bool>,
    /// Only an admin sets these: the event types whose dead letters this user may edit and
    /// send again as an operator in the console, each a type of the contract; they replace
    /// those set before. An edited `payment.captured` is money.
    #[schemars(length(max = 64))]
    operator_edits: Option<Vec<String>>,
    /// At most 1,024 bytes of UTF-8, which `maxLength` (in characters) only bounds.
    #[schemars(length(min = MIN_PASSWORD_CHARS, max = MAX_PASSWORD_BYTES))]
    #[schemars(regex(pattern = NUL_FREE))]
    password: Option<String>,
}

async fn change(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(change): JsonBody<UserChange>,
) -> AppResult {
    let id = own_user(&caller, &id)?;
    if change.credit_limit_cents.is_some() && !caller.is_admin() {
        return Err(ApiError::forbidden("only an admin changes a credit limit"));
    }
    if (change.operator.is_some() || change.operator_edits.is_some()) && !caller.is_admin() {
        return Err(ApiError::forbidden(
            "only an admin grants or revokes the operator scope",
        ));
    }
    if let Some(problem) = change
        .password
        .as_deref()
        .and_then(crate::passwords::problem)
    {
        return Err(ApiError::unprocessable(problem));
    }
    let mut tx = state.pool.begin().await?;
    let mut user = sqlx::query_as::<_, User>(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no user {id}")))?;
    if user.status == "deactivated" {
        return Err(ApiError::conflict(format!("user {id} is deactivated")));
    }
    if let Some(email) = change.email {
        user.email = email.trim().to_owned();
    }
    if let Some(name) = change.name {
        user.name = name;
    }
    if let Some(address) = change.address {
        (user.line1, user.city, user.postal_code, user.country) = (
            address.line1,
            address.city,
            address.postal_code,
            address.country,
        );
    }
    if let Some(limit) = change.credit_limit_cents {
        user.credit_limit_cents = limit;
    }
    let problems = problems(
        &user.email,
        &user.name,
        &user.address(),
        user.credit_limit_cents,
        &user.currency,
    );
    if !problems.is_empty() {
        return Err(ApiError::unprocessable(problems.join("; ")));
    }
    user.version += 1;
    sqlx::query(
        "UPDATE users SET email = $2, name = $3, line1 = $4, city = $5, postal_code = $6, country = $7,
         credit_limit_cents = $8, version = $9 WHERE id = $1",
    )
    .bind(user.id)
    .bind(&user.email)
    .bind(&user.name)
    .bind(&user.line1)
    .bind(&user.city)
    .bind(&user.postal_code)
    .bind(&user.country)
    .bind(user.credit_limit_cents)
    .bind(user.version)
    .execute(&mut *tx)
    .await
    .map_err(|error| match error.as_database_error() {
        Some(db) if db.is_unique_violation() => ApiError::conflict(format!("another user has email {}", user.email)),
        _ => error.into(),
    })?;
    update_credentials(&mut tx, &user, change.password).await?;
    if let Some(operator) = change.operator {
        grant_operator(&mut tx, user.id, operator).await?;
    }
    if let Some(types) = &change.operator_edits {
        allow_edits(&mut tx, user.id, types).await?;
    }
    let event =
        events_schema::envelope(crate::SERVICE, &user.updated()).with_subject(user.id.to_string());
    state.outbox.add(&mut tx, &event).await?;
    tx.commit().await?;
    Ok((StatusCode::OK, Json(user.to_json())))
}

/// Grants or revokes the `operator` scope on the user's credential, which the password grant
/// adds to the customer's scope.
async fn grant_operator(tx: &mut sqlx::PgConnection, user: Uuid, operator: bool) -> ApiResult<()> {
    let granted = sqlx::query(
        "UPDATE credentials SET scopes = CASE WHEN $2
             THEN array_append(array_remove(scopes, $3), $3) ELSE array_remove(scopes, $3) END
         WHERE subject = $1 AND kind = 'user'",
    )
    .bind(user.to_string())
    .bind(operator)
    .bind(Scope::OPERATOR)
    .execute(&mut *tx)
    .await?;
    signs_in(granted.rows_affected(), user, "operator")
}

/// Refuses a grant to a user who cannot sign in (registered by an admin without a password).
fn signs_in(credentials: u64, user: Uuid, field: &str) -> ApiResult<()> {
    if credentials == 0 {
        return Err(ApiError::unprocessable(format!(
            "{field}: user {user} has no password to sign in with, so a grant would do nothing; set one first (PATCH with \"password\")"
        )));
    }
    Ok(())
}

/// Sets the event types whose dead letters the user may edit as an operator; each must be a
/// type of the contract.
async fn allow_edits(tx: &mut sqlx::PgConnection, user: Uuid, types: &[String]) -> ApiResult<()> {
    let mut allowed: Vec<String> = types.iter().map(|name| name.trim().to_owned()).collect();
    allowed.sort();
    allowed.dedup();
    if let Some(unknown) = allowed.iter().find(|name| {
        !events_schema::SCHEMAS
            .iter()
            .any(|file| file.event_type == name.as_str())
    }) {
        return Err(ApiError::unprocessable(format!(
            "operator_edits: {} is not an event type of the contract",
            input::shown(unknown)
        )));
    }
    let granted =
        sqlx::query("UPDATE credentials SET event_types = $2 WHERE subject = $1 AND kind = 'user'")
            .bind(user.to_string())
            .bind(&allowed)
            .execute(&mut *tx)
            .await?;
    signs_in(granted.rows_affected(), user, "operator_edits")
}

/// Keeps a user's sign-in in step with a change: the email is the login, and a new password
/// replaces the old one.
async fn update_credentials(
    tx: &mut sqlx::PgConnection,
    user: &User,
    password: Option<String>,
) -> ApiResult<()> {
    let hash = match password {
        Some(password) => Some(crate::passwords::hash(password).await?),
        None => None,
    };
    let changed = sqlx::query(
        "UPDATE credentials SET login = $2, secret_hash = COALESCE($3, secret_hash)
         WHERE subject = $1 AND kind = 'user'",
    )
    .bind(user.id.to_string())
    .bind(&user.email)
    .bind(&hash)
    .execute(&mut *tx)
    .await
    .map_err(|error| match error.as_database_error() {
        Some(db) if db.is_unique_violation() => {
            ApiError::conflict(format!("{} already signs in someone else", user.email))
        }
        _ => error.into(),
    })?;
    if changed.rows_affected() == 0
        && let Some(hash) = hash
    {
        // Registered by an admin without a password: this one lets them sign in.
        add_credentials(tx, user, &hash).await?;
    }
    Ok(())
}

/// Lets `user` sign in with their email and the password `hash` was made from.
async fn add_credentials(tx: &mut sqlx::PgConnection, user: &User, hash: &str) -> ApiResult<()> {
    sqlx::query(
        "INSERT INTO credentials (login, secret_hash, subject, kind) VALUES ($1, $2, $3, 'user')",
    )
    .bind(&user.email)
    .bind(hash)
    .bind(user.id.to_string())
    .execute(&mut *tx)
    .await
    .map_err(|error| match error.as_database_error() {
        Some(db) if db.is_unique_violation() => ApiError::conflict(format!(
            "{} already signs in an admin or a client",
            user.email
        )),
        _ => error.into(),
    })?;
    Ok(())
}

async fn deactivate(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> AppResult {
    let id = own_user(&caller, &id)?;
    let mut tx = state.pool.begin().await?;
    let user = sqlx::query_as::<_, User>(concat!(
        "UPDATE users SET status = 'deactivated', version = version + 1
         WHERE id = $1 AND status = 'active' RETURNING ",
        user_columns!()
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(user) = user else {
        // Already deactivated is fine (idempotent); unknown is not.
        let existing = load(&state.pool, id).await?;
        return Ok((StatusCode::OK, Json(existing.to_json())));
    };
    state.outbox.add(&mut tx, &current_state(&user)).await?;
    tx.commit().await?;
    Ok((StatusCode::OK, Json(user.to_json())))
}

/// Publishes every user's current state again, so a service whose cached copy is empty or
/// damaged can rebuild it. Copies that are current ignore the repeats: their versions are
/// not newer.
async fn republish(State(state): State<Arc<AppState>>, caller: Caller) -> AppResult {
    caller.require(Scope::ADMIN)?;
    let republished = platform::republish(
        &state.pool,
        &state.outbox,
        concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE $1::uuid IS NULL OR id > $1 ORDER BY id LIMIT $2"
        ),
        |user: &User| user.id,
        republished_state,
    )
    .await?;
    Ok((
        StatusCode::OK,
        Json(serde_json::json!({ "republished": republished })),
    ))
}

/// What rebuilds a copy of `user` from nothing: `user.updated`, and for a deactivated user
/// also `user.deactivated` at the same version (copies let a deactivation win a tie), so a
/// rebuilt copy has the address and the credit limit as well as the deactivation.
fn republished_state(user: &User) -> Vec<conveyor::Envelope> {
    let mut events = vec![
        events_schema::envelope(crate::SERVICE, &user.updated()).with_subject(user.id.to_string()),
    ];
    if user.status == "deactivated" {
        events.push(current_state(user));
    }
    events
}

/// The event that tells a cached copy what `user` is now.
fn current_state(user: &User) -> conveyor::Envelope {
    let event = if user.status == "deactivated" {
        events_schema::envelope(crate::SERVICE, &user.deactivated())
    } else {
        events_schema::envelope(crate::SERVICE, &user.updated())
    };
    event.with_subject(user.id.to_string())
}
