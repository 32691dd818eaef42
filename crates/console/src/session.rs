//! Who is signed in: the users service's token, kept in an `HttpOnly`, `SameSite=Strict`
//! cookie and verified on every request against the published keys, so the console keeps no
//! session store and a restart signs nobody out. Only an admin or an operator gets in, by what
//! users says the token's credential grants now: an operator an admin revoked, or whose
//! account was deactivated, is out at the next page, not when the token expires.
//!
//! Every action is a POST that must come from the console's own pages: its `Origin` (or
//! `Referer`) names the host the request was sent to, and its form carries the session's
//! CSRF token, a digest of the token a cross-site page cannot read.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use platform::auth::{Caller, Scope, Verifier};
use sha2::{Digest, Sha256};

use crate::pages::layout;

/// The cookie that holds the token.
pub(crate) const COOKIE: &str = "conveyor_console";
/// The form field that carries the CSRF token.
pub(crate) const CSRF_FIELD: &str = "csrf";

/// How long a page waits for users to say what a session grants now before going on with
/// the token's own grants.
const GRANTS_WAIT: Duration = Duration::from_secs(1);

/// What a page needs to know of its verifier, and where users is asked what a session's
/// credential grants now.
pub(crate) trait HasVerifier {
    fn verifier(&self) -> &Arc<Verifier>;
    /// The client and the base URL users is asked at.
    fn users(&self) -> (&reqwest::Client, &str);
}

/// A signed-in admin or operator.
#[derive(Debug, Clone)]
pub(crate) struct Operator {
    /// The token's subject: a user's id or `admin:<email>`.
    pub(crate) subject: String,
    /// `admin` or `operator`, as shown on the pages.
    pub(crate) role: &'static str,
    /// The CSRF token the session's forms carry.
    pub(crate) csrf: String,
    /// What the token grants, for the checks of single actions (who may edit what).
    pub(crate) caller: Caller,
}

/// Why a page was not served: not signed in (or the token expired), or signed in without
/// the scope.
#[derive(Debug)]
pub(crate) enum Refusal {
    SignIn,
    NotAnOperator,
    Forbidden(&'static str),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::SignIn => Redirect::to("/sign-in").into_response(),
            Self::NotAnOperator => {
                let mut response = layout::refusal(
                    StatusCode::FORBIDDEN,
                    "This console is for operators",
                    "Your account has neither the admin nor the operator scope. An admin grants \
                     it with PATCH /users/{id} {\"operator\": true}; then sign in again.",
                );
                // A session whose grant was revoked ends here: nothing else it could reach
                // (sign-out included) would serve it.
                response
                    .headers_mut()
                    .insert(header::SET_COOKIE, cleared_cookie());
                response
            }
            Self::Forbidden(why) => layout::refusal(StatusCode::FORBIDDEN, "Refused", why),
        }
    }
}

impl<S: HasVerifier + Send + Sync> FromRequestParts<S> for Operator {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Refusal> {
        let token = cookie(&parts.headers, COOKIE).ok_or(Refusal::SignIn)?;
        let caller = state
            .verifier()
            .verify(token)
            .await
            .map_err(|_| Refusal::SignIn)?;
        let (http, users_url) = state.users();
        let caller = match grants_now(http, users_url, token).await {
            GrantsNow::Held(grants) => caller.regranted(&grants.scope, grants.edits),
            GrantsNow::Gone => return Err(Refusal::SignIn),
            // Users is down (maybe the outage the operator is here for), or older than this
            // console: the token's own grants stand until it expires.
            GrantsNow::Unknown => caller,
        };
        operator(&caller, token).ok_or(Refusal::NotAnOperator)
    }
}

/// What users says a session's credential grants now.
enum GrantsNow {
    Held(Grants),
    /// The account is deactivated or gone.
    Gone,
    /// Users could not say.
    Unknown,
}

/// Users' `GET /auth/grants`, as far as the console reads it.
#[derive(serde::Deserialize)]
struct Grants {
    scope: String,
    #[serde(default)]
    edits: Vec<String>,
}

async fn grants_now(http: &reqwest::Client, users_url: &str, token: &str) -> GrantsNow {
    let asked = http
        .get(format!("{users_url}/auth/grants"))
        .bearer_auth(token)
        .timeout(GRANTS_WAIT)
        .send()
        .await;
    let unknown = |why: String| {
        tracing::warn!(
            "users could not say what a session grants now ({why}); the token's own grants stand until it expires"
        );
        GrantsNow::Unknown
    };
    match asked {
        Ok(answer) if answer.status() == StatusCode::UNAUTHORIZED => GrantsNow::Gone,
        Ok(answer) if answer.status().is_success() => match answer.json().await {
            Ok(grants) => GrantsNow::Held(grants),
            Err(error) => unknown(format!("its answer did not read: {error}")),
        },
        Ok(answer) => unknown(format!("it answered {}", answer.status())),
        Err(error) => unknown(error.without_url().to_string()),
    }
}

/// The operator a verified token speaks for; `None` for a customer or a producing system.
pub(crate) fn operator(caller: &Caller, token: &str) -> Option<Operator> {
    let role = if caller.is_admin() {
        "admin"
    } else if caller.has_scope(Scope::OPERATOR) {
        "operator"
    } else {
        return None;
    };
    Some(Operator {
        subject: caller.subject().to_owned(),
        role,
        csrf: csrf_token(token),
        caller: caller.clone(),
    })
}

/// A digest of the session's token: only a page that could read the cookie can know it.
pub(crate) fn csrf_token(token: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"conveyor-console csrf\n")
        .chain_update(token.as_bytes())
        .finalize();
    digest[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Refuses a POST that did not come from the console's own page: the `Origin` (or, without
/// one, the `Referer`) must name the host it was sent to. Browsers send one or the other
/// with every form they post.
///
/// # Errors
/// [`Refusal::Forbidden`] for a request from elsewhere or that names no origin.
pub(crate) fn same_origin(headers: &HeaderMap) -> Result<(), Refusal> {
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .ok_or(Refusal::Forbidden("the request names no host"))?;
    let origin = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|value| value.to_str().ok())
        .and_then(|url| reqwest::Url::parse(url).ok())
        .ok_or(Refusal::Forbidden(
            "this form must be sent from the console's own page (the request names no origin)",
        ))?;
    let origin_host = match (origin.host_str(), origin.port()) {
        (Some(name), Some(port)) => format!("{name}:{port}"),
        (Some(name), None) => name.to_owned(),
        (None, _) => String::new(),
    };
    if origin_host.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(Refusal::Forbidden(
            "this form was sent from another site's page: nothing was done",
        ))
    }
}

/// Refuses a form whose CSRF token is not the session's.
///
/// # Errors
/// [`Refusal::Forbidden`] when it differs or is missing.
pub(crate) fn check_csrf(operator: &Operator, sent: Option<&str>) -> Result<(), Refusal> {
    if sent.is_some_and(|sent| constant_time_eq(sent.as_bytes(), operator.csrf.as_bytes())) {
        Ok(())
    } else {
        Err(Refusal::Forbidden(
            "this form is from another session (or its page is old): reload the page and try again",
        ))
    }
}

/// A form that acts: from the console's own page ([`same_origin`]) and with the session's
/// CSRF token ([`check_csrf`]).
///
/// # Errors
/// As those two.
pub(crate) fn acting_form(
    headers: &HeaderMap,
    operator: &Operator,
    sent: Option<&str>,
) -> Result<(), Refusal> {
    same_origin(headers).and_then(|()| check_csrf(operator, sent))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// The value of cookie `name` in the request.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The `Set-Cookie` value that keeps `token` for `seconds`. `Secure` unless the console was
/// reached at a loopback host, where browsers are sent plain HTTP by design.
pub(crate) fn session_cookie(token: &str, seconds: u64, headers: &HeaderMap) -> HeaderValue {
    let secure = if reached_at_loopback(headers) {
        ""
    } else {
        "; Secure"
    };
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={seconds}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("conveyor_console=; Path=/; Max-Age=0"))
}

/// The `Set-Cookie` value that signs out.
pub(crate) fn cleared_cookie() -> HeaderValue {
    HeaderValue::from_static("conveyor_console=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

fn reached_at_loopback(headers: &HeaderMap) -> bool {
    headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .and_then(|host| reqwest::Url::parse(&format!("http://{host}")).ok())
        .and_then(|url| url.host_str().map(platform::is_loopback_host))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn a_form_from_another_site_or_from_nowhere_is_refused() {
        let own = headers(&[
            (header::HOST, "console.example:8090"),
            (header::ORIGIN, "https://console.example:8090"),
        ]);
        assert!(same_origin(&own).is_ok());
        let by_referer = headers(&[
            (header::HOST, "127.0.0.1:8090"),
            (header::REFERER, "http://127.0.0.1:8090/dead-letters"),
        ]);
        assert!(same_origin(&by_referer).is_ok());
        let elsewhere = headers(&[
            (header::HOST, "console.example:8090"),
            (header::ORIGIN, "https://evil.example"),
        ]);
        assert!(same_origin(&elsewhere).is_err());
        let other_port = headers(&[
            (header::HOST, "console.example:8090"),
            (header::ORIGIN, "https://console.example:9999"),
        ]);
        assert!(same_origin(&other_port).is_err());
        assert!(same_origin(&headers(&[(header::HOST, "console.example")])).is_err());
    }

    #[test]
    fn the_csrf_token_belongs_to_one_session() {
        let claims = platform::auth::Claims {
            iss: String::new(),
            aud: String::new(),
            sub: "admin:a@example.com".to_owned(),
            exp: 0,
            iat: 0,
            nbf: 0,
            scope: "admin".to_owned(),
            events: Vec::new(),
            edits: Vec::new(),
        };
        let operator = operator(&Caller::from_claims(&claims), "token-one").unwrap();
        assert!(check_csrf(&operator, Some(&csrf_token("token-one"))).is_ok());
        assert!(check_csrf(&operator, Some(&csrf_token("token-two"))).is_err());
        assert!(check_csrf(&operator, None).is_err());
    }

    #[test]
    fn the_cookie_is_read_among_others_and_secure_away_from_loopback() {
        let sent = headers(&[(header::COOKIE, "a=1; conveyor_console=abc.def; b=2")]);
        assert_eq!(cookie(&sent, COOKIE), Some("abc.def"));
        let local = session_cookie("t", 60, &headers(&[(header::HOST, "127.0.0.1:8090")]));
        assert!(!local.to_str().unwrap().contains("Secure"));
        let remote = session_cookie("t", 60, &headers(&[(header::HOST, "ops.example")]));
        assert!(remote.to_str().unwrap().ends_with("; Secure"));
        assert!(
            remote
                .to_str()
                .unwrap()
                .contains("HttpOnly; SameSite=Strict")
        );
    }
}
