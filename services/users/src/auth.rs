//! Tokens: `POST /auth/token` (the password grant for people, client credentials for
//! producing systems), `POST /auth/clients` (an admin creates a producing system's
//! credentials), `GET /.well-known/jwks.json` (the public keys), and the admin account
//! created at start.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, Request, State};
use axum::http::{StatusCode, header};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use jsonwebtoken::{Algorithm, Header};
use platform::auth::{AUDIENCE, Claims, ISSUER, JWKS_PATH};
use platform::{ApiError, ApiResult, Caller, JsonBody, Scope};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::keys::KeyRing;
use crate::passwords;

/// The scopes an admin may grant a producing system (never `admin`: least privilege).
const CLIENT_SCOPES: &[&str] = &[Scope::INVENTORY_WRITE, Scope::EVENTS_PUBLISH];

pub(crate) struct AuthState {
    pub(crate) pool: PgPool,
    pub(crate) keys: Arc<KeyRing>,
    pub(crate) token_lifetime: Duration,
}

/// Routes open to anyone: getting a token and the public keys.
pub(crate) fn public_router(state: Arc<AuthState>) -> Router {
    Router::new()
        .route("/auth/token", post(token))
        .route(JWKS_PATH, get(jwks))
        .with_state(state)
}

/// Routes for admins.
pub(crate) fn admin_router(state: Arc<AuthState>) -> Router {
    Router::new()
        .route("/auth/clients", post(create_client))
        .route("/auth/keys", post(rotate_key))
        .route("/auth/keys/{kid}/retire", post(retire_key))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
struct TokenRequest {
    grant_type: String,
    #[serde(alias = "username")]
    email: Option<String>,
    password: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// A credential row: what a login may get a token for.
#[derive(Debug, sqlx::FromRow)]
struct Credential {
    secret_hash: String,
    subject: String,
    kind: String,
    scopes: Vec<String>,
    event_types: Vec<String>,
    /// For a person's account: whether the user is deactivated.
    deactivated: bool,
}

/// Takes the OAuth 2 form body or the same fields as JSON.
async fn token(State(state): State<Arc<AuthState>>, request: Request) -> ApiResult<Json<Value>> {
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    let asked: TokenRequest = if is_json {
        JsonBody::from_request(request, &()).await?.0
    } else {
        Form::from_request(request, &())
            .await
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))?
            .0
    };
    let (login, secret, kinds) = match asked.grant_type.as_str() {
        "password" => (asked.email, asked.password, &["user", "admin"][..]),
        "client_credentials" => (asked.client_id, asked.client_secret, &["client"][..]),
        other => {
            return Err(ApiError::bad_request(format!(
                "grant_type {other:?} is not supported: use password (email, password) or client_credentials (client_id, client_secret)"
            )));
        }
    };
    let (Some(login), Some(secret)) = (login, secret) else {
        return Err(ApiError::bad_request(
            "the password grant needs email and password; client_credentials needs client_id and client_secret",
        ));
    };
    let credential = find_credential(&state.pool, login.trim(), kinds).await?;
    let stored = credential.as_ref().map(|found| found.secret_hash.clone());
    let matches = passwords::verify(secret, stored).await;
    let Some(credential) = credential.filter(|_| matches) else {
        return Err(wrong_credentials());
    };
    if credential.deactivated {
        return Err(ApiError::unauthorized("this account is deactivated"));
    }
    let scope = if credential.kind == "user" {
        Scope::CUSTOMER.to_owned()
    } else {
        credential.scopes.join(" ")
    };
    let access_token = issue(&state, &credential, &scope)?;
    Ok(Json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": state.token_lifetime.as_secs(),
        "scope": scope,
    })))
}

fn wrong_credentials() -> ApiError {
    ApiError::unauthorized("wrong email or password (or client id or secret)")
}

async fn find_credential(
    pool: &PgPool,
    login: &str,
    kinds: &[&str],
) -> ApiResult<Option<Credential>> {
    Ok(sqlx::query_as::<_, Credential>(
        "SELECT c.secret_hash, c.subject, c.kind, c.scopes, c.event_types,
                COALESCE(u.status = 'deactivated', false) AS deactivated
         FROM credentials c LEFT JOIN users u ON c.kind = 'user' AND u.id::text = c.subject
         WHERE c.login = $1 AND c.kind = ANY($2)",
    )
    .bind(login)
    .bind(kinds)
    .fetch_optional(pool)
    .await?)
}

/// A signed token for `credential` with `scope`.
fn issue(state: &AuthState, credential: &Credential, scope: &str) -> ApiResult<String> {
    let signer = state
        .keys
        .signer()
        .ok_or_else(|| anyhow::anyhow!("no signing key is loaded"))?;
    let now = chrono::Utc::now().timestamp();
    let lifetime = i64::try_from(state.token_lifetime.as_secs()).unwrap_or(i64::MAX);
    let claims = Claims {
        iss: ISSUER.to_owned(),
        aud: AUDIENCE.to_owned(),
        sub: credential.subject.clone(),
        exp: now.saturating_add(lifetime),
        iat: now,
        nbf: now,
        scope: scope.to_owned(),
        events: credential.event_types.clone(),
    };
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(signer.kid.clone());
    Ok(jsonwebtoken::encode(&header, &claims, &signer.key).map_err(anyhow::Error::from)?)
}

async fn jwks(State(state): State<Arc<AuthState>>) -> ApiResult<Json<Value>> {
    Ok(Json(
        serde_json::to_value(state.keys.published().await?).map_err(anyhow::Error::from)?,
    ))
}

#[derive(Debug, Deserialize)]
struct NewClient {
    name: String,
    #[serde(default)]
    scopes: Vec<String>,
    /// The event types this client may publish over HTTP.
    #[serde(default)]
    event_types: Vec<String>,
}

/// Creates a producing system's credentials; the secret is shown this once.
async fn create_client(
    State(state): State<Arc<AuthState>>,
    caller: Caller,
    JsonBody(new): JsonBody<NewClient>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require(Scope::ADMIN)?;
    if new.name.trim().is_empty() {
        return Err(ApiError::unprocessable("name is empty"));
    }
    if let Some(scope) = new
        .scopes
        .iter()
        .find(|scope| !CLIENT_SCOPES.contains(&scope.as_str()))
    {
        return Err(ApiError::unprocessable(format!(
            "scope {scope:?} cannot be granted to a client: choose from {}",
            CLIENT_SCOPES.join(", ")
        )));
    }
    if let Some(refused) = new
        .event_types
        .iter()
        .find(|event_type| !events_schema::publishers::is_ingestible(event_type))
    {
        return Err(ApiError::unprocessable(format!(
            "event type {refused:?} cannot be granted to a client: producing systems may send only {} (the others belong to the services that own them)",
            events_schema::publishers::INGESTIBLE.join(", ")
        )));
    }
    let client_id = format!("client-{}", uuid::Uuid::new_v4().simple());
    let secret = passwords::new_secret()?;
    let hash = passwords::hash(secret.clone()).await?;
    sqlx::query(
        "INSERT INTO credentials (login, secret_hash, subject, kind, scopes, event_types, name)
         VALUES ($1, $2, $3, 'client', $4, $5, $6)",
    )
    .bind(&client_id)
    .bind(&hash)
    .bind(format!("client:{client_id}"))
    .bind(&new.scopes)
    .bind(&new.event_types)
    .bind(new.name.trim())
    .execute(&state.pool)
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "client_id": client_id,
            "client_secret": secret,
            "name": new.name.trim(),
            "scopes": new.scopes,
            "event_types": new.event_types,
        })),
    ))
}

/// Adds a signing key (published now, signing after its activation); the old one is
/// retired with `POST /auth/keys/{kid}/retire` once the new one signs.
async fn rotate_key(
    State(state): State<Arc<AuthState>>,
    caller: Caller,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require(Scope::ADMIN)?;
    let kid = state.keys.rotate().await.map_err(|error| match error {
        crate::keys::RotateError::Configured => ApiError::conflict(error.to_string()),
        crate::keys::RotateError::Failed(error) => error.into(),
    })?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "kid": kid,
            "signs_after_seconds": crate::keys::ACTIVATION.as_secs(),
        })),
    ))
}

async fn retire_key(
    State(state): State<Arc<AuthState>>,
    caller: Caller,
    axum::extract::Path(kid): axum::extract::Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::ADMIN)?;
    match state.keys.retire(&kid).await {
        Ok(true) => Ok(Json(json!({ "retired": kid }))),
        Ok(false) => Err(ApiError::not_found(format!(
            "no published key {kid:?}: see /.well-known/jwks.json"
        ))),
        Err(crate::keys::RetireError::StillSigning) => Err(ApiError::conflict(
            crate::keys::RetireError::StillSigning.to_string(),
        )),
        Err(crate::keys::RetireError::Failed(error)) => Err(error.into()),
    }
}

/// An admin account: email and password.
#[derive(Clone)]
pub struct AdminAccount {
    pub email: String,
    pub password: String,
}

impl std::fmt::Debug for AdminAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAccount")
            .field("email", &self.email)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// Creates the admin account, or sets its password to the one given.
///
/// # Errors
/// When the email is a customer's or a client's login, or the database fails.
pub(crate) async fn ensure_admin(pool: &PgPool, admin: &AdminAccount) -> anyhow::Result<()> {
    let email = admin.email.trim();
    anyhow::ensure!(
        email.contains('@'),
        "CONVEYOR_ADMIN_EMAIL {email:?} is not an email address"
    );
    if let Some(problem) = passwords::problem(&admin.password) {
        anyhow::bail!("CONVEYOR_ADMIN_PASSWORD is not usable: {problem}");
    }
    let hash = passwords::hash(admin.password.clone()).await?;
    let updated = sqlx::query(
        "INSERT INTO credentials (login, secret_hash, subject, kind, scopes)
         VALUES ($1, $2, $3, 'admin', ARRAY['admin'])
         ON CONFLICT (login) DO UPDATE SET secret_hash = EXCLUDED.secret_hash
         WHERE credentials.kind = 'admin'",
    )
    .bind(email)
    .bind(&hash)
    .bind(format!("admin:{email}"))
    .execute(pool)
    .await?;
    anyhow::ensure!(
        updated.rows_affected() == 1,
        "CONVEYOR_ADMIN_EMAIL {email} already signs in a customer or a client; choose another email for the admin"
    );
    Ok(())
}
