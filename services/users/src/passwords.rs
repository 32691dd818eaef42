//! Passwords and client secrets, kept as argon2id hashes. Hashing takes tens of
//! milliseconds of CPU on purpose, so it runs on the blocking pool, never on a runtime thread.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Passwords shorter than this are refused.
pub(crate) const MIN_PASSWORD_CHARS: usize = 8;
/// Longer ones are refused too: hashing cost grows with the input. A sign-in with a longer
/// password or client secret is refused before any hashing, as it cannot match.
pub(crate) const MAX_PASSWORD_BYTES: usize = platform::input::MAX_SECRET_BYTES;

/// What is wrong with a new password, if anything: too short, too long, or holding a NUL.
pub(crate) fn problem(password: &str) -> Option<String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        Some(format!(
            "password must have at least {MIN_PASSWORD_CHARS} characters"
        ))
    } else {
        platform::input::check_secret("password", password, MAX_PASSWORD_BYTES)
            .err()
            .map(|error| error.to_string())
    }
}

/// The argon2id hash of `secret`, with a fresh random salt, in PHC string form.
///
/// # Errors
/// When no random salt can be had.
pub(crate) async fn hash(secret: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || hash_now(&secret)).await?
}

fn hash_now(secret: &str) -> anyhow::Result<String> {
    let mut salt = [0_u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| anyhow::anyhow!("no random salt"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|error| anyhow::anyhow!("{error}"))?;
    Ok(Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map_err(|error| anyhow::anyhow!("cannot hash the secret: {error}"))?
        .to_string())
}

/// Whether `secret` matches `stored`. With no stored hash (an unknown login) a dummy hash
/// is checked all the same, so the answer takes as long and does not tell which logins exist.
pub(crate) async fn verify(secret: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| dummy_hash().to_owned());
        let Ok(parsed) = PasswordHash::new(&stored) else {
            return false;
        };
        let matches = Argon2::default()
            .verify_password(secret.as_bytes(), &parsed)
            .is_ok();
        matches && known
    })
    .await
    .unwrap_or(false)
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_now("not anyone's password").unwrap_or_default())
}

/// A new client secret: 32 random bytes, base64url.
///
/// # Errors
/// When no randomness can be had.
pub(crate) fn new_secret() -> anyhow::Result<String> {
    use base64::Engine;
    let mut bytes = [0_u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow::anyhow!("no randomness"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_password_has_8_characters_to_1024_bytes_and_no_nul() {
        assert_eq!(problem("correct horse"), None);
        assert!(problem("short").unwrap().contains("at least 8"));
        // Eight characters of two bytes each are eight characters.
        assert_eq!(problem(&"é".repeat(8)), None);
        assert!(
            problem(&"x".repeat(1025))
                .unwrap()
                .contains("at most 1024 bytes")
        );
        assert!(problem("correct\0horse").unwrap().contains("NUL"));
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let stored = hash("correct horse".to_owned()).await.unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(verify("correct horse".to_owned(), Some(stored.clone())).await);
        assert!(!verify("correct horsE".to_owned(), Some(stored)).await);
        assert!(!verify("not anyone's password".to_owned(), None).await);
    }
}
