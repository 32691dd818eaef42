//! `conveyor topology users`: the broker users of least privilege, as a rabbitmqctl script
//! or made at once through the management API.

use std::fmt::Write as _;

use conveyor::{AmqpConfig, BrokerUser};
use serde_json::json;

use crate::commands::management::{ManagementApi, percent_encode};

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
    let mut passwords = Vec::with_capacity(users.len());
    for user in users {
        let variable = user.password_variable();
        let password = std::env::var(&variable).unwrap_or_default();
        anyhow::ensure!(
            !password.is_empty(),
            "{variable} is not set: it holds the password {} gets; set every \
             <OWNER>_BROKER_PASSWORD (see conveyor topology users --help) and run again",
            user.name
        );
        passwords.push(password);
    }
    let amqp = AmqpConfig::from_env("conveyor topology users");
    let api = ManagementApi::for_broker(&amqp.urls().first().cloned().unwrap_or_default())?;
    let vhost_path = percent_encode(vhost);
    for (user, password) in users.iter().zip(passwords) {
        let name = percent_encode(&user.name);
        api.put(
            &format!("users/{name}"),
            &json!({ "password": password, "tags": "" }),
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
    }
}
