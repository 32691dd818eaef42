//! The page around every page: navigation, who is signed in, the stylesheet and the small
//! script that keeps figures live. Everything a page shows goes through maud, which escapes
//! it: a dead letter's body or error is text on the page, never markup.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use crate::session::{CSRF_FIELD, Operator};

/// The sections in the navigation: path and name.
const SECTIONS: &[(&str, &str)] = &[
    ("/", "Overview"),
    ("/dead-letters", "Dead letters"),
    ("/replays", "Replays"),
    ("/flows", "Flows"),
    ("/audit", "Audit"),
    ("/runbooks", "Runbooks"),
];

/// A whole page for a signed-in operator; `section` is the navigation entry to mark.
pub(crate) fn page(title: &str, section: &str, operator: &Operator, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top {
                    a.brand href="/" { "Conveyor" }
                    nav {
                        @for (path, name) in SECTIONS {
                            a href=(path) aria-current=[(*path == section).then_some("page")] { (name) }
                        }
                    }
                    form.sign-out method="post" action="/sign-out" {
                        span.who { (operator.subject) " · " (operator.role) }
                        input type="hidden" name=(CSRF_FIELD) value=(operator.csrf);
                        button type="submit" { "Sign out" }
                    }
                }
                main { (body) }
            }
        }
    };
    respond(StatusCode::OK, markup)
}

/// A page for someone not signed in (the sign-in form, a refusal).
pub(crate) fn bare(status: StatusCode, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.bare { main { (body) } }
        }
    };
    respond(status, markup)
}

/// A refusal with its reason and the way back.
pub(crate) fn refusal(status: StatusCode, title: &str, why: &str) -> Response {
    bare(
        status,
        title,
        html! {
            h1 { (title) }
            p { (why) }
            p { a href="/sign-in" { "Sign in as someone else" } " · " a href="/" { "Overview" } }
        },
    )
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Conveyor console" }
            link rel="stylesheet" href="/assets/console.css";
            script src="/assets/console.js" defer {}
        }
    }
}

/// Pages are never cached (they show live figures and who is signed in), may not be framed,
/// and may run only the console's own script.
fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// A count with thousands separated, as the pages show figures.
pub(crate) use crate::thousands as count;

/// An explanation shown when the broker could not be asked.
pub(crate) fn unavailable(what: &str, error: &anyhow::Error) -> Markup {
    html! {
        div.problem role="alert" {
            strong { (what) " could not be read: " }
            (format!("{error:#}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_000_000), "1,000,000");
    }
}
