//! One row of a route table: a method, a path template, who may call it, and whether the
//! gateway publishes it.

use std::fmt;

use axum::http::Method;
use axum::routing::MethodFilter;

/// The HTTP methods the services' routes answer. A small enum of our own rather than
/// [`Method`], so that tables are plain constants and a row cannot name a method no service
/// uses (`HEAD` is answered wherever `GET` is, as axum does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verb {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Verb {
    pub const ALL: [Self; 5] = [Self::Get, Self::Post, Self::Put, Self::Patch, Self::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }

    pub fn method(self) -> Method {
        match self {
            Self::Get => Method::GET,
            Self::Post => Method::POST,
            Self::Put => Method::PUT,
            Self::Patch => Method::PATCH,
            Self::Delete => Method::DELETE,
        }
    }

    /// The verb a request's method asks for: `HEAD` is a `GET` without its body.
    pub fn of(method: &Method) -> Option<Self> {
        if *method == Method::HEAD {
            return Some(Self::Get);
        }
        Self::ALL.into_iter().find(|verb| verb.method() == *method)
    }

    /// The filter axum routes this verb with (`GET` brings `HEAD` along).
    pub(crate) fn filter(self) -> MethodFilter {
        match self {
            Self::Get => MethodFilter::GET,
            Self::Post => MethodFilter::POST,
            Self::Put => MethodFilter::PUT,
            Self::Patch => MethodFilter::PATCH,
            Self::Delete => MethodFilter::DELETE,
        }
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who may call a route. A missing, forged or expired token is a 401 on every route but an
/// open one, before any handler runs; what a valid token may then do is this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a token (one that is sent must still be valid).
    Open,
    /// Any valid token; every caller gets the same answer.
    AnyCaller,
    /// Any valid token, answered only for what the caller owns (a customer's own user,
    /// orders, payments, shipments) or for an admin. Anyone else's is refused (403) or
    /// answered as if it did not exist (404, an empty list): never shown.
    Owner,
    /// A token granting this scope; an admin has every scope. Checked before the handler
    /// runs (403), from the row itself.
    Scope(&'static str),
    /// A producing system's token with this scope, for what an admin granted it (event
    /// types): the scope is checked as for [`Access::Scope`], and the handler then refuses
    /// (403) what was not granted, so an admin, who holds every scope but no grant, is refused
    /// too.
    Granted(&'static str),
}

impl Access {
    /// The scope a token must grant before the handler runs, if any.
    pub fn scope(self) -> Option<&'static str> {
        match self {
            Self::Scope(scope) | Self::Granted(scope) => Some(scope),
            Self::Open | Self::AnyCaller | Self::Owner => None,
        }
    }
}

/// The gateway's rate buckets: each client has one per class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RateClass {
    /// Signing in and signing up: tight, since they cost a password hash each.
    Auth,
    /// GET requests.
    Read,
    /// Everything else.
    Write,
}

impl RateClass {
    pub const ALL: [Self; 3] = [Self::Auth, Self::Read, Self::Write];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Read => "read",
            Self::Write => "write",
        }
    }
}

/// Where a route can be called from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// Only on the service's own port: for other services and operators (cached copies,
    /// reservations, republishing, signing keys, health). The gateway answers 404.
    Internal,
    /// Also through the gateway, at `/api` followed by the path, limited in this class.
    Gateway(RateClass),
}

/// One route of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub verb: Verb,
    /// The path at the service, as axum writes templates: `/orders/{id}`.
    pub path: &'static str,
    pub access: Access,
    pub exposure: Exposure,
}

impl Route {
    /// A route clients reach through the gateway too, limited as its verb says: `GET` as a
    /// read, the others as writes.
    pub const fn api(verb: Verb, path: &'static str, access: Access) -> Self {
        let class = match verb {
            Verb::Get => RateClass::Read,
            Verb::Post | Verb::Put | Verb::Patch | Verb::Delete => RateClass::Write,
        };
        Self {
            verb,
            path,
            access,
            exposure: Exposure::Gateway(class),
        }
    }

    /// Signing in or up: open to anyone, and through the gateway in the tight
    /// [`RateClass::Auth`], since each costs a password hash.
    pub const fn sign_in(verb: Verb, path: &'static str) -> Self {
        Self {
            verb,
            path,
            access: Access::Open,
            exposure: Exposure::Gateway(RateClass::Auth),
        }
    }

    /// A route only on the service's own port.
    pub const fn internal(verb: Verb, path: &'static str, access: Access) -> Self {
        Self {
            verb,
            path,
            access,
            exposure: Exposure::Internal,
        }
    }

    /// Whether the gateway publishes it.
    pub fn through_gateway(&self) -> bool {
        matches!(self.exposure, Exposure::Gateway(_))
    }

    /// Its path under the gateway's `/api` prefix (meaningful when it is published there).
    pub fn api_path(&self) -> String {
        format!("/api{}", self.path)
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.verb, self.path)
    }
}
