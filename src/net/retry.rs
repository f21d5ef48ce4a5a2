//! Exponential back-off with random jitter, for the operations worth retrying.
//!
//! The defaults are the qp2p crate's: first delay 500 ms, each next one 1.5 times
//! longer, ±30 % random jitter, no delay longer than 15 s, and no new attempt once 30 s
//! have passed since the first. Only errors that say "try again" are retried: a timeout,
//! a lost connection, nothing listening. A peer that rejected our identity, or refused
//! a message, would refuse it again; those end the operation at once.
//!
//! What could go wrong, and how it is prevented:
//! - *Retrying on the connection that just failed* (the qp2p crate's retry re-used dead
//!   connections): the operation is a closure that asks the pool anew on every attempt,
//!   and the caller evicts a failed connection before the next one.
//! - *Thundering herd*: many senders retrying in lock-step after an outage; the jitter
//!   spreads them.
//! - *Retrying forever*: the budget is checked before every sleep; a delay that would end
//!   past the budget is not slept.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

/// Whether an error is worth another attempt.
pub trait Retryable {
    /// True for transient failures (timeouts, lost connections, nothing listening).
    fn is_retryable(&self) -> bool;
}

/// The back-off schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// Growth of the nominal delay from one retry to the next.
    pub multiplier: f64,
    /// Random spread of each delay: 0.3 means ±30 %.
    pub jitter: f64,
    /// No delay is longer than this.
    pub max: Duration,
    /// No retry starts once this much time has passed since the first attempt;
    /// zero means no retry at all.
    pub budget: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            multiplier: 1.5,
            jitter: 0.3,
            max: Duration::from_secs(15),
            budget: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay before retry number `retry` (0 for the first retry) without jitter.
    pub fn nominal(&self, retry: u32) -> Duration {
        let factor = self.multiplier.powi(retry.min(1000) as i32);
        let secs = (self.initial.as_secs_f64() * factor).min(self.max.as_secs_f64());
        Duration::from_secs_f64(secs)
    }

    /// The delay before retry number `retry`, with jitter drawn from `rng`, never more
    /// than `max`.
    pub fn delay(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        let nominal = self.nominal(retry).as_secs_f64();
        let spread = if self.jitter > 0.0 {
            rng.gen_range(-self.jitter..=self.jitter)
        } else {
            0.0
        };
        Duration::from_secs_f64((nominal * (1.0 + spread)).max(0.0)).min(self.max)
    }

    /// Runs `op` until it succeeds, fails with an error not worth retrying, or the
    /// budget is spent. `op` gets the [`Attempt`] (its number, 0 first, and the end of
    /// the budget, which connects bound themselves by). Returns the result and how many
    /// retries it took.
    ///
    /// Every retry is logged at info with its delay and cause.
    pub async fn run<T, E, F, Fut>(&self, op: F) -> (Result<T, E>, u32)
    where
        E: Retryable + std::fmt::Display,
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run_observed(op, |_| {}).await
    }

    /// [`run`](Self::run), telling `on_retry` before each wait (a progress display:
    /// "attempt 3, next try in 1.2s").
    pub async fn run_observed<T, E, F, Fut>(
        &self,
        mut op: F,
        mut on_retry: impl FnMut(Retry<'_, E>),
    ) -> (Result<T, E>, u32)
    where
        E: Retryable + std::fmt::Display,
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let start = Instant::now();
        let deadline = (!self.budget.is_zero()).then(|| start + self.budget);
        let mut retries = 0;
        loop {
            let attempt = Attempt {
                number: retries,
                deadline,
            };
            let err = match op(attempt).await {
                Ok(v) => return (Ok(v), retries),
                Err(e) => e,
            };
            if !err.is_retryable() {
                return (Err(err), retries);
            }
            let delay = self.delay(retries, &mut rand::thread_rng());
            if start.elapsed() + delay >= self.budget {
                tracing::debug!(cause = %err, retries, "retry budget spent");
                return (Err(err), retries);
            }
            tracing::info!(
                cause = %err,
                delay = %rounded(delay),
                retry = retries + 1,
                "retrying"
            );
            on_retry(Retry {
                failed: retries + 1,
                delay,
                cause: &err,
            });
            tokio::time::sleep(delay).await;
            retries += 1;
        }
    }
}

/// A failed attempt about to be retried.
#[derive(Debug, Clone, Copy)]
pub struct Retry<'a, E> {
    /// How many attempts have failed so far (1 after the first).
    pub failed: u32,
    /// The wait before the next attempt.
    pub delay: Duration,
    /// Why the last attempt failed.
    pub cause: &'a E,
}

/// One attempt of a retried operation.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    /// 0 for the first attempt.
    pub number: u32,
    /// When the retry budget ends; `None` when retrying is off (`--retry-for 0`), in
    /// which case the one attempt gets its own full timeout.
    pub deadline: Option<Instant>,
}

impl Attempt {
    /// Runs `fut`, but no longer than the retry budget lasts: a connect attempt started
    /// late in the budget must not overrun it. `timeout` makes the error for a cut-off.
    pub async fn within<T, E>(
        self,
        fut: impl Future<Output = Result<T, E>>,
        timeout: impl FnOnce(Duration) -> E,
    ) -> Result<T, E> {
        let Some(deadline) = self.deadline else {
            return fut.await;
        };
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, fut).await {
            Ok(result) => result,
            Err(_) => Err(timeout(left)),
        }
    }
}

/// A duration as a person reads it, rounded: whole milliseconds below 10 s (`21ms`,
/// `2449ms`), then whole seconds (`30s`), minutes (`2m 5s`), hours (`1h 30m`) and days
/// (`7d`), two units at most; never `21ms 887us 605ns`.
pub fn rounded(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 10_000 {
        // The nearest millisecond; a nonzero duration is at least 1ms.
        let ms = (d.as_micros() + 500) / 1000;
        return format!("{}ms", if ms == 0 && !d.is_zero() { 1 } else { ms });
    }
    let secs = (ms + 500) / 1000;
    if secs < 60 {
        return format!("{secs}s");
    }
    let parts = [
        (secs / 86_400, "d"),
        (secs / 3600 % 24, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
    ];
    let shown: Vec<String> = parts
        .iter()
        .skip_while(|(n, _)| *n == 0)
        .take(2)
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    shown.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Debug)]
    struct E(bool);
    impl Retryable for E {
        fn is_retryable(&self) -> bool {
            self.0
        }
    }
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "e({})", self.0)
        }
    }

    #[test]
    fn durations_shown_to_people_are_rounded() {
        let cases = [
            (Duration::ZERO, "0ms"),
            (Duration::from_nanos(21_887_605), "22ms"),
            (Duration::from_micros(300), "1ms"),
            (Duration::from_millis(2_449), "2449ms"),
            (Duration::from_millis(9_999), "9999ms"),
            (Duration::from_millis(10_400), "10s"),
            (Duration::from_millis(29_600), "30s"),
            (Duration::from_secs(125), "2m 5s"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(5400), "1h 30m"),
            (Duration::from_secs(7 * 86_400), "7d"),
        ];
        for (d, shown) in cases {
            assert_eq!(rounded(d), shown, "{d:?}");
        }
    }

    #[test]
    fn nominal_grows_by_the_multiplier_up_to_the_cap() {
        let b = Backoff::default();
        assert_eq!(b.nominal(0), Duration::from_millis(500));
        assert_eq!(b.nominal(1), Duration::from_millis(750));
        assert_eq!(b.nominal(2), Duration::from_micros(1_125_000));
        assert_eq!(b.nominal(20), Duration::from_secs(15));
        assert_eq!(b.nominal(u32::MAX), Duration::from_secs(15));
    }

    #[test]
    fn jitter_stays_within_bounds_and_varies() {
        let b = Backoff::default();
        let mut rng = rand::thread_rng();
        let mut seen = std::collections::BTreeSet::new();
        for retry in 0..12 {
            for _ in 0..200 {
                let nominal = b.nominal(retry).as_secs_f64();
                let d = b.delay(retry, &mut rng).as_secs_f64();
                assert!(d >= nominal * 0.7 - 1e-9, "{d} < 0.7 × {nominal}");
                assert!(
                    d <= (nominal * 1.3).min(15.0) + 1e-9,
                    "{d} > 1.3 × {nominal}"
                );
                seen.insert((d * 1e6) as u64);
            }
        }
        assert!(seen.len() > 100, "jitter is random");
    }

    /// The schedule as actually slept, under a paused clock: growth, jitter, cap and the
    /// stop when the budget is spent.
    #[tokio::test(start_paused = true)]
    async fn run_follows_the_schedule_and_stops_at_the_budget() {
        let b = Backoff::default();
        let times = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let t = times.clone();
        let (res, retries) = b
            .run(|_| {
                t.lock().unwrap().push(start.elapsed());
                async { Err::<(), _>(E(true)) }
            })
            .await;
        assert!(res.is_err());
        let times = times.lock().unwrap().clone();
        assert_eq!(times.len() as u32, retries + 1);
        // tokio's timer wheel counts whole milliseconds and rounds a deadline up, so a
        // slept delay may exceed the drawn one by up to 1 ms (1.4625 s sleeps 1.463 s).
        const TICK: f64 = 1e-3;
        for (i, pair) in times.windows(2).enumerate() {
            let slept = (pair[1] - pair[0]).as_secs_f64();
            let nominal = b.nominal(i as u32).as_secs_f64();
            assert!(
                slept >= nominal * 0.7 - TICK,
                "retry {i}: {slept} vs {nominal}"
            );
            assert!(
                slept <= (nominal * 1.3).min(15.0) + TICK,
                "retry {i}: {slept}"
            );
        }
        // Every attempt started inside the budget, and one more delay would not fit:
        // the delay drawn at the stop was at most 1.3 × nominal (jitter), and capped.
        let last = *times.last().unwrap();
        assert!(last.as_secs_f64() < b.budget.as_secs_f64() + TICK);
        let longest_next = b.nominal(retries).mul_f64(1.0 + b.jitter).min(b.max);
        assert!(
            last + longest_next >= b.budget,
            "stopped at {last:?} with {retries} retries although a delay of up to \
             {longest_next:?} would have fitted"
        );
        // 30 s budget, 0.5 s × 1.5^n: 7 retries when every delay draws +30 %, 9 when
        // every one draws -30 % (8 almost always; 9 in about 1 run of 400).
        assert!((7..=9).contains(&retries), "{retries} retries");
    }

    #[tokio::test(start_paused = true)]
    async fn the_cap_holds_for_long_budgets() {
        let b = Backoff {
            budget: Duration::from_secs(120),
            ..Backoff::default()
        };
        let times = Arc::new(Mutex::new(Vec::new()));
        let t = times.clone();
        let start = Instant::now();
        let _ = b
            .run(|_| {
                t.lock().unwrap().push(start.elapsed());
                async { Err::<(), _>(E(true)) }
            })
            .await;
        let times = times.lock().unwrap().clone();
        let gaps: Vec<_> = times.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|g| *g <= Duration::from_secs(15)));
        assert!(
            gaps.iter().any(|g| *g >= Duration::from_secs(10)),
            "{gaps:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn errors_not_worth_retrying_end_at_once() {
        let (res, retries) = Backoff::default()
            .run(|_| async { Err::<(), _>(E(false)) })
            .await;
        assert!(res.is_err());
        assert_eq!(retries, 0);
    }

    /// A connect started late in the budget is cut off where the budget ends.
    #[tokio::test(start_paused = true)]
    async fn attempts_are_bounded_by_the_budget() {
        let b = Backoff {
            budget: Duration::from_secs(3),
            ..Backoff::default()
        };
        let start = Instant::now();
        let (res, _) = b
            .run(|attempt| {
                attempt.within(
                    async {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        Err::<(), _>(E(true))
                    },
                    |_| E(true),
                )
            })
            .await;
        assert!(res.is_err());
        assert!(
            start.elapsed() <= Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        // With retries off the one attempt keeps its own full time.
        let none = Backoff {
            budget: Duration::ZERO,
            ..Backoff::default()
        };
        let start = Instant::now();
        let _ = none
            .run(|attempt| {
                attempt.within(
                    async {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        Err::<(), _>(E(true))
                    },
                    |_| E(true),
                )
            })
            .await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_budget_means_one_attempt() {
        let b = Backoff {
            budget: Duration::ZERO,
            ..Backoff::default()
        };
        let (res, retries) = b.run(|_| async { Err::<(), _>(E(true)) }).await;
        assert!(res.is_err());
        assert_eq!(retries, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn success_after_failures_counts_retries() {
        let (res, retries) = Backoff::default()
            .run(|a| async move {
                if a.number < 2 {
                    Err(E(true))
                } else {
                    Ok(a.number)
                }
            })
            .await;
        assert_eq!(res.unwrap(), 2);
        assert_eq!(retries, 2);
    }
}
