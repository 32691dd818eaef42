//! The order saga end to end: every service in this process, each test with its own vhost
//! and databases, orders placed and inspected through the services' HTTP APIs.

mod compensation;
mod concurrency;
mod helpers;
mod reordering;
mod tracing;
