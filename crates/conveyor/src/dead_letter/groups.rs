//! Dead letters grouped by failure fingerprint, as a scan goes: what `conveyor dlq groups`
//! prints and the operators' console streams to its page.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::fingerprint::Fingerprint;
use super::letter::DeadLetter;

/// Distinct groups kept at most; letters of further ones are counted together, so a queue
/// whose errors defeat the masking cannot use up the operator's memory.
pub const MAX_GROUPS: usize = 10_000;

/// The letters that failed one way.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// What the letters share.
    pub fingerprint: Fingerprint,
    /// Letters counted so far.
    pub count: u64,
    /// The earliest failure time among them.
    pub first: Option<DateTime<Utc>>,
    /// The latest failure time among them.
    pub last: Option<DateTime<Utc>>,
    /// The event id of the first letter of the group in queue order, to look at.
    pub sample_id: Option<String>,
    /// That letter's error as recorded, unmasked.
    pub sample_error: Option<String>,
}

/// The groups of the letters seen so far.
#[derive(Debug, Clone, Default)]
pub struct Groups {
    groups: HashMap<String, Group>,
    ungrouped: u64,
    letters: u64,
}

impl Groups {
    /// Counts `letter` in its group.
    pub fn add(&mut self, letter: &DeadLetter) {
        self.letters += 1;
        let print = letter.fingerprint();
        if self.groups.len() >= MAX_GROUPS && !self.groups.contains_key(&print.id) {
            self.ungrouped += 1;
            return;
        }
        let group = self
            .groups
            .entry(print.id.clone())
            .or_insert_with(|| Group {
                fingerprint: print,
                count: 0,
                first: None,
                last: None,
                sample_id: letter.id.clone(),
                sample_error: letter.error.clone(),
            });
        group.count += 1;
        if let Some(at) = letter.failed_at {
            group.first = Some(group.first.map_or(at, |first| first.min(at)));
            group.last = Some(group.last.map_or(at, |last| last.max(at)));
        }
    }

    /// Letters counted, grouped or not.
    pub fn letters(&self) -> u64 {
        self.letters
    }

    /// Letters of kinds past [`MAX_GROUPS`], counted but not grouped.
    pub fn ungrouped(&self) -> u64 {
        self.ungrouped
    }

    /// The groups, the largest first (the earliest first among equals), at most `limit`.
    pub fn largest(&self, limit: usize) -> Vec<Group> {
        let mut ordered: Vec<&Group> = self.groups.values().collect();
        ordered.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(a.first.cmp(&b.first))
                .then(a.fingerprint.id.cmp(&b.fingerprint.id))
        });
        ordered.into_iter().take(limit).cloned().collect()
    }
}
