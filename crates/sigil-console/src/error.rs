//! Errors as pages: what went wrong, in the API's own words, and what to do next.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::backend::ApiFailure;
use crate::view::Layout;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(transparent)]
    Api(#[from] ApiFailure),
    #[error("rendering the page: {0}")]
    Render(#[from] askama::Error),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Layout,
    status: u16,
    title: String,
    detail: String,
    next_step: &'static str,
}

/// What a person can do about an answer with this status.
pub fn next_step(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "Your session has ended or was never opened: log in again.",
        403 => "Your role does not allow this. An administrator can grant it, or do it for you.",
        404 => "It may have been removed or mistyped: go back to the list and pick it again.",
        409 => "Something changed meanwhile: reload the page and try again.",
        413 => "The upload is too large: split it into smaller files.",
        400 | 422 => "Correct what the message names and try again.",
        429 => "Too many attempts: wait a minute, then try again.",
        _ => "Try again; if it happens again, the server's log has the details.",
    }
}

impl ConsoleError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Api(e) => e.status,
            Self::Render(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (title, detail) = match &self {
            Self::Api(e) => (e.title.clone(), e.detail.clone()),
            Self::Render(e) => {
                tracing::error!(error = %e, "console page failed to render");
                ("Internal error".to_owned(), String::new())
            }
            Self::NotFound(d) => ("Not found".to_owned(), d.clone()),
            Self::BadRequest(d) => ("Bad request".to_owned(), d.clone()),
            Self::Forbidden(d) => ("Forbidden".to_owned(), d.clone()),
        };
        let page = ErrorPage {
            layout: Layout::anonymous(title.clone()),
            status: status.as_u16(),
            title,
            detail,
            next_step: next_step(status),
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => status.into_response(),
        }
    }
}
