//! Who is acting, in which environment, from where, and what they may grant.

use std::sync::Arc;

use portcullis_store::model::{Actor, Origin};

use crate::authz::{Family, Grant, Grants, Verb};
use crate::cache::EnvState;
use crate::error::{Result, ServiceError};

/// The Management API scopes an actor holds, which bound what it may hand
/// out: nobody grants a scope they do not hold themselves.
#[derive(Debug, Clone)]
pub enum Authority {
    /// An operator at the server's console, or the platform itself.
    Operator,
    /// A Management API token: the grants its scopes name (`claimed`) and
    /// those of them its client's grant still allows (`held`).
    Token { held: Grants, claimed: Grants },
    /// An end user on the hosted pages: holds no Management API scope.
    None,
}

impl Authority {
    pub fn has(&self, grant: Grant) -> bool {
        match self {
            Authority::Operator => true,
            Authority::Token { held, .. } => held.contains(grant),
            Authority::None => false,
        }
    }

    /// Whether the Management API scope `scope` is held (one the catalogue
    /// does not list is held by nobody but an operator).
    pub fn holds(&self, scope: &str) -> bool {
        match Grant::parse(scope) {
            Some(grant) => self.has(grant),
            None => matches!(self, Authority::Operator),
        }
    }

    /// Refuses (403, naming the scope) unless `grant` is held.
    pub fn require(&self, grant: Grant) -> Result<()> {
        if self.has(grant) {
            return Ok(());
        }
        let withdrawn = matches!(self, Authority::Token { claimed, .. } if claimed.contains(grant));
        Err(ServiceError::MissingGrant { grant, withdrawn })
    }

    /// Refuses (403) unless every one of `scopes` is held.
    pub fn require_all<'a>(&self, scopes: impl IntoIterator<Item = &'a str>, what: &str) -> Result<()> {
        let missing: Vec<&str> = scopes.into_iter().filter(|s| !self.holds(s)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(ServiceError::Forbidden(format!(
            "{what} needs scopes you do not hold yourself: {}",
            missing.join(" ")
        )))
    }
}

/// The context every service call receives.
#[derive(Clone)]
pub struct Ctx {
    pub env: Arc<EnvState>,
    pub actor: Actor,
    pub authority: Authority,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
}

impl Ctx {
    /// An operator acting from the console (CLI commands run on the server).
    pub fn operator(env: Arc<EnvState>, name: Option<String>) -> Ctx {
        Ctx {
            env,
            actor: Actor { kind: "operator", id: None, name },
            authority: Authority::Operator,
            ip_address: None,
            user_agent: Some("portcullis CLI".into()),
        }
    }

    /// Refuses (403) unless the actor may `verb` resources of `family`:
    /// every service operation of the Management API starts with this.
    pub fn require(&self, family: Family, verb: Verb) -> Result<()> {
        self.authority.require(family.grant(verb))
    }

    pub fn environment_id(&self) -> &str {
        &self.env.environment.id
    }

    pub fn origin(&self) -> Origin {
        Origin {
            environment_id: self.env.environment.id.clone(),
            actor: self.actor.clone(),
            ip_address: self.ip_address.clone(),
            user_agent: self.user_agent.clone(),
        }
    }
}
