//! `tierup token`: mint a token the local stack accepts.

use anyhow::{anyhow, Result};
use clap::Args;
use shared::auth::{mint_es256, Role, TokenRequest};

use super::keys::SigningKey;
use crate::settings::Paths;

/// The issuer the local stack trusts.
pub const LOCAL_ISSUER: &str = "tierup-local";
/// The audience the local stack expects.
pub const LOCAL_AUDIENCE: &str = "tierup";
/// The claim carrying the role.
pub const LOCAL_ROLE_CLAIM: &str = "role";

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// admin, service or user
    #[arg(long, value_parser = parse_role)]
    pub role: Role,
    /// Subject (user id for role user); default `local-<role>`
    #[arg(long)]
    pub sub: Option<String>,
    /// Lifetime in seconds
    #[arg(long, default_value_t = 3600)]
    pub ttl: i64,
    #[arg(long, env = "AUTH_ISSUER", default_value = LOCAL_ISSUER)]
    pub issuer: String,
    #[arg(long, env = "AUTH_AUDIENCE", default_value = LOCAL_AUDIENCE)]
    pub audience: String,
    #[arg(long, env = "AUTH_ROLE_CLAIM", default_value = LOCAL_ROLE_CLAIM)]
    pub role_claim: String,
}

pub fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| format!("{text:?} is not admin, service or user"))
}

pub fn run(paths: &Paths, args: &TokenArgs) -> Result<()> {
    let key = super::keys::load(&paths.state)?;
    println!("{}", mint(&key, args)?);
    Ok(())
}

pub fn mint(key: &SigningKey, args: &TokenArgs) -> Result<String> {
    let default_sub = format!("local-{}", args.role.as_str());
    let request = TokenRequest {
        issuer: &args.issuer,
        audience: &args.audience,
        role_claim: &args.role_claim,
        sub: args.sub.as_deref().unwrap_or(&default_sub),
        role: args.role,
        ttl_seconds: args.ttl,
        now_epoch: chrono::Utc::now().timestamp(),
    };
    mint_es256(&key.pem()?, &key.kid, &request).map_err(|e| anyhow!("minting the token: {e}"))
}

/// A local token for `role` with the local issuer, audience and claim.
pub fn local_token(key: &SigningKey, role: Role, ttl: i64) -> Result<String> {
    token_with(key, role, ttl, |_, default| default.to_string())
}

/// A token for `role` with the issuer, audience and claim from the environment (a running
/// local stack's `.local/stack.env` provides them), falling back to the local constants.
pub fn env_token(key: &SigningKey, role: Role, ttl: i64) -> Result<String> {
    token_with(key, role, ttl, |name, default| {
        std::env::var(name).unwrap_or_else(|_| default.to_string())
    })
}

/// A token whose issuer, audience and claim come from `setting(variable, local default)`.
fn token_with(
    key: &SigningKey,
    role: Role,
    ttl: i64,
    setting: impl Fn(&str, &str) -> String,
) -> Result<String> {
    mint(
        key,
        &TokenArgs {
            role,
            sub: None,
            ttl,
            issuer: setting("AUTH_ISSUER", LOCAL_ISSUER),
            audience: setting("AUTH_AUDIENCE", LOCAL_AUDIENCE),
            role_claim: setting("AUTH_ROLE_CLAIM", LOCAL_ROLE_CLAIM),
        },
    )
}
