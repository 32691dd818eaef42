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

/// Where a verifier reads the time: `Instant::now`, or in tests a clock they move by hand,
/// since the intervals above are seconds and minutes long. (Tokio's paused time would do,
/// but this crate does not build tokio's `test-util`.)
type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

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
    now: Clock,
}

impl Verifier {
    pub fn new(fetch: KeyFetch) -> Arc<Self> {
        Self::with_clock(fetch, Arc::new(Instant::now))
    }

    /// As [`Verifier::new`], reading the time from `now`.
    fn with_clock(fetch: KeyFetch, now: Clock) -> Arc<Self> {
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
            now,
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
            .is_none_or(|at| self.since(at) >= KEYS_MAX_AGE)
    }

    /// How long ago `at` was, on this verifier's clock.
    fn since(&self, at: Instant) -> Duration {
        (self.now)().saturating_duration_since(at)
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
            Some((at, true)) => self.since(at) >= REFETCH_AFTER_SUCCESS,
            Some((at, false)) => self.since(at) >= REFETCH_AFTER_FAILURE,
        };
        if due {
            let fetched = (self.fetch)().await;
            *last = Some(((self.now)(), fetched.is_ok()));
            match fetched {
                Ok(set) => {
                    self.replace(&set);
                    *self
                        .refreshed
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((self.now)());
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
    use std::sync::Mutex;
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
            edits: Vec::new(),
        }
    }

    fn token(kid: &str) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        let key = EncodingKey::from_rsa_pem(TEST_KEY).unwrap();
        jsonwebtoken::encode(&header, &claims(), &key).unwrap()
    }

    /// The test key, published under each of `kids` (users publishes one key per kid; one
    /// key under several kids tells them apart just as well here).
    fn key_set(kids: &[&str]) -> anyhow::Result<JwkSet> {
        let key = EncodingKey::from_rsa_pem(TEST_KEY)?;
        let jwk = Jwk::from_encoding_key(&key, Algorithm::RS256)?;
        let keys = kids
            .iter()
            .map(|kid| {
                let mut jwk = jwk.clone();
                jwk.common.key_id = Some((*kid).to_owned());
                jwk
            })
            .collect();
        Ok(JwkSet { keys })
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
                key_set(&["k1"])
            })
        });
        (fetch, calls)
    }

    /// A key source that publishes the kids in `published` at each call (the test changes
    /// them, as users does when it retires a key), and counts its calls.
    fn publishing(published: Arc<Mutex<Vec<&'static str>>>) -> (KeyFetch, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let fetch: KeyFetch = Arc::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let kids = published.lock().unwrap().clone();
            Box::pin(async move { key_set(&kids) })
        });
        (fetch, calls)
    }

    /// A clock the test moves by hand, so that minutes of key lifetime pass at once.
    struct ManualClock(Arc<Mutex<Instant>>);

    impl ManualClock {
        fn new() -> Self {
            Self(Arc::new(Mutex::new(Instant::now())))
        }

        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }

        fn clock(&self) -> Clock {
            let now = self.0.clone();
            Arc::new(move || *now.lock().unwrap())
        }
    }

    fn calls_so_far(calls: &AtomicUsize) -> usize {
        calls.load(Ordering::SeqCst)
    }

    /// The book (Call the HTTP API): keys "stay in use while users is unreachable". Users answers once, then
    /// fails; the clock passes the refetch window, then `KEYS_MAX_AGE`, so each later
    /// fetch is really tried and fails, and the key fetched first is accepted after each.
    #[tokio::test]
    async fn known_keys_stay_in_use_when_refetches_past_the_window_and_the_max_age_fail() {
        let (fetch, calls) = source(1);
        let time = ManualClock::new();
        let verifier = Verifier::with_clock(fetch, time.clock());
        assert!(verifier.verify(&token("k1")).await.is_ok());

        time.advance(REFETCH_AFTER_SUCCESS + Duration::from_secs(1));
        let error = verifier.verify(&token("k2")).await.unwrap_err();
        assert!(matches!(error, AuthError::UnknownKey(_)), "{error}");
        assert_eq!(
            calls_so_far(&calls),
            2,
            "past the window an unknown kid fetches, and users fails"
        );
        assert!(
            verifier.verify(&token("k1")).await.is_ok(),
            "a failed fetch keeps the known key"
        );

        time.advance(KEYS_MAX_AGE);
        assert!(
            verifier.verify(&token("k1")).await.is_ok(),
            "keys too old to trust unchecked are still used when they cannot be refreshed"
        );
        assert_eq!(calls_so_far(&calls), 3, "old keys are fetched again");
        assert!(verifier.verify(&token("k1")).await.is_ok());
        assert_eq!(
            calls_so_far(&calls),
            3,
            "after a failed fetch the next waits REFETCH_AFTER_FAILURE: an outage does not \
             make every request call users"
        );
        time.advance(REFETCH_AFTER_FAILURE);
        assert!(verifier.verify(&token("k1")).await.is_ok());
        assert_eq!(calls_so_far(&calls), 4);
    }

    /// The book (Call the HTTP API): a retired key's tokens are refused within `KEYS_MAX_AGE` (5 minutes),
    /// even when no unknown kid ever comes to make the verifier fetch the keys again.
    #[tokio::test]
    async fn a_retired_key_is_refused_once_the_keys_fetched_with_it_are_max_age_old() {
        let published = Arc::new(Mutex::new(vec!["k1", "k2"]));
        let (fetch, calls) = publishing(published.clone());
        let time = ManualClock::new();
        let verifier = Verifier::with_clock(fetch, time.clock());
        assert!(verifier.verify(&token("k1")).await.is_ok());
        assert!(verifier.verify(&token("k2")).await.is_ok());
        // Users retires k1: it no longer publishes it.
        *published.lock().unwrap() = vec!["k2"];

        time.advance(KEYS_MAX_AGE - Duration::from_secs(1));
        assert!(
            verifier.verify(&token("k1")).await.is_ok(),
            "keys are trusted as fetched until they are KEYS_MAX_AGE old"
        );
        assert_eq!(calls_so_far(&calls), 1);

        time.advance(Duration::from_secs(1));
        let error = verifier.verify(&token("k1")).await.unwrap_err();
        assert!(
            matches!(&error, AuthError::UnknownKey(kid) if kid == "k1"),
            "{error}"
        );
        assert_eq!(
            calls_so_far(&calls),
            2,
            "one fetch: the unknown kid's own refetch waits out the window"
        );
        assert!(
            verifier.verify(&token("k2")).await.is_ok(),
            "the key still published stays in use"
        );
    }

    /// Unknown kids cannot make the verifier call users more than once per
    /// `REFETCH_AFTER_SUCCESS` (the clock does not move here; see the tests above for a
    /// fetch that fails).
    #[tokio::test]
    async fn unknown_kids_within_the_refetch_window_fetch_nothing() {
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
