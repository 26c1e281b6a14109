//! Who is acting, in which environment, from where.

use std::sync::Arc;

use portcullis_store::model::{Actor, Origin};

use crate::cache::EnvState;

/// The context every service call receives.
#[derive(Clone)]
pub struct Ctx {
    pub env: Arc<EnvState>,
    pub actor: Actor,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
}

impl Ctx {
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
