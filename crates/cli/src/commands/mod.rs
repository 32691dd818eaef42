//! One file per top-level command.

pub(crate) mod bench;
pub(crate) mod bench_gateway;
pub(crate) mod broker_users;
pub(crate) mod cache;
pub(crate) mod demo;
pub(crate) mod dlq;
pub(crate) mod events;
pub(crate) mod ledger_demo;
pub(crate) mod management;
pub(crate) mod saga;
pub(crate) mod schema;
pub(crate) mod serve;
pub(crate) mod topology;

/// Each service's base URL: `<SERVICE>_URL`, else its default port on this machine.
pub(crate) fn service_urls() -> std::collections::BTreeMap<system::ServiceName, String> {
    system::ServiceName::all()
        .map(|service| {
            let variable = format!("{}_URL", service.as_str().to_ascii_uppercase());
            let url = std::env::var(&variable)
                .unwrap_or_else(|_| format!("http://127.0.0.1:{}", service.default_port()));
            (service, url.trim_end_matches('/').to_owned())
        })
        .collect()
}
