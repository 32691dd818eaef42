//! `conveyor flow list|diagram|check`: the system's flows as their declarations say them.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub(crate) enum FlowCommand {
    /// List the flows: each one's name, what a run does, and the services that take part
    /// (a service that only listens to a flow's events is not one).
    List,
    /// Print a flow's diagram as Mermaid: events as nodes, each step an arrow labelled
    /// with its service, compensations dotted, and the deadline.
    Diagram {
        /// The flow's name.
        #[arg(value_parser = flow_choice())]
        flow: String,
    },
    /// Check every flow against the event contract and the services' handlers and emits;
    /// exits 1 naming each disagreement.
    Check,
}

/// The flows' names as clap's possible values.
fn flow_choice() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(system::all_flows().iter().map(|flow| flow.name))
}

pub(crate) fn run(command: FlowCommand) -> anyhow::Result<()> {
    match command {
        FlowCommand::List => {
            for flow in system::all_flows() {
                println!("{:<10} {}", flow.name, flow.summary);
                println!("{:<10} takes part: {}", "", flow.participants().join(", "));
            }
            Ok(())
        }
        FlowCommand::Diagram { flow } => {
            print!("{}", flows::mermaid(system::flow_named(&flow)?));
            Ok(())
        }
        FlowCommand::Check => {
            let problems = system::flow_problems(&conveyor::Names::from_env()?)?;
            anyhow::ensure!(
                problems.is_empty(),
                "the flows disagree with the services:\n  {}",
                problems.join("\n  ")
            );
            let names: Vec<&str> = system::all_flows().iter().map(|flow| flow.name).collect();
            println!(
                "The flows ({}) agree with the contract and the services' handlers.",
                names.join(", ")
            );
            Ok(())
        }
    }
}
