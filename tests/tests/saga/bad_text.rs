//! Text no database could store or index: a NUL in any field, a 100,000-character email, an
//! over-long name. Each is a 422 naming the field (never a 503, which a client would retry
//! forever), nothing of it is stored, and the system goes on working.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use system::scenario::Api;

use crate::helpers::{System, start};

const PASSWORD: &str = "correct horse battery";

/// Asserts a 422 whose error names `field`; returns the error.
fn refused(what: &str, status: StatusCode, answer: &Value, field: &str) -> String {
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {answer}");
    let error = answer["error"].as_str().unwrap_or_default().to_owned();
    assert!(
        error.contains(field),
        "{what}: the error should name {field}: {answer}"
    );
    // A huge value is not sent back whole.
    assert!(error.len() < 1000, "{what}: {} bytes of error", error.len());
    error
}

fn sign_up_body(email: &str, name: &str) -> Value {
    json!({
        "email": email, "name": name, "password": PASSWORD,
        "address": { "line1": "1 Test Road", "city": "Testville", "postal_code": "12345", "country": "FR" },
    })
}

/// How many users, and how many sign-ins, have an email containing `marker`.
async fn stored_with(system: &System, marker: &str) -> (i64, i64) {
    let pool = sqlx::PgPool::connect(&system.database_url("users"))
        .await
        .unwrap();
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE strpos(email, $1) > 0")
        .bind(marker)
        .fetch_one(&pool)
        .await
        .unwrap();
    let logins: i64 =
        sqlx::query_scalar("SELECT count(*) FROM credentials WHERE strpos(login, $1) > 0")
            .bind(marker)
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    (users, logins)
}

/// `POST /auth/token` with an OAuth 2 form body.
async fn token_form(system: &System, body: String) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/auth/token", system.urls()["users"]))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn a_nul_or_an_over_long_text_is_a_422_naming_the_field_and_stores_nothing() {
    let system = start(&["users"], Duration::from_secs(30)).await;
    let anonymous = Api::new(&system.urls()).unwrap();
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let sign_up = |body: Value| {
        let anonymous = anonymous.clone();
        async move {
            anonymous
                .call(Method::POST, "users", "/users", Some(&body), &[])
                .await
                .unwrap()
        }
    };

    // Sign-up: a NUL in the email, an email of 100,000 characters, a name of 201.
    let nul_email = format!("{marker}\u{0}@example.com");
    let (status, answer) = sign_up(sign_up_body(&nul_email, "Ada")).await;
    let error = refused("a NUL in the email", status, &answer, "email");
    assert!(error.contains("NUL"), "{error}");
    let huge_email = format!("{marker}{}@example.com", "a".repeat(100_000));
    let (status, answer) = sign_up(sign_up_body(&huge_email, "Ada")).await;
    let error = refused("a 100,000-character email", status, &answer, "email");
    assert!(error.contains("254"), "{error}");
    let long_name = "A".repeat(201);
    let long_named = format!("{marker}-long@example.com");
    let (status, answer) = sign_up(sign_up_body(&long_named, &long_name)).await;
    let error = refused("a name of 201 characters", status, &answer, "name");
    assert!(error.contains("200"), "{error}");
    let (status, answer) = sign_up(json!({
        "email": format!("{marker}-line@example.com"), "name": "Ada", "password": PASSWORD,
        "address": { "line1": "1 Test\u{0}Road", "city": "Testville", "postal_code": "12345", "country": "FR" },
    }))
    .await;
    refused("a NUL in the address", status, &answer, "address.line1");
    let (status, answer) = sign_up(json!({
        "email": format!("{marker}-password@example.com"), "name": "Ada",
        "password": "correct\u{0}horse battery",
        "address": { "line1": "1 Test Road", "city": "Testville", "postal_code": "12345", "country": "FR" },
    }))
    .await;
    refused("a NUL in the password", status, &answer, "password");

    // The same system still signs up a good user, whose name then cannot take a NUL.
    let email = format!("{marker}@example.com");
    let (status, ada) = sign_up(sign_up_body(&email, "Ada")).await;
    assert_eq!(status, StatusCode::CREATED, "{ada}");
    let id = ada["id"].as_str().unwrap().to_owned();
    let path = format!("/users/{id}");
    for (body, field) in [
        (json!({ "name": "Ada\u{0}Lovelace" }), "name"),
        (json!({ "name": long_name }), "name"),
        (
            json!({ "email": format!("{marker}\u{0}x@example.com") }),
            "email",
        ),
    ] {
        let (status, answer) = system
            .api
            .call(Method::PATCH, "users", &path, Some(&body), &[])
            .await
            .unwrap();
        refused(&format!("PATCH {body}"), status, &answer, field);
    }
    let unchanged = system.api.get("users", &path).await.unwrap();
    assert_eq!(unchanged["name"], "Ada", "{unchanged}");
    assert_eq!(unchanged["email"], email.as_str(), "{unchanged}");
    assert_eq!(unchanged["version"], 1, "{unchanged}");

    // Signing in: a NUL in the login, as JSON and as a form.
    let (status, answer) = anonymous
        .call(
            Method::POST,
            "users",
            "/auth/token",
            Some(&json!({ "grant_type": "password", "email": nul_email, "password": PASSWORD })),
            &[],
        )
        .await
        .unwrap();
    refused("sign-in as JSON with a NUL", status, &answer, "email");
    let form = format!(
        "grant_type=password&email={marker}%00%40example.com&password=correct+horse+battery"
    );
    let (status, answer) = token_form(&system, form).await;
    refused("sign-in as a form with a NUL", status, &answer, "email");
    let form = "grant_type=client_credentials&client_id=client-%00&client_secret=x".to_owned();
    let (status, answer) = token_form(&system, form).await;
    refused("client sign-in with a NUL", status, &answer, "client_id");
    let form = format!(
        "grant_type=password&email={}&password=whatever",
        "a".repeat(100_000)
    );
    let (status, answer) = token_form(&system, form).await;
    refused(
        "sign-in with a 100,000-character email",
        status,
        &answer,
        "email",
    );

    // The good user signs in, changes their name, and is the only one stored.
    let token = anonymous.token(&email, PASSWORD).await.unwrap();
    assert!(!token.is_empty());
    let renamed = system
        .api
        .patch("users", &path, &json!({ "name": "Ada Lovelace" }))
        .await
        .unwrap();
    assert_eq!(renamed["name"], "Ada Lovelace", "{renamed}");
    assert_eq!(stored_with(&system, &marker).await, (1, 1));
    system.stop().await;
}

#[tokio::test]
async fn a_nul_in_a_sku_is_a_422_or_a_404_and_orders_go_on() {
    let running = ["users", "inventory", "orders"];
    let system = start(&running, Duration::from_secs(30)).await;
    let user = system.user("FR", 1_000_000).await;
    let sku = system.product(500, 10).await;

    let bad = json!({ "user_id": user, "items": [
        { "sku": sku, "quantity": 1 }, { "sku": "MUG\u{0}1", "quantity": 1 },
    ] });
    let (status, answer) = system
        .api
        .call(Method::POST, "orders", "/orders", Some(&bad), &[])
        .await
        .unwrap();
    refused("a NUL in a SKU", status, &answer, "items[1].sku");
    let huge = json!({ "user_id": user, "items": [{ "sku": "A".repeat(100_000), "quantity": 1 }] });
    let (status, answer) = system
        .api
        .call(Method::POST, "orders", "/orders", Some(&huge), &[])
        .await
        .unwrap();
    refused(
        "a SKU of 100,000 characters",
        status,
        &answer,
        "items[0].sku",
    );
    let (status, answer) = system
        .api
        .call(
            Method::POST,
            "inventory",
            "/products",
            Some(&json!({ "sku": "NUL-1", "name": "Mug\u{0}", "price_cents": 100, "stock": 1 })),
            &[],
        )
        .await
        .unwrap();
    refused("a NUL in a product's name", status, &answer, "name");
    // A SKU in a path that cannot be a SKU names no product.
    for method in [Method::GET, Method::PATCH] {
        let (status, answer) = system
            .api
            .call(
                method.clone(),
                "inventory",
                "/products/MUG%001",
                Some(&json!({ "name": "Mug" })),
                &[],
            )
            .await
            .unwrap();
        assert_eq!(status, StatusCode::NOT_FOUND, "{method}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains("sku"),
            "{answer}"
        );
    }

    // Nothing was placed, and a good order still is.
    system.wait_for_caches(&[&user], &[&sku], &running).await;
    assert!(system.orders_of(&user).await.is_empty());
    let placed = system
        .place(&user, json!([{ "sku": sku, "quantity": 1 }]))
        .await;
    assert_eq!(placed["status"], "pending", "{placed}");
    assert_eq!(system.orders_of(&user).await.len(), 1);
    system.stop().await;
}
