//! What a service says of one of its routes for its OpenAPI document, written next to the
//! handler: a summary, the parameters, the body and the answers the handler itself gives.
//! The method, the path and who may call it are not repeated: they come from the route's
//! row, and what the layers in front of every handler answer (401, 403, 503, a malformed
//! body or query) is added from the row and from what the route reads.

use axum::http::StatusCode;
use schemars::JsonSchema;
use serde_json::{Value, json};

use super::schema::{ONE_LINE, SKU, SchemaFn, Source, derived};
use crate::input::MAX_SKU_CHARS;

/// JSON, as every body and answer is but a sign-in's form and the plain-text probes.
pub(crate) const JSON: &str = "application/json";
/// An HTML form's encoding, as OAuth 2 token requests are sent.
pub(crate) const FORM: &str = "application/x-www-form-urlencoded";

/// A parameter of a route: in its path (one per `{name}` of the template) or a header.
#[derive(Clone)]
pub struct Param {
    pub(crate) name: &'static str,
    /// `path` or `header`.
    pub(crate) location: &'static str,
    pub(crate) description: &'static str,
    pub(crate) schema: Value,
}

impl Param {
    /// A path parameter read as a UUID ([`crate::parse_uuid`]): one that is not names
    /// nothing (404).
    pub fn uuid(name: &'static str, description: &'static str) -> Self {
        Self::path(
            name,
            description,
            json!({ "type": "string", "format": "uuid" }),
        )
    }

    /// A text id in the path, read with [`crate::input::path_text`]: at most `max_chars`
    /// characters and no control character, or it names nothing (404).
    pub fn text(name: &'static str, description: &'static str, max_chars: usize) -> Self {
        let schema = json!({
            "type": "string", "minLength": 1, "maxLength": max_chars, "pattern": ONE_LINE,
        });
        Self::path(name, description, schema)
    }

    /// A SKU in the path: one that is not a SKU names no product (404).
    pub fn sku(name: &'static str, description: &'static str) -> Self {
        let schema = json!({ "type": "string", "maxLength": MAX_SKU_CHARS, "pattern": SKU });
        Self::path(name, description, schema)
    }

    /// An optional request header.
    pub fn header(name: &'static str, description: &'static str, schema: Value) -> Self {
        Self {
            name,
            location: "header",
            description,
            schema,
        }
    }

    fn path(name: &'static str, description: &'static str, schema: Value) -> Self {
        Self {
            name,
            location: "path",
            description,
            schema,
        }
    }
}

/// A request body: its media types (each with the same fields) and its schema.
#[derive(Clone)]
pub(crate) struct Body {
    pub(crate) media: &'static [&'static str],
    pub(crate) schema: Source,
}

/// What an answer carries.
#[derive(Clone)]
pub(crate) enum Content {
    /// JSON of this schema.
    Json(Source),
    /// The JSON error every refusal is: `{"error": "…"}`.
    Error,
    /// Plain text.
    Text,
}

/// One answer a handler gives.
#[derive(Clone)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) description: &'static str,
    pub(crate) content: Content,
}

/// What one route takes and answers.
#[derive(Clone)]
pub struct Operation {
    pub(crate) summary: &'static str,
    pub(crate) description: Option<&'static str>,
    pub(crate) params: Vec<Param>,
    pub(crate) query: Option<SchemaFn>,
    pub(crate) body: Option<Body>,
    pub(crate) replies: Vec<Reply>,
}

impl Operation {
    /// `GET /cache/users/{id}`, which every service keeping a copy of users answers alike
    /// but for its summary and the `fields` of a user it keeps.
    pub fn cached_user(summary: &'static str, fields: &'static str) -> Self {
        Self::new(summary)
            .param(Param::uuid("id", "The user's id."))
            .reply_object(StatusCode::OK, fields)
            .refusal(StatusCode::NOT_FOUND, "The user is not cached (yet).")
    }

    /// A route, in one line.
    pub fn new(summary: &'static str) -> Self {
        Self {
            summary,
            description: None,
            params: Vec::new(),
            query: None,
            body: None,
            replies: Vec::new(),
        }
    }

    /// More about it than its summary says.
    #[must_use]
    pub fn describe(mut self, description: &'static str) -> Self {
        self.description = Some(description);
        self
    }

    #[must_use]
    pub fn param(mut self, param: Param) -> Self {
        self.params.push(param);
        self
    }

    /// Its query, as `T` (the type its `Query` extractor reads) describes it: each field a
    /// parameter.
    #[must_use]
    pub fn query<T: JsonSchema>(mut self) -> Self {
        let schema: SchemaFn = derived::<T>;
        self.query = Some(schema);
        self
    }

    /// A JSON body, as `T` (the type its `JsonBody` reads) describes it.
    #[must_use]
    pub fn json_body<T: JsonSchema>(self) -> Self {
        let schema: SchemaFn = derived::<T>;
        self.body(&[JSON], Source::Derived(schema))
    }

    /// A body sent as a form or as JSON, with the same fields, as `T` describes them.
    #[must_use]
    pub fn form_or_json_body<T: JsonSchema>(self) -> Self {
        let schema: SchemaFn = derived::<T>;
        self.body(&[FORM, JSON], Source::Derived(schema))
    }

    /// A JSON body of a schema no Rust type has (a contract's).
    #[must_use]
    pub fn json_body_schema(self, schema: Value) -> Self {
        self.body(&[JSON], Source::Given(schema))
    }

    /// An answer of JSON as `T` (the type the handler writes) describes it.
    #[must_use]
    pub fn reply<T: JsonSchema>(self, status: StatusCode, description: &'static str) -> Self {
        let schema: SchemaFn = derived::<T>;
        self.answer(status, description, Content::Json(Source::Derived(schema)))
    }

    /// An answer of JSON of a schema no Rust type has.
    #[must_use]
    pub fn reply_schema(
        self,
        status: StatusCode,
        description: &'static str,
        schema: Value,
    ) -> Self {
        self.answer(status, description, Content::Json(Source::Given(schema)))
    }

    /// An answer of a JSON object that no Rust type describes (one the handler writes
    /// with `json!`, or passes on).
    #[must_use]
    pub fn reply_object(self, status: StatusCode, description: &'static str) -> Self {
        let schema = Source::Given(json!({ "type": "object" }));
        self.answer(status, description, Content::Json(schema))
    }

    /// An answer of plain text.
    #[must_use]
    pub fn text_reply(self, status: StatusCode, description: &'static str) -> Self {
        self.answer(status, description, Content::Text)
    }

    /// A refusal the handler gives, as the JSON error every refusal is. One the layers in
    /// front of it give too (a 422 for a body's fields) is described by this instead.
    #[must_use]
    pub fn refusal(self, status: StatusCode, description: &'static str) -> Self {
        self.answer(status, description, Content::Error)
    }

    fn body(mut self, media: &'static [&'static str], schema: Source) -> Self {
        self.body = Some(Body { media, schema });
        self
    }

    fn answer(mut self, status: StatusCode, description: &'static str, content: Content) -> Self {
        self.replies.retain(|reply| reply.status != status);
        self.replies.push(Reply {
            status,
            description,
            content,
        });
        self
    }
}
