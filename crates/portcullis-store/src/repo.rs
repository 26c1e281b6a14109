//! Queries that the generic CRUD in [`crate::record`] does not cover.

use sqlx::{AnyConnection, Row};

use crate::sql::Sql;

use crate::model::Environment;
use crate::record::{Record, select_columns};
use crate::{Result, classify};

/// Every row of an environment (for small configuration tables).
pub async fn all<R: Record>(conn: &mut AnyConnection, environment_id: &str) -> Result<Vec<R>> {
    let mut sql =
        Sql::new(format!("SELECT {} FROM {} WHERE environment_id = ", select_columns::<R>(), R::TABLE));
    sql.bind(environment_id.to_owned()).push(" ORDER BY id");
    sql.fetch_all(conn).await
}

/// Counts rows of `table` whose `column` equals `value`.
pub async fn count_where(
    conn: &mut AnyConnection,
    table: &'static str,
    column: &'static str,
    value: &str,
) -> Result<i64> {
    let mut sql = Sql::new(format!("SELECT COUNT(*) AS n FROM {table} WHERE {column} = "));
    sql.bind(value.to_owned());
    let rows = sql.fetch_rows(conn).await?;
    rows.first().map_or(Ok(0), |row| row.try_get::<i64, _>("n").map_err(classify))
}

pub mod environments {
    use super::*;

    const COLUMNS: &str = "id, handle, name, session_ttl, registration_enabled, default_audience, inserted_at, updated_at, \
         mass_change_threshold, require_email_verification, invitation_ttl";

    /// Holds the lock of an environment's row until the transaction ends:
    /// serialises changes that read, then rewrite, environment-wide state
    /// (settings, the primary signing key) on PostgreSQL. SQLite serialises
    /// every write already. Call it first in the transaction.
    pub async fn lock(conn: &mut AnyConnection, id: &str) -> Result<()> {
        sqlx::query("UPDATE environments SET updated_at = updated_at WHERE id = $1")
            .bind(id.to_owned())
            .execute(conn)
            .await
            .map_err(classify)?;
        Ok(())
    }

    pub async fn by_handle(conn: &mut AnyConnection, handle: &str) -> Result<Option<Environment>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM environments WHERE handle = $1")))
            .bind(handle.to_owned())
            .fetch_optional(conn)
            .await
            .map_err(classify)
    }

    pub async fn by_id(conn: &mut AnyConnection, id: &str) -> Result<Option<Environment>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM environments WHERE id = $1")))
            .bind(id.to_owned())
            .fetch_optional(conn)
            .await
            .map_err(classify)
    }

    pub async fn all(conn: &mut AnyConnection) -> Result<Vec<Environment>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM environments ORDER BY handle")))
            .fetch_all(conn)
            .await
            .map_err(classify)
    }

    pub async fn insert(conn: &mut AnyConnection, env: &Environment) -> Result<()> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO environments ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        )))
        .bind(env.id.clone())
        .bind(env.handle.clone())
        .bind(env.name.clone())
        .bind(env.session_ttl)
        .bind(env.registration_enabled)
        .bind(env.default_audience.clone())
        .bind(env.inserted_at)
        .bind(env.updated_at)
        .bind(env.mass_change_threshold)
        .bind(env.require_email_verification)
        .bind(env.invitation_ttl)
        .execute(conn)
        .await
        .map_err(classify)?;
        Ok(())
    }

    pub async fn update(conn: &mut AnyConnection, env: &Environment) -> Result<()> {
        sqlx::query(
            "UPDATE environments SET name = $1, session_ttl = $2, registration_enabled = $3, \
             default_audience = $4, updated_at = $5, mass_change_threshold = $6, \
             require_email_verification = $7, invitation_ttl = $8 WHERE id = $9",
        )
        .bind(env.name.clone())
        .bind(env.session_ttl)
        .bind(env.registration_enabled)
        .bind(env.default_audience.clone())
        .bind(env.updated_at)
        .bind(env.mass_change_threshold)
        .bind(env.require_email_verification)
        .bind(env.invitation_ttl)
        .bind(env.id.clone())
        .execute(conn)
        .await
        .map_err(classify)?;
        Ok(())
    }
}

pub mod signing_keys {
    use super::*;
    use crate::model::SigningKey;

    pub async fn active(conn: &mut AnyConnection, environment_id: &str) -> Result<Vec<SigningKey>> {
        let mut sql = Sql::new(format!(
            "SELECT {} FROM signing_keys WHERE status = 'active' AND environment_id = ",
            select_columns::<SigningKey>()
        ));
        sql.bind(environment_id.to_owned()).push(" ORDER BY inserted_at DESC, id DESC");
        sql.fetch_all(conn).await
    }

    /// Clears the primary flag on every key of the environment.
    pub async fn clear_primary(conn: &mut AnyConnection, environment_id: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE signing_keys SET is_primary = $1, updated_at = $2 WHERE environment_id = $3 AND is_primary = $4")
            .bind(false)
            .bind(now)
            .bind(environment_id.to_owned())
            .bind(true)
            .execute(conn)
            .await
            .map_err(classify)?;
        Ok(())
    }
}

pub mod tokens {
    use super::*;

    pub async fn revoked_jtis(conn: &mut AnyConnection, environment_id: &str) -> Result<Vec<String>> {
        let rows =
            sqlx::query("SELECT jti FROM revoked_tokens WHERE environment_id = $1 AND expires_at > $2")
                .bind(environment_id.to_owned())
                .bind(crate::now_micros())
                .fetch_all(conn)
                .await
                .map_err(classify)?;
        rows.iter().map(|r| r.try_get::<String, _>("jti").map_err(classify)).collect()
    }

    /// Records a revoked JWT `jti`; revoking twice is not an error.
    pub async fn revoke_jti(
        conn: &mut AnyConnection,
        environment_id: &str,
        jti: &str,
        expires_at: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO revoked_tokens (jti, environment_id, expires_at, revoked_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti.to_owned())
        .bind(environment_id.to_owned())
        .bind(expires_at)
        .bind(crate::now_micros())
        .execute(conn)
        .await
        .map_err(classify)?;
        Ok(())
    }

    pub async fn revoke_opaque(
        conn: &mut AnyConnection,
        environment_id: &str,
        token_hash: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE access_tokens SET revoked_at = $1 WHERE token_hash = $2 AND environment_id = $3 AND revoked_at IS NULL",
        )
        .bind(crate::now_micros())
        .bind(token_hash.to_owned())
        .bind(environment_id.to_owned())
        .execute(conn)
        .await
        .map_err(classify)?;
        Ok(done.rows_affected() > 0)
    }
}

pub mod rbac {
    use super::*;

    /// Number of users holding, and permissions granted by, a role.
    pub async fn role_counts(conn: &mut AnyConnection, role_id: &str) -> Result<(i64, i64)> {
        let users = count_where(conn, "user_roles", "role_id", role_id).await?;
        let permissions = count_where(conn, "role_permissions", "role_id", role_id).await?;
        Ok((users, permissions))
    }

    /// Ids on the far side of a join table, grouped by the near side, for
    /// to-many relationship linkage: e.g. role ids per user id.
    pub async fn linked_ids(
        conn: &mut AnyConnection,
        table: &'static str,
        near: &'static str,
        far: &'static str,
        near_ids: &[String],
    ) -> Result<Vec<(String, String)>> {
        if near_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = Sql::new(format!("SELECT {near} AS near, {far} AS far FROM {table} WHERE {near} IN ("));
        let ids: Vec<crate::SqlValue> = near_ids.iter().map(crate::SqlValue::from).collect();
        sql.bind_list(&ids).push(&format!(") ORDER BY {near}, inserted_at, id"));
        let rows = sql.fetch_rows(conn).await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>("near").map_err(classify)?,
                    r.try_get::<String, _>("far").map_err(classify)?,
                ))
            })
            .collect()
    }
}

/// Sign-in state: sessions, authorization codes, refresh-token families.
pub mod signin {
    use super::*;

    /// See [`organization_grant`].
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct OrganizationGrant {
        pub id: String,
        pub name: String,
        pub slug: String,
        pub roles: Vec<String>,
        pub permissions: Vec<String>,
    }

    /// Marks a single-use row (`authorization_codes`, `refresh_tokens`,
    /// `user_tokens`) used; `false` if it was used already, so of two
    /// concurrent redemptions exactly one wins.
    pub async fn claim(
        conn: &mut AnyConnection,
        table: &'static str,
        environment_id: &str,
        id: &str,
        now: i64,
    ) -> Result<bool> {
        let mut sql = Sql::new(format!("UPDATE {table} SET used_at = "));
        sql.bind(now).push(" WHERE id = ").bind(id.to_owned());
        sql.push(" AND environment_id = ").bind(environment_id.to_owned()).push(" AND used_at IS NULL");
        Ok(sql.execute(conn).await? == 1)
    }

    /// [`claim`] for many rows of one environment in one statement: the ids
    /// that were unused and are now marked used.
    pub async fn claim_many(
        conn: &mut AnyConnection,
        table: &'static str,
        environment_id: &str,
        ids: &[String],
        now: i64,
    ) -> Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = Sql::new(format!("UPDATE {table} SET used_at = "));
        sql.bind(now).push(" WHERE environment_id = ").bind(environment_id.to_owned());
        sql.push(" AND used_at IS NULL AND id IN (");
        let ids: Vec<crate::SqlValue> = ids.iter().map(crate::SqlValue::from).collect();
        sql.bind_list(&ids).push(") RETURNING id AS name");
        names(sql.fetch_rows(conn).await?)
    }

    /// Unexpired access-token `jti`s (with expiry) recorded on the rows of
    /// `table` (refresh tokens, redeemed codes) matching `column = value`.
    pub async fn access_jtis(
        conn: &mut AnyConnection,
        table: &'static str,
        environment_id: &str,
        column: &'static str,
        value: &str,
        now: i64,
    ) -> Result<Vec<(String, i64)>> {
        let mut sql =
            Sql::new(format!("SELECT access_jti, access_expires_at FROM {table} WHERE environment_id = "));
        sql.bind(environment_id.to_owned());
        sql.push(&format!(" AND {column} = ")).bind(value.to_owned());
        sql.push(" AND access_jti IS NOT NULL AND access_expires_at > ").bind(now);
        let rows = sql.fetch_rows(conn).await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>("access_jti").map_err(classify)?,
                    r.try_get::<i64, _>("access_expires_at").map_err(classify)?,
                ))
            })
            .collect()
    }

    /// Revokes the live refresh tokens matching `column = value` (a family,
    /// a session, a user) and returns the access-token `jti`s they issued.
    pub async fn revoke_refresh_tokens(
        conn: &mut AnyConnection,
        environment_id: &str,
        column: &'static str,
        value: &str,
        now: i64,
    ) -> Result<Vec<(String, i64)>> {
        let jtis = access_jtis(conn, "refresh_tokens", environment_id, column, value, now).await?;
        let mut sql = Sql::new("UPDATE refresh_tokens SET revoked_at = ");
        sql.bind(now).push(" WHERE environment_id = ").bind(environment_id.to_owned());
        sql.push(&format!(" AND {column} = ")).bind(value.to_owned()).push(" AND revoked_at IS NULL");
        sql.execute(conn).await?;
        Ok(jtis)
    }

    /// Revokes every live session of a user; returns how many there were.
    pub async fn revoke_user_sessions(
        conn: &mut AnyConnection,
        environment_id: &str,
        user_id: &str,
        now: i64,
    ) -> Result<u64> {
        let mut sql = Sql::new("UPDATE sessions SET revoked_at = ");
        sql.bind(now).push(", updated_at = ").bind(now);
        sql.push(" WHERE environment_id = ").bind(environment_id.to_owned());
        sql.push(" AND user_id = ").bind(user_id.to_owned()).push(" AND revoked_at IS NULL");
        sql.execute(conn).await
    }

    /// Deletes a user's unused emailed links (all of them, or one purpose's):
    /// a new link, a new password or a new email address voids the old ones.
    pub async fn drop_user_tokens(
        conn: &mut AnyConnection,
        environment_id: &str,
        user_id: &str,
        purpose: Option<&str>,
    ) -> Result<u64> {
        let mut sql = Sql::new("DELETE FROM user_tokens WHERE environment_id = ");
        sql.bind(environment_id.to_owned()).push(" AND user_id = ").bind(user_id.to_owned());
        if let Some(purpose) = purpose {
            sql.push(" AND purpose = ").bind(purpose.to_owned());
        }
        sql.push(" AND used_at IS NULL");
        sql.execute(conn).await
    }

    /// Names of the user's roles, and of the permissions those roles grant.
    pub async fn roles_and_permissions(
        conn: &mut AnyConnection,
        environment_id: &str,
        user_id: &str,
    ) -> Result<(Vec<String>, Vec<String>)> {
        // One query for both (token issuance runs it on every grant).
        let mut sql = Sql::new(
            "SELECT 'r' AS kind, r.name AS name FROM user_roles ur JOIN roles r ON r.id = ur.role_id \
             WHERE ur.environment_id = ",
        );
        sql.bind(environment_id.to_owned()).push(" AND ur.user_id = ").bind(user_id.to_owned());
        sql.push(
            " UNION SELECT 'p' AS kind, p.name AS name FROM user_roles ur \
             JOIN role_permissions rp ON rp.role_id = ur.role_id \
             JOIN permissions p ON p.id = rp.permission_id WHERE ur.environment_id = ",
        );
        sql.bind(environment_id.to_owned()).push(" AND ur.user_id = ").bind(user_id.to_owned());
        sql.push(" ORDER BY kind, name");
        let (mut roles, mut permissions) = (Vec::new(), Vec::new());
        for row in sql.fetch_rows(conn).await? {
            let name: String = row.try_get("name").map_err(classify)?;
            match row.try_get::<String, _>("kind").map_err(classify)?.as_str() {
                "r" => roles.push(name),
                _ => permissions.push(name),
            }
        }
        Ok((roles, permissions))
    }

    /// What signing in to `organization_id` adds to a user's tokens: the
    /// organization's name and slug and the membership's role and
    /// permission names; `None` unless the user is a member. One query (it
    /// runs on every organization-scoped grant).
    pub async fn organization_grant(
        conn: &mut AnyConnection,
        environment_id: &str,
        user_id: &str,
        organization_id: &str,
    ) -> Result<Option<OrganizationGrant>> {
        let member = " FROM memberships m JOIN organizations o ON o.id = m.organization_id";
        let roles = " JOIN membership_roles mr ON mr.membership_id = m.id";
        let mut sql = Sql::new(format!("SELECT 'n' AS kind, o.name AS name{member}"));
        let scoped = |sql: &mut Sql, tail: &str| {
            sql.push(" WHERE m.environment_id = ").bind(environment_id.to_owned());
            sql.push(" AND m.user_id = ").bind(user_id.to_owned());
            sql.push(" AND m.organization_id = ").bind(organization_id.to_owned());
            sql.push(tail);
        };
        scoped(&mut sql, &format!(" UNION SELECT 's' AS kind, o.slug AS name{member}"));
        scoped(
            &mut sql,
            &format!(
                " UNION SELECT 'r' AS kind, r.name AS name{member}{roles} JOIN roles r ON r.id = mr.role_id"
            ),
        );
        scoped(
            &mut sql,
            &format!(
                " UNION SELECT 'p' AS kind, p.name AS name{member}{roles} \
                 JOIN role_permissions rp ON rp.role_id = mr.role_id JOIN permissions p ON p.id = rp.permission_id"
            ),
        );
        scoped(&mut sql, " ORDER BY kind, name");
        let mut grant = OrganizationGrant { id: organization_id.to_owned(), ..OrganizationGrant::default() };
        let mut member_found = false;
        for row in sql.fetch_rows(conn).await? {
            let name: String = row.try_get("name").map_err(classify)?;
            match row.try_get::<String, _>("kind").map_err(classify)?.as_str() {
                "n" => {
                    member_found = true;
                    grant.name = name;
                }
                "s" => grant.slug = name,
                "r" => grant.roles.push(name),
                _ => grant.permissions.push(name),
            }
        }
        Ok(member_found.then_some(grant))
    }

    fn names(rows: Vec<sqlx::any::AnyRow>) -> Result<Vec<String>> {
        rows.iter().map(|r| r.try_get::<String, _>("name").map_err(classify)).collect()
    }

    /// Ids of this environment's blocked users (a small set, cached).
    pub async fn blocked_users(conn: &mut AnyConnection, environment_id: &str) -> Result<Vec<String>> {
        let mut sql = Sql::new("SELECT id AS name FROM users WHERE blocked = ");
        sql.bind(true).push(" AND environment_id = ").bind(environment_id.to_owned());
        names(sql.fetch_rows(conn).await?)
    }
}

/// The lifecycle hub: plan decisions, step leases and the outbox feed.
pub mod provisioning {
    use super::*;
    use crate::model::{OutboxEvent, ProvisioningStep};

    /// The event types the lifecycle hub's relay reads from the outbox (they
    /// can change who should have which account); until it has, they are
    /// kept however old.
    pub const RELAYED_EVENT_TYPES: [&str; 11] = [
        "user.created",
        "user.registered",
        "user.updated",
        "user.deleted",
        "user_role.created",
        "user_role.deleted",
        "role.deleted",
        "app.created",
        "app.updated",
        "app.deleted",
        "environment.updated",
    ];

    /// Moves a draft plan to `status` (`approved` or `rejected`); `false` if
    /// it was no longer a draft, so of two concurrent decisions one wins.
    pub async fn decide(
        conn: &mut AnyConnection,
        environment_id: &str,
        plan_id: &str,
        status: &str,
        by: &str,
        now: i64,
    ) -> Result<bool> {
        let mut sql = Sql::new("UPDATE provisioning_plans SET status = ");
        sql.bind(status.to_owned()).push(", decided_by = ").bind(by.to_owned());
        sql.push(", decided_at = ").bind(now).push(", updated_at = ").bind(now);
        sql.push(" WHERE id = ").bind(plan_id.to_owned());
        sql.push(" AND environment_id = ").bind(environment_id.to_owned()).push(" AND status = 'draft'");
        Ok(sql.execute(conn).await? == 1)
    }

    /// Cancels the steps of a rejected plan that have not run.
    pub async fn cancel_steps(
        conn: &mut AnyConnection,
        environment_id: &str,
        plan_id: &str,
        now: i64,
    ) -> Result<u64> {
        let mut sql = Sql::new("UPDATE provisioning_steps SET status = 'cancelled', completed_at = ");
        sql.bind(now).push(", updated_at = ").bind(now).push(" WHERE plan_id = ").bind(plan_id.to_owned());
        sql.push(" AND environment_id = ").bind(environment_id.to_owned()).push(" AND status = 'pending'");
        sql.execute(conn).await
    }

    /// Unpublished outbox events of the given types, oldest first, across
    /// environments (the hub's relay is a system process).
    pub async fn pending_events(
        conn: &mut AnyConnection,
        types: &[&str],
        limit: i64,
    ) -> Result<Vec<OutboxEvent>> {
        let mut sql = Sql::new(format!(
            "SELECT {} FROM outbox_events WHERE published_at IS NULL AND event_type IN (",
            select_columns::<OutboxEvent>()
        ));
        let types: Vec<crate::SqlValue> = types.iter().map(|t| crate::SqlValue::from(*t)).collect();
        sql.bind_list(&types).push(") ORDER BY id LIMIT ").bind(limit);
        sql.fetch_all(conn).await
    }

    pub async fn mark_published(conn: &mut AnyConnection, ids: &[String], now: i64) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut sql = Sql::new("UPDATE outbox_events SET published_at = ");
        sql.bind(now).push(" WHERE published_at IS NULL AND id IN (");
        let ids: Vec<crate::SqlValue> = ids.iter().map(crate::SqlValue::from).collect();
        sql.bind_list(&ids).push(")");
        sql.execute(conn).await
    }

    /// Steps a worker may take now: pending and due, or running under a
    /// lease that expired (its worker died), in plans that may be applied.
    pub async fn due_steps(conn: &mut AnyConnection, now: i64, limit: i64) -> Result<Vec<ProvisioningStep>> {
        let columns =
            ProvisioningStep::COLUMNS.iter().map(|c| format!("s.{c}")).collect::<Vec<_>>().join(", ");
        let mut sql = Sql::new(format!(
            "SELECT {columns} FROM provisioning_steps s JOIN provisioning_plans p ON p.id = s.plan_id \
             WHERE p.status IN ('approved', 'applying') AND ((s.status = 'pending' AND s.next_attempt_at <= "
        ));
        sql.bind(now).push(") OR (s.status = 'running' AND s.lease_expires_at < ").bind(now);
        sql.push(")) ORDER BY s.plan_id, s.position, s.id LIMIT ").bind(limit);
        sql.fetch_all(conn).await
    }

    /// Takes the lease of a due step; `false` if another worker has it.
    pub async fn lease(
        conn: &mut AnyConnection,
        environment_id: &str,
        step_id: &str,
        owner: &str,
        until: i64,
        now: i64,
    ) -> Result<bool> {
        let mut sql = Sql::new("UPDATE provisioning_steps SET status = 'running', lease_owner = ");
        sql.bind(owner.to_owned()).push(", lease_expires_at = ").bind(until);
        sql.push(", attempts = attempts + 1, updated_at = ").bind(now);
        sql.push(" WHERE id = ").bind(step_id.to_owned()).push(" AND environment_id = ");
        sql.bind(environment_id.to_owned())
            .push(" AND (status = 'pending' OR (status = 'running' AND lease_expires_at < ");
        sql.bind(now).push("))");
        Ok(sql.execute(conn).await? == 1)
    }

    /// Marks approved plans as being applied.
    pub async fn start_plans(
        conn: &mut AnyConnection,
        environment_id: &str,
        plan_ids: &[String],
        now: i64,
    ) -> Result<u64> {
        if plan_ids.is_empty() {
            return Ok(0);
        }
        let mut sql = Sql::new("UPDATE provisioning_plans SET status = 'applying', updated_at = ");
        sql.bind(now).push(" WHERE environment_id = ").bind(environment_id.to_owned());
        sql.push(" AND status = 'approved' AND id IN (");
        let ids: Vec<crate::SqlValue> = plan_ids.iter().map(crate::SqlValue::from).collect();
        sql.bind_list(&ids).push(")");
        sql.execute(conn).await
    }

    /// The most ids [`touch_app_accounts_except`] takes (bind parameters
    /// are limited); beyond it, name the seen accounts to [`touch_accounts`].
    pub const TOUCH_EXCEPT_MAX: usize = 10_000;

    /// Records that a complete roster read saw all of an app's accounts
    /// that existed before `inserted_before` but `except`, in one statement.
    pub async fn touch_app_accounts_except(
        conn: &mut AnyConnection,
        environment_id: &str,
        app_id: &str,
        except: &[String],
        inserted_before: i64,
        now: i64,
    ) -> Result<u64> {
        let mut sql = Sql::new("UPDATE app_accounts SET last_seen_at = ");
        sql.bind(now).push(" WHERE environment_id = ").bind(environment_id.to_owned());
        sql.push(" AND app_id = ").bind(app_id.to_owned());
        sql.push(" AND inserted_at < ").bind(inserted_before);
        if !except.is_empty() {
            sql.push(" AND id NOT IN (");
            let ids: Vec<crate::SqlValue> = except.iter().map(crate::SqlValue::from).collect();
            sql.bind_list(&ids).push(")");
        }
        sql.execute(conn).await
    }

    /// Records that a complete roster read saw these accounts.
    pub async fn touch_accounts(
        conn: &mut AnyConnection,
        environment_id: &str,
        ids: &[String],
        now: i64,
    ) -> Result<()> {
        for chunk in ids.chunks(500) {
            let mut sql = Sql::new("UPDATE app_accounts SET last_seen_at = ");
            sql.bind(now)
                .push(" WHERE environment_id = ")
                .bind(environment_id.to_owned())
                .push(" AND id IN (");
            let ids: Vec<crate::SqlValue> = chunk.iter().map(crate::SqlValue::from).collect();
            sql.bind_list(&ids).push(")");
            sql.execute(conn).await?;
        }
        Ok(())
    }

    /// Fixes a step's request on its first attempt; `false` if `owner` no
    /// longer holds the step's lease (another worker took it over).
    pub async fn set_request(
        conn: &mut AnyConnection,
        environment_id: &str,
        step_id: &str,
        owner: &str,
        request: &str,
    ) -> Result<bool> {
        let mut sql = Sql::new("UPDATE provisioning_steps SET request = ");
        sql.bind(request.to_owned()).push(" WHERE id = ").bind(step_id.to_owned());
        sql.push(" AND environment_id = ").bind(environment_id.to_owned());
        sql.push(" AND status = 'running' AND lease_owner = ").bind(owner.to_owned());
        Ok(sql.execute(conn).await? == 1)
    }

    /// Those of `step_ids` whose lease `owner` still holds: a worker records
    /// an outcome only for these, so a slow worker whose lease expired
    /// cannot overwrite the outcome of the worker that took the step over.
    pub async fn leases_held(
        conn: &mut AnyConnection,
        environment_id: &str,
        owner: &str,
        step_ids: &[String],
    ) -> Result<std::collections::HashSet<String>> {
        let mut held = std::collections::HashSet::new();
        for chunk in step_ids.chunks(500) {
            let mut sql = Sql::new("SELECT id FROM provisioning_steps WHERE environment_id = ");
            sql.bind(environment_id.to_owned()).push(" AND status = 'running' AND lease_owner = ");
            sql.bind(owner.to_owned()).push(" AND id IN (");
            let ids: Vec<crate::SqlValue> = chunk.iter().map(crate::SqlValue::from).collect();
            sql.bind_list(&ids).push(")");
            for row in sql.fetch_rows(conn).await? {
                held.insert(row.try_get::<String, _>("id").map_err(classify)?);
            }
        }
        Ok(held)
    }

    /// `(user_id, action)` of an app's unfinished steps for users.
    pub async fn open_steps(
        conn: &mut AnyConnection,
        environment_id: &str,
        app_id: &str,
    ) -> Result<Vec<(String, String)>> {
        let mut sql = Sql::new("SELECT user_id, action FROM provisioning_steps WHERE environment_id = ");
        sql.bind(environment_id.to_owned()).push(" AND app_id = ").bind(app_id.to_owned());
        sql.push(" AND status IN ('pending', 'running', 'waiting') AND user_id IS NOT NULL");
        let rows = sql.fetch_rows(conn).await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>("user_id").map_err(classify)?,
                    r.try_get::<String, _>("action").map_err(classify)?,
                ))
            })
            .collect()
    }

    /// Whether an app's webhook event was already processed.
    pub async fn webhook_seen(
        conn: &mut AnyConnection,
        environment_id: &str,
        app_id: &str,
        event_id: &str,
    ) -> Result<bool> {
        let mut sql = Sql::new("SELECT event_id FROM app_webhook_events WHERE environment_id = ");
        sql.bind(environment_id.to_owned()).push(" AND app_id = ").bind(app_id.to_owned());
        sql.push(" AND event_id = ").bind(event_id.to_owned());
        Ok(!sql.fetch_rows(conn).await?.is_empty())
    }

    /// Records a processed webhook event; `false` if it already was (a
    /// concurrent redelivery won), so the caller changes nothing.
    pub async fn record_webhook(
        conn: &mut AnyConnection,
        environment_id: &str,
        app_id: &str,
        event_id: &str,
        event_type: &str,
        now: i64,
    ) -> Result<bool> {
        let mut sql = Sql::new(
            "INSERT INTO app_webhook_events (app_id, event_id, environment_id, event_type, received_at) VALUES (",
        );
        sql.bind(app_id.to_owned()).push(", ").bind(event_id.to_owned()).push(", ");
        sql.bind(environment_id.to_owned()).push(", ").bind(event_type.to_owned()).push(", ").bind(now);
        sql.push(") ON CONFLICT (app_id, event_id) DO NOTHING");
        Ok(sql.execute(conn).await? == 1)
    }

    /// Forgets an app's webhook events received before `before`.
    pub async fn prune_webhooks(
        conn: &mut AnyConnection,
        environment_id: &str,
        app_id: &str,
        before: i64,
    ) -> Result<u64> {
        let mut sql = Sql::new("DELETE FROM app_webhook_events WHERE environment_id = ");
        sql.bind(environment_id.to_owned()).push(" AND app_id = ").bind(app_id.to_owned());
        sql.push(" AND received_at < ").bind(before);
        sql.execute(conn).await
    }

    /// Counts a plan's steps by status.
    pub async fn step_counts(
        conn: &mut AnyConnection,
        environment_id: &str,
        plan_id: &str,
    ) -> Result<Vec<(String, i64)>> {
        let mut sql =
            Sql::new("SELECT status, COUNT(*) AS n FROM provisioning_steps WHERE environment_id = ");
        sql.bind(environment_id.to_owned()).push(" AND plan_id = ").bind(plan_id.to_owned());
        sql.push(" GROUP BY status");
        let rows = sql.fetch_rows(conn).await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>("status").map_err(classify)?,
                    r.try_get::<i64, _>("n").map_err(classify)?,
                ))
            })
            .collect()
    }
}

/// The mail queue (see [`crate::WriteTx::queue_mail`]).
pub mod mail_queue {
    use super::*;
    use crate::model::QueuedMail;

    /// Up to `limit` messages due by `now`, of every environment, oldest first.
    pub async fn due(conn: &mut AnyConnection, now: i64, limit: i64) -> Result<Vec<QueuedMail>> {
        let mut sql =
            Sql::new(format!("SELECT {} FROM queued_mails WHERE due_at <= ", select_columns::<QueuedMail>()));
        sql.bind(now).push(" ORDER BY due_at, id LIMIT ").bind(limit);
        sql.fetch_all(conn).await
    }

    /// Takes `mail` for one attempt, unless another worker took it since it
    /// was read: it is not due again until `lease_until`.
    pub async fn claim(conn: &mut AnyConnection, mail: &QueuedMail, lease_until: i64) -> Result<bool> {
        let mut sql = Sql::new("UPDATE queued_mails SET attempts = attempts + 1, due_at = ");
        sql.bind(lease_until).push(" WHERE id = ").bind(mail.id.clone());
        sql.push(" AND due_at = ").bind(mail.due_at);
        Ok(sql.execute(conn).await? == 1)
    }

    /// Schedules the next attempt of a message that failed.
    pub async fn retry_at(conn: &mut AnyConnection, id: &str, due_at: i64) -> Result<()> {
        let mut sql = Sql::new("UPDATE queued_mails SET due_at = ");
        sql.bind(due_at).push(" WHERE id = ").bind(id.to_owned());
        sql.execute(conn).await?;
        Ok(())
    }

    /// Removes a message that was sent (or given up on).
    pub async fn remove(conn: &mut AnyConnection, id: &str) -> Result<()> {
        let mut sql = Sql::new("DELETE FROM queued_mails WHERE id = ");
        sql.bind(id.to_owned());
        sql.execute(conn).await?;
        Ok(())
    }
}

pub mod invitations {
    use super::*;

    /// Marks the pending invitations of `email` to `organization_id` whose
    /// time is up as `expired`, so a new one may be sent.
    pub async fn expire_pending(
        conn: &mut AnyConnection,
        environment_id: &str,
        organization_id: &str,
        email: &str,
        now: i64,
    ) -> Result<u64> {
        let mut sql = Sql::new("UPDATE invitations SET status = 'expired', updated_at = ");
        sql.bind(now).push(" WHERE environment_id = ").bind(environment_id.to_owned());
        sql.push(" AND organization_id = ").bind(organization_id.to_owned());
        sql.push(" AND email = ").bind(email.to_owned());
        sql.push(" AND status = 'pending' AND expires_at <= ").bind(now);
        sql.execute(conn).await
    }

    /// Moves a pending, unexpired invitation to `status`: false when it is
    /// no longer pending (another answer won) or has expired.
    pub async fn respond(
        conn: &mut AnyConnection,
        environment_id: &str,
        id: &str,
        status: &'static str,
        user_id: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        let mut sql = Sql::new("UPDATE invitations SET status = ");
        sql.bind(status.to_owned()).push(", user_id = ").bind(user_id.map(str::to_owned));
        sql.push(", responded_at = ").bind(now).push(", updated_at = ").bind(now);
        sql.push(" WHERE environment_id = ").bind(environment_id.to_owned());
        sql.push(" AND id = ").bind(id.to_owned());
        sql.push(" AND status = 'pending' AND expires_at > ").bind(now);
        Ok(sql.execute(conn).await? == 1)
    }
}

/// Webhook deliveries: written with the change that causes them, claimed
/// under a lease by the delivery worker, settled by its outcome.
pub mod webhooks {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::{OutboxEvent, WebhookDelivery};
    use crate::record;
    use crate::types::JsonText;

    /// Attempts per delivery: the first, then up to five retries.
    pub const ATTEMPTS: i64 = 6;

    /// Whether a webhook's `events` take `event_type`: the type itself,
    /// its family's wildcard (`user.*`), or `*`.
    pub fn subscribes(patterns: &[String], event_type: &str) -> bool {
        patterns.iter().any(|pattern| {
            pattern == event_type
                || pattern == "*"
                || pattern
                    .strip_suffix('*')
                    .is_some_and(|prefix| prefix.ends_with('.') && event_type.starts_with(prefix))
        })
    }

    /// Writes a pending delivery of each event to every active webhook of
    /// its environment that subscribes to it; returns how many. One indexed
    /// read per environment: events nobody subscribes to cost nothing more.
    pub async fn fan_out(conn: &mut AnyConnection, events: &[&OutboxEvent]) -> Result<usize> {
        let mut by_environment: BTreeMap<&str, Vec<&OutboxEvent>> = BTreeMap::new();
        for event in events {
            by_environment.entry(event.environment_id.as_str()).or_default().push(event);
        }
        let mut deliveries = Vec::new();
        for (environment_id, events) in by_environment {
            let mut sql = Sql::new("SELECT id, events FROM webhooks WHERE environment_id = ");
            sql.bind(environment_id.to_owned()).push(" AND active");
            let webhooks = sql.fetch_rows(conn).await?;
            for row in &webhooks {
                let id: String = row.try_get("id").map_err(classify)?;
                let patterns: String = row.try_get("events").map_err(classify)?;
                let patterns: JsonText<Vec<String>> =
                    JsonText::try_from(patterns).map_err(|e| crate::StoreError::Corrupt(e.to_string()))?;
                for event in events.iter().filter(|event| subscribes(&patterns.0, &event.event_type)) {
                    deliveries.push(pending(
                        environment_id,
                        &id,
                        &event.id,
                        &event.event_type,
                        event.created_at,
                        event.payload.0.to_string(),
                    ));
                }
            }
        }
        record::insert_many(conn, &deliveries).await?;
        Ok(deliveries.len())
    }

    /// A delivery due now, not yet attempted.
    pub fn pending(
        environment_id: &str,
        webhook_id: &str,
        message_id: &str,
        event_type: &str,
        now: i64,
        payload: String,
    ) -> WebhookDelivery {
        WebhookDelivery {
            id: crate::new_id(),
            environment_id: environment_id.to_owned(),
            webhook_id: webhook_id.to_owned(),
            message_id: message_id.to_owned(),
            event_type: event_type.to_owned(),
            payload,
            status: "pending".into(),
            attempts: 0,
            attempts_left: ATTEMPTS,
            next_attempt_at: now,
            lease_owner: None,
            response_status: None,
            response_excerpt: None,
            latency_ms: None,
            last_error: None,
            last_attempt_at: None,
            delivered_at: None,
            inserted_at: now,
            updated_at: now,
        }
    }

    /// Webhooks that have pending deliveries (due or not), in id order
    /// after `after`, at most `limit`: a loose scan of the pending index,
    /// one seek per webhook however long its backlog.
    pub async fn pending_webhooks(conn: &mut AnyConnection, after: &str, limit: i64) -> Result<Vec<String>> {
        let mut sql = Sql::new(
            "WITH RECURSIVE hooks(id) AS (SELECT (SELECT MIN(webhook_id) FROM webhook_deliveries \
             WHERE status = 'pending' AND webhook_id > ",
        );
        sql.bind(after.to_owned());
        sql.push(
            ") UNION ALL SELECT (SELECT MIN(d.webhook_id) FROM webhook_deliveries d \
             WHERE d.status = 'pending' AND d.webhook_id > hooks.id) FROM hooks WHERE hooks.id IS NOT NULL) \
             SELECT id FROM hooks WHERE id IS NOT NULL LIMIT ",
        );
        sql.bind(limit);
        let rows = sql.fetch_rows(conn).await?;
        rows.iter().map(|row| row.try_get::<String, _>("id").map_err(classify)).collect()
    }

    /// How a worker claims due deliveries.
    pub struct Claim<'a> {
        pub owner: &'a str,
        pub now: i64,
        /// Not due again before this unless settled: another process takes
        /// the delivery over only once the lease runs out.
        pub lease_until: i64,
        /// How many due deliveries to take of which webhook at most...
        pub wants: &'a [(String, i64)],
        /// ...and in all, oldest first.
        pub limit: i64,
        /// `FOR UPDATE SKIP LOCKED`: concurrent claims on PostgreSQL pass
        /// over each other's rows instead of waiting. (SQLite has one writer.)
        pub skip_locked: bool,
    }

    /// Takes due deliveries under a lease and counts the attempt: per
    /// webhook an index range of its own, so one webhook's backlog costs
    /// another's claim nothing.
    pub async fn claim(conn: &mut AnyConnection, claim: &Claim<'_>) -> Result<Vec<WebhookDelivery>> {
        if claim.wants.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = Sql::new("UPDATE webhook_deliveries SET lease_owner = ");
        sql.bind(claim.owner.to_owned()).push(", next_attempt_at = ").bind(claim.lease_until);
        sql.push(", attempts = attempts + 1, attempts_left = attempts_left - 1, last_attempt_at = ");
        sql.bind(claim.now).push(", updated_at = ").bind(claim.now);
        sql.push(" WHERE id IN (SELECT id FROM (");
        for (i, (webhook_id, count)) in claim.wants.iter().enumerate() {
            if i > 0 {
                sql.push(" UNION ALL ");
            }
            sql.push("SELECT id, next_attempt_at FROM (SELECT id, next_attempt_at FROM webhook_deliveries WHERE webhook_id = ");
            sql.bind(webhook_id.clone())
                .push(" AND status = 'pending' AND next_attempt_at <= ")
                .bind(claim.now);
            sql.push(" ORDER BY next_attempt_at LIMIT ").bind(*count);
            if claim.skip_locked {
                sql.push(" FOR UPDATE SKIP LOCKED");
            }
            sql.push(&format!(") c{i}"));
        }
        sql.push(") due ORDER BY next_attempt_at LIMIT ").bind(claim.limit);
        sql.push(&format!(") RETURNING {}", select_columns::<WebhookDelivery>()));
        let mut claimed: Vec<WebhookDelivery> = sql.fetch_all(conn).await?;
        claimed.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(claimed)
    }

    /// How an attempt ended.
    #[derive(Debug, Clone)]
    pub struct Settlement {
        pub id: String,
        /// `delivered`, `pending` (retry at `next_attempt_at`) or `failed`.
        pub status: &'static str,
        pub next_attempt_at: i64,
        pub response_status: Option<i64>,
        pub response_excerpt: Option<String>,
        pub latency_ms: i64,
        pub error: Option<String>,
        pub at: i64,
    }

    /// Records an attempt's outcome, only while `owner` holds the lease: a
    /// worker that outlived its lease cannot overwrite its successor's.
    pub async fn settle(conn: &mut AnyConnection, owner: &str, outcome: &Settlement) -> Result<bool> {
        let mut sql = Sql::new("UPDATE webhook_deliveries SET status = ");
        sql.bind(outcome.status.to_owned()).push(", next_attempt_at = ").bind(outcome.next_attempt_at);
        sql.push(", lease_owner = NULL, response_status = ").bind(outcome.response_status);
        sql.push(", response_excerpt = ").bind(outcome.response_excerpt.clone());
        sql.push(", latency_ms = ").bind(outcome.latency_ms);
        sql.push(", last_error = ").bind(outcome.error.clone());
        sql.push(", delivered_at = ").bind((outcome.status == "delivered").then_some(outcome.at));
        sql.push(", updated_at = ").bind(outcome.at);
        sql.push(" WHERE id = ").bind(outcome.id.clone());
        sql.push(" AND status = 'pending' AND lease_owner = ").bind(owner.to_owned());
        Ok(sql.execute(conn).await? == 1)
    }

    /// Ends a webhook's pending deliveries (it was disabled): they are not
    /// sent, and say why.
    pub async fn fail_pending(
        conn: &mut AnyConnection,
        webhook_id: &str,
        why: &str,
        now: i64,
    ) -> Result<u64> {
        let mut sql =
            Sql::new("UPDATE webhook_deliveries SET status = 'failed', lease_owner = NULL, last_error = ");
        sql.bind(why.to_owned()).push(", updated_at = ").bind(now);
        sql.push(" WHERE webhook_id = ").bind(webhook_id.to_owned()).push(" AND status = 'pending'");
        sql.execute(conn).await
    }

    /// Sends a settled delivery once more (an operator's retry): `false`
    /// if it is still pending.
    pub async fn retry(conn: &mut AnyConnection, environment_id: &str, id: &str, now: i64) -> Result<bool> {
        let mut sql = Sql::new(
            "UPDATE webhook_deliveries SET status = 'pending', attempts_left = 1, lease_owner = NULL, next_attempt_at = ",
        );
        sql.bind(now).push(", updated_at = ").bind(now);
        sql.push(" WHERE id = ").bind(id.to_owned()).push(" AND environment_id = ");
        sql.bind(environment_id.to_owned()).push(" AND status <> 'pending'");
        Ok(sql.execute(conn).await? == 1)
    }

    /// How many of a webhook's deliveries are in each status.
    pub async fn counts(conn: &mut AnyConnection, webhook_id: &str) -> Result<Vec<(String, i64)>> {
        let mut sql = Sql::new("SELECT status, COUNT(*) AS n FROM webhook_deliveries WHERE webhook_id = ");
        sql.bind(webhook_id.to_owned()).push(" GROUP BY status ORDER BY status");
        let rows = sql.fetch_rows(conn).await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get::<String, _>("status").map_err(classify)?,
                    row.try_get::<i64, _>("n").map_err(classify)?,
                ))
            })
            .collect()
    }

    /// A webhook's latest deliveries, newest first.
    pub async fn latest(
        conn: &mut AnyConnection,
        environment_id: &str,
        webhook_id: &str,
        limit: i64,
    ) -> Result<Vec<WebhookDelivery>> {
        let columns = select_columns::<WebhookDelivery>();
        let mut sql = Sql::new(format!("SELECT {columns} FROM webhook_deliveries WHERE environment_id = "));
        sql.bind(environment_id.to_owned()).push(" AND webhook_id = ").bind(webhook_id.to_owned());
        sql.push(" ORDER BY inserted_at DESC, id DESC LIMIT ").bind(limit);
        sql.fetch_all(conn).await
    }

    /// Deletes up to `limit` settled deliveries last changed before `before`.
    pub async fn prune_deliveries(conn: &mut AnyConnection, before: i64, limit: i64) -> Result<u64> {
        let mut sql = Sql::new(
            "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries \
             WHERE status <> 'pending' AND updated_at < ",
        );
        sql.bind(before).push(" LIMIT ").bind(limit).push(")");
        sql.execute(conn).await
    }

    /// Deletes up to `limit` outbox rows written before `before`, except
    /// those the lifecycle hub's relay has yet to read.
    pub async fn prune_outbox(conn: &mut AnyConnection, before: i64, limit: i64) -> Result<u64> {
        let mut sql = Sql::new(
            "DELETE FROM outbox_events WHERE id IN (SELECT id FROM outbox_events WHERE created_at < ",
        );
        sql.bind(before).push(" AND (published_at IS NOT NULL OR event_type NOT IN (");
        let relayed: Vec<crate::SqlValue> =
            super::provisioning::RELAYED_EVENT_TYPES.iter().map(|t| crate::SqlValue::from(*t)).collect();
        sql.bind_list(&relayed).push(")) LIMIT ").bind(limit).push(")");
        sql.execute(conn).await
    }
}
