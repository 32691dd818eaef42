//! What every service binary does around its service: `--help`, logging, SIGTERM/SIGINT,
//! and an exit status with the error's whole cause chain.

use std::future::Future;
use std::process::ExitCode;

use conveyor::Shutdown;

use crate::config::ServiceConfig;
use crate::declaration::Declaration;

/// A service binary's whole `main`: the declared service, its settings from the
/// environment, run until SIGTERM or SIGINT (see [`run_binary`]).
pub async fn run_service(declaration: &'static Declaration) -> ExitCode {
    run_binary(declaration, |shutdown| async move {
        let config = ServiceConfig::from_env(declaration.name, declaration.default_port)?;
        (declaration.build)(config).await?.run(shutdown).await
    })
    .await
}

/// Runs a service binary: answers `--help`, refuses unknown arguments (settings come from
/// the environment), sets up logging, and runs `service` until SIGTERM or SIGINT.
pub async fn run_binary<F, Fut>(declaration: &Declaration, service: F) -> ExitCode
where
    F: FnOnce(Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let binary = declaration.binary();
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    if arguments
        .iter()
        .any(|argument| argument == "--help" || argument == "-h")
    {
        print!("{}", help(declaration));
        return ExitCode::SUCCESS;
    }
    if let Some(argument) = arguments.first() {
        eprintln!(
            "error: unexpected argument {argument:?}: {binary} takes its settings from the environment; see {binary} --help"
        );
        return ExitCode::from(2);
    }
    crate::telemetry::init(&binary, "info,lapin=warn");
    let shutdown = Shutdown::from_future(conveyor::shutdown::signal());
    let status = match service(shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "{binary} failed.");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    };
    // The spans of the last moments still go out; blocking, so off the async threads.
    let _ = tokio::task::spawn_blocking(crate::telemetry::shutdown).await;
    status
}

/// The `--help` text: what the service does and every variable it reads, with defaults.
pub fn help(declaration: &Declaration) -> String {
    let mut text = format!(
        "{}-service: {}\n\nUsage: {}-service\n\nIt takes no arguments; its settings come from the environment. \
         Run as many instances as you like on the same database and broker: every instance \
         shares the work, and events about one order are never handled by two at once.\n\nSettings:\n",
        declaration.name, declaration.summary, declaration.name
    );
    text.push_str(&settings_list(&service_settings(declaration)));
    text.push_str("\nSIGTERM or SIGINT stops it cleanly: HTTP and deliveries stop, work in hand finishes, the outbox is flushed.\n");
    text
}

/// `settings` as `--help` lists them: one per line, indented, the meanings aligned.
pub fn settings_list(settings: &[(String, String)]) -> String {
    let width = settings
        .iter()
        .map(|(name, _)| name.len())
        .max()
        .unwrap_or(0);
    settings
        .iter()
        .map(|(name, meaning)| format!("  {name:<width$}  {meaning}\n"))
        .collect()
}

/// Every variable the service's binary reads, as (variable, meaning with its default): the
/// ones every service reads, then its own.
pub fn service_settings(declaration: &Declaration) -> Vec<(String, String)> {
    let mut settings = broker_and_database_settings(declaration);
    settings.extend(process_settings(declaration));
    settings.extend(
        declaration
            .settings
            .iter()
            .map(|setting| (setting.variable.to_owned(), setting.meaning.to_owned())),
    );
    settings
}

/// Where the service's broker and database are, and how much of each it uses.
fn broker_and_database_settings(declaration: &Declaration) -> Vec<(String, String)> {
    let prefix = declaration.name.to_ascii_uppercase();
    vec![
        (
            "AMQP_URL".to_owned(),
            format!(
                "RabbitMQ broker URL; several brokers of one cluster separated by commas \
                 (each connection fails over to the next) [default: {}]",
                conveyor::DEFAULT_AMQP_URL
            ),
        ),
        (
            format!("{prefix}_AMQP_URL"),
            format!(
                "instead of AMQP_URL: this service's own broker user (conveyor-{}, under \
                 CONVEYOR_NAME_PREFIX's prefix if set; made by `conveyor topology users`); \
                 connected as it, the consumer takes each event only from the broker user of the \
                 service that owns its type and dead-letters the rest as forbidden-source \
                 [default: AMQP_URL]",
                declaration.name
            ),
        ),
        (
            conveyor::Names::PREFIX_VARIABLE.to_owned(),
            "a prefix put with a dot before the name of every exchange, queue and broker user \
             (blue: blue.conveyor.events, blue.orders.events, blue.conveyor-orders), for a \
             second system on one broker; set the same for every service, the gateway and the \
             conveyor command of that system. 1 to 64 ASCII letters, digits, '-' or '_', \
             starting with a letter or digit, not amq [default: empty: conveyor.events, …]"
                .to_owned(),
        ),
        (
            format!("{prefix}_DATABASE_URL"),
            format!(
                "its own Postgres database, created if missing \
                 [default: postgres://postgres@127.0.0.1:5432/conveyor_{}]",
                declaration.name
            ),
        ),
        (
            format!("{prefix}_DATABASE_POOL_SIZE"),
            format!(
                "connections to that database at most, from 2 [default: {}]",
                crate::config::DEFAULT_POOL_SIZE
            ),
        ),
        (
            format!("{prefix}_HTTP_CONCURRENCY"),
            format!(
                "HTTP requests served at once, fewer than the pool's connections so the consumer \
                 and the outbox relay always have some; a request waits at most 5 s for its turn \
                 and is then told to try again (503) [default: the pool size minus {}]",
                crate::config::KEPT_FOR_MESSAGING
            ),
        ),
        (
            format!("{prefix}_CONSUMER_WORKERS"),
            format!(
                "channels handling events at once, from 1 to 64; events that share a key never \
                 run at once whatever the number [default: {}]",
                conveyor::ConsumerOptions::default().workers
            ),
        ),
    ]
}

/// Its HTTP port, stopping, token checks, logs and traces.
fn process_settings(declaration: &Declaration) -> Vec<(String, String)> {
    let prefix = declaration.name.to_ascii_uppercase();
    vec![
        (
            format!("{prefix}_PORT"),
            format!(
                "HTTP port; 0 picks a free one [default: {}]",
                declaration.default_port
            ),
        ),
        (
            "LISTEN_ADDR".to_owned(),
            "address the HTTP API listens on [default: 127.0.0.1]".to_owned(),
        ),
        (
            "SHUTDOWN_TIMEOUT".to_owned(),
            format!(
                "seconds a stop may take (SIGTERM or Ctrl-C): requests and batches in hand are \
                 finished, then the outbox is flushed; what still waits on a broker or database \
                 that does not answer is given up, losing nothing [default: {}]",
                crate::config::DEFAULT_SHUTDOWN_TIMEOUT.as_secs()
            ),
        ),
        (
            "USERS_URL".to_owned(),
            format!(
                "the users service: every request's bearer token is checked against the keys it publishes at {}, fetched again at most every 10 s for an unknown key [default: {}]",
                crate::auth::JWKS_PATH,
                crate::config::DEFAULT_USERS_URL
            ),
        ),
        (
            "RUST_LOG".to_owned(),
            "log filter [default: info]".to_owned(),
        ),
        (
            "LOG_FORMAT".to_owned(),
            "json (each line with trace_id, span_id, service and correlation_id) or pretty \
             [default: pretty on a terminal, else json]"
                .to_owned(),
        ),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
            "where spans are exported over OTLP, like http://jaeger:4318; unset, none leaves \
             the process. Also read: OTEL_EXPORTER_OTLP_PROTOCOL (http/protobuf; grpc in builds \
             with the otlp-grpc feature), OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER and _ARG"
                .to_owned(),
        ),
    ]
}
