//! An independent relying party built on the `openidconnect` crate (with its
//! own reqwest client) signing a user in through the hosted pages: discovery,
//! the code flow with PKCE, `state` and `nonce`, ID-token validation,
//! UserInfo, refresh rotation with reuse detection, and revocation. Only the
//! browser is ours; everything the RP checks, the crate checks.

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient, CoreClientAuthMethod,
    CoreErrorResponseType, CoreGrantType, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType,
    CoreRevocableToken, CoreSubjectIdentifierType, CoreTokenResponse, CoreUserInfoClaims,
};
use openidconnect::reqwest as rp_reqwest;
use openidconnect::{
    AccessToken, AdditionalProviderMetadata, AsyncHttpClient, AuthorizationCode, ClaimsVerificationError,
    ClientId, ClientSecret, ConfigurationError, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    IntrospectionUrl, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, ProviderMetadata,
    RedirectUrl, RefreshToken, RequestTokenError, ResponseTypes, RevocationUrl, Scope, StandardErrorResponse,
    TokenIntrospectionResponse, TokenResponse, UserInfoError,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::support::{Browser, REDIRECT_URI, TestClient, claims_of, create_client, create_person, query_of};
use crate::db_test;
use crate::harness::TestServer;
use crate::oauth::rp::rp_http_client;

const EMAIL: &str = "ada@example.com";

/// The discovery fields beyond what `CoreProviderMetadata` models, the way
/// the crate's docs extend it (its `google` example does the same).
#[derive(Clone, Debug, Deserialize, Serialize)]
struct ExtraMetadata {
    introspection_endpoint: IntrospectionUrl,
    revocation_endpoint: RevocationUrl,
    end_session_endpoint: String,
    code_challenge_methods_supported: Vec<String>,
}

impl AdditionalProviderMetadata for ExtraMetadata {}

/// `CoreProviderMetadata` with [`ExtraMetadata`].
type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// A client from discovery, with introspection and revocation set.
type RpClient =
    CoreClient<EndpointSet, EndpointNotSet, EndpointSet, EndpointSet, EndpointMaybeSet, EndpointMaybeSet>;

/// The crate's HTTP error with its reqwest client.
type HttpError = openidconnect::HttpClientError<rp_reqwest::Error>;
/// What a failed token request looks like through the crate.
type TokenError = RequestTokenError<HttpError, StandardErrorResponse<CoreErrorResponseType>>;

/// Discovers `acme-test` with the crate (which also fetches the JWKS and
/// checks that the document's issuer is the one asked for).
async fn discover(server: &TestServer, http: &rp_reqwest::Client) -> Metadata {
    let issuer = IssuerUrl::new(server.issuer("acme-test")).unwrap();
    Metadata::discover_async(issuer, http).await.expect("OIDC discovery through the crate")
}

fn rp_client(metadata: &Metadata, client_id: &str, secret: Option<&str>) -> RpClient {
    let extra = metadata.additional_metadata();
    CoreClient::from_provider_metadata(
        metadata.clone(),
        ClientId::new(client_id.to_owned()),
        secret.map(|s| ClientSecret::new(s.to_owned())),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT_URI.to_owned()).unwrap())
    .set_introspection_url(extra.introspection_endpoint.clone())
    .set_revocation_url(extra.revocation_endpoint.clone())
}

/// A user, a first-party confidential client, discovery and the RP.
struct Setup {
    http: rp_reqwest::Client,
    metadata: Metadata,
    client: RpClient,
    registered: TestClient,
    user_id: String,
}

async fn setup(server: &TestServer, attributes: serde_json::Value) -> Setup {
    let admin = server.admin_token().await;
    let user_id = create_person(server, &admin, EMAIL).await;
    let registered = create_client(server, &admin, attributes).await;
    let http = rp_http_client();
    let metadata = discover(server, &http).await;
    let secret = Some(registered.creds.client_secret.as_str()).filter(|s| !s.is_empty());
    let client = rp_client(&metadata, &registered.creds.client_id, secret);
    Setup { http, metadata, client, registered, user_id }
}

fn confidential() -> serde_json::Value {
    json!({"name": "Independent RP", "first_party": true})
}

/// What one sign-in gave the RP.
struct SignedIn {
    tokens: CoreTokenResponse,
    nonce: Nonce,
}

impl SignedIn {
    fn refresh_token(&self) -> RefreshToken {
        self.tokens.refresh_token().expect("a refresh token (offline_access was granted)").clone()
    }
}

/// Builds the authorization URL with the crate, drives it with the browser,
/// checks the response (`state`, RFC 9207 `iss`) and redeems the code with
/// the PKCE verifier.
async fn sign_in(setup: &Setup, browser: &mut Browser<'_>) -> SignedIn {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = setup
        .client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
        .url();
    let authorization_endpoint = setup.metadata.authorization_endpoint().as_str();
    assert!(
        url.as_str().starts_with(&format!("{authorization_endpoint}?")),
        "the crate should build on the discovered authorization endpoint: {url}"
    );
    let sent = query_of(url.as_str());
    assert_eq!(sent.get("code_challenge_method").map(String::as_str), Some("S256"), "{url}");
    assert_eq!(sent.get("scope").map(String::as_str), Some("openid profile email offline_access"), "{url}");

    let redirect = browser.authorize(url.as_str(), EMAIL).await;
    assert!(redirect.starts_with(&format!("{REDIRECT_URI}?")), "expected the RP's redirect URI: {redirect}");
    let response = query_of(&redirect);
    assert!(!response.contains_key("error"), "authorization failed: {redirect}");
    assert_eq!(response.get("state"), Some(csrf.secret()), "state must come back unchanged: {redirect}");
    assert_eq!(
        response.get("iss").map(String::as_str),
        Some(setup.metadata.issuer().as_str()),
        "RFC 9207 iss must be the discovered issuer: {redirect}"
    );
    let code = response.get("code").unwrap_or_else(|| panic!("no code in {redirect}")).clone();

    let tokens = setup
        .client
        .exchange_code(AuthorizationCode::new(code))
        .expect("token endpoint discovered")
        .set_pkce_verifier(verifier)
        .request_async(&setup.http)
        .await
        .expect("code exchange through the crate");
    assert_eq!(tokens.token_type().as_ref(), "bearer");
    SignedIn { tokens, nonce }
}

/// Asserts that the crate got an RFC 6749 §5.2 `invalid_grant`.
#[track_caller]
fn assert_invalid_grant(result: Result<CoreTokenResponse, TokenError>, what: &str) {
    match result {
        Err(RequestTokenError::ServerResponse(response)) => {
            assert_eq!(response.error().as_ref(), "invalid_grant", "{what}: {response:?}");
        }
        Err(other) => panic!("{what}: expected an invalid_grant error response, got {other:?}"),
        Ok(_) => panic!("{what}: expected invalid_grant, but tokens were issued"),
    }
}

async fn refresh(setup: &Setup, token: &RefreshToken) -> Result<CoreTokenResponse, TokenError> {
    setup
        .client
        .exchange_refresh_token(token)
        .expect("token endpoint discovered")
        .request_async(&setup.http)
        .await
}

async fn userinfo(
    setup: &Setup,
    access: &AccessToken,
) -> Result<CoreUserInfoClaims, UserInfoError<HttpError>> {
    let request = setup.client.user_info(access.clone(), None).expect("userinfo endpoint discovered");
    request.request_async(&setup.http).await
}

#[track_caller]
fn assert_userinfo_unauthorized<T: std::fmt::Debug>(result: Result<T, UserInfoError<HttpError>>, what: &str) {
    match result {
        Err(UserInfoError::Response(status, body, _)) => {
            assert_eq!(status.as_u16(), 401, "{what}: {}", String::from_utf8_lossy(&body));
            let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON error body");
            assert_eq!(body["error"], "invalid_token", "{what}: {body}");
        }
        other => panic!("{what}: expected a 401 from UserInfo, got {other:?}"),
    }
}

async fn introspect_active(setup: &Setup, access: &AccessToken) -> bool {
    setup
        .client
        .introspect(access)
        .request_async(&setup.http)
        .await
        .expect("introspection through the crate")
        .active()
}

/// Revokes at the discovered endpoint by hand: the crate refuses to revoke
/// over plain http (RFC 7009 §2 requires TLS), so the request is what the
/// crate would send, RFC 7009 §2.1. A client without a secret (public)
/// sends its client_id in the body.
async fn revoke_by_hand(setup: &Setup, token: &str, hint: &str) -> u16 {
    let client_id = &setup.registered.creds.client_id;
    let secret = &setup.registered.creds.client_secret;
    let mut body = url::form_urlencoded::Serializer::new(String::new());
    body.append_pair("token", token).append_pair("token_type_hint", hint);
    let mut request =
        openidconnect::http::Request::post(setup.metadata.additional_metadata().revocation_endpoint.as_str())
            .header("content-type", "application/x-www-form-urlencoded");
    if secret.is_empty() {
        body.append_pair("client_id", client_id);
    } else {
        use base64::Engine;
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"));
        request = request.header("authorization", format!("Basic {credentials}"));
    }
    let request = request.body(body.finish().into_bytes()).unwrap();
    setup.http.call(request).await.expect("revocation request").status().as_u16()
}

db_test!(discovery_gives_an_rp_everything_for_the_code_flow, |server| {
    let http = rp_http_client();
    let metadata = discover(&server, &http).await;
    let issuer = server.issuer("acme-test");
    assert_eq!(metadata.issuer().as_str(), issuer);
    assert_eq!(metadata.authorization_endpoint().as_str(), format!("{issuer}/oauth/authorize"));
    assert_eq!(
        metadata.token_endpoint().map(|u| u.as_str().to_owned()),
        Some(format!("{issuer}/oauth/token"))
    );
    assert_eq!(
        metadata.userinfo_endpoint().map(|u| u.as_str().to_owned()),
        Some(format!("{issuer}/oauth/userinfo"))
    );
    let extra = metadata.additional_metadata();
    assert_eq!(extra.end_session_endpoint, format!("{issuer}/oauth/logout"));
    assert_eq!(extra.code_challenge_methods_supported, vec!["S256".to_owned()], "no plain PKCE");
    assert_eq!(
        metadata.id_token_signing_alg_values_supported(),
        &vec![
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            CoreJwsSigningAlgorithm::EcdsaP256Sha256,
            CoreJwsSigningAlgorithm::EdDsa
        ]
    );
    let scopes: Vec<&str> =
        metadata.scopes_supported().expect("scopes_supported").iter().map(|s| s.as_str()).collect();
    for scope in ["openid", "profile", "email", "offline_access"] {
        assert!(scopes.contains(&scope), "scopes_supported lacks {scope}: {scopes:?}");
    }
    assert_eq!(
        metadata.response_types_supported(),
        &vec![ResponseTypes::new(vec![CoreResponseType::Code])],
        "response_type=code only"
    );
    assert!(!metadata.jwks().keys().is_empty(), "the crate fetched an empty JWKS");
});

db_test!(an_rp_signs_a_user_in_and_validates_the_id_token, |server| {
    let setup = setup(&server, confidential()).await;
    let mut browser = Browser::new(&server);
    let signed_in = sign_in(&setup, &mut browser).await;
    let client_id = setup.registered.creds.client_id.clone();

    let scopes: Vec<&str> =
        signed_in.tokens.scopes().expect("scope in the token response").iter().map(|s| s.as_str()).collect();
    assert_eq!(scopes, ["openid", "profile", "email", "offline_access"]);
    assert!(signed_in.tokens.refresh_token().is_some(), "offline_access should give a refresh token");

    // The crate validates signature (ES256 against the discovered JWKS),
    // issuer, audience, expiry and nonce.
    let id_token = signed_in.tokens.id_token().expect("an ID token for openid");
    let verifier = setup.client.id_token_verifier();
    let claims = id_token.claims(&verifier, &signed_in.nonce).expect("the ID token validates");
    assert_eq!(claims.subject().as_str(), setup.user_id, "sub is the user id");
    assert_eq!(claims.issuer().as_str(), server.issuer("acme-test"));
    assert_eq!(claims.audiences().iter().map(|a| a.as_str()).collect::<Vec<_>>(), [client_id.as_str()]);
    assert_eq!(claims.nonce().map(|n| n.secret()), Some(signed_in.nonce.secret()));
    assert_eq!(claims.email().map(|e| e.as_str()), Some(EMAIL), "email scope releases email");
    assert!(claims.email_verified().is_some(), "email scope releases email_verified");
    let given = claims.given_name().and_then(|n| n.get(None)).map(|n| n.as_str().to_owned());
    assert_eq!(given.as_deref(), Some("Ada"), "profile scope releases given_name");
    let auth_time = claims.auth_time().expect("auth_time is present").timestamp();
    assert!(auth_time <= claims.issue_time().timestamp(), "auth_time after iat");
    assert!(claims.issue_time().timestamp() - auth_time < 60, "auth_time is this login");
    assert_eq!(id_token.signing_alg().expect("alg"), &CoreJwsSigningAlgorithm::EcdsaP256Sha256);

    let raw = id_token.to_string();
    let (header, raw_claims) = crate::oauth::support::decode_jwt(&raw);
    assert_eq!(header["typ"], "JWT", "ID token header: {header}");
    assert!(header["kid"].is_string(), "ID token header has a kid: {header}");
    assert!(raw_claims["sid"].is_string(), "ID token has a sid: {raw_claims}");

    // A wrong nonce, another client's audience: the crate refuses.
    let wrong = id_token.claims(&verifier, &Nonce::new("not-the-nonce".into()));
    assert!(matches!(wrong, Err(ClaimsVerificationError::InvalidNonce(_))), "wrong nonce: {wrong:?}");
    let other = rp_client(&setup.metadata, "someone-else", Some("secret"));
    let wrong = id_token.claims(&other.id_token_verifier(), &signed_in.nonce);
    assert!(matches!(wrong, Err(ClaimsVerificationError::InvalidAudience(_))), "wrong audience: {wrong:?}");

    // The access token is for UserInfo, about the same user and login.
    let access = signed_in.tokens.access_token();
    let access_claims = claims_of(access.secret());
    assert_eq!(access_claims["sub"], setup.user_id.as_str());
    assert_eq!(access_claims["client_id"], client_id.as_str());
    assert_eq!(access_claims["aud"], format!("{}/oauth/userinfo", server.issuer("acme-test")));
    assert_eq!(access_claims["auth_time"], auth_time, "access token auth_time matches the ID token's");

    // UserInfo through the crate (it checks `sub` against the ID token's).
    let info: CoreUserInfoClaims = setup
        .client
        .user_info(access.clone(), Some(claims.subject().clone()))
        .expect("userinfo endpoint discovered")
        .request_async(&setup.http)
        .await
        .expect("UserInfo through the crate");
    assert_eq!(info.subject().as_str(), setup.user_id);
    assert_eq!(info.email().map(|e| e.as_str()), Some(EMAIL));
    assert!(introspect_active(&setup, access).await, "a fresh access token introspects active");
});

db_test!(an_rp_refreshes_with_rotation_and_reuse_revokes_the_family, |server| {
    let setup = setup(&server, confidential()).await;
    let mut browser = Browser::new(&server);
    let signed_in = sign_in(&setup, &mut browser).await;
    let first = signed_in.refresh_token();
    let original = signed_in
        .tokens
        .id_token()
        .unwrap()
        .claims(&setup.client.id_token_verifier(), &signed_in.nonce)
        .unwrap()
        .clone();

    let refreshed = refresh(&setup, &first).await.expect("refresh through the crate");
    let second = refreshed.refresh_token().expect("a rotated refresh token").clone();
    assert_ne!(second.secret(), first.secret(), "the refresh token must rotate");
    assert_ne!(refreshed.access_token().secret(), signed_in.tokens.access_token().secret());
    // The refreshed ID token is about the same user and login (no nonce).
    let id_token = refreshed.id_token().expect("an ID token on refresh with openid");
    let claims = id_token
        .claims(&setup.client.id_token_verifier(), |nonce: Option<&Nonce>| match nonce {
            None => Ok(()),
            Some(_) => Err("a refreshed ID token carries no nonce".to_owned()),
        })
        .expect("the refreshed ID token validates");
    assert_eq!(claims.subject(), original.subject());
    assert_eq!(claims.auth_time(), original.auth_time(), "auth_time survives a refresh");
    let info = userinfo(&setup, refreshed.access_token()).await.expect("UserInfo with the new access token");
    assert_eq!(info.subject().as_str(), setup.user_id);

    // Reusing the rotated-out token fails, and kills the whole family.
    assert_invalid_grant(refresh(&setup, &first).await, "reusing the old refresh token");
    assert_invalid_grant(refresh(&setup, &second).await, "the newest refresh token after reuse");
    assert!(
        !introspect_active(&setup, refreshed.access_token()).await,
        "the family's access token is revoked"
    );
    assert_userinfo_unauthorized(userinfo(&setup, refreshed.access_token()).await, "after reuse");
});

db_test!(an_rp_revokes_its_refresh_token_and_the_tokens_stop_working, |server| {
    let setup = setup(&server, confidential()).await;
    let mut browser = Browser::new(&server);
    let signed_in = sign_in(&setup, &mut browser).await;
    let access = signed_in.tokens.access_token().clone();
    let refresh_token = signed_in.refresh_token();
    assert!(introspect_active(&setup, &access).await);

    // The crate will not revoke over http; send its request by hand.
    let refused = setup.client.revoke_token(CoreRevocableToken::from(refresh_token.clone()));
    assert!(matches!(refused, Err(ConfigurationError::InsecureUrl(_))), "{:?}", refused.err());
    assert_eq!(revoke_by_hand(&setup, refresh_token.secret(), "refresh_token").await, 200);

    assert!(!introspect_active(&setup, &access).await, "the access token from that family is revoked");
    assert_userinfo_unauthorized(userinfo(&setup, &access).await, "after revoking the refresh token");
    assert_invalid_grant(refresh(&setup, &refresh_token).await, "a revoked refresh token");
    assert_eq!(revoke_by_hand(&setup, refresh_token.secret(), "refresh_token").await, 200, "revoking twice");

    // The browser session is untouched: a second sign-in in the same browser
    // works, and revoking just its access token stops that token at UserInfo.
    let again = sign_in(&setup, &mut browser).await;
    let access = again.tokens.access_token().clone();
    assert!(userinfo(&setup, &access).await.is_ok());
    assert_eq!(revoke_by_hand(&setup, access.secret(), "access_token").await, 200);
    assert!(!introspect_active(&setup, &access).await, "a revoked access token introspects inactive");
    assert_userinfo_unauthorized(userinfo(&setup, &access).await, "after revoking the access token");
});

db_test!(a_public_rp_uses_pkce_and_no_secret, |server| {
    let setup =
        setup(&server, json!({"name": "Public RP", "client_type": "public", "first_party": true})).await;
    assert!(setup.registered.creds.client_secret.is_empty(), "public clients get no secret");
    let mut browser = Browser::new(&server);

    // Without PKCE the request goes back to the RP with an error.
    let (url, csrf, _) = setup
        .client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .url();
    let page = browser.get(url.as_str()).await;
    let back = query_of(page.redirect());
    assert_eq!(back.get("error").map(String::as_str), Some("invalid_request"), "{back:?}");
    assert_eq!(back.get("state"), Some(csrf.secret()), "{back:?}");

    // With PKCE: code, tokens (client_id in the body), a valid ID token.
    let signed_in = sign_in(&setup, &mut browser).await;
    let claims = signed_in
        .tokens
        .id_token()
        .expect("an ID token")
        .claims(&setup.client.id_token_verifier(), &signed_in.nonce)
        .expect("the ID token validates for a public client");
    assert_eq!(claims.subject().as_str(), setup.user_id);
    assert_eq!(
        claims.audiences().iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        [setup.registered.creds.client_id.as_str()]
    );
    let info = userinfo(&setup, signed_in.tokens.access_token()).await.expect("UserInfo");
    assert_eq!(info.email().map(|e| e.as_str()), Some(EMAIL));

    // A code redeemed with the wrong verifier is refused.
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let (url, _, _) = setup
        .client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge)
        .url();
    let redirect = browser.authorize(url.as_str(), EMAIL).await;
    let code = query_of(&redirect).remove("code").expect("a code");
    let (_, wrong_verifier) = PkceCodeChallenge::new_random_sha256();
    let result = setup
        .client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(wrong_verifier)
        .request_async(&setup.http)
        .await;
    assert_invalid_grant(result, "a wrong code_verifier");

    // Refresh rotates for public clients too; revocation by client_id works.
    let first = signed_in.refresh_token();
    let refreshed = refresh(&setup, &first).await.expect("a public client refreshes");
    let second = refreshed.refresh_token().expect("rotated").clone();
    assert_ne!(first.secret(), second.secret());
    assert_eq!(revoke_by_hand(&setup, second.secret(), "refresh_token").await, 200);
    assert_invalid_grant(refresh(&setup, &second).await, "a revoked refresh token");
    assert_userinfo_unauthorized(userinfo(&setup, refreshed.access_token()).await, "after revocation");
});
