//! `conveyor new event TYPE --owner SERVICE`: a new event type's schema, its Rust type and
//! every entry the contract tests look for, written in one step. Everything is read and
//! every edit made in memory first, so a refusal or a list that cannot be found leaves the
//! tree as it was.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use clap::Args;
use events_schema::publishers::GATEWAY;

use super::edits;
use super::files::{self, Change};
use super::names::{self, EventName, OwnerKind};
use super::templates;

const SCHEMAS_DIR: &str = "events-schema/schemas";
const SRC_DIR: &str = "events-schema/src";
const LIB: &str = "events-schema/src/lib.rs";
const CATALOG: &str = "events-schema/src/catalog.rs";
const PUBLISHERS: &str = "events-schema/src/publishers.rs";
const CONTRACT_TESTS: &str = "events-schema/tests/contract.rs";

/// `conveyor new event --help`.
pub(crate) const LONG_HELP: &str = "\
Add an event type to the contract in one step: every file a new type needs, written so
that the contract tests pass as they are, with one placeholder field to replace by the
event's own fields.

For TYPE (lowercase noun.past-tense, e.g. notification.sent) owned by SERVICE, under --root:

  events-schema/schemas/TYPE/v1.json
      The JSON Schema (draft 2020-12) producers and consumers validate the event's data
      with: $id, title, the --description, one placeholder field <noun>_id (a UUID) and
      an example of it.
  events-schema/src/<module>.rs
      The Rust type <Noun><Verb>V1 with its serde derives, `impl Event` (its TYPE and
      VERSION) and `impl EventData` (a sample() the tests check against the schema).
      Modules are by noun: the one already holding the noun's types (shipment.* is in
      shipping.rs), else a new one named for the noun's plural (notifications.rs).
  events-schema/src/lib.rs
      `pub mod <module>;` when the module is new.
  events-schema/src/catalog.rs
      `schema!(\"TYPE\", 1),` in SCHEMAS, which compiles the schema into every binary.
  events-schema/src/publishers.rs
      `(\"TYPE\", \"SERVICE\"),` in OWNERS: only SERVICE's broker user may publish TYPE, and
      consumers refuse it from anyone else.
  events-schema/tests/contract.rs
      `typed!(<Noun><Verb>V1),` in typed_events() (and the new module's `use`), so the
      tests prove the type and the schema agree.
  services/<dir>/src/lib.rs
      \"TYPE\" in the `emits` of its DECLARATION, when a service crate there is SERVICE: what AsyncAPI says it sends.

SERVICE is a service already known (an owner in OWNERS, or the SERVICE of a crate under
services/) or a new one, since a team's service may start with its first event; a name a
letter or two from a known one is refused as a likely typo. Nothing is written if TYPE is
already in any of those files, or if a list cannot be found (the error says what to add
by hand).

Then, as the command prints: replace the placeholder field in the schema and the type
together; rebuild and regenerate events-schema/asyncapi.yaml (`conveyor schema asyncapi`)
and broker-config/definitions.json (`conveyor topology export`); run
`cargo test -p events-schema` and `conveyor schema check`.";

#[derive(Debug, Args)]
pub(crate) struct EventArgs {
    /// The event type: lowercase noun.past-tense, e.g. order.shipped, notification.sent.
    #[arg(value_name = "TYPE")]
    event_type: String,
    /// The service that emits it, the only one whose broker user may publish it.
    #[arg(long, value_name = "SERVICE")]
    owner: String,
    /// One sentence on what happened, for the schema's description and the type's doc
    /// comment [default: "A <noun> was <verb>."].
    #[arg(long, value_name = "TEXT")]
    description: Option<String>,
    /// The repository's root, holding events-schema/ (and services/).
    #[arg(long, value_name = "DIR", default_value = ".")]
    root: PathBuf,
}

pub(crate) fn run(args: EventArgs) -> anyhow::Result<()> {
    let name = EventName::parse(&args.event_type)?;
    let tree = Tree::read(&args.root)?;
    let event_type = &name.event_type;
    let places = tree.places_of(&name).join(", ");
    ensure!(
        places.is_empty(),
        "{event_type} is already there: {places}. Nothing was written. A type is added once: to change it, edit those files (a breaking change is a new version, schemas/{event_type}/v2.json); to finish an addition begun by hand, add the missing entries by hand, or remove these and run this again"
    );
    let owner = tree.owner(&args.owner)?;
    let description = description(&name, args.description.as_deref())?;
    let changes = plan(&tree, &name, &owner, &description)?;
    files::write(&args.root, &changes)?;
    report(&args.root, &name, &owner, &changes);
    Ok(())
}

/// The user's sentence on one line, ending with a full stop, without the sentence every
/// schema's description ends with (the schema gets it back); a first one from the name if
/// none is given.
fn description(name: &EventName, given: Option<&str>) -> anyhow::Result<String> {
    let Some(given) = given else {
        return Ok(name.default_description());
    };
    let joined = given.split_whitespace().collect::<Vec<_>>().join(" ");
    let text = joined.replace(templates::OPEN_FIELDS, "");
    let mut text = text.trim_end().to_owned();
    ensure!(
        !text.is_empty(),
        "--description is empty: say in a sentence what happened, e.g. --description \"{}\"",
        name.default_description()
    );
    if !text.ends_with(['.', '!', '?']) {
        text.push('.');
    }
    Ok(text)
}

/// The files the command reads, as text.
struct Tree {
    root: PathBuf,
    lib: String,
    catalog: String,
    publishers: String,
    contract: String,
    /// Each file of events-schema/src/ by module name (`orders`), with its text.
    modules: Vec<(String, String)>,
    /// Each `services/<dir>/src/lib.rs`, by path under the root, with its text.
    services: Vec<(String, String)>,
}

/// Where the type's code goes. Modules are by noun, not by owner (`product.*` and
/// `inventory.*` are both the inventory service's, in two modules; `shipment.*` is in
/// `shipping`), so a noun's module is found by the types it holds.
enum Placement {
    Existing { module: String, text: String },
    New { module: String },
}

/// The owner, checked, and what the tree says of it.
struct Owner {
    name: String,
    kind: OwnerKind,
    /// Whether it owns no type yet (is in no `OWNERS` entry).
    first_type: bool,
    /// Its crate's `services/<dir>/src/lib.rs` and text, whose `DECLARATION` lists what it emits.
    crate_lib: Option<(String, String)>,
}

impl Tree {
    fn read(root: &Path) -> anyhow::Result<Self> {
        let file = |relative: &str| {
            let path = root.join(relative);
            std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "cannot read {}: run `conveyor new event` from the repository's root, or name the root with --root",
                    path.display()
                )
            })
        };
        Ok(Self {
            root: root.to_owned(),
            lib: file(LIB)?,
            catalog: file(CATALOG)?,
            publishers: file(PUBLISHERS)?,
            contract: file(CONTRACT_TESTS)?,
            modules: files::modules(&root.join(SRC_DIR))?,
            services: files::service_crates(root)?,
        })
    }

    /// Everywhere `name` already is: a second run, or an addition begun by hand, is refused
    /// before anything changes.
    fn places_of(&self, name: &EventName) -> Vec<String> {
        let quoted = format!("\"{}\"", name.event_type);
        let type_const = format!("const TYPE: &'static str = {quoted};");
        let schema_dir = format!("{SCHEMAS_DIR}/{}", name.event_type);
        let owned = edits::owners(&self.publishers);
        let mut found = Vec::new();
        if self.root.join(&schema_dir).exists() {
            found.push(format!("{schema_dir}/"));
        }
        if self.catalog.contains(&format!("schema!({quoted}")) {
            found.push(format!("{CATALOG} (SCHEMAS)"));
        }
        if owned.iter().any(|(known, _)| *known == name.event_type) {
            found.push(format!("{PUBLISHERS} (OWNERS)"));
        }
        if self
            .contract
            .contains(&format!("typed!({})", name.struct_name()))
        {
            found.push(format!("{CONTRACT_TESTS} (typed_events)"));
        }
        for (module, text) in &self.modules {
            if text.contains(&type_const) || files::declares(text, &name.struct_name()) {
                found.push(format!("{SRC_DIR}/{module}.rs"));
            }
        }
        for (path, text) in &self.services {
            if let Some((_, _, emits)) = edits::emits_list(text)
                && emits.contains(&quoted)
            {
                found.push(format!("{path} (emits)"));
            }
        }
        found
    }

    /// `owner` checked against the services the tree knows: the owners in `OWNERS` and the
    /// `SERVICE` of each service crate.
    fn owner(&self, owner: &str) -> anyhow::Result<Owner> {
        let owners: BTreeSet<String> = edits::owners(&self.publishers)
            .into_iter()
            .map(|(_, name)| name)
            .collect();
        let mut known = owners.clone();
        for (_, text) in &self.services {
            known.extend(files::service_name(text));
        }
        let kind = names::check_owner(owner, &known, GATEWAY)?;
        let crate_lib = self
            .services
            .iter()
            .find(|(_, text)| files::service_name(text).as_deref() == Some(owner))
            .cloned();
        Ok(Owner {
            name: owner.to_owned(),
            kind,
            first_type: !owners.contains(owner),
            crate_lib,
        })
    }

    fn placement(&self, name: &EventName) -> anyhow::Result<Placement> {
        let noun = format!("const TYPE: &'static str = \"{}.", name.noun);
        if let Some((module, text)) = self.modules.iter().find(|(_, text)| text.contains(&noun)) {
            return Ok(Placement::Existing {
                module: module.clone(),
                text: text.clone(),
            });
        }
        let module = name.new_module();
        let taken = self.modules.iter().any(|(existing, _)| *existing == module);
        ensure!(
            !taken && !self.lib.contains(&format!("mod {module};")),
            "{SRC_DIR}/{module}.rs, the module `{}.*` types would get, already exists and holds no event of that noun: name the event after another noun, or move that module's code and run this again",
            name.noun
        );
        Ok(Placement::New { module })
    }
}

/// The context of an edit that found no place for its line: nothing is written yet.
fn cannot_add(name: &EventName, path: &str) -> String {
    let event_type = &name.event_type;
    format!("cannot add {event_type} to {path}, so nothing was written")
}

/// Every file's new text, made before anything is written.
fn plan(
    tree: &Tree,
    name: &EventName,
    owner: &Owner,
    description: &str,
) -> anyhow::Result<Vec<Change>> {
    let schema = Change::new_file(
        format!("{SCHEMAS_DIR}/{}/v1.json", name.event_type),
        templates::schema(name, description),
        format!(
            "the JSON Schema, with the placeholder field `{}` and its example",
            name.id_field()
        ),
    );
    let (code_changes, new_module) = code(tree, name, owner, description)?;
    let mut changes = vec![schema];
    changes.extend(code_changes);
    changes.extend(registrations(tree, name, owner, new_module.as_deref())?);
    Ok(changes)
}

/// The type's code, in its noun's module or in a new one (then declared in lib.rs, and
/// returned so the contract test imports it).
fn code(
    tree: &Tree,
    name: &EventName,
    owner: &Owner,
    description: &str,
) -> anyhow::Result<(Vec<Change>, Option<String>)> {
    let struct_name = name.struct_name();
    match tree.placement(name)? {
        Placement::Existing { module, text } => {
            let code = templates::type_code(name, description);
            let edited = edits::module_append(&text, &code);
            let what = format!("{struct_name}, beside the other `{}.*` types", name.noun);
            let path = format!("{SRC_DIR}/{module}.rs");
            Ok((vec![Change::edit(&path, edited, what)], None))
        }
        Placement::New { module } => {
            let lib = edits::lib_module(&tree.lib, &module);
            let lib = lib.with_context(|| cannot_add(name, LIB))?;
            let file = Change::new_file(
                format!("{SRC_DIR}/{module}.rs"),
                templates::module(name, &owner.name, description),
                format!("{struct_name}, its Event and EventData impls, in a new module"),
            );
            let declared = Change::edit(LIB, lib, format!("`pub mod {module};`"));
            Ok((vec![file, declared], Some(module)))
        }
    }
}

/// The one-line entries: the catalog, the owners, the contract test's list (with the new
/// module's import) and, when the owner's crate is in the tree, the `emits` of its `DECLARATION`.
fn registrations(
    tree: &Tree,
    name: &EventName,
    owner: &Owner,
    new_module: Option<&str>,
) -> anyhow::Result<Vec<Change>> {
    let event_type = &name.event_type;
    let (catalog, after) =
        edits::catalog(&tree.catalog, name).with_context(|| cannot_add(name, CATALOG))?;
    let publishers = edits::publishers(&tree.publishers, name, &owner.name)
        .with_context(|| cannot_add(name, PUBLISHERS))?;
    let mut contract = tree.contract.clone();
    if let Some(module) = new_module {
        contract = edits::contract_import(&contract, module)
            .with_context(|| cannot_add(name, CONTRACT_TESTS))?
            .text;
    }
    let contract = edits::typed_events(&contract, name, &after)
        .with_context(|| cannot_add(name, CONTRACT_TESTS))?;
    let mut changes = vec![
        Change::edit(
            CATALOG,
            catalog,
            format!("`schema!(\"{event_type}\", 1),` in SCHEMAS"),
        ),
        Change::edit(
            PUBLISHERS,
            publishers,
            format!("`(\"{event_type}\", \"{}\"),` in OWNERS", owner.name),
        ),
        Change::edit(
            CONTRACT_TESTS,
            contract,
            format!("`typed!({}),` in typed_events()", name.struct_name()),
        ),
    ];
    if let Some((path, text)) = &owner.crate_lib
        && let Some(edited) = edits::emits(text, event_type)
    {
        let what = format!("\"{event_type}\" in emits");
        changes.push(Change::edit(path, edited, what));
    }
    Ok(changes)
}

/// What was written, where, and what is left to do.
fn report(root: &Path, name: &EventName, owner: &Owner, changes: &[Change]) {
    let new_service = match owner.kind {
        OwnerKind::New => " (a service new to the system)",
        OwnerKind::Known => "",
    };
    let (event_type, owner_name) = (&name.event_type, &owner.name);
    files::print_changes(
        &format!("Added {event_type} v1, owned by {owner_name}{new_service}:"),
        changes,
    );
    println!("\nNext:");
    for (number, step) in next_steps(root, name, owner, changes).iter().enumerate() {
        println!("  {}. {step}", number + 1);
    }
}

/// The steps left after the files are written, in order.
fn next_steps(root: &Path, name: &EventName, owner: &Owner, changes: &[Change]) -> Vec<String> {
    let schema = changes.first().map_or("", |change| change.path.as_str());
    let mut steps = vec![format!(
        "Give the event its real fields in place of `{}`, in {schema} (properties, required and the example under examples) and in {} with its sample(), together: the contract tests fail while the two disagree.",
        name.id_field(),
        name.struct_name()
    )];
    steps.extend(owner_steps(name, owner, changes));
    // This binary compiled the catalog in before the new schema existed: the generated
    // documents can only be written by a conveyor built after it.
    let from = if root == Path::new(".") {
        String::new()
    } else {
        format!(", from {}", root.display())
    };
    steps.push(format!(
        "Rebuild and regenerate the files made from the code{from}: `cargo run -q -p conveyor-cli -- schema asyncapi` (events-schema/asyncapi.yaml) and `cargo run -q -p conveyor-cli -- topology export` (broker-config/definitions.json). Tests fail until both are current."
    ));
    steps.push(format!(
        "Regenerate the other languages' models{from}: `scripts/generate-models` (clients/python/conveyor_events, clients/typescript/events.ts); CI fails while they lag the schemas."
    ));
    steps.push(CHECK_STEP.to_owned());
    steps
}

/// The last step, the same for every type.
const CHECK_STEP: &str = "Check: `cargo test -p events-schema`, then `conveyor schema check` (a new type breaks nothing; once committed, it guards later changes to it).";

/// What the owner still needs: its `emits` entry where the command could not add it, and
/// its place in the system when this is its first event type.
fn owner_steps(name: &EventName, owner: &Owner, changes: &[Change]) -> Vec<String> {
    let (event_type, owner_name) = (&name.event_type, &owner.name);
    let mut steps = Vec::new();
    match &owner.crate_lib {
        Some((path, _)) if !changes.iter().any(|change| change.path == *path) => {
            steps.push(format!(
                "Add \"{event_type}\" to the `emits` of `DECLARATION` in {path}: no such list was found there."
            ));
        }
        Some(_) => {}
        None => {
            steps.push(format!(
                "Add \"{event_type}\" to the `emits` of the {owner_name} service's `DECLARATION` (no crate under services/ declares `SERVICE = \"{owner_name}\"`)."
            ));
        }
    }
    if owner.first_type {
        steps.push(format!(
            "{owner_name} owns no other event type: if it is not in the system yet, add its DECLARATION to SERVICES in crates/system/src/roster.rs, or the AsyncAPI document shows {event_type} with no sender. `conveyor topology users` then gives its broker user, and no other, the right to publish {event_type}."
        ));
    }
    steps
}
