//! The keys tokens are signed with: `JWT_PRIVATE_KEY` when it is set, otherwise one made at
//! first start and kept in the database, so every replica signs with the same key. Every key
//! not retired is published, so a token stays valid until its key is retired.
//!
//! Rotation adds a key that is published at once but signs only after [`ACTIVATION`], longer
//! than the services wait before fetching the keys again for an unknown `kid`: by the time
//! a token names the new key, every service can know it. The old key is retired after that.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey};
use sqlx::PgPool;

/// How long after a rotation the new key starts signing.
pub(crate) const ACTIVATION: Duration = Duration::from_secs(30);

/// A private key and the `kid` its tokens name.
pub(crate) struct SigningKey {
    pub(crate) kid: String,
    pub(crate) key: EncodingKey,
    public: Jwk,
}

impl SigningKey {
    /// Reads an RSA private key in PEM (PKCS#1 or PKCS#8); its `kid` is the RFC 7638
    /// thumbprint of its public key, the same wherever the key is read.
    fn from_pem(pem: &str) -> anyhow::Result<Self> {
        let key = EncodingKey::from_rsa_pem(pem.as_bytes())
            .context("the key is not an RSA private key in PEM")?;
        let mut public = Jwk::from_encoding_key(&key, Algorithm::RS256)?;
        let kid = public.thumbprint(ThumbprintHash::SHA256)?;
        public.common.key_id = Some(kid.clone());
        public.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(Self { kid, key, public })
    }
}

/// The signing key in use and the way to list every published key.
pub(crate) struct KeyRing {
    pool: PgPool,
    configured: Option<Arc<SigningKey>>,
    current: RwLock<Option<Arc<SigningKey>>>,
}

impl KeyRing {
    /// `configured` is `JWT_PRIVATE_KEY`'s value: a PEM, or the path of a PEM file.
    ///
    /// # Errors
    /// When the configured key cannot be read.
    pub(crate) fn new(pool: PgPool, configured: Option<&str>) -> anyhow::Result<Self> {
        let configured = configured
            .map(|value| {
                let pem = if value.trim_start().starts_with("-----BEGIN") {
                    value.to_owned()
                } else {
                    std::fs::read_to_string(value)
                        .with_context(|| format!("cannot read JWT_PRIVATE_KEY's file {value}"))?
                };
                SigningKey::from_pem(&pem).context(
                    "JWT_PRIVATE_KEY must be an RSA private key in PEM, or the path of one",
                )
            })
            .transpose()?
            .map(Arc::new);
        Ok(Self {
            pool,
            current: RwLock::new(configured.clone()),
            configured,
        })
    }

    /// Loads the key that signs now (the newest one past its activation, or the only one),
    /// making one when there is none. Replicas that start together make one key between
    /// them (an advisory lock orders them).
    ///
    /// # Errors
    /// When the database fails.
    pub(crate) async fn load(&self) -> anyhow::Result<()> {
        if self.configured.is_some() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('conveyor users signing key'))")
            .execute(&mut *tx)
            .await?;
        let newest: Option<String> = sqlx::query_scalar(SIGNING_NOW)
            .bind(ACTIVATION.as_secs_f64())
            .fetch_optional(&mut *tx)
            .await?;
        let key = match newest {
            Some(pem) => SigningKey::from_pem(&pem)?,
            None => {
                let pem = tokio::task::spawn_blocking(generate_pem).await??;
                let key = SigningKey::from_pem(&pem)?;
                sqlx::query("INSERT INTO signing_keys (kid, private_key_pem) VALUES ($1, $2)")
                    .bind(&key.kid)
                    .bind(&pem)
                    .execute(&mut *tx)
                    .await?;
                tracing::info!(kid = %key.kid, "Made a token signing key.");
                key
            }
        };
        tx.commit().await?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(key));
        Ok(())
    }

    /// Adds a new key: published now, signing after [`ACTIVATION`].
    ///
    /// # Errors
    /// When `JWT_PRIVATE_KEY` is set (rotate it there), or the database fails.
    pub(crate) async fn rotate(&self) -> Result<String, RotateError> {
        if self.configured.is_some() {
            return Err(RotateError::Configured);
        }
        let pem = tokio::task::spawn_blocking(generate_pem)
            .await
            .map_err(anyhow::Error::from)??;
        let key = SigningKey::from_pem(&pem)?;
        sqlx::query("INSERT INTO signing_keys (kid, private_key_pem) VALUES ($1, $2)")
            .bind(&key.kid)
            .bind(&pem)
            .execute(&self.pool)
            .await
            .map_err(anyhow::Error::from)?;
        tracing::info!(kid = %key.kid, "Added a token signing key; it signs after its activation.");
        Ok(key.kid)
    }

    /// Stops publishing `kid`: tokens it signed are refused once the services fetch the keys
    /// again (at most five minutes). Returns whether there was such a key to retire.
    ///
    /// # Errors
    /// When `kid` is the key that signs now, or the database fails.
    pub(crate) async fn retire(&self, kid: &str) -> Result<bool, RetireError> {
        // With JWT_PRIVATE_KEY set, that key alone signs; keys left in the database from
        // before only verify, and may all be retired.
        let still_signing = match &self.configured {
            Some(configured) => configured.kid == kid,
            None => {
                let signing: Option<String> = sqlx::query_scalar(SIGNING_NOW)
                    .bind(ACTIVATION.as_secs_f64())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(anyhow::Error::from)?;
                let signing = signing.as_deref().map(SigningKey::from_pem).transpose()?;
                signing.is_some_and(|key| key.kid == kid)
            }
        };
        if still_signing {
            return Err(RetireError::StillSigning);
        }
        let retired = sqlx::query(
            "UPDATE signing_keys SET retired_at = clock_timestamp() WHERE kid = $1 AND retired_at IS NULL",
        )
        .bind(kid)
        .execute(&self.pool)
        .await
        .map_err(anyhow::Error::from)?;
        Ok(retired.rows_affected() == 1)
    }

    /// The key new tokens are signed with.
    pub(crate) fn signer(&self) -> Option<Arc<SigningKey>> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Every public key a valid token may name: the configured one and every key of the
    /// database not retired.
    ///
    /// # Errors
    /// When the database fails.
    pub(crate) async fn published(&self) -> anyhow::Result<JwkSet> {
        let pems: Vec<String> =
            sqlx::query_scalar("SELECT private_key_pem FROM signing_keys WHERE retired_at IS NULL")
                .fetch_all(&self.pool)
                .await?;
        let mut keys = Vec::new();
        if let Some(configured) = &self.configured {
            keys.push(configured.public.clone());
        }
        for pem in pems {
            keys.push(SigningKey::from_pem(&pem)?.public);
        }
        Ok(JwkSet { keys })
    }
}

/// The key that signs now: the newest one past its activation, else the oldest one (a key
/// made at first start signs at once). `$1` is the activation in seconds.
const SIGNING_NOW: &str = "SELECT private_key_pem FROM signing_keys WHERE retired_at IS NULL
     ORDER BY created_at <= clock_timestamp() - make_interval(secs => $1) DESC,
              CASE WHEN created_at <= clock_timestamp() - make_interval(secs => $1)
                   THEN created_at END DESC NULLS LAST,
              created_at
     LIMIT 1";

/// Why no key was added.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RotateError {
    #[error("the signing key comes from JWT_PRIVATE_KEY: rotate it there")]
    Configured,
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// Why a key cannot be retired.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RetireError {
    #[error(
        "this key signs tokens now: rotate first (POST /auth/keys), and retire it once the new key signs"
    )]
    StillSigning,
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// A new 2048-bit RSA key in PKCS#8 PEM.
fn generate_pem() -> anyhow::Result<String> {
    let pair = KeyPair::generate(KeySize::Rsa2048)
        .map_err(|_| anyhow::anyhow!("cannot generate an RSA key"))?;
    let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair)
        .map_err(|_| anyhow::anyhow!("cannot encode the RSA key"))?;
    let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line)?);
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_reads_back_with_a_stable_kid() {
        let pem = generate_pem().unwrap();
        let first = SigningKey::from_pem(&pem).unwrap();
        let again = SigningKey::from_pem(&pem).unwrap();
        assert_eq!(first.kid, again.kid);
        assert!(first.kid.len() >= 40, "{}", first.kid);
        let other = SigningKey::from_pem(&generate_pem().unwrap()).unwrap();
        assert_ne!(first.kid, other.kid);
    }
}
