//! `conveyor topology users`: the script, `--apply` and `--definitions` make broker users
//! that can publish only the events their service owns.

use std::collections::BTreeMap;
use std::process::{Command, Output};

use conveyor::{
    AmqpConfig, BrokerUser, ConfirmChannel, Envelope, Names, OutgoingMessage, TraceHeaders,
};
use conveyor_testkit::TestEnv;
use lapin::BasicProperties;
use lapin::options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};

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

/// A test environment whose names, and so its broker users' names, carry a prefix of its
/// own that starts with `tag`, with the system's topology declared.
async fn env_with_topology_named(tag: &str) -> TestEnv {
    let mut env = TestEnv::new().await;
    env.names = Names::with_prefix(format!(
        "{tag}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    env.declare(&system::all_topology(&env.names).unwrap())
        .await;
    env
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
    let env = env_with_topology_named("bu").await;
    let names = env.names.clone();
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

/// `--consumer`: an outside consumer's user takes the events it asked for from its own
/// queue and dead-letters there, but publishes no event and touches no other queue.
#[tokio::test]
async fn an_outside_consumer_gets_its_own_queues_and_may_not_publish_events() {
    let env = env_with_topology_named("oc").await;
    let names = env.names.clone();
    let user = names.broker_user("ledger-py");
    let _cleanup = MadeUsers(vec![user.clone()]);
    let password = uuid::Uuid::new_v4().simple().to_string();
    let passwords = BTreeMap::from([("LEDGER_PY_BROKER_PASSWORD".to_owned(), password.clone())]);
    let consumer = ["--consumer", "ledger-py", "--events", "order.confirmed"];

    for (args, field) in [
        (
            ["--consumer", "orders", "--events", "order.confirmed"],
            "orders",
        ),
        (
            ["--consumer", "ledger-py", "--events", "order.nope"],
            "order.nope",
        ),
    ] {
        let refused = topology_users(&env, &args, &passwords);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(field), "{stderr}");
    }
    let applied = topology_users(&env, &[&consumer[..], &["--apply"]].concat(), &passwords);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );

    let queue = names.service_queue("ledger-py");
    let order = serde_json::json!({ "order_id": uuid::Uuid::new_v4() });
    env.publish(&Envelope::new("orders", "order.confirmed", order.clone()))
        .await;
    env.publish(&Envelope::new("orders", "order.created", order.clone()))
        .await;
    assert_eq!(
        env.queue_len(&queue).await,
        1,
        "bound to order.confirmed only"
    );

    let as_consumer = AmqpConfig::new(
        env.broker.url_as(&user, &password, &env.vhost),
        "test as an outside consumer",
    );
    let connection = as_consumer.connect().await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let taken = channel
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("it reads its own queue");
    let confirmed = channel
        .basic_publish(
            names.dead_letter_exchange().as_str().into(),
            names.dead_letter_routing_key("ledger-py").as_str().into(),
            BasicPublishOptions::default(),
            &taken.delivery.data,
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .expect("it dead-letters to its own queue");
    assert!(confirmed.is_ack(), "{confirmed:?}");
    let other = channel
        .basic_get(
            names.service_queue("orders").as_str().into(),
            BasicGetOptions::default(),
        )
        .await;
    assert!(other.is_err(), "it may not read another service's queue");
    let _ = connection.close(200, "done".into()).await;
    assert_eq!(
        env.queue_len(&names.dead_letter_queue("ledger-py")).await,
        1
    );

    let forged = Envelope::new("orders", "order.confirmed", order);
    let refused = publish_as(&as_consumer, &names, &forged).await.unwrap_err();
    assert!(refused.to_string().contains("ACCESS_REFUSED"), "{refused}");
    assert_eq!(
        env.queue_len(&queue).await,
        0,
        "its forged event went nowhere"
    );
}
