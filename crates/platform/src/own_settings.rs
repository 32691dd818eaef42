//! Settings of a service's own given in code instead of the environment: a test, or the
//! system starting services in one process, hands `orders_service::Settings { .. }` to
//! orders this way, and orders reads it before its variables. One value per type.

use std::any::{Any, TypeId};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone, Default)]
pub struct OwnSettings(BTreeMap<TypeId, Arc<dyn Any + Send + Sync>>);

impl OwnSettings {
    /// Gives `value`, replacing one of its type given before.
    pub fn insert<T: Any + Send + Sync>(&mut self, value: T) {
        self.0.insert(TypeId::of::<T>(), Arc::new(value));
    }

    /// The value of type `T` given, if any.
    pub fn get<T: Any + Clone>(&self) -> Option<T> {
        self.0
            .get(&TypeId::of::<T>())
            .and_then(|value| value.downcast_ref::<T>())
            .cloned()
    }

    /// The value of type `T` given, else what `read` makes of the environment.
    ///
    /// # Errors
    /// `read`'s, when nothing was given.
    pub fn or_read<T: Any + Clone, E>(&self, read: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        self.get().map_or_else(read, Ok)
    }

    /// Changes the value of type `T` given, starting from `T::default()` (not the
    /// environment) when none was.
    pub fn edit<T: Any + Clone + Default + Send + Sync>(&mut self, change: impl FnOnce(&mut T)) {
        let mut value = self.get::<T>().unwrap_or_default();
        change(&mut value);
        self.insert(value);
    }
}

impl std::fmt::Debug for OwnSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values may hold secrets (a private key, an admin's password): only their count.
        write!(f, "OwnSettings({} given)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Default, PartialEq)]
    struct Deadline(u64);

    #[test]
    fn a_given_value_is_read_before_the_environment_and_edits_keep_it() {
        let mut settings = OwnSettings::default();
        let from_env = || Ok::<_, ()>(Deadline(120));
        assert_eq!(settings.or_read(from_env), Ok(Deadline(120)));
        settings.insert(Deadline(30));
        assert_eq!(settings.or_read(from_env), Ok(Deadline(30)));
        settings.edit(|deadline: &mut Deadline| deadline.0 += 1);
        assert_eq!(settings.get(), Some(Deadline(31)));
        assert_eq!(format!("{settings:?}"), "OwnSettings(1 given)");
    }
}
