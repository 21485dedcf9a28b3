//! `tierup keys init`: the local ES256 signing key and the JWKS the functions verify against.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use p256::SecretKey;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone)]
pub struct SigningKey {
    pub pem_path: PathBuf,
    pub jwks_path: PathBuf,
    pub kid: String,
}

impl SigningKey {
    pub fn pem(&self) -> Result<Vec<u8>> {
        std::fs::read(&self.pem_path)
            .with_context(|| format!("reading {}", self.pem_path.display()))
    }
}

pub const PEM_FILE: &str = "signing-key.pem";
pub const JWKS_FILE: &str = "jwks.json";

/// Creates the key pair in `dir` unless it exists; returns what is there either way.
pub fn init(dir: &Path) -> Result<SigningKey> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let pem_path = dir.join(PEM_FILE);
    let jwks_path = dir.join(JWKS_FILE);
    let secret = if pem_path.exists() {
        load_secret(&pem_path)?
    } else {
        let secret = SecretKey::random(&mut rand::rngs::OsRng);
        let pem = secret
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| anyhow!("encoding the signing key: {e}"))?;
        write_private(&pem_path, pem.as_bytes())?;
        secret
    };
    let jwk = public_jwk(&secret)?;
    if !jwks_path.exists() {
        let jwks = json!({ "keys": [jwk] });
        std::fs::write(&jwks_path, serde_json::to_string_pretty(&jwks)?)
            .with_context(|| format!("writing {}", jwks_path.display()))?;
    }
    let kid = matching_kid(&jwks_path, &jwk)?;
    Ok(SigningKey {
        pem_path,
        jwks_path,
        kid,
    })
}

/// The key in `dir`, which must exist.
pub fn load(dir: &Path) -> Result<SigningKey> {
    let pem_path = dir.join(PEM_FILE);
    if !pem_path.exists() {
        bail!(
            "{} does not exist; run `tierup keys init` first",
            pem_path.display()
        );
    }
    let jwks_path = dir.join(JWKS_FILE);
    let jwk = public_jwk(&load_secret(&pem_path)?)?;
    let kid = matching_kid(&jwks_path, &jwk)?;
    Ok(SigningKey {
        pem_path,
        jwks_path,
        kid,
    })
}

fn load_secret(path: &Path) -> Result<SecretKey> {
    let pem =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    SecretKey::from_pkcs8_pem(&pem)
        .map_err(|e| anyhow!("{} is not a P-256 PKCS#8 key: {e}", path.display()))
}

fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)
        .with_context(|| format!("writing {}", path.display()))
}

/// The public JWK with `kid` (derived from the key: `local-` and the start of `x`), `alg`
/// and `use`.
fn public_jwk(secret: &SecretKey) -> Result<Map<String, Value>> {
    let mut jwk: Map<String, Value> = serde_json::from_str(&secret.public_key().to_jwk_string())?;
    let x = jwk
        .get("x")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("the public JWK has no x coordinate"))?;
    let kid = format!("local-{}", x.chars().take(8).collect::<String>());
    jwk.insert("kid".into(), Value::from(kid));
    jwk.insert("alg".into(), Value::from("ES256"));
    jwk.insert("use".into(), Value::from("sig"));
    Ok(jwk)
}

/// The kid of the JWKS entry whose public key is `jwk`'s; an error when the JWKS on disk was
/// made for another key.
fn matching_kid(jwks_path: &Path, jwk: &Map<String, Value>) -> Result<String> {
    let text = std::fs::read_to_string(jwks_path)
        .with_context(|| format!("reading {}", jwks_path.display()))?;
    let jwks: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", jwks_path.display()))?;
    let same_key = |k: &&Value| k.get("x") == jwk.get("x") && k.get("y") == jwk.get("y");
    jwks.get("keys")
        .and_then(Value::as_array)
        .and_then(|keys| keys.iter().find(same_key))
        .and_then(|k| k.get("kid"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            anyhow!(
                "{} holds no key matching {}; delete both files to generate a new pair",
                jwks_path.display(),
                PEM_FILE
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_is_idempotent_and_the_jwks_verifies_minted_tokens() {
        let dir = std::env::temp_dir().join(format!("tierup-keys-{}", uuid::Uuid::new_v4()));
        let first = init(&dir).unwrap();
        let second = init(&dir).unwrap();
        assert_eq!(first.kid, second.kid);
        assert!(first.kid.starts_with("local-"));

        let request = shared::auth::TokenRequest {
            issuer: "tierup-local",
            audience: "tierup",
            role_claim: "role",
            sub: "svc",
            role: shared::auth::Role::Service,
            ttl_seconds: 60,
            now_epoch: chrono::Utc::now().timestamp(),
        };
        let token = shared::auth::mint_es256(&first.pem().unwrap(), &first.kid, &request).unwrap();
        let jwks = std::fs::read_to_string(&first.jwks_path).unwrap();
        let verifier =
            shared::auth::Verifier::from_jwks_json(&jwks, "tierup-local", "tierup", "role")
                .unwrap();
        assert_eq!(verifier.verify(&token).unwrap().sub, "svc");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
