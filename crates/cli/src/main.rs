//! `conveyor`: the operator's and producer's command line for Conveyor.

mod commands;
mod generated;
mod terminal;

use clap::{Parser, Subcommand};

/// Conveyor: event-driven services over RabbitMQ.
///
/// Connection settings come from the environment: AMQP_URL (default
/// amqp://guest:guest@127.0.0.1:5672/%2f) and, for commands that need a database,
/// DEMO_DATABASE_URL and BENCH_DATABASE_URL (created if missing). CONVEYOR_NAME_PREFIX, set
/// as for the services, puts every exchange, queue and broker user the commands name under a
/// prefix (blue: blue.conveyor.events, blue.orders.dlq); unset or empty, the default names.
/// Logs go to stderr; RUST_LOG sets their level.
#[derive(Debug, Parser)]
#[command(name = "conveyor", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every service in this process, place orders through the saga, and check the
    /// system's invariants. Exits non-zero if one fails.
    Demo(commands::demo::DemoArgs),
    /// Run the messaging runtime alone on a demo ledger: exactly-once handling, a retry,
    /// dead letters (and, with --fail-account, a failure to replay with `conveyor dlq`).
    DemoLedger(commands::ledger_demo::DemoArgs),
    /// Run services in this process: `all`, or some of them by name. Each listens on its
    /// own port (<SERVICE>_PORT); Ctrl-C stops them cleanly.
    Serve(commands::serve::ServeArgs),
    /// Declare or export the broker topology (exchanges, queues, bindings).
    #[command(subcommand)]
    Topology(commands::topology::TopologyCommand),
    /// Inspect, group, replay, move and purge dead letters, with an audit log.
    #[command(subcommand)]
    Dlq(commands::dlq::DlqCommand),
    /// Serve the operators' console in a browser, for admins and operators: each service's
    /// queues and outbox, dead letters (groups, letters, gentle replays, edit and retry, move,
    /// purge), stuck flows and their timelines, the audit log and the alerts' runbooks.
    Console(commands::console::ConsoleArgs),
    /// The event contract: check schema changes for breakage, write the AsyncAPI document,
    /// validate an event.
    #[command(subcommand)]
    Schema(commands::schema::SchemaCommand),
    /// Publish events or watch them pass.
    #[command(subcommand)]
    Events(commands::events::EventsCommand),
    /// Rebuild a service's cached copies of other services' data.
    #[command(subcommand)]
    Cache(commands::cache::CacheCommand),
    /// Check the saga's books: finished orders against payments, stock and shipments.
    #[command(subcommand)]
    Saga(commands::saga::SagaCommand),
    /// The system's flows (choreographies) as declared: list them, draw one, check them
    /// against the services.
    #[command(subcommand)]
    Flow(commands::flow::FlowCommand),
    /// List the events a service's relay parked (the broker will never take them as they
    /// are) and send them again once the cause is fixed.
    #[command(subcommand)]
    Outbox(commands::outbox::OutboxCommand),
    /// List the events services scheduled for later (deadlines and calendar times),
    /// earliest due first.
    #[command(subcommand)]
    Scheduled(commands::scheduled::ScheduledCommand),
    /// Measure the runtime against raw RabbitMQ and Postgres on this machine.
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
    /// Write the deployment files' lists of services (the Dockerfile's binaries,
    /// docker-compose.yml's service blocks, Prometheus's targets) from the services'
    /// declarations; --check fails on drift.
    Deploy(commands::deploy::DeployArgs),
    /// Write the book's reference pages (every command, setting, HTTP route and flow) from
    /// the code; --check fails on drift.
    Reference(commands::reference::ReferenceArgs),
    /// Write what a new part of the project needs in every file at once: `new service NAME`
    /// adds a service (its crate, handlers, tests and registration), `new event TYPE --owner
    /// SERVICE` an event type (its schema, Rust type and every registration).
    #[command(subcommand)]
    New(commands::new::NewCommand),
    /// Check a consumer written in any language against the consumer protocol: duplicates,
    /// retries through the tiers, dead letters of every kind, a forged source, a dropped
    /// connection and a crash.
    #[command(subcommand)]
    Conformance(commands::conformance::ConformanceCommand),
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Output piped into a reader that stopped (`conveyor dlq show … | head`) ends the command
/// quietly, as a closed pipe ends other Unix tools, instead of with a panic report.
fn exit_quietly_on_a_closed_pipe() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            // 128 + SIGPIPE, what a shell reports for a tool a closed pipe stopped.
            std::process::exit(141);
        }
        report(info);
    }));
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    exit_quietly_on_a_closed_pipe();
    let cli = Cli::parse();
    // The demo fails events on purpose; its summary reports them instead of a log line each.
    let default_filter = match cli.command {
        Command::Demo(_) | Command::DemoLedger(_) => "error,lapin=off",
        Command::Serve(_) | Command::Console(_) => "info,lapin=off",
        _ => "warn,lapin=off",
    };
    platform::telemetry::init("conveyor", default_filter);
    let result = match cli.command {
        Command::Demo(args) => commands::demo::run(args).await,
        Command::DemoLedger(args) => commands::ledger_demo::run(args).await,
        Command::Serve(args) => commands::serve::run(args).await,
        Command::Deploy(args) => commands::deploy::run(args),
        Command::Reference(args) => commands::reference::run(args),
        Command::Dlq(command) => commands::dlq::run(command).await,
        Command::Console(args) => commands::console::run(args).await,
        Command::Schema(command) => commands::schema::run(command),
        Command::Topology(command) => commands::topology::run(command).await,
        Command::Events(command) => commands::events::run(command).await,
        Command::Bench(command) => commands::bench::run(command).await,
        Command::Cache(command) => commands::cache::run(command).await,
        Command::Saga(command) => commands::saga::run(command).await,
        Command::Flow(command) => commands::flow::run(command).await,
        Command::Outbox(command) => commands::outbox::run(command).await,
        Command::Scheduled(command) => commands::scheduled::run(command).await,
        Command::New(command) => commands::new::run(command),
        Command::Conformance(command) => commands::conformance::run(command).await,
    };
    let _ = tokio::task::spawn_blocking(platform::telemetry::shutdown).await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", describe_error(&error));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, leaving out causes the message already quotes.
fn describe_error(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}
