//! Where the relay's reader is in the outbox. Sent rows leave the table but their index
//! entries stay until vacuum, so reading from the start every time would walk over all of
//! them: the reader reads after the newest row it took. An id it skipped on the way (the
//! ids of one outbox are dense) belongs to a transaction that has not committed yet, or
//! rolled back: it is looked up by id now and then until it appears or is old enough to
//! leave to the periodic full read. Rows the broker refused are looked up again the same way.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How often missing ids are looked up again.
const RECHECK_INTERVAL: Duration = Duration::from_millis(20);

/// After this long a missing id is left to the full read (a transaction open that long, or
/// a rollback).
const GIVE_UP_AFTER: Duration = Duration::from_secs(300);

/// How often the whole outbox is read from the start, the safety net.
const FULL_READ_INTERVAL: Duration = Duration::from_secs(30);

/// How soon after a reader first finds rows it reads the whole outbox again: it cannot know
/// which ids below the first row it saw are still to commit (the first transactions of a
/// burst commit in any order), and without this a row among them waited for the next full
/// read, 30 s later.
const FIRST_ROWS_FOLLOW_UP: Duration = Duration::from_secs(1);

/// Missing ids remembered at most; beyond, the full read finds them.
const MAX_MISSING: usize = 10_000;

pub(super) struct Cursor {
    after: i64,
    missing: BTreeMap<i64, Instant>,
    last_recheck: Instant,
    last_full_read: Instant,
}

impl Cursor {
    /// A new reader starts with a full read.
    pub(super) fn new() -> Self {
        let long_ago = Instant::now()
            .checked_sub(FULL_READ_INTERVAL)
            .unwrap_or_else(Instant::now);
        Self {
            after: 0,
            missing: BTreeMap::new(),
            last_recheck: long_ago,
            last_full_read: long_ago,
        }
    }

    /// The missing ids to look up now, if it is time: at most every [`RECHECK_INTERVAL`]
    /// while rows keep coming, at once after the reader was idle (a late commit notifies).
    pub(super) fn due_rechecks(&mut self, after_idle: bool) -> Option<Vec<i64>> {
        let throttled = !after_idle && self.last_recheck.elapsed() < RECHECK_INTERVAL;
        if self.missing.is_empty() || throttled {
            return None;
        }
        self.last_recheck = Instant::now();
        self.missing
            .retain(|_, since| since.elapsed() < GIVE_UP_AFTER);
        Some(self.missing.keys().copied().collect())
    }

    /// Where the next read starts: after the cursor, or at the start when a full read is due.
    pub(super) fn next_read(&self) -> i64 {
        if self.last_full_read.elapsed() >= FULL_READ_INTERVAL {
            0
        } else {
            self.after
        }
    }

    /// Notes the ids (ascending) a read after `from` returned: ids skipped between them
    /// become missing ones, found ones stop being missing, and the cursor moves on.
    pub(super) fn read(&mut self, from: i64, ids: &[i64]) {
        if from == 0 {
            self.last_full_read = Instant::now();
        }
        if self.after == 0 && !ids.is_empty() {
            // The next full read is due FIRST_ROWS_FOLLOW_UP from now.
            self.last_full_read = Instant::now()
                .checked_sub(FULL_READ_INTERVAL - FIRST_ROWS_FOLLOW_UP)
                .unwrap_or_else(Instant::now);
        }
        // A reader that has not seen a row yet knows nothing of the ids below the first one
        // it sees (sent long ago, or rolled back): only gaps after a seen row are missing.
        let mut expected = (self.after > 0).then_some(self.after + 1);
        for &id in ids {
            self.missing.remove(&id);
            if id <= self.after {
                continue;
            }
            if let Some(expected) = expected {
                let now = Instant::now();
                for skipped in expected..id {
                    if self.missing.len() >= MAX_MISSING {
                        break;
                    }
                    self.missing.insert(skipped, now);
                }
            }
            expected = Some(id + 1);
            self.after = id;
        }
    }

    /// The next read looks everywhere: every missing id at once and the whole outbox from
    /// the start. For the last flush, when a row committed out of order may sit behind
    /// the cursor and no later read would find it.
    pub(super) fn sweep(&mut self) {
        let long_ago = Instant::now()
            .checked_sub(FULL_READ_INTERVAL.max(RECHECK_INTERVAL))
            .unwrap_or_else(Instant::now);
        self.last_recheck = long_ago;
        self.last_full_read = long_ago;
    }

    /// Missing ids that turned up.
    pub(super) fn found(&mut self, ids: &[i64]) {
        for id in ids {
            self.missing.remove(id);
        }
    }

    /// Ids to look up again soon (rows the broker refused).
    pub(super) fn recheck(&mut self, ids: impl IntoIterator<Item = i64>) {
        let now = Instant::now();
        for id in ids {
            self.missing.insert(id, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_ids_are_looked_up_until_they_appear() {
        let mut cursor = Cursor::new();
        assert_eq!(cursor.next_read(), 0);
        cursor.read(0, &[1, 2, 5]);
        assert_eq!(cursor.next_read(), 5);
        assert_eq!(cursor.due_rechecks(true), Some(vec![3, 4]));
        // Row 4 committed late; row 3 rolled back and never comes.
        cursor.found(&[4]);
        cursor.read(5, &[6]);
        assert_eq!(cursor.due_rechecks(true), Some(vec![3]));
        assert_eq!(cursor.next_read(), 6);
    }

    #[test]
    fn a_reader_reads_everything_again_soon_after_it_first_finds_rows() {
        let mut cursor = Cursor::new();
        cursor.read(0, &[]);
        assert_eq!(cursor.next_read(), 0, "an empty outbox: nothing seen yet");
        cursor.read(0, &[]);
        // Row 7 committed before row 6: the read finds 7 alone, and 6 is behind the cursor.
        cursor.read(0, &[7]);
        assert_eq!(cursor.next_read(), 7);
        assert_eq!(cursor.due_rechecks(true), None, "6 cannot be known missing");
        std::thread::sleep(FIRST_ROWS_FOLLOW_UP);
        assert_eq!(cursor.next_read(), 0, "the follow-up full read finds 6");
        cursor.read(0, &[6, 7]);
        // After that, the usual interval.
        assert_eq!(cursor.next_read(), 7);
    }

    #[test]
    fn ids_sent_before_the_reader_started_are_not_missing() {
        let mut cursor = Cursor::new();
        // An outbox whose earlier rows were sent by a previous process.
        cursor.read(0, &[250_000, 250_001, 250_003]);
        assert_eq!(cursor.due_rechecks(true), Some(vec![250_002]));
        assert_eq!(cursor.next_read(), 250_003);
    }

    #[test]
    fn a_sweep_looks_up_every_missing_id_and_reads_from_the_start_at_once() {
        let mut cursor = Cursor::new();
        cursor.read(0, &[1, 3]);
        cursor.read(3, &[4]);
        assert_eq!(cursor.due_rechecks(false), Some(vec![2]));
        assert_eq!(
            cursor.due_rechecks(false),
            None,
            "throttled while rows come"
        );
        assert_eq!(cursor.next_read(), 4);
        cursor.sweep();
        assert_eq!(cursor.due_rechecks(false), Some(vec![2]));
        assert_eq!(cursor.next_read(), 0);
    }

    #[test]
    fn nothing_is_rechecked_before_its_time_or_when_nothing_is_missing() {
        let mut cursor = Cursor::new();
        cursor.read(0, &[1, 2, 3]);
        assert_eq!(cursor.due_rechecks(true), None);
        cursor.recheck([2]);
        assert_eq!(cursor.due_rechecks(false), Some(vec![2]));
        assert_eq!(
            cursor.due_rechecks(false),
            None,
            "under load, one look-up per interval"
        );
    }
}
