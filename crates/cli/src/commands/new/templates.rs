//! The text of what `conveyor new event` writes: a schema and a Rust type that agree, with
//! one placeholder field, shaped as the existing ones are so the contract tests pass as is.

use super::names::EventName;

/// How every event schema's description ends: schemas allow fields they do not list.
pub(crate) const OPEN_FIELDS: &str = "Fields not listed here may be added in later revisions of this version; consumers ignore them.";

/// The placeholder field's example: a UUID in the lowercase form the schemas' pattern takes.
const EXAMPLE_ID: &str = "0192f1c4-7e1a-7c3b-9d2e-4f5a6b7c8d9e";

/// A v1 schema, as the existing ones are laid out (2-space indents, `$id` relative, a
/// documented example); `@…@` are filled in.
const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "$id": "events-schema/@TYPE@/v1",
  "title": "@TYPE@ v1",
  "description": @DESCRIPTION@,
  "type": "object",
  "required": [
    "@FIELD@"
  ],
  "properties": {
    "@FIELD@": {
      "type": "string",
      "format": "uuid",
      "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
      "description": "The @NOUN@."
    }
  },
  "examples": [
    {
      "@FIELD@": "@EXAMPLE_ID@"
    }
  ]
}
"#;

/// The head of a module for a noun that has none.
const MODULE_HEAD: &str = "//! Events of the @OWNER@ service.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Event, EventData};

";

/// The type, its `Event` impl (type and version) and its `EventData` impl (the sample the
/// contract tests validate against the schema).
const TYPE_CODE: &str = "#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct @STRUCT@ {
    pub @FIELD@: Uuid,
}

impl Event for @STRUCT@ {
    const TYPE: &'static str = \"@TYPE@\";
    const VERSION: u32 = 1;
}

impl EventData for @STRUCT@ {
    fn sample() -> Self {
        Self {
            @FIELD@: Uuid::now_v7(),
        }
    }
}
";

/// The v1 schema of `name`; `description` is the user's sentence, without [`OPEN_FIELDS`].
pub(crate) fn schema(name: &EventName, description: &str) -> String {
    let description = format!("{description} {OPEN_FIELDS}");
    // Through serde_json, so quotes, backslashes and control characters are escaped; the
    // user's text is filled in last so that nothing in it is taken for a placeholder.
    let quoted = serde_json::Value::String(description).to_string();
    SCHEMA
        .replace("@TYPE@", &name.event_type)
        .replace("@FIELD@", &name.id_field())
        .replace("@NOUN@", &name.noun_words())
        .replace("@EXAMPLE_ID@", EXAMPLE_ID)
        .replace("@DESCRIPTION@", &quoted)
}

/// The Rust type of `name`, documented with `description`.
pub(crate) fn type_code(name: &EventName, description: &str) -> String {
    let code = TYPE_CODE
        .replace("@STRUCT@", &name.struct_name())
        .replace("@FIELD@", &name.id_field())
        .replace("@TYPE@", &name.event_type);
    format!("{}{code}", doc_comment(description))
}

/// A new module holding only the type of `name`.
pub(crate) fn module(name: &EventName, owner: &str, description: &str) -> String {
    let head = MODULE_HEAD.replace("@OWNER@", owner);
    format!("{head}{}", type_code(name, description))
}

/// `text` as `///` lines of at most 92 columns, as the crate's comments are wrapped.
fn doc_comment(text: &str) -> String {
    let mut lines = Vec::new();
    let mut line = String::from("///");
    for word in text.split_whitespace() {
        if line.len() > 3 && line.len() + 1 + word.len() > 92 {
            lines.push(std::mem::replace(&mut line, String::from("///")));
        }
        line.push(' ');
        line.push_str(word);
    }
    lines.push(line);
    let mut comment = lines.join("\n");
    comment.push('\n');
    comment
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_is_valid_json_with_the_names_filled_in() {
        let name = EventName::parse("notification.sent").unwrap();
        let text = schema(&name, "A \"quoted\" notice @FIELD@ went out.");
        let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(schema["$id"], "events-schema/notification.sent/v1");
        assert_eq!(schema["title"], "notification.sent v1");
        assert_eq!(schema["required"][0], "notification_id");
        assert_eq!(schema["properties"]["notification_id"]["format"], "uuid");
        assert_eq!(schema["examples"][0]["notification_id"], EXAMPLE_ID);
        let description = schema["description"].as_str().unwrap();
        assert!(description.starts_with("A \"quoted\" notice @FIELD@ went out. Fields"));
        let leftover = text.contains("@TYPE@") || text.contains("@NOUN@");
        assert!(!leftover, "{text}");
    }

    #[test]
    fn the_type_is_documented_and_named_after_the_event() {
        let name = EventName::parse("notification.sent").unwrap();
        let long = "word ".repeat(40);
        let code = module(&name, "notifications", &long);
        assert!(code.starts_with("//! Events of the notifications service.\n"));
        let declared = "pub struct NotificationSentV1 {\n    pub notification_id: Uuid,\n}";
        assert!(code.contains(declared), "{code}");
        assert!(code.contains("const TYPE: &'static str = \"notification.sent\";"));
        assert!(code.lines().all(|line| line.len() <= 92), "{code}");
        assert!(code.lines().filter(|line| line.starts_with("///")).count() > 1);
    }
}
