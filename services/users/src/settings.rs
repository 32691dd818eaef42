//! Users' own settings from the environment, checked before anything starts.

use std::time::Duration;

use platform::ConfigError;
use platform::config::parse_env_within;

use crate::auth::AdminAccount;
use crate::client_address::ForwardSecret;
use crate::guessing::SignInLimits;

/// The variable that holds the secret shared with the gateway.
const FORWARD_SECRET: &str = "GATEWAY_FORWARD_SECRET";

/// Users' own settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `JWT_PRIVATE_KEY`: a PEM or a path; `None` keeps the key in the database.
    pub private_key: Option<String>,
    pub admin: Option<AdminAccount>,
    pub token_lifetime: Duration,
    /// How failed sign-ins slow down further attempts from the same address.
    pub sign_in: SignInLimits,
    /// `GATEWAY_FORWARD_SECRET`: with it, a request that carries it is the gateway's and
    /// its `X-Forwarded-For` names the client; without it, no forwarded address is
    /// believed, and sign-ins count under the address of whoever connects.
    pub forward_secret: Option<ForwardSecret>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            private_key: None,
            admin: None,
            token_lifetime: Duration::from_secs(3600),
            sign_in: SignInLimits::default(),
            forward_secret: None,
        }
    }
}

/// A variable's value, with set but empty counting as unset (compose passes
/// `${VARIABLE:-}` along).
fn set(variable: &str) -> Option<String> {
    std::env::var(variable)
        .ok()
        .filter(|value| !value.is_empty())
}

impl Settings {
    /// Reads `JWT_PRIVATE_KEY`, `CONVEYOR_ADMIN_EMAIL`, `CONVEYOR_ADMIN_PASSWORD`,
    /// `TOKEN_LIFETIME`, `SIGN_IN_FAILURES`, `SIGN_IN_WINDOW`, `SIGN_IN_MAX_DELAY` and
    /// `GATEWAY_FORWARD_SECRET`.
    ///
    /// # Errors
    /// When only one of the admin variables is set, or a value is out of range.
    pub fn from_env() -> Result<Self, ConfigError> {
        let seconds = parse_env_within(
            "TOKEN_LIFETIME",
            60..=86_400,
            "a number of seconds from 60 to 86400",
        )?
        .unwrap_or(3600);
        Ok(Self {
            private_key: set("JWT_PRIVATE_KEY"),
            admin: admin_from_env()?,
            token_lifetime: Duration::from_secs(seconds),
            sign_in: sign_in_from_env()?,
            forward_secret: forward_secret_from_env()?,
        })
    }
}

/// `CONVEYOR_ADMIN_EMAIL` and `CONVEYOR_ADMIN_PASSWORD`, both or neither.
fn admin_from_env() -> Result<Option<AdminAccount>, ConfigError> {
    match (set("CONVEYOR_ADMIN_EMAIL"), set("CONVEYOR_ADMIN_PASSWORD")) {
        (Some(email), Some(password)) => Ok(Some(AdminAccount { email, password })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError::new(
            "CONVEYOR_ADMIN_PASSWORD",
            "",
            "set together with CONVEYOR_ADMIN_EMAIL",
        )),
        (None, Some(_)) => Err(ConfigError::new(
            "CONVEYOR_ADMIN_EMAIL",
            "",
            "set together with CONVEYOR_ADMIN_PASSWORD",
        )),
    }
}

/// `SIGN_IN_FAILURES`, `SIGN_IN_WINDOW` and `SIGN_IN_MAX_DELAY`, each defaulting to
/// [`SignInLimits::default`]'s.
fn sign_in_from_env() -> Result<SignInLimits, ConfigError> {
    let defaults = SignInLimits::default();
    let free_failures = parse_env_within(
        "SIGN_IN_FAILURES",
        1_u32..=1000,
        "a number of failed sign-ins from 1 to 1000",
    )?
    .unwrap_or(defaults.free_failures);
    let window = parse_env_within(
        "SIGN_IN_WINDOW",
        60_u64..=86_400,
        "a number of seconds from 60 to 86400",
    )?
    .map_or(defaults.window, Duration::from_secs);
    let max_delay = match parse_env_within(
        "SIGN_IN_MAX_DELAY",
        1_u64..=86_400,
        "a number of seconds from 1 to 86400",
    )?
    .map(Duration::from_secs)
    {
        Some(max_delay) if max_delay > window => {
            return Err(ConfigError::new(
                "SIGN_IN_MAX_DELAY",
                &max_delay.as_secs().to_string(),
                "at most SIGN_IN_WINDOW's seconds: a count is forgotten after its window, so no wait outlasts it",
            ));
        }
        Some(max_delay) => max_delay,
        // A shorter window than the default's bounds the default wait too.
        None => defaults.max_delay.min(window),
    };
    Ok(SignInLimits {
        free_failures,
        window,
        max_delay,
    })
}

/// `GATEWAY_FORWARD_SECRET`; its value is never shown, even when it is refused.
fn forward_secret_from_env() -> Result<Option<ForwardSecret>, ConfigError> {
    set(FORWARD_SECRET)
        .map(|secret| {
            ForwardSecret::new(&secret).map_err(|_| {
                ConfigError::new(
                    FORWARD_SECRET,
                    "<hidden>",
                    "a secret of at least 32 visible ASCII characters, the same for the gateway and users",
                )
            })
        })
        .transpose()
}
