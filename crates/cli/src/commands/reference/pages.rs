//! The reference pages' text, each from what it describes: clap's own help, the settings
//! the binaries' `--help` lists, and the route tables the routers and the gateway follow.

use clap::CommandFactory as _;
use platform::routes::{Access, Exposure, Route, ServiceTable, gateway, operations};
use system::ServiceName;

/// Every page opens with this: what made it, so no one edits it by hand.
const MADE_BY: &str = "Written by `conveyor reference` from the code; CI fails when it differs \
    from what the code makes, so edit the code (a doc comment, a setting's text, a route \
    table) and run `conveyor reference` again.";

/// Every command and subcommand, with its whole `--help`.
pub(super) fn commands() -> String {
    let mut command = crate::Cli::command();
    command.build();
    let mut page = format!("# Commands\n\n{MADE_BY}\n");
    add_command(&command, &mut page);
    page
}

fn add_command(command: &clap::Command, page: &mut String) {
    let name = command.get_bin_name().unwrap_or_else(|| command.get_name());
    let help = command.clone().render_long_help().to_string();
    // clap indents the blank lines between an option's paragraphs.
    let lines: Vec<&str> = help.trim_end().lines().map(str::trim_end).collect();
    page.push_str(&format!(
        "\n## `{name}`\n\n```text\n{}\n```\n",
        lines.join("\n")
    ));
    for subcommand in command.get_subcommands() {
        if subcommand.get_name() != "help" {
            add_command(subcommand, page);
        }
    }
}

/// Every variable each binary reads, with its meaning and default.
pub(super) fn settings() -> String {
    let mut page = format!(
        "# Settings\n\n{MADE_BY}\n\nEvery binary reads its settings from the environment; \
         `--help` lists the same.\n"
    );
    for service in ServiceName::all() {
        let declaration = service.declaration();
        page.push_str(&format!(
            "\n## `{}`\n\n{}\n\n",
            declaration.binary(),
            declaration.summary
        ));
        page.push_str(&settings_table(platform::service_settings(declaration)));
    }
    page.push_str("\n## `api-gateway`\n\nThe gateway in front of every service.\n\n");
    page.push_str(&settings_table(system::gateway_settings_help()));
    page
}

fn settings_table(settings: Vec<(String, String)>) -> String {
    let mut table = String::from("| variable | meaning |\n| --- | --- |\n");
    for (variable, meaning) in settings {
        table.push_str(&format!("| `{variable}` | {} |\n", cell(&meaning)));
    }
    table
}

/// Every flow: what a run does, who takes part, its deadline, and its diagram.
pub(super) fn flows() -> String {
    let mut page = format!(
        "# Flows\n\n{MADE_BY}\n\nEach flow is declared once, beside the services that run it, \
         and checked against the event contract and their handlers (`conveyor flow check`). \
         The diagrams are Mermaid (`conveyor flow diagram NAME` prints one): events are \
         nodes, each step an arrow labelled with the service that takes it, compensations \
         dotted.\n"
    );
    for flow in system::all_flows() {
        let deadline = &flow.deadline;
        page.push_str(&format!(
            "\n## {}\n\n{}\n\n- starts with `{}`; a run's events carry its `{}` as their subject\n\
             - takes part: {}\n- deadline: {} s by default (`{}`) of watched time: {} schedules `{}` \
             when a run starts and ends a run still going with `{}` when it comes\n\
             - runs kept by {}: `conveyor flow trace ID`, `conveyor flow stuck {}`\n\n\
             ```mermaid\n{}```\n",
            flow.name,
            flow.summary,
            flow.starts_with,
            flow.key,
            flow.participants().join(", "),
            deadline.default.as_secs(),
            deadline.setting,
            deadline.owner,
            deadline.timer,
            deadline.ends_with,
            flow.runs.service,
            flow.name,
            flows::mermaid(flow)
        ));
    }
    page
}

/// Every route of every service, the gateway's own, and those every service answers.
pub(super) fn routes() -> String {
    let mut page = format!(
        "# HTTP routes\n\n{MADE_BY}\n\nEach service answers its routes on its own port; the \
         gateway publishes those marked so under `/api`, limited in the rate class shown. A \
         missing, forged or expired token is a 401 on every route but an open one.\n"
    );
    for table in system::route_tables() {
        add_table(&table, &mut page);
    }
    let own = ServiceTable {
        service: "api-gateway (its own)",
        routes: gateway::ROUTES,
    };
    let every = ServiceTable {
        service: "every service (and the gateway)",
        routes: operations::ROUTES,
    };
    for table in [own, every] {
        add_table(&table, &mut page);
    }
    page
}

fn add_table(table: &ServiceTable, page: &mut String) {
    page.push_str(&format!(
        "\n## {}\n\n| method | path | who may call it | through the gateway |\n| --- | --- | --- | --- |\n",
        table.service
    ));
    for route in table.routes {
        page.push_str(&format!(
            "| {} | `{}` | {} | {} |\n",
            route.verb,
            route.path,
            access(route.access),
            exposure(route)
        ));
    }
}

fn access(access: Access) -> String {
    match access {
        Access::Open => "anyone, without a token".to_owned(),
        Access::AnyCaller => "any valid token".to_owned(),
        Access::Owner => "the owner, or an admin".to_owned(),
        Access::Scope(scope) => format!("a token with scope `{scope}`"),
        Access::Granted(scope) => {
            format!("a producing system with scope `{scope}`, for what it was granted")
        }
    }
}

fn exposure(route: &Route) -> String {
    match route.exposure {
        Exposure::Gateway(class) => format!("`{}` ({} rate)", route.api_path(), class.as_str()),
        Exposure::Internal => "no: the service's own port only".to_owned(),
    }
}

/// `text` as one Markdown table cell: no pipe ends it, and `<prefix>` is text, not a tag.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\n', " ")
}
