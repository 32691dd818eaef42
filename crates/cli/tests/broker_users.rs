//! `conveyor topology users`: the script and `--apply` make broker users that can publish
//! only the events their service owns.

use std::collections::BTreeMap;
use std::process::{Command, Output};

use conveyor::{AmqpConfig, ConfirmChannel, Envelope, Names, OutgoingMessage, TraceHeaders};
use conveyor_testkit::TestEnv;

/// The users `conveyor topology users` makes; broker users are per broker, so this test
/// deletes them again however it ends.
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
        .args(args)
        .env("AMQP_URL", env.amqp.url())
        .envs(passwords)
        .output()
        .unwrap()
}

async fn publish_as(amqp: &AmqpConfig, envelope: &Envelope) -> Result<(), conveyor::PublishError> {
    let connection = amqp.connect().await.unwrap();
    let channel = ConfirmChannel::open(&connection, &amqp.user())
        .await
        .unwrap();
    let message = OutgoingMessage::event(&Names::default(), envelope, &TraceHeaders::new());
    let published = channel.publish_all(&[message]).await;
    let _ = connection.close(200, "done".into()).await;
    published
}

#[tokio::test]
async fn the_script_and_apply_make_users_that_publish_only_their_own_events() {
    let env = TestEnv::new().await;
    env.declare(&system::all_topology(&Names::default()).unwrap())
        .await;
    let users = system::broker_users(&Names::default()).unwrap();
    let _cleanup = MadeUsers(users.iter().map(|user| user.name.clone()).collect());
    let passwords: BTreeMap<String, String> = users
        .iter()
        .map(|user| {
            let password = uuid::Uuid::new_v4().simple().to_string();
            (user.password_variable(), password)
        })
        .collect();

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
    publish_as(&as_shipping, &scheduled)
        .await
        .expect("shipping publishes its own events");
    let captured = Envelope::new(
        "shipping",
        "payment.captured",
        serde_json::json!({ "order_id": uuid::Uuid::new_v4() }),
    );
    let refused = publish_as(&as_shipping, &captured).await.unwrap_err();
    assert!(refused.to_string().contains("ACCESS_REFUSED"), "{refused}");
    assert_eq!(
        env.queue_len(&Names::default().service_queue("shipping"))
            .await,
        0,
        "the refused payment.captured reached no queue"
    );
}
