//! The [`Keeper`]: one mapping held for as long as a listener runs. It renews at half
//! of the lease actually granted, searches for the gateway again and maps anew when
//! renewal fails, and removes the mapping when stopped, bounded by [`STOP_TIMEOUT`].

use std::time::Duration;

use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{discover, Gateway, Mapping, UpnpError, STOP_TIMEOUT};

/// What a [`Keeper`] reports.
#[derive(Debug, Clone)]
pub enum KeeperEvent {
    /// A mapping is in place (the first one, or a new one after the old was lost).
    Mapped {
        /// The mapping.
        mapping: Mapping,
        /// The gateway, described.
        gateway: String,
    },
    /// No mapping could be made; the keeper tries again later.
    Unavailable {
        /// Why.
        error: UpnpError,
        /// When it tries again.
        retry_in: Duration,
    },
    /// Renewing failed; the keeper searches for the gateway again.
    Lost {
        /// Why.
        error: UpnpError,
    },
    /// The mapping was removed (on stop).
    Removed {
        /// The mapping that was removed.
        mapping: Mapping,
    },
    /// The mapping could not be removed (on stop); it expires with its lease.
    RemoveFailed {
        /// The mapping left behind.
        mapping: Mapping,
        /// Why.
        error: UpnpError,
    },
}

/// Settings of a [`Keeper`].
#[derive(Debug, Clone)]
pub struct KeeperConfig {
    /// The local UDP port to map.
    pub local_port: u16,
    /// The lease to ask for.
    pub lease: Duration,
    /// How long one gateway search may take.
    pub search_timeout: Duration,
    /// The longest wait between two attempts while there is no mapping.
    pub max_retry: Duration,
}

/// Holds one mapping for as long as it runs: maps, renews at half the lease, searches
/// the gateway again when renewal fails, removes the mapping when stopped.
#[derive(Debug)]
pub struct Keeper {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Keeper {
    /// Starts keeping a mapping; `report` is called from the keeper's task.
    pub fn start(
        config: KeeperConfig,
        report: impl Fn(KeeperEvent) + Send + Sync + 'static,
    ) -> Keeper {
        let stop = CancellationToken::new();
        let task = tokio::spawn(keep(config, stop.clone(), report));
        Keeper { stop, task }
    }

    /// Stops the keeper and removes the mapping. Waits for a renewal under way to
    /// end, then for the removal, at most [`STOP_TIMEOUT`] in all.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = timeout(STOP_TIMEOUT, self.task).await;
    }
}

async fn keep(
    config: KeeperConfig,
    stop: CancellationToken,
    report: impl Fn(KeeperEvent) + Send + Sync + 'static,
) {
    let mut held: Option<(Gateway, Mapping)> = None;
    // The external port to ask for: ours, or the one we had before a loss.
    let mut port = config.local_port;
    let mut failures: u32 = 0;
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => break,
        }
        // Searching makes nothing and races the stop signal. Mapping is not cut
        // short (each request is bounded), so a mapping made is always known here
        // and removed below.
        let gateway = match &held {
            Some((gateway, _)) => Ok(gateway.clone()),
            None => tokio::select! {
                g = discover(config.search_timeout) => g,
                _ = stop.cancelled() => break,
            },
        };
        let result = match gateway {
            Ok(gateway) => gateway
                .map(port, config.local_port, config.lease)
                .await
                .map(|mapping| (gateway, mapping)),
            Err(e) => Err(e),
        };
        match result {
            Ok((gateway, mapping)) => {
                let changed = held.as_ref().is_none_or(|(_, old)| {
                    old.external() != mapping.external() || old.local != mapping.local
                });
                if changed {
                    report(KeeperEvent::Mapped {
                        mapping: mapping.clone(),
                        gateway: gateway.describe(),
                    });
                } else {
                    debug!(external_port = mapping.external_port, lease = ?mapping.lease(), "UPnP mapping renewed");
                }
                wait = mapping.renew_after();
                port = mapping.external_port;
                failures = 0;
                held = Some((gateway, mapping));
            }
            Err(error) if held.is_some() => {
                warn!(cause = %error, "renewing the UPnP mapping failed; searching for the gateway again");
                report(KeeperEvent::Lost { error });
                // The old mapping may live on until its lease ends; the new one asks
                // for the same external port.
                held = None;
                wait = Duration::ZERO;
            }
            Err(error) => {
                failures += 1;
                let retry_in = retry_delay(failures, config.max_retry);
                if failures == 1 {
                    report(KeeperEvent::Unavailable { error, retry_in });
                } else {
                    debug!(cause = %error, ?retry_in, "still no UPnP mapping");
                }
                wait = retry_in;
            }
        }
    }
    if let Some((gateway, mapping)) = held {
        match gateway.unmap(mapping.external_port).await {
            Ok(()) => report(KeeperEvent::Removed { mapping }),
            Err(error) => report(KeeperEvent::RemoveFailed { mapping, error }),
        }
    }
}

/// Waits between attempts while there is no mapping: 5 s, doubling, capped.
fn retry_delay(failures: u32, max: Duration) -> Duration {
    let base = Duration::from_secs(5);
    base.saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(max)
        .max(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_up_to_the_cap() {
        assert_eq!(
            retry_delay(1, Duration::from_secs(60)),
            Duration::from_secs(5)
        );
        assert_eq!(
            retry_delay(3, Duration::from_secs(60)),
            Duration::from_secs(20)
        );
        assert_eq!(
            retry_delay(30, Duration::from_secs(60)),
            Duration::from_secs(60)
        );
    }
}
