//! The console's pages, each a module.

pub(crate) mod audit;
pub(crate) mod dead_letters;
pub(crate) mod edit;
pub(crate) mod flows;
pub(crate) mod layout;
pub(crate) mod overview;
pub(crate) mod replay;
pub(crate) mod runbooks;
pub(crate) mod scan;
pub(crate) mod sign_in;
pub(crate) mod transfer;
