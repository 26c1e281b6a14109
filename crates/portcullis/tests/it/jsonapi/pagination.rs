//! Pagination: offset and keyset windows, links, limits and counts, walked
//! over enough users that every sort order spans several pages.

use std::cmp::Ordering;

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::*;
use crate::db_test;
use crate::harness::TestServer;
use crate::jsonapi::support::*;

/// One seeded user as the tests know it (creation order = `seq`).
#[derive(Debug, Clone)]
struct Seeded {
    id: String,
    seq: usize,
    email: String,
    first_name: Option<String>,
    last_name: String,
    blocked: bool,
    email_verified: bool,
}

const USERS: usize = 60;

/// Creates `USERS` users with distinct emails, repeated first/last names
/// (so multi-key sorts have ties) and some missing first names.
async fn seed(server: &TestServer, token: &str) -> Vec<Seeded> {
    let mut users = Vec::new();
    for seq in 0..USERS {
        let first_name = (seq % 7 != 0).then(|| ["Cleo", "Ada", "Bea", "Dan"][seq % 4].to_owned());
        let last_name = ["Young", "Xu", "Zeller"][seq % 3].to_owned();
        let email = format!("user{seq:02}@example.com");
        let blocked = seq % 10 == 0;
        let email_verified = seq % 2 == 0;
        let id = create_user(
            server,
            token,
            json!({"email": email, "first_name": first_name, "last_name": last_name,
                   "blocked": blocked, "email_verified": email_verified}),
        )
        .await;
        users.push(Seeded { id, seq, email, first_name, last_name, blocked, email_verified });
    }
    users
}

/// A sort order as (attribute, descending) pairs.
type SortSpec = Vec<(&'static str, bool)>;

/// The order the API must produce for `sort` (ties broken by id ascending).
fn expected(users: &[Seeded], sort: &[(&str, bool)]) -> Vec<String> {
    let mut sorted: Vec<&Seeded> = users.iter().collect();
    sorted.sort_by(|a, b| {
        for (field, desc) in sort {
            let ordering = match *field {
                // Emails sort case-insensitively.
                "email" => a.email.to_lowercase().cmp(&b.email.to_lowercase()),
                "first_name" => {
                    a.first_name.as_deref().unwrap_or("").cmp(b.first_name.as_deref().unwrap_or(""))
                }
                "last_name" => a.last_name.cmp(&b.last_name),
                // Created one after another, so creation order is time order.
                "inserted_at" | "updated_at" => a.seq.cmp(&b.seq),
                other => panic!("no expectation for {other}"),
            };
            let ordering = if *desc { ordering.reverse() } else { ordering };
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        a.id.cmp(&b.id)
    });
    sorted.into_iter().map(|u| u.id.clone()).collect()
}

/// Follows `links.next` from `start`; returns every page.
async fn walk_forward(server: &TestServer, token: &str, start: &str, limit: usize) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut next = Some(start.to_owned());
    while let Some(path) = next {
        assert!(pages.len() <= USERS, "forward walk does not end");
        let page = get_ok(server, token, &path).await;
        let n = page["data"].as_array().unwrap().len();
        assert!(n <= limit, "page larger than page[limit]: {path}");
        next = page["links"]["next"].as_str().map(str::to_owned);
        if next.is_some() {
            assert_eq!(n, limit, "a page with a next link must be full: {path}");
        }
        pages.push(page);
    }
    pages
}

/// Follows `links.prev` from `start`; returns the pages in walking order.
async fn walk_backward(server: &TestServer, token: &str, start: &str, limit: usize) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut prev = Some(start.to_owned());
    while let Some(path) = prev {
        assert!(pages.len() <= USERS, "backward walk does not end");
        let page = get_ok(server, token, &path).await;
        let n = page["data"].as_array().unwrap().len();
        assert!(n <= limit, "page larger than page[limit]: {path}");
        assert!(n > 0, "a prev link led to an empty page: {path}");
        assert!(page["links"]["next"].is_string(), "a page before others must link next: {path}");
        prev = page["links"]["prev"].as_str().map(str::to_owned);
        if prev.is_some() {
            assert_eq!(n, limit, "a page with a prev link must be full: {path}");
        }
        pages.push(page);
    }
    pages
}

fn assert_each_once(order: &[String], expected: &[String], what: &str) {
    let mut seen = std::collections::HashSet::new();
    for id in order {
        assert!(seen.insert(id), "{what}: {id} appears twice");
    }
    assert_eq!(order.len(), expected.len(), "{what}: wrong number of rows");
    assert_eq!(order, expected, "{what}: wrong order");
}

/// Walks the whole collection forwards and backwards in one sort order.
async fn check_walk(server: &TestServer, token: &str, query: &str, limit: usize, expected: &[String]) {
    let start = format!("/api/users?{query}&page[limit]={limit}");
    let forward = walk_forward(server, token, &start, limit).await;
    assert!(forward.len() >= 3, "{query}: expected several pages, got {}", forward.len());
    let order: Vec<String> = forward.iter().flat_map(ids).collect();
    assert_each_once(&order, expected, &format!("forward {query}"));
    assert!(forward[0]["links"].get("prev").is_none(), "the first page has no prev: {query}");
    for page in &forward {
        // links.first drops the paging position and keeps everything else.
        let first = page["links"]["first"].as_str().unwrap();
        assert!(!first.contains("page%5Bafter%5D") && !first.contains("page[after]"), "{first}");
        assert!(first.contains("limit"), "links.first keeps page[limit]: {first}");
    }
    let first_again = get_ok(server, token, forward[2]["links"]["first"].as_str().unwrap()).await;
    assert_eq!(ids(&first_again), ids(&forward[0]), "links.first leads to the first page ({query})");

    // Backwards from the last page: the same rows in the same order.
    let last = forward.last().unwrap();
    assert!(last["links"].get("next").is_none(), "the last page has no next: {query}");
    let prev = last["links"]["prev"].as_str().expect("the last page links prev");
    let mut backward = walk_backward(server, token, prev, limit).await;
    backward.reverse();
    let mut order: Vec<String> = backward.iter().flat_map(ids).collect();
    order.extend(ids(last));
    assert_each_once(&order, expected, &format!("backward {query}"));

    // One big offset page agrees with the keyset walk.
    let all = get_ok(server, token, &format!("/api/users?{query}&page[limit]=100")).await;
    assert_eq!(ids(&all), expected, "offset listing of {query}");
}

db_test!(keyset_walks_every_sort_order_both_ways, |server| {
    let token = server.admin_token().await;
    let users = seed(&server, &token).await;

    let cases: Vec<(&str, SortSpec, usize)> = vec![
        ("sort=inserted_at", vec![("inserted_at", false)], 7),
        ("sort=-email", vec![("email", true)], 8),
        ("sort=email", vec![("email", false)], 25),
        ("sort=last_name,-first_name", vec![("last_name", false), ("first_name", true)], 9),
        ("sort=first_name,-inserted_at", vec![("first_name", false), ("inserted_at", true)], 11),
        (
            "sort=-last_name,first_name,-email",
            vec![("last_name", true), ("first_name", false), ("email", true)],
            6,
        ),
        ("sort=-updated_at", vec![("updated_at", true)], 10),
    ];
    for (query, sort, limit) in cases {
        check_walk(&server, &token, query, limit, &expected(&users, &sort)).await;
    }

    // The default order is creation order; a filter narrows every page.
    let all_default = expected(&users, &[("inserted_at", false)]);
    let default = walk_forward(&server, &token, "/api/users?page[limit]=13", 13).await;
    assert_each_once(&default.iter().flat_map(ids).collect::<Vec<_>>(), &all_default, "default order");

    let verified: Vec<Seeded> = users.iter().filter(|u| u.email_verified).cloned().collect();
    check_walk(
        &server,
        &token,
        "filter[email_verified]=true&sort=-last_name,email",
        4,
        &expected(&verified, &[("last_name", true), ("email", false)]),
    )
    .await;
    let named_ada: Vec<Seeded> =
        users.iter().filter(|u| u.first_name.as_deref() == Some("Ada")).cloned().collect();
    check_walk(
        &server,
        &token,
        "filter[first_name]=Ada&sort=-inserted_at",
        4,
        &expected(&named_ada, &[("inserted_at", true)]),
    )
    .await;
});

db_test!(offset_pages_limits_links_and_counts, |server| {
    let token = server.admin_token().await;
    let users = seed(&server, &token).await;
    let order = expected(&users, &[("inserted_at", false)]);

    // Default limit 25.
    let page = get_ok(&server, &token, "/api/users").await;
    assert_eq!(ids(&page), order[..25]);
    assert_eq!(page["meta"]["page"]["limit"], 25);
    assert_eq!(page["meta"]["page"]["offset"], 0);
    assert!(page["meta"]["page"].get("total").is_none(), "total only with page[count]=true");
    assert_eq!(page["links"]["self"], "/api/users");
    assert_eq!(page["links"]["first"], "/api/users");
    assert!(page["links"].get("prev").is_none());
    let next = page["links"]["next"].as_str().expect("next link");
    assert_eq!(ids(&get_ok(&server, &token, next).await), order[25..50]);

    // Maximum 100 is accepted; every user fits.
    let page = get_ok(&server, &token, "/api/users?page[limit]=100").await;
    assert_eq!(ids(&page), order);
    assert!(page["links"].get("next").is_none());

    // An offset window, its neighbours and the end of the collection.
    let page = get_ok(&server, &token, "/api/users?page[offset]=10&page[limit]=5").await;
    assert_eq!(ids(&page), order[10..15]);
    assert_eq!(page["meta"]["page"]["offset"], 10);
    assert_eq!(page["links"]["self"], "/api/users?page[offset]=10&page[limit]=5");
    let first = page["links"]["first"].as_str().unwrap();
    assert!(!first.contains("offset"), "links.first drops page[offset]: {first}");
    assert_eq!(ids(&get_ok(&server, &token, first).await), order[..5]);
    assert_eq!(ids(&get_ok(&server, &token, page["links"]["next"].as_str().unwrap()).await), order[15..20]);
    assert_eq!(ids(&get_ok(&server, &token, page["links"]["prev"].as_str().unwrap()).await), order[5..10]);

    let page = get_ok(&server, &token, "/api/users?page[offset]=50&page[limit]=25").await;
    assert_eq!(ids(&page), order[50..]);
    assert!(page["links"].get("next").is_none(), "no next on the last page");
    let page = get_ok(&server, &token, "/api/users?page[offset]=60").await;
    assert_eq!(page["data"], json!([]));
    assert!(page["links"].get("next").is_none());

    // page[count]=true reports the total (of the filtered collection).
    let page = get_ok(&server, &token, "/api/users?page[count]=true&page[limit]=3").await;
    assert_eq!(page["meta"]["page"]["total"], USERS);
    assert_eq!(page["data"].as_array().unwrap().len(), 3);
    let next = page["links"]["next"].as_str().unwrap();
    assert!(next.contains("count"), "links keep page[count]: {next}");
    assert_eq!(get_ok(&server, &token, next).await["meta"]["page"]["total"], USERS);
    let blocked = users.iter().filter(|u| u.blocked).count();
    let page = get_ok(&server, &token, "/api/users?filter[blocked]=true&page[count]=true").await;
    assert_eq!(page["meta"]["page"]["total"], blocked);
    assert_eq!(page["data"].as_array().unwrap().len(), blocked);
    let page = get_ok(&server, &token, "/api/users?page[count]=false").await;
    assert!(page["meta"]["page"].get("total").is_none());

    // Out-of-range and malformed paging parameters.
    for (query, parameter) in [
        ("page[limit]=101", "page[limit]"),
        ("page[limit]=0", "page[limit]"),
        ("page[limit]=-1", "page[limit]"),
        ("page[limit]=ten", "page[limit]"),
        ("page[offset]=-5", "page[offset]"),
        ("page[offset]=x", "page[offset]"),
        ("page[count]=yes", "page[count]"),
        ("page[after]=garbage", "page[after]"),
        ("page[before]=%21%21%21", "page[before]"),
        // Valid base64url, but not a cursor.
        ("page[after]=eyJhIjoxfQ", "page[after]"),
        ("page[after]=x&page[before]=y", "page[before]"),
        ("page[offset]=1&page[after]=x", "page[offset]"),
        ("page[cursor]=x", "page[cursor]"),
    ] {
        let reply = call(&server, Method::GET, &format!("/api/users?{query}"), &token, None).await;
        reply.assert_bad_parameter(parameter);
    }

    // Tampered cursors: well-formed base64url JSON of the wrong shape or types.
    use base64::Engine;
    let forge = |value: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string());
    for (sort, cursor) in [
        ("email", json!([1, "id"])),
        ("email", json!(["a@example.com"])),
        ("email", json!(["a@example.com", 5])),
        ("email", json!(["a@example.com", "id", "extra"])),
        ("inserted_at", json!(["2026-01-01T00:00:00Z", "id"])),
        ("inserted_at", json!([true, "id"])),
        ("inserted_at", json!([1.5, "id"])),
        ("email", json!({"email": "a@example.com", "id": "id"})),
    ] {
        for direction in ["after", "before"] {
            let path = format!("/api/users?sort={sort}&page[{direction}]={}", forge(cursor.clone()));
            let reply = call(&server, Method::GET, &path, &token, None).await;
            reply.assert_bad_parameter(&format!("page[{direction}]"));
        }
    }

    // A cursor made for one sort order is refused for another.
    let page = get_ok(&server, &token, "/api/users?sort=email&page[limit]=5").await;
    let next = page["links"]["next"].as_str().unwrap();
    let cursor = next.split("after%5D=").nth(1).or_else(|| next.split("after]=").nth(1)).expect(next);
    let reply = call(
        &server,
        Method::GET,
        &format!("/api/users?sort=email,-inserted_at&page[after]={cursor}"),
        &token,
        None,
    )
    .await;
    reply.assert_bad_parameter("page[after]");
    // ...but the same cursor works with its own sort order.
    let page =
        get_ok(&server, &token, &format!("/api/users?sort=email&page[limit]=5&page[after]={cursor}")).await;
    assert_eq!(ids(&page), expected(&users, &[("email", false)])[5..10]);
});

db_test!(keyset_pages_stay_consistent_under_inserts_and_deletes, |server| {
    // Keyset paging is stable when rows appear or vanish between pages:
    // no row is skipped or repeated among those that exist throughout.
    let token = server.admin_token().await;
    let mut ids_created = Vec::new();
    for i in 0..9 {
        ids_created.push(create_role(&server, &token, &format!("role-{i}")).await);
    }
    let page = get_ok(&server, &token, "/api/roles?sort=name&page[limit]=3").await;
    assert_eq!(ids(&page), ids_created[..3]);
    // A role sorting before the cursor appears, and one on the next page vanishes.
    create_role(&server, &token, "role-0a").await;
    let reply = call(&server, Method::DELETE, &format!("/api/roles/{}", ids_created[3]), &token, None).await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    let page2 = get_ok(&server, &token, page["links"]["next"].as_str().unwrap()).await;
    assert_eq!(ids(&page2), ids_created[4..7]);
    let page3 = get_ok(&server, &token, page2["links"]["next"].as_str().unwrap()).await;
    assert_eq!(ids(&page3), ids_created[7..9]);
    assert!(page3["links"].get("next").is_none());
    // Back from page 2: the inserted role now precedes the first three.
    let back = get_ok(&server, &token, page2["links"]["prev"].as_str().unwrap()).await;
    let names: Vec<&str> =
        back["data"].as_array().unwrap().iter().map(|r| r["attributes"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["role-0a", "role-1", "role-2"]);
});

// Rows with equal sort values are ordered by id in the direction of the
// first sort key (ids are UUIDv7), so "newest first" stays newest first even
// within one microsecond, and keyset pages walk the ties without skipping.
db_test!(ties_break_by_id_in_the_first_keys_direction, |server| {
    let token = server.admin_token().await;
    let mut created = Vec::new();
    for i in 0..3 {
        created.push(create_user(&server, &token, json!({"email": format!("tie{i}@example.com")})).await);
    }
    sqlx::query("UPDATE users SET inserted_at = 1700000000000000")
        .execute(server.core.db.pool())
        .await
        .expect("equal timestamps");
    let mut newest_first = created.clone();
    newest_first.reverse();

    let page = get_ok(&server, &token, "/api/users?sort=-inserted_at").await;
    assert_eq!(ids(&page), newest_first);
    let page = get_ok(&server, &token, "/api/users?sort=inserted_at").await;
    assert_eq!(ids(&page), created);

    // One row per page, forwards through the ties and back again.
    let mut walked = Vec::new();
    let mut next = Some("/api/users?sort=-inserted_at&page[limit]=1".to_owned());
    let mut last = Value::Null;
    while let Some(path) = next {
        last = get_ok(&server, &token, &path).await;
        walked.extend(ids(&last));
        next = last["links"]["next"].as_str().map(str::to_owned);
    }
    assert_eq!(walked, newest_first);
    let mut back = ids(&last);
    let mut prev = last["links"]["prev"].as_str().map(str::to_owned);
    while let Some(path) = prev {
        let page = get_ok(&server, &token, &path).await;
        back.splice(0..0, ids(&page));
        prev = page["links"]["prev"].as_str().map(str::to_owned);
    }
    assert_eq!(back, newest_first);
});
