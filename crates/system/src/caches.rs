//! Rebuilding a service's cached copies: the services whose data it caches publish their
//! current state again, and its version-guarded handlers fill what is missing.

use std::collections::BTreeMap;

use crate::roster::ServiceName;
use crate::scenario::Api;

/// Asks each source of `service`'s copies to publish its current state again; returns how
/// many events each published.
///
/// # Errors
/// When `service` keeps no cached copies, or a source cannot be reached.
pub async fn rebuild(api: &Api, service: ServiceName) -> anyhow::Result<BTreeMap<String, u64>> {
    let sources = service.cache_sources()?;
    if sources.is_empty() {
        let keepers: Vec<_> = ServiceName::all()
            .filter(|other| {
                other
                    .cache_sources()
                    .is_ok_and(|sources| !sources.is_empty())
            })
            .map(ServiceName::as_str)
            .collect();
        anyhow::bail!(
            "{service} keeps no cached copies: {} do",
            keepers.join(", ")
        );
    }
    let mut republished = BTreeMap::new();
    for (source, path) in sources {
        let answer = api
            .post(source.as_str(), path, &serde_json::json!({}))
            .await?;
        republished.insert(
            source.to_string(),
            answer["republished"].as_u64().unwrap_or_default(),
        );
    }
    Ok(republished)
}
