//! Attribute definitions (RFC 7643 §2 and §7), the schemas each profile
//! serves, and the checks that turn a client's JSON into stored values.

use serde_json::{Map, Value, json};

use super::{AttributeSet, Config, Kind, ScimError};

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const TRAVELPERK: &str = "urn:ietf:params:scim:schemas:extension:travelperk:2.0:User";
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const SEARCH: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
pub const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";
pub const SERVICE_PROVIDER_CONFIG: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
pub const RESOURCE_TYPE: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
pub const SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Binary,
    Reference,
    Complex,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
}

/// One attribute or sub-attribute and its characteristics (RFC 7643 §2.2).
#[derive(Debug, Clone)]
pub struct Attr {
    pub name: &'static str,
    pub ty: Type,
    pub multi: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    /// `server` uniqueness (only `userName` has it).
    pub unique: bool,
    pub canonical: &'static [&'static str],
    /// Whether values outside `canonical` are refused (RFC 7643 makes
    /// canonical values a suggestion; TravelPerk's `gender` is a rule).
    pub closed: bool,
    pub reference_types: &'static [&'static str],
    pub sub: Vec<Attr>,
}

impl Attr {
    fn new(name: &'static str, ty: Type) -> Attr {
        Attr {
            name,
            ty,
            multi: false,
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            unique: false,
            canonical: &[],
            closed: false,
            reference_types: &[],
            sub: Vec::new(),
        }
    }

    fn multi(mut self) -> Self {
        self.multi = true;
        self
    }

    fn required(mut self) -> Self {
        self.required = true;
        self
    }

    fn exact(mut self) -> Self {
        self.case_exact = true;
        self
    }

    fn unique(mut self) -> Self {
        self.unique = true;
        self
    }

    fn mutability(mut self, mutability: Mutability) -> Self {
        self.mutability = mutability;
        self
    }

    fn read_only(self) -> Self {
        let mut attr = self.mutability(Mutability::ReadOnly);
        attr.sub = attr.sub.into_iter().map(Attr::read_only).collect();
        attr
    }

    fn immutable_if(self, yes: bool) -> Self {
        if yes { self.mutability(Mutability::Immutable) } else { self }
    }

    fn canonical(mut self, values: &'static [&'static str]) -> Self {
        self.canonical = values;
        self
    }

    fn closed(mut self) -> Self {
        self.closed = true;
        self
    }

    /// The sub-attribute `name`, case-insensitively.
    pub fn sub(&self, name: &str) -> Option<&Attr> {
        self.sub.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }

    pub fn writable(&self) -> bool {
        self.mutability != Mutability::ReadOnly
    }

    fn to_json(&self) -> Value {
        let ty = match self.ty {
            Type::String => "string",
            Type::Boolean => "boolean",
            Type::Decimal => "decimal",
            Type::Integer => "integer",
            Type::DateTime => "dateTime",
            Type::Binary => "binary",
            Type::Reference => "reference",
            Type::Complex => "complex",
        };
        let mutability = match self.mutability {
            Mutability::ReadOnly => "readOnly",
            Mutability::ReadWrite => "readWrite",
            Mutability::Immutable => "immutable",
            Mutability::WriteOnly => "writeOnly",
        };
        let returned = match self.returned {
            Returned::Always => "always",
            Returned::Never => "never",
            Returned::Default => "default",
        };
        let mut out = json!({
            "name": self.name, "type": ty, "multiValued": self.multi, "required": self.required,
            "caseExact": self.case_exact, "mutability": mutability, "returned": returned,
            "uniqueness": if self.unique { "server" } else { "none" },
        });
        if !self.canonical.is_empty() {
            out["canonicalValues"] = json!(self.canonical);
        }
        if !self.reference_types.is_empty() {
            out["referenceTypes"] = json!(self.reference_types);
        }
        if !self.sub.is_empty() {
            out["subAttributes"] = self.sub.iter().map(Attr::to_json).collect();
        }
        out
    }
}

fn string(name: &'static str) -> Attr {
    Attr::new(name, Type::String)
}

fn boolean(name: &'static str) -> Attr {
    Attr::new(name, Type::Boolean)
}

fn date_time(name: &'static str) -> Attr {
    Attr::new(name, Type::DateTime)
}

fn reference(name: &'static str, types: &'static [&'static str]) -> Attr {
    Attr { reference_types: types, ..Attr::new(name, Type::Reference).exact() }
}

fn complex(name: &'static str, sub: Vec<Attr>) -> Attr {
    Attr { sub, ..Attr::new(name, Type::Complex) }
}

/// A multi-valued attribute with RFC 7643's standard sub-attributes.
fn plural(name: &'static str, value: Attr, types: &'static [&'static str]) -> Attr {
    complex(name, vec![value, string("display"), string("type").canonical(types), boolean("primary")]).multi()
}

/// A schema: core or extension (RFC 7643 §7).
#[derive(Debug, Clone)]
pub struct Schema {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub attributes: Vec<Attr>,
}

impl Schema {
    pub fn attr(&self, name: &str) -> Option<&Attr> {
        self.attributes.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }

    pub fn to_json(&self, base: &str) -> Value {
        json!({
            "schemas": [SCHEMA], "id": self.id, "name": self.name, "description": self.description,
            "attributes": self.attributes.iter().map(Attr::to_json).collect::<Vec<_>>(),
            "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{}", self.id)}
        })
    }
}

/// What a path names once resolved against the schemas.
#[derive(Debug, Clone, Copy)]
pub enum Target<'m> {
    /// A whole extension object, e.g. `urn:…:enterprise:2.0:User`.
    Extension(&'m Schema),
    Attr(AttrRef<'m>),
}

/// An attribute, where it lives, and optionally one of its sub-attributes.
#[derive(Debug, Clone, Copy)]
pub struct AttrRef<'m> {
    /// The extension URN holding the attribute; None for core attributes.
    pub ext: Option<&'static str>,
    pub attr: &'m Attr,
    pub sub: Option<&'m Attr>,
}

impl AttrRef<'_> {
    /// The attribute the path ends at.
    pub fn leaf(&self) -> &Attr {
        self.sub.unwrap_or(self.attr)
    }
}

/// The schemas one configuration serves.
pub struct Model {
    pub user: Schema,
    pub group: Option<Schema>,
    /// User extensions.
    pub extensions: Vec<Schema>,
    /// `id`, `externalId` and `meta`: on every resource, in no schema
    /// (RFC 7643 §3.1).
    common: Vec<Attr>,
}

impl Model {
    pub fn new(config: &Config) -> Model {
        let meta = complex(
            "meta",
            vec![
                string("resourceType").exact(),
                date_time("created"),
                date_time("lastModified"),
                reference("location", &["uri"]),
                string("version").exact(),
            ],
        )
        .read_only();
        let mut common =
            vec![Attr { returned: Returned::Always, ..string("id").exact().unique().read_only() }, meta];
        // Stripe keeps only id, userName, displayName, active and meta [D].
        if config.attributes != AttributeSet::StripeDashboard {
            common.push(string("externalId").exact());
        }
        let (user, extensions) = match config.attributes {
            AttributeSet::Rfc => (rfc_user(config), vec![enterprise(true)]),
            AttributeSet::StripeDashboard => (stripe_user(config), Vec::new()),
            AttributeSet::TravelPerk => (travelperk_user(), vec![enterprise(false), travelperk()]),
        };
        let group = config.groups.then(|| group(config));
        Model { user, group, extensions, common }
    }

    /// The core schema of `kind`; None if that resource type is not served.
    pub fn core(&self, kind: Kind) -> Option<&Schema> {
        match kind {
            Kind::User => Some(&self.user),
            Kind::Group => self.group.as_ref(),
        }
    }

    pub fn extensions(&self, kind: Kind) -> &[Schema] {
        match kind {
            Kind::User => &self.extensions,
            Kind::Group => &[],
        }
    }

    pub fn extension(&self, kind: Kind, urn: &str) -> Option<&Schema> {
        self.extensions(kind).iter().find(|s| s.id.eq_ignore_ascii_case(urn))
    }

    /// Every schema served, for `/Schemas`.
    pub fn schemas(&self) -> impl Iterator<Item = &Schema> {
        std::iter::once(&self.user).chain(self.group.as_ref()).chain(&self.extensions)
    }

    /// A core or common attribute by name.
    pub fn core_attr(&self, kind: Kind, name: &str) -> Option<&Attr> {
        let core = self.core(kind)?;
        core.attr(name).or_else(|| self.common.iter().find(|a| a.name.eq_ignore_ascii_case(name)))
    }

    /// Resolves `[URN ":"] attr ["." sub]` or a bare extension URN; attribute
    /// names are case-insensitive (RFC 7644 §3.10).
    pub fn resolve(&self, kind: Kind, path: &str) -> Result<Target<'_>, String> {
        let unknown = || format!("Unknown attribute '{path}'.");
        if let Some(schema) = self.extension(kind, path) {
            return Ok(Target::Extension(schema));
        }
        let (ext, rest) = match path.get(..4) {
            Some(prefix) if prefix.eq_ignore_ascii_case("urn:") => {
                let (urn, rest) = path.rsplit_once(':').ok_or_else(unknown)?;
                let core = self.core(kind).ok_or_else(unknown)?;
                if urn.eq_ignore_ascii_case(core.id) {
                    (None, rest)
                } else {
                    (Some(self.extension(kind, urn).ok_or_else(unknown)?), rest)
                }
            }
            _ => (None, path),
        };
        let (name, sub) = match rest.split_once('.') {
            Some((name, sub)) => (name, Some(sub)),
            None => (rest, None),
        };
        let attr = match ext {
            Some(schema) => schema.attr(name),
            None => self.core_attr(kind, name),
        };
        let attr = attr.ok_or_else(unknown)?;
        let sub = match sub {
            Some(sub) => Some(attr.sub(sub).ok_or_else(unknown)?),
            None => None,
        };
        Ok(Target::Attr(AttrRef { ext: ext.map(|s| s.id), attr, sub }))
    }
}

fn rfc_user(config: &Config) -> Schema {
    let name = complex(
        "name",
        ["formatted", "familyName", "givenName", "middleName", "honorificPrefix", "honorificSuffix"]
            .into_iter()
            .map(string)
            .collect(),
    );
    let address = complex(
        "addresses",
        vec![
            string("formatted"),
            string("streetAddress"),
            string("locality"),
            string("region"),
            string("postalCode"),
            string("country"),
            string("type").canonical(&["work", "home", "other"]),
            boolean("primary"),
        ],
    )
    .multi();
    let mut attributes = vec![
        string("userName").required().unique().immutable_if(config.immutable_user_name),
        name,
        string("displayName"),
        string("nickName"),
        reference("profileUrl", &["external"]),
        string("title"),
        string("userType"),
        string("preferredLanguage"),
        string("locale"),
        string("timezone"),
        boolean("active"),
    ];
    // Without changePassword the password cannot be set at all.
    if config.change_password {
        attributes.push(Attr {
            returned: Returned::Never,
            ..string("password").exact().mutability(Mutability::WriteOnly)
        });
    }
    attributes.extend([
        plural("emails", string("value"), &["work", "home", "other"]),
        plural("phoneNumbers", string("value"), &["work", "home", "mobile", "fax", "pager", "other"]),
        plural("ims", string("value"), &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"]),
        plural("photos", reference("value", &["external"]), &["photo", "thumbnail"]),
        address,
        groups(),
        plural("entitlements", string("value"), &[]),
        plural("roles", string("value"), &[]),
        plural("x509Certificates", Attr::new("value", Type::Binary).exact(), &[]),
    ]);
    Schema { id: USER, name: "User", description: "User Account", attributes }
}

/// The groups a user is a direct member of, computed by the server.
fn groups() -> Attr {
    complex(
        "groups",
        vec![
            string("value").exact(),
            reference("$ref", &["Group"]),
            string("display"),
            string("type").canonical(&["direct", "indirect"]),
        ],
    )
    .multi()
    .read_only()
}

fn stripe_user(config: &Config) -> Schema {
    let attributes = vec![
        string("userName").required().unique().immutable_if(config.immutable_user_name),
        string("displayName"),
        boolean("active"),
    ];
    Schema { id: USER, name: "User", description: "Dashboard team member", attributes }
}

/// The core attributes TravelPerk's SCIM schema lists [T].
fn travelperk_user() -> Schema {
    let name = complex(
        "name",
        ["givenName", "familyName", "middleName", "honorificPrefix"].into_iter().map(string).collect(),
    );
    let phones = complex("phoneNumbers", vec![string("value"), string("type").canonical(&["work"])]).multi();
    let attributes = vec![
        string("userName").required().unique(),
        name,
        boolean("active"),
        string("locale"),
        string("preferredLanguage"),
        string("title"),
        phones,
        groups(),
    ];
    Schema { id: USER, name: "User", description: "TravelPerk user", attributes }
}

fn enterprise(full: bool) -> Schema {
    let manager = complex(
        "manager",
        vec![string("value").exact(), reference("$ref", &["User"]), string("displayName").read_only()],
    );
    let names: &[&'static str] = if full {
        &["employeeNumber", "costCenter", "organization", "division", "department"]
    } else {
        // TravelPerk keeps costCenter and manager [T].
        &["costCenter"]
    };
    let mut attributes: Vec<Attr> = names.iter().map(|n| string(n)).collect();
    attributes.push(manager);
    Schema { id: ENTERPRISE, name: "EnterpriseUser", description: "Enterprise User", attributes }
}

/// `urn:ietf:params:scim:schemas:extension:travelperk:2.0:User` [T].
fn travelperk() -> Schema {
    let attributes = vec![
        string("gender").canonical(&["M", "F"]).exact().closed(),
        string("dateOfBirth"),
        string("travelPolicy"),
        complex("invoiceProfiles", vec![string("value")]).multi(),
        complex("emergencyContact", vec![string("name"), string("phone")]),
    ];
    Schema { id: TRAVELPERK, name: "TravelPerkUser", description: "TravelPerk User", attributes }
}

fn group(config: &Config) -> Schema {
    let members = complex(
        "members",
        vec![
            string("value").exact().mutability(Mutability::Immutable),
            reference("$ref", &["User", "Group"]).mutability(Mutability::Immutable),
            string("type").canonical(&["User", "Group"]).mutability(Mutability::Immutable),
            string("display"),
        ],
    )
    .multi();
    let attributes =
        vec![string("displayName").required().immutable_if(config.immutable_group_name), members];
    Schema { id: GROUP, name: "Group", description: "Group", attributes }
}

// ---------------------------------------------------------------------------
// Checking values

/// How forgiving value checks are.
#[derive(Debug, Clone, Copy)]
pub struct Checks {
    /// Accept `"True"`/`"False"` for booleans (Entra).
    pub string_booleans: bool,
    /// Refuse unknown (sub-)attributes instead of dropping them.
    pub reject_unknown: bool,
}

impl Attr {
    /// Checks a whole attribute value: an array for a multi-valued attribute
    /// (a single value is wrapped when `wrap`), one value otherwise. Returns
    /// None for null or empty, which RFC 7643 §2.5 treats as unassigned.
    pub fn check(&self, value: &Value, checks: Checks, wrap: bool) -> Result<Option<Value>, ScimError> {
        if !self.multi {
            return self.check_one(value, checks);
        }
        let items = match value {
            Value::Null => return Ok(None),
            Value::Array(items) => items.as_slice(),
            single if wrap => std::slice::from_ref(single),
            _ => return Err(ScimError::invalid_value(format!("'{}' must be an array.", self.name))),
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(item) = self.check_one(item, checks)? {
                out.push(item);
            }
        }
        Ok((!out.is_empty()).then_some(Value::Array(out)))
    }

    /// Checks one value (an element, for a multi-valued attribute).
    /// Sub-attribute names come back in their canonical spelling; read-only
    /// sub-attributes are dropped, as the server owns them.
    pub fn check_one(&self, value: &Value, checks: Checks) -> Result<Option<Value>, ScimError> {
        let wrong = |what: &str| ScimError::invalid_value(format!("'{}' must be {what}.", self.name));
        let checked = match (self.ty, value) {
            (_, Value::Null) => return Ok(None),
            (Type::Complex, Value::Object(fields)) => {
                let mut out = Map::new();
                for (key, value) in fields {
                    let Some(sub) = self.sub(key) else {
                        if checks.reject_unknown {
                            let detail = format!("Unknown sub-attribute '{}.{key}'.", self.name);
                            return Err(ScimError::invalid_value(detail));
                        }
                        continue;
                    };
                    if !sub.writable() {
                        continue;
                    }
                    if let Some(value) = sub.check_one(value, checks)? {
                        out.insert(sub.name.to_owned(), value);
                    }
                }
                if out.is_empty() {
                    return Ok(None);
                }
                Value::Object(out)
            }
            (Type::Complex, _) => return Err(wrong("an object")),
            (Type::Boolean, Value::Bool(_)) => value.clone(),
            (Type::Boolean, Value::String(s)) if checks.string_booleans => {
                match s.to_ascii_lowercase().as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => return Err(wrong("a boolean")),
                }
            }
            (Type::Boolean, _) => return Err(wrong("a boolean")),
            (Type::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => value.clone(),
            (Type::Integer, _) => return Err(wrong("an integer")),
            (Type::Decimal, Value::Number(_)) => value.clone(),
            (Type::Decimal, _) => return Err(wrong("a number")),
            (Type::DateTime, Value::String(s)) => {
                let format = time::format_description::well_known::Rfc3339;
                if time::OffsetDateTime::parse(s, &format).is_err() {
                    return Err(wrong("an xsd:dateTime (RFC 3339)"));
                }
                value.clone()
            }
            (Type::String | Type::Binary | Type::Reference, Value::String(s)) => {
                if self.closed && !self.canonical.contains(&s.as_str()) {
                    let allowed = self.canonical.join(", ");
                    return Err(ScimError::invalid_value(format!(
                        "'{}' must be one of {allowed}, not '{s}'.",
                        self.name
                    )));
                }
                value.clone()
            }
            _ => return Err(wrong("a string")),
        };
        Ok(Some(checked))
    }
}

/// Compares two stored values the way the attribute's `caseExact` says.
pub fn same_value(attr: &Attr, a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) if !attr.case_exact => x.to_lowercase() == y.to_lowercase(),
        _ => a == b,
    }
}
