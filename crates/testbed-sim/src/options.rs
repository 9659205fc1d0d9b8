//! How the simulated machine behaves: how fast time runs, which steps and calls fail on purpose
//! ([`crate::faults`]), and the seed that makes random faults and latencies reproducible.

use std::collections::BTreeSet;
use std::time::Duration;

use testbed_plan::Address;

use crate::faults::{Fault, Faults, Target, Times};
use crate::SimError;

/// The environment variable holding the speed factor.
pub const SPEED_ENV: &str = "TESTBED_SIM_SPEED";
/// The environment variable holding the faults: addresses whose actions fail once, program calls, LXD
/// requests and Kubernetes API requests that fail once or always, `random:P` ([`crate::faults`]).
pub const FAIL_ENV: &str = "TESTBED_SIM_FAIL";
/// The environment variable holding the internet line's rate in Mbit/s, which every download from the snap
/// store shares ([`SimOptions::line_mbits`]).
pub const LINE_ENV: &str = "TESTBED_SIM_LINE_MBITS";
/// The environment variable holding the seed of random faults and latencies (an unsigned 64-bit integer).
pub const SEED_ENV: &str = "TESTBED_SIM_SEED";

/// Options of a simulated machine.
#[derive(Debug, Clone, PartialEq)]
pub struct SimOptions {
    /// Factor applied to real-world step durations: 1 = real time, 0 = instant.
    pub speed: f64,
    /// Addresses whose actions fail once (the first time they run on this machine's state file).
    pub fail_once: BTreeSet<String>,
    /// Program calls, LXD and Kubernetes API requests that fail, and random faults.
    pub faults: Faults,
    /// The host's internet line in Mbit/s (default 100, an ordinary line): downloads from the snap store
    /// share it, so that three members each fetching the microk8s snap take three times as long as one.
    pub line_mbits: f64,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            speed: SimOptions::DEFAULT_SPEED,
            fail_once: BTreeSet::new(),
            faults: Faults::default(),
            line_mbits: SimOptions::DEFAULT_LINE_MBITS,
        }
    }
}

impl SimOptions {
    /// The default speed: the default three-member testbed (about 400 s of real work on its critical path)
    /// applies in about four seconds.
    pub const DEFAULT_SPEED: f64 = 0.01;
    /// The default line: 100 Mbit/s.
    pub const DEFAULT_LINE_MBITS: f64 = 100.0;

    /// Options where every step takes no time.
    pub fn instant() -> SimOptions {
        SimOptions {
            speed: 0.0,
            fail_once: BTreeSet::new(),
            faults: Faults::default(),
            line_mbits: SimOptions::DEFAULT_LINE_MBITS,
        }
    }

    /// These options with `fail_once` as the addresses that fail once.
    pub fn failing_once<S: Into<String>>(self, addresses: impl IntoIterator<Item = S>) -> SimOptions {
        SimOptions { fail_once: addresses.into_iter().map(Into::into).collect(), ..self }
    }

    /// Reads `TESTBED_SIM_SPEED` (a factor ≥ 0; default 0.01), `TESTBED_SIM_FAIL` (comma-separated
    /// faults) and `TESTBED_SIM_SEED` from the environment.
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
        let mut options = SimOptions::from_values(read(SPEED_ENV)?.as_deref(), read(FAIL_ENV)?.as_deref())?;
        if let Some(raw) = read(LINE_ENV)?.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            options.line_mbits = match raw.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 1.0 => v,
                _ => {
                    return Err(SimError::BadSetting {
                        name: LINE_ENV.into(),
                        value: raw.into(),
                        reason: "expected a rate in Mbit/s of at least 1, such as 100".into(),
                    })
                }
            };
        }
        options.seeded(read(SEED_ENV)?.as_deref())
    }

    /// Options from the speed's and the faults' raw values (what [`SimOptions::from_env`] reads).
    pub fn from_values(speed: Option<&str>, fail: Option<&str>) -> Result<SimOptions, SimError> {
        let speed = match speed.map(str::trim).filter(|s| !s.is_empty()) {
            None => SimOptions::DEFAULT_SPEED,
            Some(raw) => parse_speed(raw)?,
        };
        let bad =
            |item: &str, reason: String| SimError::BadSetting { name: FAIL_ENV.into(), value: item.into(), reason };
        let mut fail_once = BTreeSet::new();
        let mut named = Vec::new();
        let mut random = None;
        for item in fail.unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if let Some(p) = item.strip_prefix("random:") {
                match p.parse::<f64>() {
                    Ok(p) if (0.0..=1.0).contains(&p) => random = Some(p),
                    _ => return Err(bad(item, "random:P takes a probability from 0 to 1, e.g. random:0.05".into())),
                }
                continue;
            }
            let fault = Fault::parse(item, |a| Address::parse(a).is_some()).map_err(|reason| bad(item, reason))?;
            match (&fault.target, fault.times) {
                (Target::Address(a), Times::Once) => {
                    fail_once.insert(a.clone());
                }
                (Target::Address(_), Times::Always) => {
                    return Err(bad(item, "an address fails once; to fail a call every time, name it: program:NAME[.SUB][@WHERE]=always, lxd:METHOD:PATH=always or kube:METHOD:PATH[@WHERE]=always".into()))
                }
                _ => named.push(fault),
            }
        }
        Ok(SimOptions {
            speed,
            fail_once,
            faults: Faults::new(named, random, None),
            line_mbits: SimOptions::DEFAULT_LINE_MBITS,
        })
    }

    /// Checks that every fault names something of this world (`names`: the file's resources and members):
    /// a fault that names nothing would never fire, and a run that was meant to fail would pass unnoticed.
    pub fn check_names(&self, names: &crate::faults::Names) -> Result<(), SimError> {
        let addresses = self.fail_once.iter().map(|a| Fault {
            text: a.clone(),
            target: Target::Address(a.clone()),
            times: Times::Once,
        });
        for f in addresses.chain(self.faults.named.iter().cloned()) {
            f.check(names).map_err(|reason| SimError::BadSetting { name: FAIL_ENV.into(), value: f.text, reason })?;
        }
        Ok(())
    }

    /// These options with the seed's raw value (`TESTBED_SIM_SEED`; none: no variation).
    pub fn seeded(mut self, seed: Option<&str>) -> Result<SimOptions, SimError> {
        if let Some(raw) = seed.map(str::trim).filter(|s| !s.is_empty()) {
            let seed = raw.parse::<u64>().map_err(|_| SimError::BadSetting {
                name: SEED_ENV.into(),
                value: raw.into(),
                reason: "expected an unsigned integer such as 42".into(),
            })?;
            self.faults.seed = Some(seed);
        }
        Ok(self)
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
        let o = SimOptions::from_values(
            None,
            Some("program:snap.install@member2=always, random:0.1, kube:GET:/api/v1/nodes@member1=once"),
        )
        .expect("ok");
        assert_eq!((o.faults.named.len(), o.faults.random), (2, Some(0.1)));
        for bad in ["random:2", "lxd_instance.member1=always", "program:", "kube:GET:nodes"] {
            let e = SimOptions::from_values(None, Some(bad)).expect_err(bad).to_string();
            assert!(e.contains("TESTBED_SIM_FAIL"), "{e}");
        }
        assert_eq!(SimOptions::instant().seeded(Some("42")).expect("ok").faults.seed, Some(42));
        let e = SimOptions::instant().seeded(Some("-1")).expect_err("negative").to_string();
        assert!(e.contains("TESTBED_SIM_SEED"), "{e}");
    }

    #[test]
    fn durations_scale() {
        let o = SimOptions { speed: 0.01, ..SimOptions::instant() };
        assert_eq!(o.scaled(Duration::from_secs(100)), Duration::from_secs(1));
        assert_eq!(SimOptions::instant().scaled(Duration::from_secs(100)), Duration::ZERO);
        let weird = SimOptions { speed: f64::NAN, ..SimOptions::instant() };
        assert_eq!(weird.scaled(Duration::from_secs(100)), Duration::ZERO);
    }
}
