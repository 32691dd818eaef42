//! Every row of every route table (`platform::routes`), called as every kind of caller,
//! straight at its service and through the gateway: each answer is the one the row's access
//! says (401 without a token, 403 without the scope, someone else's data refused or not
//! shown, the owner and the admin served), never a 5xx and never the router's own 404 or
//! 405. Internal rows are 404 at the gateway, as is every path in no row. The rows come from
//! the tables, so a route added with its row is tried here without a line of this file
//! changing, unless it needs a request body (then this test says so).

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use platform::Scope;
use platform::routes::{self, Access, Route, Verb};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::auth::sign_up;
use crate::gateway::{RunningGateway, behind_a_gateway, settings_for};
use crate::helpers::{ALL, System, start};

/// The kinds of caller each row is tried as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    Anonymous,
    /// Customer A: the user, the order, its payments and shipments the rows name are theirs.
    Owner,
    /// Customer B.
    OtherCustomer,
    /// A producing system granted `inventory:write`.
    InventoryClient,
    /// A producing system granted `events:publish` for `product.updated`.
    EventsClient,
    Admin,
}

impl Who {
    /// The owner and the admin come last, so that what they change (an order cancelled, a
    /// user deactivated) is never what made the others' answers right.
    const ALL: [Self; 6] = [
        Self::Anonymous,
        Self::OtherCustomer,
        Self::InventoryClient,
        Self::EventsClient,
        Self::Owner,
        Self::Admin,
    ];

    fn has_scope(self, scope: &str) -> bool {
        self == Self::Admin || self.is_client_with(scope) || self.is_customer_with(scope)
    }

    fn is_client_with(self, scope: &str) -> bool {
        match self {
            Self::InventoryClient => scope == Scope::INVENTORY_WRITE,
            Self::EventsClient => scope == Scope::EVENTS_PUBLISH,
            _ => false,
        }
    }

    fn is_customer_with(self, scope: &str) -> bool {
        matches!(self, Self::Owner | Self::OtherCustomer) && scope == Scope::CUSTOMER
    }
}

/// What a row's access lets a kind of caller get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expected {
    Unauthorized,
    Forbidden,
    /// Refused (403), or answered as if it did not exist (404, a list without it).
    NotShown,
    Allowed,
}

fn expected(access: Access, who: Who) -> Expected {
    match (access, who) {
        (Access::Open, _) => Expected::Allowed,
        (_, Who::Anonymous) => Expected::Unauthorized,
        (Access::AnyCaller, _) | (Access::Owner, Who::Owner | Who::Admin) => Expected::Allowed,
        (Access::Owner, _) => Expected::NotShown,
        (Access::Scope(scope), who) if who.has_scope(scope) => Expected::Allowed,
        // An admin holds every scope but was granted nothing to publish.
        (Access::Granted(scope), who) if who.is_client_with(scope) => Expected::Allowed,
        (Access::Scope(_) | Access::Granted(_), _) => Expected::Forbidden,
    }
}

/// What the rows' paths and bodies name, and each caller's token.
struct Fixture {
    owner: String,
    owner_email: String,
    owner_password: String,
    sku: String,
    /// The owner's order, confirmed, with its payment and reservation.
    order: String,
    /// The owner's return of that order's one unit.
    returned: String,
    /// Keeps this run's sign-ups and products apart from any other's.
    run: String,
    tokens: BTreeMap<Who, String>,
}

impl Fixture {
    fn token(&self, who: Who) -> Option<&str> {
        self.tokens.get(&who).map(String::as_str)
    }

    /// Whether an answer shows anything of the owner's.
    fn shows_owner(&self, body: &str) -> bool {
        body.contains(&self.owner) || body.contains(&self.order)
    }

    /// The row's path with the fixture's ids, and the query its handler needs.
    fn path(&self, row: &Route) -> String {
        let mut path = String::new();
        let mut previous = "";
        for segment in row.path.trim_start_matches('/').split('/') {
            path.push('/');
            path.push_str(match segment {
                "{id}" if previous == "orders" => self.order.as_str(),
                "{id}" if previous == "returns" => self.returned.as_str(),
                "{id}" => self.owner.as_str(),
                "{sku}" => self.sku.as_str(),
                "{order_id}" => self.order.as_str(),
                "{kid}" => "matrix-no-such-key",
                other if other.starts_with('{') => panic!("no value for {other} of {row}"),
                literal => literal,
            });
            previous = segment;
        }
        match (row.verb, row.path) {
            (Verb::Get, "/orders") => format!("{path}?user_id={}", self.owner),
            (Verb::Get, "/payments" | "/shipments") => format!("{path}?order_id={}", self.order),
            _ => path,
        }
    }

    /// The body of the `n`th request sent: sign-ups and products are new each time.
    fn body(&self, row: &Route, n: usize) -> Option<Value> {
        let body = match (row.verb, row.path) {
            (Verb::Get, _) => return None,
            (Verb::Post, "/users") => json!({
                "email": format!("matrix-{n}-{}@example.com", self.run), "name": "Matrix",
                "password": "a long enough password",
                "address": {
                    "line1": "1 Row Road", "city": "Grid", "postal_code": "1", "country": "FR",
                },
            }),
            (Verb::Patch, "/users/{id}") => json!({ "name": "Matrix" }),
            (Verb::Post, "/auth/token") => json!({
                "grant_type": "password",
                "email": self.owner_email, "password": self.owner_password,
            }),
            (Verb::Post, "/auth/clients") => {
                json!({ "name": "matrix", "scopes": [Scope::INVENTORY_WRITE] })
            }
            (Verb::Post, "/orders") => {
                json!({ "user_id": self.owner, "items": [{ "sku": self.sku, "quantity": 1 }] })
            }
            (Verb::Post, "/orders/{id}/returns") => {
                json!({ "lines": [{ "sku": self.sku, "quantity": 1 }] })
            }
            (Verb::Post, "/products") => json!({
                "sku": format!("MATRIX-{n}-{}", self.run[..6].to_ascii_uppercase()),
                "name": "Matrix", "price_cents": 100, "stock": 1,
            }),
            (Verb::Patch, "/products/{sku}") => json!({ "price_cents": 500 }),
            (Verb::Put, "/products/{sku}/stock") => json!({ "stock": 1000 }),
            (Verb::Post, "/events") => product_event(&format!("MATRIX-EVENT-{n}")),
            (
                Verb::Post,
                "/users/{id}/deactivate"
                | "/users/republish"
                | "/auth/keys"
                | "/auth/keys/{kid}/retire"
                | "/orders/{id}/cancel"
                | "/returns/{id}/cancel"
                | "/products/republish",
            ) => json!({}),
            _ => panic!("the route matrix has no request for {row}: add one to Fixture::body"),
        };
        Some(body)
    }
}

/// What an allowed caller may get besides a 2xx, for the fixture's ids.
fn also_allowed(row: &Route) -> &'static [StatusCode] {
    match (row.verb, row.path) {
        // The order has ended, so it cannot be cancelled (again).
        (Verb::Post, "/orders/{id}/cancel") => &[StatusCode::CONFLICT],
        // The order's one unit is being returned, unless that return was cancelled.
        (Verb::Post, "/orders/{id}/returns") => &[StatusCode::UNPROCESSABLE_ENTITY],
        // The return may have ended, so it cannot be cancelled (again).
        (Verb::Post, "/returns/{id}/cancel") => &[StatusCode::CONFLICT],
        // No key has this id: the admin may retire keys, there is none to retire.
        (Verb::Post, "/auth/keys/{kid}/retire") => &[StatusCode::NOT_FOUND],
        _ => &[],
    }
}

/// A `product.updated` CloudEvent of a product no service has.
fn product_event(sku: &str) -> Value {
    let data = json!({
        "sku": sku, "name": "Matrix", "price_cents": 100, "currency": "EUR", "version": 1,
    });
    serde_json::to_value(conveyor::Envelope::new(
        "warehouse-feed",
        "product.updated",
        data,
    ))
    .unwrap()
}

/// One answer: its status and its body as it came.
struct Answer {
    status: StatusCode,
    body: String,
}

async fn send(
    http: &reqwest::Client,
    url: String,
    verb: Verb,
    token: Option<&str>,
    body: Option<&Value>,
) -> Answer {
    let mut request = http.request(verb.method(), url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    Answer { status, body }
}

/// Why `answer` is not what `expected` allows, if it is not.
fn judge(expected: Expected, answer: &Answer, row: &Route, fixture: &Fixture) -> Option<String> {
    let status = answer.status;
    if status.is_server_error() {
        return Some(format!("a server error: {status} {}", answer.body));
    }
    let unrouted = status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED;
    if unrouted && answer.body.is_empty() {
        return Some(format!(
            "{status} from the router itself: the row is not served"
        ));
    }
    let fits = match expected {
        Expected::Unauthorized => status == StatusCode::UNAUTHORIZED,
        Expected::Forbidden => status == StatusCode::FORBIDDEN,
        Expected::NotShown => {
            status == StatusCode::FORBIDDEN
                || status == StatusCode::NOT_FOUND
                || (status.is_success() && !fixture.shows_owner(&answer.body))
        }
        Expected::Allowed => status.is_success() || also_allowed(row).contains(&status),
    };
    (!fits).then(|| format!("expected {expected:?}, got {status}: {}", answer.body))
}

/// The calls sent so far and the answers their rows do not allow.
struct Matrix<'a> {
    http: reqwest::Client,
    fixture: &'a Fixture,
    sent: usize,
    failures: Vec<String>,
}

impl Matrix<'_> {
    /// Calls `row` at `base` (a service's URL, or the gateway's with `/api`) as every kind
    /// of caller.
    async fn row(&mut self, base: &str, row: &Route) {
        let url = format!("{base}{}", self.fixture.path(row));
        for who in Who::ALL {
            self.sent += 1;
            let body = self.fixture.body(row, self.sent);
            let token = self.fixture.token(who);
            let answer = send(&self.http, url.clone(), row.verb, token, body.as_ref()).await;
            if let Some(why) = judge(expected(row.access, who), &answer, row, self.fixture) {
                self.failures
                    .push(format!("{who:?}, {} {url}: {why}", row.verb));
            }
        }
    }

    /// Calls an internal `row` through the gateway at `gateway` as every kind of caller:
    /// each gets the gateway's own 404, whatever its token.
    async fn hidden(&mut self, gateway: &str, row: &Route) {
        let url = format!("{gateway}/api{}", self.fixture.path(row));
        for who in Who::ALL {
            self.sent += 1;
            let body = self.fixture.body(row, self.sent);
            let token = self.fixture.token(who);
            let answer = send(&self.http, url.clone(), row.verb, token, body.as_ref()).await;
            if answer.status != StatusCode::NOT_FOUND || !answer.body.contains("no route") {
                self.failures.push(format!(
                    "{who:?}, {} {url}: an internal row answered {} {}",
                    row.verb, answer.status, answer.body
                ));
            }
        }
    }
}

/// A producing system's token: credentials an admin made with `grant`, exchanged at users.
async fn client_token(system: &System, grant: &Value) -> String {
    let client = system
        .api
        .post("users", "/auth/clients", grant)
        .await
        .unwrap();
    let credentials = json!({
        "grant_type": "client_credentials",
        "client_id": client["client_id"], "client_secret": client["client_secret"],
    });
    let (status, answer) = system
        .api
        .call(
            reqwest::Method::POST,
            "users",
            "/auth/token",
            Some(&credentials),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["access_token"].as_str().unwrap().to_owned()
}

/// Every service and a gateway (its rate limits lifted: one client sends every request
/// here), customer A with an ended order, customer B, both producing systems and the admin.
async fn set_up() -> (System, RunningGateway, Fixture) {
    let system = start(&ALL, Duration::from_secs(60)).await;
    let mut settings = settings_for(&system, &[]).await;
    for rate in settings.rates.per_second.values_mut() {
        *rate = NonZeroU32::MAX;
    }
    let gateway = RunningGateway::start(settings).await;
    let (owner, owner_email, owner_password) = sign_up(&system, "FR").await;
    let (other, _, _) = sign_up(&system, "DE").await;
    let credit = json!({ "credit_limit_cents": 1_000_000 });
    let owner_path = format!("/users/{}", owner.id);
    system
        .api
        .patch("users", &owner_path, &credit)
        .await
        .unwrap();
    let sku = system.product(500, 1000).await;
    system.wait_for_caches(&[&owner.id], &[&sku], &ALL).await;
    let items = json!({ "items": [{ "sku": sku, "quantity": 1 }] });
    let placed = owner.api.post("orders", "/orders", &items).await.unwrap();
    let order = placed["id"].as_str().unwrap().to_owned();
    let ended = system.final_order(&order).await;
    assert_eq!(ended["status"], "confirmed", "{ended}");
    let unit = json!({ "lines": [{ "sku": sku, "quantity": 1 }] });
    let returned = owner
        .api
        .post("orders", &format!("/orders/{order}/returns"), &unit)
        .await
        .unwrap();
    let returned = returned["id"].as_str().unwrap().to_owned();
    let inventory = json!({ "name": "matrix feed", "scopes": [Scope::INVENTORY_WRITE] });
    let events = json!({
        "name": "matrix events", "scopes": [Scope::EVENTS_PUBLISH],
        "event_types": ["product.updated"],
    });
    let token = |api: &system::scenario::Api| api.bearer_token().unwrap().to_owned();
    let tokens = BTreeMap::from([
        (Who::Owner, token(&owner.api)),
        (Who::OtherCustomer, token(&other.api)),
        (
            Who::InventoryClient,
            client_token(&system, &inventory).await,
        ),
        (Who::EventsClient, client_token(&system, &events).await),
        (Who::Admin, token(&system.api)),
    ]);
    let fixture = Fixture {
        owner: owner.id,
        owner_email,
        owner_password,
        sku,
        order,
        returned,
        run: uuid::Uuid::new_v4().simple().to_string(),
        tokens,
    };
    (system, gateway, fixture)
}

/// Every service's rows with their service, deactivating the owner last: after it the owner
/// could no longer sign in, place orders or change their user.
fn service_rows() -> Vec<(&'static str, &'static Route)> {
    let mut rows: Vec<(&'static str, &'static Route)> =
        routes::rows(&system::route_tables()).collect();
    rows.sort_by_key(|(_, row)| row.path == "/users/{id}/deactivate");
    rows
}

#[tokio::test]
async fn every_row_answers_every_kind_of_caller_as_its_access_says() {
    let (system, gateway, fixture) = set_up().await;
    let urls = system.urls();
    let api = format!("{}/api", gateway.url);
    let mut matrix = Matrix {
        http: reqwest::Client::new(),
        fixture: &fixture,
        sent: 0,
        failures: Vec::new(),
    };

    for row in routes::gateway::ROUTES {
        matrix.row(&api, row).await;
    }
    for (service, row) in service_rows() {
        matrix.row(&urls[service], row).await;
        if row.through_gateway() {
            matrix.row(&api, row).await;
        } else {
            matrix.hidden(&gateway.url, row).await;
        }
    }
    for row in routes::operations::ROUTES {
        for base in urls.values().chain([&gateway.url]) {
            matrix.row(base, row).await;
        }
        // `/api/openapi.json` is the gateway's own row: its public document.
        if !is_the_gateways_own(row) {
            matrix.hidden(&gateway.url, row).await;
        }
    }

    assert!(
        matrix.failures.is_empty(),
        "{} of {} calls were answered otherwise than their row says:\n{}",
        matrix.failures.len(),
        matrix.sent,
        matrix.failures.join("\n")
    );
    gateway.stop().await;
    system.stop().await;
}

/// Whether the gateway answers `row`'s path under `/api` with a row of its own.
fn is_the_gateways_own(row: &Route) -> bool {
    routes::gateway::ROUTES
        .iter()
        .any(|own| (own.verb, own.path) == (row.verb, row.path))
}

/// A path of `template` with `value` for each parameter.
fn any_instance(template: &str, value: &str) -> String {
    template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                value
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn the_gateway_publishes_no_path_that_is_not_a_published_row() {
    let (system, gateway, admin) = behind_a_gateway(&["users"]).await;
    let http = reqwest::Client::new();
    let id = uuid::Uuid::new_v4().to_string();
    let mut unpublished: Vec<(Verb, String)> = routes::rows(&system::route_tables())
        .map(|(_, row)| row)
        .chain(routes::operations::ROUTES)
        .filter(|row| !row.through_gateway() && !is_the_gateways_own(row))
        .map(|row| (row.verb, any_instance(&row.api_path(), &id)))
        .collect();
    unpublished.extend([
        (Verb::Get, "/api/nothing-here".to_owned()),
        (Verb::Get, format!("/api/orders/{id}/refund")),
        (Verb::Get, "/api/orders/".to_owned()),
        (Verb::Delete, format!("/api/cache/users/{id}")),
    ]);
    for (verb, path) in unpublished {
        for token in [None, Some(admin.as_str())] {
            let url = format!("{}{path}", gateway.url);
            let answer = send(&http, url, verb, token, None).await;
            assert_eq!(
                answer.status,
                StatusCode::NOT_FOUND,
                "{verb} {path}: {}",
                answer.body
            );
        }
    }
    // A published path with a method no row has is refused at the gateway too.
    for (verb, path) in [
        (Verb::Delete, format!("/api/orders/{id}")),
        (Verb::Get, format!("/api/products/{id}/stock")),
        (Verb::Get, "/api/auth/token".to_owned()),
        (Verb::Post, format!("/api/users/{id}/summary")),
    ] {
        let url = format!("{}{path}", gateway.url);
        let answer = send(&http, url, verb, Some(admin.as_str()), None).await;
        let status = answer.status;
        assert_eq!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{verb} {path}: {}",
            answer.body
        );
    }
    gateway.stop().await;
    system.stop().await;
}
