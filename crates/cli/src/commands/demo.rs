//! `conveyor demo`: every service in this process, orders placed through the HTTP API
//! along every path of the saga, and DESIGN.md's invariants checked against the services'
//! own APIs. The README's main job (`scripts/demo`).

use std::time::Duration;

use clap::Args;
use conveyor::Shutdown;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use system::scenario::{self, Api, LoadOptions, Report};

use super::machine_cpu::CpuSeconds;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Orders to place.
    #[arg(long, default_value_t = 200)]
    orders: usize,
    /// Orders in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Orders per second to offer; as fast as the concurrency allows if not given.
    #[arg(long)]
    rate: Option<f64>,
    /// Instances of every service, each with its own database pool, consumer, outbox relay
    /// and port, all on the service's one database and queue, as separate processes would
    /// run; orders are placed across the orders instances in turn.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    replicas: u16,
    /// Every this many regular orders, its customer returns a unit once the order is
    /// confirmed (every third of those returns is cancelled at once); 0 for no returns.
    #[arg(long, default_value_t = 10)]
    returns_every: usize,
    /// How long to wait for every order to be confirmed or cancelled, in seconds.
    #[arg(long, default_value_t = 120)]
    settle_timeout: u64,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.orders > 0 && args.concurrency > 0,
        "--orders and --concurrency must be at least 1"
    );
    anyhow::ensure!(
        args.rate.is_none_or(|rate| rate > 0.0),
        "--rate must be more than 0"
    );
    let mut config = system::SystemConfig::from_env()?;
    let admin = config.for_own_run();
    let forward_secret = config.share_forward_secret()?;
    // Every instance has its own pool; together they stay within 80 of Postgres's default
    // 100 connections.
    let instances = u32::from(args.replicas) * system::ServiceName::all().count() as u32;
    config.pool_size = config.pool_size.min((80 / instances).max(2));
    let (stop, shutdown) = Shutdown::new();
    let shutdown_gateway = shutdown.clone();
    let mut running =
        system::start_replicas(&config, &[], usize::from(args.replicas), shutdown).await?;
    let progress = ProgressBar::new(args.orders as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} orders placed {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if args.json {
        progress.set_draw_target(ProgressDrawTarget::hidden());
    }
    let options = LoadOptions {
        orders: args.orders,
        concurrency: args.concurrency,
        rate: args.rate,
        return_every: args.returns_every,
        ..LoadOptions::default()
    };
    let gateway = start_gateway(&running, &forward_secret, shutdown_gateway).await?;
    let client = Client {
        replica_urls: running.replica_urls(),
        gateway_url: &gateway.url,
        admin: &admin,
        amqp: &config.amqp,
        names: &config.names,
        options: &options,
        settle_timeout: Duration::from_secs(args.settle_timeout),
        progress: &progress,
    };
    // The client runs on a thread of its own, so its CPU is counted apart from the services'.
    let outcome = tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("demo-client".to_owned())
                .spawn_scoped(scope, || client.run())
                .map_err(anyhow::Error::from)?
                .join()
                .map_err(|_| anyhow::anyhow!("the demo's client panicked"))?
        })
    });
    progress.finish_and_clear();
    stop.fire();
    let _ = gateway.task.await;
    let stopped = running.wait().await;
    let (report, cost) = outcome?;
    stopped?;
    if args.json {
        println!("{}", to_json(&report, &cost, args.replicas));
    } else {
        print_summary(&report, args.replicas);
        print_cost(&cost);
    }
    anyhow::ensure!(
        report.all_hold(),
        "an invariant failed: see the summary above"
    );
    Ok(())
}

/// The demo's client: the scenario, against the services through the gateway.
struct Client<'a> {
    replica_urls: std::collections::BTreeMap<String, Vec<String>>,
    gateway_url: &'a str,
    admin: &'a system::AdminAccount,
    amqp: &'a conveyor::AmqpConfig,
    names: &'a conveyor::Names,
    options: &'a LoadOptions,
    settle_timeout: Duration,
    progress: &'a ProgressBar,
}

/// What the orders cost the machine, from the first placed until every order and return has
/// ended.
struct Cost {
    orders: usize,
    seconds: f64,
    cpu: CpuSeconds,
}

impl Client<'_> {
    /// The scenario on a runtime of this thread's own, with the machine's CPU measured from
    /// the first order placed until every order and return has ended (the invariants' reads
    /// after that are left out).
    fn run(&self) -> anyhow::Result<(Report, Cost)> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let api = Api::with_replicas(self.replica_urls.clone())?
                .through_gateway(self.gateway_url)
                .signed_in(&self.admin.email, &self.admin.password)
                .await?;
            let before = scenario::strays(self.amqp, self.names).await?;
            let fixtures = scenario::prepare(&api).await?;
            let started = (CpuSeconds::now(), std::time::Instant::now());
            let placed = scenario::place(&api, &fixtures, self.options, |placed| {
                self.progress.set_position(placed as u64);
            })
            .await?;
            scenario::wait_until_settled(&api, &fixtures, self.settle_timeout).await?;
            scenario::wait_until_returns_settled(&api, &placed, self.settle_timeout).await?;
            let cost = Cost {
                orders: placed.len(),
                seconds: started.1.elapsed().as_secs_f64(),
                cpu: CpuSeconds::now().since(started.0),
            };
            let report = scenario::settle_with_names(
                &api,
                self.amqp,
                self.names,
                &fixtures,
                &placed,
                self.settle_timeout,
                before,
            )
            .await?;
            Ok((report, cost))
        })
    }
}

/// A gateway started here: its URL, and its task.
pub(crate) struct LocalGateway {
    pub(crate) url: String,
    pub(crate) task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Starts the gateway in front of every instance of every service `running` has (others at
/// their `<SERVICE>_URL`), vouching for client addresses to users with `forward_secret`. Its
/// rate limits are lifted: the demo and the bench are one client each (an admin) sending
/// every request, and the limiter is not what they show.
pub(crate) async fn start_gateway(
    running: &system::Running,
    forward_secret: &str,
    shutdown: Shutdown,
) -> anyhow::Result<LocalGateway> {
    let mut settings = system::gateway_settings()?;
    for (service, urls) in running.replica_urls() {
        settings.urls.insert(service, urls.join(","));
    }
    settings.port = 0;
    for rate in settings.rates.per_second.values_mut() {
        *rate = std::num::NonZeroU32::MAX;
    }
    let gateway =
        api_gateway::Gateway::bind_with_forward_secret(settings, Some(forward_secret)).await?;
    let url = format!("http://127.0.0.1:{}", gateway.port());
    Ok(LocalGateway {
        url,
        task: tokio::spawn(gateway.run(shutdown)),
    })
}

/// Core-milliseconds per order.
fn per_order(seconds: f64, orders: usize) -> f64 {
    seconds * 1000.0 / orders.max(1) as f64
}

fn cost_json(cost: &Cost) -> serde_json::Value {
    let cpu = &cost.cpu;
    json!({
        "orders": cost.orders,
        "seconds": cost.seconds,
        "per_order_core_ms": {
            "counted": per_order(cpu.counted(), cost.orders),
            "this_process": per_order(cpu.this_process, cost.orders),
            "client": per_order(cpu.this_thread, cost.orders),
            "rabbitmq": per_order(cpu.rabbitmq, cost.orders),
            "postgres": per_order(cpu.postgres, cost.orders),
        },
        "machine_busy": cpu.machine_busy_share(),
    })
}

fn print_cost(cost: &Cost) {
    let cpu = &cost.cpu;
    let ms = |seconds: f64| per_order(seconds, cost.orders);
    println!(
        "  CPU per order    {:.1} core-ms: this process {:.1} (the demo's client {:.1} of it), RabbitMQ {:.1}, Postgres {:.1}",
        ms(cpu.counted()),
        ms(cpu.this_process),
        ms(cpu.this_thread),
        ms(cpu.rabbitmq),
        ms(cpu.postgres)
    );
    println!(
        "                   from the first order placed until every order and return ended ({:.1} s); the cores were {:.0}% busy",
        cost.seconds,
        cpu.machine_busy_share() * 100.0
    );
}

fn to_json(report: &Report, cost: &Cost, replicas: u16) -> serde_json::Value {
    json!({
        "cost": cost_json(cost),
        "replicas": replicas,
        "orders": { "placed": report.placed, "confirmed": report.confirmed, "cancelled": report.cancelled },
        "latency_ms": report.latency_ms,
        "orders_per_second": report.orders_per_second,
        "customer_cancels": { "accepted": report.customer_cancels_accepted, "too_late": report.customer_cancels_too_late },
        "returns": report.returns,
        "compensations": report.compensations,
        "dead_letters": report.dead_letters,
        "unrouted": report.unrouted,
        "busy_answers_retried": report.busy_answers,
        "invariants": report.invariants,
    })
}

fn print_summary(report: &Report, replicas: u16) {
    let cancelled: usize = report.cancelled.values().sum();
    let reasons: Vec<String> = report
        .cancelled
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    let compensations: Vec<String> = report
        .compensations
        .iter()
        .map(|(what, n)| format!("{what} {n}"))
        .collect();
    let instances = if replicas == 1 {
        "one instance of each service".to_owned()
    } else {
        format!("{replicas} instances of each service")
    };
    println!(
        "Conveyor demo: {} orders through the gateway and the saga, {instances}",
        report.placed
    );
    println!("  placed           {}", report.placed);
    println!("  confirmed        {}", report.confirmed);
    println!("  cancelled        {cancelled}  ({})", reasons.join(", "));
    println!(
        "  customer cancels {} in time, {} too late (already confirmed)",
        report.customer_cancels_accepted, report.customer_cancels_too_late
    );
    let returns: Vec<String> = report
        .returns
        .iter()
        .map(|(end, n)| format!("{end} {n}"))
        .collect();
    println!(
        "  returns          {}  ({})",
        report.returns.values().sum::<usize>(),
        returns.join(", ")
    );
    println!("  compensations    {}", compensations.join(", "));
    println!(
        "  saga latency     p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms (placed to final)",
        report.latency_ms["p50"], report.latency_ms["p95"], report.latency_ms["p99"]
    );
    println!(
        "  throughput       {:.0} orders/s (first placed to last final)",
        report.orders_per_second
    );
    println!("  dead letters     {}", report.dead_letters);
    println!("  unrouted         {}", report.unrouted);
    if report.busy_answers > 0 {
        println!(
            "  busy answers     {} requests told to try again (503 or 429) and retried",
            report.busy_answers
        );
    }
    for invariant in &report.invariants {
        let status = if invariant.ok { "ok" } else { "FAILED" };
        println!("  [{status}] {}: {}", invariant.name, invariant.detail);
    }
}
