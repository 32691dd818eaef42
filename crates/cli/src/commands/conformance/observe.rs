//! What the suite can see of a subject from outside: the effects in its table, the dead
//! letters in its DLQ (taken out as they come, so none is counted twice), and its queues.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use sqlx::PgPool;
use uuid::Uuid;

use super::SERVICE;
use super::sandbox::Sandbox;

/// A dead letter as the subject left it.
#[derive(Debug, Clone)]
pub(crate) struct Letter {
    pub(crate) body: Vec<u8>,
    pub(crate) properties: BasicProperties,
}

impl Letter {
    /// The `message_id` property, which every case sets to its event's id.
    pub(crate) fn message_id(&self) -> Option<Uuid> {
        self.properties
            .message_id()
            .as_ref()
            .and_then(|id| id.as_str().parse().ok())
    }
}

pub(crate) struct Observer {
    connection: Connection,
    channel: Channel,
    pool: PgPool,
    dead_letter_queue: String,
    queues: Vec<String>,
    /// Every letter taken from the DLQ so far.
    pub(crate) letters: Vec<Letter>,
}

impl Observer {
    /// # Errors
    /// When the broker or the database cannot be reached.
    pub(crate) async fn open(sandbox: &Sandbox) -> anyhow::Result<Self> {
        let connection = sandbox.admin.connect().await?;
        let channel = connection.create_channel().await?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&sandbox.database_url)
            .await?;
        Ok(Self {
            connection,
            channel,
            pool,
            dead_letter_queue: sandbox.names.dead_letter_queue(SERVICE),
            queues: sandbox.subject_queues(),
            letters: Vec::new(),
        })
    }

    /// Each event's effects so far: the attempt each was committed on.
    ///
    /// # Errors
    /// When the table cannot be read.
    pub(crate) async fn effects(&self) -> anyhow::Result<HashMap<Uuid, Vec<i32>>> {
        let rows: Vec<(Uuid, i32)> =
            sqlx::query_as("SELECT event_id, attempt FROM conformance_effects ORDER BY handled_at")
                .fetch_all(&self.pool)
                .await?;
        let mut effects: HashMap<Uuid, Vec<i32>> = HashMap::new();
        for (event, attempt) in rows {
            effects.entry(event).or_default().push(attempt);
        }
        Ok(effects)
    }

    /// Takes every letter waiting in the DLQ.
    ///
    /// # Errors
    /// When the DLQ cannot be read (the subject has not declared it yet counts as empty).
    pub(crate) async fn take_letters(&mut self) -> anyhow::Result<()> {
        if !self.exists(&self.dead_letter_queue.clone()).await? {
            return Ok(());
        }
        while let Some(message) = self
            .channel
            .basic_get(
                self.dead_letter_queue.as_str().into(),
                BasicGetOptions::default(),
            )
            .await?
        {
            let delivery = message.delivery;
            delivery.acker.ack(BasicAckOptions::default()).await?;
            self.letters.push(Letter {
                body: delivery.data,
                properties: delivery.properties,
            });
        }
        Ok(())
    }

    /// Messages ready in the subject's queues (its own and the retry queues); not those it
    /// holds unacknowledged.
    ///
    /// # Errors
    /// When the broker refuses.
    pub(crate) async fn ready_in_queues(&mut self) -> anyhow::Result<u32> {
        let mut ready = 0;
        for queue in self.queues.clone() {
            ready += self.depth(&queue).await?;
        }
        Ok(ready)
    }

    /// Waits until the subject's queues stay empty for `quiet` (or `limit` passes), taking
    /// letters meanwhile: what a subject would still do late shows before the verdict.
    ///
    /// # Errors
    /// When the broker refuses.
    pub(crate) async fn settle(&mut self, quiet: Duration, limit: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut empty_since = Instant::now();
        while started.elapsed() < limit {
            self.take_letters().await?;
            if self.ready_in_queues().await? > 0 {
                empty_since = Instant::now();
            } else if empty_since.elapsed() >= quiet {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.take_letters().await
    }

    async fn depth(&mut self, queue: &str) -> anyhow::Result<u32> {
        match self.declare_passive(queue).await? {
            Some(queue) => Ok(queue.message_count()),
            None => Ok(0),
        }
    }

    async fn exists(&mut self, queue: &str) -> anyhow::Result<bool> {
        Ok(self.declare_passive(queue).await?.is_some())
    }

    /// A passive declare; a queue that does not exist closes the channel, so another is
    /// opened for what follows.
    async fn declare_passive(&mut self, queue: &str) -> anyhow::Result<Option<lapin::Queue>> {
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        match self
            .channel
            .queue_declare(queue.into(), options, FieldTable::default())
            .await
        {
            Ok(queue) => Ok(Some(queue)),
            Err(error) if conveyor::is_not_found(&error) => {
                self.channel = self.connection.create_channel().await?;
                Ok(None)
            }
            Err(error) => Err(error.into()),
        }
    }

    pub(crate) async fn close(self) {
        conveyor::close_within(&self.connection, "observed", Duration::from_secs(5)).await;
        self.pool.close().await;
    }
}
