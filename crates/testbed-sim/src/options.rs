//! How the simulated machine behaves: how fast time runs, and which steps fail once on purpose.

use std::collections::BTreeSet;
use std::time::Duration;

use testbed_plan::Address;

use crate::SimError;

/// The environment variable holding the speed factor.
pub const SPEED_ENV: &str = "TESTBED_SIM_SPEED";
/// The environment variable holding the addresses whose actions fail once.
pub const FAIL_ENV: &str = "TESTBED_SIM_FAIL";

/// Options of a simulated machine.
#[derive(Debug, Clone, PartialEq)]
pub struct SimOptions {
    /// Factor applied to real-world step durations: 1 = real time, 0 = instant.
    pub speed: f64,
    /// Addresses whose actions fail once (the first time they run on this machine's state file).
    pub fail_once: BTreeSet<String>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions { speed: SimOptions::DEFAULT_SPEED, fail_once: BTreeSet::new() }
    }
}

impl SimOptions {
    /// The default speed: the default three-member testbed (about 400 s of real work on its critical path)
    /// applies in about four seconds.
    pub const DEFAULT_SPEED: f64 = 0.01;

    /// Options where every step takes no time.
    pub fn instant() -> SimOptions {
        SimOptions { speed: 0.0, fail_once: BTreeSet::new() }
    }

    /// Reads `TESTBED_SIM_SPEED` (a factor ≥ 0; default 0.01) and `TESTBED_SIM_FAIL` (comma-separated
    /// addresses) from the environment.
    pub fn from_env() -> Result<SimOptions, SimError> {
        let read = |name: &str| match std::env::var(name) {
            Ok(v) => Ok(Some(v)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(SimError::BadSetting {
                name: name.to_owned(),
                value: "<not valid UTF-8>".into(),
                reason: "the value is not valid UTF-8".into(),
            }),
        };
        SimOptions::from_values(read(SPEED_ENV)?.as_deref(), read(FAIL_ENV)?.as_deref())
    }

    /// Options from the two settings' raw values (what [`SimOptions::from_env`] reads).
    pub fn from_values(speed: Option<&str>, fail: Option<&str>) -> Result<SimOptions, SimError> {
        let speed = match speed.map(str::trim).filter(|s| !s.is_empty()) {
            None => SimOptions::DEFAULT_SPEED,
            Some(raw) => parse_speed(raw)?,
        };
        let mut fail_once = BTreeSet::new();
        for item in fail.unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if Address::parse(item).is_none() {
                return Err(SimError::BadSetting {
                    name: FAIL_ENV.into(),
                    value: item.into(),
                    reason: "this is not a resource address (e.g. lxd_instance.member1, karmada.control_plane)".into(),
                });
            }
            fail_once.insert(item.to_owned());
        }
        Ok(SimOptions { speed, fail_once })
    }

    /// A real-world duration at this speed.
    pub fn scaled(&self, real: Duration) -> Duration {
        if !(self.speed.is_finite() && self.speed > 0.0) {
            return Duration::ZERO;
        }
        Duration::try_from_secs_f64(real.as_secs_f64() * self.speed).unwrap_or(Duration::from_secs(86_400))
    }
}

fn parse_speed(raw: &str) -> Result<f64, SimError> {
    let bad = |reason: &str| SimError::BadSetting { name: SPEED_ENV.into(), value: raw.into(), reason: reason.into() };
    let v: f64 = raw.parse().map_err(|_| bad("expected a number such as 0.01 (0 = instant, 1 = real time)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(bad("expected a finite number ≥ 0 (0 = instant, 1 = real time)"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_or_say_what_is_wrong() {
        let o = SimOptions::from_values(Some("0.5"), Some("lxd_instance.member1, karmada.control_plane")).expect("ok");
        assert_eq!(o.speed, 0.5);
        assert_eq!(o.fail_once.len(), 2);
        assert_eq!(SimOptions::from_values(None, None).expect("ok"), SimOptions::default());
        for bad in ["fast", "-1", "NaN", "inf"] {
            let e = SimOptions::from_values(Some(bad), None).expect_err(bad).to_string();
            assert!(e.contains("TESTBED_SIM_SPEED"), "{e}");
        }
        let e = SimOptions::from_values(None, Some("nonsense.x")).expect_err("bad address").to_string();
        assert!(e.contains("TESTBED_SIM_FAIL") && e.contains("nonsense.x"), "{e}");
    }

    #[test]
    fn durations_scale() {
        let o = SimOptions { speed: 0.01, fail_once: BTreeSet::new() };
        assert_eq!(o.scaled(Duration::from_secs(100)), Duration::from_secs(1));
        assert_eq!(SimOptions::instant().scaled(Duration::from_secs(100)), Duration::ZERO);
        let weird = SimOptions { speed: f64::NAN, fail_once: BTreeSet::new() };
        assert_eq!(weird.scaled(Duration::from_secs(100)), Duration::ZERO);
    }
}
