//! HTTP ingest holds an event to the whole contract before it publishes anything: the
//! book's example (read from docs/src/http-api.md and sent byte for byte) is accepted and reaches the
//! broker; a bad `source`, a missing `specversion`, and a `price_cents` that JSON Schema calls
//! an integer but the consumers' Rust types cannot read (`1.0`, `-0`, 2^63) or that is past
//! the book's money ceiling are each a 422 naming the field, and none of them reaches the
//! broker, so no service ever sees or dead-letters one.

use conveyor::{Contract, Envelope, Names};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::gateway::{RunningGateway, behind_a_gateway};

/// The book's chapter where the ingest example lives.
const CHAPTER: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../docs/src/http-api.md"
));

/// The body, as written, that the chapter's first `curl -s <endpoint>` sends with `-d '…'`.
fn documented_body(endpoint: &str) -> &'static str {
    let call = format!("curl -s {endpoint}");
    let at = CHAPTER
        .find(&call)
        .unwrap_or_else(|| panic!("docs/src/http-api.md has no `{call}`"));
    let command = &CHAPTER[at..];
    let start = command
        .find("-d '")
        .unwrap_or_else(|| panic!("`{call}` in docs/src/http-api.md sends no -d '…'"))
        + "-d '".len();
    let length = command[start..].find('\'').unwrap_or_else(|| {
        panic!("the body of `{call}` in docs/src/http-api.md has no closing quote")
    });
    &command[start..start + length]
}

/// `text` with its one `from` replaced by `to`.
fn with(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} is not in {text}");
    text.replacen(from, to, 1)
}

/// Posts `body` as it is (not re-serialized, so `-0` stays `-0`) to `/api/events`.
async fn post_event(gateway: &RunningGateway, token: &str, body: &str) -> (StatusCode, Value) {
    let answer = reqwest::Client::new()
        .post(format!("{}/api/events", gateway.url))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = answer.status();
    (status, answer.json().await.unwrap_or(Value::Null))
}

/// The fields a 422 names in `violations`.
fn named_fields(answer: &Value) -> Vec<String> {
    answer["violations"]
        .as_array()
        .map(|violations| {
            violations
                .iter()
                .filter_map(|violation| violation["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn ingest_publishes_the_documented_example_and_refuses_what_consumers_would_refuse() {
    // orders (the consumer of product.updated) does not run: its queue keeps everything
    // published for it, so the broker shows exactly what ingest let through.
    let (system, gateway, admin) = behind_a_gateway(&["users"]).await;
    let grant: Value = serde_json::from_str(documented_body("localhost:8080/api/auth/clients"))
        .expect("the documented client is JSON");
    assert_eq!(grant["scopes"], json!(["events:publish"]), "{grant}");
    let (status, _, client) = gateway
        .call(
            Method::POST,
            "/api/auth/clients",
            Some(&admin),
            Some(&grant),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{client}");
    let credentials = json!({
        "grant_type": "client_credentials",
        "client_id": client["client_id"],
        "client_secret": client["client_secret"],
    });
    let (status, _, token) = gateway
        .call(Method::POST, "/api/auth/token", None, Some(&credentials))
        .await;
    assert_eq!(status, StatusCode::OK, "{token}");
    let feed = token["access_token"].as_str().unwrap().to_owned();
    let names = Names::default();
    let orders_queue = names.service_queue("orders");
    let inventory_queue = names.service_queue("inventory");

    // The book's example, exactly as the book sends it.
    let example_text = documented_body("localhost:8080/api/events");
    let example: Value = serde_json::from_str(example_text).expect("the book's event is JSON");
    let (status, answer) = post_event(&gateway, &feed, example_text).await;
    assert_eq!(status, StatusCode::ACCEPTED, "the book's example: {answer}");
    assert_eq!(answer["accepted"], "now", "{answer}");
    assert_eq!(answer["id"], example["id"], "{answer}");
    let (status, answer) = post_event(&gateway, &feed, example_text).await;
    assert_eq!(status, StatusCode::OK, "the same again: {answer}");
    assert_eq!(answer["accepted"], "before", "{answer}");

    // Each refused event has an id of its own, so no refusal is an "accepted before".
    let example_id = example["id"].as_str().unwrap();
    let fresh = |text: &str| {
        let id = uuid::Uuid::now_v7().to_string();
        let text = with(
            text,
            &format!("\"id\": \"{example_id}\""),
            &format!("\"id\": \"{id}\""),
        );
        (id, text)
    };
    let mut refused: Vec<(String, String, &str)> = Vec::new();
    let (id, bad_source) = fresh(&with(
        example_text,
        "\"source\": \"/services/warehouse-feed\"",
        "\"source\": \"warehouse-feed\"",
    ));
    refused.push((id, bad_source, "source"));
    let (id, no_specversion) = fresh(&with(example_text, "\"specversion\": \"1.0\",", ""));
    refused.push((id, no_specversion, "specversion"));
    for literal in [
        "1.0",
        "-0",
        "-0.0",
        "1e3",
        "1000000000001",
        "10000000001",
        "9223372036854775808",
    ] {
        let (id, price) = fresh(&with(
            example_text,
            "\"price_cents\": 1250",
            &format!("\"price_cents\": {literal}"),
        ));
        refused.push((id, price, "data.price_cents"));
    }

    for (_, body, field) in &refused {
        let (status, answer) = post_event(&gateway, &feed, body).await;

        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field}: {answer} for {body}"
        );
        assert_eq!(named_fields(&answer), [*field], "{answer} for {body}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(&format!("{field}: ")), "{answer}");
    }

    // Only the book's example reached the broker, once, and the consumers' own check
    // takes it; no refused event is anywhere a service reads, nor dead-lettered.
    let delivered: Vec<Value> = system
        .env
        .drain(&orders_queue)
        .await
        .iter()
        .map(|delivery| {
            let envelope = Envelope::from_bytes(&delivery.data).unwrap();
            events_schema::EventContract::shared()
                .unwrap()
                .check(&envelope)
                .unwrap_or_else(|e| panic!("a consumer would refuse {envelope:?}: {e}"));
            serde_json::from_slice::<Value>(&delivery.data).unwrap()
        })
        .filter(|event| event["type"] == "product.updated")
        .collect();
    assert_eq!(delivered.len(), 1, "published once: {delivered:?}");
    assert_eq!(delivered[0]["id"], example["id"]);
    assert_eq!(delivered[0]["data"], example["data"]);
    let at_inventory: Vec<Value> = system
        .env
        .drain(&inventory_queue)
        .await
        .iter()
        .map(|delivery| serde_json::from_slice::<Value>(&delivery.data).unwrap())
        .collect();
    for (id, _, field) in &refused {
        assert!(
            at_inventory.iter().all(|event| event["id"] != id.as_str()),
            "the event refused for {field} reached inventory"
        );
    }
    for service in ["orders", "inventory"] {
        assert_eq!(
            system
                .env
                .queue_len(&names.dead_letter_queue(service))
                .await,
            0,
            "{service} dead-lettered something"
        );
    }
    gateway.stop().await;
    system.stop().await;
}
