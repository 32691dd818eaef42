//! What a delivery itself tells about where it came from.

use lapin::message::Delivery;

/// Whether a delivery is a retry copy coming back (retry queues hand messages back through
/// the default exchange; producers publish to the events exchange).
pub(super) fn came_from_retry(delivery: &Delivery) -> bool {
    delivery.exchange.as_str().is_empty()
}
