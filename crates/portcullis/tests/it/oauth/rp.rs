//! An independent relying party built on the `openidconnect`/`oauth2` crates:
//! discovery, JWKS, client_credentials, local JWT signature validation,
//! introspection and revocation, with none of our own code on the client side.

use base64::Engine;
use openidconnect::core::{CoreClient, CoreJsonWebKeySet, CoreJwsSigningAlgorithm, CoreRevocableToken};
use openidconnect::reqwest as rp_reqwest;
use openidconnect::{
    AsyncHttpClient, ClientId, ClientSecret, EndpointNotSet, EndpointSet, IntrospectionUrl, IssuerUrl,
    JsonWebKey, JsonWebKeySetUrl, OAuth2TokenResponse, RevocationUrl, Scope, TokenIntrospectionResponse,
    TokenUrl,
};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::db_test;
use crate::harness::TestServer;

/// The discovery fields this RP needs, typed with the crate's URL types.
/// (`CoreProviderMetadata` insists on `authorization_endpoint` and
/// `id_token_signing_alg_values_supported`, which an AS offering only
/// client_credentials does not have yet.)
#[derive(Debug, Deserialize)]
struct Metadata {
    issuer: IssuerUrl,
    token_endpoint: TokenUrl,
    jwks_uri: JsonWebKeySetUrl,
    introspection_endpoint: IntrospectionUrl,
    revocation_endpoint: RevocationUrl,
}

/// openidconnect's reqwest (0.12), resolving `*.localhost` to loopback and
/// never following redirects (as the crate's docs require).
pub(crate) fn rp_http_client() -> rp_reqwest::Client {
    let loopback: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    rp_reqwest::Client::builder()
        .no_proxy()
        .redirect(rp_reqwest::redirect::Policy::none())
        .resolve("acme-test.localhost", loopback)
        .resolve("beta.localhost", loopback)
        .build()
        .unwrap()
}

async fn discover(http: &rp_reqwest::Client, issuer: &str) -> Metadata {
    let url = format!("{issuer}/.well-known/openid-configuration");
    let request =
        openidconnect::http::Request::get(url).header("accept", "application/json").body(Vec::new()).unwrap();
    let response = http.call(request).await.expect("discovery request");
    assert_eq!(response.status(), 200);
    let metadata: Metadata = serde_json::from_slice(response.body()).expect("discovery document");
    // The issuer must be exactly the one the RP started from.
    assert_eq!(metadata.issuer.as_str(), issuer);
    metadata
}

/// Verifies a compact JWS against a JWKS with the crate's key types; returns
/// the claims.
fn verify_jwt(jwks: &CoreJsonWebKeySet, token: &str) -> Result<Value, String> {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a compact JWS".into());
    };
    let header: Value = serde_json::from_slice(&engine.decode(header).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    if header["typ"] != "at+jwt" {
        return Err(format!("unexpected typ {}", header["typ"]));
    }
    let alg: CoreJwsSigningAlgorithm =
        serde_json::from_value(header["alg"].clone()).map_err(|e| e.to_string())?;
    let kid = header["kid"].as_str().ok_or("no kid")?;
    let key = jwks
        .keys()
        .iter()
        .find(|k| k.key_id().map(|id| id.as_str()) == Some(kid))
        .ok_or_else(|| format!("kid {kid} not in the JWKS"))?;
    let signature = engine.decode(signature).map_err(|e| e.to_string())?;
    let message = &token[..header_len(token)];
    key.verify_signature(&alg, message.as_bytes(), &signature).map_err(|e| e.to_string())?;
    serde_json::from_slice(&engine.decode(payload).map_err(|e| e.to_string())?).map_err(|e| e.to_string())
}

/// Length of `header.payload`, the signing input.
fn header_len(token: &str) -> usize {
    token.rfind('.').unwrap()
}

/// A client with token, introspection and revocation endpoints set.
type RpClient =
    CoreClient<EndpointNotSet, EndpointNotSet, EndpointSet, EndpointSet, EndpointSet, EndpointNotSet>;

async fn rp_token(
    client: &RpClient,
    http: &rp_reqwest::Client,
    resource: &str,
    scope: Option<&str>,
) -> String {
    let mut request = client.exchange_client_credentials().add_extra_param("resource", resource.to_owned());
    if let Some(scope) = scope {
        request = request.add_scope(Scope::new(scope.to_owned()));
    }
    let response = request.request_async(http).await.expect("client_credentials token");
    assert_eq!(response.token_type().as_ref(), "bearer");
    assert!(response.refresh_token().is_none());
    response.access_token().secret().clone()
}

async fn admin_api(server: &TestServer, method: Method, path: &str, body: Option<Value>) -> Value {
    let token = server.admin_token().await;
    let (status, body) = server.api(method, path, &token, body).await;
    assert!(status.is_success(), "{status} {body}");
    body
}

db_test!(an_independent_rp_discovers_gets_tokens_and_validates_them, |server| {
    let http = rp_http_client();
    let issuer = server.issuer("acme-test");
    let metadata = discover(&http, &issuer).await;
    let jwks = CoreJsonWebKeySet::fetch_async(&metadata.jwks_uri, &http).await.expect("JWKS");
    assert_eq!(jwks.keys().len(), 1);

    let client =
        CoreClient::new(ClientId::new(server.admin.client_id.clone()), metadata.issuer.clone(), jwks.clone())
            .set_client_secret(ClientSecret::new(server.admin.client_secret.clone()))
            .set_token_uri(metadata.token_endpoint.clone())
            .set_introspection_url(metadata.introspection_endpoint.clone())
            .set_revocation_url(metadata.revocation_endpoint.clone());

    // client_credentials (client_secret_basic is the crate's default).
    let resource = server.management_api();
    let access = rp_token(&client, &http, &resource, Some("users:read")).await;
    let claims = verify_jwt(&jwks, &access).expect("valid signature");
    assert_eq!(claims["iss"], metadata.issuer.as_str());
    assert_eq!(claims["aud"], resource);
    assert_eq!(claims["client_id"], server.admin.client_id.as_str());
    assert_eq!(claims["scope"], "users:read");

    // A tampered token fails the RP's verification.
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = access.split('.').collect();
    let mut forged_claims = claims.clone();
    forged_claims["scope"] = json!("users:read users:write");
    let forged = format!("{}.{}.{}", parts[0], engine.encode(forged_claims.to_string()), parts[2]);
    assert!(verify_jwt(&jwks, &forged).is_err());
    assert!(verify_jwt(&jwks, &crate::oauth::support::tamper_signature(&access)).is_err());
    // Another environment's token does not verify against this JWKS.
    let beta = server.create_environment("beta").await;
    let beta_token = server.management_token("beta", &beta, None).await;
    assert!(verify_jwt(&jwks, &beta_token).unwrap_err().contains("not in the JWKS"));

    // Introspection through the crate.
    let introspection = client
        .introspect(&openidconnect::AccessToken::new(access.clone()))
        .request_async(&http)
        .await
        .expect("introspection");
    assert!(introspection.active());
    assert_eq!(introspection.client_id().map(|c| c.as_str()), Some(server.admin.client_id.as_str()));
    assert_eq!(
        introspection.scopes().map(|s| s.iter().map(|s| s.as_str().to_owned()).collect::<Vec<_>>()),
        Some(vec!["users:read".to_owned()])
    );
    assert_eq!(introspection.aud(), Some(&vec![resource.clone()]));
    assert_eq!(introspection.iss(), Some(issuer.as_str()));

    // The crate refuses to revoke over plain http (RFC 7009 requires TLS)...
    let refused =
        client.revoke_token(CoreRevocableToken::AccessToken(openidconnect::AccessToken::new(access.clone())));
    assert!(matches!(refused, Err(openidconnect::ConfigurationError::InsecureUrl(_))));
    // ...so revoke at the advertised endpoint by hand, as RFC 7009 §2.1 describes.
    let credentials = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", server.admin.client_id, server.admin.client_secret));
    let request = openidconnect::http::Request::post(metadata.revocation_endpoint.as_str())
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", format!("Basic {credentials}"))
        .body(format!("token={access}&token_type_hint=access_token").into_bytes())
        .unwrap();
    let response = http.call(request).await.expect("revocation");
    assert_eq!(response.status(), 200);
    let introspection = client
        .introspect(&openidconnect::AccessToken::new(access.clone()))
        .request_async(&http)
        .await
        .expect("introspection");
    assert!(!introspection.active());
    assert!(introspection.client_id().is_none() && introspection.scopes().is_none());

    // Wrong credentials surface as the crate's server error response.
    let bad =
        CoreClient::new(ClientId::new(server.admin.client_id.clone()), metadata.issuer.clone(), jwks.clone())
            .set_client_secret(ClientSecret::new("wrong".into()))
            .set_token_uri(metadata.token_endpoint.clone());
    let error = bad
        .exchange_client_credentials()
        .add_extra_param("resource", resource.clone())
        .request_async(&http)
        .await
        .expect_err("wrong secret");
    match error {
        openidconnect::RequestTokenError::ServerResponse(response) => {
            assert_eq!(response.error().as_ref(), "invalid_client");
        }
        other => panic!("expected an OAuth error response, got {other:?}"),
    }
    // client_secret_post via the crate works too.
    let post =
        CoreClient::new(ClientId::new(server.admin.client_id.clone()), metadata.issuer.clone(), jwks.clone())
            .set_client_secret(ClientSecret::new(server.admin.client_secret.clone()))
            .set_auth_type(openidconnect::AuthType::RequestBody)
            .set_token_uri(metadata.token_endpoint.clone())
            .set_introspection_url(metadata.introspection_endpoint.clone())
            .set_revocation_url(metadata.revocation_endpoint.clone());
    let access = rp_token(&post, &http, &resource, None).await;
    verify_jwt(&jwks, &access).expect("valid signature");
});

db_test!(an_independent_rp_follows_key_rotation_for_every_algorithm, |server| {
    let http = rp_http_client();
    let metadata = discover(&http, &server.issuer("acme-test")).await;
    let client = CoreClient::new(
        ClientId::new(server.admin.client_id.clone()),
        metadata.issuer.clone(),
        CoreJsonWebKeySet::new(vec![]),
    )
    .set_client_secret(ClientSecret::new(server.admin.client_secret.clone()))
    .set_token_uri(metadata.token_endpoint.clone())
    .set_introspection_url(metadata.introspection_endpoint.clone())
    .set_revocation_url(metadata.revocation_endpoint.clone());
    let resource = server.management_api();

    let mut previous: Vec<String> = Vec::new();
    for (algorithm, key_size, alg) in
        [("es256", None, "ES256"), ("rs256", Some(2048), "RS256"), ("eddsa", None, "EdDSA")]
    {
        let mut attributes = json!({"algorithm": algorithm});
        if let Some(bits) = key_size {
            attributes["key_size"] = json!(bits);
        }
        admin_api(
            &server,
            Method::POST,
            "/api/signing-keys",
            Some(json!({"data": {"type": "signing_key", "attributes": attributes}})),
        )
        .await;
        let access = rp_token(&client, &http, &resource, None).await;
        // With the JWKS fetched before the rotation the new kid is unknown...
        if !previous.is_empty() {
            let stale = CoreJsonWebKeySet::new(vec![]);
            assert!(verify_jwt(&stale, &access).is_err());
        }
        // ...and a fresh fetch verifies it, as an RP refreshing on unknown kid does.
        let jwks = CoreJsonWebKeySet::fetch_async(&metadata.jwks_uri, &http).await.expect("JWKS");
        let (header, _) = crate::oauth::support::decode_jwt(&access);
        assert_eq!(header["alg"], alg);
        verify_jwt(&jwks, &access).unwrap_or_else(|e| panic!("{alg}: {e}"));
        // Earlier tokens still verify: their keys are active.
        for old in &previous {
            verify_jwt(&jwks, old).unwrap_or_else(|e| panic!("old token: {e}"));
        }
        previous.push(access);
    }

    // Deactivating a key removes it from the JWKS: the RP can no longer verify its tokens.
    let keys = admin_api(&server, Method::GET, "/api/signing-keys?filter[algorithm]=rs256", None).await;
    let rsa_id = keys["data"][0]["id"].as_str().unwrap().to_owned();
    admin_api(&server, Method::PATCH, &format!("/api/signing-keys/{rsa_id}/deactivate"), None).await;
    let jwks = CoreJsonWebKeySet::fetch_async(&metadata.jwks_uri, &http).await.expect("JWKS");
    assert!(verify_jwt(&jwks, &previous[1]).is_err());
    verify_jwt(&jwks, &previous[0]).expect("ES256 key still active");
    verify_jwt(&jwks, &previous[2]).expect("EdDSA key still active");
});
