//! Returns: a customer sends lines of a confirmed order back, as a run of the return flow
//! ([`RETURN_FLOW`]) that orders starts, keeps and ends.
//!
//! # Layout
//!
//! - `flow`: [`RETURN_FLOW`], the declaration.
//! - `rules`: what may be returned of an order, and its refund.
//! - `store`: the return row and the two ways a pending return ends.
//! - `http`: requesting, reading and cancelling a return.
//! - `handlers`: closing on `return.received`, cancelling on `pickup.failed` or the
//!   return's deadline.

mod flow;
pub(crate) mod handlers;
pub(crate) mod http;
mod rules;
mod store;

pub use flow::RETURN_FLOW;
