//! List queries of the Konnect APIs: `page[size]`, `page[number]`, deepObject filters and `sort`, parsed into
//! typed values. Brackets may come raw or percent-encoded; both decode to the same key.

use std::collections::HashSet;

use serde::Serialize;

use crate::problem::{InvalidParameter, Rule};

pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 1000;
const MAX_PAGE_NUMBER: u32 = 1_000_000;

/// The attributes a collection can filter or sort on. Stores map each to a column; nothing from the request is
/// ever spliced into SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Id,
    Name,
    Description,
    Audience,
    Labels,
    Enabled,
    CreatedAt,
    UpdatedAt,
    ExpiresAt,
    ClusterType,
    CloudGateway,
}

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Id => "id",
            Field::Name => "name",
            Field::Description => "description",
            Field::Audience => "audience",
            Field::Labels => "labels",
            Field::Enabled => "enabled",
            Field::CreatedAt => "created_at",
            Field::UpdatedAt => "updated_at",
            Field::ExpiresAt => "expires_at",
            Field::ClusterType => "cluster_type",
            Field::CloudGateway => "cloud_gateway",
        }
    }
}

/// How a field can be filtered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterKind {
    /// `eq` or `contains` (exactly one), or the bare form meaning `eq`.
    Text,
    /// `eq` only, or the bare form.
    Equals,
    /// `filter[x]=true|false`.
    Boolean,
    /// `filter[labels][eq]=key:value`.
    Label,
    /// Konnect's control-plane filters: `eq`, `neq`, `contains` and (with `oeq`) a comma list meaning "any of".
    TextWithNeq,
    /// `eq`, `neq`, or `oeq` (any of a comma list).
    Enumerated,
    /// `eq` or `oeq`.
    EqualsOrAnyOf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterOp {
    Eq(String),
    Neq(String),
    Contains(String),
    OneOf(Vec<String>),
    Is(bool),
    Label { key: String, value: String },
    LabelExists { key: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub field: Field,
    pub op: FilterOp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKey {
    pub field: Field,
    pub descending: bool,
}

/// What a collection accepts.
#[derive(Debug, Clone, Copy)]
pub struct CollectionSpec {
    pub filters: &'static [(Field, FilterKind)],
    pub sorts: &'static [Field],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub page_size: u32,
    pub page_number: u32,
    pub filters: Vec<Filter>,
    pub sort: Vec<SortKey>,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self { page_size: DEFAULT_PAGE_SIZE, page_number: 1, filters: Vec::new(), sort: Vec::new() }
    }
}

impl ListQuery {
    pub fn offset(&self) -> u64 {
        u64::from(self.page_number - 1) * u64::from(self.page_size)
    }
}

/// A page of results with Konnect's `meta.page`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub meta: PageMeta,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PageMeta {
    pub page: PageNumbers,
}

#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct PageNumbers {
    pub number: u32,
    pub size: u32,
    pub total: u64,
}

impl<T> Page<T> {
    pub fn new(data: Vec<T>, query: &ListQuery, total: u64) -> Self {
        Self { data, meta: PageMeta { page: PageNumbers { number: query.page_number, size: query.page_size, total } } }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { data: self.data.into_iter().map(f).collect(), meta: self.meta }
    }
}

/// Parses a raw query string (`None` when the URL had none).
pub fn parse_list_query(raw: Option<&str>, spec: &CollectionSpec) -> Result<ListQuery, Vec<InvalidParameter>> {
    let mut q = ListQuery::default();
    let mut errors = Vec::new();
    let mut seen_keys = HashSet::new();
    let mut repeated = HashSet::new();
    let mut filtered = HashSet::new();
    for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if !seen_keys.insert(key.to_string()) {
            // Once per parameter, however often it is repeated.
            if repeated.insert(key.to_string()) {
                errors.push(query_error(&key, Rule::Invalid, "must be given at most once"));
            }
            continue;
        }
        let result = match key.as_ref() {
            "page[size]" => parse_number(&key, &value, 1, MAX_PAGE_SIZE).map(|n| q.page_size = n),
            "page[number]" => parse_number(&key, &value, 1, MAX_PAGE_NUMBER).map(|n| q.page_number = n),
            "sort" => parse_sort(&value, spec).map(|s| q.sort = s),
            k if k.starts_with("filter[") => parse_filter(k, &value, spec).and_then(|f| {
                if filtered.insert(f.field) {
                    q.filters.push(f);
                    Ok(())
                } else {
                    Err(query_error(k, Rule::Invalid, "only one of eq or contains may be given per field"))
                }
            }),
            k => Err(query_error(k, Rule::UnknownProperty, format!("unknown query parameter [{k}]"))),
        };
        if let Err(e) = result {
            errors.push(e);
        }
    }
    if errors.is_empty() { Ok(q) } else { Err(errors) }
}

fn query_error(field: &str, rule: Rule, reason: impl Into<String>) -> InvalidParameter {
    InvalidParameter::new(field, rule, reason).in_query()
}

fn parse_number(key: &str, value: &str, min: u32, max: u32) -> Result<u32, InvalidParameter> {
    let n: i64 = value.parse().map_err(|_| query_error(key, Rule::IsInteger, "must be an integer"))?;
    if n < i64::from(min) {
        return Err(query_error(key, Rule::Min, format!("must be at least {min}")).with_minimum(i64::from(min)));
    }
    if n > i64::from(max) {
        return Err(query_error(key, Rule::Max, format!("must be at most {max}")).with_maximum(i64::from(max)));
    }
    Ok(n as u32)
}

fn parse_sort(value: &str, spec: &CollectionSpec) -> Result<Vec<SortKey>, InvalidParameter> {
    let mut keys = Vec::new();
    for part in value.split(',') {
        let mut words = part.split_whitespace();
        let (Some(attr), dir, None) = (words.next(), words.next(), words.next()) else {
            return Err(query_error("sort", Rule::Invalid, "must be a list of `attribute [asc|desc]`"));
        };
        let Some(field) = spec.sorts.iter().copied().find(|f| f.as_str() == attr) else {
            let names: Vec<_> = spec.sorts.iter().map(|f| f.as_str()).collect();
            return Err(query_error("sort", Rule::Enum, format!("cannot sort by [{attr}]")).with_choices(&names));
        };
        let descending = match dir {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(_) => {
                return Err(query_error("sort", Rule::Enum, "direction must be asc or desc"));
            }
        };
        keys.push(SortKey { field, descending });
    }
    Ok(keys)
}

fn parse_filter(key: &str, value: &str, spec: &CollectionSpec) -> Result<Filter, InvalidParameter> {
    // filter[<field>] or filter[<field>][<op>]
    let rest = &key["filter[".len()..];
    let (name, tail) = rest
        .split_once(']')
        .ok_or_else(|| query_error(key, Rule::Invalid, "filters look like filter[field][op]=value"))?;
    let op = match tail {
        "" => None,
        t if t.starts_with('[') && t.ends_with(']') && t.len() > 2 && !t[1..t.len() - 1].contains(['[', ']']) => {
            Some(&t[1..t.len() - 1])
        }
        _ => {
            return Err(query_error(key, Rule::Invalid, "filters look like filter[field][op]=value"));
        }
    };
    let Some((field, kind)) = spec.filters.iter().copied().find(|(f, _)| f.as_str() == name) else {
        let names: Vec<_> = spec.filters.iter().map(|(f, _)| f.as_str()).collect();
        return Err(query_error(key, Rule::Enum, format!("cannot filter by [{name}]")).with_choices(&names));
    };
    let op = match (kind, op) {
        (
            FilterKind::Text
            | FilterKind::Equals
            | FilterKind::TextWithNeq
            | FilterKind::Enumerated
            | FilterKind::EqualsOrAnyOf,
            None | Some("eq"),
        ) => FilterOp::Eq(value.to_owned()),
        (FilterKind::Text | FilterKind::TextWithNeq, Some("contains")) => FilterOp::Contains(value.to_owned()),
        (FilterKind::TextWithNeq | FilterKind::Enumerated, Some("neq")) => FilterOp::Neq(value.to_owned()),
        (FilterKind::Enumerated | FilterKind::EqualsOrAnyOf, Some("oeq")) => {
            FilterOp::OneOf(value.split(',').map(str::to_owned).collect())
        }
        (FilterKind::Boolean, None | Some("eq")) => match value {
            "true" => FilterOp::Is(true),
            "false" => FilterOp::Is(false),
            _ => return Err(query_error(key, Rule::IsBoolean, "must be true or false")),
        },
        (FilterKind::Label, None | Some("eq")) => {
            let (k, v) = value
                .split_once(':')
                .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                .ok_or_else(|| query_error(key, Rule::IsLabel, "must be key:value"))?;
            crate::labels::check_key(k).map_err(|reason| query_error(key, Rule::IsLabel, reason))?;
            FilterOp::Label { key: k.to_owned(), value: v.to_owned() }
        }
        (_, Some(op)) => {
            let ops: &[&str] = match kind {
                FilterKind::Text => &["eq", "contains"],
                FilterKind::TextWithNeq => &["eq", "neq", "contains"],
                FilterKind::Enumerated => &["eq", "neq", "oeq"],
                FilterKind::EqualsOrAnyOf => &["eq", "oeq"],
                _ => &["eq"],
            };
            return Err(query_error(key, Rule::Enum, format!("unsupported filter operator [{op}]")).with_choices(ops));
        }
    };
    Ok(Filter { field, op })
}

/// Takes one parameter out of a raw query string (for parameters a collection reads itself, like the control
/// planes' `labels=key:value`); returns its decoded values and the rest of the query.
pub fn take_param(raw: Option<&str>, name: &str) -> (Vec<String>, String) {
    let mut taken = Vec::new();
    let mut rest = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if k == name {
            taken.push(v.into_owned());
        } else {
            rest.append_pair(&k, &v);
        }
    }
    (taken, rest.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: CollectionSpec = CollectionSpec {
        filters: &[
            (Field::Name, FilterKind::Text),
            (Field::Id, FilterKind::Equals),
            (Field::Labels, FilterKind::Label),
            (Field::Enabled, FilterKind::Boolean),
        ],
        sorts: &[Field::CreatedAt, Field::Name],
    };

    fn parse(q: &str) -> Result<ListQuery, Vec<InvalidParameter>> {
        parse_list_query(Some(q), &SPEC)
    }

    #[test]
    fn defaults() {
        let q = parse_list_query(None, &SPEC).unwrap();
        assert_eq!((q.page_size, q.page_number, q.offset()), (100, 1, 0));
    }

    #[test]
    fn raw_and_encoded_brackets_are_the_same() {
        let a = parse("filter[name][contains]=quick&page[size]=5&page[number]=3").unwrap();
        let b = parse("filter%5Bname%5D%5Bcontains%5D=quick&page%5Bsize%5D=5&page%5Bnumber%5D=3").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.filters, vec![Filter { field: Field::Name, op: FilterOp::Contains("quick".into()) }]);
        assert_eq!(a.offset(), 10);
    }

    #[test]
    fn filters_and_sort() {
        let q =
            parse("filter[id]=x&filter[labels][eq]=env:prod&filter[enabled]=false&sort=name desc,created_at").unwrap();
        assert_eq!(q.filters.len(), 3);
        assert_eq!(q.filters[1].op, FilterOp::Label { key: "env".into(), value: "prod".into() });
        assert_eq!(
            q.sort,
            vec![
                SortKey { field: Field::Name, descending: true },
                SortKey { field: Field::CreatedAt, descending: false }
            ]
        );
        assert!(parse("sort=name+desc").is_ok());
    }

    #[test]
    fn refuses_bad_queries() {
        for bad in [
            "page[size]=0",
            "page[size]=1001",
            "page[size]=ten",
            "page[number]=0",
            "page[number]=-1",
            "page[size]=1&page[size]=2",
            "filter[name][eq]=a&filter[name][contains]=b",
            "filter[name][like]=a",
            "filter[audience]=x",
            "filter[name]]=x",
            "filter[name][eq][x]=a",
            "filter[name=x",
            "filter[id][contains]=x",
            "filter[enabled]=yes",
            "filter[labels][eq]=novalue",
            "filter[labels][eq]=bad\"key:v",
            "sort=secret",
            "sort=name sideways",
            "sort=name desc extra",
            "bogus=1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_repeated_parameter_is_one_problem() {
        let errors = parse("page[size]=0&page[size]=0&page[size]=0&bogus=1&bogus=1&bogus=1").unwrap_err();
        let listed: Vec<(&str, &str)> = errors.iter().map(|e| (e.field.as_str(), e.reason.as_str())).collect();
        assert_eq!(
            listed,
            vec![
                ("page[size]", "must be at least 1"),
                ("page[size]", "must be given at most once"),
                ("bogus", "unknown query parameter [bogus]"),
                ("bogus", "must be given at most once"),
            ]
        );
    }
}
