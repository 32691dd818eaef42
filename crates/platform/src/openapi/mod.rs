//! OpenAPI 3.1 documents of the HTTP APIs, made from the code rather than written beside it.
//!
//! What a route is (method, path, who may call it, whether the gateway publishes it) is its
//! row in [`crate::routes`]; the document takes it from there, so it cannot say otherwise
//! than the router and the gateway do. What a route takes and answers is described next to
//! its handler, with an [`Operation`]: the schemas of bodies, queries and answers are
//! derived by schemars from the very types the handlers read and write (with the limits of
//! [`crate::input`] and the money ceilings as their attributes), and what the layers in
//! front of every handler answer (401, 403, 404, 503, a malformed body or query) is added
//! from the row. Each service serves its document at `GET /openapi.json`; the gateway
//! serves [`public_document`], made from the services' documents, at `GET /api/openapi.json`.
//!
//! Why not utoipa's `#[utoipa::path]`: it would state each route's method, path and security
//! a second time, beside the table that the routers and the gateway already follow.
//!
//! # Layout
//!
//! - `describe`: [`Operation`] and [`Param`], what a service writes next to its handlers.
//! - `api`: [`Api`], a service's descriptions against its table, and its document.
//! - `document`: one operation made from a row and its description, and the document's frame.
//! - `responses`: the answers of an operation, its handler's and its layers'.
//! - `schema`: the schema generators, and the text rules as patterns for attributes.
//! - `runner`: the health, readiness, metrics and document routes every service has.
//! - `public`: the gateway's document, from the services' documents.
//! - `check`: how a document and the rows it should describe disagree, for tests.

mod api;
mod check;
mod describe;
mod document;
mod public;
mod responses;
mod runner;
mod schema;

pub use api::Api;
pub use check::{assert_describes, disagreements, operations, public_rows, service_rows};
pub use describe::{Operation, Param};
pub use document::{BEARER, OPENAPI_VERSION, security};
pub use public::public_document;
pub use schema::{
    COUNTRY, CURRENCY, EMAIL, NOT_BLANK, NUL_FREE, ONE_LINE, SKU, TRIMMED_NOT_BLANK,
    TRIMMED_ONE_LINE,
};

#[cfg(test)]
mod tests;
