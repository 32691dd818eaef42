//! `conveyor console`: the operators' console in a browser.

use clap::Args;
use conveyor::Shutdown;

#[derive(Debug, Args)]
#[command(after_long_help = "\
Settings (environment):
  CONSOLE_PORT              the port (default 8090; 0 picks a free one)
  LISTEN_ADDR               the address to listen on (default 127.0.0.1)
  USERS_URL                 the users service: sign-in and token keys (default http://127.0.0.1:8081)
  AMQP_URL                  the operator's broker user, as for `conveyor dlq`
  RABBITMQ_MANAGEMENT_URL   the broker's management API (default http://127.0.0.1:15672)
  CONVEYOR_NAME_PREFIX      the queues' prefix, as the services have it
  <SERVICE>_DATABASE_URL    each service's database: its inbox (a gentle replay's answer),
                            outbox and flows (default postgres://postgres@127.0.0.1:5432/conveyor_<service>)
  <SERVICE>_URL             each service's address, for a stuck flow's /readyz (default its port here)
  CONSOLE_LOGS_URL          Grafana with Loki: a flow's timeline links each step's log lines (none: no links)
  CONSOLE_TRACES_URL        Jaeger's UI: a flow's timeline links each step's spans (none: no links)

Sign in with an admin account, or a user an admin made an operator:
  PATCH /users/{id} {\"operator\": true} as an admin (through the gateway, /api/users/{id});
  {\"operator_edits\": [\"order.created\"]} lets that operator edit and retry those types.
Serve it behind TLS away from this machine: the session cookie is Secure there.")]
pub(crate) struct ConsoleArgs {}

/// Serves the console until Ctrl-C or SIGTERM.
pub(crate) async fn run(_args: ConsoleArgs) -> anyhow::Result<()> {
    let settings = operator_console::ConsoleSettings::from_env()?;
    let console = operator_console::Console::bind(settings).await?;
    eprintln!("console    http://127.0.0.1:{}/", console.port());
    console
        .run(Shutdown::from_future(conveyor::shutdown::signal()))
        .await
}
