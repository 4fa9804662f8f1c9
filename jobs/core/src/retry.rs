//! Retrying work that failed for a reason that may pass (a service restarting, a lost
//! executor, a timeout) with exponential backoff: the one loop the DAG runner and the sinks
//! share. What cannot get better by retrying (bad input, configuration) is the caller's
//! `retryable` to refuse.

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, Result};

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Attempts in all, the first included (at least one is made).
    pub max_attempts: u32,
    /// Wait before the second attempt; each later wait doubles.
    pub first_wait_ms: u64,
}

impl Backoff {
    /// The wait after failed attempt number `attempt` (1-based).
    fn wait(&self, attempt: u32) -> Duration {
        Duration::from_millis(self.first_wait_ms.saturating_mul(1 << (attempt - 1).min(16)))
    }
}

/// Runs `attempt` until it succeeds, fails with an error `retryable` refuses, or has been tried
/// `policy.max_attempts` times. Returns the last outcome and the number of attempts made.
pub async fn retry<T, F, Fut>(
    policy: Backoff,
    what: &str,
    retryable: impl Fn(&Error) -> bool,
    mut attempt: F,
) -> (Result<T>, u32)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut attempts = 0;
    loop {
        attempts += 1;
        match attempt().await {
            Err(error) if attempts < policy.max_attempts.max(1) && retryable(&error) => {
                let wait = policy.wait(attempts);
                tracing::warn!(what, attempt = attempts, %error, ?wait, "failed; retrying");
                tokio::time::sleep(wait).await;
            }
            outcome => return (outcome, attempts),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn retries_what_may_pass_and_stops_at_what_cannot() {
        let policy = Backoff {
            max_attempts: 3,
            first_wait_ms: 1,
        };
        let mut calls = 0;
        let (outcome, attempts) = retry(
            policy,
            "flaky",
            |_| true,
            || {
                calls += 1;
                let fail = calls < 3;
                async move {
                    if fail {
                        Err(Error::Usage("not yet".into()))
                    } else {
                        Ok(calls)
                    }
                }
            },
        )
        .await;
        assert_eq!((outcome.unwrap(), attempts), (3, 3));

        let (outcome, attempts) = retry(
            policy,
            "bad input",
            |e| !matches!(e, Error::Input { .. }),
            || async {
                Err::<(), _>(Error::Input {
                    path: "x".into(),
                    message: "broken".into(),
                })
            },
        )
        .await;
        assert!(outcome.is_err());
        assert_eq!(attempts, 1);
    }
}
