//! A service's axum routers made from its route table. Each handler is registered against
//! its row, which decides the rest: an open row goes to the router without the token
//! check, a row with a scope gets that scope checked before its handler runs. A handler
//! without a row, or a row without a handler, fails the service's build, so the table and
//! what the service serves cannot drift apart.

use axum::Router;
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;

use super::{Access, Route, Verb};
use crate::{ApiError, Caller};

/// The routes and the table disagree; each entry says where.
#[derive(Debug, thiserror::Error)]
#[error("the routes served and the route table disagree: {}", .0.join("; "))]
pub struct TableMismatch(pub Vec<String>);

/// A service's routes, being registered against its table.
pub struct Routes {
    table: &'static [Route],
    /// Rows that need a token: [`crate::ServiceParts::router`].
    guarded: Router,
    /// Open rows: [`crate::ServiceParts::public`].
    open: Router,
    /// The rows registered so far.
    served: Vec<(Verb, &'static str)>,
    problems: Vec<String>,
}

impl Routes {
    pub fn new(table: &'static [Route]) -> Self {
        Self {
            table,
            guarded: Router::new(),
            open: Router::new(),
            served: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// The handlers registered next take `state`.
    pub fn with_state<S>(self, state: S) -> StatefulRoutes<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        StatefulRoutes {
            routes: self,
            state,
        }
    }

    /// The routers for [`crate::ServiceParts`]: the one behind the token check, and the
    /// open one.
    ///
    /// # Errors
    /// [`TableMismatch`] naming every handler without a row and every row without a
    /// handler.
    pub fn finish(self) -> Result<(Router, Router), TableMismatch> {
        let mut problems = self.problems;
        for row in self.table {
            if !self.served.contains(&(row.verb, row.path)) {
                problems.push(format!("{row} is in the route table but has no handler"));
            }
        }
        if problems.is_empty() {
            Ok((self.guarded, self.open))
        } else {
            Err(TableMismatch(problems))
        }
    }

    fn add(mut self, verb: Verb, path: &'static str, handler: MethodRouter) -> Self {
        let table = self.table;
        let Some(row) = table
            .iter()
            .find(|row| row.verb == verb && row.path == path)
        else {
            self.problems.push(format!(
                "{verb} {path} has a handler but no row in the route table"
            ));
            return self;
        };
        if self.served.contains(&(verb, path)) {
            self.problems.push(format!("{row} has two handlers"));
            return self;
        }
        self.served.push((verb, path));
        let handler = match row.access.scope() {
            Some(scope) => {
                handler.route_layer(axum::middleware::from_fn_with_state(scope, require_scope))
            }
            None => handler,
        };
        if row.access == Access::Open {
            self.open = self.open.route(path, handler);
        } else {
            self.guarded = self.guarded.route(path, handler);
        }
        self
    }
}

/// [`Routes`] whose next handlers take one state.
pub struct StatefulRoutes<S> {
    routes: Routes,
    state: S,
}

impl<S> StatefulRoutes<S>
where
    S: Clone + Send + Sync + 'static,
{
    /// Serves `verb path` with `handler`, as its row says.
    #[must_use]
    pub fn on<H, T>(mut self, verb: Verb, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        let handler: MethodRouter =
            axum::routing::on(verb.filter(), handler).with_state(self.state.clone());
        self.routes = self.routes.add(verb, path, handler);
        self
    }

    /// Back to the routes, to register handlers of another state or to finish.
    pub fn done(self) -> Routes {
        self.routes
    }
}

/// Refuses (403) a caller whose token lacks the row's scope before the handler runs, so a
/// row's scope holds even where a handler forgets to check it. Handlers check it too.
async fn require_scope(
    State(scope): State<&'static str>,
    request: Request,
    next: Next,
) -> Response {
    let verdict = match request.extensions().get::<Caller>() {
        Some(caller) => caller.require(scope),
        // Only outside `require_token`, where no row with a scope belongs.
        None => Err(ApiError::unauthorized("this needs a bearer token")),
    };
    match verdict {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}
