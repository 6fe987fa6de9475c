//! Extractors whose rejections are problem+json like every other error.

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;

use crate::ApiError;

/// `Json` whose rejections are problem+json.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(mut value) = Json::<serde_json::Value>::from_request(req, state).await?;
        // Every request body is an object. serde would read a struct from an array too (its
        // fields in order, defaults for the missing), so `[]` would pass as "all defaults".
        if !value.is_object() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-body",
                "Request body does not match the schema",
                "the JSON body must be an object",
            ));
        }
        integral_numbers(&mut value);
        serde_json::from_value(value).map(Self).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-body",
                "Request body does not match the schema",
                format!("the JSON body does not match the request's schema: {e}"),
            )
        })
    }
}

/// JSON does not tell `60` from `60.0`: both are the number sixty, and JSON Schema's `integer`
/// accepts both. serde does, so turn integral floats into integers before it sees them.
fn integral_numbers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() < 9.0e15
            {
                // Exact: |f| < 2^53.
                #[allow(clippy::cast_possible_truncation)]
                let i = f as i64;
                *value = serde_json::Value::from(i);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        serde_json::Value::Object(map) => map.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

/// `Query` whose rejections are problem+json.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    axum::extract::Query<T>:
        FromRequestParts<S, Rejection = axum::extract::rejection::QueryRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            axum::extract::Query::<T>::from_request_parts(parts, state)
                .await?
                .0,
        ))
    }
}

/// One path parameter parsed into its type (`DeviceId`, `Serial`, ...): a value that does not
/// parse is refused with the type's own error (400 `invalid-id` for identifiers), so handlers
/// never parse `Path<String>` by hand.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: std::str::FromStr,
    ApiError: From<T::Err>,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| {
                // Not UTF-8, or not one segment: a bad identifier like any other.
                if e.status() == StatusCode::BAD_REQUEST {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid-id",
                        "Invalid identifier",
                        e.body_text(),
                    )
                } else {
                    ApiError::internal(e.body_text())
                }
            })?;
        Ok(Self(raw.parse::<T>()?))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn integral_floats_become_integers_and_others_stay() {
        let mut v = serde_json::json!({"a": 60.0, "b": [1.5, 2.0], "c": "3.0", "d": 1e300});
        integral_numbers(&mut v);
        assert_eq!(v["a"], serde_json::json!(60));
        assert!(v["a"].is_i64());
        assert_eq!(v["b"][0], serde_json::json!(1.5));
        assert!(v["b"][1].is_i64());
        assert_eq!(v["c"], "3.0");
        assert!(v["d"].is_f64());
    }
}
