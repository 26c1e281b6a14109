//! List query parameters: `page[...]`, `filter[...]`, `sort`, `include`,
//! `fields[...]`, validated against what a resource declares it supports.

use std::collections::HashMap;

use base64::Engine;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{ApiError, ResourceObject};

pub const DEFAULT_PAGE_SIZE: u32 = 25;
pub const MAX_PAGE_SIZE: u32 = 100;

/// How a filterable or sortable attribute is typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Text,
    /// Text compared case-insensitively (e.g. email).
    TextCi,
    Bool,
    Int,
    /// An RFC 3339 timestamp in the API; microseconds since the epoch below.
    Timestamp,
    /// A resource id (exact match only).
    Id,
}

/// A typed value from a filter or a cursor.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Text(String),
    Int(i64),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Asc,
    Desc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    Eq,
    Contains,
}

/// What one resource supports in list queries.
#[derive(Debug)]
pub struct QuerySpec {
    pub filters: &'static [(&'static str, FieldKind)],
    pub sorts: &'static [(&'static str, FieldKind)],
    pub includes: &'static [&'static str],
    /// Used when the request has no `sort`.
    pub default_sort: &'static [(&'static str, Direction)],
}

/// An opaque keyset cursor: the sort values of a row plus its id.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    pub values: Vec<Scalar>,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Page {
    Offset { limit: u32, offset: u64 },
    After { limit: u32, cursor: Cursor },
    Before { limit: u32, cursor: Cursor },
}

impl Page {
    pub fn limit(&self) -> u32 {
        match self {
            Page::Offset { limit, .. } | Page::After { limit, .. } | Page::Before { limit, .. } => *limit,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub name: &'static str,
    pub kind: FieldKind,
    pub op: FilterOp,
    pub value: Scalar,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub name: &'static str,
    pub kind: FieldKind,
    pub direction: Direction,
}

/// A validated list request.
#[derive(Debug, Clone, PartialEq)]
pub struct ListParams {
    pub page: Page,
    pub filters: Vec<Filter>,
    pub sort: Vec<SortKey>,
    pub include: Vec<String>,
    pub fields: HashMap<String, Vec<String>>,
    /// `page[count]=true`: report `meta.page.total`.
    pub count: bool,
}

/// Sparse fieldsets: JSON:API type → the fields to keep.
pub type Fields = HashMap<String, Vec<String>>;

/// Parses the `include` and `fields[...]` parameters alone (for single-resource GETs).
pub fn parse_fetch(query: &str, spec: &QuerySpec) -> Result<(Vec<String>, Fields), ApiError> {
    let params = parse_list(query, spec)?;
    if let Some((key, _)) = query_pairs(query)?
        .into_iter()
        .find(|(k, _)| k.starts_with("page[") || k.starts_with("filter[") || k == "sort")
    {
        return Err(ApiError::invalid_parameter(
            &key,
            "paging, filtering and sorting apply to collections only",
        ));
    }
    Ok((params.include, params.fields))
}

fn query_pairs(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut seen = std::collections::HashSet::new();
    let mut pairs = Vec::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if !seen.insert(key.to_string()) {
            return Err(ApiError::invalid_parameter(&key, format!("parameter `{key}` is repeated")));
        }
        pairs.push((key.into_owned(), value.into_owned()));
    }
    Ok(pairs)
}

pub fn parse_list(query: &str, spec: &QuerySpec) -> Result<ListParams, ApiError> {
    let mut limit = DEFAULT_PAGE_SIZE;
    let mut offset: Option<u64> = None;
    let mut after = None;
    let mut before = None;
    let mut count = false;
    let mut filters = Vec::new();
    let mut sort = None;
    let mut include = Vec::new();
    let mut fields = HashMap::new();

    for (key, value) in query_pairs(query)? {
        match key.as_str() {
            "page[limit]" | "page[size]" => {
                limit = value.parse().ok().filter(|n| (1..=MAX_PAGE_SIZE).contains(n)).ok_or_else(|| {
                    ApiError::invalid_parameter(&key, format!("must be an integer from 1 to {MAX_PAGE_SIZE}"))
                })?;
            }
            "page[offset]" => {
                offset = Some(
                    value
                        .parse()
                        .map_err(|_| ApiError::invalid_parameter(&key, "must be a non-negative integer"))?,
                );
            }
            "page[after]" => after = Some(value),
            "page[before]" => before = Some(value),
            "page[count]" => {
                count = match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(ApiError::invalid_parameter(&key, "must be true or false")),
                }
            }
            "sort" => sort = Some(parse_sort(&value, spec)?),
            "include" => {
                for path in value.split(',').filter(|p| !p.is_empty()) {
                    if !spec.includes.contains(&path) {
                        return Err(ApiError::invalid_parameter(
                            "include",
                            format!("`{path}` cannot be included; supported: {}", list(spec.includes)),
                        ));
                    }
                    include.push(path.to_owned());
                }
            }
            k if k.starts_with("fields[") && k.ends_with(']') => {
                let kind = &k[7..k.len() - 1];
                fields.insert(kind.to_owned(), value.split(',').map(str::to_owned).collect());
            }
            k if k.starts_with("filter[") => filters.push(parse_filter(k, &value, spec)?),
            _ => {
                return Err(ApiError::invalid_parameter(&key, format!("unknown query parameter `{key}`")));
            }
        }
    }

    let sort = sort.unwrap_or_else(|| {
        spec.default_sort
            .iter()
            .map(|(name, direction)| SortKey { name, kind: kind_of(spec.sorts, name), direction: *direction })
            .collect()
    });
    let page = match (offset, after, before) {
        (_, Some(_), Some(_)) => {
            return Err(ApiError::invalid_parameter(
                "page[before]",
                "use page[after] or page[before], not both",
            ));
        }
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(ApiError::invalid_parameter(
                "page[offset]",
                "page[offset] cannot be combined with a cursor",
            ));
        }
        (_, Some(c), None) => Page::After { limit, cursor: decode_cursor("page[after]", &c, &sort)? },
        (_, None, Some(c)) => Page::Before { limit, cursor: decode_cursor("page[before]", &c, &sort)? },
        (offset, None, None) => Page::Offset { limit, offset: offset.unwrap_or(0) },
    };
    Ok(ListParams { page, filters, sort, include, fields, count })
}

fn list(names: &[&str]) -> String {
    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
}

fn kind_of(fields: &[(&'static str, FieldKind)], name: &str) -> FieldKind {
    fields.iter().find(|(n, _)| *n == name).map_or(FieldKind::Text, |(_, k)| *k)
}

fn parse_sort(value: &str, spec: &QuerySpec) -> Result<Vec<SortKey>, ApiError> {
    let mut keys = Vec::new();
    for item in value.split(',') {
        let (name, direction) = match item.strip_prefix('-') {
            Some(name) => (name, Direction::Desc),
            None => (item, Direction::Asc),
        };
        let Some((name, kind)) = spec.sorts.iter().find(|(n, _)| *n == name) else {
            let names: Vec<&str> = spec.sorts.iter().map(|(n, _)| *n).collect();
            return Err(ApiError::invalid_parameter(
                "sort",
                format!("cannot sort by `{name}`; supported: {}", list(&names)),
            ));
        };
        if keys.iter().any(|k: &SortKey| k.name == *name) {
            return Err(ApiError::invalid_parameter("sort", format!("`{name}` appears twice in sort")));
        }
        keys.push(SortKey { name, kind: *kind, direction });
    }
    Ok(keys)
}

fn parse_filter(key: &str, value: &str, spec: &QuerySpec) -> Result<Filter, ApiError> {
    // filter[name] or filter[name][op]
    let inner = &key["filter[".len()..];
    let (name, op) = match inner.split_once("][") {
        Some((name, op)) => (name, op.strip_suffix(']')),
        None => (inner.strip_suffix(']').unwrap_or(inner), Some("eq")),
    };
    let Some((name, kind)) = spec.filters.iter().find(|(n, _)| *n == name) else {
        let names: Vec<&str> = spec.filters.iter().map(|(n, _)| *n).collect();
        return Err(ApiError::invalid_parameter(
            key,
            format!("cannot filter by `{name}`; supported: {}", list(&names)),
        ));
    };
    let op = match (op, kind) {
        (Some("eq"), _) => FilterOp::Eq,
        (Some("contains"), FieldKind::Text | FieldKind::TextCi) => FilterOp::Contains,
        _ => return Err(ApiError::invalid_parameter(key, "unsupported filter operator")),
    };
    let value = scalar_from_text(*kind, value).ok_or_else(|| {
        ApiError::invalid_parameter(key, format!("`{value}` is not a valid value for `{name}`"))
    })?;
    Ok(Filter { name, kind: *kind, op, value })
}

/// Converts a query-string value to a typed scalar.
pub fn scalar_from_text(kind: FieldKind, text: &str) -> Option<Scalar> {
    match kind {
        FieldKind::Text | FieldKind::TextCi | FieldKind::Id => Some(Scalar::Text(text.to_owned())),
        FieldKind::Bool => match text {
            "true" => Some(Scalar::Bool(true)),
            "false" => Some(Scalar::Bool(false)),
            _ => None,
        },
        FieldKind::Int => text.parse().ok().map(Scalar::Int),
        FieldKind::Timestamp => OffsetDateTime::parse(text, &Rfc3339)
            .ok()
            .map(|t| Scalar::Int((t.unix_timestamp_nanos() / 1000) as i64)),
    }
}

/// Converts an attribute value (as the API shows it) to a typed scalar.
fn scalar_from_attribute(kind: FieldKind, value: &Value) -> Scalar {
    match value {
        Value::Null => Scalar::Null,
        Value::Bool(b) => Scalar::Bool(*b),
        Value::Number(n) => n.as_i64().map_or(Scalar::Null, Scalar::Int),
        Value::String(s) => scalar_from_text(kind, s).unwrap_or(Scalar::Null),
        _ => Scalar::Null,
    }
}

fn scalar_to_json(scalar: &Scalar) -> Value {
    match scalar {
        Scalar::Text(s) => Value::String(s.clone()),
        Scalar::Int(i) => Value::from(*i),
        Scalar::Bool(b) => Value::Bool(*b),
        Scalar::Null => Value::Null,
    }
}

const CURSOR: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The cursor that points just after (or before) `resource` in this sort order.
pub fn encode_cursor(resource: &ResourceObject, sort: &[SortKey]) -> String {
    let mut values: Vec<Value> = sort
        .iter()
        .map(|key| {
            let attr = resource.attributes.get(key.name).unwrap_or(&Value::Null);
            scalar_to_json(&scalar_from_attribute(key.kind, attr))
        })
        .collect();
    values.push(Value::String(resource.id.clone()));
    CURSOR.encode(serde_json::to_vec(&values).expect("cursor values serialize"))
}

fn decode_cursor(param: &str, text: &str, sort: &[SortKey]) -> Result<Cursor, ApiError> {
    let invalid = || ApiError::invalid_parameter(param, "invalid or expired cursor for this sort order");
    let bytes = CURSOR.decode(text).map_err(|_| invalid())?;
    let Ok(Value::Array(mut values)) = serde_json::from_slice::<Value>(&bytes) else { return Err(invalid()) };
    if values.len() != sort.len() + 1 {
        return Err(invalid());
    }
    let Some(Value::String(id)) = values.pop() else { return Err(invalid()) };
    let values = values
        .iter()
        .zip(sort)
        .map(|(value, key)| match (value, key.kind) {
            (Value::Null, _) => Ok(Scalar::Null),
            (Value::Bool(b), FieldKind::Bool) => Ok(Scalar::Bool(*b)),
            (Value::Number(n), FieldKind::Int | FieldKind::Timestamp) => {
                n.as_i64().map(Scalar::Int).ok_or_else(invalid)
            }
            (Value::String(s), FieldKind::Text | FieldKind::TextCi | FieldKind::Id) => {
                Ok(Scalar::Text(s.clone()))
            }
            _ => Err(invalid()),
        })
        .collect::<Result<_, _>>()?;
    Ok(Cursor { values, id })
}

#[cfg(test)]
mod tests {
    use super::*;

    static SPEC: QuerySpec = QuerySpec {
        filters: &[("email", FieldKind::TextCi), ("blocked", FieldKind::Bool)],
        sorts: &[("email", FieldKind::TextCi), ("inserted_at", FieldKind::Timestamp)],
        includes: &["roles"],
        default_sort: &[("inserted_at", Direction::Desc)],
    };

    #[test]
    fn parses_a_full_query() {
        let q = "page[limit]=10&filter[email][contains]=ACME&filter[blocked]=false&sort=-email&include=roles&fields[user]=email";
        let p = parse_list(q, &SPEC).unwrap();
        assert_eq!(p.page, Page::Offset { limit: 10, offset: 0 });
        assert_eq!(p.filters[0].op, FilterOp::Contains);
        assert_eq!(p.filters[1].value, Scalar::Bool(false));
        assert_eq!(p.sort[0].direction, Direction::Desc);
        assert_eq!(p.include, vec!["roles"]);
        assert_eq!(p.fields["user"], vec!["email"]);
    }

    #[test]
    fn defaults_and_rejections() {
        let p = parse_list("", &SPEC).unwrap();
        assert_eq!(p.page.limit(), DEFAULT_PAGE_SIZE);
        assert_eq!(p.sort[0].name, "inserted_at");
        for bad in [
            "page[limit]=0",
            "page[limit]=101",
            "page[offset]=-1",
            "sort=password",
            "include=secrets",
            "filter[password]=x",
            "filter[blocked]=maybe",
            "filter[blocked][contains]=t",
            "bogus=1",
            "sort=email&sort=email",
            "page[after]=zzz",
            "page[offset]=1&page[after]=x",
        ] {
            let err = parse_list(bad, &SPEC).unwrap_err();
            assert_eq!(err.status, 400, "{bad} was accepted");
            assert!(err.source.is_some(), "{bad} has no source.parameter");
        }
    }

    #[test]
    fn fetch_names_the_collection_parameter_it_refuses() {
        for (bad, parameter) in
            [("page[limit]=5", "page[limit]"), ("sort=email", "sort"), ("filter[email]=a", "filter[email]")]
        {
            let err = parse_fetch(bad, &SPEC).unwrap_err();
            assert_eq!(err.parameter(), Some(parameter), "{bad}");
        }
        assert_eq!(parse_fetch("include=roles&fields[user]=email", &SPEC).unwrap().0, vec!["roles"]);
    }

    #[test]
    fn cursors_round_trip() {
        let mut attributes = serde_json::Map::new();
        attributes.insert("email".into(), Value::from("a@b.c"));
        attributes.insert("inserted_at".into(), Value::from("2026-01-01T00:00:00Z"));
        let row = ResourceObject::new("user", "id-1", attributes);
        let sort = parse_list("sort=email,-inserted_at", &SPEC).unwrap().sort;
        let cursor = encode_cursor(&row, &sort);
        let p = parse_list(&format!("sort=email,-inserted_at&page[after]={cursor}"), &SPEC).unwrap();
        let Page::After { cursor, .. } = p.page else { panic!("expected an after cursor") };
        assert_eq!(cursor.id, "id-1");
        assert_eq!(cursor.values, vec![Scalar::Text("a@b.c".into()), Scalar::Int(1_767_225_600_000_000)]);
        // A cursor made for one sort order is refused for another.
        assert!(
            parse_list(&format!("sort=email&page[after]={}", encode_cursor(&row, &sort)), &SPEC).is_err()
        );
    }
}

/// The query string is attacker input: whatever it is, parsing ends in a
/// list request or a 400 naming the parameter, and what the server issued
/// (cursors, filter values) reads back unchanged.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    static SPEC: QuerySpec = QuerySpec {
        filters: &[("email", FieldKind::TextCi), ("blocked", FieldKind::Bool), ("logins", FieldKind::Int)],
        sorts: &[("email", FieldKind::TextCi), ("inserted_at", FieldKind::Timestamp)],
        includes: &["roles"],
        default_sort: &[("inserted_at", Direction::Desc)],
    };

    fn encoded(text: &str) -> String {
        form_urlencoded::byte_serialize(text.as_bytes()).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_query_parses_or_is_a_400_naming_a_parameter(query in any::<String>()) {
            for result in [parse_list(&query, &SPEC).map(|_| ()), parse_fetch(&query, &SPEC).map(|_| ())] {
                if let Err(err) = result {
                    prop_assert_eq!(err.status, 400);
                    prop_assert!(err.parameter().is_some(), "{query:?}: no source.parameter");
                }
            }
        }

        #[test]
        fn query_shaped_input_parses_or_is_a_400(
            pairs in prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "page[limit]", "page[size]", "page[offset]", "page[after]", "page[before]",
                        "page[count]", "sort", "include", "fields[user]", "filter[email]",
                        "filter[email][contains]", "filter[blocked]", "filter[logins]", "filter[logins][gt]",
                        "filter[", "fields[]", "filter[]]", "page[",
                    ]),
                    any::<String>(),
                ),
                0..6,
            )
        ) {
            let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{}={}", encoded(k), encoded(v))).collect();
            if let Err(err) = parse_list(&query.join("&"), &SPEC) {
                prop_assert_eq!(err.status, 400);
                prop_assert!(err.parameter().is_some());
            }
        }

        #[test]
        fn filter_values_read_back_exactly(value in any::<String>(), logins in any::<i64>()) {
            let query = format!("filter[email][contains]={}&filter[logins]={logins}", encoded(&value));
            let params = parse_list(&query, &SPEC).unwrap();
            prop_assert_eq!(&params.filters[0].value, &Scalar::Text(value));
            prop_assert_eq!(params.filters[0].op, FilterOp::Contains);
            prop_assert_eq!(&params.filters[1].value, &Scalar::Int(logins));
        }

        #[test]
        fn issued_cursors_round_trip_and_changed_ones_never_panic(
            email in any::<String>(),
            id in any::<String>(),
            micros in 0i64..4_000_000_000_000_000,
            flip in any::<prop::sample::Index>(),
        ) {
            let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000).unwrap();
            let mut attributes = serde_json::Map::new();
            attributes.insert("email".into(), Value::from(email.clone()));
            attributes.insert("inserted_at".into(), Value::from(at.format(&Rfc3339).unwrap()));
            let row = ResourceObject::new("user", id.clone(), attributes);
            let sort = parse_list("sort=email,-inserted_at", &SPEC).unwrap().sort;
            let cursor = encode_cursor(&row, &sort);
            let params = parse_list(&format!("sort=email,-inserted_at&page[before]={cursor}"), &SPEC).unwrap();
            let Page::Before { cursor: read, .. } = params.page else { panic!("expected a before cursor") };
            prop_assert_eq!(read, Cursor { values: vec![Scalar::Text(email), Scalar::Int(micros)], id });

            // Cursors are positions, not credentials (the query stays scoped
            // to the caller's environment): one changed character gives a
            // 400 on page[after] or some other position, never a panic.
            let mut bytes = cursor.into_bytes();
            let at = flip.index(bytes.len());
            bytes[at] = if bytes[at] == b'A' { b'_' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            if let Err(err) = parse_list(&format!("sort=email,-inserted_at&page[after]={tampered}"), &SPEC) {
                prop_assert_eq!((err.status, err.parameter()), (400, Some("page[after]")));
            }
        }
    }
}
