//! The audit log: every replay, move and purge, by whom, when, with which filters and how
//! many, as `conveyor dlq audit` reads it from the broker.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use conveyor::dead_letter::audit::{self, AuditRecord, AuditStatus};
use maud::{Markup, html};

use super::layout::{self, count};
use crate::AppState;
use crate::session::Operator;

/// Records shown, the newest.
const SHOWN: usize = 200;

pub(crate) async fn page(State(state): State<Arc<AppState>>, operator: Operator) -> Response {
    let body = match audit::read(&state.amqp, &state.names, SHOWN).await {
        Ok(log) => html! {
            p.hint { (count(log.total)) " records in " code { (state.names.dead_letter_audit_queue()) } "; the newest " (log.records.len()) ", newest first." }
            @if log.unreadable > 0 {
                p.problem { (count(log.unreadable)) " messages in the log are not records (written by something else)." }
            }
            (records(&log.records))
        },
        Err(error) => {
            html! { div.problem role="alert" { "The audit log could not be read: " (error.to_string()) } }
        }
    };
    let body = html! { h1 { "Audit" } (body) };
    layout::page("Audit", "/audit", &operator, body)
}

fn records(records: &[AuditRecord]) -> Markup {
    html! {
        table.audit {
            thead { tr {
                th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "What" }
                th scope="col" { "Service" } th scope="col" { "To" } th scope="col" { "Status" }
                th scope="col" { "Done" } th scope="col" { "Filters" }
            } }
            tbody {
                @for record in records.iter().rev() {
                    tr {
                        td { (record.at.format("%Y-%m-%d %H:%M:%S")) }
                        td { (record.operator) }
                        td { (record.command) }
                        td { (record.service) }
                        td { (record.target) }
                        td {
                            (status(record.status))
                            @if let Some(mode) = &record.mode { " (" (mode) ")" }
                            @if let Some(outcome) = &record.outcome { ": " (outcome) }
                            @if let Some(error) = &record.error { ": " (error) }
                        }
                        td { (record.done.map_or_else(|| "–".to_owned(), count)) }
                        td.filters { (record.filters.to_string()) }
                    }
                }
            }
        }
    }
}

fn status(status: AuditStatus) -> &'static str {
    match status {
        AuditStatus::Started => "started",
        AuditStatus::Finished => "finished",
        AuditStatus::Failed => "failed",
        AuditStatus::Paused => "paused",
        AuditStatus::Resumed => "resumed",
    }
}
