//! Logging in and out. Both are plain forms, so they work without JavaScript; a post must come
//! from a console page (its browser says so), which stops a cross-site form from logging a
//! person into an attacker's account or out of their own.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::backend::{Backend, Forwarded};
use crate::error::{ConsoleError, next_step};
use crate::security::same_origin;
use crate::view::Layout;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
    next: String,
    username: String,
    problem: Option<String>,
    next_step: &'static str,
}

#[derive(Deserialize, Default)]
pub struct NextQuery {
    next: Option<String>,
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    totp: String,
    #[serde(default)]
    next: String,
}

/// Where to go after logging in: a console page, never another site (`//evil`, `/\evil`).
fn safe_next(next: &str) -> &str {
    let is_console_page = (next == "/ui" || next.starts_with("/ui/") || next.starts_with("/ui?"))
        && !next.contains("//")
        && !next.contains('\\')
        && !next.starts_with("/ui/login");
    if is_console_page { next } else { "/ui" }
}

fn page(next: &str, username: &str, problem: Option<(StatusCode, String)>) -> Response {
    let status = problem.as_ref().map_or(StatusCode::OK, |(s, _)| *s);
    let page = LoginPage {
        layout: Layout::anonymous("Log in"),
        next: safe_next(next).to_owned(),
        username: username.to_owned(),
        next_step: next_step(status),
        problem: problem.map(|(_, p)| p),
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => ConsoleError::from(e).into_response(),
    }
}

pub async fn form(Query(q): Query<NextQuery>) -> Response {
    page(q.next.as_deref().unwrap_or("/ui"), "", None)
}

pub async fn submit(
    State(backend): State<Backend>,
    parts: Parts,
    forwarded: Forwarded,
    body: Bytes,
) -> Response {
    let Ok(form) = serde_urlencoded::from_bytes::<LoginForm>(&body) else {
        return page(
            "/ui",
            "",
            Some((
                StatusCode::BAD_REQUEST,
                "The form was incomplete: fill in the username and password.".into(),
            )),
        );
    };
    if !same_origin(&parts) {
        return page(
            &form.next,
            &form.username,
            Some((
                StatusCode::FORBIDDEN,
                "This login did not come from Sigil's own login page.".into(),
            )),
        );
    }
    let totp = form.totp.trim();
    let body = serde_json::json!({
        "username": form.username,
        "password": form.password,
        "totp": (!totp.is_empty()).then_some(totp),
    });
    match backend
        .call(&forwarded, Method::POST, "/api/v1/auth/login", Some(&body))
        .await
    {
        Ok(answer) => with_cookies(&answer.headers, Redirect::to(safe_next(&form.next))),
        Err(e) => page(&form.next, &form.username, Some((e.status, e.detail))),
    }
}

/// The API's `Set-Cookie` headers on the console's answer: the session is the API's.
fn with_cookies(api: &HeaderMap, answer: impl IntoResponse) -> Response {
    let mut response = answer.into_response();
    for cookie in api.get_all(header::SET_COOKIE) {
        response
            .headers_mut()
            .append(header::SET_COOKIE, cookie.clone());
    }
    response
}

pub async fn logout(
    State(backend): State<Backend>,
    parts: Parts,
    forwarded: Forwarded,
) -> Response {
    if !same_origin(&parts) {
        return ConsoleError::BadRequest("this logout did not come from a Sigil page".into())
            .into_response();
    }
    match backend
        .call(
            &forwarded.with_csrf(),
            Method::POST,
            "/api/v1/auth/logout",
            None,
        )
        .await
    {
        Ok(answer) => with_cookies(&answer.headers, Redirect::to("/ui/login")),
        // Already logged out: the login page is where they were going anyway.
        Err(e) if e.status == StatusCode::UNAUTHORIZED => Redirect::to("/ui/login").into_response(),
        Err(e) => ConsoleError::Api(e).into_response(),
    }
}
