//! Checking a token: RS256 only, issuer, audience, `exp` and `nbf` with a small leeway, the
//! key chosen by `kid` from the published set. Keys are cached; an unknown `kid` refetches
//! them at most once per interval, and a failed fetch keeps the keys already known, so a
//! users outage neither opens the door nor locks out holders of valid tokens.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::{AUDIENCE, Caller, Claims, ISSUER};

/// Seconds of clock difference forgiven on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 30;
/// Longer than any token users issues; a bigger header is refused before it is parsed.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// How often an unknown `kid` may refetch the key set after a fetch that worked.
const REFETCH_AFTER_SUCCESS: Duration = Duration::from_secs(10);
/// ... and after one that failed (users not up yet, say).
const REFETCH_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// Keys fetched longer ago than this are fetched again at the next token, so a retired key
/// stops being trusted within this time even if no unknown `kid` ever comes.
const KEYS_MAX_AGE: Duration = Duration::from_secs(300);

/// Why a token was refused. Every variant but [`AuthError::KeysUnavailable`] is the
/// client's: a 401.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "this needs a bearer token: send `Authorization: Bearer <token>` (get one from POST /auth/token)"
    )]
    Missing,
    #[error("the token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("the token is not a well-formed RS256 JWT with a kid: {0}")]
    Malformed(String),
    #[error("the token was signed with a key this service does not know (kid {0:?})")]
    UnknownKey(String),
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error(
        "the service cannot check tokens now: the signing keys could not be fetched; try again shortly"
    )]
    KeysUnavailable,
}

/// Fetches the current set of public keys.
pub type KeyFetch =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = anyhow::Result<JwkSet>> + Send>> + Send + Sync>;

/// Verifies tokens against a cached key set.
pub struct Verifier {
    keys: RwLock<HashMap<String, DecodingKey>>,
    fetch: KeyFetch,
    /// When the keys were last fetched and whether that worked; the lock also makes
    /// concurrent requests with an unknown `kid` wait for one fetch.
    last_fetch: tokio::sync::Mutex<Option<(Instant, bool)>>,
    /// When the keys were last fetched successfully.
    refreshed: RwLock<Option<Instant>>,
    validation: Validation,
}

impl Verifier {
    pub fn new(fetch: KeyFetch) -> Arc<Self> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECONDS;
        Arc::new(Self {
            keys: RwLock::default(),
            fetch,
            last_fetch: tokio::sync::Mutex::default(),
            refreshed: RwLock::default(),
            validation,
        })
    }

    /// Keys from a JWKS document at `url` (users' `/.well-known/jwks.json`).
    pub fn from_jwks_url(url: String) -> Arc<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default();
        Self::new(Arc::new(move || {
            let (client, url) = (client.clone(), url.clone());
            Box::pin(async move {
                let response = client.get(&url).send().await?.error_for_status()?;
                Ok(response.json::<JwkSet>().await?)
            })
        }))
    }

    /// The caller a token speaks for.
    ///
    /// # Errors
    /// Why the token is refused.
    pub async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLarge);
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|error| AuthError::Malformed(error.to_string()))?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Malformed(format!(
                "alg {:?} is not RS256",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Malformed("no kid in the header".to_owned()))?;
        if self.keys_are_old() {
            self.refetch().await?;
        }
        let key = match self.key(&kid) {
            Some(key) => key,
            None => {
                self.refetch().await?;
                self.key(&kid).ok_or(AuthError::UnknownKey(kid))?
            }
        };
        let data = jsonwebtoken::decode::<Claims>(token, &key, &self.validation)
            .map_err(|error| AuthError::Invalid(error.to_string()))?;
        Ok(Caller::from_claims(&data.claims))
    }

    fn keys_are_old(&self) -> bool {
        self.refreshed
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_none_or(|at| at.elapsed() >= KEYS_MAX_AGE)
    }

    fn key(&self, kid: &str) -> Option<DecodingKey> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(kid)
            .cloned()
    }

    /// Fetches the keys again unless that was done too recently. Fails only when no key
    /// is known at all and none could be fetched.
    async fn refetch(&self) -> Result<(), AuthError> {
        let mut last = self.last_fetch.lock().await;
        let due = match *last {
            None => true,
            Some((at, true)) => at.elapsed() >= REFETCH_AFTER_SUCCESS,
            Some((at, false)) => at.elapsed() >= REFETCH_AFTER_FAILURE,
        };
        if due {
            let fetched = (self.fetch)().await;
            *last = Some((Instant::now(), fetched.is_ok()));
            match fetched {
                Ok(set) => {
                    self.replace(&set);
                    *self
                        .refreshed
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
                }
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "Cannot fetch the token signing keys; keeping the ones known."
                    );
                }
            }
        }
        let known = !self
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_empty();
        if known {
            Ok(())
        } else {
            Err(AuthError::KeysUnavailable)
        }
    }

    /// Keeps the RS256 keys with a `kid`; others are not ours to trust.
    fn replace(&self, set: &JwkSet) {
        let keys: HashMap<String, DecodingKey> = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let key = DecodingKey::from_jwk(jwk).ok()?;
                matches!(
                    jwk.algorithm,
                    jsonwebtoken::jwk::AlgorithmParameters::RSA(_)
                )
                .then_some((kid, key))
            })
            .collect();
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{EncodingKey, Header};

    use super::*;

    /// A key made for these tests only.
    const TEST_KEY: &[u8] = include_bytes!("test_key.pem");

    fn claims() -> Claims {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| i64::try_from(since.as_secs()).unwrap_or(0));
        Claims {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sub: "admin:test".to_owned(),
            exp: now + 600,
            iat: now,
            nbf: now,
            scope: "admin".to_owned(),
            events: Vec::new(),
        }
    }

    fn token(kid: &str) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        let key = EncodingKey::from_rsa_pem(TEST_KEY).unwrap();
        jsonwebtoken::encode(&header, &claims(), &key).unwrap()
    }

    /// A key source that answers with the test key as `k1` the first `answers` times, then
    /// fails, and counts its calls.
    fn source(answers: usize) -> (KeyFetch, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let fetch: KeyFetch = Arc::new(move || {
            let call = counted.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                anyhow::ensure!(call < answers, "users is down");
                let key = EncodingKey::from_rsa_pem(TEST_KEY)?;
                let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256)?;
                jwk.common.key_id = Some("k1".to_owned());
                Ok(JwkSet { keys: vec![jwk] })
            })
        });
        (fetch, calls)
    }

    #[tokio::test]
    async fn known_keys_stay_in_use_while_users_is_down_and_unknown_kids_refetch_sparingly() {
        let (fetch, calls) = source(1);
        let verifier = Verifier::new(fetch);
        assert_eq!(
            verifier.verify(&token("k1")).await.unwrap().subject(),
            "admin:test"
        );
        for _ in 0..20 {
            let error = verifier.verify(&token("k2")).await.unwrap_err();
            assert!(matches!(error, AuthError::UnknownKey(_)), "{error}");
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "twenty unknown kids within the interval fetch nothing"
        );
        assert!(
            verifier.verify(&token("k1")).await.is_ok(),
            "the known key still works"
        );
    }

    #[tokio::test]
    async fn without_any_key_every_token_is_refused_never_let_through() {
        let (fetch, _) = source(0);
        let verifier = Verifier::new(fetch);
        let error = verifier.verify(&token("k1")).await.unwrap_err();
        assert!(matches!(error, AuthError::KeysUnavailable), "{error}");
    }

    #[tokio::test]
    async fn a_token_is_checked_for_its_algorithm_before_its_key_is_looked_up() {
        let (fetch, calls) = source(1);
        let verifier = Verifier::new(fetch);
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".to_owned());
        let forged =
            jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(b"k1")).unwrap();
        assert!(matches!(
            verifier.verify(&forged).await,
            Err(AuthError::Malformed(_))
        ));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
}
