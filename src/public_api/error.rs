//! What a refused or failed call answers: an HTTP status and a JSON body
//! naming the reason, and for a bad request the field.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A field the API server or this API refused, and why.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
pub struct FieldCause {
    /// The field, in the request's terms where it has one (else the
    /// Backfill's, e.g. `spec.maxInFlight`).
    pub field: String,
    pub reason: String,
}

/// The `error` of an error body.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
pub struct ErrorDetail {
    /// The HTTP status code.
    pub code: u16,
    /// A machine-readable word: BadRequest, Unauthorized, Forbidden,
    /// NotFound, Conflict, PayloadTooLarge, TooManyRequests, Internal…
    pub reason: String,
    pub message: String,
    /// The first field at fault, for a bad request.
    pub field: Option<String>,
    /// Every field at fault.
    pub causes: Vec<FieldCause>,
}

/// The body of every error.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
    pub meta: ErrorMeta,
}

/// `meta` of an error.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, ToSchema)]
pub struct ErrorMeta {
    pub request_id: String,
}

/// A call that does not succeed.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub reason: &'static str,
    pub message: String,
    pub causes: Vec<FieldCause>,
    /// Seconds to wait, for a 429.
    pub retry_after: Option<u64>,
    pub request_id: String,
}

impl ApiError {
    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
            causes: Vec::new(),
            retry_after: None,
            request_id: String::new(),
        }
    }

    pub fn bad_field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        let (field, reason) = (field.into(), reason.into());
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("{field}: {reason}"),
        );
        e.causes.push(FieldCause { field, reason });
        e
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", message)
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            format!("the request body is larger than {limit} bytes"),
        )
    }

    pub fn too_many(retry_after: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            format!("too many requests from this client; retry in {retry_after} s"),
        );
        e.retry_after = Some(retry_after);
        e
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "Unavailable", message)
    }

    pub fn with_request_id(mut self, id: &str) -> Self {
        self.request_id = id.to_string();
        self
    }

    /// An error of the API server, in this API's terms: its 422 Invalid
    /// (the CRD's OpenAPI and CEL rules) becomes a 400 naming each field;
    /// `rename` maps a Backfill field path to the request's name for it.
    pub fn from_kube(e: kube::Error, rename: &dyn Fn(&str) -> Option<String>) -> Self {
        match e {
            kube::Error::Api(status) => {
                let code = StatusCode::from_u16(status.code).unwrap_or(StatusCode::BAD_GATEWAY);
                match code.as_u16() {
                    422 | 400 => {
                        let causes: Vec<FieldCause> = status
                            .details
                            .as_ref()
                            .map(|d| d.causes.as_slice())
                            .unwrap_or_default()
                            .iter()
                            .map(|c| FieldCause {
                                field: rename(&c.field).unwrap_or_else(|| c.field.clone()),
                                reason: c.message.clone(),
                            })
                            .collect();
                        let mut e =
                            Self::new(StatusCode::BAD_REQUEST, "BadRequest", status.message);
                        e.causes = causes;
                        e
                    }
                    404 => Self::not_found(status.message),
                    409 => Self::conflict(status.message),
                    // The operator's own account lacks a permission: the
                    // chart's RBAC, not the caller.
                    401 | 403 => Self::internal(format!(
                        "the operator was refused by the API server: {}",
                        status.message
                    )),
                    429 => Self::too_many(1),
                    _ => Self::new(
                        StatusCode::BAD_GATEWAY,
                        "BadGateway",
                        format!(
                            "the API server answered {}: {}",
                            status.code, status.message
                        ),
                    ),
                }
            }
            other => Self::unavailable(format!("the API server could not be reached: {other}")),
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.status.as_u16(),
                reason: self.reason.to_string(),
                message: self.message.clone(),
                field: self.causes.first().map(|c| c.field.clone()),
                causes: self.causes.clone(),
            },
            meta: ErrorMeta {
                request_id: self.request_id.clone(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"backfill-operator\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::response::{StatusCause, StatusDetails};

    #[test]
    fn an_invalid_object_is_a_bad_request_naming_its_fields() {
        let mut status =
            kube::core::Status::failure("Backfill.backfill.dev \"x\" is invalid", "Invalid")
                .with_code(422);
        status.details = Some(StatusDetails {
            causes: vec![StatusCause {
                reason: "FieldValueInvalid".into(),
                message: "Invalid value: 0: spec.maxInFlight in body should be greater than or equal to 1".into(),
                field: "spec.maxInFlight".into(),
            }],
            name: String::new(),
            group: String::new(),
            kind: String::new(),
            uid: String::new(),
            retry_after_seconds: 0,
        });
        let rename = |f: &str| (f == "spec.maxInFlight").then(|| "max_in_flight".to_string());
        let e = ApiError::from_kube(kube::Error::Api(Box::new(status)), &rename);
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let body = serde_json::to_value(e.body()).unwrap();
        assert_eq!(body["error"]["field"], "max_in_flight");
        assert!(
            body["error"]["causes"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("greater than or equal to 1")
        );
    }

    #[test]
    fn a_429_says_when_to_retry() {
        let r = ApiError::too_many(3).into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
    }
}
