//! The Management API: one JSON:API layer (this module) shared by every
//! resource module. A resource declares a [`ResourceDef`] (attributes,
//! filters, sorts, includes, scope family, operations) and implements
//! [`Resource`]; list/get are generic, create/update/delete call its service.

pub mod app_accounts;
pub mod apps;
pub mod audit_events;
pub mod clients;
pub mod custom_domains;
pub mod environment;
pub mod grants;
pub mod invitations;
pub mod manual_tasks;
pub mod membership_roles;
pub mod memberships;
pub mod organizations;
pub mod permissions;
pub mod provisioning_plans;
pub mod resource_servers;
pub mod role_permissions;
pub mod roles;
pub mod scopes;
pub mod sessions;
pub mod signing_keys;
pub mod user_roles;
pub mod users;
pub mod webhooks;

use std::collections::HashSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, RawQuery, Request, State};
use axum::handler::Handler;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post};
use axum::{Extension, Router, middleware};
use portcullis_core::authz::{Family, Guarded};
use portcullis_core::services::links::{self, Link, Linkable};
use portcullis_core::{Core, Ctx, ServiceError, services};
use portcullis_jsonapi::Relationships;
use portcullis_jsonapi::query::{SortKey, encode_cursor};
use portcullis_jsonapi::{
    ApiError, Direction, Document, FieldKind, FilterOp, Links, ListParams, MEDIA_TYPE, Page, QuerySpec,
    ResourceObject, Scalar, parse_create, parse_fetch, parse_list, parse_update,
};
use portcullis_store::record::SqlValue;
use portcullis_store::{CondOp, Condition, Listing, OrderBy, Record, Window};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::auth;
use crate::error::{ApiFailure, ApiResult};

/// How an attribute may be written, for validation docs and OpenAPI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
    /// Set on create, immutable afterwards.
    CreateOnly,
    /// Accepted on write, never returned.
    WriteOnly,
}

#[derive(Debug)]
pub struct Attr {
    pub name: &'static str,
    /// JSON Schema type: string, boolean, integer, array (of strings),
    /// `array<object>`, object, date-time.
    pub ty: &'static str,
    pub access: Access,
    pub required: bool,
    /// May be `null` (shown as null when unset, and accepted to unset it).
    pub nullable: bool,
    /// The only values allowed (for an array: of its items), if limited.
    pub values: &'static [&'static str],
    pub description: &'static str,
}

pub const fn attr(name: &'static str, ty: &'static str, access: Access, description: &'static str) -> Attr {
    Attr { name, ty, access, required: false, nullable: false, values: &[], description }
}

pub const fn required(
    name: &'static str,
    ty: &'static str,
    access: Access,
    description: &'static str,
) -> Attr {
    Attr { name, ty, access, required: true, nullable: false, values: &[], description }
}

impl Attr {
    pub const fn nullable(self) -> Attr {
        Attr { nullable: true, ..self }
    }

    pub const fn one_of(self, values: &'static [&'static str]) -> Attr {
        Attr { values, ..self }
    }
}

/// A relationship of a resource: to-one linkage is set when the resource is
/// created (and required then); to-many linkage is read-only, shown with
/// `include`.
#[derive(Debug)]
pub struct Relationship {
    pub name: &'static str,
    /// The related resource's type.
    pub kind: &'static str,
    pub to_many: bool,
    /// Where a to-many relationship's linkage comes from, when a join table.
    pub through: Option<Join>,
    /// Set by the server (e.g. who answered an invitation), never sent.
    pub read_only: bool,
}

pub const fn to_one(name: &'static str, kind: &'static str) -> Relationship {
    Relationship { name, kind, to_many: false, through: None, read_only: false }
}

pub const fn to_many(name: &'static str, kind: &'static str) -> Relationship {
    Relationship { name, kind, to_many: true, through: None, read_only: false }
}

/// The join table behind a to-many relationship: `far` ids by `near` id.
#[derive(Debug)]
pub struct Join {
    pub table: &'static str,
    pub near: &'static str,
    pub far: &'static str,
}

impl Relationship {
    /// A to-many relationship read from a join table: `include` loads its
    /// linkage with no code of the resource's own.
    pub const fn through(self, table: &'static str, near: &'static str, far: &'static str) -> Relationship {
        Relationship { through: Some(Join { table, near, far }), ..self }
    }

    pub const fn read_only(self) -> Relationship {
        Relationship { read_only: true, ..self }
    }
}

/// Which operations a resource offers.
#[derive(Debug, Clone, Copy)]
pub struct Ops {
    pub list: bool,
    pub get: bool,
    pub create: bool,
    pub update: bool,
    pub delete: bool,
}

pub const CRUD: Ops = Ops { list: true, get: true, create: true, update: true, delete: true };

/// Everything the JSON:API layer and the OpenAPI document need to know about a resource.
#[derive(Debug)]
pub struct ResourceDef {
    /// The JSON:API `type`, e.g. `user`.
    pub kind: &'static str,
    /// The path segment under `/api/`, e.g. `users`.
    pub path: &'static str,
    /// The scope family: `{family}:read|write|delete`.
    pub family: Family,
    pub summary: &'static str,
    pub query: QuerySpec,
    /// Filterable/sortable attribute → SQL column or expression.
    pub columns: &'static [(&'static str, &'static str)],
    pub attributes: &'static [Attr],
    pub relationships: &'static [Relationship],
    pub ops: Ops,
    /// Extra `{POST|PATCH} /api/{path}/:id/{name}` operations.
    pub actions: &'static [Action],
}

/// How an action is called: PATCH when it changes its resource, POST when
/// it starts work beyond it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionMethod {
    Post,
    Patch,
}

/// An operation on one resource beyond CRUD, e.g. `rotate-secret`.
#[derive(Debug)]
pub struct Action {
    pub name: &'static str,
    pub method: ActionMethod,
    pub description: &'static str,
    /// The members of the request's top-level `meta` (name, description),
    /// all required; an action without any takes no body.
    pub meta: &'static [(&'static str, &'static str)],
}

impl Action {
    pub const fn patch(name: &'static str, description: &'static str) -> Action {
        Action { name, method: ActionMethod::Patch, description, meta: &[] }
    }

    pub const fn post(name: &'static str, description: &'static str) -> Action {
        Action { name, method: ActionMethod::Post, description, meta: &[] }
    }

    pub const fn with_meta(self, meta: &'static [(&'static str, &'static str)]) -> Action {
        Action { meta, ..self }
    }
}

type Route = MethodRouter<Arc<Core>>;
type ActionRoute = Box<dyn FnOnce(ActionMethod) -> Route>;

/// The handlers of a resource beyond the generic list and show. The router
/// checks them against the resource's declaration, so a declared operation
/// without a handler (or the reverse) fails at startup, in every test.
#[derive(Default)]
pub struct Routes {
    create: Option<Route>,
    update: Option<Route>,
    delete: Option<Route>,
    actions: Vec<(&'static str, ActionRoute)>,
    /// Routes outside `/api/{path}` (their services check what they need).
    extra: Vec<(&'static str, Route)>,
}

impl Routes {
    pub fn create<H: Handler<T, Arc<Core>>, T: 'static>(mut self, handler: H) -> Self {
        self.create = Some(post(handler));
        self
    }

    pub fn update<H: Handler<T, Arc<Core>>, T: 'static>(mut self, handler: H) -> Self {
        self.update = Some(patch(handler));
        self
    }

    pub fn delete<H: Handler<T, Arc<Core>>, T: 'static>(mut self, handler: H) -> Self {
        self.delete = Some(delete(handler));
        self
    }

    /// The handler of the declared action `name` (its method is declared with it).
    pub fn action<H: Handler<T, Arc<Core>>, T: 'static>(mut self, name: &'static str, handler: H) -> Self {
        self.actions.push((
            name,
            Box::new(move |method| match method {
                ActionMethod::Post => post(handler),
                ActionMethod::Patch => patch(handler),
            }),
        ));
        self
    }

    /// Create, update and delete by the resource's [`Writable`] service.
    pub fn crud<R: Writable>() -> Self {
        Routes::default().create(create_one::<R>).update(update_one::<R>).delete(delete_one::<R>)
    }

    /// A join resource's routes: create from its two relationships, delete.
    pub fn link<L: Link + Sync>() -> Self {
        Routes::default().create(create_link::<L>).delete(delete_link::<L>)
    }

    pub fn extra(mut self, path: &'static str, route: Route) -> Self {
        self.extra.push((path, route));
        self
    }
}

/// A Management API resource backed by one table.
pub trait Resource: Send + Sync + 'static {
    type Model: Record + Guarded + Sync;
    const DEF: &'static ResourceDef;

    fn present(ctx: &Ctx, model: &Self::Model) -> ResourceObject;

    /// Its create, update, delete and action handlers.
    fn routes() -> Routes;

    /// Adds what a single GET shows beyond the list view (e.g. counts).
    fn detail(
        _core: &Core,
        _ctx: &Ctx,
        object: ResourceObject,
    ) -> impl Future<Output = Result<ResourceObject, ServiceError>> + Send {
        async { Ok(object) }
    }

    /// Adds to-many linkage that `include` asked for (e.g. a user's roles).
    fn link_many(
        _core: &Core,
        _ctx: &Ctx,
        _objects: &mut [ResourceObject],
        _include: &[String],
    ) -> impl Future<Output = Result<(), ServiceError>> + Send {
        async { Ok(()) }
    }
}

/// A resource whose create, update and delete are its service's: the
/// JSON:API body is parsed and the answer presented here, once.
pub trait Writable: Resource {
    type New: DeserializeOwned + Send;
    type Changes: DeserializeOwned + Send;

    /// Creates one from its attributes and its to-one relationships.
    fn create(
        core: &Core,
        ctx: &Ctx,
        input: Self::New,
        relationships: &Relationships,
    ) -> impl Future<Output = ApiResult<Self::Model>> + Send;

    fn update(
        core: &Core,
        ctx: &Ctx,
        id: &str,
        input: Self::Changes,
    ) -> impl Future<Output = ApiResult<Self::Model>> + Send;

    fn delete(core: &Core, ctx: &Ctx, id: &str) -> impl Future<Output = ApiResult<()>> + Send;
}

async fn create_one<R: Writable>(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    JsonApiBody(body): JsonApiBody,
) -> ApiResult<Response> {
    let (input, relationships) = parse_create::<R::New>(&body, R::DEF.kind)?;
    let model = R::create(&core, &ctx, input, &relationships).await?;
    Ok(created(R::present(&ctx, &model)))
}

async fn update_one<R: Writable>(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    JsonApiBody(body): JsonApiBody,
) -> ApiResult<Response> {
    let (input, _) = parse_update::<R::Changes>(&body, R::DEF.kind, &id)?;
    let model = R::update(&core, &ctx, &id, input).await?;
    Ok(ok(R::present(&ctx, &model)))
}

async fn delete_one<R: Writable>(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    R::delete(&core, &ctx, &id).await?;
    Ok(no_content())
}

/// Adds `{name: {data: [...]}}` to-many linkage from (owner id, related id) pairs.
pub fn add_to_many(objects: &mut [ResourceObject], name: &str, kind: &str, pairs: &[(String, String)]) {
    for object in objects.iter_mut() {
        let ids: Vec<&str> = pairs
            .iter()
            .filter(|(owner, _)| *owner == object.id)
            .map(|(_, related)| related.as_str())
            .collect();
        object.set_to_many(name, kind, ids);
    }
}

/// A JSON:API request body (`application/vnd.api+json`; plain JSON accepted).
pub struct JsonApiBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonApiBody {
    type Rejection = ApiFailure;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type =
            request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        let has_params = content_type.contains(';');
        let acceptable = (essence == MEDIA_TYPE && !has_params) || essence == "application/json";
        if !acceptable {
            return Err(ApiError::new(
                415,
                "unsupported_media_type",
                "Unsupported Media Type",
                format!("send the body as {MEDIA_TYPE}"),
            )
            .with_header("Content-Type")
            .into());
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|e| match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiFailure::from(crate::error::too_large(crate::BODY_LIMIT)),
            _ => ApiFailure::from(ApiError::invalid_body(e.body_text())),
        })?;
        Ok(JsonApiBody(bytes))
    }
}

/// `POST` of a join resource: no attributes, its two to-one relationships.
async fn create_link<L: Link + Sync>(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    JsonApiBody(body): JsonApiBody,
) -> ApiResult<Response> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NoAttributes {}
    let (NoAttributes {}, rels) = parse_create(&body, L::KIND)?;
    let from = rels.required(L::FROM, <L::From as Linkable>::KIND)?;
    let to = rels.required(L::TO, <L::To as Linkable>::KIND)?;
    Ok(created(links::present(&links::create::<L>(&core, &ctx, &from, &to).await?)))
}

async fn delete_link<L: Link + Sync>(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    links::delete::<L>(&core, &ctx, &id).await?;
    Ok(no_content())
}

/// A JSON:API response with a status.
pub fn respond(status: StatusCode, document: &Document) -> Response {
    let body = serde_json::to_vec(document).unwrap_or_default();
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
    response
}

pub fn ok(object: ResourceObject) -> Response {
    respond(StatusCode::OK, &Document::one(object))
}

pub fn created(object: ResourceObject) -> Response {
    respond(StatusCode::CREATED, &Document::one(object))
}

pub fn created_with_meta(object: ResourceObject, key: &str, value: Value) -> Response {
    respond(StatusCode::CREATED, &Document::one(object).with_meta(key, value))
}

/// 200 with a secret shown once in `meta` (a rotated secret).
pub fn ok_with_meta(object: ResourceObject, key: &str, value: Value) -> Response {
    respond(StatusCode::OK, &Document::one(object).with_meta(key, value))
}

/// 202: work queued, e.g. a delivery to be sent.
pub fn accepted(object: ResourceObject) -> Response {
    respond(StatusCode::ACCEPTED, &Document::one(object))
}

pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn column(def: &ResourceDef, name: &str) -> &'static str {
    def.columns.iter().find(|(n, _)| *n == name).map_or("id", |(_, c)| c)
}

fn sql_value(kind: FieldKind, scalar: &Scalar) -> SqlValue {
    match scalar {
        Scalar::Text(s) => SqlValue::Text(Some(s.clone())),
        Scalar::Int(i) => SqlValue::Int(Some(*i)),
        Scalar::Bool(b) => SqlValue::Bool(*b),
        // Sortable nullable text columns are declared as COALESCE(col, '').
        Scalar::Null if matches!(kind, FieldKind::Text | FieldKind::TextCi) => {
            SqlValue::Text(Some(String::new()))
        }
        Scalar::Null => SqlValue::Int(None),
    }
}

/// Translates validated JSON:API parameters into a store listing.
fn listing(def: &ResourceDef, params: &ListParams) -> Listing {
    let conditions = params
        .filters
        .iter()
        .map(|f| Condition {
            expr: column(def, f.name),
            op: match (f.op, f.kind) {
                (FilterOp::Contains, _) => CondOp::Contains,
                (FilterOp::Eq, FieldKind::TextCi) => CondOp::EqCi,
                (FilterOp::Eq, _) => CondOp::Eq,
            },
            value: sql_value(f.kind, &f.value),
        })
        .collect();
    let order = params
        .sort
        .iter()
        .map(|k| OrderBy {
            expr: column(def, k.name),
            desc: k.direction == Direction::Desc,
            fold_case: k.kind == FieldKind::TextCi,
        })
        .collect();
    let values = |values: &[Scalar]| -> Vec<SqlValue> {
        values.iter().zip(&params.sort).map(|(v, k)| sql_value(k.kind, v)).collect()
    };
    let window = match &params.page {
        Page::Offset { limit, offset } => Window::Offset { limit: *limit, offset: *offset },
        Page::After { limit, cursor } => {
            Window::After { limit: *limit, values: values(&cursor.values), id: cursor.id.clone() }
        }
        Page::Before { limit, cursor } => {
            Window::Before { limit: *limit, values: values(&cursor.values), id: cursor.id.clone() }
        }
    };
    Listing { conditions, order, window }
}

/// Query string of `query` without paging position, plus `extra`.
fn link(path: &str, query: &str, extra: Option<(&str, &str)>) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if !matches!(k.as_ref(), "page[offset]" | "page[after]" | "page[before]") {
            out.append_pair(&k, &v);
        }
    }
    if let Some((k, v)) = extra {
        out.append_pair(k, v);
    }
    let qs = out.finish();
    if qs.is_empty() { path.to_owned() } else { format!("{path}?{qs}") }
}

fn page_links(path: &str, query: &str, params: &ListParams, objects: &[ResourceObject], more: bool) -> Links {
    let cursor = |o: &ResourceObject, sort: &[SortKey]| encode_cursor(o, sort);
    let (has_next, has_prev) = match &params.page {
        Page::Offset { offset, .. } => (more, *offset > 0),
        Page::After { .. } => (more, true),
        Page::Before { .. } => (true, more),
    };
    Links {
        self_: Some(if query.is_empty() { path.to_owned() } else { format!("{path}?{query}") }),
        first: Some(link(path, query, None)),
        next: (has_next)
            .then(|| objects.last())
            .flatten()
            .map(|o| link(path, query, Some(("page[after]", &cursor(o, &params.sort))))),
        prev: (has_prev)
            .then(|| objects.first())
            .flatten()
            .map(|o| link(path, query, Some(("page[before]", &cursor(o, &params.sort))))),
    }
}

fn apply_fields(objects: &mut [ResourceObject], fields: &std::collections::HashMap<String, Vec<String>>) {
    for object in objects {
        if let Some(wanted) = fields.get(object.kind) {
            object.retain_fields(wanted);
        }
    }
}

/// Adds the linkage of each to-many relationship declared with a join
/// table that `include` names.
async fn link_through(
    core: &Core,
    def: &ResourceDef,
    objects: &mut [ResourceObject],
    include: &[String],
) -> Result<(), ServiceError> {
    for relationship in def.relationships {
        let Some(join) = &relationship.through else { continue };
        if !include.iter().any(|name| name == relationship.name) {
            continue;
        }
        let ids: Vec<String> = objects.iter().map(|o| o.id.clone()).collect();
        let pairs = services::linked_ids(core, join.table, join.near, join.far, &ids).await?;
        add_to_many(objects, relationship.name, relationship.kind, &pairs);
    }
    Ok(())
}

/// Adds the to-many linkage of a family's relationships that `include`
/// names: from their join tables, or the family's own `link_many`.
async fn add_linkage<R: Resource>(
    core: &Core,
    ctx: &Ctx,
    objects: &mut [ResourceObject],
    names: &[String],
) -> Result<(), ServiceError> {
    R::link_many(core, ctx, objects, names).await?;
    link_through(core, R::DEF, objects, names).await
}

/// Answers `include` for `objects` of a family: adds the linkage it names
/// and loads the related resources, level by level for a dotted path
/// (`memberships.user` adds each membership's user too). Each resource is
/// included once, and none that is already primary data.
async fn load_included<R: Resource>(
    core: &Core,
    ctx: &Ctx,
    objects: &mut [ResourceObject],
    paths: &[String],
) -> Result<Vec<ResourceObject>, ServiceError> {
    let mut included = Vec::new();
    include_level(core, ctx, R::DEF, link_boxed::<R>, objects, paths.to_vec(), &mut included).await?;
    let mut seen: HashSet<(&str, String)> = objects.iter().map(|o| (o.kind, o.id.clone())).collect();
    included.retain(|o| seen.insert((o.kind, o.id.clone())));
    Ok(included)
}

/// One level of `include`: the first segment of each path is a relationship
/// of `def`; the rest applies to the resources it loads.
fn include_level<'a>(
    core: &'a Core,
    ctx: &'a Ctx,
    def: &'static ResourceDef,
    link: LinkFn,
    objects: &'a mut [ResourceObject],
    paths: Vec<String>,
    included: &'a mut Vec<ResourceObject>,
) -> BoxFuture<'a, Result<(), ServiceError>> {
    Box::pin(async move {
        let mut names: Vec<String> = Vec::new();
        for path in &paths {
            let head = path.split('.').next().unwrap_or(path).to_owned();
            if !names.contains(&head) {
                names.push(head);
            }
        }
        link(core, ctx, objects, &names).await?;
        for name in &names {
            // Declared paths are checked against the registry when the
            // router is built (`check_includes`).
            let Some(relationship) = def.relationships.iter().find(|r| r.name == name) else { continue };
            let Some(entry) = registration(relationship.kind) else { continue };
            let ids = linked(objects, name);
            if ids.is_empty() {
                continue;
            }
            let mut related = (entry.present_many)(core, ctx, &ids).await?;
            let prefix = format!("{name}.");
            let deeper: Vec<String> =
                paths.iter().filter_map(|p| p.strip_prefix(&prefix)).map(str::to_owned).collect();
            if !deeper.is_empty() {
                include_level(core, ctx, entry.def, entry.link, &mut related, deeper, included).await?;
            }
            included.extend(related);
        }
        Ok(())
    })
}

/// The ids a relationship's linkage names, each once.
fn linked(objects: &[ResourceObject], name: &str) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for object in objects {
        let data = object.relationships.get(name).and_then(|r| r.get("data"));
        let items = match data {
            Some(Value::Array(items)) => items.iter().collect(),
            Some(Value::Null) | None => vec![],
            Some(one) => vec![one],
        };
        for id in items.into_iter().filter_map(|item| item["id"].as_str()) {
            if !ids.iter().any(|i| i == id) {
                ids.push(id.to_owned());
            }
        }
    }
    ids
}

fn registration(kind: &str) -> Option<&'static Registration> {
    REGISTRY.iter().find(|entry| entry.def.kind == kind)
}

/// Every declared include path names, segment by segment, a relationship of
/// a registered family: a typo fails when the router is built, not in a
/// request.
fn check_includes(def: &ResourceDef) {
    for path in def.query.includes {
        let mut at = def;
        for segment in path.split('.') {
            let relationship = at.relationships.iter().find(|r| r.name == segment);
            let Some(relationship) = relationship else {
                panic!("{}: include `{path}`: `{}` has no relationship `{segment}`", def.path, at.kind)
            };
            let Some(entry) = registration(relationship.kind) else {
                panic!("{}: include `{path}`: `{}` is not registered", def.path, relationship.kind)
            };
            at = entry.def;
        }
    }
}

/// Included resources are read like their own routes (`fetch_many` needs
/// their family's read scope, or `users:read` alone would read roles).
async fn present_many<R: Resource>(
    core: &Core,
    ctx: &Ctx,
    ids: &[String],
) -> Result<Vec<ResourceObject>, ServiceError> {
    let rows = services::fetch_many::<R::Model>(core, ctx, ids).await?;
    Ok(rows.iter().map(|row| R::present(ctx, row)).collect())
}

/// `GET /api/{path}`.
pub async fn list<R: Resource>(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    list_within::<R>(&core, &ctx, query, &format!("/api/{}", R::DEF.path), Vec::new()).await
}

/// A listing of `R` at `path` with `within` added to the request's
/// filters: a nested collection such as `/api/webhooks/:id/deliveries`.
pub async fn list_within<R: Resource>(
    core: &Core,
    ctx: &Ctx,
    query: Option<String>,
    path: &str,
    within: Vec<portcullis_store::Condition>,
) -> ApiResult<Response> {
    let query = query.unwrap_or_default();
    let params = parse_list(&query, &R::DEF.query)?;
    let mut listing = listing(R::DEF, &params);
    listing.conditions.extend(within);
    let slice = services::list::<R::Model>(core, ctx, &listing).await?;
    let mut objects: Vec<ResourceObject> = slice.rows.iter().map(|row| R::present(ctx, row)).collect();
    let included = load_included::<R>(core, ctx, &mut objects, &params.include).await?;
    let links = page_links(path, &query, &params, &objects, slice.more);
    let mut page_meta = json!({"limit": params.page.limit()});
    if let Page::Offset { offset, .. } = params.page {
        page_meta["offset"] = json!(offset);
    }
    if params.count {
        page_meta["total"] = json!(services::count::<R::Model>(core, ctx, &listing).await?);
    }
    apply_fields(&mut objects, &params.fields);
    let mut document = Document::many(objects);
    let mut included = included;
    apply_fields(&mut included, &params.fields);
    document.include(included);
    document.links = Some(links);
    Ok(respond(StatusCode::OK, &document.with_meta("page", page_meta)))
}

/// `GET /api/{path}/:id`.
pub async fn show<R: Resource>(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let (include, fields) = parse_fetch(&query.unwrap_or_default(), &R::DEF.query)?;
    let row: R::Model = services::fetch(&core, &ctx, R::DEF.kind, &id).await?;
    let object = R::detail(&core, &ctx, R::present(&ctx, &row)).await?;
    let mut objects = vec![object];
    let mut included = load_included::<R>(&core, &ctx, &mut objects, &include).await?;
    apply_fields(&mut objects, &fields);
    apply_fields(&mut included, &fields);
    let mut document = Document::one(objects.remove(0));
    document.include(included);
    Ok(respond(StatusCode::OK, &document))
}

/// Builds a resource's router from its declaration: generic list and show,
/// and its own handlers. What each needs, its service decides.
fn resource_router<R: Resource>() -> Router<Arc<Core>> {
    let def = R::DEF;
    assert_eq!(def.family, <R::Model as Guarded>::FAMILY, "{}: the family of its rows", def.path);
    check_includes(def);
    let routes = R::routes();
    let declared = |what: &str, declared: bool, handled: bool| {
        assert_eq!(
            declared, handled,
            "{}: `{what}` is declared {declared} but has a handler: {handled}",
            def.path
        );
    };
    declared("create", def.ops.create, routes.create.is_some());
    declared("update", def.ops.update, routes.update.is_some());
    declared("delete", def.ops.delete, routes.delete.is_some());
    let mut collection = routes.create.unwrap_or_default();
    let mut member = routes.update.unwrap_or_default().merge(routes.delete.unwrap_or_default());
    if def.ops.list {
        collection = collection.merge(get(list::<R>));
    }
    if def.ops.get {
        member = member.merge(get(show::<R>));
    }
    let mut router = Router::new()
        .route(&format!("/api/{}", def.path), collection)
        .route(&format!("/api/{}/{{id}}", def.path), member);
    let mut handlers = routes.actions;
    for action in def.actions {
        let at = handlers.iter().position(|(name, _)| *name == action.name);
        let (_, route) =
            handlers.remove(at.unwrap_or_else(|| panic!("{}: no handler for `{}`", def.path, action.name)));
        router = router.route(&format!("/api/{}/{{id}}/{}", def.path, action.name), route(action.method));
    }
    if let Some((name, _)) = handlers.first() {
        panic!("{}: a handler for the undeclared action `{name}`", def.path);
    }
    for (path, route) in routes.extra {
        router = router.route(path, route);
    }
    router
}

type PresentMany =
    for<'a> fn(&'a Core, &'a Ctx, &'a [String]) -> BoxFuture<'a, Result<Vec<ResourceObject>, ServiceError>>;
type LinkFn = for<'a> fn(
    &'a Core,
    &'a Ctx,
    &'a mut [ResourceObject],
    &'a [String],
) -> BoxFuture<'a, Result<(), ServiceError>>;
type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A resource family's entry in the registry.
pub struct Registration {
    pub def: &'static ResourceDef,
    router: fn() -> Router<Arc<Core>>,
    /// Presents resources of this kind by id, for `include`.
    present_many: PresentMany,
    /// Adds their to-many linkage, for a nested `include`.
    link: LinkFn,
}

const fn entry<R: Resource>() -> Registration {
    Registration {
        def: R::DEF,
        router: resource_router::<R>,
        present_many: present_many_boxed::<R>,
        link: link_boxed::<R>,
    }
}

fn link_boxed<'a, R: Resource>(
    core: &'a Core,
    ctx: &'a Ctx,
    objects: &'a mut [ResourceObject],
    names: &'a [String],
) -> BoxFuture<'a, Result<(), ServiceError>> {
    Box::pin(add_linkage::<R>(core, ctx, objects, names))
}

fn present_many_boxed<'a, R: Resource>(
    core: &'a Core,
    ctx: &'a Ctx,
    ids: &'a [String],
) -> BoxFuture<'a, Result<Vec<ResourceObject>, ServiceError>> {
    Box::pin(present_many::<R>(core, ctx, ids))
}

/// Every resource of the Management API, registered once: the router, the
/// OpenAPI document and `include` all read this list.
pub static REGISTRY: &[Registration] = &[
    entry::<users::Users>(),
    entry::<roles::Roles>(),
    entry::<permissions::Permissions>(),
    entry::<role_permissions::RolePermissions>(),
    entry::<user_roles::UserRoles>(),
    entry::<clients::Clients>(),
    entry::<resource_servers::ResourceServers>(),
    entry::<scopes::Scopes>(),
    entry::<sessions::Sessions>(),
    entry::<grants::Grants>(),
    entry::<signing_keys::SigningKeys>(),
    entry::<audit_events::AuditEvents>(),
    entry::<apps::Apps>(),
    entry::<app_accounts::AppAccounts>(),
    entry::<provisioning_plans::Plans>(),
    entry::<provisioning_plans::Steps>(),
    entry::<manual_tasks::ManualTasks>(),
    entry::<organizations::Organizations>(),
    entry::<memberships::Memberships>(),
    entry::<membership_roles::MembershipRoles>(),
    entry::<invitations::Invitations>(),
    entry::<custom_domains::CustomDomains>(),
    entry::<webhooks::Webhooks>(),
    entry::<webhooks::WebhookDeliveries>(),
];

/// The Management API: every registered resource, and the environment's
/// own settings (a singleton, not a collection), behind authentication.
pub fn router(core: &Arc<Core>) -> Router<Arc<Core>> {
    REGISTRY
        .iter()
        .fold(environment::router(), |router, entry| router.merge((entry.router)()))
        .route_layer(middleware::from_fn_with_state(core.clone(), auth::authenticate))
}
