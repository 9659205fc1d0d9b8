//! The clock a command that waits on the world reads: the host's on a real machine, the simulated
//! machine's when the layer it waits on is simulated.
//!
//! A simulated machine's clock runs ahead while testbed waits on it (see `testbed_sim::SimMachine::clock`),
//! so a wait of a minute of the world's time takes a fraction of a second; what is measured on it is
//! simulated time, and says so ([`Clock::simulated`]).

use std::time::{Duration, Instant};

use async_trait::async_trait;

/// Time as the world a command waits on sees it.
#[async_trait]
pub trait Clock: Send + Sync {
    /// The time since a fixed point of this clock (its origin is its own: only differences mean anything).
    fn now(&self) -> Duration;
    /// Waits `d` of this clock's time.
    async fn sleep(&self, d: Duration);
    /// Whether this is a simulated machine's clock: durations measured on it are not real ones.
    fn simulated(&self) -> bool;
}

/// This host's monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock { origin: Instant::now() }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }

    fn simulated(&self) -> bool {
        false
    }
}
