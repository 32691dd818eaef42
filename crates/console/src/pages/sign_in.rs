//! Signing in with the users service's password grant, and signing out.

use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout;
use crate::AppState;
use crate::session::{self, Operator};

#[derive(Debug, Deserialize)]
pub(crate) struct Credentials {
    email: String,
    password: String,
}

#[derive(Debug, Deserialize)]
struct IssuedToken {
    access_token: String,
    expires_in: u64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SignOut {
    csrf: Option<String>,
}

pub(crate) async fn form() -> Response {
    sign_in_page(StatusCode::OK, None, "")
}

pub(crate) async fn submit(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(credentials): Form<Credentials>,
) -> Response {
    if let Err(refusal) = session::same_origin(&headers) {
        return refusal.into_response();
    }
    let email = credentials.email.trim();
    let issued = match request_token(&state, email, &credentials.password).await {
        Ok(issued) => issued,
        Err((status, why)) => return sign_in_page(status, Some(&why), email),
    };
    let Ok(caller) = state.verifier.verify(&issued.access_token).await else {
        return sign_in_page(
            StatusCode::BAD_GATEWAY,
            Some("users issued a token this console cannot verify: check USERS_URL"),
            email,
        );
    };
    if session::operator(&caller, &issued.access_token).is_none() {
        return session::Refusal::NotAnOperator.into_response();
    }
    let cookie = session::session_cookie(&issued.access_token, issued.expires_in, &headers);
    let mut response = Redirect::to("/").into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

pub(crate) async fn sign_out(
    operator: Operator,
    headers: HeaderMap,
    Form(form): Form<SignOut>,
) -> Response {
    if let Err(refusal) = session::acting_form(&headers, &operator, form.csrf.as_deref()) {
        return refusal.into_response();
    }
    let mut response = Redirect::to("/sign-in").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session::cleared_cookie());
    response
}

/// The token users issues for these credentials, or the status and reason to show.
async fn request_token(
    state: &AppState,
    email: &str,
    password: &str,
) -> Result<IssuedToken, (StatusCode, String)> {
    let url = format!("{}/auth/token", state.users_url);
    let form = [
        ("grant_type", "password"),
        ("email", email),
        ("password", password),
    ];
    let answer = state
        .http
        .post(&url)
        .form(&form)
        .send()
        .await
        .map_err(|_| {
            (
                StatusCode::BAD_GATEWAY,
                "the users service cannot be reached to sign you in; try again shortly".to_owned(),
            )
        })?;
    let status = answer.status();
    if status.is_success() {
        return answer.json().await.map_err(|_| {
            (
                StatusCode::BAD_GATEWAY,
                "the users service answered with something other than a token".to_owned(),
            )
        });
    }
    let why = answer
        .json::<serde_json::Value>()
        .await
        .ok()
        .and_then(|body| body["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("the users service refused the sign-in ({status})"));
    let shown = match status.as_u16() {
        400 | 401 | 422 => StatusCode::UNAUTHORIZED,
        429 => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::BAD_GATEWAY,
    };
    Err((shown, why))
}

fn sign_in_page(status: StatusCode, problem: Option<&str>, email: &str) -> Response {
    layout::bare(status, "Sign in", sign_in_form(problem, email))
}

fn sign_in_form(problem: Option<&str>, email: &str) -> Markup {
    html! {
        h1 { "Conveyor console" }
        p { "Sign in with an admin account, or a user an admin made an operator." }
        @if let Some(problem) = problem {
            p.problem role="alert" id="sign-in-problem" { (problem) }
        }
        form.sign-in method="post" action="/sign-in" {
            label { "Email" input type="email" name="email" value=(email) required autocomplete="username"; }
            label { "Password" input type="password" name="password" required autocomplete="current-password"; }
            button type="submit" { "Sign in" }
        }
    }
}
