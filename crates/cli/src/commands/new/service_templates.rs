//! The files of a new service crate, written as rustfmt writes them (CI checks formatting).

use super::names::EventName;

/// A service to write, its names checked.
pub(crate) struct NewService {
    pub(crate) name: String,
    pub(crate) port: u16,
    pub(crate) consumes: Vec<Consumed>,
    pub(crate) emits: Vec<String>,
    /// The emitted types it defines itself (outside Conveyor's repository): `src/events.rs`.
    pub(crate) own_events: Vec<EventName>,
}

/// An event type the service handles, and the Rust type its handler takes.
pub(crate) struct Consumed {
    /// `order.confirmed`
    pub(crate) event_type: String,
    /// `OrderConfirmedV1`
    pub(crate) struct_name: String,
    /// `orders`: the module of events-schema holding it.
    pub(crate) module: String,
    /// `order`, `confirmed`: as Rust identifiers.
    pub(crate) noun: String,
    pub(crate) verb: String,
}

impl Consumed {
    /// `on_order_confirmed`
    pub(crate) fn handler_module(&self) -> String {
        format!("on_{}_{}", self.noun, self.verb)
    }

    /// `OnOrderConfirmed`
    pub(crate) fn handler_struct(&self) -> String {
        format!("On{}{}", camel(&self.noun), camel(&self.verb))
    }

    /// `order_confirmed_is_handled_once`
    fn test_name(&self) -> String {
        format!("{}_{}_is_handled_once", self.noun, self.verb)
    }
}

fn camel(snake: &str) -> String {
    snake
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

impl NewService {
    fn has_own_events(&self) -> bool {
        !self.own_events.is_empty()
    }

    fn crate_ident(&self) -> String {
        format!("{}_service", self.name)
    }

    /// What it does, for `--help`: the types it handles.
    fn summary(&self) -> String {
        let handled: Vec<&str> = self
            .consumes
            .iter()
            .map(|consumed| consumed.event_type.as_str())
            .collect();
        match handled.as_slice() {
            [] => "handles no event yet.".to_owned(),
            [one] => format!("handles {one}."),
            [rest @ .., last] => format!("handles {} and {last}.", rest.join(", ")),
        }
    }
}

pub(crate) fn cargo_toml(service: &NewService) -> String {
    let name = &service.name;
    let serde = if service.has_own_events() {
        "serde.workspace = true\n"
    } else {
        ""
    };
    format!(
        r#"[package]
name = "{name}-service"
description = "The {name} service."
version.workspace = true
edition.workspace = true
rust-version.workspace = true
license.workspace = true
publish.workspace = true

[[bin]]
name = "{name}-service"
path = "src/main.rs"

[dependencies]
platform.workspace = true
conveyor.workspace = true
events-schema.workspace = true
anyhow.workspace = true
tokio.workspace = true
sqlx.workspace = true
{serde}serde_json.workspace = true
uuid.workspace = true
mimalloc.workspace = true

[dev-dependencies]
conveyor-testkit.workspace = true

[lints]
workspace = true
"#
    )
}

pub(crate) fn lib_rs(service: &NewService) -> String {
    let name = &service.name;
    let mut layout = String::new();
    let mut modules = String::new();
    let mut handlers = String::new();
    for consumed in &service.consumes {
        let module = consumed.handler_module();
        layout.push_str(&format!(
            "//! - `{module}`: what it does on `{}`.\n",
            consumed.event_type
        ));
        modules.push_str(&format!("mod {module};\n"));
        handlers.push_str(&format!(
            "\n        .handler({module}::{})",
            consumed.handler_struct()
        ));
    }
    if !service.consumes.is_empty() {
        layout.push_str("//! - `received`: the events it handled, one row each.\n");
        modules.push_str("mod received;\n");
    }
    if service.has_own_events() {
        layout.push_str("//! - `events`: the event types it defines itself, and their schemas.\n");
        modules.push_str("pub mod events;\n");
    }
    let contract = if service.has_own_events() {
        "std::sync::Arc::new(events_schema::EventContract::with_own_events(\n            events::OWN_EVENTS,\n        )?)"
    } else {
        "events_schema::EventContract::shared()?"
    };
    let mut sorted: Vec<&str> = modules.lines().collect();
    sorted.sort_unstable();
    let modules = sorted.join("\n");
    let emits = emits_list(&service.emits);
    let has_consumer = !service.consumes.is_empty();
    let (consumer_field, consumer_fn, consumer_built, consumer_part, imports) = if has_consumer {
        (
            "Some(consumer)",
            format!(
                r#"
/// Its consumer: a handler per event type it handles.
///
/// # Errors
/// When the contract's schemas do not compile.
pub fn consumer(names: &Names) -> anyhow::Result<Consumer> {{
    Ok(Consumer::builder(SERVICE)
        .names(names.clone())
        .contract({contract}){handlers}
        .build()?)
}}
"#
            ),
            "    let consumer = consumer(&config.names)?;\n",
            "Some(consumer)",
            "use conveyor::{Consumer, Names};\n",
        )
    } else {
        ("None", String::new(), "", "None", "")
    };
    let summary = service.summary();
    format!(
        r#"//! The {name} service: {summary}
//!
//! # Layout
//!
{layout}
{modules}

{imports}use platform::{{Service, ServiceConfig, ServiceParts}};
use sqlx::migrate::Migrator;

pub const SERVICE: &str = "{name}";

/// Everything the system knows of this service: whatever lists services reads it.
pub static DECLARATION: platform::Declaration = platform::Declaration {{
    name: SERVICE,
    default_port: {port},
    summary: "{summary}",
    settings: &[],
    emits: {emits},
    routes: ROUTES,
    migrator: &MIGRATOR,
    cache_sources: &[],
    consumer: {consumer_field},
    openapi,
    build: |config| Box::pin(build(config)),
}};

/// Its HTTP routes, beside `/healthz`, `/readyz` and `/metrics`: none yet.
pub static ROUTES: &[platform::routes::Route] = &[];

/// Its tables, as it creates them at start (tests migrate their own databases).
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");
{consumer_fn}
/// Connects, migrates and binds; the returned service reports its port.
///
/// # Errors
/// When the database, a migration or the port fails.
pub async fn build(config: ServiceConfig) -> anyhow::Result<Service> {{
{consumer_built}    Service::build(config, &MIGRATOR, |_pool| {{
        let (router, public) = platform::routes::Routes::new(ROUTES).finish()?;
        Ok(ServiceParts {{
            router,
            public,
            verifier: None,
            consumer: {consumer_part},
            background: Vec::new(),
            openapi: openapi()?,
        }})
    }})
    .await
}}

/// Its OpenAPI document, served at `GET /openapi.json`.
///
/// # Errors
/// When a row of [`ROUTES`] is not described, or a description has no row.
pub fn openapi() -> Result<serde_json::Value, platform::routes::TableMismatch> {{
    platform::openapi::Api::new(SERVICE, ROUTES).finish()
}}
"#,
        port = service.port,
    )
}

/// `&[]`, `&["a.b", "c.d"]`, or one per line as rustfmt writes a long array.
fn emits_list(emits: &[String]) -> String {
    let quoted: Vec<String> = emits.iter().map(|event| format!("\"{event}\"")).collect();
    let one_line = format!("[{}]", quoted.join(", "));
    if one_line.len() <= 60 {
        format!("&{one_line}")
    } else {
        format!("&[\n        {},\n    ]", quoted.join(",\n        "))
    }
}

pub(crate) fn main_rs(service: &NewService) -> String {
    let name = &service.name;
    let ident = service.crate_ident();
    format!(
        r#"//! `{name}-service`: the {name} service as its own process.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {{
    platform::run_service(&{ident}::DECLARATION).await
}}
"#
    )
}

pub(crate) fn received_rs(service: &NewService) -> String {
    let name = &service.name;
    format!(
        r#"//! The events the {name} service handled, one row each: what its handlers do until they
//! do the service's own work (keep it as a record, or drop it with its migration).

use conveyor::{{HandlerContext, HandlerError}};

/// Records the event being handled, in the handler's transaction: it commits with the
/// inbox's row, so a redelivery records nothing twice.
///
/// # Errors
/// The database's, which the runtime retries or dead-letters as its kind says.
pub(crate) async fn record(ctx: &mut HandlerContext<'_>) -> Result<(), HandlerError> {{
    let event = ctx.event().clone();
    sqlx::query("INSERT INTO received (event_id, event_type, subject) VALUES ($1, $2, $3)")
        .bind(event.id)
        .bind(&event.event_type)
        .bind(&event.subject)
        .execute(ctx.tx())
        .await?;
    Ok(())
}}
"#
    )
}

pub(crate) fn migration(service: &NewService) -> String {
    let name = &service.name;
    format!(
        "-- The events the {name} service handled, one row each (src/received.rs).
CREATE TABLE received (
    event_id uuid PRIMARY KEY,
    event_type text NOT NULL,
    subject text,
    received_at timestamptz NOT NULL DEFAULT now()
);
"
    )
}

pub(crate) fn handler_rs(service: &NewService, consumed: &Consumed) -> String {
    let name = &service.name;
    let (event_type, struct_name, module) = (
        &consumed.event_type,
        &consumed.struct_name,
        &consumed.module,
    );
    let handler = consumed.handler_struct();
    format!(
        r#"//! On `{event_type}`: what the {name} service does when it happens. Today it records the
//! event (`received`); do the service's own work here instead, in the same transaction
//! (`ctx.tx()`), and emit what follows with `ctx.emit(subject, &event)`.

use conveyor::{{EventHandler, HandlerContext, HandlerError}};
use events_schema::{module}::{struct_name};

pub(crate) struct {handler};

impl EventHandler for {handler} {{
    type Event = {struct_name};

    async fn handle(
        &self,
        _event: {struct_name},
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {{
        crate::received::record(ctx).await
    }}
}}
"#
    )
}

pub(crate) fn handler_tests(service: &NewService) -> String {
    let name = &service.name;
    let ident = service.crate_ident();
    let mut imports: Vec<String> = service
        .consumes
        .iter()
        .map(|consumed| {
            format!(
                "use events_schema::{}::{};",
                consumed.module, consumed.struct_name
            )
        })
        .collect();
    imports.sort();
    imports.dedup();
    let imports = imports.join("\n");
    let tests: String = service
        .consumes
        .iter()
        .map(|consumed| {
            format!(
                r#"
/// `{event_type}`, as its schema's example: handled and recorded once; delivered again,
/// the inbox knows it and nothing runs twice.
#[tokio::test]
async fn {test}() -> anyhow::Result<()> {{
    let database = TestDatabase::migrated(&MIGRATOR).await; // dropped when the test ends
    let mut harness = Harness::new(consumer(&Names::default())?, database.pool()).await?;
    let data: {struct_name} = example()?;
    let event = harness.envelope(owner(&data), Uuid::now_v7(), &data);

    harness.deliver(&event).await?.handled()?;
    let again = harness.deliver(&event).await?;

    assert!(again.is_duplicate(), "{{again:?}}");
    assert_eq!(recorded(&database, event.id).await?, 1);
    Ok(())
}}
"#,
                event_type = consumed.event_type,
                test = consumed.test_name(),
                struct_name = consumed.struct_name,
            )
        })
        .collect();
    format!(
        r#"//! The {name} service's handlers, each on a database of its own without a broker
//! (`conveyor::testing`): what happens to one event, step by step.

use conveyor::Names;
use conveyor::testing::Harness;
use conveyor_testkit::TestDatabase;
{imports}
use {ident}::{{MIGRATOR, consumer}};
use uuid::Uuid;
{tests}
/// The first example of `E`'s schema: the contract's own sample of the event.
fn example<E: conveyor::Event>() -> anyhow::Result<E> {{
    let schema = events_schema::schema_for(E::TYPE, E::VERSION)
        .ok_or_else(|| anyhow::anyhow!("{{}} v{{}} is not in the contract", E::TYPE, E::VERSION))?;
    let mut schema: serde_json::Value = serde_json::from_str(schema.text)?;
    let example = schema["examples"][0].take();
    Ok(serde_json::from_value(example)?)
}}

/// The service whose broker user may publish `E`: the source consumers believe.
fn owner<E: conveyor::Event>(_: &E) -> &'static str {{
    events_schema::publishers::owner_of(E::TYPE).unwrap_or("unknown")
}}

/// How many rows `received` has for `event_id`.
async fn recorded(database: &TestDatabase, event_id: Uuid) -> anyhow::Result<i64> {{
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM received WHERE event_id = $1")
            .bind(event_id)
            .fetch_one(&database.pool())
            .await?,
    )
}}
"#
    )
}
