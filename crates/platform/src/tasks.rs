//! Tasks with names, so a shutdown that takes too long can say what it waits for, and give
//! up on it.

use std::collections::BTreeMap;
use std::future::Future;

use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;

/// A set of named tasks, each running until it ends or the set gives up on it.
pub struct NamedTasks<T> {
    tasks: JoinSet<T>,
    names: BTreeMap<Id, String>,
}

impl<T: Send + 'static> Default for NamedTasks<T> {
    fn default() -> Self {
        Self {
            tasks: JoinSet::new(),
            names: BTreeMap::new(),
        }
    }
}

impl<T: Send + 'static> NamedTasks<T> {
    pub fn spawn(
        &mut self,
        name: impl Into<String>,
        task: impl Future<Output = T> + Send + 'static,
    ) {
        let handle = self.tasks.spawn(task);
        self.names.insert(handle.id(), name.into());
    }

    /// The next task to end, with its name; `None` when none is left. Cancel-safe.
    pub async fn join_next(&mut self) -> Option<(String, Result<T, JoinError>)> {
        let (id, result) = match self.tasks.join_next_with_id().await? {
            Ok((id, output)) => (id, Ok(output)),
            Err(error) => (error.id(), Err(error)),
        };
        Some((self.names.remove(&id).unwrap_or_default(), result))
    }

    /// The names of the tasks that have not ended.
    pub fn running(&self) -> Vec<String> {
        self.names.values().cloned().collect()
    }

    /// Waits for every task until `deadline`, each one's name and outcome passed to `ended`;
    /// then aborts those still running and returns their names.
    pub async fn join_until(
        &mut self,
        deadline: Instant,
        mut ended: impl FnMut(String, Result<T, JoinError>),
    ) -> Vec<String> {
        loop {
            match tokio::time::timeout_at(deadline, self.join_next()).await {
                Ok(Some((name, result))) => ended(name, result),
                Ok(None) => return Vec::new(),
                Err(_) => {
                    let late = self.running();
                    self.tasks.abort_all();
                    self.names.clear();
                    return late;
                }
            }
        }
    }
}
