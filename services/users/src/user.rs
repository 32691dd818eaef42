//! A user as stored and as published.

use events_schema::money::MAX_TOTAL_CENTS;
use events_schema::users::{Address, UserDeactivatedV1, UserRegisteredV1, UserUpdatedV1};
use platform::input;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub(crate) struct User {
    pub(crate) id: Uuid,
    pub(crate) email: String,
    pub(crate) name: String,
    pub(crate) line1: String,
    pub(crate) city: String,
    pub(crate) postal_code: String,
    pub(crate) country: String,
    pub(crate) credit_limit_cents: i64,
    pub(crate) currency: String,
    pub(crate) status: String,
    pub(crate) version: i64,
}

impl User {
    pub(crate) fn address(&self) -> Address {
        Address {
            line1: self.line1.clone(),
            city: self.city.clone(),
            postal_code: self.postal_code.clone(),
            country: self.country.clone(),
        }
    }

    pub(crate) fn to_json(&self) -> serde_json::Value {
        // A struct of strings, ids and integers always serializes.
        serde_json::to_value(self.view()).unwrap_or_default()
    }

    fn view(&self) -> UserView {
        UserView {
            id: self.id,
            email: self.email.clone(),
            name: self.name.clone(),
            address: self.address(),
            credit_limit_cents: self.credit_limit_cents,
            currency: self.currency.clone(),
            status: self.status.clone(),
            version: self.version,
        }
    }

    pub(crate) fn registered(&self) -> UserRegisteredV1 {
        UserRegisteredV1 {
            user_id: self.id,
            email: self.email.clone(),
            name: self.name.clone(),
            address: self.address(),
            credit_limit_cents: self.credit_limit_cents,
            currency: self.currency.clone(),
            version: self.version,
        }
    }

    pub(crate) fn updated(&self) -> UserUpdatedV1 {
        UserUpdatedV1 {
            user_id: self.id,
            email: self.email.clone(),
            name: self.name.clone(),
            address: self.address(),
            credit_limit_cents: self.credit_limit_cents,
            currency: self.currency.clone(),
            version: self.version,
        }
    }

    pub(crate) fn deactivated(&self) -> UserDeactivatedV1 {
        UserDeactivatedV1 {
            user_id: self.id,
            version: self.version,
        }
    }
}

/// A user as the API answers it (never the password), and the schema of that answer.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct UserView {
    id: Uuid,
    email: String,
    name: String,
    #[schemars(with = "crate::http::PostalAddress")]
    address: Address,
    credit_limit_cents: i64,
    /// An ISO 4217 code, like `EUR`.
    currency: String,
    #[schemars(extend("enum" = ["active", "deactivated"]))]
    status: String,
    /// Grows by one with each change.
    version: i64,
}

/// Every problem with a user's fields, so a client fixes them all at once. Every text is
/// checked for control characters (a NUL cannot even be stored) and for its maximum length
/// (those of the `user.registered` contract) before anything else, and a value that breaks
/// those rules is not quoted back.
pub(crate) fn problems(
    email: &str,
    name: &str,
    address: &Address,
    credit_limit_cents: i64,
    currency: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    if text_ok(&mut problems, "email", email, input::MAX_EMAIL_CHARS) {
        let parts: Vec<&str> = email.split('@').collect();
        if parts.len() != 2 || parts[0].is_empty() || !parts[1].contains('.') {
            problems.push(format!("email {email:?} is not an email address"));
        }
    }
    if text_ok(&mut problems, "name", name, input::MAX_NAME_CHARS) && name.trim().is_empty() {
        problems.push("name is empty".to_owned());
    }
    let lines_ok = [
        text_ok(
            &mut problems,
            "address.line1",
            &address.line1,
            input::MAX_ADDRESS_LINE_CHARS,
        ),
        text_ok(
            &mut problems,
            "address.city",
            &address.city,
            input::MAX_CITY_CHARS,
        ),
        text_ok(
            &mut problems,
            "address.postal_code",
            &address.postal_code,
            input::MAX_POSTAL_CODE_CHARS,
        ),
    ];
    if lines_ok.iter().all(|ok| *ok)
        && (address.line1.trim().is_empty()
            || address.city.trim().is_empty()
            || address.postal_code.trim().is_empty())
    {
        problems.push("address needs line1, city and postal_code".to_owned());
    }
    if address.country.len() != 2 || !address.country.chars().all(|c| c.is_ascii_uppercase()) {
        problems.push(format!(
            "address.country {} is not an ISO 3166-1 alpha-2 code like FR",
            input::shown(&address.country)
        ));
    }
    if !(0..=MAX_TOTAL_CENTS).contains(&credit_limit_cents) {
        problems.push(format!(
            "credit_limit_cents {credit_limit_cents} is not between 0 and {MAX_TOTAL_CENTS}"
        ));
    }
    if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_uppercase()) {
        problems.push(format!(
            "currency {} is not an ISO 4217 code like EUR",
            input::shown(currency)
        ));
    }
    problems
}

/// Whether a text field keeps its rules ([`input::check_text`]); records why not.
fn text_ok(problems: &mut Vec<String>, field: &str, value: &str, max_chars: usize) -> bool {
    match input::check_text(field, value, max_chars) {
        Ok(()) => true,
        Err(error) => {
            problems.push(error.to_string());
            false
        }
    }
}
