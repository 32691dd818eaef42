//! The runtime's guarantees, tested against the real RabbitMQ and Postgres: each test has its
//! own vhost and database.

mod alarm;
mod child;
mod dead_letters;
mod delivery;
mod failures;
mod faults;
mod install;
mod keys;
mod outbox;
mod publishing;
mod schedule;
mod tracing_context;
mod upgrade;
