//! The filter grammar of RFC 7644 §3.4.2.2 and PATCH paths (§3.5.2):
//! parsing to an expression with raw attribute names, resolving the names
//! against the schemas, and evaluating against a resource's JSON.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::Kind;
use super::schema::{Attr, Model, Target, Type};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    fn parse(word: &str) -> Option<Op> {
        let ops = [
            ("eq", Op::Eq),
            ("ne", Op::Ne),
            ("co", Op::Co),
            ("sw", Op::Sw),
            ("ew", Op::Ew),
            ("gt", Op::Gt),
            ("ge", Op::Ge),
            ("lt", Op::Lt),
            ("le", Op::Le),
        ];
        ops.into_iter().find(|(name, _)| name.eq_ignore_ascii_case(word)).map(|(_, op)| op)
    }

    fn ordering(self) -> bool {
        matches!(self, Op::Gt | Op::Ge | Op::Lt | Op::Le)
    }

    fn substring(self) -> bool {
        matches!(self, Op::Co | Op::Sw | Op::Ew)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

/// A parsed filter with attribute names as written.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Present(String),
    Compare(String, Op, Literal),
    /// `attr[filter]`: some value of the multi-valued `attr` matches.
    Value(String, Box<Expr>),
}

impl Expr {
    /// The single `attr eq value` this is, if it is one.
    pub fn as_equality(&self) -> Option<(&str, &Literal)> {
        match self {
            Expr::Compare(path, Op::Eq, literal) => Some((path, literal)),
            _ => None,
        }
    }

    /// The same filter with the attribute paths `rename` maps (outside
    /// value filters) replaced.
    pub fn renamed(self, rename: &dyn Fn(&str) -> Option<&'static str>) -> Expr {
        let path = |p: String| rename(&p).map_or(p, str::to_owned);
        match self {
            Expr::And(a, b) => Expr::And(Box::new(a.renamed(rename)), Box::new(b.renamed(rename))),
            Expr::Or(a, b) => Expr::Or(Box::new(a.renamed(rename)), Box::new(b.renamed(rename))),
            Expr::Not(e) => Expr::Not(Box::new(e.renamed(rename))),
            Expr::Present(p) => Expr::Present(path(p)),
            Expr::Compare(p, op, literal) => Expr::Compare(path(p), op, literal),
            Expr::Value(p, inner) => Expr::Value(p, inner),
        }
    }
}

pub fn parse(input: &str) -> Result<Expr, String> {
    let mut parser = Parser { rest: input };
    let expr = parser.or()?;
    parser.space();
    if !parser.rest.is_empty() {
        return Err(format!("Unexpected '{}' in the filter.", parser.rest));
    }
    Ok(expr)
}

/// A PATCH path: `attrPath`, or `attrPath "[" valFilter "]" ["." subAttr]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RawPath {
    /// `[URN ":"] attr ["." sub]` as written.
    pub attr: String,
    pub filter: Option<Expr>,
    /// The sub-attribute after a value filter.
    pub sub: Option<String>,
}

pub fn parse_path(input: &str) -> Result<RawPath, String> {
    let input = input.trim();
    let Some((attr, rest)) = input.split_once('[') else {
        if input.is_empty() || input.contains([' ', ']', '(', ')', '"']) {
            return Err(format!("Invalid path '{input}'."));
        }
        return Ok(RawPath { attr: input.to_owned(), filter: None, sub: None });
    };
    let mut parser = Parser { rest };
    let filter = parser.or()?;
    parser.space();
    let rest = parser.rest.strip_prefix(']').ok_or_else(|| format!("Missing ']' in path '{input}'."))?;
    let sub = match rest {
        "" => None,
        _ => Some(
            rest.strip_prefix('.')
                .filter(|s| is_name(s))
                .ok_or_else(|| format!("Invalid path '{input}'."))?,
        ),
    };
    if !is_name(attr) && !attr.contains(':') {
        return Err(format!("Invalid path '{input}'."));
    }
    Ok(RawPath { attr: attr.to_owned(), filter: Some(filter), sub: sub.map(str::to_owned) })
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$'))
}

struct Parser<'a> {
    rest: &'a str,
}

impl<'a> Parser<'a> {
    fn space(&mut self) {
        self.rest = self.rest.trim_start();
    }

    /// The keyword `word` (any case) followed by a space or `(`.
    fn keyword(&mut self, word: &str) -> bool {
        let n = word.len();
        let found = self.rest.get(..n).is_some_and(|w| w.eq_ignore_ascii_case(word))
            && self.rest[n..].starts_with(|c: char| c.is_whitespace() || c == '(');
        if found {
            self.rest = &self.rest[n..];
        }
        found
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        loop {
            self.space();
            if !self.keyword("or") {
                return Ok(left);
            }
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.unary()?;
        loop {
            self.space();
            if !self.keyword("and") {
                return Ok(left);
            }
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Result<Expr, String> {
        self.space();
        if self.keyword("not") {
            self.space();
            if !self.rest.starts_with('(') {
                return Err("'not' must be followed by '('.".into());
            }
            return Ok(Expr::Not(Box::new(self.group()?)));
        }
        if self.rest.starts_with('(') {
            return self.group();
        }
        self.comparison()
    }

    fn group(&mut self) -> Result<Expr, String> {
        self.rest = &self.rest[1..];
        let inner = self.or()?;
        self.space();
        self.rest = self.rest.strip_prefix(')').ok_or("Missing ')' in the filter.")?;
        Ok(inner)
    }

    fn word(&mut self) -> &'a str {
        let end =
            self.rest.find(|c: char| c.is_whitespace() || "()[]\"".contains(c)).unwrap_or(self.rest.len());
        let (word, rest) = self.rest.split_at(end);
        self.rest = rest;
        word
    }

    fn comparison(&mut self) -> Result<Expr, String> {
        let path = self.word();
        if path.is_empty() {
            let at = if self.rest.is_empty() { "the end" } else { self.rest };
            return Err(format!("Expected an attribute at {at}."));
        }
        if self.rest.starts_with('[') {
            self.rest = &self.rest[1..];
            let inner = self.or()?;
            self.space();
            self.rest = self.rest.strip_prefix(']').ok_or("Missing ']' in the filter.")?;
            // `emails[type eq "work"].value eq "x"`, as Entra sends [T]: the
            // same element must satisfy both.
            if let Some(rest) = self.rest.strip_prefix('.') {
                self.rest = rest;
                let tail = self.comparison()?;
                return Ok(Expr::Value(
                    path.to_owned(),
                    Box::new(Expr::And(Box::new(inner), Box::new(tail))),
                ));
            }
            return Ok(Expr::Value(path.to_owned(), Box::new(inner)));
        }
        self.space();
        let word = self.word();
        if word.eq_ignore_ascii_case("pr") {
            return Ok(Expr::Present(path.to_owned()));
        }
        let op = Op::parse(word).ok_or_else(|| format!("Unknown operator '{word}' after '{path}'."))?;
        self.space();
        Ok(Expr::Compare(path.to_owned(), op, self.literal()?))
    }

    fn literal(&mut self) -> Result<Literal, String> {
        if self.rest.starts_with('"') {
            // Find the closing quote, skipping escaped characters, then let
            // JSON decode the escapes.
            let bytes = self.rest.as_bytes();
            let mut i = 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            if i >= bytes.len() {
                return Err("Unterminated string in the filter.".into());
            }
            let text: String = serde_json::from_str(&self.rest[..=i])
                .map_err(|_| "Invalid string in the filter.".to_owned())?;
            self.rest = &self.rest[i + 1..];
            return Ok(Literal::Str(text));
        }
        let word = self.word();
        match word {
            "true" => Ok(Literal::Bool(true)),
            "false" => Ok(Literal::Bool(false)),
            "null" => Ok(Literal::Null),
            _ => word.parse().map(Literal::Num).map_err(|_| format!("Invalid value '{word}' in the filter.")),
        }
    }
}

// ---------------------------------------------------------------------------
// Resolution

/// An attribute a filter reads, with what comparing it needs.
#[derive(Debug, Clone)]
pub struct Field {
    pub ext: Option<&'static str>,
    pub name: &'static str,
    pub sub: Option<&'static str>,
    pub ty: Type,
    pub case_exact: bool,
}

/// A filter whose names are resolved.
#[derive(Debug, Clone)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Present(Field),
    Compare(Field, Op, Literal),
    Value(Field, Box<Filter>),
}

/// The attribute `path` names on resources of `kind`.
pub fn field(model: &Model, kind: Kind, path: &str) -> Result<Field, String> {
    match model.resolve(kind, path)? {
        Target::Extension(_) => Err(format!("'{path}' is not an attribute.")),
        Target::Attr(r) => Ok(Field {
            ext: r.ext,
            name: r.attr.name,
            sub: r.sub.map(|s| s.name),
            ty: r.leaf().ty,
            case_exact: r.leaf().case_exact,
        }),
    }
}

/// Resolves a filter on resources of `kind`.
pub fn resolve(expr: &Expr, model: &Model, kind: Kind) -> Result<Filter, String> {
    let field = |path: &str| field(model, kind, path);
    resolve_with(expr, &field, &|path: &str| match model.resolve(kind, path)? {
        Target::Attr(r) if r.sub.is_none() && r.attr.multi && r.attr.ty == Type::Complex => Ok(r.attr),
        _ => Err(format!("'{path}' is not a multi-valued complex attribute.")),
    })
}

/// Resolves the filter of a value path: names are sub-attributes of `attr`.
pub fn resolve_within(expr: &Expr, attr: &Attr) -> Result<Filter, String> {
    let field = |name: &str| -> Result<Field, String> {
        let sub = attr.sub(name).ok_or_else(|| format!("'{}' has no sub-attribute '{name}'.", attr.name))?;
        Ok(Field { ext: None, name: sub.name, sub: None, ty: sub.ty, case_exact: sub.case_exact })
    };
    resolve_with(expr, &field, &|path: &str| Err(format!("'{path}[…]' cannot be nested in a value path.")))
}

type FieldOf<'f> = dyn Fn(&str) -> Result<Field, String> + 'f;
type MultiOf<'f, 'm> = dyn Fn(&str) -> Result<&'m Attr, String> + 'f;

fn resolve_with<'m>(expr: &Expr, field: &FieldOf, multi: &MultiOf<'_, 'm>) -> Result<Filter, String> {
    let both = |a: &Expr, b: &Expr| -> Result<_, String> {
        Ok((Box::new(resolve_with(a, field, multi)?), Box::new(resolve_with(b, field, multi)?)))
    };
    Ok(match expr {
        Expr::And(a, b) => {
            let (a, b) = both(a, b)?;
            Filter::And(a, b)
        }
        Expr::Or(a, b) => {
            let (a, b) = both(a, b)?;
            Filter::Or(a, b)
        }
        Expr::Not(inner) => Filter::Not(Box::new(resolve_with(inner, field, multi)?)),
        Expr::Present(path) => Filter::Present(field(path)?),
        Expr::Compare(path, op, literal) => {
            let mut f = field(path)?;
            if f.ty == Type::Complex {
                // `emails co "x"` compares the `value` sub-attribute (§3.4.2.2).
                let complex = |_| format!("'{path}' is complex and cannot be compared.");
                f = field(&format!("{path}.value")).map_err(complex)?;
            }
            let refused = match f.ty {
                Type::Boolean => op.ordering() || op.substring(),
                Type::Binary => op.ordering(),
                Type::Integer | Type::Decimal => op.substring(),
                _ => false,
            };
            if refused {
                return Err(format!("'{path}' does not support this operator."));
            }
            Filter::Compare(f, *op, literal.clone())
        }
        Expr::Value(path, inner) => {
            let attr = multi(path)?;
            let f = field(path)?;
            Filter::Value(f, Box::new(resolve_within(inner, attr)?))
        }
    })
}

// ---------------------------------------------------------------------------
// Evaluation

impl Filter {
    pub fn matches(&self, object: &Map<String, Value>) -> bool {
        match self {
            Filter::And(a, b) => a.matches(object) && b.matches(object),
            Filter::Or(a, b) => a.matches(object) || b.matches(object),
            Filter::Not(inner) => !inner.matches(object),
            Filter::Present(field) => values(field, object).into_iter().any(assigned),
            Filter::Compare(field, op, literal) => {
                let found = values(field, object);
                match (op, literal) {
                    (Op::Eq, Literal::Null) => !found.into_iter().any(assigned),
                    (Op::Ne, Literal::Null) => found.into_iter().any(assigned),
                    // `ne` is "no value equals", so an absent attribute matches.
                    (Op::Ne, _) => !found.into_iter().any(|v| compare(field, Op::Eq, v, literal)),
                    _ => found.into_iter().any(|v| compare(field, *op, v, literal)),
                }
            }
            Filter::Value(field, inner) => elements(field, object).any(|e| inner.matches(e)),
        }
    }
}

fn assigned(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

fn container<'a>(field: &Field, object: &'a Map<String, Value>) -> Option<&'a Map<String, Value>> {
    match field.ext {
        Some(urn) => object.get(urn)?.as_object(),
        None => Some(object),
    }
}

/// The objects of a multi-valued complex attribute.
fn elements<'a>(
    field: &Field,
    object: &'a Map<String, Value>,
) -> impl Iterator<Item = &'a Map<String, Value>> {
    let value = container(field, object).and_then(|c| c.get(field.name));
    let items = match value {
        Some(Value::Array(items)) => items.as_slice(),
        Some(single) => std::slice::from_ref(single),
        None => &[],
    };
    items.iter().filter_map(Value::as_object)
}

/// Every value the field names: one per element of a multi-valued attribute.
fn values<'a>(field: &Field, object: &'a Map<String, Value>) -> Vec<&'a Value> {
    let Some(value) = container(field, object).and_then(|c| c.get(field.name)) else { return Vec::new() };
    let items = match value {
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    match field.sub {
        None => items,
        Some(sub) => items.into_iter().filter_map(|item| item.get(sub)).collect(),
    }
}

fn compare(field: &Field, op: Op, value: &Value, literal: &Literal) -> bool {
    match (value, literal) {
        (Value::String(actual), Literal::Str(expected)) => {
            let (actual, expected) = if field.case_exact {
                (actual.clone(), expected.clone())
            } else {
                (actual.to_lowercase(), expected.to_lowercase())
            };
            match op {
                Op::Eq => actual == expected,
                Op::Ne => actual != expected,
                Op::Co => actual.contains(&expected),
                Op::Sw => actual.starts_with(&expected),
                Op::Ew => actual.ends_with(&expected),
                _ => ordered(op, order_strings(field.ty, &actual, &expected)),
            }
        }
        (Value::Number(actual), Literal::Num(expected)) => {
            let actual = actual.as_f64().unwrap_or(f64::NAN);
            actual.partial_cmp(expected).is_some_and(|o| ordered(op, o))
        }
        (Value::Bool(actual), Literal::Bool(expected)) => match op {
            Op::Eq => actual == expected,
            Op::Ne => actual != expected,
            _ => false,
        },
        _ => false,
    }
}

fn ordered(op: Op, ordering: Ordering) -> bool {
    match op {
        Op::Eq => ordering == Ordering::Equal,
        Op::Ne => ordering != Ordering::Equal,
        Op::Gt => ordering == Ordering::Greater,
        Op::Ge => ordering != Ordering::Less,
        Op::Lt => ordering == Ordering::Less,
        Op::Le => ordering != Ordering::Greater,
        _ => false,
    }
}

/// dateTimes compare as instants, other strings lexically.
fn order_strings(ty: Type, a: &str, b: &str) -> Ordering {
    if ty == Type::DateTime {
        let format = time::format_description::well_known::Rfc3339;
        if let (Ok(a), Ok(b)) =
            (time::OffsetDateTime::parse(a, &format), time::OffsetDateTime::parse(b, &format))
        {
            return a.cmp(&b);
        }
    }
    a.cmp(b)
}

/// The value a resource sorts by (RFC 7644 §3.4.2.3): for a multi-valued
/// attribute, the primary value, else the first.
pub fn sort_key<'a>(field: &Field, object: &'a Map<String, Value>) -> Option<&'a Value> {
    let value = container(field, object)?.get(field.name)?;
    let value = match value {
        Value::Array(items) => {
            items.iter().find(|i| i.get("primary") == Some(&Value::Bool(true))).or_else(|| items.first())?
        }
        single => single,
    };
    match (field.sub, value) {
        (Some(sub), v) => v.get(sub),
        (None, Value::Object(o)) => o.get("value"),
        (None, v) => Some(v),
    }
}

/// Orders two sort keys; missing values sort last (ascending).
pub fn sort_order(field: &Field, a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, _) => Ordering::Greater,
        (_, None) => Ordering::Less,
        (Some(Value::String(a)), Some(Value::String(b))) if !field.case_exact => {
            order_strings(field.ty, &a.to_lowercase(), &b.to_lowercase())
        }
        (Some(Value::String(a)), Some(Value::String(b))) => order_strings(field.ty, a, b),
        (Some(Value::Number(a)), Some(Value::Number(b))) => {
            a.as_f64().partial_cmp(&b.as_f64()).unwrap_or(Ordering::Equal)
        }
        (Some(Value::Bool(a)), Some(Value::Bool(b))) => a.cmp(b),
        _ => Ordering::Equal,
    }
}

/// The attribute values a filter pins with `eq`, joined by `and`: what
/// Entra expects a new element to get when it adds to a filtered path that
/// matches nothing.
pub fn equalities(filter: &Filter, out: &mut Map<String, Value>) {
    match filter {
        Filter::And(a, b) => {
            equalities(a, out);
            equalities(b, out);
        }
        Filter::Compare(field, Op::Eq, literal) => {
            let value = match literal {
                Literal::Str(s) => Value::String(s.clone()),
                Literal::Bool(b) => Value::Bool(*b),
                Literal::Num(n) => serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number),
                Literal::Null => return,
            };
            out.insert(field.name.to_owned(), value);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(path: &str, op: Op, s: &str) -> Expr {
        Expr::Compare(path.into(), op, Literal::Str(s.into()))
    }

    #[test]
    fn precedence_is_not_then_and_then_or() {
        let expr = parse(r#"a eq "1" or b eq "2" and not (c pr)"#).unwrap();
        let and = Expr::And(
            Box::new(cmp("b", Op::Eq, "2")),
            Box::new(Expr::Not(Box::new(Expr::Present("c".into())))),
        );
        assert_eq!(expr, Expr::Or(Box::new(cmp("a", Op::Eq, "1")), Box::new(and)));
    }

    #[test]
    fn value_paths_urns_escapes_and_keywords_parse() {
        let expr = parse(r#"emails[type eq "work" AND value co "@x"]"#).unwrap();
        let inner = Expr::And(Box::new(cmp("type", Op::Eq, "work")), Box::new(cmp("value", Op::Co, "@x")));
        assert_eq!(expr, Expr::Value("emails".into(), Box::new(inner)));
        let expr =
            parse(r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value EQ "a\"b""#);
        assert_eq!(
            expr.unwrap(),
            cmp("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value", Op::Eq, "a\"b")
        );
        assert_eq!(
            parse("meta.lastModified gt 5").unwrap(),
            Expr::Compare("meta.lastModified".into(), Op::Gt, Literal::Num(5.0))
        );
        for bad in
            ["", "userName", "userName eq", "userName xx \"a\"", "(a pr", "a pr)", "not a pr", "a eq \"x"]
        {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn paths_split_filter_and_sub_attribute() {
        let path = parse_path(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(path.attr, "emails");
        assert_eq!(path.filter, Some(cmp("type", Op::Eq, "work")));
        assert_eq!(path.sub.as_deref(), Some("value"));
        assert_eq!(parse_path("name.givenName").unwrap().attr, "name.givenName");
        for bad in ["", "emails[type eq \"work\"", "emails[type eq \"work\"]value", "a b"] {
            assert!(parse_path(bad).is_err(), "{bad:?} should be refused");
        }
    }
}

/// Filters and PATCH paths come from the SCIM client: any text parses or is
/// refused with a message, and filters a client writes read back as meant.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn name() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["userName", "emails", "name.givenName", "active", "meta.lastModified", "x"])
            .prop_map(str::to_owned)
    }

    /// A quoted SCIM string literal (JSON string syntax) and what it means.
    fn literal() -> impl Strategy<Value = (String, Literal)> {
        prop_oneof![
            any::<String>().prop_map(|s| (serde_json::to_string(&s).unwrap(), Literal::Str(s))),
            any::<bool>().prop_map(|b| (b.to_string(), Literal::Bool(b))),
            (-1_000_000i32..1_000_000).prop_map(|n| (n.to_string(), Literal::Num(f64::from(n)))),
            Just(("null".to_owned(), Literal::Null)),
        ]
    }

    fn op() -> impl Strategy<Value = (&'static str, Op)> {
        prop::sample::select(vec![
            ("eq", Op::Eq),
            ("NE", Op::Ne),
            ("co", Op::Co),
            ("sw", Op::Sw),
            ("Ew", Op::Ew),
            ("gt", Op::Gt),
            ("ge", Op::Ge),
            ("lt", Op::Lt),
            ("le", Op::Le),
        ])
    }

    /// Filter text built from the grammar, with the expression it must parse to.
    fn filter() -> impl Strategy<Value = (String, Expr)> {
        let leaf = prop_oneof![
            (name(), op(), literal()).prop_map(|(name, (word, op), (text, literal))| {
                (format!("{name} {word} {text}"), Expr::Compare(name, op, literal))
            }),
            name().prop_map(|name| (format!("{name} pr"), Expr::Present(name))),
        ];
        leaf.prop_recursive(3, 16, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|((a, x), (b, y))| {
                    (format!("({a}) and ({b})"), Expr::And(Box::new(x), Box::new(y)))
                }),
                (inner.clone(), inner.clone()).prop_map(|((a, x), (b, y))| {
                    (format!("({a}) OR ({b})"), Expr::Or(Box::new(x), Box::new(y)))
                }),
                inner.clone().prop_map(|(a, x)| (format!("not ({a})"), Expr::Not(Box::new(x)))),
                (name(), inner)
                    .prop_map(|(name, (a, x))| (format!("{name}[{a}]"), Expr::Value(name, Box::new(x)))),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_text_parses_or_is_refused(text in any::<String>()) {
            let _ = parse(&text);
            let _ = parse_path(&text);
        }

        #[test]
        fn grammar_shaped_text_parses_or_is_refused(
            tokens in prop::collection::vec(
                prop::sample::select(vec![
                    "userName", "emails", "[", "]", "(", ")", " ", "eq", "pr", "and", "or", "not", "\"a\"",
                    "\"", "\\", "5", "true", "null", ".", ":", "urn:ietf:params:scim", "value",
                ]),
                0..16,
            )
        ) {
            let text = tokens.concat();
            let _ = parse(&text);
            let _ = parse_path(&text);
        }

        #[test]
        fn written_filters_read_back_as_meant((text, expr) in filter()) {
            prop_assert_eq!(parse(&text), Ok(expr.clone()));
            // The same filter as a PATCH value path.
            prop_assert_eq!(
                parse_path(&format!("emails[{text}].value")),
                Ok(RawPath { attr: "emails".into(), filter: Some(expr), sub: Some("value".into()) })
            );
        }
    }
}
