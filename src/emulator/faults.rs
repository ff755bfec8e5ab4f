//! The faults a service can be told to answer with, so that a test or a benchmark meets what a
//! real rollout or a failing target gives a caller: a share of 503s (Lattice's answer while a
//! target is unavailable), a share of streams reset before any response, added latency, and a
//! rolling restart, each of the service's targets refusing in turn.
//!
//! Given per host name as `--fault HOST=KIND=VALUE,...`:
//!
//! - `unavailable=0.2`: a fifth of the requests, drawn at random, answered 503;
//! - `reset=0.1`: a tenth reset before any response;
//! - `latency=150ms`: every answer that long later;
//! - `rolling=4x2s`: four targets taking requests in turn, each refusing for two seconds in
//!   turn, the last first (one of them at any time), so a quarter of the requests are answered
//!   503.

use std::str::FromStr;
use std::time::Duration;

/// What one service does wrong.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// The share of requests answered 503, from 0 to 1.
    pub unavailable: f64,
    /// The share of requests reset before any response, from 0 to 1.
    pub reset: f64,
    /// Added before every answer.
    pub latency: Duration,
    pub rolling: Option<Rolling>,
}

/// A rolling restart that never ends: `targets` targets take requests in turn, and each in
/// turn refuses for `down`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rolling {
    pub targets: u32,
    pub down: Duration,
}

/// What a request meets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Its target is restarting, or it drew a 503.
    Unavailable,
    /// It drew a reset.
    Reset,
}

impl Faults {
    /// The fault the `nth` request to the service meets `elapsed` after the emulator started,
    /// if any; `draw` gives a number in [0, 1) per call.
    pub fn meet(
        &self,
        nth: u64,
        elapsed: Duration,
        mut draw: impl FnMut() -> f64,
    ) -> Option<Fault> {
        if let Some(rolling) = self.rolling
            && rolling.refusing(elapsed) == nth % u64::from(rolling.targets)
        {
            return Some(Fault::Unavailable);
        }
        if self.reset > 0.0 && draw() < self.reset {
            return Some(Fault::Reset);
        }
        if self.unavailable > 0.0 && draw() < self.unavailable {
            return Some(Fault::Unavailable);
        }
        None
    }
}

impl Rolling {
    /// The target refusing `elapsed` into the restart. The last target restarts first, as a
    /// StatefulSet's do: against the order targets take requests in, so that the request after
    /// a refused one goes to a target that is not the next to restart (with three or more).
    fn refusing(&self, elapsed: Duration) -> u64 {
        let turn = elapsed.as_millis() / self.down.as_millis().max(1);
        let targets = u128::from(self.targets);
        u64::try_from(targets - 1 - turn % targets).unwrap_or(0)
    }
}

/// A `--fault` value that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum FaultsError {
    #[error("{0:?} is not KIND=VALUE (unavailable, reset, latency or rolling)")]
    Shape(String),
    #[error("unknown fault {0:?}: expected unavailable, reset, latency or rolling")]
    Kind(String),
    #[error("{kind}={value:?}: a share is a number from 0 to 1")]
    Share { kind: String, value: String },
    #[error("latency={0:?}: {1}")]
    Latency(String, humantime::DurationError),
    #[error("rolling={0:?}: expected TARGETSxDURATION with at least one target, such as 4x2s")]
    Rolling(String),
}

impl FromStr for Faults {
    type Err = FaultsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut faults = Faults::default();
        for item in text.split(',').filter(|item| !item.is_empty()) {
            let (kind, value) = item
                .split_once('=')
                .ok_or_else(|| FaultsError::Shape(item.to_string()))?;
            let share = || {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|share| (0.0..=1.0).contains(share))
                    .ok_or_else(|| FaultsError::Share {
                        kind: kind.to_string(),
                        value: value.to_string(),
                    })
            };
            match kind {
                "unavailable" => faults.unavailable = share()?,
                "reset" => faults.reset = share()?,
                "latency" => {
                    faults.latency = humantime::parse_duration(value)
                        .map_err(|error| FaultsError::Latency(value.to_string(), error))?;
                }
                "rolling" => {
                    let rolling = value
                        .split_once('x')
                        .and_then(|(targets, down)| {
                            let targets = targets.parse().ok().filter(|n| *n > 0)?;
                            let down = humantime::parse_duration(down).ok()?;
                            Some(Rolling { targets, down })
                        })
                        .ok_or_else(|| FaultsError::Rolling(value.to_string()))?;
                    faults.rolling = Some(rolling);
                }
                other => return Err(FaultsError::Kind(other.to_string())),
            }
        }
        Ok(faults)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_read_from_their_flag() {
        let faults: Faults = "unavailable=0.2,reset=0.1,latency=150ms,rolling=4x2s"
            .parse()
            .unwrap();
        assert_eq!(
            faults,
            Faults {
                unavailable: 0.2,
                reset: 0.1,
                latency: Duration::from_millis(150),
                rolling: Some(Rolling {
                    targets: 4,
                    down: Duration::from_secs(2)
                }),
            }
        );
        for bad in [
            "unavailable=2",
            "reset",
            "slow=1s",
            "rolling=0x2s",
            "latency=soon",
        ] {
            assert!(bad.parse::<Faults>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn a_rolling_restart_refuses_one_target_in_turn() {
        let faults = Faults {
            rolling: Some(Rolling {
                targets: 3,
                down: Duration::from_secs(2),
            }),
            ..Faults::default()
        };
        let never = || 1.0;
        let met = |elapsed: u64| {
            (0..6)
                .map(|nth| {
                    faults
                        .meet(nth, Duration::from_millis(elapsed), never)
                        .is_some()
                })
                .collect::<Vec<_>>()
        };
        // Target 2 refuses in the first two seconds, target 1 in the next two, and so on.
        assert_eq!(met(500), [false, false, true, false, false, true]);
        assert_eq!(met(2500), [false, true, false, false, true, false]);
        assert_eq!(met(4500), [true, false, false, true, false, false]);
        assert_eq!(met(6500), [false, false, true, false, false, true]);
    }

    #[test]
    fn shares_are_drawn() {
        let faults: Faults = "unavailable=0.5,reset=0.25".parse().unwrap();
        let at = |draw: f64| faults.meet(0, Duration::ZERO, || draw);
        assert_eq!(at(0.1), Some(Fault::Reset));
        assert_eq!(at(0.3), Some(Fault::Unavailable));
        assert_eq!(at(0.9), None);
    }
}
