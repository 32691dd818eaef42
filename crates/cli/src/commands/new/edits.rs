//! The registrations of a new type, each a pure edit of a file's text. The new line goes
//! where a reader of that list would look for it (beside its noun's types, or its owner's),
//! so each list keeps the order people gave it. An edit that cannot find its list fails,
//! naming the line to add by hand, before anything is written.

use anyhow::{Context, bail};

use super::names::{EventName, struct_name};

/// A file's new text and the line (1-based) the edit added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Edited {
    pub(crate) text: String,
    pub(crate) line: usize,
}

/// `text` with `new` (whole lines, without newlines) inserted before line `index` (0-based);
/// past the last line, at the end.
pub(crate) fn insert_lines(text: &str, index: usize, new: &[String]) -> String {
    let mut out = String::with_capacity(text.len() + 128);
    let mut lines = text.split_inclusive('\n');
    for line in lines.by_ref().take(index) {
        out.push_str(line);
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    for line in new {
        out.push_str(line);
        out.push('\n');
    }
    out.extend(lines);
    out
}

/// The 0-based index range of a list's entries: the lines after the first one starting with
/// `opening` (once indented) up to the first line that is `closing` (trimmed).
fn block(text: &str, opening: &str, closing: &str) -> Option<(usize, usize)> {
    let opens = |line: &&str| line.trim_start().starts_with(opening);
    let closes = |line: &&str| line.trim() == closing;
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(opens)? + 1;
    let end = start + lines[start..].iter().position(closes)?;
    Some((start, end))
}

/// `schema!("order.created", 1),` → (`order.created`, 1).
fn schema_entry(line: &str) -> Option<(&str, u32)> {
    let inner = line.trim().strip_prefix("schema!(\"")?;
    let (event_type, version) = inner.strip_suffix("),")?.split_once("\", ")?;
    Some((event_type, version.parse().ok()?))
}

/// Adds `schema!("<type>", 1),` to `SCHEMAS`: after the noun's last v1 type, else after the
/// last v1 type (the list holds every v1, grouped by noun, then the later versions).
/// Also returns the type it went after, which the contract test's list follows too.
pub(crate) fn catalog(text: &str, name: &EventName) -> anyhow::Result<(Edited, String)> {
    let line = format!("    schema!(\"{}\", 1),", name.event_type);
    let by_hand = format!("add `{}` to SCHEMAS by hand", line.trim());
    let (start, end) = block(text, "pub const SCHEMAS", "];")
        .with_context(|| format!("no `pub const SCHEMAS … ];` list found: {by_hand}"))?;
    let lines: Vec<&str> = text.lines().collect();
    let v1: Vec<(usize, &str)> = (start..end)
        .filter_map(|index| match schema_entry(lines[index]) {
            Some((event_type, 1)) => Some((index, event_type)),
            _ => None,
        })
        .collect();
    let noun = format!("{}.", name.noun);
    let Some(&(index, after)) = v1
        .iter()
        .rfind(|(_, event_type)| event_type.starts_with(&noun))
        .or_else(|| v1.last())
    else {
        bail!("SCHEMAS has no `schema!(\"…\", 1),` entry to add after: {by_hand}");
    };
    let edited = Edited {
        text: insert_lines(text, index + 1, &[line]),
        line: index + 2,
    };
    Ok((edited, after.to_owned()))
}

/// `("order.created", "orders"),` → (`order.created`, `orders`).
fn owner_entry(line: &str) -> Option<(&str, &str)> {
    let inner = line.trim().strip_prefix("(\"")?.strip_suffix("\"),")?;
    inner.split_once("\", \"")
}

/// The entries of `OWNERS`: every (type, owner).
pub(crate) fn owners(text: &str) -> Vec<(String, String)> {
    let Some((start, end)) = block(text, "pub const OWNERS", "];") else {
        return Vec::new();
    };
    text.lines()
        .skip(start)
        .take(end - start)
        .filter_map(owner_entry)
        .map(|(event_type, owner)| (event_type.to_owned(), owner.to_owned()))
        .collect()
}

/// Adds `("<type>", "<owner>"),` to `OWNERS`: after the noun's last type, else after the
/// owner's last, else at the end (the list is grouped by owner, and within it by noun).
pub(crate) fn publishers(text: &str, name: &EventName, owner: &str) -> anyhow::Result<Edited> {
    let line = format!("    (\"{}\", \"{owner}\"),", name.event_type);
    let by_hand = format!("add `{}` to OWNERS by hand", line.trim());
    let (start, end) = block(text, "pub const OWNERS", "];")
        .with_context(|| format!("no `pub const OWNERS … ];` list found: {by_hand}"))?;
    let lines: Vec<&str> = text.lines().collect();
    let entries: Vec<(usize, (&str, &str))> = (start..end)
        .filter_map(|index| owner_entry(lines[index]).map(|entry| (index, entry)))
        .collect();
    let noun = format!("{}.", name.noun);
    let index = entries
        .iter()
        .rfind(|(_, (event_type, _))| event_type.starts_with(&noun))
        .or_else(|| entries.iter().rfind(|(_, (_, known))| *known == owner))
        .map_or(end, |(index, _)| index + 1);
    Ok(Edited {
        text: insert_lines(text, index, &[line]),
        line: index + 1,
    })
}

/// Adds `typed!(<Struct>),` to the contract test's `typed_events()`: after the type the
/// catalog entry went after (`after`), so both lists keep one order; else after the last v1.
pub(crate) fn typed_events(text: &str, name: &EventName, after: &str) -> anyhow::Result<Edited> {
    let line = format!("        typed!({}),", name.struct_name());
    let by_hand = format!("add `{}` to typed_events() by hand", line.trim());
    let (start, end) = block(text, "fn typed_events()", "]")
        .with_context(|| format!("no `fn typed_events()` with its `vec![…]` found: {by_hand}"))?;
    let anchor = format!("typed!({}),", struct_name(after, 1));
    let lines: Vec<&str> = text.lines().collect();
    let is_v1 = |index: &usize| {
        let entry = lines[*index].trim();
        entry.starts_with("typed!(") && entry.ends_with("V1),")
    };
    let index = (start..end)
        .rfind(|index| lines[*index].trim() == anchor)
        .or_else(|| (start..end).rfind(is_v1))
        .with_context(|| format!("typed_events() has no `typed!(…V1),` entry: {by_hand}"))?;
    Ok(Edited {
        text: insert_lines(text, index + 1, &[line]),
        line: index + 2,
    })
}

/// Index of the first of `names` (each with its line index) after `new` alphabetically, else
/// just past the last: where `new` goes in a list kept sorted, as rustfmt keeps `mod` and
/// `use` lines.
fn sorted_position(names: &[(usize, &str)], new: &str) -> Option<usize> {
    names
        .iter()
        .find(|(_, existing)| *existing > new)
        .map(|(index, _)| *index)
        .or_else(|| names.last().map(|(index, _)| index + 1))
}

/// Adds `use events_schema::<module>::*;` among the contract test's module imports.
pub(crate) fn contract_import(text: &str, module: &str) -> anyhow::Result<Edited> {
    let line = format!("use events_schema::{module}::*;");
    let imports: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter_map(|(index, line)| {
            let path = line.strip_prefix("use events_schema::")?;
            Some((index, path.split_once("::")?.0))
        })
        .collect();
    let index = sorted_position(&imports, module)
        .with_context(|| format!("no `use events_schema::…;` line: add `{line}` by hand"))?;
    Ok(Edited {
        text: insert_lines(text, index, &[line]),
        line: index + 1,
    })
}

/// Adds `pub mod <module>;` among the crate's `mod` lines, and names the module in the
/// crate doc's list of typed-event modules if it has one.
pub(crate) fn lib_module(text: &str, module: &str) -> anyhow::Result<Edited> {
    let line = format!("pub mod {module};");
    let modules: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter_map(|(index, line)| {
            let rest = line.strip_prefix("pub ").unwrap_or(line);
            Some((index, rest.strip_prefix("mod ")?.strip_suffix(';')?))
        })
        .collect();
    let index = sorted_position(&modules, module)
        .with_context(|| format!("no `mod …;` line to add beside: add `{line}` by hand"))?;
    let text = insert_lines(text, index, &[line]);
    Ok(Edited {
        text: name_in_doc_list(&text, module),
        line: index + 1,
    })
}

/// The crate doc's list of typed-event modules (`//! - `users`, …: the typed events.`) with
/// `module` added, split in two if it would pass 100 columns; unchanged without that line.
fn name_in_doc_list(text: &str, module: &str) -> String {
    const END: &str = ": the typed events.";
    let Some(old) = text
        .lines()
        .find(|line| line.starts_with("//! ") && line.contains('`') && line.ends_with(END))
    else {
        return text.to_owned();
    };
    let new = format!("{}, `{module}`{END}", &old[..old.len() - END.len()]);
    let split = new.get(..100).and_then(|head| head.rfind(", "));
    let new = match split {
        Some(split) if new.len() > 100 => {
            format!("{},\n//!   {}", &new[..split], &new[split + 2..])
        }
        _ => new,
    };
    text.replacen(old, &new, 1)
}

/// Adds `line` after the last line of `text` that `is_anchor` accepts (its end of line left
/// out).
pub(crate) fn after_last_line(
    text: &str,
    is_anchor: impl Fn(&str) -> bool,
    line: &str,
) -> Option<Edited> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let index = lines
        .iter()
        .rposition(|candidate| is_anchor(candidate.trim_end()))?;
    let mut edited = lines[..=index].concat();
    if !edited.ends_with('\n') {
        edited.push('\n');
    }
    edited.push_str(line);
    edited.push('\n');
    edited.push_str(&lines[index + 1..].concat());
    Some(Edited {
        text: edited,
        line: index + 2,
    })
}

/// Where the `emits` of a service's `DECLARATION` is (byte range) and what it lists.
pub(crate) fn emits_list(text: &str) -> Option<(usize, usize, Vec<String>)> {
    const OPENING: &str = "    emits: &[";
    let start = text.find(OPENING)?;
    let end = start + text[start..].find("],")? + 2;
    let items = text[start + OPENING.len()..end - 2]
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect();
    Some((start, end, items))
}

/// Adds `"<type>"` to the `emits` of a service's `DECLARATION`, on one line or one item per
/// line as rustfmt writes arrays (one line while it fits in 60 columns).
pub(crate) fn emits(text: &str, event_type: &str) -> Option<Edited> {
    let (start, end, mut items) = emits_list(text)?;
    items.push(format!("\"{event_type}\""));
    let one_line = format!("[{}]", items.join(", "));
    let list = if one_line.len() <= 60 {
        format!("    emits: &{one_line},")
    } else {
        let lines = items.join(",\n        ");
        format!("    emits: &[\n        {lines},\n    ],")
    };
    let line = text[..start].lines().count() + 1;
    Some(Edited {
        text: format!("{}{list}{}", &text[..start], &text[end..]),
        line,
    })
}

/// Adds a new type's `code` to its noun's module, before the later versions
/// (`same_shape_version!` blocks end the modules that have them), else at the end; with
/// `use uuid::Uuid;` if the module had none. The line is the code's first.
pub(crate) fn module_append(text: &str, code: &str) -> Edited {
    let text = with_uuid_import(text);
    let lines: Vec<&str> = text.lines().collect();
    let mut index = lines
        .iter()
        .position(|line| line.starts_with("same_shape_version!"))
        .unwrap_or(lines.len());
    // Keep a comment or attribute above the macro with it.
    while index > 0 && lines[index - 1].trim_start().starts_with(['/', '#']) {
        index -= 1;
    }
    let mut new: Vec<String> = Vec::new();
    if index > 0 && !lines[index - 1].trim().is_empty() {
        new.push(String::new());
    }
    let first = index + new.len() + 1;
    new.extend(code.lines().map(str::to_owned));
    if index < lines.len() {
        new.push(String::new());
    }
    Edited {
        text: insert_lines(&text, index, &new),
        line: first,
    }
}

/// `text` with `use uuid::Uuid;` after its serde import (before its first `use` without
/// one), unless it has it.
fn with_uuid_import(text: &str) -> String {
    if text.lines().any(|line| line == "use uuid::Uuid;") {
        return text.to_owned();
    }
    let lines: Vec<&str> = text.lines().collect();
    let index = lines
        .iter()
        .position(|line| line.starts_with("use serde::"))
        .map(|index| index + 1)
        .or_else(|| lines.iter().position(|line| line.starts_with("use ")))
        .unwrap_or(0);
    insert_lines(text, index, &["use uuid::Uuid;".to_owned()])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(event_type: &str) -> EventName {
        EventName::parse(event_type).unwrap()
    }

    const CATALOG: &str = "pub const SCHEMAS: &[SchemaFile] = &[
    schema!(\"user.updated\", 1),
    schema!(\"order.created\", 1),
    schema!(\"order.confirmed\", 1),
    schema!(\"payment.captured\", 1),
    schema!(\"order.created\", 2),
];
";

    #[test]
    fn the_catalog_entry_goes_after_its_noun_or_after_the_last_v1() {
        let (edited, after) = catalog(CATALOG, &name("order.shipped")).unwrap();
        assert_eq!(after, "order.confirmed");
        assert_eq!(edited.line, 5);
        let line = edited.text.lines().nth(4);
        assert_eq!(line, Some("    schema!(\"order.shipped\", 1),"));
        let (edited, after) = catalog(CATALOG, &name("notification.sent")).unwrap();
        assert_eq!(after, "payment.captured");
        let line = edited.text.lines().nth(5);
        assert_eq!(line, Some("    schema!(\"notification.sent\", 1),"));
        assert!(catalog("const X: u8 = 1;\n", &name("order.shipped")).is_err());
    }

    #[test]
    fn the_owner_entry_goes_beside_its_noun_or_its_owner() {
        let text = "pub const OWNERS: &[(&str, &str)] = &[
    (\"product.created\", \"inventory\"),
    (\"inventory.reserved\", \"inventory\"),
    (\"order.created\", \"orders\"),
];
";
        let edited = publishers(text, &name("product.deleted"), "inventory").unwrap();
        let line = edited.text.lines().nth(2);
        assert_eq!(line, Some("    (\"product.deleted\", \"inventory\"),"));
        let edited = publishers(text, &name("stock.counted"), "inventory").unwrap();
        assert_eq!(edited.line, 4);
        let edited = publishers(text, &name("notification.sent"), "notifications").unwrap();
        let expected = "    (\"notification.sent\", \"notifications\"),";
        assert_eq!(edited.text.lines().nth(4), Some(expected));
        assert_eq!(owners(&edited.text).len(), 4);
    }

    #[test]
    fn modules_and_imports_stay_in_alphabetical_order() {
        let lib = "//! - `users`, `orders`: the typed events.

pub mod asyncapi;
mod catalog;
pub mod orders;
mod yaml;
";
        let edited = lib_module(lib, "notifications").unwrap();
        assert_eq!(edited.line, 5);
        let expected = "//! - `users`, `orders`, `notifications`: the typed events.

pub mod asyncapi;
mod catalog;
pub mod notifications;
pub mod orders;
mod yaml;
";
        assert_eq!(edited.text, expected);
        let tests = "use events_schema::inventory::*;
use events_schema::orders::*;
use events_schema::{Event, SCHEMAS};
";
        let edited = contract_import(tests, "notifications").unwrap();
        let line = edited.text.lines().nth(1);
        assert_eq!(line, Some("use events_schema::notifications::*;"));
        let edited = contract_import(tests, "users").unwrap();
        let line = edited.text.lines().nth(2);
        assert_eq!(line, Some("use events_schema::users::*;"));
    }

    #[test]
    fn a_long_doc_list_is_split_before_100_columns() {
        let lib = format!("//! - {}: the typed events.\n", ["`users`"; 12].join(", "));
        let text = name_in_doc_list(&lib, "line_items");
        assert!(text.lines().all(|line| line.len() <= 100), "{text}");
        let end = "`line_items`: the typed events.\n";
        assert!(text.ends_with(end), "{text}");
        let text = name_in_doc_list(&text, "zones");
        assert!(text.ends_with("`zones`: the typed events.\n"), "{text}");
    }

    #[test]
    fn a_line_goes_after_the_last_of_its_kind() {
        let text = "[deps]\na-service = 1\nb-service = 2\nother = 3\n";
        let is_service = |line: &str| line.contains("-service = ");
        let edited = after_last_line(text, is_service, "c-service = 4").unwrap();
        assert_eq!(
            edited.text,
            "[deps]\na-service = 1\nb-service = 2\nc-service = 4\nother = 3\n"
        );
        assert_eq!(edited.line, 4);
        assert!(after_last_line(text, |line| line.starts_with('z'), "x").is_none());
    }

    #[test]
    fn emits_is_written_as_rustfmt_writes_it() {
        let short = "    name: SERVICE,\n    emits: &[\"a.b\"],\n    routes: ROUTES,\n";
        let edited = emits(short, "a.c").unwrap();
        let expected = "    name: SERVICE,\n    emits: &[\"a.b\", \"a.c\"],\n    routes: ROUTES,\n";
        assert_eq!(edited.text, expected);
        let long = "// x
    emits: &[\"order.created\", \"order.confirmed\", \"order.cancelled\"],
    routes: ROUTES,
";
        let edited = emits(long, "order.shipped").unwrap();
        assert_eq!(edited.line, 2);
        let tail = "        \"order.cancelled\",\n        \"order.shipped\",\n    ],\n    routes: ROUTES,\n";
        assert!(edited.text.ends_with(tail), "{}", edited.text);
        assert!(emits("pub const X: u8 = 1;\n", "a.b").is_none());
    }

    #[test]
    fn the_typed_entry_follows_the_catalog() {
        let text = "fn typed_events() -> Vec<X> {
    vec![
        typed!(OrderCreatedV1),
        typed!(OrderConfirmedV1),
        typed!(OrderCreatedV2),
    ]
}
";
        let edited = typed_events(text, &name("order.shipped"), "order.created").unwrap();
        let line = edited.text.lines().nth(3);
        assert_eq!(line, Some("        typed!(OrderShippedV1),"));
        let edited = typed_events(text, &name("order.shipped"), "gone.away").unwrap();
        assert_eq!(edited.line, 5);
    }

    #[test]
    fn code_goes_before_the_later_versions_with_a_uuid_import() {
        let module = "//! Events.

use serde::{Deserialize, Serialize};

use crate::{Event, EventData};

pub struct AV1;

same_shape_version! {
    AV2 of AV1, version 2
}
";
        let edited = module_append(module, "pub struct BV1;");
        let expected = "//! Events.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Event, EventData};

pub struct AV1;

pub struct BV1;

same_shape_version! {
    AV2 of AV1, version 2
}
";
        assert_eq!(edited.text, expected);
        assert_eq!(edited.line, 10);
        let module = "use uuid::Uuid;\n\npub struct AV1;\n";
        let edited = module_append(module, "pub struct BV1;");
        let expected = "use uuid::Uuid;\n\npub struct AV1;\n\npub struct BV1;\n";
        assert_eq!(edited.text, expected);
        assert_eq!(edited.line, 5);
    }
}
