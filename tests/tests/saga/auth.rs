//! Tokens and authorisation, tried as an attacker and as customers would: forged and broken
//! tokens are refused and change nothing, a customer reaches only their own data, and a
//! producing system gets exactly the scopes an admin granted it.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use platform::auth::{AUDIENCE, Claims, ISSUER};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use system::scenario::Api;

use crate::helpers::{ALL, System, start};

/// What a signed-in customer has: their id, email, password and a client carrying their token.
pub(crate) struct Customer {
    pub(crate) id: String,
    pub(crate) api: Api,
}

/// Signs a customer up the way a person would (no token, a password, no credit limit) and
/// signs them in.
pub(crate) async fn sign_up(system: &System, country: &str) -> (Customer, String, String) {
    let anonymous = Api::new(&system.urls()).unwrap();
    let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
    let password = "a long enough password".to_owned();
    let body = json!({
        "email": email, "name": "Signed Up", "password": password,
        "address": { "line1": "2 Own Road", "city": "Selfton", "postal_code": "54321", "country": country },
    });
    let (status, user) = anonymous
        .call(Method::POST, "users", "/users", Some(&body), &[])
        .await
        .unwrap();
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let api = anonymous.signed_in(&email, &password).await.unwrap();
    let id = user["id"].as_str().unwrap().to_owned();
    (Customer { id, api }, email, password)
}

/// The private key users signs with, read from its database as only an insider could.
async fn signing_key(system: &System) -> (String, EncodingKey) {
    let pool = sqlx::PgPool::connect(&system.database_url("users"))
        .await
        .unwrap();
    let (kid, pem): (String, String) =
        sqlx::query_as("SELECT kid, private_key_pem FROM signing_keys")
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    (kid, EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap())
}

fn claims(sub: &str, scope: &str, offset_from_now: i64) -> Claims {
    let now = chrono_now() + offset_from_now;
    Claims {
        iss: ISSUER.to_owned(),
        aud: AUDIENCE.to_owned(),
        sub: sub.to_owned(),
        exp: now + 600,
        iat: now,
        nbf: now,
        scope: scope.to_owned(),
        events: Vec::new(),
        edits: Vec::new(),
    }
}

fn chrono_now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

fn rs256(kid: &str, claims: &Claims, key: &EncodingKey) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// The tokens a careful attacker tries, each named, each claiming to be an admin.
pub(crate) async fn forged_tokens(
    system: &System,
    customer_token: &str,
) -> Vec<(&'static str, String)> {
    let (kid, key) = signing_key(system).await;
    let admin = |offset| claims("admin:attacker@example.com", "admin", offset);
    let jwks = system
        .api
        .get("users", "/.well-known/jwks.json")
        .await
        .unwrap();
    let public_n = jwks["keys"][0]["n"].as_str().unwrap().to_owned();
    let mut expired = admin(0);
    (expired.iat, expired.nbf, expired.exp) =
        (expired.iat - 7200, expired.nbf - 7200, expired.exp - 4200);
    let mut wrong_issuer = admin(0);
    wrong_issuer.iss = "someone-else".to_owned();
    let mut wrong_audience = admin(0);
    wrong_audience.aud = "another-system".to_owned();
    let mut hs256 = Header::new(Algorithm::HS256);
    hs256.kid = Some(kid.clone());
    let hs256_with_public_key = jsonwebtoken::encode(
        &hs256,
        &admin(0),
        &EncodingKey::from_secret(public_n.as_bytes()),
    )
    .unwrap();
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({ "alg": "none", "typ": "JWT", "kid": kid })),
        b64(&serde_json::to_value(admin(0)).unwrap())
    );
    // A real customer's token with its payload swapped for an admin's.
    let mut parts: Vec<String> = customer_token.split('.').map(str::to_owned).collect();
    parts[1] = b64(&serde_json::to_value(admin(0)).unwrap());
    let tampered = parts.join(".");
    let stranger_key = EncodingKey::from_rsa_pem(include_bytes!("stranger_key.pem")).unwrap();
    vec![
        ("alg none", alg_none),
        ("HS256 signed with the public key", hs256_with_public_key),
        ("expired", rs256(&kid, &expired, &key)),
        ("not yet valid", rs256(&kid, &admin(3600), &key)),
        ("wrong issuer", rs256(&kid, &wrong_issuer, &key)),
        ("wrong audience", rs256(&kid, &wrong_audience, &key)),
        ("tampered payload", tampered),
        (
            "unknown kid",
            rs256("not-a-key-of-ours", &admin(0), &stranger_key),
        ),
        (
            "the right kid, another key",
            rs256(&kid, &admin(0), &stranger_key),
        ),
        ("a 100 KB token", "a".repeat(100 * 1024)),
        ("not a JWT", "hello".to_owned()),
    ]
}

/// Every route that needs a token, as (service, method, path, body).
fn protected_routes(
    user: &str,
    order: &str,
    sku: &str,
) -> Vec<(&'static str, Method, String, Value)> {
    vec![
        ("users", Method::GET, format!("/users/{user}"), json!(null)),
        (
            "users",
            Method::PATCH,
            format!("/users/{user}"),
            json!({ "name": "Forged" }),
        ),
        (
            "users",
            Method::POST,
            format!("/users/{user}/deactivate"),
            json!({}),
        ),
        (
            "users",
            Method::POST,
            "/users/republish".to_owned(),
            json!({}),
        ),
        (
            "users",
            Method::POST,
            "/auth/clients".to_owned(),
            json!({ "name": "evil" }),
        ),
        (
            "orders",
            Method::POST,
            "/orders".to_owned(),
            json!({ "user_id": user, "items": [{ "sku": sku, "quantity": 1 }] }),
        ),
        ("orders", Method::GET, "/orders".to_owned(), json!(null)),
        (
            "orders",
            Method::GET,
            format!("/orders/{order}"),
            json!(null),
        ),
        (
            "orders",
            Method::POST,
            format!("/orders/{order}/cancel"),
            json!({}),
        ),
        (
            "orders",
            Method::GET,
            format!("/cache/users/{user}"),
            json!(null),
        ),
        (
            "payments",
            Method::GET,
            format!("/payments?order_id={order}"),
            json!(null),
        ),
        (
            "payments",
            Method::GET,
            format!("/cache/users/{user}"),
            json!(null),
        ),
        (
            "shipping",
            Method::GET,
            format!("/shipments?order_id={order}"),
            json!(null),
        ),
        (
            "shipping",
            Method::GET,
            format!("/cache/users/{user}"),
            json!(null),
        ),
        (
            "inventory",
            Method::POST,
            "/products".to_owned(),
            json!({ "sku": "FORGED-1", "name": "x", "price_cents": 1, "stock": 1 }),
        ),
        (
            "inventory",
            Method::GET,
            format!("/products/{sku}"),
            json!(null),
        ),
        (
            "inventory",
            Method::PATCH,
            format!("/products/{sku}"),
            json!({ "price_cents": 1 }),
        ),
        (
            "inventory",
            Method::PUT,
            format!("/products/{sku}/stock"),
            json!({ "stock": 0 }),
        ),
        (
            "inventory",
            Method::POST,
            "/products/republish".to_owned(),
            json!({}),
        ),
        (
            "inventory",
            Method::GET,
            format!("/reservations/{order}"),
            json!(null),
        ),
    ]
}

async fn send(
    api: &Api,
    route: &(&'static str, Method, String, Value),
    token: Option<&str>,
) -> (StatusCode, Value) {
    let (service, method, path, body) = route;
    let header = token.map(|token| format!("Bearer {token}"));
    let headers: Vec<(&str, &str)> = header
        .iter()
        .map(|value| ("authorization", value.as_str()))
        .collect();
    api.call(
        method.clone(),
        service,
        path,
        (!body.is_null()).then_some(body),
        &headers,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn missing_and_forged_tokens_get_401_everywhere_and_change_nothing() {
    let system = start(&ALL, Duration::from_secs(60)).await;
    let (victim, _, _) = sign_up(&system, "FR").await;
    system
        .api
        .patch(
            "users",
            &format!("/users/{}", victim.id),
            &json!({ "credit_limit_cents": 100_000 }),
        )
        .await
        .unwrap();
    let sku = system.product(700, 5).await;
    system.wait_for_caches(&[&victim.id], &[&sku], &ALL).await;
    let order = victim
        .api
        .post(
            "orders",
            "/orders",
            &json!({ "items": [{ "sku": sku, "quantity": 1 }] }),
        )
        .await
        .unwrap();
    let order_id = order["id"].as_str().unwrap();
    let final_order = system.final_order(order_id).await;
    assert_eq!(final_order["status"], "confirmed", "{final_order}");
    let victim_before = system
        .api
        .get("users", &format!("/users/{}", victim.id))
        .await
        .unwrap();
    let product_before = system
        .api
        .get("inventory", &format!("/products/{sku}"))
        .await
        .unwrap();
    let customer_token = victim.api.bearer_token().unwrap().to_owned();
    let forged = forged_tokens(&system, &customer_token).await;
    let anonymous = Api::new(&system.urls()).unwrap();

    for route in protected_routes(&victim.id, order_id, &sku) {
        let (status, answer) = send(&anonymous, &route, None).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "no token, {} {}: {answer}",
            route.1,
            route.2
        );
        assert!(
            answer["error"].as_str().unwrap().contains("bearer token"),
            "{answer}"
        );
        for (name, token) in &forged {
            let (status, answer) = send(&anonymous, &route, Some(token)).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{name}, {} {} on {}: {answer}",
                route.1,
                route.2,
                route.0
            );
        }
    }

    // Nothing any of those requests asked for happened.
    let victim_after = system
        .api
        .get("users", &format!("/users/{}", victim.id))
        .await
        .unwrap();
    assert_eq!(victim_after, victim_before);
    let product_after = system
        .api
        .get("inventory", &format!("/products/{sku}"))
        .await
        .unwrap();
    assert_eq!(product_after, product_before);
    assert_eq!(system.final_order(order_id).await["status"], "confirmed");
    assert_eq!(system.orders_of(&victim.id).await.len(), 1);
    let forged_product = system
        .api
        .call(Method::GET, "inventory", "/products/FORGED-1", None, &[])
        .await
        .unwrap();
    assert_eq!(forged_product.0, StatusCode::NOT_FOUND);
    // The genuine token still works.
    assert_eq!(
        victim
            .api
            .get("users", &format!("/users/{}", victim.id))
            .await
            .unwrap()["id"],
        victim.id
    );
    system.stop().await;
}

#[tokio::test]
async fn a_customer_reaches_only_their_own_user_orders_payments_and_shipments() {
    let system = start(&ALL, Duration::from_secs(60)).await;
    let (alice, _, _) = sign_up(&system, "FR").await;
    let (mallory, mallory_email, mallory_password) = sign_up(&system, "DE").await;
    for customer in [&alice, &mallory] {
        system
            .api
            .patch(
                "users",
                &format!("/users/{}", customer.id),
                &json!({ "credit_limit_cents": 100_000 }),
            )
            .await
            .unwrap();
    }
    let sku = system.product(900, 10).await;
    system
        .wait_for_caches(&[&alice.id, &mallory.id], &[&sku], &ALL)
        .await;
    let items = json!([{ "sku": sku, "quantity": 1 }]);
    let order = alice
        .api
        .post("orders", "/orders", &json!({ "items": items }))
        .await
        .unwrap();
    let order_id = order["id"].as_str().unwrap().to_owned();
    assert_eq!(order["user_id"], alice.id);
    assert_eq!(system.final_order(&order_id).await["status"], "confirmed");

    let as_mallory = |method: Method, service: &'static str, path: String, body: Value| {
        let api = mallory.api.clone();
        async move {
            api.call(
                method,
                service,
                &path,
                (!body.is_null()).then_some(&body),
                &[],
            )
            .await
            .unwrap()
        }
    };
    let refused = [
        (
            Method::GET,
            "orders",
            format!("/orders/{order_id}"),
            json!(null),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            "orders",
            format!("/orders/{order_id}/cancel"),
            json!({}),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "orders",
            format!("/orders?user_id={}", alice.id),
            json!(null),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::POST,
            "orders",
            "/orders".to_owned(),
            json!({ "user_id": alice.id, "items": items }),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::GET,
            "users",
            format!("/users/{}", alice.id),
            json!(null),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::PATCH,
            "users",
            format!("/users/{}", alice.id),
            json!({ "name": "Mallory was here" }),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            "users",
            format!("/users/{}/deactivate", alice.id),
            json!({}),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::PATCH,
            "users",
            format!("/users/{}", mallory.id),
            json!({ "credit_limit_cents": 1_000_000_000 }),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::POST,
            "users",
            "/users/republish".to_owned(),
            json!({}),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::POST,
            "inventory",
            "/products".to_owned(),
            json!({ "sku": "MALLORY-1", "name": "x", "price_cents": 1, "stock": 1 }),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::PUT,
            "inventory",
            format!("/products/{sku}/stock"),
            json!({ "stock": 0 }),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::GET,
            "orders",
            format!("/cache/users/{}", alice.id),
            json!(null),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::POST,
            "users",
            "/auth/clients".to_owned(),
            json!({ "name": "mine" }),
            StatusCode::FORBIDDEN,
        ),
    ];
    for (method, service, path, body, expected) in refused {
        let (status, answer) = as_mallory(method.clone(), service, path.clone(), body).await;
        assert_eq!(status, expected, "{method} {path} on {service}: {answer}");
    }
    let (_, payments) = as_mallory(
        Method::GET,
        "payments",
        format!("/payments?order_id={order_id}"),
        json!(null),
    )
    .await;
    assert_eq!(payments["payments"], json!([]), "{payments}");
    let (_, shipments) = as_mallory(
        Method::GET,
        "shipping",
        format!("/shipments?order_id={order_id}"),
        json!(null),
    )
    .await;
    assert_eq!(shipments["shipments"], json!([]), "{shipments}");
    let (_, listed) = as_mallory(Method::GET, "orders", "/orders".to_owned(), json!(null)).await;
    assert_eq!(listed["orders"], json!([]), "{listed}");

    // Alice's order, user and money are as she left them.
    assert_eq!(system.final_order(&order_id).await["status"], "confirmed");
    let alice_now = alice
        .api
        .get("users", &format!("/users/{}", alice.id))
        .await
        .unwrap();
    assert_eq!(alice_now["name"], "Signed Up");
    assert_eq!(alice_now["status"], "active");
    let (_, own_payments) = alice
        .api
        .call(
            Method::GET,
            "payments",
            &format!("/payments?order_id={order_id}"),
            None,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        own_payments["payments"][0]["status"], "captured",
        "{own_payments}"
    );
    let (_, own_list) = alice
        .api
        .call(Method::GET, "orders", "/orders", None, &[])
        .await
        .unwrap();
    assert_eq!(
        own_list["orders"].as_array().unwrap().len(),
        1,
        "{own_list}"
    );

    // Signing up cannot grant oneself credit, and a deactivated account cannot sign in.
    let anonymous = Api::new(&system.urls()).unwrap();
    let (status, answer) = anonymous
        .call(Method::POST, "users", "/users", Some(&json!({
            "email": "greedy@example.com", "name": "Greedy", "password": "a long enough password",
            "credit_limit_cents": 1_000_000_000,
            "address": { "line1": "1 Road", "city": "Town", "postal_code": "1", "country": "FR" },
        })), &[])
        .await
        .unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    mallory
        .api
        .post(
            "users",
            &format!("/users/{}/deactivate", mallory.id),
            &json!({}),
        )
        .await
        .unwrap();
    let refused = anonymous
        .token(&mallory_email, &mallory_password)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("401"), "{refused:#}");
    let wrong = anonymous
        .token(&mallory_email, "not the password")
        .await
        .unwrap_err();
    assert!(wrong.to_string().contains("401"), "{wrong:#}");
    system.stop().await;
}

#[tokio::test]
async fn a_producing_system_gets_the_scopes_an_admin_granted_and_no_more() {
    let system = start(&ALL, Duration::from_secs(60)).await;
    let client = system
        .api
        .post(
            "users",
            "/auth/clients",
            &json!({ "name": "warehouse feed", "scopes": ["inventory:write"] }),
        )
        .await
        .unwrap();
    let (id, secret) = (
        client["client_id"].as_str().unwrap(),
        client["client_secret"].as_str().unwrap(),
    );
    let users_url = &system.urls()["users"];
    let http = reqwest::Client::new();
    let grant = |secret: &str| {
        http.post(format!("{users_url}/auth/token"))
            // The OAuth 2 form body (ids and secrets are URL-safe as they are).
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=client_credentials&client_id={id}&client_secret={secret}"
            ))
            .send()
    };
    let wrong = grant("not the secret").await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let answer: Value = grant(secret).await.unwrap().json().await.unwrap();
    assert_eq!(answer["token_type"], "Bearer", "{answer}");
    assert_eq!(answer["scope"], "inventory:write", "{answer}");
    assert!(answer["expires_in"].as_u64().unwrap() > 0, "{answer}");
    let feed = Api::new(&system.urls())
        .unwrap()
        .with_token(answer["access_token"].as_str().unwrap());

    let (status, product) = feed
        .call(
            Method::POST,
            "inventory",
            "/products",
            Some(&json!({ "sku": "FEED-1", "name": "Fed", "price_cents": 250, "stock": 3 })),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::CREATED, "{product}");
    for (service, path) in [("orders", "/orders"), ("users", "/users/republish")] {
        let method = if path == "/orders" {
            Method::GET
        } else {
            Method::POST
        };
        let (status, answer) = feed
            .call(method, service, path, Some(&json!({})), &[])
            .await
            .unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {answer}");
    }
    let (status, answer) = system
        .api
        .call(
            Method::POST,
            "users",
            "/auth/clients",
            Some(&json!({ "name": "greedy", "scopes": ["admin"] })),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    // The published keys are open to anyone, RS256 with a kid.
    let jwks: Value = http
        .get(format!("{users_url}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "RSA", "{jwks}");
    assert!(
        jwks["keys"][0]["kid"]
            .as_str()
            .is_some_and(|kid| !kid.is_empty()),
        "{jwks}"
    );
    system.stop().await;
}

/// The scope the password grant gives this person now.
async fn granted_scope(system: &System, email: &str, password: &str) -> String {
    password_grant(system, email, password).await["scope"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A token the password grant gives this person now.
async fn signed_in_token(system: &System, email: &str, password: &str) -> String {
    password_grant(system, email, password).await["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// What users says `token`'s credential grants now (`GET /auth/grants`): its status and body.
async fn grants_now(system: &System, token: &str) -> (StatusCode, Value) {
    let answer = reqwest::Client::new()
        .get(format!("{}/auth/grants", system.urls()["users"]))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
    (status, answer.json().await.unwrap_or(Value::Null))
}

async fn password_grant(system: &System, email: &str, password: &str) -> Value {
    reqwest::Client::new()
        .post(format!("{}/auth/token", system.urls()["users"]))
        .form(&[
            ("grant_type", "password"),
            ("email", email),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_admin_grants_and_revokes_the_operator_scope_and_nobody_else_can() {
    let system = start(&["users"], Duration::from_secs(60)).await;
    let (person, email, password) = sign_up(&system, "FR").await;
    let path = format!("/users/{}", person.id);
    let grant = |operator: bool| json!({ "operator": operator });

    let (status, answer) = person
        .api
        .call(Method::PATCH, "users", &path, Some(&grant(true)), &[])
        .await
        .unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(granted_scope(&system, &email, &password).await, "customer");

    // Granted twice, held once.
    for _ in 0..2 {
        system
            .api
            .patch("users", &path, &grant(true))
            .await
            .unwrap();
        assert_eq!(
            granted_scope(&system, &email, &password).await,
            "customer operator"
        );
    }
    // It gives none of an admin's rights.
    let operator = Api::new(&system.urls())
        .unwrap()
        .signed_in(&email, &password)
        .await
        .unwrap();
    let (status, answer) = operator
        .call(
            Method::POST,
            "users",
            "/users/republish",
            Some(&json!({})),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");

    // The event types an operator may edit: set by an admin, each one of the contract, and
    // carried by the token while the person is an operator.
    let edits = json!({ "operator_edits": ["payment.captured", "order.created"] });
    let (status, answer) = person
        .api
        .call(Method::PATCH, "users", &path, Some(&edits), &[])
        .await
        .unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let unknown = json!({ "operator_edits": ["payment.captured", "money.printed"] });
    let (status, answer) = system
        .api
        .call(Method::PATCH, "users", &path, Some(&unknown), &[])
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(answer.to_string().contains("money.printed"), "{answer}");
    system.api.patch("users", &path, &edits).await.unwrap();
    let edits_of = |token: &str| -> Value {
        let payload = token.split('.').nth(1).unwrap();
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        claims["edits"].clone()
    };
    let token = signed_in_token(&system, &email, &password).await;
    assert_eq!(
        edits_of(&token),
        json!(["order.created", "payment.captured"])
    );
    let (status, grants) = grants_now(&system, &token).await;
    assert_eq!(status, StatusCode::OK, "{grants}");
    assert_eq!(grants["scope"], "customer operator", "{grants}");
    assert_eq!(
        grants["edits"],
        json!(["order.created", "payment.captured"])
    );

    system
        .api
        .patch("users", &path, &grant(false))
        .await
        .unwrap();
    assert_eq!(granted_scope(&system, &email, &password).await, "customer");
    assert_eq!(
        edits_of(&signed_in_token(&system, &email, &password).await),
        Value::Null
    );
    // The token issued while an operator still carries the scope until it expires; what its
    // credential grants now (which the console asks on each page) says it is revoked, and
    // once the account is deactivated, that it is gone.
    assert_eq!(
        edits_of(&token),
        json!(["order.created", "payment.captured"])
    );
    let (status, grants) = grants_now(&system, &token).await;
    assert_eq!(status, StatusCode::OK, "{grants}");
    assert_eq!(grants["scope"], "customer", "{grants}");
    assert_eq!(grants["edits"], json!([]), "{grants}");
    assert_eq!(grants["login"], email.as_str(), "{grants}");
    system
        .api
        .post("users", &format!("{path}/deactivate"), &json!({}))
        .await
        .unwrap();
    let (status, grants) = grants_now(&system, &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{grants}");
    system.stop().await;
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

async fn published_kids(system: &System) -> Vec<String> {
    let jwks = system
        .api
        .get("users", "/.well-known/jwks.json")
        .await
        .unwrap();
    let mut kids: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["kid"].as_str().unwrap().to_owned())
        .collect();
    kids.sort();
    kids
}

#[tokio::test]
async fn a_rotated_key_is_published_before_it_signs_and_the_old_one_is_retired_after() {
    let system = start(&["users", "orders"], Duration::from_secs(60)).await;
    let old_token = system.api.bearer_token().unwrap().to_owned();
    let old_kid = kid_of(&old_token);
    assert_eq!(
        published_kids(&system).await,
        std::slice::from_ref(&old_kid)
    );
    let retire_old = format!("/auth/keys/{old_kid}/retire");
    let (status, answer) = system
        .api
        .call(Method::POST, "users", &retire_old, None, &[])
        .await
        .unwrap();
    assert_eq!(status, StatusCode::CONFLICT, "the only key signs: {answer}");

    let rotated = system
        .api
        .post("users", "/auth/keys", &json!({}))
        .await
        .unwrap();
    let new_kid = rotated["kid"].as_str().unwrap().to_owned();
    let mut both = vec![old_kid.clone(), new_kid.clone()];
    both.sort();
    assert_eq!(
        published_kids(&system).await,
        both,
        "published before it signs"
    );
    let fresh = system
        .api
        .token(&system.admin.email, &system.admin.password)
        .await
        .unwrap();
    assert_eq!(kid_of(&fresh), old_kid, "the new key does not sign yet");

    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let new_token = loop {
        let token = system
            .api
            .token(&system.admin.email, &system.admin.password)
            .await
            .unwrap();
        if kid_of(&token) == new_kid {
            break token;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new key never signed"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    for (which, token) in [("new", &new_token), ("old", &old_token)] {
        let (status, answer) = system
            .api
            .with_token(token)
            .call(Method::GET, "orders", "/orders", None, &[])
            .await
            .unwrap();
        assert_eq!(
            status,
            StatusCode::OK,
            "the {which} key's token at orders: {answer}"
        );
    }
    let (status, answer) = system
        .api
        .with_token(&new_token)
        .call(Method::POST, "users", &retire_old, None, &[])
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(published_kids(&system).await, [new_kid]);
    let (status, _) = system
        .api
        .with_token(&new_token)
        .call(Method::POST, "users", &retire_old, None, &[])
        .await
        .unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND, "retired once");
    system.stop().await;
}

#[tokio::test]
async fn with_jwt_private_key_set_the_keys_left_in_the_database_can_be_retired() {
    let mut system = start(&["users"], Duration::from_secs(60)).await;
    let made_at_first_start = kid_of(system.api.bearer_token().unwrap());
    system
        .restart(&["users"], |config| {
            config
                .own_settings
                .edit(|users: &mut users_service::Settings| {
                    users.private_key = Some(include_str!("stranger_key.pem").to_owned());
                });
        })
        .await;
    let configured = kid_of(system.api.bearer_token().unwrap());
    assert_ne!(
        configured, made_at_first_start,
        "the configured key signs now"
    );

    let retire = |kid: &str| format!("/auth/keys/{kid}/retire");
    let (status, answer) = system
        .api
        .call(
            Method::POST,
            "users",
            &retire(&made_at_first_start),
            None,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "it no longer signs: {answer}");
    let (status, answer) = system
        .api
        .call(Method::POST, "users", &retire(&configured), None, &[])
        .await
        .unwrap();
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "the configured key signs: {answer}"
    );
    assert_eq!(published_kids(&system).await, [configured]);
    system.stop().await;
}
