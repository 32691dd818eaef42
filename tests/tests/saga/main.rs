//! The order saga end to end, each test with its own vhost and databases, orders placed and
//! inspected through the services' HTTP APIs: every service in this process, or (replicas)
//! each service binary as several processes of its own.

mod agreement;
mod auth;
mod bad_input;
mod bad_text;
mod cluster;
mod compensation;
mod concurrency;
mod deadline;
mod gateway;
mod gateway_paths;
mod guessing;
mod helpers;
mod http_api;
mod ingest_contract;
mod least_privilege;
mod logs;
mod metrics;
mod openapi;
mod outage;
mod processes;
mod reconcile;
mod reordering;
mod replicas;
mod returns;
mod rollback;
mod rolling;
mod route_matrix;
mod shutdown;
mod trace;
mod tracing;
