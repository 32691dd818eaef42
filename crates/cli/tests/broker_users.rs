//! `conveyor topology users`: the script, `--apply` and `--definitions` make broker users
//! that can publish only the events their service owns.

use std::collections::BTreeMap;
use std::process::{Command, Output};

use conveyor::{
    AmqpConfig, BrokerUser, ConfirmChannel, Envelope, Names, OutgoingMessage, TraceHeaders,
};
use conveyor_testkit::TestEnv;

/// The users `conveyor topology users` makes; broker users are per broker, so this test
/// names them under a prefix of its own (no other run, and no developer's users, share
/// them) and deletes them again however it ends.
struct MadeUsers(Vec<String>);

impl Drop for MadeUsers {
    fn drop(&mut self) {
        for user in &self.0 {
            let _ = Command::new("rabbitmqctl")
                .args(["delete_user", user, "-q"])
                .output();
        }
    }
}

fn topology_users(env: &TestEnv, args: &[&str], passwords: &BTreeMap<String, String>) -> Output {
    Command::new(env!("CARGO_BIN_EXE_conveyor"))
        .args(["topology", "users", "--vhost", &env.vhost])
        .args(["--prefix", env.names.prefix()])
        .args(args)
        .env("AMQP_URL", env.amqp.url())
        .envs(passwords)
        .output()
        .unwrap()
}

async fn publish_as(
    amqp: &AmqpConfig,
    names: &Names,
    envelope: &Envelope,
) -> Result<(), conveyor::PublishError> {
    let connection = amqp.connect().await.unwrap();
    let channel = ConfirmChannel::open(&connection, &amqp.user())
        .await
        .unwrap();
    let message = OutgoingMessage::event(names, envelope, &TraceHeaders::new());
    let published = channel.publish_all(&[message]).await;
    let _ = connection.close(200, "done".into()).await;
    published
}

fn new_passwords(users: &[BrokerUser]) -> BTreeMap<String, String> {
    users
        .iter()
        .map(|user| {
            let password = uuid::Uuid::new_v4().simple().to_string();
            (user.password_variable(), password)
        })
        .collect()
}

/// One test, not three: every form works on the same broker users in turn.
#[tokio::test]
async fn the_script_apply_and_definitions_make_users_that_publish_only_their_own_events() {
    let mut env = TestEnv::new().await;
    env.names = Names::with_prefix(format!(
        "bu{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    let names = env.names.clone();
    env.declare(&system::all_topology(&names).unwrap()).await;
    let users = system::broker_users(&names).unwrap();
    let administrator = BrokerUser::administrator(&names);
    let _cleanup = MadeUsers(
        users
            .iter()
            .chain([&administrator])
            .map(|user| user.name.clone())
            .collect(),
    );
    let passwords = new_passwords(&users);

    let printed = topology_users(&env, &[], &BTreeMap::new());
    assert!(printed.status.success());
    let script = String::from_utf8(printed.stdout).unwrap();
    assert!(
        passwords
            .values()
            .all(|password| !script.contains(password.as_str())),
        "no password is printed"
    );
    let ran = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .envs(&passwords)
        .output()
        .unwrap();
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let listed = env.broker.ctl(&["list_permissions", "-p", &env.vhost]);
    let shipping = users.iter().find(|user| user.owner == "shipping").unwrap();
    assert!(
        listed.contains(&format!(
            "{}\t{}\t{}\t{}",
            shipping.name, shipping.configure, shipping.write, shipping.read
        )),
        "{listed}"
    );

    // --apply says which password is missing before it changes anything.
    let missing = topology_users(&env, &["--apply"], &BTreeMap::new());
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("_BROKER_PASSWORD is not set"));
    let applied = topology_users(&env, &["--apply"], &passwords);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );

    let as_shipping = AmqpConfig::new(
        env.broker.url_as(
            &shipping.name,
            &passwords[&shipping.password_variable()],
            &env.vhost,
        ),
        "test as shipping",
    );
    let scheduled = Envelope::new(
        "shipping",
        "shipment.scheduled",
        serde_json::json!({ "order_id": uuid::Uuid::new_v4() }),
    );
    publish_as(&as_shipping, &names, &scheduled)
        .await
        .expect("shipping publishes its own events");
    let captured = Envelope::new(
        "shipping",
        "payment.captured",
        serde_json::json!({ "order_id": uuid::Uuid::new_v4() }),
    );
    let refused = publish_as(&as_shipping, &names, &captured)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("ACCESS_REFUSED"), "{refused}");
    assert_eq!(
        env.queue_len(&names.service_queue("shipping")).await,
        0,
        "the refused payment.captured reached no queue"
    );

    definitions_load_users_that_log_in_with_their_new_passwords(
        &env,
        &users,
        &administrator,
        &passwords,
    )
    .await;
}

/// `--definitions` writes hashes a broker accepts: after importing the file (as a broker
/// does at boot), each user logs in with the password of its variable, and no longer with
/// the one `--apply` set before (`old_passwords`).
async fn definitions_load_users_that_log_in_with_their_new_passwords(
    env: &TestEnv,
    users: &[BrokerUser],
    administrator: &BrokerUser,
    old_passwords: &BTreeMap<String, String>,
) {
    let all: Vec<BrokerUser> = users.iter().chain([administrator]).cloned().collect();
    let passwords = new_passwords(&all);
    let file = std::env::temp_dir().join(format!("conveyor-users-{}.json", uuid::Uuid::new_v4()));
    let path = file.to_str().unwrap();

    let missing = topology_users(env, &["--definitions", path], old_passwords);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("ADMIN_BROKER_PASSWORD is not set"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    assert!(!file.exists(), "nothing is written without every password");
    let written = topology_users(env, &["--definitions", path], &passwords);
    assert!(
        written.status.success(),
        "{}",
        String::from_utf8_lossy(&written.stderr)
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        passwords
            .values()
            .all(|password| !text.contains(password.as_str())),
        "the file holds hashes, not passwords"
    );
    env.broker.ctl(&["import_definitions", path]);
    let _ = std::fs::remove_file(&file);

    let tags = env.broker.ctl(&["list_users"]);
    assert!(
        tags.contains(&format!(
            "{}\t[management]",
            BrokerUser::operator(&env.names).name
        )),
        "{tags}"
    );
    assert!(
        tags.contains(&format!("{}\t[administrator]", administrator.name)),
        "{tags}"
    );
    let shipping = users.iter().find(|user| user.owner == "shipping").unwrap();
    let as_shipping = |password: &str| {
        AmqpConfig::new(
            env.broker.url_as(&shipping.name, password, &env.vhost),
            "test as shipping",
        )
    };
    let scheduled = Envelope::new(
        "shipping",
        "shipment.scheduled",
        serde_json::json!({ "order_id": uuid::Uuid::new_v4() }),
    );
    publish_as(
        &as_shipping(&passwords[&shipping.password_variable()]),
        &env.names,
        &scheduled,
    )
    .await
    .expect("shipping logs in with the password of the definitions");
    let stale = as_shipping(&old_passwords[&shipping.password_variable()]);
    assert!(
        stale.connect().await.is_err(),
        "the password --apply set before is refused once the definitions are loaded"
    );
}
