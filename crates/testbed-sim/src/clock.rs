//! The simulated machine's clock: what Karmada's simulated controllers read (a taint's age against a
//! policy's toleration) and what a command that waits on the machine measures with.
//!
//! It is this host's clock plus [`SimWorld::clock_ahead_ms`](crate::SimWorld::clock_ahead_ms). A wait on
//! it ([`Clock::sleep`]) of `d` takes `d` scaled by the machine's speed ([`crate::SimOptions::speed`]) in real
//! time, as every step of the simulated machine does, and moves the clock ahead by the rest, so that `d`
//! has passed on the machine when the wait ends: a drill that waits out a 60 s toleration takes 0.6 s at
//! the default speed, and no time at speed 0. What is measured on it is simulated time
//! ([`Clock::simulated`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use testbed_provider::Clock;

use crate::machine::Shared;

pub(crate) struct SimClock {
    pub(crate) shared: Arc<Shared>,
}

#[async_trait]
impl Clock for SimClock {
    fn now(&self) -> Duration {
        Duration::from_millis(self.shared.read(crate::SimWorld::now_ms))
    }

    async fn sleep(&self, d: Duration) {
        let real = self.shared.options.scaled(d).min(d);
        tokio::time::sleep(real).await;
        let ahead = u64::try_from(d.saturating_sub(real).as_millis()).unwrap_or(u64::MAX);
        if ahead == 0 {
            return;
        }
        let mut world = self.shared.lock();
        world.clock_ahead_ms = world.clock_ahead_ms.saturating_add(ahead);
        if let Err(e) = self.shared.save_locked(&world) {
            tracing::warn!("the simulated machine could not keep its clock: {e}");
        }
    }

    fn simulated(&self) -> bool {
        true
    }
}
