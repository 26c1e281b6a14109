//! Stored resources and what the API does with them: checking bodies,
//! writing, rendering, `attributes`/`excludedAttributes`, and queries.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Map, Value, json};

use super::filter::{self, Expr, Field, Literal};
use super::patch::{self, Patcher};
use super::schema::{self, Attr, Checks, Mutability, Returned, Target};
use super::{AWS_UNPARSABLE, Config, FilterSupport, Kind, ScimError, ScimSim};
use crate::common::IdSequence;

/// A resource as stored: attributes under their canonical names, extension
/// attributes under the extension's URN; `id` and `meta` kept apart.
pub struct Stored {
    pub id: String,
    pub kind: Kind,
    pub attrs: Map<String, Value>,
    pub created: i64,
    pub modified: i64,
    pub version: u64,
}

pub struct Store {
    ids: IdSequence,
    next_number: u64,
    next_seq: u64,
    last_version: u64,
    /// Creation order, across resource types.
    rows: BTreeMap<u64, Stored>,
    seq_of: HashMap<String, u64>,
    /// Lower-cased userName → user id: userName is unique and not caseExact.
    user_names: HashMap<String, String>,
    /// Member id → the groups listing it.
    member_of: HashMap<String, BTreeSet<String>>,
    /// What TravelPerk's `travelPolicy` and `invoiceProfiles` may name: kept
    /// with the resources so a write checks them under the same lock.
    pub travel_policies: BTreeSet<String>,
    pub invoice_profiles: BTreeSet<String>,
}

impl Store {
    pub fn new(config: &Config) -> Store {
        Store {
            ids: IdSequence::new(config.seed),
            // Numeric ids count up from the seed.
            next_number: config.seed.max(1) - 1,
            next_seq: 0,
            last_version: 0,
            rows: BTreeMap::new(),
            seq_of: HashMap::new(),
            user_names: HashMap::new(),
            member_of: HashMap::new(),
            travel_policies: config.travel_policies.iter().cloned().collect(),
            invoice_profiles: config.invoice_profiles.iter().cloned().collect(),
        }
    }

    fn new_id(&mut self, numeric: bool) -> String {
        if numeric {
            self.next_number += 1;
            self.next_number.to_string()
        } else {
            self.ids.next("")
        }
    }

    /// A version no write has had before.
    fn new_version(&mut self) -> u64 {
        self.last_version += 1;
        self.last_version
    }

    pub fn by_id(&self, id: &str) -> Option<&Stored> {
        self.rows.get(self.seq_of.get(id)?)
    }

    pub fn get(&self, kind: Kind, id: &str) -> Option<&Stored> {
        self.by_id(id).filter(|r| r.kind == kind)
    }

    pub fn iter(&self, kind: Kind) -> impl Iterator<Item = &Stored> {
        self.rows.values().filter(move |r| r.kind == kind)
    }

    fn groups_of(&self, id: &str) -> impl Iterator<Item = &Stored> {
        self.member_of.get(id).into_iter().flatten().filter_map(|g| self.by_id(g))
    }

    /// Inserts or replaces (keeping the creation order) and updates the indexes.
    fn put(&mut self, stored: Stored) {
        let seq = match self.seq_of.get(&stored.id) {
            Some(&seq) => seq,
            None => {
                self.next_seq += 1;
                self.seq_of.insert(stored.id.clone(), self.next_seq);
                self.next_seq
            }
        };
        if let Some(old) = self.rows.remove(&seq) {
            self.unindex(&old);
        }
        self.index(&stored);
        self.rows.insert(seq, stored);
    }

    fn take(&mut self, id: &str) -> Option<Stored> {
        let stored = self.rows.remove(&self.seq_of.remove(id)?)?;
        self.unindex(&stored);
        Some(stored)
    }

    fn index(&mut self, r: &Stored) {
        if let Some(name) = user_name(r) {
            self.user_names.insert(name, r.id.clone());
        }
        for member in member_ids(r) {
            self.member_of.entry(member.to_owned()).or_default().insert(r.id.clone());
        }
    }

    fn unindex(&mut self, r: &Stored) {
        if let Some(name) = user_name(r) {
            self.user_names.remove(&name);
        }
        for member in member_ids(r) {
            if let Some(groups) = self.member_of.get_mut(member) {
                groups.remove(&r.id);
            }
        }
    }
}

fn user_name(r: &Stored) -> Option<String> {
    (r.kind == Kind::User).then(|| r.attrs.get("userName")?.as_str().map(str::to_lowercase)).flatten()
}

fn member_ids(r: &Stored) -> impl Iterator<Item = &str> {
    let members = r.attrs.get("members").and_then(Value::as_array);
    members.into_iter().flatten().filter_map(|m| m.get("value")?.as_str())
}

pub fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

/// Whether an `If-Match`/`If-None-Match` list names `current` (weakly).
pub fn etag_matches(header: &str, current: &str) -> bool {
    let bare = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    header.split(',').any(|tag| tag.trim() == "*" || bare(tag) == bare(current))
}

fn timestamp(secs: i64) -> String {
    let format = time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// What a write did.
pub enum Change {
    Kept,
    /// Stripe deletes a user set inactive.
    Deleted,
}

/// `attributes` or `excludedAttributes` (RFC 7644 §3.4.2.5), as written.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    attributes: Option<Vec<String>>,
    excluded: Vec<String>,
}

impl Projection {
    pub fn from_params(attributes: Option<String>, excluded: Option<String>) -> Result<Self, ScimError> {
        let split =
            |s: String| s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
        Self::new(attributes.map(split), excluded.map(split).unwrap_or_default())
    }

    fn new(attributes: Option<Vec<String>>, excluded: Vec<String>) -> Result<Self, ScimError> {
        if attributes.is_some() && !excluded.is_empty() {
            return Err(ScimError::invalid_syntax(
                "'attributes' and 'excludedAttributes' are mutually exclusive.",
            ));
        }
        Ok(Projection { attributes, excluded })
    }
}

/// A list or `.search` query.
#[derive(Debug, Clone)]
pub struct ListQuery {
    filter: Option<Expr>,
    start_index: usize,
    count: Option<usize>,
    sort_by: Option<String>,
    descending: bool,
    projection: Projection,
}

impl ListQuery {
    pub fn from_params(param: impl Fn(&str) -> Option<String>) -> Result<Self, ScimError> {
        let number = |name: &str| -> Result<Option<i64>, ScimError> {
            param(name)
                .map(|v| {
                    v.trim()
                        .parse()
                        .map_err(|_| ScimError::invalid_value(format!("'{name}' must be an integer.")))
                })
                .transpose()
        };
        Self::new(
            param("filter"),
            number("startIndex")?,
            number("count")?,
            param("sortBy"),
            param("sortOrder"),
            Projection::from_params(param("attributes"), param("excludedAttributes"))?,
        )
    }

    /// A `SearchRequest` body (RFC 7644 §3.4.3).
    pub fn from_search(body: &Value, require_schemas: bool) -> Result<Self, ScimError> {
        let Value::Object(fields) = body else {
            return Err(ScimError::invalid_syntax("The body must be a SearchRequest object."));
        };
        if require_schemas && !lists(fields.get("schemas"), schema::SEARCH) {
            return Err(ScimError::invalid_syntax(format!("'schemas' must list {}.", schema::SEARCH)));
        }
        let field = |name: &str| fields.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v);
        let text = |name: &str| -> Result<Option<String>, ScimError> {
            match field(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(ScimError::invalid_value(format!("'{name}' must be a string."))),
            }
        };
        let number = |name: &str| -> Result<Option<i64>, ScimError> {
            match field(name) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_i64()
                    .map(Some)
                    .ok_or_else(|| ScimError::invalid_value(format!("'{name}' must be an integer."))),
            }
        };
        let names = |name: &str| -> Result<Option<Vec<String>>, ScimError> {
            match field(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.split(',').map(|s| s.trim().to_owned()).collect())),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| i.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .map(Some)
                    .ok_or_else(|| ScimError::invalid_value(format!("'{name}' must list strings."))),
                Some(_) => Err(ScimError::invalid_value(format!("'{name}' must list strings."))),
            }
        };
        let projection =
            Projection::new(names("attributes")?, names("excludedAttributes")?.unwrap_or_default())?;
        Self::new(
            text("filter")?,
            number("startIndex")?,
            number("count")?,
            text("sortBy")?,
            text("sortOrder")?,
            projection,
        )
    }

    fn new(
        filter: Option<String>,
        start_index: Option<i64>,
        count: Option<i64>,
        sort_by: Option<String>,
        sort_order: Option<String>,
        projection: Projection,
    ) -> Result<Self, ScimError> {
        let filter = filter.map(|f| filter::parse(&f).map_err(ScimError::invalid_filter)).transpose()?;
        let descending = match sort_order.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("ascending") => false,
            Some("descending") => true,
            Some(other) => {
                return Err(ScimError::invalid_value(format!(
                    "sortOrder '{other}' is not ascending or descending."
                )));
            }
        };
        Ok(ListQuery {
            filter,
            // Below 1 means 1; a negative count means 0 (RFC 7644 §3.4.2.4).
            start_index: start_index.unwrap_or(1).max(1) as usize,
            count: count.map(|c| c.max(0) as usize),
            sort_by,
            descending,
            projection,
        })
    }
}

/// Whether a `schemas` value lists `urn`.
pub fn lists(schemas: Option<&Value>, urn: &str) -> bool {
    schemas
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|u| u.as_str().is_some_and(|u| u.eq_ignore_ascii_case(urn))))
}

/// One `attributes`/`excludedAttributes` entry, resolved.
struct Selection {
    ext: Option<&'static str>,
    /// None selects the whole extension.
    attr: Option<&'static str>,
    sub: Option<&'static str>,
}

impl ScimSim {
    fn checks(&self, client: bool) -> Checks {
        Checks {
            string_booleans: self.config.string_booleans,
            reject_unknown: client && self.config.reject_unknown_attributes,
        }
    }

    /// Every attribute of `kind` (core, then extensions) that `keep` selects.
    fn attrs_where(&self, kind: Kind, keep: impl Fn(&Attr) -> bool) -> Vec<(Option<&'static str>, &Attr)> {
        let core = self.model.core(kind).into_iter().flat_map(|s| s.attributes.iter().map(|a| (None, a)));
        let extensions =
            self.model.extensions(kind).iter().flat_map(|s| s.attributes.iter().map(|a| (Some(s.id), a)));
        core.chain(extensions).filter(|(_, a)| keep(a)).collect()
    }

    /// A resource body from a client (`client`) or the back door, checked
    /// and reduced to what is stored: read-only attributes are the server's
    /// and are ignored (RFC 7643 §2.2).
    fn read_body(&self, kind: Kind, body: &Value, client: bool) -> Result<Map<String, Value>, ScimError> {
        let Value::Object(fields) = body else {
            return Err(ScimError::invalid_syntax("The body must be a JSON object."));
        };
        if let Some(core) = self.model.core(kind)
            && client
            && self.config.require_schemas
            && !lists(fields.get("schemas"), core.id)
        {
            return Err(ScimError::invalid_syntax(format!("'schemas' must list {}.", core.id)));
        }
        let checks = self.checks(client);
        let unknown = |name: &str| ScimError::invalid_syntax(format!("Unknown attribute '{name}'."));
        let mut attrs = Map::new();
        for (key, value) in fields {
            if key.eq_ignore_ascii_case("schemas") {
                continue;
            }
            if let Some(ext) = self.model.extension(kind, key) {
                let fields = match value {
                    Value::Object(fields) => fields,
                    Value::Null => continue,
                    _ => return Err(ScimError::invalid_value(format!("'{}' must be an object.", ext.id))),
                };
                let mut out = Map::new();
                // Clients serialising an extension model add its `schemas`.
                for (name, value) in fields.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("schemas")) {
                    let Some(attr) = ext.attr(name) else {
                        if checks.reject_unknown {
                            return Err(unknown(&format!("{}:{name}", ext.id)));
                        }
                        continue;
                    };
                    if let Some(value) = attr.check(value, checks, false)?.filter(|_| attr.writable()) {
                        out.insert(attr.name.to_owned(), value);
                    }
                }
                if !out.is_empty() {
                    attrs.insert(ext.id.to_owned(), Value::Object(out));
                }
                continue;
            }
            let Some(attr) = self.model.core_attr(kind, key) else {
                if checks.reject_unknown {
                    return Err(unknown(key));
                }
                continue;
            };
            if !attr.writable() {
                continue;
            }
            if let Some(value) = attr.check(value, checks, false)? {
                attrs.insert(attr.name.to_owned(), value);
            }
        }
        Ok(attrs)
    }

    /// The rules a resource must meet after any write; `id` is its own id
    /// (None while creating).
    fn validate(
        &self,
        st: &Store,
        kind: Kind,
        attrs: &Map<String, Value>,
        id: Option<&str>,
    ) -> Result<(), ScimError> {
        for (ext, attr) in self.attrs_where(kind, |a| a.required) {
            let container = match ext {
                Some(urn) => attrs.get(urn).and_then(Value::as_object),
                None => Some(attrs),
            };
            if !container.is_some_and(|c| c.contains_key(attr.name)) {
                return Err(ScimError::invalid_value(format!("'{}' is required.", attr.name)));
            }
        }
        let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
        match kind {
            Kind::User => {
                if let Some(name) = text(attrs.get("userName"))
                    && st.user_names.get(&name.to_lowercase()).is_some_and(|owner| Some(owner.as_str()) != id)
                {
                    let detail = format!("userName '{name}' is already taken.");
                    return Err(ScimError::new(409, Some("uniqueness"), detail));
                }
                let manager =
                    attrs.get(schema::ENTERPRISE).and_then(|e| e.get("manager")).and_then(|m| m.get("value"));
                if let Some(manager) = text(manager)
                    && self.config.manager_must_exist
                    && st.get(Kind::User, &manager).is_none()
                {
                    return Err(ScimError::invalid_value(format!("Manager '{manager}' does not exist.")));
                }
                if let Some(travel) = attrs.get(schema::TRAVELPERK) {
                    if let Some(policy) = text(travel.get("travelPolicy"))
                        && !st.travel_policies.contains(&policy)
                    {
                        return Err(ScimError::invalid_value(format!(
                            "No travel policy is named '{policy}'."
                        )));
                    }
                    let profiles =
                        travel.get("invoiceProfiles").and_then(Value::as_array).into_iter().flatten();
                    for profile in profiles.filter_map(|p| text(p.get("value"))) {
                        if !st.invoice_profiles.contains(&profile) {
                            return Err(ScimError::invalid_value(format!(
                                "No invoice profile is named '{profile}'."
                            )));
                        }
                    }
                }
            }
            Kind::Group => {
                for member in attrs.get("members").and_then(Value::as_array).into_iter().flatten() {
                    let value = text(member.get("value"))
                        .ok_or_else(|| ScimError::invalid_value("Each member needs a 'value'."))?;
                    if st.by_id(&value).is_none() || Some(value.as_str()) == id {
                        return Err(ScimError::invalid_value(format!("Member '{value}' does not exist.")));
                    }
                }
            }
        }
        Ok(())
    }

    /// An immutable attribute may be set once, never changed (RFC 7643 §2.2).
    fn check_immutable(
        &self,
        kind: Kind,
        old: &Map<String, Value>,
        new: &Map<String, Value>,
    ) -> Result<(), ScimError> {
        for (ext, attr) in self.attrs_where(kind, |a| a.mutability == Mutability::Immutable) {
            let get = |m: &Map<String, Value>| match ext {
                Some(urn) => m.get(urn).and_then(|e| e.get(attr.name)).cloned(),
                None => m.get(attr.name).cloned(),
            };
            if let Some(before) = get(old)
                && get(new).is_none_or(|after| !schema::same_value(attr, &before, &after))
            {
                return Err(ScimError::mutability(format!("'{}' is immutable.", attr.name)));
            }
        }
        Ok(())
    }

    fn check_if_match(&self, stored: &Stored, if_match: Option<&str>) -> Result<(), ScimError> {
        match if_match {
            Some(tags) if self.config.etag && !etag_matches(tags, &etag(stored.version)) => {
                Err(ScimError::new(
                    412,
                    None,
                    "Failed to update. Resource changed on the server (If-Match does not match meta.version).",
                ))
            }
            _ => Ok(()),
        }
    }

    /// Returns the new resource's id.
    pub(super) fn create(
        &self,
        st: &mut Store,
        kind: Kind,
        body: &Value,
        client: bool,
    ) -> Result<String, ScimError> {
        let attrs = self.read_body(kind, body, client)?;
        self.validate(st, kind, &attrs, None)?;
        let id = st.new_id(self.config.numeric_ids);
        let now = self.clock.now();
        let version = st.new_version();
        st.put(Stored { id: id.clone(), kind, attrs, created: now, modified: now, version });
        Ok(id)
    }

    /// PUT (RFC 7644 §3.5.1).
    pub(super) fn replace(
        &self,
        st: &mut Store,
        kind: Kind,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
        client: bool,
    ) -> Result<Change, ScimError> {
        let old = st.get(kind, id).ok_or_else(|| ScimError::not_found(id))?;
        self.check_if_match(old, if_match)?;
        let mut attrs = self.read_body(kind, body, client)?;
        // Immutable values and the password stay when left out.
        let kept = |a: &Attr| matches!(a.mutability, Mutability::Immutable | Mutability::WriteOnly);
        for (ext, attr) in self.attrs_where(kind, kept) {
            let before = match ext {
                Some(urn) => old.attrs.get(urn).and_then(Value::as_object),
                None => Some(&old.attrs),
            };
            let Some(value) = before.and_then(|c| c.get(attr.name)) else { continue };
            let container = match ext {
                Some(urn) => match attrs.entry(urn).or_insert_with(|| Value::Object(Map::new())) {
                    Value::Object(object) => object,
                    _ => continue,
                },
                None => &mut attrs,
            };
            container.entry(attr.name).or_insert_with(|| value.clone());
        }
        if client {
            self.check_immutable(kind, &old.attrs, &attrs)?;
        }
        self.validate(st, kind, &attrs, Some(id))?;
        Ok(self.commit(st, kind, id, attrs))
    }

    /// PATCH (RFC 7644 §3.5.2), on a copy: nothing changes unless every
    /// operation and every check passes.
    pub(super) fn patch(
        &self,
        st: &mut Store,
        kind: Kind,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
        client: bool,
    ) -> Result<Change, ScimError> {
        let Value::Object(fields) = body else {
            return Err(ScimError::invalid_syntax("The body must be a PatchOp object."));
        };
        if client && self.config.require_schemas && !lists(fields.get("schemas"), schema::PATCH_OP) {
            return Err(ScimError::invalid_syntax(format!("'schemas' must list {}.", schema::PATCH_OP)));
        }
        let operations = fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("Operations"))
            .and_then(|(_, v)| v.as_array())
            .filter(|ops| !ops.is_empty())
            .ok_or_else(|| ScimError::invalid_syntax("'Operations' must be a non-empty array."))?;
        if let Some(max) = self.config.max_patch_member_changes
            && kind == Kind::Group
            && patch::member_changes(operations) > max
        {
            return Err(ScimError::new(400, None, AWS_UNPARSABLE));
        }
        let old = st.get(kind, id).ok_or_else(|| ScimError::not_found(id))?;
        self.check_if_match(old, if_match)?;
        let mut attrs = old.attrs.clone();
        Patcher { config: &self.config, model: &self.model, kind }.apply(&mut attrs, operations)?;
        if client {
            self.check_immutable(kind, &old.attrs, &attrs)?;
        }
        self.validate(st, kind, &attrs, Some(id))?;
        Ok(self.commit(st, kind, id, attrs))
    }

    pub(super) fn delete(
        &self,
        st: &mut Store,
        kind: Kind,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), ScimError> {
        let old = st.get(kind, id).ok_or_else(|| ScimError::not_found(id))?;
        self.check_if_match(old, if_match)?;
        if kind == Kind::User && self.config.delete_deactivates {
            let mut attrs = old.attrs.clone();
            attrs.insert("active".into(), Value::Bool(false));
            self.store(st, id, attrs);
        } else {
            self.delete_now(st, id);
        }
        Ok(())
    }

    /// Removes a resource and every membership naming it.
    pub(super) fn delete_now(&self, st: &mut Store, id: &str) {
        if st.take(id).is_none() {
            return;
        }
        let groups: Vec<String> = st.groups_of(id).map(|g| g.id.clone()).collect();
        for group in groups {
            let Some(stored) = st.by_id(&group) else { continue };
            let mut attrs = stored.attrs.clone();
            if let Some(Value::Array(members)) = attrs.get_mut("members") {
                members.retain(|m| m.get("value").and_then(Value::as_str) != Some(id));
            }
            patch::tidy(&mut attrs);
            self.store(st, &group, attrs);
        }
    }

    /// The back door's change: listed attributes replaced, `null` removed.
    pub(super) fn change_out_of_band(
        &self,
        st: &mut Store,
        kind: Kind,
        id: &str,
        changes: &Value,
    ) -> Result<(), ScimError> {
        let old = st.get(kind, id).ok_or_else(|| ScimError::not_found(id))?;
        let Value::Object(changes) = changes else {
            return Err(ScimError::invalid_syntax("The changes must be a JSON object."));
        };
        let mut body = old.attrs.clone();
        for (key, value) in changes {
            body.retain(|k, _| !k.eq_ignore_ascii_case(key));
            body.insert(key.clone(), value.clone());
        }
        let attrs = self.read_body(kind, &Value::Object(body), false)?;
        self.validate(st, kind, &attrs, Some(id))?;
        self.store(st, id, attrs);
        Ok(())
    }

    /// Stores a client's write, applying Stripe's "inactive means deleted".
    fn commit(&self, st: &mut Store, kind: Kind, id: &str, attrs: Map<String, Value>) -> Change {
        if kind == Kind::User
            && self.config.deactivate_deletes
            && attrs.get("active") == Some(&Value::Bool(false))
        {
            self.delete_now(st, id);
            return Change::Deleted;
        }
        self.store(st, id, attrs);
        Change::Kept
    }

    /// Replaces the attributes; a write that changes nothing keeps the
    /// version and lastModified.
    fn store(&self, st: &mut Store, id: &str, attrs: Map<String, Value>) {
        let Some(old) = st.by_id(id) else { return };
        if old.attrs == attrs {
            return;
        }
        let (kind, created) = (old.kind, old.created);
        let version = st.new_version();
        let modified = self.clock.now();
        st.put(Stored { id: id.to_owned(), kind, attrs, created, modified, version });
    }

    /// The full representation: what GET returns without `attributes`.
    pub(super) fn render(&self, st: &Store, r: &Stored) -> Map<String, Value> {
        let base = self.base_url();
        let mut out = Map::new();
        let mut schemas = vec![json!(self.model.core(r.kind).map_or("", |s| s.id))];
        for ext in self.model.extensions(r.kind) {
            if r.attrs.contains_key(ext.id) {
                schemas.push(json!(ext.id));
            }
        }
        out.insert("schemas".into(), Value::Array(schemas));
        out.insert("id".into(), json!(r.id));
        for (key, value) in &r.attrs {
            if !self.model.core_attr(r.kind, key).is_some_and(|a| a.returned == Returned::Never) {
                out.insert(key.clone(), value.clone());
            }
        }
        if r.kind == Kind::User && self.model.user.attr("groups").is_some() {
            let groups: Vec<Value> = st
                .groups_of(&r.id)
                .map(|g| {
                    json!({"value": g.id, "$ref": format!("{base}/Groups/{}", g.id),
                           "display": g.attrs.get("displayName"), "type": "direct"})
                })
                .collect();
            if !groups.is_empty() {
                out.insert("groups".into(), Value::Array(groups));
            }
        }
        let mut meta = json!({
            "resourceType": r.kind.name(), "created": timestamp(r.created),
            "lastModified": timestamp(r.modified), "location": format!("{base}/{}/{}", r.kind.endpoint(), r.id)
        });
        if self.config.etag {
            meta["version"] = json!(etag(r.version));
        }
        out.insert("meta".into(), meta);
        out
    }

    fn selections(&self, kind: Kind, names: &[String]) -> Vec<Selection> {
        // Unknown names select nothing.
        let resolve = |name: &String| match self.model.resolve(kind, name).ok()? {
            Target::Extension(schema) => Some(Selection { ext: Some(schema.id), attr: None, sub: None }),
            Target::Attr(r) => {
                Some(Selection { ext: r.ext, attr: Some(r.attr.name), sub: r.sub.map(|s| s.name) })
            }
        };
        names.iter().filter_map(resolve).collect()
    }

    /// Applies `attributes` or `excludedAttributes`; attributes returned
    /// `always` (`id`) and `schemas` always stay.
    pub(super) fn project(&self, kind: Kind, mut full: Map<String, Value>, projection: &Projection) -> Value {
        if let Some(names) = &projection.attributes {
            let selections = self.selections(kind, names);
            let mut out = Map::new();
            for (key, value) in full {
                let Some(ext) = self.model.extension(kind, &key) else {
                    if let Some(value) = self.pick(kind, None, &key, value, &selections) {
                        out.insert(key, value);
                    }
                    continue;
                };
                if selections.iter().any(|s| s.ext == Some(ext.id) && s.attr.is_none()) {
                    out.insert(key, value);
                    continue;
                }
                let Value::Object(fields) = value else { continue };
                let picked: Map<String, Value> = fields
                    .into_iter()
                    .filter_map(|(k, v)| {
                        Some((k.clone(), self.pick(kind, Some(ext.id), &k, v, &selections)?))
                    })
                    .collect();
                if !picked.is_empty() {
                    out.insert(key, Value::Object(picked));
                }
            }
            return Value::Object(out);
        }
        for selection in self.selections(kind, &projection.excluded) {
            let Some(attr) = selection.attr else {
                full.remove(selection.ext.unwrap_or_default());
                continue;
            };
            if selection.ext.is_none()
                && self.model.core_attr(kind, attr).is_some_and(|a| a.returned == Returned::Always)
            {
                continue;
            }
            let container = match selection.ext {
                Some(urn) => full.get_mut(urn).and_then(Value::as_object_mut),
                None => Some(&mut full),
            };
            let Some(container) = container else { continue };
            match (selection.sub, container.get_mut(attr)) {
                (None, _) => {
                    container.remove(attr);
                }
                (Some(sub), Some(Value::Array(items))) => {
                    items.iter_mut().filter_map(Value::as_object_mut).for_each(|i| drop(i.remove(sub)));
                }
                (Some(sub), Some(Value::Object(object))) => {
                    object.remove(sub);
                }
                _ => {}
            }
        }
        patch::tidy(&mut full);
        Value::Object(full)
    }

    /// One attribute under `attributes`: whole, some sub-attributes, or not at all.
    fn pick(
        &self,
        kind: Kind,
        ext: Option<&str>,
        key: &str,
        value: Value,
        selections: &[Selection],
    ) -> Option<Value> {
        let attr = match ext {
            Some(urn) => self.model.extension(kind, urn).and_then(|s| s.attr(key)),
            None => self.model.core_attr(kind, key),
        };
        let mine: Vec<&Selection> =
            selections.iter().filter(|s| s.ext == ext && s.attr == Some(key)).collect();
        if key == "schemas"
            || attr.is_some_and(|a| a.returned == Returned::Always)
            || mine.iter().any(|s| s.sub.is_none())
        {
            return Some(value);
        }
        if mine.is_empty() {
            return None;
        }
        let subs: Vec<&str> = mine.iter().filter_map(|s| s.sub).collect();
        let keep = |v: Value| match v {
            Value::Object(o) => {
                Value::Object(o.into_iter().filter(|(k, _)| subs.contains(&k.as_str())).collect())
            }
            other => other,
        };
        Some(match value {
            Value::Array(items) => Value::Array(items.into_iter().map(keep).collect()),
            value => keep(value),
        })
    }

    /// A ListResponse over `kinds` (one for `/Users`, both for `/.search`).
    pub(super) fn list(&self, st: &Store, kinds: &[Kind], query: &ListQuery) -> Result<Value, ScimError> {
        if let (Some(expr), FilterSupport::Equality(allowed)) = (&query.filter, &self.config.filter) {
            let supported = matches!(expr.as_equality(), Some((path, Literal::Str(_)))
                if allowed.iter().any(|a| a.eq_ignore_ascii_case(path)));
            if !supported {
                let detail =
                    format!("Only one `attribute eq \"value\"` on {} is supported.", allowed.join(", "));
                return Err(ScimError::invalid_filter(detail));
            }
        }
        let aliased = query.filter.clone().filter(|_| self.config.emails_filter_on_user_name).map(|expr| {
            expr.renamed(&|path: &str| {
                let email = path.eq_ignore_ascii_case("emails.value") || path.eq_ignore_ascii_case("emails");
                email.then_some("userName")
            })
        });
        let query_filter = aliased.as_ref().or(query.filter.as_ref());
        // A filter or sort attribute unknown to one resource type of a root
        // search rules that type out; unknown to all, it is an error.
        let mut hits: Vec<(Kind, Map<String, Value>)> = Vec::new();
        let mut sort_fields: HashMap<Kind, Field> = HashMap::new();
        let mut failure = None;
        let mut searched = 0;
        for &kind in kinds {
            let filter = match query_filter.map(|expr| filter::resolve(expr, &self.model, kind)) {
                Some(Err(detail)) => {
                    failure = Some(ScimError::invalid_filter(detail));
                    continue;
                }
                Some(Ok(filter)) => Some(filter),
                None => None,
            };
            if let Some(path) = query.sort_by.as_deref().filter(|_| self.config.sort) {
                match filter::field(&self.model, kind, path) {
                    Ok(field) => {
                        sort_fields.insert(kind, field);
                    }
                    Err(detail) => {
                        failure = Some(ScimError::invalid_value(format!("sortBy: {detail}")));
                        continue;
                    }
                }
            }
            searched += 1;
            // Okta and Entra look a user up by userName before every create:
            // answer that from the index instead of scanning.
            let by_name = match query_filter.and_then(Expr::as_equality) {
                Some((path, Literal::Str(name)))
                    if kind == Kind::User && path.eq_ignore_ascii_case("userName") =>
                {
                    Some(st.user_names.get(&name.to_lowercase()).and_then(|id| st.get(kind, id)))
                }
                _ => None,
            };
            let candidates: Box<dyn Iterator<Item = &Stored>> = match by_name {
                Some(found) => Box::new(found.into_iter()),
                None => Box::new(st.iter(kind)),
            };
            for stored in candidates {
                let full = self.render(st, stored);
                if filter.as_ref().is_none_or(|f| f.matches(&full)) {
                    hits.push((kind, full));
                }
            }
        }
        if let Some(failure) = failure.filter(|_| searched == 0) {
            return Err(failure);
        }
        if !sort_fields.is_empty() {
            hits.sort_by(|(ka, a), (kb, b)| {
                let key =
                    |kind: &Kind, object| sort_fields.get(kind).and_then(|f| filter::sort_key(f, object));
                let field = sort_fields.get(ka).or_else(|| sort_fields.get(kb));
                field.map_or(std::cmp::Ordering::Equal, |f| filter::sort_order(f, key(ka, a), key(kb, b)))
            });
            if query.descending {
                hits.reverse();
            }
        }
        let total = hits.len();
        if let Some(max) = self.config.too_many_above
            && total > max
        {
            let detail = format!("The query matches {total} resources; narrow it to at most {max}.");
            return Err(ScimError::bad("tooMany", detail));
        }
        let mut count = query.count.unwrap_or(self.config.max_results).min(self.config.max_results);
        if let Some(short) = self.config.short_pages {
            count = count.min(short);
        }
        let page: Vec<Value> = hits
            .into_iter()
            .skip(query.start_index - 1)
            .take(count)
            .map(|(kind, full)| self.project(kind, full, &query.projection))
            .collect();
        Ok(json!({
            "schemas": [schema::LIST], "totalResults": total, "itemsPerPage": page.len(),
            "startIndex": query.start_index, "Resources": page
        }))
    }
}
