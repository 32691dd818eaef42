//! `conveyor flow list|diagram|check|trace|stuck|reconcile`: the system's flows as their
//! declarations say them, where their runs are, and whether finished runs' records agree.

pub(crate) mod reconcile;
pub(crate) mod trace;

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
    /// One run's timeline across every service, from the services' own records: each event,
    /// who emitted it, when it was published, and what each service that handles it made of
    /// it (handled, dead-lettered with the reason and attempts, or not yet). For a run still
    /// going: the step it waits on, since when, and the likely reason (a dead letter, a retry
    /// pending, a service not ready or not consuming, a backlog, a stuck relay, a passed
    /// deadline). The run is found through the query its flow's keeper declares. Reads
    /// <SERVICE>_DATABASE_URL of every service, the broker at AMQP_URL and each service's
    /// /readyz at <SERVICE>_URL. Exits 1 for an unknown run
    Trace(trace::TraceArgs),
    /// Every run going for longer than --older-than (of FLOW, or of every flow), oldest
    /// first, each with the step it waits on and the likely reason, as `trace` finds them,
    /// and each service's count of parked outbox events (the broker will never take them as
    /// they are; see `conveyor outbox`). Exits 1 when there is any such run or parked event
    Stuck(trace::StuckArgs),
    /// Compare every finished run (of FLOW, or of every flow) with what its participants'
    /// records hold, through the agreements the flow declares (a closed return is refunded,
    /// restocked and collected; a cancelled one holds nothing). Reads <SERVICE>_DATABASE_URL
    /// of the keeper and of each participant. Lists each disagreement and exits 1 when
    /// there is any, so it can run as a periodic job that alerts
    Reconcile(reconcile::ReconcileArgs),
}

/// The flows' names as clap's possible values.
pub(crate) fn flow_choice() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(system::all_flows().iter().map(|flow| flow.name))
}

pub(crate) async fn run(command: FlowCommand) -> anyhow::Result<()> {
    match command {
        FlowCommand::Trace(args) => trace::trace_run(args).await,
        FlowCommand::Stuck(args) => trace::stuck_runs(args).await,
        FlowCommand::Reconcile(args) => reconcile::reconcile_runs(args).await,
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
