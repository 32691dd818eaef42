//! Rebuilding a service's cached copies: the services whose data it caches publish their
//! current state again, and its version-guarded handlers fill what is missing.

use std::collections::BTreeMap;

use crate::scenario::Api;

/// The sources of each service's cached copies, and the call that republishes each.
pub fn sources(service: &str) -> Option<&'static [(&'static str, &'static str)]> {
    const USERS: (&str, &str) = ("users", "/users/republish");
    const PRODUCTS: (&str, &str) = ("inventory", "/products/republish");
    match service {
        "orders" => Some(&[USERS, PRODUCTS]),
        "payments" | "shipping" => Some(&[USERS]),
        _ => None,
    }
}

/// Asks each source of `service`'s copies to publish its current state again; returns how
/// many events each published.
///
/// # Errors
/// When `service` keeps no cached copies, or a source cannot be reached.
pub async fn rebuild(api: &Api, service: &str) -> anyhow::Result<BTreeMap<String, u64>> {
    let sources = sources(service).ok_or_else(|| {
        anyhow::anyhow!("{service:?} keeps no cached copies: orders, payments and shipping do")
    })?;
    let mut republished = BTreeMap::new();
    for (source, path) in sources {
        let answer = api.post(source, path, &serde_json::json!({})).await?;
        republished.insert(
            (*source).to_owned(),
            answer["republished"].as_u64().unwrap_or_default(),
        );
    }
    Ok(republished)
}
