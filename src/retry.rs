//! Retries for one delivery: exponential backoff with jitter (backon) for transient failures,
//! the server's own `Retry-After` for rate limits, all inside one time budget.

use std::ops::ControlFlow;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::time::Instant;

/// What one attempt came to.
#[derive(Debug)]
pub enum Attempt<T> {
    Done(T),
    /// Worth trying again after a backoff (5xx, time-out, connection refused, SMTP 4xx).
    Transient(String),
    /// The server asked to wait this long (HTTP 429).
    RetryAfter(Duration, String),
    /// Final: trying again would get the same answer (HTTP 4xx, SMTP 5xx).
    Rejected(String),
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Total time one delivery may take, waits included.
    pub budget: Duration,
    /// Attempts at most, the first included.
    pub attempts: u32,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            budget: Duration::from_secs(30),
            attempts: 4,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}

/// Why a delivery (or a request) gave up.
#[derive(Debug, Clone)]
pub struct Failure {
    pub reason: String,
    /// Transient: the notice belongs in the outbox. Rejected ones do not (they would fail again).
    pub queueable: bool,
    pub attempts: u32,
}

pub struct Retrying {
    delays: backon::ExponentialBackoff,
    deadline: Instant,
    attempts: u32,
    max_attempts: u32,
}

impl Retrying {
    pub fn new(policy: &RetryPolicy) -> Retrying {
        let delays = ExponentialBuilder::default()
            .with_min_delay(policy.min_delay)
            .with_max_delay(policy.max_delay)
            .with_jitter()
            .without_max_times()
            .build();
        Retrying { delays, deadline: Instant::now() + policy.budget, attempts: 0, max_attempts: policy.attempts.max(1) }
    }

    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Counts the attempt; on a retryable outcome sleeps and continues, else breaks with the result.
    pub async fn settle<T>(&mut self, outcome: Attempt<T>) -> ControlFlow<Result<T, Failure>> {
        self.attempts += 1;
        let (wait, reason) = match outcome {
            Attempt::Done(v) => return ControlFlow::Break(Ok(v)),
            Attempt::Rejected(reason) => return ControlFlow::Break(Err(self.fail(reason, false))),
            Attempt::Transient(reason) => (self.delays.next().unwrap_or_default(), reason),
            Attempt::RetryAfter(wait, reason) => (wait, reason),
        };
        let now = Instant::now();
        if self.attempts >= self.max_attempts || now + wait > self.deadline {
            return ControlFlow::Break(Err(self.fail(reason, true)));
        }
        tracing::debug!(attempt = self.attempts, wait_ms = wait.as_millis() as u64, %reason, "retrying");
        tokio::time::sleep(wait).await;
        ControlFlow::Continue(())
    }

    fn fail(&self, reason: String, queueable: bool) -> Failure {
        Failure { reason, queueable, attempts: self.attempts }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick() -> RetryPolicy {
        RetryPolicy {
            budget: Duration::from_secs(5),
            attempts: 3,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    #[tokio::test]
    async fn transient_failures_stop_after_the_attempt_limit_and_are_queueable() {
        let mut r = Retrying::new(&quick());
        assert!(r.settle::<()>(Attempt::Transient("500".into())).await.is_continue());
        assert!(r.settle::<()>(Attempt::Transient("500".into())).await.is_continue());
        match r.settle::<()>(Attempt::Transient("500".into())).await {
            ControlFlow::Break(Err(f)) => assert!(f.queueable && f.attempts == 3),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn rejections_are_final_and_a_wait_past_the_budget_gives_up_at_once() {
        let mut r = Retrying::new(&quick());
        match r.settle::<()>(Attempt::Rejected("400 invalid_payload".into())).await {
            ControlFlow::Break(Err(f)) => assert!(!f.queueable && f.attempts == 1),
            other => panic!("{other:?}"),
        }
        let mut r = Retrying::new(&quick());
        let started = Instant::now();
        let step = r.settle::<()>(Attempt::RetryAfter(Duration::from_secs(60), "429".into())).await;
        assert!(matches!(step, ControlFlow::Break(Err(Failure { queueable: true, .. }))));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
