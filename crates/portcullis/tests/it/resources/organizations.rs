//! Organizations: CRUD, slugs (given or derived, unique per environment),
//! metadata, listing, the audit trail, and isolation between environments.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{assert_conflict, assert_error, assert_invalid, assert_not_found, id_of};
use crate::db_test;
use crate::resources::support::{doc, patch_doc};

const PATH: &str = "/api/organizations";
const EVENTS: &str = "SELECT COUNT(*) FROM audit_events WHERE action LIKE 'organization.%'";

db_test!(organization_crud_with_derived_and_given_slugs, |server| {
    let admin = server.admin_token().await;
    let created =
        server.create(&admin, PATH, "organization", json!({"name": "Acme, Inc."}), Value::Null).await;
    let acme = id_of(&created);
    let attributes = &created["data"]["attributes"];
    assert_eq!(created["data"]["type"], "organization");
    assert_eq!((&attributes["name"], &attributes["slug"]), (&json!("Acme, Inc."), &json!("acme-inc")));
    assert_eq!(attributes["metadata"], json!({}));
    assert!(attributes["inserted_at"].is_string(), "{created}");

    let globex = id_of(
        &server
            .create(
                &admin,
                PATH,
                "organization",
                json!({"name": "Globex", "slug": "globex-corp", "metadata": {"plan": "enterprise", "seats": 40}}),
                Value::Null,
            )
            .await,
    );

    // Read one, list, filter and sort.
    let (status, body) = server.api(Method::GET, &format!("{PATH}/{globex}"), &admin, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["metadata"], json!({"plan": "enterprise", "seats": 40}));
    let (status, body) =
        server.api(Method::GET, &format!("{PATH}?filter[slug]=acme-inc"), &admin, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["data"][0]["id"], acme.as_str());
    let (_, body) = server.api(Method::GET, &format!("{PATH}?sort=-name"), &admin, None).await;
    let names: Vec<&str> =
        body["data"].as_array().unwrap().iter().map(|o| o["attributes"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Globex", "Acme, Inc."]);

    // Update: name alone keeps the slug; slug and metadata change on request.
    let path = format!("{PATH}/{acme}");
    let (status, body) = server
        .api(
            Method::PATCH,
            &path,
            &admin,
            Some(patch_doc("organization", &acme, json!({"name": "Acme Corp"}))),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["data"]["attributes"]["name"], &body["data"]["attributes"]["slug"]),
        (&json!("Acme Corp"), &json!("acme-inc"))
    );
    let (status, body) = server
        .api(
            Method::PATCH,
            &path,
            &admin,
            Some(patch_doc("organization", &acme, json!({"slug": "acme", "metadata": {"tier": 1}}))),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["slug"], "acme");
    assert_eq!(body["data"]["attributes"]["metadata"], json!({"tier": 1}));

    // Each write is audited once, with what changed.
    assert_eq!(server.count(EVENTS).await, 4);
    let (_, events) = server
        .api(Method::GET, "/api/audit-events?filter[action]=organization.updated&page[limit]=1", &admin, None)
        .await;
    assert_eq!(
        events["data"][0]["attributes"]["changes"]["slug"],
        json!({"from": "acme-inc", "to": "acme"}),
        "{events}"
    );

    // Delete: gone, audited, and a second delete is a 404.
    let (status, _) = server.api(Method::DELETE, &path, &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = server.api(Method::GET, &path, &admin, None).await;
    assert_not_found(status, &body);
    let (status, body) = server.api(Method::DELETE, &path, &admin, None).await;
    assert_not_found(status, &body);
    assert_eq!(server.count(EVENTS).await, 5);
    assert_eq!(server.count("SELECT COUNT(*) FROM organizations").await, 1);
});

db_test!(organization_validation_and_slug_conflicts, |server| {
    let admin = server.admin_token().await;
    let post = |attributes: Value| {
        let (server, admin) = (&server, &admin);
        async move { server.api(Method::POST, PATH, admin, Some(doc("organization", attributes))).await }
    };
    let (status, body) = post(json!({"name": "Initech"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let initech = id_of(&body);

    let (status, body) = post(json!({})).await;
    assert_error(status, &body, 422, "required", Some("/data/attributes/name"));
    for (attributes, field) in [
        (json!({"name": ""}), "name"),
        (json!({"name": "  "}), "name"),
        (json!({"name": "a\u{0}b"}), "name"),
        (json!({"name": "n".repeat(101)}), "name"),
        (json!({"name": "X", "slug": "Not A Slug"}), "slug"),
        (json!({"name": "X", "slug": "-x"}), "slug"),
        (json!({"name": "X", "slug": "x".repeat(65)}), "slug"),
        (json!({"name": "X", "slug": ""}), "slug"),
        // Nothing in the name to derive a slug from.
        (json!({"name": "日本"}), "slug"),
        (json!({"name": "X", "metadata": [1]}), "metadata"),
        (json!({"name": "X", "metadata": "x"}), "metadata"),
        (json!({"name": "X", "colour": "red"}), "colour"),
    ] {
        let (status, body) = post(attributes.clone()).await;
        assert_invalid(status, &body, field);
    }

    // Slugs are unique per environment, given or derived.
    for attributes in [json!({"name": "Other", "slug": "initech"}), json!({"name": "INITECH"})] {
        let (status, body) = post(attributes).await;
        assert_conflict(status, &body, "/data/attributes/slug");
    }
    let (status, body) = post(json!({"name": "Hooli"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let hooli = id_of(&body);
    let patch = |attributes: Value| {
        let (server, admin, hooli) = (&server, &admin, &hooli);
        async move {
            server
                .api(
                    Method::PATCH,
                    &format!("{PATH}/{hooli}"),
                    admin,
                    Some(patch_doc("organization", hooli, attributes)),
                )
                .await
        }
    };
    let (status, body) = patch(json!({"slug": "initech"})).await;
    assert_conflict(status, &body, "/data/attributes/slug");
    for (attributes, field) in [
        (json!({"slug": null}), "slug"),
        (json!({"name": null}), "name"),
        (json!({"slug": "UPPER"}), "slug"),
        (json!({"metadata": null}), "metadata"),
    ] {
        let (status, body) = patch(attributes).await;
        assert_invalid(status, &body, field);
    }
    // Nothing was half-written: the two organizations are as created.
    assert_eq!(server.count("SELECT COUNT(*) FROM organizations").await, 2);
    let (_, body) = server.api(Method::GET, &format!("{PATH}/{hooli}"), &admin, None).await;
    assert_eq!(body["data"]["attributes"]["slug"], "hooli");
    let (_, body) = server.api(Method::GET, &format!("{PATH}/{initech}"), &admin, None).await;
    assert_eq!(body["data"]["attributes"]["name"], "Initech");
    assert_eq!(server.count(EVENTS).await, 2);
});

db_test!(organizations_stay_in_their_environment, |server| {
    let admin = server.admin_token().await;
    let acme =
        id_of(&server.create(&admin, PATH, "organization", json!({"name": "Shared"}), Value::Null).await);
    let beta_creds = server.create_environment("beta").await;
    let beta = server.management_token("beta", &beta_creds, None).await;

    // The same slug is free in another environment, and neither sees the other's.
    let (status, body) = server
        .api_at("beta", Method::POST, PATH, &beta, Some(doc("organization", json!({"name": "Shared"}))))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["attributes"]["slug"], "shared");
    let beta_org = id_of(&body);
    let (_, list) = server.api_at("beta", Method::GET, PATH, &beta, None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["id"], beta_org.as_str());
    for (method, body) in [
        (Method::GET, None),
        (Method::PATCH, Some(patch_doc("organization", &acme, json!({"name": "Taken over"})))),
        (Method::DELETE, None),
    ] {
        let (status, reply) = server.api_at("beta", method, &format!("{PATH}/{acme}"), &beta, body).await;
        assert_not_found(status, &reply);
    }
    let (_, body) = server.api(Method::GET, &format!("{PATH}/{acme}"), &admin, None).await;
    assert_eq!(body["data"]["attributes"]["name"], "Shared");
});
