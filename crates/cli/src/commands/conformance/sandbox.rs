//! What a run makes and removes: a vhost, the system's exchanges on it, broker users (the
//! subject's own, the type's owner and a forger) under a prefix of the run's own, and the
//! subject's database with the table its effects go to.

use anyhow::Context as _;
use conveyor::{AmqpConfig, BrokerUser, Names, ServiceTopology, Topology};
use serde_json::json;
use sqlx::{Connection as _, PgConnection};
use system::management::{ManagementApi, percent_encode};
use uuid::Uuid;

use super::{EVENT_TYPE, RETRY_TIERS, SERVICE};

/// Where the subject's effects are counted: no unique key, so a duplicate shows.
const EFFECTS_TABLE: &str = "CREATE TABLE conformance_effects (event_id UUID NOT NULL,
    attempt INT NOT NULL, handled_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())";

/// A broker user of the run, and how to connect as it.
pub(crate) struct Account {
    pub(crate) name: String,
    pub(crate) amqp: AmqpConfig,
}

pub(crate) struct Sandbox {
    /// Names the vhost, the prefix and the database.
    pub(crate) id: String,
    pub(crate) names: Names,
    pub(crate) vhost: String,
    api: ManagementApi,
    /// AMQP_URL's user (an administrator) on the run's vhost.
    pub(crate) admin: AmqpConfig,
    pub(crate) subject: Account,
    /// The owner of [`EVENT_TYPE`]: what the subject must accept.
    pub(crate) owner: Account,
    /// Another service's user: what the subject must refuse as a forged source.
    pub(crate) forger: Account,
    postgres: String,
    database: String,
    pub(crate) database_url: String,
}

impl Sandbox {
    /// Makes everything; what was made before a failure is removed again.
    ///
    /// # Errors
    /// When the management API, the broker or Postgres refuse.
    pub(crate) async fn create(postgres: &str) -> anyhow::Result<Self> {
        let id = Uuid::new_v4().simple().to_string()[..10].to_owned();
        let admin_url = AmqpConfig::from_env("conveyor conformance").url();
        let api = ManagementApi::for_broker(&admin_url)?;
        let vhost = format!("conveyor-conformance-{id}");
        let vhost_path = percent_encode(&vhost);
        api.put(
            &format!("vhosts/{vhost_path}"),
            &json!({}),
            "making the run's vhost",
        )
        .await?;
        let names = Names::with_prefix(format!("cf{id}"));
        let database = format!("conformance_{id}");
        let database_url = database_url(postgres, &database)?;
        let account = |name: String, password: &str| Account {
            amqp: AmqpConfig::new(
                url_as(&admin_url, &name, password, &vhost),
                format!("conveyor conformance as {name}"),
            ),
            name,
        };
        let password = Uuid::new_v4().simple().to_string();
        let owner = events_schema::publishers::owner_of(EVENT_TYPE).unwrap_or("orders");
        let sandbox = Self {
            admin: AmqpConfig::new(
                url_as(&admin_url, api.user(), &admin_password(&admin_url), &vhost),
                "conveyor conformance",
            ),
            subject: account(names.broker_user(SERVICE), &password),
            owner: account(names.broker_user(owner), &password),
            forger: account(names.broker_user("payments"), &password),
            id,
            names,
            vhost,
            api,
            postgres: postgres.to_owned(),
            database,
            database_url,
        };
        if let Err(error) = sandbox.fill(&password).await {
            sandbox.remove().await;
            return Err(error);
        }
        Ok(sandbox)
    }

    async fn fill(&self, password: &str) -> anyhow::Result<()> {
        let vhost = percent_encode(&self.vhost);
        let everything = json!({ "configure": ".*", "write": ".*", "read": ".*" });
        let admin = percent_encode(self.api.user());
        self.api
            .put(
                &format!("permissions/{vhost}/{admin}"),
                &everything,
                "opening the vhost to AMQP_URL's user",
            )
            .await?;
        let subject = BrokerUser::for_outside_consumer(&self.names, &self.topology());
        self.make_user(
            &subject.name,
            password,
            json!({
                "configure": subject.configure, "write": subject.write, "read": subject.read,
            }),
        )
        .await?;
        if let Some(topic) = &subject.topic {
            self.api
                .put(
                    &format!("topic-permissions/{vhost}/{}", percent_encode(&subject.name)),
                    &json!({ "exchange": topic.exchange, "write": topic.write, "read": topic.read }),
                    "the subject's topic permissions",
                )
                .await?;
        }
        let publish_only = json!({ "configure": "^$", "write": ".*", "read": "^$" });
        for user in [&self.owner.name, &self.forger.name] {
            self.make_user(user, password, publish_only.clone()).await?;
        }
        let connection = self.admin.connect().await?;
        Topology::shared(&self.names)
            .declare(&connection)
            .await
            .context("declaring the system's exchanges on the run's vhost")?;
        conveyor::close_within(&connection, "set up", std::time::Duration::from_secs(5)).await;
        let pool = platform::connect_or_create(&self.database_url, 2).await?;
        sqlx::query(EFFECTS_TABLE).execute(&pool).await?;
        pool.close().await;
        Ok(())
    }

    async fn make_user(
        &self,
        name: &str,
        password: &str,
        permissions: serde_json::Value,
    ) -> anyhow::Result<()> {
        let user = percent_encode(name);
        self.api
            .put(
                &format!("users/{user}"),
                &json!({ "password": password, "tags": "" }),
                &format!("making user {name}"),
            )
            .await?;
        self.api
            .put(
                &format!("permissions/{}/{user}", percent_encode(&self.vhost)),
                &permissions,
                &format!("the permissions of {name}"),
            )
            .await
    }

    /// The subject's queues, bindings and tiers, as its broker user's permissions name them.
    pub(crate) fn topology(&self) -> ServiceTopology {
        ServiceTopology {
            service: SERVICE.to_owned(),
            event_types: [EVENT_TYPE.to_owned()].into_iter().collect(),
            retry_tiers: RETRY_TIERS.to_vec(),
        }
    }

    /// The queues a subject must leave empty: its own and its retry queues.
    pub(crate) fn subject_queues(&self) -> Vec<String> {
        let mut queues = vec![self.names.service_queue(SERVICE)];
        queues.extend(
            RETRY_TIERS
                .iter()
                .map(|tier| self.names.retry_queue(SERVICE, *tier)),
        );
        queues
    }

    pub(crate) fn management(&self) -> &ManagementApi {
        &self.api
    }

    /// Removes the vhost (with its queues), the users and the database; a failure is
    /// reported and the rest still removed.
    pub(crate) async fn remove(&self) {
        let vhost = percent_encode(&self.vhost);
        let mut leftovers = Vec::new();
        for user in [&self.subject.name, &self.owner.name, &self.forger.name] {
            if let Err(error) = self
                .api
                .delete(&format!("users/{}", percent_encode(user)), user)
                .await
            {
                leftovers.push(format!("broker user {user}: {error:#}"));
            }
        }
        if let Err(error) = self
            .api
            .delete(&format!("vhosts/{vhost}"), "the run's vhost")
            .await
        {
            leftovers.push(format!("vhost {}: {error:#}", self.vhost));
        }
        if let Err(error) = self.drop_database().await {
            leftovers.push(format!("database {}: {error:#}", self.database));
        }
        for leftover in leftovers {
            eprintln!("conveyor conformance: could not remove {leftover}");
        }
    }

    async fn drop_database(&self) -> anyhow::Result<()> {
        let mut connection = PgConnection::connect(&self.postgres).await?;
        // The name is the run's own, of hex digits: nothing to escape.
        let drop = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.database);
        sqlx::query(sqlx::AssertSqlSafe(drop))
            .execute(&mut connection)
            .await?;
        connection.close().await?;
        Ok(())
    }
}

/// `postgres` with its database replaced by `database`.
fn database_url(postgres: &str, database: &str) -> anyhow::Result<String> {
    let mut url = reqwest::Url::parse(postgres).with_context(|| {
        format!(
            "--postgres {:?} is not a URL",
            conveyor::redact_url(postgres)
        )
    })?;
    url.set_path(&format!("/{database}"));
    Ok(url.to_string())
}

/// `amqp_url`'s scheme, host and port, as `user` on `vhost`.
fn url_as(amqp_url: &str, user: &str, password: &str, vhost: &str) -> String {
    let (scheme, rest) = amqp_url.split_once("://").unwrap_or(("amqp", amqp_url));
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let host = host.split_once('/').map_or(host, |(host, _)| host);
    format!(
        "{scheme}://{}:{}@{host}/{}",
        percent_encode(user),
        percent_encode(password),
        percent_encode(vhost)
    )
}

/// AMQP_URL's password (`guest` when it names none, as the broker's default user).
fn admin_password(amqp_url: &str) -> String {
    amqp_url
        .parse::<lapin::uri::AMQPUri>()
        .map(|uri| uri.authority.userinfo.password)
        .unwrap_or_else(|_| "guest".to_owned())
}
