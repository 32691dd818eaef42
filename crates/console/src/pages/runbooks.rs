//! The runbooks: what each alert of `observability/alerts.yml` means and what to do, from
//! the same list the rules are written from. Each alert links here (`#<anchor>`).

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use maud::html;

use super::layout;
use crate::AppState;
use crate::session::Operator;

pub(crate) async fn page(State(state): State<Arc<AppState>>, operator: Operator) -> Response {
    let alerts = system::alerts::alerts(&state.names);
    let body = html! {
        h1 { "Runbooks" }
        p.hint { "One section per alert Prometheus raises (" code { "observability/alerts.yml" } "); each alert links to its section here." }
        nav.runbook-index { ul { @for alert in &alerts { li { a href=(format!("#{}", alert.anchor)) { (alert.name) } } } } }
        @for alert in &alerts {
            section.runbook id=(alert.anchor) {
                h2 { (alert.name) }
                p { "Fires when " code { (alert.expr) } " holds for " (alert.hold) "." }
                p { (alert.meaning) }
                ol { @for step in &alert.steps { li { (step) } } }
            }
        }
    };
    layout::page("Runbooks", "/runbooks", &operator, body)
}
