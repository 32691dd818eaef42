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
