//! Edit and retry: one dead letter's data edited in the page, checked against its event's
//! schema (each field at fault shown), confirmed with the change as a JSON Patch, then sent
//! as a new event exactly once (see `conveyor::dead_letter::edit`). The type, source,
//! subject and flow are shown and cannot change. An admin may edit any type; an operator only
//! the types an admin allowed them (`operator_edits`).

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use conveyor::Envelope;
use conveyor::dead_letter::audit::{self, AuditRecord, AuditStatus};
use conveyor::dead_letter::{self, DeadLetter};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::layout;
use crate::AppState;
use crate::session::{self, CSRF_FIELD, Operator};

#[derive(Debug, Deserialize)]
pub(crate) struct EditForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    data: String,
    /// `check` shows what would go; `send` sends it.
    #[serde(default)]
    step: String,
}

/// A field at fault in the edited data, and why.
struct FieldProblem {
    field: String,
    rule: String,
}

/// The letter being edited, and by whom.
struct Editing<'a> {
    operator: &'a Operator,
    service: &'a str,
    letter: DeadLetter,
    event: Envelope,
}

pub(crate) async fn form(
    State(state): State<Arc<AppState>>,
    operator: Operator,
    Path((service, id)): Path<(String, String)>,
) -> Response {
    match editable(&state, &operator, &service, &id).await {
        Ok(editing) => {
            let data = serde_json::to_string_pretty(&editing.event.data).unwrap_or_default();
            editing.page(&data, &[], None)
        }
        Err(refusal) => refusal,
    }
}

pub(crate) async fn submit(
    State(state): State<Arc<AppState>>,
    operator: Operator,
    headers: HeaderMap,
    Path((service, id)): Path<(String, String)>,
    Form(form): Form<EditForm>,
) -> Response {
    if let Err(refusal) = session::acting_form(&headers, &operator, form.csrf.as_deref()) {
        return refusal.into_response();
    }
    let editing = match editable(&state, &operator, &service, &id).await {
        Ok(editing) => editing,
        Err(refusal) => return refusal,
    };
    let data = match parse_data(&form.data) {
        Ok(data) => data,
        Err(rule) => {
            let problem = FieldProblem {
                field: "data".to_owned(),
                rule,
            };
            return editing.refused(&form.data, &[problem]);
        }
    };
    let copy = dead_letter::edited_copy(&editing.event, data.clone());
    let problems = check(&copy);
    if !problems.is_empty() {
        return editing.refused(&form.data, &problems);
    }
    if form.step != "send" {
        let patch = dead_letter::json_patch(&editing.event.data, &copy.data);
        return editing.page(&form.data, &[], Some(&patch));
    }
    send(&state, &operator, &service, &id, data).await
}

/// The edited data: a JSON object, or why not.
fn parse_data(text: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(data) if data.is_object() => Ok(data),
        Ok(_) => Err("must be a JSON object".to_owned()),
        Err(error) => Err(format!("is not JSON: {error}")),
    }
}

/// The letter and its event, if this operator may edit it.
async fn editable<'a>(
    state: &AppState,
    operator: &'a Operator,
    service: &'a str,
    id: &str,
) -> Result<Editing<'a>, Response> {
    let letter = match dead_letter::find(&state.amqp, &state.names, service, id).await {
        Ok(Some(letter)) => letter,
        Ok(None) => {
            return Err(layout::refusal(
                StatusCode::NOT_FOUND,
                "No such dead letter",
                "It is not in the queue: it may have been replayed, moved or purged meanwhile.",
            ));
        }
        Err(error) => {
            return Err(layout::refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "Not read",
                &error.to_string(),
            ));
        }
    };
    let event = dead_letter::event_of(&letter).map_err(|error| {
        layout::refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Not an event",
            &error.to_string(),
        )
    })?;
    if !operator.caller.may_edit(&event.event_type) {
        return Err(layout::refusal(
            StatusCode::FORBIDDEN,
            "Not yours to edit",
            &format!(
                "Editing {} needs an admin, or an operator an admin allowed that type (PATCH /users/{{id}} {{\"operator_edits\": [\"{}\"]}}).",
                event.event_type, event.event_type
            ),
        ));
    }
    Ok(Editing {
        operator,
        service,
        letter,
        event,
    })
}

/// The edited event against the contract: each field at fault, from the envelope's root.
fn check(copy: &Envelope) -> Vec<FieldProblem> {
    let contract = match events_schema::EventContract::shared() {
        Ok(contract) => contract,
        Err(error) => {
            return vec![FieldProblem {
                field: String::new(),
                rule: error.to_string(),
            }];
        }
    };
    let event = serde_json::to_value(copy).unwrap_or_default();
    match contract.validate_event(&event) {
        Ok(()) => Vec::new(),
        Err(violations) => violations
            .violations
            .into_iter()
            .map(|violation| FieldProblem {
                field: violation.field,
                rule: violation.rule,
            })
            .collect(),
    }
}

async fn send(
    state: &AppState,
    operator: &Operator,
    service: &str,
    id: &str,
    data: Value,
) -> Response {
    let run_id = uuid::Uuid::now_v7();
    let who = format!("{} (console)", operator.subject);
    let mut record = AuditRecord {
        filters: serde_json::json!({ "id": id }),
        run_id: Some(run_id),
        ..AuditRecord::new(
            AuditStatus::Started,
            "edit",
            service,
            state.names.service_queue(service),
            who,
        )
    };
    if let Err(error) = audit::append(&state.amqp, &state.names, &record).await {
        return layout::refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not sent",
            &format!("the audit log could not be written, so nothing was sent: {error}"),
        );
    }
    let sent = dead_letter::edit_and_retry(
        &state.amqp,
        &state.names,
        service,
        id,
        data,
        run_id,
        |copy| {
            // The letter sent is read again: its type is checked again too.
            if !operator.caller.may_edit(&copy.event_type) {
                return Err(format!("editing {} is not granted to you", copy.event_type));
            }
            let problems = check(copy);
            if problems.is_empty() {
                Ok(())
            } else {
                let listed: Vec<String> = problems
                    .iter()
                    .map(|problem| format!("{}: {}", problem.field, problem.rule))
                    .collect();
                Err(listed.join("; "))
            }
        },
    )
    .await;
    record.end_edit(&sent);
    let audited = audit::append(&state.amqp, &state.names, &record).await;
    match sent {
        Ok(report) => {
            let body = html! {
                h1 { "Sent" }
                p #edit-sent { (report.event_type) " " code { (report.copy_id) } " went to " code { (state.names.service_queue(service)) }
                    ", caused by " code { (report.original_id) } "; the dead letter is gone." }
                @if let Err(error) = audited { p.problem { "The audit log's end record could not be written: " (error.to_string()) } }
                p { a href=(format!("/dead-letters/{service}")) { "Back to " (service) "'s dead letters" } }
            };
            layout::page("Sent", "/dead-letters", operator, body)
        }
        Err(error) => layout::refusal(StatusCode::CONFLICT, "Not sent", &error.to_string()),
    }
}

impl Editing<'_> {
    /// The page again with `problems` at their fields, as a 422.
    fn refused(&self, text: &str, problems: &[FieldProblem]) -> Response {
        let mut response = self.page(text, problems, None);
        *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        response
    }

    fn page(&self, text: &str, problems: &[FieldProblem], patch: Option<&Value>) -> Response {
        let (letter, event) = (&self.letter, &self.event);
        let id = letter.id.clone().unwrap_or_default();
        let action = format!(
            "/dead-letters/{}/letters/{}/edit",
            self.service,
            system::management::percent_encode(&id)
        );
        let body = html! {
            h1 { "Edit and retry" }
            dl.locked {
                dt { "Event id" } dd { (id) }
                dt { "Type" } dd #edit-type { (event.event_type) }
                dt { "Source" } dd { (event.source) }
                dt { "Subject" } dd { (event.subject.as_deref().unwrap_or("–")) }
                dt { "Flow" } dd { (event.correlationid) }
                dt { "Error" } dd.error { (letter.error.as_deref().unwrap_or("–")) }
            }
            p.hint { "The type, source, subject and flow stay as they are. The copy gets a new event id, with this letter as its cause; once the broker has it, the letter leaves the queue." }
            (problem_list(problems))
            form.edit method="post" action=(action) {
                input type="hidden" name=(CSRF_FIELD) value=(self.operator.csrf);
                label for="edit-data" { "Data (JSON)" }
                textarea #edit-data name="data" rows="18" cols="80" spellcheck="false" aria-invalid=[(!problems.is_empty()).then_some("true")] { (text) }
                @if let Some(patch) = patch {
                    p { "The change, as a JSON Patch:" }
                    pre #edit-patch { (serde_json::to_string_pretty(patch).unwrap_or_default()) }
                    button #send-edit type="submit" name="step" value="send" { "Send it" }
                    " "
                }
                button #check-edit type="submit" name="step" value="check" { "Check" }
            }
        };
        layout::page("Edit and retry", "/dead-letters", self.operator, body)
    }
}

fn problem_list(problems: &[FieldProblem]) -> Markup {
    html! {
        @if !problems.is_empty() {
            div.problem role="alert" #edit-problems {
                p { "Nothing was sent: the edited event breaks its schema." }
                ul {
                    @for problem in problems {
                        li data-field=(problem.field) { code { (if problem.field.is_empty() { "(the event)" } else { problem.field.as_str() }) } ": " (problem.rule) }
                    }
                }
            }
        }
    }
}
