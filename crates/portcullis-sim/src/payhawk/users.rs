//! The user/employee API: the least certain part of the Payhawk contract.
//!
//! The spec (§4) records that a user API exists but not its paths or
//! payloads [I]. A Kiota client generated from Payhawk's Swagger
//! (github.com/stefan-d-p/PayhawkSDK) [T] shows `GET/POST
//! /accounts/{accountId}/users`, `PATCH/DELETE …/users/{userId}`, the
//! `IAccountUser` fields (`id`, `email`, `firstName`, `lastName`,
//! `externalId`, `role`, `createdAt`), `{items, total}` lists, a `$filter`
//! query parameter and 204 answers to PATCH and DELETE. Everything else
//! here is [I]: `GET …/users/{id}`, `$skip`/`$take` paging on this list
//! (other lists have it [T]), the `email`/`externalId` filter keys, the
//! `status` and `department` fields and the `cardAction` delete parameter.
//!
//! So every wire detail of users sits behind [`UserAdapter`]: once the real
//! Swagger is read, a new adapter (or an edit of [`V3Users`]) changes the
//! simulator without touching its model, side effects, faults or limits.
//! The simulator keeps the semantics: roles, duplicate emails, statuses,
//! card side effects and teams.

use axum::http::Method;
use serde_json::{Map, Value, json};

use super::{ApiError, CardAction, NewUser, Paging, User, UserChange, iso, json_filter, paging};

/// Which user operation a request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRoute {
    List,
    Get(String),
    Invite,
    Update(String),
    Remove(String),
}

impl UserRoute {
    /// The fault name of the operation.
    pub fn operation(&self) -> &'static str {
        match self {
            UserRoute::List => "users.list",
            UserRoute::Get(_) => "users.get",
            UserRoute::Invite => "users.invite",
            UserRoute::Update(_) => "users.update",
            UserRoute::Remove(_) => "users.remove",
        }
    }
}

/// A user list request: paging plus equality filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserQuery {
    pub paging: Paging,
    /// Compared case-insensitively.
    pub email: Option<String>,
    pub external_id: Option<String>,
}

/// A successful answer: status and optional JSON body (none for 204).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Option<Value>,
}

impl Reply {
    pub fn ok(body: Value) -> Self {
        Reply { status: 200, body: Some(body) }
    }

    pub fn no_content() -> Self {
        Reply { status: 204, body: None }
    }
}

/// The wire side of users: routing, request parsing and rendering. The
/// simulator validates roles, checks state and applies side effects.
pub trait UserAdapter: Send + Sync {
    /// The user operation for `method` and `path`, the part after
    /// `/api/v3/accounts/{accountId}` (e.g. `/users/abc`); `None` if the
    /// request is not a user operation.
    fn route(&self, method: &Method, path: &str) -> Option<UserRoute>;

    /// Parses a list request's query; `max_take` caps the page size.
    fn list_query(&self, params: &[(String, String)], max_take: usize) -> Result<UserQuery, ApiError>;

    /// Parses an invite body. `extended` allows fields beyond the Swagger's
    /// (`externalId`, `department`).
    fn invite(&self, body: &Value, extended: bool) -> Result<NewUser, ApiError>;

    /// Parses an update body. `extended` allows fields beyond the Swagger's
    /// (`firstName`, `lastName`, `department`).
    fn change(&self, body: &Value, extended: bool) -> Result<UserChange, ApiError>;

    /// The card action a delete asks for; `None` leaves the configured default.
    fn card_action(&self, params: &[(String, String)]) -> Result<Option<CardAction>, ApiError>;

    fn user(&self, user: &User) -> Value;

    /// A page of users; `total` counts every match, not just this page.
    fn list(&self, page: &[&User], total: usize) -> Value;

    fn invited(&self, user: &User) -> Reply;

    fn updated(&self, user: &User) -> Reply;

    fn removed(&self, user: &User) -> Reply;
}

/// The best current guess at Payhawk's v3 user API (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct V3Users;

/// The delete parameter naming the card side effect [I].
pub const CARD_ACTION_PARAM: &str = "cardAction";

impl UserAdapter for V3Users {
    fn route(&self, method: &Method, path: &str) -> Option<UserRoute> {
        let rest = path.strip_prefix("/users")?;
        let id = match rest {
            "" | "/" => None,
            _ => Some(rest.strip_prefix('/').filter(|id| !id.is_empty() && !id.contains('/'))?.to_owned()),
        };
        Some(match (method.as_str(), id) {
            ("GET", None) => UserRoute::List,
            ("POST", None) => UserRoute::Invite,
            ("GET", Some(id)) => UserRoute::Get(id),
            ("PATCH", Some(id)) => UserRoute::Update(id),
            ("DELETE", Some(id)) => UserRoute::Remove(id),
            _ => return None,
        })
    }

    fn list_query(&self, params: &[(String, String)], max_take: usize) -> Result<UserQuery, ApiError> {
        // The Swagger's user list has no paging [T]: without `$take`, all users.
        let paging = paging(params, max_take, usize::MAX)?;
        let filter = json_filter(params)?;
        let mut query = UserQuery { paging, ..UserQuery::default() };
        for (key, value) in &filter {
            let slot = match key.as_str() {
                "email" => &mut query.email,
                "externalId" => &mut query.external_id,
                _ => return Err(ApiError::validation(format!("Unsupported filter property: {key}"))),
            };
            let text =
                value.as_str().ok_or_else(|| ApiError::validation(format!("{key} must be a string")))?;
            *slot = Some(text.to_owned());
        }
        Ok(query)
    }

    fn invite(&self, body: &Value, extended: bool) -> Result<NewUser, ApiError> {
        let fields = object(body)?;
        let mut allowed = vec!["email", "firstName", "lastName", "role"];
        if extended {
            allowed.extend(["externalId", "department"]);
        }
        reject_unknown(fields, &allowed)?;
        let required = |name: &str| {
            text(fields, name)?
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| ApiError::validation(format!("{name} is required")))
        };
        let email = required("email")?;
        if !valid_email(&email) {
            return Err(ApiError::validation(format!("email is not a valid email address: {email}")));
        }
        Ok(NewUser {
            email,
            first_name: required("firstName")?,
            last_name: required("lastName")?,
            role: required("role")?,
            external_id: text(fields, "externalId")?,
            department: text(fields, "department")?,
            ..NewUser::default()
        })
    }

    fn change(&self, body: &Value, extended: bool) -> Result<UserChange, ApiError> {
        let fields = object(body)?;
        let mut allowed = vec!["externalId", "role"];
        if extended {
            allowed.extend(["firstName", "lastName", "department"]);
        }
        reject_unknown(fields, &allowed)?;
        let mut change = UserChange {
            role: text(fields, "role")?,
            first_name: text(fields, "firstName")?,
            last_name: text(fields, "lastName")?,
            external_id: text(fields, "externalId")?,
            department: text(fields, "department")?,
            ..UserChange::default()
        };
        // `null` clears a clearable field, as `""` does.
        for (name, slot) in [("externalId", &mut change.external_id), ("department", &mut change.department)]
        {
            if fields.get(name).is_some_and(Value::is_null) {
                *slot = Some(String::new());
            }
        }
        for (name, value) in [("role", &change.role), ("firstName", &change.first_name)] {
            if value.as_ref().is_some_and(|v| v.trim().is_empty()) {
                return Err(ApiError::validation(format!("{name} cannot be empty")));
            }
        }
        Ok(change)
    }

    fn card_action(&self, params: &[(String, String)]) -> Result<Option<CardAction>, ApiError> {
        let Some((_, value)) = params.iter().find(|(name, _)| name == CARD_ACTION_PARAM) else {
            return Ok(None);
        };
        CardAction::parse(value).map(Some).ok_or_else(|| {
            ApiError::validation(format!(
                "{CARD_ACTION_PARAM} must be one of block_reassignable_close_rest, close_all, keep; got {value}"
            ))
        })
    }

    fn user(&self, user: &User) -> Value {
        json!({
            "id": user.id,
            "email": user.email,
            "firstName": user.first_name,
            "lastName": user.last_name,
            "role": user.role,
            "externalId": user.external_id,
            "createdAt": iso(user.created_at),
            "status": user.status,
            "department": user.department,
        })
    }

    fn list(&self, page: &[&User], total: usize) -> Value {
        let items: Vec<Value> = page.iter().map(|u| self.user(u)).collect();
        json!({ "items": items, "total": total })
    }

    fn invited(&self, user: &User) -> Reply {
        Reply::ok(self.user(user))
    }

    fn updated(&self, _user: &User) -> Reply {
        Reply::no_content()
    }

    fn removed(&self, _user: &User) -> Reply {
        Reply::no_content()
    }
}

fn object(body: &Value) -> Result<&Map<String, Value>, ApiError> {
    body.as_object().ok_or_else(|| ApiError::validation("The request body must be a JSON object"))
}

fn reject_unknown(fields: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    match fields.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(ApiError::validation(format!("Property {key} is not allowed"))),
        None => Ok(()),
    }
}

/// A string field: absent or `null` is `None`, anything but a string is a 400.
fn text(fields: &Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::validation(format!("{name} must be a string"))),
    }
}

/// One `@` with something on both sides and a dot in the domain.
fn valid_email(email: &str) -> bool {
    email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && domain.contains('.')
            && !domain.contains('@')
            && !email.contains(char::is_whitespace)
    })
}
