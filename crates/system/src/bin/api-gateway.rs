//! `api-gateway`: the gateway as its own process, in front of every service of the roster.
//! It is built here, not in the gateway's crate, because the roster is here: the gateway
//! publishes what the services' declarations say.

use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn help() -> String {
    let table = api_gateway::routes::RouteTable::new(&system::route_tables());
    let published: Vec<String> = table
        .prefixes()
        .iter()
        .map(|prefix| format!("/api/{prefix}"))
        .collect();
    let mut text = format!(
        "api-gateway: Conveyor's one entrance under /api/: refuses (400) any path a service could read as another path (dot segments, encoded slashes or dots, backslashes, `;`, double encoding, NUL), checks every bearer token against the keys users publishes (RS256, issuer, audience, expiry) before anything reaches a service, limits each client's request rate (429 with Retry-After), tells the services the client's address in X-Forwarded-For (never the client's own claim), routes what the services' route tables publish ({}) to their services, and answers GET /api/users/{{id}}/summary from users, orders, payments and shipping behind circuit breakers.\n\nUsage: api-gateway\n\nIt takes no arguments; its settings come from the environment. It keeps no state but its rate buckets: run as many as you like behind a load balancer (each limits on its own).\n\nSettings:\n",
        published.join(", ")
    );
    text.push_str(&platform::settings_list(&system::gateway_settings_help()));
    text.push_str("\nSIGTERM or SIGINT stops it cleanly: it stops taking requests and finishes the ones in hand.\n");
    text
}

#[tokio::main]
async fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    if arguments
        .iter()
        .any(|argument| argument == "--help" || argument == "-h")
    {
        print!("{}", help());
        return ExitCode::SUCCESS;
    }
    if let Some(argument) = arguments.first() {
        eprintln!(
            "error: unexpected argument {argument:?}: api-gateway takes its settings from the environment; see api-gateway --help"
        );
        return ExitCode::from(2);
    }
    platform::telemetry::init("api-gateway", "info");
    let shutdown = conveyor::Shutdown::from_future(conveyor::shutdown::signal());
    let started = async {
        let settings = system::gateway_settings()?;
        api_gateway::Gateway::bind(settings)
            .await?
            .run(shutdown)
            .await
    };
    let status = match started.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "api-gateway failed.");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    };
    let _ = tokio::task::spawn_blocking(platform::telemetry::shutdown).await;
    status
}
