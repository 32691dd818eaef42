//! `conveyor new event|service`: generators for what the project otherwise asks a newcomer
//! to write by hand in several files that must agree.

mod edits;
mod event;
mod files;
mod names;
mod own_events;
mod own_workspace;
mod service;
mod service_templates;
mod templates;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub(crate) enum NewCommand {
    /// Add an event type to the contract: its v1 schema, its Rust type and the entries in
    /// events-schema's lists that the contract tests check, in one step.
    #[command(long_about = event::LONG_HELP)]
    Event(event::EventArgs),
    /// Add a service to the system, or to a workspace of your own beside it: a crate with
    /// its declaration, a handler and a test per consumed event type, a migration and a
    /// binary, and its registration lines.
    #[command(long_about = service::LONG_HELP)]
    Service(service::ServiceArgs),
}

pub(crate) fn run(command: NewCommand) -> anyhow::Result<()> {
    match command {
        NewCommand::Event(args) => event::run(args),
        NewCommand::Service(args) => service::run(args),
    }
}
