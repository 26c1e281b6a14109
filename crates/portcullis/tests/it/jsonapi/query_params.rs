//! Filters, sorting, includes, sparse fieldsets and parameter validation,
//! on collections and single-resource GETs.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::*;
use crate::db_test;
use crate::harness::TestServer;
use crate::jsonapi::support::*;

/// The names (`attributes.name`) of a collection's primary data.
fn names(document: &Value) -> Vec<String> {
    document["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["attributes"]["name"].as_str().unwrap().to_owned())
        .collect()
}

fn emails(document: &Value) -> Vec<String> {
    let mut out: Vec<String> = document["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["attributes"]["email"].as_str().unwrap().to_owned())
        .collect();
    out.sort();
    out
}

async fn seed_people(server: &TestServer, token: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for (email, first, last, blocked, verified) in [
        ("Alice.Smith@Example.com", Some("Alice"), "Smith", false, true),
        ("bob@example.com", Some("Bob"), "Smithers", true, false),
        ("carol@sample.org", Some("alice"), "Jones", false, false),
        ("dave@example.com", None, "Jones", true, true),
    ] {
        ids.push(
            create_user(
                server,
                token,
                json!({"email": email, "first_name": first, "last_name": last,
                       "blocked": blocked, "email_verified": verified}),
            )
            .await,
        );
    }
    ids
}

db_test!(filters_exact_case_insensitive_contains_and_boolean, |server| {
    let token = server.admin_token().await;
    seed_people(&server, &token).await;
    let q = |query: &str| format!("/api/users?{query}");

    // filter[attr]=value is exact; email compares case-insensitively.
    let page = get_ok(&server, &token, &q("filter[email]=ALICE.SMITH%40example.COM")).await;
    assert_eq!(emails(&page), ["Alice.Smith@Example.com"]);
    let page = get_ok(&server, &token, &q("filter[email]=alice.smith%40example.co")).await;
    assert_eq!(page["data"], json!([]), "exact, not a prefix match");
    let page = get_ok(&server, &token, &q("filter[last_name]=Smith")).await;
    assert_eq!(emails(&page), ["Alice.Smith@Example.com"], "Smithers is not Smith");
    let page = get_ok(&server, &token, &q("filter[first_name]=Alice")).await;
    assert_eq!(emails(&page), ["Alice.Smith@Example.com"], "first_name equality is exact");

    // filter[attr][contains]=... is a case-insensitive substring match.
    let page = get_ok(&server, &token, &q("filter[email][contains]=EXAMPLE.com")).await;
    assert_eq!(emails(&page), ["Alice.Smith@Example.com", "bob@example.com", "dave@example.com"]);
    let page = get_ok(&server, &token, &q("filter[last_name][contains]=smith")).await;
    assert_eq!(emails(&page), ["Alice.Smith@Example.com", "bob@example.com"]);
    let page = get_ok(&server, &token, &q("filter[first_name][contains]=LIC")).await;
    assert_eq!(emails(&page), ["Alice.Smith@Example.com", "carol@sample.org"]);
    let page = get_ok(&server, &token, &q("filter[email][eq]=BOB%40example.com")).await;
    assert_eq!(emails(&page), ["bob@example.com"], "[eq] is the explicit form of equality");

    // Boolean filters, alone and combined with others (AND).
    let page = get_ok(&server, &token, &q("filter[blocked]=true")).await;
    assert_eq!(emails(&page), ["bob@example.com", "dave@example.com"]);
    let page = get_ok(&server, &token, &q("filter[blocked]=false&filter[email_verified]=false")).await;
    assert_eq!(emails(&page), ["carol@sample.org"]);
    let page = get_ok(&server, &token, &q("filter[blocked]=true&filter[last_name][contains]=jon")).await;
    assert_eq!(emails(&page), ["dave@example.com"]);
    let page = get_ok(&server, &token, &q("filter[email_verified]=true&page[count]=true")).await;
    assert_eq!(page["meta"]["page"]["total"], 2);

    // Errors name the offending parameter.
    for (query, parameter) in [
        ("filter[password_hash]=x", "filter[password_hash]"),
        ("filter[metadata]=x", "filter[metadata]"),
        ("filter[id]=x", "filter[id]"),
        ("filter[blocked]=yes", "filter[blocked]"),
        ("filter[blocked]=TRUE", "filter[blocked]"),
        ("filter[blocked]=", "filter[blocked]"),
        ("filter[blocked][contains]=t", "filter[blocked][contains]"),
        ("filter[email][startswith]=a", "filter[email][startswith]"),
        ("filter[email][contains]=a&filter[email][contains]=b", "filter[email][contains]"),
    ] {
        let reply = call(&server, Method::GET, &q(query), &token, None).await;
        reply.assert_bad_parameter(parameter);
    }
});

db_test!(contains_matches_like_metacharacters_literally, |server| {
    let token = server.admin_token().await;
    for name in ["100% off", "1000 off", "snake_case", "snakeXcase", r"back\slash", "backslash", "Équipe"] {
        create_role(&server, &token, name).await;
    }
    let contains = |needle: &str| format!("/api/roles?sort=name&filter[name][contains]={}", enc(needle));
    assert_eq!(names(&get_ok(&server, &token, &contains("%")).await), ["100% off"]);
    assert_eq!(names(&get_ok(&server, &token, &contains("0% ")).await), ["100% off"]);
    assert_eq!(names(&get_ok(&server, &token, &contains("_")).await), ["snake_case"]);
    assert_eq!(names(&get_ok(&server, &token, &contains("e_c")).await), ["snake_case"]);
    assert_eq!(names(&get_ok(&server, &token, &contains("\\")).await), [r"back\slash"]);
    assert_eq!(names(&get_ok(&server, &token, &contains(r"k\s")).await), [r"back\slash"]);
    assert_eq!(names(&get_ok(&server, &token, &contains("%_")).await), Vec::<String>::new());
    // Non-ASCII: the exact-case substring always matches; ASCII folds case.
    assert_eq!(names(&get_ok(&server, &token, &contains("Équipe")).await), ["Équipe"]);
    assert_eq!(names(&get_ok(&server, &token, &contains("É")).await), ["Équipe"]);
    assert_eq!(names(&get_ok(&server, &token, &contains("QUIPE")).await), ["Équipe"]);
    // The exact filter is literal too.
    let exact = get_ok(&server, &token, &format!("/api/roles?filter[name]={}", enc("100% off"))).await;
    assert_eq!(names(&exact), ["100% off"]);
    let exact = get_ok(&server, &token, &format!("/api/roles?filter[name]={}", enc("snake_case"))).await;
    assert_eq!(names(&exact), ["snake_case"]);
});

db_test!(sorting_and_its_errors, |server| {
    let token = server.admin_token().await;
    seed_people(&server, &token).await;

    // Ascending and descending on one key; default is creation order.
    let page = get_ok(&server, &token, "/api/users?sort=email").await;
    let sorted: Vec<&str> =
        page["data"].as_array().unwrap().iter().map(|u| u["attributes"]["email"].as_str().unwrap()).collect();
    assert_eq!(
        sorted,
        ["Alice.Smith@Example.com", "bob@example.com", "carol@sample.org", "dave@example.com"]
    );
    // Emails order case-insensitively, in pages and across keyset cursors.
    let eve = create_user(&server, &token, json!({"email": "Eve@Example.com"})).await;
    let page = get_ok(&server, &token, "/api/users?sort=email&page[limit]=3").await;
    let next = get_ok(&server, &token, page["links"]["next"].as_str().unwrap()).await;
    assert_eq!(emails(&next), ["Eve@Example.com", "dave@example.com"]);
    let page = get_ok(&server, &token, "/api/users?sort=-email&page[limit]=2").await;
    assert_eq!(page["data"][0]["attributes"]["email"], "Eve@Example.com");
    let next = get_ok(&server, &token, page["links"]["next"].as_str().unwrap()).await;
    assert_eq!(emails(&next), ["bob@example.com", "carol@sample.org"]);
    let back = get_ok(&server, &token, next["links"]["prev"].as_str().unwrap()).await;
    assert_eq!(ids(&back)[0], eve);
    let reply = call(&server, Method::DELETE, &format!("/api/users/{eve}"), &token, None).await;
    assert_eq!(reply.status, 204);

    let page = get_ok(&server, &token, "/api/users?sort=-inserted_at,email").await;
    let newest_first: Vec<&str> =
        page["data"].as_array().unwrap().iter().map(|u| u["attributes"]["email"].as_str().unwrap()).collect();
    assert_eq!(
        newest_first,
        ["dave@example.com", "carol@sample.org", "bob@example.com", "Alice.Smith@Example.com"]
    );
    let default = get_ok(&server, &token, "/api/users").await;
    let mut oldest_first = newest_first.clone();
    oldest_first.reverse();
    let default: Vec<&str> = default["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["attributes"]["email"].as_str().unwrap())
        .collect();
    assert_eq!(default, oldest_first);
    // Multi-key: last name ascending, then first name descending (a missing
    // first name sorts as the empty string).
    let page = get_ok(&server, &token, "/api/users?sort=last_name,-first_name").await;
    let people: Vec<(&str, &Value)> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["attributes"]["last_name"].as_str().unwrap(), &u["attributes"]["first_name"]))
        .collect();
    assert_eq!(
        people,
        [
            ("Jones", &json!("alice")),
            ("Jones", &Value::Null),
            ("Smith", &json!("Alice")),
            ("Smithers", &json!("Bob"))
        ]
    );

    for (query, parameter) in [
        ("sort=password", "sort"),
        ("sort=-metadata", "sort"),
        ("sort=email,nope", "sort"),
        ("sort=email,-email", "sort"),
        ("sort=", "sort"),
        ("sort=+email", "sort"),
        ("sort=email&sort=-email", "sort"),
    ] {
        let reply = call(&server, Method::GET, &format!("/api/users?{query}"), &token, None).await;
        reply.assert_bad_parameter(parameter);
    }
    let reply = call(&server, Method::GET, "/api/roles?sort=description", &token, None).await;
    reply.assert_bad_parameter("sort");
});

db_test!(include_roles_and_sparse_fieldsets, |server| {
    let token = server.admin_token().await;
    let people = seed_people(&server, &token).await;
    let admin = create_role(&server, &token, "Admin").await;
    let viewer = create_role(&server, &token, "Viewer").await;
    create_role(&server, &token, "Unused").await;
    assign_role(&server, &token, &people[0], &admin).await;
    assign_role(&server, &token, &people[0], &viewer).await;
    assign_role(&server, &token, &people[1], &viewer).await;

    // include=roles: linkage on each user, each role once in `included`.
    let page = get_ok(&server, &token, "/api/users?include=roles").await;
    let data = page["data"].as_array().unwrap();
    assert_eq!(data.len(), 4);
    let linkage = |user: &Value| -> Vec<String> {
        let mut ids: Vec<String> = user["relationships"]["roles"]["data"]
            .as_array()
            .unwrap_or_else(|| panic!("roles linkage: {user}"))
            .iter()
            .map(|r| {
                assert_eq!(r["type"], "role");
                r["id"].as_str().unwrap().to_owned()
            })
            .collect();
        ids.sort();
        ids
    };
    let mut both = vec![admin.clone(), viewer.clone()];
    both.sort();
    assert_eq!(linkage(&data[0]), both);
    assert_eq!(linkage(&data[1]), [viewer.as_str()]);
    assert_eq!(linkage(&data[2]), Vec::<String>::new(), "no roles: empty linkage");
    let included = page["included"].as_array().expect("included");
    let mut included_ids: Vec<&str> = included
        .iter()
        .map(|r| {
            assert_eq!(r["type"], "role");
            assert!(r["attributes"]["name"].is_string());
            r["id"].as_str().unwrap()
        })
        .collect();
    included_ids.sort();
    assert_eq!(included_ids, both, "each related role exactly once, unrelated ones not at all");

    // No include: no linkage, no included.
    let page = get_ok(&server, &token, "/api/users").await;
    assert!(page.get("included").is_none());
    assert!(
        page["data"][0].get("relationships").is_none()
            || page["data"][0]["relationships"].get("roles").is_none()
    );
    // A page whose users hold no roles includes nothing.
    let page = get_ok(&server, &token, "/api/users?include=roles&filter[email]=dave%40example.com").await;
    assert_eq!(page["data"][0]["relationships"]["roles"]["data"], json!([]));
    assert!(page.get("included").is_none() || page["included"] == json!([]));

    // include=permissions on roles.
    let permission = create_permission(&server, &token, "posts:read").await;
    assign_permission(&server, &token, &admin, &permission).await;
    let page = get_ok(&server, &token, "/api/roles?include=permissions&filter[name]=Admin").await;
    assert_eq!(
        page["data"][0]["relationships"]["permissions"]["data"],
        json!([{"type": "permission", "id": permission}])
    );
    assert_eq!(page["included"][0]["id"], permission.as_str());
    assert_eq!(page["included"][0]["attributes"]["name"], "posts:read");

    // A declared nested path: the users' roles, and those roles' permissions.
    let page = get_ok(
        &server,
        &token,
        "/api/users?include=roles.permissions&filter[email]=alice.smith%40example.com",
    )
    .await;
    let included = page["included"].as_array().unwrap();
    let admin_role = included.iter().find(|o| o["id"] == admin.as_str()).expect("the Admin role is included");
    assert_eq!(
        admin_role["relationships"]["permissions"]["data"],
        json!([{"type": "permission", "id": permission}])
    );
    assert!(included.iter().any(|o| o["type"] == "permission" && o["id"] == permission.as_str()), "{page}");

    // Unknown includes, and nested paths that are not declared.
    for query in [
        "include=sessions",
        "include=roles,secrets",
        "include=roles.users",
        "include=roles.permissions.roles",
        "include=password_hash",
    ] {
        let reply = call(&server, Method::GET, &format!("/api/users?{query}"), &token, None).await;
        reply.assert_bad_parameter("include");
    }
    let reply = call(&server, Method::GET, "/api/roles?include=users", &token, None).await;
    reply.assert_bad_parameter("include");

    // Sparse fieldsets: only the named attributes; type and id stay.
    let page = get_ok(&server, &token, "/api/users?fields[user]=email").await;
    for user in page["data"].as_array().unwrap() {
        assert_eq!(user["type"], "user");
        assert!(user["id"].is_string());
        let attributes = user["attributes"].as_object().unwrap();
        assert_eq!(attributes.keys().collect::<Vec<_>>(), ["email"], "{user}");
    }
    let page =
        get_ok(&server, &token, "/api/users?fields[user]=email,last_name&sort=email&page[limit]=1").await;
    let attributes = page["data"][0]["attributes"].as_object().unwrap();
    let mut keys: Vec<&String> = attributes.keys().collect();
    keys.sort();
    assert_eq!(keys, ["email", "last_name"]);
    // Fieldsets apply per type: to included roles as well as to users.
    let page =
        get_ok(&server, &token, "/api/users?include=roles&fields[user]=email,roles&fields[role]=name").await;
    assert_eq!(linkage(&page["data"][0]), both, "the roles relationship was asked for");
    for role in page["included"].as_array().unwrap() {
        assert_eq!(role["attributes"].as_object().unwrap().keys().collect::<Vec<_>>(), ["name"]);
    }
    // fields for another type leaves users whole.
    let page = get_ok(&server, &token, "/api/users?fields[role]=name&page[limit]=1").await;
    assert!(page["data"][0]["attributes"]["email"].is_string());
    assert!(page["data"][0]["attributes"]["inserted_at"].is_string());
    // Sparse fieldsets do not break paging: cursors come from the full
    // resource, even when the sort attribute is not in the fieldset.
    let page =
        get_ok(&server, &token, "/api/users?fields[user]=email&sort=-last_name,first_name&page[limit]=2")
            .await;
    assert_eq!(page["data"][0]["attributes"].as_object().unwrap().len(), 1);
    let next = get_ok(&server, &token, page["links"]["next"].as_str().unwrap()).await;
    assert_eq!(emails(&next), ["carol@sample.org", "dave@example.com"]);
    assert!(next["links"].get("next").is_none());

    // To-one relationships of a join resource, included.
    let links = get_ok(&server, &token, "/api/user-roles?include=user,role&sort=inserted_at").await;
    assert_eq!(links["data"].as_array().unwrap().len(), 3);
    assert_eq!(links["data"][0]["relationships"]["user"]["data"], json!({"type": "user", "id": people[0]}));
    assert_eq!(links["data"][0]["relationships"]["role"]["data"], json!({"type": "role", "id": admin}));
    let mut included: Vec<(String, String)> = links["included"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["type"].as_str().unwrap().to_owned(), r["id"].as_str().unwrap().to_owned()))
        .collect();
    included.sort();
    let mut wanted = vec![
        ("role".to_owned(), admin.clone()),
        ("role".to_owned(), viewer.clone()),
        ("user".to_owned(), people[0].clone()),
        ("user".to_owned(), people[1].clone()),
    ];
    wanted.sort();
    assert_eq!(included, wanted, "each related user and role once");
    let links = get_ok(&server, &token, "/api/user-roles?include=role&fields[role]=name").await;
    assert!(links["included"].as_array().unwrap().iter().all(|r| r["type"] == "role"
        && r["attributes"].as_object().unwrap().keys().collect::<Vec<_>>() == ["name"]));

    // Secrets never appear, even when asked for.
    let page = get_ok(&server, &token, "/api/users?fields[user]=password_hash,password&page[limit]=1").await;
    assert_eq!(page["data"][0]["attributes"], json!({}));

    // Repeated and unknown parameters.
    for (query, parameter) in [
        ("page[limit]=5&page[limit]=6", "page[limit]"),
        ("include=roles&include=roles", "include"),
        ("fields[user]=email&fields[user]=email", "fields[user]"),
        ("filter[email]=a&filter[email]=b", "filter[email]"),
        ("bogus=1", "bogus"),
        ("filter=x", "filter"),
    ] {
        let reply = call(&server, Method::GET, &format!("/api/users?{query}"), &token, None).await;
        reply.assert_bad_parameter(parameter);
    }
});

db_test!(single_get_takes_include_and_fields_but_not_paging, |server| {
    let token = server.admin_token().await;
    let people = seed_people(&server, &token).await;
    let admin = create_role(&server, &token, "Admin").await;
    assign_role(&server, &token, &people[0], &admin).await;
    let user = &people[0];

    let one = get_ok(&server, &token, &format!("/api/users/{user}")).await;
    assert_eq!(one["data"]["id"], user.as_str());
    assert_eq!(one["data"]["type"], "user");
    assert!(one.get("included").is_none());
    assert!(one["data"]["attributes"].get("password_hash").is_none());

    let one = get_ok(&server, &token, &format!("/api/users/{user}?include=roles")).await;
    assert_eq!(one["data"]["relationships"]["roles"]["data"], json!([{"type": "role", "id": admin}]));
    assert_eq!(one["included"].as_array().unwrap().len(), 1);
    assert_eq!(one["included"][0]["attributes"]["name"], "Admin");

    let one = get_ok(&server, &token, &format!("/api/users/{user}?fields[user]=first_name")).await;
    assert_eq!(one["data"]["attributes"], json!({"first_name": "Alice"}));
    assert_eq!(one["data"]["id"], user.as_str());

    let one = get_ok(
        &server,
        &token,
        &format!("/api/users/{user}?include=roles&fields[role]=name&fields[user]=roles"),
    )
    .await;
    assert_eq!(one["data"]["attributes"], json!({}));
    assert_eq!(one["included"][0]["attributes"], json!({"name": "Admin"}));

    // A role's single GET shows its counts.
    let one = get_ok(&server, &token, &format!("/api/roles/{admin}")).await;
    assert_eq!(one["data"]["attributes"]["user_count"], 1);
    assert_eq!(one["data"]["attributes"]["permission_count"], 0);

    for (query, parameter) in [
        ("page[limit]=5", "page[limit]"),
        ("page[offset]=0", "page[offset]"),
        ("page[count]=true", "page[count]"),
        ("sort=email", "sort"),
        ("filter[email]=x", "filter[email]"),
    ] {
        let reply = call(&server, Method::GET, &format!("/api/users/{user}?{query}"), &token, None).await;
        reply.assert_bad_parameter(parameter);
    }
    for (query, parameter) in
        [("include=sessions", "include"), ("include=roles&include=roles", "include"), ("bogus=1", "bogus")]
    {
        let reply = call(&server, Method::GET, &format!("/api/users/{user}?{query}"), &token, None).await;
        reply.assert_bad_parameter(parameter);
    }

    // Missing resources are JSON:API 404s, whatever the id looks like.
    for id in ["0190a5b2-0000-7000-8000-000000000000", "not-a-uuid", "%27%20OR%201%3D1"] {
        let reply = call(&server, Method::GET, &format!("/api/users/{id}"), &token, None).await;
        reply.assert_error(404, "not_found");
        let reply =
            call(&server, Method::GET, &format!("/api/roles/{id}?include=permissions"), &token, None).await;
        reply.assert_error(404, "not_found");
    }
    // An unknown route, too.
    let reply = call(&server, Method::GET, "/api/no-such-things", &token, None).await;
    reply.assert_error(404, "not_found");
});
