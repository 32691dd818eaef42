//! Which address a sign-in comes from, for the failure counts of [`crate::guessing`].
//!
//! A request's address is its TCP peer's, unless the request proves it comes from the
//! gateway: then the peer is the gateway, and the client's address is the one the gateway
//! put in `X-Forwarded-For`. The proof is `X-Conveyor-Gateway: <GATEWAY_FORWARD_SECRET>`, a
//! secret set for both the gateway and users, compared in constant time. A list of trusted
//! proxy addresses would not do: in a test, a single-host deployment or `conveyor serve all`
//! every peer is loopback, so a client talking to users directly from there could claim any
//! address (and so any number of fresh counts). Without the secret, `X-Forwarded-For` and
//! `Forwarded` are ignored, whoever sends them; the gateway drops those a client sends and
//! sets its own.
//!
//! IPv6 addresses count by their /64, the block one host or one customer line usually gets,
//! so that an attacker cannot start a fresh count with each of its 2^64 addresses.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;

/// The header with which the gateway proves that what it sends on comes from it; the
/// gateway sets it and drops any a client sent.
pub(crate) const GATEWAY_HEADER: &str = "x-conveyor-gateway";

/// What a request's failures count under when its peer is not known (the HTTP server did
/// not record it) and it does not come from the gateway.
pub(crate) const UNKNOWN: &str = "unknown";

/// The shortest secret accepted: hard to guess, and what `scripts/compose-env` makes is
/// longer (48 hexadecimal digits).
pub const MIN_SECRET_CHARS: usize = 32;

/// `GATEWAY_FORWARD_SECRET`: the secret the gateway marks what it sends on with. Only its
/// SHA-256 digest is kept, so the secret itself is never printed, logged or compared
/// byte by byte.
#[derive(Clone)]
pub struct ForwardSecret {
    digest: [u8; 32],
}

/// Why a `GATEWAY_FORWARD_SECRET` cannot be used (its value is never shown).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardSecretError {
    #[error("it must have at least {MIN_SECRET_CHARS} characters")]
    TooShort,
    #[error("it may hold only visible ASCII characters (it travels in an HTTP header)")]
    NotVisibleAscii,
}

impl ForwardSecret {
    /// # Errors
    /// When `secret` is too short to be hard to guess, or could not travel in a header.
    pub fn new(secret: &str) -> Result<Self, ForwardSecretError> {
        if !secret.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(ForwardSecretError::NotVisibleAscii);
        }
        if secret.len() < MIN_SECRET_CHARS {
            return Err(ForwardSecretError::TooShort);
        }
        Ok(Self {
            digest: sha256(secret.as_bytes()),
        })
    }

    /// Whether `given` is the secret. Digests of equal length are compared in constant
    /// time, so neither the time taken nor a length tells a guesser how close they came.
    fn matches(&self, given: &[u8]) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(&sha256(given), &self.digest).is_ok()
    }
}

impl std::fmt::Debug for ForwardSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ForwardSecret(<hidden>)")
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0_u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The address the failures of a request with `headers` and `extensions` count under: the
/// one the gateway forwarded when the request carries `trusted`, else the TCP peer's, else
/// [`UNKNOWN`].
pub(crate) fn client_address(
    headers: &HeaderMap,
    extensions: &axum::http::Extensions,
    trusted: Option<&ForwardSecret>,
) -> String {
    if let Some(forwarded) = trusted.and_then(|secret| forwarded_by_gateway(headers, secret)) {
        return counted_as(forwarded);
    }
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| UNKNOWN.to_owned(), |peer| counted_as(peer.0.ip()))
}

/// The client's address as the gateway forwarded it, when the request carries the secret.
/// The gateway sends one `X-Forwarded-For` with one address; should there be more, the
/// last one is the gateway's (anything before it would have come from further away).
fn forwarded_by_gateway(headers: &HeaderMap, secret: &ForwardSecret) -> Option<IpAddr> {
    let marker = headers.get(GATEWAY_HEADER)?;
    if !secret.matches(marker.as_bytes()) {
        WRONG_SECRETS.note();
        return None;
    }
    let last = headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()?
        .to_str()
        .ok()?
        .rsplit(',')
        .next()?
        .trim();
    let address = last.parse().ok();
    if address.is_none() {
        tracing::warn!("The gateway's X-Forwarded-For holds no address; counting the peer's.");
    }
    address
}

/// Requests that named the gateway with a wrong secret: an attacker's or a misconfigured
/// gateway's, either way one request after another, so they are told once a minute with a
/// count rather than once each (a log line per request lets a client flood the log).
static WRONG_SECRETS: ThrottledWarning = ThrottledWarning::new();

struct ThrottledWarning {
    /// Seconds since the Unix epoch of the last warning; 0 before the first.
    last_told: AtomicU64,
    since: AtomicU64,
}

impl ThrottledWarning {
    const EVERY_SECONDS: u64 = 60;

    const fn new() -> Self {
        Self {
            last_told: AtomicU64::new(0),
            since: AtomicU64::new(0),
        }
    }

    fn note(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        if let Some(count) = self.note_at(now) {
            // The value is not logged: it may be a near miss of the secret.
            tracing::warn!(
                requests = count,
                "Requests claimed to come from the gateway with a wrong X-Conveyor-Gateway secret (told at most once a minute); their X-Forwarded-For is ignored. Check that GATEWAY_FORWARD_SECRET is the same for the gateway and users."
            );
        }
    }

    /// Counts one request at `now` (seconds since the epoch); when a warning is due, the
    /// requests it tells of.
    fn note_at(&self, now: u64) -> Option<u64> {
        self.since.fetch_add(1, Ordering::Relaxed);
        let last = self.last_told.load(Ordering::Relaxed);
        let due = now.saturating_sub(last) >= Self::EVERY_SECONDS;
        let won = due
            && self
                .last_told
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        won.then(|| self.since.swap(0, Ordering::Relaxed))
    }
}

/// How an address is counted: IPv4 as it is, IPv6 by its /64 (an IPv4-mapped one as IPv4).
fn counted_as(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => prefix_64(v6),
        },
    }
}

fn prefix_64(address: Ipv6Addr) -> String {
    let [a, b, c, d, ..] = address.segments();
    format!("{}/64", Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_secret_is_told_once_a_minute_with_the_requests_since() {
        let warning = ThrottledWarning::new();
        assert_eq!(warning.note_at(1_000), Some(1), "the first is told at once");
        assert_eq!(warning.note_at(1_001), None);
        assert_eq!(warning.note_at(1_059), None);
        assert_eq!(
            warning.note_at(1_060),
            Some(3),
            "a minute on, with the two held back"
        );
        assert_eq!(warning.note_at(1_061), None);
    }
    use axum::http::{Extensions, HeaderValue};

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn from_peer(peer: &str) -> Extensions {
        let mut extensions = Extensions::new();
        extensions.insert(ConnectInfo::<SocketAddr>(peer.parse().unwrap()));
        extensions
    }

    #[test]
    fn the_forwarded_address_counts_only_with_the_gateways_secret() {
        let secret = ForwardSecret::new(SECRET).unwrap();
        let peer = from_peer("127.0.0.1:40000");
        let forwarded = headers(&[("x-forwarded-for", "203.0.113.7"), (GATEWAY_HEADER, SECRET)]);
        assert_eq!(
            client_address(&forwarded, &peer, Some(&secret)),
            "203.0.113.7"
        );
        // Without the secret, or with a wrong one, or when users trusts no gateway.
        let spoofed = headers(&[("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(client_address(&spoofed, &peer, Some(&secret)), "127.0.0.1");
        let wrong = headers(&[
            ("x-forwarded-for", "203.0.113.7"),
            (GATEWAY_HEADER, "0123456789abcdef0123456789abcdeX"),
        ]);
        assert_eq!(client_address(&wrong, &peer, Some(&secret)), "127.0.0.1");
        assert_eq!(client_address(&forwarded, &peer, None), "127.0.0.1");
        assert_eq!(client_address(&spoofed, &Extensions::new(), None), UNKNOWN);
    }

    #[test]
    fn the_last_forwarded_address_is_the_gateways() {
        let secret = ForwardSecret::new(SECRET).unwrap();
        let sent = headers(&[
            ("x-forwarded-for", "198.51.100.1, 203.0.113.7"),
            (GATEWAY_HEADER, SECRET),
        ]);
        assert_eq!(
            client_address(&sent, &Extensions::new(), Some(&secret)),
            "203.0.113.7"
        );
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let one = counted_as("2001:db8:1:2:aaaa::1".parse().unwrap());
        let other = counted_as("2001:db8:1:2:bbbb:cccc:dddd:eeee".parse().unwrap());
        assert_eq!(one, "2001:db8:1:2::/64");
        assert_eq!(one, other);
        assert_eq!(counted_as("::ffff:192.0.2.9".parse().unwrap()), "192.0.2.9");
    }

    #[test]
    fn a_secret_is_long_visible_ascii_and_never_shown() {
        assert_eq!(
            ForwardSecret::new("short").unwrap_err(),
            ForwardSecretError::TooShort
        );
        assert_eq!(
            ForwardSecret::new(&format!("{SECRET} with spaces")).unwrap_err(),
            ForwardSecretError::NotVisibleAscii
        );
        let secret = ForwardSecret::new(SECRET).unwrap();
        assert!(!format!("{secret:?}").contains(SECRET));
        assert!(secret.matches(SECRET.as_bytes()));
        assert!(!secret.matches(b"0123456789abcdef"));
    }
}
