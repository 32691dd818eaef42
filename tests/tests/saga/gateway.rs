//! The gateway in front of the services: every route through it with tokens, forged tokens
//! stopped before any service sees them, the rate limiter, and the summary degrading (and its
//! breaker opening and closing) while orders hangs.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_gateway::routes::RouteClass;
use conveyor::{Shutdown, ShutdownTrigger};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::auth::{forged_tokens, sign_up};
use crate::helpers::{ALL, System, start};

/// A gateway running in this process, and a client of its `/api/…`.
pub(crate) struct RunningGateway {
    pub(crate) url: String,
    http: reqwest::Client,
    stop: ShutdownTrigger,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningGateway {
    pub(crate) async fn start(settings: api_gateway::Settings) -> Self {
        let gateway = api_gateway::Gateway::bind(api_gateway::Settings {
            port: 0,
            ..settings
        })
        .await
        .unwrap();
        let url = format!("http://127.0.0.1:{}", gateway.port());
        let (stop, shutdown) = Shutdown::new();
        let task = tokio::spawn(gateway.run(shutdown));
        Self {
            url,
            http: reqwest::Client::new(),
            stop,
            task,
        }
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        self.call_with(method, path, token, body, &[]).await
    }

    /// As [`RunningGateway::call`], with `headers` added.
    async fn call_with(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let answer = request.send().await.unwrap();
        let (status, headers) = (answer.status(), answer.headers().clone());
        let body = answer.json().await.unwrap_or(Value::Null);
        (status, headers, body)
    }

    pub(crate) async fn token(&self, email: &str, password: &str) -> String {
        let body = json!({ "grant_type": "password", "email": email, "password": password });
        let (status, _, answer) = self
            .call(Method::POST, "/api/auth/token", None, Some(&body))
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer["access_token"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn stop(self) {
        self.stop.fire();
        self.task.await.unwrap().unwrap();
    }
}

/// The gateway's settings for `system`'s services (its own database and the test's vhost),
/// with `replace` overriding some URLs.
pub(crate) async fn settings_for(
    system: &System,
    replace: &[(&str, &str)],
) -> api_gateway::Settings {
    let mut urls: BTreeMap<String, String> = system.urls();
    for (service, url) in replace {
        urls.insert((*service).to_owned(), (*url).to_owned());
    }
    api_gateway::Settings {
        database_url: system.env.create_database("gateway").await,
        amqp: conveyor::AmqpConfig::new(system.env.amqp.url(), "gateway test"),
        ..api_gateway::Settings::with_urls(system::route_tables(), urls)
    }
}

/// `services` and a gateway in front of them, with an admin's token for the gateway.
pub(crate) async fn behind_a_gateway(services: &[&str]) -> (System, RunningGateway, String) {
    let system = start(services, Duration::from_secs(60)).await;
    let gateway = RunningGateway::start(settings_for(&system, &[]).await).await;
    let admin = gateway
        .token(&system.admin.email, &system.admin.password)
        .await;
    (system, gateway, admin)
}

#[tokio::test]
async fn every_route_works_through_the_gateway_with_a_token() {
    let (system, gateway, admin) = behind_a_gateway(&ALL).await;
    let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
    let sign_up = json!({
        "email": email, "name": "Via Gateway", "password": "a long enough password",
        "address": { "line1": "3 Gate Way", "city": "Portal", "postal_code": "8080", "country": "NL" },
    });
    let (status, _, user) = gateway
        .call(Method::POST, "/api/users", None, Some(&sign_up))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let user_id = user["id"].as_str().unwrap().to_owned();
    let customer = gateway.token(&email, "a long enough password").await;
    let (status, _, _) = gateway
        .call(
            Method::PATCH,
            &format!("/api/users/{user_id}"),
            Some(&admin),
            Some(&json!({ "credit_limit_cents": 50_000 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let sku =
        format!("GATE-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]).to_ascii_uppercase();
    let product = json!({ "sku": sku, "name": "Gate", "price_cents": 1200, "stock": 4 });
    let (status, _, answer) = gateway
        .call(Method::POST, "/api/products", Some(&admin), Some(&product))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    system.wait_for_caches(&[&user_id], &[&sku], &ALL).await;

    let order = json!({ "items": [{ "sku": sku, "quantity": 2 }] });
    let (status, _, placed) = gateway
        .call(Method::POST, "/api/orders", Some(&customer), Some(&order))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let order_id = placed["id"].as_str().unwrap().to_owned();
    assert_eq!(system.final_order(&order_id).await["status"], "confirmed");
    let reads = [
        (
            format!("/api/orders/{order_id}"),
            "status",
            json!("confirmed"),
        ),
        (format!("/api/users/{user_id}"), "email", json!(email)),
        (format!("/api/products/{sku}"), "reserved", json!(2)),
        (
            format!("/api/payments?order_id={order_id}"),
            "payments",
            Value::Null,
        ),
        (
            format!("/api/shipments?order_id={order_id}"),
            "shipments",
            Value::Null,
        ),
    ];
    for (path, field, expected) in reads {
        let token = if path.starts_with("/api/products") {
            &admin
        } else {
            &customer
        };
        let (status, _, answer) = gateway.call(Method::GET, &path, Some(token), None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
        if expected.is_null() {
            assert_eq!(
                answer[field].as_array().map(Vec::len),
                Some(1),
                "{path}: {answer}"
            );
        } else {
            assert_eq!(answer[field], expected, "{path}: {answer}");
        }
    }
    let (status, _, summary) = gateway
        .call(
            Method::GET,
            &format!("/api/users/{user_id}/summary"),
            Some(&customer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert_eq!(summary["degraded"], json!([]), "{summary}");
    assert_eq!(summary["user"]["id"], json!(user_id));
    assert_eq!(summary["orders"][0]["id"], json!(order_id));
    assert_eq!(
        summary["orders"][0]["payments"][0]["status"], "captured",
        "{summary}"
    );
    assert_eq!(
        summary["orders"][0]["shipments"].as_array().map(Vec::len),
        Some(1),
        "{summary}"
    );
    // Someone else's summary is users' 404; routes the gateway does not publish are 404 too.
    let (other, _, _) = sign_up_via(&gateway).await;
    let (status, _, _) = gateway
        .call(
            Method::GET,
            &format!("/api/users/{user_id}/summary"),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, answer) = gateway
        .call(
            Method::GET,
            &format!("/api/cache/users/{user_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    // Proxied requests are counted by their prefix, the summary by its template.
    let metrics = gateway
        .http
        .get(format!("{}/metrics", gateway.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for route in ["/api/orders/…", "/api/users/{id}/summary"] {
        assert!(
            metrics.contains(&format!("route=\"{route}\",service=\"gateway\"")),
            "{route}: {metrics}"
        );
    }
    gateway.stop().await;
    system.stop().await;
}

/// A new customer signed up and in through the gateway: (token, id, email).
async fn sign_up_via(gateway: &RunningGateway) -> (String, String, String) {
    let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
    let body = json!({
        "email": email, "name": "Other", "password": "another long password",
        "address": { "line1": "4 Gate Way", "city": "Portal", "postal_code": "8080", "country": "NL" },
    });
    let (status, _, user) = gateway
        .call(Method::POST, "/api/users", None, Some(&body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let token = gateway.token(&email, "another long password").await;
    (token, user["id"].as_str().unwrap().to_owned(), email)
}

/// An upstream that answers every request with `{}` and counts them.
async fn counting_upstream() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut request = vec![0_u8; 64 * 1024];
                while let Ok(read) = socket.read(&mut request).await {
                    if read == 0 {
                        return;
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                    if socket.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

#[tokio::test]
async fn forged_tokens_are_refused_at_the_gateway_and_never_reach_a_service() {
    let system = start(&["users"], Duration::from_secs(60)).await;
    let (orders, seen) = counting_upstream().await;
    let gateway = RunningGateway::start(settings_for(&system, &[("orders", &orders)]).await).await;
    let (customer, _, _) = sign_up(&system, "FR").await;
    let customer_token = customer.api.bearer_token().unwrap().to_owned();
    let forged = forged_tokens(&system, &customer_token).await;

    let (status, headers, answer) = gateway.call(Method::GET, "/api/orders", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert!(headers.contains_key("www-authenticate"));
    for (name, token) in &forged {
        for method in [Method::GET, Method::POST] {
            let (status, _, answer) = gateway
                .call(method.clone(), "/api/orders", Some(token), Some(&json!({})))
                .await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{name}, {method}: {answer}"
            );
        }
    }
    assert_eq!(
        seen.load(Ordering::SeqCst),
        0,
        "a refused request reached orders"
    );
    let (status, _, _) = gateway
        .call(Method::GET, "/api/orders", Some(&customer_token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        seen.load(Ordering::SeqCst),
        1,
        "the genuine request reached orders once"
    );
    gateway.stop().await;
    system.stop().await;
}

#[tokio::test]
async fn the_limiter_answers_429_with_retry_after_and_then_lets_the_client_in_again() {
    let system = start(&["users"], Duration::from_secs(60)).await;
    let (orders, _) = counting_upstream().await;
    let mut settings = settings_for(&system, &[("orders", &orders)]).await;
    settings
        .rates
        .per_second
        .insert(RouteClass::Read, NonZeroU32::new(5).unwrap());
    let gateway = RunningGateway::start(settings).await;
    let (alice, _, _) = sign_up_via(&gateway).await;
    let (bob, _, _) = sign_up_via(&gateway).await;

    // Sent at once, so however slow the machine the burst of five is spent before a refill.
    let answers: Vec<_> = futures_util::future::join_all((0..12).map(|_| async {
        let (status, headers, _) = gateway
            .call(Method::GET, "/api/orders", Some(&alice), None)
            .await;
        (status, headers.get("retry-after").cloned())
    }))
    .await;
    let limited: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert!(
        !limited.is_empty(),
        "12 requests at once within a rate of 5/s: {answers:?}"
    );
    assert!(
        limited.iter().all(|(_, retry)| retry.is_some()),
        "every 429 says when to come back: {answers:?}"
    );
    let (status, _, _) = gateway
        .call(Method::GET, "/api/orders", Some(&bob), None)
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "another client is not limited by alice's rate"
    );
    // Guessing tokens is limited too: refused tokens count against the address.
    let gate = &gateway;
    let guesses: Vec<StatusCode> =
        futures_util::future::join_all((0..12).map(|guess| async move {
            let token = format!("guess-{guess}");
            let (status, _, _) = gate
                .call(Method::GET, "/api/orders", Some(&token), None)
                .await;
            status
        }))
        .await;
    let refused = [StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS];
    assert!(
        guesses.iter().all(|status| refused.contains(status)),
        "{guesses:?}"
    );
    assert!(
        guesses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{guesses:?}"
    );
    let wait: u64 = limited[0]
        .1
        .as_ref()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let (status, _, _) = gateway
        .call(Method::GET, "/api/orders", Some(&alice), None)
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "after Retry-After, alice is let in again"
    );
    gateway.stop().await;
    system.stop().await;
}

/// A forwarder in front of a service that can be made to hang: it accepts connections and
/// never answers, as a service stuck on a lock or a dead host behind a load balancer would.
struct Hangable {
    url: String,
    hanging: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Hangable {
    async fn start(target: &str) -> Self {
        let target = target.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hanging = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (flag, held) = (hanging.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let hang = flag.load(Ordering::SeqCst);
                let target = target.clone();
                let connection = tokio::spawn(async move {
                    if hang {
                        tokio::time::sleep(Duration::from_secs(120)).await;
                        drop(inbound);
                    } else if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                held.lock().unwrap().push(connection);
            }
        });
        Self {
            url,
            hanging,
            connections,
        }
    }

    /// From now on every connection hangs; the open ones are cut.
    fn hang(&self) {
        self.hanging.store(true, Ordering::SeqCst);
        self.cut();
    }

    fn answer(&self) {
        self.hanging.store(false, Ordering::SeqCst);
        self.cut();
    }

    fn cut(&self) {
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}

#[tokio::test]
async fn with_orders_hanging_the_summary_degrades_in_time_and_the_breaker_opens_then_closes() {
    let system = start(&ALL, Duration::from_secs(60)).await;
    let orders = Hangable::start(&system.urls()["orders"]).await;
    let mut settings = settings_for(&system, &[("orders", &orders.url)]).await;
    settings.summary_timeout = Duration::from_millis(500);
    settings.breaker = api_gateway::BreakerSettings {
        failures_to_open: 2,
        cool_down: Duration::from_secs(1),
    };
    let gateway = RunningGateway::start(settings).await;
    let (customer, user_id, _) = sign_up_via(&gateway).await;
    let summary_path = format!("/api/users/{user_id}/summary");
    let breaker_of_orders = || async {
        let (_, _, ready) = gateway.call(Method::GET, "/readyz", None, None).await;
        ready["breakers"]["orders"].as_str().unwrap().to_owned()
    };

    let (status, _, summary) = gateway
        .call(Method::GET, &summary_path, Some(&customer), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert_eq!(summary["degraded"], json!([]), "{summary}");

    orders.hang();
    for attempt in 0..3 {
        let started = Instant::now();
        let (status, _, summary) = gateway
            .call(Method::GET, &summary_path, Some(&customer), None)
            .await;
        // Without the deadline this would wait for the 10 s upstream timeout.
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "attempt {attempt} took {took:?}"
        );
        assert_eq!(status, StatusCode::OK, "{summary}");
        assert_eq!(summary["degraded"], json!(["orders"]), "{summary}");
        assert_eq!(
            summary["user"]["id"],
            json!(user_id),
            "the rest is still there: {summary}"
        );
        assert_eq!(summary["orders"], json!([]));
    }
    assert_eq!(breaker_of_orders().await, "open");

    orders.answer();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, summary) = gateway
        .call(Method::GET, &summary_path, Some(&customer), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert_eq!(
        summary["degraded"],
        json!([]),
        "the probe found orders back: {summary}"
    );
    assert_eq!(breaker_of_orders().await, "closed");
    gateway.stop().await;
    system.stop().await;
}

/// A `product.updated` CloudEvent with `data`.
fn product_event(data: Value) -> Value {
    serde_json::to_value(conveyor::Envelope::new(
        "warehouse-feed",
        "product.updated",
        data,
    ))
    .unwrap()
}

#[tokio::test]
async fn an_event_over_http_is_on_the_broker_when_it_is_accepted_and_accepted_once() {
    let (system, gateway, admin) = behind_a_gateway(&["users"]).await;
    let grant = json!({ "name": "warehouse feed", "scopes": ["events:publish"], "event_types": ["product.updated"] });
    let (status, _, client) = gateway
        .call(
            Method::POST,
            "/api/auth/clients",
            Some(&admin),
            Some(&grant),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{client}");
    // Saga events belong to their services: no client may be granted one.
    let too_much = json!({ "name": "forger", "scopes": ["events:publish"], "event_types": ["payment.captured"] });
    let (status, _, answer) = gateway
        .call(
            Method::POST,
            "/api/auth/clients",
            Some(&admin),
            Some(&too_much),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let credentials = json!({ "grant_type": "client_credentials", "client_id": client["client_id"], "client_secret": client["client_secret"] });
    let (status, _, token) = gateway
        .call(Method::POST, "/api/auth/token", None, Some(&credentials))
        .await;
    assert_eq!(status, StatusCode::OK, "{token}");
    let feed = token["access_token"].as_str().unwrap().to_owned();
    // orders does not run here, so its queue keeps what it would have consumed.
    let orders_queue = conveyor::Names::default().service_queue("orders");
    let event = product_event(
        json!({ "sku": "FEED-7", "name": "Fed", "price_cents": 450, "currency": "EUR", "version": 1 }),
    );

    let (status, _, answer) = gateway
        .call(Method::POST, "/api/events", Some(&feed), Some(&event))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(
        system.env.queue_len(&orders_queue).await,
        1,
        "202 means it is on the broker"
    );
    let (status, _, answer) = gateway
        .call(Method::POST, "/api/events", Some(&feed), Some(&event))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["accepted"], "before");
    let delivered = system.env.drain(&orders_queue).await;
    assert_eq!(delivered.len(), 1, "the same id twice is published once");
    let body: Value = serde_json::from_slice(&delivered[0].data).unwrap();
    assert_eq!(body["id"], event["id"]);

    let invalid =
        product_event(json!({ "sku": "FEED-7", "name": "Fed", "currency": "EUR", "version": 2 }));
    let (status, _, answer) = gateway
        .call(Method::POST, "/api/events", Some(&feed), Some(&invalid))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("price_cents"),
        "{answer}"
    );
    let not_granted = serde_json::to_value(conveyor::Envelope::new(
        "warehouse-feed",
        "user.deactivated",
        json!({ "user_id": uuid::Uuid::new_v4(), "version": 9 }),
    ))
    .unwrap();
    let (status, _, answer) = gateway
        .call(Method::POST, "/api/events", Some(&feed), Some(&not_granted))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let (customer, _, _) = sign_up_via(&gateway).await;
    let (status, _, answer) = gateway
        .call(Method::POST, "/api/events", Some(&customer), Some(&event))
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a customer has no events:publish: {answer}"
    );
    // The sign-up above sent orders a user.registered; no product event followed it.
    let later: Vec<Value> = system
        .env
        .drain(&orders_queue)
        .await
        .iter()
        .map(|delivery| serde_json::from_slice(&delivery.data).unwrap())
        .collect();
    assert!(
        later.iter().all(|event| event["type"] != "product.updated"),
        "nothing refused was published: {later:?}"
    );
    gateway.stop().await;
    system.stop().await;
}

/// An order placed through the gateway is one trace from the caller's span on: the
/// gateway's span continues the caller's `traceparent`, and the service it sends the
/// request to continues the gateway's span.
#[tokio::test]
async fn an_order_placed_through_the_gateway_is_one_trace_from_the_callers_span() {
    let (system, gateway, admin) = behind_a_gateway(&ALL).await;
    let (user, sku) = system.customer_and_product(900, 10).await;
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let traceparent = format!("00-{trace_id}-0102030405060708-01");
    let order = json!({ "user_id": user, "items": [{ "sku": sku, "quantity": 1 }] });
    let (status, _, placed) = gateway
        .call_with(
            Method::POST,
            "/api/orders",
            Some(&admin),
            Some(&order),
            &[("traceparent", traceparent.as_str())],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let order_id = placed["id"].as_str().unwrap();
    assert_eq!(system.final_order(order_id).await["status"], "confirmed");

    let spans = crate::tracing::spans_of(&trace_id, |spans| {
        crate::tracing::handlers(spans).len() == 4
    })
    .await;
    let at_gateway = spans
        .iter()
        .find(|span| span.name == "gateway request")
        .expect("the gateway's span is in the caller's trace");
    assert_eq!(at_gateway.parent_span_id.to_string(), "0102030405060708");
    let at_orders = spans.iter().find(|span| span.name == "request").unwrap();
    assert_eq!(
        at_orders.parent_span_id,
        at_gateway.span_context.span_id(),
        "orders' request span is a child of the gateway's"
    );
    gateway.stop().await;
    system.stop().await;
}
