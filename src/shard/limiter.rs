//! The per-connection rate limit of SPEC §4: a token bucket.
//!
//! Lives in each `Conn` (24 bytes); consulted once per complete client
//! message before any parsing, so a flood costs one token check per
//! message.

use std::time::Duration;

use super::conn::Millis;

/// Token bucket of SPEC §4: `rate` messages a second, burst `rate`; over it,
/// at most one warning a second, and a close after three warnings.
pub struct Limiter {
    /// Tokens spent below a full bucket (0: full), so a new bucket needs no
    /// rate to start from.
    spent: f32,
    refilled_at: Millis,
    warned_at: Option<Millis>,
    warnings: u8,
}

/// What to do with one client message.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Within the limit: handle it.
    Yes,
    /// Over the limit, warned less than a second ago: drop it unanswered.
    DropSilently,
    /// Over the limit: drop it and answer `rate_limited`.
    Warn,
    /// Still over the limit after three warnings: close with 1008.
    Close,
}

impl Limiter {
    /// A full bucket at `now`.
    pub fn new(now: Millis) -> Limiter {
        Limiter {
            spent: 0.0,
            refilled_at: now,
            warned_at: None,
            warnings: 0,
        }
    }

    /// Spends a token on one message at `now`, refilling `rate` a second.
    pub fn admit(&mut self, now: Millis, rate: u32) -> Admit {
        let rate = rate as f32;
        let refill = now.since(self.refilled_at).as_secs_f32() * rate;
        self.spent = (self.spent - refill).max(0.0);
        self.refilled_at = now;
        if self.spent == 0.0 {
            self.warnings = 0; // a full bucket: the client calmed down
        }
        if self.spent + 1.0 <= rate {
            self.spent += 1.0;
            return Admit::Yes;
        }
        if self.warned_at.is_some_and(|at| now.since(at) < Duration::from_secs(1)) {
            return Admit::DropSilently;
        }
        if self.warnings >= 3 {
            return Admit::Close;
        }
        self.warnings += 1;
        self.warned_at = Some(now);
        Admit::Warn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: u64) -> Millis {
        Millis::from_millis(millis)
    }

    #[test]
    fn limiter_warns_once_a_second_then_closes() {
        let start = at(0);
        let mut limiter = Limiter::new(start);
        for _ in 0..5 {
            assert_eq!(limiter.admit(start, 5), Admit::Yes);
        }
        assert_eq!(limiter.admit(start, 5), Admit::Warn);
        assert_eq!(limiter.admit(start, 5), Admit::DropSilently);
        // Flooding on: one token back every 200 ms, spent at once.
        let mut verdicts = Vec::new();
        for step in 1..=40 {
            let now = at(100 * step);
            let verdict = limiter.admit(now, 5);
            if verdict == Admit::Yes {
                continue;
            }
            verdicts.push(verdict);
            let _ = limiter.admit(now, 5);
        }
        assert!(verdicts.contains(&Admit::Close), "{verdicts:?}");
        assert_eq!(verdicts.iter().filter(|v| **v == Admit::Warn).count(), 2);
    }

    #[test]
    fn limiter_forgives_a_calm_client() {
        let start = at(0);
        let mut limiter = Limiter::new(start);
        limiter.admit(start, 2);
        limiter.admit(start, 2);
        assert_eq!(limiter.admit(start, 2), Admit::Warn);
        assert_eq!(limiter.admit(at(5000), 2), Admit::Yes);
        assert_eq!(limiter.warnings, 0);
    }
}
