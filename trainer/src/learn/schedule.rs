//! The learning-rate schedule of the GaLore/Fira scripts: linear warm-up from 0, then cosine
//! decay to `min_lr_ratio` of the peak (spec, "Hyper-parameters of the paper's runs").

use burn::optim::LearningRate;
use burn::optim::lr_scheduler::LrScheduler;
use burn::tensor::backend::Backend;

use super::step_clock::StepClock;

/// Warm-up + cosine, in optimizer steps. Burn's `Learner` calls the scheduler once per
/// micro-batch (or per round of data-parallel micro-batches), after the loader claimed it; the
/// rate is that of the step the run's [`StepClock`] is at, so the schedule keeps no count of its
/// own (and a resumed run's clock restarts at its checkpoint).
#[derive(Clone, Debug)]
pub struct WarmupCosine {
    pub peak: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
    pub min_lr_ratio: f64,
    clock: StepClock,
}

impl WarmupCosine {
    pub fn new(peak: f64, warmup_steps: usize, total_steps: usize, min_lr_ratio: f64, clock: StepClock) -> Self {
        Self { peak, warmup_steps, total_steps, min_lr_ratio, clock }
    }

    /// The learning rate of optimizer step `step` (0-based), as the scripts' `LambdaLR`:
    /// `step / warmup` during warm-up, then `min + (1 - min)·½(1 + cos(π·progress))`.
    pub fn at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.peak * step as f64 / self.warmup_steps.max(1) as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.peak * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine)
    }
}

impl LrScheduler for WarmupCosine {
    /// Nothing: where the schedule is comes from the clock.
    type Record<B: Backend> = ();

    fn step(&mut self) -> LearningRate {
        self.at(self.clock.current_step().saturating_sub(1))
    }

    fn to_record<B: Backend>(&self) {}

    fn load_record<B: Backend>(self, _record: ()) -> Self {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_then_cosine_to_the_floor() {
        let schedule = WarmupCosine::new(0.01, 10, 110, 0.1, StepClock::new(1, 0));
        assert_eq!(schedule.at(0), 0.0);
        assert!((schedule.at(5) - 0.005).abs() < 1e-15);
        assert!((schedule.at(10) - 0.01).abs() < 1e-15);
        // Half-way through the decay: min + (1 - min)/2.
        assert!((schedule.at(60) - 0.01 * 0.55).abs() < 1e-15);
        assert!((schedule.at(110) - 0.001).abs() < 1e-15);
        assert!((schedule.at(500) - 0.001).abs() < 1e-15);
    }

    #[test]
    fn accumulation_advances_once_per_optimizer_step() {
        // Burn claims a micro-batch, then asks the scheduler: three micro-batches per step.
        let clock = StepClock::new(3, 0);
        let mut schedule = WarmupCosine::new(1.0, 4, 8, 0.0, clock.clone());
        let lrs: Vec<f64> = (0..9).map(|_| clock.claim(usize::MAX).map(|_| LrScheduler::step(&mut schedule)).unwrap()).collect();
        assert_eq!(lrs, [0.0, 0.0, 0.0, 0.25, 0.25, 0.25, 0.5, 0.5, 0.5]);
        // Resumed after those 3 steps, the next micro-batch is in step 4.
        let clock = StepClock::new(3, 3);
        let mut resumed = WarmupCosine::new(1.0, 4, 8, 0.0, clock.clone());
        clock.claim(usize::MAX);
        assert_eq!(LrScheduler::step(&mut resumed), 0.75);
    }
}
