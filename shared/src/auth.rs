//! JWT authentication and authorization.
//!
//! Tokens are asymmetric (RS256 or ES256) and verified against a JWKS with a configured
//! issuer and audience, the same way locally (a key `tierup keys init` generates) and in AWS
//! (for example a Cognito user pool, whose JWKS URL is configured). The caller's role comes from
//! a configurable claim (`role` by default; `cognito:groups` for Cognito), which may be a string
//! or an array of strings; the most privileged recognised role wins.

use std::collections::HashMap;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::AuthConfig;

/// The roles tierup knows, most privileged first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages experiments, campaigns and catalogs; reads all analytics.
    Admin,
    /// A backend service: ingests events, assigns, records.
    Service,
    /// An end user: only their own user id.
    User,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "service" => Some(Role::Service),
            "user" => Some(Role::User),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Service => "service",
            Role::User => "user",
        }
    }

    fn rank(self) -> u8 {
        match self {
            Role::Admin => 3,
            Role::Service => 2,
            Role::User => 1,
        }
    }
}

/// Who is calling: the verified subject and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub sub: String,
    pub role: Role,
}

impl Principal {
    /// Ok when the principal holds one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), AuthError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(AuthError::Forbidden(format!(
                "role '{}' may not do this; allowed: {}",
                self.role.as_str(),
                roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    }

    /// Ok when the principal may read or act on `user_id`: admins and services always,
    /// users only on their own id (their `sub`).
    pub fn require_user_access(&self, user_id: &str) -> Result<(), AuthError> {
        match self.role {
            Role::Admin | Role::Service => Ok(()),
            Role::User if self.sub == user_id => Ok(()),
            Role::User => Err(AuthError::Forbidden(
                "a user token may only access its own user id".to_string(),
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    MissingToken,
    #[error("invalid token: {0}")]
    InvalidToken(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("could not load the JWKS from {url}: {reason}")]
    Jwks { url: String, reason: String },
}

struct VerificationKey {
    key: DecodingKey,
    alg: Algorithm,
}

/// Verifies bearer tokens against a JWKS. Built once per cold start.
pub struct Verifier {
    keys: HashMap<String, VerificationKey>,
    issuer: String,
    audience: String,
    role_claim: String,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("role_claim", &self.role_claim)
            .finish()
    }
}

impl Verifier {
    /// Loads the JWKS named by the configuration (`file://` or `https://`).
    pub async fn load(config: &AuthConfig) -> Result<Verifier, AuthError> {
        let url = config.jwks_url.as_str();
        let jwks_err = |reason: String| AuthError::Jwks {
            url: url.to_string(),
            reason,
        };
        let text = if let Some(path) = url.strip_prefix("file://") {
            tokio::fs::read_to_string(path)
                .await
                .map_err(|e| jwks_err(e.to_string()))?
        } else if url.starts_with("https://") || url.starts_with("http://") {
            let response = reqwest::get(url)
                .await
                .map_err(|e| jwks_err(e.to_string()))?;
            if !response.status().is_success() {
                return Err(jwks_err(format!("status {}", response.status())));
            }
            response.text().await.map_err(|e| jwks_err(e.to_string()))?
        } else {
            return Err(jwks_err(
                "the JWKS URL must start with file://, https:// or http://".to_string(),
            ));
        };
        Verifier::from_jwks_json(&text, &config.issuer, &config.audience, &config.role_claim)
            .map_err(|e| match e {
                AuthError::InvalidToken(reason) => jwks_err(reason),
                other => other,
            })
    }

    /// Builds a verifier from JWKS text. Keys without a `kid` or with an algorithm other than
    /// RS256 / ES256 are skipped; at least one usable key is required.
    pub fn from_jwks_json(
        jwks: &str,
        issuer: &str,
        audience: &str,
        role_claim: &str,
    ) -> Result<Verifier, AuthError> {
        let set: JwkSet = serde_json::from_str(jwks)
            .map_err(|e| AuthError::InvalidToken(format!("JWKS is not valid: {e}")))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            let alg = match &jwk.algorithm {
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(p)
                    if p.curve == jsonwebtoken::jwk::EllipticCurve::P256 =>
                {
                    Algorithm::ES256
                }
                _ => continue,
            };
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|e| AuthError::InvalidToken(format!("JWK '{kid}': {e}")))?;
            keys.insert(kid, VerificationKey { key, alg });
        }
        if keys.is_empty() {
            return Err(AuthError::InvalidToken(
                "the JWKS holds no RS256 or ES256 key with a kid".to_string(),
            ));
        }
        Ok(Verifier {
            keys,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            role_claim: role_claim.to_string(),
        })
    }

    /// Verifies an `Authorization` header value (`Bearer <jwt>`).
    pub fn verify_header(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        let header = header.ok_or(AuthError::MissingToken)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(AuthError::MissingToken)?
            .trim();
        self.verify(token)
    }

    /// Verifies a compact JWT: signature by a JWKS key (chosen by `kid`), `alg` matching that
    /// key, `exp` / `nbf`, issuer, audience, a `sub` and a recognised role.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::InvalidToken(e.to_string()))?;
        let kid = header
            .kid
            .ok_or_else(|| AuthError::InvalidToken("token header has no kid".to_string()))?;
        let key = self
            .keys
            .get(&kid)
            .ok_or_else(|| AuthError::InvalidToken(format!("unknown signing key '{kid}'")))?;
        if header.alg != key.alg {
            return Err(AuthError::InvalidToken(format!(
                "algorithm {:?} does not match the key's {:?}",
                header.alg, key.alg
            )));
        }
        let mut validation = Validation::new(key.alg);
        validation.set_issuer(&[&self.issuer]);
        // The audience is checked below, as API Gateway's JWT authorizer does it.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 30;
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key.key, &validation)
                .map_err(|e| AuthError::InvalidToken(e.to_string()))?;
        let claims = data.claims;
        if !audience_matches(&claims, &self.audience) {
            return Err(AuthError::InvalidToken(
                "the token is not for this audience".to_string(),
            ));
        }
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| AuthError::InvalidToken("token has no sub".to_string()))?
            .to_string();
        let role = role_from_claim(claims.get(&self.role_claim)).ok_or_else(|| {
            AuthError::Forbidden(format!(
                "claim '{}' names no tierup role (admin, service, user)",
                self.role_claim
            ))
        })?;
        Ok(Principal { sub, role })
    }
}

/// As API Gateway's JWT authorizer: the `aud` claim (a string or an array) names the
/// audience, or, for tokens without `aud` such as Cognito access tokens, `client_id` is it.
fn audience_matches(claims: &serde_json::Map<String, Value>, audience: &str) -> bool {
    match claims.get("aud") {
        Some(Value::String(a)) => a == audience,
        Some(Value::Array(items)) => items.iter().any(|a| a.as_str() == Some(audience)),
        Some(_) => false,
        None => claims.get("client_id").and_then(Value::as_str) == Some(audience),
    }
}

/// The most privileged role named by a claim that is a string (possibly space separated) or
/// an array of strings.
pub fn role_from_claim(claim: Option<&Value>) -> Option<Role> {
    let names: Vec<&str> = match claim? {
        Value::String(s) => s.split([' ', ',']).collect(),
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => return None,
    };
    names
        .into_iter()
        .filter_map(|n| Role::parse(n.trim()))
        .max_by_key(|r| r.rank())
}

/// What a locally minted token says.
#[derive(Debug, Clone)]
pub struct TokenRequest<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub role_claim: &'a str,
    pub sub: &'a str,
    pub role: Role,
    pub ttl_seconds: i64,
    pub now_epoch: i64,
}

/// Signs an ES256 token with a PKCS#8 PEM key. Used by `tierup token` and the end-to-end
/// tests; in AWS the identity provider issues tokens.
pub fn mint_es256(key_pem: &[u8], kid: &str, req: &TokenRequest<'_>) -> Result<String, AuthError> {
    let key = EncodingKey::from_ec_pem(key_pem)
        .map_err(|e| AuthError::InvalidToken(format!("signing key: {e}")))?;
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_string());
    let mut claims = serde_json::Map::new();
    claims.insert("iss".into(), Value::from(req.issuer));
    claims.insert("aud".into(), Value::from(req.audience));
    claims.insert("sub".into(), Value::from(req.sub));
    claims.insert("iat".into(), Value::from(req.now_epoch));
    claims.insert("exp".into(), Value::from(req.now_epoch + req.ttl_seconds));
    claims.insert(req.role_claim.into(), Value::from(req.role.as_str()));
    jsonwebtoken::encode(&header, &claims, &key)
        .map_err(|e| AuthError::InvalidToken(format!("signing: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::pkcs8::{EncodePrivateKey, LineEnding};

    struct Keys {
        pem: String,
        jwks: String,
    }

    fn keys(kid: &str) -> Keys {
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let pem = secret.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        let mut jwk: Value = serde_json::from_str(&secret.public_key().to_jwk_string()).unwrap();
        jwk["kid"] = Value::from(kid);
        jwk["alg"] = Value::from("ES256");
        jwk["use"] = Value::from("sig");
        Keys {
            pem,
            jwks: serde_json::json!({ "keys": [jwk] }).to_string(),
        }
    }

    fn request(role: Role, sub: &str) -> TokenRequest<'_> {
        TokenRequest {
            issuer: "https://issuer.test",
            audience: "tierup",
            role_claim: "role",
            sub,
            role,
            ttl_seconds: 600,
            now_epoch: chrono::Utc::now().timestamp(),
        }
    }

    fn verifier(jwks: &str) -> Verifier {
        Verifier::from_jwks_json(jwks, "https://issuer.test", "tierup", "role").unwrap()
    }

    #[test]
    fn a_token_signed_by_the_jwks_key_yields_its_subject_and_role() {
        let k = keys("k1");
        let token = mint_es256(k.pem.as_bytes(), "k1", &request(Role::Service, "svc-1")).unwrap();
        let p = verifier(&k.jwks)
            .verify_header(Some(&format!("Bearer {token}")))
            .unwrap();
        assert_eq!(
            p,
            Principal {
                sub: "svc-1".into(),
                role: Role::Service
            }
        );
    }

    #[test]
    fn an_unsigned_token_is_rejected() {
        let k = keys("k1");
        let header = r#"{"alg":"none","typ":"JWT","kid":"k1"}"#;
        let now = chrono::Utc::now().timestamp();
        let claims = format!(
            r#"{{"iss":"https://issuer.test","aud":"tierup","sub":"a","exp":{},"role":"admin"}}"#,
            now + 60
        );
        use base64_engine::encode;
        let token = format!("{}.{}.", encode(header), encode(&claims));
        assert!(verifier(&k.jwks).verify(&token).is_err());
    }

    mod base64_engine {
        /// Unpadded base64url, enough to forge a test token.
        pub fn encode(input: &str) -> String {
            const ALPHABET: &[u8] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let bytes = input.as_bytes();
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let b = [
                    chunk[0],
                    *chunk.get(1).unwrap_or(&0),
                    *chunk.get(2).unwrap_or(&0),
                ];
                let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
                for i in 0..=chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                }
            }
            out
        }
    }

    #[test]
    fn a_token_signed_by_another_key_is_rejected() {
        let k = keys("k1");
        let other = keys("k1");
        let token = mint_es256(other.pem.as_bytes(), "k1", &request(Role::Admin, "a")).unwrap();
        assert!(matches!(
            verifier(&k.jwks).verify(&token),
            Err(AuthError::InvalidToken(_))
        ));
    }

    #[test]
    fn wrong_issuer_audience_or_expiry_is_rejected() {
        let k = keys("k1");
        let mut r = request(Role::Admin, "a");
        r.issuer = "https://evil.test";
        let t = mint_es256(k.pem.as_bytes(), "k1", &r).unwrap();
        assert!(verifier(&k.jwks).verify(&t).is_err());

        let mut r = request(Role::Admin, "a");
        r.audience = "someone-else";
        let t = mint_es256(k.pem.as_bytes(), "k1", &r).unwrap();
        assert!(verifier(&k.jwks).verify(&t).is_err());

        let mut r = request(Role::Admin, "a");
        r.now_epoch -= 7200;
        let t = mint_es256(k.pem.as_bytes(), "k1", &r).unwrap();
        assert!(verifier(&k.jwks).verify(&t).is_err());
    }

    #[test]
    fn an_access_token_without_aud_is_checked_by_client_id() {
        let k = keys("k1");
        let key = EncodingKey::from_ec_pem(k.pem.as_bytes()).unwrap();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("k1".into());
        let now = chrono::Utc::now().timestamp();
        let token = |client_id: &str| {
            let claims = serde_json::json!({"iss": "https://issuer.test", "client_id": client_id,
                "sub": "s", "exp": now + 60, "role": "service"});
            jsonwebtoken::encode(&header, &claims, &key).unwrap()
        };
        assert!(verifier(&k.jwks).verify(&token("tierup")).is_ok());
        assert!(verifier(&k.jwks).verify(&token("another-app")).is_err());
    }

    #[test]
    fn missing_or_malformed_header_is_missing_token() {
        let k = keys("k1");
        let v = verifier(&k.jwks);
        assert!(matches!(
            v.verify_header(None),
            Err(AuthError::MissingToken)
        ));
        assert!(matches!(
            v.verify_header(Some("Basic abc")),
            Err(AuthError::MissingToken)
        ));
    }

    #[test]
    fn rs256_tokens_verify_against_an_rsa_jwk() {
        let pem = include_bytes!("auth_fixtures/rsa-test-key.pem");
        let jwks = include_str!("auth_fixtures/rsa-test-jwks.json");
        let key = EncodingKey::from_rsa_pem(pem).unwrap();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("rsa-1".into());
        let now = chrono::Utc::now().timestamp();
        let claims = serde_json::json!({"iss": "https://issuer.test", "aud": "tierup",
            "sub": "u9", "exp": now + 60, "cognito:groups": ["user"]});
        let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
        let v = Verifier::from_jwks_json(jwks, "https://issuer.test", "tierup", "cognito:groups")
            .unwrap();
        assert_eq!(
            v.verify(&token).unwrap(),
            Principal {
                sub: "u9".into(),
                role: Role::User
            }
        );

        // A token claiming HS256 with the RSA key id is refused (no algorithm confusion).
        let mut forged = Header::new(Algorithm::HS256);
        forged.kid = Some("rsa-1".into());
        let hs = jsonwebtoken::encode(&forged, &claims, &EncodingKey::from_secret(b"k")).unwrap();
        assert!(v.verify(&hs).is_err());
    }

    #[test]
    fn cognito_groups_array_maps_to_the_most_privileged_role() {
        let claim = serde_json::json!(["beta-testers", "user", "admin"]);
        assert_eq!(role_from_claim(Some(&claim)), Some(Role::Admin));
        assert_eq!(
            role_from_claim(Some(&Value::from("service"))),
            Some(Role::Service)
        );
        assert_eq!(role_from_claim(Some(&Value::from("guest"))), None);
        assert_eq!(role_from_claim(None), None);
    }

    #[test]
    fn a_user_may_only_touch_their_own_id() {
        let user = Principal {
            sub: "u1".into(),
            role: Role::User,
        };
        assert!(user.require_user_access("u1").is_ok());
        assert!(matches!(
            user.require_user_access("u2"),
            Err(AuthError::Forbidden(_))
        ));
        let admin = Principal {
            sub: "a".into(),
            role: Role::Admin,
        };
        assert!(admin.require_user_access("u2").is_ok());
        assert!(user.require(&[Role::Service, Role::Admin]).is_err());
    }
}
