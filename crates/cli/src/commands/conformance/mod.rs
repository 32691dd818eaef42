//! `conveyor conformance`: drives a consumer written to the book's protocol, in any
//! language, through the cases the runtime's own tests use, and checks what can be observed
//! from outside: the effects it commits (a table it writes) and the dead letters it leaves
//! (its DLQ). `conformance subject` is the Rust runtime under the same test.

mod bench;
mod cases;
mod faults;
mod letters;
mod observe;
mod report;
mod rust_subject;
mod sandbox;
mod send;
mod subject_process;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use report::{CaseResult, Report};
use sandbox::Sandbox;
use subject_process::SubjectProcess;

/// The type every case sends: its owner publishes it, and its schema is small.
pub(crate) const EVENT_TYPE: &str = "order.confirmed";
/// The service the subject consumes as (its queues, inbox rows and broker user).
pub(crate) const SERVICE: &str = "conformance";
/// Short tiers, so the case that exhausts them takes a second and a half, not seventy.
pub(crate) const RETRY_TIERS: [Duration; 3] = [
    Duration::from_millis(200),
    Duration::from_millis(400),
    Duration::from_millis(800),
];

#[derive(Debug, Subcommand)]
pub(crate) enum ConformanceCommand {
    /// Check a consumer under test (the subject) against the consumer protocol: on a vhost,
    /// broker users and a database of its own, start the subject, send it events (duplicates,
    /// retries, poison of every kind, a forged source, an oversized body) and check each
    /// effect and dead letter; then drop its broker connection and kill it mid-batch, and
    /// check every event was handled exactly once. Prints one line per case; exits 1 if one
    /// fails. The subject's part is in the book's "Consume from another language".
    Run(RunArgs),
    /// The Rust runtime as the subject of `conformance run`, reading the variables `run`
    /// gives it (AMQP_URL, DATABASE_URL, CONVEYOR_NAME_PREFIX,
    /// CONVEYOR_CONFORMANCE_SERVICE, CONVEYOR_CONFORMANCE_RETRY_TIERS_MS). Runs until
    /// SIGTERM or Ctrl-C.
    Subject,
    /// How fast a subject handles a backlog of events, beside the Rust runtime
    /// (`conformance subject`) in the same run, taken in turn: events per second from the
    /// first effect to the last, each with its inbox row and one effect row, and the ratio
    /// by pair.
    Bench(bench::BenchArgs),
}

/// Where the subject's database is made, for `run` and `bench` alike.
#[derive(Debug, Args)]
pub(crate) struct PostgresServer {
    /// The PostgreSQL server to make the subject's database on (dropped after), as a user
    /// that may create databases.
    #[arg(
        long,
        value_name = "URL",
        env = "CONFORMANCE_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    postgres: String,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The command that starts the subject, run with `sh -c` in this directory; it is given
    /// its broker URL, database and names in the environment (see `conformance subject`).
    #[arg(long, value_name = "COMMAND")]
    subject: String,
    #[command(flatten)]
    server: PostgresServer,
    /// Where the subject's output goes [default: a file in the temporary directory, named
    /// in the report].
    #[arg(long, value_name = "FILE")]
    subject_log: Option<PathBuf>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(command: ConformanceCommand) -> anyhow::Result<()> {
    match command {
        ConformanceCommand::Run(args) => run_suite(args).await,
        ConformanceCommand::Subject => rust_subject::run().await,
        ConformanceCommand::Bench(args) => bench::run(args).await,
    }
}

/// Makes the sandbox, runs every case against the subject, removes the sandbox whatever
/// happened, then prints the report; a failed case is an error (exit 1).
async fn run_suite(args: RunArgs) -> anyhow::Result<()> {
    let sandbox = Sandbox::create(&args.server.postgres).await?;
    let log = args.subject_log.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("conveyor-conformance-{}.log", sandbox.id))
    });
    let log_is_ours = args.subject_log.is_none();
    // Interrupted, the run still removes what it made; the subject goes with the future.
    let outcome = tokio::select! {
        outcome = run_cases(&sandbox, &args.subject, &log) => outcome,
        () = conveyor::shutdown::signal() => Err(anyhow::anyhow!("interrupted: nothing was judged")),
    };
    sandbox.remove().await;
    let report = Report {
        subject: args.subject,
        subject_log: log,
        cases: outcome?,
    };
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    let failed = report.cases.iter().filter(|case| !case.ok).count();
    if failed == 0 && log_is_ours {
        // Nothing to look into: leave nothing behind.
        let _ = std::fs::remove_file(&report.subject_log);
    }
    anyhow::ensure!(
        failed == 0,
        "conformance: {failed} of {} cases failed for {}; the subject's output is in {}",
        report.cases.len(),
        report.subject,
        report.subject_log.display()
    );
    Ok(())
}

async fn run_cases(
    sandbox: &Sandbox,
    command: &str,
    log: &std::path::Path,
) -> anyhow::Result<Vec<CaseResult>> {
    let mut subject = SubjectProcess::start(command, sandbox, log)?;
    let result = async {
        subject.wait_until_consuming(sandbox).await?;
        let mut sent = std::collections::HashSet::new();
        let mut results = cases::run_all(sandbox, &mut sent).await?;
        results.push(faults::dropped_connection(sandbox, &mut sent).await?);
        results.push(faults::killed(sandbox, &mut subject, &mut sent).await?);
        results.push(cases::nothing_left_behind(sandbox, &sent).await?);
        anyhow::Ok(results)
    }
    .await;
    subject.stop().await;
    result
}
