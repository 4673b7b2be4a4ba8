//! [`StepClock`]: which optimizer step the run is at, the one owner of that number.
//!
//! The training loader claims every micro-batch from the clock before Burn's learner trains on
//! it, and the learner then steps the scheduler and the optimizer on the same thread, so those
//! two ask the clock for the step under way. The metric logger and the renderer run behind, on
//! Burn's event thread, so they do not ask the clock: the step travels with each batch instead
//! (`TokenBatch::step`, the `Step` metric), and [`StepTally`] tells them when all of a step's
//! micro-batches are in.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Micro-batches claimed over the whole run; cloning shares it.
#[derive(Clone, Debug)]
pub struct StepClock {
    claimed: Arc<AtomicUsize>,
    /// Micro-batches summed into one optimizer step (accumulation × replicas).
    per_step: usize,
}

impl StepClock {
    /// A clock after `completed_steps` steps of `per_step` micro-batches.
    pub fn new(per_step: usize, completed_steps: usize) -> Self {
        Self { claimed: Arc::new(AtomicUsize::new(completed_steps * per_step)), per_step }
    }

    /// Claims the next micro-batch if fewer than `limit` are claimed; returns the optimizer step
    /// (1-based) it belongs to. Data-parallel replicas claim concurrently.
    pub fn claim(&self, limit: usize) -> Option<usize> {
        self.claimed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < limit).then_some(n + 1))
            .ok()
            .map(|index| index / self.per_step + 1)
    }

    /// Micro-batches claimed so far.
    pub fn claimed(&self) -> usize {
        self.claimed.load(Ordering::SeqCst)
    }

    /// The optimizer step (1-based) the claimed micro-batches belong to: the step under way,
    /// or the last one taken once all of its micro-batches were trained.
    pub fn current_step(&self) -> usize {
        self.claimed().div_ceil(self.per_step)
    }
}

/// Counts the micro-batches seen per step, to tell when a step's last one arrives (in any order
/// of the steps' events).
#[derive(Clone, Debug)]
pub struct StepTally {
    per_step: usize,
    seen: HashMap<usize, usize>,
}

impl StepTally {
    pub fn new(per_step: usize) -> Self {
        Self { per_step, seen: HashMap::new() }
    }

    /// Forgets the micro-batches counted so far.
    pub fn clear(&mut self) {
        self.seen.clear();
    }

    /// Counts one micro-batch of `step`; `true` when it completes the step.
    pub fn count(&mut self, step: usize) -> bool {
        let seen = self.seen.entry(step).or_default();
        *seen += 1;
        let complete = *seen >= self.per_step;
        if complete {
            self.seen.remove(&step);
        }
        complete
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_batches_belong_to_their_step_and_the_clock_resumes_after_a_checkpoint() {
        // Two replicas × two accumulation micro-batches per step.
        let clock = StepClock::new(4, 0);
        let steps: Vec<usize> = (0..9).filter_map(|_| clock.claim(8)).collect();
        assert_eq!(steps, [1, 1, 1, 1, 2, 2, 2, 2]);
        assert_eq!((clock.claimed(), clock.current_step()), (8, 2));
        let resumed = StepClock::new(4, 2);
        assert_eq!((resumed.current_step(), resumed.claim(12)), (2, Some(3)));
        assert_eq!(resumed.current_step(), 3);
    }

    #[test]
    fn a_step_is_complete_when_all_its_micro_batches_are_counted_in_any_order() {
        let mut tally = StepTally::new(2);
        assert!(!tally.count(5));
        assert!(!tally.count(6));
        assert!(tally.count(5));
        assert!(tally.count(6));
        assert!(!tally.count(5), "a completed step starts over");
    }
}
