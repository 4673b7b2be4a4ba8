//! [`RunHealth`]: the first reason the run must stop on its own (a non-finite gradient or
//! validation loss), shared by the parts that detect it and the checkpointing that must not save
//! a broken model.

use std::sync::{Arc, Mutex};

/// Shared, cloneable slot holding why the run stopped, if it did.
#[derive(Clone, Debug, Default)]
pub struct RunHealth(Arc<Mutex<Option<String>>>);

impl RunHealth {
    /// Records `reason` unless an earlier one is already recorded.
    pub fn fail(&self, reason: String) {
        self.0.lock().expect("the health slot is never poisoned").get_or_insert(reason);
    }

    /// Why the run failed, if it did.
    pub fn failure(&self) -> Option<String> {
        self.0.lock().expect("the health slot is never poisoned").clone()
    }
}
