//! A service's routes described for its OpenAPI document, each against its row of the
//! service's table, as its handlers are registered against it
//! ([`crate::routes::Routes`]): a description without a row, a row without one, or a row
//! described twice fails the service's build, so the document and what is served cannot
//! drift apart.

use serde_json::{Map, Value, json};

use super::describe::Operation;
use super::document::{frame, insert, operation};
use super::responses::Front;
use super::runner;
use super::schema::Generators;
use crate::routes::{Route, TableMismatch, Verb};

/// A service's routes, being described.
pub struct Api {
    service: &'static str,
    table: &'static [Route],
    front: Front,
    described: Vec<(Route, Operation)>,
    problems: Vec<String>,
}

impl Api {
    /// The routes of `service`, behind a service's layers (the token check, the row's scope,
    /// the HTTP slots); its document also has the runner's health, readiness, metrics and
    /// document routes.
    pub fn new(service: &'static str, table: &'static [Route]) -> Self {
        Self::with_front(service, table, Front::Service)
    }

    /// The gateway's own routes, behind its path check, token check and rate limit; their
    /// paths are under `/api` once [`super::public_document`] puts them there.
    pub fn gateway(table: &'static [Route]) -> Self {
        Self::with_front("gateway", table, Front::Gateway)
    }

    fn with_front(service: &'static str, table: &'static [Route], front: Front) -> Self {
        Self {
            service,
            table,
            front,
            described: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// Describes `verb path`, whose row says the rest.
    #[must_use]
    pub fn on(mut self, verb: Verb, path: &'static str, described: Operation) -> Self {
        let Some(row) = self
            .table
            .iter()
            .find(|row| row.verb == verb && row.path == path)
        else {
            self.problems.push(format!(
                "{verb} {path} is described for the OpenAPI document but has no row in the route table"
            ));
            return self;
        };
        if self.described.iter().any(|(done, _)| done == row) {
            self.problems.push(format!("{row} is described twice"));
            return self;
        }
        self.described.push((*row, described));
        self
    }

    /// The service's OpenAPI document.
    ///
    /// # Errors
    /// [`TableMismatch`] naming every description without a row and every row without one.
    pub fn finish(self) -> Result<Value, TableMismatch> {
        let mut problems = self.problems;
        for row in self.table {
            if !self.described.iter().any(|(done, _)| done == row) {
                problems.push(format!(
                    "{row} is in the route table but not described for the OpenAPI document"
                ));
            }
        }
        if !problems.is_empty() {
            return Err(TableMismatch(problems));
        }
        let mut generators = Generators::new();
        let mut paths = Map::new();
        for (row, described) in &self.described {
            let item = operation(self.service, row, described, self.front, &mut generators);
            insert(&mut paths, row.path.to_owned(), row.verb, item);
        }
        let mut tags = vec![json!({
            "name": self.service,
            "description": format!("The {} service's routes.", self.service),
        })];
        if self.front == Front::Service {
            runner::add(&mut paths, &mut generators);
            tags.push(runner::tag());
        }
        let title = format!("Conveyor {} API", self.service);
        let description = format!(
            "The HTTP API of the {} service, made from its route table and the types its handlers read and write.",
            self.service
        );
        Ok(frame(&title, &description, Value::Array(tags), paths))
    }
}
