//! Who a verified token speaks for, and what it may do.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ApiError;

/// The claims of a Conveyor token. `sub` is a user's id, `admin:<email>` or
/// `client:<id>`; `scope` is space-separated, as in OAuth 2.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub scope: String,
    /// The event types a producing system may publish over HTTP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// The event types an operator may edit dead letters of (an admin may edit any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edits: Vec<String>,
}

/// The scopes services authorise by.
pub struct Scope;

impl Scope {
    /// May do everything.
    pub const ADMIN: &'static str = "admin";
    /// A person acting on their own user, orders, payments and shipments.
    pub const CUSTOMER: &'static str = "customer";
    /// May create and change products and their stock.
    pub const INVENTORY_WRITE: &'static str = "inventory:write";
    /// May publish events over HTTP (the ones its client was granted).
    pub const EVENTS_PUBLISH: &'static str = "events:publish";
    /// A person who reads and acts on dead letters and flows in the operators' console, and
    /// nothing else; an admin grants it to a user.
    pub const OPERATOR: &'static str = "operator";
}

/// The verified caller of a request. Handlers that take a `Caller` are reachable only with a
/// valid token; an `Option<Caller>` is for routes open to anyone.
#[derive(Debug, Clone)]
pub struct Caller {
    subject: String,
    scopes: Vec<String>,
    events: Vec<String>,
    edits: Vec<String>,
}

impl Caller {
    pub fn from_claims(claims: &Claims) -> Self {
        Self {
            subject: claims.sub.clone(),
            scopes: claims.scope.split_whitespace().map(str::to_owned).collect(),
            events: claims.events.clone(),
            edits: claims.edits.clone(),
        }
    }

    /// The same caller with the scope and edit grants its credential holds now (users'
    /// `GET /auth/grants`), for a session that must not outlive a revocation.
    #[must_use]
    pub fn regranted(&self, scope: &str, edits: Vec<String>) -> Self {
        Self {
            subject: self.subject.clone(),
            scopes: scope.split_whitespace().map(str::to_owned).collect(),
            events: self.events.clone(),
            edits,
        }
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    pub fn is_admin(&self) -> bool {
        self.scopes.iter().any(|scope| scope == Scope::ADMIN)
    }

    /// Whether the token grants `scope`; an admin has every scope.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.is_admin() || self.scopes.iter().any(|granted| granted == scope)
    }

    /// Whether this caller may publish `event_type` over HTTP: the scope, and the type among
    /// the ones granted.
    pub fn may_publish(&self, event_type: &str) -> bool {
        self.has_scope(Scope::EVENTS_PUBLISH)
            && self.events.iter().any(|granted| granted == event_type)
    }

    /// Whether this caller may edit and send again a dead letter of `event_type`: an admin,
    /// or an operator an admin allowed that type.
    pub fn may_edit(&self, event_type: &str) -> bool {
        self.is_admin()
            || (self.has_scope(Scope::OPERATOR)
                && self.edits.iter().any(|granted| granted == event_type))
    }

    /// The user this caller is, when it is a customer.
    pub fn user_id(&self) -> Option<Uuid> {
        if self.scopes.iter().any(|scope| scope == Scope::CUSTOMER) {
            self.subject.parse().ok()
        } else {
            None
        }
    }

    /// Whether this caller may read and act on what belongs to `user`: the user themselves,
    /// or an admin.
    pub fn may_act_for(&self, user: Uuid) -> bool {
        self.is_admin() || self.user_id() == Some(user)
    }

    /// Refuses unless the token grants `scope`.
    ///
    /// # Errors
    /// A 403 naming the missing scope.
    pub fn require(&self, scope: &str) -> Result<(), ApiError> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the {scope:?} scope, which your token does not grant"
            )))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Absent only on a route outside `require_token`: refuse rather than serve it open.
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("this needs a bearer token"))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(sub: &str, scope: &str) -> Caller {
        Caller::from_claims(&Claims {
            iss: String::new(),
            aud: String::new(),
            sub: sub.to_owned(),
            exp: 0,
            iat: 0,
            nbf: 0,
            scope: scope.to_owned(),
            events: Vec::new(),
            edits: Vec::new(),
        })
    }

    #[test]
    fn a_customer_acts_only_for_themselves_and_an_admin_for_everyone() {
        let me = Uuid::now_v7();
        let someone = Uuid::now_v7();
        let customer = caller(&me.to_string(), "customer");
        assert!(customer.may_act_for(me));
        assert!(!customer.may_act_for(someone));
        assert!(!customer.has_scope(Scope::INVENTORY_WRITE));
        let admin = caller("admin:ops@example.com", "admin");
        assert!(admin.may_act_for(someone));
        assert!(admin.has_scope(Scope::INVENTORY_WRITE));
        // A client whose id happens to look like a user's id is not that user.
        let client = caller(&me.to_string(), "inventory:write");
        assert!(!client.may_act_for(me));
        assert!(client.has_scope(Scope::INVENTORY_WRITE));
    }
}
