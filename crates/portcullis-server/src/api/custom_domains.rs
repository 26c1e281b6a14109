//! `/api/custom-domains`: the environment's own host name, verified by DNS.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::Response;
use portcullis_core::authz::Family;
use portcullis_core::services::custom_domains::{self, CustomDomain, NewCustomDomain};
use portcullis_core::{Core, Ctx};
use portcullis_jsonapi::{Direction, FieldKind, QuerySpec, ResourceObject, parse_create};

use super::{
    Access, Action, JsonApiBody, Ops, Resource, ResourceDef, Routes, attr, created, no_content, ok, required,
};
use crate::error::ApiResult;

pub struct CustomDomains;

impl Resource for CustomDomains {
    type Model = CustomDomain;
    const DEF: &'static ResourceDef = &ResourceDef {
        kind: custom_domains::KIND,
        path: "custom-domains",
        family: Family::CustomDomains,
        summary: "The environment's own host name (one per environment), proven by DNS.",
        query: QuerySpec {
            filters: &[("domain", FieldKind::Text), ("status", FieldKind::Text)],
            sorts: &[("domain", FieldKind::Text), ("inserted_at", FieldKind::Timestamp)],
            includes: &[],
            default_sort: &[("inserted_at", Direction::Asc)],
        },
        columns: &[("domain", "domain"), ("status", "status"), ("inserted_at", "inserted_at")],
        attributes: &[
            required(
                "domain",
                "string",
                Access::CreateOnly,
                "A host name of at least two labels (`auth.example.com`; an IDN in its `xn--` form), unique across the installation; stored lower-cased.",
            ),
            attr(
                "status",
                "string",
                Access::ReadOnly,
                "`pending` until DNS proves the domain, `active` once it does, `failed` when a record points elsewhere or disappeared.",
            )
            .one_of(&["pending", "active", "failed"]),
            attr(
                "dns_records",
                "array<object>",
                Access::ReadOnly,
                "The records to publish, either of which proves the domain: `{type, name, value, purpose}` for the CNAME to the environment's default host and for the TXT challenge.",
            ),
            attr("verified_at", "date-time", Access::ReadOnly, "When DNS last proved the domain after it was not active.")
                .nullable(),
            attr("last_checked_at", "date-time", Access::ReadOnly, "The last DNS check.").nullable(),
            attr("failure", "string", Access::ReadOnly, "Why the domain is not active, from the last check.")
                .nullable(),
            attr(
                "certificate_expires_at",
                "date-time",
                Access::ReadOnly,
                "When the certificate the built-in ACME client obtained expires (it is renewed at two thirds of its lifetime); null before the first one, and always behind a TLS proxy.",
            )
            .nullable(),
            attr(
                "certificate_error",
                "string",
                Access::ReadOnly,
                "Why the built-in ACME client's last order for this domain failed; null once one succeeds.",
            )
            .nullable(),
            attr("inserted_at", "date-time", Access::ReadOnly, "Creation time (UTC)."),
            attr("updated_at", "date-time", Access::ReadOnly, "Last change (UTC)."),
        ],
        relationships: &[],
        ops: Ops { list: true, get: true, create: true, update: false, delete: true },
        actions: &[Action::post(
            "verify",
            "Checks DNS now (the dashboard's Refresh) and answers with the domain's new status.",
        )],
    };

    fn routes() -> Routes {
        Routes::default().create(create).delete(delete).action("verify", verify)
    }

    fn present(ctx: &Ctx, domain: &CustomDomain) -> ResourceObject {
        custom_domains::present(&ctx.env, domain)
    }
}

async fn create(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    JsonApiBody(body): JsonApiBody,
) -> ApiResult<Response> {
    let (input, _) = parse_create::<NewCustomDomain>(&body, custom_domains::KIND)?;
    let domain = custom_domains::create(&core, &ctx, input).await?;
    Ok(created(CustomDomains::present(&ctx, &domain)))
}

async fn delete(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    custom_domains::delete(&core, &ctx, &id).await?;
    Ok(no_content())
}

async fn verify(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let domain = custom_domains::verify(&core, &ctx, &id).await?;
    Ok(ok(CustomDomains::present(&ctx, &domain)))
}
