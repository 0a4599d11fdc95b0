//! Error bodies of the Konnect-style APIs (`application/problem+json`, RFC 7807 as Konnect shapes it).

use serde::Serialize;

/// The `rule` of an invalid parameter, with the names Konnect uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Required,
    IsArray,
    IsBoolean,
    IsInteger,
    IsObject,
    IsString,
    IsUuid,
    IsLabel,
    UnknownProperty,
    MissingReference,
    MatchesRegex,
    Invalid,
    MinLength,
    MaxLength,
    MinItems,
    MaxItems,
    Min,
    Max,
    Enum,
}

/// One entry of `invalid_parameters`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct InvalidParameter {
    pub field: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub source: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub choices: Option<Vec<String>>,
}

impl InvalidParameter {
    pub fn new(field: impl Into<String>, rule: Rule, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            rule: Some(rule),
            reason: reason.into(),
            source: None,
            minimum: None,
            maximum: None,
            choices: None,
        }
    }

    pub fn in_body(mut self) -> Self {
        self.source = Some("body");
        self
    }

    pub fn in_query(mut self) -> Self {
        self.source = Some("query");
        self
    }

    pub fn in_path(mut self) -> Self {
        self.source = Some("path");
        self
    }

    pub fn with_minimum(mut self, minimum: i64) -> Self {
        self.minimum = Some(minimum);
        self
    }

    pub fn with_maximum(mut self, maximum: i64) -> Self {
        self.maximum = Some(maximum);
        self
    }

    pub fn with_choices<S: ToString>(mut self, choices: &[S]) -> Self {
        self.choices = Some(choices.iter().map(ToString::to_string).collect());
        self
    }
}

/// A problem+json body as Konnect sends it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProblemBody {
    pub status: u16,
    #[schema(value_type = String)]
    pub title: &'static str,
    #[serde(rename = "type")]
    pub type_uri: String,
    pub instance: String,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub invalid_parameters: Vec<InvalidParameter>,
}

/// The reason phrase Konnect puts in `title` for a status.
pub fn title_for(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}
