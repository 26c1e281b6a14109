//! Integration tests: real HTTP over loopback against a real server, on
//! SQLite and (with PORTCULLIS_TEST_DATABASE_URL) PostgreSQL. One binary, so
//! the workspace links one test executable.

mod common;
mod harness;

mod browser;
mod crash;
mod dns;
mod openapi;
mod quick_start;
mod tls;

/// Webhooks: the resource, delivery, signatures, retries and safety.
mod webhooks {
    mod catalogue;
    mod delivery;
    pub mod receiver;
    mod resource;
}

/// Every Management API resource: CRUD, validation, and body errors.
mod resources {
    pub mod support;

    mod body_errors;
    mod clients;
    mod custom_domains;
    mod environment;
    mod grants;
    mod links;
    mod memberships;
    mod organizations;
    mod permissions;
    mod resource_servers;
    mod roles;
    mod scopes;
    mod signing_keys;
    mod users;
}

/// The one JSON:API layer (paging, filters, sorts, includes, fieldsets) and
/// the audit/outbox guarantees.
mod jsonapi {
    pub mod support;

    mod audit_trail;
    mod isolation;
    mod pagination;
    mod query_params;
    mod rollback;
}

/// OAuth endpoints, Management API authorization, signing keys, discovery,
/// isolation between environments, and an independent relying party.
mod oauth {
    pub mod support;

    mod auth;
    mod discovery;
    mod introspection;
    mod isolation;
    mod keys;
    mod opaque;
    pub mod rp;
    mod token;
}

/// The lifecycle hub against the app simulators: provisioning, approvals,
/// faults and reconciliation.
mod hub {
    pub mod support;

    mod expensify;
    mod leases;
    mod payhawk;
    mod person;
    mod scim;
    mod scim_groups;
    mod stripe;
    mod stripe_dashboard;
    mod tasks;
    mod travelperk;
    mod webhooks;
}

/// The findings of the security audit (issue 14), one file per concern.
mod security {
    mod escalation;
    mod hygiene;
    mod includes;
    mod redirect_uris;
    mod scopes;
    mod sign_in_flows;
    mod user_tokens;
}

/// End-user sign-in: the authorization endpoint, hosted pages, sessions,
/// the code and refresh grants, ID tokens, UserInfo and logout.
mod signin {
    pub mod support;

    mod account;
    mod flow;
    mod invitations;
    mod limits;
    mod organizations;
    mod rp;
    mod sessions_api;
}
