//! Invitations to join an organization, sent by email. The mail carries a
//! single-use link (`/invitations/{token}`; only the token's SHA-256 is
//! kept) that lives for the environment's `invitation_ttl`. Whoever answers
//! must prove the address: by holding the link's token, or by being signed
//! in as a user whose verified email is the invitation's. Accepting creates
//! the membership and its roles in the transaction that marks the
//! invitation accepted, so a second answer, a revoked or an expired
//! invitation never leaves half a membership.

use std::sync::Arc;

use portcullis_crypto::secret;
use portcullis_jsonapi::ResourceObject;
use portcullis_store::model::{Event, Role, User};
use portcullis_store::types::JsonText;
use portcullis_store::{WriteTx, new_id, now_micros, record, repo};
use serde::Deserialize;
use serde_json::json;

use super::membership_roles::MembershipRole;
use super::memberships::Membership;
use super::organizations::Organization;
use super::{attrs, fetch_in, find_by_secret, finish, target, timestamp, unique};
use crate::authz::{Family, Guarded, Verb};
use crate::error::{Field, conflict_on};
use crate::mail::{Mail, queue_in};
use crate::{Core, Ctx, EnvState, Result, ServiceError};

pub const KIND: &str = "invitation";
/// Roles one invitation may hand out.
const ROLES_MAX: usize = 50;

portcullis_store::record! {
    /// An invitation to join an organization (`/api/invitations`). `status`
    /// is stored `pending`, `accepted`, `declined`, `revoked` or `expired`
    /// (a pending one past `expires_at` reads as expired before it is
    /// marked so).
    pub struct Invitation in "invitations" {
        pub id: String,
        pub environment_id: String,
        pub organization_id: String,
        pub email: String,
        #[sqlx(try_from = "String")]
        pub role_ids: JsonText<Vec<String>>,
        pub status: String,
        pub token_hash: String,
        pub expires_at: i64,
        pub inviter_type: Option<String>,
        pub inviter_id: Option<String>,
        pub inviter_name: Option<String>,
        pub user_id: Option<String>,
        pub responded_at: Option<i64>,
        pub inserted_at: i64,
        pub updated_at: i64,
    }
}

impl Guarded for Invitation {
    const FAMILY: Family = Family::Invitations;
}

/// `pending`, `accepted`, `declined`, `revoked` or `expired`: a pending
/// invitation whose time is up reads as expired before anything marks it.
pub fn status(invitation: &Invitation, now: i64) -> &str {
    if invitation.status == "pending" && invitation.expires_at <= now {
        "expired"
    } else {
        &invitation.status
    }
}

pub fn present(invitation: &Invitation) -> ResourceObject {
    let inviter = invitation
        .inviter_type
        .as_ref()
        .map(|kind| json!({"type": kind, "id": invitation.inviter_id, "name": invitation.inviter_name}));
    ResourceObject::new(
        KIND,
        &invitation.id,
        attrs(json!({
            "email": invitation.email,
            "role_ids": invitation.role_ids.0,
            "status": status(invitation, now_micros()),
            "expires_at": timestamp(invitation.expires_at),
            "inviter": inviter,
            "responded_at": invitation.responded_at.map(timestamp),
            "inserted_at": timestamp(invitation.inserted_at),
            "updated_at": timestamp(invitation.updated_at),
        })),
    )
    .to_one("organization", "organization", Some(&invitation.organization_id))
    .to_one("user", "user", invitation.user_id.as_deref())
}

fn label(invitation: &Invitation) -> Option<&str> {
    Some(&invitation.email)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewInvitation {
    pub email: String,
    /// Roles of the organization-level membership, given on acceptance.
    #[serde(default)]
    pub role_ids: Vec<String>,
}

/// Invites `input.email` to `organization_id` and queues the mail with its
/// link, in one transaction.
pub async fn create(
    core: &Core,
    ctx: &Ctx,
    organization_id: &str,
    input: NewInvitation,
) -> Result<Invitation> {
    ctx.require(Family::Invitations, Verb::Write)?;
    let email = super::users::validate_email(&input.email)?.to_lowercase();
    let role_ids = unique(input.role_ids);
    if role_ids.len() > ROLES_MAX {
        return Err(ServiceError::invalid("role_ids", format!("at most {ROLES_MAX} roles")));
    }
    let env = ctx.environment_id();
    let mut tx = core.db.write().await?;
    let organization: Organization = record::find(tx.conn(), env, organization_id)
        .await?
        .ok_or_else(|| ServiceError::invalid_relationship("organization", "organization does not exist"))?;
    let roles: Vec<Role> = record::find_in(tx.conn(), env, "id", &role_ids).await?;
    if let Some(missing) = role_ids.iter().find(|id| !roles.iter().any(|r| &r.id == *id)) {
        return Err(ServiceError::invalid("role_ids", format!("role {missing} does not exist")));
    }
    let now = now_micros();
    repo::invitations::expire_pending(tx.conn(), env, &organization.id, &email, now).await?;
    let token = secret::random_token::<32>();
    let invitation = Invitation {
        id: new_id(),
        environment_id: env.to_owned(),
        organization_id: organization.id.clone(),
        email,
        role_ids: JsonText(role_ids),
        status: "pending".into(),
        token_hash: secret::hash_secret(&token),
        expires_at: now + ctx.env.environment.invitation_ttl * 1_000_000,
        inviter_type: Some(ctx.actor.kind.to_owned()),
        inviter_id: ctx.actor.id.clone(),
        inviter_name: ctx.actor.name.clone(),
        user_id: None,
        responded_at: None,
        inserted_at: now,
        updated_at: now,
    };
    record::insert(tx.conn(), &invitation).await.map_err(conflict_on(
        &["invitations_pending_key", "invitations.email"],
        Field::Attribute("email"),
        "this address has a pending invitation to this organization; revoke it to send a new one",
    ))?;
    let mail = invitation_mail(&ctx.env, &organization, &invitation, &token);
    queue_in(&mut tx, &core.master_key, env, &mail).await?;
    let event = Event {
        action: "invitation.created",
        targets: vec![
            target(KIND, &invitation.id, Some(&invitation.email)),
            target("organization", &organization.id, Some(&organization.name)),
        ],
        changes: json!({"email": {"from": null, "to": invitation.email}}),
        data: serde_json::to_value(present(&invitation)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok(invitation)
}

fn invitation_mail(
    env: &EnvState,
    organization: &Organization,
    invitation: &Invitation,
    token: &str,
) -> Mail {
    let by = invitation
        .inviter_name
        .as_deref()
        .filter(|_| invitation.inviter_type.as_deref() == Some("user"))
        .map(|name| format!("{name} has invited you"))
        .unwrap_or_else(|| "You have been invited".to_owned());
    let days = (invitation.expires_at - invitation.inserted_at).div_euclid(86_400_000_000).max(1);
    let days = if days == 1 { "1 day".to_owned() } else { format!("{days} days") };
    Mail {
        to: invitation.email.clone(),
        subject: format!("Join {} on {}", organization.name, env.environment.name),
        text: format!(
            "Hello,\n\n{by} to join {org} on {name}. To accept or decline, open this link:\n\n{issuer}/invitations/{token}\n\nThe link is for {email}, works once and expires in {days}. If you did not expect this invitation, ignore this message.\n",
            org = organization.name,
            name = env.environment.name,
            issuer = env.issuer,
            email = invitation.email,
        ),
    }
}

/// Why an invitation cannot be answered any more (409).
fn closed(invitation: &Invitation, now: i64) -> ServiceError {
    let message = match status(invitation, now) {
        "accepted" => "this invitation has already been accepted",
        "declined" => "this invitation has been declined",
        "revoked" => "this invitation has been revoked",
        _ => "this invitation has expired; ask for a new one",
    };
    ServiceError::conflict(Field::Resource, message)
}

/// Revokes a pending invitation: its link stops working.
pub async fn revoke(core: &Core, ctx: &Ctx, id: &str) -> Result<Invitation> {
    ctx.require(Family::Invitations, Verb::Write)?;
    let env = ctx.environment_id();
    let mut tx = core.db.write().await?;
    let now = now_micros();
    let before: Invitation = fetch_in(&mut tx, ctx, KIND, id).await?;
    if !repo::invitations::respond(tx.conn(), env, id, "revoked", None, now).await? {
        return Err(closed(&before, now));
    }
    let invitation: Invitation = fetch_in(&mut tx, ctx, KIND, id).await?;
    let event = Event {
        action: "invitation.revoked",
        targets: vec![
            target(KIND, &invitation.id, Some(&invitation.email)),
            target("organization", &invitation.organization_id, None),
        ],
        changes: json!({"status": {"from": "pending", "to": "revoked"}}),
        data: serde_json::to_value(present(&invitation)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok(invitation)
}

pub async fn delete(core: &Core, ctx: &Ctx, id: &str) -> Result<()> {
    ctx.require(Family::Invitations, Verb::Delete)?;
    super::delete::<Invitation>(core, ctx, "invitation.deleted", id, present, label, false).await
}

/// The invitation an emailed link names, whatever its status; `None` for a
/// token that names none.
pub async fn by_link(core: &Core, env: &EnvState, token: &str) -> Result<Option<Invitation>> {
    if token.is_empty() || token.len() > 128 {
        return Ok(None);
    }
    let mut conn = core.db.read().await?;
    Ok(find_by_secret(&mut conn, env.id(), "token_hash", token).await?)
}

/// The organization an invitation is to (for the hosted page).
pub async fn organization_of(core: &Core, invitation: &Invitation) -> Result<Option<Organization>> {
    let mut conn = core.db.read().await?;
    Ok(record::find(&mut conn, &invitation.environment_id, &invitation.organization_id).await?)
}

/// The account of the invited address, if it has one (for the hosted page,
/// which the link's holder sees: it offers sign-in or sign-up).
pub async fn invitee(core: &Core, invitation: &Invitation) -> Result<Option<User>> {
    let mut conn = core.db.read().await?;
    Ok(record::find_by(&mut conn, &invitation.environment_id, "lower(email)", &invitation.email).await?)
}

/// A user of this environment by id (the subject of a user access token).
pub async fn user(core: &Core, env: &EnvState, id: &str) -> Result<Option<User>> {
    let mut conn = core.db.read().await?;
    Ok(record::find(&mut conn, env.id(), id).await?)
}

/// What proves the right to answer an invitation. At least one is needed;
/// an id alone never is.
#[derive(Debug, Default, Clone, Copy)]
pub struct Proof<'a> {
    /// The emailed link's token: its holder can read the invited mailbox.
    pub token: Option<&'a str>,
    /// The signed-in user who answers. Without a token their address must
    /// be verified; either way it must be the invitation's.
    pub user: Option<&'a User>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Accept,
    Decline,
}

/// An accepted or declined invitation, and the membership an acceptance
/// made or extended.
#[derive(Debug)]
pub struct Answered {
    pub invitation: Invitation,
    pub membership: Option<Membership>,
}

/// Answers invitation `id` (or, when `None`, the one `proof.token` names).
/// The Management API's variant needs `invitations:write` on top of the
/// proof; the public endpoint and the hosted page need the proof alone.
pub async fn answer(
    core: &Core,
    ctx: &Ctx,
    id: Option<&str>,
    proof: Proof<'_>,
    answer: Answer,
) -> Result<Answered> {
    if matches!(ctx.authority, crate::Authority::Token { .. }) {
        ctx.require(Family::Invitations, Verb::Write)?;
    }
    let env = ctx.environment_id();
    let refused = |message: &str| ServiceError::Forbidden(message.to_owned());
    let mut tx = core.db.write().await?;
    let invitation: Invitation = match (proof.token, id) {
        (Some(token), id) => {
            let found: Option<Invitation> = find_by_secret(tx.conn(), env, "token_hash", token).await?;
            match (found, id) {
                (Some(found), id) if id.is_none_or(|id| id == found.id) => found,
                (_, Some(id)) => {
                    // Known ids get a 403, unknown ones the 404 any route gives.
                    let _: Invitation = fetch_in(&mut tx, ctx, KIND, id).await?;
                    return Err(refused("the token is not this invitation's"));
                }
                (_, None) => return Err(ServiceError::NotFound(KIND)),
            }
        }
        (None, Some(id)) if proof.user.is_some() => fetch_in(&mut tx, ctx, KIND, id).await?,
        (None, _) => {
            return Err(refused("answering an invitation needs its link's token or a signed-in user"));
        }
    };
    let now = now_micros();
    if status(&invitation, now) != "pending" {
        return Err(closed(&invitation, now));
    }
    let user: Option<User> = match proof.user {
        Some(user) => Some(user.clone()),
        None => record::find_by(tx.conn(), env, "lower(email)", &invitation.email).await?,
    };
    if let Some(user) = &user {
        if user.email.to_lowercase() != invitation.email {
            return Err(refused(
                "this invitation was sent to another email address; sign in with that address",
            ));
        }
        if proof.token.is_none() && !user.email_verified {
            return Err(refused("confirm your email address before answering this invitation"));
        }
        if user.blocked {
            return Err(refused("this account is blocked"));
        }
    }
    let (status_to, action) = match answer {
        Answer::Accept => ("accepted", "invitation.accepted"),
        Answer::Decline => ("declined", "invitation.declined"),
    };
    if answer == Answer::Accept && user.is_none() {
        return Err(ServiceError::conflict(
            Field::Resource,
            "no account has this invitation's email address yet: open the invitation link to sign up",
        ));
    }
    let user_id = user.as_ref().map(|u| u.id.as_str());
    if !repo::invitations::respond(tx.conn(), env, &invitation.id, status_to, user_id, now).await? {
        let current: Invitation = fetch_in(&mut tx, ctx, KIND, &invitation.id).await?;
        return Err(closed(&current, now));
    }
    let membership = match (&user, answer) {
        (Some(user), Answer::Accept) => {
            Some(join(&mut tx, ctx, &invitation, user, proof.token.is_some()).await?)
        }
        _ => None,
    };
    let invitation: Invitation = fetch_in(&mut tx, ctx, KIND, &invitation.id).await?;
    let mut targets = vec![
        target(KIND, &invitation.id, Some(&invitation.email)),
        target("organization", &invitation.organization_id, None),
    ];
    targets.extend(user.as_ref().map(|u| target("user", &u.id, Some(&u.email))));
    let event = Event {
        action,
        targets,
        changes: json!({"status": {"from": "pending", "to": status_to}}),
        data: serde_json::to_value(present(&invitation)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok(Answered { invitation, membership })
}

/// Makes `user` a member of the invitation's organization (or keeps their
/// membership) with the invitation's roles that still exist; following the
/// link (`by_link`) confirms the user's address.
async fn join(
    tx: &mut WriteTx,
    ctx: &Ctx,
    invitation: &Invitation,
    user: &User,
    by_link: bool,
) -> Result<Membership> {
    let env = ctx.environment_id();
    let now = now_micros();
    let origin = ctx.origin();
    if by_link && !user.email_verified {
        let mut verified: User =
            record::find(tx.conn(), env, &user.id).await?.ok_or(ServiceError::NotFound("user"))?;
        verified.email_verified = true;
        verified.updated_at = now;
        record::update(tx.conn(), env, &verified).await?;
        tx.record(
            &origin,
            &Event {
                action: "user.updated",
                targets: vec![target("user", &user.id, Some(&user.email))],
                changes: json!({"email_verified": {"from": false, "to": true}}),
                data: serde_json::to_value(super::users::present(&verified)).unwrap_or_default(),
            },
        )
        .await?;
    }
    let existing: Vec<Membership> =
        record::find_in(tx.conn(), env, "user_id", std::slice::from_ref(&user.id)).await?;
    let membership = match existing.into_iter().find(|m| m.organization_id == invitation.organization_id) {
        Some(membership) => membership,
        None => {
            let membership = Membership {
                id: new_id(),
                environment_id: env.to_owned(),
                user_id: user.id.clone(),
                organization_id: invitation.organization_id.clone(),
                metadata: JsonText(json!({})),
                inserted_at: now,
                updated_at: now,
            };
            record::insert(tx.conn(), &membership).await?;
            tx.record(
                &origin,
                &Event {
                    action: "membership.created",
                    targets: vec![
                        target(super::memberships::KIND, &membership.id, None),
                        target("user", &user.id, Some(&user.email)),
                        target("organization", &invitation.organization_id, None),
                    ],
                    changes: json!({"invitation_id": {"from": null, "to": invitation.id}}),
                    data: serde_json::to_value(super::memberships::present(&membership)).unwrap_or_default(),
                },
            )
            .await?;
            membership
        }
    };
    // Roles deleted since the invitation was sent are left out; roles the
    // member has already are kept as they are.
    let roles: Vec<Role> = record::find_in(tx.conn(), env, "id", &invitation.role_ids.0).await?;
    let held: Vec<MembershipRole> =
        record::find_in(tx.conn(), env, "membership_id", std::slice::from_ref(&membership.id)).await?;
    for role in roles.iter().filter(|r| !held.iter().any(|h| h.role_id == r.id)) {
        let link = MembershipRole {
            id: new_id(),
            environment_id: env.to_owned(),
            membership_id: membership.id.clone(),
            role_id: role.id.clone(),
            inserted_at: now,
            updated_at: now,
        };
        record::insert(tx.conn(), &link).await?;
        tx.record(
            &origin,
            &Event {
                action: "membership_role.created",
                targets: vec![
                    target(super::memberships::KIND, &membership.id, None),
                    target("role", &role.id, Some(&role.name)),
                ],
                changes: json!({}),
                data: serde_json::to_value(super::links::present(&link)).unwrap_or_default(),
            },
        )
        .await?;
    }
    Ok(membership)
}

/// The context an answer from the hosted page or the public endpoint runs
/// in: the answering user, or nobody yet (a decline by link).
pub fn answer_ctx(env: &Arc<EnvState>, user: Option<&User>, info: &crate::oauth::RequestInfo) -> Ctx {
    match user {
        Some(user) => crate::signin::user_ctx(env, user, info),
        None => Ctx {
            env: env.clone(),
            actor: portcullis_store::model::Actor { kind: "anonymous", id: None, name: None },
            authority: crate::Authority::None,
            ip_address: info.ip_address.clone(),
            user_agent: info.user_agent.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invitation(status: &str, expires_at: i64) -> Invitation {
        Invitation {
            id: "i".into(),
            environment_id: "e".into(),
            organization_id: "o".into(),
            email: "ann@example.com".into(),
            role_ids: JsonText(vec![]),
            status: status.into(),
            token_hash: String::new(),
            expires_at,
            inviter_type: None,
            inviter_id: None,
            inviter_name: None,
            user_id: None,
            responded_at: None,
            inserted_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn a_pending_invitation_past_its_time_reads_as_expired() {
        assert_eq!(status(&invitation("pending", 10), 9), "pending");
        assert_eq!(status(&invitation("pending", 10), 10), "expired");
        assert_eq!(status(&invitation("accepted", 10), 20), "accepted");
        assert_eq!(status(&invitation("revoked", 10), 20), "revoked");
        assert!(closed(&invitation("pending", 10), 20).to_string().contains("expired"));
        assert!(closed(&invitation("accepted", 10), 5).to_string().contains("already been accepted"));
    }
}
