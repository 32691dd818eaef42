//! Flows as data. A choreographed flow (the order saga, a return) is declared once, as a
//! [`Flow`]: the event that starts it, each step (an event in, the service that handles it,
//! the events it may answer with), the events that end it and how, what each participant
//! undoes when it fails, and its deadline. The declaration is checked against the event
//! contract and the services' own declarations ([`check`]), so it cannot drift from the code
//! that runs the flow, and drawn ([`mermaid`]).
//!
//! No domain words live here: the reference system's crates declare their flows.
//!
//! # Layout
//!
//! - `flow`: the declaration's types.
//! - `check`: a declaration against what the contract and the services say.
//! - `diagram`: a declaration as a Mermaid flowchart.
//! - `metrics`: the same series for every flow (runs started, ended by outcome and reason,
//!   their duration, in flight).
//! - `reconcile`: each finished run against what its participants' records hold, through
//!   the agreements the flow declares.
//! - `guard`: the compensation guard a flow's participants share: remembering failed runs,
//!   so a late step is skipped, and undoing a step when a run fails.
//! - `map`, `trace`: who emits and handles each event type, and where a run of a flow is
//!   and why, read from the services' own records.

mod check;
mod diagram;
mod flow;
pub mod guard;
pub mod map;
pub mod metrics;
pub mod reconcile;
pub mod trace;

pub use check::{Participants, check};
pub use diagram::mermaid;
pub use flow::{Agreement, Compensation, Deadline, End, Flow, Outcome, Runs, Step};
pub use guard::{Compensate, FailedRuns, UndoOnFailure, run_key};
