//! `conveyor new service NAME [--consumes TYPE …] [--emits TYPE …]`: a service crate that
//! builds, passes clippy and has a tested handler per consumed type, and the lines that put
//! it in the workspace and the system. As `new event`, everything is read and checked
//! first, so a refusal leaves the tree as it was.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use clap::Args;

use super::edits;
use super::files::{self, Change};
use super::names::EventName;
use super::own_events;
use super::own_workspace::{self, Home};
use super::service_templates::{self as templates, Consumed, NewService};

const PUBLISHERS: &str = "events-schema/src/publishers.rs";
const SCHEMAS_SRC: &str = "events-schema/src";
const WORKSPACE: &str = "Cargo.toml";
const SYSTEM_CARGO: &str = "crates/system/Cargo.toml";
const ROSTER: &str = "crates/system/src/roster.rs";

/// `conveyor new service --help`.
pub(crate) const LONG_HELP: &str = "\
Add a service to the system in one step: a crate that builds, passes clippy and has a
handler per consumed event type with a test that runs it without a broker, and the three
lines that put it in the workspace and the system.

For NAME (lowercase letters and digits, e.g. notifications), under --root:

  services/NAME/Cargo.toml
      The package NAME-service: a library (the service) and a binary (NAME-service).
  services/NAME/src/lib.rs
      Its DECLARATION, what the system reads of it: its name, its default port, the event
      types it --emits, its HTTP routes (none yet), its migrations, its consumer (a handler
      per --consumes type) and how to build it; and MIGRATOR, consumer(), build().
  services/NAME/src/on_<noun>_<verb>.rs
      One handler per --consumes type. It records the event in the table `received`, in
      the handler's transaction; replace that with the service's own work.
  services/NAME/src/received.rs, services/NAME/migrations/0001_received.sql
      That table: the effect the tests count.
  services/NAME/src/main.rs
      The binary: `platform::run_service(&DECLARATION)`; `NAME-service --help` lists its
      settings (NAME_DATABASE_URL, NAME_PORT, AMQP_URL, …).
  services/NAME/tests/handlers.rs
      Per consumed type: the schema's own example delivered through conveyor::testing's
      harness on a database of the test's own: handled, recorded once, and a redelivery
      is a duplicate that records nothing.
  Cargo.toml, crates/system/Cargo.toml, crates/system/src/roster.rs
      The crate among the workspace's dependencies, the system's dependency on it, and its
      DECLARATION in SERVICES: `conveyor serve all`, the demo, topology, broker users, the
      AsyncAPI and OpenAPI documents and `conveyor deploy` take it from there.

Each --consumes TYPE must be in the contract; each --emits TYPE must be owned by NAME in
events-schema/src/publishers.rs (make it first: `conveyor new event TYPE --owner NAME`).
Nothing is written if services/NAME exists, NAME is a service already, or a line cannot
be placed.

Then, as the command prints: `cargo test -p NAME-service`, then regenerate what lists
services and events (`conveyor deploy`, `conveyor topology export`, `conveyor schema
asyncapi`, `conveyor reference`) with a conveyor built after the change.

Outside Conveyor's repository (--root is a workspace of your own, or a folder to make
one in; --conveyor is Conveyor's checkout, by default the current directory):

  Cargo.toml, Cargo.lock
      When missing: a workspace of services/*, with Conveyor's crates by a relative path
      and the versions and lints Conveyor is tested with (its Cargo.lock). An existing
      Cargo.toml is never edited: what it lacks is named, and nothing is written.
  services/NAME/...
      The same crate, without a registration in Conveyor's roster: it runs as its own
      process beside Conveyor's services, on the same broker.
  services/NAME/schemas/TYPE/v1.json, services/NAME/src/events.rs
      Each --emits TYPE is the service's own (Conveyor's contract has it not): its schema
      with a documented example, its Rust type, and OWN_EVENTS, with which its consumer and
      outbox check it beside Conveyor's contract; a test checks type and schema agree.";

#[derive(Debug, Args)]
pub(crate) struct ServiceArgs {
    /// The service's name: lowercase letters and digits, starting with a letter
    /// (notifications). It names the crate (services/NAME, package NAME-service), its
    /// binary, settings (NAME_…), database (conveyor_NAME), queue and broker user.
    #[arg(value_name = "NAME")]
    name: String,
    /// An event type it handles; repeat for more. Each gets a handler and its test.
    #[arg(long = "consumes", value_name = "TYPE")]
    consumes: Vec<String>,
    /// An event type it emits; repeat for more. It must be owned by NAME in the contract.
    #[arg(long = "emits", value_name = "TYPE")]
    emits: Vec<String>,
    /// Its default HTTP port [default: the one after the highest a service has].
    #[arg(long)]
    port: Option<u16>,
    /// Where the service goes: Conveyor's repository (holding services/, events-schema/
    /// and crates/system/), or a workspace of your own, made if missing.
    #[arg(long, value_name = "DIR", default_value = ".")]
    root: PathBuf,
    /// Conveyor's checkout, whose crates and contract a service outside it depends on (by
    /// a relative path); read only when --root is not Conveyor's repository.
    #[arg(long, value_name = "DIR", default_value = ".")]
    conveyor: PathBuf,
}

pub(crate) fn run(args: ServiceArgs) -> anyhow::Result<()> {
    let root = &args.root;
    check_name(&args.name)?;
    let home = Home::of(root, &args.conveyor)?;
    let conveyor = home.conveyor_root(root);
    // Conveyor's services and the workspace's own: a name or port taken by either would
    // clash when they run side by side.
    let mut services = files::service_crates(root)?;
    if let Home::Own { conveyor } = &home {
        services.extend(files::service_crates(conveyor)?);
    }
    let taken: Vec<String> = services
        .iter()
        .filter_map(|(_, text)| files::service_name(text))
        .collect();
    let dir = format!("services/{}", args.name);
    ensure!(
        !root.join(&dir).exists(),
        "{dir} exists already: nothing was written. Choose another name, or remove it first"
    );
    ensure!(
        !taken.contains(&args.name),
        "{} is a service already (known: {}): nothing was written",
        args.name,
        taken.join(", ")
    );
    let (emits, own_events) = match &home {
        Home::Conveyor => (emitted(root, &args.name, &args.emits)?, Vec::new()),
        Home::Own { conveyor } => {
            let own = own_types(conveyor, &args.emits)?;
            let emits = own.iter().map(|name| name.event_type.clone()).collect();
            (emits, own)
        }
    };
    let service = NewService {
        name: args.name.clone(),
        port: port(args.port, &services)?,
        consumes: consumed(conveyor, &args.consumes)?,
        emits,
        own_events,
    };
    let mut changes = plan(&service)?;
    changes.extend(match &home {
        Home::Conveyor => registrations(root, &service)?,
        Home::Own { conveyor } => own_workspace::workspace_files(root, conveyor, &service.name)?,
    });
    files::write(root, &changes)?;
    files::format_rust(root, &changes);
    files::print_changes(&format!("Added the {} service:", service.name), &changes);
    println!("\nNext:");
    let steps = match home {
        Home::Conveyor => next_steps(&service),
        Home::Own { .. } => next_steps_outside(&service, root),
    };
    for (number, step) in steps.iter().enumerate() {
        println!("  {}. {step}", number + 1);
    }
    Ok(())
}

/// Lowercase letters and digits only: the name becomes environment variables
/// (`NAME_DATABASE_URL`), a database, a queue and a broker user, where `-` is not safe
/// everywhere.
fn check_name(name: &str) -> anyhow::Result<()> {
    ensure!(
        name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
        "`{name}` is not a service name: lowercase letters and digits, starting with a letter (notifications, billing2); it names environment variables (NAME_DATABASE_URL), a database, a queue and a broker user"
    );
    ensure!(
        !system::SYSTEM_BROKER_OWNERS.contains(&name) && name != "conveyor",
        "`{name}` is taken by a broker user or part of Conveyor itself: choose another name"
    );
    Ok(())
}

/// The port asked for, or the one after the highest a service declares.
fn port(asked: Option<u16>, services: &[(String, String)]) -> anyhow::Result<u16> {
    let declared: Vec<u16> = services
        .iter()
        .filter_map(|(_, text)| declared_port(text))
        .collect();
    if let Some(port) = asked {
        ensure!(
            port != 0 && !declared.contains(&port),
            "port {port} is {}: choose another --port",
            if port == 0 {
                "picked at random at each start, not a default".to_owned()
            } else {
                "another service's default".to_owned()
            }
        );
        return Ok(port);
    }
    let highest = declared.into_iter().max().unwrap_or(8080);
    highest
        .checked_add(1)
        .context("no port is left after the services' ports: give one with --port")
}

/// The `default_port` of a service crate's `DECLARATION`.
fn declared_port(text: &str) -> Option<u16> {
    let rest = text.split("    default_port: ").nth(1)?;
    rest.split(',').next()?.trim().parse().ok()
}

/// Each consumed type checked against the contract, with the Rust type its handler takes.
fn consumed(root: &Path, types: &[String]) -> anyhow::Result<Vec<Consumed>> {
    let modules = files::modules(&root.join(SCHEMAS_SRC))?;
    let mut seen = BTreeSet::new();
    let mut consumed = Vec::new();
    for event_type in types {
        let name = EventName::parse(event_type)?;
        ensure!(
            seen.insert(event_type.clone()),
            "--consumes {event_type} is given twice"
        );
        let struct_name = name.struct_name();
        let Some((module, _)) = modules
            .iter()
            .find(|(_, text)| files::declares(text, &struct_name))
        else {
            bail!(
                "{event_type} is not in the contract (no {struct_name} in {SCHEMAS_SRC}/): check the spelling, or add it first with `conveyor new event {event_type} --owner SERVICE`"
            );
        };
        consumed.push(Consumed {
            event_type: event_type.clone(),
            struct_name,
            module: module.clone(),
            noun: name.noun.replace('-', "_"),
            verb: name.verb.replace('-', "_"),
        });
    }
    Ok(consumed)
}

/// Each emitted type checked: the contract must give it to this service.
fn emitted(root: &Path, service: &str, types: &[String]) -> anyhow::Result<Vec<String>> {
    let path = root.join(PUBLISHERS);
    let publishers = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let owners = edits::owners(&publishers);
    let mut emitted = Vec::new();
    for event_type in types {
        EventName::parse(event_type)?;
        match owners.iter().find(|(known, _)| known == event_type) {
            Some((_, owner)) if owner == service => {}
            Some((_, owner)) => bail!(
                "{event_type} is {owner}'s (OWNERS in {PUBLISHERS}): an event type has one owner, the only service whose broker user may publish it. Emit a type of {service}'s own: `conveyor new event <noun>.<verb> --owner {service}`"
            ),
            None => bail!(
                "{event_type} is not in the contract: add it first with `conveyor new event {event_type} --owner {service}`, then run this again"
            ),
        }
        if !emitted.contains(event_type) {
            emitted.push(event_type.clone());
        }
    }
    Ok(emitted)
}

/// Outside Conveyor's repository, each emitted type is the service's own: not one of
/// Conveyor's contract, whose types each have their owner there.
fn own_types(conveyor: &Path, types: &[String]) -> anyhow::Result<Vec<EventName>> {
    let path = conveyor.join(PUBLISHERS);
    let owners = edits::owners(&files::read(&path)?);
    let mut own: Vec<EventName> = Vec::new();
    for event_type in types {
        let name = EventName::parse(event_type)?;
        if let Some((_, owner)) = owners.iter().find(|(known, _)| known == event_type) {
            bail!(
                "{event_type} is {owner}'s in Conveyor's contract: a service outside it emits types of its own (a new name, like notification.sent)"
            );
        }
        if !own.contains(&name) {
            own.push(name);
        }
    }
    Ok(own)
}

/// The crate's files, made before anything is written.
fn plan(service: &NewService) -> anyhow::Result<Vec<Change>> {
    let dir = format!("services/{}", service.name);
    let mut changes = vec![
        Change::new_file(
            format!("{dir}/Cargo.toml"),
            templates::cargo_toml(service),
            format!("the package {}-service", service.name),
        ),
        Change::new_file(
            format!("{dir}/src/lib.rs"),
            templates::lib_rs(service),
            "its DECLARATION, MIGRATOR, consumer() and build()".to_owned(),
        ),
        Change::new_file(
            format!("{dir}/src/main.rs"),
            templates::main_rs(service),
            format!("the {}-service binary", service.name),
        ),
        Change::new_file(
            format!("{dir}/migrations/0001_received.sql"),
            templates::migration(service),
            "the table `received`".to_owned(),
        ),
    ];
    for consumed in &service.consumes {
        changes.push(Change::new_file(
            format!("{dir}/src/{}.rs", consumed.handler_module()),
            templates::handler_rs(service, consumed),
            format!("the handler of {}", consumed.event_type),
        ));
    }
    if !service.consumes.is_empty() {
        changes.push(Change::new_file(
            format!("{dir}/src/received.rs"),
            templates::received_rs(service),
            "what the handlers record".to_owned(),
        ));
        changes.push(Change::new_file(
            format!("{dir}/tests/handlers.rs"),
            templates::handler_tests(service),
            "a test per handler, without a broker".to_owned(),
        ));
    }
    for name in &service.own_events {
        changes.push(Change::new_file(
            format!("{dir}/schemas/{}/v1.json", name.event_type),
            own_events::schema(name),
            format!(
                "the schema of {}, with one placeholder field",
                name.event_type
            ),
        ));
    }
    if !service.own_events.is_empty() {
        changes.push(Change::new_file(
            format!("{dir}/src/events.rs"),
            own_events::events_rs(&service.name, &service.own_events),
            "its own event types and OWN_EVENTS, which its consumer checks".to_owned(),
        ));
    }
    Ok(changes)
}

/// The workspace's dependency entry, the system's dependency and the roster line.
fn registrations(root: &Path, service: &NewService) -> anyhow::Result<Vec<Change>> {
    let package = format!("{}-service", service.name);
    let cannot = |path: &str| format!("cannot add {package} to {path}, so nothing was written");
    // After the last of each list's service entries, whatever the services are called.
    let workspace = files::read(&root.join(WORKSPACE))?;
    let workspace = edits::after_last_line(
        &workspace,
        |line| line.contains("-service = { path = \"services/"),
        &format!("{package} = {{ path = \"services/{}\" }}", service.name),
    )
    .with_context(|| cannot(WORKSPACE))?;
    let system = files::read(&root.join(SYSTEM_CARGO))?;
    let system = edits::after_last_line(
        &system,
        |line| line.ends_with("-service.workspace = true"),
        &format!("{package}.workspace = true"),
    )
    .with_context(|| cannot(SYSTEM_CARGO))?;
    let roster = files::read(&root.join(ROSTER))?;
    let roster = edits::after_last_line(
        &roster,
        |line| line.starts_with("    &") && line.ends_with("_service::DECLARATION,"),
        &format!("    &{}_service::DECLARATION,", service.name),
    )
    .with_context(|| cannot(ROSTER))?;
    Ok(vec![
        Change::edit(
            WORKSPACE,
            workspace,
            format!("{package} in [workspace.dependencies]"),
        ),
        Change::edit(
            SYSTEM_CARGO,
            system,
            format!("the system's dependency on {package}"),
        ),
        Change::edit(ROSTER, roster, "its DECLARATION in SERVICES".to_owned()),
    ])
}

fn next_steps_outside(service: &NewService, root: &Path) -> Vec<String> {
    let name = &service.name;
    vec![
        format!(
            "Test it: `cd {} && cargo test -p {name}-service` (each handler without a broker, on a database of its own).",
            root.display()
        ),
        format!(
            "Run it beside Conveyor's services: `cargo run -p {name}-service` there, with AMQP_URL (and CONVEYOR_NAME_PREFIX) as they have them; it declares its queue and takes its port ({}) at start.",
            service.port
        ),
        format!(
            "Give its own event types their fields: each schema is in services/{name}/schemas/, its Rust type in src/events.rs; a test checks they agree."
        ),
    ]
}

fn next_steps(service: &NewService) -> Vec<String> {
    let name = &service.name;
    let mut steps = vec![format!(
        "Test it: `cargo test -p {name}-service` (each handler without a broker, on a database of its own)."
    )];
    steps.push(format!(
        "Regenerate what lists services and events, with a conveyor built after this change: `cargo run -q -p conveyor-cli -- deploy` (Dockerfile, docker-compose.yml, prometheus.yml), `cargo run -q -p conveyor-cli -- topology export` (broker-config/definitions.json: {name}'s queues) `cargo run -q -p conveyor-cli -- schema asyncapi` (what {name} sends and receives) and `cargo run -q -p conveyor-cli -- reference` (the book's settings and routes). Tests fail until they are current."
    ));
    steps.push(format!(
        "Run it beside the others: `conveyor serve all` starts {name} too (port {}), or run its own binary, `cargo run -p {name}-service` (`--help` lists its settings).",
        service.port
    ));
    steps.push(
        "Make the handlers do the service's work (each file says where), and give the service HTTP routes in its DECLARATION's `routes` when it needs them."
            .to_owned(),
    );
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_name_is_lowercase_letters_and_digits() {
        check_name("notifications").unwrap();
        check_name("billing2").unwrap();
        for bad in ["Notifications", "fraud-check", "2fa", "", "gateway"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_default_port_follows_the_highest_declared() {
        let lib = |port: u16| {
            (
                "lib.rs".to_owned(),
                format!("pub static DECLARATION: D = D {{\n    default_port: {port},\n}};\n"),
            )
        };
        let services = [lib(8081), lib(8085), lib(8083)];
        assert_eq!(port(None, &services).unwrap(), 8086);
        assert_eq!(port(Some(9000), &services).unwrap(), 9000);
        assert!(port(Some(8085), &services).is_err());
    }
}
