//! `conveyor topology users`: the broker users of least privilege, as a rabbitmqctl script,
//! as RabbitMQ definitions to load at boot, or made at once through the management API.

use std::fmt::Write as _;

use base64::Engine as _;
use conveyor::{AmqpConfig, BrokerUser};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use system::management::{ManagementApi, percent_encode};

/// A shell script that makes every user with its password from the environment and sets
/// its permissions; safe to run again (a user that exists gets its password set anew).
pub(crate) fn script(users: &[BrokerUser], vhost: &str) -> String {
    let mut text = String::from(
        "#!/bin/sh\n# Broker users of least privilege, from `conveyor topology users`.\n\
         # Run on a RabbitMQ node; each password comes from the variable named beside it.\nset -eu\n",
    );
    for user in users {
        let name = quote(&user.name);
        let variable = user.password_variable();
        let _ = writeln!(
            text,
            "\n: \"${{{variable}:?set the password of {}}}\"",
            user.name
        );
        let _ = writeln!(
            text,
            "rabbitmqctl -q add_user {name} \"${variable}\" 2>/dev/null || rabbitmqctl -q change_password {name} \"${variable}\""
        );
        let tags: Vec<String> = tag_list(user).into_iter().map(quote).collect();
        let _ = writeln!(
            text,
            "rabbitmqctl -q set_user_tags {name} {}",
            tags.join(" ")
        );
        rabbitmqctl(
            &mut text,
            "set_permissions",
            [vhost, &user.name, &user.configure, &user.write, &user.read],
        );
        if let Some(topic) = &user.topic {
            rabbitmqctl(
                &mut text,
                "set_topic_permissions",
                [
                    vhost,
                    &user.name,
                    &topic.exchange,
                    &topic.write,
                    &topic.read,
                ],
            );
        }
    }
    text
}

/// A `rabbitmqctl -q <command> -p <vhost> <rest…>` line, every argument quoted.
fn rabbitmqctl(text: &mut String, command: &str, [vhost, rest @ ..]: [&str; 5]) {
    let quoted: Vec<String> = rest.iter().map(|argument| quote(argument)).collect();
    let _ = writeln!(
        text,
        "rabbitmqctl -q {command} -p {} {}",
        quote(vhost),
        quoted.join(" ")
    );
}

/// Single-quoted for the shell.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Makes every user through the management API with the password its variable holds.
///
/// # Errors
/// A missing password variable (before anything is changed), or the API's refusal.
pub(crate) async fn apply(users: &[BrokerUser], vhost: &str) -> anyhow::Result<()> {
    let passwords = passwords_from_env(users)?;
    let amqp = AmqpConfig::from_env("conveyor topology users");
    let api = ManagementApi::for_broker(&amqp.urls().first().cloned().unwrap_or_default())?;
    let vhost_path = percent_encode(vhost);
    for (user, password) in users.iter().zip(passwords) {
        let name = percent_encode(&user.name);
        api.put(
            &format!("users/{name}"),
            &json!({ "password": password, "tags": user.tags }),
            &format!("making user {}", user.name),
        )
        .await?;
        api.put(
            &format!("permissions/{vhost_path}/{name}"),
            &json!({ "configure": user.configure, "write": user.write, "read": user.read }),
            &format!("the permissions of {}", user.name),
        )
        .await?;
        if let Some(topic) = &user.topic {
            api.put(
                &format!("topic-permissions/{vhost_path}/{name}"),
                &json!({ "exchange": topic.exchange, "write": topic.write, "read": topic.read }),
                &format!("the topic permissions of {}", user.name),
            )
            .await?;
        }
        println!(
            "{}: made, with its permissions on vhost {vhost}.",
            user.name
        );
    }
    Ok(())
}

/// Each user's password, from the variable `password_variable` names, in order.
///
/// # Errors
/// The first variable that is unset or empty, naming the user it is for.
fn passwords_from_env(users: &[BrokerUser]) -> anyhow::Result<Vec<String>> {
    users
        .iter()
        .map(|user| {
            let variable = user.password_variable();
            let password = std::env::var(&variable).unwrap_or_default();
            anyhow::ensure!(
                !password.is_empty(),
                "{variable} is not set: it holds the password {} gets; set every \
                 <OWNER>_BROKER_PASSWORD (see conveyor topology users --help) and run again",
                user.name
            );
            Ok(password)
        })
        .collect()
}

/// RabbitMQ definitions of the users (with salted password hashes, never the passwords)
/// and their permissions on `vhost`, for a broker to load at boot beside the topology's.
///
/// # Errors
/// A missing password variable.
pub(crate) fn definitions(users: &[BrokerUser], vhost: &str) -> anyhow::Result<Value> {
    let passwords = passwords_from_env(users)?;
    let (mut accounts, mut permissions, mut topic_permissions) = (vec![], vec![], vec![]);
    for (user, password) in users.iter().zip(passwords) {
        accounts.push(json!({
            "name": user.name,
            "password_hash": password_hash(random_salt(), &password),
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": tag_list(user),
        }));
        permissions.push(json!({
            "user": user.name, "vhost": vhost,
            "configure": user.configure, "write": user.write, "read": user.read,
        }));
        if let Some(topic) = &user.topic {
            topic_permissions.push(json!({
                "user": user.name, "vhost": vhost, "exchange": topic.exchange,
                "write": topic.write, "read": topic.read,
            }));
        }
    }
    Ok(json!({
        "users": accounts,
        "permissions": permissions,
        "topic_permissions": topic_permissions,
    }))
}

/// The user's tags one by one (`BrokerUser::tags` is RabbitMQ's comma-separated form).
fn tag_list(user: &BrokerUser) -> Vec<&str> {
    user.tags.split(',').filter(|tag| !tag.is_empty()).collect()
}

/// RabbitMQ's `rabbit_password_hashing_sha256`: base64 of the salt followed by
/// SHA-256(salt ‖ password).
fn password_hash(salt: [u8; 4], password: &str) -> String {
    let digest = Sha256::new()
        .chain_update(salt)
        .chain_update(password.as_bytes())
        .finalize();
    let mut salted = salt.to_vec();
    salted.extend_from_slice(&digest);
    base64::engine::general_purpose::STANDARD.encode(salted)
}

/// Four bytes from the operating system's generator (a version 4 UUID's first bytes are
/// all random).
fn random_salt() -> [u8; 4] {
    let random = uuid::Uuid::new_v4();
    let bytes = random.as_bytes();
    [bytes[0], bytes[1], bytes[2], bytes[3]]
}

#[cfg(test)]
mod tests {
    use conveyor::Names;

    use super::*;

    #[test]
    fn the_script_names_each_password_variable_and_never_a_password() {
        let users = [BrokerUser::operator(&Names::default())];
        let text = script(&users, "/");
        assert!(text.contains("${OPERATOR_BROKER_PASSWORD:?"), "{text}");
        assert!(text.contains("set_permissions -p '/' 'conveyor-operator' '.*' '.*' '.*'"));
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert!(
            text.contains("set_user_tags 'conveyor-operator' 'management'"),
            "{text}"
        );
    }

    #[test]
    fn the_password_hash_is_rabbitmqs_salted_sha256() {
        // A fixed salt; the CLI's login test checks the scheme against a real broker.
        assert_eq!(
            password_hash([0x90, 0x8d, 0xc6, 0x0a], "test12"),
            "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"
        );
    }
}
