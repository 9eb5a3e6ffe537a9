//! The operator's own election on a coordination.k8s.io/v1 Lease, so that only one replica
//! reconciles. (Elsewhere in this crate "leader" means ZooKeeper's leader.)
//!
//! The protocol is client-go's: the holder renews `spec.renewTime` every retry period; a
//! candidate takes the Lease over only when it has watched the same record stay unchanged for
//! `leaseDurationSeconds` of *its own* clock (so no two clocks are ever compared); every write
//! is an optimistic `update` carrying the `resourceVersion` that was read, so two candidates
//! can never both win. A holder that cannot renew within the renew deadline gives up, before
//! the lease can expire for the others.
//!
//! kube 5 has no Lease election of its own. `kube-lease-manager` 0.13 targets kube 5 and
//! k8s-openapi 0.29 but has no renew deadline: when its reads fail, `LeaseManager::watch`
//! logs the error and retries with backoff without ever reporting the lease as lost, so a
//! holder cut off from the API server keeps reconciling while a standby takes over. It also
//! judges expiry by comparing the holder's `renewTime` with the local wall clock. Hence this
//! small module.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> Result<(), zookeeper_operator::election::Error> {
//! use zookeeper_operator::election::{ElectionConfig, LeaseElector, default_identity};
//! let elector = LeaseElector::new(
//!     client, "operators", "zookeeper-operator-leader", default_identity(),
//!     ElectionConfig::default(),
//! )?;
//! let hold = elector.acquire().await?;
//! let fence = hold.fence(); // check `fence.holds()` right before every eviction
//! tokio::select! {
//!     _ = async { /* run the controller */ } => {}
//!     reason = hold.lost() => { /* stop acting at once, then campaign again */ }
//! }
//! hold.release().await?; // hand over at once instead of after the lease duration
//! # Ok(()) }
//! ```

use std::{
    fmt,
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

/// Lease name used when none is configured.
pub const DEFAULT_LEASE_NAME: &str = "zookeeper-operator-leader";

/// Timing of the election; the defaults are client-go's (15 s / 10 s / 2 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElectionConfig {
    /// How long a standby waits, after the last renewal it saw, before it takes the Lease over.
    pub lease_duration: Duration,
    /// How long the holder keeps trying to renew before it gives the Lease up.
    pub renew_deadline: Duration,
    /// Pause between two attempts to acquire or renew.
    pub retry_period: Duration,
}

impl Default for ElectionConfig {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl ElectionConfig {
    /// The holder must give up (renew deadline) before the standbys may take over (lease
    /// duration), and must get more than one try within the deadline.
    fn validate(&self) -> Result<(), Error> {
        let whole_seconds =
            self.lease_duration.as_secs() >= 1 && self.lease_duration.subsec_nanos() == 0;
        if !whole_seconds {
            return Err(Error::InvalidConfig(format!(
                "lease duration {:?} must be a whole number of seconds (the Lease stores seconds), e.g. 15s",
                self.lease_duration
            )));
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(Error::InvalidConfig(format!(
                "renew deadline {:?} must be shorter than the lease duration {:?}, e.g. 10s and 15s",
                self.renew_deadline, self.lease_duration
            )));
        }
        if self.retry_period.is_zero() || self.retry_period.mul_f32(1.2) >= self.renew_deadline {
            return Err(Error::InvalidConfig(format!(
                "retry period {:?} must be above zero and well below the renew deadline {:?}, e.g. 2s and 10s",
                self.retry_period, self.renew_deadline
            )));
        }
        Ok(())
    }

    fn lease_duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid leader election settings: {0}")]
    InvalidConfig(String),
    #[error(
        "failed to read Lease {namespace}/{name}: {source}; check that the operator's Role allows get on leases.coordination.k8s.io in that namespace"
    )]
    GetLease {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to create Lease {namespace}/{name}: {source}")]
    CreateLease {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to update Lease {namespace}/{name}: {source}")]
    UpdateLease {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// The identity this process holds the Lease under: the pod name (`POD_NAME`, set from the
/// downward API), else the host name, else a name made from the process id.
pub fn default_identity() -> String {
    let non_empty = |s: String| {
        let s = s.trim().to_string();
        (!s.is_empty()).then_some(s)
    };
    std::env::var("POD_NAME")
        .ok()
        .and_then(non_empty)
        .or_else(|| std::env::var("HOSTNAME").ok().and_then(non_empty))
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .and_then(non_empty)
        })
        .unwrap_or_else(|| format!("zookeeper-operator-{}", std::process::id()))
}

/// What one look at the Lease tells a candidate to do. Pure: see [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum LeaseDecision {
    /// There is no Lease object: create it, holding it.
    Create,
    /// The Lease is free, or its holder stopped renewing it: take it over.
    Acquire,
    /// We hold the Lease: renew it.
    Renew,
    /// Another candidate holds a live Lease.
    Standby {
        holder: String,
        /// Time until it counts as expired if its holder stops renewing now.
        expires_in: Duration,
    },
}

/// Decide what to do with the Lease as it is now.
///
/// `observed_at` is when this candidate first saw the current record (holder, renew time,
/// transitions) unchanged; expiry is measured on the local monotonic clock from there, never
/// by comparing `renewTime` with the local wall clock.
fn decide(
    spec: Option<&LeaseSpec>,
    identity: &str,
    observed_at: Instant,
    now: Instant,
) -> LeaseDecision {
    let Some(spec) = spec else {
        return LeaseDecision::Create;
    };
    match spec.holder_identity.as_deref() {
        None | Some("") => LeaseDecision::Acquire,
        Some(holder) if holder == identity => LeaseDecision::Renew,
        Some(holder) => {
            let duration =
                Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
            let expires_at = observed_at + duration;
            if now >= expires_at {
                LeaseDecision::Acquire
            } else {
                LeaseDecision::Standby {
                    holder: holder.to_string(),
                    expires_in: expires_at - now,
                }
            }
        }
    }
}

/// The record a candidate last saw, and when it first saw it.
#[derive(Debug, Clone)]
struct Observed {
    spec: Option<LeaseSpec>,
    at: Instant,
}

impl Observed {
    /// Remember `spec`; the clock restarts only when the record changed.
    fn update(&mut self, spec: Option<&LeaseSpec>, now: Instant) {
        if self.spec.as_ref() != spec {
            self.spec = spec.cloned();
            self.at = now;
        }
    }
}

/// The result of one [`LeaseElector::try_acquire_or_renew`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// We hold the Lease (just acquired or renewed).
    Holding,
    /// Another candidate holds a live Lease.
    Standby {
        holder: String,
        expires_in: Duration,
    },
    /// Someone else wrote the Lease between our read and our write; try again.
    Conflict,
}

/// One candidate for the Lease.
pub struct LeaseElector {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    config: ElectionConfig,
    observed: Observed,
}

impl fmt::Debug for LeaseElector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseElector")
            .field("lease", &format_args!("{}/{}", self.namespace, self.name))
            .field("identity", &self.identity)
            .field("config", &self.config)
            .finish()
    }
}

impl LeaseElector {
    pub fn new(
        client: Client,
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
        config: ElectionConfig,
    ) -> Result<Self, Error> {
        config.validate()?;
        let namespace = namespace.into();
        Ok(Self {
            api: Api::namespaced(client, &namespace),
            namespace,
            name: name.into(),
            identity: identity.into(),
            config,
            observed: Observed {
                spec: None,
                at: Instant::now(),
            },
        })
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Read the Lease and, when it is ours or free, write it once.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Attempt, Error> {
        let current = self.get().await?;
        let now = Instant::now();
        self.observed
            .update(current.as_ref().and_then(|l| l.spec.as_ref()), now);
        let decision = decide(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.identity,
            self.observed.at,
            now,
        );
        let written = match decision {
            LeaseDecision::Standby { holder, expires_in } => {
                return Ok(Attempt::Standby { holder, expires_in });
            }
            LeaseDecision::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.acquired_spec(None)),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(lease) => lease,
                    Err(e) if is_conflict(&e) => return Ok(Attempt::Conflict),
                    Err(source) => return Err(self.err(source, Op::Create)),
                }
            }
            LeaseDecision::Acquire | LeaseDecision::Renew => {
                // Only reachable with an existing Lease.
                let Some(mut lease) = current else {
                    return Ok(Attempt::Conflict);
                };
                let spec = if decision == LeaseDecision::Renew {
                    let mut spec = lease.spec.clone().unwrap_or_default();
                    spec.renew_time = Some(MicroTime(Timestamp::now()));
                    spec.lease_duration_seconds = Some(self.config.lease_duration_seconds());
                    spec
                } else {
                    self.acquired_spec(lease.spec.as_ref())
                };
                lease.spec = Some(spec);
                // metadata.resourceVersion from the read makes this a compare-and-swap.
                match self
                    .api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(lease) => lease,
                    Err(e) if is_conflict(&e) => return Ok(Attempt::Conflict),
                    Err(source) => return Err(self.err(source, Op::Update)),
                }
            }
        };
        self.observed.update(written.spec.as_ref(), Instant::now());
        Ok(Attempt::Holding)
    }

    /// Wait, trying every retry period, until this candidate holds the Lease; then keep
    /// renewing it in a background task.
    pub async fn acquire(mut self) -> Result<LeaseHold, Error> {
        let mut last_holder = None;
        let acquired_at = loop {
            // Validity counts from when the request was sent, not from the answer.
            let sent = Instant::now();
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Holding) => {
                    // Also when the Lease already named us: a restarted container keeps its pod name.
                    info!(lease = %self.lease_ref(), identity = %self.identity, "acquired leadership");
                    break sent;
                }
                Ok(Attempt::Standby { holder, expires_in }) => {
                    if last_holder.as_ref() != Some(&holder) {
                        info!(lease = %self.lease_ref(), %holder, ?expires_in, "waiting as standby; another replica leads");
                        last_holder = Some(holder);
                    }
                }
                Ok(Attempt::Conflict) => {
                    debug!(lease = %self.lease_ref(), "lease changed while acquiring, retrying")
                }
                Err(e @ Error::InvalidConfig(_)) => return Err(e),
                // Forbidden or a missing namespace will not fix themselves: say so at once.
                Err(e) if is_permanent(&e) => return Err(e),
                Err(e) => warn!(error = %e, "leader election attempt failed, retrying"),
            }
            tokio::time::sleep(self.config.retry_period).await;
        };
        let (state_tx, state_rx) = watch::channel(HoldState::Holding);
        let (stop_tx, stop_rx) = oneshot::channel();
        let fence = Fence {
            state: state_rx.clone(),
            renewed: Arc::new(Mutex::new(acquired_at)),
            renew_deadline: self.config.renew_deadline,
        };
        let task = tokio::spawn(renew_loop(self, state_tx, stop_rx, fence.clone()));
        Ok(LeaseHold {
            state: state_rx,
            stop: stop_tx,
            task,
            fence,
        })
    }

    /// Give the Lease up if we still hold it, so a standby takes over at its next retry
    /// instead of after the lease duration.
    async fn release(&mut self) -> Result<(), Error> {
        let Some(mut lease) = self.get().await? else {
            return Ok(());
        };
        let ours = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(self.identity.as_str());
        if !ours {
            return Ok(());
        }
        let mut spec = lease.spec.take().unwrap_or_default();
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        lease.spec = Some(spec);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                info!(lease = %self.lease_ref(), identity = %self.identity, "released leadership");
                Ok(())
            }
            // Someone else already wrote it: it is no longer ours to release.
            Err(e) if is_conflict(&e) => Ok(()),
            Err(source) => Err(self.err(source, Op::Update)),
        }
    }

    fn acquired_spec(&self, previous: Option<&LeaseSpec>) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        // Count every change of holder, as client-go does (also after a release); creating
        // the Lease is no transition.
        let transitions = previous.map_or(0, |s| {
            let was_ours = s.holder_identity.as_deref() == Some(self.identity.as_str());
            s.lease_transitions.unwrap_or(0) + i32::from(!was_ours)
        });
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.config.lease_duration_seconds()),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    async fn get(&self) -> Result<Option<Lease>, Error> {
        match self.api.get_opt(&self.name).await {
            Ok(lease) => Ok(lease),
            Err(source) => Err(self.err(source, Op::Get)),
        }
    }

    fn lease_ref(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn err(&self, source: kube::Error, op: Op) -> Error {
        let (namespace, name) = (self.namespace.clone(), self.name.clone());
        match op {
            Op::Get => Error::GetLease {
                namespace,
                name,
                source,
            },
            Op::Create => Error::CreateLease {
                namespace,
                name,
                source,
            },
            Op::Update => Error::UpdateLease {
                namespace,
                name,
                source,
            },
        }
    }
}

enum Op {
    Get,
    Create,
    Update,
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

fn is_permanent(e: &Error) -> bool {
    let source = match e {
        Error::InvalidConfig(_) => return true,
        Error::GetLease { source, .. }
        | Error::CreateLease { source, .. }
        | Error::UpdateLease { source, .. } => source,
    };
    matches!(source, kube::Error::Api(s) if s.code == 401 || s.code == 403 || (s.code == 404 && s.reason == "NotFound" && s.message.contains("namespaces")))
}

/// Whether this process still holds the Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HoldState {
    Holding,
    Lost(LostReason),
}

/// Why the hold on the Lease ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LostReason {
    /// No renewal succeeded within the renew deadline (API server unreachable or slow).
    RenewDeadlineExceeded { since_last_renewal: Duration },
    /// Another candidate holds the Lease now.
    TakenOver { holder: String },
    /// The renewing task ended without a reason (it panicked or was aborted).
    RenewTaskEnded,
}

/// Held while this process holds the Lease; a background task renews it.
#[derive(Debug)]
pub struct LeaseHold {
    state: watch::Receiver<HoldState>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<LeaseElector>,
    fence: Fence,
}

/// Checked right before an action that must never be taken twice (an eviction): true only while
/// the hold is not lost *and* the last successful renewal was sent less than the renew deadline
/// ago. A process that resumes after a freeze (GC pause, SIGSTOP, a throttled node) fails the
/// check at once, before its renewing task has even run again, so it cannot act on an old
/// observation while a standby may already have taken over.
#[derive(Debug, Clone)]
pub struct Fence {
    state: watch::Receiver<HoldState>,
    renewed: Arc<Mutex<Instant>>,
    renew_deadline: Duration,
}

impl Fence {
    /// Whether this process may act as the holder now.
    pub fn holds(&self) -> bool {
        let renewed = *self.renewed.lock().unwrap_or_else(|e| e.into_inner());
        *self.state.borrow() == HoldState::Holding && renewed.elapsed() < self.renew_deadline
    }
}

impl LeaseHold {
    /// The check to make right before acting; see [`Fence`].
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// Resolves when the Lease is lost. The caller must stop acting at once; it may campaign
    /// again (a new [`LeaseElector::acquire`]) in the same process.
    pub fn lost(&self) -> impl Future<Output = LostReason> + Send + 'static {
        let mut state = self.state.clone();
        async move {
            loop {
                if let HoldState::Lost(reason) = &*state.borrow_and_update() {
                    return reason.clone();
                }
                if state.changed().await.is_err() {
                    return match &*state.borrow() {
                        HoldState::Lost(reason) => reason.clone(),
                        HoldState::Holding => LostReason::RenewTaskEnded,
                    };
                }
            }
        }
    }

    /// Stop renewing and give the Lease up (call it on shutdown) so that a standby takes
    /// over within one retry period.
    pub async fn release(self) -> Result<(), Error> {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(mut elector) => {
                if *self.state.borrow() == HoldState::Holding {
                    elector.release().await
                } else {
                    Ok(())
                }
            }
            Err(e) => {
                warn!(error = %e, "lease renewal task failed; the lease expires by itself");
                Ok(())
            }
        }
    }
}

async fn renew_loop(
    mut elector: LeaseElector,
    state: watch::Sender<HoldState>,
    mut stop: oneshot::Receiver<()>,
    fence: Fence,
) -> LeaseElector {
    let config = elector.config;
    let mut last_renewal = *fence.renewed.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        tokio::select! {
            _ = &mut stop => return elector,
            _ = tokio::time::sleep(config.retry_period) => {}
        }
        let budget = config.renew_deadline.saturating_sub(last_renewal.elapsed());
        // The Lease is valid from when the renewal was sent: the answer may come late.
        let sent = Instant::now();
        match tokio::time::timeout(budget, elector.try_acquire_or_renew()).await {
            Ok(Ok(Attempt::Holding)) => {
                last_renewal = sent;
                *fence.renewed.lock().unwrap_or_else(|e| e.into_inner()) = sent;
            }
            Ok(Ok(Attempt::Standby { holder, .. })) => {
                warn!(lease = %elector.lease_ref(), %holder, "lost leadership to another replica");
                state.send_replace(HoldState::Lost(LostReason::TakenOver { holder }));
                return elector;
            }
            Ok(Ok(Attempt::Conflict)) => {
                debug!(lease = %elector.lease_ref(), "lease changed while renewing, retrying")
            }
            Ok(Err(e)) => warn!(error = %e, "failed to renew the lease, retrying"),
            Err(_) => warn!(lease = %elector.lease_ref(), "renewing the lease timed out"),
        }
        let since_last_renewal = last_renewal.elapsed();
        if since_last_renewal >= config.renew_deadline {
            warn!(lease = %elector.lease_ref(), ?since_last_renewal, "lost leadership: renew deadline exceeded");
            state.send_replace(HoldState::Lost(LostReason::RenewDeadlineExceeded {
                since_last_renewal,
            }));
            return elector;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frozen_holder_is_fenced_before_its_renewing_task_runs() {
        let (state_tx, state) = watch::channel(HoldState::Holding);
        let fence = Fence {
            state,
            renewed: Arc::new(Mutex::new(Instant::now())),
            renew_deadline: Duration::from_secs(10),
        };
        assert!(fence.holds());
        // Resumed after a freeze: the last renewal was sent 11 s ago, nothing says "lost" yet.
        *fence.renewed.lock().unwrap() = Instant::now() - Duration::from_secs(11);
        assert!(!fence.holds());
        // Renewed again, but the hold was lost meanwhile.
        *fence.renewed.lock().unwrap() = Instant::now();
        state_tx.send_replace(HoldState::Lost(LostReason::TakenOver {
            holder: "other".into(),
        }));
        assert!(!fence.holds());
    }

    fn spec(holder: Option<&str>, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            lease_duration_seconds: Some(duration),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn decides_like_client_go() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(decide(None, "me", t0, t0), LeaseDecision::Create);
        assert_eq!(
            decide(Some(&spec(None, 15)), "me", t0, t0),
            LeaseDecision::Acquire
        );
        assert_eq!(
            decide(Some(&spec(Some(""), 15)), "me", t0, t0),
            LeaseDecision::Acquire
        );
        // Ours: renew even long after (our own renewals are what keeps it alive).
        assert_eq!(
            decide(Some(&spec(Some("me"), 15)), "me", t0, t0 + s(60)),
            LeaseDecision::Renew
        );
        // Another live holder.
        assert_eq!(
            decide(Some(&spec(Some("other"), 15)), "me", t0, t0 + s(5)),
            LeaseDecision::Standby {
                holder: "other".into(),
                expires_in: s(10)
            }
        );
        // Unchanged for the whole lease duration: expired, take it over.
        assert_eq!(
            decide(Some(&spec(Some("other"), 15)), "me", t0, t0 + s(15)),
            LeaseDecision::Acquire
        );
        // Released by its holder (duration 1 s).
        assert_eq!(
            decide(Some(&spec(Some("other"), 1)), "me", t0, t0 + s(1)),
            LeaseDecision::Acquire
        );
    }

    #[test]
    fn expiry_restarts_when_the_record_changes() {
        let t0 = Instant::now();
        let mut seen = Observed { spec: None, at: t0 };
        let first = spec(Some("other"), 15);
        seen.update(Some(&first), t0);
        seen.update(Some(&first), t0 + Duration::from_secs(10));
        assert_eq!(seen.at, t0, "an unchanged record keeps its first-seen time");
        let mut renewed = first.clone();
        renewed.renew_time = Some(MicroTime(Timestamp::now() + Duration::from_secs(1)));
        seen.update(Some(&renewed), t0 + Duration::from_secs(12));
        assert_eq!(seen.at, t0 + Duration::from_secs(12));
        // The holder renewed at 12 s, so at 20 s it is still alive even though 20 > 15.
        assert!(matches!(
            decide(
                seen.spec.as_ref(),
                "me",
                seen.at,
                t0 + Duration::from_secs(20)
            ),
            LeaseDecision::Standby { .. }
        ));
    }

    #[test]
    fn config_must_let_the_holder_give_up_first() {
        assert!(ElectionConfig::default().validate().is_ok());
        let s = Duration::from_secs;
        let bad = [
            (s(10), s(10), s(2)),
            (s(15), s(10), s(10)),
            (s(15), s(10), Duration::ZERO),
            (Duration::from_millis(15500), s(10), s(2)),
        ];
        for (lease_duration, renew_deadline, retry_period) in bad {
            let c = ElectionConfig {
                lease_duration,
                renew_deadline,
                retry_period,
            };
            assert!(c.validate().is_err(), "{c:?}");
        }
    }
}
