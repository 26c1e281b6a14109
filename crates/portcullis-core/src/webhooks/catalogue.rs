//! Every event a webhook can subscribe to: its type, what it means, and
//! what its payload's `data` holds. The Management API serves this list
//! (`GET /api/webhooks/event-types`), the OpenAPI document enumerates it,
//! and `events` on a webhook is validated against it. A test pins that it
//! is exactly the set of events the services record.

use serde::Serialize;

use crate::authz::Family;

/// One event type.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EventType {
    /// `family.verb`, e.g. `user.created`.
    pub name: &'static str,
    pub description: &'static str,
    /// What `data` holds: a JSON:API resource type as the Management API
    /// shows it, or a short summary object for events that are not a
    /// resource's change.
    pub data: &'static str,
}

const fn event(name: &'static str, data: &'static str, description: &'static str) -> EventType {
    EventType { name, description, data }
}

/// The message a webhook's `test` action sends; delivered only to that
/// webhook, never by subscription.
pub const TEST_EVENT: EventType =
    event("webhook.test", "webhook", "A test message sent by `POST /api/webhooks/:id/test`.");

pub static CATALOGUE: &[EventType] = &[
    event("user.created", "user", "A user was created through the Management API or an invitation."),
    event("user.registered", "user", "A user signed up on the hosted pages."),
    event("user.updated", "user", "A user's attributes, email verification or blocked state changed."),
    event("user.deleted", "user", "A user was deleted (`data` is their last state)."),
    event("user.password_reset", "user", "A user reset their password through an emailed link."),
    event("user.password_changed", "user", "A user changed their password."),
    event(
        "user.login_failed",
        "object",
        "A sign-in with a wrong password: `{user_id, failed_logins, locked}`.",
    ),
    event("role.created", "role", "A role was created."),
    event("role.updated", "role", "A role was changed."),
    event("role.deleted", "role", "A role was deleted."),
    event("permission.created", "permission", "A permission was created."),
    event("permission.updated", "permission", "A permission was changed."),
    event("permission.deleted", "permission", "A permission was deleted."),
    event("role_permission.created", "role_permission", "A permission was added to a role."),
    event("role_permission.deleted", "role_permission", "A permission was removed from a role."),
    event("user_role.created", "user_role", "A role was given to a user."),
    event("user_role.deleted", "user_role", "A role was taken from a user."),
    event("client.registered", "client", "An OAuth client was registered."),
    event("client.updated", "client", "An OAuth client was changed, or its secret rotated."),
    event("client.deleted", "client", "An OAuth client was deleted."),
    event("resource_server.created", "resource_server", "An API (resource server) was created."),
    event("resource_server.updated", "resource_server", "An API was changed."),
    event("resource_server.deleted", "resource_server", "An API was deleted."),
    event("scope.created", "scope", "A scope of an API was created."),
    event("scope.updated", "scope", "A scope was changed."),
    event("scope.deleted", "scope", "A scope was deleted."),
    event(
        "client_resource_server_grant.created",
        "client_resource_server_grant",
        "A client was granted access to an API.",
    ),
    event(
        "client_resource_server_grant.updated",
        "client_resource_server_grant",
        "A grant's scopes changed.",
    ),
    event("client_resource_server_grant.deleted", "client_resource_server_grant", "A grant was removed."),
    event(
        "token.issued",
        "object",
        "An access token was issued: `{grant_type, client_id, jti, sub, aud, scope, exp, …}` (never the token).",
    ),
    event(
        "token.revoked",
        "object",
        "A token was revoked: `{jti, client_id}`, or `{token_type, family_id, client_id}` for a refresh token.",
    ),
    event(
        "consent.granted",
        "object",
        "A user consented to a client's scopes: `{user_id, client_id, scopes}`.",
    ),
    event("session.created", "session", "A user signed in on the hosted pages."),
    event(
        "session.reauthenticated",
        "session",
        "A signed-in user signed in again (`prompt=login`, `max_age`).",
    ),
    event("session.touched", "session", "A session's activity was recorded through the Management API."),
    event("session.revoked", "session", "A session was ended (sign-out, revocation, password reset, block)."),
    event("session.deleted", "session", "A session was deleted through the Management API."),
    event("signing_key.generated", "signing_key", "A signing key was generated."),
    event("signing_key.primary_changed", "signing_key", "Another key became the primary signing key."),
    event("signing_key.deactivated", "signing_key", "A signing key was deactivated."),
    event("signing_key.deleted", "signing_key", "A signing key was deleted."),
    event("environment.created", "environment", "The environment was created."),
    event("environment.updated", "environment", "The environment's settings changed."),
    event("custom_domain.created", "custom_domain", "A custom domain was added (pending verification)."),
    event("custom_domain.verified", "custom_domain", "DNS proved a custom domain: it is active."),
    event(
        "custom_domain.failed",
        "custom_domain",
        "A custom domain's DNS record points elsewhere or is gone.",
    ),
    event("custom_domain.deleted", "custom_domain", "A custom domain was removed."),
    event("organization.created", "organization", "An organization was created."),
    event("organization.updated", "organization", "An organization was changed."),
    event("organization.deleted", "organization", "An organization was deleted."),
    event("membership.created", "membership", "A user joined an organization."),
    event("membership.updated", "membership", "A membership was changed."),
    event("membership.deleted", "membership", "A user left or was removed from an organization."),
    event("membership_role.created", "membership_role", "A member was given a role in an organization."),
    event("membership_role.deleted", "membership_role", "A member's role in an organization was taken."),
    event("invitation.created", "invitation", "An invitation to an organization was sent."),
    event("invitation.accepted", "invitation", "An invitation was accepted."),
    event("invitation.declined", "invitation", "An invitation was declined."),
    event("invitation.revoked", "invitation", "An invitation was revoked."),
    event("invitation.deleted", "invitation", "An invitation was deleted."),
    event("webhook.created", "webhook", "A webhook was created."),
    event("webhook.updated", "webhook", "A webhook was changed, or enabled again."),
    event("webhook.secret_rotated", "webhook", "A webhook's signing secret was rotated."),
    event(
        "webhook.disabled",
        "webhook",
        "Delivery disabled a webhook: its endpoint answered 410 Gone, or failed for days (`disabled_reason`).",
    ),
    event("webhook.deleted", "webhook", "A webhook was deleted."),
    event("app.created", "app", "An app was connected to the lifecycle hub."),
    event("app.updated", "app", "An app's settings changed."),
    event("app.deleted", "app", "An app was removed."),
    event("app.reconciled", "app", "A reconciliation of an app read its roster and stored a plan."),
    event("app_account.provisioned", "app_account", "The hub created an account in an app."),
    event("app_account.updated", "app_account", "An account in an app changed (by the hub or out of band)."),
    event("app_account.deactivated", "app_account", "The hub deactivated an account in an app."),
    event("app_account.deleted", "app_account", "The hub deleted an account in an app."),
    event("provisioning_plan.created", "provisioning_plan", "The hub planned changes in apps."),
    event("provisioning_plan.approved", "provisioning_plan", "A person approved a plan."),
    event("provisioning_plan.rejected", "provisioning_plan", "A person rejected a plan."),
    event("provisioning_plan.applied", "provisioning_plan", "Every step of a plan was carried out."),
    event("provisioning_plan.failed", "provisioning_plan", "A plan finished with failed steps."),
    event("provisioning_step.failed", "provisioning_step", "A step of a plan failed for good."),
    event("manual_task.opened", "manual_task", "A person was asked to make a change in an app by hand."),
    event("manual_task.updated", "manual_task", "A manual task was changed."),
    event("manual_task.completed", "manual_task", "A manual task was completed."),
    event("manual_task.verified", "manual_task", "Reconciliation confirmed a completed task."),
    event(
        "manual_task.verification_failed",
        "manual_task",
        "Reconciliation found that a completed task's change is not in the app.",
    ),
];

/// The event type named `name`.
pub fn find(name: &str) -> Option<&'static EventType> {
    CATALOGUE.iter().find(|event| event.name == name)
}

/// The Management API family whose read scope shows what an event type's
/// `data` holds: subscribing to an event, or reading a delivery's payload,
/// reads that family. Events that are not a resource's change (tokens
/// issued or revoked, consent) are the audit log's.
pub fn family(event_type: &str) -> Option<Family> {
    let (prefix, _) = event_type.split_once('.')?;
    Some(match prefix {
        "user" | "user_role" => Family::Users,
        "role" | "role_permission" => Family::Roles,
        "permission" => Family::Permissions,
        "client" => Family::Clients,
        "client_resource_server_grant" => Family::ClientGrants,
        "resource_server" => Family::ResourceServers,
        "scope" => Family::Scopes,
        "token" | "consent" => Family::AuditEvents,
        "session" => Family::Sessions,
        "signing_key" => Family::SigningKeys,
        "environment" => Family::Environment,
        "custom_domain" => Family::CustomDomains,
        "organization" => Family::Organizations,
        "membership" | "membership_role" => Family::Memberships,
        "invitation" => Family::Invitations,
        "webhook" => Family::Webhooks,
        "app" | "app_account" | "provisioning_plan" | "provisioning_step" | "manual_task" => Family::Apps,
        _ => return None,
    })
}

/// The families a subscription pattern reads (see [`family`]).
pub fn families_of(pattern: &str) -> Vec<Family> {
    let mut families: Vec<Family> = CATALOGUE
        .iter()
        .filter(|event| portcullis_store::repo::webhooks::subscribes(&[pattern.to_owned()], event.name))
        .filter_map(|event| family(event.name))
        .collect();
    families.sort_unstable();
    families.dedup();
    families
}

/// Checks a subscription: an event type, a family wildcard (`user.*`) of
/// a family that has events, or `*`.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern == "*" || find(pattern).is_some() {
        return Ok(());
    }
    if let Some(family) = pattern.strip_suffix(".*")
        && CATALOGUE.iter().any(|event| event.name.split_once('.').is_some_and(|(f, _)| f == family))
    {
        return Ok(());
    }
    Err(format!(
        "`{pattern}` is not an event type (see GET /api/webhooks/event-types), a family wildcard such as `user.*`, or `*`"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_well_formed() {
        let mut names: Vec<&str> = CATALOGUE.iter().map(|e| e.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "an event type is listed twice");
        for name in names {
            let (family, verb) = name.split_once('.').expect("family.verb");
            assert!(!family.is_empty() && !verb.is_empty() && !verb.contains('.'), "{name}");
        }
    }

    #[test]
    fn the_reference_lists_types_are_all_here() {
        for name in [
            "user.created",
            "user.registered",
            "user.updated",
            "user.password_reset",
            "user.password_changed",
            "role.created",
            "role.updated",
            "permission.created",
            "permission.updated",
            "client.registered",
            "client.updated",
            "token.issued",
            "signing_key.generated",
            "signing_key.deactivated",
            "environment.updated",
            "custom_domain.created",
            "custom_domain.deleted",
        ] {
            assert!(find(name).is_some(), "{name}");
        }
    }

    #[test]
    fn every_event_type_belongs_to_a_family() {
        for event in CATALOGUE.iter().chain([&TEST_EVENT]) {
            assert!(family(event.name).is_some(), "{}", event.name);
        }
        assert_eq!(families_of("user.*"), [Family::Users]);
        assert_eq!(families_of("invitation.accepted"), [Family::Invitations]);
        assert_eq!(families_of("*").len(), Family::ALL.len(), "every family has events");
    }

    #[test]
    fn patterns() {
        for ok in ["*", "user.*", "user.created", "custom_domain.*"] {
            assert!(check_pattern(ok).is_ok(), "{ok}");
        }
        for bad in ["", "user", "user.nope", "nope.*", "*.created", "user.**", "webhook.test"] {
            assert!(check_pattern(bad).is_err(), "{bad}");
        }
    }
}
