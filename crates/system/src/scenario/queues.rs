//! Counting the broker's queues: the messages that left the flow (dead letters, events no
//! queue was bound for) and the work still queued.

/// Messages that left the flow: dead letters, and events no queue was bound for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Strays {
    pub dead_letters: u64,
    pub unrouted: u64,
}

impl Strays {
    /// What came after `before` was counted.
    pub fn since(self, before: Self) -> Self {
        Self {
            dead_letters: self.dead_letters.saturating_sub(before.dead_letters),
            unrouted: self.unrouted.saturating_sub(before.unrouted),
        }
    }
}

/// The dead letters of every service and the messages in `conveyor.unrouted`, now, under
/// `names`.
///
/// # Errors
/// When the broker cannot be reached.
pub async fn strays(
    amqp: &conveyor::AmqpConfig,
    names: &conveyor::Names,
) -> anyhow::Result<Strays> {
    let connection = amqp.connect().await?;
    let dead_letters = dead_letters_on(&connection, names).await?;
    let unrouted = waiting(&connection, &names.unrouted()).await?;
    let _ = connection.close(200, "counted".into()).await;
    Ok(Strays {
        dead_letters,
        unrouted,
    })
}

/// Messages waiting in every service's dead-letter queue, under DESIGN.md's names (the
/// end-to-end tests' systems have them).
///
/// # Errors
/// When the broker cannot be reached.
pub async fn dead_letters(amqp: &conveyor::AmqpConfig) -> anyhow::Result<u64> {
    let connection = amqp.connect().await?;
    let total = dead_letters_on(&connection, &conveyor::Names::default()).await?;
    let _ = connection.close(200, "counted".into()).await;
    Ok(total)
}

/// The dead-letter queues the topology declares: only services that consume have one
/// (users does not), and asking for a queue that does not exist makes the broker close the
/// channel, which lapin logs as an error.
async fn dead_letters_on(
    connection: &lapin::Connection,
    names: &conveyor::Names,
) -> anyhow::Result<u64> {
    let topology = crate::all_topology(names)?;
    let mut total = 0;
    for queue in topology
        .queue_names()
        .filter(|queue| is_dead_letter_queue(queue))
    {
        total += waiting(connection, queue).await?;
    }
    Ok(total)
}

fn is_dead_letter_queue(queue: &str) -> bool {
    queue.ends_with(".dlq")
}

/// Messages ready in `queue`; 0 when it does not exist.
async fn waiting(connection: &lapin::Connection, queue: &str) -> anyhow::Result<u64> {
    let channel = connection.create_channel().await?;
    // A passive declare of a missing queue closes the channel; nothing to close then.
    let Ok(declared) = conveyor::declare_passive(&channel, queue).await else {
        return Ok(0);
    };
    let _ = channel.close(200, "counted".into()).await;
    Ok(u64::from(declared.message_count()))
}

/// Messages waiting in the services' queues and retry tiers under `names` (dead letters left
/// out): work still to do.
///
/// # Errors
/// When the broker cannot be reached.
pub(crate) async fn queued(
    amqp: &conveyor::AmqpConfig,
    names: &conveyor::Names,
) -> anyhow::Result<u64> {
    let topology = crate::all_topology(names)?;
    let connection = amqp.connect().await?;
    let mut total = 0;
    for queue in topology.queue_names() {
        // Not work in flight: failures, strays and the operators' audit log.
        if is_dead_letter_queue(queue)
            || queue == names.unrouted()
            || queue == names.dead_letter_audit_queue()
        {
            continue;
        }
        total += waiting(&connection, queue).await?;
    }
    let _ = connection.close(200, "counted".into()).await;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dead_letter_queues_counted_are_those_of_the_consuming_services() {
        let names = conveyor::Names::default();
        let topology = crate::all_topology(&names).unwrap();
        let mut counted: Vec<String> = topology
            .queue_names()
            .filter(|queue| is_dead_letter_queue(queue))
            .map(str::to_owned)
            .collect();
        let mut expected: Vec<String> = crate::ServiceName::all()
            .filter(|service| service.consumes())
            .map(|service| names.dead_letter_queue(service.as_str()))
            .collect();
        counted.sort();
        expected.sort();
        assert_eq!(counted, expected);
    }
}
