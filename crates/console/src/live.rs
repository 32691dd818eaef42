//! Live figures over server-sent events: the broker's counts and the databases' figures every
//! few seconds while a page is open, as `{"orders.waiting": 3, …}`, which the page's script writes into the cells
//! marked `data-live`. The stream ends when the console stops, so a stop never waits on an
//! open page.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde_json::{Map, Value};

use crate::AppState;
use crate::session::Operator;
use crate::{broker, figures};

/// How often the figures are asked for: the management API's own counts move about every
/// five seconds, so asking more often would show nothing new.
const EVERY: Duration = Duration::from_secs(2);

pub(crate) async fn queues(
    State(state): State<Arc<AppState>>,
    _operator: Operator,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = futures_util::stream::unfold(state, |state| async move {
        if state.shutdown.sleep(EVERY).await {
            return None;
        }
        let (queues, databases) = tokio::join!(
            broker::service_queues(&state.management, &state.names),
            figures::read(&state)
        );
        let event = match queues {
            Ok(services) => Event::default()
                .event("figures")
                .data(flat(&services, &databases).to_string()),
            Err(error) => Event::default()
                .event("problem")
                .data(format!("the broker's queues could not be read: {error:#}")),
        };
        Some((Ok(event), state))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// `{"<service>.<figure>": n}` for every cell the overview marks.
fn flat(
    services: &std::collections::BTreeMap<String, broker::ServiceQueues>,
    databases: &figures::DatabaseFigures,
) -> Value {
    let mut out = Map::new();
    for (name, outbox) in &databases.outboxes {
        out.insert(format!("{name}.outbox_backlog"), outbox.backlog.into());
        out.insert(
            format!("{name}.outbox_oldest_seconds"),
            outbox.oldest_seconds.round().into(),
        );
        out.insert(format!("{name}.outbox_parked"), outbox.parked.into());
    }
    for (flow, runs) in &databases.flows {
        out.insert(format!("flow.{flow}.in_flight"), runs.in_flight.into());
        out.insert(format!("flow.{flow}.stuck"), runs.stuck.into());
    }
    for (event_type, published) in &databases.per_minute {
        out.insert(format!("type.{event_type}"), (*published).into());
    }
    for (name, figures) in services {
        let mut put = |figure: &str, value: u64| {
            out.insert(format!("{name}.{figure}"), Value::from(value));
        };
        put("consumers", figures.consumers);
        put("waiting", figures.waiting);
        put("in_flight", figures.in_flight);
        put("retrying", figures.retrying.values().sum());
        put("dead_letters", figures.dead_letters);
    }
    Value::Object(out)
}
