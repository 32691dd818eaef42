//! Tokens: `POST /auth/token` (the password grant for people, client credentials for
//! producing systems; guessing slowed down per login and address, see [`crate::guessing`]),
//! `GET /auth/grants` (what the caller's credential grants now),
//! `POST /auth/clients` (an admin creates a producing system's credentials),
//! `GET /.well-known/jwks.json` (the public keys), and the admin account created at start.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use events_schema::publishers::INGESTIBLE;
use jsonwebtoken::{Algorithm, Header};
use platform::auth::{AUDIENCE, Claims, ISSUER, JWKS_PATH};
use platform::openapi::{Api, Operation, Param, TRIMMED_NOT_BLANK, TRIMMED_ONE_LINE};
use platform::routes::{Routes, Verb};
use platform::{ApiError, ApiResult, Caller, JsonBody, Scope, input};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::client_address::{ForwardSecret, client_address};
use crate::guessing::{self, SignInLimits, Verdict};
use crate::keys::KeyRing;
use crate::passwords;

/// The scopes an admin may grant a producing system (never `admin`: least privilege).
const CLIENT_SCOPES: &[&str] = &[Scope::INVENTORY_WRITE, Scope::EVENTS_PUBLISH];

/// The longest client id a sign-in may name (those made here have 39 characters).
const MAX_CLIENT_ID_CHARS: usize = 64;
/// The longest key id `POST /auth/keys/{kid}/retire` may name (those made here, RFC 7638
/// thumbprints, have 43 characters).
const MAX_KEY_ID_CHARS: usize = 64;

/// What a grant's login and secret are called, the most characters its login may have, and
/// the kinds of account it signs in.
struct Grant {
    login: &'static str,
    secret: &'static str,
    max_login_chars: usize,
    kinds: &'static [&'static str],
}

static PASSWORD_GRANT: Grant = Grant {
    login: "email",
    secret: "password",
    max_login_chars: input::MAX_EMAIL_CHARS,
    kinds: &["user", "admin"],
};

static CLIENT_GRANT: Grant = Grant {
    login: "client_id",
    secret: "client_secret",
    max_login_chars: MAX_CLIENT_ID_CHARS,
    kinds: &["client"],
};

pub(crate) struct AuthState {
    pub(crate) pool: PgPool,
    pub(crate) keys: Arc<KeyRing>,
    pub(crate) token_lifetime: Duration,
    /// How failed sign-ins slow down further attempts.
    pub(crate) sign_in: SignInLimits,
    /// What proves a request comes from the gateway, whose `X-Forwarded-For` then names
    /// the client; `None` believes no forwarded address.
    pub(crate) forward_secret: Option<ForwardSecret>,
}

/// Getting a token and the public keys (open to anyone), and the admins' routes, each
/// against its row of [`crate::ROUTES`].
pub(crate) fn routes(routes: Routes, state: Arc<AuthState>) -> Routes {
    routes
        .with_state(state)
        .on(Verb::Post, "/auth/token", token)
        .on(Verb::Get, "/auth/grants", grants)
        .on(Verb::Get, JWKS_PATH, jwks)
        .on(Verb::Post, "/auth/clients", create_client)
        .on(Verb::Post, "/auth/keys", rotate_key)
        .on(Verb::Post, "/auth/keys/{kid}/retire", retire_key)
        .done()
}

/// What the token routes take and answer, each against its row of [`crate::ROUTES`], for
/// the service's OpenAPI document.
pub(crate) fn api(described: Api) -> Api {
    described
        .on(Verb::Post, "/auth/token", signing_in())
        .on(Verb::Get, "/auth/grants", showing_grants())
        .on(Verb::Get, JWKS_PATH, publishing_keys())
        .on(Verb::Post, "/auth/clients", creating_a_client())
        .on(Verb::Post, "/auth/keys", rotating_the_key())
        .on(Verb::Post, "/auth/keys/{kid}/retire", retiring_a_key())
}

fn signing_in() -> Operation {
    Operation::new("A token: a person's (password grant) or a producing system's")
        .describe(
            "The OAuth 2 password grant (`email`, `password`) or client credentials grant (`client_id`, `client_secret`), as a form or as JSON. Failed attempts are counted per login and client address; past `SIGN_IN_FAILURES` each attempt must wait (429 with `Retry-After`).",
        )
        .form_or_json_body::<TokenRequest>()
        .reply::<IssuedToken>(StatusCode::OK, "The token.")
        .refusal(
            StatusCode::BAD_REQUEST,
            "An unknown grant, or a grant without its login and secret.",
        )
        .refusal(
            StatusCode::UNAUTHORIZED,
            "Wrong credentials, or a deactivated account.",
        )
        .refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            "A login or secret too long, or a login with a control character.",
        )
        .refusal(
            StatusCode::TOO_MANY_REQUESTS,
            "Too soon after failed sign-ins for this login from this address: wait `Retry-After` seconds.",
        )
}

fn showing_grants() -> Operation {
    Operation::new("What the caller's credential grants now")
        .describe(
            "The scope and edit grants a token issued now would carry, which may differ from those of the token sent: an admin may have granted or revoked the operator scope since. The operators' console asks this on each page.",
        )
        .reply::<Grants>(StatusCode::OK, "The grants.")
        .refusal(
            StatusCode::UNAUTHORIZED,
            "No valid token, or its account is deactivated or gone.",
        )
}

fn publishing_keys() -> Operation {
    Operation::new("The public keys that check tokens (a JWK set)").reply_object(
        StatusCode::OK,
        "The JWK set: `keys`, each RS256 with its `kid`.",
    )
}

fn creating_a_client() -> Operation {
    Operation::new("Creates a producing system's credentials; its secret is shown this once")
        .json_body::<NewClient>()
        .reply_object(
            StatusCode::CREATED,
            "`client_id`, `client_secret`, `name`, `scopes` and `event_types`.",
        )
        .refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            "A blank name, or a scope or event type that cannot be granted to a client.",
        )
}

fn rotating_the_key() -> Operation {
    Operation::new("Adds a signing key: published now, signing 30 s later")
        .reply_object(StatusCode::CREATED, "`kid` and `signs_after_seconds`.")
        .refusal(
            StatusCode::CONFLICT,
            "The signing key is configured (`JWT_PRIVATE_KEY`), not kept in the database.",
        )
}

fn retiring_a_key() -> Operation {
    Operation::new("Stops publishing a key that no longer signs")
        .param(Param::text("kid", "The key's id.", MAX_KEY_ID_CHARS))
        .reply_object(StatusCode::OK, "`retired`: the key's id.")
        .refusal(StatusCode::NOT_FOUND, "No published key has this id.")
        .refusal(StatusCode::CONFLICT, "The key still signs.")
}

/// A sign-in: the password grant's `email` and `password`, or the client credentials
/// grant's `client_id` and `client_secret`.
#[derive(Debug, Deserialize, JsonSchema)]
struct TokenRequest {
    #[schemars(extend("enum" = ["password", "client_credentials"]))]
    grant_type: String,
    /// The password grant's login (also read as `username`), trimmed.
    #[serde(alias = "username")]
    #[schemars(length(max = input::MAX_EMAIL_CHARS))]
    #[schemars(regex(pattern = TRIMMED_ONE_LINE))]
    email: Option<String>,
    /// At most 1,024 bytes of UTF-8, which `maxLength` (in characters) only bounds.
    #[schemars(length(max = passwords::MAX_PASSWORD_BYTES))]
    password: Option<String>,
    /// The client credentials grant's login, trimmed.
    #[schemars(length(max = MAX_CLIENT_ID_CHARS))]
    #[schemars(regex(pattern = TRIMMED_ONE_LINE))]
    client_id: Option<String>,
    /// At most 1,024 bytes of UTF-8, which `maxLength` (in characters) only bounds.
    #[schemars(length(max = passwords::MAX_PASSWORD_BYTES))]
    client_secret: Option<String>,
}

/// A token, as `POST /auth/token` answers it (OAuth 2's fields).
#[derive(Debug, Serialize, JsonSchema)]
struct IssuedToken {
    /// The RS256 JWT, for `Authorization: Bearer …`.
    access_token: String,
    #[schemars(extend("enum" = ["Bearer"]))]
    token_type: String,
    /// Seconds it is valid for.
    expires_in: u64,
    /// `customer` (with `operator` where an admin granted it), `admin`, or a producing
    /// system's scopes, separated by spaces.
    scope: String,
}

/// What a caller's credential grants now, as a token issued now would carry it.
#[derive(Debug, Serialize, JsonSchema)]
struct Grants {
    /// The token's subject: a user's id, `admin:<email>` or `client:<id>`.
    subject: String,
    /// What the credential signs in with: an email, or a producing system's client id.
    login: String,
    /// As `POST /auth/token` would grant it now, separated by spaces.
    scope: String,
    /// The event types this person may edit as an operator; empty for anyone else.
    edits: Vec<String>,
}

/// A credential row without its secret, for what it grants now.
#[derive(Debug, sqlx::FromRow)]
struct HeldCredential {
    login: String,
    kind: String,
    scopes: Vec<String>,
    event_types: Vec<String>,
    deactivated: bool,
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

/// A sign-in as asked: the login (trimmed, as accounts are stored and counted), the secret,
/// and its grant.
struct SignIn {
    login: String,
    secret: String,
    grant: &'static Grant,
}

/// `POST /auth/token`. Every attempt is counted for its login and the client's address
/// before its secret is checked ([`crate::guessing`]); one that comes too soon after
/// failures is refused with 429 and `Retry-After`, with no lookup and no hashing.
async fn token(State(state): State<Arc<AuthState>>, request: Request) -> Response {
    let address = client_address(
        request.headers(),
        request.extensions(),
        state.forward_secret.as_ref(),
    );
    let sign_in = match read_sign_in(request).await {
        Ok(sign_in) => sign_in,
        Err(error) => return error.into_response(),
    };
    let counted =
        guessing::count_attempt(&state.pool, &state.sign_in, &sign_in.login, &address).await;
    match counted {
        Ok(Verdict::Check) => {}
        Ok(Verdict::Wait(wait)) => return too_soon(wait),
        Err(error) => return ApiError::from(error).into_response(),
    }
    match check(&state, sign_in, &address).await {
        Ok(answer) => answer.into_response(),
        Err(error) => error.into_response(),
    }
}

/// Reads the OAuth 2 form body or the same fields as JSON.
///
/// Refused before any counting, lookup or hashing: such a login names no account (a NUL
/// could not even be looked up), and so long a secret matches none. A NUL in the secret is
/// let through: it is only hashed, and passwords set before NULs were refused may hold one.
async fn read_sign_in(request: Request) -> ApiResult<SignIn> {
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
    let (login, secret, grant) = match asked.grant_type.as_str() {
        "password" => (asked.email, asked.password, &PASSWORD_GRANT),
        "client_credentials" => (asked.client_id, asked.client_secret, &CLIENT_GRANT),
        other => {
            return Err(ApiError::bad_request(format!(
                "grant_type {} is not supported: use password (email, password) or client_credentials (client_id, client_secret)",
                input::shown(other)
            )));
        }
    };
    let (Some(login), Some(secret)) = (login, secret) else {
        return Err(ApiError::bad_request(
            "the password grant needs email and password; client_credentials needs client_id and client_secret",
        ));
    };
    let login = login.trim().to_owned();
    input::check_text(grant.login, &login, grant.max_login_chars)?;
    input::check_max_bytes(grant.secret, &secret, passwords::MAX_PASSWORD_BYTES)?;
    Ok(SignIn {
        login,
        secret,
        grant,
    })
}

/// Checks a counted attempt's secret and issues its token. A right secret clears the count
/// of its login and `address`, deactivated account or not: the password was not guessed.
async fn check(state: &AuthState, sign_in: SignIn, address: &str) -> ApiResult<Json<IssuedToken>> {
    let credential = find_credential(&state.pool, &sign_in.login, sign_in.grant.kinds).await?;
    let stored = credential.as_ref().map(|found| found.secret_hash.clone());
    let matches = passwords::verify(sign_in.secret, stored).await;
    let Some(credential) = credential.filter(|_| matches) else {
        return Err(wrong_credentials());
    };
    guessing::forget(&state.pool, &sign_in.login, address).await?;
    if credential.deactivated {
        return Err(ApiError::unauthorized("this account is deactivated"));
    }
    let scope = token_scope(&credential.kind, &credential.scopes);
    let access_token = issue(state, &credential, &scope)?;
    Ok(Json(IssuedToken {
        access_token,
        token_type: "Bearer".to_owned(),
        expires_in: state.token_lifetime.as_secs(),
        scope,
    }))
}

/// `GET /auth/grants`: what the caller's credential grants now.
async fn grants(State(state): State<Arc<AuthState>>, caller: Caller) -> ApiResult<Json<Grants>> {
    let held = sqlx::query_as::<_, HeldCredential>(
        "SELECT c.login, c.kind, c.scopes, c.event_types,
                COALESCE(u.status = 'deactivated', false) AS deactivated
         FROM credentials c LEFT JOIN users u ON c.kind = 'user' AND u.id::text = c.subject
         WHERE c.subject = $1",
    )
    .bind(caller.subject())
    .fetch_optional(&state.pool)
    .await?;
    let Some(held) = held.filter(|held| !held.deactivated) else {
        return Err(ApiError::unauthorized(
            "this token's account is deactivated or gone: sign in with another",
        ));
    };
    let scope = token_scope(&held.kind, &held.scopes);
    Ok(Json(Grants {
        subject: caller.subject().to_owned(),
        edits: operator_edits(&held.kind, &scope, &held.event_types),
        login: held.login,
        scope,
    }))
}

/// A person is a customer, and an operator too where an admin granted it; an admin or a
/// producing system has the scopes stored with its credential.
fn token_scope(kind: &str, stored: &[String]) -> String {
    if kind != "user" {
        return stored.join(" ");
    }
    let mut scopes = vec![Scope::CUSTOMER];
    if stored.iter().any(|scope| scope == Scope::OPERATOR) {
        scopes.push(Scope::OPERATOR);
    }
    scopes.join(" ")
}

/// A person's stored event types are those an admin allowed them to edit as an operator:
/// carried only while they are one.
fn operator_edits(kind: &str, scope: &str, event_types: &[String]) -> Vec<String> {
    if kind == "user" && scope.split(' ').any(|granted| granted == Scope::OPERATOR) {
        event_types.to_vec()
    } else {
        Vec::new()
    }
}

/// 429 for an attempt too soon after its login's failures from its address, with the
/// whole seconds to wait in `Retry-After`. It reads the same for every login, known or not.
fn too_soon(wait: Duration) -> Response {
    let seconds = wait.as_secs().max(1);
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "too many failed sign-ins for this login from this address; try again in {seconds} s"
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
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
        events: if credential.kind == "client" {
            credential.event_types.clone()
        } else {
            Vec::new()
        },
        edits: operator_edits(&credential.kind, scope, &credential.event_types),
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

/// A producing system's credentials, asked for by an admin.
#[derive(Debug, Deserialize, JsonSchema)]
struct NewClient {
    /// What the system is, trimmed.
    #[schemars(length(max = input::MAX_NAME_CHARS))]
    #[schemars(regex(pattern = TRIMMED_NOT_BLANK))]
    name: String,
    /// The scopes it is granted (never `admin`).
    #[serde(default)]
    #[schemars(extend("items" = { "type": "string", "enum": CLIENT_SCOPES }))]
    scopes: Vec<String>,
    /// The event types this client may publish over HTTP.
    #[serde(default)]
    #[schemars(extend("items" = { "type": "string", "enum": INGESTIBLE }))]
    event_types: Vec<String>,
}

/// Creates a producing system's credentials; the secret is shown this once.
async fn create_client(
    State(state): State<Arc<AuthState>>,
    caller: Caller,
    JsonBody(new): JsonBody<NewClient>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require(Scope::ADMIN)?;
    let name = new.name.trim();
    input::check_text("name", name, input::MAX_NAME_CHARS)?;
    if name.is_empty() {
        return Err(ApiError::unprocessable("name is empty"));
    }
    if let Some(scope) = new
        .scopes
        .iter()
        .find(|scope| !CLIENT_SCOPES.contains(&scope.as_str()))
    {
        return Err(ApiError::unprocessable(format!(
            "scope {} cannot be granted to a client: choose from {}",
            input::shown(scope),
            CLIENT_SCOPES.join(", ")
        )));
    }
    if let Some(refused) = new
        .event_types
        .iter()
        .find(|event_type| !events_schema::publishers::is_ingestible(event_type))
    {
        return Err(ApiError::unprocessable(format!(
            "event type {} cannot be granted to a client: producing systems may send only {} (the others belong to the services that own them)",
            input::shown(refused),
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
    .bind(name)
    .execute(&state.pool)
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "client_id": client_id,
            "client_secret": secret,
            "name": name,
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
    input::path_text("kid", &kid, MAX_KEY_ID_CHARS)?;
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
    input::check_text("CONVEYOR_ADMIN_EMAIL", email, input::MAX_EMAIL_CHARS)?;
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
