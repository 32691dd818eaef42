//! Users and products made so that orders reach every path of the saga, with fresh names on
//! every run so runs never clash.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use super::api::Api;

/// What one run created.
#[derive(Debug, Clone)]
pub struct Fixtures {
    /// Users whose orders go through (generous credit, a served country).
    pub regular_users: Vec<String>,
    /// Credit too low for any order: payments declines.
    pub low_credit_user: String,
    /// Lives where shipping does not go: shipping fails.
    pub far_away_user: String,
    /// Plenty of stock.
    pub products: Vec<String>,
    /// Little stock: inventory rejects once it runs out.
    pub scarce_product: String,
    /// Each user's bearer token: customers place and cancel their own orders.
    pub tokens: Tokens,
}

/// Bearer tokens by user id, never shown by `Debug`.
#[derive(Clone, Default)]
pub struct Tokens(BTreeMap<String, String>);

impl Tokens {
    /// The token of `user`.
    pub fn of(&self, user: &str) -> Option<&str> {
        self.0.get(user).map(String::as_str)
    }
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} users, hidden)", self.0.len())
    }
}

impl Fixtures {
    pub fn all_users(&self) -> Vec<String> {
        let mut users = self.regular_users.clone();
        users.push(self.low_credit_user.clone());
        users.push(self.far_away_user.clone());
        users
    }

    pub fn all_products(&self) -> Vec<String> {
        let mut products = self.products.clone();
        products.push(self.scarce_product.clone());
        products
    }
}

/// This run's customers: each registered (by the admin, who sets the credit limit) with a
/// password, and signed in.
struct Customers<'a> {
    api: &'a Api,
    run: String,
    password: String,
    tokens: BTreeMap<String, String>,
}

impl Customers<'_> {
    async fn add(
        &mut self,
        name: &str,
        country: &str,
        credit_limit_cents: i64,
    ) -> anyhow::Result<String> {
        let email = format!("{name}-{}@example.com", self.run);
        let body = json!({
            "email": email, "name": name, "password": self.password,
            "address": { "line1": "1 Demo Street", "city": "Demo City", "postal_code": "10001", "country": country },
            "credit_limit_cents": credit_limit_cents, "currency": "EUR",
        });
        let created = self.api.post("users", "/users", &body).await?;
        let id = created["id"].as_str().unwrap_or_default().to_owned();
        let token = self.api.token(&email, &self.password).await?;
        self.tokens.insert(id.clone(), token);
        Ok(id)
    }
}

async fn product(api: &Api, sku: &str, price_cents: i64, stock: i64) -> anyhow::Result<String> {
    let body = json!({ "sku": sku, "name": format!("Demo {sku}"), "price_cents": price_cents, "currency": "EUR", "stock": stock });
    api.post("inventory", "/products", &body).await?;
    Ok(sku.to_owned())
}

/// Creates this run's users and products.
///
/// # Errors
/// When a service refuses or cannot be reached.
pub(crate) async fn create(api: &Api) -> anyhow::Result<Fixtures> {
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_ascii_uppercase();
    let mut customers = Customers {
        api,
        run: run.to_ascii_lowercase(),
        password: uuid::Uuid::new_v4().simple().to_string(),
        tokens: BTreeMap::new(),
    };
    let mut regular_users = Vec::new();
    for (index, country) in ["FR", "DE", "IE", "US", "NL", "SE"].iter().enumerate() {
        regular_users.push(
            customers
                .add(&format!("customer{index}"), country, 100_000_000)
                .await?,
        );
    }
    let low_credit_user = customers.add("thrifty", "FR", 500).await?;
    let far_away_user = customers.add("penguin", "AQ", 100_000_000).await?;
    Ok(Fixtures {
        regular_users,
        low_credit_user,
        far_away_user,
        tokens: Tokens(customers.tokens),
        products: vec![
            product(api, &format!("MUG-{run}"), 1250, 10_000_000).await?,
            product(api, &format!("TEA-{run}"), 799, 10_000_000).await?,
            product(api, &format!("PEN-{run}"), 199, 10_000_000).await?,
        ],
        scarce_product: product(api, &format!("LAMP-{run}"), 4999, 12).await?,
    })
}

/// Waits until every service's cached copy holds this run's users and products.
///
/// # Errors
/// When a copy is still behind after `within`.
pub(crate) async fn wait_for_caches(
    api: &Api,
    fixtures: &Fixtures,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    let mut lookups: Vec<(&str, String)> = Vec::new();
    for user in fixtures.all_users() {
        for service in crate::ServiceName::USERS.copied_by() {
            lookups.push((service.as_str(), format!("/cache/users/{user}")));
        }
    }
    for sku in fixtures.all_products() {
        lookups.push(("orders", format!("/cache/products/{sku}")));
    }
    for (service, path) in lookups {
        loop {
            let (status, _) = api
                .call(reqwest::Method::GET, service, &path, None, &[])
                .await?;
            if status == StatusCode::OK {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the {service} service's copy has no {path} after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}
